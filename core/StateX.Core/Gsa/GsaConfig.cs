using System.Text.Json.Nodes;
using StateX.IO;

namespace StateX.Gsa;

/// <summary>
/// fla's <c>GSAConfig</c> (fla/models/gsa/configuration_gsa.py, model_type "gsa"): every key fla writes, read with
/// bookkeeping so unknown keys are reported once and settings StateX does not implement are refused by name.
/// Defaults are fla's. <see cref="ToJson"/> writes the same dialect back.
/// </summary>
public sealed record GsaConfig
{
    public int HiddenSize { get; init; } = 2048;
    /// <summary>fla's constructor spells the arguments <c>exapnd_k</c>/<c>exapnd_v</c> but stores (and so writes) <c>expand_k</c>/<c>expand_v</c>.</summary>
    public double ExpandK { get; init; } = 1.0;
    public double ExpandV { get; init; } = 1.0;
    public int? HiddenRatio { get; init; } = 4;
    public int? IntermediateSize { get; init; }
    public int NumHiddenLayers { get; init; } = 24;
    public int NumHeads { get; init; } = 4;
    public int? NumKvHeads { get; init; }
    /// <summary>Memory slots per head, M; null = head_k_dim (fla's GatedSlotAttention rule).</summary>
    public int? NumSlots { get; init; } = 64;
    public bool UseShortConv { get; init; }
    public int ConvSize { get; init; } = 4;
    /// <summary>"swish", "relu" or "t2r" (fla/layers/gsa.py accepts no other), applied to q and k.</summary>
    public string FeatureMap { get; init; } = "swish";
    /// <summary>Stored by fla but not read by its layer's forward (fla/layers/gsa.py): kept only to write back.</summary>
    public bool UseOutputGate { get; init; }
    /// <summary>Stored by fla but not read by its layer: the output RMSNorm is always applied.</summary>
    public bool UseNorm { get; init; } = true;
    /// <summary>Not passed to fla's GatedSlotAttention (fla/models/gsa/modeling_gsa.py): no effect, kept to write back.</summary>
    public double? ClampMin { get; init; }
    /// <summary>As <see cref="ClampMin"/>.</summary>
    public double? ClampMax { get; init; }
    public string HiddenAct { get; init; } = "swish";
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public bool ElementwiseAffine { get; init; } = true;
    public double NormEps { get; init; } = 1e-6;
    public double GateLogitNormalizer { get; init; } = 8;
    public bool UseCache { get; init; } = true;
    public int? PadTokenId { get; init; }
    public int? BosTokenId { get; init; } = 1;
    public int? EosTokenId { get; init; } = 2;
    public bool TieWordEmbeddings { get; init; }
    public double InitializerRange { get; init; } = 0.02;
    public bool FuseNorm { get; init; } = true;
    public bool FuseSwiglu { get; init; } = true;
    public bool FuseCrossEntropy { get; init; } = true;
    public bool FuseLinearCrossEntropy { get; init; }
    public int VocabSize { get; init; } = 32000;
    /// <summary>"float32", "bfloat16", ... as written by transformers (dtype / torch_dtype); informational.</summary>
    public string? DType { get; init; }
    /// <summary>
    /// Slots of each layer when they differ from <see cref="NumSlots"/> (StateX slot expansion); null = uniform.
    /// Stored in config.json as <c>statex_layer_num_slots</c>.
    /// </summary>
    public IReadOnlyList<int>? LayerNumSlots { get; init; }

    public int KeyDim => (int)(HiddenSize * ExpandK);
    public int ValueDim => (int)(HiddenSize * ExpandV);
    public int HeadKDim => KeyDim / NumHeads;
    public int HeadVDim => ValueDim / NumHeads;

    public int SlotsOf(int layer) => LayerNumSlots is { } l ? l[layer] : NumSlots ?? HeadKDim;

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

    static readonly string[] FeatureMaps = ["swish", "relu", "t2r"];
    static readonly string[] Acts = ["swish", "silu"];

