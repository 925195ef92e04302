using System.Reflection;
using StateX.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Gla;

/// <summary>
/// The three pieces of the chunked GLA form that move the most memory when written as tensor operations: the
/// intra-chunk scores, their gradients, and the chunk-to-chunk state scan. <see cref="ChunkedGlaFunction"/> is
/// written against this interface; <see cref="GlaTensorOps"/> implements it with tensor operations on any device,
/// <see cref="GlaCudaOps"/> with fused CUDA kernels.
/// Notation: q, k, G are [B, H, N, C, dk] float32 (q already scaled, G the log decay accumulated from each chunk's start).
/// </summary>
internal interface IGlaChunkOps
{
    /// <summary>A[t, s] = q_t · (k_s ⊙ exp(G_t − G_s)) for s ≤ t, zero above: [B, H, N, C, C] float32.</summary>
    Tensor IntraScores(Tensor q, Tensor k, Tensor g);

    /// <summary>
    /// Given dA [B, H, N, C, C] (lower triangular): dq_t = Σ_{s≤t} dA_ts k_s ⊙ exp(G_t − G_s) and
    /// dk_s = Σ_{t≥s} dA_ts q_t ⊙ exp(G_t − G_s), each [B, H, N, C, dk] float32.
    /// </summary>
    (Tensor Dq, Tensor Dk) IntraGrads(Tensor dA, Tensor q, Tensor k, Tensor g);

    /// <summary>
    /// S_{n+1} = diag(exp(γ_n)) S_n + U_n over the N chunks (from the last chunk down when <paramref name="reverse"/>).
    /// u [B, H, N, dk, dv] (float32 or bf16), gamma [B, H, N, dk] float32, s0 [B, H, dk, dv] float32 or null (zeros).
    /// Returns the state entering each chunk [B, H, N, dk, dv] in u's dtype and the state after the last, float32.
    /// </summary>
    (Tensor Starts, Tensor Final) Scan(Tensor u, Tensor gamma, Tensor? s0, bool reverse);
}

/// <summary>The chunk pieces as tensor operations (any device); the sub-chunk trick of <see cref="ChunkedGla"/> keeps every exponent ≤ 0.</summary>
internal sealed class GlaTensorOps(int subChunkSize) : IGlaChunkOps
{
    public Tensor IntraScores(Tensor q, Tensor k, Tensor g) =>
        ChunkedGla.IntraChunkScores(q, k, g, q.shape[3] / subChunkSize, subChunkSize);

    public (Tensor Dq, Tensor Dk) IntraGrads(Tensor dA, Tensor q, Tensor k, Tensor g)
    {
        using var scope = NewDisposeScope();
        long b = q.shape[0], h = q.shape[1], n = q.shape[2], c = q.shape[3], dk = q.shape[4];
        long sc = subChunkSize, ns = c / sc;
        var dev = q.device;
        var qs = q.reshape(b, h, n, ns, sc, dk);                                               // [B, H, N, S, c, dk]
        var ks = k.reshape(b, h, n, ns, sc, dk);
        var gs = g.reshape(b, h, n, ns, sc, dk);
        var blocks = dA.reshape(b, h, n, ns, sc, ns, sc).permute(0, 1, 2, 3, 5, 4, 6)          // [B, H, N, S(i), S(j), c(t), c(s)]
            .reshape(b, h, n, ns * ns, sc, sc);

        // Inside a sub-chunk: the pairwise decay, masked above the diagonal before exponentiating.
        var dAd = blocks.index_select(3, arange(ns, device: dev) * (ns + 1));                  // [B, H, N, S, c(t), c(s)]
        var above = ones(sc, sc, dtype: ScalarType.Bool, device: dev).triu(1).unsqueeze(-1);  // [c, c, 1]
        var pair = (gs.unsqueeze(-2) - gs.unsqueeze(-3)).masked_fill(above, Scalars.NegativeInfinity).exp(); // [.., c(t), c(s), dk]
        var dq = dAd.unsqueeze(-2).matmul(pair * ks.unsqueeze(-3)).squeeze(-2);               // [B, H, N, S, c(t), dk]
        var dkk = dAd.transpose(-1, -2).unsqueeze(-2)
            .matmul((pair * qs.unsqueeze(-2)).transpose(-2, -3)).squeeze(-2);                  // [B, H, N, S, c(s), dk]

        // Across sub-chunks j < i: factors relative to the first position n of sub-chunk i, as in the forward.
        if (ns > 1)
        {
            var (pi, pj) = ChunkedGla.SubChunkPairs(ns, dev);
            var gFirst = gs.select(4, 0);                                                     // [B, H, N, S, dk]
            var qScale = (gs - gFirst.unsqueeze(-2)).exp().index_select(3, pi);              // [B, H, N, P, c, dk]: exp(G_t − G_n) ≤ 1
            var qRef = qs.index_select(3, pi) * qScale;
            var kScale = (gFirst.index_select(3, pi).unsqueeze(-2) - gs.index_select(3, pj)).exp(); // exp(G_n − G_s) ≤ 1
            var kRef = ks.index_select(3, pj) * kScale;                                       // [B, H, N, P, c, dk]
            var dAp = blocks.index_select(3, pi * ns + pj);                                   // [B, H, N, P, c(t), c(s)]
            using var one = 1.0.ToScalar();
            dq = dq.index_add(3, pi, dAp.matmul(kRef) * qScale, one);
            dkk = dkk.index_add(3, pj, dAp.transpose(-1, -2).matmul(qRef) * kScale, one);
        }
        return (dq.reshape(b, h, n, c, dk).MoveToOuterDisposeScope(), dkk.reshape(b, h, n, c, dk).MoveToOuterDisposeScope());
    }

