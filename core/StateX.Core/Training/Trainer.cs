using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using StateX.Data;
using StateX.IO;
using StateX.Models;
using StateX.Native;
using StateX.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Training;

/// <summary>
/// The post-training loop: AdamW with decay/no-decay groups, a learning-rate schedule, gradient accumulation and
/// global-norm clipping, optional bf16 compute with float32 masters and per-block activation checkpointing, atomic
/// checksummed checkpoints (model, optimiser, data cursor, step) every few steps, and exact resumption from them.
/// A non-finite loss or gradient stops the run before anything bad is written and names the first non-finite tensor.
/// </summary>
public static class Trainer
{
    const string ConfigFormat = "statex-run/1";

    public static TrainSummary Run(TrainJob job, TrainHooks? hooks = null)
    {
        NativeRuntime.EnsureInitialized();
        hooks ??= new TrainHooks();
        var o = job.Options;
        o.Validate();
        var run = new RunFolder(job.RunDirectory);
        void Log(string line) => run.Log(line, hooks.Log);
        var device = DeviceSpec.Parse(o.Device).Resolve();
        var dtype = (o.Precision, device.type) switch
        {
            ("bf16", _) or ("auto", DeviceType.CUDA) => ScalarType.BFloat16,
            _ => ScalarType.Float32,
        };
        var store = new CheckpointStore(run.Root, o.KeepLast, Log);
        var tokenizer = Tokenizers.Load(job.Tokenizer);
        var spec = DataSpec.Parse(job.DataSpec);

        // Never start over a run that has progress in it: that would silently destroy it.
        bool hasProgress = store.List().Count > 0 || File.Exists(run.MetricsPath) && new FileInfo(run.MetricsPath).Length > 0;
        if (hasProgress && !job.Resume)
            throw new ExistingRunException(run.Root);
        var from = job.Resume ? store.LatestValid() : null;
        if (job.Resume && hasProgress && from is null)
            Log("warning: no intact checkpoint to resume from; starting from step 0");

        ICausalLanguageModel model;
        IReadOnlyList<string>? trainable;
        DataCursor? cursor = null;
        int startStep = 0;
        long tokens = 0;
        double priorSeconds = 0, resumedLoss = double.NaN;
        if (from is null)
        {
            run.TruncateAfter(-1);
            model = TorchRandom.Seeded(unchecked((long)o.Seed), job.CreateModel);
            trainable = job.Trainable ?? FrozenByModel(model);
            run.WriteConfig(RunConfig(job, model, tokenizer, trainable));
            Log($"start: {job.Recipe} recipe, {model.Family} model with {ParameterCount(model):N0} parameters, {o.Steps} steps of {o.TokensPerStep:N0} tokens on {device} ({dtype})");
        }
        else
        {
            CheckResumeMatches(run, job);
            model = Checkpoint.Load(from.Directory, warn: Log);
            var state = JsonNode.Parse(File.ReadAllText(Path.Combine(from.Directory, "trainer.json")))!.AsObject();
            startStep = state["step"]!.GetValue<int>();
            tokens = state["tokens"]!.GetValue<long>();
            priorSeconds = state["elapsed_s"]!.GetValue<double>();
            // A run resumed at its last step trains nothing; its final loss is the one saved with the checkpoint
            // (absent from checkpoints written before it was saved: NaN, "unknown").
            resumedLoss = state["loss"]?.GetValue<double>() ?? double.NaN;
            trainable = state["trainable"] is JsonArray a ? a.Select(n => n!.GetValue<string>()).ToArray() : null;
            cursor = DataCursor.Load(Path.Combine(from.Directory, "cursor.json"));
            run.TruncateAfter(startStep);
            Log($"resume: from {from.Directory} at step {startStep} of {o.Steps}");
        }

        model.Module.to(device).to(dtype);
        SelectTrainable(model, trainable);
        var stack = (model as ITrainableModel ?? throw new ArgumentException($"{model.GetType().Name} cannot be trained: it does not expose a TrainingStack")).TrainingStack();
        using var opt = new AdamW(model.Module.named_parameters(), o.WeightDecay, o.Beta1, o.Beta2, o.Eps);
        if (from is not null)
        {
            using var reader = new SafeTensorsReader(Path.Combine(from.Directory, "optimizer.safetensors"));
            opt.LoadState(name => reader.Contains(name) ? reader.Load(name, device: device) : null, startStep);
        }
        using var loader = DataLoader.Open(spec, tokenizer, new LoaderOptions(o.SeqLen, o.BatchSize, o.Seed, WholeDocuments: o.WholeDocuments), cursor);
        var schedule = o.BuildSchedule();
        model.Module.train();

        var clock = Stopwatch.StartNew();
        int stepsThisSession = 0;
        double lastLoss = resumedLoss, tokensPerSecond = 0;
        long peakMemory = 0;
        int? resumedFrom = from?.Step;

        for (int step = startStep; step < o.Steps; step++)
        {
            double lr = schedule.At(step);
            double lossSum = 0;
            for (int micro = 0; micro < o.GradAccum; micro++)
            {
                var batch = loader.Next() ?? throw new DataException(
                    $"the data ran out at step {step + 1} of {o.Steps} ({loader.BatchesRead} batches read from '{job.DataSpec}'); give more data or fewer steps");
                CheckVocabulary(batch, model.VocabSize, tokenizer, step);
                using var scope = NewDisposeScope();
                var rows = batch.ToTensor(device);                                          // [B, T+1]
                var inputs = rows[.., ..^1];                                                 // [B, T]
                var targets = batch.LabelsTensor(device)[.., 1..];                          // [B, T], -100 where not a target
                var loss = TrainingLoss.Compute(stack, inputs, targets, o.ActivationCheckpointing, o.LossChunk, o.CheckpointSegment ?? 0);
                double value = loss.item<float>();
                if (!double.IsFinite(value))
                {
                    var culprit = NonFinite.FirstInParameters(model) ?? NonFinite.FirstInForward(stack, inputs);
                    throw Diverged(run, store, Log, step + 1, $"the loss is {value}", culprit);
                }
                (loss / o.GradAccum).backward();
                lossSum += value;
            }
            double gradNorm = ClipGradients(opt, o.ClipNorm);
            if (!double.IsFinite(gradNorm))
                throw Diverged(run, store, Log, step + 1, $"the gradient norm is {gradNorm}", NonFinite.FirstInGradients(opt));
            opt.StepWith(lr);
            opt.ZeroGrad();
            CrashPoints.Reach(CrashPoints.Step);    // the weights moved, nothing of this step is on disk yet

            int done = step + 1;
            stepsThisSession++;
            tokens += o.TokensPerStep;
            lastLoss = lossSum / o.GradAccum;
            var elapsed = clock.Elapsed;
            tokensPerSecond = stepsThisSession * o.TokensPerStep / Math.Max(1e-9, elapsed.TotalSeconds);
            long memory = MemoryInUse(device);
            peakMemory = Math.Max(peakMemory, memory);
            TimeSpan? eta = elapsed * ((double)(o.Steps - done) / stepsThisSession);
            run.AppendMetrics(new JsonObject
            {
                ["step"] = done,
                ["loss"] = lastLoss,
                ["lr"] = lr,
                ["grad_norm"] = gradNorm,
                ["tokens"] = tokens,
                ["tokens_per_s"] = Math.Round(tokensPerSecond, 1),
                ["elapsed_s"] = Math.Round(priorSeconds + elapsed.TotalSeconds, 3),
                ["memory_bytes"] = memory,
            });
            hooks.Progress?.Invoke(new TrainProgress(done, o.Steps, lastLoss, lr, gradNorm, tokensPerSecond, tokens,
                TimeSpan.FromSeconds(priorSeconds) + elapsed, eta, memory));

            if (hooks.Evaluate is not null && hooks.EvalEvery > 0 && (done % hooks.EvalEvery == 0 || done == o.Steps))
                Evaluate(run, hooks, model, done);
            if (done % o.CheckpointInterval == 0 || done == o.Steps)
            {
                var entry = SaveCheckpoint(store, model, opt, loader, done, tokens, priorSeconds + clock.Elapsed.TotalSeconds, lastLoss, trainable);
                Log($"checkpoint: step {done} → {entry.Directory}");
            }
        }

        SaveFinalModel(model, run.ModelDirectory, job.Tokenizer);
        var total = TimeSpan.FromSeconds(priorSeconds) + clock.Elapsed;
        Log($"done: {o.Steps} steps, final loss {lastLoss:F4}, {tokensPerSecond:N0} tokens/s, peak memory {peakMemory / 1048576.0:N0} MiB, model in {run.ModelDirectory}");
        return new TrainSummary(run.Root, run.ModelDirectory, o.Steps, lastLoss, tokensPerSecond, tokens, peakMemory, total, resumedFrom);
    }

