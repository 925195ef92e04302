using System.Text.Json;
using System.Text.Json.Nodes;
using StateX.IO;
using StateX.Tokenization;
using static TorchSharp.torch;

namespace StateX.Data;

/// <summary>Shape and seed of the batches a loader makes.</summary>
/// <param name="SeqLen">T: tokens the model sees per sequence.</param>
/// <param name="BatchSize">B: sequences per batch.</param>
/// <param name="Seed">the run's data seed: file order, shuffle buffers and mixture draws all derive from it.</param>
/// <param name="WithTarget">true: rows of T+1 tokens (inputs and shifted labels from one row); false: rows of T.</param>
/// <param name="EodId">end-of-document id put between documents; null takes the tokenizer's EOS.</param>
/// <param name="WholeDocuments">a document that fits in a row but not in what is left of the current one starts the
/// next row instead (the rest is padded with end-of-document ids that are not targets): no such document is cut in two.
/// Tasks whose answer depends on the start of the document (MQAR, passkey) need this when rows are not document-sized.</param>
public sealed record LoaderOptions(int SeqLen, int BatchSize, ulong Seed = 0, bool WithTarget = true, int? EodId = null, bool WholeDocuments = false)
{
    public int RowLength => SeqLen + (WithTarget ? 1 : 0);
}

/// <summary>
/// A batch of packed token rows, row-major [B, L] with L = T+1 (or T). <c>Targets</c> (same layout, null when every
/// token is one) marks the tokens a loss should score.
/// </summary>
public sealed record Batch(long[] Tokens, int BatchSize, int RowLength, bool[]? Targets = null)
{
    public long this[int b, int t] => Tokens[b * RowLength + t];

    /// <summary>[B, L] int64 tensor.</summary>
    public Tensor ToTensor(Device? device = null) => tensor(Tokens, [BatchSize, RowLength], ScalarType.Int64, device);

    /// <summary>[B, L] int64: the tokens, with -100 (ignored by the loss) where a token is not a target.</summary>
    public Tensor LabelsTensor(Device? device = null)
    {
        if (Targets is null) return ToTensor(device);
        var labels = new long[Tokens.Length];
        for (int i = 0; i < labels.Length; i++) labels[i] = Targets[i] ? Tokens[i] : -100;
        return tensor(labels, [BatchSize, RowLength], ScalarType.Int64, device);
    }
}

/// <summary>
/// Streams a data spec as fixed-length rows: documents are concatenated with the end-of-document id after each,
/// and cut into rows of L tokens without dropping or repeating any token (a document that does not fit continues
/// in the next row). <see cref="Cursor"/> at any batch boundary restores exactly what comes next.
/// </summary>
public sealed class DataLoader : IDisposable
{
    readonly IDocumentStream _stream;
    readonly int _eod;
    // Tokens read but not yet placed in a row: the rest of the current chunk, EOD included, and which are targets
    // (null: all).
    int[] _carry = [];
    bool[]? _carryTargets;
    int _carryPos;
    // Whether any chunk so far had target flags: from then on batches carry them.
    bool _anyTargets;

    public LoaderOptions Options { get; }
    public string Spec { get; }
    public ITokenizer Tokenizer { get; }
    public long BatchesRead { get; private set; }

    DataLoader(IDataSource source, ITokenizer tokenizer, LoaderOptions options, DataCursor? cursor)
    {
        if (options.SeqLen < 1 || options.BatchSize < 1) throw new DataException($"sequence length and batch size must be positive (got T={options.SeqLen}, B={options.BatchSize})");
        Options = options; Tokenizer = tokenizer; Spec = source.Describe();
        _eod = options.EodId ?? tokenizer.EosId
            ?? throw new DataException($"tokenizer {tokenizer.Name} has no end-of-sequence token; give LoaderOptions.EodId");
        if (cursor is not null)
        {
            cursor.Check(Spec, tokenizer, options);
            _carry = cursor.Carry; _carryTargets = cursor.CarryTargets; _carryPos = 0;
            _anyTargets = cursor.AnyTargets;
            BatchesRead = cursor.BatchesRead;
        }
        _stream = source.Open(new SourceContext(tokenizer, Rng.Derive(options.Seed, 0)), cursor?.SourceState);
    }

    /// <summary>Opens <paramref name="spec"/>; with a cursor, continues exactly where the cursor was taken.</summary>
    public static DataLoader Open(DataSpec spec, ITokenizer tokenizer, LoaderOptions options, DataCursor? cursor = null, SyntheticRegistry? synthetic = null) =>
        new(spec.Build(synthetic), tokenizer, options, cursor);

    public static DataLoader Open(IDataSource source, ITokenizer tokenizer, LoaderOptions options, DataCursor? cursor = null) =>
        new(source, tokenizer, options, cursor);

