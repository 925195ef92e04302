/// Crash consistency and concurrent use of a study folder (`statex demo`'s worker processes on the smoke preset): a
/// worker killed in the middle of its stages, three times, and resumed; three workers on one folder at once. Issue 23.
module StateX.Tests.StudyCrashTests

open System
open System.Diagnostics
open System.IO
open System.Text.Json.Nodes
open System.Text.RegularExpressions
open Expecto
open StateX.Tests.MetricsLines
open StateX.IO
open StateX.Training

/// The variable that fixes the kill points (the crash tests' own: a failure message gives the seed that produced it).
let private seedVariable = "STATEX_CRASH_SEED"

/// `statex demo --preset smoke` as one of its workers runs a job: the gla family, seed 0, one arm's pipelines.
let private workerArgs (out: string) (arm: string) = [
    "demo"
    "--preset"
    "smoke"
    "--out"
    out
    "--device"
    "cpu"
    "--seeds"
    "0"
    "--families"
    "gla"
    "--worker"
    "arm:" + arm
]

/// Starts a worker (`crashAt`: STATEX_CRASH_AT for it); returns the process and its output so far (stdout and stderr).
let private start (out: string) (arm: string) (crashAt: string option) =
    Cli.start [ "OMP_NUM_THREADS", Some "1"; CrashPoints.Variable, crashAt ] (workerArgs out arm)

/// Waits for a worker; its exit code and output.
let private finish (p: Process, text: unit -> string) =
    if not (p.WaitForExit 180_000) then
        p.Kill true
        failwithf "the study worker did not finish in 180 s:\n%s" (text ())
    p.WaitForExit()
    let code = p.ExitCode
    p.Dispose()
    code, text ()

let private run out arm crashAt = finish (start out arm crashAt)

type private Event =
    | Ran
    | Skipped

/// The stages a worker's output says it ran or skipped, in order, as (stage folder name, event).
let private events (output: string) =
    let line = Regex(@"\] (\w+) \(([0-9a-f]+)\): (running in |done earlier, skipped)")
    [
        for l in output.Split('\n') do
            let m = line.Match l
            if m.Success then
                yield sprintf "%s-%s" m.Groups.[2].Value m.Groups.[1].Value, (if m.Groups.[3].Value = "running in " then Ran else Skipped)
    ]

let private stagesOf (root: string) = Path.Combine(root, "stages")
let private stage (root: string) (name: string) = Path.Combine(stagesOf root, name)
let private isDone (dir: string) = File.Exists(Path.Combine(dir, "done.json"))

let private bytesOr (path: string) = if File.Exists path then File.ReadAllBytes path else [||]

/// What a finished stage left: done.json, metrics.jsonl, the model's weights, the evaluation's results.
let private outputsOf (dir: string) = [
    for f in [ "done.json"; "metrics.jsonl"; Path.Combine("model", "model.safetensors"); "results.jsonl" ] ->
        f, bytesOr (Path.Combine(dir, f))
]

/// The newest checkpoint of a training stage whose manifest holds, or 0.
let private lastComplete (dir: string) =
    if not (Directory.Exists(Path.Combine(dir, "checkpoints"))) then
        0
    else
        CheckpointStore(dir, warn = Action<string>(ignore)).List()
        |> Seq.tryFind (fun struct (_, d) -> isNull (CheckpointStore.Validate d))
        |> Option.map (fun struct (s, _) -> s)
        |> Option.defaultValue 0

/// An uninterrupted study folder, made once: the statex arm's worker, then the LPT arm's (which shares its two
/// pretraining stages); with the stage folders each pipeline goes through, in order.
let private straight =
    lazy
        (let root = Path.Combine(Fixtures.tempDir (), "straight")
         let code, statex = run root "statex" None
         if code <> 0 then failwithf "the uninterrupted statex worker failed (%d):\n%s" code statex
         let code, lpt = run root "lpt" None
         if code <> 0 then failwithf "the uninterrupted lpt worker failed (%d):\n%s" code lpt
         root, List.map fst (events statex), List.map fst (events lpt))

