// Passkey retrieval accuracy over context length × needle depth, as a heatmap. Evaluates a checkpoint folder
// (model=DIR), or trains a tiny GLA on passkey prompts first.
//
//     dotnet fsi scripts/passkey-heatmap.fsx [model=DIR] [lengths=320,448,576] [depths=0,0.25,0.5,0.75,1] [trials=4] [steps=30]
//
#load "build-check.fsx"
#load "prelude.fsx"
open System.IO
open Prelude
open StateX

// ---- sizes (or pass key=value arguments) ----
let modelDir = arg "model" ""
let lengths = (arg "lengths" "320,448,576").Split ',' |> Array.map int |> List.ofArray
let depths = (arg "depths" "0,0.25,0.5,0.75,1").Split ',' |> Array.map (fun d -> float d) |> List.ofArray
let trials = arg "trials" 4
let steps = arg "steps" 30
let out = outDir "passkey-heatmap"

let tokenizer =
    if
        modelDir <> "" && (File.Exists(Path.Combine(modelDir, "tokenizer.json")) || File.Exists(Path.Combine(modelDir, "tokenizer.model")))
    then
        modelDir
    else
        "byte"
let evals = { EvalSpec.tasks [ Passkey(lengths, depths, trials, "default") ] with Tokenizer = tokenizer }
let pipeline =
    if modelDir <> "" then
        Pipeline.create (Path.GetFileName(Path.GetFullPath modelDir)) (Model.ofCheckpoint modelDir)
        |> Pipeline.startFrom modelDir
        |> Pipeline.evaluate evals
    else
        let len = List.max lengths
        Pipeline.create "gla-tiny" (Model.gla GlaSpec.tiny)
        |> Pipeline.pretrain (
            TrainSpec.on (sprintf "synth:passkey:len=%d" (List.min lengths))
            |> TrainSpec.steps steps
            |> TrainSpec.seqLen len
            |> TrainSpec.batch 4
            |> TrainSpec.lr 3e-3
        )
        |> Pipeline.evaluate evals
printfn "%s" (Pipeline.describe out pipeline)
let result = Pipeline.run settings out pipeline

let grid = Analysis.ofResults result.Results |> Analysis.passkeyGrid
Analysis.print grid
printfn "wrote %s" (Analysis.save (Path.Combine(out, "passkey.csv")) grid)
printfn
    "wrote %s"
    (Charts.save (Path.Combine(out, "passkey.html")) (Charts.passkeyHeatmap (sprintf "Passkey accuracy: %s" pipeline.Name) grid))
