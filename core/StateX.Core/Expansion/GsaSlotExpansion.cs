using StateX.Gsa;
using StateX.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Expansion;

/// <summary>
/// StateX for GSA (ours; the StateX paper has no GSA recipe): multiply the slots of a layer from M to r·M
/// (<see cref="Rewrite.WidenState"/>, <c>state:xR</c>). Only <c>f_proj</c> depends on M (H_kv·M rows), so the layer
/// gains H_kv·(r−1)·M·hidden parameters while its state H·M·(dk + dv) grows exactly r-fold (conv windows aside).
/// Every other parameter, and every other layer, is copied bit for bit.
/// <list type="bullet">
/// <item><c>reinit</c> (fresh slots): the old M rows of each kv head kept, the (r−1)·M new rows drawn N(0,
/// initializer_range), fla's _init_weights for an nn.Linear. Not function-preserving: every new slot takes part in the
/// read-out softmax with weight exp(ok_new)/Σ &gt; 0 for any finite row (ok_new = 0 even for a slot that never writes),
/// which takes probability mass from the old slots.</item>
/// <item><c>copy</c> (copied slots): each kv head's M rows tiled r times. This IS function-preserving, exactly: the r
/// copies of slot m have identical gates, so identical Hk columns and Hv rows and identical scores ok_m; the softmax
/// over r·M scores gives each copy exp(ok_m)/(r·Σ), and the r copies' read-outs sum back to the original
/// exp(ok_m)/Σ · Hv_m. The price: the copies stay exact duplicates under any gradient step (the function is symmetric
/// in them, so they receive identical gradients), and training alone never makes them differ.</item>
/// </list>
/// No other init applies: <c>preserve</c> is <c>copy</c> here (the only function-preserving choice, as above),
/// <c>zero</c> and <c>inherit</c> have no meaning for slots.
/// </summary>
public sealed class GsaSlotExpansion : IStateExpander
{
    public bool Handles(ICausalLanguageModel model) => model is GsaForCausalLM;

    public IReadOnlyList<string> ExpandedParameterPrefixes(int layer) =>
        [$"model.layers.{layer}.attn.", $"model.layers.{layer}.attn_norm."];

    public ICausalLanguageModel Expand(ICausalLanguageModel model, IReadOnlyList<int> layers, Rewrite rewrite, ExpansionInit init, long seed)
    {
        var src = (GsaForCausalLM)model;
        if (rewrite is not Rewrite.WidenState widen)
            throw new NotSupportedException($"GSA models are expanded by multiplying their slots (state:xR); '{rewrite}' (head merging) applies to GLA");
        if (widen.Ratio < 1) throw new ArgumentException($"the expansion ratio must be at least 1 (got {widen.Ratio})");
        if (init is not (ExpansionInit.Reinit or ExpansionInit.Copy or ExpansionInit.Preserve))
            throw new NotSupportedException($"init '{init.ToString().ToLowerInvariant()}' does not apply to GSA slots; expected reinit (fresh slots) or copy (tiled slots, function-preserving; preserve means the same)");
        int r = widen.Ratio;
        var cfg = src.Config;
        var slots = Enumerable.Range(0, cfg.NumHiddenLayers).Select(cfg.SlotsOf).ToArray();
        foreach (var i in layers) slots[i] = StateExpansion.Widened(i, "num_slots", slots[i], r);
        // A uniform result is a plain fla model (readable by fla itself); only mixed layers need the StateX key.
        var newCfg = slots.Distinct().Count() == 1
            ? cfg with { NumSlots = slots[0], LayerNumSlots = null }
            : cfg with { LayerNumSlots = slots };

        var srcParams = src.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var device = srcParams.Values.First().device;
        var dtype = srcParams.Values.First().dtype;
        Models.ParameterBudget.Check("the expanded model", newCfg.ParameterTerms(), device, dtype);
        // Every tensor of the new model is overwritten below; the constructor's draws do not matter.
        var dst = TorchRandom.Exclusive(() => new GsaForCausalLM(newCfg));
        dst.to(device).to(dtype);
        if (src.training) dst.train(); else dst.eval();
        dst.Backend = src.Backend;

        var selected = layers.ToHashSet();
        using var _ = no_grad();
        foreach (var (name, p) in dst.named_parameters())
        {
            if (selected.Contains(ExpansionAccount.LayerOf(name)) && name.EndsWith(".attn.f_proj.weight")) continue;   // widened below
            var s = srcParams[name];
            if (!p.shape.SequenceEqual(s.shape)) throw new InvalidOperationException($"{name} changed shape unexpectedly");
            p.copy_(s);
        }
        var gen = new Generator((ulong)seed, device);
        foreach (var i in layers.Order())
        {
            var from = src.model.layers[i].attn;
            var to = dst.model.layers[i].attn;
            long kv = from.NumKvHeads, m = from.NumSlots, hidden = cfg.HiddenSize;
            var old = from.f_proj.weight!.reshape(kv, m, hidden);                                // rows are (h m), fla's rearrange
            var widened = init == ExpansionInit.Reinit
                ? cat([old, randn([kv, (r - 1) * m, hidden], dtype: ScalarType.Float32, device: device, generator: gen).mul_(cfg.InitializerRange).to_type(old.dtype)], 1)
                : old.repeat(1, r, 1);                                                           // copy: slot j ← old slot j mod M, per kv head
            to.f_proj.weight!.copy_(widened.reshape(kv * r * m, hidden));
        }
        return dst;
    }
}
