module StateX.Tests.TestMain

open Expecto
open Expecto.Impl

/// Wraps Expecto's printer so every run ends with the plain line CI reads: `N passed, N failed[, N skipped]`.
let private withPlainSummary (printers: TestPrinters) =
    { printers with
        summary = fun config summary ->
            async {
                do! printers.summary config summary
                let passed = summary.passed.Length
                let failed = summary.failed.Length + summary.errored.Length
                let skipped = summary.ignored.Length
                let tail = if skipped > 0 then sprintf ", %d skipped" skipped else ""
                printfn "%d passed, %d failed%s" passed failed tail
            } }

[<EntryPoint>]
let main argv =
    // Sets up libtorch before any test touches a tensor (and fails loudly, naming the cause, if it cannot).
    StateX.NativeRuntime.Initialize() |> ignore
    let config = { defaultConfig with printer = withPlainSummary defaultConfig.printer; runInParallel = false }
    runTestsInAssemblyWithCLIArgs [ CLIArguments.Printer config.printer; CLIArguments.Sequenced ] argv
