using static TorchSharp.torch;

namespace StateX.Training;

/// <summary>
/// A causal LM split at the seams the trainer needs: embedding, blocks (each [B, T, D] → [B, T, D] from a zero
/// state), final norm and LM head. The trainer recomputes blocks in the backward pass (activation checkpointing) and
/// computes the loss a slice of tokens at a time, so that neither the activations of every block nor the [B, T, V]
/// logits of a 64K-token sequence are ever held at once.
/// </summary>
/// <param name="Embed">ids [B, T] → [B, T, D]</param>
/// <param name="Blocks">residual blocks, [B, T, D] → [B, T, D]</param>
/// <param name="Norm">final norm, [B, T, D] → [B, T, D]</param>
/// <param name="Head">LM head, [B, T, D] → logits [B, T, V]</param>
public sealed record TrainingStack(
    Func<Tensor, Tensor> Embed,
    IReadOnlyList<Func<Tensor, Tensor>> Blocks,
    Func<Tensor, Tensor> Norm,
    Func<Tensor, Tensor> Head);

/// <summary>A model the trainer can take apart into a <see cref="TrainingStack"/> (GLA and Mamba2 both can).</summary>
public interface ITrainableModel
{
    TrainingStack TrainingStack();
}
