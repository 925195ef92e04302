module StateX.Cli.Commands.Train

open System
open System.IO
open Argu
open StateX
open StateX.Models
open StateX.Expansion
open StateX.Training

type TrainArgs =
    | Model of dir: string
    | Config of file: string
    | Data of spec: string
    | Tokenizer of source: string
    | Recipe of name: string
    | Expand_Layers of spec: string
    | Expand_Rewrite of spec: string
    | Expand_Init of mode: string
    | Expand_Preset of name: string
    | Freeze_Unexpanded
    | Steps of int
    | Seq_Len of int
    | Batch of int
    | Grad_Accum of int
    | Lr of float
    | Schedule of string
    | Warmup of int
    | Weight_Decay of float
    | Clip of float
    | Seed of uint64
    | Device of string
    | Precision of string
    | Activation_Checkpointing
    | Checkpoint_Segment of tokens: int
    | Checkpoint_Every of int
    | Keep_Last of int
    | Whole_Documents
    | Out of dir: string
    | Resume
    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> "checkpoint folder to start from (fla GLA or GSA, transformers or mamba_ssm Mamba2, or a StateX run's model/)."
            | Config _ -> "a config.json instead of --model: train from random weights (e.g. data/configs/*.json)."
            | Data _ -> "data spec (see data/README.md), e.g. synth:mqar?pairs=16&seq_len=256 or mix:0.5*text:corpus/*.txt,0.5*synth:mqar."
            | Tokenizer _ ->
                "byte, or a folder with tokenizer.json / tokenizer.model (default: the model folder's tokenizer if it has one, else byte)."
            | Recipe _ -> "lpt (train the model as is) | statex (expand, then train); default lpt."
            | Expand_Layers _ ->
                "statex: layers to expand: all | every:K | list:I,J | fraction:F | first:N | last:N (default: the paper's every:6)."
            | Expand_Rewrite _ ->
                "statex: merge-heads[:H] (GLA) | state:xR (Mamba2 d_state, GSA slots) (default: the paper's; GSA: every:6 state:x4 reinit)."
            | Expand_Init _ -> "statex: inherit | reinit | copy | zero | preserve (default reinit)."
            | Expand_Preset _ ->
                sprintf
                    "statex: a named expansion preset (%s) instead of --expand-*."
                    (ExpansionPresets.All |> Seq.map (fun p -> p.Name) |> String.concat ", ")
            | Freeze_Unexpanded -> "statex: train only the expanded layers."
            | Steps _ -> "optimiser steps (default 100)."
            | Seq_Len _ -> "tokens per sequence (default 2048)."
            | Batch _ -> "sequences per micro-batch (default 8)."
            | Grad_Accum _ -> "micro-batches per step (default 1)."
            | Lr _ -> "peak learning rate (default 3e-4)."
            | Schedule _ -> "cosine | wsd[:F] | constant (default cosine, to 10% of the peak)."
            | Warmup _ -> "warm-up steps (default 5% of the steps)."
            | Weight_Decay _ ->
                "AdamW weight decay on every tensor of ≥2 dims, embeddings and conv weights included (default 0.1, as the official StateX code); none on the rest (norms, biases, A_log, D, dt_bias)."
            | Clip _ -> "global gradient-norm clip (default 1.0; 0 = off)."
            | Seed _ -> "seed of the initialisation and data order (default 0)."
            | Device _ -> "auto | cpu | cuda | cuda:N (default auto)."
            | Precision _ -> "auto | fp32 | bf16 (default auto: bf16 with fp32 master weights on CUDA, fp32 on CPU)."
            | Activation_Checkpointing -> "recompute blocks in the backward pass (long contexts)."
            | Checkpoint_Segment _ ->
                "with --activation-checkpointing: recompute each block over this many tokens at a time, carrying its state (bounds memory at very long contexts; default: the whole sequence)."
            | Checkpoint_Every _ -> "steps between checkpoints (default: 10 per run)."
            | Keep_Last _ -> "checkpoints kept (default 2)."
            | Out _ -> "run folder (config, metrics.jsonl, log.txt, checkpoints/, model/); required."
            | Whole_Documents -> "never cut a document that fits in a sequence; start it in the next one (MQAR, passkey data)."
            | Resume -> "continue the run in --out from its newest intact checkpoint."

