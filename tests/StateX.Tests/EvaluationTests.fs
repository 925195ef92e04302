module StateX.Tests.EvaluationTests

open System
open System.IO
open System.Text
open System.Collections.Generic
open Expecto
open TorchSharp
open StateX.Data
open StateX.Models
open StateX.Tokenization
open StateX.Evaluation
open StateX.Evaluation.Tasks

type private T = torch.Tensor

/// A layer state holding one tensor.
type private TensorState(t: T) =
    member _.Tensor = t
    interface ILayerState with
        member _.Tensors = [| t |] :> IReadOnlyList<T>
        member _.Detach() = new TensorState(t.detach ()) :> ILayerState
        member _.Clone() = new TensorState(t.clone ()) :> ILayerState
        member _.Dispose() = t.Dispose()

let private stateOf (s: ModelState) = (s.Layers.[0] :?> TensorState).Tensor

/// A model that remembers every id it has seen (its state is the history [B, n]) and puts all probability on
/// predict(history, t): the oracle reads the answer out of the history; a constant predictor gives the same
/// logits everywhere.
type private HistoryModel(vocab: int, predict: int[] -> int -> int) =
    let identity = torch.nn.Identity()
    member val Calls = List<ForwardMode * int64>()
    interface ICausalLanguageModel with
        member _.Family = "history"
        member _.VocabSize = vocab
        member _.NumLayers = 1
        member this.Forward(ids, labels, state, returnState, mode) =
            this.Calls.Add((mode, ids.shape.[1]))
            let b, t = int ids.shape.[0], int ids.shape.[1]
            let hist =
                match state with
                | null -> torch.zeros (int64 b, 0L, dtype = torch.int64)
                | s -> stateOf s
            let full = torch.cat ([| hist; ids |], 1L)
            let n = int full.shape.[1]
            let flat = full.data<int64>().ToArray() |> Array.map int
            let logits = Array.zeroCreate<float32>(b * t * vocab)
            for r in 0 .. b - 1 do
                let row = flat.[r * n .. r * n + n - 1]
                for j in 0 .. t - 1 do
                    let target = predict row (n - t + j)
                    logits.[(r * t + j) * vocab + target] <- 30.0f
            let lg = torch.tensor(logits).reshape(int64 b, int64 t, int64 vocab)
            let loss =
                match labels with
                | null -> null
                | l -> LanguageModelLoss.ShiftedCrossEntropy(lg, l)
            LmOutput(lg, loss, (if returnState then new ModelState([| new TensorState(full) :> ILayerState |]) else null))
        member _.InitialState(batch, _, _) =
            new ModelState([| new TensorState(torch.zeros (batch, 0L, dtype = torch.int64)) :> ILayerState |])
        member _.StateSize() = StateSizeReport([||])
        member _.Save _ = ()
        member _.Module = identity :> torch.nn.Module

/// A genuinely recurrent toy: the state is the running sum s of the ids; logits[v] = −|v − s mod V| / 2 + 0.1·cos(v·s).
/// Chunked and recurrent forms compute the same thing.
type private RunningSumModel(vocab: int) =
    let identity = torch.nn.Identity()
    interface ICausalLanguageModel with
        member _.Family = "running-sum"
        member _.VocabSize = vocab
        member _.NumLayers = 1
        member _.Forward(ids, labels, state, returnState, _) =
            let b = ids.shape.[0]
            let s0 =
                match state with
                | null -> torch.zeros (b, 1L, dtype = torch.float64)
                | s -> stateOf s
            let sums = ids.to_type(torch.float64).cumsum(1L).add(s0) // [B, T]
            let m = sums.remainder((float vocab).ToScalar()).unsqueeze(-1) // [B, T, 1]
            let v = torch.arange(int64 vocab, dtype = torch.float64).view(1L, 1L, -1L) // [1, 1, V]
            let logits = ((v - m).abs() * -0.5 + (v * sums.unsqueeze (-1)).cos() * 0.1).to_type(torch.float32)
            let loss =
                match labels with
                | null -> null
                | l -> LanguageModelLoss.ShiftedCrossEntropy(logits, l)
            let last = sums.narrow(1L, sums.shape.[1] - 1L, 1L).clone()
            LmOutput(logits, loss, (if returnState then new ModelState([| new TensorState(last) :> ILayerState |]) else null))
        member _.InitialState(batch, _, _) =
            new ModelState([| new TensorState(torch.zeros (batch, 1L, dtype = torch.float64)) :> ILayerState |])
        member _.StateSize() = StateSizeReport([||])
        member _.Save _ = ()
        member _.Module = identity :> torch.nn.Module

let private constant vocab token = HistoryModel(vocab, fun _ _ -> token) :> ICausalLanguageModel

/// Oracle from a table: for each (sequence, positions) the next id after the prefix ending at each position.
let private lookupOracle vocab (entries: seq<int[] * seq<int>>) =
    let key (h: int[]) t = String.Join(",", h.[0..t])
    let table = Dictionary<string, int>()
    for (s, ps) in entries do
        for p in ps do
            table.[key s p] <- s.[p + 1]
    HistoryModel(
        vocab,
        fun h t ->
            match table.TryGetValue(key h t) with
            | true, v -> v
            | _ -> 0
    )
    :> ICausalLanguageModel

