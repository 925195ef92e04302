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
    | Scratch
    member a.Name = match a with Base -> "base" | Lpt -> "lpt" | StateX -> "statex" | Scratch -> "scratch"

/// One training stage's budget.
type Budget =
    { Steps: int; SeqLen: int; Batch: int; Lr: float
      /// Linear warm-up steps; None: a tenth of the steps.
      Warmup: int option }

type Preset =
    { Name: string
      /// config.json text per family (random initialisation).
      Configs: Map<string, string>
      /// The StateX rewrite per family, scaled to the small models.
      Expansions: Map<string, ExpansionRequest>
      /// Pretraining's first phase, if any: this budget on this data (MQAR alone), before Pretrain on PretrainData.
      /// Text from the first step keeps small models from learning recall at all within a CPU budget (measured).
      RecallPhase: (Budget * string) option
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
      /// Pretraining learning rate per family where it differs from Pretrain.Lr.
      PretrainLr: Map<string, float>
      /// The state-limit control per family: this rewrite on every layer of the base architecture, pretrained from
      /// scratch with the base's data and budget (arm "scratch"). If it recalls more than the base, the base's
      /// recall is limited by its state, not by training. Empty: no control.
      Controls: Map<string, ExpansionRequest>
      /// Seeds that also run the control (it costs a pretraining run per family).
      ControlSeeds: int list
      /// (seed, family) pipelines run at once, each in its own process with cores / Workers threads.
      Workers: int
      Device: string
      /// How long this preset takes, for the plan.
      Expected: string }

/// MQAR ids of the small presets: 0 filler, keys 1..32, values 33..64 (byte ids, so the byte tokenizer's models read
/// them). A small key set makes recall learnable within a CPU budget; 32 keys still allow up to 32 pairs.
let mqarVocab = 65

/// MQAR documents from 1 pair (learnable quickly: the only value seen) to 16 or 32 pairs (past what the base state
/// holds), with the loss on the queried values only (Zoology), `weight` shared equally. Pretraining adds generated
/// English-like text (Data/GrammarText.cs) in its second phase only (see RecallPhase).
let private mqarParts (weight: float) (seqLen: int) (pairs: int list) =
    [ for n in pairs -> sprintf "%g*synth:mqar:pairs=%d:len=%d:vocab=%d:loss=queries" (weight / float pairs.Length) n seqLen mqarVocab ]

/// MQAR alone: pretraining's first phase.
let private recallOnly (seqLen: int) (pairs: int list) =
    mqarParts 1.0 seqLen pairs |> String.concat "," |> sprintf "mix:%s"

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
let private glaConfig hidden layers heads expandK =
    sprintf """{
  "model_type": "gla", "architectures": ["GLAForCausalLM"],
  "hidden_size": %d, "num_hidden_layers": %d, "num_heads": %d, "expand_k": %g, "expand_v": 1.0,
  "hidden_ratio": 4, "use_short_conv": true, "conv_size": 4, "use_output_gate": true, "use_gk": true,
  "gate_logit_normalizer": 16, "vocab_size": 260, "tie_word_embeddings": true, "initializer_range": %g,
  "norm_eps": 1e-06, "bos_token_id": 257, "eos_token_id": 258, "pad_token_id": 256
}""" hidden layers heads expandK (1.0 / sqrt (float hidden))

let private mamba2Config hidden layers dState headDim chunk =
    sprintf """{
  "model_type": "mamba2", "architectures": ["Mamba2ForCausalLM"],
  "hidden_size": %d, "num_hidden_layers": %d, "state_size": %d, "head_dim": %d, "num_heads": %d, "expand": 2,
  "n_groups": 1, "conv_kernel": 4, "chunk_size": %d, "vocab_size": 260, "tie_word_embeddings": true,
  "residual_in_fp32": true, "initializer_range": %g, "layer_norm_epsilon": 1e-05, "time_step_rank": 4,
  "time_step_min": 0.001, "time_step_max": 0.1, "time_step_floor": 0.0001, "use_bias": false, "use_conv_bias": true,
  "bos_token_id": 257, "eos_token_id": 258, "pad_token_id": 256
}""" hidden layers dState headDim (hidden * 2 / headDim) chunk (1.0 / sqrt (float hidden))

let private expansions (layers: string) =
    Map [ "gla", ExpansionRequest(LayerSelection.Parse layers, Rewrite.MergeHeads(1), ExpansionInit.Reinit, 0L)
          "mamba2", ExpansionRequest(LayerSelection.Parse layers, Rewrite.WidenState(4), ExpansionInit.Reinit, 0L) ]

/// The same rewrites on every layer: the control architecture (trained from scratch, so the init is moot).
let private controls = Map [ for KeyValue(f, e) in expansions "all" -> f, e ]

