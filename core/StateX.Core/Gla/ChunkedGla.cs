using StateX.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Gla;

/// <summary>How the chunked GLA form is computed and differentiated. All compute the same function.</summary>
public enum GlaBackend
{
    /// <summary>Fused on CUDA (Manual where the kernels cannot run: no NVRTC, or an unsupported chunk size), Autograd elsewhere.</summary>
    Auto,
    /// <summary>Tensor operations differentiated by autograd: the reference form.</summary>
    Autograd,
    /// <summary>Tensor operations with a hand-written backward pass (<see cref="ChunkedGlaFunction"/>): less memory, no pass through the pairwise decays.</summary>
    Manual,
    /// <summary>The hand-written backward with the intra-chunk scores, their gradients and the state scan as fused CUDA kernels (CUDA only).</summary>
    Fused,
}

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
/// All intra-chunk work is batched over chunks; only the state recurrence loops on the host, once per group of chunks.
/// </summary>
public static class ChunkedGla
{
    public const int DefaultChunkSize = 64;
    // fla uses 16; without fused kernels the pairwise [c, c, dk] decay tensor dominates memory traffic, and 8 halves
    // it while the added cross-sub-chunk pairs stay cheaper (measured about 40% faster on CPU).
    public const int DefaultSubChunkSize = 8;

    /// <param name="q">[B, T, H, dk]</param>
    /// <param name="k">[B, T, H, dk]</param>
    /// <param name="v">[B, T, H, dv]</param>
    /// <param name="g">[B, T, H, dk] log forget gate (≤ 0)</param>
    /// <param name="state">[B, H, dk, dv] or null (zeros)</param>
    /// <param name="scale">multiplies q (dk^−½ in GLA)</param>
    /// <param name="chunkSize">C; a multiple of <paramref name="subChunkSize"/></param>
    /// <param name="subChunkSize">c, the span inside which pairwise decays are exponentiated directly</param>
    /// <param name="backend">how it is computed and differentiated (see <see cref="GlaBackend"/>)</param>
    /// <returns>o [B, T, H, dv] in v's dtype and the final state [B, H, dk, dv] (float32).</returns>
    public static (Tensor O, Tensor State) Forward(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? state, double scale,
        int chunkSize = DefaultChunkSize, int subChunkSize = DefaultSubChunkSize, GlaBackend backend = GlaBackend.Auto)
    {
        if (subChunkSize <= 0 || chunkSize <= 0 || chunkSize % subChunkSize != 0)
            throw new ArgumentException($"chunk size {chunkSize} must be a positive multiple of the sub-chunk size {subChunkSize}");
        if (q.ndim != 4 || k.ndim != 4 || v.ndim != 4 || g.ndim != 4 || !q.shape.SequenceEqual(k.shape) || !q.shape.SequenceEqual(g.shape)
            || v.shape[0] != q.shape[0] || v.shape[1] != q.shape[1] || v.shape[2] != q.shape[2])
            throw new ArgumentException($"GLA expects q, k, g [B, T, H, dk] and v [B, T, H, dv]; got q {Shape(q)}, k {Shape(k)}, v {Shape(v)}, g {Shape(g)}");
        switch (Resolve(backend, q.device, chunkSize))
        {
            case GlaBackend.Manual: return ChunkedGlaFunction.Apply(new GlaTensorOps(subChunkSize), q, k, v, g, state, scale, chunkSize);
            case GlaBackend.Fused: return ChunkedGlaFunction.Apply(new GlaCudaOps(chunkSize), q, k, v, g, state, scale, chunkSize);
        }
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        if (t == 0)
            return (empty(b, 0, h, dv, dtype: v.dtype, device: v.device).MoveToOuterDisposeScope(),
                    (state?.to_type(ScalarType.Float32).clone() ?? zeros(b, h, dk, dv, dtype: ScalarType.Float32, device: q.device)).MoveToOuterDisposeScope());
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

        // Chunk-level recurrence: per-chunk contributions in one batched matmul, then the grouped scan.
        var gLast = gc[.., .., .., -1, ..];                                                    // [B, H, N, dk]
        var kDecayed = kc * (gLast.unsqueeze(3) - gc).exp();                                   // [B, H, N, C, dk], factors ≤ 1
        var u = kDecayed.to_type(dtype).transpose(3, 4).matmul(vc).to_type(ScalarType.Float32); // [B, H, N, dk, dv]
        var s0 = state?.to_type(ScalarType.Float32) ?? zeros(b, h, dk, dv, dtype: ScalarType.Float32, device: q.device);
        var (sStart, s) = ChunkStates(u, gLast, s0);                                          // [B, H, N, dk, dv], [B, H, dk, dv]
        var qDecayed = (qc * gc.exp()).to_type(dtype);                                         // [B, H, N, C, dk], factors ≤ 1
        var oInter = qDecayed.matmul(sStart.to_type(dtype));                                   // [B, H, N, C, dv]

        var o = (oIntra + oInter).reshape(b, h, n * c, dv)[.., .., ..(int)t].transpose(1, 2).to_type(dtype); // [B, T, H, dv]
        return (o.MoveToOuterDisposeScope(), s.MoveToOuterDisposeScope());
    }

