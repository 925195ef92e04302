namespace StateX

open System
open System.Diagnostics
open System.IO
open System.Text.Json.Nodes
open StateX.Models
open StateX.Evaluation

/// One step of a pipeline; each works on the model the step before it left (its input checkpoint).
type Stage =
    /// Train the unexpanded model from random weights (or from the pipeline's Start checkpoint).
    | Pretrain of TrainSpec
    /// Apply the description's expansions (StateX) to the model so far.
    | Expand
    /// Train the model so far (after Expand: the StateX arm; without: long-context post-training, LPT).
    | PostTrain of TrainSpec
    /// Evaluate the model so far.
    | Evaluate of EvalSpec

/// <summary>
/// pretrain → expand → post-train → evaluate, as a value. Each stage's output folder is keyed by the hash of
/// everything that determines it (the unexpanded model, the start checkpoint, the stages up to it), so a re-run skips
/// finished stages, an interrupted training resumes, and two pipelines sharing a prefix (the StateX and LPT arms
/// after one pretraining) share its folders.
/// </summary>
type Pipeline = {
    Name: string
    Model: Model
    /// A checkpoint folder to start from (its description must be the unexpanded Model); None: random weights.
    Start: string option
    Stages: Stage list
}

/// What one stage did (or had done in an earlier run).
type StageResult = {
    Stage: string
    Key: string
    Folder: string
    /// Finished in an earlier run.
    Skipped: bool
    Seconds: float
    /// The model this stage left (None for Evaluate: the model is unchanged).
    ModelDirectory: string option
    /// Final training loss (training stages).
    Loss: float option
    /// Evaluation results (Evaluate stages), named after the pipeline.
    Results: EvalResult list
}

type PipelineResult = {
    Pipeline: Pipeline
    Stages: StageResult list
    /// Every evaluation result of the run, named after the pipeline.
    Results: EvalResult list
}

/// What a stage's key is made of (the model is the unexpanded one; Expand carries the expansions).
type private StageKey =
    | PretrainKey of TrainSpec
    | ExpandKey of Expansion list
    | PostTrainKey of TrainSpec
    | EvaluateKey of EvalSpec

