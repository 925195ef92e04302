// The StateX-vs-LPT study from F#: the same study `statex demo` runs, from the library, in this process.
//
//     scripts/build && dotnet fsi scripts/statex-vs-lpt.fsx preset=smoke        # seconds: the mechanics
//     dotnet fsi scripts/statex-vs-lpt.fsx preset=cpu seeds=0,1 out=runs/cpu    # the CPU preset, one job at a time
//
// Change the study before running it: e.g. `StudyPresets.cpu.Study |> Study.mapPostTraining (TrainSpec.steps 1600)`.
#load "build-check.fsx"
#load "prelude.fsx"
open System
open StateX
open Prelude

let preset = StudyPresets.byName (arg "preset" "smoke")
let study =
    match arg "seeds" "" with
    | "" -> preset.Study
    | s -> preset.Study |> Study.seeds [ for x in s.Split ',' -> int x ]
let out = outDir ("statex-vs-lpt-" + preset.Name)

printf "%s" (StudyPresets.plan { preset with Study = study } out)
let rows = Study.run { settings with Device = arg "device" preset.Device; KeepLast = 1 } out study
let summary = StudySummary.table study rows + "\n" + String.Join("\n", StudySummary.verdicts study rows) + "\n"
printf "%s" summary
IO.File.WriteAllText(IO.Path.Combine(out, "summary.txt"), summary)
let report = StudyReport.write study out rows (sprintf "The %s preset, run from scripts/statex-vs-lpt.fsx." preset.Name) []
printfn "results %s\nreport  %s" (fst (Study.resultsFiles out)) report
// The same results as a Deedle frame, for further analysis:
let frame = Analysis.readResults (fst (Study.resultsFiles out))
Analysis.print (frame |> Analysis.where "task" "mqar" |> Analysis.summarize [ "family"; "arm"; "pairs" ] "value")
