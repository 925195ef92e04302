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
    public ICausalLanguageModel Load(string directory, ConfigJson config, Device? device, ScalarType? dtype, Action<string>? warn) =>
        GlaCheckpoint.Load(directory, config, device, dtype, warn);
    public ICausalLanguageModel Create(ConfigJson config, Action<string>? warn) => new GlaForCausalLM(GlaConfig.FromJson(config, warn));
}

public static class GlaCheckpoint
{
    public const string WeightsFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    public static GlaForCausalLM Load(string directory, Device? device = null, ScalarType? dtype = null, Action<string>? warn = null)
    {
        NativeRuntime.EnsureInitialized();
        return Load(directory, ConfigJson.Load(Path.Combine(directory, "config.json")), device, dtype, warn);
    }

    /// <summary>
    /// Builds the model from config.json and copies every parameter from the checkpoint, checking each shape.
    /// Without <paramref name="dtype"/> the model takes the stored dtype of the embeddings.
    /// </summary>
    public static GlaForCausalLM Load(string directory, ConfigJson config, Device? device, ScalarType? dtype, Action<string>? warn)
    {
        var cfg = GlaConfig.FromJson(config, warn);
        using var weights = ShardedWeights.Open(directory);
        const string embName = "model.embeddings.weight";
        var type = dtype ?? (weights.Info(embName) is { } e ? SafeTensorsReader.DTypes[e.DType].Type : ScalarType.Float32);
        var lm = new GlaForCausalLM(cfg);
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
    public static void Save(GlaForCausalLM lm, string directory)
    {
        Directory.CreateDirectory(directory);
        var dtype = lm.model.embeddings.weight!.dtype;
        var cfg = lm.Config with { DType = DTypeName(dtype) };
        var json = cfg.ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        var tensors = lm.named_parameters().Select(p => new KeyValuePair<string, Tensor>(p.name, p.parameter)).ToList();
        SafeTensorsWriter.Write(Path.Combine(directory, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        File.WriteAllText(Path.Combine(directory, "config.json"), json + "\n");
        var index = Path.Combine(directory, IndexFile);
        if (File.Exists(index)) File.Delete(index);   // a stale index would point the loader at shards no longer written
    }

    static string DTypeName(ScalarType t) => t switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        ScalarType.Float64 => "float64",
        _ => t.ToString().ToLowerInvariant(),
    };
}

/// <summary>The tensors of a checkpoint folder, from one file or from the shards an index lists.</summary>
sealed class ShardedWeights : IDisposable
{
    readonly Dictionary<string, SafeTensorsReader> _readers = new(StringComparer.Ordinal);
    readonly Dictionary<string, SafeTensorsReader> _byTensor = new(StringComparer.Ordinal);
    readonly string _describe;

    public IEnumerable<string> Names => _byTensor.Keys;

    ShardedWeights(string describe) { _describe = describe; }

    public static ShardedWeights Open(string directory)
    {
        var single = Path.Combine(directory, GlaCheckpoint.WeightsFile);
        var index = Path.Combine(directory, GlaCheckpoint.IndexFile);
        if (File.Exists(single))
        {
            var w = new ShardedWeights(single);
            var r = new SafeTensorsReader(single);
            w._readers[single] = r;
            foreach (var n in r.Tensors.Keys) w._byTensor[n] = r;
            return w;
        }
        if (!File.Exists(index))
            throw new FileNotFoundException($"{directory}: no weights: neither {GlaCheckpoint.WeightsFile} nor {GlaCheckpoint.IndexFile} is there", single);
        JsonObject map;
        try
        {
            map = (JsonNode.Parse(File.ReadAllText(index)) as JsonObject)?["weight_map"] as JsonObject
                ?? throw new SafeTensorsException($"{index}: no \"weight_map\" object");
        }
        catch (JsonException e) { throw new SafeTensorsException($"{index}: not valid JSON: {e.Message}"); }
        var sharded = new ShardedWeights(index);
        try
        {
            foreach (var (name, fileNode) in map)
            {
                var file = fileNode?.ToString() ?? throw new SafeTensorsException($"{index}: tensor '{name}' has no file");
                var path = Path.Combine(directory, file);
                if (!sharded._readers.TryGetValue(path, out var r))
                {
                    if (!File.Exists(path)) throw new FileNotFoundException($"{index}: shard '{file}' (listed for tensor '{name}') not found", path);
                    sharded._readers[path] = r = new SafeTensorsReader(path);
                }
                if (!r.Contains(name)) throw new SafeTensorsException($"{path}: tensor '{name}' listed in {IndexFileName(index)} is not in the shard");
                sharded._byTensor[name] = r;
            }
        }
        catch { sharded.Dispose(); throw; }
        return sharded;
    }

    static string IndexFileName(string p) => Path.GetFileName(p);

    public SafeTensorInfo? Info(string name) => _byTensor.TryGetValue(name, out var r) ? r.Tensors[name] : null;

    public Tensor Load(string name, long[] shape, ScalarType dtype)
    {
        if (!_byTensor.TryGetValue(name, out var r))
            throw new SafeTensorsException($"{_describe}: tensor '{name}' is missing (the config asks for a parameter of shape [{string.Join(", ", shape)}])");
        return r.Load(name, shape, dtype);
    }

    public void Dispose() { foreach (var r in _readers.Values) r.Dispose(); }
}
