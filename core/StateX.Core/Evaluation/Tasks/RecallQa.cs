using System.Text;
using System.Text.RegularExpressions;
using StateX.Data;
using StateX.Models;
using StateX.Tokenization;

namespace StateX.Evaluation.Tasks;

/// <summary>A recall question: the prompt (document and question) and its accepted answers.</summary>
public sealed record QaExample(string Prompt, IReadOnlyList<string> Answers);

/// <summary>
/// Recall-intensive QA from a user file (SWDE, FDA, SQuAD, TriviaQA, NQ, DROP style, as in "Based" and "Just read
/// twice"): JSON Lines of {"prompt": STRING, "answer": STRING or [STRING, ...]}. The model continues the prompt
/// greedily (chunked prefill, recurrent decoding) for up to <c>maxNewTokens</c> tokens or until EOS; an example
/// counts when the normalised continuation contains any normalised answer (lower case, punctuation and the articles
/// a/an/the removed, white space collapsed — SQuAD's normalisation).
/// </summary>
public static partial class RecallQa
{
    public static List<QaExample> ReadFile(string path) =>
        EvalFiles.ReadRecords(path, (o, where) =>
        {
            var answers = EvalFiles.Strings(o, "answer", where);
            if (answers.Any(a => Normalize(a).Length == 0)) throw new DataException($"{where}: an answer is empty after normalisation");
            return new QaExample(EvalFiles.String(o, "prompt", where), answers);
        });

    public static string Normalize(string s)
    {
        var lower = s.ToLowerInvariant();
        var sb = new StringBuilder(lower.Length);
        foreach (var ch in lower) if (!char.IsPunctuation(ch) && !char.IsSymbol(ch)) sb.Append(ch);
        var noArticles = Articles().Replace(sb.ToString(), " ");
        return string.Join(' ', noArticles.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
    }

    public static bool Contains(string continuation, IEnumerable<string> answers)
    {
        var c = Normalize(continuation);
        return answers.Any(a => c.Contains(Normalize(a), StringComparison.Ordinal));
    }

    /// <summary>Accuracy ("contains") over the file's examples (up to <paramref name="limit"/>).</summary>
    public static List<EvalResult> Evaluate(ICausalLanguageModel model, ITokenizer tok, string path, int maxNewTokens = 48, int? limit = null, EvalOptions? options = null)
    {
        var o = options ?? new EvalOptions();
        var ex = ReadFile(path).Take(limit ?? int.MaxValue).ToList();
        var gen = new GenerationOptions(maxNewTokens, SamplingOptions.Greedy, tok.EosId is int eos ? [eos] : null, Math.Min(tok.VocabSize, model.VocabSize));
        var outs = Generation.Generate(model, ex.Select(e => tok.Encode(e.Prompt, addSpecialTokens: true)).ToArray(), gen, o, "recall_qa");
        int hit = ex.Where((e, i) => Contains(tok.Decode(outs[i].Tokens, skipSpecialTokens: true), e.Answers)).Count();
        return [new EvalResult(o.ModelName, "recall_qa", EvalResult.SettingOf(("file", Path.GetFileName(path)), ("max_new_tokens", maxNewTokens)),
            "contains", (double)hit / ex.Count, ex.Count)];
    }

    [GeneratedRegex(@"\b(a|an|the)\b")]
    private static partial Regex Articles();
}
