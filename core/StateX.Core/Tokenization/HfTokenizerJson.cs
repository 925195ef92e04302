using System.Text.Json.Nodes;

namespace StateX.Tokenization;

/// <summary>
/// The parts of a Hugging Face tokenizer.json (plus tokenizer_config.json / special_tokens_map.json beside it)
/// that decide how ids come out: model kind, vocabulary, merges, added tokens, and the template that
/// <c>add_special_tokens</c> applies.
/// </summary>
internal sealed class HfTokenizerJson
{
    public required string Path { get; init; }
    public required string ModelType { get; init; }
    public required JsonObject Model { get; init; }
    public required JsonNode? Normalizer { get; init; }
    public required JsonNode? PreTokenizer { get; init; }
    public required JsonNode? Decoder { get; init; }
    public required AddedToken[] AddedTokens { get; init; }
    /// <summary>Special-token ids put before / after the text by the "single" template of the post-processor.</summary>
    public required int[] TemplatePrefix { get; init; }
    public required int[] TemplateSuffix { get; init; }
    /// <summary>bos/eos/pad token strings from tokenizer_config.json or special_tokens_map.json, when given.</summary>
    public required Dictionary<string, string> NamedSpecials { get; init; }

    public bool IsByteLevel =>
        TypeOf(PreTokenizer) == "ByteLevel" || TypeOf(Decoder) == "ByteLevel" || ContainsType(PreTokenizer, "ByteLevel");

    public bool ByteFallback => Model["byte_fallback"]?.GetValue<bool>() ?? false;

    public static HfTokenizerJson Read(string path)
    {
        JsonObject root;
        try { root = IO.JsonErrors.Parse(File.ReadAllText(path))?.AsObject() ?? throw new TokenizerException($"{path}: empty JSON"); }
        catch (System.Text.Json.JsonException e) { throw new TokenizerException($"{path}: not valid JSON ({IO.JsonErrors.Brief(e)})", e); }
        var model = root["model"] as JsonObject ?? throw new TokenizerException($"{path}: no \"model\" object");
        var type = model["type"]?.GetValue<string>() ?? (model["merges"] is not null ? "BPE" : "unknown");

        var added = new List<AddedToken>();
        if (root["added_tokens"] is JsonArray arr)
            foreach (var a in arr)
                added.Add(new AddedToken(a!["id"]!.GetValue<int>(), a["content"]!.GetValue<string>(),
                    a["special"]?.GetValue<bool>() ?? false, a["normalized"]?.GetValue<bool>() ?? false));

        var byContent = added.ToDictionary(a => a.Content, a => a.Id);
        var vocab = model["vocab"] as JsonObject;
        int IdOf(string content) =>
            byContent.TryGetValue(content, out var id) ? id
            : vocab?[content] is JsonNode n ? n.GetValue<int>()
            : throw new TokenizerException($"{path}: the post-processor names token '{content}' that is not in the vocabulary");

        var prefix = new List<int>(); var suffix = new List<int>();
        if (root["post_processor"] is JsonObject pp)
        {
            var ppType = pp["type"]?.GetValue<string>();
            if (ppType == "TemplateProcessing" && pp["single"] is JsonArray single)
            {
                bool seenSeq = false;
                foreach (var item in single)
                {
                    if (item!["Sequence"] is not null) { seenSeq = true; continue; }
                    if (item["SpecialToken"]?["id"]?.GetValue<string>() is string name)
                    {
                        // The template names a special token; its ids are listed under special_tokens.
                        var ids = pp["special_tokens"]?[name]?["ids"] is JsonArray idArr
                            ? idArr.Select(x => x!.GetValue<int>()).ToArray() : [IdOf(name)];
                        (seenSeq ? suffix : prefix).AddRange(ids);
                    }
                }
            }
            else if (ppType is not ("ByteLevel" or null))
                throw new TokenizerException($"{path}: post_processor type '{ppType}' is not supported (TemplateProcessing or ByteLevel)");
        }

        var named = new Dictionary<string, string>();
        var dir = System.IO.Path.GetDirectoryName(path)!;
        foreach (var side in new[] { "special_tokens_map.json", "tokenizer_config.json" })
        {
            var f = System.IO.Path.Combine(dir, side);
            if (!File.Exists(f)) continue;
            try
            {
                var cfg = IO.JsonErrors.Parse(File.ReadAllText(f)) as JsonObject;
                foreach (var key in new[] { "bos_token", "eos_token", "pad_token", "unk_token" })
                {
                    var v = cfg?[key];
                    var s = v is JsonValue jv && jv.TryGetValue<string>(out var str) ? str : v?["content"]?.GetValue<string>();
                    if (s is not null) named.TryAdd(key, s);
                }
            }
            catch (System.Text.Json.JsonException e) { throw new TokenizerException($"{f}: not valid JSON ({IO.JsonErrors.Brief(e)})", e); }
        }

        return new HfTokenizerJson
        {
            Path = path,
            ModelType = type,
            Model = model,
            Normalizer = root["normalizer"],
            PreTokenizer = root["pre_tokenizer"],
            Decoder = root["decoder"],
            AddedTokens = added.ToArray(),
            TemplatePrefix = prefix.ToArray(),
            TemplateSuffix = suffix.ToArray(),
            NamedSpecials = named,
        };
    }

    /// <summary>Id of a named special ("bos_token", ...) from the side files, else of the first candidate present.</summary>
    public int? SpecialId(string key, params string[] fallbacks)
    {
        var vocab = Model["vocab"] as JsonObject;
        int? Lookup(string content) =>
            AddedTokens.FirstOrDefault(a => a.Content == content)?.Id ?? (vocab?[content] is JsonNode n ? n.GetValue<int>() : null);
        if (NamedSpecials.TryGetValue(key, out var named)) return Lookup(named);
        foreach (var f in fallbacks) if (Lookup(f) is int id) return id;
        return null;
    }

    static string? TypeOf(JsonNode? n) => n?["type"]?.GetValue<string>();

    static bool ContainsType(JsonNode? n, string type) =>
        n is JsonObject o && (TypeOf(o) == type
            || o["pretokenizers"] is JsonArray a && a.Any(x => ContainsType(x, type)));
}
