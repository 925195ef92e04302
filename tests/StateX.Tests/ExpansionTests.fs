module StateX.Tests.ExpansionTests

open System
open System.IO
open Expecto
open StateX.Tests.TensorAssert
open TorchSharp
open StateX.IO
open StateX.Models
open StateX.Expansion
open StateX.Training

type private T = torch.Tensor

let private load = Fixtures.load
let private ioOf = Fixtures.io
let private expand (model: ICausalLanguageModel) layers rewrite init =
    StateExpansion.Apply(model, ExpansionRequest(LayerSelection.Parse layers, Rewrite.Parse rewrite, ExpansionRequest.ParseInit init, 7L))
let private paramMap (m: ICausalLanguageModel) = dict [ for struct (n, p) in m.Module.named_parameters () -> n, p ]
let private logits (m: ICausalLanguageModel) (ids: T) mode =
    use _ = torch.no_grad ()
    m.Forward(ids, mode = mode).Logits

[<Tests>]
let tests =
    testList "expansion" [
        test "merging every layer of gla-tiny with inherit reproduces gla-tiny-merged once the official attn_norm reset is undone" {
            let src = load "gla-tiny"
            let r = expand src "all" "merge-heads" "inherit"
            let ids, _ = ioOf "gla-tiny-merged"
            let _, expected = ioOf "gla-tiny-merged"
            // The official 'merge' resets attn_norm to ones (statex-official.md §1b); fla's merged fixture keeps it.
            let srcParams, dstParams = paramMap src, paramMap r.Model
            for KeyValue(n, p) in dstParams do
                if n.EndsWith ".attn_norm.weight" then
                    Expect.isTrue (p.eq(torch.tensor 1.0f).all().item<bool>()) (n + " reset to ones")
                    use _ = torch.no_grad ()
                    p.copy_ srcParams.[n] |> ignore
            let d = maxAbs (logits r.Model ids ForwardMode.Chunked) expected
            printfn "gla merge (inherit, attn_norm restored) vs gla-tiny-merged: max |Δlogits| = %.3g" d
            Expect.isLessThan d 1e-4 "within 1e-4 of fla's merged model"
            Expect.isLessThan (maxAbs (logits r.Model ids ForwardMode.Recurrent) expected) 1e-4 "recurrent form too"
            let v = int64 (src :?> StateX.Gla.GlaForCausalLM).Config.ValueDim
            for l in r.Account.Layers do
                Expect.equal l.StateAfter (2L * l.StateBefore) "2 heads merged: state ×2"
                Expect.equal l.ParamsDelta (v - v / 2L) "only the shared per-head norm weight grows: [V/H] tiled to [V/H']"
        }

        test "preserve on a Mamba2 fixture keeps the logits while the state grows r×" {
            for name in [ "mamba2-tiny"; "mamba2-groups" ] do
                let src = load name
                let ids, _ = ioOf name
                let before = logits src ids ForwardMode.Chunked
                let r = expand src "all" "state:x4" "preserve"
                let d = maxAbs (logits r.Model ids ForwardMode.Chunked) before
                printfn "%s preserve x4: max |Δlogits| = %.3g" name d
                Expect.isLessThan d 1e-5 (name + ": same function at step 0")
                let m = r.Model :?> StateX.Mamba2.Mamba2ForCausalLM
                let s = src :?> StateX.Mamba2.Mamba2ForCausalLM
                for i in 0 .. m.NumLayers - 1 do
                    let a, b = s.backbone.layers.[i].mixer, m.backbone.layers.[i].mixer
                    Expect.equal b.DState (4L * a.DState) "d_state ×4"
                    Expect.equal (b.Heads * b.HeadDim * b.DState) (4L * a.Heads * a.HeadDim * a.DState) "SSM state ×4"
        }

        test "preserve leaves the new state dimensions trainable: new C rows zero, new B rows fresh, both get gradients" {
            let src = load "mamba2-tiny"
            let ids, _ = ioOf "mamba2-tiny"
            let n = int64 (src :?> StateX.Mamba2.Mamba2ForCausalLM).Config.StateSize
            let init = "preserve"
            let r = expand src "all" "state:x4" init
            let m = r.Model :?> StateX.Mamba2.Mamba2ForCausalLM
            r.Model.Forward(ids, labels = ids).Loss.backward()
            let mixer = m.backbone.layers.[0].mixer
            let w = (paramMap r.Model).["backbone.layers.0.mixer.in_proj.weight"]
            // in_proj rows: [z (I), x (I), B (4N), C (4N), dt (H)]; one group.
            let b0, c0 = 2L * mixer.Inner, 2L * mixer.Inner + 4L * n
            let rows (t: T) (a: int64) (b: int64) = t.narrow (0, a, b - a)
            let newB, newC = rows w (b0 + n) (b0 + 4L * n), rows w (c0 + n) (c0 + 4L * n)
            Expect.equal (newC.abs().max().item<float32>()) 0.0f (init + ": new C rows zero (the SSM output is unchanged)")
            Expect.isGreaterThan (newB.abs().max().item<float32>()) 0.0f (init + ": new B rows fresh, not zero")
            let g = w.grad
            let gB, gC =
                (rows g (b0 + n) (b0 + 4L * n)).abs().sum().item<float32>(), (rows g (c0 + n) (c0 + 4L * n)).abs().sum().item<float32>()
            printfn "%s x4: |grad| on new B rows %.3g, on new C rows %.3g" init gB gC
            Expect.isGreaterThan gC 0.0f (init + ": the new C rows get a gradient (with B and C both zero neither would)")
        }

        test "parameter deltas match the formulas; untouched layers stay bit-identical; the input is untouched" {
            let src = load "mamba2-groups" // 2 groups, in_proj bias and conv bias
            let snapshot = [ for KeyValue(n, p) in paramMap src -> n, p.clone () ]
            let r = expand src "list:1" "state:x4" "reinit"
            let c = (src :?> StateX.Mamba2.Mamba2ForCausalLM).Config
            let g, n, d, k = int64 c.NGroups, int64 c.StateSize, int64 c.HiddenSize, int64 c.ConvKernel
            let biases = (if c.UseBias then 1L else 0L) + (if c.UseConvBias then 1L else 0L)
            let expected = 2L * g * n * 3L * (d + k) + biases * 2L * g * n * 3L
            Expect.equal r.Account.ParamsDelta expected "Δparams = 2·G·N·(r−1)·(d_model + K) + 2·G·N·(r−1) per bias"
            Expect.equal r.Account.Layers.[1].ParamsDelta expected "all of it in layer 1"
            let after = paramMap r.Model
            for (name, p) in snapshot do
                if not (name.StartsWith "backbone.layers.1.") then
                    Expect.isTrue (after.[name].equal(p).all().item<bool>()) (name + " bit-identical")
                Expect.isTrue ((paramMap src).[name].equal(p).all().item<bool>()) (name + " of the input untouched")
            let gla = expand (load "gla-conv") "every:2" "merge-heads:2" "reinit"
            let v = int64 (load "gla-conv" :?> StateX.Gla.GlaForCausalLM).Config.ValueDim
            Expect.equal
                gla.Account.ParamsDelta
                (2L * (v / 2L - v / 4L))
                "GLA merge 4 → 2 heads adds only the tiled norm weight in each of 2 layers"
            Expect.sequenceEqual gla.ExpandedLayers [ 0; 2 ] "every:2 of 3 layers"
            let kd = int64 (load "gla-conv" :?> StateX.Gla.GlaForCausalLM).Config.KeyDim
            let l0 = gla.Account.Layers.[0]
            Expect.equal
                (l0.StateAfter - l0.StateBefore)
                (kd * v / 4L)
                "4 → 2 heads doubles the recurrent part K·V/4 (conv windows unchanged)"
        }

        test "expanded models save and reload to identical logits, with per-layer overrides" {
            for (name, layers, rw, init) in [ "gla-conv", "list:1", "merge-heads", "reinit"; "mamba2-tiny", "list:0", "state:x2", "copy" ] do
                let r = expand (load name) layers rw init
                let dir = Fixtures.tempDir ()
                r.Model.Save dir
                let config = File.ReadAllText(Path.Combine(dir, "config.json"))
                Expect.isTrue
                    (config.Contains "statex_layer_num_heads" || config.Contains "layer_state_sizes")
                    "per-layer override recorded"
                let back = Checkpoint.Load(dir, warn = Action<string>(fun w -> failtestf "unexpected warning: %s" w))
                let ids, _ = ioOf name
                Expect.equal
                    (maxAbs (logits back ids ForwardMode.Chunked) (logits r.Model ids ForwardMode.Chunked))
                    0.0
                    (name + " reloads exactly")
        }

        test "an unexpanded (or uniformly merged) model saves in the plain reference format" {
            let r = expand (load "gla-tiny") "all" "merge-heads" "inherit"
            let dir = Fixtures.tempDir ()
            r.Model.Save dir
            let config = File.ReadAllText(Path.Combine(dir, "config.json"))
            Expect.isFalse (config.Contains "statex_layer_num_heads") "no StateX-only key"
            Expect.stringContains config "\"num_heads\": 1" "plain num_heads" |> ignore
        }

        test "chunked and recurrent forms still agree after expansion" {
            for (name, layers, rw, init) in
                [ "gla-conv", "every:2", "merge-heads", "reinit"; "mamba2-groups", "list:0,2", "state:x4", "reinit" ] do
                let r = expand (load name) layers rw init
                let ids, _ = ioOf name
                let d = maxAbs (logits r.Model ids ForwardMode.Chunked) (logits r.Model ids ForwardMode.Recurrent)
                Expect.isLessThan d 1e-4 (name + " chunked vs recurrent")
        }

        test "a few optimiser steps on an expanded model, training only the expanded layers, lower the loss" {
            let src = load "gla-tiny"
            let r =
                StateExpansion.Apply(
                    src,
                    ExpansionRequest(LayerSelection.Parse "list:1", Rewrite.MergeHeads 1, ExpansionInit.Reinit, 1L, FreezeOthers = true)
                )
            Expect.isTrue
                (r.TrainableParameters |> Seq.forall (fun n -> n.StartsWith "model.layers.1.attn"))
                "only layer 1's mixer and norm train"
            let frozen = [
                for struct (n, p) in r.Model.Module.named_parameters () do
                    if not p.requires_grad then n, p.clone ()
            ]
            let opt = new AdamW([ for struct (n, p) in r.Model.Module.named_parameters () -> struct (n, p) ], weightDecay = 0.0)
            let ids, _ = ioOf "gla-tiny"
            let lossAt () = r.Model.Forward(ids, labels = ids).Loss.item<float32>()
            let first = lossAt ()
            for _ in 1..8 do
                opt.ZeroGrad()
                r.Model.Forward(ids, labels = ids).Loss.backward()
                opt.StepWith 3e-3
            let last = lossAt ()
            printfn "expanded gla-tiny, 8 steps on layer 1 only: loss %.4f -> %.4f" first last
            Expect.isLessThan last first "loss decreases"
            let now = paramMap r.Model
            for (n, p) in frozen do
                Expect.isTrue (now.[n].equal(p).all().item<bool>()) (n + " frozen")
        }

        test "invalid requests fail with clear errors" {
            let gla = load "gla-tiny"
            let mamba = load "mamba2-tiny"
            Expect.throwsC (fun () -> expand gla "all" "merge-heads:3" "inherit" |> ignore) (fun e ->
                Expect.stringContains e.Message "does not divide" "H' must divide H")
            Expect.throwsC (fun () -> expand gla "list:5" "merge-heads" "inherit" |> ignore) (fun e ->
                Expect.stringContains e.Message "out of range" "layer index")
            Expect.throwsC (fun () -> expand mamba "all" "merge-heads" "reinit" |> ignore) (fun e ->
                Expect.stringContains e.Message "applies to GLA" "merging a Mamba2 model")
            Expect.throwsC (fun () -> expand gla "all" "state:x4" "reinit" |> ignore) (fun e ->
                Expect.stringContains e.Message "Mamba2" "widening a GLA model")
            Expect.throwsC (fun () -> expand mamba "all" "state:x4" "inherit" |> ignore) (fun e ->
                Expect.stringContains e.Message "inherit" "inherit on Mamba2")
            Expect.throwsC (fun () -> expand gla "all" "merge-heads" "preserve" |> ignore) (fun e ->
                Expect.stringContains e.Message "Mamba2 or GSA option" "preserve on GLA")
            Expect.throwsC (fun () -> Rewrite.Parse "state:x0" |> ignore) (fun e -> Expect.stringContains e.Message "at least 1" "r < 1")
        }

        test "the accounting table prints every layer and the totals" {
            let r = expand (load "mamba2-groups") "every:2" "state:x4" "reinit"
            let table = r.Account.Format()
            Expect.stringContains table "total" "totals row"
            Expect.stringContains table "2/3" "expanded count"
            Expect.equal
                (r.Account.Layers |> Seq.filter (fun l -> l.Expanded) |> Seq.map (fun l -> l.Layer) |> List.ofSeq)
                [ 0; 2 ]
                "layers 0 and 2"
        }
    ]
