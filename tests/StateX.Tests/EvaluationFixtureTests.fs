/// Evaluation on the real fixture models: segments carrying the state equal one pass, choices branching from a
/// cloned state equal scoring each pair on its own, and a clone is independent of its original.
module StateX.Tests.EvaluationFixtureTests

open System
open System.Collections.Generic
open Expecto
open TorchSharp
open StateX.Data
open StateX.Models
open StateX.Tokenization
open StateX.Evaluation

type private T = torch.Tensor

let private load name = Checkpoint.Load(Fixtures.dir name, torch.CPU, torch.ScalarType.Float32)

/// Random ids in [0, vocab), one row per length.
let private randomRows (vocab: int) (seed: uint64) (lengths: int list) =
    let rng = Rng(seed)
    [| for n in lengths -> Array.init n (fun _ -> rng.NextInt vocab) |]

let private floats (t: T) = t.detach().cpu().to_type(torch.ScalarType.Float32).contiguous().data<float32>().ToArray()

let private stateValues (s: ModelState) = [
    for l in s.Layers do
        for t in l.Tensors -> floats t
]

let private expectCloseArrays (tol: float) (a: float32[]) (b: float32[]) what =
    Expect.equal a.Length b.Length (what + ": lengths")
    let d = Array.fold2 (fun m (x: float32) (y: float32) -> max m (abs (float x - float y))) 0.0 a b
    Expect.isLessThanOrEqual d tol (sprintf "%s: max abs diff %g" what d)

let private models = [ "gla-tiny"; "gla-conv"; "mamba2-tiny" ]

/// The state after a forward pass over ids [1, n].
let private prefill (m: ICausalLanguageModel) (ids: int[]) =
    use _ = torch.no_grad ()
    use x = torch.tensor(ids |> Array.map int64).reshape(1L, int64 ids.Length)
    let o = m.Forward(x, returnState = true)
    o.Logits.Dispose()
    o.State

let private logitsFrom (m: ICausalLanguageModel) (state: ModelState) (ids: int[]) =
    use _ = torch.no_grad ()
    use x = torch.tensor(ids |> Array.map int64).reshape(1L, int64 ids.Length)
    let o = m.Forward(x, state = state, returnState = true)
    let l = floats o.Logits
    o.Logits.Dispose()
    l, o.State

