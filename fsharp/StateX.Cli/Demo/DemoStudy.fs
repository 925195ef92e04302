/// The StateX study in miniature: pretrain base models, post-train them two ways (LPT, StateX) on an equal budget,
/// evaluate all three. Every stage writes its own folder and is skipped when already finished.
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

/// Where a stage stands, for the console.
type Reporter =
    { Stage: string -> unit
      Progress: TrainProgress -> unit }

/// The trainer publishes RUN/model (atomically) only when the run is complete.
let private isDone (dir: string) = File.Exists(Path.Combine(dir, "model", "model.safetensors"))

let private trainStage (report: Reporter) (dir: string) (label: string) (create: unit -> ICausalLanguageModel)
                       (recipe: string) (data: string) (b: Budget) (seed: int) (device: string) =
    if isDone dir then report.Stage(sprintf "%s: done earlier (%s)" label dir)
    else
        report.Stage(sprintf "%s: %d steps × %d×%d tokens" label b.Steps b.Batch b.SeqLen)
        let o = TrainOptions(Steps = b.Steps, SeqLen = b.SeqLen, BatchSize = b.Batch, LearningRate = b.Lr,
                             Seed = uint64 seed, Device = device, WarmupSteps = Nullable(max 1 (b.Steps / 10)),
                             CheckpointEvery = Nullable(max 1 (b.Steps / 4)), KeepLast = 1, WholeDocuments = true)
        let job = TrainJob(Func<_>(create), data, "byte", o, dir, true, recipe)
        Trainer.Run(job, TrainHooks(Progress = Action<_>(report.Progress))) |> ignore

/// Mean next-token loss on generated text the models never trained on (another seed of the text generator).
let heldOutLoss (model: ICausalLanguageModel) (documents: int) (seqLen: int) =
    let tok = Tokenization.Tokenizers.Load "byte"
    use loader = DataLoader.Open(DataSpec.Parse(sprintf "synth:text:len=%d" (seqLen * 2)), tok, LoaderOptions(seqLen, 1, 0xBEEFUL))
    let device = model.Module.parameters() |> Seq.head |> fun p -> p.device
    use _ = torch.no_grad()
    let losses =
        [ for _ in 1 .. documents ->
            use scope = torch.NewDisposeScope()
            let rows = loader.Next().ToTensor(device)
            let out = model.Forward(rows, labels = rows)
            out.Loss.item<float32>() |> float ]
    List.average losses

let private settingText (s: Collections.Generic.IReadOnlyDictionary<string, obj>) (keys: string list) =
    keys |> List.choose (fun k -> match s.TryGetValue k with | true, v -> Some(sprintf "%s=%s" k (Convert.ToString(v, Globalization.CultureInfo.InvariantCulture))) | _ -> None) |> String.concat " "

let evaluate (p: Preset) (family: string) (arm: string) (seed: int) (model: ICausalLanguageModel) : Row list =
    model.Module.eval()
    use _ = torch.no_grad()
    let tok = Tokenization.Tokenizers.Load "byte"
    let options = EvalOptions(SegmentLength = 1024, BatchSize = 8, ModelName = sprintf "%s/%s/seed%d" family arm seed)
    let row task setting metric value n = { Family = family; Arm = arm; Seed = seed; Task = task; Setting = setting; Metric = metric; Value = value; N = n }
    let mqar =
        Mqar.Evaluate(model, [ for pairs in p.MqarPairs -> MqarConfig(pairs, p.MqarLength, mqarVocab) ], p.MqarExamples, 12345UL, options)
        |> Seq.map (fun r -> row "mqar" (settingText r.Setting [ "pairs" ]) r.Metric r.Value r.N) |> List.ofSeq
    let passkey =
        Passkey.Evaluate(model, tok, p.PasskeyLengths |> List.toArray, p.PasskeyDepths |> List.toArray, p.PasskeyTrials, 777UL, options, PasskeyTemplate.Short)
        |> Seq.filter (fun r -> r.Metric = "accuracy")
        |> Seq.map (fun r -> row "passkey" (settingText r.Setting [ "length"; "depth" ]) r.Metric r.Value r.N) |> List.ofSeq
    let loss = heldOutLoss model p.HeldOutDocuments p.PostTrain.SeqLen
    let parameters = Trainer.ParameterCount model
    mqar @ passkey @ [
        row "heldout_text" "" "loss" loss (int64 (p.HeldOutDocuments * p.PostTrain.SeqLen))
        row "model" "" "state_elements" (float (model.StateSize().TotalElements)) 1L
        row "model" "" "parameters" (float parameters) 1L ]

/// Runs (or resumes) the whole study under `root`; returns every row of results.csv.
let run (p: Preset) (root: string) (families: string list) (report: Reporter) : Row list =
    Directory.CreateDirectory root |> ignore
    let configDir = Path.Combine(root, "configs")
    Directory.CreateDirectory configDir |> ignore
    let allRows = Collections.Generic.List<Row>()
    for seed in p.Seeds do
        for family in families do
            let cfgPath = Path.Combine(configDir, family + ".json")
            IO.AtomicFile.WriteAllText(cfgPath, p.Configs[family])
            let dir (arm: string) = Path.Combine(root, sprintf "seed%d" seed, family, arm)
            let baseDir = dir "base"
            trainStage report baseDir (sprintf "seed %d %s base (pretraining)" seed family)
                (fun () -> Checkpoint.FromConfig(cfgPath, warn = ignore)) "custom" p.PretrainData p.Pretrain seed p.Device
            let baseModel () = Checkpoint.Load(Path.Combine(baseDir, "model"), warn = ignore)
            trainStage report (dir "lpt") (sprintf "seed %d %s LPT (post-training)" seed family)
                baseModel "lpt" p.PostTrainData p.PostTrain seed p.Device
            let expansion = p.Expansions[family]
            let expansion = ExpansionRequest(expansion.Layers, expansion.Rewrite, expansion.Init, int64 seed)
            trainStage report (dir "statex") (sprintf "seed %d %s StateX (expand, then post-train)" seed family)
                (fun () -> (TrainRecipes.Prepare("statex", baseModel (), expansion)).Model) "statex" p.PostTrainData p.PostTrain seed p.Device
            for arm in [ "base"; "lpt"; "statex" ] do
                let evalPath = Path.Combine(dir arm, "eval.csv")
                if File.Exists evalPath then allRows.AddRange(readRows evalPath)
                else
                    report.Stage(sprintf "seed %d %s %s: evaluating" seed family arm)
                    let model = Checkpoint.Load(Path.Combine(dir arm, "model"), device = DeviceSpec.Parse(p.Device).Resolve(), warn = ignore)
                    let rows = evaluate p family arm seed model
                    model.Module.Dispose()
                    writeRows evalPath rows
                    allRows.AddRange rows
    let rows = List.ofSeq allRows
    writeRows (Path.Combine(root, "results.csv")) rows
    rows
