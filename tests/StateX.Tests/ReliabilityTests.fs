/// Hostile inputs that used to fail badly: a config asking for an impossible size (it reached libtorch's allocator and
/// printed native stack frames) and a NaN in the weights (it loaded silently, and check-logits and generate printed
/// NaN or garbage as results). Issue 23.
module StateX.Tests.ReliabilityTests

open System
open System.IO
open System.Text.Json.Nodes
open Expecto
open TorchSharp
open StateX
open StateX.IO
open StateX.Gla
open StateX.Mamba2
open StateX.Gsa
open StateX.Power
open StateX.Models
open StateX.Expansion
open StateX.Evaluation

/// Sets one element of `tensor` in `dir`/model.safetensors to `value`, keeping every other tensor and the metadata.
let poison (dir: string) (tensor: string) (value: float32) =
    let path = Path.Combine(dir, CheckpointWeights.WeightsFile)
    let tensors, meta =
        use r = new SafeTensorsReader(path)
        [ for name in r.Tensors.Keys -> Collections.Generic.KeyValuePair(name, r.Load name) ], r.Metadata
    let t = tensors |> List.find (fun kv -> kv.Key = tensor)
    use flat = t.Value.view (-1L)
    flat.[3L] <- torch.tensor value
    SafeTensorsWriter.Write(path, tensors, meta)
    for kv in tensors do
        kv.Value.Dispose()

let private built (m: ICausalLanguageModel) = m.Module.parameters () |> Seq.sumBy (fun p -> p.numel ())

let private termsOf (text: string) =
    let c = ConfigJson.Parse text
    match c.Root.["model_type"] with
    | null -> (Mamba2Config.FromMambaSsm c).ParameterTerms()
    | t when t.ToString() = "gla" -> (GlaConfig.FromJson c).ParameterTerms()
    | t when t.ToString() = "gsa" -> (GsaConfig.FromJson c).ParameterTerms()
    | t when t.ToString() = "power_attention" -> (PowerConfig.FromJson c).ParameterTerms()
    | _ -> (Mamba2Config.FromHuggingFace c).ParameterTerms()

let private createFrom (text: string) =
    let c = ConfigJson.Parse text
    let family = Checkpoint.Families |> Seq.find (fun f -> f.Recognizes c)
    family.Create(ConfigJson.Parse text, Action<string>(ignore))

/// The exception of type 'E that `f` raises; fails the test when it raises none (or another type).
let raises<'E when 'E :> exn> (f: unit -> unit) (what: string) : 'E =
    try
        f ()
        failtestf "%s: expected %s, nothing was raised" what typeof<'E>.Name
    with :? 'E as e ->
        e

let private lines (s: string) = s.Split('\n', StringSplitOptions.RemoveEmptyEntries)

/// The CLI's stderr was one line that contains every fragment, and no native frame.
let private expectOneLine (r: Cli.CliResult) (fragments: string list) =
    Expect.equal r.ExitCode 1 (sprintf "fails with exit code 1; stderr: %s" r.Stderr)
    let errors = lines r.Stderr |> Array.filter (fun l -> l.StartsWith "statex: error:")
    Expect.equal errors.Length 1 (sprintf "one error line: %s" r.Stderr)
    Expect.isFalse (r.Stderr.Contains "frame #") "no native stack frame"
    Expect.isFalse (r.Stderr.Contains "   at ") "no managed stack trace"
    for f in fragments do
        Expect.stringContains errors.[0] f "the error says what is wrong"

