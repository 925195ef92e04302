using StateX.Autograd;
using StateX.Models;
using static TorchSharp.torch;

namespace StateX.Training;

/// <summary>
/// Activation checkpointing cut along the sequence as well as along depth: each block runs over the sequence in
/// segments of S tokens, carrying its recurrent state from segment to segment, and each (block, segment) is
/// checkpointed on its own. The backward pass then recomputes one block over S tokens at a time, so the memory of a
/// recomputation is bounded by S instead of T (the chunked scans materialise per-chunk tensors for the whole input
/// at once). What stays stored is every block's input, as with per-block checkpointing, plus each segment's
/// carried state. Gradients reach earlier segments through the carried states: this is exact back-propagation
/// through the whole sequence, not truncated.
/// </summary>
static class SegmentedCheckpoint
{
    /// <param name="blocks">the stack's blocks in their stateful form</param>
    /// <param name="h">[B, T, D] the embedded sequence; must require grad for gradients to reach the blocks</param>
    /// <param name="segment">S, tokens per segment (the last segment may be shorter)</param>
    /// <param name="relay">releases the gradients the checkpoints hand back (one per backward pass)</param>
    /// <returns>[B, T, D] the output of the last block</returns>
    public static Tensor Run(IReadOnlyList<SegmentBlock> blocks, Tensor h, long segment, GradientRelay? relay = null)
    {
        // Segment by segment through all blocks: a block's output piece feeds the next block directly, so only the
        // last block's pieces are ever concatenated.
        var states = new IReadOnlyList<Tensor>[blocks.Count];
        for (int i = 0; i < blocks.Count; i++) states[i] = [];
        var pieces = new List<Tensor>();
        // split, not narrow: its backward pass assembles the input's gradient once, where each narrow would add a
        // zero-padded [B, T, D] gradient of its own.
        foreach (var segmentInput in h.split(segment, 1))
        {
            var x = segmentInput;                                                               // [B, S, D]
            for (int i = 0; i < blocks.Count; i++)
            {
                var outputs = ActivationCheckpoint.Apply(blocks[i].OnTensors, [x, .. states[i]], relay); // [y [B, S, D], state...]
                x = outputs[0];
                states[i] = outputs.Skip(1).ToArray();
            }
            pieces.Add(x);
        }
        var y = cat(pieces, 1);                                                                 // [B, T, D]
        // cat's backward needs none of its inputs; dropping them now halves what the last block's output holds.
        foreach (var p in pieces) p.Dispose();
        return y;
    }
}