    public static long ParameterCount(ICausalLanguageModel model) => model.Module.parameters().Sum(p => p.numel());

    static JsonObject RunConfig(TrainJob job, ICausalLanguageModel model, ITokenizer tokenizer, IReadOnlyList<string>? trainable) => new()
    {
        ["format"] = ConfigFormat,
        ["recipe"] = job.Recipe,
        ["family"] = model.Family,
        ["parameters"] = ParameterCount(model),
        ["state_elements"] = model.StateSize().TotalElements,
        ["data"] = job.DataSpec,
        ["tokenizer"] = job.Tokenizer,
        ["tokenizer_name"] = tokenizer.Name,
        ["options"] = job.Options.ToJson(),
        ["trainable"] = trainable is null ? null : new JsonArray(trainable.Select(n => (JsonNode)n!).ToArray()),
        ["describe"] = job.Describe?.DeepClone(),
        ["started_utc"] = DateTime.UtcNow.ToString("o", CultureInfo.InvariantCulture),
    };

    /// <summary>A resumed run must be the run that was started: same options, data and tokenizer.</summary>
    static void CheckResumeMatches(RunFolder run, TrainJob job)
    {
        if (!File.Exists(run.ConfigPath)) throw new InvalidDataException($"{run.ConfigPath} is missing: cannot tell what run this folder holds");
        var saved = run.ReadConfig();
        if (saved["format"]?.GetValue<string>() != ConfigFormat) throw new InvalidDataException($"{run.ConfigPath}: not a StateX run config ({ConfigFormat})");
        var problems = TrainOptions.Differences(TrainOptions.FromJson(saved["options"]!.AsObject(), run.ConfigPath), job.Options).ToList();
        if (saved["data"]?.GetValue<string>() != job.DataSpec) problems.Add($"data: {saved["data"]} → {job.DataSpec}");
        if (saved["tokenizer"]?.GetValue<string>() != job.Tokenizer) problems.Add($"tokenizer: {saved["tokenizer"]} → {job.Tokenizer}");
        if (saved["recipe"]?.GetValue<string>() != job.Recipe) problems.Add($"recipe: {saved["recipe"]} → {job.Recipe}");
        if (problems.Count > 0)
            throw new InvalidOperationException($"cannot resume {run.Root}: it was started with other settings ({string.Join("; ", problems)}); resume with the run's own settings or choose another output folder");
    }

