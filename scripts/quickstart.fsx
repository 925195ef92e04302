// Quick start: describe a model, expand it (StateX), train briefly, evaluate recall, chart it — next to the LPT arm
// (the same model post-trained without expansion). A couple of minutes on a CPU at the default sizes.
//
//     dotnet fsi scripts/quickstart.fsx [steps=60] [device=cpu] [out=runs/quickstart]
//
#load "build-check.fsx"
#load "prelude.fsx"
open System.IO
open Prelude
open StateX

// ---- sizes (or pass key=value arguments) ----
let steps = arg "steps" 150 // pretraining steps; post-training takes half (recall needs thousands)
let pairs = arg "pairs" 4 // MQAR key-value pairs in training sequences
let seqLen = arg "seq_len" 64
let out = outDir "quickstart"

// 1. Describe: a tiny GLA (2 layers × 64 wide, 4 heads, byte vocabulary), then its StateX expansion:
//    merge the heads of every layer into one, so each layer's state grows 4×.
let model = Model.gla { GlaSpec.tiny with Heads = 4 }
let expanded = model |> Expand.all (MergeHeads Reinit)
printfn "model:    %s" (Model.summary model)
printfn "expanded: %s" (Model.summary expanded)

// 2. Train briefly on multi-query associative recall, then evaluate recall at a few difficulties.
let data = sprintf "synth:mqar:pairs=%d:len=%d:vocab=259" pairs seqLen
let pretrain = TrainSpec.on data |> TrainSpec.steps steps |> TrainSpec.seqLen seqLen |> TrainSpec.batch 8 |> TrainSpec.lr 3e-3
let posttrain = pretrain |> TrainSpec.steps (max 1 (steps / 2))
let evals = EvalSpec.tasks [ Mqar([ 2; pairs; 2 * pairs ], seqLen, 32, None) ]

// 3. The two arms share the pretraining stage (same folder, run once).
let statex = Pipeline.statex "statex" expanded pretrain posttrain evals
let lpt = Pipeline.lpt "lpt" model pretrain posttrain evals
printfn "%s" (Pipeline.describe out statex)
let runs = [ statex; lpt ] |> List.map (Pipeline.run settings out)
let results = runs |> List.collect (fun r -> r.Results)

// 4. Results as a frame, summarised and charted.
let frame = Analysis.ofResults results |> Analysis.withStateSizes [ "statex", Model.stateSize expanded; "lpt", Model.stateSize model ]
let summary = Analysis.summarize [ "model"; "state_size"; "pairs" ] "value" frame
Analysis.print summary
let chart =
    Charts.lines "pairs" "MQAR recall: StateX vs LPT" "accuracy" false (summary |> Analysis.select [ "model"; "pairs"; "mean"; "std"; "n" ])
printfn "wrote %s" (Analysis.save (Path.Combine(out, "mqar.csv")) summary)
printfn "wrote %s" (Charts.save (Path.Combine(out, "mqar.html")) chart)

// 5. Post-training loss of both arms, from the trainer's metrics.jsonl in each post-training stage folder.
let curves =
    Analysis.readRuns [
        for r in runs do
            for s in r.Stages do
                if s.Stage = "posttrain" then yield r.Pipeline.Name, Path.Combine(s.Folder, "metrics.jsonl")
    ]
    |> Analysis.trainingCurves [ "run" ] "loss"
printfn "wrote %s" (Charts.save (Path.Combine(out, "post-training.html")) (Charts.trainingCurves "loss" curves))
