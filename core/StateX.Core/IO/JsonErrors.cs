using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace StateX.IO;

/// <summary>
/// System.Text.Json's messages quote the offending token, which in a damaged file can run over many lines and
/// kilobytes; an error message must stay one line. The fuzzer found this in every JSON reader at once.
/// </summary>
public static partial class JsonErrors
{
    [GeneratedRegex(@"\s*[\r\n]+\s*")]
    private static partial Regex LineBreaks();

    /// <summary>The message on one line, a quoted token cut to 40 characters.</summary>
    public static string Brief(JsonException e)
    {
        var m = LineBreaks().Replace(e.Message, " ⏎ ");
        // "'<token>' is an invalid ..." : keep the start of the token only.
        if (m.StartsWith('\'') && m.IndexOf("' ", 1, StringComparison.Ordinal) is int end and > 41)
            m = m[..41] + "…" + m[end..];
        return m.Length > 300 ? m[..300] + "…" : m;
    }

    /// <summary>
    /// <see cref="JsonNode.Parse(string, JsonNodeOptions?, JsonDocumentOptions)"/>, with every object built at once: a
    /// JsonObject is filled lazily, so a duplicate key used to surface later, at the first access, as an
    /// ArgumentException naming no file ("An item with the same key has already been added"). Here it is a
    /// <see cref="JsonException"/>, which each reader reports with its file.
    /// </summary>
    public static JsonNode? Parse(string text, JsonDocumentOptions options = default)
    {
        var node = JsonNode.Parse(text, documentOptions: options);
        try { Walk(node); }
        catch (ArgumentException e) { throw new JsonException($"duplicate key: {e.Message.Split(" (Parameter")[0]}"); }
        return node;
    }

    static void Walk(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o: foreach (var (_, v) in o) Walk(v); break;
            case JsonArray a: foreach (var v in a) Walk(v); break;
        }
    }
}
