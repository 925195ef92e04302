using StateX.Data;
using StateX.Models;
using StateX.Tokenization;

namespace StateX.Evaluation.Tasks;

/// <summary>A labelled example for few-shot prompting.</summary>
public sealed record LabeledExample(string Input, string Label);

/// <summary>How a few-shot prompt is written: per shot <c>InputPrefix + input + "\n" + LabelPrefix + " " + label + Separator</c>.</summary>
public sealed record FewShotFormat(string InputPrefix = "Input: ", string LabelPrefix = "Label:", string Separator = "\n\n");

/// <summary>One few-shot item: the prompt (shots and the query), the candidate continuations and the gold index.</summary>
public sealed record FewShotItem(string Prompt, IReadOnlyList<string> Choices, int Gold);

/// <summary>
/// In-context learning. Synthetic: per episode, <c>Classes</c> classes each own a random set of nouns, and each
/// class gets a random label word from an unrelated pool (an arbitrary mapping, so only the shots tell it); an
/// input is <c>WordsPerInput</c> nouns of its class. User files: JSON Lines of {"input", "label"}, shots drawn
/// from the other lines. Scored by comparing the log-likelihoods of the candidate labels; chance = 1 / classes.
/// </summary>
public static class InContextLearning
{
    static readonly string[] LabelPool = ["foo", "bar", "baz", "qux", "zip", "zap", "red", "tall", "seven", "moon", "salt", "jazz"];

    public static FewShotItem Synthetic(int shots, int classes, ulong seed, long index, int wordsPerClass = 6, int wordsPerInput = 3, FewShotFormat? format = null)
    {
        if (classes < 2 || classes > LabelPool.Length) throw new ArgumentException($"classes must be in 2..{LabelPool.Length} (got {classes})");
        if (classes * wordsPerClass > Words.Nouns.Length) throw new ArgumentException($"{classes} classes × {wordsPerClass} words exceed the {Words.Nouns.Length} nouns");
        var rng = new Rng(Rng.Derive(seed, index, shots, classes));
        var nouns = Words.Nouns.ToArray(); rng.Shuffle(nouns);
        var labels = LabelPool.ToArray(); rng.Shuffle(labels);
        LabeledExample Draw()
        {
            int c = rng.NextInt(classes);
            var ws = Enumerable.Range(0, wordsPerInput).Select(_ => nouns[c * wordsPerClass + rng.NextInt(wordsPerClass)]);
            return new LabeledExample(string.Join(" ", ws), labels[c]);
        }
        var demos = Enumerable.Range(0, shots).Select(_ => Draw()).ToList();
        var query = Draw();
        var choices = labels[..classes];
        return Item(demos, query, choices, format ?? new FewShotFormat());
    }

    static FewShotItem Item(IEnumerable<LabeledExample> demos, LabeledExample query, IReadOnlyList<string> choices, FewShotFormat f)
    {
        var sb = new System.Text.StringBuilder();
        foreach (var d in demos) sb.Append(f.InputPrefix).Append(d.Input).Append('\n').Append(f.LabelPrefix).Append(' ').Append(d.Label).Append(f.Separator);
        sb.Append(f.InputPrefix).Append(query.Input).Append('\n').Append(f.LabelPrefix);
        return new FewShotItem(sb.ToString(), choices.Select(c => " " + c).ToArray(), choices.ToList().IndexOf(query.Label));
    }

    /// <summary>{"input": STRING, "label": STRING} per line; the candidate labels are all labels the file uses.</summary>
    public static List<LabeledExample> ReadFile(string path) =>
        EvalFiles.ReadRecords(path, (o, where) => new LabeledExample(EvalFiles.String(o, "input", where), EvalFiles.String(o, "label", where)));