[<Tests>]
let tests =
    testList "evaluation on fixture models" [
        for name in models do
            test (sprintf "%s: scoring in segments equals one pass" name) {
                let m = load name
                let rows = randomRows m.VocabSize 7UL [ 45; 29; 38 ]
                let whole = Scoring.ScoreTokens(m, rows, EvalOptions(SegmentLength = 1000, BatchSize = 3))
                // One plain forward of row 0 (no segments, no batch).
                use _ = torch.no_grad ()
                use x = torch.tensor(rows.[0] |> Array.map int64).reshape(1L, 45L)
                use lp = m.Forward(x).Logits.log_softmax(-1L)
                let direct = [| for t in 0..43 -> lp.[0, t, rows.[0].[t + 1]].item<float32>() |]
                expectCloseArrays 1e-4 whole.[0].LogProbs direct "batched scoring vs a plain forward"
                for seg in [ 1; 7; 16 ] do
                    for bs in [ 1; 3 ] do
                        let parts = Scoring.ScoreTokens(m, rows, EvalOptions(SegmentLength = seg, BatchSize = bs))
                        for i in 0 .. rows.Length - 1 do
                            expectCloseArrays 1e-4 parts.[i].LogProbs whole.[i].LogProbs (sprintf "segment %d, batch %d, row %d" seg bs i)
                            Expect.sequenceEqual
                                parts.[i].Greedy
                                whole.[i].Greedy
                                (sprintf "greedy flags, segment %d, batch %d, row %d" seg bs i)
            }

            test (sprintf "%s: generation with a segmented prefill equals one prefill" name) {
                let m = load name
                let prompts = randomRows m.VocabSize 9UL [ 23; 11 ]
                let run seg =
                    Generation.Generate(m, prompts, GenerationOptions(6), EvalOptions(SegmentLength = seg, BatchSize = 2))
                    |> Array.map (fun g -> g.Tokens)
                let one = run 1000
                Expect.equal (run 5) one "segments of 5"
                Expect.equal (run 1) one "segments of 1"
            }

            test (sprintf "%s: choices branching from one pass over the context equal scoring each pair alone" name) {
                let m = load name
                let ctx = randomRows m.VocabSize 11UL [ 21; 3; 17 ]
                let conts = randomRows m.VocabSize 12UL [ 1; 4; 2; 6; 1; 3; 5 ]
                let requests = [|
                    struct (ctx.[0], [| conts.[0]; conts.[1]; conts.[2] |] :> IReadOnlyList<int[]>)
                    struct (ctx.[1], [| conts.[3] |] :> IReadOnlyList<int[]>)
                    struct (ctx.[2], [| conts.[4]; conts.[5]; conts.[6] |] :> IReadOnlyList<int[]>)
                |]
                let pairs = [|
                    for struct (c, cs) in requests do
                        for x in cs -> struct (c, x)
                |]
                let o = EvalOptions(SegmentLength = 8, BatchSize = 4)
                let alone = Scoring.LogLikelihood(m, pairs, o)
                let shared = Scoring.LogLikelihoodShared(m, requests, o) |> Array.concat
                Expect.equal shared.Length alone.Length "a score per pair"
                for (a, s) in Array.zip alone shared do
                    Expect.floatClose { absolute = 1e-4; relative = 1e-5 } s.LogProb a.LogProb "log-likelihood"
                    Expect.equal s.IsGreedy a.IsGreedy "is_greedy"
                    Expect.equal s.Tokens a.Tokens "tokens"
            }

            test (sprintf "%s: a cloned state is independent of its original" name) {
                let m = load name
                let ids = randomRows m.VocabSize 13UL [ 19; 5 ]
                use original = prefill m ids.[0]
                let before = stateValues original
                let clone = original.Clone()
                Expect.equal (clone.Layers.Count) (original.Layers.Count) "a state per layer"
                List.iter2 (fun a b -> expectCloseArrays 0.0 a b "a clone starts equal") (stateValues clone) before
                Expect.isTrue
                    (Seq.forall2 (fun (a: ILayerState) (b: ILayerState) -> a.GetType() = b.GetType()) clone.Layers original.Layers)
                    "same layer state types"
                // Advancing the clone (the model may update a state in place) leaves the original as it was.
                let fromClone, advanced = logitsFrom m clone ids.[1]
                List.iter2 (fun a b -> expectCloseArrays 0.0 a b "original after advancing the clone") (stateValues original) before
                // Mutating the clone's tensors in place leaves the original as it was.
                for l in clone.Layers do
                    for t in l.Tensors do
                        t.add_ (torch.tensor (1.0f)) |> ignore
                List.iter2 (fun a b -> expectCloseArrays 0.0 a b "original after mutating the clone") (stateValues original) before
                clone.Dispose()
                // The original still continues exactly as the clone did.
                let fromOriginal, advanced2 = logitsFrom m original ids.[1]
                expectCloseArrays 0.0 fromOriginal fromClone "same continuation from the original"
                List.iter2 (fun a b -> expectCloseArrays 0.0 a b "same advanced state") (stateValues advanced2) (stateValues advanced)
                advanced.Dispose()
                advanced2.Dispose()
            }

        test "generation never emits an id beyond the vocabulary limit (a tokenizer smaller than the model's vocabulary)" {
            let m = load "gla-tiny"
            let prompts = randomRows m.VocabSize 3UL [ 5; 9 ]
            for limit in [ 1; 10 ] do
                for s in [ SamplingOptions.Greedy; SamplingOptions(Temperature = 2.0, Seed = 5UL) ] do
                    let g = Generation.Generate(m, prompts, GenerationOptions(12, s, VocabLimit = limit))
                    Expect.isTrue
                        (g |> Array.forall (fun x -> x.Tokens.Length = 12 && x.Tokens |> Array.forall (fun t -> t < limit)))
                        (sprintf "ids below %d" limit)
            Expect.throwsC
                (fun () -> Generation.Generate(m, prompts, GenerationOptions(2, VocabLimit = m.VocabSize + 1)) |> ignore)
                (fun e -> Expect.stringContains e.Message "vocabulary limit" "names the limit")
            // A 300-id model with the 259-id byte tokenizer: the text always decodes.
            let text =
                Generation.GenerateText(
                    m,
                    ByteTokenizer(),
                    [| "Hello"; "a" |],
                    GenerationOptions(16, SamplingOptions(Temperature = 3.0, Seed = 1UL))
                )
            Expect.equal text.Length 2 "two texts"
        }
    ]
