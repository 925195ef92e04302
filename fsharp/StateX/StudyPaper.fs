/// `statex demo --preset paper`: the StateX paper's 1.3B post-training recipe, as the official code runs it
/// (../shared/docs/statex-official.md §2), on checkpoints the user brings. Checks every input before anything heavy,
/// and prints the plan with its cost from measured throughputs.
[<RequireQualifiedAccess>]
module StateX.StudyPaper

open System
open System.IO
open System.Globalization
open StateX.IO
open StateX.Data
open StateX.Models
open StateX.Expansion
open StateX.Tokenization

// ---- the recipe (statex-official.md §2: configs/training/drop/10b_bsz-512k_64k_cos_3e-4_slimpj.json) ----------------

/// The official post-training: 20,000 steps (n_train_steps) of 8 × 65,536 tokens (8 GPUs × batch 1 × max_len; about
/// 10.49B tokens), AdamW lr 3e-4, betas (0.9, 0.95), weight decay 0.1 on every tensor of ≥ 2 dims and none on the
/// rest, clip 1.0, 1000 linear warm-up steps, then cosine to 0 (cosine_with_min_lr, min_lr 0). LPT and StateX alike.
let officialSteps, officialSeqLen, officialBatch, officialWarmup, officialLr = 20_000, 65_536, 8, 1_000, 3e-4

/// Sequences longer than this are checkpointed in segments of this many tokens: the measured setting that fits
/// GLA 1.3B at 64K in 39 GB and Mamba2 1.3B in 60 GB (an 80 GB GPU, as the official README asks for).
let segmentTokens = 8192

/// The evaluation grids of the paper preset: our choice (the official code has no evaluation, §1f). MQAR ids stay
/// below 256 (any tokenizer's model has them); 120 pairs is the most 127 keys allow with room. Passkey from 4K to
/// twice the 64K training length, Stuffed Mamba's depths.
let mqarPairs, mqarVocab, mqarLength, mqarExamples = [ 16; 32; 64; 120 ], 256, 2048, 64
let passkeyLengths, passkeyDepths, passkeyTrials = [ 4096; 8192; 16384; 32768; 65536; 131072 ], [ 0.0; 0.25; 0.5; 0.75; 1.0 ], 5
let heldOutRows = 16

/// The paper's expansion per family (statex-official.md §1a: every 6th layer, +50% state, <1% parameters).
let paperPresets = Map [ "gla", "gla-1.3b"; "mamba2", "mamba2-1.3b" ]

// ---- measured cost ----------------------------------------------------------------------------------------------

type Measurement = {
    Family: string
    SeqLen: int
    /// Checkpoint segment (tokens); None: whole sequences.
    Segment: int option
    /// (tokens per second, peak GPU memory in GB); None: it did not fit.
    Result: (float * float) option
}

/// MEASURED post-training throughput and peak memory of the paper's 1.3B models (data/configs/gla-1.3b.json,
/// mamba2-1.3b.json) on ONE NVIDIA H200 (141 GB): bf16, AdamW with fp32 masters, activation checkpointing, one
/// sequence per micro-batch; by the training benchmark (`dotnet run -c Release --project bench/StateX.Bench -- train
/// --config data/configs/gla-1.3b.json --T 65536 --B 1 --ckpt [--segment 8192] --precision bf16`).
/// The plan's time and memory estimates come from this table and nowhere else: update it when a new measurement
/// (e.g. Mamba2 at 64K fitting) lands.
let measured: Measurement list = [
    { Family = "gla"; SeqLen = 65_536; Segment = Some 8192; Result = Some(12_800.0, 39.0) }
    { Family = "mamba2"; SeqLen = 8192; Segment = None; Result = Some(7_100.0, 38.0) }
    { Family = "mamba2"; SeqLen = 65_536; Segment = Some 8192; Result = Some(7_400.0, 60.0) }
]

/// The models the measurements are of: the estimates apply only to models of about this size.
let private measuredParameters family =
    match family with
    | "gla" -> Model.paramCount (Model.gla GlaSpec.gla1_3b)
    | _ -> Model.paramCount (Model.mamba2 Mamba2Spec.mamba2_1_3b)

type Estimate =
    /// Measured at exactly this setting.
    | Measured of Measurement
    /// Measured at this length or a shorter one, and it did not fit.
    | DoesNotFit of Measurement
    /// Not measured at this length: the nearest measurement, whose tokens/s is used and whose memory is not.
    | Nearest of Measurement
    | Unmeasured

