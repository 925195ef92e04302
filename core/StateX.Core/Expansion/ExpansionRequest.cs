using System.Globalization;

namespace StateX.Expansion;

/// <summary>How the parameters of an expanded layer start.</summary>
public enum ExpansionInit
{
    /// <summary>GLA merge: keep every projection; the per-head output-norm weight is tiled.</summary>
    Inherit,
    /// <summary>Fresh parameters, initialised as the reference initialises a new layer (the paper's choice).</summary>
    Reinit,
    /// <summary>Mamba2 widen: the old B/C rows (and conv channels) repeated r times.</summary>
    Copy,
    /// <summary>Mamba2 widen: old rows kept, new C rows zero, new B rows fresh; dt_bias, A_log and the norm reinitialised as in reinit.</summary>
    Zero,
    /// <summary>Mamba2 widen: old rows kept, new C rows zero, new B rows fresh, everything else kept: the expanded model computes the original function at step 0, and its new state dimensions get gradients.</summary>
    Preserve,
}

/// <summary>The architectural rewrite applied to the selected layers.</summary>
public abstract record Rewrite
{
    /// <summary>GLA: H heads of dk×dv become <paramref name="Heads"/> heads over the full key/value widths (state H/H' times larger).</summary>
    public sealed record MergeHeads(int Heads = 1) : Rewrite { public override string ToString() => Heads == 1 ? "merge-heads" : $"merge-heads:{Heads}"; }
    /// <summary>Mamba2: d_state N becomes Ratio·N.</summary>
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
