/// Canonical text and stable hashes: round trips, culture independence, sensitivity to every field.
module StateX.Tests.FSharpHashTests

open System
open System.Globalization
open System.Threading
open Microsoft.FSharp.Reflection
open Expecto
open FsCheck
open FsCheck.FSharp
open StateX

/// Strings without null (a description never holds null; options say "absent").
type NonNullStrings =
    static member String() : Arbitrary<string> =
        ArbMap.defaults |> ArbMap.arbitrary<NonNull<string>> |> Arb.convert (fun (NonNull s) -> s) NonNull

let private config = { FsCheckConfig.defaultConfig with arbitrary = [ typeof<NonNullStrings> ]; maxTest = 200 }

let private flags = Reflection.BindingFlags.Public ||| Reflection.BindingFlags.NonPublic

/// A value of type t that differs from any default (used where a mutation needs something to put in).
let rec private sample (t: Type) : obj =
    if t = typeof<int> then
        box 7
    elif t = typeof<int64> then
        box 7L
    elif t = typeof<float> then
        box 0.7
    elif t = typeof<bool> then
        box true
    elif t = typeof<string> then
        box "sample"
    elif t.IsGenericType && t.GetGenericTypeDefinition() = typedefof<option<_>> then
        FSharpValue.MakeUnion(FSharpType.GetUnionCases(t).[1], [| sample (t.GetGenericArguments().[0]) |])
    elif t.IsGenericType && t.GetGenericTypeDefinition() = typedefof<list<_>> then
        let cases = FSharpType.GetUnionCases t
        FSharpValue.MakeUnion(cases.[1], [| sample (t.GetGenericArguments().[0]); FSharpValue.MakeUnion(cases.[0], [||]) |])
    elif FSharpType.IsTuple t then
        FSharpValue.MakeTuple(FSharpType.GetTupleElements t |> Array.map sample, t)
    elif FSharpType.IsRecord(t, flags) then
        FSharpValue.MakeRecord(t, FSharpType.GetRecordFields(t, flags) |> Array.map (fun f -> sample f.PropertyType), flags)
    elif FSharpType.IsUnion(t, flags) then
        let c = FSharpType.GetUnionCases(t, flags).[0]
        FSharpValue.MakeUnion(c, c.GetFields() |> Array.map (fun f -> sample f.PropertyType), flags)
    else
        failwithf "no sample for %s" t.Name

/// Every value that differs from `v` in exactly one place (one leaf field, one list element, one union case),
/// each with the path of what changed.
let rec mutations (t: Type) (v: obj) : (string * obj) list =
    let isOption = t.IsGenericType && t.GetGenericTypeDefinition() = typedefof<option<_>>
    let isList = t.IsGenericType && t.GetGenericTypeDefinition() = typedefof<list<_>>
    if t = typeof<int> then
        [ "", box ((v :?> int) + 1) ]
    elif t = typeof<int64> then
        [ "", box ((v :?> int64) + 1L) ]
    elif t = typeof<float> then
        [ "", box (let x = v :?> float in if Double.IsFinite x then x * 1.5 + 0.25 else 1.0) ]
    elif t = typeof<bool> then
        [ "", box (not (v :?> bool)) ]
    elif t = typeof<string> then
        [ "", box ((v :?> string) + "x") ]
    elif isOption then
        let inner = t.GetGenericArguments().[0]
        if isNull v then
            [ "=Some", sample t ]
        else
            let x = (FSharpValue.GetUnionFields(v, t) |> snd).[0]
            ("=None", null)
            :: [ for p, m in mutations inner x -> ".Value" + p, FSharpValue.MakeUnion(FSharpType.GetUnionCases(t).[1], [| m |]) ]
    elif isList then
        let et = t.GetGenericArguments().[0]
        let items = [ for x in (v :?> Collections.IEnumerable) -> x ]
        let cases = FSharpType.GetUnionCases t
        let build (xs: obj list) =
            List.foldBack (fun x acc -> FSharpValue.MakeUnion(cases.[1], [| x; acc |])) xs (FSharpValue.MakeUnion(cases.[0], [||]))
        [
            yield "+item", build (items @ [ sample et ])
            if not items.IsEmpty then yield "-item", build (List.tail items)
            for i, x in List.indexed items do
                for p, m in mutations et x -> sprintf "[%d]%s" i p, build (List.mapi (fun j y -> if j = i then m else y) items)
        ]
    elif FSharpType.IsTuple t then
        let items = FSharpValue.GetTupleFields v
        [
            for i, et in Array.indexed (FSharpType.GetTupleElements t) do
                for p, m in mutations et items.[i] ->
                    sprintf ".Item%d%s" (i + 1) p, FSharpValue.MakeTuple(Array.mapi (fun j y -> if j = i then m else y) items, t)
        ]
    elif FSharpType.IsRecord(t, flags) then
        let fields = FSharpType.GetRecordFields(t, flags)
        let values = FSharpValue.GetRecordFields(v, flags)
        [
            for i, f in Array.indexed fields do
                for p, m in mutations f.PropertyType values.[i] ->
                    "." + f.Name + p, FSharpValue.MakeRecord(t, Array.mapi (fun j y -> if j = i then m else y) values, flags)
        ]
    elif FSharpType.IsUnion(t, flags) then
        let case, values = FSharpValue.GetUnionFields(v, t, flags)
        let fields = case.GetFields()
        [
            for other in FSharpType.GetUnionCases(t, flags) do
                if other.Tag <> case.Tag then
                    yield
                        "=" + other.Name,
                        FSharpValue.MakeUnion(other, other.GetFields() |> Array.map (fun f -> sample f.PropertyType), flags)
            for i, f in Array.indexed fields do
                for p, m in mutations f.PropertyType values.[i] ->
                    sprintf ".%s.%s%s" case.Name f.Name p,
                    FSharpValue.MakeUnion(case, Array.mapi (fun j y -> if j = i then m else y) values, flags)
        ]
    else
        failwithf "no mutation for %s" t.Name

