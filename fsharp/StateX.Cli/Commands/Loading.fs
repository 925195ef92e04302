/// What the commands that run a model (eval, generate) share: loading it, finding its tokenizer, parsing options.
module StateX.Cli.Commands.Loading

open System
open System.IO
open TorchSharp
open StateX
open StateX.Models
open StateX.Tokenization

/// An option's value failed a check: the message names the option.
let bad (option: string) fmt = Printf.kprintf (fun msg -> raise (ArgumentException(sprintf "--%s: %s" option msg))) fmt

let positive (option: string) (v: int) = if v < 1 then bad option "must be at least 1 (got %d)" v else v

/// fp32 | bf16 | fp16 (None: as the checkpoint stores it).
let parseDtype (text: string option) =
    match text |> Option.map (fun s -> s.Trim().ToLowerInvariant()) with
    | None
    | Some "auto" -> None
    | Some("fp32" | "float32") -> Some torch.ScalarType.Float32
    | Some("bf16" | "bfloat16") -> Some torch.ScalarType.BFloat16
    | Some("fp16" | "float16") -> Some torch.ScalarType.Float16
    | Some t -> bad "dtype" "unknown '%s': expected auto, fp32, bf16 or fp16" t

/// auto | cpu | cuda | cuda:N, resolved (CUDA must be there when asked for).
let parseDevice (text: string) =
    try
        DeviceSpec.Parse(text).Resolve()
    with
    | :? ArgumentException
    | :? InvalidOperationException as e -> bad "device" "%s" e.Message

/// A checkpoint folder's model, on a device, in evaluation mode; NaN/Inf weights are refused unless `allowNonFinite`.
let loadModel (dir: string) (device: torch.Device) dtype (allowNonFinite: bool) =
    if not (Directory.Exists dir) then bad "model" "checkpoint folder '%s' not found" dir
    if not (File.Exists(Path.Combine(dir, "config.json"))) then bad "model" "'%s' holds no config.json (not a checkpoint folder)" dir
    let model = Checkpoint.Load(dir, device, Option.toNullable dtype, allowNonFinite = allowNonFinite)
    model.Module.eval ()
    model

/// A name for result files: the folder's name (its parent's for the `model` folder of a run).
let modelName (dir: string) =
    let d = DirectoryInfo(Path.GetFullPath(dir.TrimEnd('/', '\\')))
    if (d.Name = "model" || d.Name.StartsWith "step-") && not (isNull d.Parent) then
        let run = if d.Parent.Name = "checkpoints" && not (isNull d.Parent.Parent) then d.Parent.Parent.Name else d.Parent.Name
        if d.Name = "model" then run else run + "/" + d.Name
    else
        d.Name

/// The tokenizer to use: --tokenizer (a folder or "byte"); else the one in the model folder; else the byte
/// tokenizer, with a note. Refuses one that can produce ids the model has no embedding for.
let resolveTokenizer (modelDir: string) (option: string option) (model: ICausalLanguageModel) : ITokenizer =
    let tok =
        match option with
        | Some t -> Tokenizers.Load t
        | None ->
            let present =
                [ "tokenizer.json"; "tokenizer.model"; ByteTokenizer.MarkerFile ]
                |> List.exists (fun f -> File.Exists(Path.Combine(modelDir, f)))
            if present then
                Tokenizers.Load modelDir
            else
                eprintfn
                    "statex: note: no tokenizer in %s; using the byte tokenizer (ids 0-258; choose with --tokenizer FOLDER|byte)"
                    modelDir
                ByteTokenizer() :> ITokenizer
    if tok.VocabSize > model.VocabSize then
        bad
            "tokenizer"
            "%s produces ids up to %d, but the model's vocabulary has only %d entries (ids >= %d have no embedding): use the tokenizer the model was trained with"
            tok.Name
            (tok.VocabSize - 1)
            model.VocabSize
            model.VocabSize
    tok
