using StateX.Layers;
using StateX.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace StateX.Gla;

/// <summary>
/// Gated linear attention (Yang et al. 2023) with fla's semantics and parameter names:
///   q, k, v = projections (optionally short causal conv + SiLU), optional feature map on q and k;
///   g = logsigmoid(gk_proj(x)) / gate_logit_normalizer, optionally clamped from below;
///   per head  S_t = diag(exp(g_t)) S_{t−1} + k_t v_tᵀ,  o_t = S_tᵀ (dk^−½ q_t);
///   y = o_proj( RMSNorm_head(o) · swish(g_proj(x)) ).
/// The number of heads is a constructor argument so that a rewritten model (head merging) can give each layer
/// its own; parameter shapes do not depend on it except through grouped k/v heads.
/// </summary>
public sealed class GatedLinearAttention : nn.Module<Tensor, Tensor>
{
    // The fields are snake_case, spelt as fla spells them, on purpose: TorchSharp's RegisterComponents names each
    // submodule and parameter after its field (model.layers.0.attn.q_proj.weight, ...gk_proj.1.bias), and those
    // names are what make fla checkpoints load and what Save writes. Renaming a field renames a checkpoint key.
    public readonly Linear q_proj, k_proj, v_proj, o_proj;
    public readonly Linear? g_proj;
    public readonly Sequential gk_proj;
    public readonly ShortConvolution? q_conv1d, k_conv1d, v_conv1d;
    /// <summary>fla's fused norm + swish gate (fuse_norm with an output gate).</summary>
    public readonly HeadNorm? g_norm_swish_gate;
    /// <summary>fla's unfused norm (then the gate is applied separately; same function).</summary>
    public readonly HeadNorm? g_norm;

    public int NumHeads { get; }
    public int NumKvHeads { get; }
    public int KeyDim { get; }
    public int ValueDim { get; }
    public int HeadKDim => KeyDim / NumHeads;
    public int HeadVDim => ValueDim / NumHeads;
    int Groups => NumHeads / NumKvHeads;
    public double Scale => Math.Pow(HeadKDim, -0.5);
    public GlaConfig Config { get; }

    /// <summary>Chunk length of the chunked form.</summary>
    public int ChunkSize { get; set; } = ChunkedGla.DefaultChunkSize;
    public int SubChunkSize { get; set; } = ChunkedGla.DefaultSubChunkSize;
    /// <summary>How the chunked form is computed and differentiated (fused CUDA kernels on CUDA by default).</summary>
    public GlaBackend Backend { get; set; } = GlaBackend.Auto;

