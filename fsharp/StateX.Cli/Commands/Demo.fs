/// `statex demo`: the StateX study (fsharp/StateX/Study*.fs) from a preset, with its plan, progress, summary and
/// report. Everything the study computes lives in the library; this command picks the preset, runs the study's
/// (family, seed, arm) jobs in worker processes, and prints.
module StateX.Cli.Commands.Demo

open System
open System.IO
open Argu
open StateX

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
    | Workers of int
    | [<Hidden>] Worker of part: string
    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Preset _ ->
                "cpu (default: about 15 minutes on 2 cores) | gpu (three seeds, one H200) | smoke (seconds; mechanics only) | ablation (layers × init × budget, three seeds) | capacity (recall against state size) | convergence (LPT alone at post-training learning rates × budgets: which one converges) | paper (the paper's 1.3B post-training on checkpoints you bring: --gla/--mamba2 DIR, --data SPEC); ablation-smoke, capacity-smoke and convergence-smoke try those in seconds."
            | Workers _ -> "jobs run at once in worker processes (default: the preset's; 2 on the CPU)."
            | Gla _ -> "paper preset: a GLA checkpoint folder (config.json, model.safetensors, tokenizer) to post-train as the base model."
            | Mamba2 _ ->
                "paper preset: a Mamba2 checkpoint folder (config.json, model.safetensors, tokenizer) to post-train as the base model."
            | Data _ -> "paper preset: the post-training data (a data spec, see data/README.md), read with each checkpoint's tokenizer."
            | Heldout _ -> "paper preset: data for the held-out loss (default: --data read in another order)."
            | Steps _ -> "paper preset: post-training steps (default: the official 20,000)."
            | Seq_Len _ -> "paper preset: post-training sequence length (default: the official 65,536)."
            | Batch _ -> "paper preset: sequences per step (default: the official 8; one per micro-batch)."
            | Out _ -> "study folder (default runs/demo-PRESET); re-running resumes finished stages."
            | Seeds _ -> "comma-separated seeds (default: the preset's)."
            | Families _ -> "comma-separated families (default gla,mamba2)."
            | Device _ -> "override the preset's device (cpu, cuda, cuda:N)."
            | Plan -> "print the plan and exit."
            | Worker _ ->
                "internal: run one part (main, control, or arm:NAME) of the given seed and family, as a worker of a demo that runs jobs side by side."

let private seedList (text: string) =
    text.Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)
    |> Array.map (fun s ->
        match Int32.TryParse s with
        | true, v when v >= 0 -> v
        | _ -> invalidArg "seeds" (sprintf "--seeds: '%s' is not a non-negative integer" s))
    |> List.ofArray

/// Worker processes learn when the demo started through this variable (UTC ticks), so their lines count from it.
let private startedVariable = "STATEX_DEMO_STARTED"

/// When the demo started: the parent's clock for its workers (through startedVariable), else now.
let private startedTime () =
    match Int64.TryParse(Environment.GetEnvironmentVariable startedVariable) with
    | true, t -> DateTime(t, DateTimeKind.Utc)
    | _ -> DateTime.UtcNow

/// How the demo's stages run: on `device`, progress every 10 s to `log`, one training checkpoint kept per stage.
let private settingsFor (device: string) (log: string -> unit) = {
    RunSettings.defaults with
        Device = device
        Log = log
        ProgressEvery = 10.0
        KeepLast = 1
}

/// Whole lines (no carriage-return redraw, which two workers would garble), each stamped from the demo's start and
/// written in one call (workers are separate processes sharing the terminal).
let private linePrinter (started: DateTime) (prefix: string) =
    let gate = obj ()
    fun (line: string) ->
        let stamp = (DateTime.UtcNow - started).ToString @"m\:ss"
        lock gate (fun () -> Console.Error.Write(sprintf "[%s] %s%s\n" stamp prefix (line.TrimStart())))

/// The command line that starts this CLI again (`dotnet StateX.Cli.dll` or the app host).
let private selfCommand () =
    let host = Environment.ProcessPath
    if Path.GetFileNameWithoutExtension host = "dotnet" then host, [ Reflection.Assembly.GetEntryAssembly().Location ] else host, []

