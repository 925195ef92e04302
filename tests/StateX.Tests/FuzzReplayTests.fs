/// CI's share of the fuzzing (scripts/fuzz runs AFL++ for minutes; this replays in seconds): every seed of
/// fuzz/corpus/TARGET and every crash found so far, kept in fuzz/regressions/TARGET, through the same harness,
/// uninstrumented. A reader that fails on one of them other than with a one-line message naming the file fails here.
module StateX.Tests.FuzzReplayTests

open System
open System.IO
open Expecto
open StateX.Fuzz

/// The repository's fuzz folder (found above the test binary).
let private fuzzDir =
    let rec up (d: DirectoryInfo) =
        if isNull d then failwith "fuzz/corpus not found above the test binary"
        elif Directory.Exists(Path.Combine(d.FullName, "fuzz", "corpus")) then Path.Combine(d.FullName, "fuzz")
        else up d.Parent
    up (DirectoryInfo AppContext.BaseDirectory)

let private inputs (target: string) = [
    for sub in [ "corpus"; "regressions" ] do
        let d = Path.Combine(fuzzDir, sub, target)
        if Directory.Exists d then yield! Directory.GetFiles d |> Array.sort
]

[<Tests>]
let tests =
    testList "fuzz replay" [
        for target in FuzzTargets.Names do
            test (sprintf "%s: the corpus and every crash found replay without a finding" target) {
                let files = inputs target
                Expect.isNonEmpty files (sprintf "fuzz/corpus/%s has seeds" target)
                let work = Path.Combine(Fixtures.tempDir (), target)
                let findings = [
                    for f in files do
                        try
                            FuzzTargets.Run(target, File.ReadAllBytes f, work)
                        with :? FuzzFinding as e ->
                            yield sprintf "%s: %s" (Path.GetFileName f) e.Message
                ]
                Expect.isEmpty findings (sprintf "%d of %d inputs fail badly" findings.Length files.Length)
            }

        test "the harness tells a clean refusal from a finding" {
            let work = Path.Combine(Fixtures.tempDir (), "config")
            // Not JSON at all: a clean ConfigException naming the file.
            FuzzTargets.Run("config", "{ nope"B, work)
            Expect.isTrue (FuzzTargets.IsClean(IO.InvalidDataException(work + "/x: bad"), work)) "one line naming the file is clean"
            Expect.isFalse (FuzzTargets.IsClean(NullReferenceException(work), work)) "a NullReferenceException is a finding"
            Expect.isFalse
                (FuzzTargets.IsClean(InvalidOperationException("An element of type 'String' cannot be converted"), work))
                "a message naming no file is a finding"
            Expect.isFalse (FuzzTargets.IsClean(InvalidOperationException(work + ": a\nb"), work)) "a multi-line message is a finding"
        }
    ]
