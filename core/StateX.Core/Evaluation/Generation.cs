using StateX.Data;
using StateX.Models;
using StateX.Tokenization;
using static TorchSharp.torch;

namespace StateX.Evaluation;

/// <summary>What to generate.</summary>
/// <param name="MaxNewTokens">At most this many tokens per prompt.</param>
/// <param name="Sampling">Greedy when null.</param>
/// <param name="StopTokens">A sequence ends when it produces one of these (not included in its tokens).</param>
/// <param name="VocabLimit">Only ids below this are generated: a model's vocabulary is often padded beyond its
/// tokenizer's (to a multiple of 64 or so), and an id the tokenizer lacks cannot be decoded.</param>
public sealed record GenerationOptions(int MaxNewTokens = 64, SamplingOptions? Sampling = null, IReadOnlyCollection<int>? StopTokens = null, int? VocabLimit = null)
{
    public SamplingOptions SamplingOrGreedy => Sampling ?? SamplingOptions.Greedy;
}

public enum FinishReason { Stop, Length }

/// <summary>The tokens generated for one prompt (without the prompt and without the stop token) and why it ended.</summary>
public sealed record Generated(int[] Tokens, FinishReason Finish, int? StopToken);

/// <summary>
/// Chunked prefill followed by recurrent decoding. Prompts are batched by length (<see cref="EvalOptions.BatchSize"/>);
/// the prefix all prompts of a batch share in length is prefilled in the chunked form in segments of
/// <see cref="EvalOptions.SegmentLength"/>, carrying the state; the rest of longer prompts is fed token by token in
/// the recurrent form while shorter ones already decode. Decoding keeps only the state: memory per sequence is
/// constant in the number of generated tokens. No padding token ever enters a sequence.
/// </summary>
public static class Generation
{
    public static Generated[] Generate(ICausalLanguageModel model, IReadOnlyList<int[]> prompts, GenerationOptions gen, EvalOptions? options = null, string task = "generate")
    {
        var o = options ?? new EvalOptions();
        o.Validate();
        var sampling = gen.SamplingOrGreedy;
        sampling.Validate();
        if (gen.MaxNewTokens < 0) throw new ArgumentException($"max new tokens must be ≥ 0 (got {gen.MaxNewTokens})");
        int limit = gen.VocabLimit ?? model.VocabSize;
        if (limit < 1 || limit > model.VocabSize) throw new ArgumentException($"vocabulary limit {limit} must be in 1..{model.VocabSize} (the model's vocabulary)");
        for (int i = 0; i < prompts.Count; i++)
        {
            if (prompts[i].Length == 0) throw new ArgumentException($"prompt {i} is empty (prepend a beginning-of-sequence id)");
            foreach (var id in prompts[i])
                if (id < 0 || id >= model.VocabSize) throw new ArgumentException($"prompt {i} holds token id {id}, outside the model's vocabulary of {model.VocabSize}");
        }
        var device = o.ResolveDevice(model);
        var stops = new HashSet<int>(gen.StopTokens ?? []);
        var result = new Generated[prompts.Count];
        var order = Enumerable.Range(0, prompts.Count).OrderByDescending(i => prompts[i].Length).ToArray();
        var progress = new ProgressReporter(task, prompts.Count, o.Progress);
        for (int start = 0; start < order.Length; start += o.BatchSize)
        {
            var idx = order.Skip(start).Take(o.BatchSize).ToArray();
            var rows = idx.Select(i => prompts[i]).ToArray();
            var rngs = idx.Select(i => new Rng(Rng.Derive(sampling.Seed, i))).ToArray();
            var outputs = GenerateBatch(model, rows, rngs, gen.MaxNewTokens, sampling, stops, limit, o.SegmentLength, device);
            for (int k = 0; k < idx.Length; k++) result[idx[k]] = outputs[k];
            progress.Advance(idx.Length);
        }
        return result;
    }

