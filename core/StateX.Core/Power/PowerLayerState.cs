using StateX.Models;
using static TorchSharp.torch;

namespace StateX.Power;

/// <summary>One power-attention layer's state: S [B, H, D, d] and its normaliser Z [B, H, D] (PowerAttention.StateType: float64 for p ≥ 4).</summary>
public sealed class PowerLayerState(Tensor s, Tensor z) : ILayerState
{
    public Tensor S { get; } = s;
    public Tensor Z { get; } = z;
    public IReadOnlyList<Tensor> Tensors => [S, Z];

    public static PowerLayerState FromTensors(IReadOnlyList<Tensor> tensors) => tensors.Count == 2
        ? new PowerLayerState(tensors[0], tensors[1])
        : throw new ArgumentException($"a power-attention layer state is 2 tensors (S, Z), not {tensors.Count}");

    public ILayerState Detach() => new PowerLayerState(S.detach(), Z.detach());
    public ILayerState Clone() => new PowerLayerState(S.clone(), Z.clone());
    public void Dispose() { S.Dispose(); Z.Dispose(); }
}
