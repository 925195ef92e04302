module StateX.Cli.Commands.Expand

open System
open Argu
open StateX
open StateX.Models
open StateX.Expansion

type ExpandArgs =
    | Model of dir: string
    | Config of file: string
    | Out of dir: string
    | Layers of spec: string
    | Rewrite of spec: string
    | Init of mode: string
    | Preset of name: string
    | Seed of int64
    | Freeze_Unexpanded
    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> "checkpoint folder to expand (fla GLA or GSA, transformers or mamba_ssm Mamba2)."
            | Config _ -> "a config.json instead of --model: random weights, for sizing (e.g. data/configs/gla-1.3b.json)."
            | Out _ -> "folder to write the expanded checkpoint to (omit to only print the accounting)."
            | Layers _ -> "all | every:K | list:I,J,.. | fraction:F | first:N | last:N."
            | Rewrite _ -> "merge-heads[:H] (GLA) | state:xR (Mamba2: d_state ×R; GSA: slots ×R)."
            | Init _ ->
                "inherit | reinit (GLA); reinit | copy | zero | preserve (Mamba2); reinit (fresh slots) | copy (tiled, function-preserving) (GSA)."
            | Preset _ ->
                sprintf
                    "a paper recipe instead of --layers/--rewrite/--init: %s."
                    (ExpansionPresets.All |> Seq.map (fun p -> p.Name) |> String.concat ", ")
            | Seed _ -> "seed for re-initialised parameters (default 0)."
            | Freeze_Unexpanded -> "list only the expanded layers' parameters as trainable."

let run (args: ParseResults<ExpandArgs>) =
    let model =
        match args.TryGetResult Model, args.TryGetResult Config with
        | Some dir, None -> Checkpoint.Load dir
        | None, Some file -> Checkpoint.FromConfig file
        | _ -> raise (ArgumentException "give exactly one of --model DIR or --config FILE")
    let request =
        match args.TryGetResult Preset with
        | Some name ->
            let p = ExpansionPresets.Get name
            if p.Family <> model.Family then
                raise (ArgumentException(sprintf "preset %s is for %s models; this is a %s model" p.Name p.Family model.Family))
            printfn "preset %s: %s" p.Name p.Source
            p.ToRequest(args.GetResult(Seed, 0L), args.Contains Freeze_Unexpanded)
        | None ->
            let need (what: string) =
                function
                | Some v -> v
                | None -> raise (ArgumentException(sprintf "--%s is required (or use --preset)" what))
            ExpansionRequest(
                LayerSelection.Parse(need "layers" (args.TryGetResult Layers)),
                Rewrite.Parse(need "rewrite" (args.TryGetResult Rewrite)),
                ExpansionRequest.ParseInit(need "init" (args.TryGetResult Init)),
                args.GetResult(Seed, 0L),
                FreezeOthers = args.Contains Freeze_Unexpanded
            )
    let result = StateExpansion.Apply(model, request)
    printfn
        "%s: %s on layers %s (%s), init %s, seed %d"
        model.Family
        (string request.Rewrite)
        (string request.Layers)
        (String.Join(",", result.ExpandedLayers))
        (string request.Init |> fun s -> s.ToLowerInvariant())
        request.Seed
    printf "%s" (result.Account.Format())
    printfn "trainable parameter tensors: %d" result.TrainableParameters.Count
    match args.TryGetResult Out with
    | Some dir ->
        result.Model.Save dir
        printfn "saved to %s" dir
    | None -> ()
    0
