module StateX.Cli.Commands.Eval

open System
open System.Diagnostics
open System.Globalization
open System.IO
open Argu
open Microsoft.FSharp.Reflection
open Spectre.Console
open Spectre.Console.Rendering
open StateX
open StateX.Evaluation
open StateX.Evaluation.Tasks
open StateX.Cli.Commands.Loading

type EvalArgs =
    | [<Mandatory>] Model of dir: string
    | Task of name: string
    | Suite of name: string
    | Data_Dir of dir: string
    | Niah of list: string
    | Essay of file: string
    | Device of string
    | Dtype of string
    | Allow_Non_Finite
    | Out of file: string
    | Tokenizer of string
    | Segment of tokens: int
    | Batch of sequences: int
    | Seed of int64
    | Name of string
    | No_Progress
    | Template of name: string
    | Lengths of list: string
    | Depths of list: string
    | Trials of int
    | Pairs of list: string
    | Seq_Len of list: string
    | Vocab of int
    | Examples of int
    | Needles of int
    | Queries of int
    | Shots of list: string
    | Classes of int
    | File of path: string
    | Limit of int
    | Max_New of tokens: int
    | Context_Length of tokens: int
    | Max_Len of tokens: string
    | Bin_Width of tokens: int
    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> "checkpoint folder (config.json + model.safetensors) of any family StateX reads."
            | Task _ ->
                "mqar | passkey | haystack | ruler | icl | qa | mc | swde | fda | squad | triviaqa | nq | drop | winogrande | lambada | loss-position (see data/README.md)."
            | Suite _ ->
                "paper: RULER NIAH, Stuffed Mamba's passkey and every dataset found in --data-dir (README: Paper benchmarks); instead of --task."
            | Data_Dir _ -> "suite: the folder of the datasets (the file names are listed when missing)."
            | Niah _ -> "ruler: RULER tasks, e.g. niah_single_2,niah_multikey_1 (default: all eight)."
            | Essay _ -> "ruler: the essay haystack's text file, or synth:text (generated English-like text, the default)."
            | Device _ -> "auto (default), cpu, cuda, cuda:N."
            | Dtype _ -> "auto (as stored, default), fp32, bf16, fp16."
            | Allow_Non_Finite ->
                "load weights holding NaN or Inf anyway (with a warning), to debug a diverged checkpoint; evaluation and generation still refuse NaN scores."
            | Out _ -> "write the results to FILE: .csv or .jsonl (default: print only)."
            | Tokenizer _ -> "a tokenizer folder or \"byte\" (default: the model folder's tokenizer, else byte)."
            | Segment _ -> "tokens per forward pass of a long context; bounds memory (default 2048)."
            | Batch _ -> "sequences per forward pass (default 8)."
            | Seed _ -> "seed of the synthetic tasks and of the shots drawn from files (default 0)."
            | Name _ -> "model name in the results (default: the folder's name)."
            | No_Progress -> "no progress line on stderr."
            | Template _ ->
                "passkey: prompt template: default (the instructions of Landmark Attention's passkey test), short (no instructions), tiny (22 fixed bytes, keys over 1-4: tiny byte-level models), stuffed-mamba (Stuffed Mamba's prompt; depths spread:10 by default)."
            | Lengths _ -> "passkey, haystack, ruler, suite: context lengths in tokens, e.g. 1k,8k,128k (default 1k,2k,4k)."
            | Depths _ ->
                "passkey: needle depths in percent of the filler (default 0,25,50,75,100), or spread:N for (i+0.5)/N, i < N (Stuffed Mamba's)."
            | Trials _ ->
                "passkey, haystack (default 5), ruler (default 25), synthetic icl (default 100): examples per setting; suite: samples per RULER task and length, passkey depths per length (default 25)."
            | Pairs _ -> "mqar: key-value pairs per sequence (default 4,8,16)."
            | Seq_Len _ -> "mqar: sequence lengths (default 256)."
            | Vocab _ -> "mqar: ids used (default: the model's vocabulary, at most 8192)."
            | Examples _ -> "mqar: sequences per setting (default 100)."
            | Needles _ -> "haystack: needles per haystack (default 4)."
            | Queries _ -> "haystack: needles asked about; the rest are distractors (default 1)."
            | Shots _ -> "icl: numbers of demonstrations (default 0,1,2,4,8; with --file 0,1,2,4)."
            | Classes _ -> "synthetic icl: classes per episode (default 2)."
            | File _ ->
                "qa, mc, icl, swde … drop, winogrande, lambada: a JSON Lines or Parquet file; loss-position: a .jsonl of {\"text\"} or a text file (data/README.md)."
            | Limit _ ->
                "qa, mc, icl with --file, swde … drop, winogrande, lambada, loss-position, suite: use only the first N examples / documents."
            | Max_New _ ->
                "qa, swde … drop: tokens generated per answer (default 48); ruler: per sample (default 128, as RULER); suite: both."
            | Context_Length _ ->
                "swde … drop, suite: cut each document to this many tokens around its answer, as Just read twice's --cutting_context (default 1000; 0: not cut)."
            | Max_Len _ -> "loss-position: cut documents to this many tokens, e.g. 32k (default: the longest document)."
            | Bin_Width _ -> "loss-position: positions per bin (default: bins at powers of two)."