/// Every stage of `names` in `root` computed what the uninterrupted run's did: one metrics line per step, each as
/// there (so none lost, none twice), the same weights and evaluation results, byte for byte.
let private expectAsStraight (root: string) (names: string list) (context: string) =
    let reference, _, _ = straight.Force()
    for name in names do
        let dir, ref = stage root name, stage reference name
        Expect.isTrue (isDone dir) (sprintf "%s: stage %s is done" context name)
        let path = Path.Combine(dir, "metrics.jsonl")
        let lines = completeLines path
        let raw = if File.Exists path then File.ReadAllLines path else [||]
        Expect.equal raw.Length lines.Length (sprintf "%s: %s: no torn line is left" context name)
        Expect.equal
            (lines |> Array.map stepOf)
            [| 1 .. (completeLines (Path.Combine(ref, "metrics.jsonl"))).Length |]
            (sprintf "%s: %s: one metrics line per step, none lost or twice" context name)
        Expect.equal
            (lines |> Array.map deterministic)
            (completeLines (Path.Combine(ref, "metrics.jsonl")) |> Array.map deterministic)
            (sprintf "%s: %s: every metrics line as in the uninterrupted run" context name)
        for f in [ Path.Combine("model", "model.safetensors"); "results.jsonl"; "results.csv" ] do
            Expect.isTrue
                (bytesOr (Path.Combine(dir, f)) = bytesOr (Path.Combine(ref, f)))
                (sprintf "%s: %s: %s byte-identical to the uninterrupted run's" context name f)

