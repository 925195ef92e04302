/// Headline numbers of the study: per family and arm, mean and spread across seeds, and StateX − LPT.
module StateX.Cli.Demo.DemoSummary

open System
open StateX.Cli.Demo.DemoStudy

/// A headline metric: its name and how it is computed from one (family, arm, seed)'s rows.
type Headline = { Name: string; Higher: bool; Of: Row list -> float option }

let private mean (xs: float list) = if xs.IsEmpty then None else Some(List.average xs)

/// MQAR settings with at least this many pairs are where a small state runs out (the control's test).
let manyPairs = 16

/// The headline metrics, given the post-training sequence length (passkey beyond it is extrapolation).
let headlines (postLen: int) =
    [ { Name = "MQAR acc"; Higher = true
        Of = fun rows -> rows |> List.filter (fun r -> r.Task = "mqar") |> List.map (fun r -> r.Value) |> mean }
      { Name = sprintf "MQAR ≥%d pairs" manyPairs; Higher = true
        Of = fun rows -> rows |> List.filter (fun r -> r.Task = "mqar" && settingValue "pairs" r.Setting >= Some(float manyPairs)) |> List.map (fun r -> r.Value) |> mean }
      { Name = sprintf "passkey ≤%d" postLen; Higher = true
        Of = fun rows -> rows |> List.filter (fun r -> r.Task = "passkey" && settingValue "length" r.Setting <= Some(float postLen)) |> List.map (fun r -> r.Value) |> mean }
      { Name = sprintf "passkey >%d" postLen; Higher = true
        Of = fun rows -> rows |> List.filter (fun r -> r.Task = "passkey" && settingValue "length" r.Setting > Some(float postLen)) |> List.map (fun r -> r.Value) |> mean }
      { Name = "held-out loss"; Higher = false
        Of = fun rows -> rows |> List.filter (fun r -> r.Task = "heldout_text") |> List.map (fun r -> r.Value) |> mean }
      { Name = "state"; Higher = true
        Of = fun rows -> rows |> List.tryFind (fun r -> r.Metric = "state_elements") |> Option.map (fun r -> r.Value) }
      { Name = "params"; Higher = true
        Of = fun rows -> rows |> List.tryFind (fun r -> r.Metric = "parameters") |> Option.map (fun r -> r.Value) } ]

/// Mean, minimum and maximum across seeds.
type Stat = { Mean: float; Min: float; Max: float; Seeds: int }

let stat (xs: float list) =
    if xs.IsEmpty then None else Some { Mean = List.average xs; Min = List.min xs; Max = List.max xs; Seeds = xs.Length }

/// Per seed value of a headline for (family, arm).
let perSeed (rows: Row list) (family: string) (arm: string) (h: Headline) =
    rows |> List.filter (fun r -> r.Family = family && r.Arm = arm)
    |> List.groupBy (fun r -> r.Seed) |> List.sortBy fst
    |> List.choose (fun (seed, rs) -> h.Of rs |> Option.map (fun v -> seed, v))

/// StateX − LPT per seed (paired by seed), for one headline.
let deltas (rows: Row list) (family: string) (h: Headline) =
    let lpt = perSeed rows family "lpt" h |> Map.ofList
    perSeed rows family "statex" h |> List.choose (fun (s, v) -> lpt.TryFind s |> Option.map (fun l -> v - l))

let private fmt (name: string) (v: float) =
    if name = "state" || name = "params" then (if v >= 1e6 then sprintf "%.2fM" (v / 1e6) else sprintf "%.0f" v)
    elif name.StartsWith "held-out" then sprintf "%.3f" v
    else sprintf "%.1f%%" (100.0 * v)

let formatStat (name: string) (s: Stat) =
    if s.Seeds = 1 || s.Max - s.Min < 1e-12 then fmt name s.Mean
    else sprintf "%s ±%s" (fmt name s.Mean) ((fmt name ((s.Max - s.Min) / 2.0)).TrimStart('+'))

let private fmtDelta (name: string) (s: Stat) =
    let sign v = if v >= 0.0 then "+" else "-"
    let body v = (fmt name (abs v))
    if name = "state" || name = "params" then sprintf "%s%s" (sign s.Mean) (body s.Mean)
    elif s.Seeds = 1 then sprintf "%s%s" (sign s.Mean) (body s.Mean)
    else sprintf "%s%s [%s%s, %s%s]" (sign s.Mean) (body s.Mean) (sign s.Min) (body s.Min) (sign s.Max) (body s.Max)

