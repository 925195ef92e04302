using System.Globalization;
using StateX.Data;
using StateX.Models;
using StateX.Tokenization;

namespace StateX.Evaluation.Tasks;

/// <summary>
/// One needle-in-a-haystack setting (RULER's multi-key NIAH, synthetic): <c>Needles</c> sentences
/// "One of the special magic numbers for KEY is: VALUE." hidden at random depths of a <c>Length</c>-token
/// haystack of filler; <c>Queries</c> of them are asked about, the others are distractors (keys of the same form,
/// words, never asked). KEY is "adjective-noun", VALUE a 7-digit number.
/// </summary>
public sealed record HaystackConfig(int Length, int Needles = 4, int Queries = 1)
{
    public void Validate()
    {
        if (Needles < 1 || Queries < 1 || Queries > Needles)
            throw new ArgumentException($"needle-in-a-haystack needs 1 ≤ queries ≤ needles (got {Queries} queries, {Needles} needles)");
        if (Needles > Words.Adjectives.Length * Words.Nouns.Length) throw new ArgumentException($"at most {Words.Adjectives.Length * Words.Nouns.Length} needles");
    }
}

/// <summary>One query: the question ids (appended after the haystack and earlier questions and answers) and the answer ids.</summary>
public sealed record HaystackQuery(string Key, string Value, int QuestionStart, int AnswerStart, int AnswerLength);

/// <summary>
/// A haystack (<c>Length</c> tokens: BOS, filler and needles) followed by the questions one after another, each
/// followed by its answer: <c>Tokens</c> holds it all, teacher-forced like MQAR.
/// </summary>
public sealed record HaystackExample(int[] Tokens, int HaystackLength, IReadOnlyList<(string Key, string Value, int Position)> Needles, IReadOnlyList<HaystackQuery> Queries);

/// <summary>Needle in a haystack; a query counts when greedy decoding would produce its value exactly (teacher-forced).</summary>
public static class Haystack
{
    const string Intro = "Some special magic numbers are hidden within the following text. Make sure to memorize them. I will quiz you about the numbers afterwards.";

    public static HaystackExample Build(ITokenizer tok, HaystackConfig c, ulong seed, long index)
    {
        c.Validate();
        var rng = new Rng(Rng.Derive(seed, index, c.Length, c.Needles, c.Queries));
        var keys = new HashSet<string>();
        while (keys.Count < c.Needles)
            keys.Add($"{Words.Adjectives[rng.NextInt(Words.Adjectives.Length)]}-{Words.Nouns[rng.NextInt(Words.Nouns.Length)]}");
        var keyList = keys.ToArray();
        var values = keyList.Select(_ => (1000000 + rng.NextInt(9000000)).ToString(CultureInfo.InvariantCulture)).ToArray();

        string last = TextParts.Filler.TrimStart();
        var intro = tok.Encode(Intro, addSpecialTokens: true);
        var unit = TextParts.After(tok, last, TextParts.Filler);
        var needles = keyList.Select((k, i) => TextParts.After(tok, last, $" One of the special magic numbers for {k} is: {values[i]}.")).ToArray();
        int filler = c.Length - intro.Length - needles.Sum(n => n.Length);
        if (filler < 0) throw new ArgumentException($"haystack length {c.Length} is shorter than its needles and intro ({c.Length - filler} tokens)");

        // Needle i goes after a whole number of filler units (random, sorted), keeping the order of the draw random.
        int units = filler / unit.Length;
        var cuts = Enumerable.Range(0, c.Needles).Select(_ => rng.NextInt(units + 1)).Order().ToArray();
        var placement = Enumerable.Range(0, c.Needles).ToArray();
        rng.Shuffle(placement);
        var tokens = new List<int>(c.Length + 64 * c.Queries);
        tokens.AddRange(intro);
        var placed = new List<(string, string, int)>();
        int done = 0;
        for (int i = 0; i < c.Needles; i++)
        {
            tokens.AddRange(TextParts.Cycle(unit, (cuts[i] - done) * unit.Length));
            done = cuts[i];
            int n = placement[i];
            placed.Add((keyList[n], values[n], tokens.Count));
            tokens.AddRange(needles[n]);
        }
        tokens.AddRange(TextParts.Cycle(unit, filler - done * unit.Length));
        int haystack = tokens.Count;

        // Ask about Queries of the needles (the first ones of a shuffled order); the rest are distractors.
        var asked = Enumerable.Range(0, c.Needles).ToArray();
        rng.Shuffle(asked);
        var queries = new List<HaystackQuery>();
        string prev = last;
        foreach (var n in asked.Take(c.Queries))
        {
            string q = $" What is the special magic number for {keyList[n]}? The special magic number for {keyList[n]} is:";
            int qs = tokens.Count;
            tokens.AddRange(TextParts.After(tok, prev, q));
            var ans = TextParts.After(tok, q, " " + values[n]);
            queries.Add(new HaystackQuery(keyList[n], values[n], qs, tokens.Count, ans.Length));
            tokens.AddRange(ans);
            var dot = TextParts.After(tok, values[n], ".");
            tokens.AddRange(dot);
            prev = values[n] + ".";
        }
        return new HaystackExample(tokens.ToArray(), haystack, placed, queries);
    }

    /// <summary>Accuracy per setting over <paramref name="trials"/> haystacks (N = queries).</summary>
    public static List<EvalResult> Evaluate(ICausalLanguageModel model, ITokenizer tok, IReadOnlyList<HaystackConfig> settings, int trials = 5, ulong seed = 0, EvalOptions? options = null)
    {
        var o = options ?? new EvalOptions();
        var results = new List<EvalResult>();
        foreach (var c in settings)
        {
            var ex = Enumerable.Range(0, trials).Select(i => Build(tok, c, seed, i)).ToArray();
            var s = Scoring.ScoreTokens(model, ex.Select(e => e.Tokens).ToArray(), o, $"niah len={c.Length}",
                ex.Select(e => (e.Queries[0].AnswerStart - 1, e.Tokens.Length)).ToArray());
            long n = 0, hit = 0;
            for (int i = 0; i < ex.Length; i++)
                foreach (var q in ex[i].Queries)
                {
                    n++;
                    bool ok = true;
                    for (int t = q.AnswerStart - 1; t < q.AnswerStart - 1 + q.AnswerLength; t++) ok &= s[i].Greedy[t];
                    if (ok) hit++;
                }
            results.Add(new EvalResult(o.ModelName, "niah", EvalResult.SettingOf(("length", c.Length), ("needles", c.Needles), ("queries", c.Queries)),
                "accuracy", (double)hit / n, n));
        }
        return results;
    }
}
