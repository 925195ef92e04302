/// The test helpers themselves: a missing shared file fails when it is required, and a tolerance check fails.
module StateX.Tests.FixturesTests

open System.IO
open Expecto
open TorchSharp

let private outcome (f: unit -> string) =
    try
        Ok(f ())
    with
    | :? IgnoreException as e -> Error("skipped", e.Message)
    | :? AssertException as e -> Error("failed", e.Message)

[<Tests>]
let tests =
    testList "test helpers" [
        test "a missing shared folder fails the test when required and skips it otherwise, naming what was looked for" {
            let root = Fixtures.tempDir ()
            Directory.CreateDirectory(Path.Combine(root, "present")) |> ignore
            Expect.equal
                (outcome (fun () -> Fixtures.resolve true (Some root) "fixture 'present'" "-" "present"))
                (Ok(Path.Combine(root, "present")))
                "found"
            for required, verdict in [ true, "failed"; false, "skipped" ] do
                for r in [ Some root; None ] do
                    match outcome (fun () -> Fixtures.resolve required r "fixture 'absent'" "../shared/fixtures/absent" "absent") with
                    | Error(v, message) ->
                        Expect.equal v verdict (sprintf "required=%b root=%A" required r)
                        Expect.stringContains message "fixture 'absent'" "names the fixture"
                        Expect.stringContains
                            message
                            (match r with
                             | Some d -> Path.Combine(d, "absent")
                             | None -> "../shared/fixtures/absent")
                            "says where it looked"
                        Expect.stringContains message Fixtures.RequireSharedVariable "names the switch"
                    | Ok p -> failtestf "found a folder that does not exist: %s" p
        }

        test "TensorAssert.close passes within the tolerance and fails past it (and on NaN), giving the difference" {
            use a = torch.tensor [| 1.0f; 2.0f; 3.0f |]
            use b = torch.tensor [| 1.0f; 2.5f; 3.0f |]
            Expect.equal (TensorAssert.maxAbs a b) 0.5 "max abs diff"
            Expect.equal (TensorAssert.close 0.5 "at the tolerance" a b) 0.5 "passes at the tolerance"
            Expect.throwsC (fun () -> TensorAssert.close 0.4 "past it" a b |> ignore) (fun e ->
                Expect.stringContains e.Message "past it: max abs diff 0.5 > 0.4" "message")
            use n = torch.tensor [| 1.0f; nanf; 3.0f |]
            Expect.throwsT<AssertException> (fun () -> TensorAssert.close 1.0 "NaN" a n |> ignore) "NaN fails"
        }
    ]
