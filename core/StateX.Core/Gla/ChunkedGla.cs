using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Gla;

/// <summary>
/// The chunked parallel form of the GLA recurrence (the same function as <see cref="RecurrentGla"/>).
///
/// Within a chunk of C tokens, with G the cumulative log decay from the chunk start (G ≤ 0, decreasing),
///   o_t = Σ_{s≤t in chunk} (q_t · (k_s ⊙ exp(G_t − G_s))) v_s  +  (q_t ⊙ exp(G_t))ᵀ S_chunk_start
/// and the state advances chunk to chunk as S' = diag(exp(G_C)) S + Σ_s (k_s ⊙ exp(G_C − G_s)) v_sᵀ.
///
/// exp(G_t − G_s) is never formed as exp(G_t)·exp(−G_s): exp(−G_s) overflows once the decay is strong. As in
/// fla's kernels the chunk is cut into sub-chunks of c tokens: inside a sub-chunk the pairwise decay is
/// exponentiated directly (masked above the diagonal before exp); between sub-chunks i > j both factors are
/// taken relative to the first position n of sub-chunk i, exp(G_t − G_n) and exp(G_n − G_s), each ≤ 1.
/// Every exponent formed is ≤ 0, so no length or decay strength can overflow.
///
/// All intra-chunk work is batched over chunks; only the chunk-to-chunk state recurrence loops on the host.
/// </summary>
public static class ChunkedGla
{
    public const int DefaultChunkSize = 64;
    public const int DefaultSubChunkSize = 16;

