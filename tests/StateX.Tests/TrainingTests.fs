module StateX.Tests.TrainingTests

open System
open System.IO
open System.Diagnostics
open Expecto
open TorchSharp
open StateX
open StateX.Models
open StateX.Training
open StateX.Expansion

/// Tiny configs (random weights): every test builds its own model, no fixture needed.
let private glaConfig =
    """{"model_type": "gla", "hidden_size": 32, "num_heads": 2, "num_hidden_layers": 2, "vocab_size": 260,
  "expand_k": 0.5, "expand_v": 1.0, "hidden_ratio": 2, "tie_word_embeddings": true, "use_short_conv": true, "conv_size": 4,
  "eos_token_id": 258, "bos_token_id": 257}"""
let private mamba2Config =
    """{"model_type": "mamba2", "hidden_size": 32, "num_hidden_layers": 2, "vocab_size": 260,
  "state_size": 8, "head_dim": 8, "num_heads": 8, "expand": 2, "n_groups": 1, "conv_kernel": 4, "chunk_size": 16,
  "tie_word_embeddings": true, "residual_in_fp32": true, "initializer_range": 0.02, "eos_token_id": 258}"""

let private configFile (json: string) =
    let dir = Fixtures.tempDir ()
    let path = Path.Combine(dir, "config.json")
    File.WriteAllText(path, json)
    path

let private create (json: string) seed () =
    torch.manual_seed seed |> ignore
    Checkpoint.FromConfig(configFile json, warn = ignore)

let private mqar = "synth:mqar:pairs=4:len=32:vocab=256"

let private options steps =
    TrainOptions(
        Steps = steps,
        SeqLen = 32,
        BatchSize = 2,
        LearningRate = 3e-3,
        WarmupSteps = Nullable 2,
        Device = "cpu",
        CheckpointEvery = Nullable 3
    )

let private job json runDir (o: TrainOptions) = TrainJob(Func<_>(create json 0L), mqar, "byte", o, runDir)

let private resumeJob json runDir (o: TrainOptions) = TrainJob(Func<_>(create json 0L), mqar, "byte", o, runDir, true)

let private fileBytes (dir: string) = File.ReadAllBytes(Path.Combine(dir, "model.safetensors"))

let private gradsOf (model: ICausalLanguageModel) =
    model.Module.named_parameters ()
    |> Seq.filter (fun struct (_, p) -> not (isNull p.grad))
    |> Seq.map (fun struct (n, p) -> n, p.grad.clone ())
    |> Map.ofSeq

let private lossAndGrads (model: ICausalLanguageModel) (ids: torch.Tensor) checkpoint chunk =
    for struct (_, p) in model.Module.named_parameters () do
        p.grad <- null
    let stack = (model :?> ITrainableModel).TrainingStack()
    let loss = TrainingLoss.Compute(stack, ids.narrow (1, 0L, 32L), ids.narrow (1, 1L, 32L), checkpoint, chunk)
    loss.backward ()
    loss.item<float32>() |> float, gradsOf model

let private families = [ "gla", glaConfig; "mamba2", mamba2Config ]

