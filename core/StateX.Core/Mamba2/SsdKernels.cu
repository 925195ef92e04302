// Fused CUDA kernels for the chunked SSD form (ChunkedSsd): the decay-masked scores of one chunk,
//   M_h[l, s] = (C_l · B_s) exp(cs_h[l] − cs_h[s]) for s ≤ l, 0 above,
// and their gradients. Compiled at run time by NVRTC (CudaKernels). M is the largest tensor of the SSD form
// ([chunks, heads, L, L]); written as tensor operations it took several float32 passes (difference, mask, exp,
// cast, product) forward and as many backward.
//
// Layouts (row-major, contiguous), K = B·(number of chunks), heads h = g·R + r (R heads per group):
//   cb: [K, G, L, L] (C·B per group);  cs: [K, H, L] float32 (log decay accumulated from the chunk start)
//   M, dM: [K, H, L, L];  dcb: [K, G, L, L] float32;  row, col: [K, H, L] float32
// One thread per column s of a tile of TL rows; every exponent formed is cs[l] − cs[s] with s ≤ l, so it is ≤ 0.

#define TL 16

// load_f / store_f (float and bf16 storage) come from Runtime/CudaCommon.cuh.

// grid (ceil(L / TL), H, K), block L threads.
template <typename T>
__device__ void decay_mask_fwd(const T* __restrict__ cb, const float* __restrict__ cs, T* __restrict__ M, int L, int H, int R)
{
    const int s = threadIdx.x, h = blockIdx.y, g = h / R, l0 = blockIdx.x * TL;
    const long k = blockIdx.z;
    const float* csr = cs + (k * H + h) * L;
    const float css = csr[s];
    const T* cbr = cb + (k * (H / R) + g) * (long)L * L;
    T* mr = M + (k * H + h) * (long)L * L;
    for (int i = 0; i < TL; i++)
    {
        int l = l0 + i;
        if (l >= L) break;
        float v = s <= l ? load_f(cbr, (long)l * L + s) * __expf(csr[l] - css) : 0.f;
        store_f(mr, (long)l * L + s, v);
    }
}

// dcb[g, l, s] = Σ_{h in g} dM_h[l, s] exp(cs_h[l] − cs_h[s]);  with P_h = dM_h ⊙ M_h:
// row[h, l] = Σ_s P_h[l, s] (written), col[h, s] += Σ_l P_h[l, s] (atomically, over the row tiles), and
// ∂L/∂cs_h[j] = row[h, j] − col[h, j].
// grid (ceil(L / TL), G, K), block: L rounded up to whole warps.
template <typename T>
__device__ void decay_mask_bwd(const T* __restrict__ dM, const T* __restrict__ cb, const float* __restrict__ cs,
    float* __restrict__ dcb, float* __restrict__ row, float* __restrict__ col, int L, int H, int R)
{
    __shared__ float partial[TL][32];
    const int s = threadIdx.x, g = blockIdx.y, l0 = blockIdx.x * TL, lane = s % 32, warp = s / 32, warps = (blockDim.x + 31) / 32;
    const long k = blockIdx.z;
    const int G = H / R;
    const bool inCol = s < L;
    float acc[TL], cbv[TL];
    const T* cbr = cb + (k * G + g) * (long)L * L;
    #pragma unroll
    for (int i = 0; i < TL; i++)
    {
        int l = l0 + i;
        acc[i] = 0.f;
        cbv[i] = (inCol && l < L && s <= l) ? load_f(cbr, (long)l * L + s) : 0.f;
    }
    for (int r = 0; r < R; r++)
    {
        const int h = g * R + r;
        const float* csr = cs + (k * H + h) * L;
        const T* dmr = dM + (k * H + h) * (long)L * L;
        const float css = inCol ? csr[s] : 0.f;
        float colSum = 0.f;
        #pragma unroll
        for (int i = 0; i < TL; i++)
        {
            int l = l0 + i;
            float p = 0.f;
            if (inCol && l < L && s <= l)
            {
                float q = load_f(dmr, (long)l * L + s) * __expf(csr[l] - css);
                acc[i] += q;
                p = q * cbv[i];
            }
            colSum += p;
            #pragma unroll
            for (int off = 16; off > 0; off >>= 1) p += __shfl_down_sync(0xffffffffu, p, off);
            if (lane == 0) partial[i][warp] = p;
        }
        __syncthreads();
        if (s < TL && l0 + s < L)
        {
            float sum = 0.f;
            for (int w = 0; w < warps; w++) sum += partial[s][w];
            row[(k * H + h) * L + l0 + s] = sum;
        }
        __syncthreads();
        if (inCol && colSum != 0.f) atomicAdd(&col[(k * H + h) * L + s], colSum);
    }
    if (!inCol) return;
    float* dr = dcb + (k * G + g) * (long)L * L;
    #pragma unroll
    for (int i = 0; i < TL; i++)
        if (l0 + i < L) dr[(long)(l0 + i) * L + s] = acc[i];
}

extern "C" __global__ void ssd_decay_mask_fwd_f32(const float* cb, const float* cs, float* M, int L, int H, int R) { decay_mask_fwd<float>(cb, cs, M, L, H, R); }
extern "C" __global__ void ssd_decay_mask_fwd_bf16(const bf16_t* cb, const float* cs, bf16_t* M, int L, int H, int R) { decay_mask_fwd<bf16_t>(cb, cs, M, L, H, R); }
extern "C" __global__ void ssd_decay_mask_bwd_f32(const float* dM, const float* cb, const float* cs, float* dcb, float* row, float* col, int L, int H, int R)
{ decay_mask_bwd<float>(dM, cb, cs, dcb, row, col, L, H, R); }
extern "C" __global__ void ssd_decay_mask_bwd_bf16(const bf16_t* dM, const bf16_t* cb, const float* cs, float* dcb, float* row, float* col, int L, int H, int R)
{ decay_mask_bwd<bf16_t>(dM, cb, cs, dcb, row, col, L, H, R); }