let estimate (family: string) (seqLen: int) (segment: int option) =
    let rows = measured |> List.filter (fun m -> m.Family = family)
    match rows |> List.tryFind (fun m -> m.SeqLen = seqLen && m.Segment = segment && m.Result.IsSome) with
    | Some m -> Measured m
    | None ->
        match rows |> List.tryFind (fun m -> m.Result.IsNone && m.SeqLen <= seqLen) with
        | Some m -> DoesNotFit m
        | None ->
            let fits = rows |> List.filter (fun m -> m.Result.IsSome)
            if fits.IsEmpty then
                Unmeasured
            else
                Nearest(fits |> List.minBy (fun m -> abs (log (float m.SeqLen / float seqLen)), (if m.Segment = segment then 0 else 1)))

// ---- inputs and their checks -------------------------------------------------------------------------------------

/// What the user gave on the command line for the paper preset.
type Inputs = {
    Gla: string option
    Mamba2: string option
    Data: string option
    HeldOut: string option
    Steps: int option
    SeqLen: int option
    Batch: int option
}

/// One family's checkpoint, checked: what the plan prints and the study starts from.
type Base = {
    Family: string
    Dir: string
    /// The checkpoint as described by its config.json (no weights read).
    Model: Model
    /// The same after the paper's expansion.
    StateX: Model
    Expansion: ExpansionPreset
    ExpandedLayers: int list
    TokenizerName: string
    /// Things worth saying that do not stop the study.
    Notes: string list
}

let private n0 (v: int64) = v.ToString("N0", CultureInfo.InvariantCulture)
let private rootMessage (e: exn) =
    let rec go (e: exn) = if isNull e.InnerException then e else go e.InnerException
    (go e).Message

/// The post-training of both arms after --steps / --seq-len / --batch: the official recipe, one sequence per
/// micro-batch, activation checkpointing (in segments beyond segmentTokens), the whole stream packed as the
/// official loader does (no document boundaries kept).
let postTrain (i: Inputs) (data: string) =
    let steps, seqLen, batch = defaultArg i.Steps officialSteps, defaultArg i.SeqLen officialSeqLen, defaultArg i.Batch officialBatch
    {
        TrainSpec.on data with
            Steps = steps
            SeqLen = seqLen
            BatchSize = batch
            GradAccum = 1
            LearningRate = officialLr
            Schedule = "cosine"
            Warmup = Some(min officialWarmup (max 0 (steps - 1)))
            FloorRatio = 0.0
            WeightDecay = 0.1
            ClipNorm = 1.0
    }
    |> TrainSpec.microBatch 1
    |> TrainSpec.checkpointed (if seqLen > segmentTokens then Some segmentTokens else None)

/// Opens `spec` with the family's tokenizer and reads one row of `seqLen` tokens; the problems found.
let private checkData (flag: string) (spec: string) (parsed: DataSpec) (family: string) (tok: ITokenizer) (vocab: int) (seqLen: int) =
    try
        use loader = DataLoader.Open(parsed, tok, LoaderOptions(seqLen, 1, 0UL))
        match Option.ofObj (loader.Next()) with
        | None -> [
            sprintf
                "%s '%s': the data ran out before one sequence of %s tokens (read with the %s checkpoint's tokenizer %s)"
                flag
                spec
                (n0 (int64 seqLen))
                family
                tok.Name
          ]
        | Some b ->
            let top = Array.max b.Tokens
            if top >= int64 vocab then
                [
                    sprintf
                        "%s '%s': token id %d is outside the %s model's vocabulary of %d (tokenizer %s): the data must be tokenised with the checkpoint's tokenizer"
                        flag
                        spec
                        top
                        family
                        vocab
                        tok.Name
                ]
            else
                []
    with e -> [ sprintf "%s '%s': %s" flag spec (rootMessage e) ]

