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

/// Starts `statex <args>` without waiting (tests that kill it or run several at once): the process and its output so
/// far, stdout and stderr interleaved. `env`: variables to set (Some) or to remove (None).
let start (env: (string * string option) list) (args: string list) =
    if not (File.Exists cliDll) then failwithf "CLI not built next to the tests: %s" cliDll
    let psi = ProcessStartInfo("dotnet", RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
    psi.ArgumentList.Add cliDll
    for a in args do
        psi.ArgumentList.Add a
    for (k, v) in env do
        match v with
        | Some v -> psi.Environment.[k] <- v
        | None -> psi.Environment.Remove k |> ignore
    let p = Process.Start psi
    let text = Text.StringBuilder()
    let add (e: DataReceivedEventArgs) = if not (isNull e.Data) then lock text (fun () -> text.AppendLine e.Data |> ignore)
    p.OutputDataReceived.Add add
    p.ErrorDataReceived.Add add
    p.BeginOutputReadLine()
    p.BeginErrorReadLine()
    p, (fun () -> lock text (fun () -> text.ToString()))
