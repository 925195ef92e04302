using System.Text.Json.Nodes;
using StateX.IO;

namespace StateX.Gla;

/// <summary>
/// fla's <c>GLAConfig</c> (model_type "gla"): every key fla writes, read with bookkeeping so unknown keys are
/// reported once and settings StateX does not implement are refused by name. <see cref="ToJson"/> writes the
/// same dialect back.
/// </summary>
public sealed record GlaConfig
{
    public int HiddenSize { get; init; } = 2048;
    public double ExpandK { get; init; } = 0.5;
    public double ExpandV { get; init; } = 1.0;
    public int? HiddenRatio { get; init; } = 4;
    public int? IntermediateSize { get; init; }
    public int NumHiddenLayers { get; init; } = 24;
    public int NumHeads { get; init; } = 4;
    public int? NumKvHeads { get; init; }
    /// <summary>null, "relu", "sigmoid", "swish"/"silu" (applied to q and k after the projections).</summary>
    public string? FeatureMap { get; init; }
    /// <summary>fla's kernel choice; all modes compute the same function, kept only to write it back.</summary>
    public string AttnMode { get; init; } = "chunk";
    public bool UseShortConv { get; init; }
    public int ConvSize { get; init; } = 4;
    public bool ConvBias { get; init; }
    public bool UseOutputGate { get; init; } = true;
    public double? ClampMin { get; init; }
    public string HiddenAct { get; init; } = "swish";
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public bool ElementwiseAffine { get; init; } = true;
    public double NormEps { get; init; } = 1e-6;
    public double GateLogitNormalizer { get; init; } = 16;
    public int GateLowRankDim { get; init; } = 16;
    public bool UseCache { get; init; } = true;
    public int? PadTokenId { get; init; }
    public int? BosTokenId { get; init; } = 1;
    public int? EosTokenId { get; init; } = 2;
    public bool TieWordEmbeddings { get; init; }
    public double InitializerRange { get; init; } = 0.02;
    /// <summary>Chooses fla's fused norm modules, which changes parameter names (g_norm_swish_gate vs g_norm).</summary>
    public bool FuseNorm { get; init; } = true;
    public bool FuseSwiglu { get; init; } = true;
    public bool FuseCrossEntropy { get; init; } = true;
    public bool FuseLinearCrossEntropy { get; init; }
    public int VocabSize { get; init; } = 32000;
    /// <summary>"float32", "bfloat16", ... as written by transformers (dtype / torch_dtype); informational.</summary>
    public string? DType { get; init; }
    /// <summary>
    /// Heads of each layer when they differ from <see cref="NumHeads"/> (StateX head merging); null = uniform.
    /// Stored in config.json as <c>statex_layer_num_heads</c>.
    /// </summary>
    public IReadOnlyList<int>? LayerNumHeads { get; init; }

    public int KeyDim => (int)(HiddenSize * ExpandK);
    public int ValueDim => (int)(HiddenSize * ExpandV);

    public int HeadsOf(int layer) => LayerNumHeads is { } l ? l[layer] : NumHeads;

    /// <summary>fla's GatedMLP rule: 2/3 of hidden·ratio, rounded up to a multiple of 256, unless given.</summary>
    public int MlpIntermediateSize
    {
        get
        {
            if (IntermediateSize is { } i) return i;
            int n = (int)(HiddenSize * (HiddenRatio ?? 4) * 2.0 / 3.0);
            return 256 * ((n + 255) / 256);
        }
    }

    static readonly string[] FeatureMaps = ["relu", "sigmoid", "swish", "silu"];
    static readonly string[] GateActs = ["swish", "silu"];