    /// <summary>Reads fla's config.json; <paramref name="warn"/> receives one line listing unknown keys.</summary>
    public static GsaConfig FromJson(ConfigJson c, Action<string>? warn = null)
    {
        var modelType = c.String("model_type");
        if (modelType != "gsa") throw new ConfigException($"{c.Path}: model_type is '{modelType ?? "absent"}', expected 'gsa'");
        c.Ignore("architectures", "transformers_version", "_name_or_path", "output_attentions", "output_hidden_states", "return_dict");
        c.Refuse("attn", n => n is not null, "hybrid softmax-attention layers");
        c.Refuse("attnres_block_size", n => n is not null, "attention-residual blocks");
        c.Refuse("use_l2warp", n => n?.GetValue<bool>() == true, "the l2-warp loss term");
        c.Refuse("feature_map", n => n is null ? c.Root.ContainsKey("feature_map") : !FeatureMaps.Contains(n.ToString()),
            $"feature maps other than {string.Join(", ", FeatureMaps)}; fla's GatedSlotAttention raises on any other");
        c.Refuse("hidden_act", n => n is not null && !Acts.Contains(n.ToString()), "activations other than swish/silu");
        // fla's constructor argument is misspelt exapnd_k; a config written by hand with that spelling means the same.
        double Expand(string key, string typo) => c.Root.ContainsKey(key) ? c.Double(key, 1.0) : c.Double(typo, 1.0);
        var cfg = new GsaConfig
        {
            HiddenSize = c.Int("hidden_size", 2048),
            ExpandK = Expand("expand_k", "exapnd_k"),
            ExpandV = Expand("expand_v", "exapnd_v"),
            HiddenRatio = c.Root.ContainsKey("hidden_ratio") ? c.NullableInt("hidden_ratio") : 4,
            IntermediateSize = c.NullableInt("intermediate_size"),
            NumHiddenLayers = c.Int("num_hidden_layers", 24),
            NumHeads = c.Int("num_heads", 4),
            NumKvHeads = c.NullableInt("num_kv_heads"),
            NumSlots = c.Root.ContainsKey("num_slots") ? c.NullableInt("num_slots") : 64,
            UseShortConv = c.Bool("use_short_conv", false),
            ConvSize = c.Int("conv_size", 4),
            FeatureMap = c.String("feature_map", "swish")!,
            UseOutputGate = c.Bool("use_output_gate", false),
            UseNorm = c.Bool("use_norm", true),
            ClampMin = c.NullableDouble("clamp_min"),
            ClampMax = c.NullableDouble("clamp_max"),
            HiddenAct = c.String("hidden_act", "swish")!,
            MaxPositionEmbeddings = c.Int("max_position_embeddings", 2048),
            ElementwiseAffine = c.Node("elementwise_affine") is null || c.Bool("elementwise_affine"),
            NormEps = c.Double("norm_eps", 1e-6),
            GateLogitNormalizer = c.Node("gate_logit_normalizer") is null ? 8 : c.Double("gate_logit_normalizer"),
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
            LayerNumSlots = c.Node("statex_layer_num_slots") is JsonArray ? c.Doubles("statex_layer_num_slots").Select((d, i) => d == Math.Floor(d) && Math.Abs(d) <= int.MaxValue ? (int)d
                : throw new ConfigException($"{c.Path}: key 'statex_layer_num_slots[{i}]' should be an integer, got {d}")).ToArray() : null,
        };
        cfg.Validate(c.Path);
        if (c.UnknownKeysWarning() is { } w) warn?.Invoke(w);
        return cfg;
    }

    /// <summary>Checks the shape rules fla's modules need, naming the key at fault.</summary>
    public void Validate(string path = "<config>")
    {
        void Fail(string key, string why) => throw new ConfigException($"{path}: '{key}' {why}");
        if (HiddenSize <= 0) Fail("hidden_size", "must be positive");
        if (NumHiddenLayers <= 0) Fail("num_hidden_layers", "must be positive");
        if (VocabSize <= 0) Fail("vocab_size", "must be positive");
        if (NumHeads <= 0) Fail("num_heads", "must be positive");
        if (KeyDim <= 0 || KeyDim % NumHeads != 0) Fail("num_heads", $"= {NumHeads} does not divide the key dim {KeyDim} (hidden_size·expand_k)");
        if (ValueDim <= 0 || ValueDim % NumHeads != 0) Fail("num_heads", $"= {NumHeads} does not divide the value dim {ValueDim} (hidden_size·expand_v)");
        // fla/layers/gsa.py normalises the value_dim-wide output with RMSNorm(hidden_size): the widths must agree.
        if (ValueDim != HiddenSize) Fail("expand_v", $"= {ExpandV} gives value dim {ValueDim}; fla's GSA output norm is hidden_size = {HiddenSize} wide, so expand_v must be 1");
        int kv = NumKvHeads ?? NumHeads;
        if (kv <= 0 || NumHeads % kv != 0) Fail("num_kv_heads", $"= {kv} does not divide num_heads = {NumHeads}");
        if (NumSlots is <= 0) Fail("num_slots", "must be positive");
        if (IntermediateSize is <= 0) Fail("intermediate_size", "must be positive");
        if (HiddenRatio is <= 0) Fail("hidden_ratio", "must be positive");
        if (LayerNumSlots is { } l)
        {
            if (l.Count != NumHiddenLayers) Fail("statex_layer_num_slots", $"lists {l.Count} layers, the model has {NumHiddenLayers}");
            if (l.Any(m => m <= 0)) Fail("statex_layer_num_slots", "must all be positive");
        }
        if (!FeatureMaps.Contains(FeatureMap)) Fail("feature_map", $"= \"{FeatureMap}\" is not one of {string.Join(", ", FeatureMaps)}");
        if (UseShortConv && ConvSize < 1) Fail("conv_size", "must be at least 1");
        if (GateLogitNormalizer == 0) Fail("gate_logit_normalizer", "must not be 0");
    }

