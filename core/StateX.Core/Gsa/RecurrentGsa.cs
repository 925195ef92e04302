using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Gsa;

/// <summary>
/// Gated slot attention one token at a time (fla/ops/gsa/naive.py, naive_recurrent_gsa), per head with M slots:
///   pass 1 (keys → slots):   Hk_t = Hk_{t−1} diag(exp g_t) + k_t s_tᵀ,   ok_t = Hk_tᵀ (scale · q_t)          Hk [dk, M]
///   slot read-out:           qv_t = softmax(ok_t) over the M slots
///   pass 2 (slots → values): Hv_t = diag(exp g_t) Hv_{t−1} + s_t v_tᵀ,   o_t = Hv_tᵀ qv_t                    Hv [M, dv]
/// g is the log forget gate of each slot and s = 1 − exp(g) its write strength. fla's naive form runs pass 1 over
/// the whole sequence before pass 2; since pass 1 never reads pass 2 the interleaved order here is the same function.
/// The reference for the tests and the decoding step; state in float32.
/// </summary>
public static class RecurrentGsa
{
    /// <param name="q">[B, T, H, dk]</param>
    /// <param name="k">[B, T, H, dk]</param>
    /// <param name="v">[B, T, H, dv]</param>
    /// <param name="s">[B, T, H, M] slot write strengths</param>
    /// <param name="g">[B, T, H, M] slot log forget gates (≤ 0)</param>
    /// <param name="hk">[B, H, dk, M] or null (zeros)</param>
    /// <param name="hv">[B, H, M, dv] or null (zeros)</param>
    /// <param name="scale">multiplies q (fla's GSA layer passes 1)</param>
    /// <returns>o [B, T, H, dv] in v's dtype and the final states Hk [B, H, dk, M], Hv [B, H, M, dv] (float32).</returns>
    public static (Tensor O, Tensor Hk, Tensor Hv) Forward(Tensor q, Tensor k, Tensor v, Tensor s, Tensor g, Tensor? hk, Tensor? hv, double scale)
    {
        ChunkedGsa.CheckShapes(q, k, v, s, g);
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3], dv = v.shape[3], m = s.shape[3];
        var sk = hk?.to_type(ScalarType.Float32) ?? zeros(b, h, dk, m, dtype: ScalarType.Float32, device: q.device); // [B, H, dk, M]
        var sv = hv?.to_type(ScalarType.Float32) ?? zeros(b, h, m, dv, dtype: ScalarType.Float32, device: q.device); // [B, H, M, dv]
        if (t == 0)
            return (empty(b, 0, h, dv, dtype: v.dtype, device: v.device).MoveToOuterDisposeScope(),
                    sk.clone().MoveToOuterDisposeScope(), sv.clone().MoveToOuterDisposeScope());
        var qf = q.to_type(ScalarType.Float32) * scale;
        var kf = k.to_type(ScalarType.Float32);
        var vf = v.to_type(ScalarType.Float32);
        var sf = s.to_type(ScalarType.Float32);
        var decay = g.to_type(ScalarType.Float32).exp();
        var outputs = new Tensor[t];
        for (long i = 0; i < t; i++)
        {
            using var step = NewDisposeScope();
            var a = decay[.., i];                                                               // [B, H, M]
            sk = (sk * a.unsqueeze(-2) + kf[.., i].unsqueeze(-1) * sf[.., i].unsqueeze(-2)).MoveToOuterDisposeScope();
            var ok = qf[.., i].unsqueeze(-2).matmul(sk).squeeze(-2);                            // [B, H, M]
            var qv = ok.softmax(-1);
            sv = (sv * a.unsqueeze(-1) + sf[.., i].unsqueeze(-1) * vf[.., i].unsqueeze(-2)).MoveToOuterDisposeScope();
            outputs[i] = qv.unsqueeze(-2).matmul(sv).squeeze(-2).MoveToOuterDisposeScope();     // [B, H, dv]
        }
        var o = stack(outputs, 1).to_type(v.dtype);                                             // [B, T, H, dv]
        return (o.MoveToOuterDisposeScope(), sk.MoveToOuterDisposeScope(), sv.MoveToOuterDisposeScope());
    }
}
