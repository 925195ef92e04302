using System.Text.Json;
using StateX.Data;
using StateX.Tokenization;

namespace StateX.Evaluation.Tasks;

/// <summary>Reads the user's evaluation files; every error names the file and the line (<see cref="DataException"/>).</summary>
public static class EvalFiles
{
    /// <summary>
    /// The records of a JSON Lines file (one object per non-blank line) or of a Parquet file (one row each, as the
    /// Hugging Face datasets publish them), parsed by <paramref name="parse"/>(object, where); where = "path:line" or
    /// "path: row N". A Parquet row is handed over as the JSON object of its columns (lists as arrays, structs as
    /// objects), so every task reads both formats with one parser.
    /// </summary>
    public static List<T> ReadRecords<T>(string path, Func<JsonElement, string, T> parse) =>
        Path.GetExtension(path).Equals(".parquet", StringComparison.OrdinalIgnoreCase) ? ReadParquet(path, parse) : ReadJsonl(path, parse);

    /// <summary>
    /// A value of Parquet.Net's untyped rows as JSON would print it: strings come as ReadOnlyMemory&lt;char&gt; (its
    /// untyped default; the switch to System.String is process-wide, so it is left alone), lists as enumerables,
    /// structs as dictionaries.
    /// </summary>
    static object? Plain(object? v) => v switch
    {
        null => null,
        string s => s,
        ReadOnlyMemory<char> m => m.ToString(),
        IDictionary<string, object> d => d.ToDictionary(kv => kv.Key, kv => Plain(kv.Value)),
        System.Collections.IEnumerable e => e.Cast<object?>().Select(Plain).ToList(),
        _ => v,
    };

    static List<T> ReadParquet<T>(string path, Func<JsonElement, string, T> parse)
    {
        if (!File.Exists(path)) throw new DataException($"{path}: file not found");
        IList<Dictionary<string, object>> rows;
        try
        {
            using var fs = File.OpenRead(path);
            rows = Parquet.Serialization.ParquetSerializer.DeserializeUntypedAsync(fs).GetAwaiter().GetResult().Data;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or Parquet.ParquetException or InvalidDataException or NotSupportedException)
        { throw new DataException($"{path}: not a readable Parquet file ({e.Message})", e); }
        if (rows.Count == 0) throw new DataException($"{path}: no examples (the file has no rows)");
        var items = new List<T>(rows.Count);
        for (int i = 0; i < rows.Count; i++)
            items.Add(parse(JsonSerializer.SerializeToElement(Plain(rows[i])), $"{path}: row {i}"));
        return items;
    }

    /// <summary>One object per non-blank line, parsed by <paramref name="parse"/>(object, where) where where = "path:line".</summary>
    public static List<T> ReadJsonl<T>(string path, Func<JsonElement, string, T> parse)
    {
        if (!File.Exists(path)) throw new DataException($"{path}: file not found");
        var items = new List<T>();
        long lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var where = $"{path}:{lineNo}";
            JsonDocument doc;
            try { doc = JsonDocument.Parse(line); }
            catch (JsonException e) { throw new DataException($"{where}: invalid JSON ({IO.JsonErrors.Brief(e)})", e); }
            using (doc)
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new DataException($"{where}: expected a JSON object, found {doc.RootElement.ValueKind}");
                items.Add(parse(doc.RootElement, where));
            }
        }
        if (items.Count == 0) throw new DataException($"{path}: no examples (the file is empty)");
        return items;
    }

    public static string String(JsonElement o, string field, string where)
    {
        if (!o.TryGetProperty(field, out var v)) throw new DataException($"{where}: missing field \"{field}\"");
        return v.ValueKind == JsonValueKind.String ? v.GetString()! : throw new DataException($"{where}: field \"{field}\" must be a string, found {v.ValueKind}");
    }

    /// <summary>A string or a non-empty array of strings.</summary>
    public static string[] Strings(JsonElement o, string field, string where)
    {
        if (!o.TryGetProperty(field, out var v)) throw new DataException($"{where}: missing field \"{field}\"");
        if (v.ValueKind == JsonValueKind.String) return [v.GetString()!];
        if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() == 0) throw new DataException($"{where}: field \"{field}\" must be a string or a non-empty array of strings");
        return v.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String ? e.GetString()!
            : throw new DataException($"{where}: field \"{field}\" holds a {e.ValueKind} where strings are expected")).ToArray();
    }

    public static int Int(JsonElement o, string field, string where)
    {
        if (!o.TryGetProperty(field, out var v)) throw new DataException($"{where}: missing field \"{field}\"");
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i : throw new DataException($"{where}: field \"{field}\" must be an integer, found {v}");
    }

    /// <summary>
    /// Documents for loss versus position: a .jsonl/.json/.ndjson file gives one document per line (string field
    /// <paramref name="field"/>); any other file is one document. Encoded with the tokenizer's template (BOS where it has one).
    /// </summary>
    public static List<int[]> ReadDocuments(string path, ITokenizer tokenizer, string field = "text")
    {
        var ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext is ".jsonl" or ".json" or ".ndjson")
            return ReadJsonl(path, (o, where) => tokenizer.Encode(String(o, field, where), addSpecialTokens: true));
        if (!File.Exists(path)) throw new DataException($"{path}: file not found");
        return [tokenizer.Encode(File.ReadAllText(path), addSpecialTokens: true)];
    }
}
