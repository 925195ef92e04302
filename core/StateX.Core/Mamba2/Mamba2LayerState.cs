using StateX.Models;
using static TorchSharp.torch;

namespace StateX.Mamba2;

/// <summary>What one Mamba2 layer carries between segments.</summary>
/// <param name="Conv">[B, conv_dim, K−1]: the last K−1 inputs of the causal conv (model dtype).</param>
/// <param name="Ssm">[B, H, P, N]: the SSM state h (float32, because decays compound over long contexts).</param>
public sealed record Mamba2LayerState(Tensor Conv, Tensor Ssm) : ILayerState
{
    public IReadOnlyList<Tensor> Tensors => [Conv, Ssm];
    public ILayerState Detach() => new Mamba2LayerState(Conv.detach(), Ssm.detach());
    /// <summary>Deep copy (explicit: a record may not declare a member named Clone).</summary>
    ILayerState ILayerState.Clone() => new Mamba2LayerState(Conv.clone(), Ssm.clone());
    /// <summary>Hands both tensors to the enclosing dispose scope (returning a state out of a scoped method).</summary>
    public Mamba2LayerState MoveToOuterDisposeScope() { Conv.MoveToOuterDisposeScope(); Ssm.MoveToOuterDisposeScope(); return this; }
    public void Dispose() { Conv.Dispose(); Ssm.Dispose(); }
}