/// Two CPU cores, under 15 minutes including the build; the two seeds run side by side, a core each.
/// Sizes are chosen so that recall is limited by the state (measured, 2400 steps of this MQAR without text, eval at
/// 128 tokens): GLA with 4 heads of 2×16 per layer recalls 76%, 43%, 19% at 8, 16, 32 pairs, the same model with one
/// head of 8×64 per layer 94%, 88%, 50%; Mamba2 with 16 heads of 8 and d_state 4 recalls 90–94%, 69–80%, 41–51%
/// (seeds 0, 1), with d_state 16 ≥ 99%; with 8 heads of 16 it learned recall for one seed of three. The
/// "scratch" control re-measures this in every run. StateX expands the last layer: reinitialising layer 0, where these
/// two-layer models keep their recall, is not relearned within the post-training budget (measured: 26–40% at one pair).
let cpu =
    { Name = "cpu"
      Configs = Map [ "gla", glaConfig 64 2 4 0.125; "mamba2", mamba2Config 64 2 4 8 64 ]
      Expansions = expansions "last:1"
      // Measured: with 5% text from the start both families stay near "copy any value" after 2400 steps. MQAR alone
      // first, then the mixture with 25% text, keeps the recall (measured after 600 steps of it: GLA 75/43/18%, Mamba2 79/44/15% at
      // 8/16/32 pairs, against 76/43/19% and 82/45/16% before; the preset takes 300 for time).
      // Warm-up 50 steps, not 240: measured, Mamba2 then learns recall with seeds 0 and 1 (with 240, neither did).
      RecallPhase = Some({ Steps = 2400; SeqLen = 64; Batch = 32; Lr = 3e-3; Warmup = Some 50 }, recallOnly 64 [ 1; 2; 4; 8; 16 ])
      Pretrain = { Steps = 300; SeqLen = 64; Batch = 32; Lr = 3e-3; Warmup = None }
      // Measured: at 3e-3 the small Mamba2 is still near "copy any value" (72% at 2 pairs) after 2400 steps.
      PretrainLr = Map [ "mamba2", 1e-2 ]
      PostTrain = { Steps = 400; SeqLen = 128; Batch = 16; Lr = 2e-3; Warmup = None }
      PretrainData = pretrainMix 64 [ 1; 2; 4; 8; 16 ] 0.25
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
      Controls = controls
      ControlSeeds = [ 0 ]
      Workers = 2
      Device = "cpu"
      Expected = "about 12 minutes on 2 idle CPU cores, build included" }

/// One modern GPU, about 15 minutes (H200): wider and deeper models, longer contexts, more pretraining; key dimensions kept
/// small in the hope that recall stays limited by the state (on the H200 it was not: see the README).
let gpu =
    { Name = "gpu"
      Configs = Map [ "gla", glaConfig 256 4 4 0.125; "mamba2", mamba2Config 256 4 4 32 128 ]
      Expansions = expansions "last:1"
      RecallPhase = Some({ Steps = 3000; SeqLen = 128; Batch = 64; Lr = 2e-3; Warmup = Some 50 }, recallOnly 128 [ 1; 2; 4; 8; 16; 32 ])
      Pretrain = { Steps = 600; SeqLen = 128; Batch = 64; Lr = 2e-3; Warmup = None }
      PretrainLr = Map [ "mamba2", 6e-3 ]
      PostTrain = { Steps = 600; SeqLen = 512; Batch = 16; Lr = 1e-3; Warmup = None }
      PretrainData = pretrainMix 128 [ 1; 2; 4; 8; 16; 32 ] 0.25
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
      Controls = controls
      ControlSeeds = [ 0 ]
      Workers = 1
      Device = "cuda"
      Expected = "about 15 minutes on one H200 (measured: seed 0 with its control, 8.9 minutes)" }

/// Seconds-long version of the cpu preset for tests and for trying the command: it shows the mechanics, not the result.
let smoke =
    { cpu with
        Name = "smoke"
        ControlSeeds = [ 0; 1 ]
        RecallPhase = Some({ Steps = 4; SeqLen = 64; Batch = 4; Lr = 3e-3; Warmup = None }, recallOnly 64 [ 1; 4 ])
        Pretrain = { Steps = 6; SeqLen = 128; Batch = 4; Lr = 3e-3; Warmup = None }
        PostTrain = { Steps = 4; SeqLen = 128; Batch = 4; Lr = 1e-3; Warmup = None }
        PretrainData = pretrainMix 128 [ 1; 4 ] 0.1
        PostTrainData = postTrainMix 128 [ 2; 8 ]
        MqarPairs = [ 4; 16 ]
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
