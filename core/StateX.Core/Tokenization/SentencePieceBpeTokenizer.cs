using System.Text;
using Microsoft.ML.Tokenizers;

namespace StateX.Tokenization;

/// <summary>
/// Llama/Mistral-style SentencePiece BPE (metaspace "▁", byte fallback), the vocabulary of fla-hub's GLA models.
/// Microsoft.ML.Tokenizers' <see cref="LlamaTokenizer"/> does the BPE from tokenizer.model; around it we add what
/// Hugging Face's tokenizer.json pipeline adds: added/special tokens recognised in the text, the post-processor
/// template, and the decoder chain (Replace ▁→space, ByteFallback, Fuse, Strip one leading space).
/// </summary>
public sealed class SentencePieceBpeTokenizer : ITokenizer
{
    readonly LlamaTokenizer _sp;
    readonly AddedTokenSplitter _splitter;
    readonly Dictionary<int, AddedToken> _added;
    readonly string?[] _pieces;
    readonly int[] _prefix, _suffix;

    public string Name { get; }
    public int VocabSize { get; }
    public int? BosId { get; }
    public int? EosId { get; }
    public int? PadId { get; }

    /// <summary>Loads tokenizer.model; tokenizer.json beside it (optional) supplies added tokens and the template.</summary>
    public static SentencePieceBpeTokenizer Load(string modelPath, string? tokenizerJsonPath = null)
    {
        if (!File.Exists(modelPath)) throw new TokenizerException($"{modelPath}: SentencePiece model not found");
        var json = tokenizerJsonPath is not null && File.Exists(tokenizerJsonPath) ? HfTokenizerJson.Read(tokenizerJsonPath) : null;
        LlamaTokenizer sp;
        try { using var s = File.OpenRead(modelPath); sp = LlamaTokenizer.Create(s, addBeginOfSentence: false, addEndOfSentence: false); }
        catch (Exception e) when (e is not TokenizerException) { throw new TokenizerException($"{modelPath}: not a readable SentencePiece model ({e.Message})", e); }
        return new SentencePieceBpeTokenizer(sp, json, modelPath);
    }

    SentencePieceBpeTokenizer(LlamaTokenizer sp, HfTokenizerJson? json, string modelPath)
    {
        _sp = sp;
        var added = json?.AddedTokens.ToList() ?? [];
        // Without tokenizer.json, the model's own control tokens are the added ones, as in transformers' slow tokenizer.
        if (json is null)
            foreach (var (id, content) in new[] { (sp.UnknownId, "<unk>"), (sp.BeginningOfSentenceId, "<s>"), (sp.EndOfSentenceId, "</s>") })
                if (id >= 0) added.Add(new AddedToken(id, content, true, false));
        _added = added.GroupBy(a => a.Id).ToDictionary(g => g.Key, g => g.First());
        _splitter = new AddedTokenSplitter(added);

        // Ids need not be dense (see ByteLevelBpeTokenizer): the vocabulary spans up to the largest id.
        VocabSize = Math.Max(sp.Vocabulary.Count, Math.Max(sp.Vocabulary.Count == 0 ? 0 : sp.Vocabulary.Values.Max() + 1, added.Count == 0 ? 0 : added.Max(a => a.Id) + 1));
        _pieces = new string?[VocabSize];
        foreach (var (piece, id) in sp.Vocabulary) if (id >= 0 && id < VocabSize) _pieces[id] = piece;
        foreach (var a in added) _pieces[a.Id] = a.Content;

        BosId = json?.SpecialId("bos_token", "<s>") ?? sp.BeginningOfSentenceId;
        EosId = json?.SpecialId("eos_token", "</s>") ?? sp.EndOfSentenceId;
        PadId = json?.SpecialId("pad_token");
        _prefix = json?.TemplatePrefix ?? [BosId.Value];
        _suffix = json?.TemplateSuffix ?? [];
        Name = $"sentencepiece-bpe({VocabSize}, {Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(modelPath)))})";
    }

    public int[] Encode(string text, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens) ids.AddRange(_prefix);
        // Each plain piece is normalised on its own (dummy "▁" prefix included), as Hugging Face does around added tokens.
        foreach (var (piece, token) in _splitter.Split(text))
            if (token is not null) ids.Add(token.Id);
            else ids.AddRange(_sp.EncodeToIds(piece));
        if (addSpecialTokens) ids.AddRange(_suffix);
        return ids.ToArray();
    }

    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        var sb = new StringBuilder();
        var pendingBytes = new List<byte>();
        void FlushBytes()
        {
            if (pendingBytes.Count == 0) return;
            // ByteFallback: a run of <0xNN> pieces becomes its UTF-8 text, or one U+FFFD per byte when invalid.
            try { sb.Append(new UTF8Encoding(false, true).GetString(pendingBytes.ToArray())); }
            catch (DecoderFallbackException) { sb.Append('\uFFFD', pendingBytes.Count); }
            pendingBytes.Clear();
        }
        foreach (var id in ids)
        {
            if (id < 0 || id >= VocabSize || _pieces[id] is not string piece)
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside the vocabulary of {Name}");
            if (_added.TryGetValue(id, out var a) && a.Special && skipSpecialTokens) continue;
            if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
                && byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out var b))
            { pendingBytes.Add(b); continue; }
            FlushBytes();
            sb.Append(piece.Replace('▁', ' '));
        }
        FlushBytes();
        // Strip decoder: one leading space (the dummy prefix) goes.
        if (sb.Length > 0 && sb[0] == ' ') sb.Remove(0, 1);
        return sb.ToString();
    }
}
