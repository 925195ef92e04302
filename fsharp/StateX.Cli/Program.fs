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
    | Verbose
    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Verbose ->
                "on an error, print the full exception with its native (libtorch) detail, not only the one-line message (anywhere on the command line)."
            | Info _ -> "versions, libtorch folder, compatibility patch, CUDA devices; --selftest measures matmul TFLOP/s."
            | Check_Logits _ -> "run a checkpoint on the input_ids of an io.safetensors file and compare with its logits."
            | Expand _ ->
                "StateX: enlarge the recurrent state of chosen layers (merge GLA heads, widen Mamba2 d_state); prints the accounting."
            | Demo _ ->
                "the StateX study in miniature: pretrain GLA and Mamba2, post-train with LPT and StateX, evaluate, report (--preset cpu|gpu|smoke|paper)."
            | Train _ -> "post-train (recipes lpt, statex) or train from scratch; run folder with metrics, checkpoints, resumable."
            | Eval _ ->
                "evaluate a checkpoint: mqar, passkey, haystack, ruler, icl, qa, mc, loss-position, or --suite paper; results as a table, CSV or JSON Lines."
            | Generate _ -> "continue a prompt (greedy or sampled) and print the text."
            | Sweep _ -> "run a sweep file (docs/sweeps.md): pipelines keyed by hash, resumable store, results.csv and charts."

/// What a user sees for a failure: the innermost exception's message, and of a native (libtorch) error only its first
/// line: libtorch's messages carry some twenty native stack frames after it ("Exception raised from ... frame #0:
/// ..."), which say nothing to a user. StateX's own messages are kept whole (a few list several problems, a line each).
let errorLine (e: exn) =
    let rec root (e: exn) = if isNull e.InnerException then e else root e.InnerException
    let r = root e
    let message = r.Message.Trim()
    let native = r :? Runtime.InteropServices.ExternalException || message.Contains "Exception raised from" || message.Contains "frame #0"
    let first = message.Split('\n').[0].TrimEnd('\r')
    if native && first.Length < message.Length then sprintf "%s (--verbose prints the native detail)" first else message

[<EntryPoint>]
let main argv =
    let parser = ArgumentParser.Create<CliArgs>(programName = "statex")
    // Accepted anywhere, so that it can be added to the end of a command that just failed.
    let verbose = Array.contains "--verbose" argv || Environment.GetEnvironmentVariable "STATEX_DEBUG" = "1"
    let argv = argv |> Array.filter (fun a -> a <> "--verbose")
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
        | Verbose -> failwith "--verbose is not a command"
    with
    | :? ArguParseException as e ->
        eprintfn "%s" e.Message
        if e.ErrorCode = ErrorCode.HelpText then 0 else 2
    | e ->
        eprintfn "statex: error: %s" (errorLine e)
        if verbose then eprintfn "%O" e
        1
