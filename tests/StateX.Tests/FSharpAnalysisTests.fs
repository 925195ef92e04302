/// Analyses on small known result sets, and the charts drawn from them.
module StateX.Tests.FSharpAnalysisTests

open System
open System.IO
open Expecto
open StateX
open StateX.Evaluation

let private result model task (setting: (string * obj) list) metric value n =
    EvalResult(model, task, EvalResult.SettingOf([| for k, v in setting -> struct (k, v) |]), metric, value, n)

let private lengths, depths, seeds = [ 64; 128 ], [ 0.0; 0.5; 1.0 ], [ 0; 1 ]

/// A known passkey accuracy per cell and seed (the test recomputes the expected means from it).
let private passkeyValue length depth seed = (if length = 64 then 1.0 else 0.5) * (1.0 - depth / 2.0) - 0.1 * float seed

let private shots = [ 0; 2; 4 ]
let private iclValue meth k seed = 0.5 + 0.05 * float k * (if meth = "statex" then 2.0 else 1.0) + 0.02 * float seed

let results = [
    for seed in seeds do
        for l in lengths do
            for d in depths do
                yield
                    result
                        (sprintf "statex-seed%d" seed)
                        "passkey"
                        [ "length", box l; "depth", box d ]
                        "accuracy"
                        (passkeyValue l d seed)
                        5L
                yield result (sprintf "statex-seed%d" seed) "passkey" [ "length", box l; "depth", box d ] "answer_nll" 9.9 5L
        for meth in [ "lpt"; "statex" ] do
            for k in shots do
                yield
                    result (sprintf "%s-seed%d" meth seed) "icl" [ "shots", box k; "classes", box 2 ] "accuracy" (iclValue meth k seed) 100L
            for (lo, hi), loss in [ (0, 1), 5.0; (1, 2), 4.0; (2, 4), 3.0 ] do
                yield
                    result
                        (sprintf "%s-seed%d" meth seed)
                        "loss_vs_position"
                        [ "from", box lo; "to", box hi ]
                        "loss"
                        (loss + float seed + (if meth = "lpt" then 0.5 else 0.0))
                        10L
            yield
                result
                    (sprintf "%s-seed%d" meth seed)
                    "mqar"
                    [ "pairs", box 8; "seq_len", box 64; "vocab", box 259 ]
                    "accuracy"
                    ((if meth = "statex" then 0.8 else 0.4) + 0.1 * float seed)
                    64L
]

let private num (r: Analysis.Row) k =
    match r.[k] with
    | Cell.Num v -> v
    | Cell.Text t -> failwithf "%s is text: %s" k t
let private txt (r: Analysis.Row) k =
    match r.[k] with
    | Cell.Text t -> t
    | Cell.Num v -> string v
let private mean (xs: float list) = List.average xs
let private std (xs: float list) = let m = mean xs in sqrt ((xs |> List.sumBy (fun x -> (x - m) ** 2.0)) / float (xs.Length - 1))
let private close a b what = Expect.floatClose Accuracy.veryHigh a b what
let private poolSeeds f = f |> Analysis.mapColumn "model" (fun m -> m.Split('-').[0])

