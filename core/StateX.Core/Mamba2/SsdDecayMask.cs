using StateX.Autograd;
using StateX.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Mamba2;

/// <summary>How the chunked SSD form is computed. Both compute the same function.</summary>
public enum SsdBackend
{
    /// <summary>Fused where the kernels can run (CUDA with NVRTC), Autograd elsewhere.</summary>
    Auto,
    /// <summary>Tensor operations differentiated by autograd: the reference form.</summary>
    Autograd,
    /// <summary>The decay-masked intra-chunk scores and their gradients as fused CUDA kernels (CUDA only).</summary>
    Fused,
}

/// <summary>
/// M_h[l, s] = (C_l · B_s) exp(cs_h[l] − cs_h[s]) for s ≤ l (0 above), the intra-chunk scores of the SSD form,
/// as one fused CUDA kernel forward and one backward (SsdKernels.cu), an autograd function over cb and cs.
/// With P_h = dM_h ⊙ M_h the gradients are dcb = Σ_{h in group} dM_h ⊙ exp(cs_h[l] − cs_h[s]) and
/// ∂L/∂cs_h[j] = Σ_s P_h[j, s] − Σ_l P_h[l, j].
/// </summary>
internal static class SsdDecayMask
{
    const int RowsPerBlock = 16;   // TL in SsdKernels.cu

    /// <summary>What <see cref="SsdBackend.Auto"/> (or an explicit choice) comes to; an explicit Fused that cannot run is an error.</summary>
    public static SsdBackend Resolve(SsdBackend backend, Device device, long chunk, ScalarType dtype)
    {
        bool possible = CudaKernels.Available(device) && chunk <= 1024 && dtype is ScalarType.Float32 or ScalarType.BFloat16;
        return backend switch
        {
            SsdBackend.Auto => possible ? SsdBackend.Fused : SsdBackend.Autograd,
            SsdBackend.Fused when !possible => throw new InvalidOperationException(
                device.type != DeviceType.CUDA ? $"the fused SSD kernels run on CUDA only, not on {device}"
                : chunk > 1024 ? $"the fused SSD kernels take chunks of at most 1024 positions, not {chunk}"
                : dtype is not (ScalarType.Float32 or ScalarType.BFloat16) ? $"the fused SSD kernels take float32 or bf16, not {dtype}"
                : $"the fused SSD kernels need NVRTC, which is {CudaKernels.Describe()}"),
            _ => backend,
        };
    }

    /// <param name="cb">[b, c, g, l, s] C·B per group, in the compute dtype</param>
    /// <param name="cs">[b, c, h, l] float32 log decay accumulated from each chunk's start</param>
    /// <returns>M [b, c, g, r, l, s] in cb's dtype (h = g·r heads)</returns>
    public static Tensor Apply(Tensor cb, Tensor cs)
    {
        using var scope = NewDisposeScope();
        var outs = is_grad_enabled() && (cb.requires_grad || cs.requires_grad)
            ? Function.apply(cb, cs)
            : [Forward(cb, cs)];
        return outs[0].MoveToOuterDisposeScope();
    }

    static CudaKernels.Kernel K(Device device, string name) => CudaKernels.Get(device, "StateX.Mamba2.SsdKernels.cu", name);

    static string Suffix(ScalarType t) => t == ScalarType.BFloat16 ? "bf16" : "f32";

    static Tensor Forward(Tensor cb, Tensor cs)
    {
        long b = cb.shape[0], c = cb.shape[1], g = cb.shape[2], l = cb.shape[3], h = cs.shape[2], r = h / g;
        var cbc = cb.contiguous();
        var csc = cs.to_type(ScalarType.Float32).contiguous();
        var m = empty(new[] { b, c, g, r, l, l }, dtype: cb.dtype, device: cb.device);
        K(cb.device, "ssd_decay_mask_fwd_" + Suffix(cb.dtype)).Launch(((int)((l + RowsPerBlock - 1) / RowsPerBlock), (int)h, (int)(b * c)), (int)l,
            cbc, csc, m, (int)l, (int)h, (int)r);
        return m;
    }

    sealed class Function : autograd.MultiTensorFunction<Function>
    {
        static readonly GradientRelay Relay = new();   // see ChunkedGlaFunction

        public override string Name => "StateXSsdDecayMask";

        public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
        {
            Tensor cb = (Tensor)vars[0], cs = (Tensor)vars[1];
            using var _ = no_grad();
            ctx.save_for_backward([cb, cs]);
            ctx.set_materialize_grads(false);
            return [Forward(cb, cs)];
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> gradOutputs)
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var saved = ctx.get_saved_variables();
            Tensor cb = saved[0], cs = saved[1];
            if (gradOutputs.Count == 0 || gradOutputs[0] is not { IsInvalid: false } dM) return [null!, null!];
            long b = cb.shape[0], c = cb.shape[1], g = cb.shape[2], l = cb.shape[3], h = cs.shape[2], r = h / g;
            var dcb = empty(cb.shape, dtype: ScalarType.Float32, device: cb.device);
            var row = empty(new[] { b, c, h, l }, dtype: ScalarType.Float32, device: cb.device);
            var col = zeros(new[] { b, c, h, l }, dtype: ScalarType.Float32, device: cb.device);
            int threads = (int)((l + 31) / 32 * 32);
            K(cb.device, "ssd_decay_mask_bwd_" + Suffix(cb.dtype)).Launch(((int)((l + RowsPerBlock - 1) / RowsPerBlock), (int)g, (int)(b * c)), threads,
                dM.to_type(cb.dtype).contiguous(), cb.contiguous(), cs.to_type(ScalarType.Float32).contiguous(), dcb, row, col, (int)l, (int)h, (int)r);
            foreach (var x in gradOutputs) x?.Dispose();
            var grads = new List<Tensor> { dcb.to_type(cb.dtype).DetachFromDisposeScope(), (row - col).to_type(cs.dtype).DetachFromDisposeScope() };
            Relay.Pass(grads);
            return grads;
        }
    }
}