[<Tests>]
let tests =
    testSequenced
    <| testList "study crash" [
        test
            "a study worker killed three times in the middle of a stage (after a step, in a checkpoint, in a metrics line) resumes bit for bit, no stage run twice" {
            let seed =
                match Environment.GetEnvironmentVariable seedVariable with
                | null
                | "" -> Random.Shared.Next()
                | s -> int s
            let rng = Random seed
            let context = sprintf "%s=%d" seedVariable seed
            let reference, statexStages, _ = straight.Force()
            // The training steps of each stage (0: expand, evaluate), and the study's steps in the order it takes them.
            let steps = [ for s in statexStages -> (completeLines (Path.Combine(stage reference s, "metrics.jsonl"))).Length ]
            let total = List.sum steps
            let order = [
                for s, n in List.zip statexStages steps do
                    for j in 1..n -> s, j
            ]
            Expect.equal total 14 "the smoke study's statex arm trains 4 + 6 + 4 steps"
            // Three kills in a row, each in the worker that resumes the one before, each at the step it is working on:
            //   1. after a random optimiser step that is not a stage's first (the stage has a checkpoint and metrics
            //      lines of its own, the step's line is not written);
            //   2. inside a random checkpoint write (the step's metrics line is on disk, its checkpoint is not: the
            //      resumed worker must drop that line and redo the step, or the stage would hold it twice);
            //   3. half-way through a random metrics line (a torn line).
            // A worker resumes at the step after the last durable one, so kill N lands at step durable + k of `order`.
            let firsts = [
                for i, (_, j) in List.indexed order do
                    if j >= 2 then i + 1
            ]
            let k1 = firsts.[rng.Next firsts.Length]
            let k2 = rng.Next(1, total - (k1 - 1) + 1)
            let k3 = rng.Next(1, total - (k1 - 1) - (k2 - 1) + 1)
            let plan = [ CrashPoints.Step, k1; CrashPoints.CheckpointFiles, k2; CrashPoints.MetricsLine, k3 ]
            let context = sprintf "%s (kills %s)" context (String.Join(", ", plan |> List.map (fun (p, k) -> sprintf "%s:%d" p k)))
            let root = Path.Combine(Fixtures.tempDir (), "killed")
            // Stage → its outputs when first seen done; the metrics lines on disk before each kill, up to the checkpoint.
            let mutable frozen: Map<string, (string * byte array) list> = Map.empty
            let mutable preserved = []
            let mutable killedIn = []
            let mutable outputs = []
            let mutable killedPids = []
            let mutable doneAfter = []
            let mutable durable = 0
            for point, k in plan do
                let p, text = start root "statex" (Some(sprintf "%s:%d" point k))
                let pid = p.Id
                let code, output = finish (p, text)
                Expect.equal code 137 (sprintf "%s: the worker died at %s:%d (exit %d)\n%s" context point k code output)
                // The stages done so far are frozen: nothing may write to them again.
                for name in statexStages do
                    if isDone (stage root name) && not (frozen.ContainsKey name) then
                        frozen <- frozen.Add(name, outputsOf (stage root name))
                let unfinished = statexStages |> List.filter (fun s -> Directory.Exists(stage root s) && not (isDone (stage root s)))
                Expect.equal unfinished.Length 1 (sprintf "%s: one stage was in progress when %s killed it" context point)
                let s = unfinished.Head
                let dir = stage root s
                let last = lastComplete dir
                let path = Path.Combine(dir, "metrics.jsonl")
                let onDisk = completeLines path
                // In the middle of the stage the plan says, at the step it says: the step before is durable, the step's
                // own metrics line is absent (a step kill), whole (a checkpoint kill) or torn (a metrics kill).
                let expected, j = order.[durable + k - 1]
                Expect.equal (s, last) (expected, j - 1) (sprintf "%s: %s:%d killed %s at its step %d" context point k expected j)
                let past = onDisk |> Array.filter (fun l -> stepOf l > last) |> Array.map stepOf
                let torn = (if File.Exists path then File.ReadAllLines(path).Length else 0) - onDisk.Length
                let state = sprintf "%s: %s:%d: metrics lines past the checkpoint %A, torn lines %d" context point k past torn
                if point = CrashPoints.Step then
                    Expect.isGreaterThan last 0 (sprintf "%s: the stage had a checkpoint of its own" context)
                    Expect.equal (past, torn) ([||], 0) state
                elif point = CrashPoints.CheckpointFiles then
                    Expect.equal (past, torn) ([| j |], 0) state
                else
                    Expect.equal (past, torn) ([||], 1) state
                durable <- durable + k - 1
                preserved <-
                    preserved
                    @ [
                        for l in onDisk do
                            if stepOf l <= last then s, l
                    ]
                killedIn <- killedIn @ [ s, last ]
                outputs <- outputs @ [ output ]
                killedPids <- killedPids @ [ pid ]
                doneAfter <- doneAfter @ [ statexStages |> List.filter (fun n -> isDone (stage root n)) ]
            let code, final = run root "statex" None
            Expect.equal code 0 (sprintf "%s: the last resume finishes\n%s" context final)
            let outputs = outputs @ [ final ]
            // No stage ran twice: a stage ran once, plus once more per kill inside it; once done, every later worker
            // skipped it, and its files are as they were when it finished.
            for name in statexStages do
                let kills = killedIn |> List.filter (fst >> (=) name) |> List.length
                let ran = outputs |> List.sumBy (fun o -> events o |> List.filter ((=) (name, Ran)) |> List.length)
                Expect.equal ran (1 + kills) (sprintf "%s: stage %s ran once (+%d for the kills inside it)" context name kills)
            for o, finished in List.zip (List.tail outputs) doneAfter do
                for name in finished do
                    Expect.equal
                        (events o |> List.filter (fst >> (=) name) |> List.map snd)
                        [ Skipped ]
                        (sprintf "%s: %s, done before this worker started, was skipped\n%s" context name o)
            for KeyValue(name, files) in frozen do
                for f, bytes in files do
                    Expect.isTrue
                        (bytesOr (Path.Combine(stage root name, f)) = bytes)
                        (sprintf "%s: %s/%s unchanged since the stage finished" context name f)
            // Each killed stage resumed from its last complete checkpoint (a kill before its first one: from the start)
            // and kept the lines before it.
            for s, last in killedIn do
                let log = File.ReadAllLines(Path.Combine(stage root s, "log.txt"))
                if last = 0 then
                    Expect.exists
                        log
                        (fun l -> l.Contains "no intact checkpoint to resume from; starting from step 0")
                        (sprintf "%s: %s, killed before its first checkpoint, started again" context s)
                else
                    Expect.exists
                        log
                        (fun l -> l.Contains " resume: " && l.Contains(sprintf "at step %d of" last))
                        (sprintf "%s: %s resumed at step %d" context s last)
            for s, l in preserved do
                Expect.contains
                    (File.ReadAllLines(Path.Combine(stage root s, "metrics.jsonl")))
                    l
                    (sprintf "%s: %s: a metrics line written before a kill (step %d) is kept as it was" context s (stepOf l))
            for pid, o in List.zip killedPids (List.tail outputs) do
                Expect.stringContains o (sprintf "left by pid %d" pid) (sprintf "%s: the next worker names the killed holder" context)
                Expect.stringContains o "no longer running" (sprintf "%s: and takes its stale lock over" context)
            expectAsStraight root statexStages context
            printfn "study crash: %s, resumed bit-identical" context
        }

        test
            "three workers on one study folder at once (the statex arm twice, LPT): each waits at a held stage, every stage is trained once, all as a single run" {
            let _, statexStages, lptStages = straight.Force()
            let root = Path.Combine(Fixtures.tempDir (), "shared")
            // The test holds the first stage (both pipelines' pretraining) until all three wait for it, so that they
            // meet there however the machine schedules their start-up, and then race for it and every stage after.
            let first = statexStages.Head
            Expect.equal lptStages.Head first "both pipelines start with the same pretraining"
            let gate = FileLock.Acquire(Path.Combine(stagesOf root, first + ".lock"))
            let workers = [ start root "statex" None; start root "statex" None; start root "lpt" None ]
            let held = sprintf "waiting for stage %s: locked by pid %d " first Environment.ProcessId
            let clock = Stopwatch.StartNew()
            while not (workers |> List.forall (fun (_, text) -> (text ()).Contains held))
                  && not (workers |> List.exists (fun (p, _) -> p.HasExited))
                  && clock.Elapsed.TotalSeconds < 120.0 do
                Threading.Thread.Sleep 20
            let allWaited = workers |> List.forall (fun (_, text) -> (text ()).Contains held)
            gate.Dispose()
            let pids = workers |> List.map (fun (p, _) -> p.Id)
            let results = workers |> List.map finish
            Expect.isTrue
                allWaited
                (sprintf "each worker waited for the held stage, naming its holder\n%s" (results |> List.map snd |> String.concat "\n---\n"))
            let all = results |> List.map snd |> String.concat "\n--- next worker\n"
            Expect.equal (results |> List.map fst) [ 0; 0; 0 ] (sprintf "all three finish\n%s" all)
            let stages = statexStages @ lptStages |> List.distinct
            Expect.equal
                (Directory.GetDirectories(stagesOf root) |> Array.map Path.GetFileName |> Array.sort |> List.ofArray)
                (List.sort stages)
                "the stages of both pipelines, no other"
            for name in stages do
                let ran = results |> List.sumBy (fun (_, o) -> events o |> List.filter ((=) (name, Ran)) |> List.length)
                Expect.equal ran 1 (sprintf "stage %s ran in one worker only\n%s" name all)
                let log = Path.Combine(stage root name, "log.txt")
                if File.Exists log then
                    let lines = File.ReadAllLines log
                    Expect.equal (lines |> Array.filter (fun l -> l.Contains " start: ") |> Array.length) 1 (name + ": trained once")
                    Expect.isFalse (lines |> Array.exists (fun l -> l.Contains " resume: ")) (name + ": never resumed")
            // Each worker went through every stage of its pipeline, running or skipping it, once.
            for (_, o), mine in List.zip results [ statexStages; statexStages; lptStages ] do
                Expect.equal (events o |> List.map fst) mine (sprintf "each stage of the pipeline once, in order\n%s" o)
            // Whoever waited said for whom: the test, or one of the other workers.
            let waits = all.Split('\n') |> Array.filter (fun l -> l.Contains "waiting for stage ")
            for w in waits do
                Expect.isTrue
                    (Environment.ProcessId :: pids |> List.exists (fun pid -> w.Contains(sprintf "locked by pid %d " pid))
                     || w.Contains "owner file is not written yet")
                    (sprintf "a wait names the holder: %s" w)
            expectAsStraight root stages "shared folder"
            printfn "study shared folder: %d stages, %d waits at a lock" stages.Length waits.Length
        }
    ]
