using StateX.Models;
using static TorchSharp.torch;

namespace StateX.Training;

/// <summary>Finds the first NaN/Inf tensor, to say where a diverged run went wrong.</summary>
static class NonFinite
{
    static bool IsFinite(Tensor t) { using var f = t.isfinite().all(); return f.item<bool>(); }

    public static string? FirstInParameters(ICausalLanguageModel model)
    {
        using var _ = no_grad();
        foreach (var (name, p) in model.Module.named_parameters())
            if (!IsFinite(p)) return $"parameter {name}";
        return null;
    }

    public static string? FirstInGradients(AdamW opt)
    {
        foreach (var e in opt.Parameters)
            if (e.Parameter.grad is { } g && !IsFinite(g)) return $"gradient of {e.Name}";
        return null;
    }

    /// <summary>Re-runs the forward pass stage by stage and names the first stage whose output is not finite.</summary>
    public static string? FirstInForward(TrainingStack stack, Tensor inputs)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var h = stack.Embed(inputs);
        if (!IsFinite(h)) return "embedding output";
        for (int i = 0; i < stack.Blocks.Count; i++)
        {
            h = stack.Blocks[i](h);
            if (!IsFinite(h)) return $"output of block {i} (layers.{i})";
        }
        var logits = stack.Head(stack.Norm(h));
        return IsFinite(logits) ? null : "logits (after the final norm and LM head)";
    }
}
