/// The F# model descriptions: sizes without tensors against the core's models, config.json round trips,
/// expansions as the core performs them, refusals.
module StateX.Tests.FSharpModelTests

open System
open System.IO
open Expecto
open StateX
open StateX.Models
open StateX.Expansion

/// The repository root (where StateX.sln is), for the files under data/.
let repoRoot =
    let rec up (d: DirectoryInfo) =
        if isNull d then failwith "StateX.sln not found above the test binaries"
        elif File.Exists(Path.Combine(d.FullName, "StateX.sln")) then d.FullName
        else up d.Parent
    up (DirectoryInfo AppContext.BaseDirectory)

let glaBase = Model.gla GlaSpec.tiny
let glaWide = glaBase |> Model.mapGla (fun g -> { g with Heads = 4; Layers = 3; Conv = Some 3 })

let glaDescriptions = [
    "tiny", glaBase
    "conv, kv heads, no gate, tied, no affine, explicit MLP",
    glaBase
    |> Model.mapGla (fun g -> {
        g with
            Heads = 4
            Layers = 3
            Conv = Some 4
            ConvBias = true
            KvHeads = Some 2
            OutputGate = false
            TieEmbeddings = true
            ElementwiseAffine = false
            Intermediate = Some 96
            GateLowRank = 8
            FuseNorm = false
    })
    "every:2 merged (mixed heads)", glaWide |> Expand.every 2 (MergeHeads Reinit)
    "all merged 4 → 2 (uniform)", glaWide |> Expand.all (MergeHeadsTo(2, Inherit))
    "fraction then last (two steps)", glaWide |> Expand.fraction 0.34 (MergeHeads Reinit) |> Expand.last 1 (MergeHeadsTo(2, Reinit))
]

let mambaBase = Model.mamba2 Mamba2Spec.tiny
let mambaGroups =
    mambaBase
    |> Model.mapMamba2 (fun s -> {
        s with
            Groups = 2
            Bias = true
            ConvBias = false
            TieEmbeddings = false
            Layers = 3
            NormPerGroup = true
            ConvKernel = 3
    })

let mambaDescriptions = [
    "tiny", mambaBase
    "groups, biases, untied, per-group norm", mambaGroups
    "layer 1 widened ×4", mambaBase |> Expand.layers [ 1 ] (State(4, Reinit))
    "all ×2 then first ×2", mambaGroups |> Expand.all (State(2, Preserve)) |> Expand.first 1 (State(2, Zero))
]

let gsaBase = Model.gsa GsaSpec.tiny

let gsaDescriptions = [
    "gsa tiny", gsaBase
    "gsa conv, kv heads, t2r, tied, no affine, explicit MLP",
    gsaBase
    |> Model.mapGsa (fun a -> {
        a with
            Heads = 4
            Layers = 3
            Conv = Some 3
            KvHeads = Some 2
            FeatureMap = "t2r"
            TieEmbeddings = true
            ElementwiseAffine = false
            Intermediate = Some 96
            Slots = 8
            FuseNorm = false
    })
    "gsa layer 1 slots ×3 copied (mixed slots)", gsaBase |> Expand.layers [ 1 ] (State(3, Copy))
    "gsa all ×2 fresh then first ×2 copied (two steps)", gsaBase |> Expand.all (State(2, Reinit)) |> Expand.first 1 (State(2, Copy))
]

let powerDescriptions = [
    "power p=2 tiny", Model.power PowerSpec.tiny
    "power p=4, no gating, tied, explicit MLP",
    Model.power { PowerSpec.tiny with Degree = 4; HeadDim = 4; Heads = 3; Gating = false; TieEmbeddings = true; Intermediate = Some 32 }
]

let descriptions = glaDescriptions @ mambaDescriptions @ gsaDescriptions @ powerDescriptions

let private paramsOf (lm: ICausalLanguageModel) = lm.Module.parameters () |> Seq.sumBy (fun p -> p.numel ())

