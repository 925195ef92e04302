/// Each expansion init, parameter by parameter, against what the official thunlp/StateX code does
/// (statex-official.md §1b, §1c, §3), and the official weight-decay rule (§2).
module StateX.Tests.ExpansionInitTests

open System
open System.IO
open Expecto
open TorchSharp
open StateX.IO
open StateX.Models
open StateX.Expansion
open StateX.Training

type private T = torch.Tensor

let private load = Fixtures.load
let private expandSeed seed (model: ICausalLanguageModel) layers rewrite init =
    StateExpansion.Apply(model, ExpansionRequest(LayerSelection.Parse layers, Rewrite.Parse rewrite, ExpansionRequest.ParseInit init, seed))
let private expand m layers rewrite init = expandSeed 7L m layers rewrite init
let private paramMap (m: ICausalLanguageModel) =
    dict [ for struct (n, p) in m.Module.named_parameters () -> n, p.detach().to_type(torch.ScalarType.Float32) ]
let private identical (a: T) (b: T) = a.shape = b.shape && a.equal(b).all().item<bool>()
let private largest (t: T) = t.abs().max().item<float32>() |> float
let private isConst (v: float) (t: T) = (t - v).abs().max().item<float32>() = 0.0f

let private expectIdentical (label: string) a b = Expect.isTrue (identical a b) (label + ": pretrained, bit-identical to the source")
let private expectOnes (label: string) t = Expect.isTrue (isConst 1.0 t) (label + ": reset to ones")
let private expectZeros (label: string) t = Expect.isTrue (isConst 0.0 t) (label + ": zero")

/// A fresh U(±bound) tensor: inside the bound; with enough elements, spread bound/√3, mean ≈ 0 and values near the
/// bound (the sample std of n uniforms has a relative standard error ≈ 0.45/√n; the tolerance is about 5.6 of them);
/// and, when the source had a tensor of this shape, not its values.
let private expectFresh (label: string) (t: T) (bound: float) (src: T option) =
    let n = t.numel ()
    let m = largest t
    Expect.isLessThanOrEqual m (bound * (1.0 + 1e-6)) (sprintf "%s: inside ±%.5g (max %.5g)" label bound m)
    Expect.isGreaterThan m 0.0 (label + ": not zero")
    if n >= 256L then
        let std = t.std().item<float32>() |> float
        let expected = bound / sqrt 3.0
        Expect.isLessThan
            (abs (std / expected - 1.0))
            (2.5 / sqrt (float n))
            (sprintf "%s: std %.5g ≈ bound/√3 = %.5g (n = %d)" label std expected n)
        Expect.isGreaterThan m (0.9 * bound) (label + ": reaches the bound")
        Expect.isLessThan (abs (t.mean().item<float32>() |> float)) (5.0 * expected / sqrt (float n)) (label + ": mean ≈ 0")
    match src with
    | Some s when s.shape = t.shape -> Expect.isFalse (identical t s) (label + ": differs from the source")
    | _ -> ()

/// xavier_uniform_(gain 2^-2.5) on a Linear weight [out, in] (fla's GatedLinearAttention._initialize_weights).
let private xavierBound (w: T) = 2.0 ** -2.5 * sqrt (6.0 / float (w.shape.[0] + w.shape.[1]))

let private isMlp (n: string) = n.Contains ".mlp." || n.Contains ".mlp_norm."
let private isOutNorm (n: string) = n.EndsWith ".g_norm_swish_gate.weight" || n.EndsWith ".g_norm.weight"

// ---- GLA ----

