/// The StateX study in miniature: pretrain base models (or take given checkpoints as them), post-train them two ways
/// (LPT, StateX) on an equal budget, evaluate all three. Every stage writes its own folder and is skipped when
/// already finished.
module StateX.Cli.Demo.DemoStudy

open System
open System.IO
open System.Text.Json.Nodes
open TorchSharp
open StateX
open StateX.Data
open StateX.Models
open StateX.Training
open StateX.Expansion
open StateX.Evaluation
open StateX.Evaluation.Tasks
open StateX.Cli.Demo.DemoPreset

/// What a study runs besides its preset's sizes: where the base models come from, which tokenizer reads each
/// family's data, where held-out loss is measured, and how the training runs execute (not what they compute).
type Study =
    { Preset: Preset
      /// family → a checkpoint folder that is the base model (no pretraining; its tokenizer reads the data).
      /// Families not here are pretrained from Preset.Configs on Preset.PretrainData with the byte tokenizer.
      Bases: Map<string, string>
      /// Data spec of the held-out loss rows (read with heldOutSeed, which no training run uses).
      HeldOut: string
      /// Sequences per forward pass; a budget's Batch sequences per step come by gradient accumulation. None: all at once.
      MicroBatch: int option
      ActivationCheckpointing: bool
      /// With activation checkpointing: tokens per checkpointed segment of a sequence; None: whole sequences.
      CheckpointSegment: int option
      /// Steps between training checkpoints; None: four per run.
      CheckpointEvery: int option
      /// Passkey prompt template: "short" (small byte-level models) or "default".
      PasskeyTemplate: string }
    member s.Tokenizer(family: string) = match s.Bases.TryFind family with Some dir -> dir | None -> "byte"

/// Loader seed of the held-out rows: no training run reads with it (training seeds are the study's seeds).
let heldOutSeed = 0xBEEFUL

/// The study of a preset that pretrains its own models (cpu, gpu, smoke).
let ofPreset (p: Preset) =
    { Preset = p; Bases = Map.empty; HeldOut = sprintf "synth:text:len=%d" (p.PostTrain.SeqLen * 2); MicroBatch = None
      ActivationCheckpointing = false; CheckpointSegment = None; CheckpointEvery = None; PasskeyTemplate = "short" }

/// One measured number of the study.
type Row =
    { Family: string
      Arm: string
      Seed: int
      Task: string
      /// e.g. "pairs=16" or "length=1024 depth=0.5" ("" when the task has no setting).
      Setting: string
      Metric: string
      Value: float
      N: int64 }

/// The number a row's setting gives `key` ("pairs=16 length=1024" → pairs 16), if it has one.
let settingValue (key: string) (setting: string) =
    setting.Split(' ', StringSplitOptions.RemoveEmptyEntries)
    |> Array.tryPick (fun kv -> match kv.Split '=' with [| k; v |] when k = key -> Some(float v) | _ -> None)

let csvHeader = "family,arm,seed,task,setting,metric,value,n"

let toCsv (r: Row) =
    String.Join(",", [| r.Family; r.Arm; string r.Seed; r.Task; r.Setting; r.Metric; r.Value.ToString("R", Globalization.CultureInfo.InvariantCulture); string r.N |])

let ofCsv (line: string) =
    match line.Split ',' with
    | [| f; a; s; t; st; m; v; n |] ->
        { Family = f; Arm = a; Seed = int s; Task = t; Setting = st; Metric = m
          Value = Double.Parse(v, Globalization.CultureInfo.InvariantCulture); N = int64 n }
    | _ -> failwithf "malformed results line: %s" line

let readRows (path: string) =
    File.ReadAllLines path |> Array.skip 1 |> Array.filter (fun l -> l <> "") |> Array.map ofCsv |> Array.toList

let writeRows (path: string) (rows: Row list) =
    IO.AtomicFile.WriteAllText(path, String.Join("\n", csvHeader :: (rows |> List.map toCsv)) + "\n")

/// Where a stage stands, for the console. Stages of different (seed, family) pipelines may report at once, from
/// their own threads; Progress gets the stage's label.
type Reporter =
    { Stage: string -> unit
      Progress: string -> TrainProgress -> unit }

/// Linear warm-up of a training stage: the budget's, or a tenth of its steps.
let warmupSteps (b: Budget) = match b.Warmup with Some w -> w | None -> max 1 (b.Steps / 10)

/// The trainer publishes RUN/model (atomically) only when the run is complete.
let private isDone (dir: string) = File.Exists(Path.Combine(dir, "model", "model.safetensors"))

