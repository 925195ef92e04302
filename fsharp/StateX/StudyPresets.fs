namespace StateX

open System

/// A study with how it is meant to run: the device, worker processes, and what it costs.
type StudyPreset =
    { Name: string
      Study: Study
      /// auto | cpu | cuda | cuda:N.
      Device: string
      /// (family, seed) jobs run at once as worker processes, each with cores / Workers threads (the CLI's demo).
      Workers: int
      /// How long the preset takes, for the plan.
      Expected: string }

/// <summary>
/// The miniature StateX studies (`statex demo --preset cpu|gpu|smoke`) as values: models, data, budgets and
/// evaluation grids. Change them with the Study functions (<c>Study.seeds</c>, <c>Study.mapPostTraining</c>, ...)
/// in a script or notebook; `statex demo` runs exactly these.
/// </summary>
[<RequireQualifiedAccess>]
module StudyPresets =
    /// MQAR ids of the small presets: 0 filler, keys 1..32, values 33..64 (byte ids, so the byte tokenizer's models
    /// read them). A small key set makes recall learnable within a CPU budget; 32 keys still allow up to 32 pairs.
    let mqarVocab = 65

    /// MQAR documents from 1 pair (learnable quickly) to 16 or 32 pairs (past what the base state holds), loss on
    /// the queried values only (Zoology), `weight` shared equally.
    let private mqarParts (weight: float) (seqLen: int) (pairs: int list) =
        [ for n in pairs -> sprintf "%g*synth:mqar:pairs=%d:len=%d:vocab=%d:loss=queries" (weight / float pairs.Length) n seqLen mqarVocab ]

    /// MQAR alone: pretraining's first phase.
    let recallOnly (seqLen: int) (pairs: int list) = mqarParts 1.0 seqLen pairs |> String.concat "," |> sprintf "mix:%s"

    /// Pretraining's second phase: the same MQAR with generated English-like text (Data/GrammarText.cs).
    let pretrainMix (seqLen: int) (pairs: int list) (textWeight: float) =
        mqarParts (1.0 - textWeight) seqLen pairs @ [ sprintf "%g*synth:text:len=%d" textWeight seqLen ]
        |> String.concat "," |> sprintf "mix:%s"

    /// Post-training (both arms): longer sequences, more pairs, passkey documents and the same kind of text.
    let postTrainMix (seqLen: int) (pairs: int list) =
        mqarParts 0.75 seqLen pairs
        @ [ sprintf "0.15*synth:passkey:len=%d:template=short" seqLen; sprintf "0.1*synth:text:len=%d" seqLen ]
        |> String.concat "," |> sprintf "mix:%s"

    /// The small GLA: byte vocabulary, short convolution, tied embeddings. fla's initializer_range 0.02 suits width
    /// 2048 (≈ 1/√2048); at width 64 it leaves q·k ≈ 0 and MQAR on a long plateau (measured: chance after 600 steps,
    /// against 60% at 4 pairs after 1200 steps with 1/√width).
    let gla (hidden: int) (layers: int) (heads: int) (expandK: float) =
        Model.gla
            { GlaSpec.defaults with
                Vocab = 260; Hidden = hidden; Layers = layers; Heads = heads; ExpandK = expandK; ExpandV = 1.0
                HiddenRatio = Some 4; Conv = Some 4; TieEmbeddings = true; InitRange = 1.0 / sqrt (float hidden) }

    /// The small Mamba2 (transformers' layout): byte vocabulary, tied embeddings, init range 1/√width.
    let mamba2 (dModel: int) (layers: int) (dState: int) (headDim: int) (chunk: int) =
        Model.mamba2
            { Mamba2Spec.defaults with
                Vocab = 260; DModel = dModel; Layers = layers; DState = dState; HeadDim = headDim; ChunkSize = chunk
                InitRange = 1.0 / sqrt (float dModel) }

    /// One training stage of the small presets: whole documents, warm-up a tenth of the steps unless given.
    let train (data: string) (steps: int) (seqLen: int) (batch: int) (lr: float) (warmup: int option) =
        TrainSpec.on data |> TrainSpec.steps steps |> TrainSpec.seqLen seqLen |> TrainSpec.batch batch |> TrainSpec.lr lr
        |> TrainSpec.warmup (defaultArg warmup (max 1 (steps / 10))) |> TrainSpec.wholeDocuments

    /// The StateX rewrite of a family on `layers`, with the official reinitialisation.
    let rewrite (family: string) =
        match family with
        | "gla" -> MergeHeads Reinit
        | _ -> State(4, Reinit)

    let private expansion family layers = { Where = layers; Rewrite = rewrite family; Seed = 0L; FreezeOthers = false }

    /// Two CPU cores, under 15 minutes including the build; the two seeds run side by side, a core each.
    /// Sizes are chosen so that recall is limited by the state (measured, 2400 steps of this MQAR without text, eval at
    /// 128 tokens): GLA with 4 heads of 2×16 per layer recalls 76%, 43%, 19% at 8, 16, 32 pairs, the same model with one
    /// head of 8×64 per layer 94%, 88%, 50%; Mamba2 with 16 heads of 8 and d_state 4 recalls 90–94%, 69–80%, 41–51%
    /// (seeds 0, 1), with d_state 16 ≥ 99%. The control re-measures this in every run.
    let cpu : StudyPreset =
        let family name (model: Model) lr =
            // Measured: with 5% text from the start both families stay near "copy any value" after 2400 steps; MQAR
            // alone first (warm-up 50 steps: with 240 neither Mamba2 seed learned recall), then the mixture.
            { Name = name; Base = model; Start = None; Tokenizer = "byte"
              Pretrain = [ train (recallOnly 64 [ 1; 2; 4; 8; 16 ]) 2400 64 32 lr (Some 50)
                           train (pretrainMix 64 [ 1; 2; 4; 8; 16 ] 0.25) 300 64 32 lr None ]
              Arms = [ { Name = "statex"; Label = "StateX"; Expansions = [ expansion name (LayerSet.Last 1) ] } ]
              Control = Some [ expansion name LayerSet.All ] }
        { Name = "cpu"
          Study =
            { Name = "cpu"
              Families = [ family "gla" (gla 64 2 4 0.125) 3e-3
                           // Measured: at 3e-3 the small Mamba2 is still near "copy any value" after 2400 steps.
                           family "mamba2" (mamba2 64 2 4 8 64) 1e-2 ]
              PostTrain = train (postTrainMix 128 [ 2; 4; 8; 16; 32 ]) 400 128 16 2e-3 None
              Evaluation =
                { EvalSpec.tasks [ Mqar([ 1; 2; 4; 8; 16; 32 ], 128, 48, Some mqarVocab)
                                   Passkey([ 128; 256; 512; 1024 ], [ 0.0; 0.25; 0.5; 0.75; 1.0 ], 4, "short")
                                   HeldOutLoss("synth:text:len=256", 16, 128)
                                   ModelSize ] with SegmentLength = 1024 }
              Seeds = [ 0; 1 ]
              ControlSeeds = [ 0 ] }
          Device = "cpu"
          Workers = 2
          Expected = "about 12 minutes on 2 idle CPU cores, build included" }

    /// One modern GPU (H200): wider and deeper models, longer contexts, more pretraining.
    let gpu : StudyPreset =
        let family name (model: Model) lr =
            { Name = name; Base = model; Start = None; Tokenizer = "byte"
              Pretrain = [ train (recallOnly 128 [ 1; 2; 4; 8; 16; 32 ]) 3000 128 64 lr (Some 50)
                           train (pretrainMix 128 [ 1; 2; 4; 8; 16; 32 ] 0.25) 600 128 64 lr None ]
              Arms = [ { Name = "statex"; Label = "StateX"; Expansions = [ expansion name (LayerSet.Last 1) ] } ]
              Control = Some [ expansion name LayerSet.All ] }
        { Name = "gpu"
          Study =
            { Name = "gpu"
              Families = [ family "gla" (gla 256 4 4 0.125) 2e-3; family "mamba2" (mamba2 256 4 4 32 128) 6e-3 ]
              PostTrain = train (postTrainMix 512 [ 4; 8; 16; 32 ]) 600 512 16 1e-3 None
              Evaluation =
                { EvalSpec.tasks [ Mqar([ 1; 2; 4; 8; 16; 32 ], 512, 128, Some mqarVocab)
                                   Passkey([ 512; 1024; 2048; 4096; 8192 ], [ 0.0; 0.25; 0.5; 0.75; 1.0 ], 8, "short")
                                   HeldOutLoss("synth:text:len=1024", 64, 512)
                                   ModelSize ] with SegmentLength = 1024; Precision = "bf16" }
              Seeds = [ 0; 1 ]
              ControlSeeds = [ 0 ] }
          Device = "cuda"
          Workers = 1
          Expected = "about 15 minutes on one H200" }

    /// Seconds-long version of the cpu preset for tests and for trying the command: it shows the mechanics, not the result.
    let smoke : StudyPreset =
        let shrink (f: StudyFamily) =
            let lr = f.Pretrain.Head.LearningRate
            { f with Pretrain = [ train (recallOnly 64 [ 1; 4 ]) 4 64 4 lr None; train (pretrainMix 128 [ 1; 4 ] 0.1) 6 128 4 lr None ] }
        { cpu with
            Name = "smoke"
            Study =
                { cpu.Study with
                    Name = "smoke"
                    Families = cpu.Study.Families |> List.map shrink
                    PostTrain = train (postTrainMix 128 [ 2; 8 ]) 4 128 4 1e-3 None
                    Evaluation =
                        { cpu.Study.Evaluation with
                            Tasks = [ Mqar([ 4; 16 ], 64, 4, Some mqarVocab); Passkey([ 128; 256 ], [ 0.0; 1.0 ], 1, "short")
                                      HeldOutLoss("synth:text:len=256", 2, 128); ModelSize ] }
                    ControlSeeds = [ 0; 1 ] }
            Expected = "seconds" }

    /// cpu, gpu or smoke (the paper preset is built from checkpoints: StudyPaper).
    let byName (name: string) =
        match name.ToLowerInvariant() with
        | "cpu" -> cpu
        | "gpu" -> gpu
        | "smoke" -> smoke
        | other -> invalidArg "preset" (sprintf "unknown preset '%s': expected cpu, gpu, smoke or paper" other)

    let private tokens (t: TrainSpec) = int64 t.Steps * int64 (t.BatchSize * t.GradAccum) * int64 t.SeqLen

    /// One training stage in a line: steps × sequences × tokens, and its optimiser settings.
    let describeTraining (t: TrainSpec) =
        sprintf "%d steps × %d × %d tokens = %s tokens, lr %g, warm-up %s, %s to %g×lr, AdamW betas (0.9, 0.95) wd %g on ≥2-dim tensors, clip %g"
            t.Steps (t.BatchSize * t.GradAccum) t.SeqLen ((tokens t).ToString("N0", Globalization.CultureInfo.InvariantCulture)) t.LearningRate
            (match t.Warmup with Some w -> string w | None -> "5%") t.Schedule t.FloorRatio t.WeightDecay t.ClipNorm

    /// The plan of a preset, as `statex demo` prints it before it starts.
    let plan (p: StudyPreset) (out: string) =
        let s = p.Study
        let sb = Text.StringBuilder()
        let line (x: string) = sb.AppendLine x |> ignore
        line (sprintf "StateX demo, preset %s (%s), device %s, seeds %s, families %s" p.Name p.Expected p.Device
                (String.Join(",", s.Seeds)) (String.Join(",", s.Families |> List.map (fun f -> f.Name))))
        line "  1. pretrain base models from scratch:"
        for f in s.Families do
            line (sprintf "     %s: %s" f.Name (Model.summary f.Base))
            for i, t in List.indexed f.Pretrain do
                line (sprintf "       phase %d: %s" (i + 1) (describeTraining t))
                line (sprintf "                on %s" t.Data)
            match f.Control with
            | Some c -> line (sprintf "       control (seeds %s): %s, pretrained the same way" (String.Join(",", s.ControlSeeds)) (Model.summary (Model.flatten { f.Base with Expansions = c })))
            | None -> ()
        line "  2. post-train, equal budget per arm, every parameter trained: LPT (the model as is) and StateX:"
        for f in s.Families do
            for a in f.Arms do
                line (sprintf "     %s %s: %s" f.Name a.Label (Model.summary { f.Base with Expansions = a.Expansions } |> fun t -> t.Substring(t.IndexOf "expanded" |> max 0)))
        line (sprintf "     %s" (describeTraining s.PostTrain))
        line (sprintf "     on %s" s.PostTrain.Data)
        line "     (the official post-training, statex-official.md §2: AdamW lr 3e-4, betas (0.9, 0.95), wd 0.1 on every ≥2-dim tensor, clip 1.0, 1000 warm-up steps, cosine to 0 over 20,000 steps of 8×64K tokens; small models here take a larger lr and fewer steps)"
        line (sprintf "  3. evaluate every arm: %s" (s.Evaluation.Tasks |> List.map (fun t -> ValueJson.toText t) |> String.concat "; "))
        line (sprintf "  → %s (results.csv, results.jsonl, summary.txt, report.html, stages/)" out)
        sb.ToString()