/// Arms in table order; "scratch" is the state-limit control (present only where the preset runs it).
let armLabels = [ "base", "base"; "lpt", "LPT"; "statex", "StateX"; "scratch", "control" ]

/// The console table: for each family, base / LPT / StateX (and control) rows and the StateX − LPT row.
let table (rows: Row list) (families: string list) (postLen: int) =
    let hs = headlines postLen
    let sb = Text.StringBuilder()
    let width = 22
    let line (cells: string list) = sb.AppendLine(String.Join(" ", cells |> List.mapi (fun i c -> if i = 0 then c.PadRight 16 else c.PadLeft width))) |> ignore
    let seeds = rows |> List.map (fun r -> r.Seed) |> List.distinct |> List.sort
    sb.AppendLine(sprintf "seeds %s; values are the mean ± half the range across seeds; Δ rows give the mean [min, max] of StateX − LPT per seed"
                    (String.Join(", ", seeds))) |> ignore
    if rows |> List.exists (fun r -> r.Arm = "scratch") then
        sb.AppendLine "control: the StateX rewrite on every layer, pretrained from scratch with the base's data and budget (seeds as listed in its rows)" |> ignore
    for family in families do
        sb.AppendLine() |> ignore
        line (family :: (hs |> List.map (fun h -> h.Name)))
        for arm, label in armLabels do
          if rows |> List.exists (fun r -> r.Family = family && r.Arm = arm) then
            line ((sprintf "  %s" label) :: (hs |> List.map (fun h -> perSeed rows family arm h |> List.map snd |> stat |> Option.map (formatStat h.Name) |> Option.defaultValue "-")))
        line ("  Δ StateX−LPT" :: (hs |> List.map (fun h -> deltas rows family h |> stat |> Option.map (fmtDelta h.Name) |> Option.defaultValue "-")))
    sb.ToString()

/// Whether the base's recall is limited by its state: the control (same data and budget, larger state everywhere)
/// against the base of the same seeds, at many pairs. A control that recalls no more says the limit is training.
let stateLimit (rows: Row list) (family: string) (postLen: int) =
    let h = headlines postLen |> List.find (fun h -> h.Name.StartsWith "MQAR ≥")
    let control = perSeed rows family "scratch" h
    if control.IsEmpty then None
    else
        let bases = perSeed rows family "base" h |> Map.ofList
        let pairs = control |> List.choose (fun (s, c) -> bases.TryFind s |> Option.map (fun b -> b, c))
        if pairs.IsEmpty then None
        else
            let b, c = List.averageBy fst pairs, List.averageBy snd pairs
            let seeds = String.Join(", ", control |> List.map fst)
            let margin = 0.05
            Some(
                if c - b >= margin then
                    sprintf "%s, state limit: at ≥%d pairs the control (larger state everywhere, same pretraining) recalls %.1f%% against the base's %.1f%% (seed %s): the base's recall is limited by its state." family manyPairs (100.0 * c) (100.0 * b) seeds
                else
                    sprintf "%s, state limit: NOT shown: at ≥%d pairs the control (larger state everywhere, same pretraining) recalls %.1f%% against the base's %.1f%% (seed %s), so recall at this size is limited by training more than by state." family manyPairs (100.0 * c) (100.0 * b) seeds)

/// Plain sentences on where StateX beat LPT and where it did not, per family and headline (honesty clause).
let verdicts (rows: Row list) (families: string list) (postLen: int) =
    [ for family in families do
        match stateLimit rows family postLen with Some v -> yield v | None -> ()
        for h in headlines postLen |> List.filter (fun h -> h.Name <> "state" && h.Name <> "params") do
            match deltas rows family h with
            | [] -> ()
            | ds ->
                let better d = if h.Higher then d > 0.0 else d < 0.0
                let wins = ds |> List.filter better |> List.length
                if ds |> List.forall (fun d -> abs d < 1e-12) then
                    yield sprintf "%s, %s: no difference between StateX and LPT in any of %d seeds." family h.Name ds.Length
                else
                    let verdict =
                        if wins = ds.Length then sprintf "StateX is better than LPT in all %d seeds" ds.Length
                        elif wins = 0 then sprintf "StateX is NOT better than LPT in any of %d seeds" ds.Length
                        else sprintf "mixed: StateX is better than LPT in %d of %d seeds" wins ds.Length
                    yield sprintf "%s, %s: %s (mean Δ %+.4f)." family h.Name verdict (List.average ds) ]
