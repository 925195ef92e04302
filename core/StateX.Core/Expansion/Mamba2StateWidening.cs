using StateX.Mamba2;
using StateX.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Expansion;

/// <summary>
/// StateX for Mamba2: widen a layer's state from N to r·N. The B and C rows of <c>in_proj</c> (one block of N per
/// group each) and their conv1d channels grow by r; nothing else changes shape, so the layer gains
/// 2·G·N·(r−1)·(d_model + conv_kernel) parameters, plus 2·G·N·(r−1) for each bias it has.
/// Reproduces the official <c>Mamba2.drop_layer(4, is_merge)</c> (statex-official.md §1c, §3; thunlp/StateX
/// modeling/mamba2/layer.py:L209-398), for any ratio r:
/// <list type="bullet">
/// <item>always: in_proj z/x/dt rows (and biases) and conv1d x channels (weight and bias) copied; D, out_proj and the
/// block pre-norm kept; layers not expanded bit-identical.</item>
/// <item><c>reinit</c> = official <c>'mamba4'</c>: ALL B/C rows of in_proj, the original ones included, at PyTorch's
/// default Linear init U(±1/√d_model) (bias likewise); all B/C conv channels at nn.Conv1d's default U(±1/√kernel)
/// for weight and bias (layer.py:L247-251, L323-330); dt_bias = 1 (L224), A_log = log(1..H) (L228-230), gated-norm
/// weight 1 (L231-233).</item>
/// <item><c>copy</c> = official <c>'merge_copy'</c>: B/C rows and channels (weight and bias) the old ones block-tiled
/// r times, [B;B;…], [C;C;…] (L260-286, L337-391); dt_bias, A_log, norm reset as in reinit. The official code assumes
/// n_groups = 1; for G &gt; 1 the tiling is per group (group g's new block is its own N rows repeated r times).</item>
/// <item><c>zero</c> = official <c>'merge_zero'</c>: [B_old, 0×(r−1)], [C_old, 0×(r−1)] per group, for the in_proj rows
/// and the conv weights and biases alike; dt_bias, A_log, norm reset as in reinit. New B and new C are both exactly 0,
/// so the new state dimensions get no gradient — as in the official code.</item>
/// <item><c>preserve</c> (ours, no official counterpart): old rows kept, new C rows (in_proj rows and conv bias) zero,
/// new B rows, new B conv channels and new C conv weights fresh with the reinit rule; dt_bias, A_log and the norm kept:
/// the expanded model computes exactly the original function at step 0 and its new state dimensions get gradients.</item>
/// </list>
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
        foreach (var i in layers) sizes[i] = StateExpansion.Widened(i, "d_state", sizes[i], r);
        var newCfg = sizes.Distinct().Count() == 1
            ? cfg with { StateSize = sizes[0], LayerStateSizes = null }
            : cfg with { LayerStateSizes = sizes };

        var srcParams = src.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var device = srcParams.Values.First().device;
        var dtype = srcParams.Values.First().dtype;
        Models.ParameterBudget.Check("the expanded model", newCfg.ParameterTerms(), device, dtype);
        // Every tensor of the new model is overwritten below; the constructor's draws do not matter.
        var dst = TorchRandom.Exclusive(() => new Mamba2ForCausalLM(newCfg));
        dst.to(device).to(dtype);
        if (src.training) dst.train(); else dst.eval();

        var selected = layers.ToHashSet();
        using var _ = no_grad();
        foreach (var (name, p) in dst.named_parameters())
        {
            int layer = ExpansionAccount.LayerOf(name);
            if (layer >= 0 && selected.Contains(layer) && name.Contains(".mixer.")) continue;    // widened below
            var s = srcParams[name];
            if (!p.shape.SequenceEqual(s.shape)) throw new InvalidOperationException($"{name} changed shape unexpectedly");
            p.copy_(s);
        }
        var gen = new Generator((ulong)seed, device);
        foreach (var i in layers.Order())
            Widen(src.backbone.layers[i].mixer, dst.backbone.layers[i].mixer, r, init, gen);
        return dst;
    }

    /// <summary>One layer's mixer, parameter by parameter; fresh values drawn in a fixed order from <paramref name="gen"/>.</summary>
    static void Widen(Mamba2Mixer s, Mamba2Mixer p, int r, ExpansionInit init, Generator gen)
    {
        long inner = s.Inner, groups = s.Groups, n = s.DState;
        double linBound = FreshInit.DefaultBound(s.Hidden);                                     // nn.Linear(d_model, …)
        double convBound = FreshInit.DefaultBound(s.conv1d.weight!.shape[1] * s.conv1d.weight.shape[2]);   // depthwise: fan_in = K
        // in_proj rows: [z (I), x (I), B (G·N), C (G·N), dt (H)]; conv channels: [x (I), B (G·N), C (G·N)].
        WidenRows(p.in_proj.weight!, s.in_proj.weight!, 2 * inner, groups, n, r, init, linBound, gen, freshC: false);
        if (s.in_proj.bias is { } ib) WidenRows(p.in_proj.bias!, ib, 2 * inner, groups, n, r, init, linBound, gen, freshC: false);
        // Preserve: new C conv weights fresh (their input, the zero in_proj rows, keeps them silent; with zero weights
        // too, the zero C rows of in_proj would get no gradient), new C conv biases zero (so new C stays exactly 0).
        WidenRows(p.conv1d.weight!, s.conv1d.weight!, inner, groups, n, r, init, convBound, gen, freshC: true);
        if (s.conv1d.bias is { } cb) WidenRows(p.conv1d.bias!, cb, inner, groups, n, r, init, convBound, gen, freshC: false);

        p.D.copy_(s.D);
        p.out_proj.weight!.copy_(s.out_proj.weight!);
        if (s.out_proj.bias is { } ob) p.out_proj.bias!.copy_(ob);
        if (init == ExpansionInit.Preserve)
        {
            p.dt_bias.copy_(s.dt_bias);
            p.A_log.copy_(s.A_log);
            p.norm.weight.copy_(s.norm.weight);
        }
        else
        {
            p.dt_bias.fill_(1.0);                                                               // layer.py:L224
            p.A_log.copy_(arange(1, s.Heads + 1, ScalarType.Float32, p.A_log.device).log());    // layer.py:L228-230
            p.norm.weight.fill_(1.0);                                                           // layer.py:L231-233
        }
        var known = new[] { "in_proj.weight", "in_proj.bias", "conv1d.weight", "conv1d.bias", "dt_bias", "A_log", "D", "norm.weight", "out_proj.weight", "out_proj.bias" };
        foreach (var (name, _) in p.named_parameters())
            if (!known.Contains(name)) throw new InvalidOperationException($"widening: no rule for mixer parameter {name}");
    }

    /// <summary>
    /// Fills dim 0 of <paramref name="p"/> from <paramref name="s"/>: rows before <paramref name="bStart"/> and after
    /// the B and C blocks copied; the B and C blocks ([G, N, ...] each) widened to [G, r·N, ...] per the init.
    /// Fresh rows are U(±<paramref name="bound"/>).
    /// </summary>
    static void WidenRows(Tensor p, Tensor s, long bStart, long groups, long n, int r, ExpansionInit init, double bound, Generator gen, bool freshC)
    {
        long gn = groups * n, newGn = gn * r;
        p[..(int)bStart].copy_(s[..(int)bStart]);
        p[(int)(bStart + 2 * newGn)..].copy_(s[(int)(bStart + 2 * gn)..]);
        if (init == ExpansionInit.Reinit)
        {
            FreshInit.FillUniform(p[(int)bStart..(int)(bStart + 2 * newGn)], bound, gen);       // all B and C rows
            return;
        }
        for (int blk = 0; blk < 2; blk++)
        {
            var oldBlock = s[(int)(bStart + blk * gn)..(int)(bStart + (blk + 1) * gn)];              // [G·N, ...]
            var newBlock = p[(int)(bStart + blk * newGn)..(int)(bStart + (blk + 1) * newGn)];        // [G·rN, ...]
            var rest = oldBlock.shape.Skip(1).ToArray();
            var old = oldBlock.reshape([groups, n, .. rest]);                                         // [G, N, ...]
            long[] extraShape = [groups, (r - 1) * n, .. rest];
            Tensor widened = init switch
            {
                ExpansionInit.Copy => old.repeat([1, r, .. rest.Select(_ => 1L)]),                   // row j ← old row j mod N, per group
                ExpansionInit.Zero => cat([old, zeros(extraShape, old.dtype, old.device)], 1),
                // Preserve: B (and C conv weights) old then fresh; C old then zero.
                _ when blk == 0 || freshC => cat([old, FreshInit.Uniform(extraShape, bound, gen, old.device).to_type(old.dtype)], 1),
                _ => cat([old, zeros(extraShape, old.dtype, old.device)], 1),
            };
            newBlock.copy_(widened.reshape(newBlock.shape));
        }
    }
}
