using StateX.Autograd;
using StateX.Models;
using static TorchSharp.torch;

namespace StateX.Training;

/// <summary>Next-token cross-entropy through a <see cref="TrainingStack"/>, with optional activation checkpointing.</summary>
public static class TrainingLoss
{
    /// <summary>Mean cross-entropy of predicting <paramref name="targets"/> from <paramref name="inputs"/> (targets -100 are ignored).</summary>
    /// <param name="stack">the model's embedding, blocks and head as separate pieces (<see cref="TrainingStack"/>)</param>
    /// <param name="inputs">[B, T] int64</param>
    /// <param name="targets">[B, T] int64: targets[b, t] is the token after inputs[b, t]</param>
    /// <param name="checkpoint">recompute blocks and logits in the backward pass</param>
    /// <param name="lossChunk">tokens per sequence whose logits exist at once</param>
    /// <param name="segment">with <paramref name="checkpoint"/>: run each block over the sequence in segments of this
    /// many tokens, carrying its state, each (block, segment) checkpointed (<see cref="SegmentedCheckpoint"/>);
    /// 0 = whole sequences</param>
    public static Tensor Compute(TrainingStack stack, Tensor inputs, Tensor targets, bool checkpoint, int lossChunk, int segment = 0)
    {
        // A chunk of 0 would never advance the loop below.
        if (lossChunk < 1) throw new ArgumentException($"loss chunk must be at least 1 token (got {lossChunk})");
        if (segment < 0) throw new ArgumentException($"checkpoint segment must be positive or 0 for whole sequences (got {segment})");
        if (segment > 0 && !checkpoint) throw new ArgumentException("a checkpoint segment length needs activation checkpointing");
        if (segment > 0 && stack.SegmentBlocks is null) throw new ArgumentException("this model's training stack has no stateful blocks to run in segments");
        using var scope = NewDisposeScope();
        var h = stack.Embed(inputs);                                                   // [B, T, D]
        // A checkpointed block only passes gradients on when its input is in the graph; with frozen embeddings it
        // would not be, and the blocks' own parameters would get no gradient.
        if (checkpoint && !h.requires_grad && is_grad_enabled()) h = h.detach().requires_grad_(true);
        long T = h.shape[1];
        // One relay for every checkpoint of this loss: the backward pass calls them one after another. Not disposed
        // here: the backward pass comes after this returns; the last gradient it holds goes with the relay.
        var relay = checkpoint ? new GradientRelay() : null;
        if (segment > 0 && segment < T)
            h = SegmentedCheckpoint.Run(stack.SegmentBlocks!, h, segment, relay);          // [B, T, D]
        else
            foreach (var block in stack.Blocks)
                h = checkpoint ? ActivationCheckpoint.Apply(block, h, relay) : block(h);   // [B, T, D]
        var total = zeros(1, dtype: ScalarType.Float32, device: h.device).squeeze();
        for (long s = 0; s < T; s += lossChunk)
        {
            long e = Math.Min(T, s + lossChunk);
            var slice = h.narrow(1, s, e - s);                                                   // [B, t, D]
            var tgt = targets.narrow(1, s, e - s).reshape(-1);                         // [B·t]
            // The checkpointed loss re-reads its targets in the backward pass, after this scope has ended: they
            // must live in the caller's scope (the training step's), which ends after backward.
            if (checkpoint) tgt.MoveToOuterDisposeScope();
            Tensor SumOfLosses(Tensor x)
            {
                var logits = stack.Head(stack.Norm(x));                               // [B, t, V]
                return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]).to_type(ScalarType.Float32), tgt,
                    ignore_index: -100, reduction: nn.Reduction.Sum);
            }
            total = total + (checkpoint ? ActivationCheckpoint.Apply(SumOfLosses, slice, relay) : SumOfLosses(slice));
        }
        var count = targets.ne(-100).sum().to_type(ScalarType.Float32).clamp_min(1);
        return (total / count).MoveToOuterDisposeScope();
    }
}
