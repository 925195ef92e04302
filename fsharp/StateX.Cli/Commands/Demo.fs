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
    | Gla of dir: string
    | Mamba2 of dir: string
    | Data of spec: string
    | Heldout of spec: string
    | Steps of int
    | Seq_Len of int
    | Batch of int
    | [<Hidden>] Worker of part: string
    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Preset _ -> "cpu (default: under 15 minutes on 2 cores) | gpu (larger, about 15 minutes on one H200) | smoke (seconds; mechanics only) | paper (the paper's 1.3B post-training on checkpoints you bring: --gla/--mamba2 DIR, --data SPEC)."
            | Gla _ -> "paper preset: a GLA checkpoint folder (config.json, model.safetensors, tokenizer) to post-train as the base model."
            | Mamba2 _ -> "paper preset: a Mamba2 checkpoint folder (config.json, model.safetensors, tokenizer) to post-train as the base model."
            | Data _ -> "paper preset: the post-training data (a data spec, see data/README.md), read with each checkpoint's tokenizer."
            | Heldout _ -> "paper preset: data for the held-out loss (default: --data read in another order)."
            | Steps _ -> "paper preset: post-training steps (default: the paper's 19,073)."
            | Seq_Len _ -> "paper preset: post-training sequence length (default: the paper's 65,536)."
            | Batch _ -> "paper preset: sequences per step (default: the paper's 8; one per micro-batch)."
            | Out _ -> "study folder (default runs/demo-PRESET); re-running resumes finished stages."
            | Seeds _ -> "comma-separated seeds (default 0,1)."
            | Families _ -> "comma-separated families (default gla,mamba2)."
            | Device _ -> "override the preset's device (cpu, cuda, cuda:N)."
            | Plan -> "print the plan and exit."
            | Worker _ -> "internal: run one part (main or control) of the given seed and family, as a worker of a demo that runs pipelines side by side."

let private plan (p: Preset) (families: string list) (out: string) =
    let tokens (b: Budget) = int64 b.Steps * int64 b.Batch * int64 b.SeqLen
    printfn "StateX demo, preset %s (%s), device %s, seeds %s, families %s" p.Name p.Expected p.Device
        (String.Join(",", p.Seeds)) (String.Join(",", families))
    let lrs = if p.PretrainLr.IsEmpty then "" else String.Join("", p.PretrainLr |> Seq.map (fun kv -> sprintf " (%s: %g)" kv.Key kv.Value))
    match p.RecallPhase with
    | Some(b, data) ->
        printfn "  1. pretrain base models, phase 1 (MQAR alone): %d steps × %d × %d tokens = %s tokens each, lr %g%s" b.Steps b.Batch b.SeqLen ((tokens b).ToString "N0") b.Lr lrs
        printfn "     data: %s" data
        printfn "     phase 2 (the mixture): %d steps × %d × %d tokens = %s tokens each, lr %g%s" p.Pretrain.Steps p.Pretrain.Batch p.Pretrain.SeqLen ((tokens p.Pretrain).ToString "N0") p.Pretrain.Lr lrs
    | None ->
        printfn "  1. pretrain base models: %d steps × %d × %d tokens = %s tokens each, lr %g%s" p.Pretrain.Steps p.Pretrain.Batch p.Pretrain.SeqLen ((tokens p.Pretrain).ToString "N0") p.Pretrain.Lr lrs
    printfn "     data: %s" p.PretrainData
    if not p.Controls.IsEmpty then
        printfn "     control (seeds %s): the StateX rewrite on every layer, pretrained from scratch the same way" (String.Join(",", p.ControlSeeds))
    printfn "  2. post-train, equal budget per arm: %d steps × %d × %d tokens = %s tokens, lr %g" p.PostTrain.Steps p.PostTrain.Batch p.PostTrain.SeqLen ((tokens p.PostTrain).ToString "N0") p.PostTrain.Lr
    printfn "     LPT: the base model as is;  StateX: %s" (String.Join("; ", families |> List.map (fun f -> let e = p.Expansions[f] in sprintf "%s %O on %O (%s)" f e.Rewrite e.Layers (string e.Init |> fun s -> s.ToLowerInvariant()))))
    printfn "     data: %s" p.PostTrainData
    printfn "  3. evaluate base, LPT, StateX: MQAR pairs %s at length %d; passkey lengths %s × depths %s; held-out text loss" 
        (String.Join(",", p.MqarPairs)) p.MqarLength (String.Join(",", p.PasskeyLengths)) (String.Join(",", p.PasskeyDepths))
    printfn "  → %s (results.csv, report.html, a folder per seed/family/arm)" out

