using System.Globalization;
using System.Text.Json.Nodes;

namespace StateX.Training;

/// <summary>
/// Everything that decides what a training run computes. Two runs with equal options, model, data and seed produce
/// the same weights on CPU. Defaults follow the StateX paper's post-training recipe where it states one (AdamW,
/// cosine schedule with warm-up to a floor of 10% of the peak, peak learning rate 3e-4, clipping at 1.0) and common
/// practice for what it leaves open (weight decay 0.1, betas 0.9/0.95 as in fla's and mamba_ssm's training setups).
/// </summary>
public sealed record TrainOptions
{
    /// <summary>Optimiser steps in the whole run.</summary>
    public int Steps { get; init; } = 100;
    /// <summary>T: tokens per sequence.</summary>
    public int SeqLen { get; init; } = 2048;
    /// <summary>B: sequences per micro-batch.</summary>
    public int BatchSize { get; init; } = 8;
    /// <summary>Micro-batches whose gradients add up to one step (tokens per step = B·T·GradAccum).</summary>
    public int GradAccum { get; init; } = 1;
    public double LearningRate { get; init; } = 3e-4;
    /// <summary>cosine | wsd[:DECAY_FRACTION] | constant.</summary>
    public string Schedule { get; init; } = "cosine";
    /// <summary>Linear warm-up steps; null = 5% of the steps.</summary>
    public int? WarmupSteps { get; init; }
    /// <summary>Final learning rate as a fraction of the peak (cosine, wsd).</summary>
    public double FloorRatio { get; init; } = 0.1;
    public double WeightDecay { get; init; } = 0.1;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double Eps { get; init; } = 1e-8;
    /// <summary>Global gradient-norm clipping threshold; 0 turns clipping off.</summary>
    public double ClipNorm { get; init; } = 1.0;
    /// <summary>Seeds the fresh model's initialisation and the data order.</summary>
    public ulong Seed { get; init; }
    /// <summary>auto | cpu | cuda | cuda:N.</summary>
    public string Device { get; init; } = "auto";
    /// <summary>auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 (bf16 compute, fp32 master weights and optimiser state).</summary>
    public string Precision { get; init; } = "auto";
    /// <summary>Recompute each block in the backward pass instead of storing its activations.</summary>
    public bool ActivationCheckpointing { get; init; }
    /// <summary>With activation checkpointing: run each block over the sequence in segments of this many tokens,
    /// carrying its state, each segment checkpointed, so recomputing a block needs memory for this many tokens
    /// rather than the whole sequence; null = whole sequences.</summary>
    public int? CheckpointSegment { get; init; }
    /// <summary>Tokens of a sequence whose logits are materialised at once when computing the loss.</summary>
    public int LossChunk { get; init; } = 8192;
    /// <summary>Checkpoint every this many steps; null = 10 checkpoints per run. The last step is always saved.</summary>
    public int? CheckpointEvery { get; init; }
    public int KeepLast { get; init; } = 2;
    /// <summary>Never cut a document that fits in a sequence: start it in the next one (see <see cref="Data.LoaderOptions.WholeDocuments"/>).</summary>
    public bool WholeDocuments { get; init; }

    public int Warmup => WarmupSteps ?? Steps / 20;
    public int CheckpointInterval => CheckpointEvery ?? Math.Max(1, Steps / 10);
    public long TokensPerStep => (long)BatchSize * SeqLen * GradAccum;

    public void Validate()
    {
        static void Must(bool ok, string message) { if (!ok) throw new ArgumentException(message); }
        Must(Steps >= 1, $"steps must be at least 1 (got {Steps})");
        Must(SeqLen >= 2, $"sequence length must be at least 2 (got {SeqLen})");
        Must(BatchSize >= 1, $"batch size must be at least 1 (got {BatchSize})");
        Must(GradAccum >= 1, $"gradient accumulation must be at least 1 (got {GradAccum})");
        Must(WeightDecay >= 0, $"weight decay must be non-negative (got {WeightDecay})");
        Must(Beta1 is >= 0 and < 1 && Beta2 is >= 0 and < 1, $"betas must be in [0, 1) (got {Beta1}, {Beta2})");
        Must(ClipNorm >= 0, $"clip norm must be non-negative (got {ClipNorm})");
        Must(CheckpointSegment is null or >= 1, $"checkpoint segment must be at least 1 token (got {CheckpointSegment})");
        Must(CheckpointSegment is null || ActivationCheckpointing, "a checkpoint segment length needs activation checkpointing");
        Must(LossChunk >= 1, $"loss chunk must be at least 1 token (got {LossChunk})");
        Must(CheckpointEvery is null or >= 1, $"checkpoint interval must be at least 1 step (got {CheckpointEvery})");
        Must(KeepLast >= 1, $"keep-last must be at least 1 (got {KeepLast})");
        Must(Precision is "auto" or "fp32" or "bf16", $"unknown precision '{Precision}': expected auto, fp32 or bf16");
        DeviceSpec.Parse(Device);
        BuildSchedule();
    }

