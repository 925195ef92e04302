using System.Text.Json.Nodes;

namespace StateX.Data;

/// <summary>
/// Shuffles the units of a source through a buffer of <c>size</c> units, seeded. A unit is a chain of chunks
/// up to one that does not continue (a document; a window of a token file), so documents are never cut apart.
/// The buffer's contents are saved in the cursor, which is why it holds tokens, not text.
/// </summary>
public sealed class ShuffleBuffer(IDataSource inner, int size) : IDataSource
{
    public string Describe() => inner.Describe();

    public IDocumentStream Open(SourceContext context, JsonNode? state) => new Stream(inner, size, context, state);

    sealed class Stream : IDocumentStream
    {
        readonly IDocumentStream _inner;
        readonly int _size;
        readonly Rng _rng;
        readonly List<List<DocumentChunk>> _buffer = [];
        readonly Queue<DocumentChunk> _out = new();
        bool _innerDone;

        public Stream(IDataSource inner, int size, SourceContext ctx, JsonNode? state)
        {
            _size = size;
            _inner = inner.Open(ctx with { Seed = Rng.Derive(ctx.Seed, 1) }, state?["inner"]);
            _rng = new Rng(state?["rng"] is JsonNode r ? ulong.Parse(r.GetValue<string>()) : Rng.Derive(ctx.Seed, 2));
            if (state?["buffer"] is JsonArray buf)
                foreach (var unit in buf) _buffer.Add(unit!.AsArray().Select(ChunkJson.Read).ToList());
            if (state?["out"] is JsonArray outq) foreach (var c in outq) _out.Enqueue(ChunkJson.Read(c));
            _innerDone = state?["done"]?.GetValue<bool>() ?? false;
        }

        List<DocumentChunk>? ReadUnit()
        {
            if (_innerDone) return null;
            var unit = new List<DocumentChunk>();
            while (_inner.TryNext(out var c))
            {
                unit.Add(c);
                if (!c.Continues) return unit;
            }
            _innerDone = true;
            return unit.Count > 0 ? unit : null;
        }

        public bool TryNext(out DocumentChunk chunk)
        {
            if (_out.Count == 0)
            {
                while (_buffer.Count < _size && ReadUnit() is { } u) _buffer.Add(u);
                if (_buffer.Count == 0) { chunk = default; return false; }
                int i = _rng.NextInt(_buffer.Count);
                foreach (var c in _buffer[i]) _out.Enqueue(c);
                _buffer[i] = _buffer[^1];
                _buffer.RemoveAt(_buffer.Count - 1);
            }
            chunk = _out.Dequeue();
            return true;
        }

        public JsonNode SaveState() => new JsonObject
        {
            ["inner"] = _inner.SaveState(),
            ["rng"] = _rng.State.ToString(),
            ["done"] = _innerDone,
            ["buffer"] = new JsonArray(_buffer.Select(u => (JsonNode)new JsonArray(u.Select(ChunkJson.Write).ToArray())).ToArray()),
            ["out"] = new JsonArray(_out.Select(ChunkJson.Write).ToArray()),
        };

        public void Dispose() => _inner.Dispose();
    }
}

/// <summary>Chunks and token runs in cursor JSON: ids as base64 of little-endian int32.</summary>
internal static class ChunkJson
{
    public static string Tokens(ReadOnlySpan<int> ids) =>
        Convert.ToBase64String(System.Runtime.InteropServices.MemoryMarshal.AsBytes(ids));

    public static int[] Tokens(string b64) =>
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(Convert.FromBase64String(b64)).ToArray();

    public static string Flags(bool[] flags) => new(flags.Select(f => f ? '1' : '0').ToArray());

    public static bool[] Flags(string text) => text.Select(c => c == '1').ToArray();

    public static JsonNode Write(DocumentChunk c)
    {
        var o = new JsonObject { ["ids"] = Tokens(c.Tokens), ["ends"] = c.EndsDocument, ["cont"] = c.Continues };
        if (c.Targets is { } t) o["targets"] = Flags(t);
        return o;
    }

    public static DocumentChunk Read(JsonNode? n) =>
        new(Tokens(n!["ids"]!.GetValue<string>()), n["ends"]!.GetValue<bool>(), n["cont"]!.GetValue<bool>(),
            n["targets"] is { } t ? Flags(t.GetValue<string>()) : null);
}