/// Checks one family's checkpoint folder; every problem found, each naming the flag, the folder and what is wrong.
let private checkBase
    (flag: string)
    (family: string)
    (dir: string)
    (data: (string * string * DataSpec) list)
    (seqLen: int)
    : Result<Base, string list> =
    let at msg = sprintf "%s %s: %s" flag dir msg
    if not (Directory.Exists dir) then
        Error [ at "folder not found" ]
    elif not (File.Exists(Path.Combine(dir, "config.json"))) then
        Error [ at "no config.json in the folder (expected a checkpoint: config.json, model.safetensors, tokenizer)" ]
    else
        let configPath = Path.Combine(dir, "config.json")
        let dialect =
            try
                let c = ConfigJson.Load configPath
                match Checkpoint.Families |> Seq.tryFind (fun f -> f.Recognizes c) with
                | Some f -> Ok f.Name
                | None ->
                    let t =
                        match c.Root["model_type"] with
                        | null -> "absent"
                        | n -> string n
                    Error(
                        at (
                            sprintf
                                "config.json is not a checkpoint StateX reads (model_type '%s'; known: %s)"
                                t
                                (String.Join(", ", Checkpoint.Families |> Seq.map (fun f -> f.Name)))
                        )
                    )
            with e ->
                Error(at (sprintf "config.json cannot be read: %s" (rootMessage e)))
        match dialect with
        | Error e -> Error [ e ]
        | Ok dialect ->

        match
            (try
                Ok(Model.readConfigWith ignore configPath)
             with e ->
                 Error(rootMessage e))
        with
        | Error m -> Error [ at (sprintf "config.json: %s" m) ]
        | Ok m when Model.family m <> family ->
            let other = Model.family m
            Error [ at (sprintf "config.json describes a %s model (%s), not %s: give it to --%s" other dialect family other) ]
        | Ok m ->
            let problems = Collections.Generic.List<string>()
            let notes = Collections.Generic.List<string>()
            let vocab =
                match m.Arch with
                | Arch.Gla g -> g.Vocab
                | Arch.Mamba2 s -> s.Vocab
                | Arch.Gsa a -> a.Vocab
                | Arch.Power w -> w.Vocab
            if
                not (
                    File.Exists(Path.Combine(dir, CheckpointWeights.WeightsFile))
                    || File.Exists(Path.Combine(dir, CheckpointWeights.IndexFile))
                )
            then
                problems.Add(
                    at (
                        sprintf
                            "no weights: expected %s or %s (other formats, e.g. pytorch_model.bin, are not read; save them as safetensors)"
                            CheckpointWeights.WeightsFile
                            CheckpointWeights.IndexFile
                    )
                )
            if vocab < mqarVocab then
                problems.Add(
                    at (sprintf "the model's vocabulary of %d ids is smaller than the %d ids of the MQAR evaluation" vocab mqarVocab)
                )
            let tokenizer =
                try
                    Some(Tokenizers.Load dir)
                with e ->
                    problems.Add(
                        at (
                            sprintf
                                "no usable tokenizer (%s); the paper preset reads your data with the checkpoint's own tokenizer: copy tokenizer.json (and tokenizer.model for SentencePiece models) from where the checkpoint came from into the folder"
                                (rootMessage e)
                        )
                    )
                    None
            // The paper's recipe per family, by name (mamba2-1.3b-script, the shipped script's all-layer variant, is not it).
            let expansion = paperPresets |> Map.tryFind family |> Option.map ExpansionPresets.Get
            let expanded =
                match expansion with
                | None ->
                    problems.Add(at (sprintf "no StateX expansion preset for %s models" family))
                    None
                | Some p ->
                    try
                        let x = m |> Expand.apply (Expand.ofRequest (p.ToRequest())) |> Model.flatten
                        if Model.stateSize x <= Model.stateSize m then
                            problems.Add(
                                at (
                                    sprintf
                                        "the expansion %s (%O %O) does not enlarge this model's state (%s elements before and after)"
                                        p.Name
                                        p.Layers
                                        p.Rewrite
                                        (n0 (Model.stateSize m))
                                )
                            )
                            None
                        else
                            Some x
                    with e ->
                        problems.Add(
                            at (
                                sprintf
                                    "the expansion %s (%O %O) does not apply to this model: %s"
                                    p.Name
                                    p.Layers
                                    p.Rewrite
                                    (rootMessage e)
                            )
                        )
                        None
            let layers = Model.numLayers m
            match expansion with
            | Some p ->
                match p.Layers with
                | :? LayerSelection.Every as e when layers % e.K <> 0 ->
                    notes.Add(
                        sprintf
                            "the official scripts want the layer count to be a multiple of %d (drop_prop); %d is not, so the last group is shorter"
                            e.K
                            layers
                    )
                | _ -> ()
            | None -> ()
            match tokenizer with
            | Some tok ->
                if tok.VocabSize > vocab then
                    notes.Add(
                        sprintf
                            "the tokenizer can produce %d ids, the model has %d: text that produces the extra ids will stop training"
                            tok.VocabSize
                            vocab
                    )
                for flagData, spec, parsed in data do
                    problems.AddRange(checkData flagData spec parsed family tok vocab seqLen)
            | None -> ()
            match problems.Count, expansion, expanded, tokenizer with
            | 0, Some p, Some x, Some tok ->
                Ok {
                    Family = family
                    Dir = dir
                    Model = m
                    StateX = x
                    Expansion = p
                    ExpandedLayers = Model.expandedLayers layers (Expand.ofRequest (p.ToRequest()))
                    TokenizerName = tok.Name
                    Notes = List.ofSeq notes
                }
            | _ -> Error(List.ofSeq problems)