[<RequireQualifiedAccess>]
module Pipeline =
    /// A pipeline with no stage yet, for `|>`: `Pipeline.create "statex" model |> Pipeline.pretrain t |> ...`.
    let create (name: string) (model: Model) = { Name = name; Model = model; Start = None; Stages = [] }

    let startFrom (checkpoint: string) (p: Pipeline) = { p with Start = Some(Path.GetFullPath checkpoint) }
    let pretrain (t: TrainSpec) (p: Pipeline) = { p with Stages = p.Stages @ [ Pretrain t ] }
    let expand (p: Pipeline) = { p with Stages = p.Stages @ [ Expand ] }
    let postTrain (t: TrainSpec) (p: Pipeline) = { p with Stages = p.Stages @ [ PostTrain t ] }
    let evaluate (e: EvalSpec) (p: Pipeline) = { p with Stages = p.Stages @ [ Evaluate e ] }

    /// The StateX arm: pretrain the unexpanded model, expand as the description says, post-train, evaluate.
    let statex (name: string) (model: Model) (pre: TrainSpec) (post: TrainSpec) (e: EvalSpec) =
        create name model |> pretrain pre |> expand |> postTrain post |> evaluate e

    /// The LPT arm of the same study: the same pretraining and post-training, no expansion.
    let lpt (name: string) (model: Model) (pre: TrainSpec) (post: TrainSpec) (e: EvalSpec) =
        create name (Expand.none model) |> pretrain pre |> postTrain post |> evaluate e

    let private stageName (s: Stage) =
        match s with
        | Pretrain _ -> "pretrain"
        | Expand -> "expand"
        | PostTrain _ -> "posttrain"
        | Evaluate _ -> "evaluate"

    let private keyOf (s: Stage) (m: Model) =
        match s with
        | Pretrain t -> PretrainKey t
        | Expand -> ExpandKey m.Expansions
        | PostTrain t -> PostTrainKey t
        | Evaluate e -> EvaluateKey e

    /// The stages that do something: an Expand stage of a model without expansions is dropped, so a StateX
    /// pipeline with nothing to expand is exactly the LPT arm (and shares its folders).
    let stages (p: Pipeline) = p.Stages |> List.filter (fun s -> s <> Expand || not p.Model.Expansions.IsEmpty)

    /// Each stage with its key (hash of the unexpanded model, the start, and the stages up to it).
    let keys (p: Pipeline) : (Stage * string) list =
        let root = Expand.none p.Model, p.Start
        let ss = stages p
        ss |> List.mapi (fun i s -> s, Hash.short (root, [ for s' in List.take (i + 1) ss -> keyOf s' p.Model ]))

    /// Changes the model description (e.g. its expansions) of a pipeline.
    let mapModel (f: Model -> Model) (p: Pipeline) = { p with Model = f p.Model }

    /// Changes every training stage (pretraining and post-training).
    let mapTraining (f: TrainSpec -> TrainSpec) (p: Pipeline) = {
        p with
            Stages =
                p.Stages
                |> List.map (function
                    | Pretrain t -> Pretrain(f t)
                    | PostTrain t -> PostTrain(f t)
                    | s -> s)
    }

    /// Changes the post-training stages only.
    let mapPostTraining (f: TrainSpec -> TrainSpec) (p: Pipeline) = {
        p with
            Stages =
                p.Stages
                |> List.map (function
                    | PostTrain t -> PostTrain(f t)
                    | s -> s)
    }

    /// Changes every evaluation stage.
    let mapEvaluation (f: EvalSpec -> EvalSpec) (p: Pipeline) = {
        p with
            Stages =
                p.Stages
                |> List.map (function
                    | Evaluate e -> Evaluate(f e)
                    | s -> s)
    }

    /// The folder of each stage under `root`.
    let folders (root: string) (p: Pipeline) = keys p |> List.map (fun (s, k) -> s, k, Path.Combine(root, sprintf "%s-%s" k (stageName s)))

    let private doneFile (folder: string) = Path.Combine(folder, "done.json")

    /// Checks what can be checked before anything runs; errors name the stage.
    let validate (p: Pipeline) =
        if p.Stages.IsEmpty then invalidArg "pipeline" (sprintf "pipeline %s has no stages" p.Name)
        Model.flatten p.Model |> ignore
        p.Stages
        |> List.iteri (fun i s ->
            match s with
            | Pretrain _ when i > 0 ->
                invalidArg "pipeline" (sprintf "pipeline %s: pretrain must be the first stage (it is stage %d)" p.Name (i + 1))
            | Expand when p.Stages |> List.take i |> List.contains Expand ->
                invalidArg "pipeline" (sprintf "pipeline %s: expand appears twice" p.Name)
            | Pretrain t
            | PostTrain t -> TrainSpec.options "cpu" t |> ignore
            | _ -> ())
        if not (p.Stages |> List.contains Expand) && not p.Model.Expansions.IsEmpty then
            invalidArg
                "pipeline"
                (sprintf "pipeline %s: the model has expansions but no expand stage (use Expand.none for the LPT arm)" p.Name)

    /// A readable listing: the pipeline, its hash, the model, each stage with its folder and whether it is done.
    let describe (root: string) (p: Pipeline) : string =
        let sb = Text.StringBuilder()
        sb.AppendLine(sprintf "pipeline %s (%s)" p.Name (Hash.short p)) |> ignore
        sb.AppendLine(sprintf "  model: %s" (Model.summary p.Model)) |> ignore
        match p.Start with
        | Some s -> sb.AppendLine(sprintf "  start: %s" s) |> ignore
        | None -> ()
        for i, (s, _, folder) in List.indexed (folders root p) do
            let what =
                match s with
                | Pretrain t
                | PostTrain t ->
                    sprintf
                        "%s: %d steps × %d × %d tokens of %s, lr %g, seed %d"
                        (stageName s)
                        t.Steps
                        t.BatchSize
                        t.SeqLen
                        t.Data
                        t.LearningRate
                        t.Seed
                | Expand -> sprintf "expand: %s" (Model.summary p.Model)
                | Evaluate e -> sprintf "evaluate: %s" (e.Tasks |> List.map (fun t -> ValueJson.toText t) |> String.concat ", ")
            let status = if File.Exists(doneFile folder) then "done" else "to do"
            sb.AppendLine(sprintf "  %d. %s\n     %s [%s]" (i + 1) what folder status) |> ignore
        sb.ToString()

    let private modelDir (folder: string) = Path.Combine(folder, "model")
    let private trainableFile (folder: string) = Path.Combine(folder, "trainable.json")
    let private resultsFile (folder: string) = Path.Combine(folder, "results.jsonl")

    let private readDone (folder: string) =
        let o = JsonNode.Parse(File.ReadAllText(doneFile folder)).AsObject()
        let seconds =
            match o.["seconds"] with
            | null -> 0.0
            | n -> n.GetValue<float>()
        let loss =
            match o.["loss"] with
            | null -> None
            | n -> Some(n.GetValue<float>())
        seconds, loss

    let private writeDone (folder: string) (stage: string) (seconds: float) (loss: float option) =
        let o = JsonObject()
        o.["stage"] <- JsonValue.Create stage
        o.["seconds"] <- JsonValue.Create(Math.Round(seconds, 3))
        // JSON has no NaN: an unknown loss (a run resumed at its last step from a checkpoint that did not record one) is left out.
        match loss with
        | Some l when Double.IsFinite l -> o.["loss"] <- JsonValue.Create l
        | _ -> ()
        o.["finished"] <- JsonValue.Create(DateTimeOffset.UtcNow.ToString("o", Globalization.CultureInfo.InvariantCulture))
        IO.AtomicFile.WriteAllText(doneFile folder, o.ToJsonString() + "\n")

    /// Holds a stage for one run at a time, across threads and processes (runs of a sweep, or two sweeps or studies
    /// on one folder, share stages): an exclusive lock on FOLDER.lock, waited for, naming its holder while waiting
    /// (and taken over from a holder that was killed: the lock dies with its process).
    let private stageLock (log: string -> unit) (folder: string) : IDisposable =
        IO.FileLock.Acquire(folder + ".lock", Action<string>(fun m -> log ("    " + m)), sprintf "stage %s" (Path.GetFileName folder))
        :> IDisposable

    let private rename (name: string) (rs: EvalResult seq) = [
        for r in rs -> EvalResult(name, r.Task, r.Setting, r.Metric, r.Value, r.N, Labels = r.Labels)
    ]

    /// <summary>
    /// Runs the stages not yet done, each in its folder under <c>root</c> (finished ones are skipped: their folder holds
    /// done.json). Training stages resume from their newest checkpoint after an interruption.
    /// </summary>
    let run (settings: RunSettings) (root: string) (p: Pipeline) : PipelineResult =
        validate p
        Directory.CreateDirectory root |> ignore
        let baseModel = Expand.none p.Model
        let fresh () =
            match p.Start with
            | Some dir -> Checkpoint.Load dir
            | None -> Model.create baseModel
        let load (input: string option) =
            match input with
            | Some dir -> Checkpoint.Load(dir, warn = Action<string>(settings.Log))
            | None -> fresh ()
        settings.Log(sprintf "pipeline %s (%s): %d stages in %s" p.Name (Hash.short p) (stages p).Length root)
        let mutable input: string option = p.Start
        let mutable trainable: string list option = None
        let results = [
            for i, (stage, key, folder) in List.indexed (folders root p) do
                let name = stageName stage
                let tag = sprintf "  [%d/%d] %s (%s)" (i + 1) (stages p).Length name key
                use _ = stageLock settings.Log folder
                let skipped = File.Exists(doneFile folder)
                let clock = Stopwatch.StartNew()
                if skipped then
                    settings.Log(sprintf "%s: done earlier, skipped" tag)
                else
                    settings.Log(sprintf "%s: running in %s" tag folder)
                    Directory.CreateDirectory folder |> ignore
                    File.WriteAllText(
                        Path.Combine(folder, "stage.json"),
                        ValueJson.toIndentedText (Expand.none p.Model, p.Start, List.take (i + 1) (stages p), p.Model.Expansions) + "\n"
                    )
                let loss =
                    if skipped then
                        snd (readDone folder)
                    else
                        let loss =
                            match stage with
                            | Pretrain t ->
                                let summary = TrainSpec.run settings t fresh None folder
                                Some summary.FinalLoss
                            | PostTrain t ->
                                let summary = TrainSpec.run settings t (fun () -> load input) trainable folder
                                Some summary.FinalLoss
                            | Expand ->
                                let lm = load input
                                let steps = Model.expandModel p.Model lm
                                let last = List.last steps
                                last.Model.Save(modelDir folder)
                                let account =
                                    steps
                                    |> List.map (fun r ->
                                        sprintf "%O on layers %s\n%s" r.Request (String.Join(",", r.ExpandedLayers)) (r.Account.Format()))
                                    |> String.concat "\n"
                                File.WriteAllText(Path.Combine(folder, "account.txt"), account)
                                settings.Log(
                                    sprintf
                                        "    state per sequence %d → %d elements"
                                        (List.head steps).Account.StateBefore
                                        last.Account.StateAfter
                                )
                                let frozen = steps |> List.filter (fun r -> r.Request.FreezeOthers)
                                if not frozen.IsEmpty then
                                    let names = frozen |> List.collect (fun r -> List.ofSeq r.TrainableParameters) |> List.distinct
                                    File.WriteAllText(trainableFile folder, ValueJson.toText names)
                                None
                            | Evaluate e ->
                                let lm = load input
                                let rs = EvalSpec.run settings.Device "model" e lm
                                ResultFiles.Write(resultsFile folder, rs)
                                ResultFiles.Write(Path.Combine(folder, "results.csv"), rs)
                                None
                        writeDone folder name clock.Elapsed.TotalSeconds loss
                        loss
                let seconds = if skipped then fst (readDone folder) else clock.Elapsed.TotalSeconds
                let output =
                    match stage with
                    | Evaluate _ -> None
                    | _ -> Some(modelDir folder)
                match stage with
                | Expand when File.Exists(trainableFile folder) ->
                    trainable <- Some(ValueJson.ofText<string list>(File.ReadAllText(trainableFile folder)))
                | PostTrain _ -> trainable <- None
                | _ -> ()
                if output.IsSome then input <- output
                let rs =
                    match stage with
                    | Evaluate _ -> rename p.Name (ResultFiles.ReadJsonLines(resultsFile folder))
                    | _ -> []
                if not skipped then
                    settings.Log(
                        sprintf
                            "%s: finished in %.1f s%s"
                            tag
                            seconds
                            (match loss with
                             | Some l -> sprintf ", loss %.4f" l
                             | None -> "")
                    )
                yield {
                    Stage = name
                    Key = key
                    Folder = folder
                    Skipped = skipped
                    Seconds = seconds
                    ModelDirectory = output
                    Loss = loss
                    Results = rs
                }
        ]
        { Pipeline = p; Stages = results; Results = results |> List.collect (fun s -> s.Results) }

    /// Flat metrics of a run, for a sweep store: each training stage's final loss, every evaluation result
    /// ("task/metric" plus its setting, e.g. "mqar/accuracy/pairs=8,seq_len=64,vocab=259"), and the model's
    /// state size and parameter count.
    let metrics (r: PipelineResult) : Map<string, float> =
        Map [
            for s in r.Stages do
                match s.Loss with
                | Some l -> yield sprintf "%s.loss" s.Stage, l
                | None -> ()
            for e in r.Results do
                let setting =
                    e.Setting
                    |> Seq.map (fun (KeyValue(k, v)) -> sprintf "%s=%s" k (Convert.ToString(v, Globalization.CultureInfo.InvariantCulture)))
                    |> String.concat ","
                yield sprintf "%s/%s/%s" e.Task e.Metric setting, e.Value
            yield "state_size", float (Model.stateSize r.Pipeline.Model)
            yield "params", float (Model.paramCount r.Pipeline.Model)
        ]

    /// A sweep run function over pipelines: stages live under `stagesRoot` (shared by every run of the sweep, so
    /// runs with a common prefix share it); each run's folder gets eval.jsonl (its results) and its metrics.
    let runner (settings: RunSettings) (stagesRoot: string) : Pipeline -> string -> Map<string, float> =
        fun p dir ->
            let r = run settings stagesRoot p
            ResultFiles.Write(Path.Combine(dir, "eval.jsonl"), r.Results)
            for s in r.Stages do
                let metrics = Path.Combine(s.Folder, "metrics.jsonl")
                if File.Exists metrics then File.Copy(metrics, Path.Combine(dir, sprintf "%s.metrics.jsonl" s.Stage), true)
            metrics r
