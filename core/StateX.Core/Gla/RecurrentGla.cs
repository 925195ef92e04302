using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Gla;

/// <summary>
/// The GLA recurrence one token at a time, per head:
/// S_t = diag(exp(g_t)) S_{t−1} + k_t v_tᵀ,  o_t = S_tᵀ (scale · q_t).
/// The reference form (what fla's fused_recurrent kernel computes) and the decoding step. State in float32.
/// </summary>
public static class RecurrentGla
{
    /// <param name="q">[B, T, H, dk]</param>
    /// <param name="k">[B, T, H, dk]</param>
    /// <param name="v">[B, T, H, dv]</param>
    /// <param name="g">[B, T, H, dk] log forget gate (≤ 0)</param>
    /// <param name="state">[B, H, dk, dv] or null (zeros)</param>
    /// <param name="scale">multiplies q (dk^−½ in GLA)</param>
    /// <returns>o [B, T, H, dv] in v's dtype and the final state [B, H, dk, dv] (float32).</returns>
    public static (Tensor O, Tensor State) Forward(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? state, double scale)
    {
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        if (t == 0)
            return (empty(b, 0, h, dv, dtype: v.dtype, device: v.device).MoveToOuterDisposeScope(),
                    (state?.to_type(ScalarType.Float32).clone() ?? zeros(b, h, dk, dv, dtype: ScalarType.Float32, device: q.device)).MoveToOuterDisposeScope());
        var s = state?.to_type(ScalarType.Float32) ?? zeros(b, h, dk, dv, dtype: ScalarType.Float32, device: q.device); // [B, H, dk, dv]
        var qf = q.to_type(ScalarType.Float32) * scale;
        var kf = k.to_type(ScalarType.Float32);
        var vf = v.to_type(ScalarType.Float32);
        var decay = g.to_type(ScalarType.Float32).exp();
        var outputs = new Tensor[t];
        for (long i = 0; i < t; i++)
        {
            using var step = NewDisposeScope();
            var kv = kf[.., i].unsqueeze(-1) * vf[.., i].unsqueeze(-2);                    // [B, H, dk, dv]
            s = (s * decay[.., i].unsqueeze(-1) + kv).MoveToOuterDisposeScope();
            outputs[i] = qf[.., i].unsqueeze(-2).matmul(s).squeeze(-2).MoveToOuterDisposeScope(); // [B, H, dv]
        }
        var o = stack(outputs, 1).to_type(v.dtype);                                           // [B, T, H, dv]
        return (o.MoveToOuterDisposeScope(), s.MoveToOuterDisposeScope());
    }
}