    /// <summary>The names of the parameters the model itself left trainable (e.g. an expansion that froze the others), or null when all are.</summary>
    static IReadOnlyList<string>? FrozenByModel(ICausalLanguageModel model)
    {
        var named = model.Module.named_parameters().ToArray();
        return named.All(n => n.parameter.requires_grad) ? null : named.Where(n => n.parameter.requires_grad).Select(n => n.name).ToArray();
    }

    static void SelectTrainable(ICausalLanguageModel model, IReadOnlyList<string>? trainable)
    {
        var named = model.Module.named_parameters().ToArray();
        if (trainable is null) { foreach (var (_, p) in named) p.requires_grad = true; return; }
        var wanted = trainable.ToHashSet(StringComparer.Ordinal);
        var unknown = wanted.Except(named.Select(n => n.name)).ToArray();
        if (unknown.Length > 0) throw new ArgumentException($"trainable parameter(s) not in the model: {string.Join(", ", unknown.Take(5))}");
        foreach (var (name, p) in named) p.requires_grad = wanted.Contains(name);
    }

    static void CheckVocabulary(Batch batch, int vocab, ITokenizer tokenizer, int step)
    {
        long max = 0;
        foreach (var t in batch.Tokens) if (t > max) max = t;
        if (max >= vocab)
            throw new DataException($"step {step + 1}: token id {max} is outside the model's vocabulary of {vocab} (tokenizer {tokenizer.Name}); use the model's tokenizer or a model with a larger vocabulary");
    }

