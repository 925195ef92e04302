module StateX.Cli.Commands.CheckLogits

open System.IO
open Argu
open TorchSharp
open StateX
open StateX.IO
open StateX.Models

type CheckLogitsArgs =
    | [<Mandatory>] Model of dir: string
    | [<Mandatory>] Io of file: string
    | Device of string
    | Mode of string
    | Allow_Non_Finite
    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ -> "checkpoint folder (config.json + model.safetensors), of any family StateX reads."
            | Io _ -> "safetensors file holding input_ids (int64 [B, T]) and logits (float32 [B, T, V]) from the reference."
            | Device _ -> "auto (default), cpu, cuda, cuda:N."
            | Mode _ -> "chunked (default) or recurrent: which execution form to check."
            | Allow_Non_Finite ->
                "load weights holding NaN or Inf anyway (with a warning), to debug a diverged checkpoint; NaN logits are still an error."

/// Runs the reference's input_ids through the checkpoint in float32 and reports how far its logits are from the
/// reference's; the last line is max_abs_diff=<number>.
let run (args: ParseResults<CheckLogitsArgs>) =
    let device = DeviceSpec.Parse(args.GetResult(Device, "auto")).Resolve()
    let mode =
        match args.GetResult(Mode, "chunked").ToLowerInvariant() with
        | "chunked"
        | "chunk" -> ForwardMode.Chunked
        | "recurrent" -> ForwardMode.Recurrent
        | m -> failwithf "unknown --mode '%s': expected chunked or recurrent" m
    let ioPath = args.GetResult Io
    let dir = args.GetResult Model
    let lm = Checkpoint.Load(dir, device, torch.ScalarType.Float32, allowNonFinite = args.Contains Allow_Non_Finite)
    use reader = new SafeTensorsReader(ioPath)
    for name in [ "input_ids"; "logits" ] do
        if not (reader.Contains name) then
            raise (SafeTensorsException(sprintf "%s: tensor '%s' not found (an io file holds input_ids and logits)" ioPath name))
    use ids = reader.Load("input_ids", dtype = torch.ScalarType.Int64, device = device)
    use expected = reader.Load("logits", dtype = torch.ScalarType.Float32, device = device)
    if ids.dim () <> 2L then failwithf "%s: input_ids has shape %A, expected [B, T]" ioPath ids.shape
    let b, t = ids.shape.[0], ids.shape.[1]
    if expected.shape <> [| b; t; int64 lm.VocabSize |] then
        failwithf
            "%s: logits has shape %A, expected [%d, %d, %d] for these ids and a vocabulary of %d"
            ioPath
            expected.shape
            b
            t
            lm.VocabSize
            lm.VocabSize
    use _ = torch.no_grad ()
    let sw = System.Diagnostics.Stopwatch.StartNew()
    let out = lm.Forward(ids, mode = mode)
    use logits = out.Logits.to_type (torch.ScalarType.Float32)
    // max over a tensor holding NaN is NaN, and "max_abs_diff=NaN" reads like a number: say what is wrong instead.
    for name, (t: torch.Tensor) in [ "the model's logits", logits; sprintf "%s: logits" ioPath, expected ] do
        use bad = t.isfinite().logical_not().sum()
        let n = bad.item<int64>()
        if n > 0L then failwithf "%s hold %d NaN or infinite value(s) among %d; no difference can be measured" name n (t.numel ())
    use diff = (logits - expected).abs()
    let maxAbs = diff.max().item<float32>() |> float
    let meanAbs = diff.mean().item<float32>() |> float
    let refMax = expected.abs().max().item<float32>() |> float
    printfn "model         %s (%s, %d layers, vocab %d)" (Path.GetFullPath dir) lm.Family lm.NumLayers lm.VocabSize
    printfn "io            %s: B=%d T=%d" (Path.GetFullPath ioPath) b t
    printfn "run           %O, float32, %O form, %.2f s" device mode sw.Elapsed.TotalSeconds
    printfn "reference     max |logit| %.4g" refMax
    printfn "mean_abs_diff=%.3g" meanAbs
    printfn "max_abs_diff=%.6g" maxAbs
    0