    /// <summary>Reads fla's config.json; <paramref name="warn"/> receives one line listing unknown keys.</summary>
    public static GlaConfig FromJson(ConfigJson c, Action<string>? warn = null)
    {
        var modelType = c.String("model_type");
        if (modelType != "gla") throw new ConfigException($"{c.Path}: model_type is {(modelType is null ? "absent" : ConfigJson.Show(JsonValue.Create(modelType)))}, expected 'gla'");
        c.Ignore("architectures", "transformers_version", "_name_or_path", "output_attentions", "output_hidden_states", "return_dict");
        c.Refuse("attn", n => n is not null, "hybrid softmax-attention layers");
        c.Refuse("attnres_block_size", n => n is not null, "attention-residual blocks");
        c.Refuse("use_gv", n => n?.GetValue<bool>() == true, "value gates; fla's GLA layer does not use them either");
        c.Refuse("use_gk", n => n?.GetValue<bool>() == false, "GLA without key gates; fla's GLA layer always uses them");
        c.Refuse("use_l2warp", n => n?.GetValue<bool>() == true, "the l2-warp loss term");
        c.Refuse("feature_map", n => n is not null && !FeatureMaps.Contains(n.ToString()), $"feature maps other than {string.Join(", ", FeatureMaps)}");
        c.Refuse("hidden_act", n => n is not null && !GateActs.Contains(n.ToString()), "activations other than swish/silu");
        var mode = c.String("attn_mode", "chunk")!;
        if (mode is not ("chunk" or "fused_recurrent" or "fused_chunk"))
            throw new ConfigException($"{c.Path}: 'attn_mode' = {ConfigJson.Show(JsonValue.Create(mode))} is not one of fla's GLA modes (chunk, fused_recurrent, fused_chunk)");
        var cfg = new GlaConfig
        {
            HiddenSize = c.Int("hidden_size", 2048),
            ExpandK = c.Double("expand_k", 0.5),
            ExpandV = c.Double("expand_v", 1.0),
            HiddenRatio = c.Root.ContainsKey("hidden_ratio") ? c.NullableInt("hidden_ratio") : 4,
            IntermediateSize = c.NullableInt("intermediate_size"),
            NumHiddenLayers = c.Int("num_hidden_layers", 24),
            NumHeads = c.Int("num_heads", 4),
            NumKvHeads = c.NullableInt("num_kv_heads"),
            FeatureMap = c.Node("feature_map") is null ? null : c.String("feature_map"),
            AttnMode = mode,
            UseShortConv = c.Bool("use_short_conv", false),
            ConvSize = c.Int("conv_size", 4),
            ConvBias = c.Bool("conv_bias", false),
            UseOutputGate = c.Bool("use_output_gate", true),
            ClampMin = c.NullableDouble("clamp_min"),
            HiddenAct = c.String("hidden_act", "swish")!,
            MaxPositionEmbeddings = c.Int("max_position_embeddings", 2048),
            ElementwiseAffine = c.Node("elementwise_affine") is null || c.Bool("elementwise_affine"),
            NormEps = c.Double("norm_eps", 1e-6),
            GateLogitNormalizer = c.Double("gate_logit_normalizer", 16),
            GateLowRankDim = c.Int("gate_low_rank_dim", 16),
            UseCache = c.Bool("use_cache", true),
            PadTokenId = c.NullableInt("pad_token_id"),
            BosTokenId = c.NullableInt("bos_token_id"),
            EosTokenId = c.NullableInt("eos_token_id"),
            TieWordEmbeddings = c.Bool("tie_word_embeddings", false),
            InitializerRange = c.Double("initializer_range", 0.02),
            FuseNorm = c.Bool("fuse_norm", true),
            FuseSwiglu = c.Bool("fuse_swiglu", true),
            FuseCrossEntropy = c.Bool("fuse_cross_entropy", true),
            FuseLinearCrossEntropy = c.Bool("fuse_linear_cross_entropy", false),
            VocabSize = c.Int("vocab_size", 32000),
            DType = c.String("dtype") ?? c.String("torch_dtype"),
            LayerNumHeads = c.Node("statex_layer_num_heads") is JsonArray ? c.Doubles("statex_layer_num_heads").Select((d, i) => d == Math.Floor(d) && Math.Abs(d) <= int.MaxValue ? (int)d
                : throw new ConfigException($"{c.Path}: key 'statex_layer_num_heads[{i}]' should be an integer, got {d}")).ToArray() : null,
        };
        cfg.Validate(c.Path);
        if (c.UnknownKeysWarning() is { } w) warn?.Invoke(w);
        return cfg;
    }

    /// <summary>Checks the shape rules fla asserts, naming the key at fault.</summary>
    public void Validate(string path = "<config>")
    {
        void Fail(string key, string why) => throw new ConfigException($"{path}: '{key}' {why}");
        if (HiddenSize <= 0) Fail("hidden_size", "must be positive");
        if (NumHiddenLayers <= 0) Fail("num_hidden_layers", "must be positive");
        if (VocabSize <= 0) Fail("vocab_size", "must be positive");
        // As for GSA and power attention: a non-positive MLP width otherwise reaches libtorch as a tensor size.
        if (IntermediateSize is <= 0) Fail("intermediate_size", "must be positive");
        if (HiddenRatio is <= 0) Fail("hidden_ratio", "must be positive");
        if (LayerNumHeads is { } l && l.Count != NumHiddenLayers)
            Fail("statex_layer_num_heads", $"lists {l.Count} layers, the model has {NumHiddenLayers}");
        for (int i = 0; i < NumHiddenLayers; i++)
        {
            int h = HeadsOf(i);
            string key = LayerNumHeads is null ? "num_heads" : "statex_layer_num_heads";
            if (h <= 0) Fail(key, "must be positive");
            if (KeyDim % h != 0) Fail(key, $"= {h} does not divide the key dim {KeyDim} (hidden_size·expand_k)");
            if (ValueDim % h != 0) Fail(key, $"= {h} does not divide the value dim {ValueDim} (hidden_size·expand_v)");
            int kv = NumKvHeads ?? h;
            if (kv <= 0 || h % kv != 0) Fail("num_kv_heads", $"= {kv} does not divide num_heads = {h}");
        }
        if (UseShortConv && ConvSize < 1) Fail("conv_size", "must be at least 1");
        if (GateLogitNormalizer == 0) Fail("gate_logit_normalizer", "must not be 0");
    }