/// The command-line spelling of an option.
let private optionName (a: EvalArgs) =
    let case, _ = FSharpValue.GetUnionFields(a, typeof<EvalArgs>)
    "--" + case.Name.ToLowerInvariant().Replace('_', '-')

let private common =
    set [
        "--model"
        "--task"
        "--suite"
        "--device"
        "--dtype"
        "--out"
        "--tokenizer"
        "--segment"
        "--batch"
        "--seed"
        "--name"
        "--no-progress"
    ]

/// Task name (with aliases) → (canonical name, the task's own options).
let private tasks = [
    [ "mqar" ], ("mqar", [ "--pairs"; "--seq-len"; "--vocab"; "--examples" ])
    [ "passkey" ], ("passkey", [ "--lengths"; "--depths"; "--trials"; "--template" ])
    [ "haystack"; "niah" ], ("haystack", [ "--lengths"; "--needles"; "--queries"; "--trials" ])
    [ "ruler"; "ruler-niah" ], ("ruler", [ "--lengths"; "--trials"; "--niah"; "--essay"; "--max-new" ])
    [ "icl" ], ("icl", [ "--shots"; "--classes"; "--trials"; "--file"; "--limit" ])
    [ "qa"; "recall-qa" ], ("qa", [ "--file"; "--limit"; "--max-new" ])
    [ "mc"; "multiple-choice" ], ("mc", [ "--file"; "--limit" ])
    for t in RecallTask.All do
        [ t.Name ], (t.Name, [ "--file"; "--limit"; "--max-new"; "--context-length" ])
    [ "winogrande" ], ("winogrande", [ "--file"; "--limit" ])
    [ "lambada" ], ("lambada", [ "--file"; "--limit" ])
    [ "loss-position"; "loss-vs-position" ], ("loss-position", [ "--file"; "--limit"; "--max-len"; "--bin-width" ])
]

/// "4096", "4k" (× 1024), "1m" (× 1024²).
let parseLength (option: string) (text: string) =
    let t = text.Trim().ToLowerInvariant()
    let digits, scale =
        if t.EndsWith "k" then t.[.. t.Length - 2], 1024L
        elif t.EndsWith "m" then t.[.. t.Length - 2], 1024L * 1024L
        else t, 1L
    match Int64.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture) with
    | true, n when n >= 1L && n * scale <= int64 Int32.MaxValue -> int (n * scale)
    | _ -> bad option "'%s' is not a length in tokens (e.g. 4096, 4k, 128k)" text

let private list (option: string) (parse: string -> 'a) (text: string) =
    let items = text.Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)
    if items.Length = 0 then bad option "give a comma-separated list (got '%s')" text
    items |> Array.map parse |> Array.distinct

/// The options of `--suite paper`.
let private suiteOptions = [ "--data-dir"; "--lengths"; "--trials"; "--max-new"; "--limit"; "--context-length" ]

