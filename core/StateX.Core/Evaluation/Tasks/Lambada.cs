using StateX.Data;
using StateX.Models;
using StateX.Tokenization;

namespace StateX.Evaluation.Tasks;

/// <summary>A LAMBADA passage split as the harness splits it: all words but the last, and " " + the last word.</summary>
public sealed record LambadaItem(string Context, string Target);

/// <summary>
/// LAMBADA as lm-evaluation-harness's lambada_openai (EleutherAI/lambada_openai: {"text"}): the passage split at its
/// last space, the target the last word after a space; "acc" counts passages whose target greedy decoding would write
/// (every target token the argmax, computed teacher-forced), "perplexity" is exp(−mean log-likelihood of the target)
/// over passages, the harness's aggregation.
/// </summary>
public static class Lambada
{
    public static LambadaItem Item(System.Text.Json.JsonElement o, string where)
    {
        var text = EvalFiles.String(o, "text", where);
        // Python's text.split(" "): the last piece is the target, even when empty.
        int cut = text.LastIndexOf(' ');
        if (cut < 0) throw new DataException($"{where}: \"text\" has no space to split the last word from its context");
        if (cut == text.Length - 1) throw new DataException($"{where}: \"text\" ends with a space, so its last word is empty");
        return new LambadaItem(text[..cut], " " + text[(cut + 1)..]);
    }

    public static List<LambadaItem> ReadFile(string path) => EvalFiles.ReadRecords(path, Item);

    public static List<EvalResult> Evaluate(ICausalLanguageModel model, ITokenizer tok, string path, int? limit = null, EvalOptions? options = null)
    {
        var o = options ?? new EvalOptions();
        var items = ReadFile(path).Take(limit ?? int.MaxValue).ToList();
        var scores = Scoring.LogLikelihood(model, items.Select(it => (tok.Encode(it.Context, addSpecialTokens: true), TextParts.After(tok, it.Context, it.Target))).ToArray(), o, "lambada");
        var setting = EvalResult.SettingOf(("file", Path.GetFileName(path)));
        return
        [
            new EvalResult(o.ModelName, "lambada", setting, "acc", (double)scores.Count(s => s.IsGreedy) / items.Count, items.Count),
            new EvalResult(o.ModelName, "lambada", setting, "perplexity", Math.Exp(-scores.Average(s => s.LogProb)), items.Count),
        ];
    }
}
