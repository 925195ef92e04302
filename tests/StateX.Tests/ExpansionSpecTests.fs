module StateX.Tests.ExpansionSpecTests

open System
open Expecto
open StateX.Expansion

let private resolve (spec: string) layers = (LayerSelection.Parse spec).Resolve layers |> List.ofSeq

[<Tests>]
let tests =
    testList "expansion-spec" [
        test "every:K takes layers 0, K, 2K, ... as the official drop_prop" {
            Expect.equal (resolve "every:6" 24) [ 0; 6; 12; 18 ] "GLA-1.3B preset: 4 of 24"
            Expect.equal (resolve "every:4" 10) [ 0; 4; 8 ] "not a divisor"
        }
        test "all, list, first, last, fraction" {
            Expect.equal (resolve "all" 3) [ 0; 1; 2 ] "all"
            Expect.equal (resolve "list:5,1,1" 6) [ 1; 5 ] "sorted, unique"
            Expect.equal (resolve "2,3" 6) [ 2; 3 ] "bare list"
            Expect.equal (resolve "last:2" 6) [ 4; 5 ] "last"
            Expect.equal (resolve "first:2" 6) [ 0; 1 ] "first"
            Expect.equal (resolve "fraction:0.25" 24) [ 0; 4; 8; 12; 16; 20 ] "spread evenly"
            Expect.equal (resolve "fraction:0.01" 24) [ 0 ] "at least one"
        }
        test "out-of-range and malformed selections fail with clear errors" {
            Expect.throwsC (fun () -> resolve "list:1,9" 4 |> ignore) (fun e ->
                Expect.stringContains e.Message "layer index 9 out of range" "names index")
            Expect.throwsC (fun () -> resolve "last:9" 4 |> ignore) (fun e -> Expect.stringContains e.Message "more layers" "too many")
            for bad in [ "every:0"; "fraction:1.5"; "some"; "list:"; "every:x" ] do
                Expect.throwsT<ArgumentException> (fun () -> LayerSelection.Parse bad |> ignore) bad
        }
        test "rewrites parse, and an expansion ratio below 1 is refused" {
            Expect.equal (Rewrite.Parse "merge-heads") (Rewrite.MergeHeads 1 :> Rewrite) "merge"
            Expect.equal (Rewrite.Parse "merge-heads:2") (Rewrite.MergeHeads 2 :> Rewrite) "merge to 2"
            Expect.equal (Rewrite.Parse "state:x4") (Rewrite.WidenState 4 :> Rewrite) "x4"
            Expect.throwsC (fun () -> Rewrite.Parse "state:x0" |> ignore) (fun e -> Expect.stringContains e.Message "at least 1" "r < 1")
            Expect.throwsC (fun () -> Rewrite.Parse "widen" |> ignore) (fun e ->
                Expect.stringContains e.Message "unknown rewrite" "unknown")
            Expect.equal (ExpansionRequest.ParseInit "Preserve") ExpansionInit.Preserve "init"
            Expect.throwsT<ArgumentException> (fun () -> ExpansionRequest.ParseInit "random" |> ignore) "bad init"
        }
        test "text forms round-trip" {
            for s in [ "all"; "every:6"; "list:1,3"; "last:2"; "first:3"; "fraction:0.5" ] do
                Expect.equal ((LayerSelection.Parse s).ToString()) s s
            for s in [ "merge-heads"; "merge-heads:2"; "state:x4" ] do
                Expect.equal ((Rewrite.Parse s).ToString()) s s
        }
    ]
