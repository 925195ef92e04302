using System.Text.Json;
using System.Text.Json.Nodes;
using StateX.IO;
using StateX.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Gla;

/// <summary>fla GLA checkpoints: config.json + model.safetensors (or a sharded model.safetensors.index.json).</summary>
public sealed class GlaCheckpointFamily : ICheckpointFamily
{
    public string Name => "gla (fla)";
    public bool Recognizes(ConfigJson config) => config.Root["model_type"]?.ToString() == "gla";
    public ICausalLanguageModel Load(string directory, ConfigJson config, Device? device, ScalarType? dtype, Action<string>? warn, bool allowNonFinite = false) =>
        GlaCheckpoint.Load(directory, config, device, dtype, warn, allowNonFinite);
    public ICausalLanguageModel Create(ConfigJson config, Action<string>? warn)
    {
        var cfg = GlaConfig.FromJson(config, warn);
        ParameterBudget.Check(config.Path, cfg.ParameterTerms());
        return TorchRandom.Exclusive(() => new GlaForCausalLM(cfg));
    }
}

public static class GlaCheckpoint
{
    public const string WeightsFile = CheckpointWeights.WeightsFile;
    public const string IndexFile = CheckpointWeights.IndexFile;

    public static GlaForCausalLM Load(string directory, Device? device = null, ScalarType? dtype = null, Action<string>? warn = null)
    {
        NativeRuntime.EnsureInitialized();
        return Load(directory, ConfigJson.Load(Path.Combine(directory, "config.json")), device, dtype, warn);
    }

    /// <summary>
    /// Builds the model from config.json and copies every parameter from the checkpoint, checking each shape.
    /// Without <paramref name="dtype"/> the model takes the stored dtype of the embeddings.
    /// </summary>
    public static GlaForCausalLM Load(string directory, ConfigJson config, Device? device, ScalarType? dtype, Action<string>? warn, bool allowNonFinite = false)
    {
        var cfg = GlaConfig.FromJson(config, warn);
        ParameterBudget.Check(config.Path, cfg.ParameterTerms(), device, dtype);
        using var weights = CheckpointWeights.Open(directory, allowNonFinite, warn);
        var type = dtype ?? weights.StoredType("model.embeddings.weight");
        var lm = TorchRandom.Exclusive(() => new GlaForCausalLM(cfg));
        lm.to(type);
        weights.CopyInto(lm, type, directory, warn);
        if (device is not null && device.type != DeviceType.CPU) lm.to(device);
        lm.eval();
        return lm;
    }

    /// <summary>Writes config.json and model.safetensors with fla's names, each tensor in its own dtype.</summary>
    public static void Save(GlaForCausalLM lm, string directory) =>
        CheckpointWeights.Save(lm, (lm.Config with { DType = CheckpointWeights.ConfigDTypeName(lm.model.embeddings.weight!.dtype) }).ToJson(), directory);
}