/// Every problem with the inputs of the paper preset (empty list: none), or the checked base models.
let validate (i: Inputs) : Result<Base list, string list> =
    let problems = Collections.Generic.List<string>()
    if i.Gla.IsNone && i.Mamba2.IsNone then
        problems.Add
            "--preset paper post-trains checkpoints you bring: give --gla DIR and/or --mamba2 DIR (a folder with config.json, model.safetensors and the tokenizer, e.g. fla-hub/gla-1.3B-100B, state-spaces/mamba2-1.3b)"
    if i.Data.IsNone then
        problems.Add
            "--preset paper needs --data SPEC: the text to post-train on (e.g. jsonl:slimpajama/**/*.jsonl:field=text; formats in data/README.md)"
    for flag, v in [ "--steps", i.Steps; "--seq-len", i.SeqLen; "--batch", i.Batch ] do
        match v with
        | Some n when n < (if flag = "--seq-len" then 2 else 1) ->
            problems.Add(sprintf "%s %d: must be at least %d" flag n (if flag = "--seq-len" then 2 else 1))
        | _ -> ()
    let parse flag (spec: string option) =
        match spec with
        | None -> None
        | Some s ->
            try
                Some(flag, s, DataSpec.Parse s)
            with e ->
                problems.Add(sprintf "%s '%s': %s" flag s (rootMessage e))
                None
    let data = [ parse "--data" i.Data; parse "--heldout" i.HeldOut ] |> List.choose id
    // Data that did not parse is reported once above, not again per family.
    let seqLen = max 2 (defaultArg i.SeqLen officialSeqLen)
    let bases = [
        for flag, family, dir in [ "--gla", "gla", i.Gla; "--mamba2", "mamba2", i.Mamba2 ] do
            match dir with
            | Some d ->
                match checkBase flag family d data seqLen with
                | Ok b -> yield b
                | Error ps -> problems.AddRange ps
            | None -> ()
    ]
    if problems.Count = 0 then Ok bases else Error(List.ofSeq problems)


/// The study of checked base models: LPT and StateX (the paper's expansion of the family) from each checkpoint,
/// post-trained by the official recipe, evaluated in bf16 on CUDA.
let study (i: Inputs) (bases: Base list) : Study =
    let data = defaultArg i.Data ""
    let train = postTrain i data
    {
        Name = "paper"
        Families = [
            for b in bases ->
                {
                    Name = b.Family
                    Base = b.Model
                    Start = Some b.Dir
                    Pretrain = []
                    Tokenizer = b.Dir
                    Control = None
                    Arms = [ { Name = "statex"; Label = "StateX"; Expansions = [ Expand.ofRequest (b.Expansion.ToRequest()) ] } ]
                }
        ]
        PostTrain = train
        Evaluation = {
            EvalSpec.tasks [
                Mqar(mqarPairs, mqarLength, mqarExamples, Some mqarVocab)
                Passkey(passkeyLengths, passkeyDepths, passkeyTrials, "default")
                HeldOutLoss(defaultArg i.HeldOut data, heldOutRows, train.SeqLen)
                ModelSize
            ] with
                SegmentLength = segmentTokens
                Precision = "bf16"
        }
        Seeds = [ 0 ]
        ControlSeeds = []
        PretrainSeed = None
        ConvergenceCheck = None
    }

