using System.Text.Json.Nodes;
using StateX.Tokenization;

namespace StateX.Data;

/// <summary>
/// A run of tokens read from a source. <paramref name="EndsDocument"/>: an end-of-document token follows it when
/// packed. <paramref name="Continues"/>: the next chunk of the same source continues this same document, so
/// mixtures and shuffle buffers keep them together (long text files are read in pieces). Windows of pre-tokenised
/// files have neither flag: they are taken as they are and may be interleaved. <paramref name="Targets"/>: which
/// tokens are training targets (predicted from what precedes them and scored by the loss); null means all of them.
/// Synthetic tasks use it to train only on what is predictable, as Zoology trains MQAR on the queried values only.
/// </summary>
public readonly record struct DocumentChunk(int[] Tokens, bool EndsDocument, bool Continues = false, bool[]? Targets = null);

/// <summary>What a source needs to produce tokens: the tokenizer, the run's seed for this source, and epochs.</summary>
public sealed record SourceContext(ITokenizer Tokenizer, ulong Seed);

/// <summary>An open, resumable stream of chunks.</summary>
public interface IDocumentStream : IDisposable
{
    /// <summary>The next chunk, or false when the source is exhausted (finite epochs or count).</summary>
    bool TryNext(out DocumentChunk chunk);

    /// <summary>Everything needed to continue exactly from here (JSON, saved inside the data cursor).</summary>
    JsonNode SaveState();
}

/// <summary>A description of data that can be opened as a stream, fresh or from a saved state.</summary>
public interface IDataSource
{
    /// <summary>Canonical spec text, e.g. "jsonl:data/a.jsonl:field=text".</summary>
    string Describe();

    IDocumentStream Open(SourceContext context, JsonNode? state);
}
