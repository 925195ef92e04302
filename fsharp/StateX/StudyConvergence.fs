namespace StateX

open System
open System.IO
open Plotly.NET

/// <summary>
/// Which post-training lets LPT converge: LPT alone (no StateX arm) at each post-training learning rate and budget
/// of a grid, from the same pretrained bases, with LPT's recall headlines at each point and how far each doubling of
/// the budget moves them. The study's criterion (README, "The regime"): the arms are compared where doubling the
/// budget moves LPT's headline by under a point. The choice is made on LPT alone, before any StateX arm is run at it,
/// so it cannot favour StateX.
/// </summary>
type Convergence = {
    Name: string
    /// The study whose families, pretraining, data, evaluation and seeds the sweep keeps (its arms, control and
    /// convergence check are dropped; its post-training gives the data, batch and schedule shape).
    Base: Study
    /// Post-training learning rates tried.
    LearningRates: float list
    /// Budgets as multiples of the base study's steps; consecutive ones should differ by ×2 (the criterion's doubling).
    Budgets: int list
    /// A doubling that moves every recall headline by less than this (a fraction: 0.01 is a point) has converged.
    Tolerance: float
}

/// One job of a convergence sweep: LPT (or the base, once per seed) of one family, seed, learning rate and budget.
type ConvergenceJob = { Key: string; Family: string; Seed: int; LearningRate: float; Budget: int; Arm: string }

/// LPT's recall headline at one (learning rate, budget), mean over seeds, and how far the next doubling moved it.
type ConvergencePoint = {
    Family: string
    LearningRate: float
    Steps: int
    Headline: string
    /// Mean over seeds.
    Value: float
    Seeds: int
    /// (next budget's steps, mean over seeds of next − this) where the next budget is twice this one.
    Move: (int * float) option
}

