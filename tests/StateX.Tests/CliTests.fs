module StateX.Tests.CliTests

open Expecto

[<Tests>]
let tests =
    testList "cli" [
        test "statex --help lists every command" {
            let r = Cli.run [ "--help" ]
            Expect.equal r.ExitCode 0 "exit 0"
            for c in [ "info" ] do
                Expect.stringContains (r.Stdout + r.Stderr) c (sprintf "lists %s" c)
        }

        test "statex info reports the runtime set-up" {
            let r = Cli.run [ "info" ]
            Expect.equal r.ExitCode 0 r.Stderr
            for key in [ "TorchSharp"; "libtorch dir"; "compat patch"; "CUDA"; "CPU threads" ] do
                Expect.stringContains r.Stdout key key
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
