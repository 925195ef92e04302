namespace StateX

open System
open System.Diagnostics
open System.IO
open System.Text
open System.Text.Json
open System.Text.Json.Nodes
open System.Threading
open System.Threading.Tasks

/// One value of a sweep axis: how it is labelled in the store and how it changes a description.
type Point<'D> = { Label: string; Set: 'D -> 'D }

/// A named dimension of a sweep: discrete points (grids, zips, random choice) or a sampler (random sweeps only).
type Axis<'D> = { Name: string; Points: Point<'D> list; Sampler: (Random -> Point<'D>) option }

/// One planned run: the description, its stable hash (the run's key) and the axis labels that made it.
type PlannedRun<'D> = { Labels: (string * string) list; Description: 'D; Hash: string }

/// A sweep: the runs to make, in order (duplicate descriptions appear once).
type Sweep<'D> = { Runs: PlannedRun<'D> list }

/// One line of a sweep's store (runs.jsonl).
type RunRecord = {
    Hash: string
    /// "done" or "failed".
    Status: string
    Labels: (string * string) list
    Metrics: Map<string, float>
    Error: string option
    Seconds: float
    Finished: DateTimeOffset
    /// The description as compact JSON (ValueJson); <c>Sweep.description</c> reads it back.
    Description: string
}

/// How a sweep runs: where (the store and the run folders), how many runs at once, where progress goes.
type SweepOptions = {
    Folder: string
    /// Runs at once (1: sequential). Use more only where the device has room for several.
    Parallelism: int
    /// Run again the runs whose last record is a failure (default); false keeps them as failed.
    RetryFailed: bool
    Log: string -> unit
}

[<RequireQualifiedAccess>]
module Axis =
    let private label (v: 'V) =
        match box v with
        | :? string as s -> s
        | _ -> ValueJson.toText v

    /// An axis over values: `Axis.values "ratio" [2; 4; 8] (fun r d -> ...)`. Labels are the values' canonical text.
    let values (name: string) (values: 'V list) (set: 'V -> 'D -> 'D) : Axis<'D> =
        if List.isEmpty values then invalidArg "values" (sprintf "axis '%s' has no values" name)
        { Name = name; Points = values |> List.map (fun v -> { Label = label v; Set = set v }); Sampler = None }

    /// An axis of named changes: `Axis.labelled "init" [ "reinit", setReinit; "preserve", setPreserve ]`.
    let labelled (name: string) (points: (string * ('D -> 'D)) list) : Axis<'D> =
        if List.isEmpty points then invalidArg "points" (sprintf "axis '%s' has no points" name)
        { Name = name; Points = points |> List.map (fun (l, f) -> { Label = l; Set = f }); Sampler = None }

    let private sampled name (draw: Random -> 'V) (set: 'V -> 'D -> 'D) : Axis<'D> = {
        Name = name
        Points = []
        Sampler = Some(fun rng -> let v = draw rng in { Label = label v; Set = set v })
    }

    /// Uniform in [lo, hi) (random sweeps only).
    let uniform name (lo: float) (hi: float) set = sampled name (fun rng -> lo + (hi - lo) * rng.NextDouble()) set

    /// Log-uniform in [lo, hi) (learning rates; random sweeps only).
    let logUniform name (lo: float) (hi: float) set =
        if lo <= 0.0 || hi <= lo then invalidArg "lo" (sprintf "axis '%s': log-uniform needs 0 < lo < hi" name)
        sampled name (fun rng -> exp (log lo + (log hi - log lo) * rng.NextDouble())) set

    /// A uniform integer in [lo, hi] (random sweeps only).
    let intRange name (lo: int) (hi: int) set = sampled name (fun rng -> rng.Next(lo, hi + 1)) set

