/// The sizes of the demo study: models, data, training budgets and evaluation grids per preset.
module StateX.Cli.Demo.DemoPreset

open StateX.Expansion

type Family =
    | Gla
    | Mamba2
    member f.Name = match f with Gla -> "gla" | Mamba2 -> "mamba2"

type Arm =
    | Base
    | Lpt
    | StateX
    member a.Name = match a with Base -> "base" | Lpt -> "lpt" | StateX -> "statex"

/// One training stage's budget.
type Budget = { Steps: int; SeqLen: int; Batch: int; Lr: float }

type Preset =
    { Name: string
      /// config.json text per family (random initialisation).
      Configs: Map<string, string>
      /// The StateX rewrite per family, scaled to the small models.
      Expansions: Map<string, ExpansionRequest>
      Pretrain: Budget
      PostTrain: Budget
      /// Data of pretraining and of post-training (same mixture; post-training sees longer sequences).
      PretrainData: string
      PostTrainData: string
      MqarPairs: int list
      /// Ids the MQAR evaluation draws from (keys are the lower half of 1..vocab−1, values the upper).
      MqarVocab: int
      MqarLength: int
      MqarExamples: int
      PasskeyLengths: int list
      PasskeyDepths: float list
      PasskeyTrials: int
      HeldOutDocuments: int
      Seeds: int list
      Device: string
      /// What "a few minutes" means for this preset, for the plan.
      Expected: string }

/// MQAR ids of the small presets: 0 filler, keys 1..32, values 33..64 (byte ids, so the byte tokenizer's models read
/// them). A small key set makes recall learnable within a CPU budget; 32 keys still allow up to 32 pairs.
let mqarVocab = 65

/// Pretraining: MQAR from 1 pair (learnable quickly: the only value seen) to 16 pairs (past what the base state
/// holds), with the loss on the queried values only (Zoology), plus generated English-like text (Data/GrammarText.cs)
/// for language-like structure. Text is weighted low: every text token is a target, an MQAR document has 1–16.
let private mqarParts (weight: float) (seqLen: int) (pairs: int list) =
    [ for n in pairs -> sprintf "%g*synth:mqar:pairs=%d:len=%d:vocab=%d:loss=queries" (weight / float pairs.Length) n seqLen mqarVocab ]

let private pretrainMix (seqLen: int) (pairs: int list) (textWeight: float) =
    mqarParts (1.0 - textWeight) seqLen pairs @ [ sprintf "%g*synth:text:len=%d" textWeight seqLen ]
    |> String.concat "," |> sprintf "mix:%s"

/// Post-training (both arms): longer sequences, more pairs (up to what the expanded state can hold), passkey
/// documents (the long-context retrieval the passkey evaluation asks for) and the same kind of text.
let private postTrainMix (seqLen: int) (pairs: int list) =
    mqarParts 0.75 seqLen pairs
    @ [ sprintf "0.15*synth:passkey:len=%d:template=short" seqLen; sprintf "0.1*synth:text:len=%d" seqLen ]
    |> String.concat "," |> sprintf "mix:%s"

/// fla's initializer_range 0.02 suits width 2048 (≈ 1/√2048); at width 64 it leaves q·k ≈ 0 and MQAR on a long
/// plateau (measured: chance after 600 steps, against 60% at 4 pairs after 1200 steps with 1/√width).
let private glaConfig hidden layers heads =
    sprintf """{
  "model_type": "gla", "architectures": ["GLAForCausalLM"],
  "hidden_size": %d, "num_hidden_layers": %d, "num_heads": %d, "expand_k": 0.5, "expand_v": 1.0,
  "hidden_ratio": 4, "use_short_conv": true, "conv_size": 4, "use_output_gate": true, "use_gk": true,
  "gate_logit_normalizer": 16, "vocab_size": 260, "tie_word_embeddings": true, "initializer_range": %g,
  "norm_eps": 1e-06, "bos_token_id": 257, "eos_token_id": 258, "pad_token_id": 256
}""" hidden layers heads (1.0 / sqrt (float hidden))

let private mamba2Config hidden layers dState headDim chunk =
    sprintf """{
  "model_type": "mamba2", "architectures": ["Mamba2ForCausalLM"],
  "hidden_size": %d, "num_hidden_layers": %d, "state_size": %d, "head_dim": %d, "num_heads": %d, "expand": 2,
  "n_groups": 1, "conv_kernel": 4, "chunk_size": %d, "vocab_size": 260, "tie_word_embeddings": true,
  "residual_in_fp32": true, "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "time_step_rank": 4,
  "time_step_min": 0.001, "time_step_max": 0.1, "time_step_floor": 0.0001, "use_bias": false, "use_conv_bias": true,
  "bos_token_id": 257, "eos_token_id": 258, "pad_token_id": 256
}""" hidden layers dState headDim (hidden * 2 / headDim) chunk

