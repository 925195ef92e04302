using System.Text.Json;
using System.Text.RegularExpressions;
using StateX.Data;
using StateX.Models;
using StateX.Tokenization;

namespace StateX.Evaluation.Tasks;

/// <summary>One document of the recall suite, prompt built, with the labels its continuation is matched against.</summary>
/// <param name="Prompt">The text the model continues (the task's doc_to_text after the context was cut).</param>
/// <param name="Labels">Accepted answers; the example counts when the continuation contains any of them.</param>
public sealed record RecallExample(string Prompt, IReadOnlyList<string> Labels);

/// <summary>A task of the recall suite and where its published records keep what the prompt needs.</summary>
/// <param name="Name">swde, fda, squad, triviaqa, nq, drop.</param>
/// <param name="ContextField">The field holding the document, which the context window cuts.</param>
public sealed record RecallTask(string Name, string ContextField)
{
    public static readonly RecallTask Swde = new("swde", "text");
    public static readonly RecallTask Fda = new("fda", "text");
    public static readonly RecallTask Squad = new("squad", "text");
    public static readonly RecallTask TriviaQa = new("triviaqa", "context");
    public static readonly RecallTask Nq = new("nq", "context");
    public static readonly RecallTask Drop = new("drop", "context");
    public static readonly RecallTask[] All = [Swde, Fda, Squad, TriviaQa, Nq, Drop];

    public static RecallTask Named(string name) =>
        All.FirstOrDefault(t => t.Name == name.Trim().ToLowerInvariant())
        ?? throw new ArgumentException($"unknown recall task '{name}': expected one of {string.Join(", ", All.Select(t => t.Name))}");
}

/// <summary>
/// The recall-intensive suite of "Based" and "Just read twice" (Arora et al. 2024), as the JRT lm-evaluation-harness
/// (HazyResearch/prefix-linear-attention) runs it with <c>--cutting_context</c>: records of the Hugging Face datasets
/// hazyresearch/based-swde(-v2), based-fda, based-squad ({text, key, value} / {text, value}) and based_triviaqa,
/// based_nq_*, based_drop ({context, question, answers}); the document is cut to a window of
/// <c>contextLength − answerLength</c> tokens around the answer's first occurrence, the prompt is the task's
/// doc_to_text, the model continues greedily for up to 48 tokens until a newline, and an example counts
/// ("contains") when the continuation contains a label, case ignored.
/// </summary>
public static partial class BasedRecall
{
    /// <summary>JRT's generation budget: max_gen_toks 48, until "\n".</summary>
    public const int MaxNewTokens = 48;
    /// <summary>JRT's defaults: --context_length 1000, --answer_length 50.</summary>
    public const int DefaultContextLength = 1000, AnswerLength = 50;
    const string SwdeSummary = "Summary of information above...";

    /// <summary>A record's string field, or null when absent (a list gives its first entry, as JRT's truncation reads answers).</summary>
    static string? Field(JsonElement o, string name) =>
        !o.TryGetProperty(name, out var v) ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString()
        : v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > 0 && v[0].ValueKind == JsonValueKind.String ? v[0].GetString()
        : v.ValueKind == JsonValueKind.Number ? v.GetRawText()
        : null;

    /// <summary>
    /// The example a record makes, or null when JRT drops it (an answer field of at most one character).
    /// <paramref name="contextLength"/> null: the document is not cut.
    /// </summary>
    public static RecallExample? Build(RecallTask task, JsonElement o, string where, ITokenizer tok, int? contextLength, int answerLength = AnswerLength)
    {
        string Need(string f) => EvalFiles.String(o, f, where);
        var doc = new Dictionary<string, string>();
        foreach (var f in task.ContextField == "text" ? new[] { "text" } : ["context", "question"]) doc[f] = Need(f);
        if (task == RecallTask.Swde || task == RecallTask.Fda) doc["key"] = Need("key");
        string[] labels = task.ContextField == "text" ? [Need("value")] : EvalFiles.Strings(o, "answers", where);
        // based-swde-v2 appends an in-context listing after this marker; JRT's validation_docs keeps what precedes it.
        if (task == RecallTask.Swde) doc["text"] = doc["text"].Split(SwdeSummary)[0];
        if (contextLength is int cl)
        {
            if (cl <= answerLength) throw new ArgumentException($"recall context length {cl} must exceed the answer length {answerLength}");
            // JRT's answer_key is ["key", "value"]; the answers of the QA sets stand in for the value.
            var answers = new List<string?> { Field(o, "key"), task.ContextField == "text" ? Field(o, "value") : labels[0] };
            if (task != RecallTask.Swde && task != RecallTask.Fda && !o.TryGetProperty("key", out _)) answers.RemoveAt(0);
            if (answers.Any(a => a is null || a.Length <= 1)) return null;
            long? tokPos = o.TryGetProperty("tok_pos", out var tp) && tp.ValueKind == JsonValueKind.Number ? tp.GetInt64() : null;
            doc[task.ContextField] = CutContext(tok, doc[task.ContextField], answers!, cl - answerLength, tokPos);
        }
        return new RecallExample(Prompt(task, doc), labels);
    }