/// reinit = official drop_mode 'gla'; inherit = official 'merge'. Checks every parameter of the expanded model.
let private checkGla name layers rewrite init =
    let src = load name
    let r = expand src layers rewrite init
    let sp, dp = paramMap src, paramMap r.Model
    let expanded = set r.ExpandedLayers
    Expect.isNonEmpty r.ExpandedLayers "some layer expanded"
    let cfg = (src :?> StateX.Gla.GlaForCausalLM).Config
    let dst = r.Model :?> StateX.Gla.GlaForCausalLM
    let counts = ref Map.empty<string, int>
    let count k = counts.Value <- counts.Value.Add(k, 1 + defaultArg (counts.Value.TryFind k) 0)
    for KeyValue(n, p) in dp do
        let s = sp.[n]
        let layer = ExpansionAccount.LayerOf n
        let label = sprintf "%s %s %s: %s" name init layers n
        if layer < 0 || not (expanded.Contains layer) || isMlp n then
            expectIdentical label p s
            count "pretrained"
        elif n.EndsWith ".attn_norm.weight" then
            expectOnes label p
            count "attn_norm"
        elif isOutNorm n then
            let heads = dst.model.layers.[layer].attn.NumHeads
            Expect.equal p.shape [| int64 cfg.ValueDim / int64 heads |] (label + ": one norm weight per merged head's value width")
            if init = "reinit" then
                expectOnes label p
            else
                Expect.isTrue (identical p (s.repeat (p.shape.[0] / s.shape.[0]))) (label + ": the per-head weight tiled H/H' times")
            count "out norm"
        elif n.Contains ".attn." then
            if init = "inherit" then expectIdentical label p s
            elif n.EndsWith "gk_proj.1.bias" then expectZeros label p
            elif n.Contains "conv1d." then expectFresh label p (1.0 / sqrt (float cfg.ConvSize)) (Some s) // nn.Conv1d default, fan_in = K
            elif p.dim () = 2L then expectFresh label p (xavierBound p) (Some s)
            else failtestf "%s: no rule" label
            count "attn"
        else
            failtestf "%s: unexpected parameter of an expanded layer" label
    for i in r.ExpandedLayers do
        Expect.equal
            dst.model.layers.[i].attn.NumHeads
            (match r.Request.Rewrite with
             | :? Rewrite.MergeHeads as m -> m.Heads
             | _ -> -1)
            "merged head count"
    printfn "%s %s %s: tensors checked %A" name init layers (Map.toList counts.Value)
    Expect.isGreaterThan (defaultArg (counts.Value.TryFind "attn") 0) 0 "attention parameters checked"

// ---- Mamba2 ----

/// The B and C blocks of dim 0 from row `start`, as [G, rows-per-group, ...] each.
let private bcBlocks (t: T) (start: int64) (groups: int64) (perGroup: int64) =
    let rest = t.shape |> Array.skip 1
    [
        for blk in 0L .. 1L ->
            t.narrow(0, start + blk * groups * perGroup, groups * perGroup).reshape(Array.append [| groups; perGroup |] rest)
    ]

/// Checks one of in_proj.weight / in_proj.bias / conv1d.weight / conv1d.bias of an expanded mixer.
let private checkRows label (p: T) (s: T) (bStart: int64) (groups: int64) (n: int64) (r: int64) init bound isConvWeight =
    let gn = groups * n
    expectIdentical (label + " [rows before B]") (p.narrow (0, 0L, bStart)) (s.narrow (0, 0L, bStart))
    let tail = s.shape.[0] - bStart - 2L * gn
    expectIdentical (label + " [rows after C]") (p.narrow (0, bStart + 2L * r * gn, tail)) (s.narrow (0, bStart + 2L * gn, tail))
    let olds, news = bcBlocks s bStart groups n, bcBlocks p bStart groups (r * n)
    for blk, (o, w) in List.indexed (List.zip olds news) do
        let what = sprintf "%s [%s]" label (if blk = 0 then "B" else "C")
        let first, extra = w.narrow (1, 0L, n), w.narrow (1, n, (r - 1L) * n)
        match init with
        | "reinit" ->
            expectFresh what w bound None
            Expect.isFalse (identical first o) (what + ": the original rows are re-drawn too")
        | "copy" ->
            for j in 0L .. r - 1L do
                expectIdentical (sprintf "%s copy %d" what j) (w.narrow (1, j * n, n)) o
        | "zero" ->
            expectIdentical what first o
            expectZeros (what + " new rows") extra
        | "preserve" ->
            expectIdentical what first o
            if blk = 0 || isConvWeight then expectFresh (what + " new rows") extra bound None else expectZeros (what + " new rows") extra
        | _ -> failtest init

