/// Where the shared reference files live (../shared/fixtures, ../shared/tokenizers), and what a test does when they
/// are absent: skip, saying so, on a development machine; fail in CI, which sets STATEX_REQUIRE_SHARED=1 (.ci/run)
/// because CI always has ../shared and a skipped parity test there would hide a missing or moved folder.
module StateX.Tests.Fixtures

open System
open System.IO
open System.Text.Json.Nodes
open Expecto
open TorchSharp
open StateX.IO
open StateX.Models

/// The environment variable that turns a missing shared file from a skip into a failure.
[<Literal>]
let RequireSharedVariable = "STATEX_REQUIRE_SHARED"

/// True when STATEX_REQUIRE_SHARED is set to anything but "" or "0".
let sharedRequired =
    match Environment.GetEnvironmentVariable RequireSharedVariable with
    | null
    | ""
    | "0" -> false
    | _ -> true

/// The first folder above the test binary holding shared/<sub>/<marker>, else None; `override` (an environment
/// variable's name) wins when set.
let private findShared (overrideVariable: string) (sub: string) (marker: string) =
    match Environment.GetEnvironmentVariable overrideVariable with
    | null
    | "" ->
        let rec up (d: DirectoryInfo) =
            if isNull d then None
            elif File.Exists(Path.Combine(d.FullName, "shared", sub, marker)) then Some(Path.Combine(d.FullName, "shared", sub))
            else up d.Parent
        up (DirectoryInfo AppContext.BaseDirectory)
    | p -> Some p

/// ../shared/fixtures beside the checkout (or STATEX_FIXTURES).
let root = findShared "STATEX_FIXTURES" "fixtures" "README.md"

/// ../shared/tokenizers beside the checkout (or STATEX_TOKENIZERS).
let tokenizersRoot = findShared "STATEX_TOKENIZERS" "tokenizers" "reference.jsonl"

/// `root/name` when it exists. Otherwise fails the test when `required`, else skips it; either way the message says
/// what was looked for (`what`, e.g. "fixture 'gla-tiny'") and where.
let resolve (required: bool) (root: string option) (what: string) (expected: string) (name: string) =
    match root with
    | Some r when Directory.Exists(Path.Combine(r, name)) || File.Exists(Path.Combine(r, name)) -> Path.Combine(r, name)
    | _ ->
        let where =
            match root with
            | Some r -> Path.Combine(r, name)
            | None -> expected
        if required then
            failtestf "%s not found at %s, and %s=1 requires it (CI always has ../shared)" what where RequireSharedVariable
        else
            skiptestf "%s not found at %s (%s=1 makes this a failure)" what where RequireSharedVariable

/// The folder of one fixture (see `resolve`).
let dir name =
    resolve
        sharedRequired
        root
        (sprintf "fixture '%s'" name)
        (sprintf "../shared/fixtures/%s beside the checkout (or STATEX_FIXTURES)" name)
        name

/// A file or folder of ../shared/tokenizers; `name` "" is the folder itself (see `resolve`).
let tokenizer name =
    resolve
        sharedRequired
        tokenizersRoot
        (sprintf "tokenizer '%s'" name)
        (sprintf "../shared/tokenizers/%s beside the checkout (or STATEX_TOKENIZERS)" name)
        name

let tempDir () =
    let d = Path.Combine(Path.GetTempPath(), "statex-tests", Guid.NewGuid().ToString("N"))
    Directory.CreateDirectory d |> ignore
    d

/// A fresh temporary copy of a fixture's files, for tests that edit or break them.
let copy name =
    let src = dir name
    let d = tempDir ()
    for f in Directory.GetFiles src do
        File.Copy(f, Path.Combine(d, Path.GetFileName f))
    d

/// Rewrites `dir`/config.json through `edit`.
let editConfig (dir: string) (edit: JsonObject -> unit) =
    let p = Path.Combine(dir, "config.json")
    let o = JsonNode.Parse(File.ReadAllText p).AsObject()
    edit o
    File.WriteAllText(p, o.ToJsonString())

/// A fixture's model on the CPU, load warnings ignored.
let load name = Checkpoint.Load(dir name, warn = Action<string>(ignore))

/// A fixture's io.safetensors: input_ids [B, T] (int64) and the reference's logits [B, T, vocab] (float32).
let io name : torch.Tensor * torch.Tensor =
    use r = new SafeTensorsReader(Path.Combine(dir name, "io.safetensors"))
    r.Load "input_ids", r.Load "logits"

/// The repository's data/examples folder (found above the test binary), or None.
let examplesDir =
    let rec up (d: DirectoryInfo) =
        if isNull d then None
        elif Directory.Exists(Path.Combine(d.FullName, "data", "examples")) then Some(Path.Combine(d.FullName, "data", "examples"))
        else up d.Parent
    up (DirectoryInfo AppContext.BaseDirectory)

/// A file of data/examples; fails the test when the folder cannot be found.
let example name =
    match examplesDir with
    | Some d -> Path.Combine(d, name)
    | None -> failwith "data/examples not found above the test binary"
