using System.Text.Json;
using StateX.IO;
using StateX.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Gsa;

/// <summary>fla GSA checkpoints: config.json (model_type "gsa") + model.safetensors (or a sharded index).</summary>
public sealed class GsaCheckpointFamily : ICheckpointFamily
{
    public string Name => "gsa (fla)";
    public bool Recognizes(ConfigJson config) => config.Root["model_type"]?.ToString() == "gsa";
    public ICausalLanguageModel Load(string directory, ConfigJson config, Device? device, ScalarType? dtype, Action<string>? warn, bool allowNonFinite = false) =>
        GsaCheckpoint.Load(directory, config, device, dtype, warn, allowNonFinite);
    public ICausalLanguageModel Create(ConfigJson config, Action<string>? warn)
    {
        var cfg = GsaConfig.FromJson(config, warn);
        ParameterBudget.Check(config.Path, cfg.ParameterTerms());
        return TorchRandom.Exclusive(() => new GsaForCausalLM(cfg));
    }
}

public static class GsaCheckpoint
{
    public static GsaForCausalLM Load(string directory, Device? device = null, ScalarType? dtype = null, Action<string>? warn = null)
    {
        NativeRuntime.EnsureInitialized();
        return Load(directory, ConfigJson.Load(Path.Combine(directory, "config.json")), device, dtype, warn);
    }

    /// <summary>
    /// Builds the model from config.json and copies every parameter from the checkpoint, checking each shape.
    /// Without <paramref name="dtype"/> the model takes the stored dtype of the embeddings.
    /// </summary>
    public static GsaForCausalLM Load(string directory, ConfigJson config, Device? device, ScalarType? dtype, Action<string>? warn, bool allowNonFinite = false)
    {
        var cfg = GsaConfig.FromJson(config, warn);
        ParameterBudget.Check(config.Path, cfg.ParameterTerms(), device, dtype);
        using var weights = CheckpointWeights.Open(directory, allowNonFinite, warn);
        var type = dtype ?? weights.StoredType("model.embeddings.weight");
        var lm = TorchRandom.Exclusive(() => new GsaForCausalLM(cfg));
        lm.to(type);
        weights.CopyInto(lm, type, directory, warn);
        if (device is not null && device.type != DeviceType.CPU) lm.to(device);
        lm.eval();
        return lm;
    }

    /// <summary>Writes config.json and model.safetensors with fla's names, each tensor in its own dtype.</summary>
    public static void Save(GsaForCausalLM lm, string directory) =>
        CheckpointWeights.Save(lm, (lm.Config with { DType = CheckpointWeights.ConfigDTypeName(lm.model.embeddings.weight!.dtype) }).ToJson(), directory);
}
