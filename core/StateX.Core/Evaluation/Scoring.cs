using StateX.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Evaluation;

/// <summary>
/// Per-position scores of one sequence: <c>LogProbs[t]</c> = log p(ids[t+1] | ids[..t]) and <c>Greedy[t]</c> =
/// whether ids[t+1] is the argmax there (length = sequence length − 1).
/// </summary>
public sealed record TokenScores(float[] LogProbs, bool[] Greedy)
{
    /// <summary>Negative log-likelihood at every position (the loss at each position).</summary>
    public float[] Losses => LogProbs.Select(l => -l).ToArray();
}

/// <summary>Log-likelihood of a continuation given a context (as lm-evaluation-harness's loglikelihood).</summary>
/// <param name="LogProb">Sum over the continuation's tokens.</param>
/// <param name="Tokens">Number of continuation tokens.</param>
/// <param name="IsGreedy">Whether greedy decoding from the context would produce exactly the continuation.</param>
public sealed record ContinuationScore(double LogProb, bool IsGreedy, int Tokens);

/// <summary>Teacher-forced scoring, always in segments carrying the state (memory bounded by the segment length).</summary>
public static class Scoring
{
    /// <summary>
    /// Scores every position of every sequence. Sequences are batched by length (longest first) and run in
    /// segments of <see cref="EvalOptions.SegmentLength"/>.
    /// </summary>
    /// <param name="model">Any causal language model.</param>
    /// <param name="sequences">Token ids, any lengths ≥ 1.</param>
    /// <param name="options">Segment length, batch size, device, progress.</param>
    /// <param name="task">Name for progress reports.</param>
    /// <param name="ranges">Per sequence, the prediction positions [From, To) worth scoring (others stay 0/false);
    /// skipping the rest saves the log-softmax over segments that matter not (a passkey answer at the end of 128K tokens).</param>
    public static TokenScores[] ScoreTokens(ICausalLanguageModel model, IReadOnlyList<int[]> sequences, EvalOptions? options = null, string task = "score",
        IReadOnlyList<(int From, int To)>? ranges = null)
    {
        if (ranges is not null && ranges.Count != sequences.Count) throw new ArgumentException($"{ranges.Count} ranges for {sequences.Count} sequences");
        var o = options ?? new EvalOptions();
        o.Validate();
        var device = o.ResolveDevice(model);
        for (int i = 0; i < sequences.Count; i++)
        {
            if (sequences[i].Length == 0) throw new ArgumentException($"sequence {i} is empty");
            foreach (var id in sequences[i])
                if (id < 0 || id >= model.VocabSize) throw new ArgumentException($"sequence {i} holds token id {id}, outside the model's vocabulary of {model.VocabSize}");
        }
        var result = new TokenScores[sequences.Count];
        var order = Enumerable.Range(0, sequences.Count).OrderByDescending(i => sequences[i].Length).ToArray();
        // Progress in tokens fed: a single 256K-token sequence reports every segment.
        var progress = new ProgressReporter(task, sequences.Sum(q => (long)q.Length), o.Progress);
        for (int start = 0; start < order.Length; start += o.BatchSize)
        {
            var idx = order.Skip(start).Take(o.BatchSize).ToArray();
            var rows = idx.Select(i => sequences[i]).ToArray();
            var lp = rows.Select(r => new float[r.Length - 1]).ToArray();
            var gr = rows.Select(r => new bool[r.Length - 1]).ToArray();
            var want = idx.Select(i => ranges is null ? (0, sequences[i].Length - 1) : (Math.Max(0, ranges[i].From), Math.Min(sequences[i].Length - 1, ranges[i].To))).ToArray();
            SegmentedForward.Run(model, rows, o.SegmentLength, device, (segOff, segLogits) =>
            {
                progress.Advance(rows.Sum(r => (long)Math.Clamp(r.Length - segOff, 0, segLogits.shape[1])));
                // Only the part of the segment some row wants: [lo, hi) in absolute positions.
                int lo = Math.Max(segOff, want.Min(w => w.Item1)), hi = (int)Math.Min(segOff + segLogits.shape[1], want.Max(w => w.Item2));
                if (lo >= hi) return;
                var logits = segLogits[.., (lo - segOff)..(hi - segOff), ..];
                int off = lo;
                int b = rows.Length, s = hi - lo;
                var targets = new long[b * s];
                for (int r = 0; r < b; r++)
                    for (int j = 0; j < s; j++)
                        if (off + j + 1 < rows[r].Length) targets[r * s + j] = rows[r][off + j + 1];
                var (picked, best) = Pick(logits, targets);                                                    // [B, s] each
                for (int r = 0; r < b; r++)
                    for (int j = 0; j < s && off + j + 1 < rows[r].Length; j++)
                    {
                        if (off + j < want[r].Item1 || off + j >= want[r].Item2) continue;
                        lp[r][off + j] = picked[r * s + j];
                        gr[r][off + j] = best[r * s + j];
                    }
            });
            for (int k = 0; k < idx.Length; k++) result[idx[k]] = new TokenScores(lp[k], gr[k]);
        }
        return result;
    }

