using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using StateX.IO;

namespace StateX.Evaluation;

/// <summary>
/// The one results format of StateX (evaluations, sweeps, studies), written and read here only.
/// CSV: the label columns (the union over all results, in order of first appearance), then
/// <c>model, task, SETTING KEYS (sorted), metric, value, n</c>; cells are empty where a result lacks a key.
/// JSON Lines: one object per result, <c>{"labels": {...}, "model", "task", "setting": {...}, "metric", "value", "n"}</c>
/// (<c>labels</c> only when there are any). Files are replaced atomically.
/// </summary>
public static class ResultFiles
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

    public static void WriteCsv(string path, IEnumerable<EvalResult> results) => AtomicFile.WriteAllText(path, CsvText(results));

    public static void WriteJsonLines(string path, IEnumerable<EvalResult> results) => AtomicFile.WriteAllText(path, JsonLinesText(results));

    public static string CsvText(IEnumerable<EvalResult> results)
    {
        var list = results.ToList();
        var labels = list.SelectMany(r => r.Labels.Select(l => l.Key)).Distinct().ToList();
        var keys = list.SelectMany(r => r.Setting.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
        var clash = labels.Intersect(keys.Concat(["model", "task", "metric", "value", "n"])).FirstOrDefault();
        if (clash is not null) throw new ArgumentException($"results label '{clash}' is also a column of the results: rename the label");
        var sb = new StringBuilder();
        sb.AppendJoin(',', labels.Concat(["model", "task"]).Concat(keys).Concat(["metric", "value", "n"]).Select(Csv)).Append('\n');
        foreach (var r in list)
        {
            var cells = labels.Select(l => r.Labels.FirstOrDefault(kv => kv.Key == l).Value ?? "").ToList();
            cells.Add(r.Model);
            cells.Add(r.Task);
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
                if (r.Labels.Count > 0)
                {
                    w.WriteStartObject("labels");
                    foreach (var (k, v) in r.Labels) w.WriteString(k, v);
                    w.WriteEndObject();
                }
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

    /// <summary>
    /// Reads a JSON Lines results file written by <see cref="WriteJsonLines"/>; a missing file reads as no results.
    /// Whole numbers in settings come back as ints (longs beyond the int range), others as doubles.
    /// Errors name the file and the line.
    /// </summary>
    public static List<EvalResult> ReadJsonLines(string path)
    {
        var results = new List<EvalResult>();
        if (!File.Exists(path)) return results;
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                var o = JsonNode.Parse(line)!.AsObject();
                var setting = new List<(string, object)>();
                foreach (var (k, v) in o["setting"]!.AsObject())
                    setting.Add((k, v!.GetValueKind() switch
                    {
                        JsonValueKind.Number when v.GetValue<double>() is var d && Math.Floor(d) == d && Math.Abs(d) < 2e9 => (object)(int)d,
                        JsonValueKind.Number when v.GetValue<double>() is var d && Math.Floor(d) == d && Math.Abs(d) < 9e15 => (long)d,
                        JsonValueKind.Number => v.GetValue<double>(),
                        JsonValueKind.True => true,
                        JsonValueKind.False => false,
                        _ => v.GetValue<string>(),
                    }));
                var valueNode = o["value"]!;
                double value = valueNode.GetValueKind() == JsonValueKind.String
                    ? double.Parse(valueNode.GetValue<string>(), CultureInfo.InvariantCulture)
                    : valueNode.GetValue<double>();
                var labels = o["labels"] is JsonObject lo
                    ? lo.Select(kv => new KeyValuePair<string, string>(kv.Key, kv.Value!.GetValue<string>())).ToArray()
                    : [];
                results.Add(new EvalResult(o["model"]!.GetValue<string>(), o["task"]!.GetValue<string>(), EvalResult.SettingOf([.. setting]),
                    o["metric"]!.GetValue<string>(), value, o["n"]!.GetValue<long>())
                { Labels = labels });
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or NullReferenceException or FormatException)
            {
                throw new InvalidDataException($"{path}, line {lineNo}: not a results line ({e.Message})", e);
            }
        }
        return results;
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
}
