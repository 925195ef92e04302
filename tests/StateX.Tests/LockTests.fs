/// Concurrent use of one folder: two `statex sweep` processes on one store, a lock held by a killed process.
/// Issue 23.
module StateX.Tests.LockTests

open System
open System.Diagnostics
open System.IO
open System.Threading
open Expecto
open StateX
open StateX.IO

let private repo =
    let rec up (d: DirectoryInfo) =
        if isNull d then failwith "data/configs not found above the test binary"
        elif Directory.Exists(Path.Combine(d.FullName, "data", "configs")) then d.FullName
        else up d.Parent
    up (DirectoryInfo AppContext.BaseDirectory)

/// A sweep of two runs (statex and lpt) that share their pretraining stage.
let private sweepFile () =
    let dir = Fixtures.tempDir ()
    let file = Path.Combine(dir, "two.json")
    let config = Path.Combine(repo, "data", "configs", "gla-tiny.json").Replace("\\", "/")
    File.WriteAllText(
        file,
        """
        {
          "model": {"config": "CONFIG", "vocab_size": 259, "hidden_size": 32},
          "expand": {"layers": "all", "rewrite": "merge-heads", "init": "reinit"},
          "pretrain": {"data": "synth:mqar:pairs=2:len=16:vocab=259", "steps": 6, "seq_len": 16, "batch": 2},
          "posttrain": {"steps": 2},
          "grid": {"recipe": ["statex", "lpt"]},
          "device": "cpu"
        }
        """
            .Replace("CONFIG", config)
    )
    dir, file

let private start (args: string list) = Cli.start [ "OMP_NUM_THREADS", Some "1" ] args

let private finish (p: Process, text: unit -> string) =
    if not (p.WaitForExit 300_000) then
        p.Kill true
        failwith "statex sweep did not finish in 300 s"
    p.WaitForExit()
    p.ExitCode, text ()

let private count (needle: string) (text: string) = text.Split('\n') |> Array.filter (fun l -> l.Contains needle) |> Array.length

[<Tests>]
let tests =
    testList "locks" [
        test "a process kept waiting hears who holds the lock; a lock of a dead process is taken over" {
            let path = Path.Combine(Fixtures.tempDir (), "stage.lock")
            let held = FileLock.Acquire path
            let heard = Collections.Concurrent.ConcurrentQueue<string>()
            let waiter = Thread(fun () -> (FileLock.Acquire(path, Action<string>(heard.Enqueue), "stage x")).Dispose())
            waiter.Start()
            let clock = Stopwatch.StartNew()
            while heard.IsEmpty && clock.Elapsed.TotalSeconds < 10.0 do
                Thread.Sleep 20
            Expect.isTrue (waiter.IsAlive) "the second one waits"
            Expect.exists
                heard
                (fun m -> m.Contains "waiting for stage x: locked by pid " && m.Contains(string Environment.ProcessId))
                "names the holder's pid"
            held.Dispose()
            Expect.isTrue (waiter.Join 10_000) "and gets the lock once it is released"
            // A holder that died: its owner file stays, naming a pid that no longer runs.
            use dead = Process.Start(ProcessStartInfo("true", UseShellExecute = false))
            dead.WaitForExit()
            File.WriteAllText(
                path + ".owner",
                sprintf
                    """{"pid": %d, "host": "%s", "command": "sweep x", "since_utc": "2026-01-01T00:00:00Z"}"""
                    dead.Id
                    Environment.MachineName
            )
            let taken = Collections.Generic.List<string>()
            use _ = FileLock.Acquire(path, Action<string>(taken.Add))
            Expect.exists
                taken
                (fun m -> m.Contains(sprintf "left by pid %d" dead.Id) && m.Contains "no longer running")
                "says it takes over a stale lock"
            Expect.stringContains
                (File.ReadAllText(path + ".owner"))
                (sprintf "\"pid\":%d" Environment.ProcessId)
                "and names itself the holder"
        }

        test "two statex sweep processes on one store: no stage or run twice, both end with every run done" {
            let dir, file = sweepFile ()
            let folder = Path.Combine(dir, "out")
            let args = [ "sweep"; file; "--folder"; folder ]
            let a = start args
            let b = start args
            let (codeA, outA), (codeB, outB) = finish a, finish b
            Expect.equal (codeA, codeB) (0, 0) (sprintf "both succeed\n--- A\n%s\n--- B\n%s" outA outB)
            let both = outA + outB
            let plan = SweepFile.load file
            let stages = Directory.GetDirectories(Path.Combine(folder, "stages"))
            Expect.isNonEmpty stages "stages were run"
            for s in stages do
                Expect.equal (count (sprintf "running in %s" s) both) 1 (sprintf "stage %s ran once\n%s" (Path.GetFileName s) both)
            let records = Sweep.records folder
            Expect.equal
                (records |> List.map (fun r -> r.Hash) |> List.sort)
                (plan.Sweep.Runs |> List.map (fun r -> r.Hash) |> List.sort)
                "one record per run: none ran twice"
            Expect.isTrue (records |> List.forall (fun r -> r.Status = "done")) "all done"
            Expect.isGreaterThan
                (count "locked by pid" both + count "finished by another process meanwhile" both)
                0
                "the second process saw the first one's work"
        }

        test "a sweep killed while it holds a stage resumes in a new process, takes the stale lock over, and ends bit-identical" {
            let dir, file = sweepFile ()
            let folder = Path.Combine(dir, "out")
            let p, text = start [ "sweep"; file; "--folder"; folder ]
            let clock = Stopwatch.StartNew()
            while count "running in" (text ()) = 0 && not p.HasExited && clock.Elapsed.TotalSeconds < 120.0 do
                Thread.Sleep 20
            Expect.isFalse p.HasExited "still running a stage when killed"
            p.Kill true
            p.WaitForExit()
            let code, out = finish (start [ "sweep"; file; "--folder"; folder ])
            Expect.equal code 0 (sprintf "the new sweep finishes\n%s" out)
            Expect.stringContains out (sprintf "left by pid %d" p.Id) "names the killed holder"
            Expect.stringContains out "no longer running" "and says it is stale"
            Expect.isTrue (Sweep.latest folder |> List.forall (fun r -> r.Status = "done")) "every run done"
            // And the killed-and-resumed sweep computed what an uninterrupted one does, bit for bit.
            let straight = Path.Combine(dir, "straight")
            let code, out = finish (start [ "sweep"; file; "--folder"; straight ])
            Expect.equal code 0 (sprintf "the uninterrupted sweep finishes\n%s" out)
            let metrics f = Sweep.latest f |> List.map (fun r -> r.Hash, r.Metrics) |> List.sort
            Expect.equal (metrics folder) (metrics straight) "the same losses for every run"
            for stage in Directory.GetDirectories(Path.Combine(straight, "stages")) do
                let weights root = File.ReadAllBytes(Path.Combine(root, "stages", Path.GetFileName stage, "model", "model.safetensors"))
                Expect.isTrue (weights folder = weights straight) (sprintf "stage %s: the same weights" (Path.GetFileName stage))
        }
    ]