let private trainStage (s: Study) (report: Reporter) (dir: string) (label: string) (create: unit -> ICausalLanguageModel)
                       (recipe: string) (data: string) (tokenizer: string) (b: Budget) (seed: int) =
    if isDone dir then report.Stage(sprintf "%s: done earlier (%s)" label dir)
    else
        report.Stage(sprintf "%s: %d steps × %d×%d tokens" label b.Steps b.Batch b.SeqLen)
        let micro = match s.MicroBatch with Some m -> min m b.Batch | None -> b.Batch
        if b.Batch % micro <> 0 then invalidArg "batch" (sprintf "a batch of %d sequences is not a whole number of micro-batches of %d" b.Batch micro)
        let o = TrainOptions(Steps = b.Steps, SeqLen = b.SeqLen, BatchSize = micro, GradAccum = b.Batch / micro, LearningRate = b.Lr,
                             Seed = uint64 seed, Device = s.Preset.Device, WarmupSteps = Nullable(warmupSteps b),
                             CheckpointEvery = Nullable(defaultArg s.CheckpointEvery (max 1 (b.Steps / 4))), KeepLast = 1, WholeDocuments = true,
                             ActivationCheckpointing = s.ActivationCheckpointing, CheckpointSegment = Option.toNullable s.CheckpointSegment)
        let job = TrainJob(Func<_>(create), data, tokenizer, o, dir, true, recipe)
        Trainer.Run(job, TrainHooks(Progress = Action<_>(report.Progress label))) |> ignore

/// Mean next-token loss on `rows` rows of `seqLen` tokens of `spec`, read with heldOutSeed: for generated text,
/// documents no run trained on; for file data, another file order (or the user's own held-out split).
/// Rows run in segments carrying the state, so a 64K-token row costs one segment's memory.
let heldOutLoss (model: ICausalLanguageModel) (tokenizer: Tokenization.ITokenizer) (spec: string) (rows: int) (seqLen: int) =
    use loader = DataLoader.Open(DataSpec.Parse spec, tokenizer, LoaderOptions(seqLen, 1, heldOutSeed))
    let documents =
        [ for i in 1 .. rows ->
            match Option.ofObj (loader.Next()) with
            | Some b -> b.Tokens |> Array.map int                                     // [T+1]
            | None -> failwithf "held-out data '%s' ran out after %d of %d rows of %d tokens" spec (i - 1) rows seqLen ]
    let r = LossVsPosition.Evaluate(model, documents, seqLen + 1, [| 0; seqLen |], EvalOptions(SegmentLength = 1024, BatchSize = 8))
    r[0].Value

let private settingText (s: Collections.Generic.IReadOnlyDictionary<string, obj>) (keys: string list) =
    keys |> List.choose (fun k -> match s.TryGetValue k with | true, v -> Some(sprintf "%s=%s" k (Convert.ToString(v, Globalization.CultureInfo.InvariantCulture))) | _ -> None) |> String.concat " "

let evaluate (s: Study) (family: string) (arm: string) (seed: int) (model: ICausalLanguageModel) : Row list =
    let p = s.Preset
    model.Module.eval()
    use _ = torch.no_grad()
    let tok = Tokenization.Tokenizers.Load(s.Tokenizer family)
    let options = EvalOptions(SegmentLength = 1024, BatchSize = 8, ModelName = sprintf "%s/%s/seed%d" family arm seed)
    let row task setting metric value n = { Family = family; Arm = arm; Seed = seed; Task = task; Setting = setting; Metric = metric; Value = value; N = n }
    let mqar =
        Mqar.Evaluate(model, [ for pairs in p.MqarPairs -> MqarConfig(pairs, p.MqarLength, p.MqarVocab) ], p.MqarExamples, 12345UL, options)
        |> Seq.map (fun r -> row "mqar" (settingText r.Setting [ "pairs" ]) r.Metric r.Value r.N) |> List.ofSeq
    let passkey =
        Passkey.Evaluate(model, tok, p.PasskeyLengths |> List.toArray, p.PasskeyDepths |> List.toArray, p.PasskeyTrials, 777UL, options, PasskeyTemplate.Named s.PasskeyTemplate)
        |> Seq.filter (fun r -> r.Metric = "accuracy")
        |> Seq.map (fun r -> row "passkey" (settingText r.Setting [ "length"; "depth" ]) r.Metric r.Value r.N) |> List.ofSeq
    let loss = heldOutLoss model tok s.HeldOut p.HeldOutDocuments p.PostTrain.SeqLen
    let parameters = Trainer.ParameterCount model
    mqar @ passkey @ [
        row "heldout_text" "" "loss" loss (int64 (p.HeldOutDocuments * p.PostTrain.SeqLen))
        row "model" "" "state_elements" (float (model.StateSize().TotalElements)) 1L
        row "model" "" "parameters" (float parameters) 1L ]

