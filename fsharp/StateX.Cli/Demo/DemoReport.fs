/// The study's self-contained HTML report: headline table, verdicts, and charts (plotly.js embedded, works offline).
module StateX.Cli.Demo.DemoReport

open System
open System.IO
open System.Net
open System.Text.Json.Nodes
open Plotly.NET
open StateX.Cli.Demo.DemoPreset
open StateX.Cli.Demo.DemoStudy
open StateX.Cli.Demo.DemoSummary

let private arms = armLabels
let private colors = Map [ "base", (127, 127, 127); "lpt", (31, 119, 180); "statex", (214, 39, 40); "scratch", (44, 160, 44) ]
/// The arms a family has rows for (the control runs only where the preset asks for it).
let private armsOf (rows: Row list) (family: string) =
    arms |> List.filter (fun (a, _) -> rows |> List.exists (fun r -> r.Family = family && r.Arm = a))
let private rgba arm (a: float) =
    let r, g, b = colors[arm]
    Color.fromString (sprintf "rgba(%d,%d,%d,%s)" r g b (a.ToString(Globalization.CultureInfo.InvariantCulture)))

/// plotly.js as shipped inside Plotly.NET, so the report needs no network.
let private plotlyJs () =
    let asm = typeof<GenericChart>.Assembly
    let name = asm.GetManifestResourceNames() |> Array.find (fun n -> n.StartsWith "Plotly.NET.plotly" && n.EndsWith ".js")
    use s = asm.GetManifestResourceStream name
    use r = new StreamReader(s)
    r.ReadToEnd()

let private settingValue key setting = DemoStudy.settingValue key setting |> Option.get

/// Mean with a min–max band across seeds, a line per arm.
let private band (title: string) (xTitle: string) (yTitle: string) (series: (string * (float * float list) list) list) =
    [ for arm, points in series do
        let points = points |> List.sortBy fst
        let xs = points |> List.map fst
        let mean = points |> List.map (snd >> List.average)
        let lo = points |> List.map (snd >> List.min)
        let hi = points |> List.map (snd >> List.max)
        let label = arms |> List.find (fst >> (=) arm) |> snd
        yield Chart.Range(x = xs, y = mean, upper = hi, lower = lo, mode = StyleParam.Mode.Lines_Markers, Name = label,
                          LineColor = rgba arm 1.0, MarkerColor = rgba arm 1.0, RangeColor = rgba arm 0.18,
                          UpperName = label + " max", LowerName = label + " min") ]
    |> Chart.combine
    |> Chart.withTitle title
    |> Chart.withXAxisStyle xTitle
    |> Chart.withYAxisStyle yTitle
    |> Chart.withSize (760, 460)

let private mqarChart (rows: Row list) (family: string) =
    [ for arm, _ in armsOf rows family ->
        arm,
        rows |> List.filter (fun r -> r.Family = family && r.Arm = arm && r.Task = "mqar")
        |> List.groupBy (fun r -> settingValue "pairs" r.Setting)
        |> List.map (fun (pairs, rs) -> pairs, rs |> List.map (fun r -> r.Value)) ]
    |> band (sprintf "%s: MQAR recall vs key–value pairs (mean, band = min–max over seeds)" family) "key–value pairs" "accuracy"

let private passkeyHeatmap (rows: Row list) (family: string) (arm: string) =
    let cells = rows |> List.filter (fun r -> r.Family = family && r.Arm = arm && r.Task = "passkey")
    let lengths = cells |> List.map (fun r -> settingValue "length" r.Setting) |> List.distinct |> List.sort
    let depths = cells |> List.map (fun r -> settingValue "depth" r.Setting) |> List.distinct |> List.sort
    let z =
        [ for l in lengths ->
            [ for d in depths ->
                cells |> List.filter (fun r -> settingValue "length" r.Setting = l && settingValue "depth" r.Setting = d)
                |> List.map (fun r -> r.Value) |> fun vs -> if vs.IsEmpty then nan else List.average vs ] ]
    let label = arms |> List.find (fst >> (=) arm) |> snd
    Chart.Heatmap(zData = z, X = (depths |> List.map string), Y = (lengths |> List.map (int >> string)), ColorScale = StyleParam.Colorscale.Viridis)
    |> GenericChart.mapTrace (fun t -> t.SetProperty("zmin", 0.0); t.SetProperty("zmax", 1.0); t.SetProperty("texttemplate", "%{z:.2f}"); t)
    |> Chart.withTitle (sprintf "%s %s: passkey accuracy" family label)
    |> Chart.withXAxis (LayoutObjects.LinearAxis.init (Title = Title.init "depth", AxisType = StyleParam.AxisType.Category))
    |> Chart.withYAxis (LayoutObjects.LinearAxis.init (Title = Title.init "context length (tokens)", AxisType = StyleParam.AxisType.Category))
    |> Chart.withSize (420, 360)

/// Training loss per step from each run's metrics.jsonl, mean with a min–max band across seeds.
let private trainingChart (root: string) (seeds: int list) (family: string) =
    let curve arm seed =
        let path = Path.Combine(root, sprintf "seed%d" seed, family, arm, "metrics.jsonl")
        if not (File.Exists path) then []
        else
            File.ReadAllLines path |> Array.filter (fun l -> l <> "")
            |> Array.map (fun l -> let o = JsonNode.Parse l in float (o["step"].GetValue<int>()), o["loss"].GetValue<float>())
            |> List.ofArray
    [ for arm in [ "lpt"; "statex" ] ->
        arm,
        seeds |> List.collect (curve arm) |> List.groupBy fst |> List.map (fun (s, vs) -> s, vs |> List.map snd) ]
    |> List.filter (fun (_, pts) -> not pts.IsEmpty)
    |> band (sprintf "%s: post-training loss (LPT vs StateX, equal budget)" family) "step" "training loss (nats/token)"

