/// The study library (fsharp/StateX/Study*.fs): its pipelines, shared stages, control, results file, resume and the
/// folder's guard, on the smoke preset.
module StateX.Tests.StudyTests

open System
open System.IO
open Expecto
open StateX

let private quiet = { RunSettings.quiet with Device = "cpu"; KeepLast = 1 }

[<Tests>]
let tests =
    testSequenced <| testList "study" [
        test "the smoke study's pipelines: arms share the base's pretraining, the control its own; StateX and the control are larger" {
            let s = StudyPresets.smoke.Study
            let runs = Study.runs s
            Expect.equal (runs |> List.map (fun r -> r.Family, r.Arm, r.Seed) |> List.filter (fun (f, _, seed) -> f = "gla" && seed = 0))
                [ "gla", "base", 0; "gla", "lpt", 0; "gla", "statex", 0; "gla", "control", 0 ] "base, LPT, StateX and the control per (family, seed)"
            let pretrainKeys (r: StudyRun) = Pipeline.keys r.Pipeline |> List.filter (fun (st, _) -> match st with Pretrain _ -> true | _ -> false) |> List.map snd
            let byArm arm = runs |> List.find (fun r -> r.Family = "mamba2" && r.Seed = 1 && r.Arm = arm)
            Expect.equal (pretrainKeys (byArm "lpt")) (pretrainKeys (byArm "base")) "LPT starts from the base's pretraining"
            Expect.equal (pretrainKeys (byArm "statex")) (pretrainKeys (byArm "base")) "StateX starts from the base's pretraining"
            Expect.notEqual (pretrainKeys (byArm "control")) (pretrainKeys (byArm "base")) "the control is pretrained on its own"
            let other = runs |> List.find (fun r -> r.Family = "mamba2" && r.Seed = 0 && r.Arm = "base")
            Expect.notEqual (pretrainKeys other) (pretrainKeys (byArm "base")) "another seed, another pretraining"
            for f in s.Families do
                let arm = f.Arms.Head
                let statex = Model.stateSize { f.Base with Expansions = arm.Expansions }
                let control = Model.stateSize (Model.flatten { f.Base with Expansions = f.Control.Value })
                Expect.isGreaterThan statex (Model.stateSize f.Base) (f.Name + ": StateX's state is larger than the base's")
                Expect.isGreaterThan control statex (f.Name + ": the control expands every layer, StateX the last")
        }

        test "a smoke study runs, writes one results file Analysis reads, and a re-run trains and evaluates nothing" {
            let out = Path.Combine(Fixtures.tempDir (), "smoke")
            let log = Collections.Generic.List<string>()
            let s = StudyPresets.smoke.Study |> Study.seeds [ 0 ]
            let rows = Study.run { quiet with Log = log.Add } out s
            let stageCount = Study.runs s |> List.collect (fun r -> Pipeline.keys r.Pipeline |> List.map snd) |> List.distinct |> List.length
            Expect.equal (Directory.GetFiles(Study.stagesFolder out, "done.json", SearchOption.AllDirectories).Length) stageCount "each distinct stage ran once"
            let value family arm metric = rows |> List.find (fun r -> r.Family = family && r.Arm = arm && r.Metric = metric) |> fun r -> r.Value
            for f in s.Families do
                Expect.equal (value f.Name "statex" "state_elements") (float (Model.stateSize { f.Base with Expansions = f.Arms.Head.Expansions })) "StateX's state as the description computes it"
                Expect.equal (value f.Name "control" "parameters") (float (Model.paramCount (Model.flatten { f.Base with Expansions = f.Control.Value }))) "the control's parameters as the description computes them"
                for arm in [ "base"; "lpt"; "statex"; "control" ] do
                    let loss = value f.Name arm "loss"
                    Expect.isTrue (Double.IsFinite loss && loss > 0.0) (sprintf "%s %s: held-out loss %g" f.Name arm loss)
            // One results schema: labels, then the evaluation's columns; Analysis reads it as it reads any results file.
            let csv, jsonl = Study.resultsFiles out
            let frame = Analysis.readResults csv
            Expect.equal (List.ofSeq frame.ColumnKeys |> List.take 5) [ "family"; "arm"; "seed"; "model"; "task" ] "the labels lead"
            Expect.equal frame.RowCount rows.Length "a row per result"
            Expect.equal (Analysis.readResults jsonl).RowCount rows.Length "the JSON Lines file holds the same results"
            let mqar = frame |> Analysis.where "task" "mqar" |> Analysis.summarize [ "family"; "arm"; "pairs" ] "value"
            Expect.equal mqar.RowCount (2 * 4 * 2) "2 families × 4 arms × 2 pair counts"
            Expect.equal (Study.readRows out |> List.map (fun r -> r.Family, r.Arm, r.Seed, r.Task, r.Metric, r.Value)) (rows |> List.map (fun r -> r.Family, r.Arm, r.Seed, r.Task, r.Metric, r.Value)) "read back exactly"
            // Again: nothing runs.
            log.Clear()
            let again = Study.run { quiet with Log = log.Add } out s
            Expect.isFalse (log |> Seq.exists (fun l -> l.Contains ": running in ")) "every stage done earlier"
            Expect.equal (again |> List.map (fun r -> r.Result.Value)) (rows |> List.map (fun r -> r.Result.Value)) "the same numbers"
            // The summary and the report.
            let table = StudySummary.table s rows
            for line in [ "  base"; "  LPT"; "  StateX"; "  control"; "Δ StateX − LPT" ] do Expect.stringContains table line "a row per arm and the delta"
            let verdicts = StudySummary.verdicts s rows
            Expect.isTrue (verdicts |> List.exists (fun v -> v.StartsWith "gla, state limit: ")) "a state-limit verdict"
            Expect.isTrue (verdicts |> List.exists (fun v -> v.StartsWith "mamba2 base at its easiest MQAR setting (4 pairs)")) "whether the base passes its easiest setting"
            let report = File.ReadAllText(StudyReport.write s out rows "smoke" [ "<h2>extra section</h2>" ])
            Expect.stringContains report "<table><tr><th>gla</th><th>MQAR acc</th>" "the headline is an HTML table"
            Expect.stringContains report "<h2>extra section</h2>" "extra sections appended"
            Expect.stringContains report "EMA 0.1 over the raw values" "training curves smoothed over the raw values"
        }

        test "a study folder refuses other settings and folders of the earlier layout, naming them" {
            let out = Path.Combine(Fixtures.tempDir (), "guard")
            let s = StudyPresets.smoke.Study |> Study.seeds [ 0 ] |> Study.families [ "gla" ]
            let s = s |> Study.mapPostTraining (TrainSpec.steps 1)
            Study.run quiet out s |> ignore
            let changed = s |> Study.mapPostTraining (TrainSpec.steps 2)
            let e = Expect.throwsC (fun () -> Study.run quiet out changed |> ignore) id
            Expect.stringContains e.Message "holds a gla study run with other settings" "the family named"
            Expect.stringContains e.Message "study.json" "the guard file named"
            // Another seed of the same study is welcome.
            Study.run quiet out (s |> Study.seeds [ 0; 1 ]) |> ignore
            // Folders of the CLI's earlier study layout are refused, not resumed into a mix.
            let old = Path.Combine(Fixtures.tempDir (), "old")
            Directory.CreateDirectory old |> ignore
            File.WriteAllText(Path.Combine(old, "study-settings.txt"), "config gla: ...")
            let r = Cli.runWith [ "OMP_NUM_THREADS", "1" ] 120 [ "demo"; "--preset"; "smoke"; "--out"; old ]
            Expect.equal r.ExitCode 1 "refused"
            Expect.stringContains r.Stderr "written by an earlier StateX" "says why"
            Expect.stringContains r.Stderr "choose another --out, or delete the folder" "says what to do"
            Expect.isFalse (Directory.Exists(Path.Combine(old, "stages"))) "nothing written"
            let bad = Expect.throwsC (fun () -> Study.families [ "rwkv" ] s |> ignore) id
            Expect.stringContains bad.Message "unknown family 'rwkv': this study has gla" "unknown family named"
        }
    ]