/// A study folder holds one study: its base checkpoint must not change between runs that resume it.
let private recordBase (baseDir: string) (checkpoint: string) =
    Directory.CreateDirectory baseDir |> ignore
    let path = Path.Combine(baseDir, "checkpoint.txt")
    let full = Path.GetFullPath checkpoint
    if File.Exists path then
        let earlier = File.ReadAllText(path).Trim()
        if earlier <> full then
            failwithf "%s was started from the checkpoint %s, not %s: give that checkpoint again or choose another --out" baseDir earlier full
    else IO.AtomicFile.WriteAllText(path, full + "\n")

/// What a study's results depend on (models, data, budgets, expansions, evaluation grids), as
/// text: seeds, families and the device are left out, so a study can grow by a seed or a family; base checkpoints
/// are checked per family (recordBase).
let settingsText (s: Study) =
    let p = s.Preset
    String.concat "\n" [
        for KeyValue(f, c) in p.Configs -> sprintf "config %s: %s" f c
        for KeyValue(f, e) in p.Expansions -> sprintf "expansion %s: %O %O %O" f e.Layers e.Rewrite e.Init
        match p.RecallPhase with Some(b, d) -> sprintf "pretrain phase 1 %A on %s" b d | None -> ()
        sprintf "pretrain %A on %s" p.Pretrain p.PretrainData
        sprintf "post-train %A on %s" p.PostTrain p.PostTrainData
        sprintf "mqar %A len %d vocab %d × %d" p.MqarPairs p.MqarLength p.MqarVocab p.MqarExamples
        sprintf "passkey %A × %A × %d" p.PasskeyLengths p.PasskeyDepths p.PasskeyTrials
        sprintf "held-out %d on %s" p.HeldOutDocuments s.HeldOut ]

/// Finished stages are reused only by a study with the same settings: a folder written by other settings (another
/// preset, or an earlier StateX whose preset differed) is refused rather than silently mixed into new results.
let private checkSettings (s: Study) (root: string) =
    let path = Path.Combine(root, "study-settings.txt")
    let text = settingsText s
    if File.Exists path then
        if File.ReadAllText(path).TrimEnd() <> text.TrimEnd() then
            failwithf "%s holds a study run with other settings (see %s; this StateX's preset '%s' differs): choose another --out, or delete the folder to start over" root path s.Preset.Name
    elif Directory.Exists(Path.Combine(root, sprintf "seed%d" (List.head s.Preset.Seeds))) then
        failwithf "%s holds a study from an earlier StateX that did not record its settings: choose another --out, or delete the folder to start over" root
    else IO.AtomicFile.WriteAllText(path, text + "\n")

/// Which stages of a (seed, family) pipeline to run: the base and its two post-trained arms, the control, or both.
type Part =
    | Main
    | Control
    | Both

/// Whether a (seed, family) pipeline has a control (the preset runs it for this seed, and the base is pretrained here).
let hasControl (s: Study) (seed: int, family: string) =
    s.Preset.Controls.ContainsKey family && List.contains seed s.Preset.ControlSeeds && not (s.Bases.ContainsKey family)

