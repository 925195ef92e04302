namespace StateX

open System
open System.IO
open Plotly.NET

/// <summary>
/// An ablation over StateX's choices, as a sweep over the study library: which layers are expanded, how they are
/// initialised, and the post-training budget, with LPT at each budget. Each budget is a <see cref="Study"/> whose
/// StateX arms are every (layers, init) pair; all budgets share one stages folder, so every budget post-trains the
/// same pretrained bases.
/// </summary>
type Ablation = {
    Name: string
    /// The study whose families, pretraining, data and evaluation the ablation keeps (its arms and control are replaced).
    Base: Study
    /// Post-training budgets as multiples of the base study's steps.
    Budgets: int list
    /// (name, layers) to expand.
    Layers: (string * LayerSet) list
    /// Initialisations per family (e.g. GLA: reinit, inherit; Mamba2: reinit, copy, preserve).
    Inits: Map<string, Init list>
}

/// One job of an ablation: a (family, seed, budget, arm) pipeline, run by a worker.
type AblationJob = { Key: string; Family: string; Seed: int; Budget: int; Arm: string }

[<RequireQualifiedAccess>]
module StudyAblation =
    let private initName (i: Init) = (string i).ToLowerInvariant()

    /// The StateX arms of one family: every (layers, init) pair.
    let arms (a: Ablation) (f: StudyFamily) = [
        for layersName, layers in a.Layers do
            for init in a.Inits.TryFind f.Name |> Option.defaultValue [ Reinit ] ->
                let rewrite =
                    match f.Base.Arch with
                    | Gla _ -> MergeHeads init
                    | Mamba2 _
                    | Gsa _
                    | Power _ -> State(4, init)
                {
                    Name = sprintf "statex-%s-%s" layersName (initName init)
                    Label = sprintf "%s layers, %s" layersName (initName init)
                    Expansions = [ { Where = layers; Rewrite = rewrite; Seed = 0L; FreezeOthers = false } ]
                }
    ]

    /// The study at one budget (a multiple of the base study's post-training steps).
    let studyAt (a: Ablation) (budget: int) : Study = {
        a.Base with
            Name = sprintf "%s-x%d" a.Name budget
            Families = a.Base.Families |> List.map (fun f -> { f with Arms = arms a f; Control = None })
            PostTrain = { a.Base.PostTrain with Steps = a.Base.PostTrain.Steps * budget }
            ControlSeeds = []
            PretrainSeed = None
            ConvergenceCheck = None
    }

    let private budgetRoot (root: string) (budget: int) = Path.Combine(root, sprintf "x%d" budget)
    let private stages (root: string) = Path.Combine(root, "stages")

    /// Every job, longest first (the largest budget), so that workers finish together.
    let jobs (a: Ablation) : AblationJob list = [
        for budget in List.sortDescending a.Budgets do
            for r in Study.runs (studyAt a budget) do
                if r.Arm <> Study.baseArm || budget = List.min a.Budgets then
                    yield {
                        Key = sprintf "%s/seed%d/x%d/%s" r.Family r.Seed budget r.Arm
                        Family = r.Family
                        Seed = r.Seed
                        Budget = budget
                        Arm = r.Arm
                    }
    ]

    /// Runs one job (a worker's unit) under `root`.
    let runJob (settings: RunSettings) (root: string) (a: Ablation) (key: string) =
        match jobs a |> List.tryFind (fun j -> j.Key = key) with
        | None -> invalidArg "job" (sprintf "ablation %s has no job '%s'" a.Name key)
        | Some j ->
            let s = studyAt a j.Budget
            Study.runWhere
                settings
                (stages root)
                (budgetRoot root j.Budget)
                (fun r -> r.Family = j.Family && r.Seed = j.Seed && r.Arm = j.Arm)
                s
            |> ignore

    /// Runs (or resumes) every job in this process and returns the rows per budget.
    let run (settings: RunSettings) (root: string) (a: Ablation) : (int * StudyRow list) list = [
        for budget in a.Budgets ->
            let s = studyAt a budget
            let rows =
                Study.runWhere
                    settings
                    (stages root)
                    (budgetRoot root budget)
                    (fun r -> r.Arm <> Study.baseArm || budget = List.min a.Budgets)
                    s
            budget, rows
    ]

    /// One row of the ablation table: an arm's headline minus LPT's at the same budget, over seeds.
    type Delta = {
        Family: string
        Budget: int
        Arm: string
        Label: string
        Headline: string
        Lpt: float
        Mean: float
        Min: float
        Max: float
        Seeds: int
    }

    /// The headlines an ablation reports (recall ones; held-out loss too).
    let headlines (s: Study) =
        StudySummary.headlines (StudySummary.trainLength s) |> List.filter (fun h -> h.Name <> "state" && h.Name <> "params")

    /// StateX − LPT per (family, budget, arm, headline): mean, min and max over the seeds.
    let deltas (a: Ablation) (results: (int * StudyRow list) list) : Delta list = [
        for budget, rows in results do
            let s = studyAt a budget
            for f in s.Families do
                for arm in f.Arms do
                    for h in headlines s do
                        match StudySummary.deltas rows f.Name arm.Name h |> StudySummary.stat with
                        | Some st ->
                            let lpt = StudySummary.perSeed rows f.Name Study.lptArm h |> List.map snd |> List.average
                            yield {
                                Family = f.Name
                                Budget = budget
                                Arm = arm.Name
                                Label = arm.Label
                                Headline = h.Name
                                Lpt = lpt
                                Mean = st.Mean
                                Min = st.Min
                                Max = st.Max
                                Seeds = st.Seeds
                            }
                        | None -> ()
    ]

    let private inv = Globalization.CultureInfo.InvariantCulture

    /// The table as CSV (one line per delta).
    let csv (ds: Delta list) =
        let f (v: float) = v.ToString("R", inv)
        "family,budget,arm,headline,lpt,delta_mean,delta_min,delta_max,seeds\n"
        + String.Join(
            "",
            [
                for d in ds ->
                    sprintf
                        "%s,%d,%s,%s,%s,%s,%s,%s,%d\n"
                        d.Family
                        d.Budget
                        d.Arm
                        d.Headline
                        (f d.Lpt)
                        (f d.Mean)
                        (f d.Min)
                        (f d.Max)
                        d.Seeds
            ]
        )

    let private pct (v: float) = sprintf "%+.1f" (100.0 * v)

    /// The report section: per family a table (arm × budget, for the recall headlines) and a chart of the MQAR ≥16 deltas.
    let section (a: Ablation) (ds: Delta list) =
        let b = Text.StringBuilder()
        let add (x: string) = b.AppendLine x |> ignore
        let s = a.Base
        add (
            sprintf
                "<h2>Ablation: which layers, which init, how long</h2><p>StateX − LPT in points (mean [min, max] over seeds %s), each arm against LPT at the same post-training budget (×1 = %d steps). Held-out loss: lower is better.</p>"
                (String.Join(", ", s.Seeds))
                s.PostTrain.Steps
        )
        for f in s.Families do
            let fd = ds |> List.filter (fun d -> d.Family = f.Name)
            let hs = fd |> List.map (fun d -> d.Headline) |> List.distinct
            let arms = fd |> List.map (fun d -> d.Arm, d.Label) |> List.distinct
            let header =
                [ "arm" ]
                @ [
                    for bud in a.Budgets do
                        for h in hs -> sprintf "%s ×%d" h bud
                ]
            let cell arm bud h =
                match fd |> List.tryFind (fun d -> d.Arm = arm && d.Budget = bud && d.Headline = h) with
                | Some d when h.StartsWith "held-out" -> sprintf "%+.3f [%+.3f, %+.3f]" d.Mean d.Min d.Max
                | Some d -> sprintf "%s [%s, %s]" (pct d.Mean) (pct d.Min) (pct d.Max)
                | None -> "-"
            let lptRow =
                "LPT (absolute)"
                :: [
                    for bud in a.Budgets do
                        for h in hs ->
                            match fd |> List.tryFind (fun d -> d.Budget = bud && d.Headline = h) with
                            | Some d when h.StartsWith "held-out" -> sprintf "%.3f" d.Lpt
                            | Some d -> sprintf "%.1f%%" (100.0 * d.Lpt)
                            | None -> "-"
                ]
            add (sprintf "<h3>%s</h3>" f.Name)
            add (
                StudyReport.htmlTable
                    header
                    (lptRow
                     :: [
                         for arm, label in arms ->
                             label
                             :: [
                                 for bud in a.Budgets do
                                     for h in hs -> cell arm bud h
                             ]
                     ])
            )
            let h = sprintf "MQAR ≥%d pairs" StudySummary.manyPairs
            let chart =
                [
                    for bud in a.Budgets ->
                        let pts = fd |> List.filter (fun d -> d.Budget = bud && d.Headline = h)
                        Chart.Column(
                            values = (pts |> List.map (fun d -> 100.0 * d.Mean)),
                            Keys = (pts |> List.map (fun d -> d.Label)),
                            Name = sprintf "×%d" bud
                        )
                        |> GenericChart.mapTrace (fun t ->
                            t.SetProperty(
                                "error_y",
                                {|
                                    ``type`` = "data"
                                    symmetric = false
                                    array = pts |> List.map (fun d -> 100.0 * (d.Max - d.Mean))
                                    arrayminus = pts |> List.map (fun d -> 100.0 * (d.Mean - d.Min))
                                |}
                            )
                            t)
                ]
                |> Chart.combine
                |> Chart.withTitle (sprintf "%s: StateX − LPT at %s (points; bars: min–max over seeds)" f.Name h)
                |> Chart.withYAxisStyle "points"
                |> Chart.withSize (900, 420)
            add (GenericChart.toChartHTML chart)
        b.ToString()