    public LearningRateSchedule BuildSchedule() => LearningRateSchedule.Parse(Schedule, LearningRate, Warmup, Steps, FloorRatio);

    public JsonObject ToJson() => new()
    {
        ["steps"] = Steps,
        ["seq_len"] = SeqLen,
        ["batch_size"] = BatchSize,
        ["grad_accum"] = GradAccum,
        ["lr"] = LearningRate,
        ["schedule"] = Schedule,
        ["warmup_steps"] = Warmup,
        ["floor_ratio"] = FloorRatio,
        ["weight_decay"] = WeightDecay,
        ["beta1"] = Beta1,
        ["beta2"] = Beta2,
        ["eps"] = Eps,
        ["clip_norm"] = ClipNorm,
        ["seed"] = Seed.ToString(CultureInfo.InvariantCulture),
        ["device"] = Device,
        ["precision"] = Precision,
        ["activation_checkpointing"] = ActivationCheckpointing,
        ["checkpoint_segment"] = CheckpointSegment,
        ["loss_chunk"] = LossChunk,
        ["checkpoint_every"] = CheckpointInterval,
        ["keep_last"] = KeepLast,
        ["whole_documents"] = WholeDocuments,
    };

    /// <summary>Reads what <see cref="ToJson"/> wrote; an unknown or missing key is an error naming it.</summary>
    public static TrainOptions FromJson(JsonObject o, string origin)
    {
        var known = new TrainOptions().ToJson().Select(kv => kv.Key).ToHashSet();
        foreach (var (k, _) in o)
            if (!known.Contains(k)) throw new InvalidDataException($"{origin}: unknown training option '{k}'");
        T Get<T>(string key) => o[key] is { } n ? n.GetValue<T>() : throw new InvalidDataException($"{origin}: training option '{key}' is missing");
        return new TrainOptions
        {
            Steps = Get<int>("steps"),
            SeqLen = Get<int>("seq_len"),
            BatchSize = Get<int>("batch_size"),
            GradAccum = Get<int>("grad_accum"),
            LearningRate = Get<double>("lr"),
            Schedule = Get<string>("schedule"),
            WarmupSteps = Get<int>("warmup_steps"),
            FloorRatio = Get<double>("floor_ratio"),
            WeightDecay = Get<double>("weight_decay"),
            Beta1 = Get<double>("beta1"),
            Beta2 = Get<double>("beta2"),
            Eps = Get<double>("eps"),
            ClipNorm = Get<double>("clip_norm"),
            Seed = ulong.Parse(Get<string>("seed"), CultureInfo.InvariantCulture),
            Device = Get<string>("device"),
            Precision = Get<string>("precision"),
            ActivationCheckpointing = Get<bool>("activation_checkpointing"),
            // Absent from runs started before segmented checkpointing existed: those ran whole sequences.
            CheckpointSegment = o["checkpoint_segment"]?.GetValue<int>(),
            LossChunk = Get<int>("loss_chunk"),
            CheckpointEvery = Get<int>("checkpoint_every"),
            KeepLast = Get<int>("keep_last"),
            WholeDocuments = o["whole_documents"]?.GetValue<bool>() ?? false,
        };
    }

    /// <summary>Keys whose values differ between two option sets (as "key: a → b"), for refusing a mismatched resume.</summary>
    public static IReadOnlyList<string> Differences(TrainOptions saved, TrainOptions given)
    {
        var a = saved.ToJson(); var b = given.ToJson();
        return a.Where(kv => kv.Value?.ToJsonString() != b[kv.Key]?.ToJsonString())
            .Select(kv => $"{kv.Key}: {kv.Value?.ToJsonString()} → {b[kv.Key]?.ToJsonString()}").ToArray();
    }
}