    static string Shape(Tensor x) => $"[{string.Join(", ", x.shape)}]";

    /// <summary>What <see cref="GlaBackend.Auto"/> (or an explicit choice) comes to for a device and chunk size; an explicit Fused that cannot run is an error.</summary>
    public static GlaBackend Resolve(GlaBackend backend, Device device, int chunkSize)
    {
        bool fusedPossible = CudaKernels.Available(device) && GlaCudaOps.Supports(chunkSize);
        return backend switch
        {
            GlaBackend.Auto => device.type == DeviceType.CUDA ? (fusedPossible ? GlaBackend.Fused : GlaBackend.Manual) : GlaBackend.Autograd,
            GlaBackend.Fused when !fusedPossible => throw new InvalidOperationException(
                device.type != DeviceType.CUDA ? $"the fused GLA kernels run on CUDA only, not on {device}"
                : !GlaCudaOps.Supports(chunkSize) ? $"the fused GLA kernels take chunk sizes 16, 32, 48 or 64, not {chunkSize}"
                : $"the fused GLA kernels need NVRTC, which is {CudaKernels.Describe()}"),
            _ => backend,
        };
    }

    /// <summary>
    /// The state entering every chunk, S_{n+1} = diag(exp(γ_n)) S_n + U_n, with γ_n the chunk's total log decay.
    /// The same chunking trick one level up: chunks are grouped (<paramref name="groupSize"/>), states inside a
    /// group are a masked decay-weighted sum of the group's U (exponents ≤ 0, batched over groups), and only the
    /// group-to-group step loops on the host, N / groupSize times.
    /// </summary>
    /// <param name="u">[B, H, N, dk, dv] float32, each chunk's own contribution Σ_s (k_s ⊙ exp(G_C − G_s)) v_sᵀ</param>
    /// <param name="gamma">[B, H, N, dk] each chunk's total log decay</param>
    /// <param name="s0">[B, H, dk, dv] the state entering chunk 0</param>
    /// <param name="groupSize">chunks per group of the two-level scan</param>
    /// <returns>the states entering each chunk [B, H, N, dk, dv] and the state after the last [B, H, dk, dv].</returns>
    internal static (Tensor Starts, Tensor Final) ChunkStates(Tensor u, Tensor gamma, Tensor s0, int groupSize = 32)
    {
        long b = u.shape[0], h = u.shape[1], n = u.shape[2], dk = u.shape[3], dv = u.shape[4];
        long gsz = Math.Min(n, groupSize), ng = (n + gsz - 1) / gsz, pad = ng * gsz - n;
        if (pad > 0) { u = nn.functional.pad(u, [0, 0, 0, 0, 0, pad]); gamma = nn.functional.pad(gamma, [0, 0, 0, pad]); }
        var ug = u.view(b, h, ng, gsz, dk, dv);                                               // [B, H, Ng, G, dk, dv]
        var gam = gamma.view(b, h, ng, gsz, dk);                                              // [B, H, Ng, G, dk]
        var excl = gam.cumsum(3) - gam;                                                        // decay before chunk n
        var lastIncl = gam.sum(3);                                                             // [B, H, Ng, dk] decay over the group

        // Decay between chunks as sums of only the chunks in between (masks @ γ), not differences of cumulative
        // sums: those cancel catastrophically once a strong decay has made the cumulative sum large.
        var idx = arange(gsz, device: u.device);
        var between = (idx.view(gsz, 1, 1) > idx.view(1, 1, gsz)).logical_and(idx.view(1, 1, gsz) > idx.view(1, gsz, 1)) // [n, m, l]: m < l < n
            .to_type(ScalarType.Float32);
        var after = (idx.view(1, gsz) > idx.view(gsz, 1)).to_type(ScalarType.Float32);        // [m, l]: l > m

        // Inside a group: Σ_{m<n} exp(Σ_{m<l<n} γ_l) ⊙ U_m, a batched matmul per key channel.
        var later = ones(gsz, gsz, dtype: ScalarType.Bool, device: u.device).triu(0).unsqueeze(-1); // m ≥ n, [G, G, 1]
        var wLog = between.view(gsz * gsz, gsz).matmul(gam).view(b, h, ng, gsz, gsz, dk);     // [B, H, Ng, G(n), G(m), dk]
        var w = wLog.masked_fill(later, Scalars.NegativeInfinity).exp();
        var within = w.permute(0, 1, 2, 5, 3, 4).matmul(ug.permute(0, 1, 2, 4, 3, 5))          // [B, H, Ng, dk, G(n), dv]
            .permute(0, 1, 2, 4, 3, 5);                                                        // [B, H, Ng, G, dk, dv]

        // Group to group: what a whole group adds, then the host scan over groups.
        var toEnd = after.matmul(gam);                                                         // [B, H, Ng, G, dk]: Σ_{l>m} γ_l
        var groupAdd = (toEnd.exp().unsqueeze(-1) * ug).sum(3);                                // [B, H, Ng, dk, dv]
        var groupDecay = lastIncl.exp().unsqueeze(-1);                                         // [B, H, Ng, dk, 1]
        var s = s0;
        var groupStarts = new Tensor[ng];
        using var one = 1.0.ToScalar();   // held across the native calls (see IntraChunkScores)
        for (long i = 0; i < ng; i++)
        {
            groupStarts[i] = s;
            s = torch.addcmul(groupAdd[.., .., i], s, groupDecay[.., .., i], one);
        }
        var sg = stack(groupStarts, 2);                                                        // [B, H, Ng, dk, dv]
        var starts = within + excl.exp().unsqueeze(-1) * sg.unsqueeze(3);                      // [B, H, Ng, G, dk, dv]
        return (starts.reshape(b, h, ng * gsz, dk, dv)[.., .., ..(int)n], s);
    }

