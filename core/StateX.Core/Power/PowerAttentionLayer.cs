using StateX.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace StateX.Power;

/// <summary>
/// A power-attention mixer as the paper uses one in place of softmax attention: q, k, v projections to H heads of
/// width d; with gating, a log forget gate g = logsigmoid(g_proj(x)) per head and step; o = power attention of degree
/// p with scale d^−½ (<see cref="PowerAttention"/>); each head's output normalised by a parameter-free layer norm (the
/// power-attention library's Norm); y = o_proj(o).
/// </summary>
public sealed class PowerAttentionLayer : nn.Module<Tensor, Tensor>
{
    public readonly Linear q_proj, k_proj, v_proj, o_proj;
    public readonly Linear? g_proj;
    public PowerConfig Config { get; }
    int H => Config.NumHeads;
    int D => Config.HeadDim;
    public double Scale => Math.Pow(D, -0.5);

    public PowerAttentionLayer(PowerConfig config, string name = "PowerAttentionLayer") : base(name)
    {
        Config = config;
        long hidden = config.HiddenSize, width = (long)config.NumHeads * config.HeadDim;
        q_proj = nn.Linear(hidden, width, hasBias: false);
        k_proj = nn.Linear(hidden, width, hasBias: false);
        v_proj = nn.Linear(hidden, width, hasBias: false);
        if (config.Gating) g_proj = nn.Linear(hidden, config.NumHeads, hasBias: true);
        o_proj = nn.Linear(width, hidden, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Forward(x, null, ForwardMode.Chunked).Y;

    public PowerLayerState InitialState(long batch, Device device)
    {
        long features = SymmetricPower.FeatureCount(D, Config.Degree);
        var st = PowerAttention.StateType(Config.Degree);
        return new PowerLayerState(zeros(batch, H, features, D, dtype: st, device: device), zeros(batch, H, features, dtype: st, device: device));
    }

    /// <param name="x">[B, T, hidden]</param>
    /// <param name="state">state from the previous segment, or null</param>
    /// <param name="mode">chunked or recurrent form (same function)</param>
    /// <returns>y [B, T, hidden] and the state after the last token.</returns>
    public (Tensor Y, PowerLayerState State) Forward(Tensor x, PowerLayerState? state, ForwardMode mode)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var q = q_proj.call(x).view(b, t, H, D);                                     // [B, T, H, d]
        var k = k_proj.call(x).view(b, t, H, D);
        var v = v_proj.call(x).view(b, t, H, D);
        var g = g_proj is null ? null : nn.functional.logsigmoid(g_proj.call(x).to_type(ScalarType.Float32)); // [B, T, H]
        (Tensor S, Tensor Z)? prev = state is null ? null : (state.S, state.Z);
        var (o, s, z) = mode == ForwardMode.Recurrent
            ? PowerAttention.Recurrent(q, k, v, g, prev, Config.Degree, Scale)
            : PowerAttention.Chunked(q, k, v, g, prev, Config.Degree, Scale, Config.ChunkSize);  // o [B, T, H, d]
        var normed = nn.functional.layer_norm(o.to_type(ScalarType.Float32), [D], eps: 1e-5).to_type(x.dtype).reshape(b, t, H * D);
        var y = o_proj.call(normed);                                                 // [B, T, hidden]
        var next = new PowerLayerState(s, z).MoveToOuterDisposeScope();
        return (y.MoveToOuterDisposeScope(), next);
    }
}
