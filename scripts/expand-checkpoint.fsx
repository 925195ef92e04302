// Loads a checkpoint folder, applies a StateX expansion preset, saves the expanded checkpoint and prints the
// accounting (state and parameters per layer). Without model=DIR it makes a tiny random GLA checkpoint first.
//
//     dotnet fsi scripts/expand-checkpoint.fsx [model=DIR] [preset=gla-1.3b|mamba2-1.3b] [out=runs/expand-checkpoint]
//
#load "build-check.fsx"
#load "prelude.fsx"
open System.IO
open Prelude
open StateX
open StateX.Models

let out = outDir "expand-checkpoint"
let source =
    match arg "model" "" with
    | "" ->
        let dir = Path.Combine(out, "source")
        (Model.create (Model.gla { GlaSpec.tiny with Layers = 6; Heads = 4 })).Save dir
        dir
    | dir -> dir
let described = Model.ofCheckpoint source
let preset =
    match arg "preset" "" with
    | "" ->
        match described.Arch with
        | Gla _ -> "gla-1.3b"
        | Mamba2 _ -> "mamba2-1.3b"
        | Gsa _ ->
            failwith "no StateX paper preset exists for GSA models: use statex expand --layers ... --rewrite state:xR --init reinit|copy"
        | Power _ -> failwith "power attention has no state expansion: its state is set by the degree p"
    | p -> p
let target = described |> Expand.preset preset
printfn "source:   %s\n          %s" source (Model.summary described)
printfn "preset:   %s\nexpanded: %s" preset (Model.summary target)

let steps = Model.expandModel target (Checkpoint.Load source)
let expandedDir = Path.Combine(out, "expanded")
(List.last steps).Model.Save expandedDir
for r in steps do
    printf "%s" (r.Account.Format())
// What was saved is what the description says.
if Model.ofCheckpoint expandedDir <> Model.flatten target then failwith "the saved checkpoint does not match the expanded description"
printfn "saved to %s (state %d → %d elements per sequence)" expandedDir (Model.stateSize described) (Model.stateSize target)
