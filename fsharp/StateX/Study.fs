namespace StateX

open System
open System.IO
open System.Text.Json.Nodes
open StateX.Evaluation

/// One StateX arm: expansions applied to the base model after its pretraining, then the same post-training as LPT.
type StudyArm = {
    /// Arm name in results and folders ("statex", "statex-all", ...).
    Name: string
    /// How tables and charts call it ("StateX", "StateX, all layers", ...).
    Label: string
    /// Applied in order to the base model; each expansion's seed is set to the study seed.
    Expansions: Expansion list
}

/// One family's part of a study.
type StudyFamily = {
    /// "gla", "mamba2": the results' family label.
    Name: string
    /// The base model's description (unexpanded).
    Base: Model
    /// A checkpoint folder that is the base model (nothing is pretrained); None: pretrained from Base.
    Start: string option
    /// Pretraining phases in order, the first from random weights (e.g. MQAR alone, then a mixture); empty with Start.
    Pretrain: TrainSpec list
    /// The StateX arms, each compared with LPT.
    Arms: StudyArm list
    /// The state-limit control: these expansions folded into the architecture, pretrained from scratch exactly as
    /// the base is. A control that recalls more than the base says the base's recall is limited by its state.
    Control: Expansion list option
    /// Tokenizer of the family's data and evaluations: "byte", or the checkpoint folder of Start.
    Tokenizer: string
}

/// <summary>
/// The StateX-vs-LPT study as a value (Shen et al., 2025, in miniature or at 1.3B): per family and seed, a base
/// model (pretrained, or given), LPT (the base post-trained as is) and StateX arms (expanded, then post-trained on
/// the same data, tokens, schedule and seed), a from-scratch control for some seeds, all evaluated alike. Built from
/// <see cref="Model"/>, <see cref="TrainSpec"/>, <see cref="EvalSpec"/> and run as <see cref="Pipeline"/>s, so
/// stages are keyed by what they compute, shared between arms, skipped when done and resumed when interrupted.
/// </summary>
type Study = {
    Name: string
    Families: StudyFamily list
    /// Post-training of every arm, LPT and StateX alike (data read with the family's tokenizer).
    PostTrain: TrainSpec
    Evaluation: EvalSpec
    Seeds: int list
    /// Seeds that also pretrain the control (one pretraining per family each).
    ControlSeeds: int list
    /// <summary>Some s: one base per family, pretrained with seed s, which every seed post-trains (the paper's setting:
    /// one pretrained checkpoint; seeds vary the post-training's data order and new parameters); its base and control
    /// rows carry the first seed. None: a base pretrained per seed, so that the spread includes pretraining's.</summary>
    PretrainSeed: int option
    /// <summary>The convergence check: Some k also post-trains LPT for k times the budget (arm <c>lpt-xK</c>), so
    /// that the summary says whether LPT had converged at the study's budget (the regime's criterion: doubling it
    /// moves LPT's headline by under a point). None: no check.</summary>
    ConvergenceCheck: int option
}

/// Which pipelines of a (family, seed): the base and its post-trained arms, or the control.
type StudyPart =
    | Main
    | Control

/// One pipeline of a study, with the labels its results carry.
type StudyRun = { Family: string; Arm: string; Seed: int; Part: StudyPart; Pipeline: Pipeline }

/// One measured number of a study: an evaluation result with its family, arm and seed.
type StudyRow = {
    Family: string
    Arm: string
    Seed: int
    Result: EvalResult
} with
    member r.Task = r.Result.Task
    member r.Metric = r.Result.Metric
    member r.Value = r.Result.Value
    /// The number a setting key holds ("pairs" → 16.0), if the result has it.
    member r.SettingValue(key: string) =
        match r.Result.Setting.TryGetValue key with
        | true, v -> Some(Convert.ToDouble(v, Globalization.CultureInfo.InvariantCulture))
        | _ -> None

