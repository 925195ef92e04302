// Stops a script (or notebook) with the command that builds the StateX libraries when they are missing, and warns
// when they are older than the sources. It must run in an interaction of its own, before the prelude is compiled
// (the prelude's #r lines need the build):
//
//     #load "build-check.fsx"
//     ;;
//     #load "prelude.fsx"
//
open System
open System.IO

let private buildDir = Path.GetFullPath(Path.Combine(__SOURCE_DIRECTORY__, "../.build/cli"))
let private repoRoot = Path.GetFullPath(Path.Combine(__SOURCE_DIRECTORY__, ".."))
let private library = Path.Combine(buildDir, "StateX.dll")

if not (File.Exists library) then
    let message =
        sprintf
            "The StateX libraries are not built (%s is missing).\nBuild them with:  scripts/build   (or: dotnet build fsharp/StateX.Cli -c Release -o .build/cli)"
            library
    // A script stops here; an interactive session (notebook, F# Interactive) gets the message as an error.
    if Environment.GetCommandLineArgs() |> Array.exists (fun a -> a.EndsWith ".fsx") then
        eprintfn "%s" message
        exit 1
    else
        failwith message
else
    let built = File.GetLastWriteTimeUtc library
    let sources = [ "core"; "fsharp" ] |> List.map (fun d -> Path.Combine(repoRoot, d)) |> List.filter Directory.Exists
    let newer =
        sources
        |> Seq.collect (fun d -> Directory.EnumerateFiles(d, "*.*s", SearchOption.AllDirectories))
        |> Seq.filter (fun f -> (f.EndsWith ".fs" || f.EndsWith ".cs") && not (f.Contains "/obj/") && not (f.Contains "/bin/"))
        |> Seq.tryFind (fun f -> File.GetLastWriteTimeUtc f > built)
    match newer with
    | Some f ->
        eprintfn
            "warning: %s is newer than the StateX build in %s; run scripts/build to use it"
            (Path.GetRelativePath(repoRoot, f))
            buildDir
    | None -> ()
