namespace StateX

open System
open StateX.Data
open StateX.Models
open StateX.Evaluation
open StateX.Evaluation.Tasks
open StateX.Tokenization
open TorchSharp

/// One evaluation task of the core, as data.
type EvalTask =
    /// Multi-query associative recall: pairs per setting, sequence length, sequences per setting
    /// (keys and values from the model's vocabulary, up to 8192 ids).
    | Mqar of pairs: int list * seqLen: int * examples: int
    /// Passkey retrieval over lengths × depths (fractions 0..1), trials keys per cell.
    | Passkey of lengths: int list * depths: float list * trials: int
    /// Needle in a haystack: lengths, needles per haystack, trials per length.
    | Haystack of lengths: int list * needles: int * trials: int
    /// Synthetic in-context classification: shot counts, classes, trials per count.
    | FewShot of shots: int list * classes: int * trials: int
    /// Few-shot classification from a JSONL file (data/README.md): shot counts, at most `limit` items.
    | FewShotFile of file: string * shots: int list * limit: int option
    /// Loss by position (power-of-two bins) over `documents` sequences of `length` tokens of a data spec.
    | LossVsPosition of data: string * documents: int * length: int
    /// Recall QA from a JSONL file: generation of up to maxNewTokens, answer contained.
    | RecallQa of file: string * maxNewTokens: int * limit: int option
    /// Multiple choice from a JSONL file (acc, acc_norm).
    | MultipleChoice of file: string * limit: int option

/// A set of evaluations: what is measured (hashed), with the tokenizer, seed and segmenting they use.
type EvalSpec =
    { Tasks: EvalTask list
      Tokenizer: string
      Seed: int64
      /// Tokens per forward pass of a long context (bounds memory; the result does not depend on it).
      SegmentLength: int
      BatchSize: int }

[<RequireQualifiedAccess>]
module EvalSpec =
    let tasks (tasks: EvalTask list) = { Tasks = tasks; Tokenizer = "byte"; Seed = 0L; SegmentLength = 2048; BatchSize = 8 }

    let private documents (spec: string) (tok: ITokenizer) (count: int) (length: int) (seed: int64) =
        use loader = DataLoader.Open(DataSpec.Parse spec, tok, LoaderOptions(length, 1, uint64 seed, false))
        [ for _ in 1 .. count do
            match loader.Next() with
            | null -> ()
            | b -> yield b.Tokens |> Array.map int ]

    /// Runs every task on a model (moved to `device`: auto, cpu, cuda, cuda:N; eval mode, no gradients);
    /// results named `modelName`.
    let run (device: string) (modelName: string) (e: EvalSpec) (lm: ICausalLanguageModel) : EvalResult list =
        let tok = Tokenizers.Load e.Tokenizer
        let dev = DeviceSpec.Parse(device).Resolve()
        lm.Module.``to``(dev) |> ignore
        let o = EvalOptions(e.SegmentLength, e.BatchSize, dev, modelName, null)
        let seed = uint64 e.Seed
        lm.Module.eval() |> ignore
        use _ = TorchSharp.torch.no_grad ()
        [ for task in e.Tasks do
            match task with
            | Mqar(pairs, seqLen, examples) ->
                let vocab = min lm.VocabSize 8192
                yield! Mqar.Evaluate(lm, [| for p in pairs -> MqarConfig(p, seqLen, vocab) |], examples, seed, o)
            | Passkey(lengths, depths, trials) -> yield! Passkey.Evaluate(lm, tok, Array.ofList lengths, Array.ofList depths, trials, seed, o)
            | Haystack(lengths, needles, trials) ->
                yield! Haystack.Evaluate(lm, tok, [| for l in lengths -> HaystackConfig(l, needles) |], trials, seed, o)
            | FewShot(shots, classes, trials) -> yield! InContextLearning.EvaluateSynthetic(lm, tok, Array.ofList shots, classes, trials, seed, o)
            | FewShotFile(file, shots, limit) -> yield! InContextLearning.EvaluateFile(lm, tok, file, Array.ofList shots, Option.toNullable limit, seed, o)
            | LossVsPosition(data, count, length) ->
                yield! LossVsPosition.Evaluate(lm, Array.ofList (documents data tok count length e.Seed), length, null, o)
            | RecallQa(file, maxNew, limit) -> yield! RecallQa.Evaluate(lm, tok, file, maxNew, Option.toNullable limit, o)
            | MultipleChoice(file, limit) -> yield! MultipleChoice.Evaluate(lm, tok, file, Option.toNullable limit, o) ]
