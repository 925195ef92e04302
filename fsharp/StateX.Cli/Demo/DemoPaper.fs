/// `statex demo --preset paper`: the StateX paper's 1.3B post-training recipe on checkpoints the user brings.
/// Checks every input before anything heavy, and prints the plan with its cost from measured throughputs.
module StateX.Cli.Demo.DemoPaper

open System
open System.IO
open System.Globalization
open StateX
open StateX.IO
open StateX.Data
open StateX.Models
open StateX.Expansion
open StateX.Tokenization
open StateX.Cli.Demo.DemoPreset

// ---- the recipe -----------------------------------------------------------------------------------------------

/// Tokens per post-training run in the paper: the official run config is
/// configs/training/drop/10b_bsz-512k_64k_cos_3e-4_slimpj.json (github.com/THUNLP/StateX, named in its README):
/// 10B tokens, 512K tokens per step, 64K-token sequences, cosine schedule, peak learning rate 3e-4, SlimPajama.
let paperTokens = 10_000_000_000L

/// Sequences longer than this are checkpointed in segments of this many tokens: the measured setting that fits
/// GLA 1.3B at 64K in 39 GB and Mamba2 1.3B in 60 GB (an 80 GB GPU, as the official README asks for).
let segmentTokens = 8192

let preset : Preset =
    { Name = "paper"
      Configs = Map.empty                    // no pretraining: the user's checkpoints are the base models
      // One recipe per family, by name: the paper's (mamba2-1.3b-script, the shipped script's all-layer variant, is not it).
      Expansions = Map [ for name in [ "gla-1.3b"; "mamba2-1.3b" ] -> let p = ExpansionPresets.Get name in p.Family, p.ToRequest() ]
      RecallPhase = None
      Pretrain = { Steps = 0; SeqLen = 0; Batch = 0; Lr = 0.0; Warmup = None }
      // 64K tokens × 8 sequences = 524,288 tokens per step ("bsz-512k"); 10B / 524,288 = 19,073 steps (our
      // derivation from the config's name: the scripts themselves were not readable here). lr 3e-4 from the name.
      PostTrain = { Steps = 19_073; SeqLen = 65_536; Batch = 8; Lr = 3e-4; Warmup = None }
      PretrainData = ""
      PostTrainData = ""                     // --data
      // Evaluation grids: our choice. MQAR ids stay below 256 (any tokenizer's model has them); 120 pairs is the
      // most 127 keys allow with room. Passkey from 4K to twice the 64K training length.
      MqarPairs = [ 16; 32; 64; 120 ]
      MqarVocab = 256
      MqarLength = 2048
      MqarExamples = 64
      PasskeyLengths = [ 4096; 8192; 16384; 32768; 65536; 131072 ]
      PasskeyDepths = [ 0.0; 0.25; 0.5; 0.75; 1.0 ]
      PasskeyTrials = 5
      HeldOutDocuments = 16
      Seeds = [ 0 ]
      PretrainLr = Map.empty
      Controls = Map.empty                   // nothing is pretrained, so there is no from-scratch control
      ControlSeeds = []
      Workers = 1
      Device = "cuda"
      Expected = "days per arm on one GPU: see the cost" }

// ---- measured cost ----------------------------------------------------------------------------------------------

type Measurement =
    { Family: string
      SeqLen: int
      /// Checkpoint segment (tokens); None: whole sequences.
      Segment: int option
      /// (tokens per second, peak GPU memory in GB); None: it did not fit.
      Result: (float * float) option }

/// MEASURED post-training throughput and peak memory of the paper's 1.3B models (data/configs/gla-1.3b.json,
/// mamba2-1.3b.json) on ONE NVIDIA H200 (141 GB): bf16, AdamW with fp32 masters, activation checkpointing, one
/// sequence per micro-batch; by the training benchmark (`dotnet run -c Release --project bench/StateX.Bench -- train
/// --config data/configs/gla-1.3b.json --T 65536 --B 1 --ckpt [--segment 8192] --precision bf16`).
/// The plan's time and memory estimates come from this table and nowhere else: update it when a new measurement
/// (e.g. Mamba2 at 64K fitting) lands.
let measured : Measurement list =
    [ { Family = "gla"; SeqLen = 65_536; Segment = Some 8192; Result = Some(12_800.0, 39.0) }
      { Family = "mamba2"; SeqLen = 8192; Segment = None; Result = Some(7_100.0, 38.0) }
      { Family = "mamba2"; SeqLen = 65_536; Segment = Some 8192; Result = Some(7_400.0, 60.0) } ]

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
            if fits.IsEmpty then Unmeasured
            else Nearest(fits |> List.minBy (fun m -> abs (log (float m.SeqLen / float seqLen)), (if m.Segment = segment then 0 else 1)))

