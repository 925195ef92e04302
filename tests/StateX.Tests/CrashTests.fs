/// Crash consistency of `statex train`: SIGKILL at randomised points, several of them inside the checkpoint and
/// metrics writers (StateX.IO.CrashPoints), each followed by `--resume`. Issue 23.
module StateX.Tests.CrashTests

open System
open System.Diagnostics
open System.IO
open System.Text.Json.Nodes
open Expecto
open StateX.Tests.MetricsLines
open StateX.IO
open StateX.Training

let private config =
    """{"model_type": "gla", "hidden_size": 32, "num_heads": 2, "num_hidden_layers": 2, "vocab_size": 260,
  "expand_k": 0.5, "expand_v": 1.0, "hidden_ratio": 2, "tie_word_embeddings": true, "eos_token_id": 258, "bos_token_id": 257}"""

let private steps = 48

/// The variable that fixes the schedule of kills (a failure message gives the seed that produced it).
let private seedVariable = "STATEX_CRASH_SEED"

type private Ended =
    | Finished
    | Killed

/// Starts `statex train`; with `crashAt` it dies at that point, with `killAfterMs` the test kills it then.
let private train (args: string list) (crashAt: string option) (killAfterMs: int option) =
    let psi = ProcessStartInfo("dotnet", RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
    psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "StateX.Cli.dll"))
    for a in args do
        psi.ArgumentList.Add a
    psi.Environment.["OMP_NUM_THREADS"] <- "1"
    match crashAt with
    | Some c -> psi.Environment.[CrashPoints.Variable] <- c
    | None -> ()
    use p = Process.Start psi
    let err = Text.StringBuilder()
    p.ErrorDataReceived.Add(fun e -> if not (isNull e.Data) then lock err (fun () -> err.AppendLine e.Data |> ignore))
    p.OutputDataReceived.Add ignore
    p.BeginErrorReadLine()
    p.BeginOutputReadLine()
    let exited =
        match killAfterMs with
        | Some ms when not (p.WaitForExit ms) ->
            p.Kill true
            p.WaitForExit()
            false
        | _ ->
            p.WaitForExit(180_000)
            || (p.Kill true
                failwith "statex train did not finish in 180 s")
    p.WaitForExit()
    match exited, p.ExitCode with
    | true, 0 -> Finished
    | false, _ -> Killed
    | true, 137 when crashAt.IsSome -> Killed
    | true, code ->
        failwithf "statex train failed (exit %d, %s=%A): %s" code CrashPoints.Variable crashAt (lock err (fun () -> err.ToString()))

/// The newest checkpoint whose manifest holds (what --resume must continue from), or 0.
let private lastComplete (run: string) =
    let store = CheckpointStore(run, warn = Action<string>(ignore))
    store.List()
    |> Seq.tryFind (fun struct (_, d) -> isNull (CheckpointStore.Validate d))
    |> Option.map (fun struct (s, _) -> s)
    |> Option.defaultValue 0

let private resumeLines (run: string) =
    let log = Path.Combine(run, "log.txt")
    if File.Exists log then File.ReadAllLines log |> Array.filter (fun l -> l.Contains " resume: ") else [||]