let private checkMamba name layers ratio init =
    let src = load name
    let r = expand src layers (sprintf "state:x%d" ratio) init
    let sp, dp = paramMap src, paramMap r.Model
    let expanded = set r.ExpandedLayers
    let sm = src :?> StateX.Mamba2.Mamba2ForCausalLM
    let dm = r.Model :?> StateX.Mamba2.Mamba2ForCausalLM
    let mutable checkedRows = 0
    for KeyValue(n, p) in dp do
        let s = sp.[n]
        let layer = ExpansionAccount.LayerOf n
        let label = sprintf "%s %s %s: %s" name init layers n
        if layer < 0 || not (expanded.Contains layer) || not (n.Contains ".mixer.") then
            expectIdentical label p s
        else
            let m = sm.backbone.layers.[layer].mixer
            Expect.equal dm.backbone.layers.[layer].mixer.DState (int64 ratio * m.DState) "d_state ×r"
            let leaf = n.Substring(n.IndexOf ".mixer." + 7)
            let linBound, convBound = 1.0 / sqrt (float m.Hidden), 1.0 / sqrt (float m.ConvKernel)
            match leaf with
            | "D"
            | "out_proj.weight"
            | "out_proj.bias" -> expectIdentical label p s
            | "dt_bias" -> if init = "preserve" then expectIdentical label p s else expectOnes label p
            | "norm.weight" -> if init = "preserve" then expectIdentical label p s else expectOnes label p
            | "A_log" ->
                if init = "preserve" then
                    expectIdentical label p s
                else
                    Expect.isLessThan
                        (largest (p - torch.arange(1L, m.Heads + 1L, dtype = torch.ScalarType.Float32).log()))
                        1e-6
                        (label + ": log(1..H)")
            | "in_proj.weight"
            | "in_proj.bias" ->
                checkRows label p s (2L * m.Inner) m.Groups m.DState (int64 ratio) init linBound false
                checkedRows <- checkedRows + 1
            | "conv1d.weight"
            | "conv1d.bias" ->
                checkRows label p s m.Inner m.Groups m.DState (int64 ratio) init convBound (leaf = "conv1d.weight")
                checkedRows <- checkedRows + 1
            | _ -> failtestf "%s: no rule" label
    Expect.isGreaterThan checkedRows 0 "widened tensors checked"

let private freshNames (r: ExpansionResult) =
    // Tensors of the expanded layers that hold fresh values (all but resets and copies).
    let expanded = set r.ExpandedLayers
    [
        for KeyValue(n, _) in paramMap r.Model do
            if
                expanded.Contains(ExpansionAccount.LayerOf n)
                && ((n.Contains ".attn." && not (isOutNorm n) && not (n.EndsWith "gk_proj.1.bias"))
                    || n.Contains "mixer.in_proj"
                    || n.Contains "mixer.conv1d")
            then
                n
    ]

