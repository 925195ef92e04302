/// Where the reference fixtures live, and a plain message when they are absent.
module StateX.Tests.Fixtures

open System.IO
open Expecto

/// ../shared/fixtures beside the checkout (or STATEX_FIXTURES).
let root =
    match System.Environment.GetEnvironmentVariable "STATEX_FIXTURES" with
    | null | "" ->
        let rec up (d: DirectoryInfo) =
            if isNull d then None
            elif Directory.Exists(Path.Combine(d.FullName, "shared", "fixtures")) && File.Exists(Path.Combine(d.FullName, "shared", "fixtures", "README.md"))
            then Some(Path.Combine(d.FullName, "shared", "fixtures"))
            else up d.Parent
        up (DirectoryInfo(System.AppContext.BaseDirectory))
    | p -> Some p

/// The folder of one fixture; skips the test (saying why) when the fixtures are absent.
let dir name =
    match root with
    | Some r when Directory.Exists(Path.Combine(r, name)) -> Path.Combine(r, name)
    | _ -> skiptestf "fixture '%s' not found: expected ../shared/fixtures/%s beside the checkout (or set STATEX_FIXTURES)" name name

let tempDir () =
    let d = Path.Combine(Path.GetTempPath(), "statex-tests", System.Guid.NewGuid().ToString("N"))
    Directory.CreateDirectory d |> ignore
    d

/// The repository's data/examples folder (found above the test binary), or None.
let examplesDir =
    let rec up (d: DirectoryInfo) =
        if isNull d then None
        elif Directory.Exists(Path.Combine(d.FullName, "data", "examples")) then Some(Path.Combine(d.FullName, "data", "examples"))
        else up d.Parent
    up (DirectoryInfo System.AppContext.BaseDirectory)

/// A file of data/examples; fails the test when the folder cannot be found.
let example name =
    match examplesDir with
    | Some d -> Path.Combine(d, name)
    | None -> failwith "data/examples not found above the test binary"
