namespace StateX

open System
open StateX.Data
open StateX.Models
open StateX.Evaluation
open StateX.Evaluation.Tasks
open StateX.Tokenization
open StateX.Training
open TorchSharp

/// One evaluation task of the core, as data.
type EvalTask =
    /// Multi-query associative recall: pairs per setting, sequence length, sequences per setting, and the ids keys
    /// and values are drawn from (None: the model's vocabulary, up to 8192 ids).
    | Mqar of pairs: int list * seqLen: int * examples: int * vocab: int option
    /// Passkey retrieval over lengths × depths (fractions 0..1), trials keys per cell, with a prompt template
    /// ("default", "short", or another the core names; see PasskeyTemplate.Named).
    | Passkey of lengths: int list * depths: float list * trials: int * template: string
    /// Needle in a haystack: lengths, needles per haystack, needles asked about (the rest distract), trials per length.
    | Haystack of lengths: int list * needles: int * queries: int * trials: int
    /// RULER's NIAH tasks by name (niah_single_1 … niah_multiquery; RulerNiahTask.All), lengths, samples per
    /// task × length, the essay haystack (None: generated English-like text, synth:text; Some file: its text) and
    /// tokens generated per sample (RULER: 128).
    | RulerNiah of tasks: string list * lengths: int list * samples: int * essay: string option * maxNewTokens: int
    /// Synthetic in-context classification: shot counts, classes, trials per count.
    | FewShot of shots: int list * classes: int * trials: int
    /// Few-shot classification from a JSONL file (data/README.md): shot counts, at most `limit` items.
    | FewShotFile of file: string * shots: int list * limit: int option
    /// Loss by position (power-of-two bins) over `documents` sequences of `length` tokens of a data spec.
    | LossVsPosition of data: string * documents: int * length: int
    /// Loss by position over the documents of a file (.jsonl of {"text"} or text): at most `limit` documents, cut
    /// to `maxLength` tokens (None: the longest), bins of `binWidth` positions (None: powers of two).
    | LossVsPositionFile of file: string * limit: int option * maxLength: int option * binWidth: int option
    /// Mean next-token loss on `rows` rows of `length` tokens of a data spec, read with <c>EvalSpec.heldOutSeed</c>
    /// (which no training run uses): for generated data, documents no run trained on; for files, another order.
    | HeldOutLoss of data: string * rows: int * length: int
    /// Recall QA from a JSONL file: generation of up to maxNewTokens, answer contained.
    | RecallQa of file: string * maxNewTokens: int * limit: int option
    /// Multiple choice from a JSONL or Parquet file (acc, acc_norm): StateX's schema, ARC's, HellaSwag's or PIQA's.
    | MultipleChoice of file: string * limit: int option
    /// The Based / "Just read twice" recall suite (swde, fda, squad, triviaqa, nq, drop; RecallTask.All) from a
    /// JSONL or Parquet file in the published dataset's schema: the document cut to `contextLength` tokens around
    /// the answer (None: not cut), greedy generation of up to maxNewTokens until a newline, "contains".
    | Recall of task: string * file: string * contextLength: int option * maxNewTokens: int * limit: int option
    /// WinoGrande (allenai/winogrande's schema) with the harness's partial scoring (acc).
    | WinoGrande of file: string * limit: int option
    /// LAMBADA (EleutherAI/lambada_openai's schema): acc and perplexity of the last word.
    | Lambada of file: string * limit: int option
    /// The model's recurrent state per sequence ("state_elements") and parameter count ("parameters").
    | ModelSize

/// A set of evaluations: what is measured (hashed), with the tokenizer, seed and segmenting they use.
type EvalSpec = {
    Tasks: EvalTask list
    Tokenizer: string
    Seed: int64
    /// Tokens per forward pass of a long context (bounds memory; the result does not depend on it).
    SegmentLength: int
    BatchSize: int
    /// "as-is" (the model's dtype as loaded), "fp32" or "bf16" (e.g. to evaluate in the dtype CUDA training used).
    Precision: string
}