    /// <summary>Scales gradients so their global L2 norm is at most <paramref name="maxNorm"/>; returns the norm before clipping.</summary>
    internal static double ClipGradients(AdamW opt, double maxNorm)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var grads = opt.Parameters.Select(e => e.Parameter.grad).Where(g => g is not null).Select(g => g!).ToArray();
        if (grads.Length == 0) return 0;
        var norm = stack(grads.Select(g => g.to_type(ScalarType.Float32).norm()).ToArray()).norm();
        double value = norm.item<float>();
        if (maxNorm > 0 && double.IsFinite(value) && value > maxNorm)
        {
            double coef = maxNorm / (value + 1e-6);
            foreach (var g in grads) g.mul_(coef);
        }
        return value;
    }

    static void Evaluate(RunFolder run, TrainHooks hooks, ICausalLanguageModel model, int step)
    {
        model.Module.eval();
        try
        {
            using var _ = no_grad();
            foreach (var r in hooks.Evaluate!(step, model))
                run.AppendEval(new JsonObject
                {
                    ["step"] = step,
                    ["task"] = r.Task,
                    ["metric"] = r.Metric,
                    ["value"] = r.Value,
                    ["n"] = r.N,
                    ["setting"] = new JsonObject(r.Setting.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value)))),
                });
        }
        finally { model.Module.train(); }
    }

    static CheckpointEntry SaveCheckpoint(CheckpointStore store, ICausalLanguageModel model, AdamW opt, DataLoader loader,
        int step, long tokens, double elapsedSeconds, double loss, IReadOnlyList<string>? trainable) =>
        store.Save(step, dir =>
        {
            model.Save(dir);
            SafeTensorsWriter.Write(Path.Combine(dir, "optimizer.safetensors"), opt.StateTensors(),
                new Dictionary<string, string> { ["step"] = opt.Step.ToString(CultureInfo.InvariantCulture) });
            loader.Cursor.Save(Path.Combine(dir, "cursor.json"));
            AtomicFile.WriteAllText(Path.Combine(dir, "trainer.json"), new JsonObject
            {
                ["step"] = step,
                ["tokens"] = tokens,
                ["elapsed_s"] = elapsedSeconds,
                ["loss"] = loss,
                ["trainable"] = trainable is null ? null : new JsonArray(trainable.Select(n => (JsonNode)n!).ToArray()),
            }.ToJsonString());
        });

    /// <summary>RUN/model appears complete or not at all: written beside it, then renamed.</summary>
    static void SaveFinalModel(ICausalLanguageModel model, string directory, string tokenizer)
    {
        var tmp = directory + $".tmp-{Environment.ProcessId}";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        model.Save(tmp);
        Tokenizers.CopyTo(tokenizer, tmp);
        if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        Directory.Move(tmp, directory);
    }

    static TrainingDivergedException Diverged(RunFolder run, CheckpointStore store, Action<string> log, int step, string what, string? tensor)
    {
        var last = store.List().FirstOrDefault();
        var message = $"training stopped at step {step}: {what}"
            + (tensor is null ? "" : $"; first non-finite tensor: {tensor}")
            + (last.Directory is null ? "; no checkpoint had been written yet" : $"; the last good checkpoint is {last.Directory} (step {last.Step})")
            + ". Lower the learning rate or check the data, then resume.";
        log("error: " + message);
        return new TrainingDivergedException(message, step, tensor);
    }

    static long MemoryInUse(Device device)
    {
        if (device.type == DeviceType.CUDA) return CudaDevices.MemoryInUse();
        using var self = Process.GetCurrentProcess();
        return self.PeakWorkingSet64;
    }
}
