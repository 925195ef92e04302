module StateX.Cli.Program

open System
open Argu
open StateX.Cli.Commands

[<RequireSubcommand>]
type CliArgs =
    | [<CliPrefix(CliPrefix.None)>] Info of ParseResults<Info.InfoArgs>
    | [<CliPrefix(CliPrefix.None)>] Check_Logits of ParseResults<CheckLogits.CheckLogitsArgs>
    | [<CliPrefix(CliPrefix.None)>] Expand of ParseResults<Expand.ExpandArgs>
    | [<CliPrefix(CliPrefix.None)>] Train of ParseResults<Train.TrainArgs>
    | [<CliPrefix(CliPrefix.None)>] Demo of ParseResults<Demo.DemoArgs>
    | [<CliPrefix(CliPrefix.None)>] Eval of ParseResults<Eval.EvalArgs>
    | [<CliPrefix(CliPrefix.None)>] Generate of ParseResults<Generate.GenerateArgs>
    | [<CliPrefix(CliPrefix.None)>] Sweep of ParseResults<Sweep.SweepArgs>
    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Info _ -> "versions, libtorch folder, compatibility patch, CUDA devices; --selftest measures matmul TFLOP/s."
            | Check_Logits _ -> "run a checkpoint on the input_ids of an io.safetensors file and compare with its logits."
            | Expand _ -> "StateX: enlarge the recurrent state of chosen layers (merge GLA heads, widen Mamba2 d_state); prints the accounting."
            | Demo _ -> "the StateX study in miniature: pretrain GLA and Mamba2, post-train with LPT and StateX, evaluate, report (--preset cpu|gpu|smoke|paper)."
            | Train _ -> "post-train (recipes lpt, statex) or train from scratch; run folder with metrics, checkpoints, resumable."
            | Eval _ -> "evaluate a checkpoint: mqar, passkey, haystack, ruler, icl, qa, mc, loss-position, or --suite paper; results as a table, CSV or JSON Lines."
            | Generate _ -> "continue a prompt (greedy or sampled) and print the text."
            | Sweep _ -> "run a sweep file (docs/sweeps.md): pipelines keyed by hash, resumable store, results.csv and charts."

[<EntryPoint>]
let main argv =
    let parser = ArgumentParser.Create<CliArgs>(programName = "statex")
    try
        let results = parser.ParseCommandLine(argv, raiseOnUsage = true)
        match results.GetSubCommand() with
        | Info a -> Info.run a
        | Check_Logits a -> CheckLogits.run a
        | Expand a -> Expand.run a
        | Train a -> Train.run a
        | Demo a -> Demo.run a
        | Eval a -> Eval.run a
        | Generate a -> Generate.run a
        | Sweep a -> Sweep.run a
    with
    | :? ArguParseException as e ->
        eprintfn "%s" e.Message
        if e.ErrorCode = ErrorCode.HelpText then 0 else 2
    | e ->
        let rec root (e: exn) = if isNull e.InnerException then e else root e.InnerException
        let r = root e
        eprintfn "statex: error: %s" r.Message
        if Environment.GetEnvironmentVariable "STATEX_DEBUG" = "1" then eprintfn "%O" e
        1
