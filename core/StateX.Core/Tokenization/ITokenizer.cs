namespace StateX.Tokenization;

/// <summary>Text ↔ token ids, the way the model's training tokenizer did it.</summary>
public interface ITokenizer
{
    /// <summary>Short name for logs and cursors, e.g. "llama-sentencepiece-bpe(32000)".</summary>
    string Name { get; }

    /// <summary>Number of ids the tokenizer can produce (model vocabulary plus added tokens).</summary>
    int VocabSize { get; }

    /// <summary>Beginning-of-sequence id, or null when the vocabulary has none.</summary>
    int? BosId { get; }

    /// <summary>End-of-sequence id (also the end-of-document separator when packing), or null.</summary>
    int? EosId { get; }

    /// <summary>Padding id, or null when the tokenizer defines none.</summary>
    int? PadId { get; }

    /// <summary>
    /// Token ids of <paramref name="text"/>. With <paramref name="addSpecialTokens"/> the tokenizer's own
    /// template is applied (Llama: a leading &lt;s&gt;; GPT-NeoX: nothing), as Hugging Face does by default.
    /// Special tokens written in the text (e.g. "&lt;/s&gt;") are recognised either way, as in Hugging Face.
    /// </summary>
    int[] Encode(string text, bool addSpecialTokens = false);

    /// <summary>Text of <paramref name="ids"/>; special tokens are written out unless <paramref name="skipSpecialTokens"/>.</summary>
    string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false);
}

/// <summary>A tokenizer folder or file that cannot be used, naming the file and the problem.</summary>
public sealed class TokenizerException(string message, Exception? inner = null) : Exception(message, inner);
