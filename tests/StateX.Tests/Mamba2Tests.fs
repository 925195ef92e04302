module StateX.Tests.Mamba2Tests

open System
open System.IO
open System.Text.Json.Nodes
open Expecto
open StateX.Tests.TensorAssert
open TorchSharp
open StateX.IO
open StateX.Models
open StateX.Mamba2

/// A small model with untied head, biases and 2 groups; chunk 8 so T = 21 leaves a partial chunk.
let private tinyConfig () =
    Mamba2Config(
        VocabSize = 40,
        HiddenSize = 16,
        NumLayers = 2,
        StateSize = 8,
        NumHeads = 4,
        HeadDim = 8,
        NGroups = 2,
        ChunkSize = 8,
        ConvKernel = 4,
        UseBias = true,
        TieWordEmbeddings = false
    )

/// Moves the SSM parameters away from their initialisation so decays span a wide range (fast and slow heads).
let private perturb (m: Mamba2Mixer) =
    use _ = torch.no_grad ()
    m.A_log.uniform_ (-1.0, 1.5) |> ignore
    m.dt_bias.normal_ (0.0, 1.0) |> ignore
    m.D.normal_ (0.0, 1.0) |> ignore
    m.norm.weight.normal_ (1.0, 0.2) |> ignore

let private tinyModel seed =
    torch.manual_seed (int64 seed) |> ignore
    let m = new Mamba2ForCausalLM(tinyConfig ())
    for l in m.backbone.layers do
        perturb l.mixer
    m.eval () |> ignore
    m

let private ids (seed: int) b t =
    torch.manual_seed (int64 seed) |> ignore
    torch.randint (40L, [| int64 b; int64 t |], dtype = torch.ScalarType.Int64)

/// Holds a fixture to the logits stored beside it: transformers' pure-PyTorch path on the CPU in float64 (see
/// ../shared/fixtures/README.md), whose float32 round-off is 2e-6 to 5e-6; 2e-5 leaves room for ours and no more.
let private parity name =
    let dir = Fixtures.dir name
    let warnings = ResizeArray<string>()
    let model = Checkpoint.Load(dir, warn = Action<string>(warnings.Add))
    let inputIds, expected = Fixtures.io name
    use _ = torch.no_grad ()
    let chunked = TensorAssert.close 2e-5 (name + " chunked logits vs the fixture") (model.Forward(inputIds).Logits) expected
    let recurrent =
        TensorAssert.close
            2e-5
            (name + " recurrent logits vs the fixture")
            (model.Forward(inputIds, mode = ForwardMode.Recurrent).Logits)
            expected
    printfn "parity %s: max abs logit diff chunked %.3g, recurrent %.3g" name chunked recurrent
    Expect.equal model.Family "mamba2" "family"
    Expect.isEmpty warnings "no warnings for a reference checkpoint"

let private loadError<'e when 'e :> exn> dir =
    try
        Checkpoint.Load(dir, warn = Action<string>(ignore)) |> ignore
        failtestf "expected %s" typeof<'e>.Name
    with :? 'e as e ->
        e.Message

let private grads (m: torch.nn.Module) (x: torch.Tensor) =
    [ for struct (n, p) in m.named_parameters () -> n, p.grad.clone () ] @ [ "input", x.grad.clone () ]

