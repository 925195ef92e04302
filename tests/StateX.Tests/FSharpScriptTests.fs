/// The scripts and `statex sweep`, run as a user runs them (child processes) at tiny sizes, against the assemblies
/// under test. The notebooks run in the .NET Interactive kernel: NotebookTests.
module StateX.Tests.FSharpScriptTests

open System
open System.Diagnostics
open System.IO
open System.Text.Json.Nodes
open Expecto
open StateX

let private repo = FSharpModelTests.repoRoot

/// A copy of scripts/ and notebooks/ whose prelude and build check point at `buildDir` (default: these tests'
/// own binaries, which hold every library the prelude references), with the tool manifest (the notebook kernel's
/// `dotnet interactive` is a local tool, resolved from the folder it starts in).
let workspace (buildDir: string) =
    let root = Fixtures.tempDir ()
    for folder, pattern in [ "scripts", "*.fsx"; "notebooks", "*.ipynb" ] do
        Directory.CreateDirectory(Path.Combine(root, folder)) |> ignore
        for f in Directory.GetFiles(Path.Combine(repo, folder), pattern) do
            let text = File.ReadAllText(f).Replace("../.build/cli", buildDir.TrimEnd('/'))
            File.WriteAllText(Path.Combine(root, folder, Path.GetFileName f), text)
    Directory.CreateDirectory(Path.Combine(root, ".config")) |> ignore
    File.Copy(Path.Combine(repo, ".config", "dotnet-tools.json"), Path.Combine(root, ".config", "dotnet-tools.json"))
    root

type private Outcome = { Code: int; Out: string; Err: string }

