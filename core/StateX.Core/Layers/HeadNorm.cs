using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace StateX.Layers;

/// <summary>
/// The per-head output norm of GLA: RMSNorm over each head's dv features with one learned weight [dv] shared by
/// all heads, optionally followed by the swish output gate (fla's FusedRMSNormGated: y = norm(o)·w · g·σ(g)).
/// </summary>
public sealed class HeadNorm : nn.Module<Tensor, Tensor>
{
    public readonly Parameter? weight;
    public double Eps { get; }

    public HeadNorm(long headDim, bool elementwiseAffine, double eps, string name = "HeadNorm") : base(name)
    {
        Eps = eps;
        if (elementwiseAffine) weight = new Parameter(ones(headDim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor o) => Forward(o, null);

    /// <param name="o">[B, T, H, dv]</param>
    /// <param name="gate">[B, T, H, dv] or null (no gate)</param>
    /// <returns>[B, T, H, dv] in o's dtype</returns>
    public Tensor Forward(Tensor o, Tensor? gate)
    {
        using var scope = NewDisposeScope();
        var y = RMSNorm.Normalize(o.to_type(ScalarType.Float32), weight, Eps);
        if (gate is not null) y = y * nn.functional.silu(gate.to_type(ScalarType.Float32));
        return y.to_type(o.dtype).MoveToOuterDisposeScope();
    }
}
