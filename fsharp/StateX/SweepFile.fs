namespace StateX

open System
open System.Globalization
open System.IO
open System.Text.Json
open System.Text.Json.Nodes
open StateX.IO

/// A sweep file read (docs/sweeps.md): the planned pipelines and how to run them.
type SweepPlan = { File: string; Folder: string; Parallelism: int; Device: string; Sweep: Sweep<Pipeline> }

/// <summary>
/// Sweep files: a JSON document describing one StateX/LPT pipeline (model, expansion, pretraining, post-training,
/// evaluation, in the core's own key names) plus the axes to vary (<c>grid</c>, <c>zip</c> or <c>random</c>), each
/// addressed by its dotted path in the document (<c>pretrain.seed</c>, <c>model.num_heads</c>, <c>expand.rewrite</c>).
/// Every point of the sweep is the document with those values put in, turned into a Pipeline; runs are keyed by
/// the Pipeline's hash. Format: docs/sweeps.md.
/// </summary>
[<RequireQualifiedAccess>]
module SweepFile =
    let private inv = CultureInfo.InvariantCulture

    /// Raises the sweep file's error: one line (values quoted from a damaged file can hold line breaks), naming the file.
    let private fail (file: string) fmt =
        Printf.kprintf
            (fun s ->
                let one = s.Replace("\r\n", " ⏎ ").Replace("\n", " ⏎ ").Replace("\r", " ⏎ ")
                raise (FormatException(sprintf "%s: %s" file (if one.Length > 300 then one.Substring(0, 300) + "…" else one))))
            fmt

    let private parse (file: string) (text: string) =
        try
            match
                StateX.IO.JsonErrors.Parse(
                    text,
                    JsonDocumentOptions(AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip)
                )
            with
            | :? JsonObject as o -> o
            | _ -> fail file "the top level is not a JSON object"
        with :? JsonException as e ->
            fail file "not valid JSON: %s" (IO.JsonErrors.Brief e)

    // ---- reading parts of the document -------------------------------------------------------------------------

    type private Section(file: string, where: string, o: JsonObject) =
        let known = Collections.Generic.HashSet<string>()
        member _.Where = where
        member _.Has(k: string) = o.ContainsKey k && not (isNull o.[k])
        member _.Node(k: string) =
            known.Add k |> ignore
            o.[k]
        member this.Get<'T>(k: string, fallback: 'T) : 'T =
            match this.Node k with
            | null -> fallback
            | n ->
                try
                    n.GetValue<'T>()
                with _ ->
                    fail file "%s.%s: expected %s, got %s" where k (typeof<'T>.Name) (n.ToJsonString())
        member this.Ints(k: string) =
            match this.Node k with
            | :? JsonArray as a -> [ for x in a -> x.GetValue<int>() ]
            | null -> fail file "%s.%s is required (a list of integers)" where k
            | n -> [ n.GetValue<int>() ]
        member this.Floats(k: string) =
            match this.Node k with
            | :? JsonArray as a -> [ for x in a -> x.GetValue<float>() ]
            | null -> fail file "%s.%s is required (a list of numbers)" where k
            | n -> [ n.GetValue<float>() ]
        member this.Strings(k: string) =
            match this.Node k with
            | :? JsonArray as a -> [
                for x in a ->
                    try
                        x.GetValue<string>()
                    with _ ->
                        fail file "%s.%s: expected a list of strings, got %s" where k (a.ToJsonString())
              ]
            | null -> fail file "%s.%s is required (a list of strings)" where k
            | _ -> [ this.Get<string>(k, "") ]
        member this.Required<'T>(k: string) : 'T =
            match this.Node k with
            | null -> fail file "%s.%s is required" where k
            | _ -> this.Get<'T>(k, Unchecked.defaultof<'T>)
        member _.CheckKnown() =
            let unknown = [
                for KeyValue(k, _) in o do
                    if not (known.Contains k) then yield k
            ]
            if not unknown.IsEmpty then fail file "%s: unknown key(s) %s" where (String.Join(", ", unknown))

    let private section (file: string) (where: string) (n: JsonNode) =
        match n with
        | :? JsonObject as o -> Section(file, where, o)
        | null -> Section(file, where, JsonObject())
        | _ -> fail file "%s should be an object, got %s" where (n.ToJsonString())

    let private resolvePath (file: string) (p: string) =
        if Path.IsPathRooted p then p else Path.GetFullPath(Path.Combine(Path.GetDirectoryName(Path.GetFullPath file), p))

    /// model: "path/to/config.json" | "checkpoint/folder" | {"config": "...", KEY: VALUE overrides in the config's own keys}.
    let private model (file: string) (n: JsonNode) : Model * string option =
        let path, overrides =
            match n with
            | :? JsonValue as v when v.GetValueKind() = JsonValueKind.String -> v.GetValue<string>(), []
            | :? JsonObject as o ->
                match o.["config"] with
                | null -> fail file "model: an object needs \"config\" (a config.json or checkpoint folder) plus overrides"
                | c ->
                    c.GetValue<string>(),
                    [
                        for KeyValue(k, v) in o do
                            if k <> "config" then yield k, v
                    ]
            | null -> fail file "\"model\" is required: a config.json, a checkpoint folder, or {\"config\": ..., overrides}"
            | _ -> fail file "model: expected a path or an object"
        let full = resolvePath file path
        let start, configPath =
            if Directory.Exists full then Some full, Path.Combine(full, "config.json")
            elif File.Exists full then None, full
            else fail file "model: %s is neither a config.json nor a checkpoint folder" full
        if overrides.IsEmpty then
            Model.readConfig configPath, start
        else
            if start.IsSome then fail file "model: overrides apply to a config.json, not to a checkpoint folder (its weights fix the shape)"
            let cfg = (ConfigJson.Load configPath).Root.DeepClone().AsObject()
            for k, v in overrides do
                cfg.[k] <- (if isNull v then null else v.DeepClone())
            let tmp = Path.Combine(Path.GetTempPath(), sprintf "statex-sweep-%s.json" (Guid.NewGuid().ToString "N"))
            try
                File.WriteAllText(tmp, cfg.ToJsonString())
                Model.readConfig tmp, None
            finally
                File.Delete tmp

    /// expand: null | {"layers", "rewrite", "init", "seed", "freeze_others"} | a list of them (applied in order).
    let private expansions (file: string) (n: JsonNode) (m: Model) : Model =
        let one (n: JsonNode) (m: Model) =
            let s = section file "expand" n
            let layers = s.Get<string>("layers", "every:6")
            let rewrite =
                s.Get<string>(
                    "rewrite",
                    (match m.Arch with
                     | Gla _ -> "merge-heads"
                     | Mamba2 _
                     | Gsa _
                     | Power _ -> "state:x4")
                )
            let init = s.Get<string>("init", "reinit")
            let seed = s.Get<int64>("seed", 0L)
            let freeze = s.Get<bool>("freeze_others", false)
            s.CheckKnown()
            let m = Expand.parse layers rewrite init m |> Expand.seed seed
            if freeze then Expand.freezeOthers m else m
        match n with
        | null -> m
        | :? JsonArray as a -> Seq.fold (fun m x -> one x m) m a
        | n -> one n m

    let private training (file: string) (where: string) (n: JsonNode) (baseline: TrainSpec option) : TrainSpec =
        let s = section file where n
        let start =
            match baseline with
            | Some t when not (s.Has "data") -> t
            | _ -> TrainSpec.on (s.Required<string> "data")
        let d = start
        let t = {
            d with
                Data = s.Get("data", d.Data)
                Tokenizer = s.Get("tokenizer", d.Tokenizer)
                Steps = s.Get("steps", d.Steps)
                SeqLen = s.Get("seq_len", d.SeqLen)
                BatchSize = s.Get("batch", d.BatchSize)
                GradAccum = s.Get("grad_accum", d.GradAccum)
                LearningRate = s.Get("lr", d.LearningRate)
                Schedule = s.Get("schedule", d.Schedule)
                Warmup = (if s.Has "warmup" then Some(s.Get<int>("warmup", 0)) else d.Warmup)
                FloorRatio = s.Get("floor_ratio", d.FloorRatio)
                WeightDecay = s.Get("weight_decay", d.WeightDecay)
                ClipNorm = s.Get("clip", d.ClipNorm)
                Seed = s.Get("seed", d.Seed)
                Precision = s.Get("precision", d.Precision)
                ActivationCheckpointing = s.Get("activation_checkpointing", d.ActivationCheckpointing)
        }
        s.CheckKnown()
        t

    let private evaluation (file: string) (root: Section) : EvalSpec option =
        match root.Node "evaluate" with
        | null -> None
        | :? JsonArray as tasks ->
            let task (n: JsonNode) =
                match n with
                | :? JsonObject as o when o.Count = 1 ->
                    let first = Seq.head o
                    let name, body = first.Key, first.Value
                    let s = section file ("evaluate." + name) body
                    let limit () = if s.Has "limit" then Some(s.Get<int>("limit", 0)) else None
                    let t =
                        match name with
                        | "mqar" ->
                            Mqar(
                                s.Ints "pairs",
                                s.Get("seq_len", 256),
                                s.Get("examples", 100),
                                (if s.Has "vocab" then Some(s.Get<int>("vocab", 0)) else None)
                            )
                        | "passkey" -> Passkey(s.Ints "lengths", s.Floats "depths", s.Get("trials", 5), s.Get("template", "default"))
                        | "haystack"
                        | "niah" -> Haystack(s.Ints "lengths", s.Get("needles", 4), s.Get("queries", 1), s.Get("trials", 5))
                        | "heldout_loss" -> HeldOutLoss(s.Required<string> "data", s.Get("rows", 16), s.Get("length", 2048))
                        | "model_size" -> ModelSize
                        | "icl" -> FewShot(s.Ints "shots", s.Get("classes", 2), s.Get("trials", 100))
                        | "icl_file" -> FewShotFile(resolvePath file (s.Required<string> "file"), s.Ints "shots", limit ())
                        | "loss_vs_position" -> LossVsPosition(s.Required<string> "data", s.Get("documents", 8), s.Get("length", 2048))
                        | "recall_qa" -> RecallQa(resolvePath file (s.Required<string> "file"), s.Get("max_new_tokens", 48), limit ())
                        | "multiple_choice" -> MultipleChoice(resolvePath file (s.Required<string> "file"), limit ())
                        | "ruler" ->
                            let names =
                                if s.Has "tasks" then
                                    s.Strings "tasks"
                                else
                                    [ for t in StateX.Evaluation.Tasks.RulerNiahTask.All -> t.Name ]
                            let names = [
                                for n in names ->
                                    try
                                        (StateX.Evaluation.Tasks.RulerNiahTask.Named n).Name
                                    with :? ArgumentException as e ->
                                        fail file "evaluate.ruler.tasks: %s" e.Message
                            ]
                            let essay =
                                if s.Has "essay" then
                                    (match s.Get<string>("essay", "") with
                                     | "synth:text" -> Some "synth:text"
                                     | e -> Some(resolvePath file e))
                                else
                                    None
                            EvalTask.RulerNiah(
                                names,
                                s.Ints "lengths",
                                s.Get("samples", 25),
                                essay,
                                s.Get("max_new_tokens", StateX.Evaluation.Tasks.RulerNiah.RulerMaxNewTokens)
                            )
                        | "recall" ->
                            let task = s.Required<string> "task"
                            let task =
                                try
                                    (StateX.Evaluation.Tasks.RecallTask.Named task).Name
                                with :? ArgumentException as e ->
                                    fail file "evaluate.recall.task: %s" e.Message
                            let contextLength =
                                match s.Get("context_length", StateX.Evaluation.Tasks.BasedRecall.DefaultContextLength) with
                                | 0 -> None
                                | n when n > StateX.Evaluation.Tasks.BasedRecall.AnswerLength -> Some n
                                | n ->
                                    fail
                                        file
                                        "evaluate.recall.context_length: %d must exceed the answer length %d (or be 0: not cut)"
                                        n
                                        StateX.Evaluation.Tasks.BasedRecall.AnswerLength
                            EvalTask.Recall(
                                task,
                                resolvePath file (s.Required<string> "file"),
                                contextLength,
                                s.Get("max_new_tokens", StateX.Evaluation.Tasks.BasedRecall.MaxNewTokens),
                                limit ()
                            )
                        | "winogrande" -> EvalTask.WinoGrande(resolvePath file (s.Required<string> "file"), limit ())
                        | "lambada" -> EvalTask.Lambada(resolvePath file (s.Required<string> "file"), limit ())
                        | other ->
                            fail
                                file
                                "evaluate: unknown task '%s' (mqar, passkey, haystack, ruler, icl, icl_file, loss_vs_position, heldout_loss, recall_qa, recall, multiple_choice, winogrande, lambada, model_size)"
                                other
                    s.CheckKnown()
                    t
                | _ -> fail file "evaluate: each task is {\"NAME\": {settings}}, got %s" (n.ToJsonString())
            let e = EvalSpec.tasks [ for n in tasks -> task n ]
            Some {
                e with
                    Tokenizer = root.Get("eval_tokenizer", e.Tokenizer)
                    Seed = root.Get("eval_seed", e.Seed)
                    SegmentLength = root.Get("segment_length", e.SegmentLength)
                    BatchSize = root.Get("eval_batch", e.BatchSize)
            }
        | n -> fail file "evaluate: expected a list of tasks, got %s" (n.ToJsonString())

    let private sweepKeys = set [ "grid"; "zip"; "random"; "folder"; "parallelism"; "device" ]

    /// The pipeline one (already substituted) document describes.
    let pipelineOf (file: string) (doc: JsonObject) : Pipeline =
        let root = Section(file, "sweep file", doc)
        for k in sweepKeys do
            root.Node k |> ignore
        let recipe = root.Get<string>("recipe", "statex")
        if recipe <> "statex" && recipe <> "lpt" then fail file "recipe: '%s' is not statex or lpt" recipe
        let m, start = model file (root.Node "model")
        let expandNode = root.Node "expand"
        let m = if recipe = "statex" then expansions file expandNode m else m
        let pre =
            match root.Node "pretrain" with
            | null -> None
            | n -> Some(training file "pretrain" n None)
        let post =
            match root.Node "posttrain" with
            | null -> None
            | n -> Some(training file "posttrain" n pre)
        let e = evaluation file root
        let name = root.Get<string>("name", recipe)
        root.CheckKnown()
        let p =
            Pipeline.create name m
            |> fun p ->
                match start with
                | Some s -> Pipeline.startFrom s p
                | None -> p
            |> fun p ->
                match pre with
                | Some t -> Pipeline.pretrain t p
                | None -> p
            |> fun p -> if recipe = "statex" then Pipeline.expand p else p
            |> fun p ->
                match post with
                | Some t -> Pipeline.postTrain t p
                | None -> p
            |> fun p ->
                match e with
                | Some e -> Pipeline.evaluate e p
                | None -> p
        Pipeline.validate p
        p

    // ---- axes --------------------------------------------------------------------------------------------------

    /// Puts `value` at a dotted path of the document (creating objects on the way; numbers index lists).
    let setPath (file: string) (path: string) (value: JsonNode) (doc: JsonObject) : JsonObject =
        let copy = doc.DeepClone().AsObject()
        let parts = path.Split '.'
        let rec go (node: JsonNode) (i: int) =
            let key = parts.[i]
            let last = i = parts.Length - 1
            let v () = if isNull value then null else value.DeepClone()
            match node with
            | :? JsonObject as o ->
                if last then
                    o.[key] <- v ()
                else
                    match o.[key] with
                    | null when Char.IsDigit key.[0] |> not ->
                        o.[key] <- JsonObject()
                        go o.[key] (i + 1)
                    | null -> fail file "axis %s: '%s' is not in the document" path key
                    | :? JsonValue as s when s.GetValueKind() = JsonValueKind.String && parts.[0] = "model" && i = 0 ->
                        // model given as a path: overrides turn it into {"config": path, ...}
                        o.[key] <- JsonObject([ Collections.Generic.KeyValuePair("config", s.DeepClone()) ])
                        go o.[key] (i + 1)
                    | child -> go child (i + 1)
            | :? JsonArray as a ->
                match Int32.TryParse(key, NumberStyles.Integer, inv) with
                | true, idx when idx >= 0 && idx < a.Count -> if last then a.[idx] <- v () else go a.[idx] (i + 1)
                | _ -> fail file "axis %s: '%s' is not an index of a list of %d" path key a.Count
            | _ -> fail file "axis %s: cannot go into %s at '%s'" path (if isNull node then "null" else node.ToJsonString()) key
        go copy 0
        copy

    let private label (n: JsonNode) =
        match n with
        | null -> "null"
        | :? JsonValue as v when v.GetValueKind() = JsonValueKind.String -> v.GetValue<string>()
        | n -> n.ToJsonString()

    let private axesOf (file: string) (what: string) (n: JsonNode) : Axis<string> list =
        match n with
        | :? JsonObject as o -> [
            for KeyValue(path, values) in o ->
                let set (v: JsonNode) (text: string) = (setPath file path v (JsonNode.Parse(text).AsObject())).ToJsonString()
                match values with
                | :? JsonArray as a when a.Count > 0 -> Axis.labelled path [ for v in a -> label v, set v ]
                | :? JsonObject as d when d.Count = 1 && what = "random" ->
                    let first = Seq.head d
                    let bounds () =
                        match first.Value with
                        | :? JsonArray as b when b.Count = 2 -> b.[0].GetValue<float>(), b.[1].GetValue<float>()
                        | _ -> fail file "random axis %s: %s takes [low, high]" path first.Key
                    match first.Key with
                    | "uniform" -> let lo, hi = bounds () in Axis.uniform path lo hi (fun x -> set (JsonValue.Create x))
                    | "log_uniform" -> let lo, hi = bounds () in Axis.logUniform path lo hi (fun x -> set (JsonValue.Create x))
                    | "int_range" -> let lo, hi = bounds () in Axis.intRange path (int lo) (int hi) (fun x -> set (JsonValue.Create x))
                    | k -> fail file "random axis %s: unknown distribution '%s' (uniform, log_uniform, int_range)" path k
                | _ -> fail file "%s axis %s: expected a non-empty list of values" what path
          ]
        | _ -> fail file "%s: expected an object of PATH: [values]" what

    /// Reads a sweep file: the baseline document, its axes, and the pipelines they make.
    let rec load (path: string) : SweepPlan =
        let file = Path.GetFullPath path
        if not (File.Exists file) then raise (FileNotFoundException(sprintf "sweep file not found: %s" file, file))
        // The readers below navigate the document as docs/sweeps.md describes it; a value of another type or shape
        // (a number where a string goes, a one-element bounds list, lo > hi) surfaces as one of these, naming no
        // file (found by fuzzing): it becomes the sweep file's own error.
        try
            loadFile file
        with
        | :? InvalidOperationException
        | :? IndexOutOfRangeException
        | :? ArgumentException
        | :? Collections.Generic.KeyNotFoundException
        | :? InvalidCastException
        | :? OverflowException as e -> fail file "malformed sweep file (%s: %s)" (e.GetType().Name) (e.Message.Split('\n').[0])

    and private loadFile (file: string) : SweepPlan =
        let doc = parse file (File.ReadAllText file)
        let baseline = doc.DeepClone().AsObject()
        for k in [ "grid"; "zip"; "random" ] do
            baseline.Remove k |> ignore
        let text = baseline.ToJsonString()
        let docs =
            match doc.["grid"], doc.["zip"], doc.["random"] with
            | null, null, null -> Sweep.single text
            | g, null, null -> Sweep.grid (axesOf file "grid" g) text
            | null, z, null -> Sweep.zip (axesOf file "zip" z) text
            | null, null, r ->
                let s = section file "random" r
                let seed, count = s.Get<int>("seed", 0), s.Required<int> "count"
                let axes = axesOf file "random" (s.Node "axes")
                s.CheckKnown()
                Sweep.random seed count axes text
            | _ -> fail file "give one of grid, zip or random"
        let folder =
            match doc.["folder"] with
            | null -> Path.GetFullPath(Path.Combine("runs", Path.GetFileNameWithoutExtension file))
            | f -> resolvePath file (f.GetValue<string>())
        {
            File = file
            Folder = folder
            Parallelism =
                (match doc.["parallelism"] with
                 | null -> 1
                 | n -> n.GetValue<int>())
            Device =
                (match doc.["device"] with
                 | null -> "auto"
                 | n -> n.GetValue<string>())
            Sweep = docs |> Sweep.map (fun d -> pipelineOf file (JsonNode.Parse(d).AsObject()))
        }

    /// The columns a sweep's analyses group by: its axes except seeds (pooled into mean ± std).
    let groupColumns (plan: SweepPlan) =
        plan.Sweep.Runs
        |> List.collect (fun r -> List.map fst r.Labels)
        |> List.distinct
        |> List.filter (fun n -> not (n.ToLowerInvariant().Contains "seed"))

    /// Runs the plan (stages shared under FOLDER/stages), then writes results.csv (every evaluation result with
    /// the run's labels) and a chart per analysis the results allow (charts/*.html); returns the store's records
    /// and the files written.
    let run (log: string -> unit) (plan: SweepPlan) : RunRecord list * string list =
        let settings = { RunSettings.defaults with Device = plan.Device; Log = log }
        let options = { Sweep.options plan.Folder with Parallelism = plan.Parallelism; Log = log }
        let records = Sweep.runWith options (Pipeline.runner settings (Path.Combine(plan.Folder, "stages"))) plan.Sweep
        let files = Collections.Generic.List<string>()
        let results = Analysis.sweepFiles plan.Folder "eval.jsonl"
        if results.RowCount > 0 then
            let store = Analysis.ofStore plan.Folder |> Analysis.select [ "hash"; "state_size"; "params" ]
            let joined = Analysis.join [ "hash" ] results store
            files.Add(Analysis.save (Path.Combine(plan.Folder, "results.csv")) joined)
            let by = groupColumns plan
            let tasks = Analysis.texts "task" joined |> List.distinct
            let chart name (f: unit -> Plotly.NET.GenericChart) =
                try
                    files.Add(Charts.save (Path.Combine(plan.Folder, "charts", name + ".html")) (f ()))
                with e ->
                    log (sprintf "chart %s skipped: %s" name e.Message)
            if tasks |> List.exists (fun t -> List.contains t Analysis.recallTasks) then
                chart "recall-vs-state-size" (fun () -> Charts.recallVsStateSize (Analysis.recallVsStateSize by joined))
            if List.contains "passkey" tasks then
                chart "passkey" (fun () -> Charts.passkeyHeatmap "Passkey accuracy (all runs)" (Analysis.passkeyGrid joined))
            if List.contains "icl" tasks then chart "icl-vs-shots" (fun () -> Charts.iclVsShots (Analysis.iclVsShots by joined))
            if List.contains "loss_vs_position" tasks then
                chart "loss-vs-position" (fun () -> Charts.lossVsPosition (Analysis.lossVsPosition by joined))
        let curves = Analysis.sweepFiles plan.Folder "posttrain.metrics.jsonl"
        if curves.RowCount > 0 then
            try
                files.Add(
                    Charts.save
                        (Path.Combine(plan.Folder, "charts", "post-training.html"))
                        (Charts.trainingCurves "loss" (Analysis.trainingCurves (groupColumns plan) "loss" curves))
                )
            with e ->
                log (sprintf "chart post-training skipped: %s" e.Message)
        records, List.ofSeq files
