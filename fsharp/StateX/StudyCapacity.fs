namespace StateX

open System
open System.IO
open Plotly.NET
open StateX.Evaluation

/// <summary>
/// State capacity, as Stuffed Mamba (Chen et al., 2024) measures it: models of one family that differ only in their
/// recurrent state size (×1, ×2, ×4, ×8), trained alike, then the largest MQAR pair count and the longest passkey
/// context each retrieves at ≥ <c>Threshold</c>, against the state size, with a fitted power law; and loss against
/// position out to many times the training length (state collapse).
/// </summary>
type Capacity = {
    Name: string
    /// family → (scale label, model) from the smallest state up; pretrained with the family's phases.
    Models: (string * (string * Model) list) list
    Pretrain: Map<string, TrainSpec list>
    Evaluation: EvalSpec
    Seeds: int list
    /// Accuracy a setting must reach to count as retrieved.
    Threshold: float
}

[<RequireQualifiedAccess>]
module StudyCapacity =
    /// One pipeline per (family, scale, seed): pretrain the model, evaluate it; its rows carry family, scale, seed labels.
    let runs (c: Capacity) = [
        for seed in c.Seeds do
            for family, models in c.Models do
                for scale, model in models ->
                    let phases = c.Pretrain[family] |> List.map (TrainSpec.seed (int64 seed))
                    let p = Pipeline.create (sprintf "%s/%s/seed%d" family scale seed) model
                    let p = phases.Tail |> List.fold (fun p t -> Pipeline.postTrain t p) (Pipeline.pretrain phases.Head p)
                    (family, scale, seed, model), Pipeline.evaluate c.Evaluation p
    ]

    /// Job keys for worker processes: "family/scale/seedN".
    let jobs (c: Capacity) = [ for (f, scale, seed, _), _ in runs c -> sprintf "%s/%s/seed%d" f scale seed ]

    let private resultsFile (root: string) = Path.Combine(root, "results.jsonl")

    let private runSome (settings: RunSettings) (root: string) (keep: string -> bool) (c: Capacity) = [
        for (f, scale, seed, model), p in runs c do
            if keep (sprintf "%s/%s/seed%d" f scale seed) then
                let r = Pipeline.run settings (Path.Combine(root, "stages")) p
                for e in r.Results ->
                    EvalResult(
                        e.Model,
                        e.Task,
                        e.Setting,
                        e.Metric,
                        e.Value,
                        e.N,
                        Labels = [
                            Collections.Generic.KeyValuePair("family", f)
                            Collections.Generic.KeyValuePair("scale", scale)
                            Collections.Generic.KeyValuePair("state", string (Model.stateSize model))
                            Collections.Generic.KeyValuePair("seed", string seed)
                        ]
                    )
    ]

    /// Runs one job (a worker's unit).
    let runJob (settings: RunSettings) (root: string) (c: Capacity) (key: string) =
        if not (List.contains key (jobs c)) then invalidArg "job" (sprintf "capacity study %s has no job '%s'" c.Name key)
        runSome settings root ((=) key) c |> ignore

    /// Runs (or resumes) every pipeline and writes results.csv / results.jsonl; returns the results.
    let run (settings: RunSettings) (root: string) (c: Capacity) : EvalResult list =
        let rs = runSome settings root (fun _ -> true) c
        ResultFiles.Write(resultsFile root, rs)
        ResultFiles.Write(Path.Combine(root, "results.csv"), rs)
        rs

    let private label (k: string) (e: EvalResult) = e.Labels |> Seq.find (fun kv -> kv.Key = k) |> fun kv -> kv.Value
    let private num (k: string) (e: EvalResult) = Convert.ToDouble(e.Setting[k], Globalization.CultureInfo.InvariantCulture)

    /// One model's capacity: the largest MQAR pair count and the longest passkey length (mean over depths) at ≥ threshold.
    type Point = { Family: string; Scale: string; State: int64; Seed: int; Pairs: float option; PasskeyLength: float option }

    let private largest (threshold: float) (settings: (float * float) list) =
        // The largest setting whose accuracy reaches the threshold, provided every smaller one does too (a lucky
        // hit past a failure does not count).
        settings |> List.sortBy fst |> List.takeWhile (fun (_, acc) -> acc >= threshold) |> List.tryLast |> Option.map fst

    let points (c: Capacity) (rs: EvalResult list) : Point list =
        rs
        |> List.groupBy (fun e -> label "family" e, label "scale" e, label "state" e, label "seed" e)
        |> List.map (fun ((f, scale, state, seed), es) ->
            let mqar = es |> List.filter (fun e -> e.Task = "mqar" && e.Metric = "accuracy") |> List.map (fun e -> num "pairs" e, e.Value)
            let passkey =
                es
                |> List.filter (fun e -> e.Task = "passkey" && e.Metric = "accuracy")
                |> List.groupBy (num "length")
                |> List.map (fun (l, xs) -> l, xs |> List.averageBy (fun e -> e.Value))
            {
                Family = f
                Scale = scale
                State = int64 state
                Seed = int seed
                Pairs = largest c.Threshold mqar
                PasskeyLength = largest c.Threshold passkey
            })

    /// Least-squares fit of log2 y = a + b·log2 x over the points that have a value: (a, b), the exponent b being
    /// how capacity grows with state. None with fewer than two distinct states.
    let fit (xy: (float * float) list) =
        let pts = xy |> List.filter (fun (x, y) -> x > 0.0 && y > 0.0) |> List.map (fun (x, y) -> log x / log 2.0, log y / log 2.0)
        if (pts |> List.map fst |> List.distinct).Length < 2 then
            None
        else
            let mx, my = List.averageBy fst pts, List.averageBy snd pts
            let b = (pts |> List.sumBy (fun (x, y) -> (x - mx) * (y - my))) / (pts |> List.sumBy (fun (x, _) -> (x - mx) ** 2.0))
            Some(my - b * mx, b)

    /// The report section: a table per family (state, capacity per seed), capacity against state on log axes with
    /// the fitted trend, and loss against position (state collapse).
    let section (c: Capacity) (rs: EvalResult list) =
        let ps = points c rs
        let b = Text.StringBuilder()
        let add (x: string) = b.AppendLine x |> ignore
        let show =
            function
            | Some v -> sprintf "%g" v
            | None -> "none"
        add (
            sprintf
                "<h2>State capacity</h2><p>Models of each family that differ only in state size, trained alike (seeds %s); capacity = the largest MQAR pair count, and the longest passkey context (mean over depths), retrieved at ≥ %.0f%% with every smaller setting also retrieved. Fit: log₂ capacity = a + b·log₂ state.</p>"
                (String.Join(", ", c.Seeds))
                (100.0 * c.Threshold)
        )
        let traces = Collections.Generic.List<GenericChart>()
        for family, _ in c.Models do
            let fp = ps |> List.filter (fun p -> p.Family = family) |> List.sortBy (fun p -> p.State, p.Seed)
            add (sprintf "<h3>%s</h3>" family)
            add (
                StudyReport.htmlTable [ "scale"; "state (elements)"; "seed"; "MQAR pairs ≥ threshold"; "passkey length ≥ threshold" ] [
                    for p in fp -> [ p.Scale; string p.State; string p.Seed; show p.Pairs; show p.PasskeyLength ]
                ]
            )
            for what, get in [ "MQAR pairs", (fun (p: Point) -> p.Pairs); "passkey tokens", (fun p -> p.PasskeyLength) ] do
                let xy = fp |> List.choose (fun p -> get p |> Option.map (fun v -> float p.State, v))
                if not xy.IsEmpty then
                    traces.Add(Chart.Point(xy, Name = sprintf "%s %s" family what))
                    match fit xy with
                    | Some(a, slope) ->
                        let xs = xy |> List.map fst |> List.distinct |> List.sort
                        traces.Add(
                            Chart.Line(
                                xs,
                                xs |> List.map (fun x -> 2.0 ** (a + slope * log x / log 2.0)),
                                Name = sprintf "%s %s fit: ∝ state^%.2f" family what slope
                            )
                        )
                        add (sprintf "<p>%s, %s: capacity ∝ state^%.2f (fit over %d models)</p>" family what slope xy.Length)
                    | None -> ()
        if traces.Count > 0 then
            Chart.combine traces
            |> Chart.withTitle "Capacity against state size (log axes)"
            |> Chart.withXAxis (
                LayoutObjects.LinearAxis.init (
                    Title = Title.init "recurrent state (elements per sequence)",
                    AxisType = StyleParam.AxisType.Log
                )
            )
            |> Chart.withYAxis (
                LayoutObjects.LinearAxis.init (Title = Title.init "capacity (pairs / tokens)", AxisType = StyleParam.AxisType.Log)
            )
            |> Chart.withSize (900, 520)
            |> GenericChart.toChartHTML
            |> add
        // State collapse: loss by position bin, mean over seeds, a line per model.
        let lossRows = rs |> List.filter (fun e -> e.Task = "loss_vs_position" && e.Metric = "loss")
        if not lossRows.IsEmpty then
            [
                for (f, scale), es in lossRows |> List.groupBy (fun e -> label "family" e, label "scale" e) ->
                    let pts =
                        es
                        |> List.groupBy (num "to")
                        |> List.map (fun (x, xs) -> x, xs |> List.averageBy (fun e -> e.Value))
                        |> List.sortBy fst
                    Chart.Line(pts, Name = sprintf "%s %s" f scale)
            ]
            |> Chart.combine
            |> Chart.withTitle "Loss against position, past the training length (state collapse shows as a rise)"
            |> Chart.withXAxis (
                LayoutObjects.LinearAxis.init (Title = Title.init "position (end of bin)", AxisType = StyleParam.AxisType.Log)
            )
            |> Chart.withYAxisStyle "loss (nats/token)"
            |> Chart.withSize (900, 460)
            |> GenericChart.toChartHTML
            |> add
        b.ToString()