[<Tests>]
let tests =
    testList "mamba2" [
        testList "parity" [
            test "mamba2-tiny (transformers, tied head)" { parity "mamba2-tiny" }
            test "mamba2-tiny-mamba-ssm (mamba_ssm dialect)" { parity "mamba2-tiny-mamba-ssm" }
            test "mamba2-groups (2 groups, biases, untied head)" { parity "mamba2-groups" }
        ]

        test "chunked and recurrent SSD agree with an initial state, T not a multiple of the chunk" {
            torch.manual_seed 1L |> ignore
            let b, t, h, p, g, n = 2L, 21L, 4L, 8L, 2L, 8L
            use x = torch.randn (b, t, h, p)
            use dt = torch.nn.functional.softplus (torch.randn (b, t, h) + 0.5)
            use a = -torch.rand(h) * 3.0
            use bm = torch.randn (b, t, g, n)
            use cm = torch.randn (b, t, g, n)
            use h0 = torch.randn (b, h, p, n)
            let struct (yc, sc) = ChunkedSsd.Forward(x, dt, a, bm, cm, 8L, h0)
            let struct (yr, sr) = RecurrentSsd.Forward(x, dt, a, bm, cm, h0)
            Expect.sequenceEqual yc.shape [| b; t; h; p |] "y shape"
            Expect.sequenceEqual sc.shape [| b; h; p; n |] "state shape"
            Expect.isLessThan (maxAbs yc yr) 1e-4 "outputs"
            Expect.isLessThan (maxAbs sc sr) 1e-4 "final states"
        }

        test "fused CUDA kernels match the recurrence as closely as the autograd form (outputs and gradients, groups, strong decay)" {
            // Runs where a CUDA device is (the GPU machine); CI has none and skips it.
            if not (torch.cuda.is_available ()) then skiptest "no CUDA device: the fused SSD kernels are checked on a GPU machine"
            torch.manual_seed 4L |> ignore
            let b, t, h, p, g, n = 2L, 150L, 6L, 8L, 2L, 16L
            let dev = torch.CUDA
            let x = torch.randn (b, t, h, p)
            let dt = torch.nn.functional.softplus (torch.randn (b, t, h) + 0.5) * 3.0
            let a = -torch.rand(h) * 6.0
            let bm = torch.randn (b, t, g, n)
            let cm = torch.randn (b, t, g, n)
            let h0 = torch.randn (b, h, p, n)
            let w = torch.randn(b, t, h, p).``to``(dev)
            let run (form: SsdBackend option) =
                let leaves = [ x; dt; a; bm; cm; h0 ] |> List.map (fun v -> v.``to``(dev).detach().requires_grad_(true))
                let struct (y, s) =
                    match form with
                    | Some backend ->
                        ChunkedSsd.Forward(leaves.[0], leaves.[1], leaves.[2], leaves.[3], leaves.[4], 64L, leaves.[5], backend)
                    | None -> RecurrentSsd.Forward(leaves.[0], leaves.[1], leaves.[2], leaves.[3], leaves.[4], leaves.[5])
                ((y * w).sum() + s.square().sum()).backward()
                (y :: s :: (leaves |> List.map (fun v -> v.grad))) |> List.map (fun v -> v.cpu ())
            let fused = run (Some SsdBackend.Fused)
            let autograd = run (Some SsdBackend.Autograd)
            let recurrent = run None
            // As close to the recurrence as the autograd form is (dA sums over every position and head, so float32
            // round-off there is well above 1e-4 of its largest entry in both forms).
            for (name, (f, (a, r))) in
                List.zip [ "y"; "state"; "dx"; "ddt"; "dA"; "dB"; "dC"; "dh0" ] (List.zip fused (List.zip autograd recurrent)) do
                let scale = max 1.0 (float (r.abs().max().item<float32>()))
                Expect.isLessThan
                    (maxAbs f r)
                    (2.0 * maxAbs a r + 1e-5 * scale)
                    (sprintf "%s: fused %g, autograd %g from the recurrence" name (maxAbs f r) (maxAbs a r))
        }

        test "a fused-kernel request on the CPU names the problem" {
            use x = torch.randn (1L, 4L, 2L, 2L)
            Expect.throwsC
                (fun () ->
                    ChunkedSsd.Forward(
                        x,
                        torch.ones (1L, 4L, 2L),
                        -torch.ones(2L),
                        torch.randn (1L, 4L, 1L, 2L),
                        torch.randn (1L, 4L, 1L, 2L),
                        4L,
                        null,
                        SsdBackend.Fused
                    )
                    |> ignore)
                (fun e -> Expect.stringContains e.Message "CUDA only" "says the kernels need CUDA")
        }

        test "long chunks with strong decay stay finite and match the recurrence" {
            torch.manual_seed 2L |> ignore
            let b, t, h, p, g, n = 1L, 200L, 2L, 4L, 1L, 4L
            use x = torch.randn (b, t, h, p)
            use dt = torch.ones (b, t, h) * 5.0
            use a = torch.tensor ([| -20.0f; -0.01f |])
            use bm = torch.randn (b, t, g, n)
            use cm = torch.randn (b, t, g, n)
            let struct (yc, sc) = ChunkedSsd.Forward(x, dt, a, bm, cm, 128L, null)
            let struct (yr, sr) = RecurrentSsd.Forward(x, dt, a, bm, cm, null)
            Expect.isTrue (yc.isfinite().all().item<bool>()) "finite outputs"
            Expect.isLessThan (maxAbs yc yr / (1.0 + float (yr.abs().max().item<float32>()))) 1e-5 "outputs (relative)"
            Expect.isLessThan (maxAbs sc sr / (1.0 + float (sr.abs().max().item<float32>()))) 1e-5 "final states (relative)"
        }

        test "model: chunked and recurrent forms give the same logits and states" {
            use m = tinyModel 3
            use x = ids 4 2 21
            use _ = torch.no_grad ()
            let c = m.Forward(x, returnState = true)
            let r = m.Forward(x, returnState = true, mode = ForwardMode.Recurrent)
            Expect.isLessThan (maxAbs c.Logits r.Logits) 1e-4 "logits"
            for (lc, lr) in Seq.zip c.State.Layers r.State.Layers do
                for (tc, tr) in Seq.zip lc.Tensors lr.Tensors do
                    Expect.isLessThan (maxAbs tc tr) 1e-4 "layer state"
        }

        test "model: segment-wise with carried state equals one shot" {
            use m = tinyModel 5
            use x = ids 6 2 23
            use _ = torch.no_grad ()
            let whole = m.Forward(x, returnState = true)
            let mutable state = m.InitialState(2L, torch.CPU, f32)
            let parts = ResizeArray<torch.Tensor>()
            for (s, e) in [ 0, 5; 5, 16; 16, 23 ] do
                let o = m.Forward(x.narrow (1, int64 s, int64 (e - s)), state = state, returnState = true)
                parts.Add o.Logits
                state <- o.State
            use joined = torch.cat (parts :> Collections.Generic.IList<torch.Tensor>, 1L)
            Expect.isLessThan (maxAbs joined whole.Logits) 1e-4 "logits"
            for (a, b) in Seq.zip state.Layers whole.State.Layers do
                for (ta, tb) in Seq.zip a.Tensors b.Tensors do
                    Expect.isLessThan (maxAbs ta tb) 1e-4 "final state"
        }

        test "model: prefill then token-by-token decoding equals the full forward" {
            use m = tinyModel 7
            use x = ids 8 2 19
            use _ = torch.no_grad ()
            let whole = m.Forward(x)
            let prefill = m.Forward(x.narrow (1, 0L, 10L), returnState = true)
            let mutable state = prefill.State
            let steps = ResizeArray<torch.Tensor>([ prefill.Logits ])
            for i in 10L .. 18L do
                let o = m.Forward(x.narrow (1, i, 1L), state = state, returnState = true, mode = ForwardMode.Recurrent)
                steps.Add o.Logits
                state <- o.State
            use joined = torch.cat (steps :> Collections.Generic.IList<torch.Tensor>, 1L)
            Expect.isLessThan (maxAbs joined whole.Logits) 1e-4 "logits"
        }

        test "mixer: gradients of the chunked and recurrent forms agree" {
            torch.manual_seed 9L |> ignore
            use mixer = new Mamba2Mixer(tinyConfig (), 8)
            perturb mixer
            use u = torch.randn (2L, 13L, 16L)
            use w = torch.randn (2L, 13L, 16L)
            use h0 = torch.randn (2L, 4L, 8L, 8L)
            let run mode =
                mixer.zero_grad ()
                use x = u.clone().requires_grad_(true)
                let init = new Mamba2LayerState(torch.zeros (2L, mixer.ConvDim, 3L), h0)
                let struct (y, s) = mixer.Forward(x, init, mode)
                use loss = (y * w).sum() + s.Ssm.square().sum() * 0.01
                loss.backward ()
                grads mixer x
            let gc = run ForwardMode.Chunked
            let gr = run ForwardMode.Recurrent
            Expect.equal (List.map fst gc) (List.map fst gr) "same parameters"
            Expect.isGreaterThan (List.length gc) 8 "in_proj, conv1d, dt_bias, A_log, D, norm, out_proj, input"
            for ((n, a), (_, b)) in List.zip gc gr do
                let scale = 1.0 + float (b.abs().max().item<float32>())
                Expect.isLessThan (maxAbs a b / scale) 1e-4 (sprintf "gradient of %s" n)
                Expect.isGreaterThan (float (a.abs().max().item<float32>())) 0.0 (sprintf "gradient of %s is not zero" n)
        }

        test "save in the transformers dialect and reload bit-exactly" {
            use m = tinyModel 11
            let d = Fixtures.tempDir ()
            m.Save d
            let warnings = ResizeArray<string>()
            let loaded = Checkpoint.Load(d, warn = Action<string>(warnings.Add)) :?> Mamba2ForCausalLM
            Expect.isEmpty warnings "no warnings"
            Expect.equal loaded.Config.NGroups 2 "groups"
            let original = dict [ for struct (n, p) in m.named_parameters () -> n, p ]
            let reloaded = [ for struct (n, p) in loaded.named_parameters () -> n, p ]
            Expect.equal reloaded.Length original.Count "same parameter count"
            for (n, p) in reloaded do
                Expect.isTrue (p.eq(original.[n]).all().item<bool>()) (sprintf "%s bit-exact" n)
            use x = ids 12 1 9
            use _ = torch.no_grad ()
            Expect.equal (maxAbs (m.Forward x).Logits (loaded.Forward x).Logits) 0.0 "same logits"
        }

        test "a mamba_ssm checkpoint saved in the transformers dialect gives the same logits" {
            let src = Fixtures.dir "mamba2-tiny-mamba-ssm"
            let m = Checkpoint.Load(src, warn = Action<string>(ignore))
            let d = Fixtures.tempDir ()
            m.Save d
            let cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(d, "config.json"))).AsObject()
            Expect.equal (string cfg.["model_type"]) "mamba2" "transformers config"
            use r = new SafeTensorsReader(Path.Combine(d, "model.safetensors"))
            Expect.isTrue (r.Contains "backbone.embeddings.weight") "transformers embedding name"
            Expect.isFalse (r.Contains "lm_head.weight") "tied head not stored"
            let back = Checkpoint.Load(d, warn = Action<string>(ignore))
            use x = ids 13 1 7
            use _ = torch.no_grad ()
            Expect.equal (maxAbs (m.Forward x).Logits (back.Forward x).Logits) 0.0 "same logits"
        }

        test "state size report counts SSM and conv state per layer" {
            use m = tinyModel 14
            let r = m.StateSize()
            Expect.equal r.Layers.Count 2 "layers"
            // 4 heads × 8 × 8 + conv (32 + 2·2·8) × 3
            Expect.equal r.Layers.[0].Elements (4L * 8L * 8L + 64L * 3L) "elements"
            let st = m.InitialState(3L, torch.CPU, f32)
            Expect.equal (st.Layers.[0].Tensors |> Seq.sumBy (fun t -> t.numel ())) (3L * r.Layers.[0].Elements) "matches the state tensors"
        }

        test "per-layer d_state widens B/C rows of in_proj and their conv channels" {
            let wide =
                Mamba2Config(
                    VocabSize = 40,
                    HiddenSize = 16,
                    NumLayers = 2,
                    StateSize = 8,
                    NumHeads = 4,
                    HeadDim = 8,
                    NGroups = 2,
                    ChunkSize = 8,
                    LayerStateSizes = ([| 8; 32 |] :> Collections.Generic.IReadOnlyList<int>)
                )
            use w = new Mamba2ForCausalLM(wide)
            Expect.sequenceEqual w.backbone.layers.[1].mixer.in_proj.weight.shape [| 32L + (32L + 2L * 2L * 32L) + 4L; 16L |] "in_proj rows"
            Expect.sequenceEqual w.backbone.layers.[1].mixer.conv1d.weight.shape [| 32L + 2L * 2L * 32L; 1L; 4L |] "conv channels"
            Expect.equal w.backbone.layers.[0].mixer.DState 8L "layer 0 unchanged"
            let d = Fixtures.tempDir ()
            w.Save d
            let back = Checkpoint.Load(d) :?> Mamba2ForCausalLM
            Expect.equal back.backbone.layers.[1].mixer.DState 32L "override survives save/load"
            use x = ids 15 1 11
            use _ = torch.no_grad ()
            let c = back.Forward(x)
            let r = back.Forward(x, mode = ForwardMode.Recurrent)
            Expect.isLessThan (maxAbs c.Logits r.Logits) 1e-4 "both forms agree with mixed state sizes"
        }

        testList "configs and checkpoints" [
            test "mamba_ssm ssm_cfg takes mamba_ssm's Mamba2 defaults and pads the vocabulary" {
                let c =
                    ConfigJson.Parse(
                        """{"d_model": 256, "n_layer": 2, "vocab_size": 50277, "ssm_cfg": {"layer": "Mamba2"}, "pad_vocab_size_multiple": 16}"""
                    )
                let cfg = Mamba2Config.FromMambaSsm(c)
                Expect.equal cfg.StateSize 128 "d_state"
                Expect.equal cfg.ConvKernel 4 "d_conv"
                Expect.equal cfg.HeadDim 64 "headdim"
                Expect.equal cfg.NumHeads 8 "expand 2 · 256 / 64"
                Expect.equal cfg.NGroups 1 "ngroups"
                Expect.equal cfg.ChunkSize 256 "chunk_size"
                Expect.isFalse cfg.UseBias "bias"
                Expect.isTrue cfg.UseConvBias "conv_bias"
                Expect.isTrue cfg.TieWordEmbeddings "tie_embeddings"
                Expect.equal cfg.TimeStepLimitHigh Double.PositiveInfinity "dt_limit"
                Expect.equal cfg.VocabSize 50288 "50277 padded to a multiple of 16"
                Expect.isNull (c.UnknownKeysWarning()) "every key understood"
            }

            test "random initialisation follows each dialect's reference: mamba_ssm 0.02 and out_proj / √n_layer, transformers 0.1" {
                let ssm =
                    Mamba2Config.FromMambaSsm(
                        ConfigJson.Parse(
                            """{"d_model": 256, "n_layer": 16, "vocab_size": 4096, "ssm_cfg": {"layer": "Mamba2", "d_state": 16}}"""
                        )
                    )
                let hf =
                    Mamba2Config.FromHuggingFace(
                        ConfigJson.Parse(
                            """{"model_type": "mamba2", "hidden_size": 256, "num_heads": 8, "head_dim": 64, "n_groups": 1, "num_hidden_layers": 16, "vocab_size": 4096, "state_size": 16}"""
                        )
                    )
                let std (t: torch.Tensor) = float (t.std().item<float32>())
                torch.manual_seed 3L |> ignore
                use a = new Mamba2ForCausalLM(ssm)
                torch.manual_seed 3L |> ignore
                use b = new Mamba2ForCausalLM(hf)
                Expect.floatClose
                    { absolute = 0.002; relative = 0.0 }
                    (std a.backbone.embeddings.weight)
                    0.02
                    "mamba_ssm embeddings N(0, 0.02)"
                Expect.floatClose
                    { absolute = 0.005; relative = 0.0 }
                    (std b.backbone.embeddings.weight)
                    0.1
                    "transformers embeddings N(0, 0.1)"
                // kaiming-uniform(a=√5) of fan-in 512 has std 1/√(3·512); mamba_ssm divides it by √16.
                let expected = 1.0 / sqrt (3.0 * 512.0)
                for l in b.backbone.layers do
                    Expect.floatClose
                        { absolute = 0.0; relative = 0.05 }
                        (std l.mixer.out_proj.weight)
                        expected
                        "transformers: out_proj as nn.Linear"
                for l in a.backbone.layers do
                    Expect.floatClose
                        { absolute = 0.0; relative = 0.05 }
                        (std l.mixer.out_proj.weight)
                        (expected / 4.0)
                        "mamba_ssm: out_proj / √16"
                // The flag survives the Hugging Face config that Save writes.
                let back = Mamba2Config.FromHuggingFace(ConfigJson.Parse(ssm.ToHuggingFace().ToJsonString()))
                Expect.isTrue back.RescalePrenormResidual "rescale_prenorm_residual round trip"
                Expect.equal back.InitializerRange 0.02 "initializer_range round trip"
            }

            test "time_step_limit as a bare Infinity" {
                let c =
                    ConfigJson.Parse(
                        """{"model_type": "mamba2", "hidden_size": 16, "num_heads": 4, "head_dim": 8, "n_groups": 1, "num_hidden_layers": 1, "vocab_size": 10, "time_step_limit": [0.0, Infinity]}"""
                    )
                let cfg = Mamba2Config.FromHuggingFace(c)
                Expect.equal cfg.TimeStepLimitHigh Double.PositiveInfinity "infinite upper bound"
            }

            test "unknown keys give one warning naming them" {
                let d = Fixtures.copy "mamba2-tiny"
                Fixtures.editConfig d (fun o ->
                    o.["frobnicate"] <- JsonValue.Create 3
                    o.["zap_level"] <- JsonValue.Create true)
                let warnings = ResizeArray<string>()
                Checkpoint.Load(d, warn = Action<string>(warnings.Add)) |> ignore
                Expect.equal warnings.Count 1 "one warning"
                Expect.stringContains warnings.[0] "frobnicate" "names the first key"
                Expect.stringContains warnings.[0] "zap_level" "names the second key"
            }

            test "unsupported mamba_ssm features are refused by key" {
                let refused (edit: JsonObject -> unit) key =
                    let d = Fixtures.copy "mamba2-tiny-mamba-ssm"
                    Fixtures.editConfig d edit
                    Expect.stringContains (loadError<ConfigException> d) key (sprintf "names %s" key)
                refused (fun o -> o.["attn_layer_idx"] <- JsonArray(JsonValue.Create 1)) "attn_layer_idx"
                refused (fun o -> o.["d_intermediate"] <- JsonValue.Create 128) "d_intermediate"
                refused (fun o -> o.["ssm_cfg"].AsObject().["layer"] <- JsonValue.Create "Mamba1") "Mamba1"
                refused (fun o -> o.["ssm_cfg"].AsObject().["norm_before_gate"] <- JsonValue.Create true) "norm_before_gate"
                refused (fun o -> o.["rms_norm"] <- JsonValue.Create false) "rms_norm"
            }

            test "inconsistent head shapes are refused naming both sides" {
                let d = Fixtures.copy "mamba2-tiny"
                Fixtures.editConfig d (fun o -> o.["head_dim"] <- JsonValue.Create 12)
                let m = loadError<ConfigException> d
                Expect.stringContains m "num_heads" "names num_heads"
                Expect.stringContains m "expand" "names expand"
            }

            test "a missing weight is named" {
                let d = Fixtures.copy "mamba2-groups"
                let path = Path.Combine(d, "model.safetensors")
                let kept =
                    use r = new SafeTensorsReader(path)
                    [
                        for k in r.Tensors.Keys do
                            if k <> "backbone.layers.1.mixer.A_log" then Collections.Generic.KeyValuePair(k, r.Load k)
                    ]
                SafeTensorsWriter.Write(path, kept)
                Expect.stringContains (loadError<SafeTensorsException> d) "backbone.layers.1.mixer.A_log" "names the weight"
            }

            test "a weight of the wrong shape is named with both shapes" {
                let d = Fixtures.copy "mamba2-tiny"
                Fixtures.editConfig d (fun o -> o.["state_size"] <- JsonValue.Create 8)
                let m = loadError<SafeTensorsException> d
                Expect.stringContains m "in_proj.weight" "names the tensor"
                Expect.stringContains m "[296, 64]" "stored shape"
                Expect.stringContains m "[280, 64]" "expected shape"
            }

            test "sharded checkpoints load through model.safetensors.index.json" {
                let src = Fixtures.dir "mamba2-groups"
                let d = Fixtures.tempDir ()
                File.Copy(Path.Combine(src, "config.json"), Path.Combine(d, "config.json"))
                use r = new SafeTensorsReader(Path.Combine(src, "model.safetensors"))
                let names = r.Tensors.Keys |> Seq.sort |> Seq.toArray
                let half = names.Length / 2
                let map = JsonObject()
                for i, part in [ 0, names.[.. half - 1]; 1, names.[half..] ] do
                    let file = sprintf "model-%05d-of-00002.safetensors" (i + 1)
                    SafeTensorsWriter.Write(Path.Combine(d, file), [ for k in part -> Collections.Generic.KeyValuePair(k, r.Load k) ])
                    for k in part do
                        map.[k] <- JsonValue.Create file
                File.WriteAllText(
                    Path.Combine(d, "model.safetensors.index.json"),
                    JsonObject(dict [ "weight_map", map :> JsonNode ]).ToJsonString()
                )
                let a = Checkpoint.Load(src, warn = Action<string>(ignore))
                let b = Checkpoint.Load(d, warn = Action<string>(ignore))
                use x = ids 16 1 5
                use _ = torch.no_grad ()
                Expect.equal (maxAbs (a.Forward x).Logits (b.Forward x).Logits) 0.0 "same logits"
            }
        ]
    ]
