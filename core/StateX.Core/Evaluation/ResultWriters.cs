using StateX.IO;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace StateX.Evaluation;

/// <summary>
/// Writes results as CSV (one column per setting key, the union over all results; empty where a result lacks it)
/// or JSON Lines (one object per result, the setting as a nested object). Files are replaced atomically.
/// </summary>
public static class ResultWriters
{
    /// <summary>By extension: .csv → CSV; .jsonl/.json/.ndjson → JSON Lines.</summary>
    public static void Write(string path, IEnumerable<EvalResult> results)
    {
        switch (Path.GetExtension(path).ToLowerInvariant())
        {
            case ".csv": WriteCsv(path, results); break;
            case ".jsonl" or ".json" or ".ndjson": WriteJsonLines(path, results); break;
            default: throw new ArgumentException($"{path}: unknown results format (use .csv or .jsonl)");
        }
    }

    public static void WriteCsv(string path, IEnumerable<EvalResult> results) => Atomic(path, CsvText(results));

    public static void WriteJsonLines(string path, IEnumerable<EvalResult> results) => Atomic(path, JsonLinesText(results));

    public static string CsvText(IEnumerable<EvalResult> results)
    {
        var list = results.ToList();
        var keys = list.SelectMany(r => r.Setting.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
        var sb = new StringBuilder();
        sb.AppendJoin(',', new[] { "model", "task" }.Concat(keys).Concat(["metric", "value", "n"]).Select(Csv)).Append('\n');
        foreach (var r in list)
        {
            var cells = new List<string> { r.Model, r.Task };
            cells.AddRange(keys.Select(k => r.Setting.TryGetValue(k, out var v) ? Format(v) : ""));
            cells.Add(r.Metric);
            cells.Add(r.Value.ToString("R", CultureInfo.InvariantCulture));
            cells.Add(r.N.ToString(CultureInfo.InvariantCulture));
            sb.AppendJoin(',', cells.Select(Csv)).Append('\n');
        }
        return sb.ToString();
    }

    public static string JsonLinesText(IEnumerable<EvalResult> results)
    {
        var sb = new StringBuilder();
        foreach (var r in results)
        {
            using var ms = new MemoryStream();
            using (var w = new Utf8JsonWriter(ms))
            {
                w.WriteStartObject();
                w.WriteString("model", r.Model);
                w.WriteString("task", r.Task);
                w.WriteStartObject("setting");
                foreach (var (k, v) in r.Setting)
                {
                    w.WritePropertyName(k);
                    switch (v)
                    {
                        case int i: w.WriteNumberValue(i); break;
                        case long l: w.WriteNumberValue(l); break;
                        case double d when double.IsFinite(d): w.WriteNumberValue(d); break;
                        case float f when float.IsFinite(f): w.WriteNumberValue(f); break;
                        case bool b: w.WriteBooleanValue(b); break;
                        default: w.WriteStringValue(Format(v)); break;
                    }
                }
                w.WriteEndObject();
                w.WriteString("metric", r.Metric);
                if (double.IsFinite(r.Value)) w.WriteNumber("value", r.Value); else w.WriteString("value", Format(r.Value));
                w.WriteNumber("n", r.N);
                w.WriteEndObject();
            }
            sb.Append(Encoding.UTF8.GetString(ms.ToArray())).Append('\n');
        }
        return sb.ToString();
    }

    static string Format(object? v) => v switch
    {
        null => "",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => v.ToString() ?? "",
    };

    static string Csv(string s) =>
        s.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;

    static void Atomic(string path, string text) => AtomicFile.WriteAllText(path, text);
}