let private fsi (env: (string * string) list) (timeoutSeconds: int) (script: string) (args: string list) =
    let psi = ProcessStartInfo("dotnet", RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
    psi.ArgumentList.Add "fsi"
    psi.ArgumentList.Add script
    for a in args do
        psi.ArgumentList.Add a
    psi.WorkingDirectory <- Path.GetDirectoryName script
    // One libtorch thread: the tests share the machine, and spinning threads only slow each other down.
    psi.Environment.["OMP_NUM_THREADS"] <- "1"
    for k, v in env do
        psi.Environment.[k] <- v
    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    if not (p.WaitForExit(timeoutSeconds * 1000)) then
        p.Kill true
        failwithf "dotnet fsi %s did not finish in %d s" (Path.GetFileName script) timeoutSeconds
    { Code = p.ExitCode; Out = out.Result; Err = err.Result }

let private expectSuccess (what: string) (o: Outcome) =
    if o.Code <> 0 then failtestf "%s exited with %d\n--- stdout ---\n%s\n--- stderr ---\n%s" what o.Code o.Out o.Err

let selfContained (file: string) =
    Expect.isTrue (File.Exists file) (file + " written")
    Expect.stringContains
        (File.ReadAllText file)
        "For license information please see plotly.min.js.LICENSE.txt"
        (file + ": plotly.js embedded")

/// `statex demo --preset smoke`, run once for every test that compares its rows (the script here, the notebook in
/// NotebookTests): the folder it wrote.
let cliSmokeStudy =
    lazy
        (let out = Path.Combine(Fixtures.tempDir (), "out-cli")
         let r = Cli.runWith [ "OMP_NUM_THREADS", "1" ] 300 [ "demo"; "--preset"; "smoke"; "--out"; out ]
         Expect.equal r.ExitCode 0 (sprintf "demo exit 0; stderr: %s" r.Stderr)
         Expect.stringContains r.Stderr "2 at a time in worker processes" "the CLI runs its jobs in two worker processes"
         out)

/// The study rows in `folder` are the CLI's smoke study's: the same rows in the same order, values up to round-off.
let expectCliSmokeRows (name: string) (folder: string) =
    let key (r: StudyRow) =
        r.Family,
        r.Arm,
        r.Seed,
        r.Task,
        ValueJson.toText (r.Result.Setting |> Seq.map (fun kv -> kv.Key, string kv.Value) |> List.ofSeq),
        r.Metric,
        r.Result.N
    let reference = Study.readRows cliSmokeStudy.Value
    Expect.isGreaterThan reference.Length 50 "the smoke study's rows"
    let rows = Study.readRows folder
    Expect.equal (rows |> List.map key) (reference |> List.map key) (name + ": the same rows in the same order")
    // Values up to round-off: the CLI's workers run libtorch on one thread each like these scripts, but in
    // other processes; float sums may still split differently. Accuracies: at most two of N answers
    // flipped; losses: 2%.
    for a, b in List.zip reference rows do
        if a.Task = "model" then
            Expect.equal b.Value a.Value (sprintf "%s %A: exact" name (key a))
        else
            let tol = if a.Metric = "accuracy" then 2.0 / float a.Result.N else 0.02 * max 1.0 (abs a.Value)
            Expect.isLessThanOrEqual (abs (b.Value - a.Value)) tol (sprintf "%s %A: %g vs %g" name (key a) b.Value a.Value)

[<Tests>]
let tests =
    testSequenced
    <| testList "fsharp.scripts" [
        test "quickstart and expand-checkpoint run at tiny sizes" {
            let ws = workspace AppContext.BaseDirectory
            let out = Path.Combine(ws, "out-quickstart")
            let o =
                fsi [] 300 (Path.Combine(ws, "scripts", "quickstart.fsx")) [
                    "steps=2"
                    "seq_len=32"
                    "pairs=2"
                    "device=cpu"
                    "out=" + out
                ]
            expectSuccess "quickstart.fsx" o
            Expect.stringContains o.Out "expanded: GLA" "describes the expanded model"
            for f in [ "mqar.html"; "post-training.html" ] do
                selfContained (Path.Combine(out, f))
            Expect.stringContains (File.ReadAllText(Path.Combine(out, "mqar.csv"))) "statex" "the CSV holds both arms"
            let out2 = Path.Combine(ws, "out-expand")
            let e = fsi [] 120 (Path.Combine(ws, "scripts", "expand-checkpoint.fsx")) [ "out=" + out2 ]
            expectSuccess "expand-checkpoint.fsx" e
            Expect.stringContains e.Out "state per sequence" "prints the accounting"
            Expect.equal
                (Model.ofCheckpoint (Path.Combine(out2, "expanded")))
                (Model.ofCheckpoint (Path.Combine(out2, "source")) |> Expand.preset "gla-1.3b" |> Model.flatten)
                "the saved checkpoint is the preset's expansion"
        }

        test "state-size-sweep and passkey-heatmap run at tiny sizes" {
            let ws = workspace AppContext.BaseDirectory
            let out = Path.Combine(ws, "out-sweep")
            let s =
                fsi [] 300 (Path.Combine(ws, "scripts", "state-size-sweep.fsx")) [
                    "ratios=1,2"
                    "seeds=1"
                    "steps=2"
                    "seq_len=32"
                    "pairs=2"
                    "device=cpu"
                    "out=" + out
                ]
            expectSuccess "state-size-sweep.fsx" s
            selfContained (Path.Combine(out, "recall-vs-state-size.html"))
            let summary = Analysis.readCsv (Path.Combine(out, "recall-vs-state-size.csv"))
            Expect.equal (Analysis.floats "state_size" summary |> List.distinct |> List.length) 2 "two state sizes"
            let out2 = Path.Combine(ws, "out-passkey")
            let p =
                fsi [] 300 (Path.Combine(ws, "scripts", "passkey-heatmap.fsx")) [
                    "lengths=300"
                    "depths=0,1"
                    "trials=1"
                    "steps=1"
                    "device=cpu"
                    "out=" + out2
                ]
            expectSuccess "passkey-heatmap.fsx" p
            selfContained (Path.Combine(out2, "passkey.html"))
            Expect.equal
                (List.ofSeq (Analysis.readCsv (Path.Combine(out2, "passkey.csv"))).ColumnKeys)
                [ "length"; "0"; "1" ]
                "a column per depth"
        }

        test "state-size-families runs at tiny sizes: a row per family, task and state size" {
            let ws = workspace AppContext.BaseDirectory
            let out = Path.Combine(ws, "out-families")
            let s =
                fsi [] 300 (Path.Combine(ws, "scripts", "state-size-families.fsx")) [
                    "families=gsa"
                    "steps=2"
                    "seq_len=32"
                    "pairs=2"
                    "device=cpu"
                    "out=" + out
                ]
            expectSuccess "state-size-families.fsx" s
            selfContained (Path.Combine(out, "recall-vs-state-size.html"))
            let summary = Analysis.readCsv (Path.Combine(out, "recall-vs-state-size.csv"))
            // GSA 2 layers × 2 heads × M slots × (8 + 32): M = 4, 8, 16.
            Expect.equal
                (Analysis.floats "state_size" summary |> List.distinct |> List.sort)
                [ 640.0; 1280.0; 2560.0 ]
                "the three GSA state sizes"
        }

        test "statex demo --preset smoke and scripts/statex-vs-lpt.fsx give the same result rows" {
            let ws = workspace AppContext.BaseDirectory
            let outScript = Path.Combine(ws, "out-script")
            let sc = fsi [] 300 (Path.Combine(ws, "scripts", "statex-vs-lpt.fsx")) [ "preset=smoke"; "device=cpu"; "out=" + outScript ]
            expectSuccess "statex-vs-lpt.fsx" sc
            expectCliSmokeRows "the script" outScript
        }

        test "without a build, a script stops with the command that makes it" {
            let ws = workspace (Path.Combine(Fixtures.tempDir (), "no-build"))
            let o = fsi [] 120 (Path.Combine(ws, "scripts", "expand-checkpoint.fsx")) []
            Expect.equal o.Code 1 "exit code 1"
            Expect.stringContains o.Err "scripts/build" "names the command that builds the libraries"
            Expect.isFalse (o.Err.Contains "FS0078") "stops before the prelude's references are resolved"
        }

        test "statex sweep runs a sweep file, records a failing run, resumes, and lists the hashes the library computes" {
            let dir = Fixtures.tempDir ()
            let file = Path.Combine(dir, "tiny.json")
            let config = Path.Combine(repo, "data", "configs", "gla-tiny.json").Replace("\\", "/")
            File.WriteAllText(
                file,
                """
                {
                  // two arms; the second post-training data spec is broken on purpose
                  "model": {"config": "CONFIG", "vocab_size": 259, "hidden_size": 32},
                  "expand": {"layers": "all", "rewrite": "merge-heads", "init": "reinit"},
                  "pretrain": {"data": "synth:mqar:pairs=2:len=16:vocab=259", "steps": 2, "seq_len": 16, "batch": 2},
                  "posttrain": {"steps": 2},
                  "evaluate": [ {"mqar": {"pairs": [2], "seq_len": 16, "examples": 4}} ],
                  "grid": {"recipe": ["statex", "lpt"], "posttrain.data": ["synth:mqar:pairs=2:len=16:vocab=259", "synth:nonsense"]},
                  "device": "cpu",
                  "folder": "out"
                }
                """
                    .Replace("CONFIG", config)
            )
            let env = [ "OMP_NUM_THREADS", "1" ]
            let plan = SweepFile.load file
            let r = Cli.runWith env 300 [ "sweep"; file; "--folder"; Path.Combine(dir, "out") ]
            Expect.equal r.ExitCode 1 (sprintf "a failed run makes the exit code 1\n%s\n%s" r.Stdout r.Stderr)
            let records = Sweep.latest (Path.Combine(dir, "out"))
            Expect.equal
                (records |> List.map (fun x -> x.Status) |> List.sort)
                [ "done"; "done"; "failed"; "failed" ]
                "two done, two failed"
            for x in records |> List.filter (fun x -> x.Status = "failed") do
                Expect.stringContains x.Error.Value "nonsense" "the error names the bad spec"
            Expect.isTrue (File.Exists(Path.Combine(dir, "out", "results.csv"))) "results.csv written"
            selfContained (Path.Combine(dir, "out", "charts", "recall-vs-state-size.html"))
            let listing = Cli.runWith env 60 [ "sweep"; file; "--folder"; Path.Combine(dir, "out"); "--dry-run" ]
            Expect.equal listing.ExitCode 0 "dry run"
            for run in plan.Sweep.Runs do
                let line = listing.Stdout.Split('\n') |> Array.tryFind (fun l -> l.StartsWith run.Hash)
                Expect.isSome line (sprintf "the CLI (another process) computes hash %s too" run.Hash)
                let finished = records |> List.exists (fun x -> x.Hash = run.Hash && x.Status = "done")
                Expect.equal (line.Value.Contains " done ") finished "done / to do as in the store"
            let again = Cli.runWith env 300 [ "sweep"; file; "--folder"; Path.Combine(dir, "out") ]
            Expect.stringContains again.Stdout "2 already finished, 2 to run" "a re-run does only the unfinished runs"
        }
    ]
