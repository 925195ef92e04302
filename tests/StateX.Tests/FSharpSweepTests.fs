/// Sweeps: planning (grid, zip, random), the store, resume, failures, parallel runs.
module StateX.Tests.FSharpSweepTests

open System
open System.IO
open Expecto
open StateX

let private glaBase = FSharpModelTests.glaWide

/// State-size sweep over the expansion ratio of the GLA heads (heads after merging) and the init.
let private headsAxis =
    Axis.values "heads" [ 1; 2; 4 ] (fun h (m: Model) -> if h = 4 then m else m |> Expand.every 2 (MergeHeadsTo(h, Reinit)))
let private seedAxis =
    Axis.values "seed" [ 0L; 1L ] (fun s (m: Model) -> if m.Expansions.IsEmpty then m |> Model.withVocab (259 + int s) else Expand.seed s m)

let private quiet folder = { Sweep.options folder with Log = ignore }

/// A run function that records what it ran and fails for the descriptions `fails` picks.
let private recorder (fails: Model -> bool) =
    let ran = Collections.Concurrent.ConcurrentBag<string>()
    let run (m: Model) (dir: string) =
        ran.Add(Hash.short m)
        if not (Directory.Exists dir) then failwith "the run folder exists before the run starts"
        if fails m then failwithf "boom for %s" (Hash.short m)
        File.WriteAllText(Path.Combine(dir, "out.txt"), "ok")
        Map [ "state_size", float (Model.stateSize m); "params", float (Model.paramCount m) ]
    ran, run

