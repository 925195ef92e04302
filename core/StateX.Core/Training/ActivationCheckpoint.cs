using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Training;

/// <summary>
/// Activation checkpointing (Chen et al. 2016), the reentrant form torch.utils.checkpoint uses: the forward pass runs
/// without recording a graph and keeps only its input; the backward pass runs the function again with a graph and
/// back-propagates through it, which also accumulates the gradients of the parameters the function closes over.
/// The function must be deterministic (our blocks have no dropout), or the recomputation would differ.
/// </summary>
public static class ActivationCheckpoint
{
    /// <summary>y = f(x) with f's activations dropped after the forward pass and recomputed for the backward pass.</summary>
    /// <param name="f">a pure function of x and of parameters it closes over</param>
    /// <param name="x">input; must be part of the graph (requires_grad) for gradients to flow back through it</param>
    public static Tensor Apply(Func<Tensor, Tensor> f, Tensor x) => Recompute.apply(f, x)[0];

    sealed class Recompute : autograd.MultiTensorFunction<Recompute>
    {
        public override string Name => "StateXActivationCheckpoint";

        public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var f = (Func<Tensor, Tensor>)vars[0];
            var x = (Tensor)vars[1];
            ctx.save_for_backward([x]);
            ctx.save_data("f", f);
            using var _ = no_grad();
            return [f(x)];
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> gradOutputs)
        {
            var f = (Func<Tensor, Tensor>)ctx.get_data("f");
            var x = ctx.get_saved_variables()[0];
            using var grad = enable_grad();
            using var scope = NewDisposeScope();
            var xr = x.detach().requires_grad_(x.requires_grad);
            var y = f(xr);
            autograd.backward([y], [gradOutputs[0]]);
            // One gradient per argument of apply: none for the function, then x's.
            return [null!, xr.requires_grad ? xr.grad!.MoveToOuterDisposeScope() : null!];
        }
    }
}
