using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Models;

/// <summary>Which execution form a forward pass uses. Both compute the same function.</summary>
public enum ForwardMode
{
    /// <summary>Chunked parallel form (training, prefill).</summary>
    Chunked,
    /// <summary>Token-by-token recurrence (decoding; the reference for tests).</summary>
    Recurrent,
}

/// <summary>The recurrent state one layer carries between segments; family-specific.</summary>
public interface ILayerState : IDisposable
{
    /// <summary>The tensors making up the state (for detaching, moving, accounting).</summary>
    IReadOnlyList<Tensor> Tensors { get; }
    /// <summary>A copy cut from the autograd graph (truncated back-propagation across segments).</summary>
    ILayerState Detach();
    /// <summary>A deep copy: new tensors (same device and dtype) sharing no storage with this state, so advancing or
    /// mutating one never changes the other (branching several continuations from one shared context).</summary>
    ILayerState Clone();
}

public static class LayerStateExtensions
{
    /// <summary>Moves the state's tensors out of the current dispose scope, so it outlives the forward pass that made it.</summary>
    public static TState MoveToOuterDisposeScope<TState>(this TState state) where TState : ILayerState
    {
        foreach (var t in state.Tensors) t.MoveToOuterDisposeScope();
        return state;
    }
}

/// <summary>Per-layer states of a whole model; index = layer.</summary>
public sealed class ModelState(IReadOnlyList<ILayerState> layers) : IDisposable
{
    public IReadOnlyList<ILayerState> Layers { get; } = layers;
    public ModelState Detach() => new(Layers.Select(l => l.Detach()).ToArray());
    /// <summary>A deep copy of every layer's state (see <see cref="ILayerState.Clone"/>).</summary>
    public ModelState Clone() => new(Layers.Select(l => l.Clone()).ToArray());
    public void Dispose() { foreach (var l in Layers) l.Dispose(); }
}

/// <summary>Result of a language-model forward pass.</summary>
/// <param name="Logits">[B, T, V]</param>
/// <param name="Loss">Mean next-token cross-entropy when labels were given (labels shifted inside, -100 ignored).</param>
/// <param name="State">Final per-layer state when asked for.</param>
public sealed record LmOutput(Tensor Logits, Tensor? Loss, ModelState? State)
{
    /// <summary>
    /// The end of every model's forward pass, inside its dispose scope: the shifted loss when labels are given, the
    /// per-layer states when asked for, and everything kept moved out to the caller's scope.
    /// </summary>
    /// <param name="logits">[B, T, V]</param>
    /// <param name="labels">[B, T] or null</param>
    /// <param name="states">one per layer</param>
    /// <param name="returnState">keep the states (moved out with the logits) in the output</param>
    public static LmOutput Of(Tensor logits, Tensor? labels, ILayerState[] states, bool returnState)
    {
        var loss = labels is null ? null : LanguageModelLoss.ShiftedCrossEntropy(logits, labels);
        ModelState? outState = null;
        if (returnState)
        {
            foreach (var s in states) s.MoveToOuterDisposeScope();
            outState = new ModelState(states);
        }
        return new LmOutput(logits.MoveToOuterDisposeScope(), loss?.MoveToOuterDisposeScope(), outState);
    }
}

/// <summary>Recurrent state size of one layer, per sequence.</summary>
/// <param name="Layer">Layer index, from 0.</param>
/// <param name="Kind">What the state is, the family's layer kind, e.g. "gla" or "mamba2".</param>
/// <param name="Elements">Number of state elements per sequence.</param>
/// <param name="Shape">Human-readable shape, e.g. "2 heads × 32 × 64".</param>
public sealed record LayerStateSize(int Layer, string Kind, long Elements, string Shape)
{
    public long Bytes(ScalarType dtype) => Elements * DTypeSize.Of(dtype);
}

/// <summary>Recurrent state sizes of every layer and of the whole model (per sequence).</summary>
public sealed record StateSizeReport(IReadOnlyList<LayerStateSize> Layers)
{
    public long TotalElements => Layers.Sum(l => l.Elements);
    public long TotalBytes(ScalarType dtype) => TotalElements * DTypeSize.Of(dtype);
}

public static class DTypeSize
{
    public static int Of(ScalarType t) => t switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };
}

/// <summary>
/// What training, evaluation and the CLI need from any causal language model StateX defines
/// (GLA, Mamba2, expanded or not).
/// </summary>
public interface ICausalLanguageModel
{
    /// <summary>"gla", "gsa" or "mamba2".</summary>
    string Family { get; }
    int VocabSize { get; }
    int NumLayers { get; }

    /// <summary>
    /// inputIds [B, T] (int64) → logits [B, T, V]; with labels [B, T] also the shifted loss. Given a state,
    /// continues from it; with returnState, hands back the final state.
    /// </summary>
    LmOutput Forward(Tensor inputIds, Tensor? labels = null, ModelState? state = null, bool returnState = false, ForwardMode mode = ForwardMode.Chunked);

    /// <summary>A zero state for a batch (what Forward starts from when given none).</summary>
    ModelState InitialState(long batch, Device device, ScalarType dtype);

    StateSizeReport StateSize();

    /// <summary>Saves config.json and model.safetensors in the family's reference format.</summary>
    void Save(string directory);

    /// <summary>The model as a TorchSharp module (parameters, train/eval, to(device)).</summary>
    nn.Module Module { get; }
}

public static class LanguageModelLoss
{
    /// <summary>Shifted next-token cross-entropy: logits [B, T, V] at t predict labels at t+1; -100 is ignored.</summary>
    public static Tensor ShiftedCrossEntropy(Tensor logits, Tensor labels)
    {
        using var scope = NewDisposeScope();
        long v = logits.shape[^1];
        var pred = logits[.., ..^1, ..].reshape(-1, v).to_type(ScalarType.Float32);
        var target = labels[.., 1..].reshape(-1);
        return nn.functional.cross_entropy(pred, target, ignore_index: -100).MoveToOuterDisposeScope();
    }
}
