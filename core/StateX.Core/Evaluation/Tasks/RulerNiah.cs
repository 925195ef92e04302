using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using StateX.Data;
using StateX.Models;
using StateX.Tokenization;

namespace StateX.Evaluation.Tasks;

/// <summary>What fills a RULER haystack: the noise sentence repeated, essay-like text, or needle-shaped distractors.</summary>
public enum RulerHaystack { Noise, Essay, Needle }

/// <summary>What a RULER needle's key or value is: an adjective-noun pair, a 7-digit number, or a version-4 UUID.</summary>
public enum RulerNeedle { Words, Numbers, Uuids }

/// <summary>
/// One of RULER's NIAH tasks (NVIDIA/RULER scripts/synthetic.yaml): haystack and needle types, keys hidden
/// (<c>Keys</c>), values per key (<c>Values</c>), keys asked about (<c>Queries</c>). RULER asks the first of
/// the keys in a random sample, the rest are distractors.
/// </summary>
public sealed record RulerNiahTask(string Name, RulerHaystack Haystack, RulerNeedle KeyType, RulerNeedle ValueType, int Keys = 1, int Values = 1, int Queries = 1)
{
    /// <summary>RULER's eight NIAH tasks, with its parameters.</summary>
    public static readonly IReadOnlyList<RulerNiahTask> All =
    [
        new("niah_single_1", RulerHaystack.Noise, RulerNeedle.Words, RulerNeedle.Numbers),
        new("niah_single_2", RulerHaystack.Essay, RulerNeedle.Words, RulerNeedle.Numbers),
        new("niah_single_3", RulerHaystack.Essay, RulerNeedle.Words, RulerNeedle.Uuids),
        new("niah_multikey_1", RulerHaystack.Essay, RulerNeedle.Words, RulerNeedle.Numbers, Keys: 4),
        new("niah_multikey_2", RulerHaystack.Needle, RulerNeedle.Words, RulerNeedle.Numbers),
        new("niah_multikey_3", RulerHaystack.Needle, RulerNeedle.Uuids, RulerNeedle.Uuids),
        new("niah_multivalue", RulerHaystack.Essay, RulerNeedle.Words, RulerNeedle.Numbers, Values: 4),
        new("niah_multiquery", RulerHaystack.Essay, RulerNeedle.Words, RulerNeedle.Numbers, Keys: 4, Queries: 4),
    ];

    public static RulerNiahTask Named(string name) =>
        All.FirstOrDefault(t => t.Name == name.Trim().ToLowerInvariant())
        ?? throw new ArgumentException($"unknown RULER task '{name}': expected one of {string.Join(", ", All.Select(t => t.Name))}");
}

/// <summary>
/// One RULER NIAH sample. <c>Prompt</c>: the token ids of <c>Text</c> (the input and RULER's answer prefix, as a
/// base model reads it) with the tokenizer's BOS. <c>Outputs</c>: the values to be found. <c>Depths</c>: where
/// each needle starts, as a fraction of the context's characters. <c>HaystackUnits</c>: sentences (noise, needle)
/// or words (essay) of haystack.
/// </summary>
public sealed record RulerNiahExample(string Text, int[] Prompt, string[] Outputs, double[] Depths, int HaystackUnits);

/// <summary>
/// RULER's needle-in-a-haystack tasks, generated here (Hsieh et al. 2024, "RULER: What's the real context size of
/// your long-context language models?"; prompts and parameters from NVIDIA/RULER's scripts). Differences, stated:
/// keys of type words come from <see cref="Words"/> (RULER: wonderwords' adjective and noun lists) and are distinct
/// within a sample; the essay haystack is the text of a user-given file (RULER: Paul Graham's essays) or, for
/// <c>synth:text</c>, generated English-like text (<see cref="GrammarTextGenerator"/>); sentences are split at
/// ". ", "! ", "? " (RULER: NLTK's sent_tokenize). The prompt plus <c>maxNewTokens</c> fits in the length, and the
/// haystack is the largest that does, as RULER's binary search makes it.
/// </summary>
public static class RulerNiah
{
    /// <summary>RULER's noise haystack sentence.</summary>
    public const string Noise = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

    /// <summary>RULER's depths in percent for the essay haystack: 40 points from 0 to 100, rounded (np.linspace).</summary>
    public static readonly int[] DepthPercents = Enumerable.Range(0, 40).Select(i => (int)Math.Round(i * 100.0 / 39, MidpointRounding.ToEven)).ToArray();