[<Tests>]
let tests =
    testList "fsharp.analysis" [
        test "result files written by the core read back as the frame of the results" {
            let dir = Fixtures.tempDir ()
            let expected = Analysis.ofResults results |> Analysis.rows
            for file in [ "r.csv"; "r.jsonl" ] do
                let path = Path.Combine(dir, file)
                ResultFiles.Write(path, results)
                let back = Analysis.readResults path
                Expect.equal
                    (List.ofSeq back.ColumnKeys)
                    [
                        "model"
                        "task"
                        "classes"
                        "depth"
                        "from"
                        "length"
                        "pairs"
                        "seq_len"
                        "shots"
                        "to"
                        "vocab"
                        "metric"
                        "value"
                        "n"
                    ]
                    (file + ": columns")
                Expect.equal (Analysis.rows back) expected (file + ": same rows")
        }

        test "summarize gives mean, sample std and count per group, sorted numerically" {
            let s =
                Analysis.ofResults results
                |> Analysis.where "task" "icl"
                |> poolSeeds
                |> Analysis.summarize [ "model"; "shots" ] "value"
                |> Analysis.rows
            Expect.equal
                [ for r in s -> txt r "model", num r "shots" ]
                [
                    for m in [ "lpt"; "statex" ] do
                        for k in shots -> m, float k
                ]
                "groups in order"
            for r in s do
                let vs = [ for seed in seeds -> iclValue (txt r "model") (int (num r "shots")) seed ]
                close (num r "mean") (mean vs) "mean over seeds"
                close (num r "std") (std vs) "sample std over seeds"
                Expect.equal (num r "n") 2.0 "two seeds"
        }

        test "passkey grid: a row per length, a column per depth, accuracy averaged over seeds (other metrics ignored)" {
            let grid = Analysis.ofResults results |> Analysis.passkeyGrid
            Expect.equal (List.ofSeq grid.ColumnKeys) [ "length"; "0"; "0.5"; "1" ] "columns"
            let rows = Analysis.rows grid
            Expect.equal [ for r in rows -> num r "length" ] [ 64.0; 128.0 ] "rows"
            for r in rows do
                for d in depths do
                    close
                        (num r (d.ToString(Globalization.CultureInfo.InvariantCulture)))
                        (mean [ for s in seeds -> passkeyValue (int (num r "length")) d s ])
                        "cell mean"
        }

        test "ICL vs shots, loss vs position, recall vs state size and StateX vs LPT side by side" {
            let f = Analysis.ofResults results |> poolSeeds
            let icl = Analysis.iclVsShots [ "model" ] f |> Analysis.rows
            Expect.equal icl.Length 6 "2 methods × 3 shot counts"
            let loss = Analysis.lossVsPosition [ "model" ] f
            Expect.equal (List.ofSeq loss.ColumnKeys) [ "model"; "position"; "mean"; "std"; "n" ] "loss columns"
            Expect.equal (Analysis.floats "position" (loss |> Analysis.where "model" "lpt")) [ 1.0; 2.0; 4.0 ] "position = bin end"
            close
                (List.head (Analysis.floats "mean" (loss |> Analysis.where "model" "lpt")))
                (mean [ 5.5; 6.5 ])
                "mean loss of the first bin"
            let recall =
                f |> Analysis.withStateSizes [ "lpt", 1000L; "statex", 4000L ] |> Analysis.recallVsStateSize [ "model" ] |> Analysis.rows
            Expect.equal
                [ for r in recall -> txt r "model", num r "state_size" ]
                [ "lpt", 1000.0; "statex", 4000.0 ]
                "a point per method at its state size"
            close (num recall.[1] "mean") (mean [ 0.8; 0.9 ]) "StateX recall over seeds"
            let side =
                Analysis.sideBySide "model" "lpt" "statex" [ "task"; "shots" ] "value" (f |> Analysis.where "task" "icl") |> Analysis.rows
            Expect.equal side.Length 3 "a row per shot count"
            for r in side do
                let k = int (num r "shots")
                close (num r "lpt") (mean [ for s in seeds -> iclValue "lpt" k s ]) "baseline mean"
                close (num r "statex") (mean [ for s in seeds -> iclValue "statex" k s ]) "candidate mean"
                close (num r "delta") (num r "statex" - num r "lpt") "delta = candidate − baseline"
            Expect.throwsC (fun () -> Analysis.sideBySide "model" "lpt" "nobody" [ "task" ] "value" f |> ignore) (fun e ->
                Expect.stringContains e.Message "nobody" "names the missing arm")
            Expect.throwsC (fun () -> Analysis.recallVsStateSize [] f |> ignore) (fun e ->
                Expect.stringContains e.Message "state_size" "names the missing column")
        }

        test "training curves from metrics files: mean and spread across seeds per step" {
            let dir = Fixtures.tempDir ()
            let write name (losses: float list) =
                let path = Path.Combine(dir, name + ".jsonl")
                File.WriteAllLines(
                    path,
                    [
                        for i, l in List.indexed losses ->
                            sprintf
                                "{\"step\": %d, \"loss\": %s, \"lr\": 0.001}"
                                (i + 1)
                                (l.ToString("R", Globalization.CultureInfo.InvariantCulture))
                    ]
                )
                path
            let runs = Analysis.readRuns [ "seed0", write "a" [ 5.0; 4.0; 3.0 ]; "seed1", write "b" [ 6.0; 4.5; 2.0 ] ]
            let curve =
                runs |> Analysis.withColumn "arm" (fun _ -> Cell.Text "statex") |> Analysis.trainingCurves [ "arm" ] "loss" |> Analysis.rows
            Expect.equal [ for r in curve -> num r "step" ] [ 1.0; 2.0; 3.0 ] "steps"
            close (num curve.[0] "mean") 5.5 "step 1 mean"
            close (num curve.[2] "std") (std [ 3.0; 2.0 ]) "step 3 spread"
        }

        test "a sweep's files and store join into the recall-vs-state-size analysis; frames save to CSV" {
            let folder = Fixtures.tempDir ()
            let sweep =
                Sweep.grid
                    [
                        Axis.values "heads" [ 1; 4 ] (fun h m -> if h = 4 then m else m |> Expand.all (MergeHeadsTo(h, Reinit)))
                        Axis.values "seed" [ 0; 1 ] (fun s m -> m |> Model.withVocab (259 + s))
                    ]
                    FSharpModelTests.glaWide
            let run (m: Model) dir =
                let acc = if m.Expansions.IsEmpty then 0.25 else 0.75
                ResultFiles.Write(
                    Path.Combine(dir, "eval.jsonl"),
                    [
                        result
                            "m"
                            "mqar"
                            [ "pairs", box 4 ]
                            "accuracy"
                            (acc
                             + 0.01
                               * float (
                                   m.Arch
                                   |> function
                                       | Gla g -> g.Vocab - 259
                                       | _ -> 0
                               ))
                            32L
                    ]
                )
                Map [ "state_size", float (Model.stateSize m) ]
            Sweep.runWith { Sweep.options folder with Log = ignore } run sweep |> ignore
            let files = Analysis.sweepFiles folder "eval.jsonl"
            Expect.equal (List.ofSeq files.ColumnKeys |> List.take 3) [ "hash"; "heads"; "seed" ] "labels first"
            let store = Analysis.ofStore folder
            Expect.equal (store.RowCount) 4 "a row per run"
            let joined = Analysis.join [ "hash" ] files (Analysis.select [ "hash"; "state_size" ] store)
            let summary = Analysis.recallVsStateSize [ "heads" ] joined
            let rows = Analysis.rows summary
            Expect.equal [ for r in rows -> txt r "heads" ] [ "1"; "4" ] "a point per heads setting"
            Expect.equal
                (num rows.[0] "state_size")
                (float (Model.stateSize (FSharpModelTests.glaWide |> Expand.all (MergeHeads Reinit))))
                "state size from the store"
            close (num rows.[0] "mean") 0.755 "merged: mean over two seeds"
            let csv = Analysis.save (Path.Combine(folder, "out", "recall.csv")) summary
            Expect.equal
                (Analysis.rows (Analysis.readCsv csv))
                (rows
                 |> List.map (
                     Map.map (fun k c ->
                         if k = "heads" then
                             (match c with
                              | Cell.Text t -> Cell.Num(float t)
                              | c -> c)
                         else
                             c)
                 ))
                "CSV round trip (numbers stay numbers)"
        }
    ]

