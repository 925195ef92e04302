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
    public ICausalLanguageModel Create(ConfigJson config, Action<string>? warn) => TorchRandom.Exclusive(() => new GsaForCausalLM(GsaConfig.FromJson(config, warn)));
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
        using var weights = CheckpointWeights.Open(directory, allowNonFinite, warn);
        const string embName = "model.embeddings.weight";
        var type = dtype ?? (weights.Info(embName) is { } e ? SafeTensorsReader.DTypes[e.DType].Type : ScalarType.Float32);
        var lm = TorchRandom.Exclusive(() => new GsaForCausalLM(cfg));
        lm.to(type);
        var expected = new HashSet<string>(StringComparer.Ordinal);
        using (no_grad())
        {
            foreach (var (name, p) in lm.named_parameters())
            {
                expected.Add(name);
                using var t = weights.Load(name, p.shape, type);
                p.copy_(t);
            }
        }
        var extra = weights.Names.Where(n => !expected.Contains(n)).OrderBy(n => n, StringComparer.Ordinal).ToArray();
        if (extra.Length > 0)
            warn?.Invoke($"warning: {directory}: ignoring {extra.Length} tensor(s) the model does not use: {string.Join(", ", extra.Take(8))}{(extra.Length > 8 ? ", ..." : "")}");
        if (device is not null && device.type != DeviceType.CPU) lm.to(device);
        lm.eval();
        return lm;
    }

    /// <summary>Writes config.json and model.safetensors with fla's names, each tensor in its own dtype.</summary>
    public static void Save(GsaForCausalLM lm, string directory)
    {
        Directory.CreateDirectory(directory);
        var cfg = lm.Config with { DType = Gla.GlaCheckpoint.DTypeName(lm.model.embeddings.weight!.dtype) };
        var json = cfg.ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        var tensors = lm.named_parameters().Select(p => new KeyValuePair<string, Tensor>(p.name, p.parameter)).ToList();
        SafeTensorsWriter.Write(Path.Combine(directory, CheckpointWeights.WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        File.WriteAllText(Path.Combine(directory, "config.json"), json + "\n");
        var index = Path.Combine(directory, CheckpointWeights.IndexFile);
        if (File.Exists(index)) File.Delete(index);   // a stale index would point the loader at shards no longer written
    }
}