    /// <summary>Text in, text out (prompts encoded without special tokens unless <paramref name="addSpecialTokens"/>; stops at EOS by default).</summary>
    public static string[] GenerateText(ICausalLanguageModel model, ITokenizer tokenizer, IReadOnlyList<string> prompts, GenerationOptions gen, EvalOptions? options = null, bool addSpecialTokens = true)
    {
        if (gen.StopTokens is null && tokenizer.EosId is int eos) gen = gen with { StopTokens = [eos] };
        gen = gen with { VocabLimit = Math.Min(gen.VocabLimit ?? int.MaxValue, Math.Min(tokenizer.VocabSize, model.VocabSize)) };
        var ids = prompts.Select(p => tokenizer.Encode(p, addSpecialTokens)).ToArray();
        return Generate(model, ids, gen, options).Select(g => tokenizer.Decode(g.Tokens, skipSpecialTokens: true)).ToArray();
    }

    static Generated[] GenerateBatch(ICausalLanguageModel model, int[][] rows, Rng[] rngs, int maxNew, SamplingOptions sampling,
        HashSet<int> stops, int vocabLimit, int segment, Device device)
    {
        int b = rows.Length, common = rows.Min(r => r.Length);
        var outTokens = rows.Select(_ => new List<int>()).ToArray();
        var finish = new FinishReason?[b];
        var stopToken = new int?[b];
        if (maxNew == 0) return rows.Select(_ => new Generated([], FinishReason.Length, null)).ToArray();

        float[][] last = new float[b][];
        var prefix = rows.Select(r => r[..common]).ToArray();
        var state = SegmentedForward.Run(model, prefix, segment, device, (off, logits) =>
        {
            if (off + logits.shape[1] == common) last = LastRow(logits);
        }, keepState: true);

        var next = new int[b];   // the token each row feeds next
        // Position p of a row has been fed; logits `last` predict position p + 1.
        void Advance(int p)
        {
            for (int r = 0; r < b; r++)
            {
                if (finish[r] is not null) continue;
                if (p + 1 < rows[r].Length) { next[r] = rows[r][p + 1]; continue; }
                FiniteScores.Require(last[r].AsSpan(0, vocabLimit), $"logits of prompt row {r} at position {p}");
                int tok = Sampler.Sample(last[r].AsSpan(0, vocabLimit), sampling, rngs[r]);
                if (stops.Contains(tok)) { finish[r] = FinishReason.Stop; stopToken[r] = tok; continue; }
                outTokens[r].Add(tok);
                next[r] = tok;
                if (outTokens[r].Count >= maxNew) finish[r] = FinishReason.Length;
            }
        }

        using (no_grad())
        {
            int pos = common - 1;
            Advance(pos);
            while (finish.Any(f => f is null))
            {
                using var scope = NewDisposeScope();
                var x = tensor(next.Select(t => (long)t).ToArray(), [b, 1], ScalarType.Int64).to(device);   // [B, 1]
                var o = model.Forward(x, state: state, returnState: true, mode: ForwardMode.Recurrent);
                var s = o.State ?? throw new InvalidOperationException($"{model.Family} model returned no state although asked for one");
                SegmentedForward.Keep(s);
                last = LastRow(o.Logits);
                SegmentedForward.Replace(ref state, s);
                Advance(++pos);
            }
        }
        state?.Dispose();
        return Enumerable.Range(0, b).Select(r => new Generated(outTokens[r].ToArray(), finish[r]!.Value, stopToken[r])).ToArray();
    }

    /// <summary>Logits of the last position of each row: [B, s, V] → B arrays of V floats.</summary>
    static float[][] LastRow(Tensor logits)
    {
        long b = logits.shape[0], v = logits.shape[2];
        var flat = logits[.., -1, ..].to_type(ScalarType.Float32).cpu().data<float>().ToArray();   // [B, V]
        return Enumerable.Range(0, (int)b).Select(r => flat.AsSpan(r * (int)v, (int)v).ToArray()).ToArray();
    }
}
