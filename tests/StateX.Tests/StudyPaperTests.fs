/// `statex demo --preset paper`: the checks of its inputs, the plan it prints, and a whole study on the tiny fixtures.
module StateX.Tests.StudyPaperTests

open System
open System.IO
open System.Text.Json.Nodes
open System.Text.RegularExpressions
open Expecto
open StateX
open StateX.Models
open StateX.Expansion
open StateX.Training
open StateX.Cli.Commands

let private run args = Cli.runWith [ "OMP_NUM_THREADS", "1" ] 120 args

/// A copy of a fixture checkpoint with the byte tokenizer beside it: the fixtures hold no tokenizer, and their
/// vocabulary of 300 ids covers the byte tokenizer's 259.
let private withTokenizer (fixture: string) =
    let src = Fixtures.dir fixture
    let dst = Path.Combine(Fixtures.tempDir (), fixture)
    Directory.CreateDirectory dst |> ignore
    for f in [ "config.json"; "model.safetensors" ] do
        File.Copy(Path.Combine(src, f), Path.Combine(dst, f))
    StateX.Tokenization.ByteTokenizer.Save dst
    dst

let private jsonlData () = sprintf "jsonl:%s:field=text" (Fixtures.example "tiny.jsonl")

let private inputs: StudyPaper.Inputs = {
    Gla = None
    Mamba2 = None
    Data = None
    HeldOut = None
    Steps = None
    SeqLen = Some 64
    Batch = None
}

let private problems (i: StudyPaper.Inputs) =
    match StudyPaper.validate i with
    | Ok _ -> failtest "the inputs were accepted"
    | Error ps -> ps

let private hasProblem (ps: string list) (parts: string list) =
    let found = ps |> List.exists (fun p -> parts |> List.forall (fun part -> p.Contains part))
    Expect.isTrue found (sprintf "a problem naming %A among:\n%s" parts (String.Join("\n", ps)))

let private fails (args: string list) (parts: string list) =
    let r = run args
    Expect.equal r.ExitCode 1 (sprintf "exit 1; stdout: %s" r.Stdout)
    for p in parts do
        Expect.stringContains r.Stderr p "the error names the problem"
    Expect.isFalse (r.Stderr.Contains "   at ") "a message, not a stack trace"

/// (state elements, parameters) of the base and StateX lines of each family in a printed plan, in order.
let private planSizes (plan: string) =
    let bases = Regex.Matches(plan, @"base:\s+state ([\d,]+) elements/sequence, ([\d,]+) parameters")
    let statex = Regex.Matches(plan, @"StateX: .* state ([\d,]+) \(×[\d.]+\), ([\d,]+) parameters")
    let num (g: Group) = Int64.Parse(g.Value.Replace(",", ""))
    [ for m in bases -> num m.Groups[1], num m.Groups[2] ], [ for m in statex -> num m.Groups[1], num m.Groups[2] ]

/// (state elements, parameters) of the fixture's core model and of its expansion by the family's paper preset.
let private coreSizes (fixture: string) (family: string) =
    let model = Checkpoint.Load(Fixtures.dir fixture, warn = ignore)
    let before = model.StateSize().TotalElements, Trainer.ParameterCount model
    let expanded = TrainRecipes.Prepare("statex", model, TrainRecipes.DefaultExpansion family).Model
    let after = expanded.StateSize().TotalElements, Trainer.ParameterCount expanded
    expanded.Module.Dispose()
    before, after

/// A checkpoint folder of the paper's 1.3B configuration (data/configs): config and tokenizer, and a weights file
/// that is only there to be found (the plan reads no weights).
let private paperSized (config: string) =
    let dir = Path.Combine(Fixtures.tempDir (), Path.GetFileNameWithoutExtension config)
    Directory.CreateDirectory dir |> ignore
    File.Copy(Path.Combine(Fixtures.example "..", "configs", config), Path.Combine(dir, "config.json"))
    File.WriteAllText(Path.Combine(dir, "model.safetensors"), "")
    StateX.Tokenization.ByteTokenizer.Save dir
    dir

let private stageNames (messages: string list) = messages |> List.filter (fun m -> m.Contains "done earlier")

