// Recall vs state size: a GLA model pretrained once per seed, then post-trained with its heads merged into fewer,
// larger heads (expansion ratio r: H heads → H/r, state ×r; r = 1 is the LPT arm), MQAR recall evaluated.
// Each run is keyed by the hash of its full pipeline; re-running skips finished runs and shared stages.
//
//     dotnet fsi scripts/state-size-sweep.fsx [ratios=1,2,4,8] [seeds=2] [steps=40] [device=cpu] [out=runs/state-size-sweep]
//
#load "build-check.fsx"
#load "prelude.fsx"
open System.IO
open Prelude
open StateX

// ---- sizes (or pass key=value arguments) ----
let heads = arg "heads" 8 // heads of the base model
let ratios = (arg "ratios" "1,2,4,8").Split ',' |> Array.map int |> List.ofArray
let seeds = [ 0L .. int64 (arg "seeds" 2) - 1L ]
let every = arg "every" 1 // expand layers 0, k, 2k, ...
let steps = arg "steps" 40
let seqLen = arg "seq_len" 64
let pairs = arg "pairs" 4
let out = outDir "state-size-sweep"

let baseModel = Model.gla { GlaSpec.tiny with Heads = heads }
let pretrain =
    TrainSpec.on (sprintf "synth:mqar:pairs=%d:len=%d:vocab=259" pairs seqLen)
    |> TrainSpec.steps steps
    |> TrainSpec.seqLen seqLen
    |> TrainSpec.batch 8
    |> TrainSpec.lr 3e-3
let posttrain = pretrain |> TrainSpec.steps (max 1 (steps / 2))
let evals = EvalSpec.tasks [ Mqar([ pairs; 2 * pairs ], seqLen, 32, None) ]

let withRatio r (p: Pipeline) =
    p |> Pipeline.mapModel (fun m -> if r = 1 then Expand.none m else Expand.none m |> Expand.every every (MergeHeadsTo(heads / r, Reinit)))
let withSeed s (p: Pipeline) = p |> Pipeline.mapTraining (TrainSpec.seed s)

let sweep =
    Sweep.grid
        [ Axis.values "ratio" ratios withRatio; Axis.values "seed" seeds withSeed ]
        (Pipeline.statex "statex" baseModel pretrain posttrain evals)
printfn
    "%d runs (%s)"
    (Sweep.count sweep)
    (String.concat ", " [ for r in sweep.Runs -> sprintf "%s %s" (r.Labels |> List.map snd |> String.concat "/") r.Hash ])
Sweep.runWith { Sweep.options out with Log = settings.Log } (Pipeline.runner settings (Path.Combine(out, "stages"))) sweep |> ignore

// Results of every run, with the state size each run recorded; mean ± std over seeds per ratio.
let results =
    Analysis.join [ "hash" ] (Analysis.sweepFiles out "eval.jsonl") (Analysis.ofStore out |> Analysis.select [ "hash"; "state_size" ])
let summary = Analysis.recallVsStateSize [ "ratio"; "pairs" ] results
Analysis.print summary
printfn "wrote %s" (Analysis.save (Path.Combine(out, "recall-vs-state-size.csv")) summary)
printfn
    "wrote %s"
    (Charts.save
        (Path.Combine(out, "recall-vs-state-size.html"))
        (Charts.recallVsStateSize (summary |> Analysis.select [ "pairs"; "state_size"; "mean"; "std"; "n" ])))
