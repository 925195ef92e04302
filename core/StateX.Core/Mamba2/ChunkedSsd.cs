using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Mamba2;

/// <summary>
/// The chunked (state-space dual) form of the Mamba2 scan, for training and prefill:
/// h_t = exp(dt_t A) h_{t−1} + dt_t x_t B_tᵀ,  y_t = C_t h_t.
/// The sequence is cut into chunks of L; inside a chunk the scan is a masked attention-like matmul, across chunks
/// the chunk-end states are combined by one matmul with the chunk decays (no host loop over chunks).
/// Decays are formed in float32 and masked before exponentiation, so only non-positive exponents are ever
/// exponentiated; matmul operands are in x's dtype.
/// Notation: b batch, c chunks, l/s positions in a chunk, h heads, g groups, r = h/g heads per group,
/// p head dim, n state size.
/// </summary>
public static class ChunkedSsd
{
    /// <param name="x">[B, T, H, P]</param>
    /// <param name="dt">[B, T, H], already softplus'd and clamped (float32)</param>
    /// <param name="a">[H], negative (A = −exp(A_log))</param>
    /// <param name="bm">[B, T, G, N]</param>
    /// <param name="cm">[B, T, G, N]</param>
    /// <param name="chunk">chunk length L</param>
    /// <param name="initialState">[B, H, P, N] float32, or null for zeros</param>
    /// <param name="backend">how the intra-chunk scores are computed (see <see cref="SsdBackend"/>)</param>
    /// <returns>y [B, T, H, P] in x's dtype (without the D skip) and the final state [B, H, P, N] in float32.</returns>
    public static (Tensor Y, Tensor State) Forward(Tensor x, Tensor dt, Tensor a, Tensor bm, Tensor cm, long chunk, Tensor? initialState,
        SsdBackend backend = SsdBackend.Auto)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], h = x.shape[2], p = x.shape[3];
        long g = bm.shape[2], n = bm.shape[3], r = h / g;
        if (h % g != 0) throw new ArgumentException($"{h} heads are not a multiple of {g} groups");
        long l = Math.Min(chunk, t);
        long pad = (l - t % l) % l, c = (t + pad) / l;
        var ct = x.dtype;
        bool fused = SsdDecayMask.Resolve(backend, x.device, l, ct) == SsdBackend.Fused;
        // Padding with dt = 0 leaves the state untouched (decay 1, no input), so the final state is the state at T.
        if (pad > 0)
        {
            x = nn.functional.pad(x, [0, 0, 0, 0, 0, pad]);
            dt = nn.functional.pad(dt, [0, 0, 0, pad]);
            bm = nn.functional.pad(bm, [0, 0, 0, 0, 0, pad]);
            cm = nn.functional.pad(cm, [0, 0, 0, 0, 0, pad]);
        }
        var dtf = dt.to_type(ScalarType.Float32);                                              // [B, T', H]
        var adt = (dtf * a.to_type(ScalarType.Float32)).reshape(b, c, l, h).permute(0, 1, 3, 2);    // [b, c, h, l]
        var cs = adt.cumsum(-1);                                                                // [b, c, h, l]

        var xdt = (x * dtf.unsqueeze(-1).to_type(ct)).reshape(b, c, l, g, r, p).permute(0, 1, 3, 4, 2, 5); // [b, c, g, r, l, p]
        var bc = bm.reshape(b, c, l, g, n).permute(0, 1, 3, 2, 4);                                 // [b, c, g, s, n]
        var cc = cm.reshape(b, c, l, g, n).permute(0, 1, 3, 2, 4);                                 // [b, c, g, l, n]

        // Within a chunk: y_l = Σ_{s≤l} (C_l·B_s) exp(cs_l − cs_s) dt_s x_s.
        var cb = cc.matmul(bc.transpose(-1, -2));                                               // [b, c, g, l, s]
        Tensor scores;                                                                          // [b, c, g, r, l, s]
        if (fused) scores = SsdDecayMask.Apply(cb, cs);
        else
        {
            var above = ones(l, l, ScalarType.Bool, x.device).triu(1);                         // s > l: not causal
            var seg = (cs.unsqueeze(-1) - cs.unsqueeze(-2)).masked_fill(above, Scalars.NegativeInfinity).exp(); // [b, c, h, l, s]
            scores = cb.unsqueeze(3) * seg.reshape(b, c, g, r, l, l).to_type(ct);
        }
        var yDiag = scores.matmul(xdt);                                                         // [b, c, g, r, l, p]

        // Each chunk's own contribution to its end state: Σ_s exp(cs_last − cs_s) dt_s x_s B_sᵀ.
        var toEnd = (cs[.., .., .., ^1..] - cs).exp().reshape(b, c, g, r, l, 1).to_type(ct);     // [b, c, g, r, l, 1]
        var chunkStates = (xdt * toEnd).permute(0, 1, 2, 3, 5, 4).reshape(b, c, g, r * p, l)
            .matmul(bc).reshape(b, c, h, p, n).to_type(ScalarType.Float32);                       // [b, c, h, p, n]

        // Across chunks: states entering each chunk, all at once by a matmul with the chunk-to-chunk decays.
        var init = initialState?.to_type(ScalarType.Float32) ?? zeros(b, h, p, n, ScalarType.Float32, x.device);
        var stacked = cat([init.unsqueeze(1), chunkStates], 1)                                  // [b, c+1, h, p, n]
            .permute(0, 2, 1, 3, 4).reshape(b, h, c + 1, p * n);                                // [b, h, c+1, p·n]
        var chunkDecay = nn.functional.pad(cs[.., .., .., -1].permute(0, 2, 1), [1, 0]);         // [b, h, c+1]
        var passed = SegmentSumExp(chunkDecay).matmul(stacked);                                  // [b, h, c+1, p·n]
        var final = passed[.., .., -1].reshape(b, h, p, n);                                         // [b, h, p, n]
        var entering = passed[.., .., ..^1].reshape(b, h, c, p, n).permute(0, 2, 1, 3, 4);          // [b, c, h, p, n]

        // State entering the chunk, read out at each position: exp(cs_l) C_l · h_in.
        var hIn = entering.to_type(ct).reshape(b, c, g, r * p, n).transpose(-1, -2);            // [b, c, g, n, r·p]
        var yOff = cc.matmul(hIn).reshape(b, c, g, l, r, p)                                        // [b, c, g, l, r, p]
            * cs.exp().reshape(b, c, g, r, l).permute(0, 1, 2, 4, 3).unsqueeze(-1).to_type(ct);
        var y = (yDiag.permute(0, 1, 4, 2, 3, 5) + yOff.permute(0, 1, 3, 2, 4, 5))             // [b, c, l, g, r, p]
            .reshape(b, c * l, h, p);
        if (pad > 0) y = y[.., ..(int)t];
        return (y.MoveToOuterDisposeScope(), final.contiguous().MoveToOuterDisposeScope());
    }

    /// <summary>What <see cref="SsdBackend.Auto"/> (or an explicit choice) comes to for a device, chunk length and dtype; an explicit Fused that cannot run is an error.</summary>
    public static SsdBackend Resolve(SsdBackend backend, Device device, long chunk, ScalarType dtype) => SsdDecayMask.Resolve(backend, device, chunk, dtype);

    /// <summary>
    /// exp of segment sums: out[i, j] = exp(a_{j+1} + … + a_i) for i ≥ j, 0 above the diagonal. Summed directly (not as a
    /// difference of cumulative sums) so long sequences lose no precision to cancellation.
    /// </summary>
    /// <param name="a">[..., K]</param>
    /// <returns>[..., K, K]</returns>
    public static Tensor SegmentSumExp(Tensor a)
    {
        using var scope = NewDisposeScope();
        long k = a.shape[^1];
        var strictlyBelow = ones(k, k, ScalarType.Bool, a.device).tril(-1);                     // [K, K]: i > j
        var rows = a.unsqueeze(-1).expand([.. a.shape, k]).masked_fill(strictlyBelow.logical_not(), Scalars.Zero); // [..., i, j] = a_i if i > j
        var sums = rows.cumsum(-2);                                                              // [..., i, j] = Σ_{j<m≤i} a_m
        var causal = ones(k, k, ScalarType.Bool, a.device).tril();
        return sums.masked_fill(causal.logical_not(), Scalars.NegativeInfinity).exp().MoveToOuterDisposeScope();
    }
}
