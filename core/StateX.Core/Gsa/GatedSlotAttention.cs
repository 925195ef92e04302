using StateX.Gla;
using StateX.Layers;
using StateX.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace StateX.Gsa;

/// <summary>fla's T2RFeatureMap (fla/modules/feature_map.py): relu(layer(x)), a trainable dk×dk map without bias.</summary>
public sealed class T2RFeatureMap : nn.Module<Tensor, Tensor>
{
    // snake_case as fla: the checkpoint key is attn.feature_map.layer.weight.
    public readonly Linear layer;

    public T2RFeatureMap(long headDim, string name = "T2RFeatureMap") : base(name)
    {
        layer = nn.Linear(headDim, headDim, hasBias: false);
        RegisterComponents();
    }

    /// <param name="x">[..., dk]</param>
    public override Tensor forward(Tensor x)
    {
        using var y = layer.call(x);
        return nn.functional.relu(y);
    }
}

/// <summary>
/// Gated slot attention (Zhang et al. 2024) with fla's semantics and parameter names (fla/layers/gsa.py,
/// GatedSlotAttention.forward):
///   q, k, v = projections (optionally short causal conv + SiLU); q, k = feature_map(q, k); v = silu(v);
///   f = logsigmoid(f_proj(x)) / gate_logit_normalizer  (one log forget gate per kv head and slot);  s = 1 − exp(f);
///   o = two-pass GSA (<see cref="RecurrentGsa"/>) with scale 1;
///   y = o_proj( RMSNorm_value_dim( silu(o) ) )       (fla's rms_norm_linear, the g_norm weight over all heads).
/// fla stores use_output_gate and use_norm but its forward reads neither: there is no output gate and the norm is
/// always applied. The number of slots is a constructor argument so an expanded model can give each layer its own.
/// </summary>
public sealed class GatedSlotAttention : nn.Module<Tensor, Tensor>
{
    // Field names are fla's parameter names (see GatedLinearAttention): model.layers.0.attn.f_proj.weight, ...
    public readonly Linear q_proj, k_proj, v_proj, f_proj, o_proj;
    public readonly ShortConvolution? q_conv1d, k_conv1d, v_conv1d;
    /// <summary>Only the t2r feature map has parameters; swish and relu are functions.</summary>
    public readonly T2RFeatureMap? feature_map;
    /// <summary>fla's RMSNorm(hidden_size) applied to the value_dim-wide output (value_dim = hidden_size).</summary>
    public readonly HeadNorm g_norm;

    public int NumHeads { get; }
    public int NumKvHeads { get; }
    public int NumSlots { get; }
    public int KeyDim { get; }
    public int ValueDim { get; }
    public int HeadKDim => KeyDim / NumHeads;
    public int HeadVDim => ValueDim / NumHeads;
    int Groups => NumHeads / NumKvHeads;
    /// <summary>fla's GSA layer is built with scale = 1 (its constructor default; GSABlock passes none).</summary>
    public double Scale => 1.0;
    public GsaConfig Config { get; }

    /// <summary>Chunk length of pass 1 of the chunked form.</summary>
    public int SlotChunkSize { get; set; } = ChunkedGsa.DefaultSlotChunkSize;
    /// <summary>Chunk length of pass 2 (a GLA) of the chunked form.</summary>
    public int ChunkSize { get; set; } = ChunkedGla.DefaultChunkSize;
    /// <summary>How pass 2 of the chunked form is computed and differentiated.</summary>
    public GlaBackend Backend { get; set; } = GlaBackend.Auto;

