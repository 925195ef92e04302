module StateX.Tests.GsaTests

open System
open System.IO
open Expecto
open StateX.Tests.TensorAssert
open TorchSharp
open StateX.IO
open StateX.Models
open StateX.Gla
open StateX.Gsa
open StateX.Expansion

type private T = torch.Tensor

let private expectClose (a: T) (b: T) (tol: float) (what: string) = close tol what a b |> ignore
let private allFinite (x: T) = x.isfinite().all().item<bool>()

/// Random GSA operands in fla's layout: q, k [B,T,H,dk], v [B,T,H,dv], g [B,T,H,M] = logsigmoid(·)/8, s = 1 − exp(g).
let private inputs (seed: int64) (b: int64) (t: int64) (h: int64) (dk: int64) (dv: int64) (m: int64) (gateScale: float) =
    torch.manual_seed seed |> ignore
    let q = torch.randn (b, t, h, dk)
    let k = torch.randn (b, t, h, dk)
    let v = torch.randn (b, t, h, dv)
    let g = torch.nn.functional.logsigmoid (torch.randn (b, t, h, m) * gateScale) / 8.0
    q, k, v, 1.0 - g.exp (), g

/// fla/ops/gsa/naive.py transcribed literally: pass 1 over the whole sequence, softmax, then pass 2. An independent
/// check of RecurrentGsa, which interleaves the passes token by token.
let private naive (q: T) (k: T) (v: T) (s: T) (g: T) (hk0: T) (hv0: T) (scale: float) =
    let tr (x: T) = x.transpose (1, 2)
    let q, k, v, s, g = tr q, tr k, tr v, tr s, tr g
    let b, h, t, dk, dv, m = q.shape.[0], q.shape.[1], q.shape.[2], q.shape.[3], v.shape.[3], s.shape.[3]
    let mutable hk = if isNull hk0 then torch.zeros (b, h, dk, m) else hk0.clone ()
    let ok = torch.zeros (b, h, t, m)
    for i in 0L .. t - 1L do
        hk <- hk * g.select(2, i).exp().unsqueeze(-2) + k.select(2, i).unsqueeze(-1) * s.select(2, i).unsqueeze(-2)
        ok.select(2, i).copy_((q.select(2, i).unsqueeze(-1) * scale * hk).sum(-2L)) |> ignore
    let qv = ok.softmax (-1L)
    let mutable hv = if isNull hv0 then torch.zeros (b, h, m, dv) else hv0.clone ()
    let ov = torch.zeros (b, h, t, dv)
    for i in 0L .. t - 1L do
        hv <- hv * g.select(2, i).exp().unsqueeze(-1) + s.select(2, i).unsqueeze(-1) * v.select(2, i).unsqueeze(-2)
        ov.select(2, i).copy_((qv.select(2, i).unsqueeze(-1) * hv).sum(-2L)) |> ignore
    ov.transpose (1, 2), hk, hv

let private paramsOf (m: torch.nn.Module) = [ for struct (n, p) in m.named_parameters () -> n, p ]
let private param (m: torch.nn.Module) name = paramsOf m |> List.find (fun (n, _) -> n = name) |> snd

let private tinyConfigSlots (conv: bool) (tied: bool) (kvHeads: int option) (featureMap: string) (layerSlots: int[]) =
    GsaConfig(
        HiddenSize = 32,
        NumHeads = 2,
        NumKvHeads = Option.toNullable kvHeads,
        NumSlots = Nullable 6,
        NumHiddenLayers = 2,
        VocabSize = 50,
        UseShortConv = conv,
        ConvSize = 4,
        TieWordEmbeddings = tied,
        IntermediateSize = Nullable 48,
        FeatureMap = featureMap,
        DType = "float32",
        LayerNumSlots = layerSlots
    )

let private tinyConfig conv tied kvHeads featureMap = tinyConfigSlots conv tied kvHeads featureMap null

let private spreadGates (lm: GsaForCausalLM) =
    // fla's init (std 0.02) puts every slot gate at ≈ logsigmoid(0)/8; widen f_proj so slots forget at different rates.
    use _ = torch.no_grad ()
    for (n, p) in paramsOf lm do
        if n.EndsWith "f_proj.weight" then p.mul_ (torch.tensor 60.0) |> ignore
    lm

