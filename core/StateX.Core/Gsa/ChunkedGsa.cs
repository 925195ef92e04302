using StateX.Gla;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Gsa;

/// <summary>
/// The chunked parallel form of gated slot attention (the same function as <see cref="RecurrentGsa"/>), organised as
/// fla's chunk_gsa_fwd (fla/ops/gsa/chunk.py): pass 1 is a GLA whose decay sits on the value side (the slots), then a
/// softmax over the slots, then pass 2, an ordinary GLA (decay on the key side) with q = softmax scores, k = s, v = v,
/// scale 1, computed by <see cref="ChunkedGla"/>.
///
/// Pass 1 within a chunk, with G the cumulative log decay from the chunk start,
///   ok_t[m] = Σ_{j≤t in chunk} (q_t·k_j) exp(G_t[m] − G_j[m]) s_j[m]  +  exp(G_t[m]) (q_tᵀ Hk_chunk_start)[m]
/// and Hk advances chunk to chunk as Hk' = Hk diag(exp G_C) + Σ_j k_j (s_j ⊙ exp(G_C − G_j))ᵀ. The pairwise decay
/// is masked above the diagonal before it is exponentiated, so every exponent formed is ≤ 0 and nothing overflows;
/// it is a [C, C, M] tensor per chunk, which is why pass 1 uses short chunks.
/// Differentiated by autograd.
/// </summary>
public static class ChunkedGsa
{
    /// <summary>Chunk length of pass 1 (its pairwise decay tensor is C·C·M per chunk and head).</summary>
    public const int DefaultSlotChunkSize = 16;

    /// <param name="q">[B, T, H, dk]</param>
    /// <param name="k">[B, T, H, dk]</param>
    /// <param name="v">[B, T, H, dv]</param>
    /// <param name="s">[B, T, H, M] slot write strengths</param>
    /// <param name="g">[B, T, H, M] slot log forget gates (≤ 0)</param>
    /// <param name="hk">[B, H, dk, M] or null (zeros)</param>
    /// <param name="hv">[B, H, M, dv] or null (zeros)</param>
    /// <param name="scale">multiplies q</param>
    /// <param name="slotChunkSize">chunk length of pass 1</param>
    /// <param name="chunkSize">chunk length of pass 2 (<see cref="ChunkedGla"/>)</param>
    /// <param name="subChunkSize">sub-chunk length of pass 2</param>
    /// <param name="backend">how pass 2 is computed and differentiated</param>
    /// <returns>o [B, T, H, dv] in v's dtype and the final states Hk [B, H, dk, M], Hv [B, H, M, dv] (float32).</returns>
    public static (Tensor O, Tensor Hk, Tensor Hv) Forward(Tensor q, Tensor k, Tensor v, Tensor s, Tensor g, Tensor? hk, Tensor? hv, double scale,
        int slotChunkSize = DefaultSlotChunkSize, int chunkSize = ChunkedGla.DefaultChunkSize, int subChunkSize = ChunkedGla.DefaultSubChunkSize,
        GlaBackend backend = GlaBackend.Auto)
    {
        CheckShapes(q, k, v, s, g);
        if (slotChunkSize <= 0) throw new ArgumentException($"slot chunk size {slotChunkSize} must be positive");
        using var scope = NewDisposeScope();
        var (ok, hkOut) = SlotScores(q, k, s, g, hk, scale, slotChunkSize);                   // [B, T, H, M] float32
        // fla keeps the softmax in float32 and hands pass 2 its scores in q's dtype (chunk_gsa_fwd: qv = p.to(q.dtype)).
        var qv = ok.softmax(-1).to_type(q.dtype);
        var (o, hvOut) = ChunkedGla.Forward(qv, s, v, g, hv, 1.0, chunkSize, subChunkSize, backend); // o [B, T, H, dv]
        return (o.MoveToOuterDisposeScope(), hkOut.MoveToOuterDisposeScope(), hvOut.MoveToOuterDisposeScope());
    }