/// The (family, seed, arm) jobs: first every pretraining (the base and control pipelines, which nothing else waits
/// on), then the post-trained arms, longest first (the convergence check's LPT), so that the workers finish together
/// and an arm's worker finds its base pretrained rather than waiting on the stage's lock.
let private jobs (s: Study) =
    let runs = Study.runs s
    let pretrainOnly (r: StudyRun) = r.Arm = Study.baseArm || r.Arm = Study.controlArm
    let length (r: StudyRun) =
        match s.ConvergenceCheck with
        | Some k when r.Arm = Study.convergenceArm k -> k
        | _ -> 1
    let first = runs |> List.filter pretrainOnly |> List.sortBy (fun r -> r.Part = Control)
    let post = runs |> List.filter (pretrainOnly >> not) |> List.sortByDescending length
    [| for r in first @ post -> r.Family, r.Seed, r.Arm |]

/// Runs jobs as worker processes of this CLI (`demo --preset P --out O --device D` plus each job's own arguments),
/// `workers` at a time, each with cores / workers threads. Separate processes, not threads: TorchSharp frees
/// implicitly created Scalars from the finaliser, which another thread's allocations can run while a native call
/// still uses one. Finished stages are skipped by the workers; one failure stops handing out jobs.
let private runWorkers
    (preset: string)
    (device: string)
    (workers: int)
    (out: string)
    (started: DateTime)
    (jobs: (string * string list) array)
    =
    let exe, prefix = selfCommand ()
    let threads = max 1 (Environment.ProcessorCount / workers)
    eprintfn "running %d jobs, %d at a time in worker processes" jobs.Length workers
    let next = ref -1
    let failures = Collections.Concurrent.ConcurrentQueue<string>()
    let work () =
        let mutable go = true
        while go do
            let i = Threading.Interlocked.Increment next
            if i >= jobs.Length || not failures.IsEmpty then
                go <- false
            else
                let name, args = jobs[i]
                let psi = Diagnostics.ProcessStartInfo(exe, UseShellExecute = false)
                for a in prefix @ [ "demo"; "--preset"; preset; "--out"; out; "--device"; device ] @ args do
                    psi.ArgumentList.Add a
                psi.Environment["OMP_NUM_THREADS"] <- string threads
                psi.Environment["MKL_NUM_THREADS"] <- string threads
                psi.Environment[startedVariable] <- string started.Ticks
                // A worker that failed is started again, up to three attempts: its finished stages are kept and an
                // interrupted training resumes from its checkpoint, so a transient native fault (the README's known
                // issue) costs little, and a deterministic error only repeats quickly.
                let rec attempt k =
                    use proc = Diagnostics.Process.Start psi
                    proc.WaitForExit()
                    match proc.ExitCode with
                    | 0 -> ()
                    | code when k < 3 ->
                        let how = if code > 128 then sprintf "died with signal %d" (code - 128) else sprintf "failed (exit code %d)" code
                        eprintfn "statex: the worker for %s %s; starting it again (attempt %d of 3), it resumes" name how (k + 1)
                        attempt (k + 1)
                    | code -> failures.Enqueue(sprintf "%s (exit code %d, after 3 attempts)" name code)
                attempt 1
    let ts = [ for _ in 1 .. min workers jobs.Length -> Threading.Thread(work) ]
    for t in ts do
        t.Start()
    for t in ts do
        t.Join()
    if not failures.IsEmpty then
        failwithf
            "the demo's worker for %s failed (its error is printed above); finished stages are kept: run the same command again to resume"
            (String.Join(", ", failures))

/// The study's jobs for runWorkers.
let private studyJobs (s: Study) =
    jobs s
    |> Array.map (fun (family, seed, arm) ->
        sprintf "seed %d %s %s" seed family arm, [ "--seeds"; string seed; "--families"; family; "--worker"; "arm:" + arm ])

/// What the report says the study is.
let private description (preset: StudyPreset) =
    let s = preset.Study
    let source =
        if s.Families |> List.forall (fun f -> f.Start.IsSome) then
            "the given checkpoints as the base models"
        else
            "base models pretrained from scratch on embedded synthetic data (MQAR, passkey documents, generated English-like text; no download)"
    let arms = [
        for f in s.Families do
            for a in f.Arms ->
                sprintf
                    "%s %s: %s"
                    f.Name
                    a.Label
                    (a.Expansions |> List.map (fun e -> sprintf "%A on %A" e.Rewrite e.Where) |> String.concat ", ")
    ]
    sprintf
        "Preset %s, device %s. Each family: %s, then post-training arms on the same data, tokens, schedule and seed: <b>LPT</b> trains the base model as is; <b>StateX</b> arms first enlarge the recurrent state of some layers (%s, initialised as the official code does), then train. A <b>control</b> (where present) is the StateX rewrite on every layer, pretrained from scratch exactly as the base: if it recalls more than the base at many pairs, the base's recall is limited by its state, which is what StateX addresses."
        preset.Name
        preset.Device
        source
        (Net.WebUtility.HtmlEncode(String.Join("; ", arms)))