    /// <summary>RULER's tokens_to_generate for NIAH.</summary>
    public const int RulerMaxNewTokens = 128;

    static string TypeName(RulerNeedle t) => t switch { RulerNeedle.Words => "words", RulerNeedle.Numbers => "numbers", _ => "uuids" };

    /// <summary>The needle sentence (the value's type always plural, as in RULER).</summary>
    public static string Needle(RulerNeedle valueType, string key, string value) => $"One of the special magic {TypeName(valueType)} for {key} is: {value}.";

    /// <summary>
    /// The prompt around the context: RULER's template followed by its answer prefix; in the singular when one value
    /// is asked for (RULER replaces "Some" by "A", "are" by "is" and drops the plural s of the type).
    /// </summary>
    public static string Prompt(RulerNiahTask task, string context, string query)
    {
        string v = TypeName(task.ValueType);
        if (task.Queries * task.Values == 1)
        {
            v = v[..^1];
            return $"A special magic {v} is hidden within the following text. Make sure to memorize it. I will quiz you about the {v} afterwards.\n{context}\n"
                 + $"What is the special magic {v} for {query} mentioned in the provided text? The special magic {v} for {query} mentioned in the provided text is";
        }
        return $"Some special magic {v} are hidden within the following text. Make sure to memorize it. I will quiz you about the {v} afterwards.\n{context}\n"
             + $"What are all the special magic {v} for {query} mentioned in the provided text? The special magic {v} for {query} mentioned in the provided text are";
    }

    /// <summary>RULER joins the keys asked about as "a, b, c, and d" ("a, and b" for two).</summary>
    public static string JoinQueries(IReadOnlyList<string> q) => q.Count == 1 ? q[0] : string.Join(", ", q.Take(q.Count - 1)) + ", and " + q[^1];

    public static string Draw(RulerNeedle type, Rng rng) => type switch
    {
        RulerNeedle.Numbers => (1000000 + rng.NextInt(9000000)).ToString(CultureInfo.InvariantCulture),
        RulerNeedle.Words => $"{Words.Adjectives[rng.NextInt(Words.Adjectives.Length)]}-{Words.Nouns[rng.NextInt(Words.Nouns.Length)]}",
        _ => Uuid(rng),
    };

    /// <summary>A random UUID of version 4, variant RFC 4122, lowercase hex 8-4-4-4-12 (as Python's uuid.UUID(int=…, version=4) prints it).</summary>
    public static string Uuid(Rng rng)
    {
        var b = new byte[16];
        for (int i = 0; i < 16; i++) b[i] = (byte)rng.NextInt(256);
        b[6] = (byte)((b[6] & 0x0F) | 0x40);
        b[8] = (byte)((b[8] & 0x3F) | 0x80);
        var h = Convert.ToHexString(b).ToLowerInvariant();
        return $"{h[..8]}-{h[8..12]}-{h[12..16]}-{h[16..20]}-{h[20..]}";
    }

    /// <summary>Essay text split into words at whitespace (RULER: re.sub(r"\s+", " ", essay).split(" ")).</summary>
    public static string[] EssayWords(string text) => Regex.Replace(text, @"\s+", " ").Trim().Split(' ');

    /// <summary>The words of <c>synth:text</c> (generated English-like text) enough for a haystack of <paramref name="length"/> tokens.</summary>
    public static string[] SynthWords(int length, ulong seed) =>
        EssayWords(new GrammarTextGenerator(Math.Max(4096, 8 * length)).Generate(seed, 0, new ByteTokenizer()).Text!);

    static readonly Regex SentenceEnd = new(@"(?<=[.!?])\s+", RegexOptions.Compiled);

