using System.Diagnostics;
using System.Globalization;
using StateX.Gla;
using StateX.Models;
using StateX.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Bench;

/// <summary>
/// GLA throughput: the chunked op alone (what fla's chunk_gla kernel does) and the whole layer (projections,
/// gates, norm), forward and forward+backward, plus one recurrent decode step.
/// </summary>
public sealed class GlaBench : IBenchSuite
{
    public string Name => "gla";
    public string Description => "GLA op/layer forward and forward+backward tokens/s, peak memory, decode-step latency (--preset cpu|cuda or explicit shape)";

    sealed record Shape(string Label, int Hidden, int Heads, int Dk, int Dv, int T, int B);

    const string Usage = """
        usage: gla [--preset cpu|cuda] [--device D] [--dtype float32|bf16|fp16] [--hidden N] [--heads H] [--dk N] [--dv N]
                   [--T N] [--B N] [--chunk C] [--subchunk c] [--iters N] [--warmup N] [--part op|layer|both]
                   [--backend auto|autograd|manual|fused] [--no-backward] [--no-decode] [--in-process] [--check]
          --preset cpu   CPU, float32: hidden 256, 2 heads, dk 64, dv 128, T 2048, B 1 (plus a decode step)
          --preset cuda  CUDA, bf16: the 1.3B layer (hidden 2048, 4 heads, dk 256, dv 512) and its one-head merge
                         (dk 1024, dv 2048) at T = 2K, 8K, 32K with B = 1 and B·T = 16K, plus decode steps
          explicit shape flags override the preset's single shape.
          --backend      how the chunked form runs (default auto: fused CUDA kernels on CUDA, autograd on CPU)
          --check        instead of timing: outputs and gradients of every backend available here against the
                         float32 recurrence, on small shapes (T not a multiple of the chunk, with an initial state)
          Each (shape, part) runs in a child process so that the peak memory (CUDA caching allocator's high-water
          mark, or the process's peak RSS on CPU) belongs to that run alone (--in-process turns this off).
        """;

    public int Run(string[] args)
    {
        var a = ParseArgs(args);
        if (a.ContainsKey("help")) { Console.WriteLine(Usage); return 0; }
        string preset = a.GetValueOrDefault("preset", "");
        var device = DeviceSpec.Parse(a.GetValueOrDefault("device", preset == "cuda" ? "cuda" : preset == "cpu" ? "cpu" : "auto")).Resolve();
        bool cuda = device.type == DeviceType.CUDA;
        var dtype = ParseDType(a.GetValueOrDefault("dtype", cuda ? "bf16" : "float32"));
        int chunk = Int(a, "chunk", ChunkedGla.DefaultChunkSize), sub = Int(a, "subchunk", ChunkedGla.DefaultSubChunkSize);
        int iters = Int(a, "iters", cuda ? 10 : 3), warmup = Int(a, "warmup", cuda ? 2 : 1);
        string part = a.GetValueOrDefault("part", "both");
        var backend = Enum.Parse<GlaBackend>(a.GetValueOrDefault("backend", "auto"), ignoreCase: true);
        if (a.ContainsKey("check")) return Check(device);
        bool backward = !a.ContainsKey("no-backward"), header = !a.ContainsKey("no-header");
        bool isolate = !a.ContainsKey("in-process") && !a.ContainsKey("child");

        var shapes = new List<Shape>();
        bool explicitShape = new[] { "hidden", "heads", "dk", "dv", "T", "B" }.Any(a.ContainsKey);
        if (preset == "cuda" && !explicitShape)
        {
            foreach (var (label, heads, dk, dv) in new[] { ("4-head 1.3B", 4, 256, 512), ("1-head merged", 1, 1024, 2048) })
                foreach (var t in new[] { 2048, 8192, 32768 })
                    foreach (var b in new[] { 1, 16384 / t }.Where(b => b >= 1).Distinct())
                        shapes.Add(new Shape(label, 2048, heads, dk, dv, t, b));
        }
        else
        {
            int heads = Int(a, "heads", 2), dk = Int(a, "dk", 64), dv = Int(a, "dv", 128);
            shapes.Add(new Shape(a.GetValueOrDefault("label", preset == "cpu" && !explicitShape ? "cpu small" : "custom"), Int(a, "hidden", 256), heads, dk, dv, Int(a, "T", 2048), Int(a, "B", 1)));
        }

        if (header)
        {
            Console.WriteLine($"gla bench: device {device} ({DeviceName(device)}), dtype {dtype}, chunk {chunk}/{sub}, backend {backend} → {ChunkedGla.Resolve(backend, device, chunk)}, {iters} iterations after {warmup} warm-up, threads {get_num_threads()}");
            Console.WriteLine(cuda
                ? "peak memory: growth of device memory in use (cuMemGetInfo, TorchSharp exposes no allocator statistics) from the run's start: the caching allocator's reserved high-water mark, an upper bound on tensors live at once"
                : "peak memory: the process's peak resident set (includes the .NET runtime and libtorch)");
            if (isolate) Console.WriteLine("each (shape, part) runs in its own process, so each peak is that run's alone; f+b includes the forward-only runs before it");
            Console.WriteLine($"{"shape",-14} {"B",3} {"T",6} {"H",2} {"dk",5} {"dv",5} | {"part",-5} {"fwd tok/s",12} {"fwd+bwd tok/s",14} {"peak fwd",10} {"peak f+b",10}");
        }
        foreach (var s in shapes)
        {
            foreach (var which in part == "both" ? new[] { "op", "layer" } : new[] { part })
            {
                try
                {
                    if (isolate) RunChild(s, which, device, dtype, chunk, sub, iters, warmup, backward, backend);
                    else RunShape(s, which, device, dtype, chunk, sub, iters, warmup, backward, backend);
                }
                catch (Exception e) { Console.WriteLine($"{s.Label,-14} {s.B,3} {s.T,6}: failed: {e.Message.Split('\n')[0]}"); }
            }
        }
        if (!a.ContainsKey("no-decode"))
            foreach (var s in shapes.DistinctBy(s => (s.Heads, s.Dk, s.Dv, s.Hidden)))
                DecodeStep(s, device, dtype, cuda ? 200 : 50);
        return 0;
    }