// ---- the plan ------------------------------------------------------------------------------------------------------

let private tokensText (t: int64) =
    if t >= 1_000_000_000L then sprintf "%.2fB" (float t / 1e9)
    elif t >= 1_000_000L then sprintf "%.1fM" (float t / 1e6)
    else n0 t

let private duration (seconds: float) =
    if seconds >= 2.0 * 86400.0 then sprintf "%.1f days" (seconds / 86400.0)
    elif seconds >= 3600.0 then sprintf "%.1f hours" (seconds / 3600.0)
    elif seconds >= 90.0 then sprintf "%.0f minutes" (seconds / 60.0)
    else "about a minute or less"

/// The plan of a paper study with its cost, as printed before it starts.
let plan (s: Study) (device: string) (bases: Base list) (out: string) =
    let b = s.PostTrain
    let sb = Text.StringBuilder()
    let line (fmt: Printf.StringFormat<'a, unit>) = Printf.kprintf (fun t -> sb.AppendLine t |> ignore) fmt
    let sequences = b.BatchSize * b.GradAccum
    let perArm = int64 b.Steps * int64 sequences * int64 b.SeqLen
    let arms = 2 * s.Seeds.Length
    line
        "StateX demo, preset paper (the StateX paper's 1.3B post-training on your checkpoints), device %s, seeds %s, families %s"
        device
        (String.Join(",", s.Seeds))
        (String.Join(",", bases |> List.map (fun x -> x.Family)))
    line "  1. base models: your checkpoints as they are (no pretraining)"
    for x in bases do
        let e = x.Expansion
        line "     %-7s %s" x.Family (Path.GetFullPath x.Dir)
        line "             %s; tokenizer %s" (Model.summary x.Model |> fun t -> t.Substring(0, t.IndexOf ';')) x.TokenizerName
        line "             base:   state %s elements/sequence, %s parameters" (n0 (Model.stateSize x.Model)) (n0 (Model.paramCount x.Model))
        line
            "             StateX: %s = %O %O %s → layers %s of %d: state %s (×%.2f), %s parameters (%s%s)"
            e.Name
            e.Layers
            e.Rewrite
            (string e.Init |> fun t -> t.ToLowerInvariant())
            (String.Join(", ", x.ExpandedLayers))
            (Model.numLayers x.Model)
            (n0 (Model.stateSize x.StateX))
            (float (Model.stateSize x.StateX) / float (Model.stateSize x.Model))
            (n0 (Model.paramCount x.StateX))
            (if Model.paramCount x.StateX >= Model.paramCount x.Model then "+" else "-")
            (n0 (abs (Model.paramCount x.StateX - Model.paramCount x.Model)))
        for n in x.Notes do
            line "             note: %s" n
    line
        "  2. post-train each base model twice on an equal budget: LPT (the model as is) and StateX (expanded as above), every parameter trained"
    line
        "     %s steps × %d sequences × %s tokens = %s tokens per arm%s"
        (n0 (int64 b.Steps))
        sequences
        (n0 (int64 b.SeqLen))
        (tokensText perArm)
        (if b.Steps = officialSteps && sequences = officialBatch && b.SeqLen = officialSeqLen then
             " (the official run: 20,000 steps × 8 × 64K)"
         else
             sprintf " (the official run: %s)" (tokensText (int64 officialSteps * int64 officialBatch * int64 officialSeqLen)))
    line
        "     official hyperparameters (statex-official.md §2): AdamW lr %s, betas (0.9, 0.95), eps 1e-8, weight decay %g on every tensor of ≥2 dims (embeddings and conv weights included), none on the rest;"
        (b.LearningRate.ToString("0.##e+0", CultureInfo.InvariantCulture))
        b.WeightDecay
    line "     clip %g; %s warm-up steps, then %s to %g×lr" b.ClipNorm (n0 (int64 (defaultArg b.Warmup 0))) b.Schedule b.FloorRatio
    line
        "     each step: %d micro-batch(es) of %d × %s tokens; bf16 compute with fp32 master weights on CUDA (the official code keeps bf16 weights), fp32 on CPU; activation checkpointing%s"
        b.GradAccum
        b.BatchSize
        (n0 (int64 b.SeqLen))
        (match b.CheckpointSegment with
         | Some g -> sprintf " in %s-token segments" (n0 (int64 g))
         | None -> " of whole sequences")
    line "     data: %s (packed as one stream, as the official loader does)" b.Data
    line "  3. evaluate base, LPT and StateX: %s" (s.Evaluation.Tasks |> List.map (fun t -> ValueJson.toText t) |> String.concat "; ")
    line
        "     (held-out rows are read with loader seed 0x%X, which no training run uses%s)"
        EvalSpec.heldOutSeed
        (match
            s.Evaluation.Tasks
            |> List.tryPick (function
                | HeldOutLoss(d, _, _) -> Some d
                | _ -> None)
         with
         | Some d when d = b.Data ->
             ": other documents of generated data, another file order of files; give --heldout SPEC for a separate split"
         | _ -> "")
    line
        "  cost, from throughputs measured on ONE H200 (141 GB) with the paper's 1.3B models (StudyPaper.measured); evaluation not included:"
    line
        "     total: %s tokens of post-training (%d arm(s) × %d family(ies) × %s)"
        (tokensText (perArm * int64 arms * int64 bases.Length))
        arms
        bases.Length
        (tokensText perArm)
    for x in bases do
        let total = float perArm * float arms
        let size = float (Model.paramCount x.Model) / float (measuredParameters x.Family)
        let applies =
            if size < 0.5 || size > 2.0 then
                sprintf
                    " [measured on %s-parameter models; yours has %s, so this does not apply to it]"
                    (tokensText (measuredParameters x.Family))
                    (n0 (Model.paramCount x.Model))
            else
                ""
        let seg (m: Measurement) =
            match m.Segment with
            | Some g -> sprintf ", %s-token segments" (n0 (int64 g))
            | None -> ""
        match estimate x.Family b.SeqLen b.CheckpointSegment with
        | Measured({ Result = Some(tps, gb) } as m) ->
            line
                "     %-7s %s tokens at %.1fK tokens/s ≈ %s; peak ≈ %.0f GB (measured at %s tokens%s)%s"
                x.Family
                (tokensText (int64 total))
                (tps / 1000.0)
                (duration (total / tps))
                gb
                (n0 (int64 m.SeqLen))
                (seg m)
                applies
        | DoesNotFit m ->
            let fallback =
                measured
                |> List.filter (fun r -> r.Family = x.Family && r.Result.IsSome)
                |> List.sortByDescending (fun r -> r.SeqLen)
                |> List.tryHead
            line
                "     %-7s WARNING: %s 1.3B post-training does not yet fit at %s tokens on one 141 GB GPU%s; this run will most likely stop out of memory."
                x.Family
                x.Family
                (n0 (int64 b.SeqLen))
                (if m.SeqLen = b.SeqLen then "" else sprintf " (measured at %s)" (n0 (int64 m.SeqLen)))
            match fallback with
            | Some({ Result = Some(tps, gb) } as f) ->
                let keep =
                    if (sequences * b.SeqLen) % f.SeqLen = 0 then
                        sprintf
                            "; with --batch %d the steps keep their %s tokens"
                            (sequences * b.SeqLen / f.SeqLen)
                            (n0 (int64 sequences * int64 b.SeqLen))
                    else
                        ""
                line
                    "             Use --seq-len %d (measured: %.1fK tokens/s, %.0f GB peak: %s tokens would take %s%s) or a GPU with more memory.%s"
                    f.SeqLen
                    (tps / 1000.0)
                    gb
                    (tokensText (int64 total))
                    (duration (total / tps))
                    keep
                    applies
            | _ -> line "             Use a shorter --seq-len or a GPU with more memory.%s" applies
        | Nearest({ Result = Some(tps, _) } as m) ->
            line
                "     %-7s %s tokens at %.1fK tokens/s ≈ %s (not measured at %s tokens: speed from %s tokens%s; memory unknown)%s"
                x.Family
                (tokensText (int64 total))
                (tps / 1000.0)
                (duration (total / tps))
                (n0 (int64 b.SeqLen))
                (n0 (int64 m.SeqLen))
                (seg m)
                applies
        | _ -> line "     %-7s no measurement to estimate from" x.Family
    line
        "     the StateX arm's expanded layers may run slower than the measured base models; the official scripts use 8 GPUs of at least 80 GB"
    line "  → %s (results.csv, summary.txt, report.html, stages/ with a folder per stage)" out
    sb.ToString()
