using System.Text.Json;
using StateX.IO;
using StateX.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Power;

/// <summary>StateX power-attention checkpoints: config.json (model_type "power_attention") + model.safetensors.</summary>
public sealed class PowerCheckpointFamily : ICheckpointFamily
{
    public string Name => "power_attention (StateX)";
    public bool Recognizes(ConfigJson config) => config.Root["model_type"]?.ToString() == "power_attention";
    public ICausalLanguageModel Load(string directory, ConfigJson config, Device? device, ScalarType? dtype, Action<string>? warn, bool allowNonFinite = false) =>
        PowerCheckpoint.Load(directory, config, device, dtype, warn, allowNonFinite);
    public ICausalLanguageModel Create(ConfigJson config, Action<string>? warn)
    {
        var cfg = PowerConfig.FromJson(config, warn);
        ParameterBudget.Check(config.Path, cfg.ParameterTerms());
        return TorchRandom.Exclusive(() => new PowerForCausalLM(cfg));
    }
}

public static class PowerCheckpoint
{
    public static PowerForCausalLM Load(string directory, ConfigJson config, Device? device, ScalarType? dtype, Action<string>? warn, bool allowNonFinite = false)
    {
        var cfg = PowerConfig.FromJson(config, warn);
        ParameterBudget.Check(config.Path, cfg.ParameterTerms(), device, dtype);
        using var weights = CheckpointWeights.Open(directory, allowNonFinite, warn);
        var type = dtype ?? weights.StoredType("model.embeddings.weight");
        var lm = TorchRandom.Exclusive(() => new PowerForCausalLM(cfg));
        lm.to(type);
        weights.CopyInto(lm, type, directory, warn);
        if (device is not null && device.type != DeviceType.CPU) lm.to(device);
        lm.eval();
        return lm;
    }

    public static void Save(PowerForCausalLM lm, string directory) =>
        CheckpointWeights.Save(lm, (lm.Config with { DType = CheckpointWeights.ConfigDTypeName(lm.model.embeddings.weight!.dtype) }).ToJson(), directory);
}