    /// <summary>
    /// The sample text (prompt and answer prefix) with <paramref name="units"/> units of haystack. <paramref name="depth"/>
    /// (0..1) puts every needle there; null draws depths as RULER does (essay: from <see cref="DepthPercents"/>
    /// without replacement; noise and needle haystacks: sentence positions without replacement).
    /// </summary>
    static (string Text, string[] Outputs, double[] Depths) Compose(RulerNiahTask t, int units, string[]? essay, double? depth, ulong sampleSeed)
    {
        var rng = new Rng(sampleSeed);
        var keys = new List<string>();
        var values = new List<string[]>();
        var needles = new List<string>();
        while (keys.Count < t.Keys)
        {
            var k = Draw(t.KeyType, rng);
            if (keys.Contains(k)) continue;    // distinct keys: a repeated key would make the answer ambiguous
            keys.Add(k);
            var vs = Enumerable.Range(0, t.Values).Select(_ => Draw(t.ValueType, rng)).ToArray();
            values.Add(vs);
            foreach (var v in vs) needles.Add(Needle(t.ValueType, k, v));
        }
        rng.Shuffle(needles);

        string context;
        var starts = new List<int>();
        if (t.Haystack == RulerHaystack.Essay)
        {
            if (essay is null || essay.Length == 0) throw new ArgumentException($"{t.Name}: the essay haystack needs text (a file or synth:text)");
            var words = Enumerable.Range(0, units).Select(i => essay[i % essay.Length]);
            var sents = SentenceEnd.Split(string.Join(" ", words).Trim()).Where(s => s.Length > 0).ToArray();
            var cuts = depth is double d
                ? needles.Select(_ => (int)(sents.Length * d)).ToArray()
                : SampleDistinct(rng, DepthPercents.Length, needles.Count).Select(i => (int)(sents.Length * (DepthPercents[i] / 100.0))).Order().ToArray();
            var sb = new StringBuilder();
            int last = 0;
            for (int i = 0; i <= needles.Count; i++)
            {
                int next = i < needles.Count ? cuts[i] : sents.Length;
                if (sb.Length > 0 && next > last) sb.Append(' ');
                sb.Append(string.Join(" ", sents[last..next]));
                last = next;
                if (i < needles.Count)
                {
                    if (sb.Length > 0) sb.Append(' ');
                    starts.Add(sb.Length);
                    sb.Append(needles[i]);
                }
            }
            context = sb.ToString();
        }
        else
        {
            var sentences = Enumerable.Range(0, units).Select(_ => t.Haystack == RulerHaystack.Noise
                ? Noise : Needle(t.ValueType, Draw(t.KeyType, rng), Draw(t.ValueType, rng))).ToList();
            var at = depth is double d
                ? needles.Select(_ => (int)Math.Round(units * d)).ToArray()
                : SampleDistinct(rng, units, needles.Count).OrderDescending().ToArray();
            // Inserted from the back so that earlier positions keep their meaning (as RULER does).
            for (int i = 0; i < needles.Count; i++) sentences.Insert(at[i], needles[i]);
            context = string.Join("\n", sentences);
            int from = 0;
            foreach (var n in needles) { from = context.IndexOf(n, from, StringComparison.Ordinal); starts.Add(from); from += n.Length; }
        }

        var asked = SampleDistinct(rng, t.Keys, t.Queries);
        var outputs = asked.SelectMany(i => values[i]).ToArray();
        string text = Prompt(t, context, JoinQueries(asked.Select(i => keys[i]).ToArray()));
        var depths = starts.Select(s => context.Length == 0 ? 0 : (double)s / context.Length).ToArray();
        return (text, outputs, depths);
    }

    /// <summary><paramref name="k"/> distinct integers of 0..n-1 in random order (random.sample).</summary>
    static int[] SampleDistinct(Rng rng, int n, int k)
    {
        if (k > n) throw new ArgumentException($"cannot place {k} needles among {n} haystack positions: give a longer length");
        var all = Enumerable.Range(0, n).ToArray();
        for (int i = 0; i < k; i++) { int j = i + rng.NextInt(n - i); (all[i], all[j]) = (all[j], all[i]); }
        return all[..k];
    }

