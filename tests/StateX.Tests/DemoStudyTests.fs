module StateX.Tests.DemoStudyTests

open System.IO
open Expecto
open StateX.Cli.Commands
open StateX.Cli.Demo

[<Tests>]
let tests =
    testList "demo study" [
        test "worker processes side by side give the numbers of one process; the control runs, is bigger, and is judged; re-running resumes" {
            let root = Fixtures.tempDir ()
            // In process, one pipeline after another.
            let one = Path.Combine(root, "one")
            let reporter : DemoStudy.Reporter = { Stage = ignore; Progress = fun _ _ -> () }
            Expect.equal DemoPreset.smoke.Workers 2 "the smoke preset runs two workers, like the cpu preset"
            Demo.execute (DemoStudy.ofPreset { DemoPreset.smoke with Workers = 1 }) [ "gla"; "mamba2" ] one reporter |> ignore
            // The CLI: four (seed, family) pipelines in worker processes, two at a time.
            let two = Path.Combine(root, "two")
            let r = Cli.runWith [ "OMP_NUM_THREADS", "1" ] 300 [ "demo"; "--preset"; "smoke"; "--out"; two ]
            Expect.equal r.ExitCode 0 (sprintf "exit 0; stderr: %s" r.Stderr)
            Expect.stringContains r.Stderr "2 at a time in worker processes" "workers"
            let rows1, rows2 = DemoStudy.readRows (Path.Combine(one, "results.csv")), DemoStudy.readRows (Path.Combine(two, "results.csv"))
            // The same rows; values up to round-off (the worker processes run libtorch on one thread each, this test
            // host on its default count, and float sums depend on the split).
            let key (r: DemoStudy.Row) = r.Family, r.Arm, r.Seed, r.Task, r.Setting, r.Metric, r.N
            Expect.equal (rows2 |> List.map key) (rows1 |> List.map key) "the same rows in the same order"
            for a, b in List.zip rows1 rows2 do
                if a.Task = "model" then Expect.equal b.Value a.Value (sprintf "%A: exact" (key a))
                else
                    // accuracies: at most two of N answers flipped by round-off; losses: 2%.
                    let tol = if a.Metric = "accuracy" then 2.0 / float a.N else 0.02 * max 1.0 (abs a.Value)
                    Expect.isLessThanOrEqual (abs (b.Value - a.Value)) tol (sprintf "%A: %g vs %g" (key a) b.Value a.Value)
            for family in [ "gla"; "mamba2" ] do
                for seed in [ 0; 1 ] do
                    let value arm = rows2 |> List.find (fun r -> r.Family = family && r.Seed = seed && r.Arm = arm && r.Metric = "state_elements") |> fun r -> r.Value
                    Expect.isGreaterThan (value "scratch") (value "statex") (sprintf "%s seed %d: the control expands every layer, StateX some" family seed)
                    Expect.isGreaterThan (value "statex") (value "base") "StateX's state is larger than the base's"
                Expect.isTrue (File.Exists(Path.Combine(two, "seed0", family, "scratch", "model", "model.safetensors"))) "the control's checkpoint"
            Expect.stringContains r.Stdout "  control" "a control row in the table"
            Expect.stringContains r.Stdout "gla, state limit: " "a state-limit verdict per family"
            Expect.stringContains r.Stdout "mamba2, state limit: " "a state-limit verdict per family"
            let again = Cli.runWith [ "OMP_NUM_THREADS", "1" ] 300 [ "demo"; "--preset"; "smoke"; "--out"; two ]
            Expect.equal again.ExitCode 0 "re-run"
            Expect.isFalse (again.Stderr.Contains "evaluating" || again.Stderr.Contains "steps ×") "re-running trains and evaluates nothing"
            Expect.equal (DemoStudy.readRows (Path.Combine(two, "results.csv"))) rows2 "the same results"
        }
    ]
