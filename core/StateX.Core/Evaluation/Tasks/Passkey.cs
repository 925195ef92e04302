using System.Globalization;
using StateX.Data;
using StateX.Models;
using StateX.Tokenization;

namespace StateX.Evaluation.Tasks;

/// <summary>
/// The texts of a passkey prompt; <c>{key}</c> is replaced by the 5-character key. <c>Digits</c>: the characters a
/// key is drawn from, uniformly and independently (null: a number 10000..99999, as Landmark Attention and Stuffed
/// Mamba draw it).
/// </summary>
public sealed record PasskeyTemplate(
    string Intro = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information there.",
    string Filler = TextParts.Filler,
    string Needle = " The pass key is {key}. Remember it. {key} is the pass key.",
    string Question = " What is the pass key? The pass key is",
    string Answer = " {key}",
    string? Digits = null)
{
    /// <summary>The same task with the instructions left out: for small models with short contexts (byte-level, a few hundred tokens).</summary>
    public static readonly PasskeyTemplate Short = new(Intro: "", Needle: " The pass key is {key}. Remember it.");

    /// <summary>
    /// For tiny byte-level models trained at 64 tokens: 22 fixed bytes (needle " key 12341.", question " key:"), a
    /// 17-byte filler sentence, and 5-digit keys over the digits 1–4 (1,024 keys), so that a model of a few thousand
    /// state elements can learn it at its training length and its accuracy at 2–16× that length measures what the
    /// state keeps.
    /// </summary>
    public static readonly PasskeyTemplate Tiny = new(Intro: "", Filler: " The sky is blue.", Needle: " key {key}.", Question: " key:", Answer: "{key}", Digits: "1234");

    /// <summary>
    /// The prompt of Stuffed Mamba's passkey test (thunlp/stuffed-mamba, passkey-retrieval/passkey.py; see
    /// ../shared/docs/statex-official.md §7): the pieces are joined without separators, each ending in its own
    /// newline(s), and the question ends "The passkey is" so that greedy decoding continues with " KEY".
    /// Use it with <see cref="Passkey.SpreadDepths"/> (depth of sample i of n: (i+0.5)/n).
    /// </summary>
    public static readonly PasskeyTemplate StuffedMamba = new(
        Intro: "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it.\n\n",
        Filler: "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n",
        Needle: "The passkey is {key}. Remember it. {key} is the passkey.\n",
        Question: "\nWhat is the pass key? The passkey is");

    /// <summary>"default", "short", "tiny" or "stuffed-mamba".</summary>
    public static PasskeyTemplate Named(string name) => name.Trim().ToLowerInvariant() switch
    {
        "default" => new PasskeyTemplate(),
        "short" => Short,
        "tiny" => Tiny,
        "stuffed-mamba" or "stuffed_mamba" => StuffedMamba,
        _ => throw new ArgumentException($"unknown passkey template '{name}': expected default, short, tiny or stuffed-mamba"),
    };

    /// <summary>A key of 5 characters for this template (see <see cref="Digits"/>).</summary>
    public string DrawKey(Rng rng)
    {
        if (Digits is null) return (10000 + rng.NextInt(90000)).ToString(CultureInfo.InvariantCulture);
        if (Digits.Length == 0) throw new ArgumentException("passkey digits must not be empty: give the characters keys are drawn from");
        var key = new char[5];
        for (int i = 0; i < key.Length; i++) key[i] = Digits[rng.NextInt(Digits.Length)];
        return new string(key);
    }
}

/// <summary>
/// One passkey prompt of exactly <c>Length</c> tokens (intro with the tokenizer's BOS, filler, needle, filler,
/// question); the answer follows it. <c>Depth</c> is where the needle actually starts, as a fraction of the filler
/// before it (the requested depth snapped to a whole filler sentence); <c>NeedlePosition</c> its first token.
/// </summary>
public sealed record PasskeyExample(int[] Prompt, int[] Answer, string Key, double Depth, int NeedlePosition, int NeedleLength);

/// <summary>
/// Passkey retrieval ("Landmark Attention", "Stuffed Mamba", StateX). Scoring: greedy exact match, computed
/// teacher-forced — correct when the model's argmax at every answer position is the answer token, which is exactly
/// when greedy decoding after the prompt would produce the answer tokens; the mean answer NLL comes for free.
/// </summary>
public static class Passkey
{
    /// <summary>Stuffed Mamba's depths for n samples: sample i's needle at (i+0.5)/n of the filler, so that n samples cover the context evenly without its ends.</summary>
    public static double[] SpreadDepths(int n)
    {
        if (n < 1) throw new ArgumentException($"passkey depths: need at least one sample (got {n})");
        return Enumerable.Range(0, n).Select(i => (i + 0.5) / n).ToArray();
    }