let private leafFields (t: Type) =
    let rec count (t: Type) =
        if FSharpType.IsRecord(t, flags) then FSharpType.GetRecordFields(t, flags) |> Array.sumBy (fun f -> count f.PropertyType) else 1
    count t

let private withCulture (name: string) (f: unit -> 'a) =
    let saved = Thread.CurrentThread.CurrentCulture
    Thread.CurrentThread.CurrentCulture <- CultureInfo name
    try
        f ()
    finally
        Thread.CurrentThread.CurrentCulture <- saved

let richGla =
    FSharpModelTests.glaWide
    |> Model.mapGla (fun g -> { g with FeatureMap = Some "relu"; ClampMin = Some -2.5; LayerHeads = None })
    |> Expand.every 2 (MergeHeads Reinit)
    |> Expand.seed 3L
    |> Expand.last 1 (MergeHeadsTo(2, Inherit))
    |> Expand.freezeOthers

let richMamba =
    FSharpModelTests.mambaGroups
    |> Model.mapMamba2 (fun s -> { s with LayerStates = Some [ 16; 32; 16 ] })
    |> Expand.layers [ 0; 2 ] (State(4, Preserve))

[<Tests>]
let tests =
    testList "fsharp.hash" [
        testPropertyWithConfig config "canonical text reads back to a value with the same text (any description)"
        <| fun (m: Model) ->
            let text = Hash.canonical m
            Hash.canonical (ValueJson.ofText<Model> text) = text

        testPropertyWithConfig config "values read back from their text are equal (descriptions without NaN)"
        <| fun (m: Model) ->
            let text = Hash.canonical m
            text.Contains "NaN" || ValueJson.ofText<Model> text = m

        test "every field of a description changes its hash" {
            for name, d in [ "gla", richGla; "mamba2", richMamba ] do
                let ms = mutations typeof<Model> (box d)
                let arch =
                    match d.Arch with
                    | Gla _ -> typeof<GlaSpec>
                    | Mamba2 _ -> typeof<Mamba2Spec>
                    | Gsa _ -> typeof<GsaSpec>
                    | Power _ -> typeof<PowerSpec>
                Expect.isGreaterThanOrEqual
                    ms.Length
                    (leafFields arch + leafFields typeof<Expansion>)
                    (name + ": a mutation per field at least")
                let h = Hash.short d
                let hashes = [
                    for path, m in ms ->
                        let hm = Hash.short (m :?> Model)
                        Expect.notEqual hm h (sprintf "%s: changing %s changes the hash" name path)
                        hm
                ]
                Expect.equal (List.distinct hashes).Length hashes.Length (name + ": different changes give different hashes")
        }

        test "hashes do not depend on the culture or on the process" {
            for d in [ richGla; richMamba ] do
                let h = Hash.sha256 d
                Expect.equal (withCulture "de-DE" (fun () -> Hash.sha256 d)) h "German culture (decimal comma)"
                Expect.equal (withCulture "ar-SA" (fun () -> Hash.sha256 d)) h "Arabic culture"
                Expect.equal (Hash.sha256 (ValueJson.ofText<Model>(Hash.canonical d))) h "a value read back from its text"
                Expect.equal (Hash.short d) (h.Substring(0, 12)) "short = prefix of the full hash"
                Expect.isMatch h "^[0-9a-f]{64}$" "64 hex digits"
            let text = Hash.canonical richGla
            Expect.stringContains text "\"ClampMin\":-2.5" "numbers in invariant form"
            Expect.stringContains
                text
                "\"Rewrite\":{\"MergeHeadsTo\":{\"heads\":2,\"init\":\"Inherit\"}}"
                "union cases by name, fields by name"
        }

        test "values with no stable text are refused by name" {
            let e = Expect.throwsC (fun () -> Hash.short (fun (x: int) -> x) |> ignore) id
            Expect.stringContains e.Message "function" "a function cannot be hashed"
            let e = Expect.throwsC (fun () -> Hash.short (obj ()) |> ignore) id
            Expect.stringContains e.Message "no stable text" "an object cannot be hashed"
            let e = Expect.throwsC (fun () -> ValueJson.ofText<Model> """{"Arch":{"Gla":{}},"Expansions":[],"Extra":1}""" |> ignore) id
            Expect.stringContains e.Message "Extra" "an unknown field is named"
        }
    ]
