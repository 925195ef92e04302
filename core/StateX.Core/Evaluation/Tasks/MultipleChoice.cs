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
    public static List<FewShotItem> ReadFile(string path, string delimiter = " ") =>
        EvalFiles.ReadJsonl(path, (o, where) =>
        {
            var context = EvalFiles.String(o, "context", where);
            var choices = EvalFiles.Strings(o, "choices", where);
            if (choices.Length < 2) throw new DataException($"{where}: \"choices\" needs at least two entries");
            int gold = EvalFiles.Int(o, "gold", where);
            if (gold < 0 || gold >= choices.Length) throw new DataException($"{where}: \"gold\" is {gold}, not an index into the {choices.Length} choices");
            return new FewShotItem(context, choices.Select(c => delimiter + c).ToArray(), gold);
        });

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
