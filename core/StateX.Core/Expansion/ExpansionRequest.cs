using System.Globalization;

namespace StateX.Expansion;

/// <summary>
/// How the parameters of an expanded layer start. Every mode except <see cref="Preserve"/> reproduces one
/// <c>drop_mode</c> of the official code (thunlp/StateX), parameter by parameter, as described in
/// docs: statex-official.md §1b (GLA), §1c (Mamba2) and §3 (state at step 0: load first, then expand). Fresh values
/// are drawn from a generator seeded with the request's seed, on the model's device.
/// </summary>
public enum ExpansionInit
{
    /// <summary>
    /// GLA head merge, official <c>drop_mode='merge'</c> (the README's parameter-inheritance ablation;
    /// statex-official.md §1b; thunlp/StateX modeling/gla/layer.py:L261-291, L315-323): q/k/v/g/gk/o projections
    /// (and short convolutions) kept verbatim, the per-head output-norm weight tiled H/H' times, and the layer's
    /// <c>attn_norm</c> reset to ones (modeling/gla/model.py:L197-198, done for every drop_mode). <c>mlp_norm</c> and
    /// <c>mlp</c> stay pretrained. Not function-preserving.
    /// </summary>
    Inherit,
    /// <summary>
    /// The paper's "reinitialization", and the default of both official StateX scripts.
    /// GLA, official <c>drop_mode='gla'</c> (statex-official.md §1b; modeling/gla/model.py:L197-218,
    /// modeling/gla/layer.py:L250-258): the attention is a brand-new module initialised by fla's GatedLinearAttention
    /// constructor — xavier_uniform(gain 2^-2.5) on every nn.Linear weight, zero Linear biases, output-norm weight 1,
    /// short convolutions (if any) nn.Conv1d's default U(±1/√kernel) for weight and bias; <c>attn_norm</c> reset to
    /// ones; <c>mlp_norm</c>, <c>mlp</c> pretrained.
    /// Mamba2, official <c>drop_mode='mamba4'</c> (statex-official.md §1c; modeling/mamba2/layer.py:L209-398):
    /// in_proj z/x/dt rows and conv1d x channels copied; ALL B/C rows of in_proj (the original ones too) PyTorch's
    /// default Linear init U(±1/√d_model) (bias likewise, when in_proj has one); all B/C conv channels nn.Conv1d's
    /// default U(±1/√kernel) for weight and bias; dt_bias = 1, A_log = log(1..H), gated-norm weight = 1;
    /// D, out_proj and the block pre-norm kept.
    /// </summary>
    Reinit,
    /// <summary>
    /// Mamba2 widen, official <c>drop_mode='merge_copy'</c> (statex-official.md §1c; modeling/mamba2/layer.py:L260-286,
    /// L337-363, L369-391): the old B and C rows of in_proj and their conv channels (weight and bias) block-tiled r
    /// times, [B;B;…], [C;C;…]; dt_bias, A_log and the gated norm reset as in <see cref="Reinit"/>. The official code
    /// assumes n_groups = 1; with G &gt; 1 each group's N rows are tiled within that group.
    /// </summary>
    Copy,
    /// <summary>
    /// Mamba2 widen, official <c>drop_mode='merge_zero'</c> (statex-official.md §1c; same lines as merge_copy):
    /// [B_old, 0×(r−1)] and [C_old, 0×(r−1)] (per group) for the in_proj rows and the conv weights and biases alike;
    /// dt_bias, A_log and the gated norm reset as in <see cref="Reinit"/>. Since the new B and C rows are both exactly
    /// zero, the new state dimensions get no gradient (each one's gradient is a product with the other): that is what
    /// the official code does.
    /// </summary>
    Zero,
    /// <summary>
    /// Mamba2 widen, ours (no official counterpart): old rows kept, new C rows of in_proj and new C conv biases zero,
    /// new B rows, new B conv channels and new C conv weights fresh with the same default-init rule as
    /// <see cref="Reinit"/>; everything else (dt_bias, A_log, norm) kept. The expanded model computes the original
    /// function at step 0, and its new state dimensions get gradients.
    /// </summary>
    Preserve,
}

/// <summary>The architectural rewrite applied to the selected layers.</summary>
public abstract record Rewrite
{
    /// <summary>GLA: H heads of dk×dv become <paramref name="Heads"/> heads over the full key/value widths (state H/H' times larger).</summary>
    public sealed record MergeHeads(int Heads = 1) : Rewrite { public override string ToString() => Heads == 1 ? "merge-heads" : $"merge-heads:{Heads}"; }
    /// <summary>Mamba2: d_state N becomes Ratio·N. GSA: the M slots of a layer become Ratio·M (<see cref="GsaSlotExpansion"/>).</summary>
    public sealed record WidenState(int Ratio) : Rewrite { public override string ToString() => $"state:x{Ratio}"; }

    /// <summary><c>merge-heads</c>, <c>merge-heads:H</c>, <c>state:xR</c>.</summary>
    public static Rewrite Parse(string text)
    {
        var t = text.Trim().ToLowerInvariant();
        if (t is "merge-heads" or "merge") return new MergeHeads(1);
        if (t.StartsWith("merge-heads:"))
        {
            if (!int.TryParse(t["merge-heads:".Length..], NumberStyles.Integer, CultureInfo.InvariantCulture, out var h) || h < 1)
                throw new ArgumentException($"rewrite '{text}': the number of heads after merging must be a positive integer");
            return new MergeHeads(h);
        }
        if (t.StartsWith("state:x") || t.StartsWith("state:"))
        {
            var arg = t.StartsWith("state:x") ? t["state:x".Length..] : t["state:".Length..];
            if (!int.TryParse(arg, NumberStyles.Integer, CultureInfo.InvariantCulture, out var r))
                throw new ArgumentException($"rewrite '{text}': expected state:xR with an integer ratio R");
            if (r < 1) throw new ArgumentException($"rewrite '{text}': the expansion ratio must be at least 1 (got {r})");
            return new WidenState(r);
        }
        throw new ArgumentException($"unknown rewrite '{text}': expected merge-heads, merge-heads:H or state:xR");
    }
}

/// <summary>A complete expansion request.</summary>
/// <param name="Layers">Which layers are expanded.</param>
/// <param name="Rewrite">What is done to them.</param>
/// <param name="Init">How their parameters start.</param>
/// <param name="Seed">Seeds the fresh parameters (the same seed gives the same draw).</param>
/// <param name="FreezeOthers">Train only the expanded layers (their mixers and pre-norms).</param>
public sealed record ExpansionRequest(LayerSelection Layers, Rewrite Rewrite, ExpansionInit Init, long Seed = 0, bool FreezeOthers = false)
{
    public static ExpansionInit ParseInit(string text) => text.Trim().ToLowerInvariant() switch
    {
        "inherit" => ExpansionInit.Inherit,
        "reinit" => ExpansionInit.Reinit,
        "copy" => ExpansionInit.Copy,
        "zero" => ExpansionInit.Zero,
        "preserve" => ExpansionInit.Preserve,
        _ => throw new ArgumentException($"unknown init '{text}': expected inherit, reinit, copy, zero or preserve"),
    };
}
