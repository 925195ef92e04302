using System.Text.Json.Nodes;
using StateX.IO;

namespace StateX.Power;

/// <summary>
/// The tiny power-attention language model's config.json (model_type "power_attention", StateX's own dialect: no
/// reference library writes this family's checkpoints). Keys follow fla's naming where a concept is shared.
/// </summary>
public sealed record PowerConfig
{
    public int HiddenSize { get; init; } = 256;
    public int NumHiddenLayers { get; init; } = 2;
    public int NumHeads { get; init; } = 4;
    /// <summary>d, the key/query/value width of a head.</summary>
    public int HeadDim { get; init; } = 16;
    /// <summary>p, even: scores are (q·k/√d)^p.</summary>
    public int Degree { get; init; } = 2;
    /// <summary>A learned scalar forget gate per head and step (the paper's gating).</summary>
    public bool Gating { get; init; } = true;
    public int ChunkSize { get; init; } = PowerAttention.DefaultChunkSize;
    public int? HiddenRatio { get; init; } = 4;
    public int? IntermediateSize { get; init; }
    public double NormEps { get; init; } = 1e-6;
    public bool TieWordEmbeddings { get; init; }
    public double InitializerRange { get; init; } = 0.02;
    public int VocabSize { get; init; } = 32000;
    public string? DType { get; init; }

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

    /// <summary>Elements of one layer's state per sequence: H·D·(d + 1), D = C(d + p − 1, p).</summary>
    public long StateElementsPerLayer => NumHeads * PowerAttention.StateElementsPerHead(HeadDim, HeadDim, Degree);

    public static PowerConfig FromJson(ConfigJson c, Action<string>? warn = null)
    {
        var modelType = c.String("model_type");
        if (modelType != "power_attention") throw new ConfigException($"{c.Path}: model_type is '{modelType ?? "absent"}', expected 'power_attention'");
        c.Ignore("architectures", "transformers_version", "_name_or_path");
        var cfg = new PowerConfig
        {
            HiddenSize = c.Int("hidden_size", 256),
            NumHiddenLayers = c.Int("num_hidden_layers", 2),
            NumHeads = c.Int("num_heads", 4),
            HeadDim = c.Int("head_dim", 16),
            Degree = c.Int("degree", 2),
            Gating = c.Bool("gating", true),
            ChunkSize = c.Int("chunk_size", PowerAttention.DefaultChunkSize),
            HiddenRatio = c.Root.ContainsKey("hidden_ratio") ? c.NullableInt("hidden_ratio") : 4,
            IntermediateSize = c.NullableInt("intermediate_size"),
            NormEps = c.Double("norm_eps", 1e-6),
            TieWordEmbeddings = c.Bool("tie_word_embeddings", false),
            InitializerRange = c.Double("initializer_range", 0.02),
            VocabSize = c.Int("vocab_size", 32000),
            DType = c.String("dtype"),
        };
        cfg.Validate(c.Path);
        if (c.UnknownKeysWarning() is { } w) warn?.Invoke(w);
        return cfg;
    }

    public void Validate(string path = "<config>")
    {
        void Fail(string key, string why) => throw new ConfigException($"{path}: '{key}' {why}");
        if (HiddenSize <= 0) Fail("hidden_size", "must be positive");
        if (NumHiddenLayers <= 0) Fail("num_hidden_layers", "must be positive");
        if (NumHeads <= 0) Fail("num_heads", "must be positive");
        if (HeadDim <= 0) Fail("head_dim", "must be positive");
        if (Degree <= 0 || Degree % 2 != 0) Fail("degree", $"= {Degree} must be a positive even number");
        if (ChunkSize <= 0) Fail("chunk_size", "must be positive");
        if (IntermediateSize is <= 0) Fail("intermediate_size", "must be positive");
        if (HiddenRatio is <= 0) Fail("hidden_ratio", "must be positive");
        if (VocabSize <= 0) Fail("vocab_size", "must be positive");
    }

    /// <summary>
    /// The parameters this configuration builds, by part, counted without building it (the terms match
    /// <see cref="PowerForCausalLM"/>'s modules one for one; a test holds the sum to the built model's count).
    /// Computed in doubles so that a config too large to build is still sized, and refused, by
    /// <see cref="Models.ParameterBudget"/>. The degree sets the state, not the parameters.
    /// </summary>
    public IReadOnlyList<Models.ParameterTerm> ParameterTerms()
    {
        double h = HiddenSize, heads = NumHeads, width = heads * HeadDim;
        double inter = IntermediateSize ?? 256 * Math.Ceiling(Math.Floor(h * (HiddenRatio ?? 4) * 2.0 / 3.0) / 256);
        double layer = 2 * h + 4 * h * width + (Gating ? h * heads + heads : 0) + 3 * h * inter;
        string size = $"hidden_size = {HiddenSize}";
        return
        [
            new("the embeddings", VocabSize * h, $"vocab_size = {VocabSize} × {size}"),
            new($"{NumHiddenLayers} layers", NumHiddenLayers * layer, $"num_hidden_layers = {NumHiddenLayers} × ({size}, num_heads = {NumHeads} × head_dim = {HeadDim}, MLP width {inter} from {(IntermediateSize is null ? $"hidden_ratio = {HiddenRatio ?? 4}" : "intermediate_size")})"),
            new("the final norm", h, size),
            new("the LM head", TieWordEmbeddings ? 0 : VocabSize * h, $"vocab_size = {VocabSize} × {size} (tie_word_embeddings = false)"),
        ];
    }

    public JsonObject ToJson() => new()
    {
        ["architectures"] = new JsonArray("PowerForCausalLM"),
        ["chunk_size"] = ChunkSize,
        ["degree"] = Degree,
        ["dtype"] = DType,
        ["gating"] = Gating,
        ["head_dim"] = HeadDim,
        ["hidden_ratio"] = HiddenRatio is { } r ? JsonValue.Create(r) : null,
        ["hidden_size"] = HiddenSize,
        ["initializer_range"] = InitializerRange,
        ["intermediate_size"] = IntermediateSize is { } i ? JsonValue.Create(i) : null,
        ["model_type"] = "power_attention",
        ["norm_eps"] = NormEps,
        ["num_heads"] = NumHeads,
        ["num_hidden_layers"] = NumHiddenLayers,
        ["tie_word_embeddings"] = TieWordEmbeddings,
        ["vocab_size"] = VocabSize,
    };
}
