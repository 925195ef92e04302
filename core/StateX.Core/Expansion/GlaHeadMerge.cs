using StateX.Gla;
using StateX.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Expansion;

/// <summary>
/// StateX for GLA: merge the H heads of a layer into H' (default one). Each head then spans the full key and value
/// widths divided by H', so the layer's state grows from H·dk·dv to H'·(H·dk/H')·(H·dv/H') — H/H' times larger —
/// with exactly the same parameter shapes (the per-head output-norm weight, shared by the heads, is tiled H/H' times).
/// <c>inherit</c> keeps every projection; <c>reinit</c> draws the layer's attention parameters and its attn_norm
/// afresh, as fla initialises a new model (N(0, initializer_range) for projections, zero biases, unit norms) —
/// the paper's choice, which it found better than inheriting.
/// </summary>
public sealed class GlaHeadMerge : IStateExpander
{
    public bool Handles(ICausalLanguageModel model) => model is GlaForCausalLM;

    public IReadOnlyList<string> ExpandedParameterPrefixes(int layer) =>
        [$"model.layers.{layer}.attn.", $"model.layers.{layer}.attn_norm."];

    public ICausalLanguageModel Expand(ICausalLanguageModel model, IReadOnlyList<int> layers, Rewrite rewrite, ExpansionInit init, long seed)
    {
        var src = (GlaForCausalLM)model;
        if (rewrite is not Rewrite.MergeHeads merge)
            throw new NotSupportedException($"GLA models are expanded by merging heads (merge-heads[:H]); '{rewrite}' applies to Mamba2");
        if (init is not (ExpansionInit.Inherit or ExpansionInit.Reinit))
            throw new NotSupportedException($"init '{init.ToString().ToLowerInvariant()}' is a Mamba2 option; GLA head merging takes inherit or reinit");
        var cfg = src.Config;
        if (cfg.NumKvHeads is { } kv && kv != cfg.NumHeads)
            throw new NotSupportedException($"merging heads of a model with grouped key/value heads (num_kv_heads = {kv}) is not supported");

        var heads = Enumerable.Range(0, cfg.NumHiddenLayers).Select(cfg.HeadsOf).ToArray();
        foreach (var i in layers)
        {
            if (heads[i] % merge.Heads != 0)
                throw new ArgumentException($"cannot merge the {heads[i]} heads of layer {i} into {merge.Heads}: {merge.Heads} does not divide {heads[i]}");
            if (merge.Heads > heads[i])
                throw new ArgumentException($"layer {i} has {heads[i]} heads; merging cannot increase them to {merge.Heads}");
        }
        var newHeads = heads.ToArray();
        foreach (var i in layers) newHeads[i] = merge.Heads;
        // A uniform result is a plain fla model (readable by fla itself); only mixed layers need the StateX key.
        var newCfg = newHeads.Distinct().Count() == 1
            ? cfg with { NumHeads = newHeads[0], LayerNumHeads = null }
            : cfg with { LayerNumHeads = newHeads };

        var srcParams = src.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var device = srcParams.Values.First().device;
        var dtype = srcParams.Values.First().dtype;
        var dst = TorchRandom.Exclusive(() => new GlaForCausalLM(newCfg));
        dst.to(device).to(dtype);
        dst.ChunkSize = src.ChunkSize;
        if (src.training) dst.train(); else dst.eval();

        var selected = layers.ToHashSet();
        using var _ = no_grad();
        var gen = new Generator((ulong)seed, device);
        foreach (var (name, p) in dst.named_parameters())
        {
            var s = srcParams[name];
            int layer = ExpansionAccount.LayerOf(name);
            bool expanded = layer >= 0 && selected.Contains(layer);
            bool fresh = expanded && init == ExpansionInit.Reinit && (name.Contains(".attn.") || name.Contains(".attn_norm."));
            if (fresh)
            {
                if (name.EndsWith("norm.weight") || name.EndsWith("g_norm_swish_gate.weight") || name.EndsWith("g_norm.weight")) p.fill_(1.0);
                else if (name.EndsWith(".bias")) p.zero_();
                else p.copy_(normal(0, newCfg.InitializerRange, p.shape, dtype: ScalarType.Float32, device: device, generator: gen).to_type(p.dtype));
            }
            else if (p.shape.SequenceEqual(s.shape)) p.copy_(s);
            else if (expanded && (name.EndsWith("g_norm_swish_gate.weight") || name.EndsWith("g_norm.weight")))
                p.copy_(s.repeat(p.shape[0] / s.shape[0]));                  // [H·dv/H'] ← [dv] tiled H/H' times
            else throw new InvalidOperationException($"parameter {name} changed shape [{string.Join(", ", s.shape)}] → [{string.Join(", ", p.shape)}] unexpectedly");
        }
        return dst;
    }
}