/// The datasets `--suite paper` reads from --data-dir: the name (NAME.jsonl or NAME.parquet), what it is, and the
/// task over a path. Each is read in its published dataset's schema (README: Paper benchmarks).
let private paperFiles
    (limit: int option)
    (maxNew: int option)
    (contextLength: int option)
    : (string * string * (string -> EvalTask)) list =
    let recall name dataset =
        name,
        sprintf "%s's schema, Just read twice's prompt and cut" dataset,
        (fun f -> EvalTask.Recall(name, f, contextLength, defaultArg maxNew BasedRecall.MaxNewTokens, limit))
    let mc name dataset = name, sprintf "%s's schema, lm-evaluation-harness's prompt" dataset, (fun f -> EvalTask.MultipleChoice(f, limit))
    [
        recall "swde" "hazyresearch/based-swde"
        recall "fda" "hazyresearch/based-fda"
        recall "squad" "hazyresearch/based-squad"
        recall "triviaqa" "hazyresearch/based_triviaqa"
        recall "nq" "hazyresearch/based_nq_1024"
        recall "drop" "hazyresearch/based_drop"
        mc "piqa" "ybisk/piqa"
        mc "hellaswag" "Rowan/hellaswag"
        "winogrande", "allenai/winogrande's schema, the harness's partial scoring", (fun f -> EvalTask.WinoGrande(f, limit))
        mc "arc_easy" "allenai/ai2_arc"
        mc "arc_challenge" "allenai/ai2_arc"
        "lambada", "EleutherAI/lambada_openai's schema, acc and perplexity", (fun f -> EvalTask.Lambada(f, limit))
        "icl",
        "few-shot classification, records of {\"input\", \"label\"}, shots 0/1/2/4/8/16",
        (fun f -> EvalTask.FewShotFile(f, [ 0; 1; 2; 4; 8; 16 ], limit))
    ]

/// The file of a dataset in --data-dir: NAME.jsonl, else NAME.parquet, if either exists.
let private paperFile (dir: string) (name: string) =
    [ ".jsonl"; ".parquet" ] |> List.map (fun ext -> Path.Combine(dir, name + ext)) |> List.tryFind IO.File.Exists

/// The essay haystack's file in --data-dir (optional: generated English-like text otherwise).
let private essayFile = "essay.txt"

let private percent (option: string) (text: string) =
    match Double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture) with
    | true, p when p >= 0.0 && p <= 100.0 -> p / 100.0
    | _ -> bad option "'%s' is not a percentage in 0..100" text

let private count (option: string) (text: string) =
    match Int32.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture) with
    | true, n -> n
    | _ -> bad option "'%s' is not a whole number" text

/// One line on stderr after the first two seconds, then at most every half second on a terminal (rewritten in
/// place) or every ten seconds in a log.
type private ProgressLine(enabled: bool) =
    let clock = Stopwatch.StartNew()
    let interactive = not Console.IsErrorRedirected
    let interval = TimeSpan.FromSeconds(if interactive then 0.5 else 10.0)
    let mutable last = TimeSpan.Zero
    let mutable shown = false
    static member Format(t: TimeSpan) =
        if t.TotalHours >= 1.0 then sprintf "%dh%02dm" (int t.TotalHours) t.Minutes
        elif t.TotalMinutes >= 1.0 then sprintf "%dm%02ds" (int t.TotalMinutes) t.Seconds
        else sprintf "%.1fs" t.TotalSeconds
    member _.Report(p: EvalProgress) =
        let now = clock.Elapsed
        if enabled && now.TotalSeconds >= 2.0 && (now - last >= interval || (p.Step >= p.Total && interactive)) then
            last <- now
            let eta = if p.Eta.HasValue then sprintf ", ETA %s" (ProgressLine.Format p.Eta.Value) else ""
            let line =
                sprintf
                    "%s: %d/%d (%.0f%%), %s%s"
                    p.Task
                    p.Step
                    p.Total
                    (100.0 * float p.Step / float (max 1L p.Total))
                    (ProgressLine.Format p.Elapsed)
                    eta
            if interactive then eprintf "\r%s\u001b[K" line else eprintfn "%s" line
            shown <- true
    member _.Finish() = if shown && interactive then eprintfn ""