let private expansions fraction =
    Map [ "gla", ExpansionRequest(LayerSelection.Parse(sprintf "fraction:%g" fraction), Rewrite.MergeHeads(1), ExpansionInit.Reinit, 0L)
          "mamba2", ExpansionRequest(LayerSelection.Parse(sprintf "fraction:%g" fraction), Rewrite.WidenState(4), ExpansionInit.Reinit, 0L) ]

/// Two CPU cores, under 15 minutes including the build. Base state per layer: GLA 4 heads of 8×16, Mamba2 8 heads
/// of 16×8; StateX merges GLA layer 0's heads into one of 32×64 (×4) and gives Mamba2 layer 0 d_state 32 (×4).
let cpu =
    { Name = "cpu"
      Configs = Map [ "gla", glaConfig 64 2 4; "mamba2", mamba2Config 64 2 8 16 64 ]
      Expansions = expansions 0.5
      Pretrain = { Steps = 1200; SeqLen = 64; Batch = 32; Lr = 3e-3 }
      PostTrain = { Steps = 400; SeqLen = 128; Batch = 16; Lr = 1e-3 }
      PretrainData = pretrainMix 64 [ 1; 2; 4; 8; 16 ] 0.1
      PostTrainData = postTrainMix 128 [ 2; 4; 8; 16; 32 ]
      MqarPairs = [ 1; 2; 4; 8; 16; 32 ]
      MqarVocab = mqarVocab
      MqarLength = 128
      MqarExamples = 48
      PasskeyLengths = [ 128; 256; 512; 1024 ]
      PasskeyDepths = [ 0.0; 0.25; 0.5; 0.75; 1.0 ]
      PasskeyTrials = 4
      HeldOutDocuments = 16
      Seeds = [ 0; 1 ]
      Device = "cpu"
      Expected = "about 11 minutes on 2 idle CPU cores" }

/// One modern GPU, a few minutes: wider and deeper models, longer contexts, more pretraining.
let gpu =
    { Name = "gpu"
      Configs = Map [ "gla", glaConfig 256 4 4; "mamba2", mamba2Config 256 4 16 32 128 ]
      Expansions = expansions 0.25
      Pretrain = { Steps = 3000; SeqLen = 128; Batch = 64; Lr = 2e-3 }
      PostTrain = { Steps = 600; SeqLen = 512; Batch = 16; Lr = 5e-4 }
      PretrainData = pretrainMix 128 [ 1; 2; 4; 8; 16; 32 ] 0.1
      PostTrainData = postTrainMix 512 [ 4; 8; 16; 32 ]
      MqarPairs = [ 1; 2; 4; 8; 16; 32 ]
      MqarVocab = mqarVocab
      MqarLength = 512
      MqarExamples = 128
      PasskeyLengths = [ 512; 1024; 2048; 4096; 8192 ]
      PasskeyDepths = [ 0.0; 0.25; 0.5; 0.75; 1.0 ]
      PasskeyTrials = 8
      HeldOutDocuments = 64
      Seeds = [ 0; 1 ]
      Device = "cuda"
      Expected = "a few minutes on one H100-class GPU" }

/// Seconds-long version of the cpu preset for tests and for trying the command: it shows the mechanics, not the result.
let smoke =
    { cpu with
        Name = "smoke"
        Pretrain = { Steps = 6; SeqLen = 128; Batch = 4; Lr = 3e-3 }
        PostTrain = { Steps = 4; SeqLen = 128; Batch = 4; Lr = 1e-3 }
        PretrainData = pretrainMix 128 [ 1; 4 ] 0.1
        PostTrainData = postTrainMix 128 [ 2; 8 ]
        MqarPairs = [ 4; 8 ]
        MqarLength = 64
        MqarExamples = 4
        PasskeyLengths = [ 128; 256 ]
        PasskeyDepths = [ 0.0; 1.0 ]
        PasskeyTrials = 1
        HeldOutDocuments = 2
        Expected = "seconds" }

let byName (name: string) =
    match name.ToLowerInvariant() with
    | "cpu" -> cpu
    | "gpu" -> gpu
    | "smoke" -> smoke
    | other -> invalidArg "preset" (sprintf "unknown preset '%s': expected cpu, gpu or paper" other)