[<RequireQualifiedAccess>]
module StudyConvergence =
    let private inv = Globalization.CultureInfo.InvariantCulture
    let private rate (lr: float) = lr.ToString("0.####e0", inv)

    /// The study at one (learning rate, budget): the base's families without arms or control, LPT post-trained at
    /// `lr` for `budget` times the base's steps (the warm-up stays the base's, as in the study's own convergence check).
    let studyAt (c: Convergence) (lr: float) (budget: int) : Study =
        let t = c.Base.PostTrain
        {
            c.Base with
                Name = sprintf "%s-lr%s-x%d" c.Name (rate lr) budget
                Families = c.Base.Families |> List.map (fun f -> { f with Arms = []; Control = None })
                PostTrain = { t with Steps = t.Steps * budget; LearningRate = lr }
                ControlSeeds = []
                ConvergenceCheck = None
        }

    let private pointRoot (root: string) (lr: float) (budget: int) = Path.Combine(root, sprintf "lr%s-x%d" (rate lr) budget)
    let private stages (root: string) = Path.Combine(root, "stages")

    /// Checks the grid before anything runs.
    let validate (c: Convergence) =
        if c.LearningRates.IsEmpty || c.Budgets.IsEmpty then
            invalidArg "convergence" (sprintf "convergence sweep %s: no learning rates or no budgets" c.Name)
        match c.LearningRates |> List.tryFind (fun lr -> not (lr > 0.0 && Double.IsFinite lr)) with
        | Some lr -> invalidArg "convergence" (sprintf "convergence sweep %s: learning rate %g is not a positive number" c.Name lr)
        | None -> ()
        match c.Budgets |> List.tryFind (fun b -> b < 1) with
        | Some b -> invalidArg "convergence" (sprintf "convergence sweep %s: budget ×%d is not a positive multiple" c.Name b)
        | None -> ()
        if List.distinct c.Budgets <> c.Budgets || List.distinct c.LearningRates <> c.LearningRates then
            invalidArg "convergence" (sprintf "convergence sweep %s: a learning rate or budget is listed twice" c.Name)

    /// The runs of one point: LPT, and the base (one per seed) with the first point only.
    let private keepFor (c: Convergence) (lr: float) (budget: int) (r: StudyRun) =
        r.Arm = Study.lptArm || (r.Arm = Study.baseArm && lr = List.head c.LearningRates && budget = List.min c.Budgets)

    /// Every job, longest first, so that workers finish together.
    let jobs (c: Convergence) : ConvergenceJob list =
        validate c
        [
            for budget in List.sortDescending c.Budgets do
                for lr in c.LearningRates do
                    for r in Study.runs (studyAt c lr budget) do
                        if keepFor c lr budget r then
                            yield {
                                Key = sprintf "%s/seed%d/lr%s/x%d/%s" r.Family r.Seed (rate lr) budget r.Arm
                                Family = r.Family
                                Seed = r.Seed
                                LearningRate = lr
                                Budget = budget
                                Arm = r.Arm
                            }
        ]

    /// Runs one job (a worker's unit) under `root`.
    let runJob (settings: RunSettings) (root: string) (c: Convergence) (key: string) =
        match jobs c |> List.tryFind (fun j -> j.Key = key) with
        | None -> invalidArg "job" (sprintf "convergence sweep %s has no job '%s'" c.Name key)
        | Some j ->
            Study.runWhere
                settings
                (stages root)
                (pointRoot root j.LearningRate j.Budget)
                (fun r -> r.Family = j.Family && r.Seed = j.Seed && r.Arm = j.Arm)
                (studyAt c j.LearningRate j.Budget)
            |> ignore

    /// Runs (or resumes) every job in this process; returns the rows per (learning rate, budget).
    let run (settings: RunSettings) (root: string) (c: Convergence) : ((float * int) * StudyRow list) list =
        validate c
        [
            for lr in c.LearningRates do
                for budget in List.sort c.Budgets ->
                    let rows = Study.runWhere settings (stages root) (pointRoot root lr budget) (keepFor c lr budget) (studyAt c lr budget)
                    (lr, budget), rows
        ]

    /// Every measured number, labelled with its learning rate and post-training steps besides family, arm and seed
    /// (the base's rows carry steps 0), for results.csv / results.jsonl.
    let results (c: Convergence) (results: ((float * int) * StudyRow list) list) : Evaluation.EvalResult list = [
        for (lr, budget), rows in results do
            for r in rows ->
                let e = r.Result
                let steps = if r.Arm = Study.baseArm then 0 else budget * c.Base.PostTrain.Steps
                let extra = [
                    Collections.Generic.KeyValuePair("learning_rate", lr.ToString("R", inv))
                    Collections.Generic.KeyValuePair("steps", string steps)
                ]
                Evaluation.EvalResult(e.Model, e.Task, e.Setting, e.Metric, e.Value, e.N, Labels = (List.ofSeq e.Labels @ extra))
    ]

    /// The recall headlines the criterion is judged on (as the study's own convergence check).
    let headlines (c: Convergence) = StudySummary.recallHeadlines (StudySummary.trainLength c.Base)

    /// LPT's headlines at every point, with the move to twice the budget where that was run (paired by seed).
    let points (c: Convergence) (results: ((float * int) * StudyRow list) list) : ConvergencePoint list =
        let at = Map.ofList results
        [
            for f in c.Base.Families do
                for lr in c.LearningRates do
                    for budget in List.sort c.Budgets do
                        match at.TryFind(lr, budget) with
                        | None -> ()
                        | Some rows ->
                            for h in headlines c do
                                let here = StudySummary.perSeed rows f.Name Study.lptArm h
                                if not here.IsEmpty then
                                    let move =
                                        at.TryFind(lr, 2 * budget)
                                        |> Option.bind (fun next ->
                                            let there = StudySummary.perSeed next f.Name Study.lptArm h |> Map.ofList
                                            match here |> List.choose (fun (s, v) -> there.TryFind s |> Option.map (fun w -> w - v)) with
                                            | [] -> None
                                            | ds -> Some(2 * budget * c.Base.PostTrain.Steps, List.average ds))
                                    yield {
                                        Family = f.Name
                                        LearningRate = lr
                                        Steps = budget * c.Base.PostTrain.Steps
                                        Headline = h.Name
                                        Value = here |> List.averageBy snd
                                        Seeds = here.Length
                                        Move = move
                                    }
        ]

    /// The base's headlines per family (mean over seeds), for reference: post-training should not lose what it had.
    let bases (c: Convergence) (results: ((float * int) * StudyRow list) list) =
        let rows = results |> List.collect snd
        [
            for f in c.Base.Families do
                for h in headlines c do
                    match StudySummary.perSeed rows f.Name Study.baseArm h with
                    | [] -> ()
                    | xs -> yield f.Name, h.Name, xs |> List.averageBy snd
        ]

    /// <summary>
    /// The criterion's choice per family: among the (learning rate, budget) points whose doubling moves every recall
    /// headline by less than <c>Tolerance</c> and where LPT recalls at least as much as the base at many pairs (a
    /// rate that wrecks the model converges too, to nothing), the smallest budget, then the smallest learning rate
    /// (the cheapest post-training that has converged, and the gentlest of those). None: no point qualifies.
    /// </summary>
    let choice (c: Convergence) (pts: ConvergencePoint list) (bases: (string * string * float) list) (family: string) =
        let many = sprintf "MQAR ≥%d pairs" StudySummary.manyPairs
        let baseMany = bases |> List.tryFind (fun (f, h, _) -> f = family && h = many) |> Option.map (fun (_, _, v) -> v)
        pts
        |> List.filter (fun p -> p.Family = family)
        |> List.groupBy (fun p -> p.Steps, p.LearningRate)
        |> List.filter (fun (_, ps) ->
            ps
            |> List.forall (fun p ->
                match p.Move with
                | Some(_, d) -> abs d < c.Tolerance
                | None -> false)
            && ps |> List.forall (fun p -> p.Headline <> many || baseMany.IsNone || p.Value >= baseMany.Value))
        |> List.map fst
        |> List.sort
        |> List.tryHead
        |> Option.map (fun (steps, lr) -> lr, steps)

    /// Plain sentences: per family the choice, or that no point converged and which moved least.
    let verdicts (c: Convergence) (pts: ConvergencePoint list) (bases: (string * string * float) list) = [
        for f in c.Base.Families do
            match choice c pts bases f.Name with
            | Some(lr, steps) ->
                yield
                    sprintf
                        "%s: LPT converged (every recall headline moves under %g points when the budget doubles, at or above the base at many pairs) at learning rate %s with %d steps, the cheapest such point of the grid."
                        f.Name
                        (100.0 * c.Tolerance)
                        (rate lr)
                        steps
            | None ->
                let worst =
                    pts
                    |> List.filter (fun p -> p.Family = f.Name && p.Move.IsSome)
                    |> List.groupBy (fun p -> p.LearningRate, p.Steps)
                    |> List.map (fun (k, ps) -> k, ps |> List.map (fun p -> abs (snd p.Move.Value)) |> List.max)
                match worst |> List.sortBy snd |> List.tryHead with
                | Some((lr, steps), d) ->
                    yield
                        sprintf
                            "%s: LPT did NOT converge at any point of the grid; the smallest largest move is %.1f points (learning rate %s, %d → %d steps)."
                            f.Name
                            (100.0 * d)
                            (rate lr)
                            steps
                            (2 * steps)
                | None -> yield sprintf "%s: no doubling of the budget was run, so convergence is not measured." f.Name
    ]

    /// The sweep as CSV: one line per (family, learning rate, steps, headline), with the move to twice the steps.
    let csv (pts: ConvergencePoint list) =
        let f (v: float) = v.ToString("R", inv)
        "family,learning_rate,steps,headline,lpt,seeds,next_steps,move\n"
        + String.Join(
            "",
            [
                for p in pts ->
                    let next, move =
                        match p.Move with
                        | Some(n, d) -> string n, f d
                        | None -> "", ""
                    sprintf "%s,%s,%d,%s,%s,%d,%s,%s\n" p.Family (f p.LearningRate) p.Steps p.Headline (f p.Value) p.Seeds next move
            ]
        )

    /// The report section: per family a table (learning rate × steps: LPT's headline and the next doubling's move)
    /// and a chart of LPT at many pairs against the steps, a line per learning rate.
    let section (c: Convergence) (pts: ConvergencePoint list) (bases: (string * string * float) list) =
        let b = Text.StringBuilder()
        let add (x: string) = b.AppendLine x |> ignore
        add (
            sprintf
                "<h2>Convergence of LPT: post-training learning rate × budget</h2><p>LPT alone, from the same bases, seeds %s; values are means over the seeds, in brackets the move when the budget doubles (paired by seed). Criterion: every recall headline moves by under %g points. Batch %d × %d tokens.</p>"
                (String.Join(", ", c.Base.Seeds))
                (100.0 * c.Tolerance)
                c.Base.PostTrain.BatchSize
                c.Base.PostTrain.SeqLen
        )
        for f in c.Base.Families do
            let fp = pts |> List.filter (fun p -> p.Family = f.Name)
            let hs = headlines c |> List.map (fun h -> h.Name) |> List.filter (fun h -> fp |> List.exists (fun p -> p.Headline = h))
            let header = [ "learning rate"; "steps" ] @ hs
            let baseRow =
                [ "base"; "0" ]
                @ [
                    for h in hs ->
                        match bases |> List.tryFind (fun (fam, n, _) -> fam = f.Name && n = h) with
                        | Some(_, _, v) -> sprintf "%.1f%%" (100.0 * v)
                        | None -> "-"
                ]
            let rows = [
                for (lr, steps), ps in fp |> List.groupBy (fun p -> p.LearningRate, p.Steps) |> List.sortBy fst ->
                    [ rate lr; string steps ]
                    @ [
                        for h in hs ->
                            match ps |> List.tryFind (fun p -> p.Headline = h) with
                            | Some { Value = v; Move = Some(_, d) } -> sprintf "%.1f%% (%+.1f)" (100.0 * v) (100.0 * d)
                            | Some p -> sprintf "%.1f%%" (100.0 * p.Value)
                            | None -> "-"
                    ]
            ]
            add (sprintf "<h3>%s</h3>" f.Name)
            add (StudyReport.htmlTable header (baseRow :: rows))
            let h = sprintf "MQAR ≥%d pairs" StudySummary.manyPairs
            let chart =
                [
                    for lr, ps in fp |> List.filter (fun p -> p.Headline = h) |> List.groupBy (fun p -> p.LearningRate) ->
                        Chart.Line(
                            ps |> List.map (fun p -> float p.Steps),
                            ps |> List.map (fun p -> 100.0 * p.Value),
                            Name = sprintf "lr %s" (rate lr),
                            ShowMarkers = true
                        )
                ]
                |> Chart.combine
                |> Chart.withTitle (sprintf "%s: LPT at %s against post-training steps" f.Name h)
                |> Chart.withXAxisStyle ("steps")
                |> Chart.withYAxisStyle "%"
                |> Chart.withXAxis (LayoutObjects.LinearAxis.init (AxisType = StyleParam.AxisType.Log))
                |> Chart.withSize (800, 400)
            add (GenericChart.toChartHTML chart)
        add "<ul>"
        for v in verdicts c pts bases do
            add (sprintf "<li>%s</li>" (Net.WebUtility.HtmlEncode v))
        add "</ul>"
        b.ToString()
