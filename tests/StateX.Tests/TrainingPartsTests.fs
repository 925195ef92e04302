module StateX.Tests.TrainingPartsTests

open System
open System.IO
open Expecto
open TorchSharp
open StateX.Training

let private close (a: float) (b: float) msg = Expect.floatClose Accuracy.high a b msg

[<Tests>]
let tests =
    testList "training-parts" [
        testList "schedules" [
            test "cosine: linear warm-up, peak, cosine to the floor at the last step" {
                let s = LearningRateSchedule.Parse("cosine", 1e-3, 10, 111, 0.1)
                close (s.At 0) 1e-4 "first warm-up step"
                close (s.At 9) 1e-3 "end of warm-up is the peak"
                close (s.At 110) 1e-4 "last step at the floor"
                close (s.At 60) (1e-4 + 0.9e-3 * 0.5) "half-way is the mean of peak and floor"
                for t in 10..109 do
                    Expect.isGreaterThanOrEqual (s.At t) (s.At(t + 1)) "non-increasing after warm-up"
            }
            test "wsd: stable at the peak, then linear decay over the last fraction" {
                let s = LearningRateSchedule.Parse("wsd:0.25", 2e-3, 0, 101, 0.0)
                close (s.At 0) 2e-3 "starts at peak without warm-up"
                close (s.At 75) 2e-3 "stable until 75%"
                close (s.At 100) 0.0 "decays to the floor"
                close (s.At 88) (2e-3 * (1.0 - 13.0 / 25.0)) "linear in the decay phase"
            }
            test "constant after warm-up" {
                let s = LearningRateSchedule.Parse("constant", 5e-4, 4, 50)
                close (s.At 1) 2.5e-4 "warm-up"
                close (s.At 49) 5e-4 "constant"
            }
            test "bad schedules are refused by name" {
                Expect.throwsC (fun () -> LearningRateSchedule.Parse("linear", 1e-3, 0, 10) |> ignore) (fun e ->
                    Expect.stringContains e.Message "linear" "names it")
                Expect.throwsC (fun () -> LearningRateSchedule.Parse("cosine", 1e-3, 20, 10) |> ignore) (fun e ->
                    Expect.stringContains e.Message "warm-up" "warm-up too long")
                Expect.throwsC (fun () -> LearningRateSchedule.Parse("cosine", -1.0, 0, 10) |> ignore) (fun e ->
                    Expect.stringContains e.Message "positive" "negative lr")
            }
        ]

        testList "adamw" [
            test "matches TorchSharp's AdamW, with no decay on 1-D parameters" {
                torch.manual_seed 3L |> ignore
                let w0 = torch.randn (4L, 3L)
                let b0 = torch.randn (3L)
                let mk () = new Modules.Parameter(w0.clone ()), new Modules.Parameter(b0.clone ())
                let (w1, b1), (w2, b2) = mk (), mk ()
                let ours =
                    new AdamW(
                        [ struct ("layer.weight", w1); struct ("layer.bias", b1) ],
                        weightDecay = 0.1,
                        beta1 = 0.9,
                        beta2 = 0.95,
                        eps = 1e-8
                    )
                let refW = torch.optim.AdamW([ w2 ], lr = 0.01, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1)
                let refB = torch.optim.AdamW([ b2 ], lr = 0.01, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.0)
                let x = torch.randn (5L, 4L)
                for _ in 1..5 do
                    ours.ZeroGrad()
                    refW.zero_grad ()
                    refB.zero_grad ()
                    (let y = x.matmul (w1) + b1 in (y * y).sum()).backward()
                    (let y = x.matmul (w2) + b2 in (y * y).sum()).backward()
                    ours.StepWith 0.01
                    refW.step () |> ignore
                    refB.step () |> ignore
                Expect.isTrue (w1.allclose (w2, rtol = 1e-5, atol = 1e-6)) "weights agree"
                Expect.isTrue (b1.allclose (b2, rtol = 1e-5, atol = 1e-6)) "biases agree"
                Expect.isFalse (w1.allclose (w0)) "weights moved"
            }
            test "bf16 parameters keep a float32 master so small updates accumulate" {
                let p = new Modules.Parameter(torch.ones (8L, 8L, dtype = torch.ScalarType.BFloat16))
                let opt = new AdamW([ struct ("w", p) ], weightDecay = 0.0)
                for _ in 1..10 do
                    opt.ZeroGrad()
                    p.sum().backward()
                    opt.StepWith 1e-4
                let master = opt.StateTensors() |> Seq.find (fun kv -> kv.Key = "master.w")
                Expect.floatClose
                    { absolute = 1e-6; relative = 0.0 }
                    (master.Value.mean().item<float32>() |> float)
                    0.999
                    "master holds 1 - 10·lr"
                Expect.equal p.dtype torch.ScalarType.BFloat16 "parameter stays bf16"
            }
            test "frozen parameters are not handed to the optimiser; none trainable is an error" {
                let a = new Modules.Parameter(torch.ones (2L, 2L))
                let b = new Modules.Parameter(torch.ones (2L, 2L), requires_grad = false)
                let opt = new AdamW([ struct ("a", a); struct ("b", b) ])
                Expect.equal (opt.Parameters |> Seq.map (fun e -> e.Name) |> List.ofSeq) [ "a" ] "only trainable"
                Expect.throwsC (fun () -> new AdamW([ struct ("b", b) ]) |> ignore) (fun e ->
                    Expect.stringContains e.Message "frozen" "says why")
            }
            test "decay exactly on tensors of two or more dimensions (the official p.dim() >= 2 rule)" {
                Expect.isFalse (AdamW.DecaysByDefault(torch.ones (2L))) "1-D: norms, biases, A_log, D, dt_bias"
                Expect.isFalse (AdamW.DecaysByDefault(torch.ones (Array.empty<int64>))) "0-D"
                Expect.isTrue (AdamW.DecaysByDefault(torch.ones (2L, 2L))) "2-D: projections, embeddings"
                Expect.isTrue (AdamW.DecaysByDefault(torch.ones (2L, 1L, 4L))) "3-D: conv1d weights"
            }
        ]

        testList "checkpoint store" [
            let write (text: string) =
                fun (dir: string) ->
                    File.WriteAllText(Path.Combine(dir, "state.json"), text)
                    File.WriteAllBytes(Path.Combine(dir, "model.bin"), Array.init 1000 byte)
            test "keeps the last k and finds the newest" {
                let run = Fixtures.tempDir ()
                let store = CheckpointStore(run, keepLast = 2)
                for s in [ 10; 20; 30; 40 ] do
                    store.Save(s, write (string s)) |> ignore
                Expect.equal (store.List() |> Seq.map (fun struct (s, _) -> s) |> List.ofSeq) [ 40; 30 ] "two newest kept"
                Expect.equal (store.LatestValid().Step) 40 "newest"
            }
            test "a truncated or corrupted checkpoint is rejected and an older good one is used" {
                let run = Fixtures.tempDir ()
                let warnings = Collections.Generic.List<string>()
                let store = CheckpointStore(run, keepLast = 3, warn = Action<string>(warnings.Add))
                for s in [ 1; 2; 3 ] do
                    store.Save(s, write (string s)) |> ignore
                let newest = store.LatestValid().Directory
                use fs = new FileStream(Path.Combine(newest, "model.bin"), FileMode.Open)
                fs.SetLength 500L
                fs.Close()
                let middle = Path.Combine(store.Root, CheckpointStore.FolderName 2)
                File.WriteAllText(Path.Combine(middle, "state.json"), "9") // same size, different bytes
                let e = store.LatestValid()
                Expect.equal e.Step 1 "falls back to the intact one"
                Expect.equal warnings.Count 2 "two warnings"
                Expect.stringContains warnings.[0] "truncated" "says truncated"
                Expect.stringContains warnings.[1] "checksum" "says corrupted"
            }
            test "a checkpoint interrupted mid-write is never taken for complete" {
                let run = Fixtures.tempDir ()
                let store = CheckpointStore(run)
                store.Save(5, write "5") |> ignore
                try
                    store.Save(
                        6,
                        fun dir ->
                            write "6" dir
                            failwith "killed"
                    )
                    |> ignore
                with _ ->
                    ()
                Expect.equal (store.LatestValid().Step) 5 "the interrupted one does not exist"
                Expect.isEmpty (Directory.GetDirectories(store.Root, ".*")) "temporary folder cleaned"
            }
        ]
    ]
