using System.Diagnostics;
using System.Globalization;
using StateX.Models;
using StateX.Native;
using StateX.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Bench;

/// <summary>
/// Training throughput: the trainer's step (chunked loss, backward, clipping, AdamW with fp32 masters) on random
/// tokens for a model built from a config.json, with or without activation checkpointing. Prints tokens/s and peak
/// memory. One shape per process, so the memory figure belongs to that shape alone.
/// </summary>
public sealed class TrainBench : IBenchSuite
{
    public string Name => "train";
    public string Description => "training step tokens/s and peak memory for a config (--config FILE --T 8192 --B 1 [--ckpt [--segment N]] [--device] [--precision])";

    const string Usage = """
        train --config FILE [--T 8192] [--B 1] [--accum 1] [--steps 3] [--ckpt [--segment N]] [--device auto|cpu|cuda[:N]] [--precision auto|fp32|bf16] [--loss-chunk 8192]
        --segment N: with --ckpt, recompute each block N tokens at a time, carrying its state (segmented checkpointing).
        Times --steps optimiser steps after one warm-up step, on random tokens, with random weights.
        Peak memory: CUDA — device memory in use at its highest (cuMemGetInfo; includes libtorch's cache), minus that
        before the model was built; CPU — the process's peak resident set.
        """;

    public int Run(string[] args)
    {
        var o = ParseArgs(args);
        if (o.ContainsKey("help") || !o.ContainsKey("config")) { Console.WriteLine(Usage); return o.ContainsKey("help") ? 0 : 2; }
        int I(string k, int d) => BenchArgs.Int(o, k, d);
        int T = I("T", 8192), B = I("B", 1), accum = I("accum", 1), steps = I("steps", 3), lossChunk = I("loss-chunk", 8192), segment = I("segment", 0);
        bool ckpt = o.ContainsKey("ckpt");
        if (segment > 0 && !ckpt) throw new ArgumentException("--segment needs --ckpt (it segments the checkpointed recomputation)");
        string ckptText = ckpt ? segment > 0 ? $"on, segments of {segment}" : "on" : "off";
        var device = DeviceSpec.Parse(o.GetValueOrDefault("device", "auto")).Resolve();
        bool cuda = device.type == DeviceType.CUDA;
        var dtype = o.GetValueOrDefault("precision", "auto") switch
        {
            "bf16" => ScalarType.BFloat16,
            "fp32" => ScalarType.Float32,
            "auto" => cuda ? ScalarType.BFloat16 : ScalarType.Float32,
            var p => throw new ArgumentException($"unknown --precision '{p}'"),
        };
        if (cuda) { using var warm = zeros(1, device: device); }
        long baseMem = cuda ? CudaDevices.MemoryInUse() : 0;
        var model = Checkpoint.FromConfig(o["config"], warn: _ => { });
        model.Module.to(device).to(dtype);
        long parameters = model.Module.parameters().Sum(p => p.numel());
        var net = ((ITrainableModel)model).TrainingStack();
        using var opt = new AdamW(model.Module.named_parameters());
        model.Module.train();
        long peak = 0;
        void Sample() { if (cuda) peak = Math.Max(peak, CudaDevices.MemoryInUse() - baseMem); }

        double Step()
        {
            double loss = 0;
            for (int m = 0; m < accum; m++)
            {
                using var scope = NewDisposeScope();
                var ids = randint(0, model.VocabSize, [B, T + 1], device: device);              // [B, T+1]
                var l = TrainingLoss.Compute(net, ids[.., ..^1], ids[.., 1..], ckpt, lossChunk, segment);
                (l / accum).backward();
                Sample();
                loss += l.item<float>();
            }
            Trainer.ClipGradients(opt, 1.0);
            opt.StepWith(1e-4);
            opt.ZeroGrad();
            Sample();
            return loss / accum;
        }

        Console.WriteLine($"train bench: {Path.GetFileName(o["config"])} ({model.Family}, {parameters / 1e6:F2}M parameters) on {device} ({dtype}), T={T}, B={B}, accum={accum}, activation checkpointing {ckptText}");
        try
        {
            Step();
            if (cuda) cuda_synchronize(device);
            var clock = Stopwatch.StartNew();
            double loss = 0;
            for (int s = 0; s < steps; s++) loss = Step();
            if (cuda) cuda_synchronize(device);
            double secs = clock.Elapsed.TotalSeconds;
            long tokens = (long)steps * B * T * accum;
            if (!cuda) peak = Process.GetCurrentProcess().PeakWorkingSet64;
            Console.WriteLine($"RESULT family={model.Family} params={parameters / 1e6:F2}M T={T} B={B} ckpt={(ckpt ? "on" : "off")} segment={segment} dtype={dtype} tokens/s={tokens / secs:F0} step_s={secs / steps:F3} peak_MiB={peak / 1048576.0:F0} loss={loss:F3}");
        }
        catch (Exception e) when (e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase))
        {
            Console.WriteLine($"RESULT family={model.Family} T={T} B={B} ckpt={(ckpt ? "on" : "off")} segment={segment}: out of memory (peak seen {peak / 1048576.0:F0} MiB)");
            // libtorch's message says what was being allocated and how much the caching allocator held.
            Console.WriteLine("  " + e.Message.Split('\n')[0]);
        }
        return 0;
    }

    static void cuda_synchronize(Device d) => torch.cuda.synchronize(d);

    static Dictionary<string, string> ParseArgs(string[] args) => BenchArgs.Parse(args, Usage, "ckpt");
}
