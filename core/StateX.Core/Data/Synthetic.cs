using System.Text.Json.Nodes;
using StateX.Tokenization;

namespace StateX.Data;

/// <summary>A generated document: text (tokenised by the run's tokenizer) or token ids directly.</summary>
public sealed record SyntheticDocument(string? Text = null, int[]? Tokens = null);

/// <summary>
/// A task generator usable as a training source (MQAR, passkey, ...). Document <c>index</c> of the stream seeded by
/// <c>seed</c> must be a pure function of (seed, index): then the cursor is just the next index.
/// </summary>
public interface ISyntheticGenerator
{
    string Name { get; }
    SyntheticDocument Generate(ulong seed, long index, ITokenizer tokenizer);
}

/// <summary>Makes a generator from the options of its spec (e.g. synth:mqar:pairs=8 gives {"pairs": "8"}).</summary>
public delegate ISyntheticGenerator SyntheticFactory(IReadOnlyDictionary<string, string> options);

/// <summary>Generators that DataSpec can name; built per run (no global registry). Has "random", "mqar", "passkey" and "text" built in.</summary>
public sealed class SyntheticRegistry
{
    readonly Dictionary<string, SyntheticFactory> _factories = new(StringComparer.OrdinalIgnoreCase);

    public static SyntheticRegistry Default()
    {
        var r = new SyntheticRegistry();
        r.Register("random", o => new RandomTokensGenerator(
            SpecOptions.Int(o, "len", 64, "synth:random"), SpecOptions.IntOrNull(o, "vocab", "synth:random")));
        r.Register("mqar", Evaluation.Tasks.MqarGenerator.FromOptions);
        r.Register("passkey", Evaluation.Tasks.PasskeyGenerator.FromOptions);
        r.Register("text", GrammarTextGenerator.FromOptions);
        return r;
    }

    public SyntheticRegistry Register(string name, SyntheticFactory factory) { _factories[name] = factory; return this; }

    public IEnumerable<string> Names => _factories.Keys.Order();

    public ISyntheticGenerator Create(string name, IReadOnlyDictionary<string, string> options) =>
        _factories.TryGetValue(name, out var f) ? f(options)
            : throw new DataException($"unknown synthetic generator '{name}' (known: {string.Join(", ", Names)})");
}

/// <summary>Documents of uniformly random ids below <c>vocab</c> (default: the tokenizer's), for smoke tests and throughput.</summary>
public sealed class RandomTokensGenerator(int length, int? vocab) : ISyntheticGenerator
{
    public string Name => "random";

    public SyntheticDocument Generate(ulong seed, long index, ITokenizer tokenizer)
    {
        var rng = new Rng(Rng.Derive(seed, index));
        int v = vocab ?? tokenizer.VocabSize;
        var ids = new int[length];
        for (int i = 0; i < length; i++) ids[i] = rng.NextInt(v);
        return new SyntheticDocument(Tokens: ids);
    }
}

/// <summary>A generator as a source: documents 0, 1, 2, ... (<c>count</c> of them, or forever).</summary>
public sealed class SyntheticSource(string spec, ISyntheticGenerator generator, long? count) : IDataSource
{
    public string Describe() => spec;

    public IDocumentStream Open(SourceContext context, JsonNode? state) =>
        new Stream(generator, count, context, state?["index"]?.GetValue<long>() ?? 0);

    sealed class Stream(ISyntheticGenerator gen, long? count, SourceContext ctx, long index) : IDocumentStream
    {
        public bool TryNext(out DocumentChunk chunk)
        {
            if (count is long c && index >= c) { chunk = default; return false; }
            var doc = gen.Generate(ctx.Seed, index++, ctx.Tokenizer);
            var ids = doc.Tokens ?? ctx.Tokenizer.Encode(doc.Text ?? throw new DataException($"synthetic generator '{gen.Name}' returned neither text nor tokens for document {index - 1}"));
            chunk = new DocumentChunk(ids, true);
            return true;
        }

        public JsonNode SaveState() => new JsonObject { ["index"] = index };

        public void Dispose() { }
    }
}
