/// The study library (fsharp/StateX/Study*.fs): its pipelines, shared stages, control, results file, resume and the
/// folder's guard, on the smoke preset.
module StateX.Tests.StudyTests

open System
open System.IO
open Expecto
open StateX

let private quiet = { RunSettings.quiet with Device = "cpu"; KeepLast = 1 }

let private pretrainKeys (r: StudyRun) =
    Pipeline.keys r.Pipeline
    |> List.filter (fun (st, _) ->
        match st with
        | Pretrain _ -> true
        | _ -> false)
    |> List.map snd

/// A hand-made study row.
let private row family arm seed task metric (setting: (string * obj) list) value n =
    let setting = Evaluation.EvalResult.SettingOf([| for k, v in setting -> struct (k, v) |])
    { Family = family; Arm = arm; Seed = seed; Result = Evaluation.EvalResult("m", task, setting, metric, value, n) }

[<Tests>]
let tests =
    testSequenced
    <| testList "study" [
        test "the smoke study's pipelines: arms share the base's pretraining, the control its own; StateX and the control are larger" {
            // A base per seed (the gpu preset's way); the shared base is the next test's.
            let s = { StudyPresets.smoke.Study with PretrainSeed = None; ControlSeeds = [ 0; 1 ] }
            let runs = Study.runs s
            Expect.equal
                (runs |> List.map (fun r -> r.Family, r.Arm, r.Seed) |> List.filter (fun (f, _, seed) -> f = "gla" && seed = 0))
                [ "gla", "base", 0; "gla", "lpt", 0; "gla", "statex", 0; "gla", "control", 0 ]
                "base, LPT, StateX and the control per (family, seed)"
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
                Expect.isGreaterThan control statex (f.Name + ": the control expands every layer, StateX layer 0 (every 6th)")
        }

        test "one shared base: every seed post-trains the pretraining of the given seed; base and control are run once" {
            let s = { StudyPresets.smoke.Study with PretrainSeed = Some 0; Seeds = [ 0; 1 ]; ControlSeeds = [ 0; 1 ] }
            let runs = Study.runs s
            Expect.equal
                (runs |> List.filter (fun r -> r.Family = "gla") |> List.map (fun r -> r.Arm, r.Seed))
                [ "base", 0; "lpt", 0; "statex", 0; "control", 0; "lpt", 1; "statex", 1 ]
                "base and control carry the first seed only"
            let at arm seed = runs |> List.find (fun r -> r.Family = "mamba2" && r.Arm = arm && r.Seed = seed)
            Expect.equal (pretrainKeys (at "lpt" 1)) (pretrainKeys (at "base" 0)) "seed 1 post-trains seed 0's base"
            Expect.equal (pretrainKeys (at "statex-all" 1)) (pretrainKeys (at "base" 0)) "so do its StateX arms"
            Expect.notEqual (Pipeline.keys (at "lpt" 1).Pipeline) (Pipeline.keys (at "lpt" 0).Pipeline) "post-training differs by seed"
            let pretrainSeed =
                { s with PretrainSeed = Some 1 } |> Study.runs |> List.find (fun r -> r.Family = "gla" && r.Arm = "lpt" && r.Seed = 0)
            Expect.notEqual
                (pretrainKeys pretrainSeed)
                (pretrainKeys (runs |> List.find (fun r -> r.Family = "gla" && r.Arm = "lpt" && r.Seed = 0)))
                "the pretraining seed is the one given"
            Expect.stringContains
                (StudySummary.table s [])
                "base: one pretraining per family (seed 0), which every seed post-trains"
                "the table says so"
        }

        test "the convergence check: LPT at k times the budget, refused below 2, and a verdict against one point" {
            let s = { StudyPresets.smoke.Study with ConvergenceCheck = Some 2 } |> Study.families [ "gla" ]
            let check = Study.runs s |> List.find (fun r -> r.Arm = "lpt-x2" && r.Seed = 0)
            let postSteps (r: StudyRun) =
                Pipeline.keys r.Pipeline
                |> List.choose (fun (st, _) ->
                    match st with
                    | PostTrain t -> Some t.Steps
                    | _ -> None)
                |> List.last
            Expect.equal (postSteps check) (2 * s.PostTrain.Steps) "twice the post-training steps"
            Expect.equal
                (pretrainKeys check)
                (pretrainKeys (Study.runs s |> List.find (fun r -> r.Arm = "lpt" && r.Seed = 0)))
                "from LPT's base"
            Expect.equal (StudySummary.arms s "gla" |> List.map fst) [ "base"; "lpt"; "lpt-x2"; "statex"; "control" ] "listed after LPT"
            let e = Expect.throwsC (fun () -> Study.validate { s with ConvergenceCheck = Some 1 }) id
            Expect.stringContains
                e.Message
                "study smoke: the convergence check's budget multiple must be at least 2 (got 1)"
                "refused by name"
            let mqar arm seed pairs v = row "gla" arm seed "mqar" "accuracy" [ "pairs", box pairs ] v 64L
            let rows moved = [
                for seed in [ 0; 1 ] do
                    yield mqar "lpt" seed 16 0.40
                    yield mqar "lpt-x2" seed 16 (0.40 + moved)
            ]
            let verdict moved = (StudySummary.convergence s (rows moved) "gla").Value
            Expect.stringContains
                (verdict 0.005)
                "gla, LPT convergence: 2× the budget moves LPT by MQAR acc +0.5, MQAR ≥16 pairs +0.5 points (mean of 2 seeds): converged"
                "half a point: converged"
            Expect.stringContains (verdict 0.04) "+4.0 points (mean of 2 seeds): NOT converged" "four points: not"
            Expect.isNone (StudySummary.convergence { s with ConvergenceCheck = None } (rows 0.0) "gla") "no check, no verdict"
        }

        test "headlines: loss past the post-training length is token-weighted over the bins from it; markdown tables escape bars" {
            let s = StudyPresets.smoke.Study |> Study.families [ "gla" ]
            let t = StudySummary.trainLength s
            let bin from upTo v n = row "gla" "lpt" 0 "loss_vs_position" "loss" [ "from", box from; "to", box upTo ] v n
            let rows = [ bin (t / 2) t 9.0 100L; bin t (2 * t) 2.0 100L; bin (2 * t) (4 * t) 1.0 300L ]
            let h = StudySummary.headlines t |> List.find (fun h -> h.Name = sprintf "loss past %d" t)
            Expect.isFalse h.Higher "lower is better"
            Expect.floatClose
                Accuracy.veryHigh
                (h.Of rows).Value
                ((2.0 * 100.0 + 1.0 * 300.0) / 400.0)
                "bins before the length left out, the rest weighted by tokens"
            let md = StudySummary.markdown s [ row "gla" "lpt" 0 "heldout_loss" "loss" [] 1.5 10L ]
            Expect.stringStarts
                md
                (sprintf
                    "| gla | MQAR acc | MQAR ≥16 pairs | passkey ≤%d | passkey >%d | held-out loss | loss past %d | state | params |\n|"
                    t
                    t
                    t)
                "header row"
            Expect.stringContains md "| LPT | - | - | - | - | 1.500 | - | - | - |" "a row per arm, '-' where nothing was measured"
        }

        test "a smoke study runs, writes one results file Analysis reads, and a re-run trains and evaluates nothing" {
            let out = Path.Combine(Fixtures.tempDir (), "smoke")
            let log = Collections.Generic.List<string>()
            let s = StudyPresets.smoke.Study |> Study.seeds [ 0 ]
            let rows = Study.run { quiet with Log = log.Add } out s
            let stageCount =
                Study.runs s |> List.collect (fun r -> Pipeline.keys r.Pipeline |> List.map snd) |> List.distinct |> List.length
            Expect.equal
                (Directory.GetFiles(Study.stagesFolder out, "done.json", SearchOption.AllDirectories).Length)
                stageCount
                "each distinct stage ran once"
            let value family arm metric =
                rows |> List.find (fun r -> r.Family = family && r.Arm = arm && r.Metric = metric) |> fun r -> r.Value
            for f in s.Families do
                Expect.equal
                    (value f.Name "statex" "state_elements")
                    (float (Model.stateSize { f.Base with Expansions = f.Arms.Head.Expansions }))
                    "StateX's state as the description computes it"
                Expect.equal
                    (value f.Name "control" "parameters")
                    (float (Model.paramCount (Model.flatten { f.Base with Expansions = f.Control.Value })))
                    "the control's parameters as the description computes them"
                for arm in [ "base"; "lpt"; "control" ] @ (f.Arms |> List.map (fun a -> a.Name)) do
                    let loss = value f.Name arm "loss"
                    Expect.isTrue (Double.IsFinite loss && loss > 0.0) (sprintf "%s %s: held-out loss %g" f.Name arm loss)
            // One results schema: labels, then the evaluation's columns; Analysis reads it as it reads any results file.
            let csv, jsonl = Study.resultsFiles out
            let frame = Analysis.readResults csv
            Expect.equal (List.ofSeq frame.ColumnKeys |> List.take 5) [ "family"; "arm"; "seed"; "model"; "task" ] "the labels lead"
            Expect.equal frame.RowCount rows.Length "a row per result"
            Expect.equal (Analysis.readResults jsonl).RowCount rows.Length "the JSON Lines file holds the same results"
            let mqar = frame |> Analysis.where "task" "mqar" |> Analysis.summarize [ "family"; "arm"; "pairs" ] "value"
            Expect.equal mqar.RowCount ((4 + 5) * 2) "(GLA 4 arms + Mamba2 5 arms: two StateX arms) × 2 pair counts"
            Expect.equal
                (Study.readRows out |> List.map (fun r -> r.Family, r.Arm, r.Seed, r.Task, r.Metric, r.Value))
                (rows |> List.map (fun r -> r.Family, r.Arm, r.Seed, r.Task, r.Metric, r.Value))
                "read back exactly"
            // Again: nothing runs.
            log.Clear()
            let again = Study.run { quiet with Log = log.Add } out s
            Expect.isFalse (log |> Seq.exists (fun l -> l.Contains ": running in ")) "every stage done earlier"
            Expect.equal (again |> List.map (fun r -> r.Result.Value)) (rows |> List.map (fun r -> r.Result.Value)) "the same numbers"
            // The summary and the report.
            let table = StudySummary.table s rows
            for line in
                [ "  base"; "  LPT"; "  StateX"; "  StateX, every layer"; "  control"; "Δ StateX − LPT"; "Δ StateX, every layer − LPT" ] do
                Expect.stringContains table line "a row per arm and a delta per StateX arm"
            let verdicts = StudySummary.verdicts s rows
            Expect.isTrue (verdicts |> List.exists (fun v -> v.StartsWith "gla, state limit: ")) "a state-limit verdict"
            Expect.isTrue
                (verdicts |> List.exists (fun v -> v.StartsWith "mamba2 base at its easiest MQAR setting (4 pairs)"))
                "whether the base passes its easiest setting"
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

        test "the ablation: every (layers, init) arm at each budget against LPT at the same budget, one pretraining per (family, seed)" {
            let a = StudyPresets.ablationSmoke
            let out = Path.Combine(Fixtures.tempDir (), "ablation")
            let results = StudyAblation.run quiet out a
            let pretrains = Directory.GetDirectories(Path.Combine(out, "stages"), "*-pretrain")
            Expect.equal pretrains.Length 2 "1 family × 2 seeds: every budget and arm post-trains the same bases"
            let x1, x2 = StudyAblation.studyAt a 1, StudyAblation.studyAt a 2
            Expect.equal x2.PostTrain.Steps (2 * x1.PostTrain.Steps) "×2 has twice the post-training steps"
            Expect.equal
                (x1.Families.Head.Arms |> List.map (fun r -> r.Name))
                [ "statex-all-reinit"; "statex-all-inherit" ]
                "GLA: layers × inits"
            let full = StudyAblation.studyAt StudyPresets.ablation 1
            Expect.equal
                ((full.Families |> List.find (fun f -> f.Name = "mamba2")).Arms |> List.map (fun r -> r.Name))
                [
                    for l in [ "first"; "last"; "all" ] do
                        for i in [ "reinit"; "copy"; "preserve" ] -> sprintf "statex-%s-%s" l i
                ]
                "the full ablation's Mamba2 arms: layers × inits"
            let ds = StudyAblation.deltas a results
            // The smoke evaluation has no loss by position: that headline has no rows, hence no deltas.
            let headlines = StudyAblation.headlines x1 |> List.filter (fun h -> not (h.Name.StartsWith "loss past")) |> List.length
            Expect.equal ds.Length (2 * 2 * headlines) "budgets × arms × measured headlines"
            for d in ds do
                Expect.equal d.Seeds 2 (sprintf "%s %s ×%d: paired over both seeds" d.Family d.Arm d.Budget)
                Expect.isTrue (d.Min <= d.Mean && d.Mean <= d.Max) "mean within [min, max]"
            // The delta is the arm's value minus LPT's at the same budget, seed by seed.
            let rows2 = results |> List.find (fst >> (=) 2) |> snd
            let h = StudyAblation.headlines x2 |> List.find (fun h -> h.Name = "held-out loss")
            let lpt = StudySummary.perSeed rows2 "gla" "lpt" h |> Map.ofList
            let arm = StudySummary.perSeed rows2 "gla" "statex-all-inherit" h
            let expected = arm |> List.map (fun (seed, v) -> v - lpt[seed]) |> List.average
            let d =
                ds |> List.find (fun d -> d.Family = "gla" && d.Budget = 2 && d.Arm = "statex-all-inherit" && d.Headline = "held-out loss")
            Expect.floatClose Accuracy.veryHigh d.Mean expected "Δ = arm − LPT per seed, averaged"
            let csv = StudyAblation.csv ds
            Expect.stringStarts csv "family,budget,arm,headline,lpt,delta_mean,delta_min,delta_max,seeds\n" "CSV header"
            let html = StudyAblation.section a ds
            Expect.stringContains html "<h3>gla</h3>" "a section per family"
            Expect.stringContains html "<table><tr><th>arm</th>" "with its table"
            Expect.stringContains html "all layers, inherit" "the arms' labels"
        }

        test
            "the convergence sweep: LPT alone per (learning rate, budget) from one pretraining per (family, seed); moves pair by seed; the choice" {
            let c = { StudyPresets.convergenceSmoke with Base = StudyPresets.convergenceSmoke.Base |> Study.families [ "gla" ] }
            let out = Path.Combine(Fixtures.tempDir (), "convergence")
            let results = StudyConvergence.run quiet out c
            Expect.equal
                (Directory.GetDirectories(Path.Combine(out, "stages"), "*-pretrain").Length)
                1
                "one base: every point post-trains it"
            // The second pretraining phase is a post-training stage of its own, then 2 rates × 2 budgets of LPT.
            Expect.equal (Directory.GetDirectories(Path.Combine(out, "stages"), "*-posttrain").Length) 5 "one second phase, 4 points of LPT"
            Expect.equal (results |> List.map fst) [ 1e-3, 1; 1e-3, 2; 3e-3, 1; 3e-3, 2 ] "every point of the grid"
            let s = StudyConvergence.studyAt c 3e-3 2
            Expect.equal (s.PostTrain.Steps, s.PostTrain.LearningRate) (2 * c.Base.PostTrain.Steps, 3e-3) "the point's steps and rate"
            Expect.equal s.PostTrain.Warmup c.Base.PostTrain.Warmup "the warm-up stays the base's (as the study's own check)"
            Expect.isEmpty (s.Families |> List.collect (fun f -> f.Arms)) "no StateX arm: the choice is made on LPT alone"
            let jobs = StudyConvergence.jobs c
            Expect.equal (jobs |> List.filter (fun j -> j.Arm = "base") |> List.length) 1 "the base once per (family, seed)"
            Expect.equal jobs.Head.Budget 2 "longest first"
            let pts = StudyConvergence.points c results
            let h = "MQAR ≥16 pairs"
            let p = pts |> List.find (fun p -> p.LearningRate = 3e-3 && p.Steps = c.Base.PostTrain.Steps && p.Headline = h)
            let value lr budget =
                let rows = results |> List.find (fst >> (=) (lr, budget)) |> snd
                StudySummary.perSeed rows "gla" "lpt" (StudyConvergence.headlines c |> List.find (fun x -> x.Name = h))
                |> List.exactlyOne
                |> snd
            Expect.equal
                p.Move
                (Some(2 * c.Base.PostTrain.Steps, value 3e-3 2 - value 3e-3 1))
                "the move is the doubled budget's value minus this one's"
            Expect.isNone (pts |> List.find (fun p -> p.Steps = 2 * c.Base.PostTrain.Steps)).Move "the largest budget has no doubling"
            let rows = StudyConvergence.results c results
            Expect.isTrue
                (rows |> List.forall (fun e -> e.Labels |> Seq.exists (fun kv -> kv.Key = "learning_rate")))
                "results carry their learning rate"
            Expect.stringStarts (StudyConvergence.csv pts) "family,learning_rate,steps,headline,lpt,seeds,next_steps,move\n" "CSV header"
            // The choice, on hand-made points: the cheapest converged point, then the smallest rate; not one below the base.
            let pt lr steps v move = { Family = "gla"; LearningRate = lr; Steps = steps; Headline = h; Value = v; Seeds = 1; Move = move }
            let grid = [
                pt 1e-3 100 0.50 (Some(200, 0.05))
                pt 3e-3 100 0.70 (Some(200, 0.02))
                pt 1e-3 200 0.55 (Some(400, 0.004))
                pt 3e-3 200 0.72 (Some(400, -0.005))
                pt 1e-2 100 0.10 (Some(200, 0.001))
            ]
            let bases = [ "gla", h, 0.3 ]
            Expect.equal
                (StudyConvergence.choice c grid bases "gla")
                (Some(1e-3, 200))
                "a rate that wrecked the model (10% < the base's 30%) does not count; then 200 steps, the smaller rate"
            Expect.equal
                (StudyConvergence.choice c grid [ "gla", h, 0.05 ] "gla")
                (Some(1e-2, 100))
                "above the base, the cheapest converged point wins"
            let none = grid |> List.map (fun p -> { p with Move = Some(200, 0.03) })
            Expect.isNone (StudyConvergence.choice c none bases "gla") "nothing under a point: no choice"
            Expect.stringContains
                (StudyConvergence.verdicts c none bases |> List.head)
                "gla: LPT did NOT converge at any point of the grid; the smallest largest move is 3.0 points"
                "says so"
            let bad = Expect.throwsC (fun () -> StudyConvergence.jobs { c with LearningRates = [ 1e-3; -1.0 ] } |> ignore) id
            Expect.equal
                bad.Message
                "convergence sweep convergence-smoke: learning rate -1 is not a positive number (Parameter 'convergence')"
                "a bad rate named"
        }

        test "capacity: the largest retrieved setting needs every smaller one, and the power-law fit is least squares in log2" {
            Expect.equal (StudyCapacity.fit [ 1.0, 2.0; 2.0, 4.0; 4.0, 8.0 ]) (Some(1.0, 1.0)) "y = 2x: log2 y = 1 + 1·log2 x"
            let a, b = (StudyCapacity.fit [ 100.0, 4.0; 400.0, 16.0; 1600.0, 64.0 ]).Value
            Expect.floatClose Accuracy.high b 1.0 "slope 1"
            Expect.floatClose Accuracy.high (2.0 ** (a + b * log 100.0 / log 2.0)) 4.0 "through the points"
            Expect.isNone (StudyCapacity.fit [ 8.0, 2.0; 8.0, 4.0 ]) "one state size: no fit"
            let c = StudyPresets.capacitySmoke
            let result pairs acc =
                Evaluation.EvalResult(
                    "m",
                    "mqar",
                    Evaluation.EvalResult.SettingOf(struct ("pairs", box pairs)),
                    "accuracy",
                    acc,
                    10L,
                    Labels = [
                        for k, v in [ "family", "gla"; "scale", "x1"; "state", "100"; "seed", "0" ] ->
                            Collections.Generic.KeyValuePair(k, v)
                    ]
                )
            let p =
                StudyCapacity.points { c with Threshold = 0.9 } [ result 1 1.0; result 2 0.95; result 4 0.5; result 8 0.92 ]
                |> List.exactlyOne
            Expect.equal p.Pairs (Some 2.0) "4 pairs fail, so 8 (a lucky 92%) does not count"
            Expect.equal p.PasskeyLength None "no passkey rows"
            let none = StudyCapacity.points c [ result 1 0.5 ] |> List.exactlyOne
            Expect.equal none.Pairs None "nothing retrieved"
        }

        test "statex demo --preset capacity-smoke with --seeds and two workers: every worker runs the seeds given" {
            let out = Path.Combine(Fixtures.tempDir (), "capacity-cli")
            let r =
                Cli.runWith [ "OMP_NUM_THREADS", "1" ] 300 [
                    "demo"
                    "--preset"
                    "capacity-smoke"
                    "--seeds"
                    "3,4"
                    "--workers"
                    "2"
                    "--out"
                    out
                ]
            Expect.equal r.ExitCode 0 (sprintf "exit code (stderr: %s)" r.Stderr)
            Expect.stringContains r.Stdout "seed 3: MQAR pairs" "seed 3 reported"
            Expect.stringContains r.Stdout "seed 4: MQAR pairs" "seed 4 reported"
            Expect.isFalse (r.Stdout.Contains "seed 0:") "not the preset's own seed"
        }

        test "a capacity study runs: one model per (family, scale), its state as described, a section with the fitted trend" {
            let c = StudyPresets.capacitySmoke
            let out = Path.Combine(Fixtures.tempDir (), "capacity")
            let rs = StudyCapacity.run quiet out c
            let ps = StudyCapacity.points c rs
            Expect.equal
                (ps |> List.map (fun p -> p.Family, p.Scale))
                [ "gla", "x1"; "gla", "x2"; "mamba2", "x1"; "mamba2", "x2" ]
                "a point per model"
            for f, models in c.Models do
                for scale, m in models do
                    let p = ps |> List.find (fun p -> p.Family = f && p.Scale = scale)
                    Expect.equal p.State (Model.stateSize m) (sprintf "%s %s: state as the description computes it" f scale)
                    let measured =
                        rs
                        |> List.find (fun e ->
                            e.Metric = "state_elements"
                            && e.Labels |> Seq.exists (fun kv -> kv.Key = "scale" && kv.Value = scale)
                            && e.Labels |> Seq.exists (fun kv -> kv.Key = "family" && kv.Value = f))
                    Expect.equal (int64 measured.Value) (Model.stateSize m) "and as the built model has it"
            Expect.isLessThan
                (ps |> List.find (fun p -> p.Scale = "x1" && p.Family = "gla")).State
                (ps |> List.find (fun p -> p.Scale = "x2" && p.Family = "gla")).State
                "×2 is larger"
            Expect.stringContains (StudyCapacity.section c rs) "<h2>State capacity</h2>" "the section"
            Expect.isTrue (File.Exists(Path.Combine(out, "results.csv"))) "results.csv"
        }
    ]
