using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace StateX.Tokenization;

/// <summary>
/// GPT-2-style byte-level BPE read from a Hugging Face tokenizer.json (GPT-NeoX, the vocabulary of Mamba2).
/// Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/> (ByteLevel) does the BPE; we supply the NFC normaliser,
/// the GPT-2 pre-tokenisation regex and the added tokens (GPT-NeoX's runs of 2–24 spaces among them), which
/// Hugging Face splits off first, longest match first.
/// </summary>
public sealed class ByteLevelBpeTokenizer : ITokenizer
{
    /// <summary>The GPT-2 pattern Hugging Face's ByteLevel pre-tokenizer uses when use_regex is true.</summary>
    const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    readonly BpeTokenizer _bpe;
    readonly HashSet<int> _special;
    readonly int[] _prefix, _suffix;

    public string Name { get; }
    public int VocabSize { get; }
    public int? BosId { get; }
    public int? EosId { get; }
    public int? PadId { get; }

    public static ByteLevelBpeTokenizer Load(string tokenizerJsonPath) => new(HfTokenizerJson.Read(tokenizerJsonPath));

    internal ByteLevelBpeTokenizer(HfTokenizerJson json)
    {
        if (json.ModelType != "BPE") throw new TokenizerException($"{json.Path}: model type '{json.ModelType}' is not BPE");
        if (json.PreTokenizer?["add_prefix_space"]?.GetValue<bool>() == true)
            throw new TokenizerException($"{json.Path}: ByteLevel add_prefix_space=true is not supported");
        var vocab = json.Model["vocab"] as JsonObject ?? throw new TokenizerException($"{json.Path}: model has no vocab");
        var merges = json.Model["merges"] as JsonArray ?? throw new TokenizerException($"{json.Path}: model has no merges");

        // Longest first: the .NET regex alternation that ML.Tokenizers builds from these keys is leftmost-first.
        var added = new Dictionary<string, int>();
        foreach (var a in json.AddedTokens.OrderByDescending(a => a.Content.Length)) added[a.Content] = a.Id;

        var opts = new BpeOptions(vocab.Select(kv => new KeyValuePair<string, int>(kv.Key, kv.Value!.GetValue<int>())))
        {
            // tokenizer.json writes merges either as "a b" or as ["a", "b"].
            Merges = merges.Select(m => m is JsonArray pair ? pair[0]!.GetValue<string>() + " " + pair[1]!.GetValue<string>() : m!.GetValue<string>()),
            ByteLevel = true,
            SpecialTokens = added,
            PreTokenizer = new RegexPreTokenizer(new Regex(Gpt2Pattern, RegexOptions.Compiled), added),
            Normalizer = NormalizerFor(json),
        };
        try { _bpe = BpeTokenizer.Create(opts); }
        catch (Exception e) { throw new TokenizerException($"{json.Path}: Microsoft.ML.Tokenizers could not build the BPE ({e.Message})", e); }

        _special = json.AddedTokens.Where(a => a.Special).Select(a => a.Id).ToHashSet();
        // Ids need not be dense: the vocabulary spans up to the largest id (found by fuzzing: a vocab of 299
        // entries holding id 727 made encode return ids beyond VocabSize, which no embedding check would then catch).
        var ids = vocab.Select(kv => kv.Value!.GetValue<int>()).Concat(json.AddedTokens.Select(a => a.Id)).ToArray();
        if (ids.Length > 0 && (ids.Min() < 0 || ids.Max() >= 1 << 26))
            throw new TokenizerException($"{json.Path}: token id {(ids.Min() < 0 ? ids.Min() : ids.Max())} is outside 0..{(1 << 26) - 1}");
        VocabSize = Math.Max(vocab.Count, ids.Length == 0 ? 0 : ids.Max() + 1);
        BosId = json.SpecialId("bos_token", "<|endoftext|>");
        EosId = json.SpecialId("eos_token", "<|endoftext|>");
        PadId = json.SpecialId("pad_token", "<|padding|>");
        _prefix = json.TemplatePrefix;
        _suffix = json.TemplateSuffix;
        Name = $"byte-level-bpe({VocabSize}, {Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(json.Path)))})";
    }

    static Microsoft.ML.Tokenizers.Normalizer? NormalizerFor(HfTokenizerJson json) =>
        json.Normalizer?["type"]?.GetValue<string>() switch
        {
            null => null,
            "NFC" => new UnicodeNormalizer(NormalizationForm.FormC),
            "NFKC" => new UnicodeNormalizer(NormalizationForm.FormKC),
            var t => throw new TokenizerException($"{json.Path}: normalizer '{t}' is not supported for byte-level BPE (NFC, NFKC or none)"),
        };

    public int[] Encode(string text, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var body = _bpe.EncodeToIds(text);
        if (!addSpecialTokens || (_prefix.Length == 0 && _suffix.Length == 0)) return body.ToArray();
        return [.. _prefix, .. body, .. _suffix];
    }

    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        var list = new List<int>();
        foreach (var id in ids)
        {
            if (id < 0 || id >= VocabSize) throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside the vocabulary of {Name}");
            if (skipSpecialTokens && _special.Contains(id)) continue;
            list.Add(id);
        }
        return _bpe.Decode(list, considerSpecialTokens: true) ?? "";
    }

    sealed class UnicodeNormalizer(NormalizationForm form) : Microsoft.ML.Tokenizers.Normalizer
    {
        public override string Normalize(string original) => original.Normalize(form);
        public override string Normalize(ReadOnlySpan<char> original) => original.ToString().Normalize(form);
    }
}