    /// <summary>Items from user examples: each example (up to <paramref name="limit"/>) is a query with <paramref name="shots"/> others as shots.</summary>
    public static List<FewShotItem> FromExamples(IReadOnlyList<LabeledExample> examples, int shots, ulong seed, int? limit = null, FewShotFormat? format = null)
    {
        if (shots >= examples.Count) throw new ArgumentException($"{shots} shots need more than {examples.Count} examples");
        var labels = examples.Select(e => e.Label).Distinct().ToArray();
        if (labels.Length < 2) throw new ArgumentException($"few-shot classification needs at least two distinct labels (found {labels.Length})");
        var items = new List<FewShotItem>();
        for (int i = 0; i < Math.Min(examples.Count, limit ?? int.MaxValue); i++)
        {
            var rng = new Rng(Rng.Derive(seed, i, shots));
            var others = Enumerable.Range(0, examples.Count).Where(j => j != i).ToArray();
            rng.Shuffle(others);
            items.Add(Item(others.Take(shots).Select(j => examples[j]), examples[i], labels, format ?? new FewShotFormat()));
        }
        return items;
    }

    /// <summary>Synthetic accuracy versus number of shots (<paramref name="trials"/> items each).</summary>
    public static List<EvalResult> EvaluateSynthetic(ICausalLanguageModel model, ITokenizer tok, IReadOnlyList<int> shots, int classes = 2, int trials = 100, ulong seed = 0, EvalOptions? options = null)
    {
        var o = options ?? new EvalOptions();
        return shots.Select(k =>
        {
            var items = Enumerable.Range(0, trials).Select(i => Synthetic(k, classes, seed, i)).ToArray();
            var (acc, _) = Choices.Accuracy(model, tok, items, o, "icl");
            return new EvalResult(o.ModelName, "icl", EvalResult.SettingOf(("shots", k), ("classes", classes)), "accuracy", acc, trials);
        }).ToList();
    }

    /// <summary>Accuracy on a user file versus number of shots.</summary>
    public static List<EvalResult> EvaluateFile(ICausalLanguageModel model, ITokenizer tok, string path, IReadOnlyList<int> shots, int? limit = null, ulong seed = 0, EvalOptions? options = null, FewShotFormat? format = null)
    {
        var o = options ?? new EvalOptions();
        var examples = ReadFile(path);
        return shots.Select(k =>
        {
            var items = FromExamples(examples, k, seed, limit, format);
            var (acc, _) = Choices.Accuracy(model, tok, items, o, "icl");
            return new EvalResult(o.ModelName, "icl", EvalResult.SettingOf(("shots", k), ("file", Path.GetFileName(path))), "accuracy", acc, items.Count);
        }).ToList();
    }
}

/// <summary>Picks among continuations by log-likelihood (shared by in-context learning and multiple choice).</summary>
public static class Choices
{
    /// <summary>(accuracy, length-normalised accuracy) — the latter divides each log-likelihood by the choice's length in characters, as lm-evaluation-harness's acc_norm.</summary>
    public static (double Acc, double AccNorm) Accuracy(ICausalLanguageModel model, ITokenizer tok, IReadOnlyList<FewShotItem> items, EvalOptions o, string task)
    {
        // The choices of an item branch from one pass over its prompt.
        var requests = items.Select(it => (tok.Encode(it.Prompt, addSpecialTokens: true),
            (IReadOnlyList<int[]>)it.Choices.Select(c => TextParts.After(tok, it.Prompt, c)).ToArray())).ToArray();
        var scores = Scoring.LogLikelihoodShared(model, requests, o, task);
        int acc = 0, accNorm = 0;
        foreach (var (it, s) in items.Zip(scores))
        {
            int best = -1, bestNorm = -1;
            double bv = double.NegativeInfinity, bn = double.NegativeInfinity;
            for (int c = 0; c < it.Choices.Count; c++)
            {
                double norm = s[c].LogProb / Math.Max(1, it.Choices[c].TrimStart().EnumerateRunes().Count());
                if (s[c].LogProb > bv) { bv = s[c].LogProb; best = c; }
                if (norm > bn) { bn = norm; bestNorm = c; }
            }
            if (best == it.Gold) acc++;
            if (bestNorm == it.Gold) accNorm++;
        }
        return ((double)acc / items.Count, (double)accNorm / items.Count);
    }
}