[<Tests>]
let tests =
    testSequenced
    <| testList "training" [
        for fam, json in families do
            test (sprintf "%s: the training loss equals the model's shifted loss, chunked or not, checkpointed or not" fam) {
                let model = create json 1L ()
                torch.manual_seed 2L |> ignore
                let ids = torch.randint (0L, 256L, [| 2L; 33L |])
                let reference = (model.Forward(ids.narrow (1, 0L, 33L), labels = ids.narrow (1, 0L, 33L))).Loss
                // The shifted loss over 33 tokens predicts tokens 1..32 from 0..31, as the trainer's does.
                let plain, g0 = lossAndGrads model ids false 8192
                let chunked, g1 = lossAndGrads model ids true 7
                Expect.floatClose Accuracy.high plain (reference.item<float32>() |> float) "same loss as Forward with labels"
                Expect.floatClose Accuracy.high chunked plain "checkpointed + chunked loss"
                Expect.equal (Set.ofSeq g1.Keys) (Set.ofSeq g0.Keys) "the same parameters get gradients"
                for KeyValue(name, g) in g0 do
                    let diff = (g - g1[name]).abs().max().item<float32>()
                    Expect.isLessThan diff 1e-5f (sprintf "gradient of %s with activation checkpointing" name)
            }

            test (sprintf "%s: checkpointed blocks still train when the embeddings are frozen" fam) {
                let model = create json 1L ()
                for struct (name, p) in model.Module.named_parameters () do
                    if name.Contains "embeddings" then p.requires_grad <- false
                let ids = torch.randint (0L, 256L, [| 2L; 33L |])
                let _, grads = lossAndGrads model ids true 8192
                Expect.isTrue (grads |> Map.exists (fun n _ -> n.Contains "layers.0")) "block 0 parameters get gradients"
                Expect.isFalse (grads |> Map.exists (fun n _ -> n.Contains "embeddings")) "frozen embeddings get none"
            }

            test (sprintf "%s: a tiny model overfits one fixed batch" fam) {
                let model = create json 3L ()
                let ids = torch.randint (0L, 256L, [| 2L; 33L |])
                use opt = new AdamW(model.Module.named_parameters (), weightDecay = 0.0)
                let stack = (model :?> ITrainableModel).TrainingStack()
                let step () =
                    let loss = TrainingLoss.Compute(stack, ids.narrow (1, 0L, 32L), ids.narrow (1, 1L, 32L), false, 8192)
                    loss.backward ()
                    opt.StepWith 1e-2
                    opt.ZeroGrad()
                    loss.item<float32>()
                let first = step ()
                let mutable last = first
                for _ in 1..150 do
                    last <- step ()
                Expect.isLessThan last (first * 0.1f) (sprintf "loss %.3f → %.3f" first last)
            }

            test (sprintf "%s: 10 steps straight equal 5 steps, an interruption and a resumed 5 (bit for bit)" fam) {
                let o =
                    TrainOptions(
                        Steps = 10,
                        SeqLen = 32,
                        BatchSize = 2,
                        GradAccum = 2,
                        LearningRate = 3e-3,
                        WarmupSteps = Nullable 2,
                        Device = "cpu",
                        CheckpointEvery = Nullable 5,
                        ClipNorm = 0.5
                    )
                let straight = Fixtures.tempDir ()
                Trainer.Run(job json straight o) |> ignore
                let broken = Fixtures.tempDir ()
                let stopAt6 = TrainHooks(Progress = Action<_>(fun p -> if p.Step = 6 then failwith "simulated crash"))
                Expect.throwsC (fun () -> Trainer.Run(job json broken o, stopAt6) |> ignore) (fun e ->
                    Expect.stringContains e.Message "simulated" "crashed")
                Expect.isFalse (Directory.Exists(Path.Combine(broken, "model"))) "no final model after the crash"
                let resumed = Trainer.Run(resumeJob json broken o)
                Expect.equal resumed.ResumedFrom (Nullable 5) "resumed from the step-5 checkpoint"
                Expect.equal
                    (fileBytes (Path.Combine(broken, "model")))
                    (fileBytes (Path.Combine(straight, "model")))
                    "final weights are identical"
                let steps =
                    File.ReadAllLines(Path.Combine(broken, "metrics.jsonl"))
                    |> Array.map (fun l -> Text.Json.Nodes.JsonNode.Parse(l).["step"].GetValue<int>())
                Expect.equal steps [| 1..10 |] "metrics hold each step once"
            }

        test "statex with frozen unexpanded layers: frozen parameters do not move, expanded ones do" {
            let dir = Fixtures.tempDir ()
            let createExpanded () =
                let m = create glaConfig 0L ()
                let req = ExpansionRequest(LayerSelection.Parse "list:1", Rewrite.Parse "merge-heads", ExpansionInit.Reinit, 0L)
                (TrainRecipes.Prepare("statex", m, req, freezeUnexpanded = true)).Model
            let before = createExpanded ()
            let summary = Trainer.Run(TrainJob(Func<_>(createExpanded), mqar, "byte", options 4, dir))
            let after = Checkpoint.Load(summary.ModelDirectory, warn = ignore)
            let paramsOf (m: ICausalLanguageModel) =
                m.Module.named_parameters () |> Seq.map (fun struct (n, p) -> n, p.detach().clone()) |> Map.ofSeq
            let b, a = paramsOf before, paramsOf after
            for KeyValue(name, p) in b do
                let same = (p - a[name]).abs().max().item<float32>() = 0.0f
                if name.StartsWith "model.layers.1.attn" then Expect.isFalse same (sprintf "%s (expanded) changed" name)
                elif not (name.StartsWith "model.layers.1.") then Expect.isTrue same (sprintf "%s (frozen) unchanged" name)
        }

        test "a run killed after its last checkpoint resumes with nothing to train and its final loss, not NaN" {
            let dir = Fixtures.tempDir ()
            let o = options 6
            let first = Trainer.Run(job glaConfig dir o, TrainHooks())
            // As if killed between the last checkpoint and publishing the model: the model folder is missing.
            Directory.Delete(first.ModelDirectory, true)
            let again = Trainer.Run(resumeJob glaConfig dir o, TrainHooks())
            Expect.equal again.ResumedFrom (Nullable 6) "resumed at the last step"
            Expect.equal again.FinalLoss first.FinalLoss "the final loss saved with the checkpoint"
            Expect.equal (fileBytes again.ModelDirectory) (fileBytes first.ModelDirectory) "the same model published"
        }

        test "a truncated newest checkpoint is reported and an older intact one is resumed" {
            let dir = Fixtures.tempDir ()
            let o = options 9
            Expect.throwsC
                (fun () ->
                    Trainer.Run(job glaConfig dir o, TrainHooks(Progress = Action<_>(fun p -> if p.Step = 7 then failwith "crash")))
                    |> ignore)
                ignore
            let newest = Path.Combine(dir, "checkpoints", CheckpointStore.FolderName 6, "model.safetensors")
            let bytes = File.ReadAllBytes newest
            File.WriteAllBytes(newest, bytes[.. bytes.Length / 2])
            let warnings = Collections.Generic.List<string>()
            let s = Trainer.Run(resumeJob glaConfig dir o, TrainHooks(Log = Action<_>(warnings.Add)))
            Expect.equal s.ResumedFrom (Nullable 3) "fell back to step 3"
            Expect.exists
                warnings
                (fun w -> w.Contains "step-00000006" && w.Contains "truncated")
                "says which checkpoint was skipped and why"
        }

        test "a NaN loss stops the run, names step and tensor, and keeps the last good checkpoint" {
            let dir = Fixtures.tempDir ()
            let o =
                TrainOptions(
                    Steps = 30,
                    SeqLen = 32,
                    BatchSize = 2,
                    LearningRate = 1e4,
                    ClipNorm = 0.0,
                    WarmupSteps = Nullable 0,
                    Schedule = "constant",
                    Device = "cpu",
                    CheckpointEvery = Nullable 1
                )
            let e =
                try
                    Trainer.Run(job glaConfig dir o) |> ignore
                    failwith "the run did not stop"
                with :? TrainingDivergedException as e ->
                    e
            Expect.stringContains e.Message (sprintf "step %d" e.Step) "names the step"
            Expect.isNotNull e.Tensor "names a tensor"
            Expect.stringContains e.Message e.Tensor "the message names the tensor"
            let store = CheckpointStore(dir)
            match store.LatestValid() |> Option.ofObj with
            | Some last ->
                Expect.isLessThan last.Step e.Step "the last checkpoint predates the failure"
                let m = Checkpoint.Load(last.Directory, warn = ignore)
                for struct (n, p) in m.Module.named_parameters () do
                    Expect.isTrue (torch.isfinite(p).all().item<bool>()) (sprintf "%s is finite in the kept checkpoint" n)
            | None -> Expect.equal e.Step 1 "no checkpoint only if it failed at once"
            Expect.stringContains (File.ReadAllText(Path.Combine(dir, "log.txt"))) "training stopped" "the log says why"
        }

        test "refuses to start over an existing run, or to resume it with other settings" {
            let dir = Fixtures.tempDir ()
            Trainer.Run(job glaConfig dir (options 3)) |> ignore
            Expect.throwsC (fun () -> Trainer.Run(job glaConfig dir (options 3)) |> ignore) (fun e ->
                Expect.stringContains
                    e.Message
                    "already holds a run; resume it or choose another output folder"
                    "says to resume (in the core's words, not a CLI flag)")
            let otherLr =
                TrainOptions(
                    Steps = 3,
                    SeqLen = 32,
                    BatchSize = 2,
                    LearningRate = 1e-3,
                    WarmupSteps = Nullable 2,
                    Device = "cpu",
                    CheckpointEvery = Nullable 3
                )
            Expect.throwsC (fun () -> Trainer.Run(resumeJob glaConfig dir otherLr) |> ignore) (fun e ->
                Expect.stringContains e.Message "lr" "names the differing setting")
        }

        test "bad inputs get errors naming the problem" {
            let o = options 50
            Expect.throwsC
                (fun () ->
                    Trainer.Run(
                        TrainJob(
                            Func<_>(create glaConfig 0L),
                            "synth:mqar:pairs=4:len=32:vocab=256:count=3",
                            "byte",
                            o,
                            Fixtures.tempDir ()
                        )
                    )
                    |> ignore)
                (fun e -> Expect.stringContains e.Message "ran out" "finite data")
            let small = glaConfig.Replace("\"vocab_size\": 260", "\"vocab_size\": 100")
            Expect.throwsC (fun () -> Trainer.Run(job small (Fixtures.tempDir ()) o) |> ignore) (fun e ->
                Expect.stringContains e.Message "vocabulary of 100" "token ids beyond the vocabulary")
            Expect.throwsC (fun () -> Trainer.Run(job glaConfig (Fixtures.tempDir ()) (TrainOptions(Steps = 0))) |> ignore) (fun e ->
                Expect.stringContains e.Message "steps" "zero steps")
            Expect.throwsC (fun () -> TrainRecipes.Prepare("lora", create glaConfig 0L ()) |> ignore) (fun e ->
                Expect.stringContains e.Message "lora" "unknown recipe")
        }

        test "mqar with loss=queries marks exactly the queried values as targets, and a cursor restores the flags" {
            let tok = StateX.Tokenization.Tokenizers.Load "byte"
            let spec = StateX.Data.DataSpec.Parse "synth:mqar:pairs=4:len=32:vocab=64:loss=queries"
            let opts = StateX.Data.LoaderOptions(40, 2) // rows of 41 tokens straddle the 33-token documents
            use loader = StateX.Data.DataLoader.Open(spec, tok, opts)
            let first = loader.Next()
            let cursor = loader.Cursor
            let second = loader.Next()
            Expect.isNotNull first.Targets "batches carry target flags"
            // Re-derive the expected flags from the generator: documents 0, 1, ... each followed by EOD (not a target).
            let expected =
                Seq.initInfinite (fun i ->
                    StateX.Evaluation.Tasks.Mqar.Generate(
                        StateX.Evaluation.Tasks.MqarConfig(4, 32, 64),
                        StateX.Data.Rng.Derive(0UL, 0L),
                        int64 i
                    ))
                |> Seq.collect (fun e ->
                    Seq.append (Seq.init 32 (fun p -> e.QueryPositions |> Array.exists (fun q -> q + 1 = p))) [ false ])
                |> Seq.take (4 * 41)
                |> Array.ofSeq
            Expect.equal (Array.append first.Targets second.Targets) expected "targets = the token after each query key"
            Expect.equal
                (Array.sum (first.Targets |> Array.map (fun b -> if b then 1 else 0)))
                (expected[..81] |> Array.filter id |> Array.length)
                "count"
            use resumed = StateX.Data.DataLoader.Open(spec, tok, opts, StateX.Data.DataCursor.Parse(cursor.ToJson()))
            let again = resumed.Next()
            Expect.equal again.Tokens second.Tokens "same tokens after the cursor"
            Expect.equal again.Targets second.Targets "same target flags after the cursor"
            let labels = second.LabelsTensor().data<int64>().ToArray()
            Expect.isTrue
                (Array.forall2 (fun (l: int64) t -> (l = -100L) = not t) labels second.Targets)
                "labels are -100 exactly where not a target"
        }

        test "whole-document packing starts every document that fits at a row start and pads with non-targets" {
            let tok = StateX.Tokenization.Tokenizers.Load "byte"
            let spec = StateX.Data.DataSpec.Parse "synth:mqar:pairs=4:len=32:vocab=64"
            use loader = StateX.Data.DataLoader.Open(spec, tok, StateX.Data.LoaderOptions(40, 3, WholeDocuments = true))
            let b = loader.Next()
            let docs = [|
                for i in 0..2 ->
                    StateX.Evaluation.Tasks.Mqar
                        .Generate(StateX.Evaluation.Tasks.MqarConfig(4, 32, 64), StateX.Data.Rng.Derive(0UL, 0L), int64 i)
                        .Tokens
            |]
            for r in 0..2 do
                Expect.equal [| for t in 0..31 -> int b.[r, t] |] docs[r] (sprintf "row %d starts with document %d" r r)
                for t in 32..40 do
                    Expect.equal (int b.[r, t]) (tok.EosId.Value) "EOD then padding"
                    if t > 32 then Expect.isFalse b.Targets[r * 41 + t] "padding is not a target"
        }

        testList "cli" [
            test "a Parquet file whose footer never parses is refused naming it, in a child process (the parse is abandoned)" {
                // fuzz/hangs/data/hang-parquet-footer: the fuzz input (first byte: the kind) on which Parquet.Net's
                // footer parser spins forever; out of process because the spinning thread cannot be stopped.
                let rec up (d: DirectoryInfo) =
                    if File.Exists(Path.Combine(d.FullName, "fuzz", "hangs", "data", "hang-parquet-footer")) then
                        d.FullName
                    else
                        up d.Parent
                let input =
                    File.ReadAllBytes(
                        Path.Combine(up (DirectoryInfo AppContext.BaseDirectory), "fuzz", "hangs", "data", "hang-parquet-footer")
                    )
                let dir = Fixtures.tempDir ()
                let bad = Path.Combine(dir, "damaged.parquet")
                File.WriteAllBytes(bad, input[1..])
                let r =
                    Cli.runWith [ "OMP_NUM_THREADS", "1" ] 120 [
                        "train"
                        "--config"
                        configFile glaConfig
                        "--data"
                        "parquet:" + bad
                        "--steps"
                        "1"
                        "--seq-len"
                        "32"
                        "--batch"
                        "2"
                        "--out"
                        Path.Combine(dir, "run")
                    ]
                Expect.notEqual r.ExitCode 0 "refused"
                Expect.stringContains
                    r.Stderr
                    (sprintf "%s: not a readable Parquet file (its footer did not parse within 10 s)" bad)
                    "one line naming the file"
                Expect.isFalse (r.Stderr.Contains "   at ") "no stack trace"
            }
            test "statex train runs both recipes end to end and writes a run folder" {
                let cfg = configFile glaConfig
                for recipe in [ "lpt"; "statex" ] do
                    let out = Fixtures.tempDir ()
                    let extra = if recipe = "statex" then [ "--expand-layers"; "list:1"; "--expand-rewrite"; "merge-heads" ] else []
                    let r =
                        Cli.run (
                            [
                                "train"
                                "--config"
                                cfg
                                "--recipe"
                                recipe
                                "--data"
                                mqar
                                "--steps"
                                "4"
                                "--seq-len"
                                "32"
                                "--batch"
                                "2"
                                "--out"
                                out
                            ]
                            @ extra
                        )
                    Expect.equal r.ExitCode 0 (sprintf "%s: exit code (stderr: %s)" recipe r.Stderr)
                    Expect.stringContains r.Stderr "step 4/4" "progress shown"
                    for f in [ "config.json"; "metrics.jsonl"; "log.txt"; "model/config.json"; "model/model.safetensors" ] do
                        Expect.isTrue (File.Exists(Path.Combine(out, f))) (sprintf "%s: %s written" recipe f)
                    Expect.equal (File.ReadAllLines(Path.Combine(out, "metrics.jsonl")).Length) 4 "a metrics line per step"
                    if recipe = "lpt" then
                        let again =
                            Cli.run [
                                "train"
                                "--config"
                                cfg
                                "--data"
                                mqar
                                "--steps"
                                "4"
                                "--seq-len"
                                "32"
                                "--batch"
                                "2"
                                "--out"
                                out
                            ]
                        Expect.notEqual again.ExitCode 0 "a fresh start over a run is refused"
                        Expect.stringContains
                            again.Stderr
                            (sprintf "%s already holds a run; add --resume to continue it, or choose another --out" out)
                            "the CLI names its flag"
                    let config = File.ReadAllText(Path.Combine(out, "config.json"))
                    Expect.stringContains config (sprintf "\"recipe\": \"%s\"" recipe) "recipe recorded"
                    if recipe = "statex" then Expect.stringContains config "merge-heads" "expansion recorded"
                    if recipe = "lpt" then
                        // Every evaluation task runs on the model a brief `statex train` wrote (its tokenizer is in model/).
                        let model = Path.Combine(out, "model")
                        let ex = Fixtures.example
                        for task in
                            [
                                [ "--task"; "mqar"; "--pairs"; "2,4"; "--seq-len"; "32"; "--vocab"; "256"; "--examples"; "4" ]
                                [ "--task"; "passkey"; "--lengths"; "256"; "--depths"; "0,100"; "--trials"; "1" ]
                                [ "--task"; "haystack"; "--lengths"; "512"; "--trials"; "1" ]
                                [ "--task"; "icl"; "--shots"; "0,1"; "--trials"; "2" ]
                                [ "--task"; "qa"; "--file"; ex "recall_qa.jsonl"; "--max-new"; "2" ]
                                [ "--task"; "mc"; "--file"; ex "multiple_choice.jsonl" ]
                                [ "--task"; "loss-position"; "--file"; ex "tiny.txt"; "--max-len"; "64"; "--bin-width"; "16" ]
                            ] do
                            let csv = Path.Combine(out, sprintf "eval-%s.csv" task[1])
                            let r =
                                Cli.runWith
                                    [ "OMP_NUM_THREADS", "1" ]
                                    300
                                    ([ "eval"; "--model"; model; "--no-progress"; "--out"; csv ] @ task)
                            Expect.equal r.ExitCode 0 (sprintf "eval %s on a trained model (stderr: %s)" task[1] r.Stderr)
                            Expect.isGreaterThan (File.ReadAllLines(csv).Length) 1 (sprintf "eval %s wrote results" task[1])
            }

            test "statex train, killed mid-run and resumed, ends with the weights of an uninterrupted run" {
                let cfg = configFile glaConfig
                let args out = [
                    "train"
                    "--config"
                    cfg
                    "--data"
                    mqar
                    "--steps"
                    "100"
                    "--seq-len"
                    "32"
                    "--batch"
                    "2"
                    "--checkpoint-every"
                    "3"
                    "--out"
                    out
                ]
                let straight = Fixtures.tempDir ()
                Expect.equal (Cli.run (args straight)).ExitCode 0 "uninterrupted run"
                let killed = Fixtures.tempDir ()
                let psi = ProcessStartInfo("dotnet", RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
                psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "StateX.Cli.dll"))
                for a in args killed do
                    psi.ArgumentList.Add a
                use p = Process.Start psi
                p.ErrorDataReceived.Add ignore
                p.OutputDataReceived.Add ignore
                p.BeginErrorReadLine()
                p.BeginOutputReadLine()
                let ckpts = Path.Combine(killed, "checkpoints")
                let clock = Stopwatch.StartNew()
                while not (Directory.Exists ckpts && Directory.GetDirectories(ckpts, "step-*").Length > 0)
                      && not p.HasExited
                      && clock.Elapsed.TotalSeconds < 120.0 do
                    Threading.Thread.Sleep 20
                Expect.isFalse p.HasExited "the run was still going when killed"
                p.Kill true
                p.WaitForExit()
                let r = Cli.run (args killed @ [ "--resume" ])
                Expect.equal r.ExitCode 0 (sprintf "resumed run (stderr: %s)" (r.Stderr.Substring(max 0 (r.Stderr.Length - 500))))
                Expect.stringContains r.Stdout "resumed from step" "it resumed rather than restarted"
                Expect.equal
                    (fileBytes (Path.Combine(killed, "model")))
                    (fileBytes (Path.Combine(straight, "model")))
                    "identical final weights"
            }
        ]
    ]
