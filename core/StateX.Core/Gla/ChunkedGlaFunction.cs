using StateX.Autograd;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Gla;

/// <summary>
/// The chunked GLA form with a hand-written backward pass (as fla's chunk_gla has), over the pieces of
/// <see cref="IGlaChunkOps"/>. Same function as <see cref="ChunkedGla"/>'s autograd form; the backward pass stores
/// only the inputs, the intra-chunk scores and the chunk-start states, and never differentiates through the
/// pairwise decays.
///
/// Forward, per chunk n (q scaled, G the log decay from the chunk start, γ_n = G at the chunk end):
///   o = A v + (q ⊙ exp(G)) S_n,   S_{n+1} = diag(exp(γ_n)) S_n + U_n,   U_n = (k ⊙ exp(γ_n − G))ᵀ v.
/// Backward, with D_n = ∂L/∂S_n (D_N the final state's gradient):
///   dA = tril(do vᵀ);  dv = Aᵀ do + (k ⊙ exp(γ_n − G)) D_{n+1};  D_n = diag(exp(γ_n)) D_{n+1} + (q ⊙ exp(G))ᵀ do;
///   dq = intra(dA) + exp(G) ⊙ (do S_nᵀ);  dk = intra(dA) + exp(γ_n − G) ⊙ (v D_{n+1}ᵀ).
/// The log decays need no pass of their own. The function depends on the whole-sequence cumulative decay 𝒢 only
/// through differences 𝒢_t − 𝒢_s (s ≤ t), through 𝒢_t (the initial state read at t) and 𝒢_T (the final state), so
///   ∂L/∂𝒢_t = q_t ⊙ dq_t − k_t ⊙ dk_t  (+ Σ_v S_T ⊙ dS_T at t = T),
/// and the per-step log gate's gradient is its reverse cumulative sum over the sequence.
/// </summary>
internal static class ChunkedGlaFunction
{
    sealed record Settings(IGlaChunkOps Ops, double Scale, int ChunkSize);

    /// <summary>o [B, T, H, dv] in v's dtype and the final state [B, H, dk, dv] float32 (see <see cref="ChunkedGla.Forward"/>).</summary>
    public static (Tensor O, Tensor State) Apply(IGlaChunkOps ops, Tensor q, Tensor k, Tensor v, Tensor g, Tensor? state, double scale, int chunkSize)
    {
        bool graph = is_grad_enabled() && new[] { q, k, v, g, state }.Any(x => x is not null && x.requires_grad);
        if (!graph)
        {
            using var scope = NewDisposeScope();
            var f = ForwardCore(ops, q, k, v, g, state, scale, chunkSize);
            return (f.O.MoveToOuterDisposeScope(), f.Final.MoveToOuterDisposeScope());
        }
        var settings = new Settings(ops, scale, chunkSize);
        object[] args = state is null ? [settings, q, k, v, g] : [settings, q, k, v, g, state];
        using (NewDisposeScope())
        {
            var outs = Function.apply(args);
            return (outs[0].MoveToOuterDisposeScope(), outs[1].MoveToOuterDisposeScope());
        }
    }

    sealed record Forwarded(Tensor O, Tensor Final, Tensor A, Tensor Starts);

    /// <summary>
    /// [B, T, H, D] → [B, H, N, C, D] in <paramref name="type"/>, zero-padded to whole chunks (k = v = 0, g = 0 leave o
    /// and S unchanged). Contiguous, as the kernels read it, so that they need no copy of their own.
    /// </summary>
    static Tensor Chunks(Tensor x, ScalarType type, long n, long c)
    {
        long b = x.shape[0], t = x.shape[1], h = x.shape[2], d = x.shape[3];
        var y = x.to_type(type).transpose(1, 2);                                                // [B, H, T, D]
        if (n * c > t) y = nn.functional.pad(y, [0, 0, 0, n * c - t]);
        return y.reshape(b, h, n, c, d).contiguous();
    }

    /// <summary>The chunked operands both passes start from (the backward pass recomputes them rather than keep them).</summary>
    sealed record Operands(Tensor Q, Tensor K, Tensor V, Tensor G, Tensor GammaLast, long N);

    /// <returns>q·scale, k (float32), v (its dtype), G = the log decay accumulated from each chunk's start, all
    /// [B, H, N, C, D], and γ = G at each chunk's end [B, H, N, dk].</returns>
    static Operands Prepare(Tensor q, Tensor k, Tensor v, Tensor g, double scale, long c)
    {
        long n = (q.shape[1] + c - 1) / c;
        var gc = Chunks(g, ScalarType.Float32, n, c).cumsum(3);
        return new Operands(Chunks(q, ScalarType.Float32, n, c) * scale, Chunks(k, ScalarType.Float32, n, c), Chunks(v, v.dtype, n, c),
            gc, gc.select(3, c - 1), n);
    }