// ---- inputs and their checks -------------------------------------------------------------------------------------

/// What the user gave on the command line for the paper preset.
type Inputs =
    { Gla: string option
      Mamba2: string option
      Data: string option
      HeldOut: string option
      Steps: int option
      SeqLen: int option
      Batch: int option }

/// One family's checkpoint, checked: what the plan prints and the study starts from.
type Base =
    { Family: string
      Dir: string
      /// The checkpoint as described by its config.json (no weights read).
      Model: Model
      /// The same after the paper's expansion.
      StateX: Model
      Expansion: ExpansionPreset
      ExpandedLayers: int list
      TokenizerName: string
      /// Things worth saying that do not stop the study.
      Notes: string list }

let private n0 (v: int64) = v.ToString("N0", CultureInfo.InvariantCulture)
let private rootMessage (e: exn) =
    let rec go (e: exn) = if isNull e.InnerException then e else go e.InnerException
    (go e).Message

/// The post-training budget after --steps / --seq-len / --batch.
let budget (i: Inputs) =
    { preset.PostTrain with
        Steps = defaultArg i.Steps preset.PostTrain.Steps
        SeqLen = defaultArg i.SeqLen preset.PostTrain.SeqLen
        Batch = defaultArg i.Batch preset.PostTrain.Batch }

/// Opens `spec` with the family's tokenizer and reads one row of `seqLen` tokens; the problems found.
let private checkData (flag: string) (spec: string) (parsed: DataSpec) (family: string) (tok: ITokenizer) (vocab: int) (seqLen: int) =
    try
        use loader = DataLoader.Open(parsed, tok, LoaderOptions(seqLen, 1, 0UL))
        match Option.ofObj (loader.Next()) with
        | None -> [ sprintf "%s '%s': the data ran out before one sequence of %s tokens (read with the %s checkpoint's tokenizer %s)" flag spec (n0 (int64 seqLen)) family tok.Name ]
        | Some b ->
            let top = Array.max b.Tokens
            if top >= int64 vocab then
                [ sprintf "%s '%s': token id %d is outside the %s model's vocabulary of %d (tokenizer %s): the data must be tokenised with the checkpoint's tokenizer" flag spec top family vocab tok.Name ]
            else []
    with e -> [ sprintf "%s '%s': %s" flag spec (rootMessage e) ]