    /// <summary>Runs one (shape, part) in a fresh process: a fresh caching allocator, so its peak is this run's.</summary>
    static void RunChild(Shape s, string part, Device device, ScalarType dtype, int chunk, int sub, int iters, int warmup, bool backward, GlaBackend backend)
    {
        var host = Environment.ProcessPath!;
        var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") psi.ArgumentList.Add(typeof(GlaBench).Assembly.Location);
        foreach (var x in new[] { "gla", "--child", "1", "--no-header", "--no-decode", "--device", device.ToString(), "--dtype", dtype.ToString(),
                     "--hidden", $"{s.Hidden}", "--heads", $"{s.Heads}", "--dk", $"{s.Dk}", "--dv", $"{s.Dv}", "--T", $"{s.T}", "--B", $"{s.B}",
                     "--chunk", $"{chunk}", "--subchunk", $"{sub}", "--iters", $"{iters}", "--warmup", $"{warmup}", "--part", part, "--label", s.Label, "--backend", $"{backend}" })
            psi.ArgumentList.Add(x);
        if (!backward) psi.ArgumentList.Add("--no-backward");
        using var p = Process.Start(psi)!;
        Console.Write(p.StandardOutput.ReadToEnd());
        p.WaitForExit();
        if (p.ExitCode != 0) Console.WriteLine($"{s.Label,-14} {s.B,3} {s.T,6}: {part} run exited with code {p.ExitCode}");
    }