[<RequireQualifiedAccess>]
module Sweep =
    let private plan (runs: ((string * string) list * 'D) list) : Sweep<'D> =
        let seen = Collections.Generic.HashSet<string>()
        {
            Runs = [
                for labels, d in runs do
                    let h = Hash.short d
                    if seen.Add h then yield { Labels = labels; Description = d; Hash = h }
            ]
        }

    let private discrete (a: Axis<'D>) =
        if List.isEmpty a.Points then
            invalidArg "axes" (sprintf "axis '%s' is sampled, not a list of points: use it in Sweep.random" a.Name)
        a.Points

    /// One run.
    let single (d: 'D) : Sweep<'D> = plan [ [], d ]

    /// Runs given as descriptions (labelled by their position).
    let ofList (ds: 'D list) : Sweep<'D> = plan (ds |> List.mapi (fun i d -> [ "run", string i ], d))

    /// Every combination of the axes' points, applied in axis order to the baseline (the first axis varies slowest).
    let grid (axes: Axis<'D> list) (baseline: 'D) : Sweep<'D> =
        let rec combos =
            function
            | [] -> [ [], id ]
            | (a: Axis<'D>) :: rest -> [
                for p in discrete a do
                    for labels, f in combos rest -> (a.Name, p.Label) :: labels, (p.Set >> f)
              ]
        plan [ for labels, f in combos axes -> labels, f baseline ]

    /// The i-th points of every axis together (all axes must have the same number of points).
    let zip (axes: Axis<'D> list) (baseline: 'D) : Sweep<'D> =
        match axes |> List.map (fun a -> (discrete a).Length) |> List.distinct with
        | [] -> single baseline
        | [ n ] ->
            plan [
                for i in 0 .. n - 1 ->
                    let points = axes |> List.map (fun a -> a.Name, a.Points.[i])
                    points |> List.map (fun (n, p) -> n, p.Label), (points |> List.fold (fun d (_, p) -> p.Set d) baseline)
            ]
        | _ ->
            invalidArg
                "axes"
                (sprintf
                    "zipped axes need equal lengths; got %s"
                    (axes |> List.map (fun a -> sprintf "%s: %d" a.Name a.Points.Length) |> String.concat ", "))

    /// `count` random draws (seeded): each axis contributes a uniformly chosen point or a sample of its distribution.
    let random (seed: int) (count: int) (axes: Axis<'D> list) (baseline: 'D) : Sweep<'D> =
        let rng = Random seed
        plan [
            for _ in 1..count ->
                let points =
                    axes
                    |> List.map (fun a ->
                        match a.Sampler with
                        | Some draw -> a.Name, draw rng
                        | None -> a.Name, a.Points.[rng.Next a.Points.Length])
                points |> List.map (fun (n, p) -> n, p.Label), (points |> List.fold (fun d (_, p) -> p.Set d) baseline)
        ]

    /// The same runs with their descriptions transformed (e.g. parameters into pipelines); keyed by the new hashes.
    let map (f: 'D -> 'E) (s: Sweep<'D>) : Sweep<'E> = plan [ for r in s.Runs -> r.Labels, f r.Description ]

    /// Both sweeps' runs (duplicates once).
    let append (a: Sweep<'D>) (b: Sweep<'D>) : Sweep<'D> = plan [ for r in a.Runs @ b.Runs -> r.Labels, r.Description ]

    /// Every run of a sweep repeated over seeds set by `withSeed`, labelled "seed".
    let seeds (seeds: 'S list) (withSeed: 'S -> 'D -> 'D) (s: Sweep<'D>) : Sweep<'D> =
        let axis = Axis.values "seed" seeds withSeed
        plan [
            for r in s.Runs do
                for p in axis.Points -> r.Labels @ [ "seed", p.Label ], p.Set r.Description
        ]

    let count (s: Sweep<'D>) = s.Runs.Length

    // ---- the store ---------------------------------------------------------------------------------------------

    let storeFile (folder: string) = Path.Combine(folder, "runs.jsonl")
    let runFolder (folder: string) (hash: string) = Path.Combine(folder, "runs", hash)

    let options (folder: string) = { Folder = folder; Parallelism = 1; RetryFailed = true; Log = fun s -> Console.WriteLine s }

    let private number (d: float) : JsonNode = if Double.IsFinite d then JsonValue.Create d else JsonValue.Create(string d)

    let private recordLine (r: RunRecord) =
        let o = JsonObject()
        o.["hash"] <- JsonValue.Create r.Hash
        o.["status"] <- JsonValue.Create r.Status
        let labels = JsonObject()
        for k, v in r.Labels do
            labels.[k] <- JsonValue.Create v
        o.["labels"] <- labels
        let metrics = JsonObject()
        for KeyValue(k, v) in r.Metrics do
            metrics.[k] <- number v
        o.["metrics"] <- metrics
        o.["error"] <-
            (match r.Error with
             | Some e -> JsonValue.Create e :> JsonNode
             | None -> null)
        o.["seconds"] <- JsonValue.Create(Math.Round(r.Seconds, 3))
        o.["finished"] <- JsonValue.Create(r.Finished.ToString("o", Globalization.CultureInfo.InvariantCulture))
        o.["description"] <- JsonNode.Parse r.Description
        ValueJson.nodeText o

    let private parseRecord (line: string) : RunRecord option =
        try
            let o = JsonNode.Parse(line).AsObject()
            let str (k: string) =
                match o.[k] with
                | null -> None
                | n -> Some(n.GetValue<string>())
            let metric (n: JsonNode) =
                match n.GetValueKind() with
                | JsonValueKind.Number -> n.GetValue<float>()
                | _ -> Double.Parse(n.GetValue<string>(), Globalization.CultureInfo.InvariantCulture)
            Some {
                Hash = (str "hash").Value
                Status = (str "status").Value
                Labels = [ for KeyValue(k, v) in o.["labels"].AsObject() -> k, v.GetValue<string>() ]
                Metrics = Map [ for KeyValue(k, v) in o.["metrics"].AsObject() -> k, metric v ]
                Error = str "error"
                Seconds =
                    (match o.["seconds"] with
                     | null -> 0.0
                     | n -> n.GetValue<float>())
                Finished =
                    (match str "finished" with
                     | Some s -> DateTimeOffset.Parse(s, Globalization.CultureInfo.InvariantCulture)
                     | None -> DateTimeOffset.MinValue)
                Description =
                    (match o.["description"] with
                     | null -> "null"
                     | n -> ValueJson.nodeText n)
            }
        with _ ->
            None

    /// Every record of a sweep folder's store, oldest first. A line cut short by a crash is skipped.
    let records (folder: string) : RunRecord list =
        let file = storeFile folder
        if not (File.Exists file) then
            []
        else
            File.ReadAllLines file |> Seq.filter (fun l -> l.Trim() <> "") |> Seq.choose parseRecord |> List.ofSeq

    /// The latest record of each run, in the order runs first appeared.
    let latest (folder: string) : RunRecord list =
        let all = records folder
        let last = all |> List.fold (fun (m: Map<string, RunRecord>) r -> m.Add(r.Hash, r)) Map.empty
        all |> List.map (fun r -> r.Hash) |> List.distinct |> List.map (fun h -> last.[h])

    /// Reads a record's description back as a value.
    let description<'D> (r: RunRecord) : 'D = ValueJson.ofText<'D> r.Description

    // ---- running -----------------------------------------------------------------------------------------------

    let private rootMessage (e: exn) =
        let rec root (e: exn) =
            match e with
            | :? AggregateException as a when a.InnerExceptions.Count = 1 -> root a.InnerExceptions.[0]
            | e when not (isNull e.InnerException) && (e :? Reflection.TargetInvocationException || e :? TypeInitializationException) ->
                root e.InnerException
            | e -> e
        let r = root e
        sprintf "%s: %s" (r.GetType().Name) r.Message

    let private metricsText (m: Map<string, float>) =
        m
        |> Seq.map (fun (KeyValue(k, v)) -> sprintf "%s=%s" k (v.ToString("G4", Globalization.CultureInfo.InvariantCulture)))
        |> String.concat " "

    let private labelsText (labels: (string * string) list) =
        match labels with
        | [] -> ""
        | ls -> (ls |> List.map (fun (k, v) -> sprintf "%s=%s" k v) |> String.concat " ") + " "

    /// <summary>
    /// Runs every planned run not already done: each in its own folder (<c>runs/HASH</c> under the sweep folder), its
    /// record (metrics, or the error of a failed run) appended to <c>runs.jsonl</c> as soon as it ends. Runs whose latest
    /// record is "done" are skipped, so a crashed or extended sweep resumes where it stopped; a failing run is
    /// recorded and the others go on. Returns the latest record of every planned run, in plan order.
    /// </summary>
    let runWith (o: SweepOptions) (run: 'D -> string -> Map<string, float>) (sweep: Sweep<'D>) : RunRecord list =
        if o.Parallelism < 1 then invalidArg "options" (sprintf "parallelism must be at least 1 (got %d)" o.Parallelism)
        Directory.CreateDirectory o.Folder |> ignore
        let previous = latest o.Folder |> List.map (fun r -> r.Hash, r) |> Map.ofList
        let isFinished (p: PlannedRun<'D>) =
            match previous.TryFind p.Hash with
            | Some r -> r.Status = "done" || (r.Status = "failed" && not o.RetryFailed)
            | None -> false
        let todo = sweep.Runs |> List.filter (isFinished >> not)
        let total = sweep.Runs.Length
        o.Log(
            sprintf
                "sweep %s: %d runs, %d already finished, %d to run%s"
                o.Folder
                total
                (total - todo.Length)
                todo.Length
                (if o.Parallelism > 1 then sprintf " (%d at once)" o.Parallelism else "")
        )
        let gate = obj ()
        let results = Collections.Concurrent.ConcurrentDictionary<string, RunRecord>()
        let mutable started = 0
        let runOne (p: PlannedRun<'D>) =
            let index = Interlocked.Increment &started
            let tag = sprintf "[%d/%d] %s(%s)" index todo.Length (labelsText p.Labels) p.Hash
            let dir = runFolder o.Folder p.Hash
            Directory.CreateDirectory dir |> ignore
            // Another sweep process on this folder may be on the same run: one at a time, and whoever comes second
            // takes the record the first one wrote instead of running it again.
            use _ =
                StateX.IO.FileLock.Acquire(dir + ".lock", Action<string>(fun m -> o.Log(sprintf "%s %s" tag m)), sprintf "run %s" p.Hash)
            match latest o.Folder |> List.tryFind (fun r -> r.Hash = p.Hash) with
            | Some r when r.Status = "done" || (r.Status = "failed" && not o.RetryFailed && not (previous.ContainsKey p.Hash)) ->
                o.Log(sprintf "%s finished by another process meanwhile (%s), not run again" tag r.Status)
                results.[p.Hash] <- r
            | _ ->
                let text = ValueJson.toText p.Description
                File.WriteAllText(Path.Combine(dir, "description.json"), ValueJson.toIndentedText p.Description + "\n")
                o.Log(sprintf "%s running" tag)
                let clock = Stopwatch.StartNew()
                let status, metrics, error =
                    try
                        "done", run p.Description dir, None
                    with e ->
                        "failed", Map.empty, Some(rootMessage e)
                let r = {
                    Hash = p.Hash
                    Status = status
                    Labels = p.Labels
                    Metrics = metrics
                    Error = error
                    Seconds = clock.Elapsed.TotalSeconds
                    Finished = DateTimeOffset.UtcNow
                    Description = text
                }
                lock gate (fun () -> File.AppendAllText(storeFile o.Folder, recordLine r + "\n", UTF8Encoding false))
                match error with
                | None -> o.Log(sprintf "%s done in %.1f s  %s" tag r.Seconds (metricsText metrics))
                | Some e -> o.Log(sprintf "%s FAILED after %.1f s: %s" tag r.Seconds e)
                results.[p.Hash] <- r
        if o.Parallelism = 1 then
            List.iter runOne todo
        else
            Parallel.ForEach(todo, ParallelOptions(MaxDegreeOfParallelism = o.Parallelism), Action<_>(runOne)) |> ignore
        let all = [
            for p in sweep.Runs ->
                match results.TryGetValue p.Hash with
                | true, r -> r
                | _ -> previous.[p.Hash]
        ]
        let failed = all |> List.filter (fun r -> r.Status <> "done") |> List.length
        o.Log(sprintf "sweep %s: %d done, %d failed" o.Folder (all.Length - failed) failed)
        all

    /// Runs a sweep sequentially in `folder` (see <see cref="runWith"/>).
    let run (folder: string) (run: 'D -> string -> Map<string, float>) (sweep: Sweep<'D>) = runWith (options folder) run sweep
