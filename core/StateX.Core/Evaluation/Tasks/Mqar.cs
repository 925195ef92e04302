using StateX.Data;
using StateX.Models;
using StateX.Tokenization;

namespace StateX.Evaluation.Tasks;

/// <summary>
/// One MQAR setting (multi-query associative recall, as in Zoology). Ids: 0 = filler; keys are drawn from
/// [1, 1 + h) and values from [1 + h, 1 + 2h) with h = (VocabSize − 1) / 2, so any model vocabulary of at least
/// <c>VocabSize</c> works. A sequence of <c>SeqLen</c> ids is <c>Pairs</c> key–value pairs (distinct keys), then
/// every key once as a query, each immediately followed by its value, at gaps drawn from a power law of exponent
/// <c>PowerA</c> − 1 (small gaps likelier, as Zoology), the rest filler.
/// </summary>
public sealed record MqarConfig(int Pairs, int SeqLen, int VocabSize = 8192, double PowerA = 0.01)
{
    public int HalfVocab => (VocabSize - 1) / 2;
    public int FirstKey => 1;
    public int FirstValue => 1 + HalfVocab;

    public void Validate()
    {
        if (Pairs < 1) throw new ArgumentException($"MQAR needs at least one key-value pair (got {Pairs})");
        if (HalfVocab < Pairs) throw new ArgumentException($"MQAR vocabulary {VocabSize} is too small for {Pairs} distinct keys (needs at least {2 * Pairs + 1})");
        if (SeqLen < 4 * Pairs) throw new ArgumentException($"MQAR sequence length {SeqLen} is too short for {Pairs} pairs and their queries (needs at least {4 * Pairs})");
        if (!(PowerA > 0)) throw new ArgumentException($"MQAR power-law parameter must be positive (got {PowerA})");
    }
}

/// <summary>One MQAR sequence. Query i sits at <c>QueryPositions[i]</c> (key there, its value at the next position).</summary>
public sealed record MqarExample(int[] Tokens, int[] Keys, int[] Values, int[] QueryPositions);

public static class Mqar
{
    /// <summary>Example <paramref name="index"/> of the stream seeded by <paramref name="seed"/> (a pure function of both).</summary>
    public static MqarExample Generate(MqarConfig c, ulong seed, long index)
    {
        c.Validate();
        var rng = new Rng(Rng.Derive(seed, index, c.Pairs, c.SeqLen));
        // Distinct keys: a partial Fisher–Yates over the key range.
        var pool = Enumerable.Range(c.FirstKey, c.HalfVocab).ToArray();
        var keys = new int[c.Pairs];
        for (int i = 0; i < c.Pairs; i++)
        {
            int j = i + rng.NextInt(pool.Length - i);
            (pool[i], pool[j]) = (pool[j], pool[i]);
            keys[i] = pool[i];
        }
        var values = new int[c.Pairs];
        for (int i = 0; i < c.Pairs; i++) values[i] = c.FirstValue + rng.NextInt(c.HalfVocab);

        var tokens = new int[c.SeqLen];
        for (int i = 0; i < c.Pairs; i++) { tokens[2 * i] = keys[i]; tokens[2 * i + 1] = values[i]; }

        // Query slots: Pairs distinct slots of two ids after the pairs, weighted ∝ (slot + 1)^(a − 1), without
        // replacement (Efraimidis–Spirakis keys u^(1/w)).
        int context = 2 * c.Pairs, space = (c.SeqLen - context) / 2;
        var slots = Enumerable.Range(0, space)
            .Select(g => (g, key: Math.Log(rng.NextDouble() + 1e-300) / Math.Pow(g + 1, c.PowerA - 1)))
            .OrderByDescending(t => t.key).Take(c.Pairs).Select(t => t.g).ToArray();
        var order = Enumerable.Range(0, c.Pairs).ToArray();
        rng.Shuffle(order);
        var positions = new int[c.Pairs];
        for (int q = 0; q < c.Pairs; q++)
        {
            int p = context + 2 * slots[q], k = order[q];
            tokens[p] = keys[k]; tokens[p + 1] = values[k];
            positions[q] = p;
        }
        Array.Sort(positions);
        var qKeys = positions.Select(p => tokens[p]).ToArray();
        var qValues = positions.Select(p => tokens[p + 1]).ToArray();
        return new MqarExample(tokens, qKeys, qValues, positions);
    }

