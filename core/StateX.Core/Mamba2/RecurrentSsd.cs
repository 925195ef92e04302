using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Mamba2;

/// <summary>
/// The recurrent form of the Mamba2 scan, one token at a time (decoding, and the reference the chunked form is
/// tested against): h_t = exp(dt_t A) h_{t−1} + dt_t x_t B_tᵀ,  y_t = C_t h_t. The state is kept in float32.
/// </summary>
public static class RecurrentSsd
{
    /// <param name="x">[B, H, P]</param>
    /// <param name="dt">[B, H], already softplus'd and clamped</param>
    /// <param name="a">[H], negative</param>
    /// <param name="bm">[B, G, N]</param>
    /// <param name="cm">[B, G, N]</param>
    /// <param name="state">[B, H, P, N] float32</param>
    /// <returns>y [B, H, P] in x's dtype (without the D skip) and the new state [B, H, P, N].</returns>
    public static (Tensor Y, Tensor State) Step(Tensor x, Tensor dt, Tensor a, Tensor bm, Tensor cm, Tensor state)
    {
        using var scope = NewDisposeScope();
        long h = x.shape[1], r = h / bm.shape[1];
        var f32 = ScalarType.Float32;
        var dtf = dt.to_type(f32);                                                            // [B, H]
        var bh = bm.to_type(f32).repeat_interleave(r, 1);                                     // [B, H, N]
        var ch = cm.to_type(f32).repeat_interleave(r, 1);                                     // [B, H, N]
        var decay = (dtf * a.to_type(f32)).exp().unsqueeze(-1).unsqueeze(-1);               // [B, H, 1, 1]
        var input = (dtf.unsqueeze(-1) * x.to_type(f32)).unsqueeze(-1) * bh.unsqueeze(-2);   // [B, H, P, N]
        var next = state.to_type(f32) * decay + input;                                        // [B, H, P, N]
        var y = next.matmul(ch.unsqueeze(-1)).squeeze(-1);                                    // [B, H, P]
        return (y.to_type(x.dtype).MoveToOuterDisposeScope(), next.MoveToOuterDisposeScope());
    }

    /// <summary>Runs <see cref="Step"/> over a segment. Shapes as <see cref="ChunkedSsd.Forward"/>.</summary>
    public static (Tensor Y, Tensor State) Forward(Tensor x, Tensor dt, Tensor a, Tensor bm, Tensor cm, Tensor? initialState)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], h = x.shape[2], p = x.shape[3], n = bm.shape[3];
        var state = initialState?.to_type(ScalarType.Float32) ?? zeros(b, h, p, n, ScalarType.Float32, x.device);
        var ys = new Tensor[t];
        for (long i = 0; i < t; i++)
        {
            var previous = state;
            (ys[i], state) = Step(x[.., i], dt[.., i], a, bm[.., i], cm[.., i], state);
            if (i > 0) previous.Dispose();   // bounded memory over long segments; the first is the caller's
        }
        return (stack(ys, 1).MoveToOuterDisposeScope(), state.MoveToOuterDisposeScope());       // [B, T, H, P]
    }
}
