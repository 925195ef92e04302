using StateX.Mamba2;
using StateX.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Expansion;

/// <summary>
/// StateX for Mamba2: widen a layer's state from N to r·N. The B and C rows of <c>in_proj</c> (one block of N per
/// group each) and their conv1d channels grow by r; nothing else changes shape, so the layer gains
/// 2·G·N·(r−1)·(d_model + conv_kernel) parameters, plus 2·G·N·(r−1) for each bias it has.
/// Initialisations of the new rows: <c>reinit</c> — fresh B/C rows and conv channels, and fresh dt_bias, A_log and
/// gated-norm weight, as a new layer is initialised (the official code's default); <c>copy</c> — the old rows
/// repeated r times, everything else kept (the official "merge_copy"); <c>zero</c> — old rows kept, new C rows of in_proj
/// and new C conv biases zero, new B rows and new conv weights fresh (C stays 0 in the new dimensions, so the SSM
/// output is unchanged, and every new row still gets a gradient), dt_bias, A_log and
/// the norm fresh as in reinit; <c>preserve</c> — the same rows, everything else kept, so the expanded model computes
/// exactly the original function at step 0 and can still grow into its new state (a control no reference offers).
/// </summary>
public sealed class Mamba2StateWidening : IStateExpander
{
    public bool Handles(ICausalLanguageModel model) => model is Mamba2ForCausalLM;

    public IReadOnlyList<string> ExpandedParameterPrefixes(int layer) =>
        [$"backbone.layers.{layer}.mixer.", $"backbone.layers.{layer}.norm."];

    public ICausalLanguageModel Expand(ICausalLanguageModel model, IReadOnlyList<int> layers, Rewrite rewrite, ExpansionInit init, long seed)
    {
        var src = (Mamba2ForCausalLM)model;
        if (rewrite is not Rewrite.WidenState widen)
            throw new NotSupportedException($"Mamba2 models are expanded by widening the state (state:xR); '{rewrite}' (head merging) applies to GLA");
        if (widen.Ratio < 1) throw new ArgumentException($"the expansion ratio must be at least 1 (got {widen.Ratio})");
        if (init == ExpansionInit.Inherit)
            throw new NotSupportedException("init 'inherit' is the GLA head-merge option; widening a Mamba2 state takes reinit, copy, zero or preserve");
        int r = widen.Ratio;
        var cfg = src.Config;
        var sizes = Enumerable.Range(0, cfg.NumLayers).Select(cfg.StateSizeOf).ToArray();
        foreach (var i in layers) sizes[i] *= r;
        var newCfg = sizes.Distinct().Count() == 1
            ? cfg with { StateSize = sizes[0], LayerStateSizes = null }
            : cfg with { LayerStateSizes = sizes };

        var srcParams = src.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var device = srcParams.Values.First().device;
        var dtype = srcParams.Values.First().dtype;
        // The fresh model supplies the re-initialised tensors; seed it so a request is reproducible.
        var dst = TorchRandom.Seeded(seed, () => new Mamba2ForCausalLM(newCfg));
        dst.to(device).to(dtype);
        if (src.training) dst.train(); else dst.eval();

        var selected = layers.ToHashSet();
        bool keepScalars = init is ExpansionInit.Copy or ExpansionInit.Preserve;
        using var _ = no_grad();
        foreach (var (name, p) in dst.named_parameters())
        {
            var s = srcParams[name];
            int layer = ExpansionAccount.LayerOf(name);
            if (layer < 0 || !selected.Contains(layer)) { p.copy_(s); continue; }
            var mixer = src.backbone.layers[layer].mixer;
            long inner = mixer.Inner, gn = mixer.Groups * mixer.DState;
            string leaf = name[(name.LastIndexOf(".mixer.", StringComparison.Ordinal) + 7)..];
            switch (leaf)
            {
                case "in_proj.weight" or "in_proj.bias":
                    // rows: [z (I), x (I), B (G·N), C (G·N), dt (H)]
                    WidenRows(p, s, 2 * inner, gn, mixer.Groups, r, init);
                    break;
                case "conv1d.weight" or "conv1d.bias":
                    // channels: [x (I), B (G·N), C (G·N)]. New C channels keep fresh conv weights (their input, the
                    // zero in_proj rows, keeps them silent): with zero weights too, the zero in_proj rows would get no gradient.
                    WidenRows(p, s, inner, gn, mixer.Groups, r, init, freshC: leaf == "conv1d.weight");
                    break;
                case "dt_bias" or "A_log" or "norm.weight":
                    if (keepScalars) p.copy_(s);      // else: the fresh model's initialisation stays
                    break;
                default:
                    if (!p.shape.SequenceEqual(s.shape)) throw new InvalidOperationException($"{name} changed shape unexpectedly");
                    p.copy_(s);
                    break;
            }
        }
        return dst;
    }

    /// <summary>
    /// Copies dim 0 of <paramref name="s"/> into <paramref name="p"/>: rows before <paramref name="bStart"/> and after
    /// the B and C blocks unchanged; the B and C blocks ([G, N, ...] each) widened to [G, r·N, ...] per the init
    /// (reinit leaves <paramref name="p"/>'s fresh rows in place).
    /// </summary>
    static void WidenRows(Tensor p, Tensor s, long bStart, long gn, long groups, int r, ExpansionInit init, bool freshC = false)
    {
        long n = gn / groups, newGn = gn * r;
        p[..(int)bStart].copy_(s[..(int)bStart]);
        p[(int)(bStart + 2 * newGn)..].copy_(s[(int)(bStart + 2 * gn)..]);
        if (init == ExpansionInit.Reinit) return;
        for (int blk = 0; blk < 2; blk++)
        {
            var oldBlock = s[(int)(bStart + blk * gn)..(int)(bStart + (blk + 1) * gn)];              // [G·N, ...]
            var newBlock = p[(int)(bStart + blk * newGn)..(int)(bStart + (blk + 1) * newGn)];        // [G·rN, ...]
            var rest = oldBlock.shape.Skip(1).ToArray();
            var old = oldBlock.reshape([groups, n, .. rest]);                                         // [G, N, ...]
            Tensor widened;
            if (init == ExpansionInit.Copy)
                widened = old.repeat([1, r, .. rest.Select(_ => 1L)]);                                 // row j ← old row j mod N
            else if (blk == 0 || freshC)
                // B: old rows, then the fresh model's rows. With new B and new C both zero the new state dimensions
                // would get no gradient at all (each one's gradient is a product with the other); zero C rows alone
                // already keep the function.
                widened = cat([old, newBlock.reshape([groups, r * n, .. rest])[.., (int)n..].clone()], 1);
            else
                widened = cat([old, zeros([groups, (r - 1) * n, .. rest], old.dtype, old.device)], 1);  // C: old rows, then zeros
            newBlock.copy_(widened.reshape(newBlock.shape));
        }
    }
}
