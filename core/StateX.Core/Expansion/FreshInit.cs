using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Expansion;

/// <summary>
/// The PyTorch initialisers the official StateX code leaves its fresh tensors with (statex-official.md §1b, §1c),
/// drawn from one seeded generator so that an expansion is a function of its request's seed.
/// Values are drawn in float32 on the generator's device and rounded to the parameter's dtype.
/// </summary>
public static class FreshInit
{
    /// <summary>
    /// nn.Linear's and nn.Conv1d's default bound, for weight and bias alike: kaiming_uniform_(a = √5) gives
    /// gain·√(3/fan_in) = √(1/3)·√(3/fan_in) = 1/√fan_in; the bias is U(±1/√fan_in). fan_in is in_features for a
    /// Linear and (in_channels/groups)·kernel for a Conv1d, i.e. the kernel size for a depthwise one.
    /// </summary>
    public static double DefaultBound(long fanIn) => 1.0 / Math.Sqrt(fanIn);

    /// <summary>xavier_uniform_'s bound, gain·√(6/(fan_in + fan_out)).</summary>
    public static double XavierBound(long fanIn, long fanOut, double gain) => gain * Math.Sqrt(6.0 / (fanIn + fanOut));

    /// <summary>The gain fla's GatedLinearAttention._initialize_weights gives xavier_uniform_ (thunlp/StateX modeling/gla/layer.py:L255-258).</summary>
    public static readonly double GlaXavierGain = Math.Pow(2, -2.5);

    /// <summary>U(−bound, bound) of <paramref name="shape"/>, float32, on the generator's device.</summary>
    public static Tensor Uniform(long[] shape, double bound, Generator gen, Device device) =>
        rand(shape, dtype: ScalarType.Float32, device: device, generator: gen).mul_(2 * bound).sub_(bound);

    /// <summary>Overwrites <paramref name="p"/> with U(−bound, bound).</summary>
    public static void FillUniform(Tensor p, double bound, Generator gen)
    {
        using var u = Uniform(p.shape, bound, gen, p.device);
        p.copy_(u);
    }
}
