using StateX.Models;
using TorchSharp;

namespace StateX.Expansion;

/// <summary>The result of an expansion: a new model (the input is untouched), what changed, and what the trainer should train.</summary>
public sealed record ExpansionResult(
    ICausalLanguageModel Model,
    ExpansionRequest Request,
    IReadOnlyList<int> ExpandedLayers,
    ExpansionAccount Account,
    IReadOnlyList<string> TrainableParameters);

/// <summary>A family's implementation of the StateX rewrites.</summary>
public interface IStateExpander
{
    /// <summary>True when this expander handles <paramref name="model"/>.</summary>
    bool Handles(ICausalLanguageModel model);
    /// <summary>Builds the expanded copy; layers not in <paramref name="layers"/> keep bit-identical parameters.</summary>
    ICausalLanguageModel Expand(ICausalLanguageModel model, IReadOnlyList<int> layers, Rewrite rewrite, ExpansionInit init, long seed);
    /// <summary>Parameter-name prefixes that belong to layer <paramref name="layer"/>'s mixer and its pre-norm (what "train only the expanded layers" trains).</summary>
    IReadOnlyList<string> ExpandedParameterPrefixes(int layer);
}

/// <summary>
/// StateX (Shen et al., 2025): enlarge the recurrent state of chosen layers of a pretrained model.
/// GLA: merge heads (<see cref="Rewrite.MergeHeads"/>); Mamba2: widen d_state, GSA: multiply the slots (<see cref="Rewrite.WidenState"/>).
/// </summary>
public static class StateExpansion
{
    /// <summary>Every family's expander.</summary>
    public static IReadOnlyList<IStateExpander> Expanders { get; } = new IStateExpander[]
    {
        new GlaHeadMerge(), new Mamba2StateWidening(), new GsaSlotExpansion(),
    };

    /// <summary>
    /// A layer's <paramref name="size"/> (d_state, slots) times the expansion ratio, refused when the product leaves
    /// the int range rather than wrapped round (16 × 268,435,457 would wrap to 16: the "expanded" model would be the
    /// base, silently).
    /// </summary>
    public static int Widened(int layer, string what, int size, int ratio)
    {
        long product = (long)size * ratio;
        return product <= int.MaxValue
            ? (int)product
            : throw new ArgumentException($"layer {layer}: {what} would be {size} × {ratio} = {product}, more than {int.MaxValue}: the expansion ratio is too large");
    }

    public static ExpansionResult Apply(ICausalLanguageModel model, ExpansionRequest request)
    {
        var expander = Expanders.FirstOrDefault(e => e.Handles(model))
            ?? throw new NotSupportedException($"no state expansion is defined for {model.Family} models");
        var layers = request.Layers.Resolve(model.NumLayers);
        var expanded = expander.Expand(model, layers, request.Rewrite, request.Init, request.Seed);
        var prefixes = layers.SelectMany(expander.ExpandedParameterPrefixes).ToArray();
        var trainable = new List<string>();
        foreach (var (name, p) in expanded.Module.named_parameters())
        {
            bool inExpanded = prefixes.Any(pre => name.StartsWith(pre, StringComparison.Ordinal));
            if (request.FreezeOthers) p.requires_grad = inExpanded;
            if (p.requires_grad) trainable.Add(name);
        }
        var account = ExpansionAccount.Compute(model, expanded, layers.ToHashSet());
        return new ExpansionResult(expanded, request, layers, account, trainable);
    }
}
