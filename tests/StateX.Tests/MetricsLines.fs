/// Reading a training run's metrics.jsonl as the crash tests check it: whole lines only (a kill may tear the last),
/// their step, and the fields that do not depend on timing.
module StateX.Tests.MetricsLines

open System.IO
open System.Text.Json.Nodes

/// The lines of `path` that parse as JSON (a torn last line does not), or none when it does not exist.
let completeLines (path: string) =
    if not (File.Exists path) then
        [||]
    else
        File.ReadAllLines path
        |> Array.filter (fun l ->
            try
                not (isNull (JsonNode.Parse l))
            with _ ->
                false)

let stepOf (line: string) = JsonNode.Parse(line).["step"].GetValue<int>()

/// The fields of a metrics line that do not depend on timing.
let deterministic (line: string) =
    let o = JsonNode.Parse(line)
    [ for k in [ "step"; "loss"; "lr"; "grad_norm"; "tokens" ] -> o.[k].ToJsonString() ] |> String.concat " "
