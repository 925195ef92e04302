using static TorchSharp.torch;

// The seams a model offers for training live beside the model interfaces, not in Training: a model family
// implements them without knowing the trainer (the trainer depends on the models, never the other way).
namespace StateX.Models;

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
/// <param name="SegmentBlocks">the same blocks in their stateful form (one per block, in order), for running each
/// over the sequence a segment at a time; null when the model has none</param>
public sealed record TrainingStack(
    Func<Tensor, Tensor> Embed,
    IReadOnlyList<Func<Tensor, Tensor>> Blocks,
    Func<Tensor, Tensor> Norm,
    Func<Tensor, Tensor> Head,
    IReadOnlyList<SegmentBlock>? SegmentBlocks = null)
{
    public IReadOnlyList<SegmentBlock>? SegmentBlocks { get; init; } =
        SegmentBlocks is null || SegmentBlocks.Count == Blocks.Count ? SegmentBlocks
        : throw new ArgumentException($"{SegmentBlocks.Count} segment blocks for {Blocks.Count} blocks");

    /// <summary>A stack whose whole-sequence blocks are its segment blocks run from a zero state.</summary>
    public static TrainingStack OfSegmentBlocks(Func<Tensor, Tensor> embed, IReadOnlyList<SegmentBlock> blocks,
        Func<Tensor, Tensor> norm, Func<Tensor, Tensor> head) =>
        new(embed, blocks.Select(b => (Func<Tensor, Tensor>)b.Whole).ToArray(), norm, head, blocks);
}

/// <summary>
/// A residual block that runs on one segment of the sequence and continues from the state the previous segment
/// left: running it over consecutive segments, carrying the state, is running it over their concatenation.
/// </summary>
/// <param name="Forward">(x [B, S, D], state before the segment or null for a zero state) → (y [B, S, D], state after its last token)</param>
/// <param name="StateFromTensors">the layer state whose <see cref="ILayerState.Tensors"/> are the given tensors, in that
/// order (how a checkpointed segment, which sees only tensors, hands the state back to the block)</param>
public sealed record SegmentBlock(
    Func<Tensor, ILayerState?, (Tensor Y, ILayerState State)> Forward,
    Func<IReadOnlyList<Tensor>, ILayerState> StateFromTensors)
{
    /// <summary>The block over a whole sequence from a zero state (the final state is dropped).</summary>
    public Tensor Whole(Tensor x)
    {
        var (y, state) = Forward(x, null);
        state.Dispose();
        return y;
    }

    /// <summary>The block on tensors alone: [x, state tensors...] → [y, new state tensors...] (x alone: a zero state).</summary>
    public IReadOnlyList<Tensor> OnTensors(IReadOnlyList<Tensor> inputs)
    {
        var state = inputs.Count > 1 ? StateFromTensors(inputs.Skip(1).ToArray()) : null;
        var (y, next) = Forward(inputs[0], state);
        return [y, .. next.Tensors];
    }
}

/// <summary>A model the trainer can take apart into a <see cref="TrainingStack"/> (GLA and Mamba2 both can).</summary>
public interface ITrainableModel
{
    TrainingStack TrainingStack();
}
