/// Pipelines: stage keys, skipping finished stages, shared prefixes, frozen layers, metrics.
module StateX.Tests.FSharpPipelineTests

open System
open System.IO
open Expecto
open StateX
open StateX.Models

let tinyTraining =
    TrainSpec.on "synth:mqar:pairs=2:len=16:vocab=259" |> TrainSpec.steps 2 |> TrainSpec.seqLen 16 |> TrainSpec.batch 2 |> TrainSpec.lr 1e-2

let tinyEval = EvalSpec.tasks [ Mqar([ 2 ], 16, 4, None) ]
let settings = { RunSettings.quiet with Device = "cpu" }

let private model = Model.gla { GlaSpec.tiny with Heads = 2; Hidden = 32 }
let private expanded = model |> Expand.all (MergeHeads Reinit)

let private parameters (dir: string) =
    let lm = Checkpoint.Load(dir, warn = Action<string>(ignore))
    dict [ for struct (n, p) in lm.Module.named_parameters () -> n, p.detach().clone() ]

[<Tests>]
let tests =
    testList "fsharp.pipeline" [
        test "stage keys depend on what determines a stage and nothing after it" {
            let p = Pipeline.statex "a" expanded tinyTraining tinyTraining tinyEval
            let keys = Pipeline.keys p |> List.map snd
            Expect.equal (List.distinct keys).Length 4 "four distinct stage keys"
            let renamed = { p with Name = "b" }
            Expect.equal (Pipeline.keys renamed |> List.map snd) keys "the name is not part of any stage key"
            let laterChange = p |> Pipeline.mapPostTraining (TrainSpec.steps 3)
            let k2 = Pipeline.keys laterChange |> List.map snd
            Expect.equal (List.take 2 k2) (List.take 2 keys) "pretraining and expansion keep their keys"
            Expect.notEqual k2.[2] keys.[2] "post-training changes"
            Expect.notEqual k2.[3] keys.[3] "and so does everything after it"
            let otherExpansion = p |> Pipeline.mapModel (fun m -> Expand.none m |> Expand.all (MergeHeads Inherit))
            let k3 = Pipeline.keys otherExpansion |> List.map snd
            Expect.equal k3.[0] keys.[0] "the expansion does not change the pretraining"
            Expect.notEqual k3.[1] keys.[1] "but changes the expansion stage"
            let lpt = Pipeline.lpt "lpt" expanded tinyTraining tinyTraining tinyEval
            Expect.equal (Pipeline.keys lpt |> List.map snd |> List.head) keys.[0] "the LPT arm shares the pretraining key"
            let noop = Pipeline.statex "x" model tinyTraining tinyTraining tinyEval
            Expect.equal
                (Pipeline.keys noop)
                (Pipeline.keys (Pipeline.lpt "y" model tinyTraining tinyTraining tinyEval))
                "StateX with nothing to expand is the LPT arm"
        }

        test "a pipeline runs each stage once; a re-run and the other arm reuse finished stages" {
            let root = Fixtures.tempDir ()
            let p = Pipeline.statex "statex" expanded tinyTraining tinyTraining tinyEval
            Expect.stringContains (Pipeline.describe root p) "[to do]" "nothing done yet"
            let first = Pipeline.run settings root p
            Expect.equal [ for s in first.Stages -> s.Stage ] [ "pretrain"; "expand"; "posttrain"; "evaluate" ] "stages in order"
            Expect.isTrue (first.Stages |> List.forall (fun s -> not s.Skipped)) "all ran"
            Expect.isNonEmpty first.Results "evaluation results"
            Expect.isTrue (first.Results |> List.forall (fun r -> r.Model = "statex")) "results carry the pipeline's name"
            let post = first.Stages.[2]
            Expect.equal
                (Model.ofCheckpoint post.ModelDirectory.Value)
                (Model.flatten expanded)
                "the post-trained model is the expanded description"
            Expect.equal
                (Model.ofCheckpoint first.Stages.[0].ModelDirectory.Value)
                model
                "the pretrained model is the unexpanded description"
            Expect.isFalse ((Pipeline.describe root p).Contains "[to do]") "describe shows every stage done"

            let again = Pipeline.run settings root p
            Expect.isTrue (again.Stages |> List.forall (fun s -> s.Skipped)) "a re-run skips every stage"
            Expect.equal [ for r in again.Results -> r.Value ] [ for r in first.Results -> r.Value ] "same results read back"
            Expect.equal [ for s in again.Stages -> s.Loss ] [ for s in first.Stages -> s.Loss ] "same losses read back"

            let lpt = Pipeline.run settings root (Pipeline.lpt "lpt" expanded tinyTraining tinyTraining tinyEval)
            Expect.equal
                [ for s in lpt.Stages -> s.Stage, s.Skipped ]
                [ "pretrain", true; "posttrain", false; "evaluate", false ]
                "the LPT arm reuses the pretraining"
            let m = Pipeline.metrics first
            Expect.equal m.["state_size"] (float (Model.stateSize expanded)) "state size in the metrics"
            Expect.isTrue (m.ContainsKey "pretrain.loss" && m.ContainsKey "posttrain.loss") "training losses in the metrics"
            Expect.isTrue (m |> Map.exists (fun k _ -> k.StartsWith "mqar/accuracy/")) "evaluation results in the metrics"
        }

        test "runs of a parallel sweep share a stage and it runs once" {
            let folder = Fixtures.tempDir ()
            let sweep =
                Sweep.ofList [
                    Pipeline.lpt "lpt" expanded tinyTraining tinyTraining tinyEval
                    Pipeline.statex "statex" expanded tinyTraining tinyTraining tinyEval
                ]
            let records =
                Sweep.runWith
                    { Sweep.options folder with Parallelism = 2; Log = ignore }
                    (Pipeline.runner settings (Path.Combine(folder, "stages")))
                    sweep
            Expect.equal [ for r in records -> r.Status ] [ "done"; "done" ] "both done"
            let pretrain = Directory.GetDirectories(Path.Combine(folder, "stages"), "*-pretrain") |> Array.exactlyOne
            Expect.equal
                (File.ReadAllLines(Path.Combine(pretrain, "metrics.jsonl")).Length)
                tinyTraining.Steps
                "the shared pretraining ran once"
            for r in records do
                Expect.isTrue (File.Exists(Path.Combine(Sweep.runFolder folder r.Hash, "eval.jsonl"))) "each run has its results"
        }

        test "freezing the others trains only the expanded layers" {
            let root = Fixtures.tempDir ()
            let frozen = model |> Expand.layers [ 0 ] (MergeHeads Reinit) |> Expand.freezeOthers
            let r = Pipeline.run settings root (Pipeline.create "frozen" frozen |> Pipeline.expand |> Pipeline.postTrain tinyTraining)
            let before, after = parameters r.Stages.[0].ModelDirectory.Value, parameters r.Stages.[1].ModelDirectory.Value
            for KeyValue(name, p) in before do
                let same = after.[name].equal(p).all().item<bool>()
                if name.StartsWith "model.layers.0.attn." then
                    Expect.isFalse same (name + " (expanded) is trained")
                elif name.StartsWith "model.layers.1." || name.StartsWith "model.embeddings" then
                    Expect.isTrue same (name + " (not expanded) is unchanged")
        }

        test "pipelines that cannot run are refused before anything runs" {
            let refused (p: Pipeline) fragment =
                Expect.throwsC (fun () -> Pipeline.validate p) (fun e -> Expect.stringContains e.Message fragment "names the problem")
            refused (Pipeline.create "x" model) "no stages"
            refused (Pipeline.create "x" model |> Pipeline.evaluate tinyEval |> Pipeline.pretrain tinyTraining) "pretrain must be the first"
            refused (Pipeline.create "x" expanded |> Pipeline.pretrain tinyTraining) "no expand stage"
            refused (Pipeline.create "x" expanded |> Pipeline.expand |> Pipeline.expand) "twice"
            refused (Pipeline.create "x" model |> Pipeline.pretrain (tinyTraining |> TrainSpec.steps 0)) "steps"
        }
    ]