/// Checks one family's checkpoint folder; every problem found, each naming the flag, the folder and what is wrong.
let private checkBase (flag: string) (family: string) (dir: string) (data: (string * string * DataSpec) list) (seqLen: int) : Result<Base, string list> =
    let at msg = sprintf "%s %s: %s" flag dir msg
    if not (Directory.Exists dir) then Error [ at "folder not found" ]
    elif not (File.Exists(Path.Combine(dir, "config.json"))) then Error [ at "no config.json in the folder (expected a checkpoint: config.json, model.safetensors, tokenizer)" ]
    else
        let configPath = Path.Combine(dir, "config.json")
        let dialect =
            try
                let c = ConfigJson.Load configPath
                match Checkpoint.Families |> Seq.tryFind (fun f -> f.Recognizes c) with
                | Some f -> Ok f.Name
                | None ->
                    let t = match c.Root["model_type"] with null -> "absent" | n -> string n
                    Error(at (sprintf "config.json is not a checkpoint StateX reads (model_type '%s'; known: %s)" t (String.Join(", ", Checkpoint.Families |> Seq.map (fun f -> f.Name)))))
            with e -> Error(at (sprintf "config.json cannot be read: %s" (rootMessage e)))
        match dialect with
        | Error e -> Error [ e ]
        | Ok dialect ->
        match (try Ok(Model.readConfigWith ignore configPath) with e -> Error(rootMessage e)) with
        | Error m -> Error [ at (sprintf "config.json: %s" m) ]
        | Ok m when Model.family m <> family ->
            let other = Model.family m
            Error [ at (sprintf "config.json describes a %s model (%s), not %s: give it to --%s" other dialect family other) ]
        | Ok m ->
            let problems = Collections.Generic.List<string>()
            let notes = Collections.Generic.List<string>()
            let vocab = match m.Arch with Arch.Gla g -> g.Vocab | Arch.Mamba2 s -> s.Vocab
            if not (File.Exists(Path.Combine(dir, CheckpointWeights.WeightsFile)) || File.Exists(Path.Combine(dir, CheckpointWeights.IndexFile))) then
                problems.Add(at (sprintf "no weights: expected %s or %s (other formats, e.g. pytorch_model.bin, are not read; save them as safetensors)" CheckpointWeights.WeightsFile CheckpointWeights.IndexFile))
            if vocab < preset.MqarVocab then
                problems.Add(at (sprintf "the model's vocabulary of %d ids is smaller than the %d ids of the MQAR evaluation" vocab preset.MqarVocab))
            let tokenizer =
                try Some(Tokenizers.Load dir)
                with e ->
                    problems.Add(at (sprintf "no usable tokenizer (%s); the paper preset reads your data with the checkpoint's own tokenizer: copy tokenizer.json (and tokenizer.model for SentencePiece models) from where the checkpoint came from into the folder" (rootMessage e)))
                    None
            let expansion = ExpansionPresets.All |> Seq.tryFind (fun p -> p.Family = family)
            let expanded =
                match expansion with
                | None -> problems.Add(at (sprintf "no StateX expansion preset for %s models" family)); None
                | Some p ->
                    try
                        let x = m |> Expand.apply (Expand.ofRequest (p.ToRequest())) |> Model.flatten
                        if Model.stateSize x <= Model.stateSize m then
                            problems.Add(at (sprintf "the expansion %s (%O %O) does not enlarge this model's state (%s elements before and after)" p.Name p.Layers p.Rewrite (n0 (Model.stateSize m))))
                            None
                        else Some x
                    with e ->
                        problems.Add(at (sprintf "the expansion %s (%O %O) does not apply to this model: %s" p.Name p.Layers p.Rewrite (rootMessage e)))
                        None
            let layers = Model.numLayers m
            match expansion with
            | Some p ->
                match p.Layers with
                | :? LayerSelection.Every as e when layers % e.K <> 0 ->
                    notes.Add(sprintf "the official scripts want the layer count to be a multiple of %d (drop_prop); %d is not, so the last group is shorter" e.K layers)
                | _ -> ()
            | None -> ()
            match tokenizer with
            | Some tok ->
                if tok.VocabSize > vocab then
                    notes.Add(sprintf "the tokenizer can produce %d ids, the model has %d: text that produces the extra ids will stop training" tok.VocabSize vocab)
                for flagData, spec, parsed in data do problems.AddRange(checkData flagData spec parsed family tok vocab seqLen)
            | None -> ()
            match problems.Count, expansion, expanded, tokenizer with
            | 0, Some p, Some x, Some tok ->
                Ok { Family = family; Dir = dir; Model = m; StateX = x; Expansion = p
                     ExpandedLayers = Model.expandedLayers layers (Expand.ofRequest (p.ToRequest()))
                     TokenizerName = tok.Name; Notes = List.ofSeq notes }
            | _ -> Error(List.ofSeq problems)

/// Every problem with the inputs of the paper preset (empty list: none), or the checked base models.
let validate (i: Inputs) : Result<Base list, string list> =
    let problems = Collections.Generic.List<string>()
    if i.Gla.IsNone && i.Mamba2.IsNone then
        problems.Add "--preset paper post-trains checkpoints you bring: give --gla DIR and/or --mamba2 DIR (a folder with config.json, model.safetensors and the tokenizer, e.g. fla-hub/gla-1.3B-100B, state-spaces/mamba2-1.3b)"
    if i.Data.IsNone then
        problems.Add "--preset paper needs --data SPEC: the text to post-train on (e.g. jsonl:slimpajama/**/*.jsonl:field=text; formats in data/README.md)"
    for flag, v in [ "--steps", i.Steps; "--seq-len", i.SeqLen; "--batch", i.Batch ] do
        match v with
        | Some n when n < (if flag = "--seq-len" then 2 else 1) -> problems.Add(sprintf "%s %d: must be at least %d" flag n (if flag = "--seq-len" then 2 else 1))
        | _ -> ()
    let parse flag (spec: string option) =
        match spec with
        | None -> None
        | Some s ->
            try Some(flag, s, DataSpec.Parse s)
            with e -> problems.Add(sprintf "%s '%s': %s" flag s (rootMessage e)); None
    let data = [ parse "--data" i.Data; parse "--heldout" i.HeldOut ] |> List.choose id
    // Data that did not parse is reported once above, not again per family.
    let seqLen = max 2 (budget i).SeqLen
    let bases =
        [ for flag, family, dir in [ "--gla", "gla", i.Gla; "--mamba2", "mamba2", i.Mamba2 ] do
            match dir with
            | Some d ->
                match checkBase flag family d data seqLen with
                | Ok b -> yield b
                | Error ps -> problems.AddRange ps
            | None -> () ]
    if problems.Count = 0 then Ok bases else Error(List.ofSeq problems)