/// Progress of pipelines that run side by side: whole lines (no carriage-return redraw, which two stages would
/// garble), each naming its stage, one per stage every 10 seconds and at its last step.
let private labelledReporter (elapsed: unit -> TimeSpan) : DemoStudy.Reporter =
    let gate = obj ()
    let last = Collections.Concurrent.ConcurrentDictionary<string, TimeSpan>()
    let stamp () = (elapsed ()).ToString @"m\:ss"
    // One write per line: workers are separate processes writing to the same terminal, and eprintfn writes a line
    // in pieces that another process's line could split.
    let write (line: string) = lock gate (fun () -> Console.Error.Write(line + "\n"))
    { Stage = fun s -> write (sprintf "[%s] %s" (stamp ()) s)
      Progress = fun label p ->
        let now = elapsed ()
        let final = p.Step = p.TotalSteps
        if final || p.Step = 1 || now - last.GetOrAdd(label, TimeSpan.Zero) >= TimeSpan.FromSeconds 10.0 then
            last[label] <- now
            let eta = match Option.ofNullable p.Eta with Some e -> e.ToString @"m\:ss" | None -> "?"
            write (sprintf "[%s] %s: step %d/%d  loss %.4f  %.0f tok/s  eta %s" (stamp ()) label p.Step p.TotalSteps p.Loss p.TokensPerSecond eta) }

/// Environment variable through which worker processes learn when the demo started (UTC ticks).
let private startedVariable = "STATEX_DEMO_STARTED"

/// The command line that starts this CLI again (`dotnet StateX.Cli.dll` or the app host).
let private selfCommand () =
    let host = Environment.ProcessPath
    if Path.GetFileNameWithoutExtension host = "dotnet" then host, [ Reflection.Assembly.GetEntryAssembly().Location ] else host, []

/// Runs every (seed, family) pipeline as worker processes of this CLI, Preset.Workers at a time, each with
/// cores / Workers threads; a worker takes the next job when it finishes one. Jobs: the main arms of every pipeline,
/// then the controls (one pretraining each), which fills the workers evenly. Separate processes, not threads:
/// TorchSharp frees implicitly created Scalars from the finaliser, which another thread's allocations can run while a
/// native call still uses one. Stages already finished are skipped by the workers as by a single process.
let private runWorkers (p: Preset) (families: string list) (out: string) (started: DateTime) =
    let exe, prefix = selfCommand ()
    let threads = max 1 (Environment.ProcessorCount / p.Workers)
    let study = DemoStudy.ofPreset p
    // Longest first, so the workers finish together: Mamba2's jobs take longer at the cpu preset's sizes (measured:
    // 28K against 37K tokens/s per worker), and a main job (two phases and two post-trainings) longer than a control.
    let order = families |> List.sortBy (fun f -> if f = "mamba2" then 0 else 1)
    let jobs =
        [| for family in order do for seed in p.Seeds -> seed, family, "main"
           for family in order do for seed in p.Seeds do if DemoStudy.hasControl study (seed, family) then yield seed, family, "control" |]
    let controls = jobs |> Array.filter (fun (_, _, part) -> part = "control") |> Array.length
    eprintfn "running %d jobs (the main arms of %d seed × family pipelines, then %d controls), %d at a time in worker processes"
        jobs.Length (jobs.Length - controls) controls p.Workers
    let next = ref -1
    let failures = Collections.Concurrent.ConcurrentQueue<string>()
    let work () =
        let mutable go = true
        while go do
            let i = Threading.Interlocked.Increment next
            if i >= jobs.Length || not failures.IsEmpty then go <- false
            else
                let seed, family, part = jobs[i]
                let psi = Diagnostics.ProcessStartInfo(exe, UseShellExecute = false)
                for a in prefix @ [ "demo"; "--preset"; p.Name; "--out"; out; "--seeds"; string seed; "--families"; family; "--device"; p.Device; "--worker"; part ] do
                    psi.ArgumentList.Add a
                psi.Environment["OMP_NUM_THREADS"] <- string threads
                psi.Environment["MKL_NUM_THREADS"] <- string threads
                // The workers' progress lines count from the demo's start, not their own.
                psi.Environment[startedVariable] <- string started.Ticks
                use proc = Diagnostics.Process.Start psi
                proc.WaitForExit()
                if proc.ExitCode <> 0 then
                    failures.Enqueue(sprintf "seed %d %s %s (exit code %d)" seed family part proc.ExitCode)
    let ts = [ for _ in 1 .. min p.Workers jobs.Length -> Threading.Thread(work) ]
    for t in ts do t.Start()
    for t in ts do t.Join()
    if not failures.IsEmpty then
        failwithf "the demo's worker for %s failed (its error is printed above); finished stages are kept: run the same command again to resume"
            (String.Join(", ", failures))

/// Runs (or resumes) a study, writes summary.txt and report.html; returns the printed summary and the report's path.
let execute (study: DemoStudy.Study) (families: string list) (out: string) (reporter: DemoStudy.Reporter) =
    NativeRuntime.EnsureInitialized()
    let rows = DemoStudy.run study out families reporter
    let post = study.Preset.PostTrain.SeqLen
    let table = DemoSummary.table rows families post
    let verdicts = DemoSummary.verdicts rows families post
    let report = DemoReport.write study families rows out
    let summary = table + "\n" + String.Join("\n", verdicts) + "\n"
    IO.AtomicFile.WriteAllText(Path.Combine(out, "summary.txt"), summary)
    summary, report