[<RequireQualifiedAccess>]
module Study =
    /// Arm names of the base, LPT and control pipelines (StateX arms are named by the study).
    let baseArm, lptArm, controlArm = "base", "lpt", "control"

    /// The arm of the convergence check: LPT post-trained for `k` times the study's budget.
    let convergenceArm (k: int) = sprintf "lpt-x%d" k

    let private seeded (seed: int) (xs: Expansion list) = xs |> List.map (fun e -> { e with Seed = int64 seed })

    /// The pipelines of the study, in run order: for each seed and family the base, LPT and StateX arms (Main),
    /// then the control (Control) where the seed is a control seed and the base is pretrained here.
    let runs (s: Study) : StudyRun list = [
        for seed in s.Seeds do
            for f in s.Families do
                let train (t: TrainSpec) = { t with Seed = int64 seed; Tokenizer = f.Tokenizer }
                let pretrainSeed = defaultArg s.PretrainSeed seed
                let ownBase = s.PretrainSeed.IsNone || seed = List.head s.Seeds
                let eval = { s.Evaluation with Tokenizer = f.Tokenizer }
                let name arm = sprintf "%s/%s/seed%d" f.Name arm seed
                let pretrained (model: Model) (arm: string) =
                    let p = Pipeline.create (name arm) model
                    match f.Start, f.Pretrain with
                    | Some dir, _ -> Pipeline.startFrom dir p
                    | None, first :: rest ->
                        let pre (t: TrainSpec) = { train t with Seed = int64 pretrainSeed }
                        rest |> List.fold (fun p t -> Pipeline.postTrain (pre t) p) (Pipeline.pretrain (pre first) p)
                    | None, [] -> invalidArg "study" (sprintf "study %s, family %s: no pretraining and no start checkpoint" s.Name f.Name)
                let run arm part p = { Family = f.Name; Arm = arm; Seed = seed; Part = part; Pipeline = p }
                if ownBase then yield run baseArm Main (pretrained f.Base baseArm |> Pipeline.evaluate eval)
                yield run lptArm Main (pretrained f.Base lptArm |> Pipeline.postTrain (train s.PostTrain) |> Pipeline.evaluate eval)
                match s.ConvergenceCheck with
                | Some k ->
                    let longer = { s.PostTrain with Steps = k * s.PostTrain.Steps }
                    yield
                        run
                            (convergenceArm k)
                            Main
                            (pretrained f.Base (convergenceArm k) |> Pipeline.postTrain (train longer) |> Pipeline.evaluate eval)
                | None -> ()
                for a in f.Arms do
                    let model = { f.Base with Expansions = seeded seed a.Expansions }
                    yield
                        run
                            a.Name
                            Main
                            (pretrained model a.Name |> Pipeline.expand |> Pipeline.postTrain (train s.PostTrain) |> Pipeline.evaluate eval)
                match f.Control with
                | Some c when f.Start.IsNone && List.contains seed s.ControlSeeds && ownBase ->
                    let model = Model.flatten { f.Base with Expansions = seeded pretrainSeed c }
                    yield run controlArm Control (pretrained model controlArm |> Pipeline.evaluate eval)
                | _ -> ()
    ]

    /// Checks every pipeline before anything runs (errors name the pipeline), and that arm names are distinct.
    let validate (s: Study) =
        if s.Seeds.IsEmpty then invalidArg "study" (sprintf "study %s has no seeds" s.Name)
        match s.ConvergenceCheck with
        | Some k when k < 2 ->
            invalidArg "study" (sprintf "study %s: the convergence check's budget multiple must be at least 2 (got %d)" s.Name k)
        | _ -> ()
        for f in s.Families do
            let check = s.ConvergenceCheck |> Option.map convergenceArm |> Option.toList
            let names = [ baseArm; lptArm; controlArm ] @ check @ (f.Arms |> List.map (fun a -> a.Name))
            match names |> List.countBy id |> List.tryFind (fun (_, n) -> n > 1) with
            | Some(n, _) -> invalidArg "study" (sprintf "study %s, family %s: two arms are named '%s'" s.Name f.Name n)
            | None -> ()
        EvalSpec.validate s.Evaluation
        for r in runs s do
            Pipeline.validate r.Pipeline

    /// What a family's results depend on (everything but the seeds), hashed into the folder's guard.
    let private familyKey (s: Study) (f: StudyFamily) =
        match s.PretrainSeed with
        | None -> Hash.short (f, s.PostTrain, s.Evaluation)
        | Some p -> Hash.short (f, s.PostTrain, s.Evaluation, p)

    let private guardFile (root: string) = Path.Combine(root, "study.json")

    /// <summary>
    /// A study folder holds one study: a family run before with other settings is refused (stages are keyed by
    /// their settings, so nothing would mix, but results.csv would then hold a different study than the one asked
    /// for). Seeds and families may be added. Folders written before the study library (study-settings.txt) are
    /// refused: their stages are laid out differently.
    /// </summary>
    let prepare (s: Study) (root: string) =
        Directory.CreateDirectory root |> ignore
        let path = guardFile root
        if not (File.Exists path) && File.Exists(Path.Combine(root, "study-settings.txt")) then
            failwithf
                "%s holds a study written by an earlier StateX (before the study library; see its study-settings.txt): its stages cannot be resumed by this version: choose another --out, or delete the folder to start over"
                root
        let o = if File.Exists path then JsonNode.Parse(File.ReadAllText path).AsObject() else JsonObject()
        let families =
            match o["families"] with
            | :? JsonObject as f -> f
            | _ -> JsonObject()
        for f in s.Families do
            let key = familyKey s f
            match families[f.Name] with
            | null -> families[f.Name] <- JsonValue.Create key
            | k when k.GetValue<string>() = key -> ()
            | k ->
                failwithf
                    "%s holds a %s study run with other settings (settings key %s in %s; this study's is %s): choose another --out, or delete the folder to start over"
                    root
                    f.Name
                    (k.GetValue<string>())
                    path
                    key
        o["name"] <- JsonValue.Create s.Name
        o["families"] <- families.DeepClone()
        IO.AtomicFile.WriteAllText(path, o.ToJsonString(Text.Json.JsonSerializerOptions(WriteIndented = true)) + "\n")

    /// The folder all stages of a study live in (shared by its pipelines).
    let stagesFolder (root: string) = Path.Combine(root, "stages")

    let private labelled (r: StudyRun) (results: EvalResult list) = [
        for e in results ->
            {
                Family = r.Family
                Arm = r.Arm
                Seed = r.Seed
                Result =
                    EvalResult(
                        e.Model,
                        e.Task,
                        e.Setting,
                        e.Metric,
                        e.Value,
                        e.N,
                        Labels = [
                            Collections.Generic.KeyValuePair("family", r.Family)
                            Collections.Generic.KeyValuePair("arm", r.Arm)
                            Collections.Generic.KeyValuePair("seed", string r.Seed)
                        ]
                    )
            }
    ]

    /// Runs (or resumes) the pipelines `keep` selects, one after another, with their stages in `stages` (which
    /// several studies may share: an ablation's budgets share their pretraining) and the study's guard in `root`;
    /// returns their rows. Several processes may run parts of one study at once: a stage is worked on by one of
    /// them at a time.
    let runWhere (settings: RunSettings) (stages: string) (root: string) (keep: StudyRun -> bool) (s: Study) : StudyRow list =
        validate s
        prepare s root
        [
            for r in runs s do
                if keep r then
                    let result = Pipeline.run settings stages r.Pipeline
                    yield! labelled r result.Results
        ]

    /// Runs (or resumes) the pipelines of `part` (None: all), one after another, under `root`; returns their rows.
    let runPart (settings: RunSettings) (root: string) (part: StudyPart option) (s: Study) : StudyRow list =
        runWhere settings (stagesFolder root) root (fun r -> part.IsNone || part = Some r.Part) s

    /// Where a study's rows are written: results.csv and results.jsonl (the core's results format, with the labels
    /// family, arm, seed), which Analysis.readResults reads.
    let resultsFiles (root: string) = Path.Combine(root, "results.csv"), Path.Combine(root, "results.jsonl")

    /// Runs (or resumes) the whole study under `root` and writes its results files; returns every row.
    let run (settings: RunSettings) (root: string) (s: Study) : StudyRow list =
        let rows = runPart settings root None s
        let csv, jsonl = resultsFiles root
        ResultFiles.Write(csv, rows |> List.map (fun r -> r.Result))
        ResultFiles.Write(jsonl, rows |> List.map (fun r -> r.Result))
        rows

    /// The rows of a finished study's results.jsonl.
    let readRows (root: string) : StudyRow list =
        let _, jsonl = resultsFiles root
        if not (File.Exists jsonl) then raise (FileNotFoundException(sprintf "no study results in %s (expected %s)" root jsonl, jsonl))
        [
            for e in ResultFiles.ReadJsonLines jsonl ->
                let label k = e.Labels |> Seq.tryFind (fun kv -> kv.Key = k) |> Option.map (fun kv -> kv.Value)
                match label "family", label "arm", label "seed" with
                | Some f, Some a, Some seed -> { Family = f; Arm = a; Seed = int seed; Result = e }
                | _ -> failwithf "%s: a result without family, arm and seed labels (%s %s)" jsonl e.Task e.Metric
        ]

    /// Maps every family of a study (e.g. to change the arms or the pretraining).
    let mapFamilies (f: StudyFamily -> StudyFamily) (s: Study) = { s with Families = s.Families |> List.map f }

    /// Keeps the families named (in the study's order); an unknown name is an error naming the known ones.
    let families (names: string list) (s: Study) =
        for n in names do
            if not (s.Families |> List.exists (fun f -> f.Name = n)) then
                invalidArg
                    "families"
                    (sprintf "unknown family '%s': this study has %s" n (String.Join(", ", s.Families |> List.map (fun f -> f.Name))))
        { s with Families = s.Families |> List.filter (fun f -> List.contains f.Name names) }

    let seeds (seeds: int list) (s: Study) = { s with Seeds = seeds }

    /// The post-training budget of every arm.
    let mapPostTraining (f: TrainSpec -> TrainSpec) (s: Study) = { s with PostTrain = f s.PostTrain }
