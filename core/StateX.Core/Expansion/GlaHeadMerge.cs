using StateX.Gla;
using StateX.Layers;
using StateX.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Expansion;

/// <summary>
/// StateX for GLA: merge the H heads of a layer into H' (default one). Each head then spans the full key and value
/// widths divided by H', so the layer's state grows from H·dk·dv to H'·(H·dk/H')·(H·dv/H') — H/H' times larger —
/// with exactly the same parameter shapes (the per-head output-norm weight, shared by the heads, is tiled H/H' times).
/// Reproduces the official code's GLA drop modes (statex-official.md §1b, §3; thunlp/StateX modeling/gla/model.py:L196-241):
/// <list type="bullet">
/// <item><c>reinit</c> = official <c>drop_mode='gla'</c> (the shipped gla_StateX.sh, the paper's choice;
/// model.py:L199-218, layer.py:L250-258): a brand-new attention with H' heads, initialised as fla's
/// GatedLinearAttention constructor does — xavier_uniform_(gain 2^-2.5) on every nn.Linear weight (q, k, v, g,
/// gk_proj[0], gk_proj[1], o), zero Linear biases (gk_proj[1].bias), output-norm weight 1, and the short
/// convolutions (when the model has them) left at nn.Conv1d's default, U(±1/√kernel) for weight and bias. The
/// model-level _init_weights (normal(initializer_range)) is not applied.</item>
/// <item><c>inherit</c> = official <c>drop_mode='merge'</c> (layer.py:L261-291, L315-323, mix_mode 'direct'):
/// every projection and convolution kept verbatim, the output-norm weight tiled H/H' times.</item>
/// </list>
/// In both, the layer's <c>attn_norm</c> is reset to ones (model.py:L197-198 replaces it by a fresh RMSNorm for every
/// drop_mode); <c>mlp_norm</c>, <c>mlp</c> and every other layer stay pretrained (bit-identical).
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
            throw new NotSupportedException($"GLA models are expanded by merging heads (merge-heads[:H]); '{rewrite}' applies to Mamba2 and GSA");
        if (init is not (ExpansionInit.Inherit or ExpansionInit.Reinit))
            throw new NotSupportedException($"init '{init.ToString().ToLowerInvariant()}' is a Mamba2 or GSA option; GLA head merging takes inherit or reinit");
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
        Models.ParameterBudget.Check("the expanded model", newCfg.ParameterTerms(), device, dtype);
        var dst = TorchRandom.Exclusive(() => new GlaForCausalLM(newCfg));
        dst.to(device).to(dtype);
        dst.ChunkSize = src.ChunkSize;
        if (src.training) dst.train(); else dst.eval();

        var selected = layers.ToHashSet();
        using var _ = no_grad();
        foreach (var (name, p) in dst.named_parameters())
        {
            var s = srcParams[name];
            int layer = ExpansionAccount.LayerOf(name);
            bool expanded = layer >= 0 && selected.Contains(layer);
            if (p.shape.SequenceEqual(s.shape)) p.copy_(s);
            else if (expanded && (name.EndsWith("g_norm_swish_gate.weight") || name.EndsWith("g_norm.weight")))
                p.copy_(s.repeat(p.shape[0] / s.shape[0]));                  // [H·dv/H'] ← [dv] tiled H/H' times
            else throw new InvalidOperationException($"parameter {name} changed shape [{string.Join(", ", s.shape)}] → [{string.Join(", ", p.shape)}] unexpectedly");
        }
        var gen = new Generator((ulong)seed, device);
        foreach (var i in layers.Order())
        {
            var block = dst.model.layers[i];
            block.attn_norm.weight.fill_(1.0);                                 // model.py:L197-198, every drop_mode
            if (init == ExpansionInit.Reinit) ReinitAttention(block.attn, gen);
        }
        return dst;
    }

    /// <summary>
    /// fla's GatedLinearAttention constructor (thunlp/StateX modeling/gla/layer.py:L250-258): xavier_uniform_(gain 2^-2.5)
    /// on every Linear weight, zero Linear biases; its norm's weight 1 (fresh module); ShortConvolution is an nn.Conv1d
    /// left at PyTorch's default (kaiming_uniform_(a=√5) → U(±1/√fan_in), bias U(±1/√fan_in), fan_in = kernel for a
    /// depthwise conv). Draws in module order from <paramref name="gen"/>.
    /// </summary>
    static void ReinitAttention(GatedLinearAttention attn, Generator gen)
    {
        var done = new HashSet<IntPtr>();
        foreach (var (_, m) in attn.named_modules())
        {
            switch (m)
            {
                case TorchSharp.Modules.Linear lin:
                    FreshInit.FillUniform(lin.weight!, FreshInit.XavierBound(lin.weight!.shape[1], lin.weight.shape[0], FreshInit.GlaXavierGain), gen);
                    done.Add(lin.weight.Handle);
                    if (lin.bias is { } b) { b.zero_(); done.Add(b.Handle); }
                    break;
                case ShortConvolution conv:
                    var bound = FreshInit.DefaultBound(conv.weight.shape[1] * conv.weight.shape[2]);   // [C, 1, K]: fan_in = K
                    FreshInit.FillUniform(conv.weight, bound, gen);
                    done.Add(conv.weight.Handle);
                    if (conv.bias is { } cb) { FreshInit.FillUniform(cb, bound, gen); done.Add(cb.Handle); }
                    break;
                case HeadNorm norm:
                    if (norm.weight is { } w) { w.fill_(1.0); done.Add(w.Handle); }
                    break;
            }
        }
        foreach (var (name, p) in attn.named_parameters())
            if (!done.Contains(p.Handle))
                throw new InvalidOperationException($"reinit: no official initialisation is known for attention parameter {name}");
    }
}
