using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace StateX.IO;

/// <summary>Raised for a config.json StateX cannot honour; the message names the file and key.</summary>
public sealed class ConfigException(string message) : Exception(message);

/// <summary>
/// A config.json read with bookkeeping: every key a loader reads is recorded, so the keys nobody read can be
/// reported in one warning, and keys naming features StateX does not implement can be refused by name.
/// Accepts Python's bare <c>Infinity</c>/<c>NaN</c> as well as transformers' <c>{"__float__": "Infinity"}</c>.
/// </summary>
public sealed class ConfigJson
{
    readonly HashSet<string> _read = new(StringComparer.Ordinal);
    public string Path { get; }
    public JsonObject Root { get; }

    public ConfigJson(string path, JsonObject root) { Path = path; Root = root; }

    public static ConfigJson Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"config not found: {path}", path);
        return Parse(File.ReadAllText(path), path);
    }

    public static ConfigJson Parse(string text, string path = "<config>")
    {
        try
        {
            var node = JsonErrors.Parse(QuoteBareFloats(text), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
            return new ConfigJson(path, node as JsonObject ?? throw new ConfigException($"{path}: top level is not a JSON object"));
        }
        catch (JsonException e) { throw new ConfigException($"{path}: not valid JSON: {JsonErrors.Brief(e)}"); }
    }

    /// <summary>Replaces bare Infinity, -Infinity and NaN tokens (outside strings) by {"__float__": "..."}.</summary>
    internal static string QuoteBareFloats(string text)
    {
        var sb = new StringBuilder(text.Length);
        bool inString = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (inString)
            {
                sb.Append(c);
                if (c == '\\' && i + 1 < text.Length) sb.Append(text[++i]);
                else if (c == '"') inString = false;
                continue;
            }
            if (c == '"') { inString = true; sb.Append(c); continue; }
            foreach (var tok in new[] { "-Infinity", "Infinity", "NaN" })
                if (string.CompareOrdinal(text, i, tok, 0, tok.Length) == 0)
                {
                    sb.Append("{\"__float__\": \"").Append(tok).Append("\"}");
                    i += tok.Length - 1;
                    goto next;
                }
            sb.Append(c);
        next:;
        }
        return sb.ToString();
    }

    public ConfigJson Section(string key)
    {
        _read.Add(key);
        return new ConfigJson($"{Path}:{key}", Root[key] as JsonObject ?? new JsonObject());
    }

    public bool Has(string key) => Root.ContainsKey(key) && Root[key] is not null;

    public JsonNode? Node(string key) { _read.Add(key); return Root[key]; }

    /// <summary>Marks keys as understood without reading them (metadata such as transformers_version).</summary>
    public void Ignore(params string[] keys) { foreach (var k in keys) _read.Add(k); }

    public int Int(string key, int? fallback = null)
    {
        long v = Long(key, fallback);
        // A silent wrap-around would turn 3000000000 into a negative size and an error about the wrong thing.
        if (v is > int.MaxValue or < int.MinValue) throw new ConfigException($"{Path}: key '{key}' = {v} is out of range (at most {int.MaxValue})");
        return (int)v;
    }

    public long Long(string key, long? fallback = null)
    {
        var n = Node(key);
        if (n is null) return fallback ?? throw Missing(key);
        try { return n.GetValue<long>(); }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            try { var d = n.GetValue<double>(); if (d == Math.Floor(d)) return (long)d; } catch (Exception) { }
            throw new ConfigException($"{Path}: key '{key}' should be an integer, got {Show(n)}");
        }
    }

    public double Double(string key, double? fallback = null)
    {
        var n = Node(key);
        return n is null ? fallback ?? throw Missing(key) : AsDouble(n, key);
    }

    public double? NullableDouble(string key) { var n = Node(key); return n is null ? null : AsDouble(n, key); }
    public int? NullableInt(string key) => Node(key) is null ? null : Int(key);

    public bool Bool(string key, bool? fallback = null)
    {
        var n = Node(key);
        if (n is null) return fallback ?? throw Missing(key);
        try { return n.GetValue<bool>(); }
        catch (InvalidOperationException) { throw new ConfigException($"{Path}: key '{key}' should be true or false, got {Show(n)}"); }
    }

    public string? String(string key, string? fallback = null)
    {
        var n = Node(key);
        if (n is null) return fallback;
        return n is JsonValue v && v.TryGetValue<string>(out var s) ? s : n.ToJsonString();
    }

    public double[] Doubles(string key)
    {
        var n = Node(key) as JsonArray ?? throw new ConfigException($"{Path}: key '{key}' should be a list");
        return n.Select((x, i) => AsDouble(x!, $"{key}[{i}]")).ToArray();
    }

    double AsDouble(JsonNode n, string key)
    {
        if (n is JsonObject o && o["__float__"] is { } f) return ParseFloatName(f.GetValue<string>(), key);
        if (n is JsonValue v)
        {
            if (v.TryGetValue<double>(out var d)) return d;
            if (v.TryGetValue<string>(out var s)) return ParseFloatName(s, key);
        }
        throw new ConfigException($"{Path}: key '{key}' should be a number, got {Show(n)}");
    }

    double ParseFloatName(string s, string key) => s switch
    {
        "Infinity" or "inf" => double.PositiveInfinity,
        "-Infinity" or "-inf" => double.NegativeInfinity,
        "NaN" or "nan" => double.NaN,
        _ => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d
             : throw new ConfigException($"{Path}: key '{key}' should be a number, got {Show(JsonValue.Create(s))}"),
    };

    /// <summary>Fails, naming the key, when a setting StateX does not implement is switched on.</summary>
    public void Refuse(string key, Func<JsonNode?, bool> isUnsupported, string what)
    {
        var n = Node(key);
        bool refused;
        // The tests read the value as the type the key should have (GetValue<bool>()): another type is a bad value.
        try { refused = isUnsupported(n); }
        catch (InvalidOperationException) { throw new ConfigException($"{Path}: key '{key}' has an unexpected value {Show(n)}"); }
        if (refused)
            throw new ConfigException($"{Path}: '{key}' = {Show(n)} is not supported by StateX ({what})");
    }

    /// <summary>A value for a message: JSON-escaped (a string with line breaks stays one line) and at most 80 characters.</summary>
    public static string Show(JsonNode? n)
    {
        var text = n?.ToJsonString() ?? "null";
        return text.Length > 80 ? text[..80] + "…" : text;
    }

    /// <summary>Keys present in the file that no loader read.</summary>
    public IReadOnlyList<string> UnreadKeys() => Root.Select(kv => kv.Key).Where(k => !_read.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToArray();

    /// <summary>One warning line for unread keys, or null.</summary>
    public string? UnknownKeysWarning() =>
        UnreadKeys() is { Count: > 0 } u ? $"warning: {Path}: ignoring unknown config keys: {string.Join(", ", u)}" : null;

    ConfigException Missing(string key) => new($"{Path}: required key '{key}' is missing");
}