[<Tests>]
let tests =
    testList "crash" [
        test "statex train killed at random points, inside checkpoint and metrics writes, resumes bit for bit" {
            let seed =
                match Environment.GetEnvironmentVariable seedVariable with
                | null
                | "" -> Random.Shared.Next()
                | s -> int s
            let rng = Random seed
            let cfg = Path.Combine(Fixtures.tempDir (), "config.json")
            File.WriteAllText(cfg, config)
            let args out = [
                "train"
                "--config"
                cfg
                "--data"
                "synth:mqar:pairs=4:len=32:vocab=256"
                "--steps"
                string steps
                "--seq-len"
                "32"
                "--batch"
                "2"
                "--checkpoint-every"
                "3"
                "--device"
                "cpu"
                "--out"
                out
            ]
            let straight = Fixtures.tempDir ()
            let clock = Stopwatch.StartNew()
            Expect.equal (train (args straight) None None) Finished "uninterrupted run"
            // Kills from outside land within the first 60% of a run's time: start-up, resume, steps, writes alike.
            let lifetime = int clock.ElapsedMilliseconds
            let run = Fixtures.tempDir ()
            // Every named point once and three kills in the middle of training (after the N-th optimiser step of that
            // process: placed by progress, so load cannot make them miss), in a random order, then one kill from
            // outside at a random time in the first 60% of a run (start-up, resume and writes alike). The numbers are
            // small enough that the points' steps add up to fewer than the run's 48 (checkpoints every 3 steps:
            // checkpoint points ≤ 6 steps each, metrics ≤ 5, atomic writes (config, trainer.json) ≤ 12, steps ≤ 4
            // each), so every point lands; the timer's kill comes last, as a loaded machine can make it miss.
            let points = [
                CrashPoints.CheckpointFiles
                CrashPoints.CheckpointSealed
                CrashPoints.CheckpointPublished
                CrashPoints.MetricsLine
                CrashPoints.AtomicWrite
                CrashPoints.Step
                CrashPoints.Step
                CrashPoints.Step
            ]
            let plan =
                (List.map Some points |> List.sortBy (fun _ -> rng.Next())) @ [ None ]
                |> List.map (fun point ->
                    match point with
                    | Some p when p = CrashPoints.MetricsLine -> Some(sprintf "%s:%d" p (rng.Next(1, 6))), None
                    | Some p when p = CrashPoints.AtomicWrite -> Some(sprintf "%s:%d" p (rng.Next(1, 6))), None
                    | Some p when p = CrashPoints.Step -> Some(sprintf "%s:%d" p (rng.Next(1, 5))), None
                    | Some p -> Some(sprintf "%s:%d" p (rng.Next(1, 3))), None
                    | None -> None, Some(rng.Next(lifetime / 10, lifetime * 6 / 10)))
            let context = sprintf "%s=%d" seedVariable seed
            let mutable kills = []
            let mutable preserved = []
            let mutable finished = false
            let mutable first = true
            for crashAt, killAfter in plan do
                if not finished then
                    let before = resumeLines run
                    let expectedFrom = lastComplete run
                    let kept = completeLines (Path.Combine(run, "metrics.jsonl")) |> Array.filter (fun l -> stepOf l <= expectedFrom)
                    let ended = train (args run @ (if first then [] else [ "--resume" ])) crashAt killAfter
                    let point =
                        match crashAt, killAfter with
                        | Some c, _ -> c
                        | None, Some ms -> sprintf "timer:%dms" ms
                        | None, None -> "none"
                    if not first then
                        // A resume that got as far as logging must have continued from the last complete checkpoint.
                        for l in resumeLines run |> Array.skip before.Length do
                            Expect.stringContains
                                l
                                (sprintf "at step %d of" expectedFrom)
                                (sprintf "%s: resumed from the last complete checkpoint (before %s)" context point)
                    first <- false
                    preserved <- preserved @ List.ofArray kept
                    if ended = Killed then kills <- point :: kills else finished <- true
            if not finished then
                Expect.equal (train (args run @ [ "--resume" ]) None None) Finished (sprintf "%s: the final resume finishes" context)
            let final = File.ReadAllLines(Path.Combine(run, "metrics.jsonl"))
            for l in preserved do
                Expect.contains final l (sprintf "%s: a metrics line written before a kill (step %d) is kept as it was" context (stepOf l))
            Expect.equal
                (final |> Array.map deterministic)
                (File.ReadAllLines(Path.Combine(straight, "metrics.jsonl")) |> Array.map deterministic)
                (sprintf "%s: one metrics line per step, each as in the uninterrupted run (kills: %A)" context (List.rev kills))
            let weights d = File.ReadAllBytes(Path.Combine(d, "model", "model.safetensors"))
            Expect.isTrue
                (weights run = weights straight)
                (sprintf "%s: final weights bit-identical to the uninterrupted run (kills: %A)" context (List.rev kills))
            Expect.isEmpty
                (Directory.GetDirectories(Path.Combine(run, "checkpoints"), ".step-*"))
                "abandoned checkpoint folders are removed"
            // Every kill placed by a point lands (their steps add up to fewer than the run's); the timer's may not.
            let placed = kills |> List.filter (fun k -> not (k.StartsWith "timer:"))
            Expect.equal placed.Length 8 (sprintf "%s: all 8 kills placed by a crash point landed (%A)" context (List.rev kills))
            printfn
                "crash: %s, run of %d ms, %d kills (%s), resumed bit-identical"
                context
                lifetime
                kills.Length
                (String.Join(", ", List.rev kills))
        }
    ]

/// Runs `script` (sh) as root in a private mount namespace, so the file systems it mounts vanish with it, even if the
/// test dies; None when this machine cannot make one (not root, no unshare), which the test reports as a skip.
let private inMountNamespace (script: string) =
    let probe =
        try
            Some(Process.Start(ProcessStartInfo("unshare", "-m true", UseShellExecute = false, RedirectStandardError = true)))
        with _ ->
            None
    match probe with
    | Some p when (p.WaitForExit(10_000) && p.ExitCode = 0) ->
        let psi = ProcessStartInfo("unshare", UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true)
        for a in [ "-m"; "sh"; "-c"; script ] do
            psi.ArgumentList.Add a
        use q = Process.Start psi
        let err = q.StandardError.ReadToEndAsync()
        q.StandardOutput.ReadToEnd() |> ignore
        if not (q.WaitForExit 180_000) then
            q.Kill true
            failwith "the mount-namespace script did not finish in 180 s"
        if q.ExitCode <> 0 then failwithf "the mount-namespace script failed (%d): %s" q.ExitCode err.Result
        Some()
    | _ -> None