/// The study of checked base models: the paper's preset with the budget overrides, trained in bf16 on CUDA
/// (TrainOptions' "auto") with activation checkpointing, one sequence per micro-batch.
let study (i: Inputs) (bases: Base list) : DemoStudy.Study =
    let b = budget i
    let data = defaultArg i.Data ""
    { Preset = { preset with PostTrain = b; PostTrainData = data }
      Bases = Map [ for x in bases -> x.Family, x.Dir ]
      HeldOut = defaultArg i.HeldOut data
      MicroBatch = Some 1
      ActivationCheckpointing = true
      CheckpointSegment = if b.SeqLen > segmentTokens then Some segmentTokens else None
      // A checkpoint about every 6 hours at the measured GLA speed (42 s per 524K-token step); our choice.
      CheckpointEvery = Some(min 500 (max 1 (b.Steps / 4)))
      PasskeyTemplate = "default" }

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
let plan (s: DemoStudy.Study) (bases: Base list) (out: string) =
    let p = s.Preset
    let b = p.PostTrain
    let sb = Text.StringBuilder()
    let line (fmt: Printf.StringFormat<'a, unit>) = Printf.kprintf (fun t -> sb.AppendLine t |> ignore) fmt
    let perArm = int64 b.Steps * int64 b.Batch * int64 b.SeqLen
    let arms = 2 * p.Seeds.Length
    line "StateX demo, preset paper (the StateX paper's 1.3B post-training on your checkpoints), device %s, seeds %s, families %s"
        p.Device (String.Join(",", p.Seeds)) (String.Join(",", bases |> List.map (fun x -> x.Family)))
    line "  1. base models: your checkpoints as they are (no pretraining)"
    for x in bases do
        let e = x.Expansion
        line "     %-7s %s" x.Family (Path.GetFullPath x.Dir)
        line "             %s; tokenizer %s" (Model.summary x.Model |> fun t -> t.Substring(0, t.IndexOf ';')) x.TokenizerName
        line "             base:   state %s elements/sequence, %s parameters" (n0 (Model.stateSize x.Model)) (n0 (Model.paramCount x.Model))
        line "             StateX: %s = %O %O %s → layers %s of %d: state %s (×%.2f), %s parameters (%s%s)"
            e.Name e.Layers e.Rewrite (string e.Init |> fun t -> t.ToLowerInvariant())
            (String.Join(", ", x.ExpandedLayers)) (Model.numLayers x.Model)
            (n0 (Model.stateSize x.StateX)) (float (Model.stateSize x.StateX) / float (Model.stateSize x.Model))
            (n0 (Model.paramCount x.StateX)) (if Model.paramCount x.StateX >= Model.paramCount x.Model then "+" else "-")
            (n0 (abs (Model.paramCount x.StateX - Model.paramCount x.Model)))
        for n in x.Notes do line "             note: %s" n
    line "  2. post-train each base model twice on an equal budget: LPT (the model as is) and StateX (expanded as above)"
    line "     %s steps × %d sequences × %s tokens = %s tokens per arm%s; lr %s, cosine, warm-up %s steps, floor 10%%, AdamW"
        (n0 (int64 b.Steps)) b.Batch (n0 (int64 b.SeqLen)) (tokensText perArm)
        (if perArm = int64 preset.PostTrain.Steps * int64 preset.PostTrain.Batch * int64 preset.PostTrain.SeqLen then " (the paper: 10B tokens, 512K per step, 64K sequences)"
         else sprintf " (the paper: %s)" (tokensText paperTokens))
        (b.Lr.ToString("0.##e+0", CultureInfo.InvariantCulture)) (n0 (int64 (DemoStudy.warmupSteps b)))
    line "     each step: %d micro-batch(es) of 1 × %s tokens; bf16 on CUDA (fp32 on CPU); activation checkpointing%s; a checkpoint every %s steps"
        b.Batch (n0 (int64 b.SeqLen))
        (match s.CheckpointSegment with Some g -> sprintf " in %s-token segments" (n0 (int64 g)) | None -> " of whole sequences")
        (n0 (int64 (defaultArg s.CheckpointEvery 1)))
    line "     data: %s" p.PostTrainData
    line "  3. evaluate base, LPT and StateX: MQAR pairs %s at length %s (%d examples each); passkey lengths %s × depths %s (%d keys each, %s template);"
        (String.Join(",", p.MqarPairs)) (n0 (int64 p.MqarLength)) p.MqarExamples
        (String.Join(",", p.PasskeyLengths |> List.map (fun l -> if l >= 1024 && l % 1024 = 0 then sprintf "%dK" (l / 1024) else string l)))
        (String.Join(",", p.PasskeyDepths)) p.PasskeyTrials s.PasskeyTemplate
    line "     held-out loss on %d rows × %s tokens of %s (loader seed 0x%X, which no training run uses%s)" p.HeldOutDocuments (n0 (int64 b.SeqLen)) s.HeldOut DemoStudy.heldOutSeed
        (if s.HeldOut = p.PostTrainData then ": other documents of generated data, another file order of files; give --heldout SPEC for a separate split" else "")
    line "  cost, from throughputs measured on ONE H200 (141 GB) with the paper's 1.3B models (DemoPaper.measured); evaluation not included:"
    line "     total: %s tokens of post-training (%d arm(s) × %d family(ies) × %s)" (tokensText (perArm * int64 arms * int64 bases.Length)) arms bases.Length (tokensText perArm)
    for x in bases do
        let total = float perArm * float arms
        let size = float (Model.paramCount x.Model) / float (measuredParameters x.Family)
        let applies = if size < 0.5 || size > 2.0 then sprintf " [measured on %s-parameter models; yours has %s, so this does not apply to it]" (tokensText (measuredParameters x.Family)) (n0 (Model.paramCount x.Model)) else ""
        let seg (m: Measurement) = match m.Segment with Some g -> sprintf ", %s-token segments" (n0 (int64 g)) | None -> ""
        match estimate x.Family b.SeqLen s.CheckpointSegment with
        | Measured({ Result = Some(tps, gb) } as m) ->
            line "     %-7s %s tokens at %.1fK tokens/s ≈ %s; peak ≈ %.0f GB (measured at %s tokens%s)%s"
                x.Family (tokensText (int64 total)) (tps / 1000.0) (duration (total / tps)) gb (n0 (int64 m.SeqLen)) (seg m) applies
        | DoesNotFit m ->
            let fallback = measured |> List.filter (fun r -> r.Family = x.Family && r.Result.IsSome) |> List.sortByDescending (fun r -> r.SeqLen) |> List.tryHead
            line "     %-7s WARNING: %s 1.3B post-training does not yet fit at %s tokens on one 141 GB GPU%s; this run will most likely stop out of memory."
                x.Family x.Family (n0 (int64 b.SeqLen)) (if m.SeqLen = b.SeqLen then "" else sprintf " (measured at %s)" (n0 (int64 m.SeqLen)))
            match fallback with
            | Some({ Result = Some(tps, gb) } as f) ->
                // Keeping the tokens per step needs a proportionally larger batch.
                let keep = if (b.Batch * b.SeqLen) % f.SeqLen = 0 then sprintf "; with --batch %d the steps keep their %s tokens" (b.Batch * b.SeqLen / f.SeqLen) (n0 (int64 b.Batch * int64 b.SeqLen)) else ""
                line "             Use --seq-len %d (measured: %.1fK tokens/s, %.0f GB peak: %s tokens would take %s%s) or a GPU with more memory.%s"
                    f.SeqLen (tps / 1000.0) gb (tokensText (int64 total)) (duration (total / tps)) keep applies
            | _ -> line "             Use a shorter --seq-len or a GPU with more memory.%s" applies
        | Nearest({ Result = Some(tps, _) } as m) ->
            line "     %-7s %s tokens at %.1fK tokens/s ≈ %s (not measured at %s tokens: speed from %s tokens%s; memory unknown)%s"
                x.Family (tokensText (int64 total)) (tps / 1000.0) (duration (total / tps)) (n0 (int64 b.SeqLen)) (n0 (int64 m.SeqLen)) (seg m) applies
        | _ -> line "     %-7s no measurement to estimate from" x.Family
    line "     the StateX arm's expanded layers may run slower than the measured base models; the official scripts use 8 GPUs of at least 80 GB"
    line "  → %s (results.csv, summary.txt, report.html, a folder per seed/family/arm)" out
    sb.ToString()