let private expectRefused (f: unit -> 'a) (fragment: string) =
    let e = Expect.throwsC (fun () -> f () |> ignore) id
    Expect.stringContains e.Message fragment "the error names the problem"

[<Tests>]
let tests =
    testList "fsharp.model" [
        test "state size and parameter count from the description equal the core model's" {
            for name, d in descriptions do
                let model = Model.create d
                use _ = model.Module
                Expect.equal (Model.stateSize d) (model.StateSize().TotalElements) (name + ": state elements")
                Expect.equal (Model.layerStateSizes d) [ for l in model.StateSize().Layers -> l.Elements ] (name + ": state per layer")
                Expect.equal (Model.paramCount d) (paramsOf model) (name + ": parameters")
                let mutable total = 0L
                let perLayer = ExpansionAccount.ParamsPerLayer(model, &total)
                Expect.equal
                    (Model.layerParamCounts d)
                    [ for i in 0 .. model.NumLayers - 1 -> perLayer.[i] ]
                    (name + ": parameters per layer")
        }

        test "the core's size check counts what is built: ParameterTerms of every description's config sum to its parameters" {
            for name, d in descriptions do
                let terms =
                    match d.Arch with
                    | Gla _ -> (Model.glaConfig d).ParameterTerms()
                    | Mamba2 _ -> (Model.mamba2Config d).ParameterTerms()
                    | Gsa _ -> (Model.gsaConfig d).ParameterTerms()
                    | Power _ -> (Model.powerConfig d).ParameterTerms()
                let model = Model.create d
                use _ = model.Module
                Expect.equal (int64 (ParameterBudget.Parameters terms)) (paramsOf model) (name + ": counted before allocation = built")
        }

        test "a description's config.json loads in the core and reads back as the flattened description" {
            let dir = Fixtures.tempDir ()
            for name, d in descriptions do
                let path = Model.writeConfig (Path.Combine(dir, Hash.short d)) d
                let lm = Checkpoint.FromConfig(path, Action<string>(fun w -> failwithf "%s: the core warned: %s" name w))
                Expect.equal
                    (lm.StateSize().TotalElements)
                    (Model.stateSize d)
                    (name + ": state of the core's model from the written config")
                Expect.equal (paramsOf lm) (Model.paramCount d) (name + ": parameters of the core's model from the written config")
                let back = Model.readConfig path
                Expect.equal back (Model.flatten d) (name + ": read back = flattened")
                Expect.equal (Model.configJson back) (Model.configJson d) (name + ": same config text")
                if d.Expansions.IsEmpty then Expect.equal back d (name + ": an unexpanded description round-trips exactly")
        }

        test "expanding the base model with the core gives the flattened description, step by step" {
            for name, d in descriptions |> List.filter (fun (_, d) -> not d.Expansions.IsEmpty) do
                let results = Model.expandModel d (Model.create (Expand.none d))
                Expect.equal results.Length d.Expansions.Length (name + ": one result per step")
                Expect.equal
                    (Model.ofModel (List.last results).Model)
                    (Model.flatten d)
                    (name + ": the core's expanded model is described by the flattened description")
                results
                |> List.iteri (fun i r ->
                    let prefix = { d with Expansions = List.take (i + 1) d.Expansions }
                    Expect.equal r.Account.StateAfter (Model.stateSize prefix) (sprintf "%s: state after step %d" name i)
                    Expect.equal r.Account.TotalParamsAfter (Model.paramCount prefix) (sprintf "%s: parameters after step %d" name i)
                    Expect.sequenceEqual
                        r.ExpandedLayers
                        (Model.expandedLayers (Model.numLayers d) d.Expansions.[i])
                        (sprintf "%s: layers of step %d" name i))
        }

        test "the reference checkpoints describe themselves exactly" {
            for fixture in [ "gla-tiny"; "gla-conv"; "gla-tiny-merged"; "mamba2-tiny"; "mamba2-groups"; "mamba2-tiny-mamba-ssm" ] do
                let dir = Fixtures.dir fixture
                let d = Model.ofCheckpoint dir
                let lm = Checkpoint.Load(dir, warn = Action<string>(ignore))
                Expect.equal (Model.stateSize d) (lm.StateSize().TotalElements) (fixture + ": state")
                Expect.equal (Model.paramCount d) (paramsOf lm) (fixture + ": parameters")
                Expect.equal (Model.ofModel lm) d (fixture + ": the loaded model has the same description")
                let written = Model.writeConfig (Path.Combine(Fixtures.tempDir (), "config.json")) d
                Expect.equal (Model.readConfig written) d (fixture + ": description → config → description")
        }

        test "the paper's presets and sizes match the repository's configs" {
            Expect.equal
                (Model.readConfig (Path.Combine(repoRoot, "data", "configs", "gla-1.3b.json")))
                (Model.gla GlaSpec.gla1_3b)
                "gla-1.3b.json"
            Expect.equal
                (Model.readConfig (Path.Combine(repoRoot, "data", "configs", "mamba2-1.3b.json")))
                (Model.mamba2 Mamba2Spec.mamba2_1_3b)
                "mamba2-1.3b.json"
            let gla = Model.gla GlaSpec.gla1_3b |> Expand.preset "gla-1.3b"
            let before, after = Model.layerStateSizes (Expand.none gla), Model.layerStateSizes gla
            let heads = GlaSpec.gla1_3b.Heads |> int64
            for i in 0..23 do
                Expect.equal
                    after.[i]
                    (if i % 6 = 0 then heads * before.[i] else before.[i])
                    (sprintf "GLA layer %d: merged layers hold H× the state" i)
            let mamba = Model.mamba2 Mamba2Spec.mamba2_1_3b |> Expand.preset "mamba2-1.3b"
            match (Model.flatten mamba).Arch with
            | Mamba2 s ->
                Expect.equal
                    s.LayerStates
                    (Some [ for i in 0..47 -> if i % 6 = 0 then 512 else 128 ])
                    "Mamba2: d_state 128 → 512 in every sixth layer"
            | _ -> failtest "not Mamba2"
        }

        test "expansions that do not fit the model are refused, naming the problem" {
            expectRefused (fun () -> glaBase |> Expand.all (State(2, Reinit)) |> Model.flatten) "merging heads"
            expectRefused (fun () -> mambaBase |> Expand.all (MergeHeads Reinit) |> Model.flatten) "widening the state"
            expectRefused (fun () -> glaWide |> Expand.all (MergeHeadsTo(3, Reinit)) |> Model.flatten) "does not divide"
            expectRefused (fun () -> glaBase |> Expand.all (MergeHeadsTo(4, Reinit)) |> Model.flatten) "cannot increase"
            expectRefused (fun () -> glaBase |> Expand.all (MergeHeads Copy) |> Model.flatten) "Mamba2 or GSA option"
            expectRefused (fun () -> mambaBase |> Expand.all (State(2, Inherit)) |> Model.flatten) "inherit"
            expectRefused (fun () -> glaBase |> Expand.layers [ 5 ] (MergeHeads Reinit) |> Model.flatten) "out of range"
            expectRefused (fun () -> glaBase |> Expand.seed 3L) "no expansion"
            expectRefused (fun () -> gsaBase |> Expand.all (MergeHeads Reinit) |> Model.flatten) "multiplying their slots"
            expectRefused (fun () -> gsaBase |> Expand.all (State(2, Zero)) |> Model.flatten) "init 'zero' does not apply to GSA slots"
            expectRefused
                (fun () -> Model.power PowerSpec.tiny |> Expand.all (State(2, Reinit)) |> Model.flatten)
                "power attention has no state expansion"
            expectRefused
                (fun () -> Model.expandModel (glaWide |> Expand.all (MergeHeads Reinit)) (Model.create glaBase))
                "not the description's unexpanded model"
        }

        test "a study takes GSA and power-attention families: GSA's StateX arm multiplies layer 0's slots by 4, power attention has none" {
            let s =
                StudyPresets.cpu.Study
                |> StudyPresets.addFamily "gsa" (StudyPresets.gsa 64 2 2 4)
                |> StudyPresets.addFamily "power" (Model.power PowerSpec.tiny)
            Study.validate s |> ignore
            let runs = Study.runs s
            let gsaStatex = runs |> List.find (fun r -> r.Family = "gsa" && r.Arm = "statex")
            match (Model.flatten gsaStatex.Pipeline.Model).Arch with
            | Gsa a -> Expect.equal a.LayerSlots (Some [ 16; 4 ]) "every:6 on 2 layers is layer 0: 4 → 16 slots"
            | _ -> failtest "not GSA"
            Expect.equal
                (runs |> List.filter (fun r -> r.Family = "power") |> List.map (fun r -> r.Arm) |> List.distinct |> List.sort)
                [ "base"; "lpt" ]
                "power: base and LPT only"
        }

        test "summary names the family, the expansions and the sizes" {
            let s = Model.summary (glaWide |> Expand.every 2 (MergeHeads Reinit))
            Expect.stringContains s "GLA 3 layers" "family and depth"
            Expect.stringContains s "every:2 merge-heads reinit" "the expansion"
            Expect.stringContains
                (Model.summary (gsaBase |> Expand.all (State(2, Copy))))
                "GSA 2 layers × 64 wide, 2 heads, 16 slots"
                "GSA family and slots"
            Expect.stringContains
                s
                ((Model.stateSize (glaWide |> Expand.every 2 (MergeHeads Reinit)))
                    .ToString("N0", Globalization.CultureInfo.InvariantCulture))
                "the state size"
        }
    ]
