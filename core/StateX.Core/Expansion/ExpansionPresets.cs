namespace StateX.Expansion;

/// <summary>A named, documented expansion recipe.</summary>
public sealed record ExpansionPreset(string Name, string Family, LayerSelection Layers, Rewrite Rewrite, ExpansionInit Init, string Source)
{
    public ExpansionRequest ToRequest(long seed = 0, bool freezeOthers = false) => new(Layers, Rewrite, Init, seed, freezeOthers);
}

/// <summary>
/// The StateX paper's recipes (Shen et al., 2025, arXiv:2509.22630; official code github.com/thunlp/StateX), as read
/// in statex-official.md §1a-§1c. Layer choice: the official code expands layers 0, p, 2p, … for <c>drop_prop = p</c>
/// (model.py:L196 / L354), which is <see cref="LayerSelection.Every"/>. GLA: the shipped gla_StateX.sh uses
/// <c>drop_prop=6</c>, <c>drop_mode="gla"</c> — every head of the layer merged into one, with a freshly initialised
/// attention (our <c>reinit</c>; <c>"merge"</c>, our <c>inherit</c>, is the README's inheritance ablation). Mamba2:
/// d_state 128 → 512 (×4) with <c>drop_mode="mamba4"</c> (our <c>reinit</c>). The shipped mamba2_StateX.sh uses
/// <c>drop_prop=1</c> (all 48 layers, state ×4, about +5.6% parameters), which contradicts the paper's "+~50% state,
/// &lt;1% parameters"; <c>mamba2-1.3b</c> follows the paper (drop_prop=6: 8 of 48 layers, state ×1.5, +0.94%) and
/// <c>mamba2-1.3b-script</c> the script (statex-official.md §1a, "Caution on drop_prop=1").
/// </summary>
public static class ExpansionPresets
{
    public static IReadOnlyList<ExpansionPreset> All { get; } =
    [
        new("gla-1.3b", "gla", new LayerSelection.Every(6), new Rewrite.MergeHeads(1), ExpansionInit.Reinit,
            "StateX paper / official scripts/gla_StateX.sh: drop_prop=6 (layers 0, 6, 12, 18 of 24), drop_mode=\"gla\" (fresh 1-head attention; \"merge\" is the inheritance ablation) — statex-official.md §1a, §1b"),
        new("mamba2-1.3b", "mamba2", new LayerSelection.Every(6), new Rewrite.WidenState(4), ExpansionInit.Reinit,
            "StateX paper (+~50% state, <1% parameters): drop_prop=6 (8 of 48 layers), d_state 128 → 512, drop_mode=\"mamba4\" — statex-official.md §1a, §1c"),
        new("mamba2-1.3b-script", "mamba2", new LayerSelection.All(), new Rewrite.WidenState(4), ExpansionInit.Reinit,
            "official scripts/mamba2_StateX.sh as shipped: drop_prop=1 (all 48 layers), d_state 128 → 512, drop_mode=\"mamba4\" (state ×4, +~5.6% parameters; not the paper's configuration) — statex-official.md §1a, §1c"),
    ];

    public static ExpansionPreset Get(string name) =>
        All.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown preset '{name}'; known: {string.Join(", ", All.Select(p => p.Name))}");
}
