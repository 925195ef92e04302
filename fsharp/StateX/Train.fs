namespace StateX

open System
open StateX.Models
open StateX.Training

/// <summary>
/// What a training run computes (the core's TrainOptions plus data and tokenizer), as data: hashed into run keys.
/// Where it runs (device) and how it reports are <see cref="RunSettings"/>, which are not part of the key.
/// </summary>
type TrainSpec = {
    Data: string
    Tokenizer: string
    Steps: int
    SeqLen: int
    BatchSize: int
    GradAccum: int
    LearningRate: float
    /// cosine | wsd[:F] | constant
    Schedule: string
    /// None: 5% of the steps.
    Warmup: int option
    FloorRatio: float
    WeightDecay: float
    ClipNorm: float
    Seed: int64
    /// auto | fp32 | bf16
    Precision: string
    ActivationCheckpointing: bool
    /// With activation checkpointing: recompute each block over this many tokens at a time, carrying its state
    /// (None: whole sequences).
    CheckpointSegment: int option
    /// Never cut a document that fits in a sequence; start it in the next one (MQAR, passkey).
    WholeDocuments: bool
}

/// How runs are carried out: not part of what they compute, so not hashed.
type RunSettings = {
    /// auto | cpu | cuda | cuda:N
    Device: string
    Log: string -> unit
    /// Seconds between training progress lines (0: none).
    ProgressEvery: float
    /// Steps between training checkpoints (None: the trainer's default, 10 per run). Resuming needs the same value.
    CheckpointEvery: int option
    /// Training checkpoints kept per run (the newest ones).
    KeepLast: int
}

[<RequireQualifiedAccess>]
module RunSettings =
    let defaults = {
        Device = "auto"
        Log = (fun s -> Console.WriteLine s)
        ProgressEvery = 10.0
        CheckpointEvery = None
        KeepLast = TrainOptions().KeepLast
    }
    let quiet = { defaults with Log = ignore; ProgressEvery = 0.0 }

[<RequireQualifiedAccess>]
module TrainSpec =
    /// The core's defaults (the StateX paper's post-training recipe where it gives one) on the given data.
    let on (data: string) : TrainSpec =
        let d = TrainOptions()
        {
            Data = data
            Tokenizer = "byte"
            Steps = d.Steps
            SeqLen = d.SeqLen
            BatchSize = d.BatchSize
            GradAccum = d.GradAccum
            LearningRate = d.LearningRate
            Schedule = d.Schedule
            Warmup = None
            FloorRatio = d.FloorRatio
            WeightDecay = d.WeightDecay
            ClipNorm = d.ClipNorm
            Seed = int64 d.Seed
            Precision = d.Precision
            ActivationCheckpointing = d.ActivationCheckpointing
            CheckpointSegment = None
            WholeDocuments = false
        }

    let steps n (t: TrainSpec) = { t with Steps = n }
    let seqLen n (t: TrainSpec) = { t with SeqLen = n }
    let batch n (t: TrainSpec) = { t with BatchSize = n }
    let lr x (t: TrainSpec) = { t with LearningRate = x }
    let seed s (t: TrainSpec) = { t with Seed = s }
    let tokenizer name (t: TrainSpec) = { t with Tokenizer = name }
    let warmup n (t: TrainSpec) = { t with Warmup = Some n }
    let wholeDocuments (t: TrainSpec) = { t with WholeDocuments = true }

    /// Runs each step's BatchSize × GradAccum sequences as micro-batches of `sequences` (gradient accumulation):
    /// the same tokens per step in less memory. Fails when they do not divide evenly.
    let microBatch (sequences: int) (t: TrainSpec) =
        let total = t.BatchSize * t.GradAccum
        let m = min sequences total
        if m < 1 || total % m <> 0 then
            invalidArg "sequences" (sprintf "a step of %d sequences is not a whole number of micro-batches of %d" total sequences)
        { t with BatchSize = m; GradAccum = total / m }

    /// Activation checkpointing, over segments of `tokens` when given (long contexts in bounded memory).
    let checkpointed (segment: int option) (t: TrainSpec) = { t with ActivationCheckpointing = true; CheckpointSegment = segment }

    /// The core's options for this training, run as `settings` say (device, checkpoint interval, keep-last): the one
    /// place in StateX's F# layer and CLI where TrainOptions are built.
    let optionsWith (settings: RunSettings) (t: TrainSpec) : TrainOptions =
        let o =
            TrainOptions(
                CheckpointEvery = Option.toNullable settings.CheckpointEvery,
                KeepLast = settings.KeepLast,
                Steps = t.Steps,
                SeqLen = t.SeqLen,
                BatchSize = t.BatchSize,
                GradAccum = t.GradAccum,
                LearningRate = t.LearningRate,
                Schedule = t.Schedule,
                WarmupSteps = Option.toNullable t.Warmup,
                FloorRatio = t.FloorRatio,
                WeightDecay = t.WeightDecay,
                ClipNorm = t.ClipNorm,
                Seed = uint64 t.Seed,
                Device = settings.Device,
                Precision = t.Precision,
                ActivationCheckpointing = t.ActivationCheckpointing,
                CheckpointSegment = Option.toNullable t.CheckpointSegment,
                WholeDocuments = t.WholeDocuments
            )
        o.Validate()
        o

    /// The core's options for this training on a device.
    let options (device: string) (t: TrainSpec) = optionsWith { RunSettings.quiet with Device = device } t

    /// Trains the model `create` makes (called only on a fresh start) into `runDir` with the core's Trainer,
    /// resuming from the newest checkpoint there if a previous attempt was interrupted.
    /// `trainable`: the parameters to train (None: all that the model leaves trainable).
    let run
        (settings: RunSettings)
        (t: TrainSpec)
        (create: unit -> ICausalLanguageModel)
        (trainable: string list option)
        (runDir: string)
        : TrainSummary =
        let mutable last = DateTime.MinValue
        let progress (p: TrainProgress) =
            let now = DateTime.UtcNow
            if settings.ProgressEvery > 0.0 && ((now - last).TotalSeconds >= settings.ProgressEvery || p.Step = p.TotalSteps) then
                last <- now
                let eta =
                    match Option.ofNullable p.Eta with
                    | Some e -> e.ToString(@"h\:mm\:ss")
                    | None -> "?"
                settings.Log(sprintf "  step %d/%d  loss %.4f  %.0f tok/s  eta %s" p.Step p.TotalSteps p.Loss p.TokensPerSecond eta)
        let o = optionsWith settings t
        let job =
            TrainJob(
                Func<_>(create),
                t.Data,
                t.Tokenizer,
                o,
                runDir,
                true,
                "fsharp",
                (match trainable with
                 | Some names -> Collections.Generic.List<string>(names) :> Collections.Generic.IReadOnlyList<string>
                 | None -> null)
            )
        // Checkpoint lines stay in the run's log.txt; the console gets start, resume, warnings and the end.
        let log (l: string) = if settings.ProgressEvery > 0.0 && not (l.StartsWith "checkpoint:") then settings.Log("  " + l)
        Trainer.Run(job, TrainHooks(Progress = Action<_>(progress), Log = Action<string>(log)))