    /// <summary>
    /// Sample <paramref name="index"/> of a task at <paramref name="length"/> tokens: the largest haystack whose prompt
    /// plus <paramref name="maxNewTokens"/> fits in the length. <paramref name="essay"/>: words of the essay haystack.
    /// <paramref name="haystackUnits"/>: start from this size (another sample's) and shrink it until the prompt fits,
    /// as RULER sizes the haystack once per task and length: one or a few tokenisations instead of a search.
    /// </summary>
    public static RulerNiahExample Build(ITokenizer tok, RulerNiahTask task, int length, ulong seed, long index, string[]? essay = null,
        int maxNewTokens = RulerMaxNewTokens, double? depth = null, int? haystackUnits = null)
    {
        if (depth is double d && !(d >= 0 && d <= 1)) throw new ArgumentException($"{task.Name}: depth must be in [0, 1] (got {d})");
        ulong sampleSeed = Rng.Derive(seed, index, length, StableHash(task.Name));
        int budget = length - maxNewTokens;
        int Tokens(int units) => tok.Encode(Compose(task, units, essay, depth, sampleSeed).Text, addSpecialTokens: true).Length;
        int minUnits = task.Haystack == RulerHaystack.Essay ? 1 : task.Keys * task.Values;
        if (Tokens(minUnits) > budget)
            throw new ArgumentException($"{task.Name}: length {length} leaves no room for a haystack after the prompt and {maxNewTokens} generated tokens");
        // Grow geometrically, then bisect: the token count is monotone in the units up to the needles' random placement.
        int lo = minUnits;
        if (haystackUnits is int hint && hint >= minUnits)
        {
            lo = hint;
            while (lo > minUnits && Tokens(lo) > budget) lo = Math.Max(minUnits, lo - Math.Max(1, lo / 100));
        }
        else
        {
            int hi = Math.Max(minUnits + 1, 2 * minUnits);
            while (Tokens(hi) <= budget) { lo = hi; hi *= 2; }
            while (hi - lo > 1) { int mid = lo + (hi - lo) / 2; if (Tokens(mid) <= budget) lo = mid; else hi = mid; }
        }
        var (text, outputs, depths) = Compose(task, lo, essay, depth, sampleSeed);
        return new RulerNiahExample(text, tok.Encode(text, addSpecialTokens: true), outputs, depths, lo);
    }

    /// <summary>FNV-1a of the task's name: a seed label that is the same in every process (string.GetHashCode is not).</summary>
    static long StableHash(string s)
    {
        ulong h = 14695981039346656037UL;
        foreach (char c in s) { h ^= c; h *= 1099511628211UL; }
        return (long)h;
    }

    /// <summary>RULER's string_match_all for one sample: the fraction of <paramref name="outputs"/> that occur in the prediction, ignoring case.</summary>
    public static double StringMatchAll(string prediction, IReadOnlyList<string> outputs) =>
        outputs.Count(o => prediction.Contains(o, StringComparison.OrdinalIgnoreCase)) / (double)outputs.Count;

    /// <summary>
    /// Each task × length over <paramref name="samples"/> samples: greedy generation of <paramref name="maxNewTokens"/>
    /// tokens after the prompt, scored by <see cref="StringMatchAll"/>; "string_match_all" is the mean (a fraction;
    /// RULER prints it × 100), N = samples. <paramref name="haystackName"/> names the essay text in the setting.
    /// </summary>
    public static List<EvalResult> Evaluate(ICausalLanguageModel model, ITokenizer tok, IReadOnlyList<RulerNiahTask> tasks, IReadOnlyList<int> lengths,
        int samples, ulong seed = 0, EvalOptions? options = null, string[]? essay = null, string haystackName = "synth:text", int maxNewTokens = RulerMaxNewTokens)
    {
        var o = options ?? new EvalOptions();
        var results = new List<EvalResult>();
        foreach (var task in tasks)
            foreach (var len in lengths)
            {
                var words = task.Haystack == RulerHaystack.Essay ? essay ?? SynthWords(len, seed) : null;
                var first = Build(tok, task, len, seed, 0, words, maxNewTokens);
                var ex = Enumerable.Range(0, samples).Select(i => i == 0 ? first : Build(tok, task, len, seed, i, words, maxNewTokens, haystackUnits: first.HaystackUnits)).ToArray();
                var gen = new GenerationOptions(maxNewTokens, VocabLimit: Math.Min(tok.VocabSize, model.VocabSize),
                    StopTokens: tok.EosId is int eos ? [eos] : null);
                var outs = Generation.Generate(model, ex.Select(e => e.Prompt).ToArray(), gen, o, task.Name);
                double score = ex.Select((e, i) => StringMatchAll(tok.Decode(outs[i].Tokens, skipSpecialTokens: true), e.Outputs)).Average();
                var setting = EvalResult.SettingOf(("length", len), ("haystack", task.Haystack == RulerHaystack.Essay ? haystackName : task.Haystack.ToString().ToLowerInvariant()));
                results.Add(new EvalResult(o.ModelName, task.Name, setting, "string_match_all", score, samples));
            }
        return results;
    }
}