let private cell (s: string) = Text(s) :> IRenderable

let private show (v: obj) =
    match v with
    | :? double as d -> d.ToString("0.####", CultureInfo.InvariantCulture)
    | :? IFormattable as f -> f.ToString(null, CultureInfo.InvariantCulture)
    | v -> string v

/// Every result as a row: task, the setting's keys, metric, value, n.
let private resultTable (results: EvalResult list) =
    let keys = results |> List.collect (fun r -> List.ofSeq r.Setting.Keys) |> List.distinct
    let t = Table(Border = TableBorder.Rounded)
    for c in [ "task" ] @ keys @ [ "metric"; "value"; "n" ] do
        t.AddColumn(TableColumn(Markup.Escape c)) |> ignore
    for r in results do
        let setting =
            keys
            |> List.map (fun k ->
                match r.Setting.TryGetValue k with
                | true, v -> show v
                | _ -> "")
        t.AddRow(
            [ r.Task ] @ setting @ [ r.Metric; r.Value.ToString("0.####", CultureInfo.InvariantCulture); string r.N ]
            |> List.map cell
            |> Array.ofList
        )
        |> ignore
    t

/// The suite's table: task, setting (key=value, space-separated), metric, value, n.
let private suiteTable (results: EvalResult list) =
    let t = Table(Border = TableBorder.Rounded)
    for c in [ "task"; "setting"; "metric"; "value"; "n" ] do
        t.AddColumn(TableColumn c) |> ignore
    for r in results do
        let setting = r.Setting |> Seq.map (fun kv -> sprintf "%s=%s" kv.Key (show kv.Value)) |> String.concat " "
        t.AddRow(
            [ r.Task; setting; r.Metric; r.Value.ToString("0.####", CultureInfo.InvariantCulture); string r.N ]
            |> List.map cell
            |> Array.ofList
        )
        |> ignore
    t

/// Passkey as the grid it is: a row per length, a column per depth.
let private passkeyGrid (results: EvalResult list) (metric: string) =
    let rs = results |> List.filter (fun r -> r.Metric = metric)
    let lengths = rs |> List.map (fun r -> unbox<int> r.Setting.["length"]) |> List.distinct
    let depths = rs |> List.map (fun r -> unbox<float> r.Setting.["depth"]) |> List.distinct
    let t = Table(Border = TableBorder.Rounded, Title = TableTitle(Markup.Escape("passkey " + metric)))
    t.AddColumn(Markup.Escape "length \\ depth %") |> ignore
    for d in depths do
        t.AddColumn(TableColumn((100.0 * d).ToString("0.#", CultureInfo.InvariantCulture)).RightAligned()) |> ignore
    for l in lengths do
        let row =
            depths
            |> List.map (fun d ->
                match rs |> List.tryFind (fun r -> unbox<int> r.Setting.["length"] = l && unbox<float> r.Setting.["depth"] = d) with
                | Some r -> r.Value.ToString("0.###", CultureInfo.InvariantCulture)
                | None -> "")
        t.AddRow(string l :: row |> List.map cell |> Array.ofList) |> ignore
    t

