module StateX.Tests.TestMain

open Expecto
open Expecto.Impl

[<EntryPoint>]
let main argv =
    // Sets up libtorch before any test touches a tensor (and fails loudly, naming the cause, if it cannot).
    StateX.NativeRuntime.Initialize() |> ignore
    // Said once, up front: without ../shared the tests that need it skip (each saying so), or fail in CI.
    for what, root in [ "fixtures", Fixtures.root; "tokenizers", Fixtures.tokenizersRoot ] do
        if not (root |> Option.exists System.IO.Directory.Exists) then
            eprintfn
                "%s not found: the tests that need it %s"
                (match root with
                 | Some r -> r
                 | None -> sprintf "../shared/%s beside the checkout" what)
                (if Fixtures.sharedRequired then
                     sprintf "fail (%s=1)" Fixtures.RequireSharedVariable
                 else
                     sprintf "are skipped (%s=1 fails them instead, as in CI)" Fixtures.RequireSharedVariable)
    let mutable counts = None
    // Keep Expecto's own summary, and remember the counts for the plain closing line CI reads.
    let printer = {
        defaultConfig.printer with
            // Expecto logs a skip's reason at debug level only; a skipped test should say why in every run.
            ignored = fun name reason -> async { System.Console.Out.WriteLine(sprintf "skipped: %s: %s" name (reason.Trim())) }
            summary =
                fun config summary ->
                    counts <- Some(summary.passed.Length, summary.failed.Length + summary.errored.Length, summary.ignored.Length)
                    defaultConfig.printer.summary config summary
    }
    let code = runTestsInAssemblyWithCLIArgs [ CLIArguments.Printer printer; CLIArguments.Sequenced ] argv
    System.Console.Out.Flush()
    match counts with
    | Some(passed, failed, skipped) ->
        // Alone on its own line, after Expecto's asynchronous log output has drained.
        System.Threading.Thread.Sleep 100
        let tail = if skipped > 0 then sprintf ", %d skipped" skipped else ""
        System.Console.Out.Write(sprintf "\n%d passed, %d failed%s\n" passed failed tail)
    | None -> ()
    code