    /// <summary>
    /// log p(target) and whether the target is the argmax, at every position of <paramref name="logits"/> [B, s, V]
    /// for <paramref name="targets"/> [B * s] (row-major); both flat [B * s].
    /// </summary>
    static (float[] LogProbs, bool[] Greedy) Pick(Tensor logits, long[] targets)
    {
        using var scope = NewDisposeScope();
        long b = logits.shape[0], s = logits.shape[1];
        var logp = logits.to_type(ScalarType.Float32).log_softmax(-1);                               // [B, s, V]
        var tgt = tensor(targets, [b, s], ScalarType.Int64).to(logits.device);                        // [B, s]
        var picked = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1).cpu().data<float>().ToArray();     // [B, s]
        FiniteScores.Require(picked, "log-probabilities of the scored tokens");
        var best = logits.argmax(-1).eq(tgt).cpu().data<bool>().ToArray();                            // [B, s]
        return (picked, best);
    }

    /// <summary>
    /// Log-likelihoods of several continuations of one context each (the choices of a multiple-choice item): the
    /// context runs once, in segments; every continuation then branches from a <see cref="ModelState.Clone"/> of the
    /// state after it. Equals <see cref="LogLikelihood"/> on every (context, continuation) pair at a fraction of the
    /// cost when contexts are long (many shots, a passage); a one-token continuation costs no forward pass at all.
    /// Items run one at a time (a batch row's state is only right at its own end, and contexts differ in length).
    /// </summary>
    public static ContinuationScore[][] LogLikelihoodShared(ICausalLanguageModel model, IReadOnlyList<(int[] Context, IReadOnlyList<int[]> Continuations)> requests,
        EvalOptions? options = null, string task = "loglikelihood")
    {
        var o = options ?? new EvalOptions();
        o.Validate();
        var device = o.ResolveDevice(model);
        for (int i = 0; i < requests.Count; i++)
        {
            if (requests[i].Context.Length == 0) throw new ArgumentException($"request {i}: the context is empty (prepend a beginning-of-sequence id)");
            if (requests[i].Continuations.Count == 0) throw new ArgumentException($"request {i}: no continuations");
            if (requests[i].Continuations.Any(c => c.Length == 0)) throw new ArgumentException($"request {i}: a continuation is empty");
            foreach (var id in requests[i].Continuations.Prepend(requests[i].Context).SelectMany(c => c))
                if (id < 0 || id >= model.VocabSize) throw new ArgumentException($"request {i} holds token id {id}, outside the model's vocabulary of {model.VocabSize}");
        }
        var result = new ContinuationScore[requests.Count][];
        var progress = new ProgressReporter(task, requests.Count, o.Progress);
        for (int i = 0; i < requests.Count; i++)
        {
            var (context, continuations) = requests[i];
            // The context's last logits predict every continuation's first token.
            var first = (LogProbs: Array.Empty<float>(), Argmax: -1L);
            using var state = SegmentedForward.Run(model, [context], o.SegmentLength, device, (off, logits) =>
            {
                if (off + logits.shape[1] != context.Length) return;
                var last = logits[0, -1];                                                              // [V]
                first = (last.to_type(ScalarType.Float32).log_softmax(-1).cpu().data<float>().ToArray(), last.argmax().item<long>());
                FiniteScores.Require(first.LogProbs, $"request {i}: log-probabilities after the context");
            }, keepState: true)!;
            result[i] = continuations.Select(c =>
            {
                double sum = first.LogProbs[c[0]];
                bool greedy = first.Argmax == c[0];
                if (c.Length > 1)
                    // Feed all but the last token from a copy of the context's state; position j predicts c[j + 1].
                    SegmentedForward.Run(model, [c[..^1]], o.SegmentLength, device, (off, logits) =>
                    {
                        int s = (int)logits.shape[1];
                        var (lp, best) = Pick(logits, Enumerable.Range(0, s).Select(j => (long)c[off + j + 1]).ToArray());
                        for (int j = 0; j < s; j++) { sum += lp[j]; greedy &= best[j]; }
                    }, state: state.Clone());
                return new ContinuationScore(sum, greedy, c.Length);
            }).ToArray();
            progress.Advance();
        }
        return result;
    }

    /// <summary>Log-likelihood of each continuation given its context (context must not be empty).</summary>
    public static ContinuationScore[] LogLikelihood(ICausalLanguageModel model, IReadOnlyList<(int[] Context, int[] Continuation)> requests, EvalOptions? options = null, string task = "loglikelihood")
    {
        for (int i = 0; i < requests.Count; i++)
        {
            if (requests[i].Context.Length == 0) throw new ArgumentException($"request {i}: the context is empty (prepend a beginning-of-sequence id)");
            if (requests[i].Continuation.Length == 0) throw new ArgumentException($"request {i}: the continuation is empty");
        }
        var scores = ScoreTokens(model, requests.Select(r => r.Context.Concat(r.Continuation).ToArray()).ToArray(), options, task,
            requests.Select(r => (r.Context.Length - 1, r.Context.Length - 1 + r.Continuation.Length)).ToArray());
        return requests.Select((r, i) =>
        {
            int from = r.Context.Length - 1, n = r.Continuation.Length;
            double sum = 0; bool greedy = true;
            for (int t = from; t < from + n; t++) { sum += scores[i].LogProbs[t]; greedy &= scores[i].Greedy[t]; }
            return new ContinuationScore(sum, greedy, n);
        }).ToArray();
    }
}
