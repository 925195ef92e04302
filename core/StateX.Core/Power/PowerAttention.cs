using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Power;

/// <summary>
/// Power attention of even degree p (Gelada, Buckman, Zhang, Bach 2025), per head, with an optional scalar log gate
/// g_t ≤ 0 per head and step (G its running sum):
///   A_ts = exp(G_t − G_s) · (scale · q_t·k_s)^p  for s ≤ t,     o_t = Σ_s A_ts v_s / (Σ_s A_ts + eps).
/// Three forms of one function: <see cref="Attention"/> (quadratic, the reference), <see cref="Recurrent"/> over the
/// symmetric power state S = Σ decay·φ(k) vᵀ [D, dv] and normaliser Z = Σ decay·φ(k) [D] with D = C(d + p − 1, p)
/// (<see cref="SymmetricPower"/>), and <see cref="Chunked"/>: quadratic inside chunks, the state between them.
/// The normaliser is carried with the state (as a column of ones appended to v), so segments chain exactly.
/// No fused kernel: the chunked form is tensor operations differentiated by autograd.
/// </summary>
public static class PowerAttention
{
    public const int DefaultChunkSize = 64;
    /// <summary>Keeps o finite where no score is positive yet (q·k = 0 exactly); A ≥ 0 for even p, so Σ A + eps &gt; 0.</summary>
    public const double Eps = 1e-6;