    void RunShape(Shape s, string part, Device device, ScalarType dtype, int chunk, int sub, int iters, int warmup, bool backward, GlaBackend backend)
    {
        using var scope = NewDisposeScope();
        manual_seed(0);
        long tokens = (long)s.B * s.T;
        GatedLinearAttention? attn = part == "layer" ? MakeLayer(s, device, dtype, chunk, sub) : null;
        if (attn is not null) attn.Backend = backend;
        var x = randn(s.B, s.T, s.Hidden, dtype: dtype, device: device);
        var q = randn(s.B, s.T, s.Heads, s.Dk, dtype: dtype, device: device);
        var k = randn(s.B, s.T, s.Heads, s.Dk, dtype: dtype, device: device) * 0.1;
        var v = randn(s.B, s.T, s.Heads, s.Dv, dtype: dtype, device: device);
        var g = nn.functional.logsigmoid(randn(s.B, s.T, s.Heads, s.Dk, device: device)) / 16;
        double scale = Math.Pow(s.Dk, -0.5);

        Tensor Forward(bool grad)
        {
            if (attn is not null) return attn.Forward(grad ? x.detach().requires_grad_(true) : x, null, ForwardMode.Chunked).Y;
            var qq = grad ? q.detach().requires_grad_(true) : q;
            var kk = grad ? k.detach().requires_grad_(true) : k;
            var vv = grad ? v.detach().requires_grad_(true) : v;
            var gg = grad ? g.detach().requires_grad_(true) : g;
            return ChunkedGla.Forward(qq, kk, vv, gg, null, scale, chunk, sub, backend).O;
        }

        long baseline = MemoryInUse(device);
        double fwd;
        using (no_grad()) fwd = Time(device, iters, warmup, () => { using var it = NewDisposeScope(); Forward(false); });
        long peakFwd = MemoryInUse(device) - (device.type == DeviceType.CUDA ? baseline : 0);
        double fb = double.NaN;
        long peakFb = -1;
        if (backward)
        {
            fb = Time(device, iters, warmup, () =>
            {
                using var it = NewDisposeScope();
                var y = Forward(true);
                (y.to_type(ScalarType.Float32).square().mean()).backward();
                if (attn is not null) attn.zero_grad();
            });
            peakFb = MemoryInUse(device) - (device.type == DeviceType.CUDA ? baseline : 0);
        }
        Console.WriteLine($"{s.Label,-14} {s.B,3} {s.T,6} {s.Heads,2} {s.Dk,5} {s.Dv,5} | {part,-5} {Rate(tokens, fwd),12} {Rate(tokens, fb),14} {Bytes(peakFwd),10} {Bytes(peakFb),10}");
        attn?.Dispose();
    }

