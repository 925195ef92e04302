using System.Globalization;
using System.Text.Json.Nodes;
using StateX.IO;

namespace StateX.Mamba2;

/// <summary>
/// The shape and options of a Mamba2 language model, read from either checkpoint dialect (transformers'
/// <c>Mamba2Config</c> or mamba_ssm's <c>MambaConfig</c> + <c>ssm_cfg</c>) and always written in the transformers one.
/// </summary>
public sealed record Mamba2Config
{
    public int VocabSize { get; init; }
    public int HiddenSize { get; init; }
    public int NumLayers { get; init; }
    /// <summary>d_state N of every layer without an override.</summary>
    public int StateSize { get; init; } = 128;
    public int NumHeads { get; init; }
    public int HeadDim { get; init; } = 64;
    public int NGroups { get; init; } = 1;
    public int ConvKernel { get; init; } = 4;
    public int ChunkSize { get; init; } = 256;
    public bool UseBias { get; init; }
    public bool UseConvBias { get; init; } = true;
    public bool ResidualInFp32 { get; init; } = true;
    public bool TieWordEmbeddings { get; init; } = true;
    public double LayerNormEpsilon { get; init; } = 1e-5;
    public double TimeStepMin { get; init; } = 0.001;
    public double TimeStepMax { get; init; } = 0.1;
    public double TimeStepFloor { get; init; } = 1e-4;
    public double TimeStepLimitLow { get; init; }
    public double TimeStepLimitHigh { get; init; } = double.PositiveInfinity;
    /// <summary>Std of the embeddings' (and an untied head's) random initialisation: transformers' default 0.1, mamba_ssm's 0.02.</summary>
    public double InitializerRange { get; init; } = 0.1;
    /// <summary>
    /// Random initialisation divides each out_proj by √n_layer (GPT-2's scheme), so the residual stream does not grow
    /// with depth: mamba_ssm always does (<c>rescale_prenorm_residual=True</c>), transformers only when configured.
    /// </summary>
    public bool RescalePrenormResidual { get; init; }
    /// <summary>
    /// Gated RMSNorm per group of d_inner / n_groups channels (mamba_ssm) rather than over all of d_inner (transformers'
    /// torch path). Stored in config.json as <c>norm_per_group</c> when true; irrelevant when n_groups = 1.
    /// </summary>
    public bool NormPerGroup { get; init; }
    public int? PadTokenId { get; init; }
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }
    /// <summary>
    /// Per-layer d_state (StateX expansion widens chosen layers); null when every layer uses <see cref="StateSize"/>.
    /// Stored in config.json as <c>layer_state_sizes</c>.
    /// </summary>
    public IReadOnlyList<int>? LayerStateSizes { get; init; }

    /// <summary>expand · hidden_size = num_heads · head_dim (d_inner).</summary>
    public int IntermediateSize => NumHeads * HeadDim;

    public int StateSizeOf(int layer) => LayerStateSizes is { } l ? l[layer] : StateSize;

    /// <summary>Channels of the causal conv: x, B and C (d_inner + 2·G·N).</summary>
    public int ConvDim(int dState) => IntermediateSize + 2 * NGroups * dState;

    /// <summary>Throws a <see cref="ConfigException"/> naming the first inconsistency.</summary>
    public Mamba2Config Validate(string where = "Mamba2 config")
    {
        void Positive(string name, long v) { if (v <= 0) throw new ConfigException($"{where}: {name} must be positive, got {v}"); }
        Positive("vocab_size", VocabSize); Positive("hidden_size", HiddenSize); Positive("num_hidden_layers", NumLayers);
        Positive("state_size", StateSize); Positive("num_heads", NumHeads); Positive("head_dim", HeadDim);
        Positive("n_groups", NGroups); Positive("conv_kernel", ConvKernel); Positive("chunk_size", ChunkSize);
        if (NumHeads % NGroups != 0) throw new ConfigException($"{where}: num_heads ({NumHeads}) must be a multiple of n_groups ({NGroups})");
        if (LayerStateSizes is { } l)
        {
            if (l.Count != NumLayers) throw new ConfigException($"{where}: layer_state_sizes has {l.Count} entries for {NumLayers} layers");
            if (l.Any(n => n <= 0)) throw new ConfigException($"{where}: layer_state_sizes must be positive");
        }
        if (!(TimeStepLimitLow <= TimeStepLimitHigh)) throw new ConfigException($"{where}: time_step_limit ({TimeStepLimitLow}, {TimeStepLimitHigh}) is not an interval");
        return this;
    }

    /// <summary>
    /// The parameters this configuration builds, by part, counted without building it (the terms match
    /// <see cref="Mamba2ForCausalLM"/>'s modules one for one; a test holds the sum to the built model's count).
    /// Computed in doubles so that a config too large to build is still sized, and refused, by <see cref="Models.ParameterBudget"/>.
    /// Key names are transformers'; mamba_ssm's d_model, n_layer, d_state are the same numbers.
    /// </summary>
    public IReadOnlyList<Models.ParameterTerm> ParameterTerms()
    {
        double h = HiddenSize, inner = (double)NumHeads * HeadDim, heads = NumHeads, bias = UseBias ? 1 : 0;
        double layers = 0;
        for (int i = 0; i < NumLayers; i++)
        {
            double conv = inner + 2.0 * NGroups * StateSizeOf(i);
            double inProj = (h + bias) * (inner + conv + heads);
            layers += h + inProj + conv * (ConvKernel + (UseConvBias ? 1 : 0)) + 3 * heads + inner + (inner + bias) * h;
        }
        string size = $"hidden_size = {HiddenSize}";
        return
        [
            new("the embeddings", VocabSize * h, $"vocab_size = {VocabSize} × {size}"),
            new($"{NumLayers} layers", layers, $"num_hidden_layers = {NumLayers} × ({size}, num_heads = {NumHeads} × head_dim = {HeadDim}, state_size = {StateSize}, n_groups = {NGroups})"),
            new("the final norm", h, size),
            new("the LM head", TieWordEmbeddings ? 0 : VocabSize * h, $"vocab_size = {VocabSize} × {size} (tie_word_embeddings = false)"),
        ];
    }

    /// <summary>Keys of a transformers config that carry no model semantics here.</summary>
    static readonly string[] HfMetadataKeys =
    [
        "architectures", "model_type", "transformers_version", "dtype", "torch_dtype", "use_cache", "time_step_rank",
        "output_hidden_states", "output_attentions", "return_dict", "_name_or_path",
        "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "initializer_range",
    ];

    /// <summary>Reads transformers' <c>Mamba2Config</c> (model_type "mamba2").</summary>
    public static Mamba2Config FromHuggingFace(ConfigJson c)
    {
        c.Ignore(HfMetadataKeys);
        c.Refuse("hidden_act", n => n is not null && n.ToString() != "silu", "only the SiLU activation of Mamba2 is implemented");
        c.Refuse("rms_norm", n => n is not null && n.GetValueKind() == System.Text.Json.JsonValueKind.False, "the gated RMSNorm is always used");
        int hidden = c.Int("hidden_size", 768);
        double expand = c.Double("expand", 2);
        int headDim = c.Int("head_dim", 64);
        int inner = (int)(expand * hidden);
        int heads = c.Int("num_heads", inner / Math.Max(headDim, 1));
        if (heads * headDim != inner)
            throw new ConfigException($"{c.Path}: num_heads · head_dim = {heads} · {headDim} = {heads * headDim} but expand · hidden_size = {inner}");
        var (lo, hi) = TimeStepLimit(c, "time_step_limit");
        int layers = c.Int("num_hidden_layers", 64);
        var cfg = new Mamba2Config
        {
            VocabSize = c.Int("vocab_size", 32768),
            HiddenSize = hidden,
            NumLayers = layers,
            StateSize = c.Int("state_size", 128),
            NumHeads = heads,
            HeadDim = headDim,
            NGroups = c.Int("n_groups", 8),
            ConvKernel = c.Int("conv_kernel", 4),
            ChunkSize = c.Int("chunk_size", 256),
            UseBias = c.Bool("use_bias", false),
            UseConvBias = c.Bool("use_conv_bias", true),
            ResidualInFp32 = c.Bool("residual_in_fp32", true),
            TieWordEmbeddings = c.Bool("tie_word_embeddings", true),
            LayerNormEpsilon = c.Double("layer_norm_epsilon", 1e-5),
            TimeStepMin = c.Double("time_step_min", 0.001),
            TimeStepMax = c.Double("time_step_max", 0.1),
            TimeStepFloor = c.Double("time_step_floor", 1e-4),
            TimeStepLimitLow = lo,
            TimeStepLimitHigh = hi,
            InitializerRange = c.Double("initializer_range", 0.1),
            RescalePrenormResidual = c.Bool("rescale_prenorm_residual", false),
            PadTokenId = c.NullableInt("pad_token_id"),
            BosTokenId = c.NullableInt("bos_token_id"),
            EosTokenId = c.NullableInt("eos_token_id"),
            LayerStateSizes = c.Has("layer_state_sizes") ? c.Doubles("layer_state_sizes").Select(d => d == Math.Floor(d) && Math.Abs(d) <= int.MaxValue ? (int)d : throw new ConfigException($"{c.Path}: key 'layer_state_sizes' should hold integers, got {d}")).ToArray() : null,
            NormPerGroup = c.Bool("norm_per_group", false),
        };
        return cfg.Validate(c.Path);
    }

    /// <summary>
    /// Reads mamba_ssm's <c>MambaConfig</c> (d_model, n_layer, ssm_cfg, ...). Absent <c>ssm_cfg</c> keys take the
    /// defaults of <c>mamba_ssm.modules.mamba2.Mamba2</c>; the vocabulary is padded to <c>pad_vocab_size_multiple</c>.
    /// </summary>
    public static Mamba2Config FromMambaSsm(ConfigJson c, Action<string>? warn = null)
    {
        c.Refuse("attn_layer_idx", n => n is JsonArray a && a.Count > 0, "attention layers in a Mamba2 model are not implemented");
        c.Ignore("attn_cfg");
        c.Refuse("d_intermediate", n => n is not null && c.Long("d_intermediate") > 0, "MLP blocks between mixers are not implemented");
        c.Refuse("rms_norm", n => n is not null && n.GetValueKind() == System.Text.Json.JsonValueKind.False, "LayerNorm blocks are not implemented, only RMSNorm");
        c.Ignore("fused_add_norm"); // a kernel choice: same function either way
        var s = c.Section("ssm_cfg");
        string layer = s.String("layer", "Mamba1")!;
        if (layer != "Mamba2")
            throw new ConfigException($"{s.Path}: 'layer' = {ConfigJson.Show(JsonValue.Create(layer))} is not supported by StateX (only Mamba2; mamba_ssm's default when absent is Mamba1)");
        int dModel = c.Int("d_model");
        double expand = s.Double("expand", 2);
        int headDim = s.Int("headdim", 64);
        int inner = (int)(expand * dModel);
        s.Refuse("d_ssm", n => n is not null && s.Long("d_ssm") != inner, "d_ssm different from expand · d_model (a gated MLP beside the SSM) is not implemented");
        if (inner % headDim != 0) throw new ConfigException($"{s.Path}: expand · d_model = {inner} is not a multiple of headdim {headDim}");
        s.Refuse("rmsnorm", n => n is not null && n.GetValueKind() == System.Text.Json.JsonValueKind.False, "the ungated variant without RMSNorm is not implemented");
        s.Refuse("norm_before_gate", n => n is not null && n.GetValueKind() == System.Text.Json.JsonValueKind.True, "only norm_before_gate = false (normalise y · silu(z)) is implemented");
        s.Refuse("D_has_hdim", n => n is not null && n.GetValueKind() == System.Text.Json.JsonValueKind.True, "only one D per head is implemented");
        s.Refuse("learnable_init_states", n => n is not null && n.GetValueKind() == System.Text.Json.JsonValueKind.True, "learnable initial states are not implemented");
        s.Refuse("activation", n => n is not null && n.ToString() != "silu" && n.ToString() != "swish", "only the SiLU activation is implemented");
        s.Ignore("A_init_range", "conv_init", "use_mem_eff_path", "layer_idx", "process_group", "sequence_parallel", "device", "dtype");
        var (lo, hi) = s.Has("dt_limit") ? TimeStepLimit(s, "dt_limit") : (0.0, double.PositiveInfinity);
        int vocab = c.Int("vocab_size");
        int multiple = c.Int("pad_vocab_size_multiple", 8);
        if (multiple > 1 && vocab % multiple != 0) vocab += multiple - vocab % multiple;
        var cfg = new Mamba2Config
        {
            VocabSize = vocab,
            HiddenSize = dModel,
            NumLayers = c.Int("n_layer"),
            StateSize = s.Int("d_state", 128),
            NumHeads = inner / headDim,
            HeadDim = headDim,
            NGroups = s.Int("ngroups", 1),
            ConvKernel = s.Int("d_conv", 4),
            ChunkSize = s.Int("chunk_size", 256),
            UseBias = s.Bool("bias", false),
            UseConvBias = s.Bool("conv_bias", true),
            ResidualInFp32 = c.Bool("residual_in_fp32", true),
            TieWordEmbeddings = c.Bool("tie_embeddings", true),
            LayerNormEpsilon = c.Double("norm_epsilon", 1e-5),
            TimeStepMin = s.Double("dt_min", 0.001),
            TimeStepMax = s.Double("dt_max", 0.1),
            TimeStepFloor = s.Double("dt_init_floor", 1e-4),
            TimeStepLimitLow = lo,
            TimeStepLimitHigh = hi,
            LayerStateSizes = c.Has("layer_state_sizes") ? c.Doubles("layer_state_sizes").Select(d => d == Math.Floor(d) && Math.Abs(d) <= int.MaxValue ? (int)d : throw new ConfigException($"{c.Path}: key 'layer_state_sizes' should hold integers, got {d}")).ToArray() : null,
            NormPerGroup = true,
            // mamba_ssm's _init_weights: N(0, 0.02) embeddings, out_proj rescaled by 1/√n_layer (random init only).
            InitializerRange = 0.02,
            RescalePrenormResidual = true,
        };
        if (s.UnknownKeysWarning() is { } w) warn?.Invoke(w);
        return cfg.Validate(c.Path);
    }

    static (double Lo, double Hi) TimeStepLimit(ConfigJson c, string key)
    {
        if (!c.Has(key)) { c.Ignore(key); return (0.0, double.PositiveInfinity); }
        var v = c.Doubles(key);
        if (v.Length != 2) throw new ConfigException($"{c.Path}: '{key}' should be [low, high], got {v.Length} values");
        return (v[0], v[1]);
    }

    /// <summary>transformers' config.json for this model (what <c>Save</c> writes).</summary>
    public JsonObject ToHuggingFace()
    {
        static JsonNode Num(double d) => double.IsPositiveInfinity(d)
            ? new JsonObject { ["__float__"] = "Infinity" }
            : JsonValue.Create(d);
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("Mamba2ForCausalLM"),
            ["model_type"] = "mamba2",
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["num_hidden_layers"] = NumLayers,
            ["state_size"] = StateSize,
            ["expand"] = IntermediateSize % HiddenSize == 0 ? (JsonNode)(IntermediateSize / HiddenSize) : (double)IntermediateSize / HiddenSize,
            ["num_heads"] = NumHeads,
            ["head_dim"] = HeadDim,
            ["n_groups"] = NGroups,
            ["conv_kernel"] = ConvKernel,
            ["chunk_size"] = ChunkSize,
            ["use_bias"] = UseBias,
            ["use_conv_bias"] = UseConvBias,
            ["hidden_act"] = "silu",
            ["residual_in_fp32"] = ResidualInFp32,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["layer_norm_epsilon"] = LayerNormEpsilon,
            ["time_step_min"] = TimeStepMin,
            ["time_step_max"] = TimeStepMax,
            ["time_step_floor"] = TimeStepFloor,
            ["time_step_limit"] = new JsonArray(Num(TimeStepLimitLow), Num(TimeStepLimitHigh)),
            ["initializer_range"] = InitializerRange,
            ["rescale_prenorm_residual"] = RescalePrenormResidual,
            ["rms_norm"] = true,
        };
        if (PadTokenId is { } p) o["pad_token_id"] = p;
        if (BosTokenId is { } b) o["bos_token_id"] = b;
        if (EosTokenId is { } e) o["eos_token_id"] = e;
        if (NormPerGroup && NGroups > 1) o["norm_per_group"] = true;
        if (LayerStateSizes is { } l) o["layer_state_sizes"] = new JsonArray(l.Select(n => (JsonNode)n).ToArray());
        return o;
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"Mamba2(d={HiddenSize}, layers={NumLayers}, heads={NumHeads}×{HeadDim}, N={StateSize}, groups={NGroups}, vocab={VocabSize})");
}