let private byteTok = ByteTokenizer() :> ITokenizer
let private opts seg = EvalOptions(SegmentLength = seg, BatchSize = 3)
let private value (rs: seq<EvalResult>) metric = (rs |> Seq.find (fun r -> r.Metric = metric)).Value

/// MQAR oracle: after a key that appeared before, the value that followed its first appearance.
let private mqarOracle (c: MqarConfig) =
    HistoryModel(
        c.VocabSize,
        fun h t ->
            let tok = h.[t]
            if tok >= c.FirstKey && tok < c.FirstValue then
                let i = Array.IndexOf(h, tok)
                if i < t then h.[i + 1] else 0
            else
                0
    )
    :> ICausalLanguageModel

/// Passkey oracle on byte ids: after the question (and k answer bytes), byte k of " KEY", the key read from the needle.
let private passkeyOracle () =
    let q = Encoding.UTF8.GetBytes "What is the pass key? The pass key is" |> Array.map int
    let needle = Encoding.UTF8.GetBytes "The pass key is " |> Array.map int
    let endsWith (h: int[]) (e: int) (pat: int[]) = e - pat.Length + 1 >= 0 && Array.forall2 (=) h.[e - pat.Length + 1 .. e] pat
    HistoryModel(
        ByteTokenizer().VocabSize,
        fun h t ->
            match [ 0..6 ] |> List.tryFind (fun k -> endsWith h (t - k) q) with
            | Some k ->
                let mutable i = 0
                while not (endsWith h (i + needle.Length - 1) needle) do
                    i <- i + 1
                let answer = Array.append [| int ' ' |] h.[i + needle.Length .. i + needle.Length + 4]
                if k < answer.Length then answer.[k] else 0
            | None -> 0
    )
    :> ICausalLanguageModel

let private example = Fixtures.example