    /// <param name="q">[B, T, H, dk]</param>
    /// <param name="k">[B, T, H, dk]</param>
    /// <param name="v">[B, T, H, dv]</param>
    /// <param name="g">[B, T, H, dk] log forget gate (≤ 0)</param>
    /// <param name="state">[B, H, dk, dv] or null (zeros)</param>
    /// <param name="scale">multiplies q (dk^−½ in GLA)</param>
    /// <param name="chunkSize">C; a multiple of <paramref name="subChunkSize"/></param>
    /// <param name="subChunkSize">c, the span inside which pairwise decays are exponentiated directly</param>
    /// <returns>o [B, T, H, dv] in v's dtype and the final state [B, H, dk, dv] (float32).</returns>
    public static (Tensor O, Tensor State) Forward(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? state, double scale,
        int chunkSize = DefaultChunkSize, int subChunkSize = DefaultSubChunkSize)
    {
        if (subChunkSize <= 0 || chunkSize <= 0 || chunkSize % subChunkSize != 0)
            throw new ArgumentException($"chunk size {chunkSize} must be a positive multiple of the sub-chunk size {subChunkSize}");
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        var dtype = v.dtype;
        long c = chunkSize, sc = subChunkSize, ns = c / sc;
        long n = (t + c - 1) / c, pad = n * c - t;

        // [B, T, H, D] → [B, H, N, C, D]; padding adds k = v = 0 and g = 0 (no decay), which leaves o and S unchanged.
        Tensor Chunks(Tensor x, ScalarType type)
        {
            var y = x.to_type(type).transpose(1, 2);                                            // [B, H, T, D]
            if (pad > 0) y = nn.functional.pad(y, [0, 0, 0, pad]);
            return y.reshape(b, h, n, c, x.shape[3]);
        }
        var qc = Chunks(q, ScalarType.Float32) * scale;                                        // [B, H, N, C, dk]
        var kc = Chunks(k, ScalarType.Float32);                                                // [B, H, N, C, dk]
        var vc = Chunks(v, dtype);                                                             // [B, H, N, C, dv]
        var gc = Chunks(g, ScalarType.Float32).cumsum(3);                                      // [B, H, N, C, dk], G within chunk

        var a = IntraChunkScores(qc, kc, gc, ns, sc);                                          // [B, H, N, C, C]
        var oIntra = a.to_type(dtype).matmul(vc);                                              // [B, H, N, C, dv]

        // Chunk-level recurrence: per-chunk contributions in one batched matmul, then a scan over chunks.
        var gLast = gc[.., .., .., -1, ..];                                                    // [B, H, N, dk]
        var kDecayed = kc * (gLast.unsqueeze(3) - gc).exp();                                   // [B, H, N, C, dk], factors ≤ 1
        var u = kDecayed.to_type(dtype).transpose(3, 4).matmul(vc).to_type(ScalarType.Float32); // [B, H, N, dk, dv]
        var chunkDecay = gLast.exp().unsqueeze(-1);                                            // [B, H, N, dk, 1]
        var s = state?.to_type(ScalarType.Float32) ?? zeros(b, h, dk, dv, dtype: ScalarType.Float32, device: q.device);
        var starts = new Tensor[n];
        for (long i = 0; i < n; i++)
        {
            starts[i] = s;                                                                     // state entering chunk i
            s = torch.addcmul(u[.., .., i], s, chunkDecay[.., .., i], 1);
        }
        var sStart = stack(starts, 2);                                                         // [B, H, N, dk, dv]
        var qDecayed = (qc * gc.exp()).to_type(dtype);                                         // [B, H, N, C, dk], factors ≤ 1
        var oInter = qDecayed.matmul(sStart.to_type(dtype));                                   // [B, H, N, C, dv]

        var o = (oIntra + oInter).reshape(b, h, n * c, dv)[.., .., ..(int)t].transpose(1, 2).to_type(dtype); // [B, T, H, dv]
        return (o.MoveToOuterDisposeScope(), s.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// A[t, s] = q_t · (k_s ⊙ exp(G_t − G_s)) for s ≤ t within each chunk, zero above the diagonal.
    /// q, k, G: [B, H, N, C, dk] (float32); returns [B, H, N, C, C] (float32).
    /// </summary>
    static Tensor IntraChunkScores(Tensor q, Tensor k, Tensor g, long ns, long sc)
    {
        long b = q.shape[0], h = q.shape[1], n = q.shape[2], c = q.shape[3], dk = q.shape[4];
        var dev = q.device;
        var qs = q.reshape(b, h, n, ns, sc, dk);                                               // [B, H, N, S, c, dk]
        var ks = k.reshape(b, h, n, ns, sc, dk);
        var gs = g.reshape(b, h, n, ns, sc, dk);

        // Inside a sub-chunk: the full pairwise decay, masked (s > t) before exponentiating.
        var above = ones(sc, sc, dtype: ScalarType.Bool, device: dev).triu(1).unsqueeze(-1);  // [c, c, 1]
        var pairDecay = (gs.unsqueeze(-2) - gs.unsqueeze(-3)).masked_fill(above, double.NegativeInfinity).exp(); // [.., c(t), c(s), dk]
        var kPair = pairDecay * ks.unsqueeze(-3);                                              // [.., c(t), c(s), dk]
        var diag = kPair.matmul(qs.unsqueeze(-1)).squeeze(-1);                                 // [B, H, N, S, c(t), c(s)]

        // Across sub-chunks i > j: factors relative to the first position of sub-chunk i.
        var gRef = gs[.., .., .., .., 0, ..];                                                  // [B, H, N, S, dk]
        var qRef = qs * (gs - gRef.unsqueeze(-2)).exp();                                       // [B, H, N, S, c, dk], ≤ 1 factors
        var notBefore = ones(ns, ns, dtype: ScalarType.Bool, device: dev).triu(0).view(ns, ns, 1, 1); // j ≥ i
        var kExp = (gRef.unsqueeze(4).unsqueeze(5) - gs.unsqueeze(3))                         // [B, H, N, S(i), S(j), c, dk]
            .masked_fill(notBefore, double.NegativeInfinity).exp();
        var kRef = ks.unsqueeze(3) * kExp;                                                     // [B, H, N, S(i), S(j), c, dk]
        var cross = qRef.unsqueeze(4).matmul(kRef.transpose(-1, -2));                          // [B, H, N, S(i), S(j), c(t), c(s)]

        var identity = torch.eye(ns, dtype: ScalarType.Float32, device: dev).view(ns, ns, 1, 1);
        var blocks = cross + diag.unsqueeze(4) * identity;                                          // [B, H, N, S(i), S(j), c, c]
        return blocks.permute(0, 1, 2, 3, 5, 4, 6).reshape(b, h, n, c, c);                     // [B, H, N, C, C]
    }
}
