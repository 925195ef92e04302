using StateX.Data;

namespace StateX.Evaluation;

/// <summary>
/// How the next token is chosen. Temperature 0 is greedy (argmax, lowest id on ties). Otherwise logits are divided
/// by the temperature, then top-k (0 = off) and top-p (nucleus; 1 = off) restrict the candidates, and one is drawn
/// with a SplitMix64 generator seeded from (<c>Seed</c>, index of the prompt): the same seed and prompts give the
/// same tokens whatever the batch size.
/// </summary>
public sealed record SamplingOptions(double Temperature = 0, int TopK = 0, double TopP = 1.0, ulong Seed = 0)
{
    public static SamplingOptions Greedy { get; } = new();

    public void Validate()
    {
        if (!(Temperature >= 0) || double.IsInfinity(Temperature)) throw new ArgumentException($"temperature must be a finite number ≥ 0 (got {Temperature})");
        if (TopK < 0) throw new ArgumentException($"top-k must be ≥ 0 (0 = off; got {TopK})");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"top-p must be in (0, 1] (1 = off; got {TopP})");
    }
}

/// <summary>Draws one token from a row of logits.</summary>
public static class Sampler
{
    public static int Argmax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    public static int Sample(ReadOnlySpan<float> logits, SamplingOptions o, Rng rng)
    {
        if (o.Temperature == 0) return Argmax(logits);
        int v = logits.Length;
        // Candidates in decreasing logit order (only when top-k or top-p need the order).
        int[] cand;
        if (o.TopK > 0 || o.TopP < 1)
        {
            cand = Enumerable.Range(0, v).ToArray();
            var keys = logits.ToArray();
            Array.Sort(keys.Select(k => -k).ToArray(), cand);
            if (o.TopK > 0 && o.TopK < v) cand = cand[..o.TopK];
        }
        else cand = Enumerable.Range(0, v).ToArray();

        double max = double.NegativeInfinity;
        foreach (var i in cand) max = Math.Max(max, logits[i]);
        var w = new double[cand.Length];
        double sum = 0;
        for (int k = 0; k < cand.Length; k++) sum += w[k] = Math.Exp((logits[cand[k]] - max) / o.Temperature);
        if (o.TopP < 1)
        {
            // Smallest prefix (in decreasing probability) whose mass reaches top-p; the first token always stays.
            double acc = 0; int keep = 0;
            while (keep < cand.Length) { acc += w[keep++] / sum; if (acc >= o.TopP) break; }
            cand = cand[..keep]; w = w[..keep]; sum = w.Sum();
        }
        double u = rng.NextDouble() * sum, c = 0;
        for (int k = 0; k < cand.Length; k++) { c += w[k]; if (u < c) return cand[k]; }
        return cand[^1];
    }
}
