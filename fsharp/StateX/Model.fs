namespace StateX

open System
open System.IO
open System.Text.Json
open StateX.IO
open StateX.Gla
open StateX.Mamba2
open StateX.Gsa
open StateX.Power
open StateX.Models
open StateX.Expansion

/// How the parameters of an expanded layer start (see the core's ExpansionInit; statex-official.md §1b, §1c, §3).
/// Every mode but Preserve reproduces an official thunlp/StateX drop_mode parameter by parameter.
type Init =
    /// GLA head merge = official drop_mode 'merge' (the inheritance ablation; modeling/gla/layer.py:L261-291):
    /// projections kept verbatim, the per-head output-norm weight tiled H/H', attn_norm reset to ones.
    | Inherit
    /// The paper's reinitialisation, default of both official scripts. GLA = drop_mode 'gla' (modeling/gla/layer.py:L250-258):
    /// a fresh attention, xavier_uniform(gain 2^-2.5) on every Linear, zero biases, norms 1, short convs at nn.Conv1d's default;
    /// attn_norm reset to ones. Mamba2 = drop_mode 'mamba4' (modeling/mamba2/layer.py:L209-398): all B/C rows of in_proj and
    /// conv1d at PyTorch's default init, dt_bias = 1, A_log = log(1..H), gated norm 1; z/x/dt rows, D, out_proj kept.
    | Reinit
    /// Mamba2 widening = official 'merge_copy': old B/C rows and conv channels block-tiled r times (per group when
    /// n_groups > 1); dt_bias, A_log, norm reset as in Reinit.
    | Copy
    /// Mamba2 widening = official 'merge_zero': [B_old, 0…], [C_old, 0…] for in_proj rows and conv weight and bias;
    /// dt_bias, A_log, norm reset as in Reinit. The new dimensions get no gradient (new B and C both exactly 0).
    | Zero
    /// Mamba2 widening, ours (no official counterpart): old rows kept, new C rows zero, new B rows fresh (default init),
    /// everything else kept: the same function at step 0, and the new dimensions still get gradients.
    | Preserve

/// The architectural change made to the chosen layers.
type Rewrite =
    /// GLA: all heads of a layer merged into one (the paper's recipe): the layer's state grows H-fold.
    | MergeHeads of Init
    /// GLA: the heads of a layer merged into `heads` heads: state grows H/heads-fold.
    | MergeHeadsTo of heads: int * init: Init
    /// Mamba2: d_state multiplied by `ratio`; GSA: slots multiplied by `ratio` (state grows ratio-fold).
    | State of ratio: int * init: Init

/// Which layers an expansion touches (the core's LayerSelection).
[<RequireQualifiedAccess>]
type LayerSet =
    | All
    /// Layers 0, k, 2k, ... (the official code's drop_prop = k).
    | Every of int
    /// round(f·L) layers spread evenly from layer 0.
    | Fraction of float
    | Only of int list
    | First of int
    | Last of int

/// One StateX expansion step: a rewrite applied to some layers; Seed draws re-initialised parameters;
/// FreezeOthers trains only the expanded layers afterwards.
type Expansion = { Where: LayerSet; Rewrite: Rewrite; Seed: int64; FreezeOthers: bool }

/// A GLA language model in fla's terms (names after fla's GLAConfig).
type GlaSpec = {
    Vocab: int
    Hidden: int
    Layers: int
    Heads: int
    /// Grouped key/value heads (None: one per head).
    KvHeads: int option
    ExpandK: float
    ExpandV: float
    HiddenRatio: int option
    /// MLP width; None: fla's rule from HiddenRatio.
    Intermediate: int option
    /// Short causal convolution of this width on q, k, v (None: no convolution).
    Conv: int option
    ConvBias: bool
    OutputGate: bool
    FeatureMap: string option
    GateLowRank: int
    GateNormalizer: float
    ClampMin: float option
    NormEps: float
    ElementwiseAffine: bool
    FuseNorm: bool
    TieEmbeddings: bool
    InitRange: float
    MaxPositions: int
    /// Heads per layer when they differ (an expanded checkpoint); None: every layer has Heads.
    LayerHeads: int list option
}

/// A Mamba2 language model in mamba_ssm's terms (d_model, d_state, headdim, ngroups, expand).
type Mamba2Spec = {
    Vocab: int
    DModel: int
    Layers: int
    DState: int
    HeadDim: int
    Expand: int
    Groups: int
    ConvKernel: int
    ChunkSize: int
    Bias: bool
    ConvBias: bool
    TieEmbeddings: bool
    ResidualInFp32: bool
    NormEps: float
    /// Gated norm per group (mamba_ssm) rather than over the whole width (transformers); matters only with Groups > 1.
    NormPerGroup: bool
    DtMin: float
    DtMax: float
    DtFloor: float
    DtLimit: float * float
    InitRange: float
    /// d_state per layer when they differ (an expanded checkpoint); None: every layer has DState.
    LayerStates: int list option
}

/// A gated slot attention (GSA) language model in fla's terms (names after fla's GSAConfig). fla's output norm is
/// hidden_size wide over the value_dim-wide output, so expand_v is always 1 and not a field.
type GsaSpec = {
    Vocab: int
    Hidden: int
    Layers: int
    Heads: int
    /// Grouped key/value heads (None: one per head).
    KvHeads: int option
    /// Memory slots per head, M (fla's num_slots).
    Slots: int
    ExpandK: float
    HiddenRatio: int option
    /// MLP width; None: fla's rule from HiddenRatio.
    Intermediate: int option
    /// Short causal convolution of this width on q, k, v (None: no convolution).
    Conv: int option
    /// "swish", "relu" or "t2r".
    FeatureMap: string
    GateNormalizer: float
    NormEps: float
    ElementwiseAffine: bool
    FuseNorm: bool
    TieEmbeddings: bool
    InitRange: float
    MaxPositions: int
    /// Slots per layer when they differ (an expanded checkpoint); None: every layer has Slots.
    LayerSlots: int list option
}

/// A tiny power-attention language model (StateX's own; core PowerConfig): H heads of width d, degree p.
type PowerSpec = {
    Vocab: int
    Hidden: int
    Layers: int
    Heads: int
    HeadDim: int
    /// p, even: the state per head is C(d + p − 1, p)·(d + 1).
    Degree: int
    Gating: bool
    ChunkSize: int
    HiddenRatio: int option
    Intermediate: int option
    NormEps: float
    TieEmbeddings: bool
    InitRange: float
}

