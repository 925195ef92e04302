using StateX.Models;
using static TorchSharp.torch;

namespace StateX.Gla;

/// <summary>
/// What one GLA layer carries between segments: the recurrent state and, with short convolutions, the last
/// K−1 projected inputs of q, k and v.
/// </summary>
/// <param name="recurrent">[B, H, dk, dv] float32</param>
/// <param name="convQ">[B, key_dim, K−1] or null</param>
/// <param name="convK">[B, key_dim/groups, K−1] or null</param>
/// <param name="convV">[B, value_dim/groups, K−1] or null</param>
public sealed class GlaLayerState(Tensor recurrent, Tensor? convQ = null, Tensor? convK = null, Tensor? convV = null) : ILayerState
{
    public Tensor Recurrent { get; } = recurrent;
    public Tensor? ConvQ { get; } = convQ;
    public Tensor? ConvK { get; } = convK;
    public Tensor? ConvV { get; } = convV;

    public IReadOnlyList<Tensor> Tensors => new[] { Recurrent, ConvQ, ConvK, ConvV }.OfType<Tensor>().ToArray();

    public ILayerState Detach() => new GlaLayerState(Recurrent.detach(), ConvQ?.detach(), ConvK?.detach(), ConvV?.detach());

    public ILayerState Clone() => new GlaLayerState(Recurrent.clone(), ConvQ?.clone(), ConvK?.clone(), ConvV?.clone());

    public void Dispose() { foreach (var t in Tensors) t.Dispose(); }
}