    /// <summary>Fills one row; false when the data ran out first (the partial row is dropped).</summary>
    bool FillRow(Span<long> row, Span<bool> targets)
    {
        int filled = 0;
        while (filled < row.Length)
        {
            if (_carryPos == _carry.Length)
            {
                if (!_stream.TryNext(out var chunk)) return false;
                _carry = chunk.EndsDocument ? [.. chunk.Tokens, _eod] : chunk.Tokens;
                // A document with target flags does not ask to predict the end-of-document token.
                _carryTargets = chunk.Targets is null ? null : chunk.EndsDocument ? [.. chunk.Targets, false] : chunk.Targets;
                _anyTargets |= chunk.Targets is not null;
                _carryPos = 0;
                continue;
            }
            int left = _carry.Length - _carryPos, room = row.Length - filled;
            if (Options.WholeDocuments && _carryPos == 0 && filled > 0 && left > room && left <= row.Length)
            {
                for (int i = filled; i < row.Length; i++) { row[i] = _eod; targets[i] = false; }
                _anyTargets = true;
                return true;
            }
            int n = Math.Min(room, left);
            for (int i = 0; i < n; i++)
            {
                row[filled + i] = _carry[_carryPos + i];
                targets[filled + i] = _carryTargets?[_carryPos + i] ?? true;
            }
            filled += n; _carryPos += n;
        }
        return true;
    }

    /// <summary>The next [B, L] batch, or null when a finite source has run out.</summary>
    public Batch? Next()
    {
        int L = Options.RowLength;
        var tokens = new long[Options.BatchSize * L];
        var targets = new bool[Options.BatchSize * L];
        for (int b = 0; b < Options.BatchSize; b++)
            if (!FillRow(tokens.AsSpan(b * L, L), targets.AsSpan(b * L, L))) return null;
        BatchesRead++;
        return new Batch(tokens, Options.BatchSize, L, _anyTargets ? targets : null);
    }

    /// <summary>Where the loader stands now (take it right after a batch, save it with the checkpoint).</summary>
    public DataCursor Cursor => new(Spec, Tokenizer.Name, Options.SeqLen, Options.BatchSize, Options.WithTarget, Options.Seed,
        BatchesRead, _carry[_carryPos..], _stream.SaveState(), _carryTargets?[_carryPos..], _anyTargets);

    public void Dispose() => _stream.Dispose();
}

/// <summary>
/// The data position saved with a checkpoint: spec, shape and seed it belongs to, batches read, tokens read but not
/// yet used (packing carry-over), and each source's position and random state. JSON; written atomically.
/// </summary>
public sealed record DataCursor(string Spec, string Tokenizer, int SeqLen, int BatchSize, bool WithTarget, ulong Seed,
    long BatchesRead, int[] Carry, JsonNode SourceState, bool[]? CarryTargets = null, bool AnyTargets = false)
{
    const string Format = "statex-data-cursor/1";

    public string ToJson() => new JsonObject
    {
        ["format"] = Format,
        ["spec"] = Spec,
        ["tokenizer"] = Tokenizer,
        ["seq_len"] = SeqLen,
        ["batch_size"] = BatchSize,
        ["with_target"] = WithTarget,
        ["seed"] = Seed.ToString(),
        ["batches_read"] = BatchesRead,
        ["carry"] = ChunkJson.Tokens(Carry),
        ["source"] = SourceState.DeepClone(),
        ["carry_targets"] = CarryTargets is null ? null : ChunkJson.Flags(CarryTargets),
        ["any_targets"] = AnyTargets,
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });

    public static DataCursor Parse(string json, string origin = "data cursor")
    {
        try
        {
            var o = IO.JsonErrors.Parse(json) as JsonObject ?? throw new DataException($"{origin}: not a JSON object");
            if (o["format"]?.GetValue<string>() != Format) throw new DataException($"{origin}: format is '{o["format"]}', expected '{Format}'");
            return new DataCursor(o["spec"]!.GetValue<string>(), o["tokenizer"]!.GetValue<string>(), o["seq_len"]!.GetValue<int>(),
                o["batch_size"]!.GetValue<int>(), o["with_target"]!.GetValue<bool>(), ulong.Parse(o["seed"]!.GetValue<string>()),
                o["batches_read"]!.GetValue<long>(), ChunkJson.Tokens(o["carry"]!.GetValue<string>()),
                o["source"] ?? throw new DataException($"{origin}: no source state"),
                o["carry_targets"] is { } ct ? ChunkJson.Flags(ct.GetValue<string>()) : null,
                o["any_targets"]?.GetValue<bool>() ?? false);
        }
        catch (Exception e) when (e is JsonException or NullReferenceException or InvalidOperationException or FormatException)
        { throw new DataException($"{origin}: malformed data cursor ({(e is JsonException j ? IO.JsonErrors.Brief(j) : e.Message.Split('\n')[0])})", e); }
    }

    public void Save(string path) => AtomicFile.WriteAllText(path, ToJson());

    public static DataCursor Load(string path) =>
        File.Exists(path) ? Parse(File.ReadAllText(path), path) : throw new DataException($"{path}: data cursor not found");

    internal void Check(string spec, ITokenizer tok, LoaderOptions o)
    {
        void Must(bool ok, string what) { if (!ok) throw new DataException($"data cursor does not match this run: {what}"); }
        Must(spec == Spec, $"it was saved for data '{Spec}', this run reads '{spec}'");
        Must(tok.Name == Tokenizer, $"it was saved with tokenizer {Tokenizer}, this run uses {tok.Name}");
        Must(o.SeqLen == SeqLen && o.BatchSize == BatchSize && o.WithTarget == WithTarget,
            $"it was saved for T={SeqLen}, B={BatchSize}, with_target={WithTarget}; this run has T={o.SeqLen}, B={o.BatchSize}, with_target={o.WithTarget}");
        Must(o.Seed == Seed, $"it was saved with seed {Seed}, this run has seed {o.Seed}");
    }
}
