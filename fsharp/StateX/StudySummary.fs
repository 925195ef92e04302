namespace StateX

open System

/// A headline metric of a study: its name, which way is better, and how one (family, arm, seed)'s rows give it.
type Headline = { Name: string; Higher: bool; Of: StudyRow list -> float option }

/// Mean, minimum and maximum across seeds.
type SeedStat = { Mean: float; Min: float; Max: float; Seeds: int }

/// <summary>
/// The study's headline numbers: per family and arm the mean and spread across seeds, StateX − LPT per seed
/// (paired by seed), the state-limit verdict of the control, and plain sentences on where StateX did and did not
/// beat LPT.
/// </summary>
[<RequireQualifiedAccess>]
module StudySummary =
    let private mean (xs: float list) = if xs.IsEmpty then None else Some(List.average xs)

    /// MQAR settings with at least this many pairs are where a small state runs out (the control's test).
    let manyPairs = 16

    /// The headline metrics; passkey is split at `trainLength`, the post-training length (longer is extrapolation).
    let headlines (trainLength: int) =
        let over task metric (keep: StudyRow -> bool) =
            fun (rows: StudyRow list) ->
                rows |> List.filter (fun r -> r.Task = task && r.Metric = metric && keep r) |> List.map (fun r -> r.Value) |> mean
        let single metric = fun (rows: StudyRow list) -> rows |> List.tryFind (fun r -> r.Metric = metric) |> Option.map (fun r -> r.Value)
        [
            { Name = "MQAR acc"; Higher = true; Of = over "mqar" "accuracy" (fun _ -> true) }
            {
                Name = sprintf "MQAR ≥%d pairs" manyPairs
                Higher = true
                Of = over "mqar" "accuracy" (fun r -> r.SettingValue "pairs" >= Some(float manyPairs))
            }
            {
                Name = sprintf "passkey ≤%d" trainLength
                Higher = true
                Of = over "passkey" "accuracy" (fun r -> r.SettingValue "length" <= Some(float trainLength))
            }
            {
                Name = sprintf "passkey >%d" trainLength
                Higher = true
                Of = over "passkey" "accuracy" (fun r -> r.SettingValue "length" > Some(float trainLength))
            }
            { Name = "held-out loss"; Higher = false; Of = over "heldout_loss" "loss" (fun _ -> true) }
            // State collapse (Stuffed Mamba): text loss at positions past the post-training length, token-weighted.
            {
                Name = sprintf "loss past %d" trainLength
                Higher = false
                Of =
                    fun rows ->
                        let rs =
                            rows
                            |> List.filter (fun r ->
                                r.Task = "loss_vs_position" && r.Metric = "loss" && r.SettingValue "from" >= Some(float trainLength))
                        let n = rs |> List.sumBy (fun r -> float r.Result.N)
                        if n = 0.0 then None else Some((rs |> List.sumBy (fun r -> r.Value * float r.Result.N)) / n)
            }
            { Name = "state"; Higher = true; Of = single "state_elements" }
            { Name = "params"; Higher = true; Of = single "parameters" }
        ]

    let stat (xs: float list) =
        if xs.IsEmpty then None else Some { Mean = List.average xs; Min = List.min xs; Max = List.max xs; Seeds = xs.Length }

    /// Per seed value of a headline for (family, arm).
    let perSeed (rows: StudyRow list) (family: string) (arm: string) (h: Headline) =
        rows
        |> List.filter (fun r -> r.Family = family && r.Arm = arm)
        |> List.groupBy (fun r -> r.Seed)
        |> List.sortBy fst
        |> List.choose (fun (seed, rs) -> h.Of rs |> Option.map (fun v -> seed, v))

    /// Arm − LPT per seed (paired by seed), for one headline.
    let deltas (rows: StudyRow list) (family: string) (arm: string) (h: Headline) =
        let lpt = perSeed rows family Study.lptArm h |> Map.ofList
        perSeed rows family arm h |> List.choose (fun (s, v) -> lpt.TryFind s |> Option.map (fun l -> v - l))

    let private fmt (name: string) (v: float) =
        if name = "state" || name = "params" then (if v >= 1e6 then sprintf "%.2fM" (v / 1e6) else sprintf "%.0f" v)
        elif name.StartsWith "held-out" || name.StartsWith "loss" then sprintf "%.3f" v
        else sprintf "%.1f%%" (100.0 * v)

    let formatStat (name: string) (s: SeedStat) =
        if s.Seeds = 1 || s.Max - s.Min < 1e-12 then
            fmt name s.Mean
        else
            sprintf "%s ±%s" (fmt name s.Mean) ((fmt name ((s.Max - s.Min) / 2.0)).TrimStart('+'))

    let formatDelta (name: string) (s: SeedStat) =
        let sign v = if v >= 0.0 then "+" else "-"
        let body v = fmt name (abs v)
        if name = "state" || name = "params" || s.Seeds = 1 then
            sprintf "%s%s" (sign s.Mean) (body s.Mean)
        else
            sprintf "%s%s [%s%s, %s%s]" (sign s.Mean) (body s.Mean) (sign s.Min) (body s.Min) (sign s.Max) (body s.Max)

    /// (arm, label) in table order for a family of the study: base, LPT, LPT at the convergence check's budget, the
    /// StateX arms, the control.
    let arms (s: Study) (family: string) =
        let f = s.Families |> List.find (fun f -> f.Name = family)
        let check = s.ConvergenceCheck |> Option.map (fun k -> Study.convergenceArm k, sprintf "LPT, ×%d budget" k) |> Option.toList
        [ Study.baseArm, "base"; Study.lptArm, "LPT" ]
        @ check
        @ (f.Arms |> List.map (fun a -> a.Name, a.Label))
        @ [ Study.controlArm, "control" ]

    let private present (rows: StudyRow list) family arms =
        arms |> List.filter (fun (a, _) -> rows |> List.exists (fun r -> r.Family = family && r.Arm = a))

    /// The post-training length: where passkey's headline splits.
    let trainLength (s: Study) = s.PostTrain.SeqLen

    /// Table cells: per family, a header row, a row per arm (mean ± half-range) and a Δ row per StateX arm.
    let cells (s: Study) (rows: StudyRow list) : (string * string list list) list =
        let hs = headlines (trainLength s)
        [
            for f in s.Families do
                let arms = present rows f.Name (arms s f.Name)
                let header = f.Name :: (hs |> List.map (fun h -> h.Name))
                let armRows = [
                    for arm, label in arms ->
                        ("  " + label)
                        :: (hs
                            |> List.map (fun h ->
                                perSeed rows f.Name arm h
                                |> List.map snd
                                |> stat
                                |> Option.map (formatStat h.Name)
                                |> Option.defaultValue "-"))
                ]
                let deltaRows = [
                    for a in f.Arms do
                        if arms |> List.exists (fun (n, _) -> n = a.Name) then
                            yield
                                (sprintf "  Δ %s − LPT" a.Label)
                                :: (hs
                                    |> List.map (fun h ->
                                        deltas rows f.Name a.Name h |> stat |> Option.map (formatDelta h.Name) |> Option.defaultValue "-"))
                ]
                yield f.Name, header :: armRows @ deltaRows
        ]

    /// The console table.
    let table (s: Study) (rows: StudyRow list) =
        let sb = Text.StringBuilder()
        let seeds = rows |> List.map (fun r -> r.Seed) |> List.distinct |> List.sort
        sb.AppendLine(
            sprintf
                "seeds %s; values are the mean ± half the range across seeds; Δ rows give the mean [min, max] of StateX − LPT per seed"
                (String.Join(", ", seeds))
        )
        |> ignore
        match s.PretrainSeed with
        | Some p ->
            sb.AppendLine(
                sprintf "base: one pretraining per family (seed %d), which every seed post-trains; the spread is post-training's" p
            )
            |> ignore
        | None -> ()
        if rows |> List.exists (fun r -> r.Arm = Study.controlArm) then
            sb.AppendLine
                "control: the StateX rewrite on every layer, pretrained from scratch with the base's data and budget (seeds as listed in its rows)"
            |> ignore
        for _, table in cells s rows do
            sb.AppendLine() |> ignore
            let width = table |> List.collect (List.tail) |> List.map String.length |> List.max |> max 12
            let first = table |> List.map List.head |> List.map String.length |> List.max
            for r in table do
                sb.AppendLine(String.Join(" ", r |> List.mapi (fun i c -> if i = 0 then c.PadRight first else c.PadLeft width))) |> ignore
        sb.ToString()

    /// The headline table as Markdown (a table per family, then the verdicts as a list), for a README or an issue.
    let markdown (s: Study) (rows: StudyRow list) =
        let sb = Text.StringBuilder()
        let cell (c: string) = c.Trim().Replace("|", "\\|")
        for _, table in cells s rows do
            let header = List.head table
            sb.AppendLine("| " + String.Join(" | ", header |> List.map cell) + " |") |> ignore
            sb.AppendLine("|" + String.Join("|", header |> List.map (fun _ -> " --- ")) + "|") |> ignore
            for r in List.tail table do
                sb.AppendLine("| " + String.Join(" | ", r |> List.map cell) + " |") |> ignore
            sb.AppendLine() |> ignore
        sb.ToString()

    /// Whether the base's recall is limited by its state: the control against the base of the same seeds at many pairs.
    let stateLimit (rows: StudyRow list) (family: string) (trainLength: int) =
        let h = headlines trainLength |> List.find (fun h -> h.Name.StartsWith "MQAR ≥")
        let control = perSeed rows family Study.controlArm h
        let bases = perSeed rows family Study.baseArm h |> Map.ofList
        let pairs = control |> List.choose (fun (s, c) -> bases.TryFind s |> Option.map (fun b -> b, c))
        if pairs.IsEmpty then
            None
        else
            let b, c = List.averageBy fst pairs, List.averageBy snd pairs
            let seeds = String.Join(", ", control |> List.map fst)
            Some(
                if c - b >= 0.05 then
                    sprintf
                        "%s, state limit: at ≥%d pairs the control (larger state everywhere, same pretraining) recalls %.1f%% against the base's %.1f%% (seed %s): the base's recall is limited by its state."
                        family
                        manyPairs
                        (100.0 * c)
                        (100.0 * b)
                        seeds
                else
                    sprintf
                        "%s, state limit: NOT shown: at ≥%d pairs the control (larger state everywhere, same pretraining) recalls %.1f%% against the base's %.1f%% (seed %s), so recall at this size is limited by training more than by state."
                        family
                        manyPairs
                        (100.0 * c)
                        (100.0 * b)
                        seeds
            )

    /// Whether each task discriminates: the base's score at the task's easiest setting (1 pair of MQAR; passkey at
    /// the shortest length). A task the base fails there says nothing about StateX (a design error, not a result).
    let easiest (rows: StudyRow list) (family: string) =
        let at task metric key pick =
            let rs = rows |> List.filter (fun r -> r.Family = family && r.Arm = Study.baseArm && r.Task = task && r.Metric = metric)
            match rs |> List.choose (fun r -> r.SettingValue key) |> List.distinct with
            | [] -> None
            | values ->
                let v = pick values
                Some(v, rs |> List.filter (fun r -> r.SettingValue key = Some v) |> List.averageBy (fun r -> r.Value))
        [
            match at "mqar" "accuracy" "pairs" List.min with
            | Some(p, acc) ->
                yield
                    sprintf
                        "%s base at its easiest MQAR setting (%g pairs): %.1f%%%s"
                        family
                        p
                        (100.0 * acc)
                        (if acc < 0.5 then " — the task does not discriminate here" else "")
            | None -> ()
            match at "passkey" "accuracy" "length" List.min with
            | Some(l, acc) ->
                yield
                    sprintf
                        "%s base at its shortest passkey length (%g tokens): %.1f%%%s"
                        family
                        l
                        (100.0 * acc)
                        (if acc < 0.5 then " — the task does not discriminate here" else "")
            | None -> ()
        ]

    /// The recall headlines (MQAR and passkey), on which LPT's convergence is judged.
    let recallHeadlines (trainLength: int) =
        headlines trainLength |> List.filter (fun h -> h.Name.StartsWith "MQAR" || h.Name.StartsWith "passkey")

    /// LPT's convergence at the study's budget: how far k times the budget moves each recall headline (mean over the
    /// seeds that have both), against the criterion of under a point.
    let convergence (s: Study) (rows: StudyRow list) (family: string) =
        match s.ConvergenceCheck with
        | None -> None
        | Some k ->
            let recall = recallHeadlines (trainLength s)
            let moves = [
                for h in recall do
                    let at = perSeed rows family Study.lptArm h |> Map.ofList
                    let ds =
                        perSeed rows family (Study.convergenceArm k) h
                        |> List.choose (fun (seed, v) -> at.TryFind seed |> Option.map (fun l -> v - l))
                    if not ds.IsEmpty then yield h.Name, List.average ds, ds.Length
            ]
            if moves.IsEmpty then
                None
            else
                let text = String.Join(", ", moves |> List.map (fun (n, d, _) -> sprintf "%s %+.1f" n (100.0 * d)))
                let seeds = moves |> List.map (fun (_, _, n) -> n) |> List.min
                let converged = moves |> List.forall (fun (_, d, _) -> abs d < 0.01)
                Some(
                    sprintf
                        "%s, LPT convergence: %d× the budget moves LPT by %s points (mean of %d seeds): %s"
                        family
                        k
                        text
                        seeds
                        (if converged then
                             "converged (every move under a point)."
                         else
                             "NOT converged (the criterion is under a point on every recall headline).")
                )

    /// Plain sentences on where each StateX arm beat LPT and where it did not, per family and headline.
    let verdicts (s: Study) (rows: StudyRow list) = [
        for f in s.Families do
            yield! easiest rows f.Name
            match stateLimit rows f.Name (trainLength s) with
            | Some v -> yield v
            | None -> ()
            match convergence s rows f.Name with
            | Some v -> yield v
            | None -> ()
            for a in f.Arms do
                for h in headlines (trainLength s) |> List.filter (fun h -> h.Name <> "state" && h.Name <> "params") do
                    match deltas rows f.Name a.Name h with
                    | [] -> ()
                    | ds ->
                        let better d = if h.Higher then d > 0.0 else d < 0.0
                        let wins = ds |> List.filter better |> List.length
                        let who = sprintf "%s, %s, %s" f.Name a.Label h.Name
                        if ds |> List.forall (fun d -> abs d < 1e-12) then
                            yield sprintf "%s: no difference from LPT in any of %d seeds." who ds.Length
                        else
                            let verdict =
                                if wins = ds.Length then sprintf "better than LPT in all %d seeds" ds.Length
                                elif wins = 0 then sprintf "NOT better than LPT in any of %d seeds" ds.Length
                                else sprintf "mixed: better than LPT in %d of %d seeds" wins ds.Length
                            yield sprintf "%s: %s (mean Δ %+.4f)." who verdict (List.average ds)
    ]
