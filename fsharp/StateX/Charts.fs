namespace StateX

open System
open System.IO
open Deedle
open Plotly.NET
open Plotly.NET.LayoutObjects

/// <summary>
/// Plotly.NET charts of the analyses (<see cref="Analysis"/>). Every function returns a GenericChart (shown inline
/// by Plotly.NET.Interactive in notebooks); <see cref="save"/> writes a self-contained HTML file with plotly.js
/// embedded, which opens offline.
/// </summary>
[<RequireQualifiedAccess>]
module Charts =
    let private palette = [|
        31, 119, 180
        255, 127, 14
        44, 160, 44
        214, 39, 40
        148, 103, 189
        140, 86, 75
        227, 119, 194
        127, 127, 127
        188, 189, 34
        23, 190, 207
    |]

    let private color i (alpha: float) =
        let r, g, b = palette.[i % palette.Length]
        Color.fromString (sprintf "rgba(%d,%d,%d,%s)" r g b (alpha.ToString(Globalization.CultureInfo.InvariantCulture)))

    let private summaryColumns = set [ "mean"; "std"; "n"; "min"; "max" ]

    let private num (r: Analysis.Row) k =
        match r.TryFind k with
        | Some(Cell.Num v) -> v
        | Some(Cell.Text t) -> Double.Parse(t, Globalization.CultureInfo.InvariantCulture)
        | None -> nan

    let private label (r: Analysis.Row) (cols: string list) =
        match cols with
        | [] -> ""
        // Numbers need their column's name to mean anything ("pairs=8"); text names itself ("statex").
        | cs ->
            cs
            |> List.map (fun c ->
                match r.TryFind c with
                | Some(Cell.Num v) -> sprintf "%s=%s" c (v.ToString(Globalization.CultureInfo.InvariantCulture))
                | Some(Cell.Text t) -> t
                | None -> "")
            |> String.concat " / "

    let private titled (title: string) (xTitle: string) (yTitle: string) (chart: GenericChart) =
        chart |> Chart.withTitle title |> Chart.withXAxisStyle xTitle |> Chart.withYAxisStyle yTitle |> Chart.withSize (900, 560)

    /// <summary>
    /// A line per series with a band of ±1 std around it, from a summary frame (columns <c>x</c>, mean, std; every
    /// other column names the series). <c>logX</c> puts x on a log axis.
    /// </summary>
    let lines (x: string) (title: string) (yTitle: string) (logX: bool) (summary: Frame<int, string>) : GenericChart =
        let rows = Analysis.rows summary
        let seriesCols = summary.ColumnKeys |> Seq.filter (fun c -> c <> x && not (summaryColumns.Contains c)) |> List.ofSeq
        let groups = rows |> List.groupBy (fun r -> label r seriesCols)
        let traces =
            groups
            |> List.mapi (fun i (name, rs) ->
                let rs = rs |> List.sortBy (fun r -> num r x)
                let xs = rs |> List.map (fun r -> num r x)
                let mean = rs |> List.map (fun r -> num r "mean")
                let std = rs |> List.map (fun r -> let s = num r "std" in if Double.IsNaN s then 0.0 else s)
                Chart.Range(
                    x = xs,
                    y = mean,
                    upper = List.map2 (+) mean std,
                    lower = List.map2 (-) mean std,
                    mode = StyleParam.Mode.Lines_Markers,
                    Name = (if name = "" then yTitle else name),
                    LineColor = color i 1.0,
                    MarkerColor = color i 1.0,
                    RangeColor = color i 0.2,
                    GroupName = (if name = "" then yTitle else name),
                    UpperName = (if name = "" then "+1 std" else name + " +1 std"),
                    LowerName = (if name = "" then "−1 std" else name + " −1 std")
                )
                // The band's edges: no legend entries of their own (the group toggles with its line), no markers.
                |> GenericChart.mapTrace (fun t ->
                    t.RemoveProperty "legendgrouptitle" |> ignore
                    match t.TryGetTypedPropertyValue<string> "name" with
                    | Some n when n.EndsWith " std" ->
                        t.SetProperty("showlegend", false)
                        t.SetProperty("mode", "lines")
                        t.SetProperty("line", Line.init (Width = 0.0))
                    | _ -> ()
                    t))
        let chart = Chart.combine traces |> titled title x yTitle
        if logX then chart |> Chart.withXAxis (LinearAxis.init (AxisType = StyleParam.AxisType.Log, Title = Title.init x)) else chart

    /// Recall accuracy against state size (log x), a line per task and grouping (Analysis.recallVsStateSize).
    let recallVsStateSize (summary: Frame<int, string>) = lines "state_size" "Recall vs recurrent state size" "accuracy" true summary

    /// In-context-learning accuracy against shots (Analysis.iclVsShots).
    let iclVsShots (summary: Frame<int, string>) = lines "shots" "In-context learning vs shots" "accuracy" false summary

    /// Loss against position (log x; Analysis.lossVsPosition).
    let lossVsPosition (summary: Frame<int, string>) = lines "position" "Loss vs position" "loss (nats)" true summary

    /// Training curves (Analysis.trainingCurves).
    let trainingCurves (value: string) (summary: Frame<int, string>) = lines "step" "Training" value false summary

    /// The passkey grid as a heatmap: depth across, length down, accuracy 0..1 (Analysis.passkeyGrid).
    let passkeyHeatmap (title: string) (grid: Frame<int, string>) : GenericChart =
        let rows = Analysis.rows grid
        let depths = grid.ColumnKeys |> Seq.filter ((<>) "length") |> List.ofSeq
        let lengths = rows |> List.map (fun r -> string (int (num r "length")))
        let z = rows |> List.map (fun r -> depths |> List.map (fun d -> num r d))
        Chart.Heatmap(zData = z, X = depths, Y = lengths, ColorScale = StyleParam.Colorscale.Viridis, ReverseYAxis = false)
        // Fixed 0..1 colours, so grids of different models compare; the value printed in each cell.
        |> GenericChart.mapTrace (fun t ->
            t.SetProperty("zmin", 0.0)
            t.SetProperty("zmax", 1.0)
            t.SetProperty("texttemplate", "%{z:.2f}")
            t)
        |> titled title "depth (fraction of the context before the key)" "length (tokens)"
        |> Chart.withXAxis (LinearAxis.init (Title = Title.init "depth", AxisType = StyleParam.AxisType.Category))
        |> Chart.withYAxis (LinearAxis.init (Title = Title.init "length (tokens)", AxisType = StyleParam.AxisType.Category))

    /// Baseline and candidate as grouped bars per key, with ±std error bars (Analysis.sideBySide).
    let sideBySide (baseline: string) (candidate: string) (title: string) (frame: Frame<int, string>) : GenericChart =
        let rows = Analysis.rows frame
        let keys =
            frame.ColumnKeys
            |> Seq.filter (fun c -> not (List.contains c [ baseline; baseline + "_std"; candidate; candidate + "_std"; "delta" ]))
            |> List.ofSeq
        let names = rows |> List.map (fun r -> label r keys)
        let bars i (col: string) =
            Chart.Column(values = (rows |> List.map (fun r -> num r col)), Keys = names, Name = col, MarkerColor = color i 0.85)
            |> Chart.withYErrorStyle (
                Array = (rows |> List.map (fun r -> let s = num r (col + "_std") in if Double.IsNaN s then 0.0 else s))
            )
        Chart.combine [ bars 0 baseline; bars 1 candidate ] |> titled title "" "mean"

    /// The full HTML page of a chart with plotly.js embedded (no network needed to open it).
    let toHtml (chart: GenericChart) : string =
        chart |> Chart.withDisplayOptions (DisplayOptions.init (PlotlyJSReference = PlotlyJSReference.Full)) |> GenericChart.toEmbeddedHTML

    /// Writes the chart as a self-contained HTML file (plotly.js embedded); returns the path.
    let save (path: string) (chart: GenericChart) : string =
        match Path.GetDirectoryName(Path.GetFullPath path) with
        | null -> ()
        | d -> Directory.CreateDirectory d |> ignore
        StateX.IO.AtomicFile.WriteAllText(path, toHtml chart)
        path
