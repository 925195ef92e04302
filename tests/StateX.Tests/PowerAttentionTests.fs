module StateX.Tests.PowerAttentionTests

open Expecto
open StateX.Tests.TensorAssert
open TorchSharp
open StateX.Power
open StateX.Models
open StateX.IO

type private T = torch.Tensor

let private noState = System.Nullable<struct (torch.Tensor * torch.Tensor)>()
let private stateOf (s: T) (z: T) = System.Nullable<struct (torch.Tensor * torch.Tensor)>(struct (s, z))

let private expectClose (a: T) (b: T) (tol: float) (what: string) = close tol what a b |> ignore

/// q, k [B,T,H,d], v [B,T,H,dv], log gate [B,T,H] = logsigmoid(·) (or null).
let private inputs (seed: int64) (b: int64) (t: int64) (h: int64) (d: int64) (dv: int64) (gated: bool) =
    torch.manual_seed seed |> ignore
    let q, k, v = torch.randn (b, t, h, d), torch.randn (b, t, h, d), torch.randn (b, t, h, dv)
    let g = if gated then torch.nn.functional.logsigmoid (torch.randn (b, t, h) + 2.0) else null
    q, k, v, g

[<Tests>]
let tests =
    testList "power" [
        for p in [ 2; 4 ] do
            test (sprintf "the symmetric power embedding: φ(q)·φ(k) = (q·k)^%d with C(d+p−1, p) features" p) {
                let phi = SymmetricPower(5, p)
                Expect.equal (int64 phi.Features) (SymmetricPower.FeatureCount(5L, p)) "feature count"
                Expect.equal phi.Features (if p = 2 then 15 else 70) "C(6, 2) = 15, C(8, 4) = 70"
                torch.manual_seed 1L |> ignore
                let q, k = torch.randn (7L, 5L, dtype = torch.ScalarType.Float64), torch.randn (7L, 5L, dtype = torch.ScalarType.Float64)
                let lhs = (phi.Embed q * phi.Embed k).sum(-1L)
                let dot = (q * k).sum(-1L)
                let rhs = List.fold (fun (acc: T) _ -> acc * dot) (torch.ones_like dot) [ 1..p ]
                // Relative, in float64 (maxAbs rounds to float32).
                let rel = ((lhs - rhs).abs().max() / rhs.abs().max()).item<float>()
                Expect.isLessThan rel 1e-12 "inner products agree to float64 round-off"
            }
            for gated in [ false; true ] do
                test (
                    sprintf "p=%d gated=%b: attention form = recurrent form = chunked form (outputs), recurrent = chunked (states)" p gated
                ) {
                    let q, k, v, g = inputs 2L 2L 37L 2L 4L 3L gated
                    let scale = 0.5
                    let oa = PowerAttention.Attention(q, k, v, g, p, scale)
                    let struct (orr, sr, zr) = PowerAttention.Recurrent(q, k, v, g, noState, p, scale)
                    let struct (oc, sc, zc) = PowerAttention.Chunked(q, k, v, g, noState, p, scale, 8)
                    // float32 sums of terms of either sign, in three orders.
                    expectClose orr oa 1e-4 "recurrent vs attention"
                    expectClose oc oa 1e-4 "chunked vs attention"
                    let rel (a: T) (b: T) = maxAbs a b / (b.abs().max().to_type(f32).item<float32>() |> float)
                    Expect.isLessThan (rel sc sr) 1e-5 "S relative difference"
                    Expect.isLessThan (rel zc zr) 1e-5 "Z relative difference"
                    Expect.sequenceEqual sr.shape [| 2L; 2L; SymmetricPower.FeatureCount(4L, p); 3L |] "S is [B, H, D, dv]"
                }
            test (
                sprintf "p=%d: segments carrying the state equal one pass, and gradients of the chunked form equal the attention form's" p
            ) {
                let q, k, v, g = inputs 3L 1L 30L 2L 4L 3L true
                let struct (oAll, _, _) = PowerAttention.Chunked(q, k, v, g, noState, p, 0.5, 8)
                let struct (o1, s1, z1) =
                    PowerAttention.Chunked(
                        q.narrow (1, 0L, 11L),
                        k.narrow (1, 0L, 11L),
                        v.narrow (1, 0L, 11L),
                        g.narrow (1, 0L, 11L),
                        noState,
                        p,
                        0.5,
                        8
                    )
                let struct (o2, _, _) =
                    PowerAttention.Recurrent(
                        q.narrow (1, 11L, 19L),
                        k.narrow (1, 11L, 19L),
                        v.narrow (1, 11L, 19L),
                        g.narrow (1, 11L, 19L),
                        stateOf s1 z1,
                        p,
                        0.5
                    )
                expectClose (torch.cat ([| o1; o2 |], 1L)) oAll 1e-4 "chunked then recurrent, state carried"
                let w = torch.randn (1L, 30L, 2L, 3L)
                let grads chunked =
                    let leaves = [ q; k; v; g ] |> List.map (fun x -> x.detach().requires_grad_(true))
                    let a = Array.ofList leaves
                    let o =
                        if chunked then
                            (let struct (o, _, _) = PowerAttention.Chunked(a.[0], a.[1], a.[2], a.[3], noState, p, 0.5, 8) in o)
                        else
                            PowerAttention.Attention(a.[0], a.[1], a.[2], a.[3], p, 0.5)
                    (o * w).sum().backward()
                    leaves |> List.map (fun x -> x.grad)
                for name, a, b in List.zip3 [ "q"; "k"; "v"; "log gate" ] (grads true) (grads false) do
                    Expect.isTrue (a.isfinite().all().item<bool>()) (name + " gradient finite")
                    let scale = max 1.0 (b.abs().max().item<float32>() |> float)
                    expectClose a b (1e-4 * scale) (name + " gradient")
            }
        test "an odd degree is refused by name" {
            let q, k, v, _ = inputs 4L 1L 4L 1L 2L 2L false
            Expect.throwsC (fun () -> PowerAttention.Attention(q, k, v, null, 3, 1.0) |> ignore) (fun e ->
                Expect.stringContains e.Message "degree p must be a positive even number, got 3" "names the degree")
        }

        testList "tiny LM" [
            let model seed degree =
                torch.manual_seed seed |> ignore
                new PowerForCausalLM(
                    PowerConfig(
                        HiddenSize = 32,
                        NumHiddenLayers = 2,
                        NumHeads = 2,
                        HeadDim = 4,
                        Degree = degree,
                        IntermediateSize = System.Nullable 48,
                        VocabSize = 50,
                        ChunkSize = 8,
                        InitializerRange = 0.2
                    )
                )
            let ids seed t =
                torch.manual_seed seed |> ignore
                torch.randint (50L, [| 2L; t |], dtype = torch.ScalarType.Int64)
            for degree in [ 2; 4 ] do
                test (
                    sprintf "p=%d: chunked and recurrent logits agree, decoding continues the prefill, and the loss back-propagates" degree
                ) {
                    let lm = model 5L degree
                    let x = ids 6L 21L
                    let chunked = lm.Forward(x, labels = x)
                    use _ = torch.no_grad ()
                    expectClose (lm.Forward(x, mode = ForwardMode.Recurrent).Logits) chunked.Logits 1e-4 "logits"
                    let pre = lm.Forward(x.narrow (1, 0L, 13L), returnState = true)
                    let mutable state = pre.State
                    let steps = ResizeArray [ pre.Logits ]
                    for i in 13L .. 20L do
                        let o = lm.Forward(x.narrow (1, i, 1L), state = state, returnState = true, mode = ForwardMode.Recurrent)
                        steps.Add o.Logits
                        state <- o.State
                    expectClose (torch.cat (steps.ToArray(), 1L)) chunked.Logits 1e-4 "prefill + decode"
                }
            test "state size is H·C(d+p−1, p)·(d+1) per layer, what InitialState holds; save and reload give identical logits" {
                let lm = model 7L 4
                let zero = lm.InitialState(1L, torch.CPU, f32)
                Expect.equal
                    (lm.StateSize().Layers.[0].Elements)
                    (zero.Layers.[0].Tensors |> Seq.sumBy (fun t -> t.numel ()))
                    "elements = state tensors"
                Expect.equal (lm.StateSize().Layers.[0].Elements) (2L * 35L * 5L) "2 heads × C(7, 4) = 35 × (4 + 1)"
                let d = Fixtures.tempDir ()
                lm.Save d
                let back = Checkpoint.Load(d, torch.CPU, warn = fun w -> failtestf "unexpected warning: %s" w)
                Expect.equal back.Family "power" "loaded as power attention"
                let x = ids 8L 12L
                use _ = torch.no_grad ()
                Expect.equal (maxAbs (back.Forward(x).Logits) (lm.Forward(x).Logits)) 0.0 "identical logits"
                Expect.throwsC
                    (fun () ->
                        PowerConfig.FromJson(ConfigJson.Parse("""{"model_type": "power_attention", "degree": 3}""", "/p/config.json"))
                        |> ignore)
                    (fun e ->
                        Expect.stringContains
                            e.Message
                            "/p/config.json: 'degree' = 3 must be a positive even number"
                            "names file, key and value")
            }
        ]
    ]