    /// <param name="q">[B, T, H, d]</param>
    /// <param name="k">[B, T, H, d]</param>
    /// <param name="v">[B, T, H, dv]</param>
    /// <param name="logGate">[B, T, H] (≤ 0) or null (no gating)</param>
    /// <param name="degree">p, even</param>
    /// <param name="scale">multiplies q before the power</param>
    /// <returns>o [B, T, H, dv]</returns>
    public static Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor? logGate, int degree, double scale)
    {
        Check(q, k, v, logGate, degree);
        using var scope = NewDisposeScope();
        long t = q.shape[1];
        var qh = q.to_type(ScalarType.Float32).transpose(1, 2) * scale;                     // [B, H, T, d]
        var kh = k.to_type(ScalarType.Float32).transpose(1, 2);
        var vh = v.to_type(ScalarType.Float32).transpose(1, 2);                              // [B, H, T, dv]
        var a = Weights(qh.matmul(kh.transpose(-1, -2)), logGate?.to_type(ScalarType.Float32).transpose(1, 2).cumsum(-1), degree, t); // [B, H, T, T]
        var o = a.matmul(vh) / (a.sum(-1, keepdim: true) + Eps);                             // [B, H, T, dv]
        return o.transpose(1, 2).to_type(v.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Causal weights exp(G_t − G_s)·s^p, zero above the diagonal (the decay is masked before exp, so it never overflows).</summary>
    static Tensor Weights(Tensor scores, Tensor? cum, int degree, long c)
    {
        var causal = ones(c, c, dtype: ScalarType.Bool, device: scores.device).tril();
        var a = scores.pow(degree);
        if (cum is not null)
            a = a * (cum.unsqueeze(-1) - cum.unsqueeze(-2)).masked_fill(causal.logical_not(), Scalars.NegativeInfinity).exp();
        return a.masked_fill(causal.logical_not(), Scalars.Zero);   // held Scalars: an implicit one can be freed mid-call (see Scalars)
    }

    /// <param name="q">[B, T, H, d]</param>
    /// <param name="k">[B, T, H, d]</param>
    /// <param name="v">[B, T, H, dv]</param>
    /// <param name="logGate">[B, T, H] (≤ 0) or null</param>
    /// <param name="state">S [B, H, D, dv] and Z [B, H, D], or null (zeros)</param>
    /// <param name="degree">p, even</param>
    /// <param name="scale">multiplies q before the power</param>
    /// <returns>o [B, T, H, dv] and the final S, Z (in <see cref="StateType"/>).</returns>
    public static (Tensor O, Tensor S, Tensor Z) Recurrent(Tensor q, Tensor k, Tensor v, Tensor? logGate, (Tensor S, Tensor Z)? state, int degree, double scale)
    {
        Check(q, k, v, logGate, degree);
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dv = v.shape[3];
        var phi = new SymmetricPower((int)q.shape[3], degree);
        var st = StateType(degree);
        var sz = Joint(state, b, h, phi.Features, dv, q.device, st);                             // [B, H, D, dv+1]
        var fq = phi.Embed(q.to_type(st) * scale);                           // [B, T, H, D]
        var fk = phi.Embed(k.to_type(st));
        var v1 = WithOnes(v, st);                                                                 // [B, T, H, dv+1]
        var decay = logGate?.to_type(st).exp();                              // [B, T, H]
        var outputs = new Tensor[t];
        for (long i = 0; i < t; i++)
        {
            using var step = NewDisposeScope();
            var write = fk[.., i].unsqueeze(-1) * v1[.., i].unsqueeze(-2);                   // [B, H, D, dv+1]
            sz = ((decay is null ? sz : sz * decay[.., i].unsqueeze(-1).unsqueeze(-1)) + write).MoveToOuterDisposeScope();
            var read = fq[.., i].unsqueeze(-2).matmul(sz).squeeze(-2);                        // [B, H, dv+1]
            outputs[i] = Normalise(read, dv).MoveToOuterDisposeScope();
        }
        var o = t == 0 ? empty(b, 0, h, dv, dtype: v.dtype, device: v.device) : stack(outputs, 1).to_type(v.dtype);
        var (s, z) = Split(sz, dv);
        return (o.MoveToOuterDisposeScope(), s.MoveToOuterDisposeScope(), z.MoveToOuterDisposeScope());
    }

    /// <param name="q">[B, T, H, d]</param>
    /// <param name="k">[B, T, H, d]</param>
    /// <param name="v">[B, T, H, dv]</param>
    /// <param name="logGate">[B, T, H] (≤ 0) or null</param>
    /// <param name="state">S [B, H, D, dv] and Z [B, H, D], or null (zeros)</param>
    /// <param name="degree">p, even</param>
    /// <param name="scale">multiplies q before the power</param>
    /// <param name="chunkSize">C: quadratic inside a chunk, the D-wide state between chunks</param>
    /// <returns>o [B, T, H, dv] and the final S, Z (in <see cref="StateType"/>).</returns>
    public static (Tensor O, Tensor S, Tensor Z) Chunked(Tensor q, Tensor k, Tensor v, Tensor? logGate, (Tensor S, Tensor Z)? state, int degree, double scale,
        int chunkSize = DefaultChunkSize)
    {
        Check(q, k, v, logGate, degree);
        if (chunkSize <= 0) throw new ArgumentException($"power attention: chunk size must be positive, got {chunkSize}");
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dv = v.shape[3];
        var phi = new SymmetricPower((int)q.shape[3], degree);
        var st = StateType(degree);
        var sz = Joint(state, b, h, phi.Features, dv, q.device, st);                             // [B, H, D, dv+1]
        if (t == 0)
        {
            var (s0, z0) = Split(sz.clone(), dv);
            return (empty(b, 0, h, dv, dtype: v.dtype, device: v.device).MoveToOuterDisposeScope(), s0.MoveToOuterDisposeScope(), z0.MoveToOuterDisposeScope());
        }
        long c = chunkSize, n = (t + c - 1) / c, pad = n * c - t;
        // [B, T, H, X] → [B, H, N, C, X]; padding adds k = v = 0 and g = 0, which writes nothing and decays nothing.
        Tensor Chunks(Tensor x)
        {
            var y = x.to_type(st).transpose(1, 2);
            if (pad > 0) y = nn.functional.pad(y, [0, 0, 0, pad]);
            return y.reshape(b, h, n, c, x.shape[3]);
        }
        var qc = Chunks(q) * scale;                                                           // [B, H, N, C, d]
        var kc = Chunks(k);
        var vc = Chunks(WithOnes(v, st));                                                         // [B, H, N, C, dv+1]
        var cum = logGate is null ? null : Chunks(logGate.unsqueeze(-1)).squeeze(-1).cumsum(-1); // [B, H, N, C]
        var intra = Weights(qc.matmul(kc.transpose(-1, -2)), cum, degree, c).matmul(vc);     // [B, H, N, C, dv+1]

        var fq = phi.Embed(qc);                                                               // [B, H, N, C, D]
        var fk = phi.Embed(kc);
        var fkDecayed = cum is null ? fk : fk * (cum[.., .., .., ^1..] - cum).exp().unsqueeze(-1);
        var writes = fkDecayed.transpose(-1, -2).matmul(vc);                                  // [B, H, N, D, dv+1]
        var starts = new Tensor[n];
        for (long i = 0; i < n; i++)
        {
            starts[i] = sz;
            var carried = cum is null ? sz : sz * cum[.., .., i, ^1..].exp().unsqueeze(-1);  // exp(G_C) of chunk i
            sz = carried + writes[.., .., i];
        }
        var inter = fq.matmul(stack(starts, 2));                                              // [B, H, N, C, dv+1]
        if (cum is not null) inter = inter * cum.exp().unsqueeze(-1);
        var total = (intra + inter).reshape(b, h, n * c, dv + 1)[.., .., ..(int)t];           // [B, H, T, dv+1]
        var o = Normalise(total, dv).transpose(1, 2).to_type(v.dtype);                        // [B, T, H, dv]
        var (s, z) = Split(sz, dv);
        return (o.MoveToOuterDisposeScope(), s.MoveToOuterDisposeScope(), z.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The dtype of the symmetric power state and everything computed in its space. φ(q)·S sums D terms of either
    /// sign whose magnitudes are bounded by (|q||k|)^p, not by the (q·k)^p they add up to; in float32 that leaves a
    /// relative error of about 1e-7·(|q||k|/|q·k|)^p, which at p = 4 reached 2e-2 in a tiny LM's logits (the
    /// per-head layer norm magnifies it where the normaliser Z is small). float64 for p ≥ 4 keeps the forms within
    /// 1e-4 of the attention form; p = 2 stays in float32.
    /// </summary>
    public static ScalarType StateType(int degree) => degree >= 4 ? ScalarType.Float64 : ScalarType.Float32;

    /// <summary>Elements of one head's state: D·(dv + 1), S and its normaliser Z.</summary>
    public static long StateElementsPerHead(long headDim, long valueDim, int degree) => SymmetricPower.FeatureCount(headDim, degree) * (valueDim + 1);

    static Tensor WithOnes(Tensor v, ScalarType st) => cat([v.to_type(st), ones([.. v.shape[..^1], 1], dtype: st, device: v.device)], -1);

    static Tensor Normalise(Tensor read, long dv) => read.narrow(-1, 0, dv) / (read.narrow(-1, dv, 1) + Eps);   // [..., dv+1] → [..., dv]

    static Tensor Joint((Tensor S, Tensor Z)? state, long b, long h, long d, long dv, Device device, ScalarType st) =>
        state is { } given
            ? cat([given.S.to_type(st), given.Z.to_type(st).unsqueeze(-1)], -1)
            : zeros(b, h, d, dv + 1, dtype: st, device: device);

    static (Tensor S, Tensor Z) Split(Tensor sz, long dv) => (sz[.., .., .., ..(int)dv], sz[.., .., .., (int)dv]);

    static void Check(Tensor q, Tensor k, Tensor v, Tensor? g, int degree)
    {
        static string Shape(Tensor? x) => x is null ? "none" : $"[{string.Join(", ", x.shape)}]";
        if (degree <= 0 || degree % 2 != 0) throw new ArgumentException($"power attention: degree p must be a positive even number, got {degree}");
        bool ok = q.ndim == 4 && k.ndim == 4 && v.ndim == 4 && q.shape.SequenceEqual(k.shape) && q.shape.Take(3).SequenceEqual(v.shape.Take(3))
            && (g is null || (g.ndim == 3 && g.shape.SequenceEqual(q.shape.Take(3))));
        if (!ok)
            throw new ArgumentException($"power attention expects q, k [B, T, H, d], v [B, T, H, dv], log gate [B, T, H]; got q {Shape(q)}, k {Shape(k)}, v {Shape(v)}, log gate {Shape(g)}");
    }
}
