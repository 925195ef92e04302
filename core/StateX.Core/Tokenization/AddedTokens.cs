using System.Text;

namespace StateX.Tokenization;

/// <summary>One entry of tokenizer.json's "added_tokens".</summary>
public sealed record AddedToken(int Id, string Content, bool Special, bool Normalized);

/// <summary>
/// Splits text around added tokens before the model sees it, as Hugging Face's AddedVocabulary does:
/// leftmost match wins, and among matches starting at the same place the longest.
/// </summary>
internal sealed class AddedTokenSplitter
{
    readonly AddedToken[] _byLengthDesc;

    public AddedTokenSplitter(IEnumerable<AddedToken> tokens) =>
        _byLengthDesc = tokens.Where(t => t.Content.Length > 0).OrderByDescending(t => t.Content.Length).ToArray();

    /// <summary>Pieces of <paramref name="text"/> in order: plain text (Token null) or one added token.</summary>
    public IEnumerable<(string Text, AddedToken? Token)> Split(string text)
    {
        if (_byLengthDesc.Length == 0) { if (text.Length > 0) yield return (text, null); yield break; }
        int plainStart = 0, i = 0;
        while (i < text.Length)
        {
            AddedToken? hit = null;
            foreach (var t in _byLengthDesc)
                if (string.CompareOrdinal(text, i, t.Content, 0, t.Content.Length) == 0 && i + t.Content.Length <= text.Length) { hit = t; break; }
            if (hit is null) { i++; continue; }
            if (i > plainStart) yield return (text[plainStart..i], null);
            yield return (hit.Content, hit);
            i += hit.Content.Length;
            plainStart = i;
        }
        if (plainStart < text.Length) yield return (text[plainStart..], null);
    }
}
