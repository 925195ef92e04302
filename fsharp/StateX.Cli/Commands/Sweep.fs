module StateX.Cli.Commands.Sweep

open System
open System.IO
open Argu
open StateX

type SweepArgs =
    | [<MainCommand; ExactlyOnce>] File of path: string
    | Folder of dir: string
    | Parallelism of int
    | Device of string
    | Dry_Run
    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | File _ -> "the sweep file (JSON; format in docs/sweeps.md)."
            | Folder _ ->
                "where the store, run folders, shared stages, results.csv and charts go (default: the file's \"folder\", else runs/NAME in the current folder)."
            | Parallelism _ -> "runs at once (default: the file's, else 1)."
            | Device _ -> "auto | cpu | cuda | cuda:N (default: the file's, else auto)."
            | Dry_Run -> "list the planned runs (labels, hash, done or not) and exit."

let run (args: ParseResults<SweepArgs>) =
    let plan = SweepFile.load (args.GetResult File)
    let plan = {
        plan with
            Folder =
                (match args.TryGetResult Folder with
                 | Some f -> Path.GetFullPath f
                 | None -> plan.Folder)
            Parallelism = args.GetResult(Parallelism, plan.Parallelism)
            Device = args.GetResult(Device, plan.Device)
    }
    if args.Contains Dry_Run then
        let finished = Sweep.latest plan.Folder |> List.filter (fun r -> r.Status = "done") |> List.map (fun r -> r.Hash) |> set
        printfn "sweep %s: %d runs in %s" plan.File (Sweep.count plan.Sweep) plan.Folder
        for r in plan.Sweep.Runs do
            let labels = r.Labels |> List.map (fun (k, v) -> sprintf "%s=%s" k v) |> String.concat " "
            printfn
                "%s  %-5s  %s  %s"
                r.Hash
                (if finished.Contains r.Hash then "done" else "to do")
                labels
                (Model.summary r.Description.Model)
        0
    else
        let records, files = SweepFile.run (fun line -> printfn "%s" line) plan
        for f in files do
            printfn "wrote %s" f
        if records |> List.exists (fun r -> r.Status <> "done") then 1 else 0
