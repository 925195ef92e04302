namespace StateX.Expansion;

/// <summary>A named, documented expansion recipe.</summary>
public sealed record ExpansionPreset(string Name, string Family, LayerSelection Layers, Rewrite Rewrite, ExpansionInit Init, string Source)
{
    public ExpansionRequest ToRequest(long seed = 0, bool freezeOthers = false) => new(Layers, Rewrite, Init, seed, freezeOthers);
}

/// <summary>
/// The StateX paper's recipes (Shen et al., 2025, arXiv:2509.22630; official code github.com/THUNLP/StateX).
/// Layer choice: the official scripts expand one layer in every <c>drop_prop</c> layers, starting at layer 0, and
/// ship <c>drop_prop=6</c> for both families; the paper's ablation over the proportion of expanded layers is
/// where that value comes from. GLA: <c>drop_mode=merge</c> — all heads of the layer merged into one, with the
/// layer's parameters reinitialised (the paper reports reinitialisation beating inheritance). Mamba2: the state
/// size 128 → 512 (×4) in the expanded layers, new parameters reinitialised as the official code does
/// (<c>merge_copy</c> is its inheritance ablation, our <c>copy</c>).
/// </summary>
public static class ExpansionPresets
{
    public static IReadOnlyList<ExpansionPreset> All { get; } =
    [
        new("gla-1.3b", "gla", new LayerSelection.Every(6), new Rewrite.MergeHeads(1), ExpansionInit.Reinit,
            "StateX paper / official scripts/gla_StateX.sh: drop_prop=6 (layers 0, 6, 12, 18 of 24), drop_mode=merge, reinitialised"),
        new("mamba2-1.3b", "mamba2", new LayerSelection.Every(6), new Rewrite.WidenState(4), ExpansionInit.Reinit,
            "StateX paper / official scripts/mamba2_StateX.sh: drop_prop=6 (8 of 48 layers), d_state 128 → 512, reinitialised"),
    ];

    public static ExpansionPreset Get(string name) =>
        All.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown preset '{name}'; known: {string.Join(", ", All.Select(p => p.Name))}");
}