/// The flag of an option that only the paper preset takes.
let private paperOnly (a: DemoArgs) =
    match a with
    | DemoArgs.Gla _ -> Some "--gla"
    | DemoArgs.Mamba2 _ -> Some "--mamba2"
    | Data _ -> Some "--data"
    | Heldout _ -> Some "--heldout"
    | Steps _ -> Some "--steps"
    | Seq_Len _ -> Some "--seq-len"
    | Batch _ -> Some "--batch"
    | _ -> None

/// The paper preset's study after every input is checked (all problems in one error), and its plan.
let private paperStudy (args: ParseResults<DemoArgs>) (out: string option) =
    if args.Contains Families then
        raise (ArgumentException "--families does not apply to --preset paper: the study has the families whose checkpoints you give (--gla, --mamba2)")
    let inputs : DemoPaper.Inputs =
        { Gla = args.TryGetResult DemoArgs.Gla; Mamba2 = args.TryGetResult DemoArgs.Mamba2; Data = args.TryGetResult Data
          HeldOut = args.TryGetResult Heldout; Steps = args.TryGetResult Steps; SeqLen = args.TryGetResult Seq_Len; Batch = args.TryGetResult Batch }
    match DemoPaper.validate inputs with
    | Error problems -> raise (ArgumentException(sprintf "--preset paper cannot start:\n  - %s" (String.Join("\n  - ", problems))))
    | Ok bases ->
        let study = DemoPaper.study inputs bases
        let p = study.Preset
        let p = match args.TryGetResult Seeds with Some s -> { p with Seeds = s.Split(',', StringSplitOptions.RemoveEmptyEntries) |> Array.map int |> List.ofArray } | None -> p
        let p = match args.TryGetResult Device with Some d -> { p with Device = d } | None -> p
        let study = { study with Preset = p }
        let out = defaultArg out (Path.Combine("runs", "demo-paper"))
        let families = bases |> List.map (fun b -> b.Family)
        printf "%s" (DemoPaper.plan study bases out)
        study, families, out

let run (args: ParseResults<DemoArgs>) =
    let name = args.GetResult(Preset, "cpu")
    let study, families, out =
        if name.ToLowerInvariant() = "paper" then paperStudy args (args.TryGetResult Out)
        else
            match args.GetAllResults() |> List.choose paperOnly |> List.distinct with
            | [] -> ()
            | flags ->
                raise (ArgumentException(sprintf "%s: only for --preset paper (the %s preset pretrains its own models on synthetic data)" (String.Join(", ", flags)) name))
            let preset = DemoPreset.byName name
            let preset =
                match args.TryGetResult Seeds with
                | Some s -> { preset with Seeds = s.Split(',', StringSplitOptions.RemoveEmptyEntries) |> Array.map int |> List.ofArray }
                | None -> preset
            let preset = match args.TryGetResult Device with Some d -> { preset with Device = d } | None -> preset
            let families =
                args.GetResult(Families, "gla,mamba2").Split(',', StringSplitOptions.RemoveEmptyEntries) |> List.ofArray
                |> List.map (fun f -> if preset.Configs.ContainsKey f then f else invalidArg "families" (sprintf "unknown family '%s': expected gla, mamba2" f))
            let out = args.GetResult(Out, Path.Combine("runs", "demo-" + preset.Name))
            if not (args.Contains Worker) then plan preset families out
            DemoStudy.ofPreset preset, families, out
    if args.Contains Plan then 0
    elif args.Contains Worker then
        NativeRuntime.EnsureInitialized()
        let part =
            match args.GetResult Worker with
            | "main" -> DemoStudy.Main
            | "control" -> DemoStudy.Control
            | other -> invalidArg "worker" (sprintf "unknown worker part '%s': expected main or control" other)
        let started =
            match Int64.TryParse(Environment.GetEnvironmentVariable startedVariable) with
            | true, ticks -> DateTime(ticks, DateTimeKind.Utc)
            | _ -> DateTime.UtcNow
        let reporter = labelledReporter (fun () -> DateTime.UtcNow - started)
        DemoStudy.runPart study out families reporter part |> ignore
        0
    else
        let clock = Diagnostics.Stopwatch.StartNew()
        let p = study.Preset
        if p.Workers > 1 && p.Seeds.Length * families.Length > 1 then
            DemoStudy.prepare study out families
            runWorkers p families out (DateTime.UtcNow - clock.Elapsed)
        let printer = Train.progressPrinter ()
        let reporter : DemoStudy.Reporter =
            { Stage = fun s -> eprintfn "[%s] %s" (clock.Elapsed.ToString @"m\:ss") s
              Progress = fun _ p -> printer p }
        let summary, report = execute study families out reporter
        printfn ""
        printf "%s" summary
        printfn ""
        printfn "study folder  %s (results.csv, summary.txt)" (Path.GetFullPath out)
        printfn "report        %s  (open it in a browser; it works offline)" (Path.GetFullPath report)
        printfn "elapsed       %s" (clock.Elapsed.ToString @"m\:ss")
        0