/// Runs (or resumes) a preset's study in `out`, writes summary.txt, summary.md (Markdown tables) and report.html; returns the summary and the report's path.
let execute (preset: StudyPreset) (out: string) (log: string -> unit) =
    NativeRuntime.EnsureInitialized()
    let settings = settingsFor preset.Device log
    let rows = Study.run settings out preset.Study
    let summary = StudySummary.table preset.Study rows + "\n" + String.Join("\n", StudySummary.verdicts preset.Study rows) + "\n"
    IO.AtomicFile.WriteAllText(Path.Combine(out, "summary.txt"), summary)
    IO.AtomicFile.WriteAllText(
        Path.Combine(out, "summary.md"),
        StudySummary.markdown preset.Study rows
        + String.Join("\n", StudySummary.verdicts preset.Study rows |> List.map (fun v -> "- " + v))
        + "\n"
    )
    let report = StudyReport.write preset.Study out rows (description preset) []
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

/// The paper preset after every input is checked (all problems in one error), and its plan.
let private paperPreset (args: ParseResults<DemoArgs>) (out: string) =
    if args.Contains Families then
        raise (
            ArgumentException
                "--families does not apply to --preset paper: the study has the families whose checkpoints you give (--gla, --mamba2)"
        )
    let inputs: StudyPaper.Inputs = {
        Gla = args.TryGetResult DemoArgs.Gla
        Mamba2 = args.TryGetResult DemoArgs.Mamba2
        Data = args.TryGetResult Data
        HeldOut = args.TryGetResult Heldout
        Steps = args.TryGetResult Steps
        SeqLen = args.TryGetResult Seq_Len
        Batch = args.TryGetResult Batch
    }
    match StudyPaper.validate inputs with
    | Error problems -> raise (ArgumentException(sprintf "--preset paper cannot start:\n  - %s" (String.Join("\n  - ", problems))))
    | Ok bases ->
        let study = StudyPaper.study inputs bases
        let study =
            match args.TryGetResult Seeds with
            | Some s -> Study.seeds (seedList s) study
            | None -> study
        let device = args.GetResult(Device, "cuda")
        if not (args.Contains Worker) then printf "%s" (StudyPaper.plan study device bases out)
        { Name = "paper"; Study = study; Device = device; Workers = 1; Expected = "days per arm on one GPU: see the cost" }