    /// <summary>
    /// JRT's truncate_context: the document (stripped) in tokens, the token position of the earliest case-insensitive
    /// occurrence of any answer, and the window of <paramref name="desired"/> tokens that puts it at most halfway,
    /// decoded back to text. Not found: the position is that of the document's last character (Python's
    /// <c>context[:-1]</c>), or the record's <c>tok_pos</c> (NQ) when the document is longer than the window.
    /// </summary>
    public static string CutContext(ITokenizer tok, string context, IReadOnlyList<string> answers, int desired, long? tokPos = null)
    {
        context = PyStrip(context);
        var tokens = tok.Encode(context, addSpecialTokens: true);
        int at = -1;
        foreach (var a in answers)
        {
            int i = context.IndexOf(a, StringComparison.OrdinalIgnoreCase);
            if (i >= 0 && (at < 0 || i < at)) at = i;
        }
        var before = at >= 0 ? context[..at] : context.Length > 0 ? context[..^1] : "";
        long pos = tok.Encode(before, addSpecialTokens: true).Length;
        if (at < 0 && tokPos is long p && pos > desired) pos = p;
        int half = desired / 2;
        long start = Math.Max(0, pos - half);
        long end = Math.Min(tokens.Length, pos + (desired - (pos - start)));
        if (start >= end) return "";
        return tok.Decode(tokens[(int)start..(int)end], skipSpecialTokens: true);
    }

    /// <summary>The prompt of each task's doc_to_text in the JRT harness (the default variants, not "twice").</summary>
    public static string Prompt(RecallTask task, IReadOnlyDictionary<string, string> doc)
    {
        if (task == RecallTask.Swde || task == RecallTask.Fda)
        {
            var key = doc["key"];
            var text = doc["text"];
            var question = key + ":";
            while (question.Length > 0 && text.EndsWith(question, StringComparison.OrdinalIgnoreCase)) text = text[..^question.Length];
            var upper = key.Length == 0 ? key : char.ToUpperInvariant(key[0]) + key[1..];
            if (task == RecallTask.Swde)
                return PyStrip(PyStrip(PyStrip(PyStrip(text, "\n")), "\n")).Trim('.') + ". " + upper + ":";
            var out_ = text.Trim('\n').Trim('.');
            if (!out_.EndsWith('.')) out_ += ".";
            return out_ + " " + upper + ":";
        }
        if (task == RecallTask.Squad) return PyStrip(doc["text"]);
        var context = PyStrip(doc["context"]);
        var q = PyStrip(doc["question"]);
        if (task == RecallTask.TriviaQa) context = TriviaQaMarkup().Replace(context, "");
        if (task == RecallTask.Nq)
        {
            // JRT's NQ cuts a trailing question once and case-sensitively; TriviaQA and DROP repeatedly, case ignored.
            if (context.EndsWith(q, StringComparison.Ordinal)) context = context[..^q.Length];
        }
        else
            while (q.Length > 0 && context.EndsWith(q, StringComparison.OrdinalIgnoreCase)) context = context[..^q.Length];
        return PyStrip(context).Trim('.') + ". " + q;
    }

    /// <summary>Python's str.strip(): white space, or the given characters, off both ends.</summary>
    static string PyStrip(string s, string? chars = null) => chars is null ? s.Trim() : s.Trim(chars.ToCharArray());

    /// <summary>JRT's contains_score: some label occurs in the continuation, case ignored (re.search of the escaped label, IGNORECASE).</summary>
    public static bool Contains(string continuation, IEnumerable<string> labels) =>
        labels.Any(l => continuation.Contains(l, StringComparison.OrdinalIgnoreCase));

    /// <summary>The harness's generate_until: the decoded continuation up to the first stop string ("\n").</summary>
    public static string UntilNewline(string continuation) => continuation.Split('\n')[0];

    /// <summary>The examples of a file (.jsonl or .parquet), in order; records JRT drops are left out.</summary>
    public static List<RecallExample> ReadFile(RecallTask task, string path, ITokenizer tok, int? contextLength, int? limit = null) =>
        // Cloned: a JSON Lines record's element lives only as long as its line's document.
        EvalFiles.ReadRecords(path, (o, where) => (o: o.Clone(), where)).Take(limit ?? int.MaxValue)
            .Select(r => Build(task, r.o, r.where, tok, contextLength)).Where(e => e is not null).Select(e => e!).ToList();

    /// <summary>"contains" over the file's first <paramref name="limit"/> records (those JRT keeps).</summary>
    public static List<EvalResult> Evaluate(ICausalLanguageModel model, ITokenizer tok, RecallTask task, string path, int? contextLength = DefaultContextLength,
        int maxNewTokens = MaxNewTokens, int? limit = null, EvalOptions? options = null)
    {
        var o = options ?? new EvalOptions();
        var ex = ReadFile(task, path, tok, contextLength, limit);
        if (ex.Count == 0) throw new DataException($"{path}: every record was dropped (answers of at most one character), nothing to score");
        var gen = new GenerationOptions(maxNewTokens, SamplingOptions.Greedy, tok.EosId is int eos ? [eos] : null, Math.Min(tok.VocabSize, model.VocabSize));
        var outs = Generation.Generate(model, ex.Select(e => tok.Encode(e.Prompt, addSpecialTokens: true)).ToArray(), gen, o, task.Name);
        int hit = ex.Where((e, i) => Contains(UntilNewline(tok.Decode(outs[i].Tokens, skipSpecialTokens: true)), e.Labels)).Count();
        var setting = EvalResult.SettingOf(("file", Path.GetFileName(path)), ("context_length", contextLength is int c ? c : "full"));
        return [new EvalResult(o.ModelName, task.Name, setting, "contains", (double)hit / ex.Count, ex.Count)];
    }

    [GeneratedRegex(@"\[PAR\]|\[DOC\]|\[TLE\]")]
    private static partial Regex TriviaQaMarkup();
}
