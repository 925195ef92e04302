using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Native;

/// <summary>Result of a matmul throughput probe.</summary>
public sealed record MatmulSelfTest(string Device, string DType, int Size, int Iterations, double Seconds, double TFlops, double MaxAbsErrorVsFloat64);

/// <summary>Checks that the chosen device computes correctly and measures its matmul throughput.</summary>
public static class SelfTest
{
    public static MatmulSelfTest Matmul(DeviceSpec spec, int? size = null, double targetSeconds = 1.0)
    {
        var device = spec.Resolve();
        bool cuda = device.type == DeviceType.CUDA;
        var dtype = cuda ? ScalarType.BFloat16 : ScalarType.Float32;
        int n = size ?? (cuda ? 8192 : 1024);
        using var scope = NewDisposeScope();

        // Correctness first: a small product against float64 on the CPU.
        var a0 = randn(256, 256, dtype: ScalarType.Float64);
        var b0 = randn(256, 256, dtype: ScalarType.Float64);
        var want = a0.matmul(b0);
        var got = a0.to(dtype).to(device).matmul(b0.to(dtype).to(device)).to(ScalarType.Float64).cpu();
        double err = (got - want).abs().max().item<double>();

        var a = randn(n, n, dtype: dtype, device: device);
        var b = randn(n, n, dtype: dtype, device: device);
        void Sync() { if (cuda) torch.cuda.synchronize(device); }
        for (int i = 0; i < 3; i++) a.matmul(b).Dispose();
        Sync();
        int iters = 0;
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed.TotalSeconds < targetSeconds || iters < 3)
        {
            for (int i = 0; i < (cuda ? 20 : 1); i++, iters++) a.matmul(b).Dispose();
            Sync();
        }
        double secs = sw.Elapsed.TotalSeconds;
        double tflops = 2.0 * n * n * (double)n * iters / secs / 1e12;
        return new MatmulSelfTest(device.ToString(), dtype.ToString(), n, iters, secs, tflops, err);
    }
}
