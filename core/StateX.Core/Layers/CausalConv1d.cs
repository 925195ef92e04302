using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Layers;

/// <summary>
/// Causal depthwise 1-D convolution with a carried state, the "short convolution" of fla and the conv1d of
/// Mamba2. The state holds the last K−1 inputs, so segments (and single decode steps) chain exactly.
/// </summary>
public static class CausalConv1d
{
    /// <param name="x">[B, T, C]</param>
    /// <param name="weight">[C, 1, K] (as nn.Conv1d with groups = C stores it)</param>
    /// <param name="bias">[C] or null</param>
    /// <param name="state">[B, C, K−1] or null (zeros)</param>
    /// <returns>y [B, T, C] (no activation) and the new state [B, C, K−1].</returns>
    public static (Tensor Y, Tensor State) Forward(Tensor x, Tensor weight, Tensor? bias, Tensor? state)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], c = x.shape[2], k = weight.shape[2];
        if (weight.shape[0] != c) throw new ArgumentException($"conv weight has {weight.shape[0]} channels, input has {c}");
        var xt = x.transpose(1, 2);                                                      // [B, C, T]
        var prefix = state ?? zeros(b, c, k - 1, dtype: x.dtype, device: x.device);     // [B, C, K−1]
        var padded = cat([prefix.to_type(x.dtype), xt], 2);                              // [B, C, T+K−1]
        var y = nn.functional.conv1d(padded, weight.to_type(x.dtype), bias?.to_type(x.dtype), groups: c); // [B, C, T]
        var newState = padded[.., .., ^(int)(k - 1)..].contiguous();                     // [B, C, K−1]
        return (y.transpose(1, 2).MoveToOuterDisposeScope(), newState.MoveToOuterDisposeScope());
    }
}