[<Tests>]
let tests =
    testList "expansion inits" [
        test
            "gla reinit (official drop_mode 'gla'): a fresh attention as fla's constructor initialises it, attn_norm ones, mlp and other layers pretrained" {
            checkGla "gla-tiny" "list:0" "merge-heads" "reinit"
            checkGla "gla-conv" "every:2" "merge-heads" "reinit"
            checkGla "gla-conv" "list:1" "merge-heads:2" "reinit"
        }

        test "gla inherit (official 'merge'): projections verbatim, output norm tiled, attn_norm ones, mlp pretrained" {
            checkGla "gla-tiny" "all" "merge-heads" "inherit"
            checkGla "gla-conv" "list:1" "merge-heads:2" "inherit"
        }

        test
            "mamba2 reinit (official 'mamba4'): all B/C rows and channels default-init, dt_bias 1, A_log log(1..H), norm 1, the rest pretrained" {
            checkMamba "mamba2-tiny" "all" 4 "reinit"
            checkMamba "mamba2-groups" "list:0,2" 4 "reinit"
            checkMamba "mamba2-groups" "list:1" 2 "reinit"
        }

        test "mamba2 copy (official 'merge_copy'): B/C block-tiled per group, dt_bias/A_log/norm reset" {
            checkMamba "mamba2-tiny" "list:1" 4 "copy"
            checkMamba "mamba2-groups" "every:2" 4 "copy"
        }

        test "mamba2 zero (official 'merge_zero'): B/C old then zeros in rows, conv weights and biases, dt_bias/A_log/norm reset" {
            checkMamba "mamba2-tiny" "all" 4 "zero"
            checkMamba "mamba2-groups" "list:0" 2 "zero"
        }

        test "mamba2 preserve (ours): old rows, new C zero, new B (and C conv weights) default-init, everything else kept" {
            checkMamba "mamba2-tiny" "all" 4 "preserve"
            checkMamba "mamba2-groups" "list:0,2" 4 "preserve"
        }

        test "mamba2 zero leaves the new state dimensions without a gradient, as the official merge_zero does" {
            let src = load "mamba2-tiny"
            let ids, _ = Fixtures.io "mamba2-tiny"
            let r = expand src "all" "state:x4" "zero"
            r.Model.Forward(ids, labels = ids).Loss.backward()
            let m = (r.Model :?> StateX.Mamba2.Mamba2ForCausalLM).backbone.layers.[0].mixer
            let n = (src :?> StateX.Mamba2.Mamba2ForCausalLM).backbone.layers.[0].mixer.DState
            let g = m.in_proj.weight.grad
            for blk, t in List.indexed (bcBlocks g (2L * m.Inner) m.Groups (4L * n)) do
                expectZeros (sprintf "grad of the new %s rows" (if blk = 0 then "B" else "C")) (t.narrow (1, n, 3L * n))
                Expect.isGreaterThan (largest (t.narrow (1, 0L, n))) 0.0 "the old rows still get a gradient"
        }

        test "fresh values are a function of the seed: same seed identical, another seed different fresh values, same pretrained ones" {
            for (name, layers, rw, init) in
                [
                    "gla-conv", "every:2", "merge-heads", "reinit"
                    "mamba2-groups", "list:0,2", "state:x4", "reinit"
                    "mamba2-tiny", "all", "state:x2", "preserve"
                ] do
                let a, b, c =
                    expandSeed 11L (load name) layers rw init,
                    expandSeed 11L (load name) layers rw init,
                    expandSeed 12L (load name) layers rw init
                let pa, pb, pc = paramMap a.Model, paramMap b.Model, paramMap c.Model
                for KeyValue(n, t) in pa do
                    Expect.isTrue (identical t pb.[n]) (sprintf "%s %s: same seed, same tensor" name n)
                let fresh = freshNames a
                Expect.isNonEmpty fresh "fresh tensors exist"
                for n in fresh do
                    Expect.isFalse (identical pa.[n] pc.[n]) (sprintf "%s %s: another seed, other fresh values" name n)
                for KeyValue(n, t) in pa do
                    if not (List.contains n fresh) then
                        Expect.isTrue (identical t pc.[n]) (sprintf "%s %s: not fresh, so independent of the seed" name n)
        }

        test "presets: gla-1.3b and mamba2-1.3b follow the paper (every:6, reinit), mamba2-1.3b-script the shipped script (all layers)" {
            let get = ExpansionPresets.Get
            let gla, m, ms = get "gla-1.3b", get "mamba2-1.3b", get "mamba2-1.3b-script"
            Expect.equal
                (gla.Layers, gla.Rewrite, gla.Init)
                (LayerSelection.Every 6 :> LayerSelection, Rewrite.MergeHeads 1 :> Rewrite, ExpansionInit.Reinit)
                "gla-1.3b"
            Expect.stringContains gla.Source "drop_mode=\"gla\"" "gla-1.3b cites the script's drop_mode"
            Expect.equal
                (m.Layers, m.Rewrite, m.Init)
                (LayerSelection.Every 6 :> LayerSelection, Rewrite.WidenState 4 :> Rewrite, ExpansionInit.Reinit)
                "mamba2-1.3b"
            Expect.equal
                (ms.Layers, ms.Rewrite, ms.Init)
                (LayerSelection.All() :> LayerSelection, Rewrite.WidenState 4 :> Rewrite, ExpansionInit.Reinit)
                "mamba2-1.3b-script"
            for p in ExpansionPresets.All do
                Expect.stringContains p.Source "statex-official.md" (p.Name + " cites the doc")
            Expect.sequenceEqual (ms.Layers.Resolve 48) [ 0..47 ] "drop_prop=1: all 48 layers"
            Expect.sequenceEqual (m.Layers.Resolve 48) [ 0..6..47 ] "drop_prop=6: 8 of 48 layers"
        }

        test "weight decay is exactly the tensors of two or more dimensions, embeddings and conv1d weights included" {
            for name in [ "gla-tiny"; "gla-conv"; "mamba2-tiny" ] do
                let model = load name
                let ps = [ for struct (n, p) in model.Module.named_parameters () -> struct (n, p) ]
                use opt = new AdamW(ps)
                let decayed =
                    set [
                        for e in opt.Parameters do
                            if e.Decay then e.Name
                    ]
                let expected =
                    set [
                        for struct (n, p) in ps do
                            if p.dim () >= 2L then n
                    ]
                Expect.equal decayed expected (name + ": decayed = dim ≥ 2")
                Expect.isTrue (decayed |> Set.exists (fun n -> n.EndsWith "embeddings.weight")) (name + ": embeddings decayed")
                for struct (n, p) in ps do
                    if p.dim () < 2L then Expect.isFalse (decayed.Contains n) (n + " (norm / bias / A_log / D / dt_bias) not decayed")
                if name <> "gla-tiny" then
                    let convs = [
                        for struct (n, _) in ps do
                            if n.Contains "conv1d.weight" then n
                    ]
                    Expect.isNonEmpty convs (name + " has conv1d weights")
                    for n in convs do
                        Expect.isTrue (decayed.Contains n) (n + ": conv1d weight (3-D) decayed")
        }
    ]