[<Tests>]
let tests =
    testList "demo paper" [
        test "without checkpoints and data: one error saying what the preset needs" {
            fails [ "demo"; "--preset"; "paper" ] [ "--gla DIR and/or --mamba2 DIR"; "--data SPEC" ]
        }

        test "--gla, --data and the budget overrides belong to the paper preset only" {
            fails [ "demo"; "--preset"; "cpu"; "--gla"; "somewhere"; "--steps"; "3"; "--plan" ] [
                "--gla, --steps: only for --preset paper"
                "cpu preset"
            ]
            fails [ "demo"; "--preset"; "paper"; "--families"; "gla"; "--gla"; "x"; "--data"; "synth:text" ] [
                "--families does not apply to --preset paper"
            ]
        }

        test "a missing folder, a checkpoint of the other family and an unknown data spec are reported together" {
            let m2 = withTokenizer "mamba2-tiny"
            let missing = Path.Combine(Fixtures.tempDir (), "no-such-checkpoint")
            let ps = problems { inputs with Gla = Some m2; Mamba2 = Some missing; Data = Some "foo:corpus" }
            hasProblem ps [ "--gla " + m2; "describes a mamba2 model"; "give it to --mamba2" ]
            hasProblem ps [ "--mamba2 " + missing; "folder not found" ]
            hasProblem ps [ "--data 'foo:corpus'"; "unknown kind 'foo'" ]
            Expect.equal ps.Length 3 "each problem once"
            // The command line shows all of them and starts nothing.
            let out = Path.Combine(Fixtures.tempDir (), "study")
            fails [ "demo"; "--preset"; "paper"; "--gla"; m2; "--mamba2"; missing; "--data"; "foo:corpus"; "--out"; out ] [
                "--preset paper cannot start"
                "give it to --mamba2"
                "folder not found"
                "unknown kind 'foo'"
            ]
            Expect.isFalse (Directory.Exists out) "nothing written"
        }

        test "a checkpoint without tokenizer or weights, and data too short for one sequence, are named" {
            let noTokenizer = Fixtures.dir "gla-tiny"
            hasProblem (problems { inputs with Gla = Some noTokenizer; Data = Some(jsonlData ()) }) [
                "--gla " + noTokenizer
                "no usable tokenizer"
                "tokenizer.json"
            ]
            let noWeights = withTokenizer "mamba2-tiny"
            File.Delete(Path.Combine(noWeights, "model.safetensors"))
            hasProblem (problems { inputs with Mamba2 = Some noWeights; Data = Some(jsonlData ()) }) [
                "--mamba2 " + noWeights
                "no weights"
                "model.safetensors"
            ]
            let gla = withTokenizer "gla-tiny"
            let once = sprintf "text:%s:epochs=1" (Fixtures.example "tiny.txt")
            hasProblem (problems { inputs with Gla = Some gla; Data = Some(jsonlData ()); HeldOut = Some once; SeqLen = Some 4096 }) [
                "--heldout '" + once
                "ran out before one sequence of 4,096 tokens"
                "byte(259)"
            ]
        }

        test "an expansion that would not enlarge the state is refused (GLA with one head already)" {
            let merged = withTokenizer "gla-tiny-merged"
            hasProblem (problems { inputs with Gla = Some merged; Data = Some(jsonlData ()) }) [
                "--gla " + merged
                "gla-1.3b"
                "does not enlarge"
            ]
        }

        test "plan of the tiny fixtures: sizes computed without weights equal the core's models, and the cost says it does not apply" {
            let gla, m2 = withTokenizer "gla-tiny", withTokenizer "mamba2-tiny"
            let out = Path.Combine(Fixtures.tempDir (), "study")
            let r =
                run [
                    "demo"
                    "--preset"
                    "paper"
                    "--gla"
                    gla
                    "--mamba2"
                    m2
                    "--data"
                    jsonlData ()
                    "--steps"
                    "7"
                    "--seq-len"
                    "96"
                    "--batch"
                    "2"
                    "--out"
                    out
                    "--plan"
                ]
            Expect.equal r.ExitCode 0 (sprintf "exit 0; stderr: %s" r.Stderr)
            let bases, statex = planSizes r.Stdout
            let (glaBase, glaX), (m2Base, m2X) = coreSizes "gla-tiny" "gla", coreSizes "mamba2-tiny" "mamba2"
            Expect.equal bases [ glaBase; m2Base ] "base state and parameters as the core's loaded models have them"
            Expect.equal statex [ glaX; m2X ] "StateX state and parameters as the core's expansion gives them"
            Expect.isGreaterThan (fst glaX) (fst glaBase) "GLA: the expansion enlarges the state"
            Expect.stringContains r.Stdout "layers 0 of 2" "every sixth layer from layer 0: layer 0 of the 2"
            Expect.stringContains
                r.Stdout
                "7 steps × 2 sequences × 96 tokens = 1,344 tokens per arm (the official run: 10.49B)"
                "the overridden budget, against the official one"
            Expect.stringContains r.Stdout "6 warm-up steps" "warm-up shortened to fit the run"
            Expect.stringContains r.Stdout "2 micro-batch(es) of 1 × 96 tokens" "one sequence per micro-batch"
            Expect.stringContains
                r.Stdout
                "so this does not apply to it"
                "the 1.3B measurements are not passed off as the tiny models' cost"
            Expect.isFalse (Directory.Exists out) "--plan starts nothing"
        }

        test "plan of the paper's 1.3B configs: both families' cost at 64K from the measured table" {
            let gla, m2 = paperSized "gla-1.3b.json", paperSized "mamba2-1.3b.json"
            let args = [ "demo"; "--preset"; "paper"; "--gla"; gla; "--mamba2"; m2; "--data"; "synth:text:len=4000"; "--plan" ]
            let r = run args
            Expect.equal r.ExitCode 0 (sprintf "exit 0; stderr: %s" r.Stderr)
            Expect.stringContains
                r.Stdout
                "20,000 steps × 8 sequences × 65,536 tokens = 10.49B tokens per arm (the official run: 20,000 steps × 8 × 64K)"
                "the official budget"
            Expect.stringContains
                r.Stdout
                "AdamW lr 3e-4, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on every tensor of ≥2 dims (embeddings and conv weights included), none on the rest"
                "the official optimiser"
            Expect.stringContains r.Stdout "clip 1; 1,000 warm-up steps, then cosine to 0×lr" "the official schedule"
            Expect.stringContains r.Stdout "every parameter trained" "no frozen layers, as the official scripts"
            Expect.stringContains r.Stdout "activation checkpointing in 8,192-token segments" "64K sequences checkpointed in 8K segments"
            Expect.stringContains r.Stdout "layers 0, 6, 12, 18 of 24" "GLA 1.3B: the official drop_prop=6 layers"
            Expect.stringContains r.Stdout "[4096,8192,16384,32768,65536,131072]" "passkey beyond the training length"
            // 2 arms × 10.0B tokens at the measured 12.8K tokens/s.
            let glaDays = 2.0 * 20000.0 * 8.0 * 65536.0 / 12800.0 / 86400.0
            Expect.stringContains
                r.Stdout
                (sprintf "gla     20.97B tokens at 12.8K tokens/s ≈ %.1f days; peak ≈ 39 GB" glaDays)
                "GLA estimate from the measured table"
            let m2Days = 2.0 * 20000.0 * 8.0 * 65536.0 / 7400.0 / 86400.0
            Expect.stringContains
                r.Stdout
                (sprintf "mamba2  20.97B tokens at 7.4K tokens/s ≈ %.1f days; peak ≈ 60 GB" m2Days)
                "Mamba2 at 64K fits, estimate from the table"
            Expect.isFalse (r.Stdout.Contains "WARNING") "both fit"
            Expect.isFalse (r.Stdout.Contains "does not apply") "1.3B checkpoints are what was measured"
            let short = run (args @ [ "--seq-len"; "8192" ])
            Expect.equal short.ExitCode 0 (sprintf "exit 0; stderr: %s" short.Stderr)
            Expect.stringContains short.Stdout "mamba2  2.62B tokens at 7.1K tokens/s" "Mamba2 at 8K: the measured speed"
            Expect.stringContains short.Stdout "peak ≈ 38 GB (measured at 8,192 tokens)" "and memory"
            Expect.isFalse (short.Stdout.Contains "WARNING") "no warning where it fits"
        }

        test "a whole paper study on the tiny fixtures: base models are the checkpoints, both arms train alike, re-running resumes" {
            let gla, m2 = withTokenizer "gla-tiny", withTokenizer "mamba2-tiny"
            let i = {
                inputs with
                    Gla = Some gla
                    Mamba2 = Some m2
                    Data = Some(jsonlData ())
                    HeldOut = Some(sprintf "text:%s" (Fixtures.example "tiny.txt"))
                    Steps = Some 2
                    SeqLen = Some 48
                    Batch = Some 2
            }
            let bases =
                match StudyPaper.validate i with
                | Ok b -> b
                | Error ps -> failtestf "rejected: %A" ps
            let s = StudyPaper.study i bases
            // Test-only sizes: an evaluation grid of seconds (the paper's passkey goes to 128K), on the CPU in fp32.
            let s = {
                s with
                    Evaluation = {
                        s.Evaluation with
                            Precision = "as-is"
                            Tasks = [
                                Mqar([ 4 ], 32, 2, Some 256)
                                Passkey([ 300 ], [ 0.5 ], 1, "default")
                                HeldOutLoss(sprintf "text:%s" (Fixtures.example "tiny.txt"), 2, 48)
                                ModelSize
                            ]
                    }
            }
            let preset: StudyPreset = { Name = "paper"; Study = s; Device = "cpu"; Workers = 1; Expected = "" }
            let out = Path.Combine(Fixtures.tempDir (), "study")
            let messages = Collections.Generic.List<string>()
            let summary, report = Demo.execute preset out messages.Add
            let rows = Study.readRows out
            let value family arm metric =
                rows |> List.find (fun r -> r.Family = family && r.Arm = arm && r.Metric = metric) |> fun r -> r.Value
            let runs = Study.runs s
            Expect.isFalse
                (Directory.GetDirectories(Study.stagesFolder out) |> Array.exists (fun d -> d.EndsWith "-pretrain"))
                "no pretraining: the base models are the checkpoints"
            for b in bases do
                let f = b.Family
                Expect.equal
                    (value f "base" "state_elements")
                    (float (StateX.Model.stateSize b.Model))
                    "base state: the checkpoint's, as planned"
                Expect.equal (value f "lpt" "state_elements") (float (StateX.Model.stateSize b.Model)) "LPT keeps the state"
                Expect.equal (value f "statex" "state_elements") (float (StateX.Model.stateSize b.StateX)) "StateX state as planned"
                Expect.equal (value f "statex" "parameters") (float (StateX.Model.paramCount b.StateX)) "StateX parameters as planned"
                Expect.equal (value f "lpt" "parameters") (float (StateX.Model.paramCount b.Model)) "LPT parameters as planned"
                let loss = value f "base" "loss"
                Expect.isTrue (loss > 0.0 && Double.IsFinite loss) (sprintf "held-out loss of the base model (%g)" loss)
                Expect.isTrue
                    (rows
                     |> List.exists (fun r ->
                         r.Family = f && r.Arm = "statex" && r.Task = "passkey" && r.SettingValue "length" = Some 300.0))
                    "passkey row"
                let postFolder arm =
                    let r = runs |> List.find (fun r -> r.Family = f && r.Arm = arm)
                    Pipeline.folders (Study.stagesFolder out) r.Pipeline
                    |> List.pick (fun (st, _, folder) ->
                        match st with
                        | PostTrain _ -> Some folder
                        | _ -> None)
                let config a = JsonNode.Parse(File.ReadAllText(Path.Combine(postFolder a, "config.json")))
                let lpt, sx = config "lpt", config "statex"
                Expect.equal (sx["options"].ToJsonString()) (lpt["options"].ToJsonString()) "LPT and StateX train with identical options"
                let o = lpt["options"]
                Expect.equal
                    (o["batch_size"].GetValue<int>(), o["grad_accum"].GetValue<int>(), o["seq_len"].GetValue<int>())
                    (1, 2, 48)
                    "2 sequences per step, one per micro-batch"
                Expect.isTrue (o["activation_checkpointing"].GetValue<bool>()) "activation checkpointing"
                Expect.equal
                    (o["floor_ratio"].GetValue<float>(),
                     o["lr"].GetValue<float>(),
                     o["weight_decay"].GetValue<float>(),
                     o["clip_norm"].GetValue<float>())
                    (0.0, 3e-4, 0.1, 1.0)
                    "the official recipe: cosine to 0, lr 3e-4, wd 0.1, clip 1"
                Expect.equal (o["warmup_steps"].GetValue<int>()) 1 "warm-up shortened to fit a 2-step run"
                Expect.equal (lpt["tokenizer"].GetValue<string>()) b.Dir "the checkpoint's tokenizer, not byte by name"
                Expect.equal (lpt["data"].GetValue<string>()) (jsonlData ()) "the user's data"
                Expect.isTrue (File.Exists(Path.Combine(postFolder "lpt", "model", "model.safetensors"))) "LPT model written"
            Expect.stringContains summary "Δ StateX − LPT" "the summary table"
            Expect.isTrue (File.Exists(Path.Combine(out, "summary.txt"))) "summary.txt"
            Expect.stringContains
                (File.ReadAllText report)
                "the given checkpoints as the base models"
                "the report says where the base models came from"
            Expect.isEmpty (stageNames (List.ofSeq messages)) "a fresh study"
            // Again: every stage is found finished and the numbers are those of the first run.
            messages.Clear()
            let _ = Demo.execute preset out messages.Add
            Expect.equal
                (stageNames (List.ofSeq messages)).Length
                (runs |> List.sumBy (fun r -> (Pipeline.stages r.Pipeline).Length))
                "every stage of every pipeline: done earlier"
            Expect.equal
                (Study.readRows out |> List.map (fun r -> r.Family, r.Arm, r.Task, r.Metric, r.Value))
                (rows |> List.map (fun r -> r.Family, r.Arm, r.Task, r.Metric, r.Value))
                "the same results"
            // A study folder belongs to its checkpoints.
            let other = withTokenizer "gla-tiny"
            let moved = {
                preset with
                    Study = s |> Study.mapFamilies (fun f -> if f.Name = "gla" then { f with Start = Some other; Tokenizer = other } else f)
            }
            let e = Expect.throwsC (fun () -> Demo.execute moved out ignore |> ignore) id
            Expect.stringContains e.Message "holds a gla study run with other settings" "another checkpoint is refused, not mixed in"
        }
    ]