let run (args: ParseResults<EvalArgs>) =
    // Every option is checked before the model loads, so a typo costs nothing.
    let task, own =
        match args.TryGetResult Suite, args.TryGetResult Task with
        | Some _, Some _ -> bad "suite" "give --suite or --task, not both"
        | Some s, None when s.Trim().ToLowerInvariant() = "paper" -> "suite", suiteOptions
        | Some s, None -> bad "suite" "unknown suite '%s': expected paper" s
        | None, None ->
            bad "task" "is required (one of %s), or --suite paper" (tasks |> List.map (fun (n, _) -> List.head n) |> String.concat ", ")
        | None, Some taskArg ->
            match tasks |> List.tryFind (fun (names, _) -> List.contains (taskArg.ToLowerInvariant()) names) with
            | Some(_, t) -> t
            | None ->
                bad
                    "task"
                    "unknown task '%s': expected one of %s"
                    taskArg
                    (tasks |> List.map (fun (n, _) -> List.head n) |> String.concat ", ")
    for a in args.GetAllResults() do
        let n = optionName a
        if not (common.Contains n || List.contains n own) then
            raise (
                ArgumentException(
                    sprintf
                        "%s does not apply to %s %s (its options: %s)"
                        n
                        (if task = "suite" then "suite" else "task")
                        (if task = "suite" then "paper" else task)
                        (String.Join(", ", own))
                )
            )
    let hasFile = args.Contains File
    if task = "icl" && hasFile then
        for a in args.GetAllResults() do
            match a with
            | Classes _
            | Trials _ -> raise (ArgumentException(sprintf "%s applies to synthetic icl only (without --file)" (optionName a)))
            | _ -> ()
    if task = "icl" && not hasFile && args.Contains Limit then raise (ArgumentException "--limit applies to icl with --file only")
    let recallNames = [ for t in RecallTask.All -> t.Name ]
    if List.contains task ([ "qa"; "mc"; "winogrande"; "lambada"; "loss-position" ] @ recallNames) && not hasFile then
        bad
            "file"
            "is required for task %s (%s; formats in data/README.md)"
            task
            (match task with
             | "qa" -> "JSON Lines of {\"prompt\", \"answer\"}"
             | "mc" -> "JSON Lines of {\"context\", \"choices\", \"gold\"}"
             | "winogrande" -> "allenai/winogrande's {\"sentence\", \"option1\", \"option2\", \"answer\"}, .jsonl or .parquet"
             | "lambada" -> "EleutherAI/lambada_openai's {\"text\"}, .jsonl or .parquet"
             | t when List.contains t recallNames -> "the Hugging Face dataset's records, .jsonl or .parquet"
             | _ -> "documents: a .jsonl of {\"text\"} or a text file")
    match args.TryGetResult File with
    | Some f when not (IO.File.Exists f) -> bad "file" "'%s' not found" f
    | _ -> ()
    match args.TryGetResult Essay with
    | Some f when f <> "synth:text" && not (IO.File.Exists f) -> bad "essay" "'%s' not found (give a text file or synth:text)" f
    | _ -> ()
    match args.TryGetResult Data_Dir with
    | Some d when not (Directory.Exists d) -> bad "data-dir" "'%s' is not a folder" d
    | _ -> ()
    let rulerNames =
        match args.TryGetResult Niah with
        | Some text ->
            list
                "niah"
                (fun n ->
                    try
                        (RulerNiahTask.Named n).Name
                    with :? ArgumentException as e ->
                        bad "niah" "%s" e.Message)
                text
            |> List.ofArray
        | None -> [ for t in RulerNiahTask.All -> t.Name ]
    let maxNew = args.TryGetResult Max_New |> Option.map (positive "max-new")
    let contextLength =
        match args.GetResult(Context_Length, BasedRecall.DefaultContextLength) with
        | 0 -> None
        | n when n > BasedRecall.AnswerLength -> Some n
        | n -> bad "context-length" "%d must exceed the answer length %d (or be 0: not cut)" n BasedRecall.AnswerLength
    let out = args.TryGetResult Out
    match out |> Option.map (fun o -> Path.GetExtension(o).ToLowerInvariant()) with
    | Some(".csv" | ".jsonl" | ".json" | ".ndjson")
    | None -> ()
    | Some _ -> bad "out" "'%s': unknown results format (use .csv or .jsonl)" out.Value
    let seed =
        match args.GetResult(Seed, 0L) with
        | s when s < 0L -> bad "seed" "must be ≥ 0 (got %d)" s
        | s -> uint64 s
    let segment = positive "segment" (args.GetResult(Segment, 2048))
    let batch = positive "batch" (args.GetResult(Batch, 8))
    let lengths =
        args.TryGetResult Lengths
        |> Option.map (list "lengths" (parseLength "lengths"))
        |> Option.defaultValue (
            if task = "suite" || task = "ruler" then [| 4096; 8192; 16384; 32768; 65536; 131072 |] else [| 1024; 2048; 4096 |]
        )
    let trials dflt = positive "trials" (args.GetResult(Trials, dflt))
    let limit = args.TryGetResult Limit |> Option.map (positive "limit") |> Option.toNullable
    let dtype = parseDtype (args.TryGetResult Dtype)
    let device = parseDevice (args.GetResult(Device, "auto"))

    let dir = args.GetResult Model
    let model = loadModel dir device dtype (args.Contains Allow_Non_Finite)
    // The tokenizer is checked against the model here; the evaluation loads it by the same name.
    let tokenizerSource () =
        let tok = resolveTokenizer dir (args.TryGetResult Tokenizer) model
        match args.TryGetResult Tokenizer with
        | Some t -> t
        | None ->
            if
                tok :? StateX.Tokenization.ByteTokenizer
                && not (IO.File.Exists(Path.Combine(dir, StateX.Tokenization.ByteTokenizer.MarkerFile)))
            then
                "byte"
            else
                dir
    let progress = ProgressLine(not (args.Contains No_Progress))
    let name = args.GetResult(Name, modelName dir)
    let evalTasks: EvalTask list =
        match task with
        | "mqar" ->
            let vocab = args.GetResult(Vocab, min 8192 model.VocabSize)
            if vocab > model.VocabSize then bad "vocab" "%d exceeds the model's vocabulary of %d" vocab model.VocabSize
            let pairs =
                args.TryGetResult Pairs
                |> Option.map (list "pairs" (count "pairs" >> positive "pairs"))
                |> Option.defaultValue [| 4; 8; 16 |]
            let lens = args.TryGetResult Seq_Len |> Option.map (list "seq-len" (parseLength "seq-len")) |> Option.defaultValue [| 256 |]
            let examples = positive "examples" (args.GetResult(Examples, 100))
            let settings = [
                for l in lens do
                    let ps = pairs |> Array.filter (fun p -> l >= 4 * p)
                    for p in pairs do
                        if l < 4 * p then eprintfn "statex: note: skipping mqar pairs=%d seq_len=%d (needs seq_len ≥ 4 × pairs)" p l
                    if ps.Length > 0 then
                        for p in ps do
                            try
                                MqarConfig(p, l, vocab).Validate()
                            with :? ArgumentException as e ->
                                bad "vocab" "%s" e.Message
                        yield EvalTask.Mqar(List.ofArray ps, l, examples, Some vocab)
            ]
            if settings.IsEmpty then bad "seq-len" "too short for every --pairs (MQAR needs seq_len ≥ 4 × pairs)"
            settings
        | "passkey" ->
            let template = args.GetResult(Template, "default")
            let spread (text: string) =
                match Int32.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture) with
                | true, n when n >= 1 -> Passkey.SpreadDepths n
                | _ -> bad "depths" "'spread:%s': give spread:N with N ≥ 1 samples" text
            let depths =
                match args.TryGetResult Depths with
                | Some d when d.Trim().StartsWith "spread:" -> spread (d.Trim().Substring 7)
                | Some d -> list "depths" (percent "depths") d
                | None when template.Trim().ToLowerInvariant().StartsWith "stuffed" -> Passkey.SpreadDepths 10
                | None -> [| 0.0; 0.25; 0.5; 0.75; 1.0 |]
            (try
                StateX.Evaluation.Tasks.PasskeyTemplate.Named template |> ignore
             with :? ArgumentException as e ->
                 bad "template" "%s" e.Message)
            [ EvalTask.Passkey(List.ofArray lengths, List.ofArray depths, trials 5, template) ]
        | "haystack" ->
            let needles, queries = positive "needles" (args.GetResult(Needles, 4)), positive "queries" (args.GetResult(Queries, 1))
            try
                HaystackConfig(lengths[0], needles, queries).Validate()
            with :? ArgumentException as e ->
                bad "queries" "%s" e.Message
            [ EvalTask.Haystack(List.ofArray lengths, needles, queries, trials 5) ]
        | "ruler" -> [
            EvalTask.RulerNiah(
                rulerNames,
                List.ofArray lengths,
                trials 25,
                args.TryGetResult Essay,
                defaultArg maxNew RulerNiah.RulerMaxNewTokens
            )
          ]
        | "suite" ->
            let samples = trials 25
            let essay = args.TryGetResult Data_Dir |> Option.map (fun d -> Path.Combine(d, essayFile)) |> Option.filter IO.File.Exists
            [
                yield EvalTask.RulerNiah(rulerNames, List.ofArray lengths, samples, essay, defaultArg maxNew RulerNiah.RulerMaxNewTokens)
                // Stuffed Mamba's protocol: n samples per length, sample i at depth (i+0.5)/n.
                yield EvalTask.Passkey(List.ofArray lengths, List.ofArray (Passkey.SpreadDepths samples), 1, "stuffed-mamba")
                for name, _, make in paperFiles (Option.ofNullable limit) maxNew contextLength do
                    match args.TryGetResult Data_Dir |> Option.bind (fun d -> paperFile d name) with
                    | Some f -> yield make f
                    | None -> ()
            ]
        | "icl" ->
            let shots dflt =
                args.TryGetResult Shots |> Option.map (list "shots" (count "shots")) |> Option.defaultValue dflt |> List.ofArray
            match args.TryGetResult File with
            | Some f -> [ EvalTask.FewShotFile(f, shots [| 0; 1; 2; 4 |], Option.ofNullable limit) ]
            | None -> [ EvalTask.FewShot(shots [| 0; 1; 2; 4; 8 |], args.GetResult(Classes, 2), trials 100) ]
        | "qa" -> [ EvalTask.RecallQa(args.GetResult File, positive "max-new" (args.GetResult(Max_New, 48)), Option.ofNullable limit) ]
        | "mc" -> [ EvalTask.MultipleChoice(args.GetResult File, Option.ofNullable limit) ]
        | "winogrande" -> [ EvalTask.WinoGrande(args.GetResult File, Option.ofNullable limit) ]
        | "lambada" -> [ EvalTask.Lambada(args.GetResult File, Option.ofNullable limit) ]
        | t when List.contains t recallNames -> [
            EvalTask.Recall(
                t,
                args.GetResult File,
                contextLength,
                args.GetResult(Max_New, BasedRecall.MaxNewTokens) |> positive "max-new",
                Option.ofNullable limit
            )
          ]
        | _ -> [
            EvalTask.LossVsPositionFile(
                args.GetResult File,
                Option.ofNullable limit,
                args.TryGetResult Max_Len |> Option.map (parseLength "max-len"),
                args.TryGetResult Bin_Width |> Option.map (positive "bin-width")
            )
          ]
    let spec = {
        EvalSpec.tasks evalTasks with
            Tokenizer = (if task = "mqar" then "byte" else tokenizerSource ())
            Seed = int64 seed
            SegmentLength = segment
            BatchSize = batch
    }
    let clock = Stopwatch.StartNew()
    let results = EvalSpec.runWith (string (DeviceSpec.Parse(args.GetResult(Device, "auto")))) name (Some progress.Report) spec model
    progress.Finish()
    eprintfn
        "statex: %s on %s: %d results in %s (%O, segment %d, batch %d)"
        task
        name
        results.Length
        (ProgressLine.Format clock.Elapsed)
        device
        segment
        batch
    if task = "suite" then
        let dir = args.TryGetResult Data_Dir
        for name, what, _ in paperFiles None None None do
            if
                (match dir with
                 | Some d -> paperFile d name
                 | None -> None)
                    .IsNone
            then
                let path =
                    match dir with
                    | Some d -> Path.Combine(d, name)
                    | None -> name
                printfn "missing dataset: %s.jsonl or %s.parquet (%s)" path name what
        if
            (match dir with
             | Some d -> not (IO.File.Exists(Path.Combine(d, essayFile)))
             | None -> true)
        then
            printfn "note: RULER's essay haystack is generated English-like text (synth:text): no %s in --data-dir" essayFile
        AnsiConsole.Write(suiteTable results)
    elif task = "passkey" then
        AnsiConsole.Write(passkeyGrid results "accuracy")
        AnsiConsole.Write(passkeyGrid results "answer_nll")
    else
        AnsiConsole.Write(resultTable results)
    match out with
    | Some path ->
        let parent = Path.GetDirectoryName(Path.GetFullPath path)
        Directory.CreateDirectory parent |> ignore
        ResultFiles.Write(path, results)
        printfn "results written to %s" path
    | None -> ()
    0