let private htmlTable (header: string list) (rows: string list list) =
    let cell tag (s: string) = sprintf "<%s>%s</%s>" tag (WebUtility.HtmlEncode s) tag
    let sb = Text.StringBuilder("<table>")
    sb.Append("<tr>").Append(String.Join("", header |> List.map (cell "th"))).Append("</tr>") |> ignore
    for r in rows do sb.Append("<tr>").Append(String.Join("", r |> List.map (cell "td"))).Append("</tr>") |> ignore
    sb.Append("</table>").ToString()

/// Writes ROOT/report.html; returns its path.
let write (s: Study) (families: string list) (rows: Row list) (root: string) =
    let p = s.Preset
    let seeds = rows |> List.map (fun r -> r.Seed) |> List.distinct |> List.sort
    let post = p.PostTrain.SeqLen
    let chart (c: GenericChart) = GenericChart.toChartHTML c
    let body = Text.StringBuilder()
    let add (s: string) = body.AppendLine s |> ignore
    add (sprintf "<h1>StateX demo — preset %s</h1>" (WebUtility.HtmlEncode p.Name))
    let source, data =
        if s.Bases.IsEmpty then
            (match p.RecallPhase with
             | Some(b, _) -> sprintf "a base model pretrained from scratch (%d steps × %d×%d tokens of MQAR alone, then %d steps × %d×%d tokens of the mixture)" b.Steps b.Batch b.SeqLen p.Pretrain.Steps p.Pretrain.Batch p.Pretrain.SeqLen
             | None -> sprintf "a base model pretrained from scratch (%d steps × %d×%d tokens)" p.Pretrain.Steps p.Pretrain.Batch p.Pretrain.SeqLen),
            "MQAR, passkey documents and generated English-like text (<code>synth:text</code>), no download"
        else
            sprintf "the given checkpoint as the base model (%s)" (WebUtility.HtmlEncode(String.Join("; ", s.Bases |> Seq.map (fun kv -> sprintf "%s: %s" kv.Key kv.Value)))),
            sprintf "<code>%s</code>; held-out loss on <code>%s</code>" (WebUtility.HtmlEncode p.PostTrainData) (WebUtility.HtmlEncode s.HeldOut)
    add (sprintf "<p>Seeds %s. Each family: %s, then two post-training arms on the same data, tokens, schedule and seed (%d steps × %d×%d tokens): <b>LPT</b> trains the base model as is; <b>StateX</b> first enlarges the recurrent state of some layers (%s), then trains. Data: %s.</p>"
            (String.Join(", ", seeds)) source p.PostTrain.Steps p.PostTrain.Batch p.PostTrain.SeqLen
            (WebUtility.HtmlEncode(String.Join("; ", families |> List.map (fun f -> let e = p.Expansions[f] in sprintf "%s: %O on %O, %s" f e.Rewrite e.Layers ((string e.Init).ToLowerInvariant()))))) data)
    if rows |> List.exists (fun r -> r.Arm = "scratch") then
        add (sprintf "<p><b>Control</b> (green): the StateX rewrite on every layer, pretrained from scratch with the base's data and budget. It recalling more than the base at %d pairs and more is the evidence that the base's recall is limited by its state, which is what StateX addresses.</p>" manyPairs)
    add "<h2>Headline numbers</h2>"
    add (sprintf "<pre>%s</pre>" (WebUtility.HtmlEncode(table rows families post)))
    add "<h2>Outcome as measured</h2><ul>"
    for v in verdicts rows families post do add (sprintf "<li>%s</li>" (WebUtility.HtmlEncode v))
    add "</ul>"
    add "<h2>State size and parameters</h2>"
    let hs = headlines post |> List.filter (fun h -> h.Name = "state" || h.Name = "params")
    add (htmlTable [ "family"; "arm"; "recurrent state (elements per sequence)"; "parameters" ]
            [ for f in families do
                for arm, label in armsOf rows f ->
                    [ f; label ] @ (hs |> List.map (fun h -> perSeed rows f arm h |> List.tryHead |> Option.map (fun (_, v) -> sprintf "%.0f" v) |> Option.defaultValue "-")) ])
    for f in families do
        add (sprintf "<h2>%s</h2><div class=\"row\">" f)
        add (chart (mqarChart rows f))
        add (chart (trainingChart root seeds f))
        add "</div><div class=\"row\">"
        for arm, _ in armsOf rows f do add (chart (passkeyHeatmap rows f arm))
        add (sprintf "</div><p>Passkey: post-training used %d-token sequences; longer contexts test extrapolation.</p>" post)
    let html =
        sprintf """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>StateX demo (%s)</title>
<style>body{font-family:sans-serif;max-width:1500px;margin:1em auto;padding:0 1em} pre{background:#f6f6f6;padding:.8em;overflow-x:auto}
table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right} .row{display:flex;flex-wrap:wrap;gap:1em}</style>
<script>%s</script></head>
<body>
%s
<p>Raw numbers: results.csv; per-run metrics: seedN/FAMILY/ARM/metrics.jsonl.</p>
</body></html>""" p.Name (plotlyJs ()) (body.ToString())
    let path = Path.Combine(root, "report.html")
    StateX.IO.AtomicFile.WriteAllText(path, html)
    path