    /// <summary>
    /// The parameters this configuration builds, by part, counted without building it (the terms match
    /// <see cref="GsaForCausalLM"/>'s modules one for one; a test holds the sum to the built model's count).
    /// Computed in doubles from the keys themselves (not <see cref="KeyDim"/> or <see cref="MlpIntermediateSize"/>,
    /// which are ints) so that a config too large to build is still sized, and refused, by
    /// <see cref="Models.ParameterBudget"/>. The slot gates (f_proj, the only part that grows with num_slots) are a
    /// term of their own, so that a slot count too large is named as such.
    /// </summary>
    public IReadOnlyList<Models.ParameterTerm> ParameterTerms()
    {
        double h = HiddenSize, k = Math.Floor(HiddenSize * ExpandK), v = Math.Floor(HiddenSize * ExpandV);
        double heads = NumHeads, kv = NumKvHeads ?? NumHeads, dk = Math.Floor(k / heads), kg = kv * dk, vg = kv * Math.Floor(v / heads);
        double inter = IntermediateSize ?? 256 * Math.Ceiling(Math.Floor(h * (HiddenRatio ?? 4) * 2.0 / 3.0) / 256);
        double layers = 0, gates = 0;
        for (int i = 0; i < NumHiddenLayers; i++)
        {
            double slots = LayerNumSlots is { } l ? l[i] : NumSlots ?? dk;
            gates += h * kv * slots;
            double attn = h * k + h * kg + h * vg + v * h + (UseShortConv ? (k + kg + vg) * ConvSize : 0)
                + (FeatureMap == "t2r" ? dk * dk : 0) + (ElementwiseAffine ? h : 0);
            layers += 2 * h + attn + 3 * h * inter;
        }
        string size = $"hidden_size = {HiddenSize}";
        string slotKeys = LayerNumSlots is { } per
            ? $"statex_layer_num_slots = [{string.Join(", ", per)}]"
            : NumSlots is { } m ? $"num_slots = {m}" : $"num_slots = head_k_dim = {dk}";
        return
        [
            new("the embeddings", VocabSize * h, $"vocab_size = {VocabSize} × {size}"),
            new($"{NumHiddenLayers} layers", layers, $"num_hidden_layers = {NumHiddenLayers} × ({size}, expand_k = {ExpandK}, num_heads = {NumHeads}, MLP width {inter} from {(IntermediateSize is null ? $"hidden_ratio = {HiddenRatio ?? 4}" : "intermediate_size")})"),
            new($"the slot gates of {NumHiddenLayers} layers", gates, $"{slotKeys} × num_kv_heads = {kv} × {size} × num_hidden_layers = {NumHiddenLayers}"),
            new("the final norm", h, size),
            new("the LM head", TieWordEmbeddings ? 0 : VocabSize * h, $"vocab_size = {VocabSize} × {size} (tie_word_embeddings = false)"),
        ];
    }

    /// <summary>fla's config.json for this configuration (keys as GSAConfig stores them).</summary>
    public JsonObject ToJson()
    {
        static JsonNode? N<T>(T? v) where T : struct => v is { } x ? JsonValue.Create(x) : null;
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("GSAForCausalLM"),
            ["attn"] = null,
            ["attnres_block_size"] = null,
            ["bos_token_id"] = N(BosTokenId),
            ["clamp_max"] = N(ClampMax),
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
            ["gate_logit_normalizer"] = GateLogitNormalizer,
            ["hidden_act"] = HiddenAct,
            ["hidden_ratio"] = N(HiddenRatio),
            ["hidden_size"] = HiddenSize,
            ["initializer_range"] = InitializerRange,
            ["intermediate_size"] = N(IntermediateSize),
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["model_type"] = "gsa",
            ["norm_eps"] = NormEps,
            ["num_heads"] = NumHeads,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_kv_heads"] = N(NumKvHeads),
            ["num_slots"] = N(NumSlots),
            ["pad_token_id"] = N(PadTokenId),
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["use_cache"] = UseCache,
            ["use_l2warp"] = false,
            ["use_norm"] = UseNorm,
            ["use_output_gate"] = UseOutputGate,
            ["use_short_conv"] = UseShortConv,
            ["vocab_size"] = VocabSize,
        };
        if (LayerNumSlots is { } l) o["statex_layer_num_slots"] = new JsonArray(l.Select(m => (JsonNode)m).ToArray());
        return o;
    }
}
