using StateX.Models;
using static TorchSharp.torch;

namespace StateX.Gsa;

/// <summary>
/// What one GSA layer carries between segments: fla's recurrent_state pair (Hk, Hv) and, with short convolutions,
/// the last K−1 projected inputs of q, k and v (fla's conv_state).
/// </summary>
/// <param name="hk">[B, H, dk, M] float32: pass 1's key-to-slot memory</param>
/// <param name="hv">[B, H, M, dv] float32: pass 2's slot-to-value memory</param>
/// <param name="convQ">[B, key_dim, K−1] or null</param>
/// <param name="convK">[B, key_dim/groups, K−1] or null</param>
/// <param name="convV">[B, value_dim/groups, K−1] or null</param>
public sealed class GsaLayerState(Tensor hk, Tensor hv, Tensor? convQ = null, Tensor? convK = null, Tensor? convV = null) : ILayerState
{
    public Tensor Hk { get; } = hk;
    public Tensor Hv { get; } = hv;
    public Tensor? ConvQ { get; } = convQ;
    public Tensor? ConvK { get; } = convK;
    public Tensor? ConvV { get; } = convV;

    public IReadOnlyList<Tensor> Tensors => new[] { Hk, Hv, ConvQ, ConvK, ConvV }.OfType<Tensor>().ToArray();

    /// <summary>The state whose <see cref="Tensors"/> are these: Hk and Hv, or those and the three conv windows.</summary>
    public static GsaLayerState FromTensors(IReadOnlyList<Tensor> tensors) => tensors.Count switch
    {
        2 => new GsaLayerState(tensors[0], tensors[1]),
        5 => new GsaLayerState(tensors[0], tensors[1], tensors[2], tensors[3], tensors[4]),
        var n => throw new ArgumentException($"a GSA layer state is 2 tensors (Hk, Hv) or 5 (with short convolutions), not {n}"),
    };

    public ILayerState Detach() => new GsaLayerState(Hk.detach(), Hv.detach(), ConvQ?.detach(), ConvK?.detach(), ConvV?.detach());

    public ILayerState Clone() => new GsaLayerState(Hk.clone(), Hv.clone(), ConvQ?.clone(), ConvK?.clone(), ConvV?.clone());

    public void Dispose() { foreach (var t in Tensors) t.Dispose(); }
}
