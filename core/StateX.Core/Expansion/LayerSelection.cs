using System.Globalization;

namespace StateX.Expansion;

/// <summary>
/// Which layers a rewrite touches. Text forms (CLI and configs):
/// <c>all</c>; <c>every:K</c> — layers 0, K, 2K, … (the official code's <c>drop_prop=K</c>: one layer in every K);
/// <c>list:0,5,7</c> (or just <c>0,5,7</c>); <c>fraction:F</c> — round(F·L) layers spread evenly from layer 0;
/// <c>last:N</c>; <c>first:N</c>.
/// </summary>
public abstract record LayerSelection
{
    public sealed record All : LayerSelection { public override string ToString() => "all"; }
    public sealed record Every(int K) : LayerSelection { public override string ToString() => $"every:{K}"; }
    public sealed record Explicit(IReadOnlyList<int> Layers) : LayerSelection
    {
        public override string ToString() => "list:" + string.Join(",", Layers);
        public bool Equals(Explicit? other) => other is not null && Layers.SequenceEqual(other.Layers);
        public override int GetHashCode() => Layers.Aggregate(17, (h, l) => h * 31 + l);
    }
    public sealed record Fraction(double F) : LayerSelection { public override string ToString() => "fraction:" + F.ToString(CultureInfo.InvariantCulture); }
    public sealed record Last(int N) : LayerSelection { public override string ToString() => $"last:{N}"; }
    public sealed record First(int N) : LayerSelection { public override string ToString() => $"first:{N}"; }

    public static LayerSelection Parse(string text)
    {
        var t = text.Trim().ToLowerInvariant();
        string Arg() => t[(t.IndexOf(':') + 1)..];
        int PositiveInt(string what)
        {
            if (!int.TryParse(Arg(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) || v < 1)
                throw new ArgumentException($"layer selection '{text}': {what} must be a positive integer");
            return v;
        }
        if (t == "all") return new All();
        if (t.StartsWith("every:")) return new Every(PositiveInt("K"));
        if (t.StartsWith("last:")) return new Last(PositiveInt("N"));
        if (t.StartsWith("first:")) return new First(PositiveInt("N"));
        if (t.StartsWith("fraction:"))
        {
            if (!double.TryParse(Arg(), NumberStyles.Float, CultureInfo.InvariantCulture, out var f) || f <= 0 || f > 1)
                throw new ArgumentException($"layer selection '{text}': fraction must be in (0, 1]");
            return new Fraction(f);
        }
        var list = t.StartsWith("list:") ? Arg() : t;
        var parts = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var idx = new List<int>();
        foreach (var p in parts)
        {
            if (!int.TryParse(p, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i) || i < 0)
                throw new ArgumentException($"layer selection '{text}': expected all, every:K, list:I,J,..., fraction:F, first:N or last:N");
            idx.Add(i);
        }
        if (idx.Count == 0) throw new ArgumentException($"layer selection '{text}' selects no layer");
        return new Explicit(idx.Distinct().OrderBy(i => i).ToArray());
    }

    /// <summary>The selected layer indices for a model of <paramref name="numLayers"/> layers; errors name the bad index.</summary>
    public IReadOnlyList<int> Resolve(int numLayers)
    {
        if (numLayers < 1) throw new ArgumentException("model has no layers");
        int[] r = this switch
        {
            All => Enumerable.Range(0, numLayers).ToArray(),
            Every e => Enumerable.Range(0, numLayers).Where(i => i % e.K == 0).ToArray(),
            Last l => Enumerable.Range(Math.Max(0, numLayers - l.N), Math.Min(l.N, numLayers)).ToArray(),
            First f => Enumerable.Range(0, Math.Min(f.N, numLayers)).ToArray(),
            Fraction fr => Spread(numLayers, Math.Max(1, (int)Math.Round(fr.F * numLayers, MidpointRounding.AwayFromZero))),
            Explicit x => x.Layers.ToArray(),
            _ => throw new InvalidOperationException(),
        };
        if (this is Last l2 && l2.N > numLayers || this is First f2 && f2.N > numLayers)
            throw new ArgumentException($"layer selection '{this}' asks for more layers than the model's {numLayers}");
        var bad = r.Where(i => i >= numLayers).ToArray();
        if (bad.Length > 0)
            throw new ArgumentException($"layer index {string.Join(", ", bad)} out of range: the model has {numLayers} layers (0..{numLayers - 1})");
        return r;
    }

    static int[] Spread(int layers, int n) => Enumerable.Range(0, n).Select(i => (int)((long)i * layers / n)).Distinct().ToArray();
}
