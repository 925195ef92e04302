using StateX.Autograd;
using StateX.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Training;

/// <summary>
/// Activation checkpointing (Chen et al. 2016), the reentrant form torch.utils.checkpoint uses: the forward pass runs
/// without recording a graph and keeps only its inputs; the backward pass runs the function again with a graph and
/// back-propagates through it, which also accumulates the gradients of the parameters the function closes over.
/// The function must be deterministic (our blocks have no dropout), or the recomputation would differ.
/// </summary>
public static class ActivationCheckpoint
{
    /// <summary>y = f(x) with f's activations dropped after the forward pass and recomputed for the backward pass.</summary>
    /// <param name="f">a pure function of x and of parameters it closes over</param>
    /// <param name="x">input; must be part of the graph (requires_grad) for gradients to flow back through it</param>
    /// <param name="relay">shared by the checkpointed calls of one backward pass (see <see cref="GradientRelay"/>); null: none</param>
    public static Tensor Apply(Func<Tensor, Tensor> f, Tensor x, GradientRelay? relay = null) => Apply(xs => [f(xs[0])], [x], relay)[0];

    /// <summary>
    /// outputs = f(inputs) for several tensors in and out (a block's input and carried state in, its output and new
    /// state out), with f's activations dropped after the forward pass and recomputed for the backward pass.
    /// An output nobody uses (the state after the last segment) contributes nothing to the backward pass.
    /// </summary>
    /// <param name="f">a pure function of its inputs and of parameters it closes over; returns at least one tensor</param>
    /// <param name="inputs">at least one tensor; gradients flow back to those that require them</param>
    /// <param name="relay">shared by the checkpointed calls of one backward pass (see <see cref="GradientRelay"/>); null: none</param>
    public static IReadOnlyList<Tensor> Apply(Func<IReadOnlyList<Tensor>, IReadOnlyList<Tensor>> f, IReadOnlyList<Tensor> inputs, GradientRelay? relay = null)
    {
        if (inputs.Count == 0) throw new ArgumentException("a checkpointed function needs at least one input tensor");
        // apply registers only arguments that are tensors themselves (not lists of them) as inputs of the graph node.
        var args = new object[inputs.Count + 2];
        args[0] = f;
        args[1] = relay ?? new GradientRelay();
        for (int i = 0; i < inputs.Count; i++) args[i + 2] = inputs[i];
        // apply also makes an uninitialised copy of every output (TorchSharp's cache for filling in undefined grads,
        // which this function does not use, see forward): on CUDA, memory as large as the outputs. Made in a scope of
        // its own, the copies go as soon as apply returns, instead of living until the caller's scope ends, which
        // for a checkpointed stack is after the forward pass, when the copies of all blocks' outputs exist at once.
        using var scope = NewDisposeScope();
        var outputs = Recompute.apply(args);
        foreach (var o in outputs) o.MoveToOuterDisposeScope();
        return outputs;
    }

    sealed class Recompute : autograd.MultiTensorFunction<Recompute>
    {
        public override string Name => "StateXActivationCheckpoint";

        public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var f = (Func<IReadOnlyList<Tensor>, IReadOnlyList<Tensor>>)vars[0];
            var inputs = vars.Skip(2).Cast<Tensor>().ToArray();
            ctx.save_for_backward([.. inputs]);
            ctx.save_data("f", f);
            ctx.save_data("relay", vars[1]);
            // Leave the grads of unused outputs undefined: TorchSharp would otherwise fill them from its cache of the
            // outputs, which lives in the caller's dispose scope and is gone by the time the backward pass runs.
            ctx.set_materialize_grads(false);
            using var _ = no_grad();
            var outputs = f(inputs);
            if (outputs.Count == 0) throw new InvalidOperationException("a checkpointed function returned no tensor");
            return [.. outputs];
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> gradOutputs)
        {
            var f = (Func<IReadOnlyList<Tensor>, IReadOnlyList<Tensor>>)ctx.get_data("f");
            var relay = (GradientRelay)ctx.get_data("relay");
            using var grad = enable_grad();
            // Every handle made here dies with this scope, the unpacked saved inputs included: left to the caller's
            // scope (the training step's), each (block, segment) would keep its tensors until the whole backward pass
            // is over, several times a block input per checkpoint (seen as Mamba2 1.3B running out of memory at 64K).
            using var scope = NewDisposeScope();
            var saved = ctx.get_saved_variables();
            var inputs = saved.Select(x => x.detach().requires_grad_(x.requires_grad)).ToArray();
            var outputs = f(inputs);
            // Unused outputs (the state after the last segment) have undefined grads; an output the recomputation left
            // outside the graph (no input or parameter reaches it) has nowhere to send one.
            var live = outputs.Zip(gradOutputs)
                .Where(p => p.First.requires_grad && p.Second is { IsInvalid: false })
                .ToArray();
            if (live.Length > 0) autograd.backward(live.Select(p => p.First).ToList(), live.Select(p => p.Second).ToList());
            // The incoming gradients are spent: drop our handles on them now (the engine holds its own).
            foreach (var g in gradOutputs) g?.Dispose();
            // One gradient per argument of apply: none for the function and the relay, then each input's (null when
            // it has none). The engine takes its own reference when this returns; the relay drops ours later.
            var grads = new List<Tensor> { null!, null! };
            foreach (var x in inputs)
                grads.Add(x.requires_grad && x.grad is { } g ? g.DetachFromDisposeScope() : null!);
            relay.Pass(grads);
            return grads;
        }
    }
}
