using System.Text.Json;
using StateX.Data;
using StateX.Models;
using StateX.Tokenization;

namespace StateX.Evaluation.Tasks;

/// <summary>
/// Multiple choice from a user file, scored as lm-evaluation-harness scores HellaSwag, PIQA, ARC...:
/// JSON Lines of {"context": STRING, "choices": [STRING, ...], "gold": INDEX}; each choice is scored as the
/// continuation <c>context + delimiter + choice</c> (delimiter " "); "acc" takes the highest log-likelihood,
/// "acc_norm" the highest log-likelihood per character of the choice.
/// </summary>
public static class MultipleChoice
{
    /// <summary>
    /// A record in any of four schemas, told apart by their fields: StateX's {"context", "choices", "gold"}; ARC's
    /// (allenai/ai2_arc: {"question", "choices": {"text", "label"}, "answerKey"}); HellaSwag's (Rowan/hellaswag:
    /// {"activity_label", "ctx_a", "ctx_b", "endings", "label"}); PIQA's (ybisk/piqa: {"goal", "sol1", "sol2",
    /// "label"}). The published ones are built as lm-evaluation-harness builds them: see <see cref="Arc"/>,
    /// <see cref="HellaSwag"/> and <see cref="Piqa"/>. JSON Lines or Parquet (<see cref="EvalFiles.ReadRecords"/>).
    /// </summary>
    public static List<FewShotItem> ReadFile(string path, string delimiter = " ") =>
        EvalFiles.ReadRecords(path, (o, where) =>
        {
            var (context, choices, gold) =
                o.TryGetProperty("answerKey", out _) ? Arc(o, where)
                : o.TryGetProperty("endings", out _) ? HellaSwag(o, where)
                : o.TryGetProperty("goal", out _) ? Piqa(o, where)
                : (EvalFiles.String(o, "context", where), EvalFiles.Strings(o, "choices", where), EvalFiles.Int(o, "gold", where));
            if (choices.Length < 2) throw new DataException($"{where}: \"choices\" needs at least two entries");
            if (gold < 0 || gold >= choices.Length) throw new DataException($"{where}: \"gold\" is {gold}, not an index into the {choices.Length} choices");
            return new FewShotItem(context, choices.Select(c => delimiter + c).ToArray(), gold);
        });

    /// <summary>ARC as lm-evaluation-harness's arc_easy / arc_challenge: context "Question: {question}\nAnswer:", choices choices.text, gold the index of answerKey in choices.label.</summary>
    public static (string Context, string[] Choices, int Gold) Arc(JsonElement o, string where)
    {
        var question = EvalFiles.String(o, "question", where);
        if (!o.TryGetProperty("choices", out var c) || c.ValueKind != JsonValueKind.Object)
            throw new DataException($"{where}: ARC's \"choices\" must be an object {{\"text\": [...], \"label\": [...]}}");
        var texts = EvalFiles.Strings(c, "text", where + " choices");
        var labels = EvalFiles.Strings(c, "label", where + " choices");
        var key = EvalFiles.String(o, "answerKey", where);
        int gold = Array.IndexOf(labels, key);
        if (gold < 0) throw new DataException($"{where}: \"answerKey\" '{key}' is not one of the labels {string.Join(", ", labels)}");
        return ($"Question: {question}\nAnswer:", texts, gold);
    }

    /// <summary>PIQA as lm-evaluation-harness's piqa: context "Question: {goal}\nAnswer:", choices [sol1, sol2], gold label.</summary>
    public static (string Context, string[] Choices, int Gold) Piqa(JsonElement o, string where) =>
        ($"Question: {EvalFiles.String(o, "goal", where)}\nAnswer:", [EvalFiles.String(o, "sol1", where), EvalFiles.String(o, "sol2", where)], EvalFiles.Int(o, "label", where));

    /// <summary>
    /// HellaSwag as lm-evaluation-harness builds it: context preprocess(activity_label + ": " + ctx_a + " " +
    /// capitalize(ctx_b)), choices preprocess(ending), gold int(label). capitalize is Python's (first character
    /// upper, the rest lower).
    /// </summary>
    public static (string Context, string[] Choices, int Gold) HellaSwag(JsonElement o, string where)
    {
        var ctxB = EvalFiles.String(o, "ctx_b", where);
        var capitalised = ctxB.Length == 0 ? ctxB : char.ToUpperInvariant(ctxB[0]) + ctxB[1..].ToLowerInvariant();
        var context = HellaSwagPreprocess(EvalFiles.String(o, "activity_label", where) + ": " + EvalFiles.String(o, "ctx_a", where) + " " + capitalised);
        var endings = EvalFiles.Strings(o, "endings", where).Select(HellaSwagPreprocess).ToArray();
        if (!o.TryGetProperty("label", out var l)) throw new DataException($"{where}: missing \"label\"");
        // Rowan/hellaswag stores the label as a string ("0"), the original release as a number.
        int gold = l.ValueKind == JsonValueKind.Number ? l.GetInt32()
            : l.ValueKind == JsonValueKind.String && int.TryParse(l.GetString(), out var g) ? g
            : throw new DataException($"{where}: \"label\" must be an index (a number or a string of digits)");
        return (context, endings, gold);
    }

    /// <summary>lm-evaluation-harness's HellaSwag preprocess: strip, " [title]" → ". ", drop "[...]" (WikiHow artifacts), "  " → " ".</summary>
    public static string HellaSwagPreprocess(string text)
    {
        var t = text.Trim().Replace(" [title]", ". ");
        t = System.Text.RegularExpressions.Regex.Replace(t, @"\[.*?\]", "");
        return t.Replace("  ", " ");
    }

    public static List<EvalResult> Evaluate(ICausalLanguageModel model, ITokenizer tok, string path, int? limit = null, EvalOptions? options = null, string delimiter = " ")
    {
        var o = options ?? new EvalOptions();
        var items = ReadFile(path, delimiter).Take(limit ?? int.MaxValue).ToList();
        var (acc, norm) = Choices.Accuracy(model, tok, items, o, "multiple_choice");
        var setting = EvalResult.SettingOf(("file", Path.GetFileName(path)));
        return
        [
            new EvalResult(o.ModelName, "multiple_choice", setting, "acc", acc, items.Count),
            new EvalResult(o.ModelName, "multiple_choice", setting, "acc_norm", norm, items.Count),
        ];
    }
}