/// A one-line progress display: rewritten in place on a terminal, a line every few seconds otherwise.
let progressPrinter () =
    let interactive = not Console.IsErrorRedirected
    let mutable lastPrint = DateTime.MinValue
    let fmtSpan (t: TimeSpan) = if t.TotalHours >= 1.0 then t.ToString(@"h\:mm\:ss") else t.ToString(@"m\:ss")
    fun (p: TrainProgress) ->
        let now = DateTime.UtcNow
        let last = p.Step = p.TotalSteps
        if interactive || last || (now - lastPrint).TotalSeconds >= 5.0 || p.Step = 1 then
            lastPrint <- now
            let eta =
                match Option.ofNullable p.Eta with
                | Some e -> fmtSpan e
                | None -> "?"
            let mem = if p.MemoryBytes > 0L then sprintf "  mem %.0f MiB" (float p.MemoryBytes / 1048576.0) else ""
            let line =
                sprintf
                    "step %d/%d  loss %.4f  lr %s  |g| %.3f  %.0f tok/s  elapsed %s  eta %s%s"
                    p.Step
                    p.TotalSteps
                    p.Loss
                    (p.LearningRate.ToString("0.00e+0", Globalization.CultureInfo.InvariantCulture))
                    p.GradNorm
                    p.TokensPerSecond
                    (fmtSpan p.Elapsed)
                    eta
                    mem
            if interactive then
                eprintf "\r%s\x1b[K" line
                if last then eprintfn ""
            else
                eprintfn "%s" line

let defaultTokenizer (modelDir: string option) =
    match modelDir with
    | Some dir when File.Exists(Path.Combine(dir, "tokenizer.json")) || File.Exists(Path.Combine(dir, "tokenizer.model")) -> dir
    | _ -> "byte"

let expansionRequest (args: ParseResults<TrainArgs>) (seed: uint64) : ExpansionRequest option =
    let anyExplicit = args.Contains Expand_Layers || args.Contains Expand_Rewrite || args.Contains Expand_Init
    match args.TryGetResult Expand_Preset with
    | Some _ when anyExplicit ->
        raise (ArgumentException "give either --expand-preset or --expand-layers/--expand-rewrite/--expand-init, not both")
    | Some name -> Some((ExpansionPresets.Get name).ToRequest(int64 seed))
    | None when anyExplicit ->
        let need what =
            function
            | Some v -> v
            | None -> raise (ArgumentException(sprintf "--expand-%s is required with the other --expand-* options" what))
        Some(
            ExpansionRequest(
                LayerSelection.Parse(need "layers" (args.TryGetResult Expand_Layers)),
                Rewrite.Parse(need "rewrite" (args.TryGetResult Expand_Rewrite)),
                ExpansionRequest.ParseInit(args.GetResult(Expand_Init, "reinit")),
                int64 seed
            )
        )
    | None -> None

/// What the run computes, from the options (the rest of TrainSpec's defaults are the core's).
let specOf (args: ParseResults<TrainArgs>) (data: string) (tokenizer: string) : TrainSpec =
    let d = TrainSpec.on data
    {
        d with
            Tokenizer = tokenizer
            Steps = args.GetResult(Steps, d.Steps)
            SeqLen = args.GetResult(Seq_Len, d.SeqLen)
            BatchSize = args.GetResult(Batch, d.BatchSize)
            GradAccum = args.GetResult(Grad_Accum, d.GradAccum)
            LearningRate = args.GetResult(Lr, d.LearningRate)
            Schedule = args.GetResult(Schedule, d.Schedule)
            Warmup = args.TryGetResult Warmup
            WeightDecay = args.GetResult(Weight_Decay, d.WeightDecay)
            ClipNorm = args.GetResult(Clip, d.ClipNorm)
            Seed = int64 (args.GetResult(Seed, uint64 d.Seed))
            Precision = args.GetResult(Precision, d.Precision)
            ActivationCheckpointing = args.Contains Activation_Checkpointing
            CheckpointSegment = args.TryGetResult Checkpoint_Segment
            WholeDocuments = args.Contains Whole_Documents
    }