    public (Tensor Starts, Tensor Final) Scan(Tensor u, Tensor gamma, Tensor? s0, bool reverse)
    {
        using var scope = NewDisposeScope();
        var uf = u.to_type(ScalarType.Float32);
        var gam = gamma;
        if (reverse) { uf = uf.flip(2); gam = gam.flip(2); }
        var init = s0 ?? zeros(u.shape[0], u.shape[1], u.shape[3], u.shape[4], dtype: ScalarType.Float32, device: u.device);
        var (starts, final) = ChunkedGla.ChunkStates(uf, gam, init);
        if (reverse) starts = starts.flip(2);
        return (starts.to_type(u.dtype).MoveToOuterDisposeScope(), final.MoveToOuterDisposeScope());
    }
}

/// <summary>
/// The chunk pieces as fused CUDA kernels (GlaKernels.cu), compiled at first use for the GPU at hand. Each reads its
/// inputs once: the [C, C, dk] pairwise decays exist only in registers.
/// </summary>
internal sealed class GlaCudaOps(int chunkSize) : IGlaChunkOps
{
    /// <summary>Chunk sizes the kernels take: the 16×16 thread tiles and the shared-memory tiles bound it.</summary>
    public static bool Supports(int chunkSize) => chunkSize is >= 16 and <= 64 && chunkSize % 16 == 0;

    CudaKernels.Kernel K(Device device, string name) =>
        CudaKernels.Get(device, "StateX.Gla.GlaKernels.cu", name, new Dictionary<string, string> { ["CHUNK"] = $"{chunkSize}" });

    static Tensor F32(Tensor x) => x.to_type(ScalarType.Float32).contiguous();

    public Tensor IntraScores(Tensor q, Tensor k, Tensor g)
    {
        using var scope = NewDisposeScope();
        long b = q.shape[0], h = q.shape[1], n = q.shape[2], c = q.shape[3], dk = q.shape[4];
        var a = empty(new[] { b, h, n, c, c }, dtype: ScalarType.Float32, device: q.device);
        K(q.device, "gla_intra_scores").Launch(((int)(b * h * n), 1, 1), 256, F32(q), F32(k), F32(g), a, (int)dk);
        return a.MoveToOuterDisposeScope();
    }

    public (Tensor Dq, Tensor Dk) IntraGrads(Tensor dA, Tensor q, Tensor k, Tensor g)
    {
        using var scope = NewDisposeScope();
        long b = q.shape[0], h = q.shape[1], n = q.shape[2], dk = q.shape[4];
        var dq = empty(q.shape, dtype: ScalarType.Float32, device: q.device);                   // contiguous, whatever q's strides
        var dkk = empty(q.shape, dtype: ScalarType.Float32, device: q.device);
        K(q.device, "gla_intra_grads").Launch(((int)(b * h * n), 1, 1), 256, F32(dA), F32(q), F32(k), F32(g), dq, dkk, (int)dk);
        return (dq.MoveToOuterDisposeScope(), dkk.MoveToOuterDisposeScope());
    }

    public (Tensor Starts, Tensor Final) Scan(Tensor u, Tensor gamma, Tensor? s0, bool reverse)
    {
        using var scope = NewDisposeScope();
        long b = u.shape[0], h = u.shape[1], n = u.shape[2], dk = u.shape[3], dv = u.shape[4];
        var (uu, fn) = u.dtype == ScalarType.BFloat16 ? (u.contiguous(), "gla_chunk_scan_bf16") : (F32(u), "gla_chunk_scan_f32");
        var starts = empty(uu.shape, dtype: uu.dtype, device: uu.device);
        var final = empty(b, h, dk, dv, dtype: ScalarType.Float32, device: u.device);
        long total = b * h * dk * dv;
        K(u.device, fn).Launch(((int)((total + 255) / 256), 1, 1), 256,
            uu, F32(gamma), s0 is null ? null : F32(s0), starts, final, (int)n, (int)dk, (int)dv, total, reverse ? 1 : 0);
        return (starts.MoveToOuterDisposeScope(), final.MoveToOuterDisposeScope());
    }
}
