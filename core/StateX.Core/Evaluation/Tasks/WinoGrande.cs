using StateX.Data;
using StateX.Models;
using StateX.Tokenization;

namespace StateX.Evaluation.Tasks;

/// <summary>A WinoGrande item as partial scoring sees it: one context per option, one shared continuation.</summary>
/// <param name="Contexts">The sentence up to the blank with each option in it.</param>
/// <param name="Continuation">" " + the sentence after the blank: the only tokens scored.</param>
/// <param name="Gold">0 for option1, 1 for option2.</param>
public sealed record WinoGrandeItem(IReadOnlyList<string> Contexts, string Continuation, int Gold);

/// <summary>
/// WinoGrande as lm-evaluation-harness scores it (allenai/winogrande: {"sentence", "option1", "option2", "answer"}):
/// partial evaluation, where each option fills the blank "_" of the sentence to make a context and the log-likelihood
/// of the rest of the sentence (after a space) given that context decides; metric acc only, as the harness's task
/// (its choices share the continuation, so a length-normalised score would pick the same option).
/// </summary>
public static class WinoGrande
{
    public static WinoGrandeItem Item(System.Text.Json.JsonElement o, string where)
    {
        var sentence = EvalFiles.String(o, "sentence", where);
        int blank = sentence.IndexOf('_');
        if (blank < 0) throw new DataException($"{where}: \"sentence\" has no blank \"_\" for the options");
        var answer = EvalFiles.String(o, "answer", where);
        int gold = answer switch
        {
            "1" => 0,
            "2" => 1,
            _ => throw new DataException($"{where}: \"answer\" is '{answer}', expected \"1\" or \"2\""),
        };
        var options = new[] { EvalFiles.String(o, "option1", where), EvalFiles.String(o, "option2", where) };
        return new WinoGrandeItem(options.Select(opt => sentence[..blank] + opt).ToArray(), " " + sentence[(blank + 1)..].Trim(), gold);
    }

    /// <summary>The items of a .jsonl or .parquet file in allenai/winogrande's schema.</summary>
    public static List<WinoGrandeItem> ReadFile(string path) => EvalFiles.ReadRecords(path, Item);

    public static List<EvalResult> Evaluate(ICausalLanguageModel model, ITokenizer tok, string path, int? limit = null, EvalOptions? options = null)
    {
        var o = options ?? new EvalOptions();
        var items = ReadFile(path).Take(limit ?? int.MaxValue).ToList();
        // Every (context, continuation) pair in one batched call; the continuation's tokens as they follow each context.
        var requests = items.SelectMany(it => it.Contexts.Select(c => (tok.Encode(c, addSpecialTokens: true), TextParts.After(tok, c, it.Continuation)))).ToArray();
        var scores = Scoring.LogLikelihood(model, requests, o, "winogrande");
        int k = 0, right = 0;
        foreach (var it in items)
        {
            int best = 0;
            for (int c = 0; c < it.Contexts.Count; c++, k++)
                if (scores[k].LogProb > scores[k - c + best].LogProb) best = c;
            if (best == it.Gold) right++;
        }
        return [new EvalResult(o.ModelName, "winogrande", EvalResult.SettingOf(("file", Path.GetFileName(path))), "acc", (double)right / items.Count, items.Count)];
    }
}