type Arch =
    | Gla of GlaSpec
    | Mamba2 of Mamba2Spec
    | Gsa of GsaSpec
    | Power of PowerSpec

/// A model description: an architecture and the expansions applied to it, in order. Pure data: printable,
/// hashable (<see cref="Hash"/>), comparable; sizes are computed without tensors.
type Model = { Arch: Arch; Expansions: Expansion list }

[<RequireQualifiedAccess>]
module GlaSpec =
    /// fla's GLAConfig defaults.
    let defaults = {
        Vocab = 32000
        Hidden = 2048
        Layers = 24
        Heads = 4
        KvHeads = None
        ExpandK = 0.5
        ExpandV = 1.0
        HiddenRatio = Some 4
        Intermediate = None
        Conv = None
        ConvBias = false
        OutputGate = true
        FeatureMap = None
        GateLowRank = 16
        GateNormalizer = 16.0
        ClampMin = None
        NormEps = 1e-6
        ElementwiseAffine = true
        FuseNorm = true
        TieEmbeddings = false
        InitRange = 0.02
        MaxPositions = 2048
        LayerHeads = None
    }

    /// The StateX paper's GLA 1.3B (data/configs/gla-1.3b.json).
    let gla1_3b = defaults

    /// A CPU-sized model for tests and quick looks (byte-tokenizer vocabulary).
    let tiny = { defaults with Vocab = 259; Hidden = 64; Layers = 2; Heads = 2; HiddenRatio = Some 2 }

[<RequireQualifiedAccess>]
module GsaSpec =
    /// fla's GSAConfig defaults.
    let defaults = {
        Vocab = 32000
        Hidden = 2048
        Layers = 24
        Heads = 4
        KvHeads = None
        Slots = 64
        ExpandK = 1.0
        HiddenRatio = Some 4
        Intermediate = None
        Conv = None
        FeatureMap = "swish"
        GateNormalizer = 8.0
        NormEps = 1e-6
        ElementwiseAffine = true
        FuseNorm = true
        TieEmbeddings = false
        InitRange = 0.02
        MaxPositions = 2048
        LayerSlots = None
    }

    /// A CPU-sized model for tests and quick looks (byte-tokenizer vocabulary).
    let tiny = { defaults with Vocab = 259; Hidden = 64; Layers = 2; Heads = 2; Slots = 16; HiddenRatio = Some 2 }

[<RequireQualifiedAccess>]
module PowerSpec =
    /// The core PowerConfig's defaults.
    let defaults = {
        Vocab = 32000
        Hidden = 256
        Layers = 2
        Heads = 4
        HeadDim = 16
        Degree = 2
        Gating = true
        ChunkSize = 64
        HiddenRatio = Some 4
        Intermediate = None
        NormEps = 1e-6
        TieEmbeddings = false
        InitRange = 0.02
    }

    let tiny = { defaults with Vocab = 259; Hidden = 64; Heads = 2; HeadDim = 8; HiddenRatio = Some 2 }

[<RequireQualifiedAccess>]
module Mamba2Spec =
    /// mamba_ssm's Mamba2 defaults.
    let defaults = {
        Vocab = 50288
        DModel = 2048
        Layers = 48
        DState = 128
        HeadDim = 64
        Expand = 2
        Groups = 1
        ConvKernel = 4
        ChunkSize = 256
        Bias = false
        ConvBias = true
        TieEmbeddings = true
        ResidualInFp32 = true
        NormEps = 1e-5
        NormPerGroup = false
        DtMin = 0.001
        DtMax = 0.1
        DtFloor = 1e-4
        DtLimit = (0.0, Double.PositiveInfinity)
        InitRange = 0.02
        LayerStates = None
    }

    /// The StateX paper's Mamba2 1.3B (data/configs/mamba2-1.3b.json; vocabulary 50277 padded to 50288).
    let mamba2_1_3b = defaults

    let tiny = { defaults with Vocab = 259; DModel = 64; Layers = 2; DState = 16; HeadDim = 16; ChunkSize = 32 }

/// Expansions as functions of a description, for <c>|&gt;</c>: <c>model |&gt; Expand.every 6 (MergeHeads Reinit)</c>.
[<RequireQualifiedAccess>]
module Expand =
    /// Appends an expansion step.
    let apply (e: Expansion) (m: Model) = { m with Expansions = m.Expansions @ [ e ] }

    let on (where: LayerSet) (rewrite: Rewrite) (m: Model) = apply { Where = where; Rewrite = rewrite; Seed = 0L; FreezeOthers = false } m

    let all rewrite m = on LayerSet.All rewrite m
    let every k rewrite m = on (LayerSet.Every k) rewrite m
    let fraction f rewrite m = on (LayerSet.Fraction f) rewrite m
    let layers (indices: int list) rewrite m = on (LayerSet.Only indices) rewrite m
    let first n rewrite m = on (LayerSet.First n) rewrite m
    let last n rewrite m = on (LayerSet.Last n) rewrite m

    let private mapLast f (m: Model) =
        match List.rev m.Expansions with
        | [] -> invalidArg "model" "the model has no expansion to modify; add one first (Expand.every, Expand.all, ...)"
        | e :: rest -> { m with Expansions = List.rev (f e :: rest) }

    /// Sets the seed of the last expansion (the draw of re-initialised parameters).
    let seed (s: int64) m = mapLast (fun e -> { e with Seed = s }) m

    /// Marks the last expansion's layers as the only ones trained afterwards.
    let freezeOthers m = mapLast (fun e -> { e with FreezeOthers = true }) m

    /// Removes every expansion: the model that is pretrained before expanding.
    let none (m: Model) = { m with Expansions = [] }

    let ofCoreInit (i: ExpansionInit) =
        match i with
        | ExpansionInit.Inherit -> Inherit
        | ExpansionInit.Reinit -> Reinit
        | ExpansionInit.Copy -> Copy
        | ExpansionInit.Zero -> Zero
        | _ -> Preserve

    let ofCoreSelection (s: LayerSelection) =
        match s with
        | :? LayerSelection.All -> LayerSet.All
        | :? LayerSelection.Every as e -> LayerSet.Every e.K
        | :? LayerSelection.Fraction as f -> LayerSet.Fraction f.F
        | :? LayerSelection.First as f -> LayerSet.First f.N
        | :? LayerSelection.Last as l -> LayerSet.Last l.N
        | :? LayerSelection.Explicit as x -> LayerSet.Only(List.ofSeq x.Layers)
        | _ -> invalidArg "selection" (sprintf "unknown layer selection %O" s)

    /// The expansion step of a core request.
    let ofRequest (r: ExpansionRequest) : Expansion =
        let init = ofCoreInit r.Init
        let rewrite =
            match r.Rewrite with
            | :? StateX.Expansion.Rewrite.MergeHeads as h when h.Heads = 1 -> MergeHeads init
            | :? StateX.Expansion.Rewrite.MergeHeads as h -> MergeHeadsTo(h.Heads, init)
            | :? StateX.Expansion.Rewrite.WidenState as w -> State(w.Ratio, init)
            | x -> invalidArg "request" (sprintf "unknown rewrite %O" x)
        { Where = ofCoreSelection r.Layers; Rewrite = rewrite; Seed = r.Seed; FreezeOthers = r.FreezeOthers }

    /// An expansion step from the core's text forms (as the CLI takes them): layers "every:6", rewrite
    /// "merge-heads" / "merge-heads:2" / "state:x4", init "reinit".
    let parse (layers: string) (rewrite: string) (init: string) m =
        apply
            (ofRequest (
                ExpansionRequest(LayerSelection.Parse layers, StateX.Expansion.Rewrite.Parse rewrite, ExpansionRequest.ParseInit init)
            ))
            m

    /// A recipe of the core (gla-1.3b, mamba2-1.3b, mamba2-1.3b-script; see ExpansionPresets) as an expansion step.
    let preset (name: string) m = apply (ofRequest ((ExpansionPresets.Get name).ToRequest())) m