/// How the run is carried out (not hashed into anything): device, checkpoint interval, checkpoints kept.
let settingsOf (args: ParseResults<TrainArgs>) : RunSettings = {
    RunSettings.quiet with
        Device = args.GetResult(Device, RunSettings.defaults.Device)
        CheckpointEvery = args.TryGetResult Checkpoint_Every
        KeepLast = args.GetResult(Keep_Last, RunSettings.defaults.KeepLast)
}

let run (args: ParseResults<TrainArgs>) =
    let out =
        match args.TryGetResult Out with
        | Some o -> o
        | None -> raise (ArgumentException "--out DIR is required: the run folder")
    let data =
        match args.TryGetResult Data with
        | Some d -> d
        | None -> raise (ArgumentException "--data SPEC is required (see data/README.md)")
    let modelDir, configFile =
        match args.TryGetResult Model, args.TryGetResult Config with
        | Some dir, None -> Some dir, None
        | None, Some file -> None, Some file
        | None, None when args.Contains Resume -> None, None
        | _ -> raise (ArgumentException "give exactly one of --model DIR or --config FILE")
    let recipe = args.GetResult(Recipe, "lpt")
    let tokenizer = args.GetResult(Tokenizer, defaultTokenizer modelDir)
    let options = TrainSpec.optionsWith (settingsOf args) (specOf args data tokenizer)
    let expansion = expansionRequest args options.Seed
    if recipe = "lpt" && expansion.IsSome then raise (ArgumentException "--expand-* options belong to --recipe statex")
    let describe = Text.Json.Nodes.JsonObject()
    let create () =
        let model =
            match modelDir, configFile with
            | Some dir, _ -> Checkpoint.Load dir
            | _, Some file -> Checkpoint.FromConfig file
            | _ -> raise (ArgumentException(sprintf "%s holds no checkpoint to resume; give --model or --config to start it" out))
        let p = TrainRecipes.Prepare(recipe, model, Option.toObj expansion, args.Contains Freeze_Unexpanded)
        // The trainer writes the run's config after creating the model, so what the recipe did is recorded too.
        for kv in p.Describe |> Seq.toArray do
            describe[kv.Key] <- kv.Value.DeepClone()
        p.Model
    describe["model"] <- Text.Json.Nodes.JsonValue.Create(defaultArg modelDir (defaultArg configFile ""))
    let job = TrainJob(Func<_>(create), data, tokenizer, options, out, args.Contains Resume, recipe, Describe = describe)
    let hooks = TrainHooks(Progress = Action<_>(progressPrinter ()), Log = Action<string>(fun l -> eprintfn "%s" l))
    let summary =
        try
            Trainer.Run(job, hooks)
        with :? ExistingRunException as e ->
            raise (ArgumentException(sprintf "%s already holds a run; add --resume to continue it, or choose another --out" e.RunDirectory))
    printfn "run     %s" summary.RunDirectory
    printfn "model   %s" summary.ModelDirectory
    printfn
        "steps   %d (%s)"
        summary.Steps
        (match Option.ofNullable summary.ResumedFrom with
         | Some s -> sprintf "resumed from step %d" s
         | None -> "fresh start")
    printfn "loss    %.4f" summary.FinalLoss
    printfn "speed   %.0f tokens/s, %d tokens, %s" summary.TokensPerSecond summary.Tokens (summary.Elapsed.ToString(@"h\:mm\:ss"))
    printfn "memory  %.0f MiB peak" (float summary.PeakMemoryBytes / 1048576.0)
    0