    /// <summary>
    /// The parameters this configuration builds, by part, counted without building it (the terms match
    /// <see cref="GlaForCausalLM"/>'s modules one for one; a test holds the sum to the built model's count).
    /// Computed in doubles so that a config too large to build is still sized, and refused, by <see cref="Models.ParameterBudget"/>.
    /// </summary>
    public IReadOnlyList<Models.ParameterTerm> ParameterTerms()
    {
        double h = HiddenSize, k = Math.Floor(HiddenSize * ExpandK), v = Math.Floor(HiddenSize * ExpandV), r = GateLowRankDim;
        double inter = IntermediateSize ?? 256 * Math.Ceiling(Math.Floor(h * (HiddenRatio ?? 4) * 2.0 / 3.0) / 256);
        double layers = 0;
        for (int i = 0; i < NumHiddenLayers; i++)
        {
            double heads = HeadsOf(i), groups = heads / (NumKvHeads ?? heads), kg = k / groups, vg = v / groups;
            double attn = h * k + h * kg + h * vg + (UseOutputGate ? h * v : 0) + h * r + r * kg + kg + v * h + (ElementwiseAffine ? v / heads : 0);
            double conv = UseShortConv ? (k + kg + vg) * (ConvSize + (ConvBias ? 1 : 0)) : 0;
            layers += 2 * h + attn + conv + 3 * h * inter;
        }
        string size = $"hidden_size = {HiddenSize}";
        return
        [
            new("the embeddings", VocabSize * h, $"vocab_size = {VocabSize} × {size}"),
            new($"{NumHiddenLayers} layers", layers, $"num_hidden_layers = {NumHiddenLayers} × ({size}, expand_k = {ExpandK}, expand_v = {ExpandV}, MLP width {inter} from {(IntermediateSize is null ? $"hidden_ratio = {HiddenRatio ?? 4}" : "intermediate_size")})"),
            new("the final norm", h, size),
            new("the LM head", TieWordEmbeddings ? 0 : VocabSize * h, $"vocab_size = {VocabSize} × {size} (tie_word_embeddings = false)"),
        ];
    }

    /// <summary>fla's config.json for this configuration (keys as fla writes them).</summary>
    public JsonObject ToJson()
    {
        static JsonNode? N<T>(T? v) where T : struct => v is { } x ? JsonValue.Create(x) : null;
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("GLAForCausalLM"),
            ["attn"] = null,
            ["attn_mode"] = AttnMode,
            ["attnres_block_size"] = null,
            ["bos_token_id"] = N(BosTokenId),
            ["clamp_min"] = N(ClampMin),
            ["conv_size"] = ConvSize,
            ["dtype"] = DType,
            ["elementwise_affine"] = ElementwiseAffine,
            ["eos_token_id"] = N(EosTokenId),
            ["expand_k"] = ExpandK,
            ["expand_v"] = ExpandV,
            ["feature_map"] = FeatureMap,
            ["fuse_cross_entropy"] = FuseCrossEntropy,
            ["fuse_linear_cross_entropy"] = FuseLinearCrossEntropy,
            ["fuse_norm"] = FuseNorm,
            ["fuse_swiglu"] = FuseSwiglu,
            ["hidden_act"] = HiddenAct,
            ["hidden_ratio"] = N(HiddenRatio),
            ["hidden_size"] = HiddenSize,
            ["initializer_range"] = InitializerRange,
            ["intermediate_size"] = N(IntermediateSize),
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["model_type"] = "gla",
            ["norm_eps"] = NormEps,
            ["num_heads"] = NumHeads,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_kv_heads"] = N(NumKvHeads),
            ["pad_token_id"] = N(PadTokenId),
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["use_cache"] = UseCache,
            ["use_gk"] = true,
            ["use_gv"] = false,
            ["use_l2warp"] = false,
            ["use_output_gate"] = UseOutputGate,
            ["use_short_conv"] = UseShortConv,
            ["vocab_size"] = VocabSize,
        };
        // Keys fla's GLAConfig does not take as arguments are written only when they differ from its layer defaults.
        if (ConvBias) o["conv_bias"] = true;
        if (GateLogitNormalizer != 16) o["gate_logit_normalizer"] = GateLogitNormalizer;
        if (GateLowRankDim != 16) o["gate_low_rank_dim"] = GateLowRankDim;
        if (LayerNumHeads is { } l) o["statex_layer_num_heads"] = new JsonArray(l.Select(h => (JsonNode)h).ToArray());
        return o;
    }
}
