module StateX.Cli.Commands.Generate

open System
open System.Diagnostics
open Argu
open StateX
open StateX.Evaluation
open StateX.Cli.Commands.Loading

type GenerateArgs =
    | [<Mandatory>] Model of dir: string
    | [<Mandatory>] Prompt of text: string
    | Max_New of tokens: int
    | Temperature of float
    | Top_K of int
    | Top_P of float
    | Seed of int64
    | Device of string
    | Dtype of string
    | Allow_Non_Finite
    | Tokenizer of string
    | Segment of tokens: int
    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> "checkpoint folder (config.json + model.safetensors) of any family StateX reads."
            | Prompt _ -> "the text to continue (encoded with the tokenizer's template, e.g. a leading BOS)."
            | Max_New _ -> "at most this many new tokens (default 64); generation also stops at EOS."
            | Temperature _ -> "0 = greedy (default); otherwise sample at this temperature."
            | Top_K _ -> "sample among the K most likely tokens only (0 = off, default)."
            | Top_P _ -> "sample from the smallest set of tokens holding this much probability (1 = off, default)."
            | Seed _ -> "seed of the sampler (default 0): the same seed gives the same text."
            | Device _ -> "auto (default), cpu, cuda, cuda:N."
            | Dtype _ -> "auto (as stored, default), fp32, bf16, fp16."
            | Allow_Non_Finite ->
                "load weights holding NaN or Inf anyway (with a warning), to debug a diverged checkpoint; evaluation and generation still refuse NaN scores."
            | Tokenizer _ -> "a tokenizer folder or \"byte\" (default: the model folder's tokenizer, else byte)."
            | Segment _ -> "prefill the prompt in chunks of this many tokens (default 2048)."

/// Prints the continuation of the prompt on stdout, and the speed on stderr.
let run (args: ParseResults<GenerateArgs>) =
    let seed =
        match args.GetResult(Seed, 0L) with
        | s when s < 0L -> bad "seed" "must be ≥ 0 (got %d)" s
        | s -> uint64 s
    let sampling = SamplingOptions(args.GetResult(Temperature, 0.0), args.GetResult(Top_K, 0), args.GetResult(Top_P, 1.0), seed)
    try
        sampling.Validate()
    with :? ArgumentException as e ->
        raise (ArgumentException(sprintf "--temperature/--top-k/--top-p: %s" e.Message))
    let maxNew = args.GetResult(Max_New, 64)
    if maxNew < 0 then bad "max-new" "must be ≥ 0 (got %d)" maxNew
    let segment = positive "segment" (args.GetResult(Segment, 2048))
    let dtype = parseDtype (args.TryGetResult Dtype)
    let device = parseDevice (args.GetResult(Device, "auto"))
    let dir = args.GetResult Model
    let model = loadModel dir device dtype (args.Contains Allow_Non_Finite)
    let tok = resolveTokenizer dir (args.TryGetResult Tokenizer) model
    let prompt = tok.Encode(args.GetResult Prompt, addSpecialTokens = true)
    if prompt.Length = 0 then bad "prompt" "encodes to no tokens (this tokenizer adds no BOS): give some text"
    let stops =
        match tok.EosId with
        | eos when eos.HasValue -> [| eos.Value |]
        | _ -> [||]
    let gen = GenerationOptions(maxNew, sampling, stops, min tok.VocabSize model.VocabSize)
    let clock = Stopwatch.StartNew()
    let out = (Generation.Generate(model, [| prompt |], gen, EvalOptions(SegmentLength = segment, BatchSize = 1, Device = device))).[0]
    let seconds = clock.Elapsed.TotalSeconds
    printfn "%s" (tok.Decode(out.Tokens, skipSpecialTokens = true))
    eprintfn
        "statex: %d new tokens in %.2f s (%.1f tokens/s, prompt %d tokens, %O, stopped by %s)"
        out.Tokens.Length
        seconds
        (float out.Tokens.Length / max seconds 1e-9)
        prompt.Length
        device
        (if out.Finish = FinishReason.Stop then "EOS" else "--max-new")
    0