/// A run of 6 steps killed just after its step-3 checkpoint, then resumed with `setup` applied to a small tmpfs holding
/// the run: returns the resume's exit code and stderr, and the run folder as it was before and after.
let private resumeOnTmpfs (setup: string) =
    let cfg = Path.Combine(Fixtures.tempDir (), "config.json")
    File.WriteAllText(cfg, config)
    let work = Fixtures.tempDir ()
    let run = Path.Combine(work, "run")
    let args out = [
        "train"
        "--config"
        cfg
        "--data"
        "synth:mqar:pairs=4:len=32:vocab=256"
        "--steps"
        "6"
        "--seq-len"
        "32"
        "--batch"
        "2"
        "--checkpoint-every"
        "3"
        "--device"
        "cpu"
        "--out"
        out
    ]
    Expect.equal (train (args run) (Some(CrashPoints.CheckpointPublished + ":1")) None) Killed "killed after the step-3 checkpoint"
    let mnt = Path.Combine(work, "mnt")
    let quote (s: string) = "'" + s.Replace("'", "'\\''") + "'"
    let cli =
        String.Join(
            " ",
            [ "dotnet"; Path.Combine(AppContext.BaseDirectory, "StateX.Cli.dll") ] @ args (Path.Combine(mnt, "run")) @ [ "--resume" ]
            |> List.map quote
        )
    let script =
        String.Join(
            "\n",
            [
                "set -e"
                sprintf
                    "mkdir -p %s && mount -t tmpfs -o size=2m tmpfs %s && cp -a %s %s/run"
                    (quote mnt)
                    (quote mnt)
                    (quote run)
                    (quote mnt)
                setup.Replace("$M", quote mnt)
                sprintf
                    "set +e; OMP_NUM_THREADS=1 %s > %s 2> %s; echo $? > %s"
                    cli
                    (quote (Path.Combine(work, "stdout")))
                    (quote (Path.Combine(work, "stderr")))
                    (quote (Path.Combine(work, "rc")))
                sprintf "cp -a %s/run %s" (quote mnt) (quote (Path.Combine(work, "after")))
            ]
        )
    match inMountNamespace script with
    | None -> skiptest "needs a private mount namespace for a small tmpfs (unshare -m, as root)"
    | Some() ->
        int (File.ReadAllText(Path.Combine(work, "rc")).Trim()),
        File.ReadAllText(Path.Combine(work, "stderr")),
        run,
        Path.Combine(work, "after")

/// The step-3 checkpoint is intact in `after`, byte for byte the one of `before`, and no temporary folder is left.
let private expectStep3Intact (before: string) (after: string) =
    let ck d = Path.Combine(d, "checkpoints", CheckpointStore.FolderName 3)
    Expect.isNull (CheckpointStore.Validate(ck after)) "the previous checkpoint still validates"
    for f in Directory.GetFiles(ck before) do
        Expect.isTrue
            (File.ReadAllBytes f = File.ReadAllBytes(Path.Combine(ck after, Path.GetFileName f)))
            (sprintf "%s unchanged" (Path.GetFileName f))
    Expect.isEmpty (Directory.GetDirectories(Path.Combine(after, "checkpoints"), ".step-*")) "no half-written checkpoint folder left"

[<Tests>]
let diskTests =
    testList "crash disk" [
        test "a checkpoint written into a full file system fails in one line and leaves the previous one intact" {
            // 64 KiB stay free: enough for the log and metrics lines, not for a checkpoint (about 250 KiB).
            let rc, err, before, after =
                resumeOnTmpfs "head -c 65536 /dev/zero > $M/slack; cat /dev/zero > $M/fill 2>/dev/null || true; rm $M/slack"
            Expect.equal rc 1 (sprintf "fails (stderr: %s)" err)
            let line = err.Split('\n') |> Array.filter (fun l -> l.StartsWith "statex: error:")
            Expect.equal line.Length 1 (sprintf "one error line: %s" err)
            Expect.stringContains
                line.[0]
                (CheckpointStore.FolderName 6 + ": could not write the checkpoint of step 6")
                "names the checkpoint"
            Expect.stringContains line.[0] "No space left on device" "says why"
            Expect.stringContains line.[0] (CheckpointStore.FolderName 3 + " is intact") "says the previous one is intact"
            expectStep3Intact before after
        }

        test "a read-only run folder is refused before any work, leaving the checkpoint intact" {
            let rc, err, before, after = resumeOnTmpfs "mount -o remount,ro $M"
            Expect.equal rc 1 (sprintf "fails (stderr: %s)" err)
            Expect.stringContains err "the run folder is not writable" "says what is wrong"
            Expect.stringContains err "Read-only file system" "and why"
            expectStep3Intact before after
        }
    ]
