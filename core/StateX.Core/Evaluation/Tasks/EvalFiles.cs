using System.Text.Json;
using StateX.Data;
using StateX.Tokenization;

namespace StateX.Evaluation.Tasks;

/// <summary>Reads the user's evaluation files; every error names the file and the line (<see cref="DataException"/>).</summary>
public static class EvalFiles
{
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