    public static PasskeyExample Build(ITokenizer tok, int length, double depth, ulong seed, long index, PasskeyTemplate? template = null)
    {
        var t = template ?? new PasskeyTemplate();
        if (!(depth >= 0 && depth <= 1)) throw new ArgumentException($"passkey depth must be in [0, 1] (got {depth})");
        var rng = new Rng(Rng.Derive(seed, index, length, (long)Math.Round(depth * 1e6)));
        var key = t.DrawKey(rng);
        string lastFiller = t.Filler.TrimStart();
        var intro = tok.Encode(t.Intro, addSpecialTokens: true);
        var unit = TextParts.After(tok, lastFiller, t.Filler);
        var needle = TextParts.After(tok, lastFiller, t.Needle.Replace("{key}", key));
        var question = TextParts.After(tok, lastFiller, t.Question);
        var answer = TextParts.After(tok, t.Question, t.Answer.Replace("{key}", key));
        int filler = length - intro.Length - needle.Length - question.Length;
        if (filler < 0) throw new ArgumentException($"passkey length {length} is shorter than the prompt without filler ({length - filler} tokens)");
        int before = Math.Min(filler / unit.Length, (int)Math.Round(depth * filler / unit.Length)) * unit.Length;
        var prompt = new List<int>(length);
        prompt.AddRange(intro);
        prompt.AddRange(TextParts.Cycle(unit, before));
        int needleAt = prompt.Count;
        prompt.AddRange(needle);
        prompt.AddRange(TextParts.Cycle(unit, filler - before));
        prompt.AddRange(question);
        return new PasskeyExample(prompt.ToArray(), answer, key, filler == 0 ? 0 : (double)before / filler, needleAt, needle.Length);
    }

    /// <summary>
    /// The grid length × depth, <paramref name="trials"/> keys per cell. Results per cell: "accuracy" (N = trials)
    /// and "answer_nll" (mean per-token negative log-likelihood of the answer).
    /// </summary>
    public static List<EvalResult> Evaluate(ICausalLanguageModel model, ITokenizer tok, IReadOnlyList<int> lengths, IReadOnlyList<double> depths,
        int trials = 5, ulong seed = 0, EvalOptions? options = null, PasskeyTemplate? template = null)
    {
        var o = options ?? new EvalOptions();
        var results = new List<EvalResult>();
        var progress = new ProgressReporter("passkey", (long)lengths.Sum(l => (long)l) * depths.Count * trials, o.Progress);
        long done = 0;   // steps are prompt tokens fed
        foreach (var len in lengths)
            foreach (var depth in depths)
            {
                var ex = Enumerable.Range(0, trials).Select(i => Build(tok, len, depth, seed, i, template)).ToArray();
                var s = Scoring.LogLikelihood(model, ex.Select(e => (e.Prompt, e.Answer)).ToArray(), o with { Progress = progress.Part(done, (long)len * trials) }, "passkey");
                var setting = EvalResult.SettingOf(("length", len), ("depth", depth));
                results.Add(new EvalResult(o.ModelName, "passkey", setting, "accuracy", s.Count(x => x.IsGreedy) / (double)trials, trials));
                results.Add(new EvalResult(o.ModelName, "passkey", setting, "answer_nll", s.Average(x => -x.LogProb / x.Tokens), trials));
                progress.ReportAt(done += (long)len * trials);
            }
        return results;
    }
}

/// <summary>
/// Passkey prompts (with their answers) as a training source: <c>synth:passkey:len=1024</c> (+ <c>depth=PERCENT</c>;
/// random by default; <c>template=short|tiny</c>; <c>digits=CHARS</c> to draw keys from; <c>loss=answer</c> to train
/// on the answer tokens only, as MQAR's <c>loss=queries</c>). <c>len</c> is the prompt's length: the document is that
/// plus the answer, so give a row a few tokens more than <c>len</c> to keep a whole document in it.
/// </summary>
public sealed class PasskeyGenerator(int length, int? depthPercent, PasskeyTemplate? template = null, bool answerOnly = false) : ISyntheticGenerator
{
    public string Name => "passkey";

    public SyntheticDocument Generate(ulong seed, long index, ITokenizer tokenizer)
    {
        double depth = depthPercent is int p ? p / 100.0 : new Rng(Rng.Derive(seed, index, 1)).NextDouble();
        try
        {
            var e = Passkey.Build(tokenizer, length, depth, seed, index, template);
            int[] tokens = [.. e.Prompt, .. e.Answer];
            if (!answerOnly) return new SyntheticDocument(Tokens: tokens);
            var targets = new bool[tokens.Length];
            for (int i = e.Prompt.Length; i < tokens.Length; i++) targets[i] = true;     // the answer tokens are predicted
            return new SyntheticDocument(Tokens: tokens, Targets: targets);
        }
        catch (ArgumentException ex) { throw new DataException($"synth:passkey: {ex.Message}", ex); }
    }

    public static PasskeyGenerator FromOptions(IReadOnlyDictionary<string, string> o)
    {
        int? depth = SpecOptions.IntOrNull(o, "depth", "synth:passkey");
        if (depth > 100) throw new DataException($"synth:passkey: depth={depth} is a percentage (0..100)");
        PasskeyTemplate template;
        try { template = PasskeyTemplate.Named(o.TryGetValue("template", out var t) ? t : "default"); }
        catch (ArgumentException e) { throw new DataException($"synth:passkey: {e.Message}"); }
        if (o.TryGetValue("digits", out var digits))
        {
            if (digits.Length == 0) throw new DataException("synth:passkey: digits= is empty: give the characters keys are drawn from, e.g. digits=1234");
            template = template with { Digits = digits };
        }
        var loss = o.TryGetValue("loss", out var l) ? l : "all";
        if (loss is not ("all" or "answer")) throw new DataException($"synth:passkey: loss={loss}: expected all or answer");
        return new PasskeyGenerator(SpecOptions.Int(o, "len", 1024, "synth:passkey"), depth, template, loss == "answer");
    }
}
