/// The core's rooms depend one way (docs/architecture.md): the model families and the pieces they are built from
/// never use the trainer, the CLI-free F# layer or anything above them. Checked on the compiled assembly, not the
/// sources: every type a model type names in its signatures, fields or method bodies.
module StateX.Tests.LayeringTests

open System
open System.Reflection
open System.Reflection.Emit
open Expecto

/// Every one- and two-byte IL opcode by value, to walk method bodies.
let private opcodes =
    typeof<OpCodes>.GetFields(BindingFlags.Public ||| BindingFlags.Static)
    |> Array.map (fun f -> f.GetValue null :?> OpCode)
    |> Array.map (fun o -> uint16 o.Value, o)
    |> dict

/// Types a method body refers to through its metadata tokens (calls, field accesses, newobj, casts, ldtoken).
let private bodyTypes (m: MethodBase) : Type seq =
    match
        (try
            m.GetMethodBody()
         with _ ->
             null)
    with
    | null -> Seq.empty
    | body ->
        let il = body.GetILAsByteArray()
        let found = Collections.Generic.List<Type>()
        let resolve token =
            try
                match
                    m.Module.ResolveMember(
                        token,
                        (if m.DeclaringType.IsGenericType then m.DeclaringType.GetGenericArguments() else null),
                        (if m.IsGenericMethod then m.GetGenericArguments() else null)
                    )
                with
                | :? Type as t -> found.Add t
                | :? MethodBase as mb -> found.Add mb.DeclaringType
                | :? FieldInfo as f ->
                    found.Add f.DeclaringType
                    found.Add f.FieldType
                | _ -> ()
            with _ ->
                ()
        let mutable i = 0
        while i < il.Length do
            let code, size = if il.[i] = 0xFEuy then (0xFE00us ||| uint16 il.[i + 1]), 2 else uint16 il.[i], 1
            let op = opcodes.[code]
            i <- i + size
            let operand =
                match op.OperandType with
                | OperandType.InlineNone -> 0
                | OperandType.ShortInlineBrTarget
                | OperandType.ShortInlineI
                | OperandType.ShortInlineVar -> 1
                | OperandType.InlineVar -> 2
                | OperandType.InlineI8
                | OperandType.InlineR -> 8
                | OperandType.InlineSwitch -> 4 + 4 * BitConverter.ToInt32(il, i)
                | _ -> 4
            match op.OperandType with
            | OperandType.InlineMethod
            | OperandType.InlineField
            | OperandType.InlineType
            | OperandType.InlineTok -> resolve (BitConverter.ToInt32(il, i))
            | _ -> ()
            i <- i + operand
        found :> Type seq

let private flags =
    BindingFlags.Public ||| BindingFlags.NonPublic ||| BindingFlags.Instance ||| BindingFlags.Static ||| BindingFlags.DeclaredOnly

/// Every type `t` names: base, interfaces, fields, properties, method signatures and bodies (generic arguments too).
let private referenced (t: Type) : Type seq =
    let rec expand (x: Type) : Type seq =
        seq {
            if not (isNull x) then
                yield x
                if x.HasElementType then yield! expand (x.GetElementType())
                if x.IsGenericType then
                    for a in x.GetGenericArguments() do
                        yield! expand a
        }
    seq {
        yield! expand t.BaseType
        for i in t.GetInterfaces() do
            yield! expand i
        for f in t.GetFields flags do
            yield! expand f.FieldType
        for p in t.GetProperties flags do
            yield! expand p.PropertyType
        let methods = Seq.append (t.GetMethods flags |> Seq.cast<MethodBase>) (t.GetConstructors flags |> Seq.cast<MethodBase>)
        for m in methods do
            for p in m.GetParameters() do
                yield! expand p.ParameterType
            match m with
            | :? MethodInfo as mi -> yield! expand mi.ReturnType
            | _ -> ()
            for b in bodyTypes m do
                yield! expand b
    }

/// Namespace of a type, or of the type that declares it (compiler-generated closures and state machines).
let rec private ns (t: Type) = if isNull t.Namespace && not (isNull t.DeclaringType) then ns t.DeclaringType else t.Namespace

let private violations (lower: string list) (forbidden: string list) =
    let core = typeof<StateX.Models.ICausalLanguageModel>.Assembly
    [
        for t in core.GetTypes() do
            if lower |> List.contains (ns t) then
                for r in referenced t |> Seq.distinct do
                    if not (isNull r) && r.Assembly = core && forbidden |> List.contains (ns r) then
                        yield sprintf "%s uses %s" t.FullName r.FullName
    ]
    |> List.distinct

[<Tests>]
let tests =
    testList "layering" [
        test "the model families and their parts do not use the trainer" {
            let models = [
                "StateX.Models"
                "StateX.Gla"
                "StateX.Mamba2"
                "StateX.Gsa"
                "StateX.Power"
                "StateX.Layers"
                "StateX.Autograd"
            ]
            Expect.equal (violations models [ "StateX.Training" ]) [] "models → training references"
        }
        test "the model interfaces do not name the families built on them (checkpoint families are discovered)" {
            Expect.equal
                (violations [ "StateX.Models" ] [ "StateX.Gla"; "StateX.Mamba2"; "StateX.Gsa"; "StateX.Power" ])
                []
                "models → families references"
            let names = StateX.Models.Checkpoint.Families |> Seq.map (fun f -> f.Name) |> List.ofSeq
            for n in [ "gla"; "mamba2 (transformers)"; "mamba2 (mamba_ssm)"; "gsa"; "power" ] do
                Expect.isTrue (names |> List.exists (fun m -> m.StartsWith n)) (sprintf "%s discovered among %A" n names)
        }
        test "the scan sees a dependency that is there (the trainer uses the models)" {
            // Guards the test above against a scan that finds nothing at all.
            let found = violations [ "StateX.Training" ] [ "StateX.Models" ]
            Expect.isTrue
                (found |> List.exists (fun v -> v.Contains "StateX.Models.TrainingStack"))
                (sprintf "found: %A" (List.truncate 5 found))
            Expect.isTrue
                (violations [ "StateX.Gla" ] [ "StateX.Autograd" ] |> List.exists (fun v -> v.Contains "GradientRelay"))
                "GLA's chunked function uses the relay"
        }
    ]