    /// <summary>Pass 1: the slot scores ok [B, T, H, M] (float32, before the softmax) and the final Hk [B, H, dk, M].</summary>
    public static (Tensor Ok, Tensor Hk) SlotScores(Tensor q, Tensor k, Tensor s, Tensor g, Tensor? hk, double scale, int chunkSize)
    {
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3], m = s.shape[3];
        var h0 = hk?.to_type(ScalarType.Float32) ?? zeros(b, h, dk, m, dtype: ScalarType.Float32, device: q.device); // [B, H, dk, M]
        if (t == 0)
            return (empty(b, 0, h, m, dtype: ScalarType.Float32, device: q.device).MoveToOuterDisposeScope(), h0.clone().MoveToOuterDisposeScope());
        long c = chunkSize, n = (t + c - 1) / c, pad = n * c - t;

        // [B, T, H, D] → [B, H, N, C, D]; padding adds k = s = 0 and g = 0 (no decay), which leaves ok and Hk unchanged.
        Tensor Chunks(Tensor x)
        {
            var y = x.to_type(ScalarType.Float32).transpose(1, 2);                              // [B, H, T, D]
            if (pad > 0) y = nn.functional.pad(y, [0, 0, 0, pad]);
            return y.reshape(b, h, n, c, x.shape[3]);
        }
        var qc = Chunks(q) * scale;                                                              // [B, H, N, C, dk]
        var kc = Chunks(k);                                                                      // [B, H, N, C, dk]
        var sc = Chunks(s);                                                                      // [B, H, N, C, M]
        var cum = Chunks(g).cumsum(3);                                                           // [B, H, N, C, M]

        var causal = ones(c, c, dtype: ScalarType.Bool, device: q.device).tril();               // [C(t), C(j)]: j ≤ t
        var scores = qc.matmul(kc.transpose(-1, -2));                                            // [B, H, N, C, C]
        var pairwise = (cum.unsqueeze(4) - cum.unsqueeze(3))                                     // [B, H, N, C(t), C(j), M]: G_t − G_j
            .masked_fill(causal.logical_not().unsqueeze(-1), Scalars.NegativeInfinity).exp();   // a held Scalar: see Scalars
        var intra = (scores.unsqueeze(-1) * pairwise * sc.unsqueeze(3)).sum(4);                  // [B, H, N, C, M]

        var last = cum[.., .., .., ^1..];                                                        // [B, H, N, 1, M]
        var writes = kc.transpose(-1, -2).matmul(sc * (last - cum).exp());                       // [B, H, N, dk, M]
        var decay = last.squeeze(3).exp();                                                       // [B, H, N, M]
        var starts = new Tensor[n];
        var state = h0;
        for (long i = 0; i < n; i++)
        {
            starts[i] = state;
            state = state * decay[.., .., i].unsqueeze(-2) + writes[.., .., i];
        }
        var inter = qc.matmul(stack(starts, 2)) * cum.exp();                                     // [B, H, N, C, M]
        var ok = (intra + inter).reshape(b, h, n * c, m)[.., .., ..(int)t].transpose(1, 2);     // [B, T, H, M]
        return (ok.MoveToOuterDisposeScope(), state.MoveToOuterDisposeScope());
    }

    internal static void CheckShapes(Tensor q, Tensor k, Tensor v, Tensor s, Tensor g)
    {
        static string Shape(Tensor x) => $"[{string.Join(", ", x.shape)}]";
        bool ok = q.ndim == 4 && k.ndim == 4 && v.ndim == 4 && s.ndim == 4 && g.ndim == 4
            && q.shape.SequenceEqual(k.shape) && s.shape.SequenceEqual(g.shape)
            && q.shape.Take(3).SequenceEqual(v.shape.Take(3)) && q.shape.Take(3).SequenceEqual(s.shape.Take(3));
        if (!ok)
            throw new ArgumentException($"GSA expects q, k [B, T, H, dk], v [B, T, H, dv], s, g [B, T, H, M]; got q {Shape(q)}, k {Shape(k)}, v {Shape(v)}, s {Shape(s)}, g {Shape(g)}");
    }
}
