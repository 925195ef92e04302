// Shared by every StateX CUDA kernel source: CudaKernels prepends it before compiling (NVRTC has no include path).
// bf16 is handled as raw 16-bit storage, so no CUDA header is needed.

typedef unsigned short bf16_t;

__device__ __forceinline__ float load_f(const float* p, long i) { return p[i]; }
__device__ __forceinline__ float load_f(const bf16_t* p, long i) { return __uint_as_float(((unsigned int)p[i]) << 16); }
__device__ __forceinline__ void store_f(float* p, long i, float v) { p[i] = v; }
__device__ __forceinline__ void store_f(bf16_t* p, long i, float v)
{
    unsigned int b = __float_as_uint(v);
    if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x007fffffu)) { p[i] = (bf16_t)((b >> 16) | 0x40); return; }   // NaN stays NaN
    b += 0x7fffu + ((b >> 16) & 1u);                                                                              // round to nearest even
    p[i] = (bf16_t)(b >> 16);
}
