using System.Text.Json.Nodes;
using StateX.IO;
using StateX.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Mamba2;

/// <summary>transformers' Mamba2 checkpoints: model_type "mamba2", names as <see cref="Mamba2ForCausalLM"/>'s.</summary>
public sealed class Mamba2HuggingFaceFamily : ICheckpointFamily
{
    public string Name => "mamba2 (transformers)";
    public bool Recognizes(ConfigJson config) => config.Root["model_type"]?.ToString() == "mamba2";

    public ICausalLanguageModel Load(string directory, ConfigJson config, Device? device, ScalarType? dtype, Action<string>? warn, bool allowNonFinite = false)
    {
        var cfg = Mamba2Config.FromHuggingFace(config);
        if (config.UnknownKeysWarning() is { } w) warn?.Invoke(w);
        ParameterBudget.Check(config.Path, cfg.ParameterTerms(), device, dtype);
        return Mamba2Weights.Load(directory, cfg, name => name, device, dtype, warn, allowNonFinite);
    }

    public ICausalLanguageModel Create(ConfigJson config, Action<string>? warn)
    {
        var cfg = Mamba2Config.FromHuggingFace(config);
        if (config.UnknownKeysWarning() is { } w) warn?.Invoke(w);
        ParameterBudget.Check(config.Path, cfg.ParameterTerms());
        return TorchRandom.Exclusive(() => new Mamba2ForCausalLM(cfg));
    }
}

/// <summary>
/// state-spaces' mamba_ssm checkpoints (config with d_model, n_layer, ssm_cfg): the same parameters, except the
/// embedding is <c>backbone.embedding.weight</c>.
/// </summary>
public sealed class Mamba2MambaSsmFamily : ICheckpointFamily
{
    public string Name => "mamba2 (mamba_ssm)";
    // Not a transformers config that happens to carry these keys too: that one says model_type mamba2.
    public bool Recognizes(ConfigJson config) =>
        config.Root.ContainsKey("d_model") && config.Root.ContainsKey("n_layer") && config.Root["model_type"]?.ToString() != "mamba2";

    public ICausalLanguageModel Create(ConfigJson config, Action<string>? warn)
    {
        var cfg = Mamba2Config.FromMambaSsm(config, warn);
        if (config.UnknownKeysWarning() is { } w) warn?.Invoke(w);
        ParameterBudget.Check(config.Path, cfg.ParameterTerms());
        return TorchRandom.Exclusive(() => new Mamba2ForCausalLM(cfg));
    }

    public ICausalLanguageModel Load(string directory, ConfigJson config, Device? device, ScalarType? dtype, Action<string>? warn, bool allowNonFinite = false)
    {
        var cfg = Mamba2Config.FromMambaSsm(config, warn);
        if (config.UnknownKeysWarning() is { } w) warn?.Invoke(w);
        ParameterBudget.Check(config.Path, cfg.ParameterTerms(), device, dtype);
        return Mamba2Weights.Load(directory, cfg, ToMambaSsmName, device, dtype, warn, allowNonFinite);
    }

    public static string ToMambaSsmName(string hfName) =>
        hfName == "backbone.embeddings.weight" ? "backbone.embedding.weight" : hfName;
}

/// <summary>Reads a checkpoint folder's weights (model.safetensors, or shards listed in model.safetensors.index.json).</summary>
static class Mamba2Weights
{
    public static Mamba2ForCausalLM Load(string directory, Mamba2Config cfg, Func<string, string> stored, Device? device, ScalarType? dtype, Action<string>? warn, bool allowNonFinite)
    {
        using var files = CheckpointWeights.Open(directory, allowNonFinite, warn);
        var model = TorchRandom.Exclusive(() => new Mamba2ForCausalLM(cfg));
        var used = new HashSet<string>(StringComparer.Ordinal);
        using (no_grad())
        {
            foreach (var (name, p) in model.named_parameters())
            {
                var key = stored(name);
                if (!files.Contains(key)) throw new SafeTensorsException($"{directory}: weight '{key}' is missing from the checkpoint ({cfg})");
                using var t = files.Load(key, p.shape, p.dtype);
                p.copy_(t);
                used.Add(key);
            }
        }
        // A tied head is often stored anyway (mamba_ssm does); it is the embedding, so it is not an extra weight.
        var extra = files.Names.Where(n => !used.Contains(n) && !(cfg.TieWordEmbeddings && n == "lm_head.weight")).ToArray();
        if (extra.Length > 0)
            warn?.Invoke($"warning: {directory}: ignoring {extra.Length} checkpoint tensors the model does not use: {string.Join(", ", extra.Take(8))}{(extra.Length > 8 ? ", ..." : "")}");
        if (dtype is { } d) model.to(d);
        if (device is not null) model.to(device);
        model.eval();
        return model;
    }
}