[<RequireQualifiedAccess>]
module Model =
    let gla (spec: GlaSpec) = { Arch = Gla spec; Expansions = [] }
    let mamba2 (spec: Mamba2Spec) = { Arch = Mamba2 spec; Expansions = [] }
    let gsa (spec: GsaSpec) = { Arch = Gsa spec; Expansions = [] }
    let power (spec: PowerSpec) = { Arch = Power spec; Expansions = [] }

    let family (m: Model) =
        match m.Arch with
        | Gla _ -> "gla"
        | Mamba2 _ -> "mamba2"
        | Gsa _ -> "gsa"
        | Power _ -> "power"

    let numLayers (m: Model) =
        match m.Arch with
        | Gla g -> g.Layers
        | Mamba2 s -> s.Layers
        | Gsa a -> a.Layers
        | Power w -> w.Layers

    /// Changes the GLA architecture (fails on a Mamba2 description).
    let mapGla (f: GlaSpec -> GlaSpec) (m: Model) =
        match m.Arch with
        | Gla g -> { m with Arch = Gla(f g) }
        | Mamba2 _ -> invalidArg "model" "mapGla: this is a Mamba2 description"
        | Gsa _ -> invalidArg "model" "mapGla: this is a GSA description"
        | Power _ -> invalidArg "model" "mapGla: this is a power-attention description"

    /// Changes the Mamba2 architecture (fails on a GLA description).
    let mapMamba2 (f: Mamba2Spec -> Mamba2Spec) (m: Model) =
        match m.Arch with
        | Mamba2 s -> { m with Arch = Mamba2(f s) }
        | Gla _ -> invalidArg "model" "mapMamba2: this is a GLA description"
        | Gsa _ -> invalidArg "model" "mapMamba2: this is a GSA description"
        | Power _ -> invalidArg "model" "mapMamba2: this is a power-attention description"

    /// Changes the GSA architecture (fails on a GLA or Mamba2 description).
    let mapGsa (f: GsaSpec -> GsaSpec) (m: Model) =
        match m.Arch with
        | Gsa a -> { m with Arch = Gsa(f a) }
        | Gla _ -> invalidArg "model" "mapGsa: this is a GLA description"
        | Mamba2 _ -> invalidArg "model" "mapGsa: this is a Mamba2 description"
        | Power _ -> invalidArg "model" "mapGsa: this is a power-attention description"

    /// Changes the power-attention architecture (fails on any other description).
    let mapPower (f: PowerSpec -> PowerSpec) (m: Model) =
        match m.Arch with
        | Power w -> { m with Arch = Power(f w) }
        | _ -> invalidArg "model" (sprintf "mapPower: this is a %s description" (family m))

    let withLayers n m =
        match m.Arch with
        | Gla g -> { m with Arch = Gla { g with Layers = n } }
        | Mamba2 s -> { m with Arch = Mamba2 { s with Layers = n } }
        | Gsa a -> { m with Arch = Gsa { a with Layers = n } }
        | Power w -> { m with Arch = Power { w with Layers = n } }

    let withVocab n m =
        match m.Arch with
        | Gla g -> { m with Arch = Gla { g with Vocab = n } }
        | Mamba2 s -> { m with Arch = Mamba2 { s with Vocab = n } }
        | Gsa a -> { m with Arch = Gsa { a with Vocab = n } }
        | Power w -> { m with Arch = Power { w with Vocab = n } }

    /// hidden_size (GLA, GSA) or d_model (Mamba2).
    let withWidth n m =
        match m.Arch with
        | Gla g -> { m with Arch = Gla { g with Hidden = n } }
        | Mamba2 s -> { m with Arch = Mamba2 { s with DModel = n } }
        | Gsa a -> { m with Arch = Gsa { a with Hidden = n } }
        | Power w -> { m with Arch = Power { w with Hidden = n } }

    // ---- core configs ------------------------------------------------------------------------------------------

    let private toSelection (l: LayerSet) : LayerSelection =
        match l with
        | LayerSet.All -> LayerSelection.All()
        | LayerSet.Every k -> LayerSelection.Every k
        | LayerSet.Fraction f -> LayerSelection.Fraction f
        | LayerSet.Only xs -> LayerSelection.Explicit(xs |> List.distinct |> List.sort |> Array.ofList)
        | LayerSet.First n -> LayerSelection.First n
        | LayerSet.Last n -> LayerSelection.Last n

    let private coreInit (i: Init) =
        match i with
        | Inherit -> ExpansionInit.Inherit
        | Reinit -> ExpansionInit.Reinit
        | Copy -> ExpansionInit.Copy
        | Zero -> ExpansionInit.Zero
        | Preserve -> ExpansionInit.Preserve

    let private initName (i: Init) = (string i).ToLowerInvariant()

    /// The core's request for one expansion step (what StateExpansion.Apply takes).
    let request (e: Expansion) : ExpansionRequest =
        let rewrite, init =
            match e.Rewrite with
            | MergeHeads i -> (StateX.Expansion.Rewrite.MergeHeads 1 :> StateX.Expansion.Rewrite), i
            | MergeHeadsTo(h, i) -> (StateX.Expansion.Rewrite.MergeHeads h :> StateX.Expansion.Rewrite), i
            | State(r, i) -> (StateX.Expansion.Rewrite.WidenState r :> StateX.Expansion.Rewrite), i
        ExpansionRequest(toSelection e.Where, rewrite, coreInit init, e.Seed, e.FreezeOthers)

    /// The layer indices an expansion step touches in a model of `layers` layers (the core's rule).
    let expandedLayers (layers: int) (e: Expansion) = (toSelection e.Where).Resolve layers |> List.ofSeq

    let private applyGla (g: GlaSpec) (e: Expansion) =
        let target, init =
            match e.Rewrite with
            | MergeHeads i -> 1, i
            | MergeHeadsTo(h, i) -> h, i
            | State _ ->
                invalidArg
                    "model"
                    (sprintf "GLA models are expanded by merging heads (MergeHeads, MergeHeadsTo); %A applies to Mamba2 and GSA" e.Rewrite)
        if init <> Inherit && init <> Reinit then
            invalidArg "model" (sprintf "init '%s' is a Mamba2 or GSA option; GLA head merging takes Inherit or Reinit" (initName init))
        if target < 1 then invalidArg "model" (sprintf "cannot merge heads into %d heads" target)
        match g.KvHeads with
        | Some kv when kv <> g.Heads ->
            invalidArg "model" (sprintf "merging heads of a model with grouped key/value heads (KvHeads = %d) is not supported" kv)
        | _ -> ()
        let heads =
            Array.init g.Layers (fun i ->
                match g.LayerHeads with
                | Some l -> l.[i]
                | None -> g.Heads)
        for i in expandedLayers g.Layers e do
            if target > heads.[i] then
                invalidArg "model" (sprintf "layer %d has %d heads; merging cannot increase them to %d" i heads.[i] target)
            if heads.[i] % target <> 0 then
                invalidArg
                    "model"
                    (sprintf "cannot merge the %d heads of layer %d into %d: %d does not divide %d" heads.[i] i target target heads.[i])
            heads.[i] <- target
        // As the core does: a uniform result is a plain fla model; only mixed layers need the per-layer key.
        if Array.forall ((=) heads.[0]) heads then
            { g with Heads = heads.[0]; LayerHeads = None }
        else
            { g with LayerHeads = Some(List.ofArray heads) }

    /// A layer's size times the expansion ratio, refused (not wrapped round) beyond the int range: the core's rule.
    let private widened (layer: int) (what: string) (size: int) (ratio: int) =
        try
            StateExpansion.Widened(layer, what, size, ratio)
        with :? ArgumentException as e ->
            invalidArg "model" e.Message

    let private applyMamba2 (s: Mamba2Spec) (e: Expansion) =
        let ratio, init =
            match e.Rewrite with
            | State(r, i) -> r, i
            | r ->
                invalidArg "model" (sprintf "Mamba2 models are expanded by widening the state (State (ratio, init)); %A applies to GLA" r)
        if ratio < 1 then invalidArg "model" (sprintf "the expansion ratio must be at least 1 (got %d)" ratio)
        if init = Inherit then
            invalidArg "model" "init 'inherit' is the GLA head-merge option; widening a Mamba2 state takes Reinit, Copy, Zero or Preserve"
        let sizes =
            Array.init s.Layers (fun i ->
                match s.LayerStates with
                | Some l -> l.[i]
                | None -> s.DState)
        for i in expandedLayers s.Layers e do
            sizes.[i] <- widened i "d_state" sizes.[i] ratio
        if Array.forall ((=) sizes.[0]) sizes then
            { s with DState = sizes.[0]; LayerStates = None }
        else
            { s with LayerStates = Some(List.ofArray sizes) }

    /// The core's rule (GsaSlotExpansion): slots × ratio in the chosen layers; Reinit (fresh) or Copy (tiled; Preserve = Copy).
    let private applyGsa (a: GsaSpec) (e: Expansion) =
        let ratio, init =
            match e.Rewrite with
            | State(r, i) -> r, i
            | r ->
                invalidArg "model" (sprintf "GSA models are expanded by multiplying their slots (State (ratio, init)); %A applies to GLA" r)
        if ratio < 1 then invalidArg "model" (sprintf "the expansion ratio must be at least 1 (got %d)" ratio)
        if init <> Reinit && init <> Copy && init <> Preserve then
            invalidArg
                "model"
                (sprintf
                    "init '%s' does not apply to GSA slots; expected Reinit (fresh slots) or Copy (tiled slots, function-preserving)"
                    (initName init))
        let slots =
            Array.init a.Layers (fun i ->
                match a.LayerSlots with
                | Some l -> l.[i]
                | None -> a.Slots)
        for i in expandedLayers a.Layers e do
            slots.[i] <- widened i "num_slots" slots.[i] ratio
        if Array.forall ((=) slots.[0]) slots then
            { a with Slots = slots.[0]; LayerSlots = None }
        else
            { a with LayerSlots = Some(List.ofArray slots) }

    /// The description with every expansion folded into the architecture (per-layer heads / state sizes):
    /// the shape of the expanded model, which is what its config.json records.
    let flatten (m: Model) : Model =
        let arch =
            match m.Arch with
            | Gla g -> Gla(List.fold applyGla g m.Expansions)
            | Mamba2 s -> Mamba2(List.fold applyMamba2 s m.Expansions)
            | Gsa a -> Gsa(List.fold applyGsa a m.Expansions)
            | Power w ->
                if not m.Expansions.IsEmpty then
                    invalidArg
                        "model"
                        "power attention has no state expansion: its state is set by the degree p and the head width (Model.mapPower)"
                Power w
        { Arch = arch; Expansions = [] }

    let private checkLayerList what (layers: int) (l: int list option) =
        match l with
        | Some xs when xs.Length <> layers -> invalidArg "model" (sprintf "%s lists %d layers, the model has %d" what xs.Length layers)
        | _ -> ()

    /// The core's GlaConfig of a (flattened) GLA description.
    let glaConfig (m: Model) : GlaConfig =
        match (flatten m).Arch with
        | Gla g ->
            checkLayerList "LayerHeads" g.Layers g.LayerHeads
            let c =
                GlaConfig(
                    VocabSize = g.Vocab,
                    HiddenSize = g.Hidden,
                    NumHiddenLayers = g.Layers,
                    NumHeads = g.Heads,
                    NumKvHeads = Option.toNullable g.KvHeads,
                    ExpandK = g.ExpandK,
                    ExpandV = g.ExpandV,
                    HiddenRatio = Option.toNullable g.HiddenRatio,
                    IntermediateSize = Option.toNullable g.Intermediate,
                    UseShortConv = g.Conv.IsSome,
                    ConvSize = defaultArg g.Conv 4,
                    ConvBias = g.ConvBias,
                    UseOutputGate = g.OutputGate,
                    FeatureMap = Option.toObj g.FeatureMap,
                    GateLowRankDim = g.GateLowRank,
                    GateLogitNormalizer = g.GateNormalizer,
                    ClampMin = Option.toNullable g.ClampMin,
                    NormEps = g.NormEps,
                    ElementwiseAffine = g.ElementwiseAffine,
                    FuseNorm = g.FuseNorm,
                    TieWordEmbeddings = g.TieEmbeddings,
                    InitializerRange = g.InitRange,
                    MaxPositionEmbeddings = g.MaxPositions,
                    LayerNumHeads =
                        (match g.LayerHeads with
                         | Some l -> Array.ofList l :> Collections.Generic.IReadOnlyList<int>
                         | None -> null)
                )
            c.Validate "GLA description"
            c
        | Mamba2 _ -> invalidArg "model" "glaConfig: this is a Mamba2 description"
        | Gsa _ -> invalidArg "model" "glaConfig: this is a GSA description"
        | Power _ -> invalidArg "model" "glaConfig: this is a power-attention description"

    /// The core's GsaConfig of a (flattened) GSA description.
    let gsaConfig (m: Model) : GsaConfig =
        match (flatten m).Arch with
        | Gsa a ->
            checkLayerList "LayerSlots" a.Layers a.LayerSlots
            let c =
                GsaConfig(
                    VocabSize = a.Vocab,
                    HiddenSize = a.Hidden,
                    NumHiddenLayers = a.Layers,
                    NumHeads = a.Heads,
                    NumKvHeads = Option.toNullable a.KvHeads,
                    NumSlots = Nullable a.Slots,
                    ExpandK = a.ExpandK,
                    ExpandV = 1.0,
                    HiddenRatio = Option.toNullable a.HiddenRatio,
                    IntermediateSize = Option.toNullable a.Intermediate,
                    UseShortConv = a.Conv.IsSome,
                    ConvSize = defaultArg a.Conv 4,
                    FeatureMap = a.FeatureMap,
                    GateLogitNormalizer = a.GateNormalizer,
                    NormEps = a.NormEps,
                    ElementwiseAffine = a.ElementwiseAffine,
                    FuseNorm = a.FuseNorm,
                    TieWordEmbeddings = a.TieEmbeddings,
                    InitializerRange = a.InitRange,
                    MaxPositionEmbeddings = a.MaxPositions,
                    LayerNumSlots =
                        (match a.LayerSlots with
                         | Some l -> Array.ofList l :> Collections.Generic.IReadOnlyList<int>
                         | None -> null)
                )
            c.Validate "GSA description"
            c
        | _ -> invalidArg "model" "gsaConfig: this is not a GSA description"

    /// The core's Mamba2Config of a (flattened) Mamba2 description.
    let mamba2Config (m: Model) : Mamba2Config =
        match (flatten m).Arch with
        | Mamba2 s ->
            checkLayerList "LayerStates" s.Layers s.LayerStates
            if s.DModel <= 0 || s.HeadDim <= 0 || s.Expand <= 0 then invalidArg "model" "DModel, HeadDim and Expand must be positive"
            if (s.Expand * s.DModel) % s.HeadDim <> 0 then
                invalidArg "model" (sprintf "Expand · DModel = %d is not a multiple of HeadDim %d" (s.Expand * s.DModel) s.HeadDim)
            let lo, hi = s.DtLimit
            let c =
                Mamba2Config(
                    VocabSize = s.Vocab,
                    HiddenSize = s.DModel,
                    NumLayers = s.Layers,
                    StateSize = s.DState,
                    NumHeads = s.Expand * s.DModel / s.HeadDim,
                    HeadDim = s.HeadDim,
                    NGroups = s.Groups,
                    ConvKernel = s.ConvKernel,
                    ChunkSize = s.ChunkSize,
                    UseBias = s.Bias,
                    UseConvBias = s.ConvBias,
                    ResidualInFp32 = s.ResidualInFp32,
                    TieWordEmbeddings = s.TieEmbeddings,
                    LayerNormEpsilon = s.NormEps,
                    TimeStepMin = s.DtMin,
                    TimeStepMax = s.DtMax,
                    TimeStepFloor = s.DtFloor,
                    TimeStepLimitLow = lo,
                    TimeStepLimitHigh = hi,
                    InitializerRange = s.InitRange,
                    NormPerGroup = s.NormPerGroup,
                    LayerStateSizes =
                        (match s.LayerStates with
                         | Some l -> Array.ofList l :> Collections.Generic.IReadOnlyList<int>
                         | None -> null)
                )
            c.Validate "Mamba2 description"
        | Gla _ -> invalidArg "model" "mamba2Config: this is a GLA description"
        | Gsa _ -> invalidArg "model" "mamba2Config: this is a GSA description"
        | Power _ -> invalidArg "model" "mamba2Config: this is a power-attention description"

    /// The core's PowerConfig of a power-attention description.
    let powerConfig (m: Model) : PowerConfig =
        match (flatten m).Arch with
        | Power w ->
            let c =
                PowerConfig(
                    VocabSize = w.Vocab,
                    HiddenSize = w.Hidden,
                    NumHiddenLayers = w.Layers,
                    NumHeads = w.Heads,
                    HeadDim = w.HeadDim,
                    Degree = w.Degree,
                    Gating = w.Gating,
                    ChunkSize = w.ChunkSize,
                    HiddenRatio = Option.toNullable w.HiddenRatio,
                    IntermediateSize = Option.toNullable w.Intermediate,
                    NormEps = w.NormEps,
                    TieWordEmbeddings = w.TieEmbeddings,
                    InitializerRange = w.InitRange
                )
            c.Validate "power-attention description"
            c
        | _ -> invalidArg "model" "powerConfig: this is not a power-attention description"

    let private optionOfList (l: Collections.Generic.IReadOnlyList<int>) = if isNull l then None else Some(List.ofSeq l)

    /// The description of a core GlaConfig (informational keys such as token ids and dtype are not kept).
    let ofGlaConfig (c: GlaConfig) : Model =
        gla {
            Vocab = c.VocabSize
            Hidden = c.HiddenSize
            Layers = c.NumHiddenLayers
            Heads = c.NumHeads
            KvHeads = Option.ofNullable c.NumKvHeads
            ExpandK = c.ExpandK
            ExpandV = c.ExpandV
            HiddenRatio = Option.ofNullable c.HiddenRatio
            Intermediate = Option.ofNullable c.IntermediateSize
            Conv = (if c.UseShortConv then Some c.ConvSize else None)
            ConvBias = c.ConvBias
            OutputGate = c.UseOutputGate
            FeatureMap = Option.ofObj c.FeatureMap
            GateLowRank = c.GateLowRankDim
            GateNormalizer = c.GateLogitNormalizer
            ClampMin = Option.ofNullable c.ClampMin
            NormEps = c.NormEps
            ElementwiseAffine = c.ElementwiseAffine
            FuseNorm = c.FuseNorm
            TieEmbeddings = c.TieWordEmbeddings
            InitRange = c.InitializerRange
            MaxPositions = c.MaxPositionEmbeddings
            LayerHeads = optionOfList c.LayerNumHeads
        }

    /// The description of a core GsaConfig (informational keys such as token ids, dtype and the settings fla's layer
    /// does not read — use_output_gate, use_norm, clamp_min/max — are not kept; num_slots null becomes head_k_dim).
    let ofGsaConfig (c: GsaConfig) : Model =
        gsa {
            Vocab = c.VocabSize
            Hidden = c.HiddenSize
            Layers = c.NumHiddenLayers
            Heads = c.NumHeads
            KvHeads = Option.ofNullable c.NumKvHeads
            Slots = (if c.NumSlots.HasValue then c.NumSlots.Value else c.HeadKDim)
            ExpandK = c.ExpandK
            HiddenRatio = Option.ofNullable c.HiddenRatio
            Intermediate = Option.ofNullable c.IntermediateSize
            Conv = (if c.UseShortConv then Some c.ConvSize else None)
            FeatureMap = c.FeatureMap
            GateNormalizer = c.GateLogitNormalizer
            NormEps = c.NormEps
            ElementwiseAffine = c.ElementwiseAffine
            FuseNorm = c.FuseNorm
            TieEmbeddings = c.TieWordEmbeddings
            InitRange = c.InitializerRange
            MaxPositions = c.MaxPositionEmbeddings
            LayerSlots = optionOfList c.LayerNumSlots
        }

    /// The description of a core PowerConfig.
    let ofPowerConfig (c: PowerConfig) : Model =
        power {
            Vocab = c.VocabSize
            Hidden = c.HiddenSize
            Layers = c.NumHiddenLayers
            Heads = c.NumHeads
            HeadDim = c.HeadDim
            Degree = c.Degree
            Gating = c.Gating
            ChunkSize = c.ChunkSize
            HiddenRatio = Option.ofNullable c.HiddenRatio
            Intermediate = Option.ofNullable c.IntermediateSize
            NormEps = c.NormEps
            TieEmbeddings = c.TieWordEmbeddings
            InitRange = c.InitializerRange
        }

    /// The description of a core Mamba2Config.
    let ofMamba2Config (c: Mamba2Config) : Model =
        if c.IntermediateSize % c.HiddenSize <> 0 then
            invalidArg
                "config"
                (sprintf
                    "num_heads · head_dim = %d is not a whole multiple of hidden_size %d (Expand must be an integer)"
                    c.IntermediateSize
                    c.HiddenSize)
        mamba2 {
            Vocab = c.VocabSize
            DModel = c.HiddenSize
            Layers = c.NumLayers
            DState = c.StateSize
            HeadDim = c.HeadDim
            Expand = c.IntermediateSize / c.HiddenSize
            Groups = c.NGroups
            ConvKernel = c.ConvKernel
            ChunkSize = c.ChunkSize
            Bias = c.UseBias
            ConvBias = c.UseConvBias
            TieEmbeddings = c.TieWordEmbeddings
            ResidualInFp32 = c.ResidualInFp32
            NormEps = c.LayerNormEpsilon
            NormPerGroup = c.NormPerGroup && c.NGroups > 1
            DtMin = c.TimeStepMin
            DtMax = c.TimeStepMax
            DtFloor = c.TimeStepFloor
            DtLimit = (c.TimeStepLimitLow, c.TimeStepLimitHigh)
            InitRange = c.InitializerRange
            LayerStates = optionOfList c.LayerStateSizes
        }

    /// config.json text of the (flattened) description, in the dialect the core and the references read
    /// (fla for GLA, transformers for Mamba2).
    let configJson (m: Model) : string =
        let node =
            match m.Arch with
            | Gla _ -> (glaConfig m).ToJson()
            | Mamba2 _ -> (mamba2Config m).ToHuggingFace()
            | Gsa _ -> (gsaConfig m).ToJson()
            | Power _ -> (powerConfig m).ToJson()
        node.ToJsonString(JsonSerializerOptions(WriteIndented = true)) + "\n"

    /// Writes config.json (a file path, or a folder to hold config.json); returns the file's path.
    let writeConfig (path: string) (m: Model) : string =
        let file = if Directory.Exists path || Path.GetExtension path = "" then Path.Combine(path, "config.json") else path
        match Path.GetDirectoryName(Path.GetFullPath file) with
        | null -> ()
        | d -> Directory.CreateDirectory d |> ignore
        AtomicFile.WriteAllText(file, configJson m)
        file

    /// Reads a config.json in any dialect the core reads (fla GLA, transformers or mamba_ssm Mamba2);
    /// `warn` receives one line naming keys nobody read.
    let readConfigWith (warn: string -> unit) (path: string) : Model =
        let c = ConfigJson.Load path
        let w = Action<string>(warn)
        match c.Root.["model_type"] with
        | null when c.Root.ContainsKey "d_model" && c.Root.ContainsKey "n_layer" ->
            let cfg = Mamba2Config.FromMambaSsm(c, w)
            match c.UnknownKeysWarning() with
            | null -> ()
            | s -> warn s
            ofMamba2Config cfg
        | t when not (isNull t) && string t = "gla" -> ofGlaConfig (GlaConfig.FromJson(c, w))
        | t when not (isNull t) && string t = "gsa" -> ofGsaConfig (GsaConfig.FromJson(c, w))
        | t when not (isNull t) && string t = "power_attention" -> ofPowerConfig (PowerConfig.FromJson(c, w))
        | t when not (isNull t) && string t = "mamba2" ->
            let cfg = Mamba2Config.FromHuggingFace c
            match c.UnknownKeysWarning() with
            | null -> ()
            | s -> warn s
            ofMamba2Config cfg
        | t ->
            raise (
                ConfigException(
                    sprintf
                        "%s: not a config StateX can describe (model_type '%s'; known: gla, gsa, mamba2, mamba_ssm, power_attention)"
                        path
                        (if isNull t then "absent" else string t)
                )
            )

    let readConfig (path: string) = readConfigWith (eprintfn "%s") path

    /// The description of a checkpoint folder (its config.json). Expanded checkpoints come back flattened.
    let ofCheckpoint (dir: string) =
        if not (Directory.Exists dir) then raise (DirectoryNotFoundException(sprintf "checkpoint folder not found: %s" dir))
        readConfig (Path.Combine(dir, "config.json"))

    /// The description of a live core model (its config).
    let ofModel (lm: ICausalLanguageModel) : Model =
        match lm with
        | :? GlaForCausalLM as g -> ofGlaConfig g.Config
        | :? Mamba2ForCausalLM as s -> ofMamba2Config s.Config
        | :? GsaForCausalLM as a -> ofGsaConfig a.Config
        | :? PowerForCausalLM as w -> ofPowerConfig w.Config
        | _ -> invalidArg "model" (sprintf "no description for %s models" lm.Family)

    // ---- sizes without tensors ---------------------------------------------------------------------------------

    let private glaHeads (g: GlaSpec) i =
        match g.LayerHeads with
        | Some l -> l.[i]
        | None -> g.Heads
    let private mambaState (s: Mamba2Spec) i =
        match s.LayerStates with
        | Some l -> l.[i]
        | None -> s.DState
    let private gsaSlots (a: GsaSpec) i =
        match a.LayerSlots with
        | Some l -> l.[i]
        | None -> a.Slots

    /// Recurrent state per sequence of each layer, in elements (the core's StateSize(), computed from the description).
    let layerStateSizes (m: Model) : int64 list =
        match (flatten m).Arch with
        | Gla g ->
            let c = glaConfig m
            let k, v = int64 c.KeyDim, int64 c.ValueDim
            [
                for i in 0 .. g.Layers - 1 do
                    let h = int64 (glaHeads g i)
                    let groups = h / int64 (defaultArg g.KvHeads (int h))
                    let recurrent = h * (k / h) * (v / h)
                    let conv =
                        match g.Conv with
                        | Some w -> (k + k / groups + v / groups) * int64 (w - 1)
                        | None -> 0L
                    recurrent + conv
            ]
        | Mamba2 s ->
            let heads = int64 (s.Expand * s.DModel / s.HeadDim)
            let inner = heads * int64 s.HeadDim
            [
                for i in 0 .. s.Layers - 1 do
                    let n = int64 (mambaState s i)
                    heads * int64 s.HeadDim * n + (inner + 2L * int64 s.Groups * n) * int64 (s.ConvKernel - 1)
            ]
        | Gsa a ->
            // GatedSlotAttention.StateElementsOf: Hk [H, dk, M] + Hv [H, M, dv], plus the q/k/v conv windows.
            let c = gsaConfig m
            let h, kv = int64 a.Heads, int64 (defaultArg a.KvHeads a.Heads)
            let dk, dv = int64 c.HeadKDim, int64 c.HeadVDim
            [
                for i in 0 .. a.Layers - 1 do
                    let conv =
                        match a.Conv with
                        | Some w -> (h * dk + kv * dk + kv * dv) * int64 (w - 1)
                        | None -> 0L
                    GatedSlotAttention.StateElementsOf(h, int64 (gsaSlots a i), dk, dv) + conv
            ]
        | Power w ->
            // H·C(d + p − 1, p)·(d + 1): the symmetric power state S and its normaliser Z.
            List.replicate w.Layers (int64 w.Heads * PowerAttention.StateElementsPerHead(int64 w.HeadDim, int64 w.HeadDim, w.Degree))

    /// Recurrent state per sequence of the whole model, in elements.
    let stateSize (m: Model) : int64 = layerStateSizes m |> List.sum

    /// Parameters of each layer (what the core counts under `layers.{i}.`).
    let layerParamCounts (m: Model) : int64 list =
        match (flatten m).Arch with
        | Gla g ->
            let c = glaConfig m
            let d, k, v, r = int64 g.Hidden, int64 c.KeyDim, int64 c.ValueDim, int64 g.GateLowRank
            let mlp = 3L * d * int64 c.MlpIntermediateSize
            [
                for i in 0 .. g.Layers - 1 do
                    let h = int64 (glaHeads g i)
                    let groups = h / int64 (defaultArg g.KvHeads (int h))
                    let kg, vg = k / groups, v / groups
                    let projections = d * k + d * kg + d * vg + (if g.OutputGate then d * v else 0L) + v * d
                    let conv =
                        match g.Conv with
                        | Some w -> (k + kg + vg) * int64 w + (if g.ConvBias then k + kg + vg else 0L)
                        | None -> 0L
                    let gate = d * r + r * kg + kg
                    let headNorm = if g.ElementwiseAffine then v / h else 0L
                    2L * d + projections + conv + gate + headNorm + mlp
            ]
        | Mamba2 s ->
            let d, p = int64 s.DModel, int64 s.HeadDim
            let heads = int64 (s.Expand * s.DModel / s.HeadDim)
            let inner = heads * p
            [
                for i in 0 .. s.Layers - 1 do
                    let n = int64 (mambaState s i)
                    let convDim = inner + 2L * int64 s.Groups * n
                    let inProj = d * (inner + convDim + heads) + (if s.Bias then inner + convDim + heads else 0L)
                    let conv = convDim * int64 s.ConvKernel + (if s.ConvBias then convDim else 0L)
                    let outProj = inner * d + (if s.Bias then d else 0L)
                    d + inProj + conv + 3L * heads + inner + outProj
            ]
        | Gsa a ->
            let c = gsaConfig m
            let d, k, v = int64 a.Hidden, int64 c.KeyDim, int64 c.ValueDim
            let kv = int64 (defaultArg a.KvHeads a.Heads)
            let dk, dv = int64 c.HeadKDim, int64 c.HeadVDim
            let mlp = 3L * d * int64 c.MlpIntermediateSize
            [
                for i in 0 .. a.Layers - 1 do
                    let kg, vg = kv * dk, kv * dv
                    let projections = d * k + d * kg + d * vg + d * kv * int64 (gsaSlots a i) + v * d
                    let conv =
                        match a.Conv with
                        | Some w -> (k + kg + vg) * int64 w
                        | None -> 0L
                    let t2r = if a.FeatureMap = "t2r" then dk * dk else 0L
                    let norm = if a.ElementwiseAffine then d else 0L
                    2L * d + projections + conv + t2r + norm + mlp
            ]
        | Power w ->
            let c = powerConfig m
            let d, width, h = int64 w.Hidden, int64 (w.Heads * w.HeadDim), int64 w.Heads
            let gate = if w.Gating then h * d + h else 0L
            List.replicate w.Layers (2L * d + 4L * d * width + gate + 3L * d * int64 c.MlpIntermediateSize)

    /// Parameters of the whole model (embeddings, layers, final norm, untied head).
    let paramCount (m: Model) : int64 =
        let vocab, width, tied =
            match m.Arch with
            | Gla g -> int64 g.Vocab, int64 g.Hidden, g.TieEmbeddings
            | Mamba2 s -> int64 s.Vocab, int64 s.DModel, s.TieEmbeddings
            | Gsa a -> int64 a.Vocab, int64 a.Hidden, a.TieEmbeddings
            | Power w -> int64 w.Vocab, int64 w.Hidden, w.TieEmbeddings
        vocab * width + List.sum (layerParamCounts m) + width + (if tied then 0L else vocab * width)

    // ---- building and expanding core models --------------------------------------------------------------------

    /// A core model with fresh random weights, shaped as the (flattened) description.
    let create (m: Model) : ICausalLanguageModel =
        NativeRuntime.EnsureInitialized() |> ignore
        match m.Arch with
        | Gla _ ->
            let c = glaConfig m
            ParameterBudget.Check("the model description", c.ParameterTerms())
            new GlaForCausalLM(c) :> ICausalLanguageModel
        | Mamba2 _ ->
            let c = mamba2Config m
            ParameterBudget.Check("the model description", c.ParameterTerms())
            new Mamba2ForCausalLM(c) :> ICausalLanguageModel
        | Gsa _ ->
            let c = gsaConfig m
            ParameterBudget.Check("the model description", c.ParameterTerms())
            new GsaForCausalLM(c) :> ICausalLanguageModel
        | Power _ ->
            let c = powerConfig m
            ParameterBudget.Check("the model description", c.ParameterTerms())
            new PowerForCausalLM(c) :> ICausalLanguageModel

    /// Applies the description's expansions, in order, to a core model shaped as the unexpanded description
    /// (a pretrained checkpoint); returns each step's result (the last one's Model is the expanded model).
    let expandModel (m: Model) (lm: ICausalLanguageModel) : ExpansionResult list =
        let expected = flatten (Expand.none m)
        let actual = ofModel lm
        if actual <> expected then
            invalidArg
                "model"
                (sprintf
                    "the model to expand is not the description's unexpanded model:\n  expected %s\n  got      %s"
                    (Hash.canonical expected)
                    (Hash.canonical actual))
        m.Expansions
        |> List.scan
            (fun (_: ExpansionResult option, current: ICausalLanguageModel) e ->
                let r = StateExpansion.Apply(current, request e)
                Some r, r.Model)
            (None, lm)
        |> List.choose fst

    /// One line: family, sizes, state and parameters, expansions.
    let summary (m: Model) : string =
        let arch =
            match m.Arch with
            | Gla g -> sprintf "GLA %d layers × %d wide, %d heads, vocab %d" g.Layers g.Hidden g.Heads g.Vocab
            | Mamba2 s ->
                sprintf "Mamba2 %d layers × %d wide, d_state %d, headdim %d, vocab %d" s.Layers s.DModel s.DState s.HeadDim s.Vocab
            | Gsa a -> sprintf "GSA %d layers × %d wide, %d heads, %d slots, vocab %d" a.Layers a.Hidden a.Heads a.Slots a.Vocab
            | Power w ->
                sprintf
                    "power attention p=%d, %d layers × %d wide, %d heads of %d, vocab %d"
                    w.Degree
                    w.Layers
                    w.Hidden
                    w.Heads
                    w.HeadDim
                    w.Vocab
        let rewrite r =
            match r with
            | MergeHeads i -> sprintf "merge-heads %s" (initName i)
            | MergeHeadsTo(h, i) -> sprintf "merge-heads:%d %s" h (initName i)
            | State(r, i) -> sprintf "state ×%d %s" r (initName i)
        let expansions =
            m.Expansions
            |> List.map (fun e -> sprintf "%O %s" (toSelection e.Where) (rewrite e.Rewrite))
            |> function
                | [] -> ""
                | xs -> "; expanded: " + String.Join(", ", xs)
        sprintf
            "%s%s; state %s elements/sequence, %s parameters"
            arch
            expansions
            ((stateSize m).ToString("N0", Globalization.CultureInfo.InvariantCulture))
            ((paramCount m).ToString("N0", Globalization.CultureInfo.InvariantCulture))