[<Tests>]
let tests =
    testList "fsharp.sweep" [
        test "a grid is every combination, first axis slowest, labelled and keyed by the description's hash" {
            let s = Sweep.grid [ headsAxis; seedAxis ] glaBase
            Expect.equal (Sweep.count s) 6 "3 × 2 runs"
            Expect.equal
                [ for r in s.Runs -> r.Labels ]
                [
                    for h in [ "1"; "2"; "4" ] do
                        for seed in [ "0"; "1" ] -> [ "heads", h; "seed", seed ]
                ]
                "labels in grid order"
            for r in s.Runs do
                Expect.equal r.Hash (Hash.short r.Description) "keyed by the hash"
            let r = s.Runs.[2] // heads 2, seed 0
            Expect.equal
                r.Description
                (glaBase |> Expand.every 2 (MergeHeadsTo(2, Reinit)) |> Expand.seed 0L)
                "setters applied in axis order"
        }

        test "zip pairs the i-th points; random draws are seeded; duplicates appear once" {
            let z =
                Sweep.zip
                    [ headsAxis; Axis.values "seed" [ 5L; 6L; 7L ] (fun s m -> if m.Expansions.IsEmpty then m else Expand.seed s m) ]
                    glaBase
            Expect.equal
                [ for r in z.Runs -> r.Labels ]
                [ [ "heads", "1"; "seed", "5" ]; [ "heads", "2"; "seed", "6" ]; [ "heads", "4"; "seed", "7" ] ]
                "zipped"
            Expect.throwsC (fun () -> Sweep.zip [ headsAxis; seedAxis ] glaBase |> ignore) (fun e ->
                Expect.stringContains e.Message "equal lengths" "lengths differ")
            let lr = Axis.logUniform "init_range" 1e-3 1e-1 (fun r m -> Model.mapGla (fun g -> { g with InitRange = r }) m)
            let a = Sweep.random 42 5 [ headsAxis; lr ] glaBase
            let b = Sweep.random 42 5 [ headsAxis; lr ] glaBase
            let c = Sweep.random 43 5 [ headsAxis; lr ] glaBase
            Expect.equal [ for r in a.Runs -> r.Hash ] [ for r in b.Runs -> r.Hash ] "same seed, same runs"
            Expect.notEqual [ for r in a.Runs -> r.Hash ] [ for r in c.Runs -> r.Hash ] "another seed, other runs"
            for r in a.Runs do
                let v = Double.Parse(r.Labels |> List.find (fst >> (=) "init_range") |> snd, Globalization.CultureInfo.InvariantCulture)
                Expect.isTrue (v >= 1e-3 && v < 1e-1) "log-uniform draw in range"
            Expect.throwsC (fun () -> Sweep.grid [ lr ] glaBase |> ignore) (fun e ->
                Expect.stringContains e.Message "Sweep.random" "a sampled axis belongs to random sweeps")
            let dup = Sweep.grid [ Axis.values "noop" [ 1; 2 ] (fun _ m -> m) ] glaBase
            Expect.equal (Sweep.count dup) 1 "the same description twice is one run"
        }

        test "a failing run is recorded with its error and the sweep goes on; a re-run does exactly the unfinished runs" {
            let folder = Fixtures.tempDir ()
            let sweep = Sweep.grid [ headsAxis; seedAxis ] glaBase
            let failing = sweep.Runs.[3].Description
            let ran1, run1 = recorder (fun m -> m = failing)
            let records = Sweep.runWith (quiet folder) run1 sweep
            Expect.equal (Set.ofSeq ran1) (set [ for r in sweep.Runs -> r.Hash ]) "first pass runs everything"
            Expect.equal [ for r in records -> r.Status ] [ "done"; "done"; "done"; "failed"; "done"; "done" ] "statuses in plan order"
            let failed = records.[3]
            Expect.stringContains failed.Error.Value ("boom for " + Hash.short failing) "the error is recorded"
            Expect.isTrue failed.Metrics.IsEmpty "no metrics for a failed run"
            Expect.equal records.[0].Metrics.["state_size"] (float (Model.stateSize sweep.Runs.[0].Description)) "metrics recorded"
            Expect.equal (Sweep.records folder).Length 6 "one store line per run"
            Expect.isTrue (File.Exists(Path.Combine(Sweep.runFolder folder records.[0].Hash, "out.txt"))) "each run has its folder"
            Expect.equal (Sweep.description<Model> records.[2]) sweep.Runs.[2].Description "descriptions read back from the store"

            // Extend the sweep by a point and run again: only the failed run and the new one run.
            let bigger = Sweep.append sweep (Sweep.single (glaBase |> Model.withLayers 4))
            let ran2, run2 = recorder (fun _ -> false)
            let records2 = Sweep.runWith (quiet folder) run2 bigger
            Expect.equal
                (Set.ofSeq ran2)
                (set [ Hash.short failing; Hash.short (glaBase |> Model.withLayers 4) ])
                "exactly the unfinished runs"
            Expect.isTrue (records2 |> List.forall (fun r -> r.Status = "done")) "all done now"
            let ran3, run3 = recorder (fun _ -> false)
            Sweep.runWith (quiet folder) run3 bigger |> ignore
            Expect.isEmpty ran3 "nothing left to run"
            Expect.equal (Sweep.latest folder).Length 7 "latest record per run"
        }

        test "failed runs can be kept as failed; a line torn by a crash is ignored" {
            let folder = Fixtures.tempDir ()
            let sweep = Sweep.grid [ headsAxis ] glaBase
            let _, run = recorder (fun m -> m.Expansions.IsEmpty)
            Sweep.runWith (quiet folder) run sweep |> ignore
            File.AppendAllText(Sweep.storeFile folder, "{\"hash\":\"abc")
            let ran, again = recorder (fun _ -> false)
            let records = Sweep.runWith { quiet folder with RetryFailed = false } again sweep
            Expect.isEmpty ran "the failed run is not retried"
            Expect.equal [ for r in records -> r.Status ] [ "done"; "done"; "failed" ] "still failed"
            Expect.equal (Sweep.records folder).Length 3 "the torn line is skipped"
        }

        test "runs in parallel when asked, each recorded once, results in plan order, progress logged" {
            let folder = Fixtures.tempDir ()
            let sweep = Sweep.grid [ headsAxis; seedAxis ] glaBase
            let lines = Collections.Concurrent.ConcurrentQueue<string>()
            let _, run = recorder (fun _ -> false)
            let records = Sweep.runWith { Sweep.options folder with Parallelism = 3; Log = lines.Enqueue } run sweep
            Expect.equal [ for r in records -> r.Hash ] [ for r in sweep.Runs -> r.Hash ] "plan order"
            Expect.equal
                (Sweep.records folder |> List.map (fun r -> r.Hash) |> List.sort)
                (sweep.Runs |> List.map (fun r -> r.Hash) |> List.sort)
                "each once in the store"
            Expect.equal (lines |> Seq.filter (fun l -> l.Contains " done in ") |> Seq.length) 6 "a progress line per finished run"
            Expect.exists lines (fun l -> l.Contains "6 done, 0 failed") "a summary line"
        }
    ]