let private plotlyMarker = "For license information please see plotly.min.js.LICENSE.txt"

let private expectSelfContained (html: string) (series: string list) =
    Expect.stringContains html plotlyMarker "plotly.js source embedded"
    Expect.isGreaterThan html.Length 3_000_000 "the whole library (~3.5 MB) is in the file"
    Expect.isFalse (html.Contains "src=\"https://cdn.plot.ly") "no script from a CDN"
    for s in series do
        Expect.stringContains html s (sprintf "data series %s in the page" s)

[<Tests>]
let chartTests =
    testList "fsharp.charts" [
        test "every chart is written as a self-contained page holding its data" {
            let dir = Fixtures.tempDir ()
            let f = Analysis.ofResults results |> poolSeeds
            let check name chart (series: string list) =
                let path = Charts.save (Path.Combine(dir, name + ".html")) chart
                expectSelfContained (File.ReadAllText path) series
            let icl = Analysis.iclVsShots [ "model" ] f
            let statexMeans = Analysis.floats "mean" (icl |> Analysis.where "model" "statex")
            check "icl" (Charts.iclVsShots icl) [
                "\"name\":\"lpt\""
                "\"name\":\"statex\""
                statexMeans.[2].ToString("R", Globalization.CultureInfo.InvariantCulture)
            ]
            check "passkey" (Charts.passkeyHeatmap "passkey" (Analysis.passkeyGrid f)) [
                "\"type\":\"heatmap\""
                "\"x\":[\"0\",\"0.5\",\"1\"]"
                "\"y\":[\"64\",\"128\"]"
            ]
            check "loss" (Charts.lossVsPosition (Analysis.lossVsPosition [ "model" ] f)) [ "\"type\":\"log\"" ]
            check
                "recall"
                (Charts.recallVsStateSize (
                    f |> Analysis.withStateSizes [ "lpt", 1000L; "statex", 4000L ] |> Analysis.recallVsStateSize [ "model" ]
                ))
                [ "4000" ]
            check
                "side"
                (Charts.sideBySide
                    "lpt"
                    "statex"
                    "ICL"
                    (Analysis.sideBySide "model" "lpt" "statex" [ "shots" ] "value" (f |> Analysis.where "task" "icl")))
                [ "\"type\":\"bar\""; "\"name\":\"statex\"" ]
        }
    ]
