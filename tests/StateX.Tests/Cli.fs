/// Runs the statex CLI as a child process, as a user would.
module StateX.Tests.Cli

open System
open System.Diagnostics
open System.IO

type CliResult = { ExitCode: int; Stdout: string; Stderr: string }

let private cliDll = Path.Combine(AppContext.BaseDirectory, "StateX.Cli.dll")

/// `statex <args>` with extra environment variables; fails the test if it does not finish in `timeoutSeconds`.
let runWith (env: (string * string) list) (timeoutSeconds: int) (args: string list) =
    if not (File.Exists cliDll) then failwithf "CLI not built next to the tests: %s" cliDll
    let psi = ProcessStartInfo("dotnet", RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
    psi.ArgumentList.Add cliDll
    for a in args do
        psi.ArgumentList.Add a
    for (k, v) in env do
        psi.Environment.[k] <- v
    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    if not (p.WaitForExit(timeoutSeconds * 1000)) then
        p.Kill true
        failwithf "statex %s did not finish in %d s" (String.Join(" ", args)) timeoutSeconds
    { ExitCode = p.ExitCode; Stdout = out.Result; Stderr = err.Result }

let run args = runWith [] 300 args