/// The ablation and capacity presets: jobs in worker processes (`--worker job:KEY`), then the section and tables.
let private runSweepPreset (args: ParseResults<DemoArgs>) (name: string) (out: string) =
    let device = args.GetResult(Device, "cpu")
    let workers = args.GetResult(Workers, 2)
    let started = startedTime ()
    let settings = settingsFor device
    let keys, runJob, finish, plan =
        match name with
        | "ablation"
        | "ablation-smoke" ->
            let a = if name = "ablation" then StudyPresets.ablation else StudyPresets.ablationSmoke
            let a =
                match args.TryGetResult Seeds with
                | Some t -> { a with Base = Study.seeds (seedList t) a.Base }
                | None -> a
            let a =
                if device.StartsWith "cuda" then
                    { a with Base = { a.Base with Evaluation = { a.Base.Evaluation with Precision = "bf16" } } }
                else
                    a
            StudyAblation.jobs a |> List.map (fun j -> j.Key),
            (fun log key -> StudyAblation.runJob (settings log) out a key),
            (fun log ->
                let results = StudyAblation.run (settings log) out a
                let ds = StudyAblation.deltas a results
                IO.AtomicFile.WriteAllText(Path.Combine(out, "ablation.csv"), StudyAblation.csv ds)
                let path = Path.Combine(out, "report.html")
                IO.AtomicFile.WriteAllText(path, StudyReport.page "StateX ablation" (StudyAblation.section a ds))
                sprintf "ablation table  %s\nreport          %s" (Path.Combine(out, "ablation.csv")) path),
            sprintf
                "StateX ablation %s: %s arms per family (layers %s × inits), budgets ×%s of %d post-training steps, seeds %s, device %s"
                a.Name
                (String.Join(", ", a.Base.Families |> List.map (fun f -> sprintf "%s %d" f.Name (StudyAblation.arms a f).Length)))
                (String.Join("/", a.Layers |> List.map fst))
                (String.Join(", ×", a.Budgets))
                a.Base.PostTrain.Steps
                (String.Join(",", a.Base.Seeds))
                device
        | "convergence"
        | "convergence-smoke" ->
            let c = if name = "convergence" then StudyPresets.convergence else StudyPresets.convergenceSmoke
            let c =
                match args.TryGetResult Seeds with
                | Some t -> { c with Base = Study.seeds (seedList t) c.Base }
                | None -> c
            let c =
                if device.StartsWith "cuda" then
                    { c with Base = { c.Base with Evaluation = { c.Base.Evaluation with Precision = "bf16" } } }
                else
                    c
            StudyConvergence.jobs c |> List.map (fun j -> j.Key),
            (fun log key -> StudyConvergence.runJob (settings log) out c key),
            (fun log ->
                let results = StudyConvergence.run (settings log) out c
                let pts = StudyConvergence.points c results
                let bases = StudyConvergence.bases c results
                let csv = Path.Combine(out, "convergence.csv")
                IO.AtomicFile.WriteAllText(csv, StudyConvergence.csv pts)
                let rows = StudyConvergence.results c results
                Evaluation.ResultFiles.Write(Path.Combine(out, "results.csv"), rows)
                Evaluation.ResultFiles.Write(Path.Combine(out, "results.jsonl"), rows)
                let path = Path.Combine(out, "report.html")
                IO.AtomicFile.WriteAllText(path, StudyReport.page "StateX: convergence of LPT" (StudyConvergence.section c pts bases))
                let table = [
                    for p in pts ->
                        sprintf
                            "%-7s lr %-6g steps %6d  %-14s %5.1f%%%s"
                            p.Family
                            p.LearningRate
                            p.Steps
                            p.Headline
                            (100.0 * p.Value)
                            (match p.Move with
                             | Some(n, d) -> sprintf "  → %d steps: %+.1f" n (100.0 * d)
                             | None -> "")
                ]
                String.Join("\n", table @ StudyConvergence.verdicts c pts bases)
                + sprintf
                    "\nconvergence table  %s\nresults            %s\nreport             %s"
                    csv
                    (Path.Combine(out, "results.csv"))
                    path),
            sprintf
                "StateX convergence sweep %s: LPT alone at learning rates %s × %s post-training steps, seeds %s, device %s"
                c.Name
                (String.Join(", ", c.LearningRates |> List.map (sprintf "%g")))
                (String.Join("/", c.Budgets |> List.map (fun b -> b * c.Base.PostTrain.Steps)))
                (String.Join(",", c.Base.Seeds))
                device
        | _ ->
            let c = if name = "capacity" then StudyPresets.capacity else StudyPresets.capacitySmoke
            let c =
                match args.TryGetResult Seeds with
                | Some t -> { c with Seeds = seedList t }
                | None -> c
            let c = if device.StartsWith "cuda" then { c with Evaluation = { c.Evaluation with Precision = "bf16" } } else c
            StudyCapacity.jobs c,
            (fun log key -> StudyCapacity.runJob (settings log) out c key),
            (fun log ->
                let rs = StudyCapacity.run (settings log) out c
                let path = Path.Combine(out, "report.html")
                IO.AtomicFile.WriteAllText(path, StudyReport.page "StateX state capacity" (StudyCapacity.section c rs))
                let pts = StudyCapacity.points c rs
                let show =
                    function
                    | Some v -> sprintf "%g" v
                    | None -> "-"
                let table = [
                    for p in pts ->
                        sprintf
                            "%-7s %-4s state %6d seed %d: MQAR pairs ≥90%%: %s, passkey tokens ≥90%%: %s"
                            p.Family
                            p.Scale
                            p.State
                            p.Seed
                            (show p.Pairs)
                            (show p.PasskeyLength)
                ]
                String.Join("\n", table) + sprintf "\nresults  %s\nreport   %s" (Path.Combine(out, "results.csv")) path),
            sprintf
                "StateX capacity study %s: %s, seeds %s, device %s"
                c.Name
                (String.Join(
                    "; ",
                    c.Models
                    |> List.map (fun (f, ms) ->
                        sprintf "%s %s" f (String.Join("/", ms |> List.map (fun (s, m) -> sprintf "%s (state %d)" s (Model.stateSize m)))))
                ))
                (String.Join(",", c.Seeds))
                device
    match args.TryGetResult Worker with
    | Some w when w.StartsWith "job:" ->
        NativeRuntime.EnsureInitialized()
        let key = w.Substring 4
        runJob (linePrinter started (key + ": ")) key
        0
    | Some w -> invalidArg "worker" (sprintf "unknown worker '%s'" w)
    | None ->
        printfn "%s\n  → %s" plan out
        if args.Contains Plan then
            0
        else
            NativeRuntime.EnsureInitialized()
            let clock = Diagnostics.Stopwatch.StartNew()
            Directory.CreateDirectory out |> ignore
            // Workers build the preset again from their arguments: the seeds given here must reach them too.
            let seeds =
                match args.TryGetResult Seeds with
                | Some t -> [ "--seeds"; t ]
                | None -> []
            if workers > 1 then runWorkers name device workers out started [| for k in keys -> k, seeds @ [ "--worker"; "job:" + k ] |]
            let log = linePrinter started ""
            let text = finish (fun l -> if not (l.Contains "done earlier, skipped" || l.StartsWith "pipeline ") then log l)
            printfn "%s\nelapsed %s" text (clock.Elapsed.ToString @"m\:ss")
            0