    /// <summary>[B, H, N, C, D] → [B, T, H, D] in <paramref name="type"/>.</summary>
    static Tensor Unchunk(Tensor y, long t, ScalarType type)
    {
        long b = y.shape[0], h = y.shape[1], n = y.shape[2], c = y.shape[3], d = y.shape[4];
        return y.reshape(b, h, n * c, d)[.., .., ..(int)t].transpose(1, 2).to_type(type).contiguous();
    }

    static Forwarded ForwardCore(IGlaChunkOps ops, Tensor q, Tensor k, Tensor v, Tensor g, Tensor? s0, double scale, int chunkSize)
    {
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        var ct = v.dtype;
        if (t == 0)
            return new Forwarded(empty(b, 0, h, dv, dtype: ct, device: v.device),
                s0?.to_type(ScalarType.Float32).clone() ?? zeros(b, h, dk, dv, dtype: ScalarType.Float32, device: q.device),
                empty(0), empty(0));
        var (qc, kc, vc, gc, gLast, _) = Prepare(q, k, v, g, scale, chunkSize);               // [B, H, N, C, ·], γ [B, H, N, dk]

        var a = ops.IntraScores(qc, kc, gc);                                                    // [B, H, N, C, C]
        var kd = (kc * (gLast.unsqueeze(3) - gc).exp()).to_type(ct);                            // [B, H, N, C, dk] k ⊙ exp(γ − G)
        var u = kd.transpose(3, 4).matmul(vc);                                                  // [B, H, N, dk, dv] U_n
        var (starts, final) = ops.Scan(u, gLast, s0?.to_type(ScalarType.Float32), reverse: false); // S_n [B, H, N, dk, dv], S_N
        var qd = (qc * gc.exp()).to_type(ct);                                                   // [B, H, N, C, dk] q ⊙ exp(G)
        var o = a.to_type(ct).matmul(vc) + qd.matmul(starts.to_type(ct));                       // [B, H, N, C, dv]
        return new Forwarded(Unchunk(o, t, ct), final, a, starts.to_type(ct));
    }

    sealed class Function : autograd.MultiTensorFunction<Function>
    {
        // The gradients handed back to the engine: the engine keeps its own references, ours are released at the next
        // backward call (see GradientRelay). One relay for every call, since the engine runs one function at a time per device.
        static readonly GradientRelay Relay = new();

        public override string Name => "StateXChunkedGla";

