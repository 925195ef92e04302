using StateX.Models;

namespace StateX.Evaluation.Tasks;

/// <summary>
/// Mean next-token loss by position over long documents, in bins: the curve that shows state collapse beyond the
/// training length. Documents run in segments carrying the state, so a 256K-token document costs one segment's
/// memory. Position t is the prediction of token t + 1 from tokens 0..t.
/// </summary>
public static class LossVsPosition
{
    /// <summary>Bin edges 0, 1, 2, 4, ... up to <paramref name="maxLength"/> (powers of two).</summary>
    public static int[] PowerOfTwoEdges(int maxLength)
    {
        var e = new List<int> { 0 };
        for (long p = 1; p < maxLength; p *= 2) e.Add((int)p);
        e.Add(maxLength);
        return e.ToArray();
    }

    /// <summary>Bin edges every <paramref name="width"/> positions up to <paramref name="maxLength"/>.</summary>
    public static int[] LinearEdges(int maxLength, int width)
    {
        if (width < 1) throw new ArgumentException($"bin width must be at least 1 (got {width})");
        var e = new List<int>();
        for (int p = 0; p < maxLength; p += width) e.Add(p);
        e.Add(maxLength);
        return e.ToArray();
    }

    /// <summary>
    /// Documents are cut to <paramref name="maxLength"/> tokens. One result per non-empty bin [from, to): metric
    /// "loss" (mean NLL in nats), N = scored positions.
    /// </summary>
    public static List<EvalResult> Evaluate(ICausalLanguageModel model, IReadOnlyList<int[]> documents, int maxLength, int[]? binEdges = null, EvalOptions? options = null)
    {
        var o = options ?? new EvalOptions();
        var edges = binEdges ?? PowerOfTwoEdges(maxLength);
        for (int i = 1; i < edges.Length; i++)
            if (edges[i] <= edges[i - 1]) throw new ArgumentException("bin edges must increase");
        var docs = documents.Where(d => d.Length >= 2).Select(d => d.Length > maxLength ? d[..maxLength] : d).ToArray();
        if (docs.Length == 0) throw new ArgumentException("no document has two or more tokens");
        var scores = Scoring.ScoreTokens(model, docs, o, "loss_vs_position");
        var sum = new double[edges.Length - 1];
        var n = new long[edges.Length - 1];
        foreach (var s in scores)
            for (int t = 0; t < s.LogProbs.Length; t++)
            {
                int b = Array.BinarySearch(edges, t);
                b = b >= 0 ? b : ~b - 1;
                if (b < 0 || b >= sum.Length) continue;
                sum[b] -= s.LogProbs[t]; n[b]++;
            }
        return Enumerable.Range(0, sum.Length).Where(b => n[b] > 0).Select(b =>
            new EvalResult(o.ModelName, "loss_vs_position", EvalResult.SettingOf(("from", edges[b]), ("to", edges[b + 1])), "loss", sum[b] / n[b], n[b])).ToList();
    }
}
