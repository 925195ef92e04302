using System.Diagnostics;
using System.Globalization;
using StateX.Mamba2;
using StateX.Models;
using StateX.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Bench;

/// <summary>
/// Mamba2 throughput: the chunked SSD core alone (what mamba_ssm's mamba_chunk_scan_combined computes) and the whole
/// mixer, forward and forward+backward, plus decode-step latency. Prints tokens/s and peak memory.
/// </summary>
public sealed class Mamba2Bench : IBenchSuite
{
    public string Name => "mamba2";
    public string Description => "Mamba2 SSD core and mixer: fwd / fwd+bwd tokens/s, peak memory, decode step (--preset cpu-small|cuda|cuda-expanded)";

    sealed record Shape(int Hidden, int Heads, int HeadDim, int DState, int Groups, int T, int B, int Chunk);

    public int Run(string[] args)
    {
        var opts = ParseArgs(args);
        if (opts.ContainsKey("help")) { Console.WriteLine(Usage); return 0; }
        var device = DeviceSpec.Parse(opts.GetValueOrDefault("device", "auto")).Resolve();
        var dtype = opts.GetValueOrDefault("dtype", device.type == DeviceType.CUDA ? "bf16" : "fp32") switch
        {
            "bf16" or "bfloat16" => ScalarType.BFloat16,
            "fp16" or "float16" => ScalarType.Float16,
            "fp32" or "float32" => ScalarType.Float32,
            var d => throw new ArgumentException($"unknown --dtype '{d}': expected bf16, fp16 or fp32"),
        };
        int iters = BenchArgs.Int(opts, "iters", 5);
        var backend = Enum.Parse<SsdBackend>(opts.GetValueOrDefault("backend", "auto"), ignoreCase: true);
        if (opts.ContainsKey("check")) return Check(device);
        var shapes = Shapes(opts);
        Console.WriteLine($"mamba2 bench on {device} ({dtype}), backend {backend} → {ChunkedSsd.Resolve(backend, device, shapes[0].Chunk, dtype)}, {iters} iterations after 1 warm-up; peak memory = {(device.type == DeviceType.CUDA ? "device memory in use (caching allocator)" : "process peak RSS")} above the start");
        Console.WriteLine($"{"what",-22} {"hidden",6} {"H×P",7} {"N",4} {"T",6} {"B",3} {"L",4} {"fwd tok/s",12} {"fwd+bwd tok/s",14} {"peak MiB",9}");
        foreach (var s in shapes)
        {
            try { BenchShape(s, device, dtype, iters, backend); }
            catch (Exception e) when (e is OutOfMemoryException || e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase))
            { Console.WriteLine($"  {s}: out of memory"); }
        }
        BenchDecode(shapes[0], device, dtype, iters * 20);
        return 0;
    }

    const string Usage = """
        mamba2 [--preset cpu-small|cuda|cuda-expanded] [--device auto|cpu|cuda[:N]] [--dtype bf16|fp16|fp32]
               [--hidden 2048] [--heads 64] [--headdim 64] [--dstate 128] [--groups 1] [--T 2048] [--B 1] [--chunk 256] [--iters 5]
               [--backend auto|autograd|fused] [--check]
        --backend: how the chunked form's intra-chunk scores run (default auto: fused CUDA kernels on CUDA).
        --check: instead of timing, the SSD core's output, final state and gradients (x, dt, A, B, C, initial state) of
                 every backend available here against the float32 recurrence, on small shapes.
        Presets: cpu-small = hidden 256, 8×64 heads, N 64, T 1024 and 4096, B 1/4, chunk 64;
                 cuda = the 1.3B layer (hidden 2048, 64×64, N 128, chunk 256) at T 2K/8K/32K (B 1) and T 2K (B 8);
                 cuda-expanded = the same with N 512. Explicit shape flags override a preset's single shape.
        """;

    static List<Shape> Shapes(Dictionary<string, string> o)
    {
        int I(string k, int d) => BenchArgs.Int(o, k, d);
        var preset = o.GetValueOrDefault("preset", "");
        List<Shape> list = preset switch
        {
            "cpu-small" => [new(256, 8, 64, 64, 1, 1024, 1, 64), new(256, 8, 64, 64, 1, 4096, 1, 64), new(256, 8, 64, 64, 1, 1024, 4, 64)],
            "cuda" => [.. Layer13B(128)],
            "cuda-expanded" => [.. Layer13B(512)],
            "" => [new(I("hidden", 2048), I("heads", 64), I("headdim", 64), I("dstate", 128), I("groups", 1), I("T", 2048), I("B", 1), I("chunk", 256))],
            _ => throw new ArgumentException($"unknown --preset '{preset}': expected cpu-small, cuda or cuda-expanded"),
        };
        return list;

        static IEnumerable<Shape> Layer13B(int n) =>
            [new(2048, 64, 64, n, 1, 2048, 1, 256), new(2048, 64, 64, n, 1, 8192, 1, 256), new(2048, 64, 64, n, 1, 32768, 1, 256), new(2048, 64, 64, n, 1, 2048, 8, 256)];
    }

    /// <summary>Every backend available here against the float32 recurrence: output, final state, gradients. Prints max abs differences.</summary>
    static int Check(Device device)
    {
        var backends = new[] { SsdBackend.Autograd, SsdBackend.Fused }.Where(b => b != SsdBackend.Fused || StateX.Native.CudaKernels.Available(device)).ToArray();
        Console.WriteLine($"mamba2 SSD check on {device}: backends {string.Join(", ", backends)}; max abs difference from the float32 recurrence (gradients relative to the largest reference entry)");
        foreach (var (b, t, h, p, g, n, chunk, dtype, strong) in new[]
                 {
                     (2, 300, 8, 16, 2, 32, 64, ScalarType.Float32, false), (1, 700, 16, 64, 1, 128, 256, ScalarType.Float32, false),
                     (1, 100, 4, 8, 1, 16, 32, ScalarType.Float32, false), (2, 150, 6, 8, 2, 16, 64, ScalarType.Float32, true),
                     (1, 1000, 16, 64, 1, 128, 256, ScalarType.BFloat16, false),
                 })
        {
            using var scope = NewDisposeScope();
            manual_seed(2);
            var x = randn(b, t, h, p, device: device);
            var dt = nn.functional.softplus(randn(b, t, h, device: device) + (strong ? 0.5 : -1)) * (strong ? 3 : 1);
            var a = -rand(h, device: device) * (strong ? 6 : 4) - 0.5;
            var bm = randn(b, t, g, n, device: device) * 0.5;
            var cm = randn(b, t, g, n, device: device) * 0.5;
            var s0 = randn(b, h, p, n, device: device);
            var w = randn(b, t, h, p, device: device);
            var wS = randn(b, h, p, n, device: device);
            Tensor[] Run(bool reference, SsdBackend backend)
            {
                var leaves = new[] { x, dt, a, bm, cm, s0 }.Select((v, i) =>
                    (reference ? v.to_type(ScalarType.Float32) : i is 0 or 3 or 4 ? v.to_type(dtype) : v).detach().requires_grad_(true)).ToArray();
                var (y, st) = reference ? RecurrentSsd.Forward(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], leaves[5])
                    : ChunkedSsd.Forward(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], chunk, leaves[5], backend);
                ((y.to_type(ScalarType.Float64) * w.to_type(ScalarType.Float64)).sum() + (st.to_type(ScalarType.Float64) * wS.to_type(ScalarType.Float64)).sum()).backward();
                return [y.detach(), st.detach(), .. leaves.Select(v => v.grad!)];
            }
            var refs = Run(true, SsdBackend.Autograd);
            string[] names = ["y", "state", "dx", "ddt", "dA", "dB", "dC", "ds0"];
            Console.WriteLine($"  B={b} T={t} H={h} P={p} G={g} N={n} chunk={chunk} {dtype}{(strong ? ", strong decays" : "")}");
            foreach (var backend in backends)
            {
                var got = Run(false, backend);
                var parts = names.Select((nm, i) =>
                {
                    double d = (got[i].to_type(ScalarType.Float64) - refs[i]).abs().max().item<double>();
                    double m = refs[i].to_type(ScalarType.Float64).abs().max().item<double>();
                    return i < 2 ? $"{nm} {d:E1}" : $"{nm} {d / m:E1}";
                });
                Console.WriteLine($"    {backend,-9} {string.Join("  ", parts)}");
            }
        }
        return 0;
    }

    static void BenchShape(Shape s, Device device, ScalarType dtype, int iters, SsdBackend backend)
    {
        long tokens = (long)s.B * s.T;
        // SSD core alone: softplus'd dt, A, x, B, C as the mixer hands them over.
        {
            using var scope = NewDisposeScope();
            var x = randn(s.B, s.T, s.Heads, s.HeadDim, dtype, device);
            var dt = nn.functional.softplus(randn(s.B, s.T, s.Heads, ScalarType.Float32, device) - 3);
            var a = -rand(s.Heads, ScalarType.Float32, device) * 8 - 0.5;
            var bm = randn(s.B, s.T, s.Groups, s.DState, dtype, device);
            var cm = randn(s.B, s.T, s.Groups, s.DState, dtype, device);
            var (fwd, _) = Measure(device, iters, () => { using var _ = no_grad(); var (y, h) = ChunkedSsd.Forward(x, dt, a, bm, cm, s.Chunk, null, backend); y.Dispose(); h.Dispose(); });
            foreach (var t in new[] { x, dt, bm, cm }) t.requires_grad_(true);
            var (both, peak) = Measure(device, iters, () =>
            {
                using var inner = NewDisposeScope();
                var (y, h) = ChunkedSsd.Forward(x, dt, a, bm, cm, s.Chunk, null, backend);
                y.backward([ones_like(y)]);
                foreach (var t in new[] { x, dt, bm, cm }) t.grad?.zero_();
            });
            Print("SSD core", s, tokens / fwd, tokens / both, peak);
        }
        // Whole mixer: in_proj, conv, SSD, gated norm, out_proj.
        {
            using var scope = NewDisposeScope();
            var cfg = new Mamba2Config
            {
                VocabSize = 8,
                HiddenSize = s.Hidden,
                NumLayers = 1,
                StateSize = s.DState,
                NumHeads = s.Heads,
                HeadDim = s.HeadDim,
                NGroups = s.Groups,
                ChunkSize = s.Chunk,
            };
            var mixer = new Mamba2Mixer(cfg, s.DState) { Backend = backend };
            mixer.to(dtype).to(device);
            var u = randn(s.B, s.T, s.Hidden, dtype, device);
            var (fwd, _) = Measure(device, iters, () => { using var _ = no_grad(); var (y, st) = mixer.Forward(u, null, ForwardMode.Chunked); y.Dispose(); st.Dispose(); });
            var (both, peak) = Measure(device, iters, () =>
            {
                using var inner = NewDisposeScope();
                var (y, st) = mixer.Forward(u, null, ForwardMode.Chunked);
                y.backward([ones_like(y)]);
                mixer.zero_grad();
            });
            Print("mixer", s, tokens / fwd, tokens / both, peak);
            mixer.Dispose();
        }
    }

    static void BenchDecode(Shape s, Device device, ScalarType dtype, int iters)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = randn(1, s.Heads, s.HeadDim, dtype, device);
        var dt = nn.functional.softplus(randn(1, s.Heads, ScalarType.Float32, device) - 3);
        var a = -rand(s.Heads, ScalarType.Float32, device) * 8;
        var bm = randn(1, s.Groups, s.DState, dtype, device);
        var cm = randn(1, s.Groups, s.DState, dtype, device);
        var h = zeros(1, s.Heads, s.HeadDim, s.DState, ScalarType.Float32, device);
        var (ssd, _) = Measure(device, iters, () => { var (y, n) = RecurrentSsd.Step(x, dt, a, bm, cm, h); y.Dispose(); n.Dispose(); });
        var cfg = new Mamba2Config { VocabSize = 8, HiddenSize = s.Hidden, NumLayers = 1, StateSize = s.DState, NumHeads = s.Heads, HeadDim = s.HeadDim, NGroups = s.Groups, ChunkSize = s.Chunk };
        var mixer = new Mamba2Mixer(cfg, s.DState);
        mixer.to(dtype).to(device);
        var state = mixer.InitialState(1, device, dtype);
        var u = randn(1, 1, s.Hidden, dtype, device);
        var (mix, _) = Measure(device, iters, () => { var (y, st) = mixer.Forward(u, state, ForwardMode.Recurrent); y.Dispose(); st.Dispose(); });
        Console.WriteLine($"decode step, B=1, H×P {s.Heads}×{s.HeadDim}, N {s.DState}: SSD step {ssd * 1e3:F3} ms, whole mixer step {mix * 1e3:F3} ms");
    }

    static void Print(string what, Shape s, double fwd, double both, long peakBytes) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{what,-22} {s.Hidden,6} {s.Heads + "×" + s.HeadDim,7} {s.DState,4} {s.T,6} {s.B,3} {s.Chunk,4} {fwd,12:N0} {both,14:N0} {peakBytes / 1048576.0,9:F0}"));

    /// <summary>Seconds per call (median of <paramref name="iters"/> after one warm-up) and peak memory growth.</summary>
    static (double Seconds, long PeakBytes) Measure(Device device, int iters, Action body)
    {
        bool cuda = device.type == DeviceType.CUDA;
        long before = cuda ? CudaUsedBytes() : Process.GetCurrentProcess().PeakWorkingSet64;
        body();
        if (cuda) torch.cuda.synchronize();
        var times = new List<double>();
        for (int i = 0; i < iters; i++)
        {
            var sw = Stopwatch.StartNew();
            body();
            if (cuda) torch.cuda.synchronize();
            times.Add(sw.Elapsed.TotalSeconds);
        }
        GC.Collect();
        long after = cuda ? CudaUsedBytes() : Process.GetCurrentProcess().PeakWorkingSet64;
        times.Sort();
        return (times[times.Count / 2], Math.Max(0, after - before));
    }

    /// <summary>Device memory in use; the caching allocator keeps what a step needed, so this tracks the peak.</summary>
    static long CudaUsedBytes() => Math.Max(0, CudaDevices.MemoryInUse());

    static Dictionary<string, string> ParseArgs(string[] args) => BenchArgs.Parse(args, Usage, "check");
}