let private throwsWith (f: unit -> 'a) (parts: string list) =
    let e = Expect.throwsC (f >> ignore) id
    for p in parts do
        Expect.stringContains e.Message p "error message names the problem"

[<Tests>]
let tests =
    testList "evaluation" [
        testList "generators" [
            test "MQAR: distinct keys, each queried once right after the pairs, value follows key, deterministic" {
                let c = MqarConfig(8, 64, 41)
                for i in 0L .. 20L do
                    let e = Mqar.Generate(c, 5UL, i)
                    Expect.equal e.Tokens.Length 64 "length"
                    let kv = [ for j in 0..7 -> e.Tokens.[2 * j], e.Tokens.[2 * j + 1] ]
                    Expect.equal (kv |> List.map fst |> List.distinct |> List.length) 8 "keys distinct"
                    for (k, v) in kv do
                        Expect.isTrue (k >= c.FirstKey && k < c.FirstValue && v >= c.FirstValue && v < c.FirstValue + c.HalfVocab) "ranges"
                    Expect.equal (Set.ofArray e.Keys) (kv |> List.map fst |> Set.ofList) "every key queried once"
                    Expect.equal e.QueryPositions.Length 8 "queries"
                    for q in 0..7 do
                        let p = e.QueryPositions.[q]
                        Expect.isTrue (p >= 16 && (p - 16) % 2 = 0) "query in a slot after the pairs"
                        Expect.equal e.Tokens.[p] e.Keys.[q] "key at query position"
                        Expect.equal e.Tokens.[p + 1] (kv |> List.find (fun (k, _) -> k = e.Keys.[q]) |> snd) "its value follows"
                    let others = Set.ofArray e.QueryPositions |> Set.map (fun p -> [ p; p + 1 ]) |> Seq.concat |> Set.ofSeq
                    for p in 16..63 do
                        if not (others.Contains p) then Expect.equal e.Tokens.[p] 0 "filler elsewhere"
                    Expect.equal (Mqar.Generate(c, 5UL, i).Tokens) e.Tokens "pure function of (seed, index)"
                Expect.notEqual (Mqar.Generate(c, 5UL, 0L).Tokens) (Mqar.Generate(c, 5UL, 1L).Tokens) "examples differ"
                throwsWith (fun () -> Mqar.Generate(MqarConfig(8, 20, 41), 0UL, 0L)) [ "too short" ]
                throwsWith (fun () -> Mqar.Generate(MqarConfig(8, 64, 9), 0UL, 0L)) [ "too small" ]
            }
            test "passkey: exact length, needle at the depth, 5-digit key, answer is the key" {
                for len in [ 400; 1000; 3000 ] do
                    for depth in [ 0.0; 0.25; 0.5; 1.0 ] do
                        let e = Passkey.Build(byteTok, len, depth, 3UL, 0L)
                        Expect.equal e.Prompt.Length len "prompt length"
                        Expect.isTrue (e.Key.Length = 5 && e.Key |> Seq.forall Char.IsDigit) "5 digits"
                        Expect.equal (byteTok.Decode e.Answer) (" " + e.Key) "answer"
                        let text = byteTok.Decode(e.Prompt, skipSpecialTokens = true)
                        Expect.equal (text.Split("The pass key is " + e.Key).Length - 1) 1 "the needle once"
                        Expect.equal
                            (byteTok.Decode(e.Prompt.[e.NeedlePosition .. e.NeedlePosition + e.NeedleLength - 1]).Trim())
                            (sprintf "The pass key is %s. Remember it. %s is the pass key." e.Key e.Key)
                            "needle where it says"
                        let unit = TextParts.Filler.Length
                        let fillerLen =
                            len
                            - (e.NeedleLength
                               + 1
                               + (byteTok.Encode
                                   "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information there.")
                                   .Length
                               + (" What is the pass key? The pass key is").Length)
                        Expect.isLessThanOrEqual (abs (e.Depth - depth) * float fillerLen) (float unit) "depth within one filler sentence"
                        Expect.isTrue (text.EndsWith " What is the pass key? The pass key is") "ends with the question"
                throwsWith (fun () -> Passkey.Build(byteTok, 100, 0.5, 0UL, 0L)) [ "shorter than the prompt" ]
            }
            test "passkey, tiny template: the prompt byte for byte, keys over its digits, answer-only targets" {
                let t = PasskeyTemplate.Named "tiny"
                let e = Passkey.Build(byteTok, 64, 0.5, 3UL, 0L, t)
                Expect.equal e.Prompt.Length 64 "exact length"
                Expect.equal e.Key "12114" "the key of (seed 3, example 0), pinned"
                Expect.equal
                    (byteTok.Decode(e.Prompt, skipSpecialTokens = true))
                    " The sky is blue. key 12114. The sky is blue. The sky is b key:"
                    "the prompt, pinned: 1 of 2 whole filler sentences before the needle at depth 0.5"
                Expect.equal (byteTok.Decode e.Answer) "12114" "the answer: the key's 5 bytes"
                for i in 0L .. 200L do
                    let k = (Passkey.Build(byteTok, 64, 0.5, 9UL, i, t)).Key
                    Expect.isTrue (k.Length = 5 && k |> Seq.forall (fun c -> "1234".Contains c)) (sprintf "5 digits of 1-4: %s" k)
                let keys = set [ for i in 0L .. 400L -> (Passkey.Build(byteTok, 64, 0.5, 9UL, i, t)).Key ]
                Expect.isGreaterThan keys.Count 300 "keys spread over the 1,024 possible"
                for depth, expected in [ 0.0, 1; 1.0, 1 + 2 * 17 ] do
                    let e = Passkey.Build(byteTok, 64, depth, 3UL, 1L, t)
                    Expect.equal e.NeedlePosition expected (sprintf "needle after BOS and %g of the whole filler sentences" depth)
                    Expect.equal
                        (byteTok.Decode e.Prompt.[e.NeedlePosition .. e.NeedlePosition + e.NeedleLength - 1])
                        (sprintf " key %s." e.Key)
                        "the needle"
                // The default template's keys are unchanged (pinned): 10000..99999.
                Expect.equal
                    (Passkey.Build(byteTok, 400, 0.5, 3UL, 0L)).Key
                    "13181"
                    "default key of (seed 3, example 0), as before the tiny template"
                // Training documents with the loss on the answer only.
                use src =
                    DataSpec
                        .Parse("synth:passkey:len=56:template=tiny:loss=answer:depth=50:count=1")
                        .Build()
                        .Open(SourceContext(ByteTokenizer(), 3UL), null)
                let mutable c = Unchecked.defaultof<DocumentChunk>
                Expect.isTrue (src.TryNext(&c)) "a document"
                let doc = Passkey.Build(byteTok, 56, 0.5, 3UL, 0L, t)
                Expect.equal (Array.ofSeq c.Tokens) (Array.append doc.Prompt doc.Answer) "prompt and answer"
                let targets = Array.ofSeq c.Targets
                Expect.equal
                    [
                        for i in 0 .. targets.Length - 1 do
                            if targets.[i] then yield i
                    ]
                    [ 56..60 ]
                    "targets: exactly the 5 answer tokens"
                use d =
                    DataSpec
                        .Parse("synth:passkey:len=56:template=tiny:digits=9:count=1")
                        .Build()
                        .Open(SourceContext(ByteTokenizer(), 3UL), null)
                Expect.isTrue (d.TryNext(&c)) "a document"
                Expect.stringContains
                    (byteTok.Decode(Array.ofSeq c.Tokens, skipSpecialTokens = true))
                    "key 99999."
                    "digits= overrides the template's"
                let opened spec = fun () -> DataSpec.Parse(spec).Build().Open(SourceContext(ByteTokenizer(), 3UL), null) :> obj
                throwsWith (opened "synth:passkey:len=56:template=huge") [
                    "synth:passkey"
                    "unknown passkey template 'huge'"
                    "default, short, tiny or stuffed-mamba"
                ]
                throwsWith (opened "synth:passkey:len=56:loss=queries") [ "synth:passkey"; "loss=queries"; "all or answer" ]
                throwsWith (opened "synth:passkey:len=56:digits=") [ "synth:passkey"; "digits= is empty" ]
            }
            test "haystack: length, needles once each, queried keys among needles" {
                let c = HaystackConfig(1500, 5, 3)
                let e = Haystack.Build(byteTok, c, 1UL, 2L)
                Expect.equal e.HaystackLength 1500 "haystack length"
                Expect.equal e.Needles.Count 5 "needles"
                let hay = byteTok.Decode(e.Tokens.[.. e.HaystackLength - 1], skipSpecialTokens = true)
                for struct (k, v, pos) in e.Needles do
                    Expect.stringContains
                        (byteTok.Decode e.Tokens.[pos .. pos + 80])
                        (sprintf "magic numbers for %s is: %s." k v)
                        "needle at its position"
                    Expect.equal (hay.Split(k + " is:").Length - 1) 1 "each key once"
                Expect.equal e.Queries.Count 3 "queries"
                for q in e.Queries do
                    Expect.isTrue (e.Needles |> Seq.exists (fun (struct (k, v, _)) -> k = q.Key && v = q.Value)) "asks about a needle"
                    Expect.equal
                        (byteTok.Decode e.Tokens.[q.AnswerStart .. q.AnswerStart + q.AnswerLength - 1])
                        (" " + q.Value)
                        "answer ids"
            }
            test "mqar and passkey serve as training sources through the registry" {
                let spec = DataSpec.Parse "synth:mqar:pairs=4:len=32:vocab=9:count=2"
                use s = spec.Build().Open(SourceContext(ByteTokenizer(), 7UL), null)
                let mutable c = Unchecked.defaultof<DocumentChunk>
                Expect.isTrue (s.TryNext(&c)) "a document"
                Expect.equal (Array.ofSeq c.Tokens) (Mqar.Generate(MqarConfig(4, 32, 9), 7UL, 0L).Tokens) "document 0 = MQAR example 0"
                use p = DataSpec.Parse("synth:passkey:len=300:depth=50:count=1").Build().Open(SourceContext(ByteTokenizer(), 7UL), null)
                Expect.isTrue (p.TryNext(&c)) "a passkey document"
                let e = Passkey.Build(byteTok, 300, 0.5, 7UL, 0L)
                Expect.equal (Array.ofSeq c.Tokens) (Array.append e.Prompt e.Answer) "prompt and answer"
                throwsWith (fun () -> DataSpec.Parse("synth:mqar:pairs=8:len=16").Build().Open(SourceContext(ByteTokenizer(), 7UL), null)) [
                    "synth:mqar"
                    "too short"
                ]
            }
        ]

        testList "scoring" [
            test "segment-wise scoring of a stateful model equals one shot" {
                let m = RunningSumModel(13) :> ICausalLanguageModel
                let seqs = [| [| 1; 5; 7; 2; 9; 11; 3; 4; 0; 12 |]; [| 3; 3; 3 |]; [| 8; 1; 2; 6; 5; 4; 7 |] |]
                let whole = Scoring.ScoreTokens(m, seqs, opts 1000)
                for seg in [ 1; 2; 3; 4 ] do
                    let parts = Scoring.ScoreTokens(m, seqs, opts seg)
                    for i in 0 .. seqs.Length - 1 do
                        Expect.sequenceEqual parts.[i].Greedy whole.[i].Greedy "greedy flags"
                        for t in 0 .. whole.[i].LogProbs.Length - 1 do
                            Expect.floatClose
                                Accuracy.high
                                (float parts.[i].LogProbs.[t])
                                (float whole.[i].LogProbs.[t])
                                (sprintf "segment %d, seq %d, pos %d" seg i t)
                // Against a direct computation: log-softmax of the whole sequence at once, batch of one.
                use x = torch.tensor(seqs.[0] |> Array.map int64).reshape(1L, 10L)
                let o = m.Forward(x)
                let lp = o.Logits.log_softmax (-1L)
                for t in 0..8 do
                    Expect.floatClose
                        Accuracy.high
                        (float whole.[0].LogProbs.[t])
                        (lp.[0, t, seqs.[0].[t + 1]].item<float32>() |> float)
                        "matches a plain forward"
            }
            test "log-likelihood of a continuation sums the token log-probs; is_greedy" {
                let m = RunningSumModel(13) :> ICausalLanguageModel
                let ctx, cont = [| 1; 5; 7 |], [| 2; 9 |]
                let s = Scoring.ScoreTokens(m, [| Array.append ctx cont |], opts 2).[0]
                let r = Scoring.LogLikelihood(m, [| struct (ctx, cont) |], opts 2).[0]
                Expect.floatClose Accuracy.medium r.LogProb (float s.LogProbs.[2] + float s.LogProbs.[3]) "sum"
                Expect.equal r.IsGreedy (s.Greedy.[2] && s.Greedy.[3]) "greedy"
                throwsWith (fun () -> Scoring.LogLikelihood(m, [| struct ([||], cont) |])) [ "context is empty" ]
                throwsWith (fun () -> Scoring.ScoreTokens(m, [| [| 1; 99 |] |])) [ "99"; "vocabulary" ]
            }
            test "chunked prefill in segments + recurrent decoding = greedy re-running the whole sequence" {
                let m = RunningSumModel(17) :> ICausalLanguageModel
                let prompts = [| [| 1; 2; 3; 4; 5; 6; 7 |]; [| 9 |]; [| 4; 4; 16 |] |]
                let naive (p: int[]) =
                    let mutable s = p
                    for _ in 1..6 do
                        use x = torch.tensor(s |> Array.map int64).reshape(1L, int64 s.Length)
                        let o = m.Forward(x)
                        s <- Array.append s [| o.Logits.[0, -1].argmax().item<int64>() |> int |]
                    s.[p.Length ..]
                for seg in [ 1; 2; 100 ] do
                    let g = Generation.Generate(m, prompts, GenerationOptions(6), opts seg)
                    for i in 0..2 do
                        Expect.equal g.[i].Tokens (naive prompts.[i]) (sprintf "prompt %d, segment %d" i seg)
                    Expect.isTrue (g |> Array.forall (fun x -> x.Finish = FinishReason.Length)) "length"
                let h = HistoryModel(20, fun h t -> (h.[t] + 1) % 20)
                Generation.Generate(h, [| Array.init 10 id |], GenerationOptions(3), opts 4) |> ignore
                let modes = h.Calls |> Seq.toList
                Expect.equal
                    modes
                    [
                        ForwardMode.Chunked, 4L
                        ForwardMode.Chunked, 4L
                        ForwardMode.Chunked, 2L
                        ForwardMode.Recurrent, 1L
                        ForwardMode.Recurrent, 1L
                    ]
                    "prefill in segments, then one token at a time"
            }
            test "stop tokens end a sequence; batches and max tokens" {
                let m = HistoryModel(20, fun h t -> (h.[t] + 1) % 20) :> ICausalLanguageModel
                let g = Generation.Generate(m, [| [| 1 |]; [| 15; 16 |] |], GenerationOptions(10, StopTokens = [| 19 |]), opts 8)
                Expect.equal g.[0].Tokens [| 2..11 |] "runs to the limit"
                Expect.equal g.[0].Finish FinishReason.Length "length"
                Expect.equal g.[1].Tokens [| 17; 18 |] "stops before 19"
                Expect.equal g.[1].Finish FinishReason.Stop "stop"
                Expect.equal g.[1].StopToken (Nullable 19) "which stop"
            }
            test "sampling: a seed reproduces, another seed differs, temperature→0 is greedy, top-k 1 is greedy, top-p narrows" {
                let m = RunningSumModel(29) :> ICausalLanguageModel
                let prompts = Array.init 5 (fun i -> [| i + 1; 2 * i |])
                let run (s: SamplingOptions) bs =
                    Generation.Generate(m, prompts, GenerationOptions(12, s), EvalOptions(SegmentLength = 2, BatchSize = bs))
                    |> Array.map (fun g -> g.Tokens)
                let hot = SamplingOptions(Temperature = 1.5, Seed = 11UL)
                Expect.equal (run hot 2) (run hot 2) "same seed, same tokens"
                Expect.equal (run hot 5) (run hot 2) "whatever the batch size"
                Expect.notEqual (run (SamplingOptions(Temperature = 1.5, Seed = 12UL)) 2) (run hot 2) "another seed, other tokens"
                let greedy = run SamplingOptions.Greedy 3
                Expect.equal (run (SamplingOptions(Temperature = 1e-6, Seed = 4UL)) 3) greedy "T→0 = greedy"
                Expect.equal (run (SamplingOptions(Temperature = 2.0, TopK = 1, Seed = 4UL)) 3) greedy "top-k 1 = greedy"
                Expect.equal (run (SamplingOptions(Temperature = 2.0, TopP = 1e-9, Seed = 4UL)) 3) greedy "tiny top-p = greedy"
                // top-k 3: every sampled token is among the 3 largest logits.
                let logits = [| 0.1f; 3.0f; 2.0f; -1.0f; 2.5f; 0.0f |]
                let rng = Rng(9UL)
                let draws = [ for _ in 1..400 -> Sampler.Sample(ReadOnlySpan logits, SamplingOptions(Temperature = 1.0, TopK = 3), rng) ]
                Expect.equal (Set.ofList draws) (set [ 1; 2; 4 ]) "top-k 3 keeps exactly the three best"
                let p = [ for _ in 1..400 -> Sampler.Sample(ReadOnlySpan logits, SamplingOptions(Temperature = 1.0, TopP = 0.5), rng) ]
                Expect.equal (Set.ofList p) (set [ 1; 4 ]) "top-p 0.5 keeps the smallest set reaching half the mass"
                throwsWith (fun () -> run (SamplingOptions(Temperature = -1.0)) 1) [ "temperature" ]
            }
        ]

        testList "tasks: oracle scores 100%, constant scores chance" [
            test "MQAR" {
                let c = MqarConfig(4, 32, 9)
                let o = Mqar.Evaluate(mqarOracle c, [| c; MqarConfig(3, 48, 9) |], 50, 1UL, opts 7)
                Expect.equal o.Count 2 "one result per setting"
                for r in o do
                    Expect.equal r.Value 1.0 "oracle"
                Expect.equal o.[0].N 200L "queries"
                Expect.equal (o.[1].Setting.["pairs"]) (box 3) "setting"
                let k = Mqar.Evaluate(constant 9 c.FirstValue, [| c |], 200, 1UL, opts 7).[0]
                Expect.isLessThan (abs (k.Value - 0.25)) 0.06 (sprintf "constant ≈ 1/4 (got %f)" k.Value)
            }
            test "passkey" {
                let r = Passkey.Evaluate(passkeyOracle (), byteTok, [| 500; 900 |], [| 0.0; 0.5; 1.0 |], 2, 0UL, opts 128)
                let acc = r |> Seq.filter (fun x -> x.Metric = "accuracy") |> Seq.toList
                Expect.equal acc.Length 6 "length × depth grid"
                for x in acc do
                    Expect.equal x.Value 1.0 "oracle"
                let k = Passkey.Evaluate(constant 259 (int '7'), byteTok, [| 500 |], [| 0.5 |], 4, 0UL, opts 128)
                Expect.equal (value k "accuracy") 0.0 "constant: chance of guessing a 5-digit key ≈ 0"
            }
            test "RULER NIAH: an oracle that answers scores 1, one that names half the values 0.5, a constant 0" {
                let essay = RulerNiah.SynthWords(1024, 0UL)
                let tasks = [| RulerNiahTask.Named "niah_single_1"; RulerNiahTask.Named "niah_multivalue" |]
                // The oracle's continuation of each prompt: the values separated by ", " (or only the first half).
                let oracle (half: bool) =
                    lookupOracle 259 [
                        for t in tasks do
                            for i in 0L .. 1L do
                                let e = RulerNiah.Build(byteTok, t, 1024, 0UL, i, essay, 48)
                                let values = if half && e.Outputs.Length > 1 then e.Outputs.[.. e.Outputs.Length / 2 - 1] else e.Outputs
                                let answer = byteTok.Encode(" " + String.Join(", ", values) + ".")
                                yield Array.append e.Prompt answer, seq { e.Prompt.Length - 1 .. e.Prompt.Length + answer.Length - 2 }
                    ]
                let score m = RulerNiah.Evaluate(m, byteTok, tasks, [| 1024 |], 2, 0UL, opts 256, essay, "synth:text", 48) |> List.ofSeq
                let r = score (oracle false)
                Expect.equal
                    [ for x in r -> x.Task, x.Metric, x.Value, x.N ]
                    [ "niah_single_1", "string_match_all", 1.0, 2L; "niah_multivalue", "string_match_all", 1.0, 2L ]
                    "the oracle finds every value"
                Expect.equal [ for x in score (oracle true) -> x.Value ] [ 1.0; 0.5 ] "2 of 4 values: 0.5"
                Expect.equal [ for x in score (constant 259 (int '7')) -> x.Value ] [ 0.0; 0.0 ] "a constant finds none"
            }
            test "needle in a haystack" {
                let cs = [| HaystackConfig(800, 4, 2); HaystackConfig(1200, 3, 3) |]
                let entries = [
                    for c in cs do
                        for i in 0L .. 2L do
                            let e = Haystack.Build(byteTok, c, 0UL, i)
                            yield
                                e.Tokens,
                                seq {
                                    for q in e.Queries do
                                        yield! [ q.AnswerStart - 1 .. q.AnswerStart + q.AnswerLength - 2 ]
                                }
                ]
                let r = Haystack.Evaluate(lookupOracle 259 entries, byteTok, cs, 3, 0UL, opts 100)
                for x in r do
                    Expect.equal x.Value 1.0 "oracle"
                Expect.equal r.[0].N 6L "queries"
                Expect.equal (Haystack.Evaluate(constant 259 (int '3'), byteTok, cs, 3, 0UL, opts 100).[0].Value) 0.0 "constant"
            }
            test "synthetic in-context learning" {
                let shots = [| 0; 4 |]
                let entries = [
                    for k in shots do
                        for i in 0L .. 39L do
                            let it = InContextLearning.Synthetic(k, 2, 0UL, i)
                            let ctx = byteTok.Encode(it.Prompt, true)
                            let full = Array.append ctx (byteTok.Encode it.Choices.[it.Gold])
                            yield full, seq { ctx.Length - 1 .. full.Length - 2 }
                ]
                let r = InContextLearning.EvaluateSynthetic(lookupOracle 259 entries, byteTok, shots, 2, 40, 0UL, opts 64)
                for x in r do
                    Expect.equal x.Value 1.0 "oracle"
                let k = InContextLearning.EvaluateSynthetic(constant 259 0, byteTok, [| 2 |], 2, 300, 0UL, opts 64).[0]
                Expect.isLessThan (abs (k.Value - 0.5)) 0.1 (sprintf "constant ≈ 1/2 (got %f)" k.Value)
                // The prompt shows the shots in the documented format.
                let it = InContextLearning.Synthetic(2, 3, 0UL, 0L)
                Expect.equal (it.Prompt.Split("Label: ").Length - 1) 2 "two labelled shots"
                Expect.isTrue (it.Prompt.EndsWith "\nLabel:") "ends at the query's label"
                Expect.equal it.Choices.Count 3 "a choice per class"
            }
            test "few-shot, multiple choice and QA from the example files" {
                let few = InContextLearning.ReadFile(example "fewshot.jsonl")
                let items = InContextLearning.FromExamples(few, 2, 0UL)
                let entries = [
                    for it in items ->
                        let ctx = byteTok.Encode(it.Prompt, true)
                        let full = Array.append ctx (byteTok.Encode it.Choices.[it.Gold])
                        full, seq { ctx.Length - 1 .. full.Length - 2 }
                ]
                let r =
                    InContextLearning.EvaluateFile(lookupOracle 259 entries, byteTok, example "fewshot.jsonl", [| 2 |], options = opts 64)
                Expect.equal r.[0].Value 1.0 "few-shot oracle"
                let mc = MultipleChoice.ReadFile(example "multiple_choice.jsonl")
                let mcEntries = [
                    for it in mc ->
                        let ctx = byteTok.Encode(it.Prompt, true)
                        let full = Array.append ctx (byteTok.Encode it.Choices.[it.Gold])
                        full, seq { ctx.Length - 1 .. full.Length - 2 }
                ]
                let m = MultipleChoice.Evaluate(lookupOracle 259 mcEntries, byteTok, example "multiple_choice.jsonl", options = opts 64)
                Expect.equal (value m "acc") 1.0 "acc"
                Expect.equal (value m "acc_norm") 1.0 "acc_norm"
                let qa = RecallQa.ReadFile(example "recall_qa.jsonl")
                let qaEntries = [
                    for e in qa ->
                        let p = byteTok.Encode(e.Prompt, true)
                        let full = Array.concat [ p; byteTok.Encode(" " + e.Answers.[0]); [| ByteTokenizer.Eos |] ]
                        full, seq { p.Length - 1 .. full.Length - 2 }
                ]
                let q = RecallQa.Evaluate(lookupOracle 259 qaEntries, byteTok, example "recall_qa.jsonl", 40, options = opts 16)
                Expect.equal q.[0].Value 1.0 "QA oracle"
                Expect.equal
                    (RecallQa.Evaluate(constant 259 (int 'x'), byteTok, example "recall_qa.jsonl", 8, options = opts 16).[0].Value)
                    0.0
                    "constant"
                Expect.isTrue
                    (RecallQa.Contains("It was The Eiffel-Tower, in Paris.", [| "eiffel tower" |]) |> not)
                    "hyphen removal joins words"
                Expect.isTrue
                    (RecallQa.Contains("It was the  EIFFEL tower!", [| "The Eiffel Tower" |]))
                    "case, articles, punctuation, spaces"
            }
            test "multiple choice: constant scores chance on random golds" {
                let dir = Fixtures.tempDir ()
                let path = Path.Combine(dir, "mc.jsonl")
                let rng = Rng(3UL)
                File.WriteAllLines(
                    path,
                    [
                        for i in 1..300 ->
                            sprintf """{"context": "Q%d:", "choices": ["aa", "bb", "cc", "dd"], "gold": %d}""" i (rng.NextInt 4)
                    ]
                )
                let r = MultipleChoice.Evaluate(constant 259 (int 'b'), byteTok, path, options = opts 64)
                // The constant model prefers " bb" always: accuracy = share of gold 1 ≈ 1/4.
                Expect.isLessThan (abs (value r "acc" - 0.25)) 0.08 "acc ≈ 1/4"
            }
            test "recall suite (JRT): an oracle writing the label scores 1, the label after a newline 0" {
                let file = example "squad.jsonl"
                let ex = BasedRecall.ReadFile(RecallTask.Squad, file, byteTok, Nullable 1000)
                let oracle (answer: string -> string) =
                    lookupOracle 259 [
                        for e in ex ->
                            let p = byteTok.Encode(e.Prompt, true)
                            let full = Array.append p (byteTok.Encode(answer e.Labels.[0]))
                            full, seq { p.Length - 1 .. full.Length - 2 }
                    ]
                let score m = (BasedRecall.Evaluate(m, byteTok, RecallTask.Squad, file, maxNewTokens = 20, options = opts 16)).[0]
                let r = score (oracle (fun l -> " " + l + "\nnoise"))
                Expect.equal (r.Task, r.Metric, r.Value, r.N) ("squad", "contains", 1.0, 2L) "the label before the newline"
                Expect.equal (score (oracle (fun l -> "\n" + l))).Value 0.0 "generation stops at the newline"
                Expect.equal (score (constant 259 (int 'x'))).Value 0.0 "constant"
            }
            test "loss versus position: bins, oracle loss ≈ 0, constant loss = log V off target" {
                let docs = [| Array.init 40 (fun i -> (i * 7) % 50); Array.init 20 (fun i -> (i * 3 + 1) % 50) |]
                let oracle = lookupOracle 50 [ for d in docs -> d, seq { 0 .. d.Length - 2 } ]
                let r = LossVsPosition.Evaluate(oracle, docs, 32, options = opts 5)
                Expect.equal
                    [ for x in r -> unbox<int> x.Setting.["from"], unbox<int> x.Setting.["to"] ]
                    [ 0, 1; 1, 2; 2, 4; 4, 8; 8, 16; 16, 32 ]
                    "power-of-two bins"
                Expect.equal (r |> Seq.sumBy (fun x -> x.N)) (31L + 19L) "every position once"
                for x in r do
                    Expect.isLessThan x.Value 1e-6 "oracle loss"
                let c = LossVsPosition.Evaluate(constant 51 50, docs, 32, LossVsPosition.LinearEdges(32, 10), opts 5)
                // Token 50 never occurs as a target: loss = log(50 + e^30) − 0 ≈ 30 everywhere.
                let lse = 30.0 + log (1.0 + 50.0 * exp -30.0)
                for x in c do
                    Expect.floatClose Accuracy.medium x.Value lse "constant loss"
                Expect.equal c.Count 4 "linear bins"
            }
        ]

        testList "files and results" [
            test "bad data files name the file and the line" {
                let dir = Fixtures.tempDir ()
                let write name (lines: string list) =
                    let p = Path.Combine(dir, name) in
                    File.WriteAllLines(p, lines)
                    p
                let p1 =
                    write "mc.jsonl" [
                        """{"context": "a", "choices": ["x", "y"], "gold": 1}"""
                        ""
                        """{"context": "a", "choices": ["x", "y"], "gold": 2}"""
                    ]
                throwsWith (fun () -> MultipleChoice.ReadFile p1) [ p1 + ":3:"; "gold" ]
                let p2 = write "qa.jsonl" [ """{"prompt": "a", "answer": "b"}"""; """{"prompt": "a", "answer": """ ]
                throwsWith (fun () -> RecallQa.ReadFile p2) [ p2 + ":2:"; "invalid JSON" ]
                let p3 = write "few.jsonl" [ """{"input": "a", "label": "b"}"""; """{"input": "a"}""" ]
                throwsWith (fun () -> InContextLearning.ReadFile p3) [ p3 + ":2:"; "\"label\"" ]
                let p4 = write "qa2.jsonl" [ """{"prompt": "a", "answer": 5}""" ]
                throwsWith (fun () -> RecallQa.ReadFile p4) [ p4 + ":1:"; "answer" ]
                let p5 = write "mc2.jsonl" [ """[1, 2]""" ]
                throwsWith (fun () -> MultipleChoice.ReadFile p5) [ p5 + ":1:"; "object" ]
                throwsWith (fun () -> MultipleChoice.ReadFile(Path.Combine(dir, "none.jsonl"))) [ "none.jsonl"; "not found" ]
            }
            test "the example files parse" {
                Expect.isGreaterThan (MultipleChoice.ReadFile(example "multiple_choice.jsonl")).Count 1 "mc"
                Expect.isGreaterThan (RecallQa.ReadFile(example "recall_qa.jsonl")).Count 1 "qa"
                Expect.isGreaterThan (InContextLearning.ReadFile(example "fewshot.jsonl")).Count 3 "few-shot"
                Expect.isGreaterThan (EvalFiles.ReadDocuments(example "tiny.jsonl", byteTok)).Count 1 "documents"
            }
            test "CSV and JSON Lines writers; progress reaches the total" {
                let rs = [
                    EvalResult(
                        "m",
                        "mqar",
                        EvalResult.SettingOf(struct ("pairs", box 8), struct ("seq_len", box 256)),
                        "accuracy",
                        0.5,
                        10L
                    )
                    EvalResult("m,2", "passkey", EvalResult.SettingOf(struct ("depth", box 0.25)), "accuracy", 1.0, 3L)
                ]
                let dir = Fixtures.tempDir ()
                let csv = Path.Combine(dir, "r.csv")
                ResultFiles.Write(csv, rs)
                let lines = File.ReadAllLines csv
                Expect.equal lines.[0] "model,task,depth,pairs,seq_len,metric,value,n" "header: setting keys as columns"
                Expect.equal lines.[1] "m,mqar,,8,256,accuracy,0.5,10" "row"
                Expect.equal lines.[2] "\"m,2\",passkey,0.25,,,accuracy,1,3" "quoted"
                let jl = Path.Combine(dir, "r.jsonl")
                ResultFiles.Write(jl, rs)
                let first = System.Text.Json.JsonDocument.Parse(File.ReadAllLines(jl).[0]).RootElement
                Expect.equal (first.GetProperty("setting").GetProperty("pairs").GetInt32()) 8 "numbers stay numbers"
                Expect.equal (first.GetProperty("value").GetDouble()) 0.5 "value"
                throwsWith (fun () -> ResultFiles.Write(Path.Combine(dir, "r.txt"), rs)) [ "r.txt"; ".csv" ]
                let seen = List<EvalProgress>()
                Scoring.ScoreTokens(
                    RunningSumModel(7),
                    Array.init 7 (fun i -> [| 1; i |]),
                    EvalOptions(BatchSize = 3, Progress = Action<EvalProgress>(seen.Add))
                )
                |> ignore
                Expect.equal [ for p in seen -> p.Step ] [ 6L; 12L; 14L ] "a report per batch, in tokens"
                Expect.isTrue (seen |> Seq.forall (fun p -> p.Total = 14L && p.Eta.HasValue)) "total and ETA"
                seen.Clear()
                Scoring.ScoreTokens(
                    RunningSumModel(7),
                    [| Array.init 10 (fun i -> i % 7); [| 1; 2; 3 |] |],
                    EvalOptions(SegmentLength = 4, Progress = Action<EvalProgress>(seen.Add))
                )
                |> ignore
                Expect.equal [ for p in seen -> p.Step ] [ 7L; 11L; 13L ] "a long sequence reports every segment"
                seen.Clear()
                Passkey.Evaluate(
                    constant 259 0,
                    byteTok,
                    [| 400; 500 |],
                    [| 0.0; 1.0 |],
                    2,
                    0UL,
                    EvalOptions(SegmentLength = 256, Progress = Action<EvalProgress>(seen.Add))
                )
                |> ignore
                Expect.isTrue (seen |> Seq.forall (fun p -> p.Total = 2L * 2L * (400L + 500L))) "one total for the passkey grid"
                Expect.isTrue (seen |> Seq.pairwise |> Seq.forall (fun (a, b) -> b.Step >= a.Step)) "steps only advance"
                Expect.equal (Seq.last seen).Step (Seq.last seen).Total "ends at the total"
                Expect.isGreaterThan seen.Count 8 "reports within cells"
            }
        ]
    ]
