// The StateX prelude: references the built libraries (.build/cli, made by scripts/build) and sets up the native
// runtime. Load it after build-check.fsx, in its own interaction:
//
//     #load "build-check.fsx"
//     ;;
//     #load "prelude.fsx"
//     open StateX
//
#r "../.build/cli/TorchSharp.dll"
#r "../.build/cli/StateX.Core.dll"
#r "../.build/cli/StateX.dll"
#r "../.build/cli/Deedle.dll"
#r "../.build/cli/Plotly.NET.dll"
#r "../.build/cli/DynamicObj.dll"

open System
open System.IO
open StateX

Runtime.init () |> ignore

/// `key=value` arguments after the script (`dotnet fsi scripts/quickstart.fsx steps=200 device=cuda`); an
/// environment variable STATEX_KEY (upper case) also sets a key.
let args =
    let cli = Environment.GetCommandLineArgs() |> Array.skipWhile (fun a -> not (a.EndsWith ".fsx"))
    [
        for a in (if cli.Length > 1 then cli.[1..] else [||]) do
            match a.TrimStart('-').Split('=', 2) with
            | [| k; v |] -> yield k, v
            | _ -> ()
    ]
    |> Map.ofList

/// The value of argument `name`, else the environment variable STATEX_NAME, else `fallback`.
let arg (name: string) (fallback: 'T) : 'T =
    let given =
        match args.TryFind name with
        | Some v -> Some v
        | None -> Option.ofObj (Environment.GetEnvironmentVariable("STATEX_" + name.ToUpperInvariant().Replace('-', '_')))
    match given with
    | Some v -> Convert.ChangeType(v, typeof<'T>, Globalization.CultureInfo.InvariantCulture) :?> 'T
    | None -> fallback

/// The repository root.
let root = Path.GetFullPath(Path.Combine(__SOURCE_DIRECTORY__, ".."))

/// Where a script writes: `out=DIR` if given, else runs/NAME under the repository (git-ignored).
let outDir (name: string) =
    let d =
        match arg "out" "" with
        | "" -> Path.Combine(root, "runs", name)
        | d -> Path.GetFullPath d
    Directory.CreateDirectory d |> ignore
    d

/// How runs are carried out: `device=` (default auto), progress lines every 10 s.
let settings = { RunSettings.defaults with Device = arg "device" "auto" }
