using StateX.Models;
using StateX.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Evaluation;

/// <summary>
/// Runs rows of token ids through a model in segments of a fixed length, carrying the recurrent state from one
/// segment to the next, so memory is bounded by the segment length however long the rows are. Rows of unequal
/// length are right-padded (with id 0): positions after a row's end never influence its earlier positions.
/// </summary>
internal static class SegmentedForward
{
    /// <summary>
    /// Calls <paramref name="onSegment"/>(offset, logits [B, s, V]) for every segment of <paramref name="rows"/>
    /// (inside a dispose scope: copy out what you need). Returns the final state when <paramref name="keepState"/>
    /// (the caller disposes it), else null.
    /// </summary>
    public static ModelState? Run(ICausalLanguageModel model, IReadOnlyList<int[]> rows, int segment, Device device,
        Action<int, Tensor> onSegment, bool keepState = false, ModelState? state = null)
    {
        int total = rows.Max(r => r.Length);
        // Without it, glibc's heap grows segment after segment on CPU (see HostMemory).
        var memory = device.type == DeviceType.CPU && total > segment ? new HostMemoryGuard() : null;
        using var _ = no_grad();
        for (int off = 0; off < total; off += segment)
        {
            int s = Math.Min(segment, total - off);
            var ids = new long[rows.Count * s];
            for (int b = 0; b < rows.Count; b++)
                for (int j = 0; j < s && off + j < rows[b].Length; j++) ids[b * s + j] = rows[b][off + j];
            using (NewDisposeScope())
            {
                var x = tensor(ids, [rows.Count, s], ScalarType.Int64).to(device);   // [B, s]
                var o = model.Forward(x, state: state, returnState: true, mode: ForwardMode.Chunked);
                var next = o.State ?? throw new InvalidOperationException($"{model.Family} model returned no state although asked for one");
                Keep(next);
                onSegment(off, o.Logits);                                             // [B, s, V]
                Replace(ref state, next);
            }
            memory?.AfterStep();
        }
        // The next run measures its own baseline: start it from a trimmed heap, or baselines ratchet up run after run.
        if (memory is not null) HostMemory.Trim();
        if (keepState) return state;
        state?.Dispose();
        return null;
    }

    /// <summary>Moves the tensors of a state out of the current dispose scope.</summary>
    public static void Keep(ModelState s)
    {
        foreach (var l in s.Layers) foreach (var t in l.Tensors) t.MoveToOuterDisposeScope();
    }

    /// <summary>Disposes the tensors of <paramref name="old"/> that <paramref name="next"/> does not reuse (a model may update its state in place).</summary>
    public static void Replace(ref ModelState? old, ModelState next)
    {
        if (old is not null && !ReferenceEquals(old, next))
        {
            var live = new HashSet<IntPtr>(next.Layers.SelectMany(l => l.Tensors).Select(t => t.Handle));
            foreach (var t in old.Layers.SelectMany(l => l.Tensors))
                if (!t.IsInvalid && !live.Contains(t.Handle)) t.Dispose();
        }
        old = next;
    }
}
