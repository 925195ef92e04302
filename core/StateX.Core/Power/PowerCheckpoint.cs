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
    public ICausalLanguageModel Create(ConfigJson config, Action<string>? warn) => TorchRandom.Exclusive(() => new PowerForCausalLM(PowerConfig.FromJson(config, warn)));
}

public static class PowerCheckpoint
{
    public static PowerForCausalLM Load(string directory, ConfigJson config, Device? device, ScalarType? dtype, Action<string>? warn, bool allowNonFinite = false)
    {
        var cfg = PowerConfig.FromJson(config, warn);
        using var weights = CheckpointWeights.Open(directory, allowNonFinite, warn);
        var type = dtype ?? (weights.Info("model.embeddings.weight") is { } e ? SafeTensorsReader.DTypes[e.DType].Type : ScalarType.Float32);
        var lm = TorchRandom.Exclusive(() => new PowerForCausalLM(cfg));
        lm.to(type);
        using (no_grad())
            foreach (var (name, p) in lm.named_parameters())
            {
                using var t = weights.Load(name, p.shape, type);
                p.copy_(t);
            }
        if (device is not null && device.type != DeviceType.CPU) lm.to(device);
        lm.eval();
        return lm;
    }

    public static void Save(PowerForCausalLM lm, string directory)
    {
        Directory.CreateDirectory(directory);
        var cfg = lm.Config with { DType = Gla.GlaCheckpoint.DTypeName(lm.model.embeddings.weight!.dtype) };
        var tensors = lm.named_parameters().Select(p => new KeyValuePair<string, Tensor>(p.name, p.parameter)).ToList();
        SafeTensorsWriter.Write(Path.Combine(directory, CheckpointWeights.WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        File.WriteAllText(Path.Combine(directory, "config.json"), cfg.ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
