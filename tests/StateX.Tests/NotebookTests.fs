/// Every notebook in notebooks/, executed as a user's Jupyter runs it: `jupyter nbconvert --execute` in the real
/// .NET Interactive kernel (`.net-fsharp`, set up by scripts/notebook-kernel), at tiny sizes, against the assemblies
/// under test (the notebooks' `../.build/cli` pointed at them). A run fails on any cell error, naming the cell and the
/// error; then each notebook's printed tables and inline Plotly charts are checked.
module StateX.Tests.NotebookTests

open System
open System.ComponentModel
open System.Diagnostics
open System.IO
open System.Text.Json.Nodes
open Expecto
open StateX

let private repo = FSharpModelTests.repoRoot
let private kernelName = ".net-fsharp"
let private setupCommand = "scripts/notebook-kernel"

type private ProcessOutcome = { Code: int; Out: string; Err: string }

let private runProcess (file: string) (args: string list) (env: (string * string) list) (timeoutSeconds: int) =
    let psi = ProcessStartInfo(file, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
    for a in args do
        psi.ArgumentList.Add a
    for k, v in env do
        psi.Environment.[k] <- v
    let p =
        try
            Process.Start psi
        with :? Win32Exception ->
            failtestf "%s is not installed: run %s --install (or apt-get install jupyter-nbconvert python3-nbclient)" file setupCommand
    use p = p
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    if not (p.WaitForExit(timeoutSeconds * 1000)) then
        p.Kill true
        failtestf "%s %s did not finish in %d s" file (String.Join(" ", args)) timeoutSeconds
    { Code = p.ExitCode; Out = out.Result; Err = err.Result }

/// Stops the test with the set-up command when Jupyter or the kernel is missing.
let private requireKernel () =
    let paths = runProcess "jupyter" [ "--paths"; "--json" ] [] 60
    if paths.Code <> 0 then failtestf "jupyter --paths failed (%s): run %s" (paths.Err.Trim()) setupCommand
    let data = JsonNode.Parse(paths.Out).["data"].AsArray() |> Seq.map (fun d -> d.GetValue<string>()) |> List.ofSeq
    if not (data |> List.exists (fun d -> File.Exists(Path.Combine(d, "kernels", kernelName, "kernel.json")))) then
        failtestf
            "Jupyter's %s kernel is not set up (no kernels/%s/kernel.json in %s): run %s"
            kernelName
            kernelName
            (String.Join(", ", data))
            setupCommand

let private text (node: JsonNode) =
    match node with
    | null -> ""
    | :? JsonArray as a -> a |> Seq.map (fun l -> l.GetValue<string>()) |> String.concat ""
    | n -> n.GetValue<string>()

/// A code cell after execution.
type Cell = {
    Index: int
    Source: string
    Outputs: JsonObject list
} with

    member c.FirstLine = c.Source.Split('\n') |> Array.find (fun l -> not (l.StartsWith "#!")) |> fun l -> l.Trim()

    member c.Stream(name: string) =
        c.Outputs
        |> List.filter (fun o -> text o.["output_type"] = "stream" && text o.["name"] = name)
        |> List.map (fun o -> text o.["text"])
        |> String.concat ""

    member c.Stdout = c.Stream "stdout"

    /// The text/html of every display_data / execute_result output.
    member c.Html =
        c.Outputs
        |> List.choose (fun o ->
            match o.["data"] with
            | :? JsonObject as d when d.ContainsKey "text/html" -> Some(text d.["text/html"])
            | _ -> None)

/// One inline Plotly.NET chart: the traces and layout that Plotly.NET.Interactive's HTML hands to Plotly.newPlot.
type Chart = { Title: string; Traces: JsonArray }

let private chartOf (html: string) =
    let value (prefix: string) =
        html.Split('\n')
        |> Array.tryPick (fun l -> let t = l.Trim() in if t.StartsWith prefix then Some(t.Substring(prefix.Length).TrimEnd(';')) else None)
    match value "var data = ", value "var layout = " with
    | Some data, Some layout when html.Contains "Plotly.newPlot(" ->
        let title =
            match JsonNode.Parse(layout).["title"] with
            | null -> ""
            | t ->
                (match t.["text"] with
                 | null -> ""
                 | s -> s.GetValue<string>())
        Some { Title = title; Traces = JsonNode.Parse(data).AsArray() }
    | _ -> None

let charts (c: Cell) = c.Html |> List.choose chartOf

/// The executed code cells of a notebook written by nbconvert.
let readCells (path: string) =
    let nb = JsonNode.Parse(File.ReadAllText path)
    [
        for i, cell in nb.["cells"].AsArray() |> Seq.indexed do
            if text cell.["cell_type"] = "code" then
                yield { Index = i; Source = text cell.["source"]; Outputs = [ for o in cell.["outputs"].AsArray() -> o.AsObject() ] }
    ]

/// The failing cells of an executed notebook, one line each: the cell, the error, and the first line the kernel
/// wrote to stderr (F# compile errors come that way).
let errors (name: string) (cells: Cell list) = [
    for c in cells do
        for o in c.Outputs do
            if text o.["output_type"] = "error" then
                let detail =
                    c.Stream("stderr").Split('\n')
                    |> Array.map (fun l -> l.Trim())
                    |> Array.tryFind (fun l -> l <> "" && not (l.StartsWith "warning"))
                yield
                    sprintf
                        "%s: cell %d (%s) failed: %s: %s%s"
                        name
                        c.Index
                        c.FirstLine
                        (text o.["ename"])
                        (text o.["evalue"])
                        (match detail with
                         | Some d -> " — " + d
                         | None -> "")
]

/// Executes `notebook` (a path in a workspace) in the kernel with `env`; returns its executed cells. Fails on any
/// cell error unless `allowErrors`.
let execute (notebook: string) (env: (string * string) list) (allowErrors: bool) =
    requireKernel ()
    let name = Path.GetFileName notebook
    let outDir = Path.Combine(Path.GetDirectoryName notebook, "executed")
    let output = Path.GetFileNameWithoutExtension notebook
    // --allow-errors: the run goes on past a failing cell, so that the executed notebook is written and the error
    // can be named below (nbconvert itself only says "compilation error").
    let r =
        runProcess
            "jupyter"
            [
                "nbconvert"
                "--to"
                "notebook"
                "--execute"
                "--allow-errors"
                "--ExecutePreprocessor.timeout=600"
                "--ExecutePreprocessor.kernel_name=" + kernelName
                "--output-dir"
                outDir
                "--output"
                output
                notebook
            ]
            (("OMP_NUM_THREADS", "1") :: env)
            1200
    let executed = Path.Combine(outDir, output + ".ipynb")
    if r.Code <> 0 || not (File.Exists executed) then
        failtestf
            "jupyter nbconvert --execute %s exited with %d: %s"
            name
            r.Code
            (r.Err.Trim().Split('\n') |> Array.filter (fun l -> l.Trim() <> "") |> Array.tryLast |> Option.defaultValue "")
    let cells = readCells executed
    if not allowErrors then
        match errors name cells with
        | [] -> ()
        | [ e ] -> failtest e
        | e :: rest -> failtestf "%s (and %d later failing cells)" e rest.Length
    cells

/// The one code cell whose source contains `snippet`.
let cellWith (cells: Cell list) (snippet: string) =
    match cells |> List.filter (fun c -> c.Source.Contains snippet) with
    | [ c ] -> c
    | [] -> failtestf "no code cell contains '%s'" snippet
    | cs -> failtestf "%d code cells contain '%s'" cs.Length snippet

/// A table printed by Analysis.print: a header line with exactly `columns`, and a row starting with each of `rows`.
let expectTable (what: string) (output: string) (columns: string list) (rows: string list) =
    let lines = output.Split('\n') |> Array.map (fun l -> l.Split(' ', StringSplitOptions.RemoveEmptyEntries) |> List.ofArray)
    Expect.isTrue (lines |> Array.exists ((=) columns)) (sprintf "%s: a table with the columns %A in\n%s" what columns output)
    for r in rows do
        Expect.isTrue (lines |> Array.exists (fun l -> not l.IsEmpty && l.Head = r)) (sprintf "%s: a row '%s' in\n%s" what r output)

/// The cell shows `titles.Length` inline Plotly charts, one per title (in order, by substring), each with data.
let expectCharts (what: string) (c: Cell) (titles: string list) =
    let cs = charts c
    Expect.equal
        cs.Length
        titles.Length
        (sprintf "%s: %d inline Plotly charts (got titles %A)" what titles.Length (cs |> List.map (fun x -> x.Title)))
    for chart, title in List.zip cs titles do
        Expect.stringContains chart.Title title (sprintf "%s: chart title" what)
        let points =
            chart.Traces
            |> Seq.sumBy (fun t ->
                [ "x"; "y"; "z" ]
                |> List.sumBy (fun k ->
                    match t.[k] with
                    | :? JsonArray as a -> a.Count
                    | _ -> 0))
        Expect.isGreaterThan points 0 (sprintf "%s: chart '%s' has data" what chart.Title)

/// The set-up cells: the FSharp.Core binding and build check ran, Plotly.NET.Interactive loaded as a kernel extension.
let private expectSetUp (cells: Cell list) =
    let nuget = cellWith cells "#r \"nuget: Plotly.NET.Interactive"
    let shown = String.Join("\n", nuget.Outputs |> List.map (fun o -> o.ToJsonString()))
    Expect.stringContains shown "Plotly.NET.Interactive.dll" "the Plotly.NET.Interactive kernel extension is loaded"

/// What each notebook is run with and must show. Every notebook in notebooks/ needs an entry.
let private expectations: (string * ((string -> (string * string) list) * (string -> Cell list -> unit))) list = [
    "quickstart.ipynb",
    ((fun out -> [ "STATEX_STEPS", "2"; "STATEX_DEVICE", "cpu"; "STATEX_OUT", out ]),
     fun out cells ->
         expectSetUp cells
         let describe = (cellWith cells "Model.summary model").Stdout
         Expect.stringContains describe "expanded: all merge-heads reinit" "describes the expanded model"
         Expect.stringContains describe "state per layer: [512L; 512L] → [2048L; 2048L]" "per-layer state before and after"
         let ran = (cellWith cells "Pipeline.run settings out").Stdout
         Expect.stringContains ran "statex  pretrain  ran" "the StateX pipeline pretrains"
         Expect.stringContains ran "lpt     pretrain  skipped" "LPT reuses the shared pretraining stage"
         expectTable "the results frame" (cellWith cells "Analysis.print summary").Stdout [
             "model"
             "state_size"
             "pairs"
             "mean"
             "std"
             "n"
         ] [ "statex"; "lpt" ]
         expectCharts "the recall chart" (cellWith cells "Charts.lines \"pairs\"") [ "MQAR recall: StateX vs LPT" ]
         expectCharts "the training chart" (cellWith cells "Charts.trainingCurves \"loss\" curves") [ "Training" ]
         for f in [ "mqar.html"; "post-training.html" ] do
             FSharpScriptTests.selfContained (Path.Combine(out, f))
         Expect.stringContains (File.ReadAllText(Path.Combine(out, "mqar.csv"))) "statex" "the CSV holds both arms")

    "statex-vs-lpt.ipynb",
    ((fun out -> [ "STATEX_DEVICE", "cpu"; "STATEX_OUT", out ]),
     fun out cells ->
         expectSetUp cells
         expectTable "the sizes" (cellWith cells "Analysis.print sizes").Stdout [ "family"; "arm"; "state_size"; "params" ] [
             "gla"
             "mamba2"
         ]
         let summary = (cellWith cells "StudySummary.table study rows").Stdout
         for family in [ "gla"; "mamba2" ] do
             Expect.isTrue
                 (summary.Split('\n') |> Array.exists (fun l -> l.StartsWith(family + " ") && l.Contains "MQAR acc"))
                 (sprintf "the headline table of %s" family)
         Expect.stringContains summary "  Δ StateX − LPT" "StateX − LPT per seed"
         Expect.stringContains summary "held-out loss" "the verdicts"
         expectTable "the side-by-side frame" (cellWith cells "Analysis.print side").Stdout [
             "family"
             "task"
             "metric"
             "pairs"
             "length"
             "depth"
             "lpt"
             "lpt_std"
             "statex"
             "statex_std"
             "delta"
         ] [ "gla"; "mamba2" ]
         expectCharts "MQAR by pairs" (cellWith cells "Charts.sideBySide") [
             "gla: MQAR accuracy by pairs"
             "mamba2: MQAR accuracy by pairs"
         ]
         let recall = cellWith cells "Charts.recallVsStateSize recall"
         expectTable "recall vs state size" recall.Stdout [ "family"; "pairs"; "task"; "state_size"; "mean"; "std"; "n" ] [
             "gla"
             "mamba2"
         ]
         expectCharts "recall vs state size" recall [ "Recall vs recurrent state size" ]
         expectCharts "the passkey heatmaps" (cellWith cells "Charts.passkeyHeatmap") [
             "gla passkey accuracy: lpt"
             "gla passkey accuracy: statex"
             "mamba2 passkey accuracy: lpt"
             "mamba2 passkey accuracy: statex"
         ]
         expectCharts "post-training curves" (cellWith cells "Charts.trainingCurves \"loss\" curves") [ "Training" ]
         for f in [ "mqar-side-by-side-gla.html"; "recall-vs-state-size.html"; "passkey-gla-statex.html"; "post-training.html" ] do
             FSharpScriptTests.selfContained (Path.Combine(out, f))
         // The kernel ran the study the CLI runs.
         FSharpScriptTests.expectCliSmokeRows "the notebook" out)

    "state-capacity.ipynb",
    // Threshold 0: every model "retrieves" every setting, so the capacity chart and its fit have points to show.
    ((fun out -> [ "STATEX_DEVICE", "cpu"; "STATEX_OUT", out; "STATEX_THRESHOLD", "0" ]),
     fun out cells ->
         expectSetUp cells
         expectTable "the models" (cellWith cells "Analysis.print models").Stdout [ "family"; "scale"; "state_size"; "params" ] [
             "gla"
             "mamba2"
         ]
         let c = StudyPresets.capacitySmoke
         let largestPairs =
             c.Evaluation.Tasks
             |> List.pick (function
                 | Mqar(pairs, _, _, _) -> Some(List.max pairs)
                 | _ -> None)
         let table = (cellWith cells "Analysis.print capacityTable").Stdout
         expectTable "the capacity table" table [ "family"; "scale"; "state_size"; "seed"; "mqar_pairs"; "passkey_tokens" ] [
             "gla"
             "mamba2"
         ]
         for family, models in c.Models do
             for scale, m in models do
                 let row =
                     table.Split('\n')
                     |> Array.map (fun l -> l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                     |> Array.find (fun t -> t.Length = 6 && t.[0] = family && t.[1] = scale)
                 Expect.equal row.[2] (string (Model.stateSize m)) (sprintf "%s %s: its state" family scale)
                 Expect.equal
                     row.[4]
                     (string largestPairs)
                     (sprintf "%s %s: at threshold 0 every pair count counts as retrieved" family scale)
         expectCharts "accuracy vs state size" (cellWith cells "display mqarChart") [
             "Recall vs recurrent state size"
             "Passkey accuracy vs recurrent state size"
         ]
         let capacity = cellWith cells "StudyCapacity.fit"
         Expect.stringContains capacity.Stdout "gla, MQAR pairs: capacity ∝ state^" "the fit is printed"
         expectCharts "capacity vs state size" capacity [ "Capacity against state size" ]
         Expect.isTrue
             (charts capacity |> List.exactlyOne |> fun ch -> ch.Traces |> Seq.exists (fun t -> (text t.["name"]).Contains "fit: ∝ state^"))
             "the fitted power law is drawn"
         for f in [ "mqar-vs-state-size.html"; "passkey-vs-state-size.html"; "capacity-vs-state-size.html" ] do
             FSharpScriptTests.selfContained (Path.Combine(out, f))
         Expect.stringContains (File.ReadAllText(Path.Combine(out, "report.html"))) "<h2>State capacity</h2>" "the report page")
]

[<Tests>]
let tests =
    testSequenced
    <| testList "notebooks" [
        test "every notebook in notebooks/ is executed and checked here" {
            let present =
                Directory.GetFiles(Path.Combine(repo, "notebooks"), "*.ipynb") |> Array.map Path.GetFileName |> Array.sort |> List.ofArray
            Expect.equal present (expectations |> List.map fst |> List.sort) "notebooks/ and the expectations list name the same notebooks"
        }

        for name, (env, check) in expectations do
            test (sprintf "%s runs in the .NET Interactive kernel at tiny sizes and shows its tables and charts" name) {
                let ws = FSharpScriptTests.workspace AppContext.BaseDirectory
                let out = Path.Combine(ws, "out")
                let cells = execute (Path.Combine(ws, "notebooks", name)) (env out) false
                check out cells
            }

        test "a failing cell is reported with the cell and its error: without a build, the first cell names scripts/build" {
            let ws = FSharpScriptTests.workspace (Path.Combine(Fixtures.tempDir (), "no-build"))
            let cells = execute (Path.Combine(ws, "notebooks", "quickstart.ipynb")) [ "STATEX_STEPS", "2" ] true
            match errors "quickstart.ipynb" cells with
            | first :: _ ->
                Expect.stringContains first "cell 2 (#load \"../scripts/notebook-setup.fsx\") failed" "names the first failing cell"
                Expect.stringContains first "scripts/build" "names the command that builds the libraries"
            | [] -> failtest "the run without a build reported no failing cell"
        }
    ]