    /// <summary>
    /// Every backend available on the device against the float32 recurrence (outputs, final state, and the gradients
    /// of q, k, v, g and the initial state), in float32 and bf16. Prints max abs differences; not timed.
    /// </summary>
    static int Check(Device device)
    {
        var backends = new[] { GlaBackend.Autograd, GlaBackend.Manual, GlaBackend.Fused }
            .Where(b => b != GlaBackend.Fused || ChunkedGla.Resolve(GlaBackend.Auto, device, 64) == GlaBackend.Fused).ToArray();
        Console.WriteLine($"gla check on {device} ({DeviceName(device)}): backends {string.Join(", ", backends)}; max abs difference from the float32 recurrence (gradients: relative to the largest reference entry)");
        foreach (var (b, t, h, dk, dv, chunk, dtype, strong) in new[]
                 {
                     (2, 1000, 3, 64, 128, 64, ScalarType.Float32, false), (1, 333, 2, 256, 512, 64, ScalarType.Float32, false),
                     (2, 700, 2, 40, 24, 32, ScalarType.Float32, true), (1, 1000, 4, 128, 256, 64, ScalarType.BFloat16, false),
                 })
        {
            using var scope = NewDisposeScope();
            manual_seed(1);
            var q = randn(b, t, h, dk, device: device);
            var k = randn(b, t, h, dk, device: device);
            var v = randn(b, t, h, dv, device: device);
            var logits = strong ? cat([rand(b, t, h, dk / 2, device: device) * -300, randn(b, t, h, dk - dk / 2, device: device) + 4], 3) : randn(b, t, h, dk, device: device) + 2;
            var g = nn.functional.logsigmoid(logits) / (strong ? 1 : 16);
            var s0 = randn(b, h, dk, dv, device: device);
            var w = randn(b, t, h, dv, device: device);
            var wS = randn(b, h, dk, dv, device: device);
            double scale = Math.Pow(dk, -0.5);
            Tensor[] Run(bool recurrent, GlaBackend backend)
            {
                var leaves = new[] { q, k, v, g, s0 }.Select((x, i) => (i < 3 ? x.to_type(recurrent ? ScalarType.Float32 : dtype) : x).detach().requires_grad_(true)).ToArray();
                var (o, s) = recurrent ? RecurrentGla.Forward(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], scale)
                    : ChunkedGla.Forward(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], scale, chunk, ChunkedGla.DefaultSubChunkSize, backend);
                ((o.to_type(ScalarType.Float32) * w).sum() + (s * wS).sum()).backward();
                return [o.detach(), s.detach(), .. leaves.Select(x => x.grad!)];
            }
            var reference = Run(true, GlaBackend.Autograd);
            string[] names = ["o", "state", "dq", "dk", "dv", "dg", "ds0"];
            Console.WriteLine($"  B={b} T={t} H={h} dk={dk} dv={dv} chunk={chunk} {dtype}{(strong ? ", strong decays" : "")}");
            foreach (var backend in backends)
            {
                var got = Run(false, backend);
                var parts = names.Select((n, i) =>
                {
                    double d = (got[i].to_type(ScalarType.Float32) - reference[i]).abs().max().item<float>();
                    double m = reference[i].abs().max().item<float>();
                    return i < 2 ? $"{n} {d:E1}" : $"{n} {d / m:E1}";
                });
                Console.WriteLine($"    {backend,-9} {string.Join("  ", parts)}");
            }
        }
        return 0;
    }

    /// <summary>One token through the layer in recurrent form with a carried state (B = 1).</summary>
    void DecodeStep(Shape s, Device device, ScalarType dtype, int steps)
    {
        using var scope = NewDisposeScope();
        var attn = MakeLayer(s, device, dtype, ChunkedGla.DefaultChunkSize, ChunkedGla.DefaultSubChunkSize);
        var x = randn(1, 1, s.Hidden, dtype: dtype, device: device);
        using var _ = no_grad();
        GlaLayerState state = attn.InitialState(1, device, dtype);
        double sec = Time(device, steps, 5, () =>
        {
            var (y, next) = attn.Forward(x, state, ForwardMode.Recurrent);
            y.Dispose();
            state.Dispose();
            state = next;
        });
        Console.WriteLine($"decode step  {s.Label,-14} hidden {s.Hidden}, {s.Heads} heads × {s.Dk} × {s.Dv}, B=1: {sec * 1e3:F3} ms/token (layer, recurrent form)");
        attn.Dispose();
    }

    static GatedLinearAttention MakeLayer(Shape s, Device device, ScalarType dtype, int chunk, int sub)
    {
        var cfg = new GlaConfig
        {
            HiddenSize = s.Hidden,
            NumHeads = s.Heads,
            NumHiddenLayers = 1,
            VocabSize = 2,
            ExpandK = (double)s.Heads * s.Dk / s.Hidden,
            ExpandV = (double)s.Heads * s.Dv / s.Hidden,
        };
        var attn = new GatedLinearAttention(cfg, s.Heads) { ChunkSize = chunk, SubChunkSize = sub };
        if (attn.HeadKDim != s.Dk || attn.HeadVDim != s.Dv)
            throw new ArgumentException($"hidden {s.Hidden} with {s.Heads} heads cannot give dk {s.Dk}, dv {s.Dv}");
        attn.to(dtype).to(device);
        return attn;
    }

    /// <summary>Mean seconds per call after warm-up, synchronising the device around the timed loop.</summary>
    static double Time(Device device, int iters, int warmup, Action body)
    {
        for (int i = 0; i < warmup; i++) body();
        Sync(device);
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < iters; i++) body();
        Sync(device);
        return sw.Elapsed.TotalSeconds / iters;
    }

    static void Sync(Device device) { if (device.type == DeviceType.CUDA) cuda.synchronize(device); }

    static string Rate(long tokens, double seconds) => double.IsNaN(seconds) ? "-" : tokens / seconds >= 1e6 ? $"{tokens / seconds / 1e6:F2} M" : $"{tokens / seconds / 1e3:F1} K";
    static string Bytes(long b) => b < 0 ? "n/a" : b >= 1L << 30 ? $"{b / (double)(1L << 30):F2} GiB" : $"{b / (double)(1L << 20):F0} MiB";

    static long MemoryInUse(Device device)
    {
        if (device.type != DeviceType.CUDA) { using var p = Process.GetCurrentProcess(); p.Refresh(); return p.PeakWorkingSet64; }
        return CudaDevices.MemoryInUse();
    }

    static string DeviceName(Device d) =>
        d.type == DeviceType.CUDA ? StateX.Native.CudaDevices.List().ElementAtOrDefault(d.index < 0 ? 0 : d.index)?.Name ?? "cuda" : $"{Environment.ProcessorCount} cores";

    static ScalarType ParseDType(string s) => s.ToLowerInvariant() switch
    {
        "float32" or "fp32" or "f32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        "fp16" or "float16" or "f16" => ScalarType.Float16,
        _ => throw new ArgumentException($"unknown dtype '{s}': float32, bf16 or fp16"),
    };

    static int Int(Dictionary<string, string> a, string key, int fallback) => BenchArgs.Int(a, key, fallback);

    static Dictionary<string, string> ParseArgs(string[] args) =>
        BenchArgs.Parse(args, Usage, ["no-backward", "no-decode", "no-header", "in-process", "check"], ["child", "label"]);
}