/// One (seed, family) pipeline: base (pretrained here, or the given checkpoint), LPT and StateX post-training, and
/// their evaluation; then, for control seeds, the control architecture pretrained from scratch and its evaluation.
/// `part` picks the main arms, the control, or both. Returns its rows in arm order.
let private pipeline (s: Study) (root: string) (report: Reporter) (device: torch.Device) (evalDtype: torch.ScalarType)
             (part: Part) (seed: int, family: string) : Row list =
    let p = s.Preset
    let dir (arm: string) = Path.Combine(root, sprintf "seed%d" seed, family, arm)
    let tokenizer = s.Tokenizer family
    let configPath = Path.Combine(root, "configs", family + ".json")
    let withLr (b: Budget) = match p.PretrainLr.TryFind family with Some lr -> { b with Lr = lr } | None -> b
    /// Pretraining from `create` into dir(arm): the recall phase (into dir(arm + "-recall")) first, if the preset has one.
    let pretrain (arm: string) (label: string) (create: unit -> ICausalLanguageModel) =
        let create =
            match p.RecallPhase with
            | Some(budget, data) ->
                trainStage s report (dir (arm + "-recall")) (sprintf "%s, phase 1: MQAR alone" label) create "custom" data tokenizer (withLr budget) seed
                fun () -> Checkpoint.Load(Path.Combine(dir (arm + "-recall"), "model"), warn = ignore)
            | None -> create
        let label = if p.RecallPhase.IsSome then label + ", phase 2: the mixture" else label
        trainStage s report (dir arm) label create "custom" p.PretrainData tokenizer (withLr p.Pretrain) seed
    let main = part <> Control
    let baseModelDir =
        match s.Bases.TryFind family with
        | _ when not main -> ""
        | Some checkpoint ->
            recordBase (dir "base") checkpoint
            checkpoint
        | None ->
            pretrain "base" (sprintf "seed %d %s base (pretraining)" seed family) (fun () -> Checkpoint.FromConfig(configPath, warn = ignore))
            Path.Combine(dir "base", "model")
    let baseModel () = Checkpoint.Load(baseModelDir, warn = ignore)
    if main then
        trainStage s report (dir "lpt") (sprintf "seed %d %s LPT (post-training)" seed family)
            baseModel "lpt" p.PostTrainData tokenizer p.PostTrain seed
        let expansion = p.Expansions[family]
        let expansion = ExpansionRequest(expansion.Layers, expansion.Rewrite, expansion.Init, int64 seed)
        trainStage s report (dir "statex") (sprintf "seed %d %s StateX (expand, then post-train)" seed family)
            (fun () -> (TrainRecipes.Prepare("statex", baseModel (), expansion)).Model) "statex" p.PostTrainData tokenizer p.PostTrain seed
    let control =
        match p.Controls.TryFind family with
        | Some c when part <> Main && hasControl s (seed, family) ->
            let c = ExpansionRequest(c.Layers, c.Rewrite, c.Init, int64 seed)
            pretrain "scratch" (sprintf "seed %d %s control: %O on %O, from scratch (pretraining)" seed family c.Rewrite c.Layers)
                (fun () -> (TrainRecipes.Prepare("statex", Checkpoint.FromConfig(configPath, warn = ignore), c)).Model)
            [ "scratch" ]
        | _ -> []
    [ for arm in (if main then [ "base"; "lpt"; "statex" ] else []) @ control do
        let evalPath = Path.Combine(dir arm, "eval.csv")
        if File.Exists evalPath then yield! readRows evalPath
        else
            report.Stage(sprintf "seed %d %s %s: evaluating" seed family arm)
            let modelDir = if arm = "base" then baseModelDir else Path.Combine(dir arm, "model")
            let model = Checkpoint.Load(modelDir, device = device, dtype = Nullable evalDtype, warn = ignore)
            let rows = evaluate s family arm seed model
            model.Module.Dispose()
            writeRows evalPath rows
            yield! rows ]

/// The device a study runs on and the dtype it evaluates in: training's, so base and post-trained models are
/// compared alike.
let private evalTarget (p: Preset) =
    let device = DeviceSpec.Parse(p.Device).Resolve()
    device, (if device.``type`` = DeviceType.CUDA then torch.ScalarType.BFloat16 else torch.ScalarType.Float32)

/// Checks the folder's settings (refusing a study run with other settings) and writes the configs of the families
/// pretrained here. Safe to call again; the demo calls it before starting worker processes.
let prepare (s: Study) (root: string) (families: string list) =
    Directory.CreateDirectory root |> ignore
    checkSettings s root
    for family in families do
        if not (s.Bases.ContainsKey family) then
            let configDir = Path.Combine(root, "configs")
            Directory.CreateDirectory configDir |> ignore
            let path = Path.Combine(configDir, family + ".json")
            if not (File.Exists path) || File.ReadAllText path <> s.Preset.Configs[family] then
                IO.AtomicFile.WriteAllText(path, s.Preset.Configs[family])

/// Runs `part` of every (seed, family) pipeline under `root`, one after another; returns their rows (a demo worker
/// process runs one part of one pipeline this way).
let runPart (s: Study) (root: string) (families: string list) (report: Reporter) (part: Part) : Row list =
    prepare s root families
    let device, evalDtype = evalTarget s.Preset
    [ for seed in s.Preset.Seeds do for family in families do yield! pipeline s root report device evalDtype part (seed, family) ]

/// Runs (or resumes) the whole study under `root`, one (seed, family) pipeline after another; returns every row of
/// results.csv. (Pipelines run side by side only as separate processes, see Commands.Demo: TorchSharp's implicit
/// Scalars can be finalised mid-call when another thread triggers a collection.)
let run (s: Study) (root: string) (families: string list) (report: Reporter) : Row list =
    let rows = runPart s root families report Both
    writeRows (Path.Combine(root, "results.csv")) rows
    rows
