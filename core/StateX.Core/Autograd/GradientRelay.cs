using static TorchSharp.torch;

// Used by the models' own autograd functions (ChunkedGlaFunction, SsdDecayMask) and by the trainer's
// checkpointing alike, so it belongs to neither.
namespace StateX.Autograd;

/// <summary>
/// Releases the gradients that checkpointed functions hand back to the autograd engine. The engine keeps its own
/// reference to each, but our handles on them would otherwise live until the garbage collector finalises them (on
/// the engine's thread there is no dispose scope), holding a block input's worth of memory per checkpoint for the
/// rest of the backward pass. The engine consumes a function's gradients before it calls the next function, so each
/// call releases the previous call's handles; the last call's go with <see cref="Dispose"/>.
/// </summary>
public sealed class GradientRelay : IDisposable
{
    List<Tensor>? _previous;
    readonly object _lock = new();

    internal void Pass(List<Tensor> grads)
    {
        lock (_lock)
        {
            if (_previous is { } p) foreach (var t in p) t?.Dispose();
            _previous = grads;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_previous is { } p) foreach (var t in p) t?.Dispose();
            _previous = null;
        }
    }
}
