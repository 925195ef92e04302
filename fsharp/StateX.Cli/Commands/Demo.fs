module StateX.Cli.Commands.Demo

open System
open System.IO
open Argu
open StateX
open StateX.Cli.Demo
open StateX.Cli.Demo.DemoPreset

type DemoArgs =
    | Preset of name: string
    | Out of dir: string
    | Seeds of list: string
    | Families of list: string
    | Device of string
    | Plan
    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Preset _ -> "cpu (default: under 15 minutes on 2 cores) | gpu (larger, a few minutes on one GPU) | smoke (seconds; mechanics only)."
            | Out _ -> "study folder (default runs/demo-PRESET); re-running resumes finished stages."
            | Seeds _ -> "comma-separated seeds (default 0,1)."
            | Families _ -> "comma-separated families (default gla,mamba2)."
            | Device _ -> "override the preset's device (cpu, cuda, cuda:N)."
            | Plan -> "print the plan and exit."

let private plan (p: Preset) (families: string list) (out: string) =
    let tokens (b: Budget) = int64 b.Steps * int64 b.Batch * int64 b.SeqLen
    printfn "StateX demo, preset %s (%s), device %s, seeds %s, families %s" p.Name p.Expected p.Device
        (String.Join(",", p.Seeds)) (String.Join(",", families))
    printfn "  1. pretrain base models: %d steps × %d × %d tokens = %s tokens each, lr %g" p.Pretrain.Steps p.Pretrain.Batch p.Pretrain.SeqLen ((tokens p.Pretrain).ToString "N0") p.Pretrain.Lr
    printfn "     data: %s" p.PretrainData
    printfn "  2. post-train, equal budget per arm: %d steps × %d × %d tokens = %s tokens, lr %g" p.PostTrain.Steps p.PostTrain.Batch p.PostTrain.SeqLen ((tokens p.PostTrain).ToString "N0") p.PostTrain.Lr
    printfn "     LPT: the base model as is;  StateX: %s" (String.Join("; ", families |> List.map (fun f -> let e = p.Expansions[f] in sprintf "%s %O on %O (%s)" f e.Rewrite e.Layers (string e.Init |> fun s -> s.ToLowerInvariant()))))
    printfn "     data: %s" p.PostTrainData
    printfn "  3. evaluate base, LPT, StateX: MQAR pairs %s at length %d; passkey lengths %s × depths %s; held-out text loss" 
        (String.Join(",", p.MqarPairs)) p.MqarLength (String.Join(",", p.PasskeyLengths)) (String.Join(",", p.PasskeyDepths))
    printfn "  → %s (results.csv, report.html, a folder per seed/family/arm)" out

let run (args: ParseResults<DemoArgs>) =
    let preset = DemoPreset.byName (args.GetResult(Preset, "cpu"))
    let preset =
        match args.TryGetResult Seeds with
        | Some s -> { preset with Seeds = s.Split(',', StringSplitOptions.RemoveEmptyEntries) |> Array.map int |> List.ofArray }
        | None -> preset
    let preset = match args.TryGetResult Device with Some d -> { preset with Device = d } | None -> preset
    let families =
        args.GetResult(Families, "gla,mamba2").Split(',', StringSplitOptions.RemoveEmptyEntries) |> List.ofArray
        |> List.map (fun f -> if preset.Configs.ContainsKey f then f else invalidArg "families" (sprintf "unknown family '%s': expected gla, mamba2" f))
    let out = args.GetResult(Out, Path.Combine("runs", "demo-" + preset.Name))
    plan preset families out
    if args.Contains Plan then 0
    else
        NativeRuntime.EnsureInitialized()
        let clock = Diagnostics.Stopwatch.StartNew()
        let printer = Train.progressPrinter ()
        let reporter : DemoStudy.Reporter =
            { Stage = fun s -> eprintfn "[%s] %s" (clock.Elapsed.ToString @"m\:ss") s
              Progress = printer }
        let rows = DemoStudy.run preset out families reporter
        let table = DemoSummary.table rows families preset.PostTrain.SeqLen
        let verdicts = DemoSummary.verdicts rows families preset.PostTrain.SeqLen
        let report = DemoReport.write preset families rows out
        IO.AtomicFile.WriteAllText(Path.Combine(out, "summary.txt"), table + "\n" + String.Join("\n", verdicts) + "\n")
        printfn ""
        printf "%s" table
        printfn ""
        for v in verdicts do printfn "%s" v
        printfn ""
        printfn "study folder  %s (results.csv, summary.txt)" (Path.GetFullPath out)
        printfn "report        %s  (open it in a browser; it works offline)" (Path.GetFullPath report)
        printfn "elapsed       %s" (clock.Elapsed.ToString @"m\:ss")
        0