let run (args: ParseResults<DemoArgs>) =
    let name = args.GetResult(Preset, "cpu").ToLowerInvariant()
    let out = args.GetResult(Out, Path.Combine("runs", "demo-" + name))
    if List.contains name [ "ablation"; "ablation-smoke"; "capacity"; "capacity-smoke"; "convergence"; "convergence-smoke" ] then
        runSweepPreset args name out
    else

    let preset =
        if name = "paper" then
            paperPreset args out
        else
            match args.GetAllResults() |> List.choose paperOnly |> List.distinct with
            | [] -> ()
            | flags ->
                raise (
                    ArgumentException(
                        sprintf
                            "%s: only for --preset paper (the %s preset pretrains its own models on synthetic data)"
                            (String.Join(", ", flags))
                            name
                    )
                )
            let p = StudyPresets.byName name
            let s = p.Study
            let s =
                match args.TryGetResult Seeds with
                | Some text -> Study.seeds (seedList text) s
                | None -> s
            let s =
                match args.TryGetResult Families with
                | Some text -> Study.families (text.Split(',', StringSplitOptions.RemoveEmptyEntries) |> List.ofArray) s
                | None -> s
            let p = { p with Study = s; Device = args.GetResult(Device, p.Device) }
            if not (args.Contains Worker) then printf "%s" (StudyPresets.plan p out)
            p
    // Evaluate in the dtype training computes in: bf16 on CUDA.
    let preset =
        if (DeviceSpec.Parse preset.Device).Kind = "cuda" then
            { preset with Study = { preset.Study with Evaluation = { preset.Study.Evaluation with Precision = "bf16" } } }
        else
            preset
    Study.validate preset.Study
    if args.Contains Plan then
        0
    elif args.Contains Worker then
        NativeRuntime.EnsureInitialized()
        let worker = args.GetResult Worker
        let keep: StudyRun -> bool =
            match worker with
            | "main" -> fun r -> r.Part = Main
            | "control" -> fun r -> r.Part = Control
            | w when w.StartsWith "arm:" -> let arm = w.Substring 4 in fun r -> r.Arm = arm
            | other -> invalidArg "worker" (sprintf "unknown worker part '%s': expected main, control or arm:NAME" other)
        let started = startedTime ()
        let f, seed = preset.Study.Families.Head.Name, preset.Study.Seeds.Head
        let log = linePrinter started (sprintf "seed %d %s %s: " seed f (worker.Replace("arm:", "")))
        let settings = settingsFor preset.Device log
        Study.runWhere settings (Study.stagesFolder out) out keep preset.Study |> ignore
        0
    else
        let clock = Diagnostics.Stopwatch.StartNew()
        let started = DateTime.UtcNow
        let s = preset.Study
        let workers = args.GetResult(Workers, preset.Workers)
        if workers > 1 && (jobs s).Length > 1 then
            Study.prepare s out // refuses a folder of another study once, before any worker starts
            runWorkers preset.Name preset.Device workers out started (studyJobs s)
        let log = linePrinter started ""
        // After the workers every stage is done: the final pass only gathers results, so it prints nothing per stage.
        let quietAfterWorkers (line: string) = if not (line.Contains "done earlier, skipped" || line.StartsWith "pipeline ") then log line
        let summary, report = execute preset out quietAfterWorkers
        printfn ""
        printf "%s" summary
        printfn ""
        printfn "study folder  %s (results.csv, results.jsonl, summary.txt, summary.md)" (Path.GetFullPath out)
        printfn "report        %s  (open it in a browser; it works offline)" (Path.GetFullPath report)
        printfn "elapsed       %s" (clock.Elapsed.ToString @"m\:ss")
        0