    public GatedSlotAttention(GsaConfig config, int numSlots, string name = "GatedSlotAttention") : base(name)
    {
        Config = config;
        NumHeads = config.NumHeads;
        NumKvHeads = config.NumKvHeads ?? config.NumHeads;
        NumSlots = numSlots;
        KeyDim = config.KeyDim;
        ValueDim = config.ValueDim;
        if (numSlots <= 0) throw new ArgumentException($"a GSA layer needs at least one slot, got {numSlots}");
        long hidden = config.HiddenSize, kPerGroup = KeyDim / Groups, vPerGroup = ValueDim / Groups;

        q_proj = nn.Linear(hidden, KeyDim, hasBias: false);
        k_proj = nn.Linear(hidden, kPerGroup, hasBias: false);
        v_proj = nn.Linear(hidden, vPerGroup, hasBias: false);
        f_proj = nn.Linear(hidden, (long)NumKvHeads * numSlots, hasBias: false);
        if (config.UseShortConv)
        {
            // fla's GSA passes conv_bias (default False) only from the layer's own argument, which GSABlock never sets.
            q_conv1d = new ShortConvolution(KeyDim, config.ConvSize, useBias: false);
            k_conv1d = new ShortConvolution(kPerGroup, config.ConvSize, useBias: false);
            v_conv1d = new ShortConvolution(vPerGroup, config.ConvSize, useBias: false);
        }
        if (config.FeatureMap == "t2r") feature_map = new T2RFeatureMap(HeadKDim);
        g_norm = new HeadNorm(hidden, config.ElementwiseAffine, config.NormEps);
        o_proj = nn.Linear(ValueDim, hidden, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Forward(x, null, ForwardMode.Chunked).Y;

    /// <summary>A zero state for a batch.</summary>
    public GsaLayerState InitialState(long batch, Device device, ScalarType convDtype)
    {
        Tensor? Conv(ShortConvolution? c) => c is null ? null : zeros(batch, c.weight.shape[0], c.weight.shape[2] - 1, dtype: convDtype, device: device);
        return new GsaLayerState(
            zeros(batch, NumHeads, HeadKDim, NumSlots, dtype: ScalarType.Float32, device: device),
            zeros(batch, NumHeads, NumSlots, HeadVDim, dtype: ScalarType.Float32, device: device),
            Conv(q_conv1d), Conv(k_conv1d), Conv(v_conv1d));
    }

    /// <summary>Elements of one sequence's state: H·M·(dk + dv) for the two memories plus the convolution windows.</summary>
    public (long Elements, string Shape) StateElements()
    {
        long rec = StateElementsOf(NumHeads, NumSlots, HeadKDim, HeadVDim);
        string shape = $"{NumHeads} heads × {NumSlots} slots × ({HeadKDim} + {HeadVDim})";
        if (q_conv1d is not null)
        {
            long ch = q_conv1d.weight.shape[0] + k_conv1d!.weight.shape[0] + v_conv1d!.weight.shape[0], w = q_conv1d.weight.shape[2] - 1;
            rec += ch * w;
            shape += $" + conv {ch} × {w}";
        }
        return (rec, shape);
    }

    /// <summary>The recurrent state of one GSA layer: Hk [H, dk, M] and Hv [H, M, dv].</summary>
    public static long StateElementsOf(long heads, long slots, long headK, long headV) => heads * slots * (headK + headV);

    /// <param name="x">[B, T, hidden]</param>
    /// <param name="state">state from the previous segment, or null (zeros)</param>
    /// <param name="mode">chunked or recurrent form (same function)</param>
    /// <returns>y [B, T, hidden] and the state after the last token.</returns>
    public (Tensor Y, GsaLayerState State) Forward(Tensor x, GsaLayerState? state, ForwardMode mode)
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
        var f = f_proj.call(x);                                                      // [B, T, Hkv·M]

        q = FeatureMap(q.view(b, t, NumHeads, HeadKDim));                            // [B, T, H, dk]
        k = FeatureMap(k.view(b, t, NumKvHeads, HeadKDim));                          // [B, T, Hkv, dk]
        v = nn.functional.silu(v.view(b, t, NumKvHeads, HeadVDim));                  // [B, T, Hkv, dv]
        // fla computes the gates in the projection's dtype (no float32 upcast before logsigmoid).
        var g = nn.functional.logsigmoid(f.view(b, t, NumKvHeads, NumSlots)) / Config.GateLogitNormalizer; // [B, T, Hkv, M]
        using var one = 1.0.ToScalar();                                              // held across the native call (see Scalars)
        var s = g.exp().neg().add(one);                                              // [B, T, Hkv, M]: 1 − exp(g)
        if (Groups > 1)
        {
            k = k.repeat_interleave(Groups, dim: 2);
            v = v.repeat_interleave(Groups, dim: 2);
            g = g.repeat_interleave(Groups, dim: 2);
            s = s.repeat_interleave(Groups, dim: 2);
        }

        var (o, hk, hv) = mode == ForwardMode.Recurrent
            ? RecurrentGsa.Forward(q, k, v, s, g, state?.Hk, state?.Hv, Scale)
            : ChunkedGsa.Forward(q, k, v, s, g, state?.Hk, state?.Hv, Scale, SlotChunkSize, ChunkSize, ChunkedGla.DefaultSubChunkSize, Backend); // o [B, T, H, dv]

        var normed = g_norm.Forward(nn.functional.silu(o.reshape(b, t, ValueDim)), null); // [B, T, value_dim]
        var y = o_proj.call(normed);                                                 // [B, T, hidden]
        var next = new GsaLayerState(hk, hv, cq, ck, cv);
        next.MoveToOuterDisposeScope();
        return (y.MoveToOuterDisposeScope(), next);
    }

    /// <summary>fla's SwishFeatureMap / ReLUFeatureMap / T2RFeatureMap.</summary>
    Tensor FeatureMap(Tensor x) => Config.FeatureMap switch
    {
        "swish" => nn.functional.silu(x),
        "relu" => nn.functional.relu(x),
        "t2r" => feature_map!.call(x),
        var other => throw new NotSupportedException($"GSA feature map '{other}'"),
    };
}