    /// <summary>
    /// Accuracy per setting: a query counts when the model's argmax after the key is its value (teacher-forced, as
    /// Zoology). <paramref name="examples"/> sequences per setting. Results: metric "accuracy", N = queries.
    /// </summary>
    public static List<EvalResult> Evaluate(ICausalLanguageModel model, IReadOnlyList<MqarConfig> settings, int examples = 100, ulong seed = 0, EvalOptions? options = null)
    {
        var o = options ?? new EvalOptions();
        var results = new List<EvalResult>();
        foreach (var c in settings)
        {
            c.Validate();
            if (c.VocabSize > model.VocabSize) throw new ArgumentException($"MQAR vocabulary {c.VocabSize} exceeds the model's {model.VocabSize}");
            var ex = Enumerable.Range(0, examples).Select(i => Generate(c, seed, i)).ToArray();
            var scores = Scoring.ScoreTokens(model, ex.Select(e => e.Tokens).ToArray(), o, $"mqar pairs={c.Pairs} len={c.SeqLen}",
                ex.Select(e => (e.QueryPositions[0], e.QueryPositions[^1] + 1)).ToArray());
            long n = 0, hit = 0;
            for (int i = 0; i < ex.Length; i++)
                foreach (var p in ex[i].QueryPositions) { n++; if (scores[i].Greedy[p]) hit++; }
            results.Add(new EvalResult(o.ModelName, "mqar",
                EvalResult.SettingOf(("pairs", c.Pairs), ("seq_len", c.SeqLen), ("vocab", c.VocabSize)), "accuracy", (double)hit / n, n));
        }
        return results;
    }
}

/// <summary>MQAR as a training source: <c>synth:mqar:pairs=8:len=256:vocab=8192</c>.</summary>
public sealed class MqarGenerator(MqarConfig config, bool queriesOnly = false) : ISyntheticGenerator
{
    public string Name => "mqar";

    public SyntheticDocument Generate(ulong seed, long index, ITokenizer tokenizer)
    {
        if (config.VocabSize > tokenizer.VocabSize)
            throw new DataException($"synth:mqar: vocab={config.VocabSize} exceeds the tokenizer's {tokenizer.VocabSize} ids");
        var ex = Mqar.Generate(config, seed, index);
        if (!queriesOnly) return new SyntheticDocument(Tokens: ex.Tokens);
        // Zoology's training signal: only the value after each queried key is predicted; the random keys and values
        // of the context (unpredictable) and the padding add nothing but noise.
        var targets = new bool[ex.Tokens.Length];
        foreach (var p in ex.QueryPositions) targets[p + 1] = true;
        return new SyntheticDocument(Tokens: ex.Tokens, Targets: targets);
    }

    /// <summary><c>synth:mqar:pairs=8:len=256:vocab=8192[:loss=all|queries]</c>.</summary>
    public static MqarGenerator FromOptions(IReadOnlyDictionary<string, string> o)
    {
        var c = new MqarConfig(SpecOptions.Int(o, "pairs", 8, "synth:mqar"), SpecOptions.Int(o, "len", 256, "synth:mqar"),
            SpecOptions.Int(o, "vocab", 8192, "synth:mqar"));
        try { c.Validate(); } catch (ArgumentException e) { throw new DataException($"synth:mqar: {e.Message}", e); }
        var loss = o.TryGetValue("loss", out var l) ? l : "all";
        if (loss is not ("all" or "queries")) throw new DataException($"synth:mqar: loss={loss}: expected all or queries");
        return new MqarGenerator(c, loss == "queries");
    }
}
