module StateX.Tests.TestMain

open Expecto
open Expecto.Impl

[<EntryPoint>]
let main argv =
    // Sets up libtorch before any test touches a tensor (and fails loudly, naming the cause, if it cannot).
    StateX.NativeRuntime.Initialize() |> ignore
    let mutable counts = None
    // Keep Expecto's own summary, and remember the counts for the plain closing line CI reads.
    let printer =
        { defaultConfig.printer with
            summary = fun config summary ->
                counts <- Some(summary.passed.Length, summary.failed.Length + summary.errored.Length, summary.ignored.Length)
                defaultConfig.printer.summary config summary }
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
