module StateX.Tests.SegmentedCheckpointTests

open System
open System.IO
open System.Text.Json.Nodes
open Expecto
open TorchSharp
open StateX
open StateX.Gla
open StateX.Models
open StateX.Training
open StateX.Autograd

/// Tiny configs (random weights). GLA with short convolutions, so the conv windows are carried between segments
/// along with the recurrent state, and weights large enough (initializer_range 0.2) that what the state carries
/// moves the gradients well beyond the tolerance; both with chunks of 16, so segments shorter than a chunk and
/// segments cutting chunks apart both occur.
let private glaConfig =
    """{"model_type": "gla", "hidden_size": 32, "num_heads": 2, "num_hidden_layers": 2, "vocab_size": 260,
  "expand_k": 0.5, "expand_v": 1.0, "hidden_ratio": 2, "tie_word_embeddings": true, "use_short_conv": true, "conv_size": 4,
  "initializer_range": 0.2, "eos_token_id": 258, "bos_token_id": 257}"""
let private mamba2Config =
    """{"model_type": "mamba2", "hidden_size": 32, "num_hidden_layers": 2, "vocab_size": 260,
  "state_size": 8, "head_dim": 8, "num_heads": 8, "expand": 2, "n_groups": 1, "conv_kernel": 4, "chunk_size": 16,
  "tie_word_embeddings": true, "residual_in_fp32": true, "initializer_range": 0.02, "eos_token_id": 258}"""

let private configFile (json: string) =
    let path = Path.Combine(Fixtures.tempDir (), "config.json")
    File.WriteAllText(path, json)
    path

let private create (json: string) seed () : ICausalLanguageModel =
    torch.manual_seed seed |> ignore
    let m = Checkpoint.FromConfig(configFile json, warn = ignore)
    match m with
    | :? GlaForCausalLM as g -> g.ChunkSize <- 16
    | _ -> ()
    m

let private families = [ "gla", glaConfig; "mamba2", mamba2Config ]

/// T = 40 tokens: 13 does not divide it, 5 does and is shorter than a chunk, 2 is shorter than the conv window (K−1 = 3).
let private T = 40L
let private segments = [ 13; 5; 2 ]

let private gradsOf (model: ICausalLanguageModel) =
    model.Module.named_parameters ()
    |> Seq.filter (fun struct (_, p) -> not (isNull p.grad))
    |> Seq.map (fun struct (n, p) -> n, p.grad.clone ())
    |> Map.ofSeq

let private lossAndGrads (model: ICausalLanguageModel) (ids: torch.Tensor) checkpoint segment =
    for struct (_, p) in model.Module.named_parameters () do
        p.grad <- null
    let stack = (model :?> ITrainableModel).TrainingStack()
    let loss = TrainingLoss.Compute(stack, ids.narrow (1, 0L, T), ids.narrow (1, 1L, T), checkpoint, 16, segment)
    loss.backward ()
    loss.item<float32>() |> float, gradsOf model

let private expectSameGradients (expected: Map<string, torch.Tensor>) (actual: Map<string, torch.Tensor>) what =
    Expect.equal (Set.ofSeq actual.Keys) (Set.ofSeq expected.Keys) (sprintf "%s: the same parameters get gradients" what)
    for KeyValue(name, g) in expected do
        let diff = (g - actual[name]).abs().max().item<float32>()
        Expect.isLessThan diff 1e-5f (sprintf "%s: gradient of %s" what name)

let private mqar = "synth:mqar:pairs=4:len=32:vocab=256"

let private trainOptions segment =
    TrainOptions(
        Steps = 10,
        SeqLen = 32,
        BatchSize = 2,
        LearningRate = 3e-3,
        WarmupSteps = Nullable 2,
        Device = "cpu",
        CheckpointEvery = Nullable 10,
        ActivationCheckpointing = Option.isSome segment,
        CheckpointSegment = Option.toNullable segment
    )

let private metricLosses dir =
    File.ReadAllLines(Path.Combine(dir, "metrics.jsonl")) |> Array.map (fun l -> JsonNode.Parse(l).["loss"].GetValue<float>())

