using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace StateX.Mamba2;

/// <summary>
/// Mamba2's output norm (norm_before_gate = false): RMSNorm of y · silu(z), taken separately over each of the
/// n_groups slices of the channels, in float32, then scaled by the weight.
/// </summary>
public sealed class GatedRMSNorm : nn.Module<Tensor, Tensor, Tensor>
{
    public readonly Parameter weight;
    public long GroupSize { get; }
    public double Eps { get; }

    public GatedRMSNorm(long dim, long groupSize, double eps) : base(nameof(GatedRMSNorm))
    {
        if (dim % groupSize != 0) throw new ArgumentException($"norm width {dim} is not a multiple of the group size {groupSize}");
        GroupSize = groupSize;
        Eps = eps;
        weight = new Parameter(ones(dim));
        RegisterComponents();
    }

    /// <param name="y">[..., D]</param>
    /// <param name="z">[..., D], the gate</param>
    /// <returns>[..., D] in y's dtype</returns>
    public override Tensor forward(Tensor y, Tensor z)
    {
        using var scope = NewDisposeScope();
        var gated = y.to_type(ScalarType.Float32) * nn.functional.silu(z.to_type(ScalarType.Float32));
        long[] grouped = [.. y.shape[..^1], y.shape[^1] / GroupSize, GroupSize];              // [..., G, D/G]
        var g = gated.view(grouped);
        var normed = (g * rsqrt(g.pow(2).mean([-1], keepdim: true) + Eps)).view(y.shape);
        return (weight * normed.to_type(y.dtype)).MoveToOuterDisposeScope();
    }
}
