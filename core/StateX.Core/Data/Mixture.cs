using System.Text.Json.Nodes;

namespace StateX.Data;

/// <summary>
/// Weighted mixture: each next document comes from source i with probability ∝ wᵢ / (mean tokens per document of i),
/// seeded, so that the share of tokens (not of documents) follows the weights. A document read in several chunks is
/// finished before another source is drawn. An exhausted source drops out and the rest share its weight.
/// </summary>
public sealed class MixtureSource : IDataSource
{
    public IReadOnlyList<(double Weight, IDataSource Source)> Parts { get; }

    public MixtureSource(IReadOnlyList<(double Weight, IDataSource Source)> parts)
    {
        if (parts.Count == 0) throw new DataException("a mixture needs at least one source");
        foreach (var (w, s) in parts)
            if (!(w > 0) || double.IsInfinity(w)) throw new DataException($"mixture weight {w} of '{s.Describe()}' must be a positive number");
        Parts = parts;
    }

    public string Describe() => "mix:" + string.Join(",", Parts.Select(p => $"{p.Weight.ToString(System.Globalization.CultureInfo.InvariantCulture)}*{p.Source.Describe()}"));

    public IDocumentStream Open(SourceContext context, JsonNode? state) => new Stream(this, context, state);

    sealed class Stream : IDocumentStream
    {
        readonly double[] _w;
        readonly IDocumentStream[] _subs;
        readonly long[] _tokens, _docs;
        readonly bool[] _done;
        readonly Rng _rng;
        int _sticky = -1; // source whose document is unfinished

        public Stream(MixtureSource m, SourceContext ctx, JsonNode? state)
        {
            int n = m.Parts.Count;
            _w = m.Parts.Select(p => p.Weight).ToArray();
            var subStates = state?["sources"] as JsonArray;
            if (subStates is not null && subStates.Count != n)
                throw new DataException($"data cursor has {subStates.Count} mixture sources, the spec has {n}");
            _subs = m.Parts.Select((p, i) => p.Source.Open(ctx with { Seed = Rng.Derive(ctx.Seed, 100 + i) }, subStates?[i]?.DeepClone())).ToArray();
            _tokens = state?["tokens"]?.AsArray().Select(x => x!.GetValue<long>()).ToArray() ?? new long[n];
            _docs = state?["docs"]?.AsArray().Select(x => x!.GetValue<long>()).ToArray() ?? new long[n];
            _done = state?["done"]?.AsArray().Select(x => x!.GetValue<bool>()).ToArray() ?? new bool[n];
            _rng = new Rng(state?["rng"] is JsonNode r ? ulong.Parse(r.GetValue<string>()) : Rng.Derive(ctx.Seed, 99));
            _sticky = state?["sticky"]?.GetValue<int>() ?? -1;
        }

        int Draw()
        {
            var p = new double[_w.Length];
            double total = 0;
            for (int i = 0; i < p.Length; i++)
            {
                if (_done[i]) continue;
                double mean = _docs[i] > 0 ? Math.Max(1.0, (double)_tokens[i] / _docs[i]) : 1.0;
                p[i] = _w[i] / mean; total += p[i];
            }
            if (total == 0) return -1;
            double u = _rng.NextDouble() * total;
            int last = -1;
            for (int i = 0; i < p.Length; i++)
            {
                if (p[i] == 0) continue;
                last = i;
                if ((u -= p[i]) < 0) return i;
            }
            return last;
        }

        public bool TryNext(out DocumentChunk chunk)
        {
            while (true)
            {
                int i = _sticky >= 0 ? _sticky : Draw();
                if (i < 0) { chunk = default; return false; }
                if (_subs[i].TryNext(out chunk))
                {
                    _tokens[i] += chunk.Tokens.Length;
                    if (!chunk.Continues) _docs[i]++;
                    _sticky = chunk.Continues ? i : -1;
                    return true;
                }
                _done[i] = true; _sticky = -1;
            }
        }

        public JsonNode SaveState() => new JsonObject
        {
            ["rng"] = _rng.State.ToString(),
            ["sticky"] = _sticky,
            ["tokens"] = new JsonArray(_tokens.Select(t => (JsonNode)t).ToArray()),
            ["docs"] = new JsonArray(_docs.Select(t => (JsonNode)t).ToArray()),
            ["done"] = new JsonArray(_done.Select(t => (JsonNode)t).ToArray()),
            ["sources"] = new JsonArray(_subs.Select(s => s.SaveState()).ToArray()),
        };

        public void Dispose() { foreach (var s in _subs) s.Dispose(); }
    }
}