let private model seed (cfg: GsaConfig) =
    torch.manual_seed seed |> ignore
    spreadGates (new GsaForCausalLM(cfg))

let private ids seed b t vocab =
    torch.manual_seed seed |> ignore
    torch.randint (int64 vocab, [| b; t |], dtype = torch.ScalarType.Int64)

[<Tests>]
let tests =
    testList "gsa" [
        testList "forms" [
            test "the recurrence equals fla's naive two-pass reference (with an initial state)" {
                let q, k, v, s, g = inputs 1L 2L 23L 2L 5L 4L 3L 2.0
                let hk0, hv0 = torch.randn (2L, 2L, 5L, 3L), torch.randn (2L, 2L, 3L, 4L)
                let struct (o, hk, hv) = RecurrentGsa.Forward(q, k, v, s, g, hk0, hv0, 0.7)
                let on, hkn, hvn = naive q k v s g hk0 hv0 0.7
                expectClose o on 1e-5 "outputs"
                expectClose hk hkn 1e-5 "Hk"
                expectClose hv hvn 1e-5 "Hv"
            }
            for (t, slotChunk, chunk, backend) in
                [
                    (100L, 16, 64, GlaBackend.Autograd)
                    (37L, 8, 16, GlaBackend.Manual)
                    (5L, 16, 64, GlaBackend.Autograd)
                    (130L, 32, 32, GlaBackend.Manual)
                ] do
                for withState in [ false; true ] do
                    test (
                        sprintf
                            "chunked equals the recurrence: T=%d slot chunk=%d chunk=%d %A initial state=%b"
                            t
                            slotChunk
                            chunk
                            backend
                            withState
                    ) {
                        let q, k, v, s, g = inputs 2L 2L t 3L 8L 6L 5L 2.0
                        let hk0, hv0 = (if withState then torch.randn (2L, 3L, 8L, 5L), torch.randn (2L, 3L, 5L, 6L) else null, null)
                        let struct (oc, hkc, hvc) = ChunkedGsa.Forward(q, k, v, s, g, hk0, hv0, 0.5, slotChunk, chunk, 8, backend)
                        let struct (orr, hkr, hvr) = RecurrentGsa.Forward(q, k, v, s, g, hk0, hv0, 0.5)
                        Expect.sequenceEqual oc.shape [| 2L; t; 3L; 6L |] "output shape"
                        // float32 sums in a different order; 1e-4 as for GLA.
                        expectClose oc orr 1e-4 "outputs"
                        expectClose hkc hkr 1e-4 "Hk"
                        expectClose hvc hvr 1e-4 "Hv"
                    }
            for (t, slotChunk, backend) in [ (45L, 16, GlaBackend.Autograd); (33L, 8, GlaBackend.Manual) ] do
                test (
                    sprintf
                        "gradients of the chunked form equal the recurrence's (q, k, v, s, g, Hk0, Hv0): T=%d slot chunk=%d %A"
                        t
                        slotChunk
                        backend
                ) {
                    let q, k, v, s, g = inputs 3L 1L t 2L 6L 4L 5L 2.0
                    let hk0, hv0 = torch.randn (1L, 2L, 6L, 5L), torch.randn (1L, 2L, 5L, 4L)
                    let w = torch.randn (1L, t, 2L, 4L)
                    let wk, wv = torch.randn (1L, 2L, 6L, 5L), torch.randn (1L, 2L, 5L, 4L)
                    let grads chunked =
                        let leaves = [ q; k; v; s; g; hk0; hv0 ] |> List.map (fun x -> x.detach().requires_grad_(true))
                        let a = Array.ofList leaves
                        let struct (o, hk, hv) =
                            if chunked then
                                ChunkedGsa.Forward(a.[0], a.[1], a.[2], a.[3], a.[4], a.[5], a.[6], 0.5, slotChunk, 16, 8, backend)
                            else
                                RecurrentGsa.Forward(a.[0], a.[1], a.[2], a.[3], a.[4], a.[5], a.[6], 0.5)
                        ((o * w).sum() + (hk * wk).sum() + (hv * wv).sum()).backward()
                        leaves |> List.map (fun x -> x.grad)
                    for (name, a, b) in List.zip3 [ "q"; "k"; "v"; "s"; "g"; "Hk0"; "Hv0" ] (grads true) (grads false) do
                        Expect.isTrue (allFinite a) (name + " gradient finite")
                        expectClose a b 1e-4 (name + " gradient")
                }
            test "strong slot decay at T=1024 stays finite and matches the recurrence" {
                // logsigmoid of logits near −300, /8: per-step log decays near −37 in half the slots, ≈ 0 in the rest;
                // exp of a cumulative log decay overflows float32 within two tokens.
                torch.manual_seed 4L |> ignore
                let t = 1024L
                let q, k, v = torch.randn (1L, t, 1L, 4L), torch.randn (1L, t, 1L, 4L), torch.randn (1L, t, 1L, 3L)
                let logits = torch.cat ([| torch.rand (1L, t, 1L, 3L) * -300.0; torch.randn (1L, t, 1L, 3L) + 6.0 |], 3L)
                let g = torch.nn.functional.logsigmoid logits / 8.0
                let s = 1.0 - g.exp ()
                let struct (orr, hkr, hvr) = RecurrentGsa.Forward(q, k, v, s, g, null, null, 1.0)
                let gq = q.detach().requires_grad_(true)
                let gg = g.detach().requires_grad_(true)
                let struct (oc, hkc, hvc) = ChunkedGsa.Forward(gq, k, v, s, gg, null, null, 1.0)
                Expect.isTrue (allFinite oc && allFinite hkc && allFinite hvc) "chunked output and states are finite"
                expectClose oc orr 2e-4 "outputs"
                expectClose hkc hkr 2e-4 "Hk"
                expectClose hvc hvr 2e-4 "Hv"
                oc.sum().backward()
                Expect.isTrue (allFinite gq.grad && allFinite gg.grad) "gradients are finite"
            }
            test "mismatched shapes name the tensors" {
                let q, k, v, s, g = inputs 1L 1L 8L 2L 4L 4L 3L 1.0
                Expect.throwsC (fun () -> ChunkedGsa.Forward(q, k, v, s.narrow (3L, 0L, 2L), g, null, null, 1.0) |> ignore) (fun e ->
                    Expect.stringContains e.Message "s [1, 8, 2, 2]" "names s and its shape")
            }
        ]

        testList "model" [
            for (conv, kv, fm) in [ (false, None, "swish"); (true, Some 1, "relu"); (false, None, "t2r") ] do
                test (sprintf "chunked and recurrent logits agree; gradients too (conv=%b kv heads=%A feature map %s)" conv kv fm) {
                    let lm = model 5L (tinyConfig conv false kv fm)
                    let x = ids 6L 2L 40L 50
                    let chunked = lm.Forward(x, labels = x)
                    let recurrent = lm.Forward(x, labels = x, mode = ForwardMode.Recurrent)
                    expectClose chunked.Logits recurrent.Logits 1e-5 "logits"
                    let gradOf (loss: T) name =
                        lm.Module.zero_grad ()
                        loss.backward (retain_graph = true)
                        (param lm name).grad.clone()
                    for name in
                        [ "model.layers.0.attn.f_proj.weight"; "model.layers.0.attn.q_proj.weight"; "model.layers.1.attn.g_norm.weight" ] do
                        let a = gradOf chunked.Loss name
                        let b = gradOf recurrent.Loss name
                        Expect.isGreaterThan (b.abs().sum().item<float32>()) 0.0f (name + " gets gradient")
                        expectClose a b 1e-5 (name + " gradient")
                }
            test "prefill then token-by-token decoding reproduces the full forward's logits (short convs, grouped kv heads)" {
                let lm = model 7L (tinyConfig true true (Some 1) "swish")
                let x = ids 8L 2L 30L 50
                use _ = torch.no_grad ()
                let full = lm.Forward(x).Logits
                let pre = lm.Forward(x.narrow (1, 0L, 19L), returnState = true)
                let mutable state = pre.State
                let steps = ResizeArray [ pre.Logits ]
                for i in 19L .. 29L do
                    let o = lm.Forward(x.narrow (1, i, 1L), state = state, returnState = true, mode = ForwardMode.Recurrent)
                    steps.Add o.Logits
                    state <- o.State
                expectClose (torch.cat (steps.ToArray(), 1L)) full 1e-5 "logits"
            }
            test "state size: 2·H·M·head_dim per layer plus conv windows, and it is what InitialState holds" {
                let lm = model 9L (tinyConfig true false None "swish")
                let zero = lm.InitialState(1L, torch.CPU, f32)
                let report = lm.StateSize()
                Expect.equal
                    report.Layers.[0].Elements
                    (zero.Layers.[0].Tensors |> Seq.sumBy (fun t -> t.numel ()))
                    "elements = state tensors"
                // Hk 2 heads × 16 × 6 slots, Hv 2 × 6 × 16; conv windows 3 × (32 + 32 + 32)
                Expect.equal report.Layers.[0].Elements (2L * 6L * (16L + 16L) + 3L * 96L) "layer 0 elements"
                Expect.equal report.Layers.[0].Kind "gsa" "kind"
            }
            test "layers may have different slot counts (slot expansion)" {
                let lm = model 10L (tinyConfigSlots false false None "swish" [| 6; 12 |])
                Expect.equal [ for a in lm.Attentions -> a.NumSlots ] [ 6; 12 ] "slots per layer"
                Expect.sequenceEqual (param lm "model.layers.1.attn.f_proj.weight").shape [| 24L; 32L |] "f_proj has H_kv·M rows"
                use _ = torch.no_grad ()
                let x = ids 11L 1L 20L 50
                expectClose (lm.Forward(x).Logits) (lm.Forward(x, mode = ForwardMode.Recurrent).Logits) 1e-5 "both forms"
                let back = GsaConfig.FromJson(ConfigJson.Parse(lm.Config.ToJson().ToJsonString()))
                Expect.equal (List.ofSeq back.LayerNumSlots) [ 6; 12 ] "per-layer slots survive config.json"
            }
        ]

        testList "checkpoints" [
            test "save and reload gives identical logits, with fla's parameter names and shapes" {
                for (conv, tied, fm) in [ (true, false, "t2r"); (false, true, "swish") ] do
                    let lm = model 12L (tinyConfig conv tied (Some 1) fm)
                    let d = Fixtures.tempDir ()
                    lm.Save d
                    use r = new SafeTensorsReader(Path.Combine(d, "model.safetensors"))
                    let shapes = dict [ for kv in r.Tensors -> kv.Key, List.ofArray kv.Value.Shape ]
                    // fla/layers/gsa.py: q_proj key_dim, k/v_proj per kv group, f_proj H_kv·M, g_norm hidden_size.
                    Expect.equal shapes.["model.layers.0.attn.q_proj.weight"] [ 32L; 32L ] "q_proj"
                    Expect.equal shapes.["model.layers.0.attn.k_proj.weight"] [ 16L; 32L ] "k_proj (one kv head)"
                    Expect.equal shapes.["model.layers.0.attn.f_proj.weight"] [ 6L; 32L ] "f_proj"
                    Expect.equal shapes.["model.layers.1.attn.g_norm.weight"] [ 32L ] "g_norm"
                    Expect.equal shapes.["model.layers.1.mlp.gate_proj.weight"] [ 48L; 32L ] "mlp"
                    Expect.equal (shapes.ContainsKey "model.layers.0.attn.q_conv1d.weight") conv "short conv weights"
                    Expect.equal (shapes.ContainsKey "model.layers.0.attn.feature_map.layer.weight") (fm = "t2r") "t2r map weight"
                    Expect.equal (shapes.ContainsKey "lm_head.weight") (not tied) "lm_head only when untied"
                    let config = ConfigJson.Load(Path.Combine(d, "config.json"))
                    Expect.equal (config.String "model_type") "gsa" "model_type"
                    Expect.equal (config.Int "num_slots") 6 "num_slots"
                    let back = Checkpoint.Load(d, torch.CPU, warn = fun w -> failtestf "unexpected warning: %s" w)
                    Expect.equal back.Family "gsa" "loaded as GSA"
                    let x = ids 13L 2L 25L 50
                    use _ = torch.no_grad ()
                    Expect.equal (maxAbs (back.Forward(x).Logits) (lm.Forward(x).Logits)) 0.0 "identical logits"
            }
            test "config: fla's defaults, the exapnd_k spelling, and a round trip" {
                let c =
                    GsaConfig.FromJson(ConfigJson.Parse("""{"model_type": "gsa", "hidden_size": 64, "num_heads": 4, "exapnd_k": 0.5}"""))
                Expect.equal
                    (c.NumSlots, c.GateLogitNormalizer, c.FeatureMap, c.NormEps, c.UseNorm, c.UseOutputGate)
                    (Nullable 64, 8.0, "swish", 1e-6, true, false)
                    "GSAConfig defaults"
                Expect.equal c.KeyDim 32 "exapnd_k read as expand_k"
                let noSlots =
                    GsaConfig.FromJson(ConfigJson.Parse("""{"model_type": "gsa", "hidden_size": 64, "num_heads": 4, "num_slots": null}"""))
                Expect.equal (noSlots.SlotsOf 0) 16 "num_slots null: head_k_dim slots, as the layer does"
                let back = GsaConfig.FromJson(ConfigJson.Parse(c.ToJson().ToJsonString()))
                Expect.equal back c "ToJson → FromJson"
            }
            for (json, key) in
                [
                    """{"model_type": "gla"}""", "model_type"
                    """{"model_type": "gsa", "hidden_size": 64, "expand_v": 2}""", "expand_v"
                    """{"model_type": "gsa", "feature_map": "elu"}""", "feature_map"
                    """{"model_type": "gsa", "feature_map": null}""", "feature_map"
                    """{"model_type": "gsa", "num_heads": 3}""", "num_heads"
                    """{"model_type": "gsa", "num_slots": 0}""", "num_slots"
                    """{"model_type": "gsa", "attn": {"layers": [1]}}""", "attn"
                ] do
                test (sprintf "a bad config names '%s': %s" key json) {
                    Expect.throwsC (fun () -> GsaConfig.FromJson(ConfigJson.Parse(json, "/x/config.json")) |> ignore) (fun e ->
                        Expect.stringContains e.Message "/x/config.json" "names the file"
                        Expect.stringContains e.Message key "names the key"
                        Expect.isFalse (e.Message.Contains "\n") "one line")
                }
        ]

        testList "slot expansion" [
            let expand (lm: GsaForCausalLM) layers init seed =
                StateExpansion.Apply(
                    lm,
                    ExpansionRequest(LayerSelection.Parse layers, Rewrite.Parse "state:x3", ExpansionRequest.ParseInit init, seed)
                )
            test
                "copy (tiled slots) is function-preserving; the state grows 3×, f_proj alone gains H_kv·2M·hidden; other layers bit-identical" {
                let lm = model 20L (tinyConfig true false (Some 1) "swish")
                let r = expand lm "list:0" "copy" 0L
                let big = r.Model :?> GsaForCausalLM
                Expect.equal [ for a in big.Attentions -> a.NumSlots ] [ 18; 6 ] "slots per layer"
                let x = ids 21L 2L 30L 50
                use _ = torch.no_grad ()
                // The only change is a softmax over 3 identical copies of each score: float32 round-off.
                expectClose (big.Forward(x).Logits) (lm.Forward(x).Logits) 1e-5 "same function"
                let l0 = r.Account.Layers.[0]
                Expect.equal l0.StateAfter (2L * 18L * 32L + 3L * 64L) "layer 0 state: 2 heads × 18 slots × (16 + 16) + conv windows"
                Expect.equal l0.ParamsDelta (1L * 12L * 32L) "H_kv · (r−1)·M · hidden"
                Expect.equal r.Account.Layers.[1].ParamsDelta 0L "layer 1 unchanged"
                for (n, p) in paramsOf big do
                    if not (n.StartsWith "model.layers.0.attn.f_proj") then
                        Expect.isTrue (p.equal(param lm n).all().item<bool>()) (n + " copied bit for bit")
                let d = Fixtures.tempDir ()
                big.Save d
                let back = Checkpoint.Load(d, torch.CPU, warn = fun w -> failtestf "unexpected warning: %s" w)
                Expect.equal (maxAbs (back.Forward(x).Logits) (big.Forward(x).Logits)) 0.0 "reloads to identical logits"
                Expect.stringContains (File.ReadAllText(Path.Combine(d, "config.json"))) "statex_layer_num_slots" "per-layer slots recorded"
            }
            test "copied slots receive identical gradients, so training alone never separates them" {
                let lm = model 22L (tinyConfig false false None "swish")
                let big = (expand lm "all" "copy" 0L).Model :?> GsaForCausalLM
                let x = ids 23L 2L 20L 50
                big.Forward(x, labels = x).Loss.backward()
                let gr = (param big "model.layers.0.attn.f_proj.weight").grad.reshape(2L, 3L, 6L, 32L) // [H_kv, copy, M, hidden]
                Expect.isGreaterThan (gr.abs().sum().item<float32>()) 0.0f "f_proj gets gradient"
                expectClose (gr.select (1, 0L)) (gr.select (1, 2L)) 1e-7 "first and last copy's gradients"
            }
            test "reinit (fresh slots): old rows kept, new rows N(0, initializer_range) from the seed, function changed, forms still agree" {
                let lm = model 24L (tinyConfig false false None "swish")
                let big = (expand lm "all" "reinit" 5L).Model :?> GsaForCausalLM
                Expect.equal big.Config.NumSlots (Nullable 18) "uniform result: a plain fla config"
                Expect.isNull big.Config.LayerNumSlots "no per-layer key"
                let w = (param big "model.layers.1.attn.f_proj.weight").reshape(2L, 18L, 32L)
                let old = (param lm "model.layers.1.attn.f_proj.weight").reshape(2L, 6L, 32L)
                Expect.isTrue (w.narrow(1, 0L, 6L).equal(old).all().item<bool>()) "old rows kept per kv head"
                let fresh = w.narrow (1, 6L, 12L)
                let sd = fresh.std().item<float32>() |> float
                Expect.isTrue (abs (sd - 0.02) < 0.004) (sprintf "fresh rows' std %g ≈ 0.02" sd)
                let again = (expand lm "all" "reinit" 5L).Model
                Expect.isTrue
                    ((param again.Module "model.layers.1.attn.f_proj.weight")
                        .equal(param big "model.layers.1.attn.f_proj.weight")
                        .all()
                        .item<bool>())
                    "same seed, same draw"
                let x = ids 25L 1L 24L 50
                use _ = torch.no_grad ()
                Expect.isGreaterThan (maxAbs (big.Forward(x).Logits) (lm.Forward(x).Logits)) 1e-4 "fresh slots change the function"
                expectClose (big.Forward(x).Logits) (big.Forward(x, mode = ForwardMode.Recurrent).Logits) 1e-5 "chunked = recurrent"
            }
            test "inits and rewrites that do not apply to slots are refused by name" {
                let lm = model 26L (tinyConfig false false None "swish")
                Expect.throwsC (fun () -> expand lm "all" "zero" 0L |> ignore) (fun e ->
                    Expect.stringContains
                        e.Message
                        "init 'zero' does not apply to GSA slots; expected reinit (fresh slots) or copy"
                        "names the init and the choices")
                Expect.throwsC
                    (fun () ->
                        StateExpansion.Apply(lm, ExpansionRequest(LayerSelection.All(), Rewrite.MergeHeads 1, ExpansionInit.Reinit))
                        |> ignore)
                    (fun e ->
                        Expect.stringContains
                            e.Message
                            "GSA models are expanded by multiplying their slots (state:xR)"
                            "names the GSA rewrite")
            }
        ]
    ]
