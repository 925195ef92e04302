namespace StateX.Data;

/// <summary>
/// SplitMix64: a tiny generator whose whole state is one ulong, so that a data cursor can save and restore it
/// exactly (System.Random cannot be serialised).
/// </summary>
public sealed class Rng(ulong state)
{
    public ulong State { get; private set; } = state;

    public ulong NextULong()
    {
        ulong z = State += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, 1).</summary>
    public double NextDouble() => (NextULong() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform in [0, n), unbiased.</summary>
    public int NextInt(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n));
        ulong limit = ulong.MaxValue - ulong.MaxValue % (ulong)n;
        ulong x;
        do x = NextULong(); while (x >= limit);
        return (int)(x % (ulong)n);
    }

    public void Shuffle<T>(IList<T> items)
    {
        for (int i = items.Count - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary>A seed derived from a parent seed and some labels (source index, epoch), well mixed.</summary>
    public static ulong Derive(ulong seed, params long[] labels)
    {
        var r = new Rng(seed);
        ulong s = r.NextULong();
        foreach (var l in labels) { r = new Rng(s ^ (ulong)l * 0xD1B54A32D192ED03UL); s = r.NextULong(); }
        return s;
    }
}