        public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var settings = (Settings)vars[0];
            Tensor q = (Tensor)vars[1], k = (Tensor)vars[2], v = (Tensor)vars[3], g = (Tensor)vars[4];
            Tensor? s0 = vars.Length > 5 ? (Tensor)vars[5] : null;
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var f = ForwardCore(settings.Ops, q, k, v, g, s0, settings.Scale, settings.ChunkSize);
            // TorchSharp turns these into saved variables after forward returns, so they must outlive this scope; they go
            // with the scope around apply (see Apply), once the graph holds its own references.
            var saved = new List<Tensor> { q, k, v, g, f.A.MoveToOuterDisposeScope(), f.Starts.MoveToOuterDisposeScope(), f.Final.MoveToOuterDisposeScope() };
            if (s0 is not null) saved.Add(s0);
            ctx.save_for_backward(saved);
            ctx.save_data("settings", settings);
            ctx.set_materialize_grads(false);
            return [f.O.MoveToOuterDisposeScope(), f.Final.clone().MoveToOuterDisposeScope()];
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> gradOutputs)
        {
            var settings = (Settings)ctx.get_data("settings");
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var saved = ctx.get_saved_variables();
            Tensor q = saved[0], k = saved[1], v = saved[2], g = saved[3], a = saved[4], starts = saved[5], final = saved[6];
            Tensor? s0 = saved.Count > 7 ? saved[7] : null;
            Tensor? dO = gradOutputs.Count > 0 && gradOutputs[0] is { IsInvalid: false } d0 ? d0 : null;
            Tensor? dFinal = gradOutputs.Count > 1 && gradOutputs[1] is { IsInvalid: false } d1 ? d1 : null;

            var (dq, dk, dv, dg, ds0) = BackwardCore(settings, q, k, v, g, s0, a, starts, final, dO, dFinal);
            foreach (var x in gradOutputs) x?.Dispose();
            var grads = new List<Tensor> { null!, dq.DetachFromDisposeScope(), dk.DetachFromDisposeScope(), dv.DetachFromDisposeScope(), dg.DetachFromDisposeScope() };
            if (s0 is not null) grads.Add(ds0!.DetachFromDisposeScope());
            Relay.Pass(grads);
            return grads;
        }
    }

    static (Tensor Dq, Tensor Dk, Tensor Dv, Tensor Dg, Tensor? Ds0) BackwardCore(Settings settings, Tensor q, Tensor k, Tensor v, Tensor g,
        Tensor? s0, Tensor a, Tensor starts, Tensor final, Tensor? dO, Tensor? dFinal)
    {
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        if (t == 0)
            return (zeros_like(q), zeros_like(k), zeros_like(v), zeros_like(g),
                s0 is null ? null : (dFinal ?? zeros(b, h, dk, dv, device: q.device)).to_type(s0.dtype));
        var ops = settings.Ops;
        var ct = v.dtype;
        long c = settings.ChunkSize;
        var (qc, kc, vc, gc, gLast, n) = Prepare(q, k, v, g, settings.Scale, c);             // [B, H, N, C, ·], γ [B, H, N, dk]
        var toEnd = (gLast.unsqueeze(3) - gc).exp();                                            // exp(γ − G)
        var fromStart = gc.exp();                                                               // exp(G)
        var kd = (kc * toEnd).to_type(ct);
        var qd = (qc * fromStart).to_type(ct);
        var doc = dO is null ? zeros(new[] { b, h, n, c, dv }, dtype: ct, device: v.device) : Chunks(dO, ct, n, c); // [B, H, N, C, dv]

        // Within chunks.
        var dA = doc.matmul(vc.transpose(3, 4)).to_type(ScalarType.Float32).tril();            // [B, H, N, C, C]
        var (dqIntra, dkIntra) = ops.IntraGrads(dA, qc, kc, gc);                                // [B, H, N, C, dk] each
        var dvc = a.to_type(ct).transpose(3, 4).matmul(doc);                                    // [B, H, N, C, dv]

        // Across chunks: D_{n+1} for every chunk by the reverse scan, D_0 is the initial state's gradient.
        var w = qd.transpose(3, 4).matmul(doc);                                                 // [B, H, N, dk, dv]
        var (dNext, ds0) = ops.Scan(w, gLast, dFinal?.to_type(ScalarType.Float32), reverse: true);
        var dNextC = dNext.to_type(ct);
        var dqc = dqIntra + doc.matmul(starts.to_type(ct).transpose(3, 4)).to_type(ScalarType.Float32) * fromStart;
        var dkc = dkIntra + vc.matmul(dNextC.transpose(3, 4)).to_type(ScalarType.Float32) * toEnd;
        dvc = dvc + kd.matmul(dNextC);

        // Log decays: ∂L/∂𝒢_t = q ⊙ dq − k ⊙ dk (+ the final state's term at the end), reverse-summed over the sequence.
        // The reverse sum runs in two levels, within chunks and then over chunk totals: one cumsum along all N·C
        // positions has only B·H·dk independent columns and took half the backward pass at T = 32K on an H200.
        var dG = qc * dqc - kc * dkc;                                                           // [B, H, N, C, dk]
        if (dFinal is not null)
        {
            var last = (final * dFinal.to_type(ScalarType.Float32)).sum(-1);                    // [B, H, dk]
            dG = cat([dG[.., .., ..^1], cat([dG[.., .., ^1.., ..^1], dG[.., .., ^1.., ^1..] + last.view(b, h, 1, 1, dk)], 3)], 2);
        }
        var local = dG.flip(3).cumsum(3).flip(3);                                               // Σ over the rest of the chunk
        var totals = local.select(3, 0);                                                        // [B, H, N, dk] each chunk's sum
        var suffix = totals.flip(2).cumsum(2).flip(2);                                          // Σ over this chunk and those after
        var later = nn.functional.pad(suffix[.., .., 1..], [0, 0, 0, 1]);                      // Σ over the chunks after
        var dgc = local + later.unsqueeze(3);                                                   // [B, H, N, C, dk]

        return (Unchunk(dqc * settings.Scale, t, q.dtype), Unchunk(dkc, t, k.dtype), Unchunk(dvc, t, v.dtype), Unchunk(dgc, t, g.dtype),
                s0 is null ? null : ds0.to_type(s0.dtype));
    }
}