    /// <summary>The sub-chunk pairs (i, j) with j &lt; i, as two index tensors [P]: the blocks below the diagonal of a chunk.</summary>
    internal static (Tensor I, Tensor J) SubChunkPairs(long ns, Device device)
    {
        var pairs = Enumerable.Range(1, (int)ns - 1).SelectMany(i => Enumerable.Range(0, i).Select(j => (I: (long)i, J: (long)j))).ToArray();
        return (tensor(pairs.Select(p => p.I).ToArray(), device: device), tensor(pairs.Select(p => p.J).ToArray(), device: device));
    }

    /// <summary>
    /// A[t, s] = q_t · (k_s ⊙ exp(G_t − G_s)) for s ≤ t within each chunk, zero above the diagonal.
    /// q, k, G: [B, H, N, C, dk] (float32); returns [B, H, N, C, C] (float32).
    /// </summary>
    internal static Tensor IntraChunkScores(Tensor q, Tensor k, Tensor g, long ns, long sc)
    {
        long b = q.shape[0], h = q.shape[1], n = q.shape[2], c = q.shape[3], dk = q.shape[4];
        var dev = q.device;
        var qs = q.reshape(b, h, n, ns, sc, dk);                                               // [B, H, N, S, c, dk]
        var ks = k.reshape(b, h, n, ns, sc, dk);
        var gs = g.reshape(b, h, n, ns, sc, dk);

        // Inside a sub-chunk: the full pairwise decay, masked (s > t) before exponentiating.
        var above = ones(sc, sc, dtype: ScalarType.Bool, device: dev).triu(1).unsqueeze(-1);  // [c, c, 1]
        var pairDecay = (gs.unsqueeze(-2) - gs.unsqueeze(-3)).masked_fill(above, Scalars.NegativeInfinity).exp(); // [.., c(t), c(s), dk]
        var kPair = pairDecay * ks.unsqueeze(-3);                                              // [.., c(t), c(s), dk]
        var diag = kPair.matmul(qs.unsqueeze(-1)).squeeze(-1);                                 // [B, H, N, S, c(t), c(s)]

        // Across sub-chunks j < i (only those pairs): factors relative to the first position n of sub-chunk i,
        // exp(G_t − G_n) for t in i and exp(G_n − G_s) for s in j; G only decreases, so both exponents are ≤ 0.
        var blocks = zeros(new[] { b, h, n, ns * ns, sc, sc }, dtype: ScalarType.Float32, device: dev); // [B, H, N, S·S, c, c]
        var diagIdx = arange(ns, device: dev) * (ns + 1);
        // The alpha Scalar is held until the end of the method: an implicit temporary can be finalised while the
        // native call still uses it (seen once as a native "toFloat" error under heavy load).
        using var one = 1.0.ToScalar();
        blocks = blocks.index_add(3, diagIdx, diag, one);
        if (ns > 1)
        {
            var (pi, pj) = SubChunkPairs(ns, dev);
            var gFirst = gs.select(4, 0);                                                     // [B, H, N, S, dk]
            var qRef = (qs * (gs - gFirst.unsqueeze(-2)).exp()).index_select(3, pi);         // [B, H, N, P, c, dk]
            var gRef = gFirst.index_select(3, pi);                                           // [B, H, N, P, dk]
            var kRef = ks.index_select(3, pj) * (gRef.unsqueeze(-2) - gs.index_select(3, pj)).exp(); // [B, H, N, P, c, dk]
            var cross = qRef.matmul(kRef.transpose(-1, -2));                                 // [B, H, N, P, c(t), c(s)]
            blocks = blocks.index_add(3, pi * ns + pj, cross, one);
        }
        blocks = blocks.view(b, h, n, ns, ns, sc, sc);                                       // [B, H, N, S(i), S(j), c, c]
        return blocks.permute(0, 1, 2, 3, 5, 4, 6).reshape(b, h, n, c, c);                     // [B, H, N, C, C]
    }
}