[<Tests>]
let tests =
    testList "reliability" [
        testList "sizes before allocation" [
            // Each variant switches on a part that adds parameters (kv groups, short conv with bias, no output gate,
            // untied head, biases, per-layer heads or state sizes), so a term missing from the count fails one of them.
            let gla (extra: string) =
                sprintf
                    """{"model_type": "gla", "hidden_size": 64, "num_heads": 2, "num_hidden_layers": 2, "vocab_size": 97, "gate_low_rank_dim": 8 %s}"""
                    extra
            // A base config with `extra` ("key": value, ...) set over it: a variant may change a key the base has.
            let over (baseText: string) (extra: string) =
                let o = JsonNode.Parse(baseText).AsObject()
                for kv in JsonNode.Parse("{" + extra.TrimStart(' ', ',') + "}").AsObject() |> List.ofSeq do
                    o.[kv.Key] <- (if isNull kv.Value then null else kv.Value.DeepClone())
                o.ToJsonString()
            let gsa =
                over
                    """{"model_type": "gsa", "hidden_size": 64, "num_heads": 2, "num_hidden_layers": 2, "vocab_size": 97, "num_slots": 16, "hidden_ratio": 2, "tie_word_embeddings": true}"""
            let power =
                over
                    """{"model_type": "power_attention", "hidden_size": 64, "num_heads": 2, "head_dim": 8, "num_hidden_layers": 2, "vocab_size": 97, "hidden_ratio": 2}"""
            let hf (extra: string) =
                sprintf
                    """{"model_type": "mamba2", "hidden_size": 32, "num_heads": 4, "head_dim": 16, "num_hidden_layers": 2, "vocab_size": 97, "state_size": 8, "n_groups": 2 %s}"""
                    extra
            for name, text in
                [
                    "gla", gla ""
                    "gla kv heads, untied", gla """, "num_kv_heads": 1, "tie_word_embeddings": false"""
                    "gla short conv with bias, no output gate",
                    gla """, "use_short_conv": true, "conv_bias": true, "use_output_gate": false, "elementwise_affine": false"""
                    "gla per-layer heads, intermediate size",
                    gla """, "statex_layer_num_heads": [2, 1], "intermediate_size": 100, "tie_word_embeddings": true"""
                    "mamba2", hf ""
                    "mamba2 biases, untied, per-layer state",
                    hf """, "use_bias": true, "use_conv_bias": false, "tie_word_embeddings": false, "layer_state_sizes": [8, 24]"""
                    "mamba_ssm",
                    """{"d_model": 32, "n_layer": 2, "vocab_size": 97, "ssm_cfg": {"layer": "Mamba2", "d_state": 8, "headdim": 16, "ngroups": 2}}"""
                    "gsa", gsa ""
                    "gsa kv heads, short conv, t2r, untied, no affine, intermediate size",
                    gsa
                        """, "num_heads": 4, "num_kv_heads": 2, "use_short_conv": true, "conv_size": 3, "feature_map": "t2r", "tie_word_embeddings": false, "elementwise_affine": false, "intermediate_size": 96"""
                    "gsa per-layer slots", gsa """, "statex_layer_num_slots": [8, 24]"""
                    "gsa slots from the head width (num_slots null), expand_k", gsa """, "num_slots": null, "expand_k": 0.5"""
                    "power attention", power ""
                    "power attention without gating, tied, intermediate size",
                    power """, "gating": false, "tie_word_embeddings": true, "intermediate_size": 40, "degree": 4"""
                    "power attention, hidden ratio 3, three layers", power """, "hidden_ratio": 3, "num_hidden_layers": 3"""
                ] do
                test (sprintf "the counted parameters are the built model's: %s" name) {
                    let m = createFrom text
                    Expect.equal (int64 (ParameterBudget.Parameters(termsOf text))) (built m) "parameter count from the config alone"
                    m.Module.Dispose()
                }

            for fixture in [ "gla-tiny"; "gla-conv"; "gla-tiny-merged"; "mamba2-tiny"; "mamba2-groups"; "mamba2-tiny-mamba-ssm" ] do
                test (sprintf "the counted parameters are the loaded checkpoint's: %s" fixture) {
                    let text = File.ReadAllText(Path.Combine(Fixtures.dir fixture, "config.json"))
                    let m = Fixtures.load fixture
                    Expect.equal (int64 (ParameterBudget.Parameters(termsOf text))) (built m) "parameter count from config.json alone"
                    m.Module.Dispose()
                }

            test "a GLA config asking for hidden_size 1e9 is refused naming the key and the bytes" {
                let d = Fixtures.copy "gla-tiny"
                Fixtures.editConfig d (fun o -> o.["hidden_size"] <- JsonValue.Create 1000000000)
                let e =
                    raises<ConfigException>
                        (fun () -> Checkpoint.Load(d, warn = Action<string>(ignore)) |> ignore)
                        "refused before allocation"
                Expect.stringContains e.Message (Path.Combine(d, "config.json")) "names the file"
                Expect.stringContains e.Message "hidden_size = 1000000000" "names the key and its value"
                Expect.stringContains e.Message "EiB" "says the bytes needed"
                Expect.stringContains e.Message "more than this machine's memory" "says the limit it exceeds"
            }

            test "a Mamba2 config whose vocabulary is too large names vocab_size" {
                let text =
                    """{"model_type": "mamba2", "hidden_size": 65536, "num_heads": 2048, "head_dim": 64, "num_hidden_layers": 1, "vocab_size": 2000000000, "state_size": 8, "n_groups": 1}"""
                let e = raises<ConfigException> (fun () -> createFrom text |> ignore) "refused before allocation"
                Expect.stringContains
                    e.Message
                    "the embeddings: vocab_size = 2000000000 × hidden_size = 65536"
                    "names the largest part's keys"
            }

            // The whole message, so that a change of wording or of the part blamed is seen; only the machine's limit varies.
            let refusal (path: string) (needs: string) (parameters: string) (largest: string) =
                let struct (limit, where) = ParameterBudget.HostLimit()
                sprintf
                    "%s: the model needs %s (%s parameters in float32), more than %s (%s); the largest part is %s"
                    path
                    needs
                    parameters
                    where
                    (ParameterBudget.FormatBytes(float limit))
                    largest

            test "a GSA config with too many slots is refused in one line naming num_slots, before any tensor is allocated" {
                let text =
                    """{"model_type": "gsa", "hidden_size": 1024, "num_heads": 2, "num_hidden_layers": 2, "vocab_size": 97, "num_slots": 2000000000}"""
                let c = ConfigJson.Parse(text, "/x/gsa/config.json")
                let family = Checkpoint.Families |> Seq.find (fun f -> f.Recognizes c)
                let e = raises<ConfigException> (fun () -> family.Create(c, Action<string>(ignore)) |> ignore) "refused"
                Expect.equal
                    e.Message
                    (refusal
                        "/x/gsa/config.json"
                        "29.8 TiB"
                        "8,192,025,895,936"
                        "the slot gates of 2 layers: num_slots = 2000000000 × num_kv_heads = 2 × hidden_size = 1024 × num_hidden_layers = 2")
                    "the whole message"
            }

            test "a power-attention config with an impossible head width is refused in one line naming head_dim" {
                let text =
                    """{"model_type": "power_attention", "hidden_size": 256, "num_heads": 4, "head_dim": 1000000000, "num_hidden_layers": 2, "vocab_size": 97}"""
                let c = ConfigJson.Parse(text, "/x/power/config.json")
                let family = Checkpoint.Families |> Seq.find (fun f -> f.Recognizes c)
                let e = raises<ConfigException> (fun () -> family.Create(c, Action<string>(ignore)) |> ignore) "refused"
                Expect.equal
                    e.Message
                    (refusal
                        "/x/power/config.json"
                        "29.8 TiB"
                        "8,192,001,232,648"
                        "2 layers: num_hidden_layers = 2 × (hidden_size = 256, num_heads = 4 × head_dim = 1000000000, MLP width 768 from hidden_ratio = 4)")
                    "the whole message"
            }

            test "GSA and power-attention descriptions too large are refused by Model.create, naming the key" {
                let gsa = Model.gsa { GsaSpec.tiny with Slots = 2000000000; Hidden = 1024 }
                let e = raises<ConfigException> (fun () -> Model.create gsa |> ignore) "refused"
                Expect.stringStarts e.Message "the model description: the model needs " "names the description"
                Expect.stringEnds
                    e.Message
                    "the largest part is the slot gates of 2 layers: num_slots = 2000000000 × num_kv_heads = 2 × hidden_size = 1024 × num_hidden_layers = 2"
                    "blames the slots"
                let power = Model.power { PowerSpec.tiny with Vocab = 2000000000; Hidden = 4096 }
                let e = raises<ConfigException> (fun () -> Model.create power |> ignore) "refused"
                Expect.stringContains
                    e.Message
                    "the largest part is the embeddings: vocab_size = 2000000000 × hidden_size = 4096"
                    "blames the vocabulary"
            }

            test "GSA slot expansion to an impossible size is refused before the expanded model is built" {
                // 16 slots × 130,000,000 = 2,080,000,000 per layer: 31 TiB of slot gates at hidden size 1024.
                let m = Model.gsa { GsaSpec.tiny with Hidden = 1024 }
                let lm = Model.create m
                use _ = lm.Module
                let e =
                    raises<ConfigException> (fun () -> Model.expandModel (m |> Expand.all (State(130000000, Copy))) lm |> ignore) "refused"
                Expect.stringStarts e.Message "the expanded model: the model needs " "names the expanded model"
                Expect.stringEnds
                    e.Message
                    "the largest part is the slot gates of 2 layers: num_slots = 2080000000 × num_kv_heads = 2 × hidden_size = 1024 × num_hidden_layers = 2"
                    "and the slots it would have"
            }

            test "an expansion ratio whose product overflows 32 bits is refused, not wrapped round to a small size" {
                // 16 × 268,435,457 = 2^32 + 16, which 32-bit arithmetic wraps round to 16: the "expanded" model would be
                // the base, its state and parameters as before, a silent wrong number (and the core's copy of the slots
                // then asks libtorch for 2^32 rows).
                let ratio = 268435457
                for name, m in [ "GSA slots", Model.gsa GsaSpec.tiny; "Mamba2 state", Model.mamba2 Mamba2Spec.tiny ] do
                    let e = raises<ArgumentException> (fun () -> m |> Expand.all (State(ratio, Copy)) |> Model.flatten |> ignore) name
                    Expect.stringContains e.Message (sprintf "16 × %d = 4294967312" ratio) (name + ": the description names the product")
                    let lm = Model.create m
                    use _ = lm.Module
                    let request = Model.request (m |> Expand.all (State(ratio, Copy))).Expansions.Head
                    let e = raises<ArgumentException> (fun () -> StateExpansion.Apply(lm, request) |> ignore) name
                    Expect.stringContains e.Message (sprintf "16 × %d = 4294967312" ratio) (name + ": the core names the product")
            }

            test "a GSA slot list that is not integers and MLP widths that are not positive are refused by key (found by fuzzing)" {
                let refused (text: string) =
                    let c = ConfigJson.Parse(text, "/x/config.json")
                    let family = Checkpoint.Families |> Seq.find (fun f -> f.Recognizes c)
                    (raises<ConfigException> (fun () -> family.Create(c, Action<string>(ignore)) |> ignore) text).Message
                let gsa extra =
                    sprintf
                        """{"model_type": "gsa", "hidden_size": 64, "num_heads": 2, "num_hidden_layers": 2, "vocab_size": 97, %s}"""
                        extra
                // These used to escape as an InvalidOperationException or NullReferenceException naming no file.
                Expect.equal
                    (refused (gsa """ "statex_layer_num_slots": ["x", 2]"""))
                    "/x/config.json: key 'statex_layer_num_slots[0]' should be a number, got \"x\""
                    "a string"
                Expect.equal
                    (refused (gsa """ "statex_layer_num_slots": [null, 2]"""))
                    "/x/config.json: key 'statex_layer_num_slots[0]' should be a number, got null"
                    "a null"
                Expect.equal
                    (refused (gsa """ "statex_layer_num_slots": [16, 1.5]"""))
                    "/x/config.json: key 'statex_layer_num_slots[1]' should be an integer, got 1.5"
                    "a fraction"
                Expect.equal
                    (refused (gsa """ "statex_layer_num_slots": [3000000000, 2]"""))
                    "/x/config.json: key 'statex_layer_num_slots[0]' should be an integer, got 3000000000"
                    "beyond the int range"
                Expect.equal (refused (gsa """ "hidden_ratio": -3""")) "/x/config.json: 'hidden_ratio' must be positive" "GSA hidden_ratio"
                let gla extra =
                    sprintf
                        """{"model_type": "gla", "hidden_size": 64, "num_heads": 2, "num_hidden_layers": 2, "vocab_size": 97, %s}"""
                        extra
                Expect.equal (refused (gla """ "hidden_ratio": 0""")) "/x/config.json: 'hidden_ratio' must be positive" "GLA hidden_ratio"
                Expect.equal
                    (refused (gla """ "intermediate_size": -5"""))
                    "/x/config.json: 'intermediate_size' must be positive"
                    "GLA intermediate_size"
                Expect.equal
                    (refused
                        """{"model_type": "power_attention", "hidden_size": 64, "num_heads": 2, "head_dim": 8, "vocab_size": 97, "intermediate_size": -5}""")
                    "/x/config.json: 'intermediate_size' must be positive"
                    "power intermediate_size"
            }

            test "statex train --config on a GSA config too large prints one line naming num_slots" {
                let cfg = Path.Combine(Fixtures.tempDir (), "config.json")
                File.WriteAllText(
                    cfg,
                    """{"model_type": "gsa", "hidden_size": 1024, "num_heads": 2, "num_hidden_layers": 2, "vocab_size": 260, "num_slots": 2000000000}"""
                )
                let r =
                    Cli.runWith [ "OMP_NUM_THREADS", "1" ] 120 [
                        "train"
                        "--config"
                        cfg
                        "--data"
                        "synth:mqar:pairs=4:len=32:vocab=256"
                        "--steps"
                        "1"
                        "--device"
                        "cpu"
                        "--out"
                        Path.Combine(Fixtures.tempDir (), "run")
                    ]
                expectOneLine r [ cfg; "num_slots = 2000000000"; "TiB" ]
            }

            test "a size beyond the int range is an error naming the key, not a wrap-around" {
                let e =
                    raises<ConfigException> (fun () -> termsOf """{"model_type": "gla", "hidden_size": 3000000000}""" |> ignore) "refused"
                Expect.stringContains e.Message "'hidden_size' = 3000000000 is out of range" "names the key and value"
            }

            test "statex check-logits on an impossible size prints one line naming the key" {
                let d = Fixtures.copy "gla-tiny"
                Fixtures.editConfig d (fun o -> o.["hidden_size"] <- JsonValue.Create 1000000000)
                let r = Cli.run [ "check-logits"; "--model"; d; "--io"; Path.Combine(d, "io.safetensors"); "--device"; "cpu" ]
                expectOneLine r [ "hidden_size = 1000000000"; "config.json" ]
            }

            test "a native error shows its first line only, and says --verbose shows the rest" {
                let native =
                    Runtime.InteropServices.ExternalException(
                        "DefaultCPUAllocator: can't allocate memory: you tried to allocate 12 bytes.\nException raised from malloc at alloc.cpp:1 (most recent call first):\nframe #0: c10::Error"
                    )
                let line = StateX.Cli.Program.errorLine (InvalidOperationException("outer", native))
                Expect.equal
                    line
                    "DefaultCPUAllocator: can't allocate memory: you tried to allocate 12 bytes. (--verbose prints the native detail)"
                    "first line of the innermost message"
                Expect.equal
                    (StateX.Cli.Program.errorLine (ArgumentException "--seed: must be ≥ 0"))
                    "--seed: must be ≥ 0"
                    "a one-line message is kept as it is"
                Expect.equal
                    (StateX.Cli.Program.errorLine (InvalidOperationException "cannot start:\n  - a\n  - b"))
                    "cannot start:\n  - a\n  - b"
                    "StateX's own list of problems is kept whole"
            }
        ]

        testList "json readers (found by fuzzing)" [
            test "a duplicate key is a ConfigException naming the file, not an ArgumentException at first access" {
                let e =
                    raises<ConfigException>
                        (fun () ->
                            ConfigJson.Parse("""{"model_type": "gla", "hidden_size": 8, "hidden_size": 9}""", "/x/config.json") |> ignore)
                        "refused at parse"
                Expect.stringContains e.Message "/x/config.json: not valid JSON: duplicate key" "names the file and the problem"
                Expect.stringContains e.Message "hidden_size" "names the key"
            }

            test "a JSON error quoting a long multi-line token stays one short line" {
                let token = String.replicate 50 "ab\n  cd"
                let e =
                    raises<ConfigException>
                        (fun () -> ConfigJson.Parse("{\"a\": tru" + token.Replace("\\n", "\n") + "}", "/x/config.json") |> ignore)
                        "refused"
                Expect.isFalse (e.Message.Contains '\n') "one line"
                Expect.isLessThan e.Message.Length 400 "short"
            }
        ]

        testList "non-finite weights" [
            test "a NaN in lm_head.weight is refused at load, naming the tensor and the count" {
                let d = Fixtures.copy "gla-tiny"
                poison d "lm_head.weight" nanf
                let e = raises<SafeTensorsException> (fun () -> Checkpoint.Load(d, warn = Action<string>(ignore)) |> ignore) "refused"
                Expect.stringContains
                    e.Message
                    "tensor 'lm_head.weight' holds 1 NaN and 0 infinite value(s)"
                    "names the tensor and the count"
                Expect.stringContains e.Message "allow-non-finite" "names the option that allows it"
            }

            test "an Inf in a Mamba2 weight is refused too" {
                let d = Fixtures.copy "mamba2-tiny"
                poison d "backbone.layers.0.mixer.in_proj.weight" infinityf
                let e = raises<SafeTensorsException> (fun () -> Checkpoint.Load(d, warn = Action<string>(ignore)) |> ignore) "refused"
                Expect.stringContains
                    e.Message
                    "'backbone.layers.0.mixer.in_proj.weight' holds 0 NaN and 1 infinite value(s)"
                    "names the tensor and the count"
            }

            test "allowed, it loads with a warning; scoring and generation then refuse the NaN" {
                let d = Fixtures.copy "gla-tiny"
                poison d "lm_head.weight" nanf
                let warnings = Collections.Generic.List<string>()
                let m = Checkpoint.Load(d, warn = Action<string>(warnings.Add), allowNonFinite = true)
                Expect.exists warnings (fun w -> w.Contains "lm_head.weight" && w.Contains "loaded anyway") "warns, naming the tensor"
                let e = raises<NonFiniteScoreException> (fun () -> Scoring.ScoreTokens(m, [| [| 1; 5; 7; 9 |] |]) |> ignore) "no NaN score"
                Expect.stringContains e.Message "NaN" "says NaN"
                raises<NonFiniteScoreException>
                    (fun () ->
                        Scoring.LogLikelihoodShared(m, [| ([| 1; 5 |], [| [| 7 |] |] :> Collections.Generic.IReadOnlyList<int[]>) |])
                        |> ignore)
                    "no NaN log-likelihood"
                |> ignore
                raises<NonFiniteScoreException>
                    (fun () -> Generation.Generate(m, [| [| 1; 5 |] |], GenerationOptions(4)) |> ignore)
                    "no tokens from NaN logits"
                |> ignore
                m.Module.Dispose()
            }

            test "statex generate and check-logits refuse a NaN weight in one line; allowed, they refuse the NaN result" {
                let d = Fixtures.copy "gla-tiny"
                poison d "lm_head.weight" nanf
                let gen extra =
                    Cli.run (
                        [ "generate"; "--model"; d; "--prompt"; "hello"; "--device"; "cpu"; "--tokenizer"; "byte"; "--max-new"; "4" ]
                        @ extra
                    )
                expectOneLine (gen []) [ "lm_head.weight"; "1 NaN" ]
                let allowed = gen [ "--allow-non-finite" ]
                expectOneLine allowed [ "NaN"; "refusing" ]
                Expect.equal allowed.Stdout "" "prints no tokens"
                let check extra =
                    Cli.run ([ "check-logits"; "--model"; d; "--io"; Path.Combine(d, "io.safetensors"); "--device"; "cpu" ] @ extra)
                expectOneLine (check []) [ "lm_head.weight" ]
                let r = check [ "--allow-non-finite" ]
                expectOneLine r [ "the model's logits hold"; "NaN" ]
                Expect.isFalse (r.Stdout.Contains "max_abs_diff=NaN") "no NaN printed as a difference"
            }
        ]
    ]
