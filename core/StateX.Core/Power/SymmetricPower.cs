using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Power;

/// <summary>
/// The symmetric power embedding of power attention (Gelada, Buckman, Zhang, Bach 2025, "Scaling Context Requires
/// Rethinking Attention"): φ_p(x) has one feature per multiset {i1 ≤ … ≤ ip} of the d coordinates,
/// √(p! / Π α_j!) · Π x_i, so that φ_p(q)·φ_p(k) = (q·k)^p exactly while holding D = C(d + p − 1, p) numbers instead
/// of the d^p of the full tensor power.
/// </summary>
public sealed class SymmetricPower
{
    public int Dim { get; }
    public int Degree { get; }
    /// <summary>D = C(d + p − 1, p).</summary>
    public int Features { get; }
    readonly long[] _index;     // [D·p] coordinates of each multiset, ascending
    readonly double[] _coef;    // [D] √(p! / Π α_j!)

    public SymmetricPower(int dim, int degree)
    {
        if (dim <= 0) throw new ArgumentException($"power attention: head dim must be positive, got {dim}");
        if (degree <= 0 || degree % 2 != 0) throw new ArgumentException($"power attention: degree p must be a positive even number, got {degree}");
        Dim = dim;
        Degree = degree;
        var index = new List<long>();
        var coef = new List<double>();
        var current = new int[degree];
        void Walk(int pos, int start)
        {
            if (pos == degree)
            {
                double c = Factorial(degree);
                foreach (var g in current.GroupBy(i => i)) c /= Factorial(g.Count());
                index.AddRange(current.Select(i => (long)i));
                coef.Add(Math.Sqrt(c));
                return;
            }
            for (int i = start; i < dim; i++) { current[pos] = i; Walk(pos + 1, i); }
        }
        Walk(0, 0);
        Features = coef.Count;
        _index = index.ToArray();
        _coef = coef.ToArray();
    }

    /// <summary>C(d + p − 1, p), the number of features, without building the embedding.</summary>
    public static long FeatureCount(long dim, int degree)
    {
        long n = 1;
        for (int i = 1; i <= degree; i++) n = n * (dim + i - 1) / i;   // exact at every step: a product of i consecutive integers is divisible by i!
        return n;
    }

    static double Factorial(int n) { double f = 1; for (int i = 2; i <= n; i++) f *= i; return f; }

    /// <param name="x">[..., d]</param>
    /// <returns>φ_p(x) [..., D] (differentiable)</returns>
    public Tensor Embed(Tensor x)
    {
        if (x.shape[^1] != Dim) throw new ArgumentException($"power attention: the embedding is for head dim {Dim}, got a last dim of {x.shape[^1]}");
        using var scope = NewDisposeScope();
        using var index = tensor(_index, device: x.device);
        using var coef = tensor(_coef, device: x.device).to_type(x.dtype);
        var picked = x.index_select(-1, index);                                      // [..., D·p]
        long[] shape = [.. x.shape[..^1], Features, Degree];
        var phi = picked.reshape(shape).prod(-1) * coef;                             // [..., D]
        return phi.MoveToOuterDisposeScope();
    }
}