[<Tests>]
let tests =
    testSequenced
    <| testList "segmented checkpointing" [
        test "a checkpointed function of several tensors gives every input and closed-over parameter its gradient, used outputs or not" {
            torch.manual_seed 5L |> ignore
            let w = torch.randn([| 3L |]).requires_grad_(true)
            let f (xs: Collections.Generic.IReadOnlyList<torch.Tensor>) : Collections.Generic.IReadOnlyList<torch.Tensor> =
                let x, s = xs[0], xs[1]
                [| x * w + s; s * x.mean () |]
            for useState in [ false; true ] do
                let x0, s0 = torch.randn ([| 2L; 3L |]), torch.randn ([| 2L; 3L |])
                let gradients checkpoint =
                    w.grad <- null
                    let x, s = x0.clone().requires_grad_(true), s0.clone().requires_grad_(true)
                    let out = if checkpoint then ActivationCheckpoint.Apply(Func<_, _>(f), [| x; s |]) else f [| x; s |]
                    let loss = (out[0] * out[0]).sum() + (if useState then (out[1] * 3.0).sum() else torch.zeros ([||]))
                    loss.backward ()
                    [ x.grad.clone (); s.grad.clone (); w.grad.clone () ]
                let plain, ckpt = gradients false, gradients true
                for name, a, b in List.zip3 [ "x"; "state"; "closed-over parameter" ] plain ckpt do
                    Expect.isTrue
                        (torch.allclose (a, b, rtol = 1e-6, atol = 1e-7))
                        (sprintf "gradient of %s (second output used: %b)" name useState)
        }

        for fam, json in families do
            test (sprintf "%s: loss and every gradient with segmented checkpointing equal the plain ones" fam) {
                let model = create json 1L ()
                torch.manual_seed 2L |> ignore
                let ids = torch.randint (0L, 256L, [| 2L; T + 1L |])
                let plain, g0 = lossAndGrads model ids false 0
                for segment in segments do
                    let loss, g = lossAndGrads model ids true segment
                    Expect.floatClose { absolute = 1e-5; relative = 1e-5 } loss plain (sprintf "loss with segments of %d" segment)
                    expectSameGradients g0 g (sprintf "segments of %d" segment)
            }

            test (sprintf "%s: with frozen embeddings the blocks still get their exact gradients" fam) {
                let model = create json 1L ()
                for struct (name, p) in model.Module.named_parameters () do
                    if name.Contains "embeddings" then p.requires_grad <- false
                let ids = torch.randint (0L, 256L, [| 2L; T + 1L |])
                let _, g0 = lossAndGrads model ids false 0
                let _, g = lossAndGrads model ids true 5
                Expect.isTrue (g |> Map.exists (fun n _ -> n.Contains "layers.0")) "block 0 parameters get gradients"
                Expect.isFalse (g |> Map.exists (fun n _ -> n.Contains "embeddings")) "frozen embeddings get none"
                expectSameGradients g0 g "frozen embeddings, segments of 5"
            }

            test (sprintf "%s: a 10-step run with segmented checkpointing follows the plain run" fam) {
                let plainDir, segDir = Fixtures.tempDir (), Fixtures.tempDir ()
                Trainer.Run(TrainJob(Func<_>(create json 0L), mqar, "byte", trainOptions None, plainDir)) |> ignore
                let s = Trainer.Run(TrainJob(Func<_>(create json 0L), mqar, "byte", trainOptions (Some 6), segDir))
                let a, b = metricLosses plainDir, metricLosses segDir
                Expect.equal b.Length 10 "ten steps"
                for i in 0..9 do
                    Expect.floatClose { absolute = 1e-4; relative = 1e-4 } b[i] a[i] (sprintf "loss at step %d" (i + 1))
                Expect.isLessThan b[9] b[0] "it learned"
                let load dir =
                    Checkpoint.Load(Path.Combine(dir, "model"), warn = ignore).Module.named_parameters()
                    |> Seq.map (fun struct (n, p) -> n, p)
                    |> Map.ofSeq
                let pa, pb = load plainDir, load s.RunDirectory
                for KeyValue(name, p) in pa do
                    let diff = (p - pb[name]).abs().max().item<float32>()
                    Expect.isLessThan diff 1e-3f (sprintf "final %s" name)
                let options = JsonNode.Parse(File.ReadAllText(Path.Combine(segDir, "config.json"))).["options"]
                Expect.equal (options.["checkpoint_segment"].GetValue<int>()) 6 "the run's config records the segment length"
            }

        test
            "chained checkpoints sharing a gradient relay (which releases each handed-back gradient early) give the plain graph's gradients" {
            // Three chained checkpoints; the relay sees their backward calls in turn (last first).
            let relay = new GradientRelay()
            let w = torch.randn([| 4L; 4L |]).requires_grad_(true)
            let f (xs: Collections.Generic.IReadOnlyList<torch.Tensor>) : Collections.Generic.IReadOnlyList<torch.Tensor> =
                [| xs.[0].matmul(w).tanh() |] :> _
            let x0 = torch.randn([| 3L; 4L |]).requires_grad_(true)
            let mutable x = x0
            for _ in 1..3 do
                x <- ActivationCheckpoint.Apply(Func<_, _>(f), [| x |], relay).[0]
            x.sum().backward()
            // The chain's gradient still reaches the first input and the weight, equal to the plain graph's.
            let gx, gw = x0.grad.clone (), w.grad.clone ()
            x0.grad.zero_ () |> ignore
            w.grad.zero_ () |> ignore
            let mutable y = x0
            for _ in 1..3 do
                y <- (f [| y |]).[0]
            y.sum().backward()
            Expect.isTrue (torch.allclose (gx, x0.grad, 1e-6, 1e-6)) "input gradient as without checkpoints"
            Expect.isTrue (torch.allclose (gw, w.grad, 1e-6, 1e-6)) "weight gradient as without checkpoints"
            relay.Dispose()
        }

        test "segment options are checked, and runs recorded before they existed read as whole sequences" {
            let bad (o: TrainOptions) text =
                Expect.throwsC (fun () -> o.Validate()) (fun e -> Expect.stringContains e.Message text "error names the problem")
            bad (TrainOptions(CheckpointSegment = Nullable 64)) "needs activation checkpointing"
            bad (TrainOptions(CheckpointSegment = Nullable 0, ActivationCheckpointing = true)) "at least 1 token"
            let model = create mamba2Config 0L ()
            let stack = (model :?> ITrainableModel).TrainingStack()
            let ids = torch.randint (0L, 256L, [| 1L; 9L |])
            Expect.throwsC
                (fun () -> TrainingLoss.Compute(stack, ids.narrow (1, 0L, 8L), ids.narrow (1, 1L, 8L), false, 16, 4) |> ignore)
                (fun e -> Expect.stringContains e.Message "needs activation checkpointing" "segments without checkpointing")
            // A loss chunk of 0 used to loop for ever.
            Expect.throwsC
                (fun () -> TrainingLoss.Compute(stack, ids.narrow (1, 0L, 8L), ids.narrow (1, 1L, 8L), false, 0) |> ignore)
                (fun e -> Expect.stringContains e.Message "loss chunk must be at least 1 token (got 0)" "loss chunk 0")
            let json = TrainOptions(ActivationCheckpointing = true, CheckpointSegment = Nullable 128).ToJson()
            Expect.equal (TrainOptions.FromJson(json, "test").CheckpointSegment) (Nullable 128) "round trip"
            json.Remove "checkpoint_segment" |> ignore
            Expect.equal (TrainOptions.FromJson(json, "old run").CheckpointSegment) (Nullable()) "absent = whole sequences"
        }

        test "statex train --checkpoint-segment trains in segments, and refuses it without --activation-checkpointing" {
            let cfg = configFile mamba2Config
            let args out = [
                "train"
                "--config"
                cfg
                "--data"
                mqar
                "--steps"
                "2"
                "--seq-len"
                "32"
                "--batch"
                "2"
                "--out"
                out
                "--checkpoint-segment"
                "8"
            ]
            let out = Fixtures.tempDir ()
            let r = Cli.run (args out @ [ "--activation-checkpointing" ])
            Expect.equal r.ExitCode 0 (sprintf "exit code (stderr: %s)" r.Stderr)
            let options = JsonNode.Parse(File.ReadAllText(Path.Combine(out, "config.json"))).["options"]
            Expect.equal (options.["checkpoint_segment"].GetValue<int>()) 8 "segment length recorded"
            let refused = Cli.run (args (Fixtures.tempDir ()))
            Expect.equal refused.ExitCode 1 "refused"
            Expect.stringContains refused.Stderr "needs activation checkpointing" "says what is missing"
        }
    ]