[<RequireQualifiedAccess>]
module EvalSpec =
    let tasks (tasks: EvalTask list) = {
        Tasks = tasks
        Tokenizer = "byte"
        Seed = 0L
        SegmentLength = 2048
        BatchSize = 8
        Precision = "as-is"
    }

    /// Loader seed of held-out rows: no training run reads with it (training seeds are small integers).
    let heldOutSeed = 0xBEEFUL

    /// `count` rows of `length` tokens (`length` + 1 with `withTarget`) of a data spec.
    let private documents (spec: string) (tok: ITokenizer) (count: int) (length: int) (seed: uint64) (withTarget: bool) =
        use loader = DataLoader.Open(DataSpec.Parse spec, tok, LoaderOptions(length, 1, seed, withTarget))
        [|
            for i in 1..count ->
                match loader.Next() with
                | null -> invalidArg "data" (sprintf "data '%s' ran out after %d of %d rows of %d tokens" spec (i - 1) count length)
                | b -> b.Tokens |> Array.map int
        |]

    let private precision (p: string) =
        match p with
        | "as-is" -> None
        | "fp32" -> Some torch.ScalarType.Float32
        | "bf16" -> Some torch.ScalarType.BFloat16
        | other -> invalidArg "precision" (sprintf "unknown evaluation precision '%s': expected as-is, fp32 or bf16" other)

    /// Checks what can be checked without a model.
    let validate (e: EvalSpec) =
        precision e.Precision |> ignore
        if e.SegmentLength < 1 then invalidArg "segment" (sprintf "segment length must be at least 1 (got %d)" e.SegmentLength)
        if e.BatchSize < 1 then invalidArg "batch" (sprintf "evaluation batch size must be at least 1 (got %d)" e.BatchSize)

    /// <summary>
    /// Runs every task on a model (moved to `device`: auto, cpu, cuda, cuda:N; eval mode, no gradients), results
    /// named `modelName`; `progress` gets each long task's steps. The one dispatcher from task values to the core's
    /// evaluations (the CLI, pipelines and studies all come here).
    /// </summary>
    let runWith
        (device: string)
        (modelName: string)
        (progress: (EvalProgress -> unit) option)
        (e: EvalSpec)
        (lm: ICausalLanguageModel)
        : EvalResult list =
        validate e
        let tok = Tokenizers.Load e.Tokenizer
        let dev = DeviceSpec.Parse(device).Resolve()
        lm.Module.``to`` (dev) |> ignore
        match precision e.Precision with
        | Some t -> lm.Module.``to`` (t) |> ignore
        | None -> ()
        let o =
            EvalOptions(
                e.SegmentLength,
                e.BatchSize,
                dev,
                modelName,
                (match progress with
                 | Some f -> Action<EvalProgress>(f)
                 | None -> null)
            )
        let seed = uint64 e.Seed
        lm.Module.eval () |> ignore
        use _ = torch.no_grad ()
        [
            for task in e.Tasks do
                match task with
                | Mqar(pairs, seqLen, examples, vocab) ->
                    let vocab = defaultArg vocab (min lm.VocabSize 8192)
                    if vocab > lm.VocabSize then
                        invalidArg "vocab" (sprintf "mqar: %d ids exceed the model's vocabulary of %d" vocab lm.VocabSize)
                    yield! Mqar.Evaluate(lm, [| for p in pairs -> MqarConfig(p, seqLen, vocab) |], examples, seed, o)
                | Passkey(lengths, depths, trials, template) ->
                    yield!
                        Passkey.Evaluate(
                            lm,
                            tok,
                            Array.ofList lengths,
                            Array.ofList depths,
                            trials,
                            seed,
                            o,
                            PasskeyTemplate.Named template
                        )
                | Haystack(lengths, needles, queries, trials) ->
                    yield! Haystack.Evaluate(lm, tok, [| for l in lengths -> HaystackConfig(l, needles, queries) |], trials, seed, o)
                | RulerNiah(names, lengths, samples, essay, maxNew) ->
                    let words, haystack =
                        match essay with
                        | Some file when file <> "synth:text" ->
                            if not (IO.File.Exists file) then invalidArg "essay" (sprintf "RULER essay haystack '%s' not found" file)
                            RulerNiah.EssayWords(IO.File.ReadAllText file), IO.Path.GetFileName file
                        | _ -> null, "synth:text"
                    let tasks = [| for n in names -> RulerNiahTask.Named n |]
                    yield! RulerNiah.Evaluate(lm, tok, tasks, Array.ofList lengths, samples, seed, o, words, haystack, maxNew)
                | FewShot(shots, classes, trials) ->
                    yield! InContextLearning.EvaluateSynthetic(lm, tok, Array.ofList shots, classes, trials, seed, o)
                | FewShotFile(file, shots, limit) ->
                    yield! InContextLearning.EvaluateFile(lm, tok, file, Array.ofList shots, Option.toNullable limit, seed, o)
                | LossVsPosition(data, count, length) ->
                    yield! LossVsPosition.Evaluate(lm, documents data tok count length seed false, length, null, o)
                | LossVsPositionFile(file, limit, maxLength, binWidth) ->
                    let docs = EvalFiles.ReadDocuments(file, tok) |> Seq.truncate (defaultArg limit Int32.MaxValue) |> Array.ofSeq
                    if docs.Length = 0 then invalidArg "file" (sprintf "%s holds no documents" file)
                    let maxLen = defaultArg maxLength (docs |> Array.map Array.length |> Array.max)
                    let edges = binWidth |> Option.map (fun w -> LossVsPosition.LinearEdges(maxLen, w)) |> Option.toObj
                    yield! LossVsPosition.Evaluate(lm, docs, maxLen, edges, o)
                | HeldOutLoss(data, rows, length) ->
                    let docs = documents data tok rows length heldOutSeed true // [T+1] each
                    let r = LossVsPosition.Evaluate(lm, docs, length + 1, [| 0; length |], o) |> Seq.head
                    yield
                        EvalResult(
                            modelName,
                            "heldout_loss",
                            EvalResult.SettingOf(struct ("length", box length)),
                            "loss",
                            r.Value,
                            int64 rows * int64 length
                        )
                | RecallQa(file, maxNew, limit) -> yield! RecallQa.Evaluate(lm, tok, file, maxNew, Option.toNullable limit, o)
                | MultipleChoice(file, limit) -> yield! MultipleChoice.Evaluate(lm, tok, file, Option.toNullable limit, o)
                | Recall(name, file, contextLength, maxNew, limit) ->
                    yield!
                        BasedRecall.Evaluate(
                            lm,
                            tok,
                            RecallTask.Named name,
                            file,
                            Option.toNullable contextLength,
                            maxNew,
                            Option.toNullable limit,
                            o
                        )
                | WinoGrande(file, limit) -> yield! WinoGrande.Evaluate(lm, tok, file, Option.toNullable limit, o)
                | Lambada(file, limit) -> yield! Lambada.Evaluate(lm, tok, file, Option.toNullable limit, o)
                | ModelSize ->
                    let none = EvalResult.SettingOf()
                    yield EvalResult(modelName, "model", none, "state_elements", float (lm.StateSize().TotalElements), 1L)
                    yield EvalResult(modelName, "model", none, "parameters", float (Trainer.ParameterCount lm), 1L)
        ]

    /// Runs every task on a model (see runWith), without progress reports.
    let run (device: string) (modelName: string) (e: EvalSpec) (lm: ICausalLanguageModel) : EvalResult list =
        runWith device modelName None e lm
