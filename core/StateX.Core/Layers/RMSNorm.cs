using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace StateX.Layers;

/// <summary>RMSNorm over the last dimension: y = x / sqrt(mean(x²) + ε) · w, computed in float32, returned in x's dtype.</summary>
public sealed class RMSNorm : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;
    public double Eps { get; }

    public RMSNorm(long dim, double eps = 1e-6, string name = "RMSNorm") : base(name)
    {
        Eps = eps;
        weight = new Parameter(ones(dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Normalize(x, weight, Eps);

    /// <summary>The functional form, shared by the gated norms.</summary>
    public static Tensor Normalize(Tensor x, Tensor? weight, double eps)
    {
        using var scope = NewDisposeScope();
        var xf = x.to_type(ScalarType.Float32);
        var y = xf * rsqrt(xf.pow(2).mean([-1], keepdim: true) + eps);
        if (weight is not null) y = y * weight.to_type(ScalarType.Float32);
        return y.to_type(x.dtype).MoveToOuterDisposeScope();
    }
}
