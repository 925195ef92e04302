namespace StateX

open System
open System.Globalization
open System.IO
open System.Text.Json
open System.Text.Json.Nodes
open Deedle
open StateX.Evaluation

/// One cell of a result table.
[<RequireQualifiedAccess>]
type Cell =
    | Num of float
    | Text of string

/// <summary>
/// Results as Deedle frames (<c>Frame&lt;int, string&gt;</c>: rows numbered, columns named) and the analyses of the
/// StateX study over them. Long result frames have the columns of the core's result files:
/// <c>model, task, SETTING KEYS..., metric, value, n</c>; sweep frames add the run's labels (and <c>hash</c>).
/// Summaries hold the grouping columns, then <c>mean, std, n</c> (<c>std</c>: sample standard deviation across the
/// grouped rows, e.g. seeds; 0 for a single row).
/// </summary>
[<RequireQualifiedAccess>]
module Analysis =
    type Row = Map<string, Cell>

    let private inv = CultureInfo.InvariantCulture

    let private cellText (c: Cell) =
        match c with
        | Cell.Num v -> v.ToString("R", inv)
        | Cell.Text s -> s

    let private cellOf (v: obj) : Cell option =
        match v with
        | null -> None
        | :? float as d -> if Double.IsNaN d then None else Some(Cell.Num d)
        | :? float32 as d -> if Single.IsNaN d then None else Some(Cell.Num(float d))
        | :? int as i -> Some(Cell.Num(float i))
        | :? int64 as i -> Some(Cell.Num(float i))
        | :? decimal as d -> Some(Cell.Num(float d))
        | :? bool as b -> Some(Cell.Text(if b then "true" else "false"))
        | :? string as s -> Some(Cell.Text s)
        | v -> Some(Cell.Text(Convert.ToString(v, inv)))

    /// The rows of a frame as maps from column name to cell (missing cells absent).
    let rows (f: Frame<'R, string>) : Row list =
        let columns = [ for c in f.ColumnKeys -> c, f.Columns.[c] ]
        [
            for r in f.RowKeys ->
                Map [
                    for name, col in columns do
                        let v = col.TryGet r
                        if v.HasValue then
                            match cellOf v.Value with
                            | Some c -> yield name, c
                            | None -> ()
                ]
        ]

    /// A frame from rows: a column is numeric when every present cell is a number, text otherwise.
    /// Columns in the given order, then any others in order of first appearance.
    let ofRows (columns: string list) (rs: Row list) : Frame<int, string> =
        let names =
            columns
            @ [
                for r in rs do
                    for KeyValue(k, _) in r -> k
            ]
            |> List.distinct
        let indexed = List.indexed rs
        let column name : ISeries<int> =
            let cells = [ for i, r in indexed -> i, r.TryFind name ]
            if
                cells
                |> List.forall (fun (_, c) ->
                    match c with
                    | Some(Cell.Text _) -> false
                    | _ -> true)
            then
                Series.ofObservations [
                    for i, c in cells ->
                        i,
                        (match c with
                         | Some(Cell.Num v) -> v
                         | _ -> nan)
                ]
                :> ISeries<int>
            else
                Series.ofOptionalObservations [ for i, c in cells -> i, (c |> Option.map cellText) ] :> ISeries<int>
        Frame.ofColumns [ for n in names -> n, column n ]

    let private has (f: Frame<int, string>) (col: string) = f.ColumnKeys |> Seq.contains col

    let private require (what: string) (f: Frame<int, string>) (cols: string list) =
        let missing = cols |> List.filter (has f >> not)
        if not missing.IsEmpty then
            invalidArg
                "frame"
                (sprintf "%s needs the column(s) %s; the frame has %s" what (String.Join(", ", missing)) (String.Join(", ", f.ColumnKeys)))

    // ---- reading -----------------------------------------------------------------------------------------------

    /// The core's evaluation results as a long frame: model, task, setting keys (sorted), metric, value, n.
    let ofResults (results: EvalResult seq) : Frame<int, string> =
        let rs = List.ofSeq results
        let keys = rs |> List.collect (fun r -> List.ofSeq r.Setting.Keys) |> List.distinct |> List.sort
        ofRows ([ "model"; "task" ] @ keys @ [ "metric"; "value"; "n" ]) [
            for r in rs ->
                Map [
                    yield "model", Cell.Text r.Model
                    yield "task", Cell.Text r.Task
                    for KeyValue(k, v) in r.Setting do
                        match cellOf v with
                        | Some c -> yield k, c
                        | None -> ()
                    yield "metric", Cell.Text r.Metric
                    yield "value", Cell.Num r.Value
                    yield "n", Cell.Num(float r.N)
                ]
        ]

    let private jsonCell (n: JsonNode) : Cell option =
        match n with
        | null -> None
        | n ->
            match n.GetValueKind() with
            | JsonValueKind.Number -> Some(Cell.Num(n.GetValue<float>()))
            | JsonValueKind.String ->
                match n.GetValue<string>() with
                | "NaN" -> Some(Cell.Num nan)
                | "Infinity" -> Some(Cell.Num infinity)
                | "-Infinity" -> Some(Cell.Num -infinity)
                | s -> Some(Cell.Text s)
            | JsonValueKind.True -> Some(Cell.Text "true")
            | JsonValueKind.False -> Some(Cell.Text "false")
            | _ -> Some(Cell.Text(n.ToJsonString()))

    /// Objects of a JSON Lines file, nested objects flattened one level (`setting.pairs` → `pairs`).
    let private jsonLines (path: string) : Row list =
        if not (File.Exists path) then raise (FileNotFoundException(sprintf "results file not found: %s" path, path))
        [
            for line in File.ReadLines path do
                if line.Trim() <> "" then
                    let o =
                        try
                            JsonNode.Parse(line).AsObject()
                        with e ->
                            raise (FormatException(sprintf "%s: a line is not a JSON object: %s" path e.Message))
                    yield
                        Map [
                            for KeyValue(k, v) in o do
                                match v with
                                | :? JsonObject as inner ->
                                    for KeyValue(k2, v2) in inner do
                                        match jsonCell v2 with
                                        | Some c -> yield k2, c
                                        | None -> ()
                                | v ->
                                    match jsonCell v with
                                    | Some c -> yield k, c
                                    | None -> ()
                        ]
        ]

    /// Any JSON Lines file of flat objects (setting objects flattened), e.g. the trainer's metrics.jsonl.
    let readJsonLines (path: string) : Frame<int, string> = ofRows [] (jsonLines path)

    /// A CSV file (a results CSV of the core, or a frame saved by <see cref="save"/>).
    /// Columns whose every cell reads as a number are numeric, the rest text (Deedle's own inference would make a
    /// column of 0s and 1s, such as passkey depths, boolean).
    let readCsv (path: string) : Frame<int, string> =
        if not (File.Exists path) then raise (FileNotFoundException(sprintf "results file not found: %s" path, path))
        let raw = Frame.ReadCsv(path, hasHeaders = true, inferTypes = false, culture = "")
        let number (t: string) =
            match Double.TryParse(t, NumberStyles.Float, inv) with
            | true, v -> Some v
            | _ ->
                match t with
                | "NaN" -> Some nan
                | "Infinity" -> Some infinity
                | "-Infinity" -> Some -infinity
                | _ -> None
        let numeric =
            set [
                for c in raw.ColumnKeys do
                    let cells = raw.Columns.[c].Values |> Seq.map string |> Seq.filter (fun t -> t <> "") |> List.ofSeq
                    if not cells.IsEmpty && cells |> List.forall (fun t -> (number t).IsSome) then yield c
            ]
        ofRows (List.ofSeq raw.ColumnKeys) [
            for r in rows raw ->
                r
                |> Map.toList
                |> List.choose (fun (k, c) ->
                    match c with
                    | Cell.Text "" -> None
                    | Cell.Text t when numeric.Contains k -> Some(k, Cell.Num (number t).Value)
                    | c -> Some(k, c))
                |> Map.ofList
        ]

    /// Evaluation results written by the core (ResultFiles) or `statex eval`: .csv or .jsonl.
    let readResults (path: string) : Frame<int, string> =
        match Path.GetExtension(path).ToLowerInvariant() with
        | ".csv" -> readCsv path
        | ".jsonl"
        | ".json"
        | ".ndjson" ->
            let rs = jsonLines path
            let settingKeys =
                rs
                |> List.collect (fun r -> [ for KeyValue(k, _) in r -> k ])
                |> List.filter (fun k -> not (List.contains k [ "model"; "task"; "metric"; "value"; "n" ]))
                |> List.distinct
                |> List.sort
            ofRows ([ "model"; "task" ] @ settingKeys @ [ "metric"; "value"; "n" ]) rs
        | e -> invalidArg "path" (sprintf "%s: unknown results format '%s' (use .csv or .jsonl)" path e)

    /// The trainer's metrics.jsonl (step, loss, lr, grad_norm, tokens, ...): one row per logged step.
    let readMetrics (path: string) : Frame<int, string> = readJsonLines path

    /// A sweep's store: one row per run (its latest record): hash, status, the labels, the metrics, seconds, error.
    let ofStore (folder: string) : Frame<int, string> =
        let records = Sweep.latest folder
        ofRows [ "hash"; "status" ] [
            for r in records ->
                Map [
                    yield "hash", Cell.Text r.Hash
                    yield "status", Cell.Text r.Status
                    for k, v in r.Labels -> k, Cell.Text v
                    for KeyValue(k, v) in r.Metrics -> k, Cell.Num v
                    yield "seconds", Cell.Num r.Seconds
                    match r.Error with
                    | Some e -> yield "error", Cell.Text e
                    | None -> ()
                ]
        ]

    /// Rows of several frames together (columns: the union; missing cells where a frame lacks one).
    let concat (frames: Frame<int, string> list) : Frame<int, string> =
        let columns = frames |> List.collect (fun f -> List.ofSeq f.ColumnKeys) |> List.distinct
        ofRows columns (frames |> List.collect rows)

    /// The file `fileName` of every finished run of a sweep (e.g. "eval.jsonl", "metrics.jsonl"), each row
    /// prefixed with the run's labels and hash; runs without the file are left out.
    let sweepFiles (folder: string) (fileName: string) : Frame<int, string> =
        let frames = [
            for r in Sweep.latest folder do
                let file = Path.Combine(Sweep.runFolder folder r.Hash, fileName)
                if r.Status = "done" && File.Exists file then
                    let f =
                        if fileName.EndsWith ".csv" then readCsv file
                        elif fileName = "metrics.jsonl" then readMetrics file
                        else readResults file
                    let prefix = Map [ yield "hash", Cell.Text r.Hash; for k, v in r.Labels -> k, Cell.Text v ]
                    let labelColumns = "hash" :: (r.Labels |> List.map fst)
                    yield
                        ofRows
                            (labelColumns @ List.ofSeq f.ColumnKeys)
                            (rows f |> List.map (fun row -> Map.fold (fun acc k v -> Map.add k v acc) row prefix))
        ]
        if frames.IsEmpty then ofRows [] [] else concat frames

    // ---- shaping -----------------------------------------------------------------------------------------------

    /// Rows whose column `col` reads `value` (numbers compared by their invariant text).
    let where (col: string) (value: string) (f: Frame<int, string>) =
        require "where" f [ col ]
        ofRows (List.ofSeq f.ColumnKeys) (rows f |> List.filter (fun r -> r.TryFind col |> Option.map cellText = Some value))

    /// Rows satisfying a predicate.
    let filter (predicate: Row -> bool) (f: Frame<int, string>) = ofRows (List.ofSeq f.ColumnKeys) (rows f |> List.filter predicate)

    /// A new or replaced column computed from each row.
    let withColumn (name: string) (compute: Row -> Cell) (f: Frame<int, string>) =
        ofRows (List.ofSeq f.ColumnKeys @ [ name ]) (rows f |> List.map (fun r -> r.Add(name, compute r)))

    /// Rewrites the text of a column (e.g. "statex-seed1" → "statex" to pool seeds).
    let mapColumn (col: string) (f': string -> string) (f: Frame<int, string>) =
        withColumn
            col
            (fun r ->
                match r.TryFind col with
                | Some c -> Cell.Text(f' (cellText c))
                | None -> Cell.Text "")
            f

    /// Only these columns, in this order.
    let select (cols: string list) (f: Frame<int, string>) =
        require "select" f cols
        ofRows cols (rows f |> List.map (Map.filter (fun k _ -> List.contains k cols)))

    /// Left join on key columns: every row of `left`, with the columns of the first `right` row whose keys match.
    let join (keys: string list) (left: Frame<int, string>) (right: Frame<int, string>) =
        require "join (left)" left keys
        require "join (right)" right keys
        let keyOf (r: Row) = keys |> List.map (fun k -> r.TryFind k |> Option.map cellText)
        let lookup = rows right |> List.rev |> List.map (fun r -> keyOf r, r) |> Map.ofList
        let columns = List.ofSeq left.ColumnKeys @ List.ofSeq right.ColumnKeys |> List.distinct
        ofRows columns [
            for r in rows left ->
                match lookup.TryFind(keyOf r) with
                | Some m -> Map.fold (fun acc k v -> if acc |> Map.containsKey k then acc else Map.add k v acc) r m
                | None -> r
        ]

    /// Adds `state_size` from a model-name → elements table (e.g. computed with Model.stateSize).
    let withStateSizes (sizes: (string * int64) list) (f: Frame<int, string>) =
        require "withStateSizes" f [ "model" ]
        let table = Map sizes
        f
        |> filter (fun r ->
            match r.TryFind "model" with
            | Some(Cell.Text m) -> table.ContainsKey m
            | _ -> false)
        |> withColumn "state_size" (fun r ->
            match r.["model"] with
            | Cell.Text m -> Cell.Num(float table.[m])
            | c -> Cell.Num(float table.[cellText c]))

    let private compareCells (a: Cell option) (b: Cell option) =
        match a, b with
        | None, None -> 0
        | None, _ -> -1
        | _, None -> 1
        | Some(Cell.Num x), Some(Cell.Num y) -> compare x y
        | Some(Cell.Num _), Some(Cell.Text _) -> -1
        | Some(Cell.Text _), Some(Cell.Num _) -> 1
        | Some(Cell.Text x), Some(Cell.Text y) -> String.CompareOrdinal(x, y)

    let private compareKeys (a: Cell option list) (b: Cell option list) =
        List.fold2 (fun acc x y -> if acc <> 0 then acc else compareCells x y) 0 a b

    /// Mean, sample standard deviation and count of `value` for every combination of the `by` columns,
    /// sorted by them (numbers numerically). Rows without a numeric `value` are left out.
    let summarize (by: string list) (value: string) (f: Frame<int, string>) : Frame<int, string> =
        require "summarize" f (by @ [ value ])
        let groups =
            rows f
            |> List.choose (fun r ->
                match r.TryFind value with
                | Some(Cell.Num v) when not (Double.IsNaN v) -> Some(r, v)
                | _ -> None)
            |> List.groupBy (fun (r, _) -> by |> List.map r.TryFind)
            |> List.sortWith (fun (a, _) (b, _) -> compareKeys a b)
        ofRows (by @ [ "mean"; "std"; "n" ]) [
            for key, members in groups ->
                let vs = members |> List.map snd
                let n = float vs.Length
                let mean = List.average vs
                let std = if vs.Length < 2 then 0.0 else sqrt ((vs |> List.sumBy (fun v -> (v - mean) ** 2.0)) / (n - 1.0))
                Map [
                    for k, c in List.zip by key do
                        match c with
                        | Some c -> yield k, c
                        | None -> ()
                    yield "mean", Cell.Num mean
                    yield "std", Cell.Num std
                    yield "n", Cell.Num n
                ]
        ]

    let private tasks (names: string list) (metrics: string list) (f: Frame<int, string>) =
        require "this analysis" f [ "task"; "metric"; "value" ]
        f
        |> filter (fun r ->
            (match r.TryFind "task" with
             | Some(Cell.Text t) -> List.contains t names
             | _ -> false)
            && (metrics.IsEmpty
                || (match r.TryFind "metric" with
                    | Some(Cell.Text m) -> List.contains m metrics
                    | _ -> false)))

    // ---- the StateX analyses -----------------------------------------------------------------------------------

    /// Tasks that measure recall from the state: MQAR, needle-in-a-haystack, recall QA.
    let recallTasks = [ "mqar"; "niah"; "recall_qa" ]

    /// Recall accuracy against recurrent state size: mean/std over the rows (seeds, settings) of each
    /// (`by`..., task, state_size). Needs a `state_size` column (see withStateSizes, join).
    let recallVsStateSize (by: string list) (f: Frame<int, string>) =
        require "recallVsStateSize" f [ "state_size" ]
        f |> tasks recallTasks [ "accuracy"; "contains" ] |> summarize (by @ [ "task"; "state_size" ]) "value"

    /// Passkey accuracy as a grid: a row per length, a column per depth (named by the depth), the mean over
    /// every other column (models, seeds, trials). Filter first (Analysis.where) to chart one model.
    let passkeyGrid (f: Frame<int, string>) : Frame<int, string> =
        let s = f |> tasks [ "passkey" ] [ "accuracy" ] |> summarize [ "length"; "depth" ] "value" |> rows
        let num (r: Row) k =
            match r.[k] with
            | Cell.Num v -> v
            | Cell.Text t -> Double.Parse(t, inv)
        let depths = s |> List.map (fun r -> num r "depth") |> List.distinct |> List.sort
        let lengths = s |> List.map (fun r -> num r "length") |> List.distinct |> List.sort
        let name (d: float) = d.ToString("R", inv)
        ofRows ("length" :: (depths |> List.map name)) [
            for l in lengths ->
                Map [
                    yield "length", Cell.Num l
                    for r in s do
                        if num r "length" = l then yield name (num r "depth"), r.["mean"]
                ]
        ]

    /// In-context-learning accuracy against the number of shots, per `by`.
    let iclVsShots (by: string list) (f: Frame<int, string>) = f |> tasks [ "icl" ] [ "accuracy" ] |> summarize (by @ [ "shots" ]) "value"

    /// Mean loss per position bin (`position` = the bin's end), per `by`.
    let lossVsPosition (by: string list) (f: Frame<int, string>) =
        f
        |> tasks [ "loss_vs_position" ] [ "loss" ]
        |> summarize (by @ [ "to" ]) "value"
        |> fun s ->
            ofRows (by @ [ "position"; "mean"; "std"; "n" ]) (rows s |> List.map (fun r -> (r.Remove "to").Add("position", r.["to"])))

    /// Training curves: `value` (e.g. "loss") against step, mean/std across the runs of each `by` group.
    let trainingCurves (by: string list) (value: string) (f: Frame<int, string>) =
        require "trainingCurves" f [ "step"; value ]
        summarize (by @ [ "step" ]) value f

    /// Several metrics.jsonl files as one frame with a `run` column naming each.
    let readRuns (runs: (string * string) list) : Frame<int, string> =
        concat [ for name, path in runs -> readMetrics path |> withColumn "run" (fun _ -> Cell.Text name) ]

    /// Baseline and candidate side by side: for every combination of `keys`, the mean and std of `value` where
    /// column `col` is `baseline`, the same where it is `candidate`, and delta = candidate − baseline.
    /// E.g. `sideBySide "model" "lpt" "statex" ["task"; "metric"] "value"`.
    let sideBySide (col: string) (baseline: string) (candidate: string) (keys: string list) (value: string) (f: Frame<int, string>) =
        require "sideBySide" f (col :: value :: keys)
        let summary name =
            f |> where col name |> summarize keys value |> rows |> List.map (fun r -> keys |> List.map r.TryFind, r) |> Map.ofList
        let b, c = summary baseline, summary candidate
        if b.IsEmpty then invalidArg "baseline" (sprintf "no rows where %s = %s" col baseline)
        if c.IsEmpty then invalidArg "candidate" (sprintf "no rows where %s = %s" col candidate)
        let allKeys = Seq.append b.Keys c.Keys |> Seq.distinct |> Seq.sortWith compareKeys |> List.ofSeq
        let num (m: Map<_, Row>) k field =
            m.TryFind k
            |> Option.bind (fun r ->
                match r.TryFind field with
                | Some(Cell.Num v) -> Some v
                | _ -> None)
        ofRows (keys @ [ baseline; baseline + "_std"; candidate; candidate + "_std"; "delta" ]) [
            for k in allKeys ->
                Map [
                    for name, cell in List.zip keys k do
                        match cell with
                        | Some c -> yield name, c
                        | None -> ()
                    match num b k "mean" with
                    | Some v -> yield baseline, Cell.Num v
                    | None -> ()
                    match num b k "std" with
                    | Some v -> yield baseline + "_std", Cell.Num v
                    | None -> ()
                    match num c k "mean" with
                    | Some v -> yield candidate, Cell.Num v
                    | None -> ()
                    match num c k "std" with
                    | Some v -> yield candidate + "_std", Cell.Num v
                    | None -> ()
                    match num b k "mean", num c k "mean" with
                    | Some x, Some y -> yield "delta", Cell.Num(y - x)
                    | _ -> ()
                ]
        ]

    // ---- saving ------------------------------------------------------------------------------------------------

    /// Writes a frame as CSV (invariant culture, no row keys); returns the path.
    let save (path: string) (f: Frame<int, string>) : string =
        match Path.GetDirectoryName(Path.GetFullPath path) with
        | null -> ()
        | d -> Directory.CreateDirectory d |> ignore
        f.SaveCsv(path, includeRowKeys = false, culture = inv)
        path

    /// The frame as an aligned text table (numbers to 4 significant digits), for printing.
    let format (f: Frame<int, string>) : string =
        let cols = List.ofSeq f.ColumnKeys
        let show (c: Cell option) =
            match c with
            | Some(Cell.Num v) -> if Math.Abs v >= 1e6 || Math.Floor v = v then v.ToString("0.######", inv) else v.ToString("G4", inv)
            | Some(Cell.Text t) -> t
            | None -> ""
        let table = cols :: [ for r in rows f -> [ for c in cols -> show (r.TryFind c) ] ]
        let widths = [ for i in 0 .. cols.Length - 1 -> table |> List.map (fun r -> r.[i].Length) |> List.max ]
        table |> List.map (fun r -> List.map2 (fun (c: string) w -> c.PadLeft w) r widths |> String.concat "  ") |> String.concat "\n"

    /// Prints the frame as a text table.
    let print (f: Frame<int, string>) = Console.WriteLine(format f)

    /// A numeric column as a list (missing cells left out).
    let floats (col: string) (f: Frame<int, string>) : float list =
        require "floats" f [ col ]
        rows f
        |> List.choose (fun r ->
            match r.TryFind col with
            | Some(Cell.Num v) -> Some v
            | _ -> None)

    /// A column as text, one entry per row ("" where missing).
    let texts (col: string) (f: Frame<int, string>) : string list =
        require "texts" f [ col ]
        rows f
        |> List.map (fun r ->
            match r.TryFind col with
            | Some c -> cellText c
            | None -> "")
