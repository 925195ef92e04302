namespace StateX

open System
open System.IO
open System.Net
open System.Text.Json.Nodes
open Plotly.NET

/// <summary>
/// A study's self-contained HTML report (plotly.js embedded, opens offline): the headline table with seed spread,
/// the verdicts, state and parameters, recall against pairs, passkey heatmaps, and post-training curves (smoothed,
/// with the raw values behind them). Extra sections (an ablation, a capacity study) are appended as HTML.
/// </summary>
[<RequireQualifiedAccess>]
module StudyReport =
    let private palette = [| 127, 127, 127; 31, 119, 180; 214, 39, 40; 255, 127, 14; 148, 103, 189; 140, 86, 75; 44, 160, 44 |]

    /// A stable colour per arm: base grey, LPT blue, StateX arms red/orange/purple/brown, control green.
    let private colour (arms: (string * string) list) (arm: string) (alpha: float) =
        let i =
            if arm = Study.controlArm then
                palette.Length - 1
            else
                match arms |> List.tryFindIndex (fun (a, _) -> a = arm) with
                | Some i -> min i (palette.Length - 2)
                | None -> 0
        let r, g, b = palette[i]
        Color.fromString (sprintf "rgba(%d,%d,%d,%s)" r g b (alpha.ToString(Globalization.CultureInfo.InvariantCulture)))

    let private label (arms: (string * string) list) arm =
        arms |> List.tryFind (fst >> (=) arm) |> Option.map snd |> Option.defaultValue arm

    /// Mean with a min–max band across seeds, a line per arm.
    let private band
        (arms: (string * string) list)
        (title: string)
        (xTitle: string)
        (yTitle: string)
        (series: (string * (float * float list) list) list)
        =
        [
            for arm, points in series do
                let points = points |> List.sortBy fst
                let l = label arms arm
                yield
                    Chart.Range(
                        x = (points |> List.map fst),
                        y = (points |> List.map (snd >> List.average)),
                        upper = (points |> List.map (snd >> List.max)),
                        lower = (points |> List.map (snd >> List.min)),
                        mode = StyleParam.Mode.Lines_Markers,
                        Name = l,
                        LineColor = colour arms arm 1.0,
                        MarkerColor = colour arms arm 1.0,
                        RangeColor = colour arms arm 0.18,
                        UpperName = l + " max",
                        LowerName = l + " min"
                    )
        ]
        |> Chart.combine
        |> Chart.withTitle title
        |> Chart.withXAxisStyle xTitle
        |> Chart.withYAxisStyle yTitle
        |> Chart.withSize (760, 460)

    /// Per arm of a family, (setting `key`, the seeds' values) of one task and metric, for `band`; arms without rows left out.
    let private perSetting
        (arms: (string * string) list)
        (rows: StudyRow list)
        (family: string)
        (task: string)
        (metric: string)
        (key: string)
        =
        [
            for arm, _ in arms ->
                arm,
                rows
                |> List.filter (fun r -> r.Family = family && r.Arm = arm && r.Task = task && r.Metric = metric)
                |> List.groupBy (fun r -> (r.SettingValue key).Value)
                |> List.map (fun (x, rs) -> x, rs |> List.map (fun r -> r.Value))
        ]
        |> List.filter (fun (_, pts) -> not pts.IsEmpty)

    let private mqarChart (arms: (string * string) list) (rows: StudyRow list) (family: string) =
        perSetting arms rows family "mqar" "accuracy" "pairs"
        |> band arms (sprintf "%s: MQAR recall vs key–value pairs (mean, band = min–max over seeds)" family) "key–value pairs" "accuracy"

    let private passkeyHeatmap (arms: (string * string) list) (rows: StudyRow list) (family: string) (arm: string) =
        let cells = rows |> List.filter (fun r -> r.Family = family && r.Arm = arm && r.Task = "passkey" && r.Metric = "accuracy")
        let lengths = cells |> List.map (fun r -> (r.SettingValue "length").Value) |> List.distinct |> List.sort
        let depths = cells |> List.map (fun r -> (r.SettingValue "depth").Value) |> List.distinct |> List.sort
        let z = [
            for l in lengths ->
                [
                    for d in depths ->
                        cells
                        |> List.filter (fun r -> r.SettingValue "length" = Some l && r.SettingValue "depth" = Some d)
                        |> List.map (fun r -> r.Value)
                        |> fun vs -> if vs.IsEmpty then nan else List.average vs
                ]
        ]
        Chart.Heatmap(
            zData = z,
            X = (depths |> List.map string),
            Y = (lengths |> List.map (int >> string)),
            ColorScale = StyleParam.Colorscale.Viridis
        )
        |> GenericChart.mapTrace (fun t ->
            t.SetProperty("zmin", 0.0)
            t.SetProperty("zmax", 1.0)
            t.SetProperty("texttemplate", "%{z:.2f}")
            t)
        |> Chart.withTitle (sprintf "%s %s: passkey accuracy" family (label arms arm))
        |> Chart.withXAxis (LayoutObjects.LinearAxis.init (Title = Title.init "depth", AxisType = StyleParam.AxisType.Category))
        |> Chart.withYAxis (
            LayoutObjects.LinearAxis.init (Title = Title.init "context length (tokens)", AxisType = StyleParam.AxisType.Category)
        )
        |> Chart.withSize (420, 360)

    /// State collapse as Stuffed Mamba shows it: text loss against position (bins ending at powers of two, log x),
    /// mean with a min–max band over seeds, a line per arm, with the post-training length marked.
    let private lossByPositionChart (arms: (string * string) list) (rows: StudyRow list) (family: string) (trainLength: int) =
        perSetting arms rows family "loss_vs_position" "loss" "to"
        |> band
            arms
            (sprintf "%s: text loss against position (post-training length %d; a rise past it is state collapse)" family trainLength)
            "position (end of bin)"
            "loss (nats/token)"
        |> Chart.withXAxis (
            LayoutObjects.LinearAxis.init (Title = Title.init "position (end of bin, log)", AxisType = StyleParam.AxisType.Log)
        )
        |> Chart.withShape (
            LayoutObjects.Shape.init (
                ShapeType = StyleParam.ShapeType.Line,
                X0 = trainLength,
                X1 = trainLength,
                Y0 = 0,
                Y1 = 1,
                Yref = "paper",
                Line = Line.init (Dash = StyleParam.DrawingStyle.Dash)
            )
        )

    /// Exponential moving average (weight `alpha` on the newest value), for a readable noisy curve.
    let smooth (alpha: float) (ys: float list) =
        ys
        |> List.scan
            (fun (acc: float option) y ->
                Some(
                    match acc with
                    | Some a -> a + alpha * (y - a)
                    | None -> y
                ))
            None
        |> List.choose id

    /// (step, loss) of a training stage's metrics.jsonl.
    let private curve (path: string) =
        if not (File.Exists path) then
            []
        else
            [
                for l in File.ReadLines path do
                    if l.Trim() <> "" then
                        let o = JsonNode.Parse(l).AsObject()
                        match o["step"], o["loss"] with
                        | null, _
                        | _, null -> ()
                        | s, v -> yield float (s.GetValue<int>()), v.GetValue<float>()
            ]

    /// Post-training loss of LPT and the StateX arms, mean over seeds: smoothed lines over the raw values (faint).
    let private trainingChart (arms: (string * string) list) (root: string) (runs: StudyRun list) (family: string) =
        [
            for arm, _ in arms do
                let curves =
                    [
                        for r in runs do
                            if r.Family = family && r.Arm = arm then
                                let post =
                                    Pipeline.folders (Study.stagesFolder root) r.Pipeline
                                    |> List.tryFindBack (fun (s, _, _) ->
                                        match s with
                                        | PostTrain _ -> true
                                        | _ -> false)
                                match post with
                                | Some(_, _, folder) when arm <> Study.baseArm && arm <> Study.controlArm ->
                                    yield curve (Path.Combine(folder, "metrics.jsonl"))
                                | _ -> ()
                    ]
                    |> List.filter (List.isEmpty >> not)
                if not curves.IsEmpty then
                    let mean =
                        curves
                        |> List.concat
                        |> List.groupBy fst
                        |> List.sortBy fst
                        |> List.map (fun (s, vs) -> s, vs |> List.averageBy snd)
                    let xs, ys = List.map fst mean, List.map snd mean
                    let l = label arms arm
                    yield Chart.Line(x = xs, y = ys, Name = l + " (raw)", LineColor = colour arms arm 0.2, ShowLegend = false)
                    yield Chart.Line(x = xs, y = smooth 0.1 ys, Name = l, LineColor = colour arms arm 1.0)
        ]
        |> Chart.combine
        |> Chart.withTitle (sprintf "%s: post-training loss (mean over seeds; EMA 0.1 over the raw values, which are faint)" family)
        |> Chart.withXAxisStyle "step"
        |> Chart.withYAxisStyle "training loss (nats/token)"
        |> Chart.withSize (760, 460)

    /// An HTML table (cells encoded); the first column left-aligned.
    let htmlTable (header: string list) (rows: string list list) =
        let cell tag (s: string) = sprintf "<%s>%s</%s>" tag (WebUtility.HtmlEncode s) tag
        let sb = Text.StringBuilder("<table>")
        sb.Append("<tr>").Append(String.Join("", header |> List.map (cell "th"))).Append("</tr>") |> ignore
        for r in rows do
            sb.Append("<tr>").Append(String.Join("", r |> List.map (cell "td"))).Append("</tr>") |> ignore
        sb.Append("</table>").ToString()

    /// plotly.js as shipped inside Plotly.NET, so the report needs no network.
    let plotlyJs () =
        let asm = typeof<GenericChart>.Assembly
        let name = asm.GetManifestResourceNames() |> Array.find (fun n -> n.StartsWith "Plotly.NET.plotly" && n.EndsWith ".js")
        use s = asm.GetManifestResourceStream name
        use r = new StreamReader(s)
        r.ReadToEnd()

    /// A whole page around `body`, with plotly.js inline.
    let page (title: string) (body: string) =
        sprintf
            """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>%s</title>
<style>body{font-family:sans-serif;max-width:1500px;margin:1em auto;padding:0 1em} code{background:#f6f6f6}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right} td:first-child,th:first-child{text-align:left}
.row{display:flex;flex-wrap:wrap;gap:1em}</style>
<script>%s</script></head>
<body>
%s
</body></html>"""
            (WebUtility.HtmlEncode title)
            (plotlyJs ())
            body

    /// The study's sections (headline, verdicts, sizes, charts) as HTML, without the page around them.
    let body (s: Study) (root: string) (rows: StudyRow list) (description: string) =
        let b = Text.StringBuilder()
        let add (x: string) = b.AppendLine x |> ignore
        let chart (c: GenericChart) = GenericChart.toChartHTML c
        let seeds = rows |> List.map (fun r -> r.Seed) |> List.distinct |> List.sort
        add (sprintf "<h1>StateX study — %s</h1>" (WebUtility.HtmlEncode s.Name))
        add (sprintf "<p>%s</p>" description)
        add (
            sprintf
                "<p>Seeds %s. Post-training of every arm: %d steps × %d×%d tokens of <code>%s</code>, lr %g. The numbers depend on the machine's floating-point paths: the same seeds give other digits on another CPU; compare conclusions, not digits.</p>"
                (String.Join(", ", seeds))
                s.PostTrain.Steps
                (s.PostTrain.BatchSize * s.PostTrain.GradAccum)
                s.PostTrain.SeqLen
                (WebUtility.HtmlEncode s.PostTrain.Data)
                s.PostTrain.LearningRate
        )
        add "<h2>Headline numbers</h2><p>Mean ± half the range across seeds; Δ rows: mean [min, max] of the arm − LPT, paired by seed.</p>"
        for _, table in StudySummary.cells s rows do
            add (htmlTable (List.head table) (List.tail table))
        add "<h2>Outcome as measured</h2><ul>"
        for v in StudySummary.verdicts s rows do
            add (sprintf "<li>%s</li>" (WebUtility.HtmlEncode v))
        add "</ul>"
        let runs = Study.runs s
        for f in s.Families do
            let arms =
                StudySummary.arms s f.Name |> List.filter (fun (a, _) -> rows |> List.exists (fun r -> r.Family = f.Name && r.Arm = a))
            add (sprintf "<h2>%s</h2><div class=\"row\">" f.Name)
            add (chart (mqarChart arms rows f.Name))
            add (chart (trainingChart arms root runs f.Name))
            if rows |> List.exists (fun r -> r.Family = f.Name && r.Task = "loss_vs_position") then
                add (chart (lossByPositionChart arms rows f.Name (StudySummary.trainLength s)))
            add "</div><div class=\"row\">"
            for arm, _ in arms do
                if rows |> List.exists (fun r -> r.Family = f.Name && r.Arm = arm && r.Task = "passkey") then
                    add (chart (passkeyHeatmap arms rows f.Name arm))
            add (
                sprintf
                    "</div><p>Passkey: post-training used %d-token sequences; longer contexts test extrapolation.</p>"
                    s.PostTrain.SeqLen
            )
        add
            "<p>Raw numbers: results.csv / results.jsonl (labels family, arm, seed); each stage's folder under stages/ holds its metrics.jsonl, log and model.</p>"
        b.ToString()

    /// Writes ROOT/report.html (the study's sections, then `extra` HTML sections); returns its path.
    let write (s: Study) (root: string) (rows: StudyRow list) (description: string) (extra: string list) =
        let path = Path.Combine(root, "report.html")
        IO.AtomicFile.WriteAllText(
            path,
            page (sprintf "StateX study (%s)" s.Name) (body s root rows description + String.Join("\n", extra))
        )
        path