    public GatedLinearAttention(GlaConfig config, int numHeads, int? numKvHeads = null, string name = "GatedLinearAttention") : base(name)
    {
        Config = config;
        NumHeads = numHeads;
        NumKvHeads = numKvHeads ?? numHeads;
        KeyDim = config.KeyDim;
        ValueDim = config.ValueDim;
        if (numHeads <= 0 || KeyDim % numHeads != 0 || ValueDim % numHeads != 0)
            throw new ArgumentException($"{numHeads} heads do not divide key dim {KeyDim} and value dim {ValueDim}");
        if (NumKvHeads <= 0 || numHeads % NumKvHeads != 0)
            throw new ArgumentException($"{NumKvHeads} key/value heads do not divide {numHeads} heads");
        long hidden = config.HiddenSize, kPerGroup = KeyDim / Groups, vPerGroup = ValueDim / Groups;

        q_proj = nn.Linear(hidden, KeyDim, hasBias: false);
        k_proj = nn.Linear(hidden, kPerGroup, hasBias: false);
        v_proj = nn.Linear(hidden, vPerGroup, hasBias: false);
        if (config.UseOutputGate) g_proj = nn.Linear(hidden, ValueDim, hasBias: false);
        if (config.UseShortConv)
        {
            q_conv1d = new ShortConvolution(KeyDim, config.ConvSize, config.ConvBias);
            k_conv1d = new ShortConvolution(kPerGroup, config.ConvSize, config.ConvBias);
            v_conv1d = new ShortConvolution(vPerGroup, config.ConvSize, config.ConvBias);
        }
        gk_proj = nn.Sequential(nn.Linear(hidden, config.GateLowRankDim, hasBias: false), nn.Linear(config.GateLowRankDim, kPerGroup, hasBias: true));
        o_proj = nn.Linear(ValueDim, hidden, hasBias: false);
        var norm = new HeadNorm(HeadVDim, config.ElementwiseAffine, config.NormEps);
        if (config.FuseNorm && config.UseOutputGate) g_norm_swish_gate = norm; else g_norm = norm;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Forward(x, null, ForwardMode.Chunked).Y;

    /// <summary>A zero state for a batch.</summary>
    public GlaLayerState InitialState(long batch, Device device, ScalarType convDtype)
    {
        Tensor? Conv(ShortConvolution? c) => c is null ? null : zeros(batch, c.weight.shape[0], c.weight.shape[2] - 1, dtype: convDtype, device: device);
        return new GlaLayerState(zeros(batch, NumHeads, HeadKDim, HeadVDim, dtype: ScalarType.Float32, device: device), Conv(q_conv1d), Conv(k_conv1d), Conv(v_conv1d));
    }

    /// <summary>Elements of one sequence's state: recurrent H·dk·dv plus the convolution windows.</summary>
    public (long Elements, string Shape) StateElements()
    {
        long rec = (long)NumHeads * HeadKDim * HeadVDim;
        string shape = $"{NumHeads} heads × {HeadKDim} × {HeadVDim}";
        if (q_conv1d is not null)
        {
            long ch = q_conv1d.weight.shape[0] + k_conv1d!.weight.shape[0] + v_conv1d!.weight.shape[0], w = q_conv1d.weight.shape[2] - 1;
            rec += ch * w;
            shape += $" + conv {ch} × {w}";
        }
        return (rec, shape);
    }

    /// <param name="x">[B, T, hidden]</param>
    /// <param name="state">state from the previous segment, or null (zeros)</param>
    /// <param name="mode">chunked or recurrent form (same function)</param>
    /// <returns>y [B, T, hidden] and the state after the last token.</returns>
    public (Tensor Y, GlaLayerState State) Forward(Tensor x, GlaLayerState? state, ForwardMode mode)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        Tensor q = q_proj.call(x), k = k_proj.call(x), v = v_proj.call(x);          // [B, T, key_dim], [B, T, key_dim/G], [B, T, value_dim/G]
        Tensor? cq = null, ck = null, cv = null;
        if (q_conv1d is not null)
        {
            (q, cq) = q_conv1d.Forward(q, state?.ConvQ);
            (k, ck) = k_conv1d!.Forward(k, state?.ConvK);
            (v, cv) = v_conv1d!.Forward(v, state?.ConvV);
        }
        var gk = gk_proj.call(x);                                                    // [B, T, key_dim/G]

        q = q.view(b, t, NumHeads, HeadKDim);                                        // [B, T, H, dk]
        k = Heads(k, HeadKDim);                                                      // [B, T, H, dk]
        v = Heads(v, HeadVDim);                                                      // [B, T, H, dv]
        gk = Heads(gk, HeadKDim);                                                    // [B, T, H, dk]
        var g = nn.functional.logsigmoid(gk.to_type(ScalarType.Float32)) / Config.GateLogitNormalizer;
        if (Config.ClampMin is { } cmin) g = g.clamp_min(cmin);
        if (Config.FeatureMap is { } fm) { q = FeatureMap(fm, q); k = FeatureMap(fm, k); }

        var (o, s) = mode == ForwardMode.Recurrent
            ? RecurrentGla.Forward(q, k, v, g, state?.Recurrent, Scale)
            : ChunkedGla.Forward(q, k, v, g, state?.Recurrent, Scale, ChunkSize, SubChunkSize, Backend);   // o [B, T, H, dv]

        var gate = g_proj is null ? null : g_proj.call(x).view(b, t, NumHeads, HeadVDim);
        var normed = (g_norm_swish_gate ?? g_norm)!.Forward(o, gate).reshape(b, t, ValueDim); // [B, T, value_dim]
        var y = o_proj.call(normed);                                                 // [B, T, hidden]
        var next = new GlaLayerState(s, cq, ck, cv);
        next.MoveToOuterDisposeScope();
        return (y.MoveToOuterDisposeScope(), next);
    }

    /// <summary>[B, T, Hkv·d] → [B, T, H, d], each k/v head repeated for its group as fla does.</summary>
    Tensor Heads(Tensor x, long d)
    {
        var y = x.view(x.shape[0], x.shape[1], NumKvHeads, d);
        return Groups > 1 ? y.repeat_interleave(Groups, dim: 2) : y;
    }

    static Tensor FeatureMap(string name, Tensor x) => name switch
    {
        "relu" => nn.functional.relu(x),
        "sigmoid" => x.sigmoid(),
        "swish" or "silu" => nn.functional.silu(x),
        _ => throw new NotSupportedException($"feature map '{name}'"),
    };
}
