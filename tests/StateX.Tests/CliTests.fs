module StateX.Tests.CliTests

open Expecto

[<Tests>]
let tests =
    testList "cli" [
        test "statex --help lists every command" {
            let r = Cli.run [ "--help" ]
            Expect.equal r.ExitCode 0 "exit 0"
            for c in [ "info"; "check-logits"; "expand" ] do
                Expect.stringContains (r.Stdout + r.Stderr) c (sprintf "lists %s" c)
        }

        test "statex info reports the runtime set-up" {
            let r = Cli.run [ "info" ]
            Expect.equal r.ExitCode 0 r.Stderr
            for key in [ "TorchSharp"; "libtorch dir"; "compat patch"; "CUDA"; "CPU threads" ] do
                Expect.stringContains r.Stdout key key
        }

        test "statex expand on a fixture prints the accounting and writes a checkpoint check-logits can read" {
            let dir = Fixtures.dir "gla-tiny"
            let out = System.IO.Path.Combine(Fixtures.tempDir (), "merged")
            let r = Cli.run [ "expand"; "--model"; dir; "--out"; out; "--layers"; "all"; "--rewrite"; "merge-heads"; "--init"; "inherit" ]
            Expect.equal r.ExitCode 0 r.Stderr
            Expect.stringContains r.Stdout "total" "accounting table"
            let merged = Fixtures.dir "gla-tiny-merged"
            let c = Cli.run [ "check-logits"; "--model"; out; "--io"; System.IO.Path.Combine(merged, "io.safetensors") ]
            Expect.equal c.ExitCode 0 c.Stderr
            let last = c.Stdout.Trim().Split('\n') |> Array.last
            Expect.stringStarts last "max_abs_diff=" "last line"
            Expect.isLessThan (float (last.Substring "max_abs_diff=".Length)) 1e-4 "the merged checkpoint reproduces fla's merged logits"
        }

        test "statex expand refuses a bad request with a clear message" {
            let r = Cli.run [ "expand"; "--model"; Fixtures.dir "mamba2-tiny"; "--layers"; "all"; "--rewrite"; "merge-heads"; "--init"; "reinit" ]
            Expect.notEqual r.ExitCode 0 "fails"
            Expect.stringContains r.Stderr "applies to GLA" "says why"
        }

        test "a STATEX_LIBTORCH that does not exist is named in the error" {
            let r = Cli.runWith [ "STATEX_LIBTORCH", "/nonexistent/torch/lib" ] 120 [ "info" ]
            Expect.notEqual r.ExitCode 0 "fails"
            Expect.stringContains r.Stderr "/nonexistent/torch/lib" "names the folder"
            Expect.stringContains r.Stderr "does not exist" "says why"
        }

        test "a STATEX_LIBTORCH without libtorch is named in the error" {
            let d = Fixtures.tempDir ()
            let r = Cli.runWith [ "STATEX_LIBTORCH", d ] 120 [ "info" ]
            Expect.notEqual r.ExitCode 0 "fails"
            Expect.stringContains r.Stderr d "names the folder"
            Expect.stringContains r.Stderr "holds no libtorch" "says why"
        }
    ]
