// Recall against state size across the recurrent families: tiny GLA, Mamba2, GSA and power-attention models at about the same
// parameter count, each at three state sizes set by its own knob, trained from scratch on MQAR and evaluated on
// MQAR; one line per family on the chart. The knobs (README, "Families and their state"):
//   GLA     heads H (state K·V/H per layer; parameters do not change)
//   Mamba2  d_state N (state H·P·N; 2·N·d_model parameters per layer)
//   GSA     slots M (state H·M·(dk + dv); H_kv·M·hidden parameters per layer)
//   power   degree p and head width d at fixed H·d (state H·C(d + p − 1, p)·(d + 1); parameters do not change)
// Each run is keyed by the hash of its pipeline; re-running skips finished runs.
// Measured on 2 idle cores (2026-12-02): the defaults take 1 min 30 s and leave every model near chance on MQAR
// (≤ 4%): they show the mechanics. steps=600 took 2 min for GLA and GSA: GSA 17% at 4 pairs, GLA still at chance,
// neither yet ordered by state size; a regime where recall tracks state needs more steps (the study presets use 1800+).
//
//     dotnet fsi scripts/state-size-families.fsx [steps=150] [seeds=1] [pairs=4] [seq_len=64] [device=cpu] [out=runs/state-size-families]
//
#load "build-check.fsx"
#load "prelude.fsx"
open System.IO
open Prelude
open StateX

// ---- sizes (or pass key=value arguments) ----
let families = (arg "families" "gla,mamba2,gsa,power").Split ',' |> List.ofArray
let seeds = [ 0L .. int64 (arg "seeds" 1) - 1L ]
let steps = arg "steps" 150
let seqLen = arg "seq_len" 64
let pairs = arg "pairs" 4
let width = 64
let out = outDir "state-size-families"

// Init range 1/√width, as the study presets use: fla's 0.02 suits width 2048 and leaves MQAR on a plateau at 64.
// GLA and GSA get a 64-wide MLP so that the three families have about the same parameters (Mamba2 has no MLP).
let initRange = 1.0 / sqrt (float width)
let gla heads = Model.gla { GlaSpec.tiny with Hidden = width; Heads = heads; ExpandK = 0.25; Intermediate = Some 64; InitRange = initRange }
let mamba2 dState =
    Model.mamba2 { Mamba2Spec.tiny with DModel = width; DState = dState; HeadDim = 16; ChunkSize = 16; InitRange = initRange }
let gsa slots =
    Model.gsa { GsaSpec.tiny with Hidden = width; Heads = 2; ExpandK = 0.25; Slots = slots; Intermediate = Some 64; InitRange = initRange }
let power degree heads headDim =
    Model.power {
        PowerSpec.tiny with
            Hidden = width
            Degree = degree
            Heads = heads
            HeadDim = headDim
            Intermediate = Some 64
            ChunkSize = 16
            InitRange = initRange
    }
let sizes =
    Map [
        "power", [ power 2 4 8; power 2 2 16; power 4 4 8 ]
        "gla", [ gla 4; gla 2; gla 1 ]
        "mamba2", [ mamba2 4; mamba2 8; mamba2 16 ]
        "gsa", [ gsa 4; gsa 8; gsa 16 ]
    ]
for f in families do
    if not (sizes.ContainsKey f) then failwithf "families=%s: unknown family '%s' (known: gla, mamba2, gsa, power)" (arg "families" "") f
    for m in sizes.[f] do
        printfn "%-7s %s" f (Model.summary m)

let train =
    // loss=queries: the loss only on the answers, which is what makes MQAR learnable in a few hundred steps.
    TrainSpec.on (sprintf "synth:mqar:pairs=%d:len=%d:vocab=259:loss=queries" pairs seqLen)
    |> TrainSpec.steps steps
    |> TrainSpec.seqLen seqLen
    |> TrainSpec.batch 8
    |> TrainSpec.lr 3e-3
let evals = EvalSpec.tasks [ Mqar([ pairs; 2 * pairs ], seqLen, 32, None) ]

let baseline = Pipeline.create "families" (gla 4) |> Pipeline.pretrain train |> Pipeline.evaluate evals
// The size axis reads the family the family axis set (the grid applies the axes in order).
let sweep =
    Sweep.grid
        [
            Axis.values "family" families (fun f p -> p |> Pipeline.mapModel (fun _ -> sizes.[f].[0]))
            Axis.values "size" [ 1; 2; 3 ] (fun i p -> p |> Pipeline.mapModel (fun m -> sizes.[Model.family m].[i - 1]))
            Axis.values "seed" seeds (fun s p -> p |> Pipeline.mapTraining (TrainSpec.seed s))
        ]
        baseline
printfn "%d runs" (Sweep.count sweep)
Sweep.runWith { Sweep.options out with Log = settings.Log } (Pipeline.runner settings (Path.Combine(out, "stages"))) sweep |> ignore

// Every run's results with the state size and parameters it recorded; mean ± std over seeds per family and size.
let results =
    Analysis.join
        [ "hash" ]
        (Analysis.sweepFiles out "eval.jsonl")
        (Analysis.ofStore out |> Analysis.select [ "hash"; "state_size"; "params" ])
let summary = Analysis.recallVsStateSize [ "family"; "pairs" ] results
Analysis.print summary
printfn "wrote %s" (Analysis.save (Path.Combine(out, "recall-vs-state-size.csv")) summary)
printfn
    "wrote %s"
    (Charts.save
        (Path.Combine(out, "recall-vs-state-size.html"))
        (Charts.recallVsStateSize (summary |> Analysis.select [ "family"; "pairs"; "state_size"; "mean"; "std"; "n" ])))
