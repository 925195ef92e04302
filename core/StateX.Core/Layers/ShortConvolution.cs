using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace StateX.Layers;

/// <summary>
/// fla's ShortConvolution: a causal depthwise conv1d followed by SiLU, with the parameter layout of nn.Conv1d
/// (weight [C, 1, K], optional bias [C]) so checkpoints load by name.
/// </summary>
public sealed class ShortConvolution : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;
    public readonly Parameter? bias;

    public ShortConvolution(long channels, long kernelSize, bool useBias, string name = "ShortConvolution") : base(name)
    {
        // nn.Conv1d's default init (kaiming-uniform with a = √5 gives bound 1/√fan_in).
        double bound = 1.0 / Math.Sqrt(kernelSize);
        weight = new Parameter(empty(channels, 1, kernelSize).uniform_(-bound, bound));
        if (useBias) bias = new Parameter(empty(channels).uniform_(-bound, bound));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Forward(x, null).Y;

    /// <param name="x">[B, T, C]</param>
    /// <param name="state">[B, C, K−1] or null</param>
    /// <returns>silu(conv(x)) [B, T, C] and the new state [B, C, K−1].</returns>
    public (Tensor Y, Tensor State) Forward(Tensor x, Tensor? state)
    {
        var (y, s) = CausalConv1d.Forward(x, weight, bias, state);
        using (y) return (nn.functional.silu(y), s);
    }
}
