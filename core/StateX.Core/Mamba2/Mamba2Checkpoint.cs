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

    public ICausalLanguageModel Load(string directory, ConfigJson config, Device? device, ScalarType? dtype, Action<string>? warn)
    {
        var cfg = Mamba2Config.FromHuggingFace(config);
        if (config.UnknownKeysWarning() is { } w) warn?.Invoke(w);
        return Mamba2Weights.Load(directory, cfg, name => name, device, dtype, warn);
    }

    public ICausalLanguageModel Create(ConfigJson config, Action<string>? warn)
    {
        var cfg = Mamba2Config.FromHuggingFace(config);
        if (config.UnknownKeysWarning() is { } w) warn?.Invoke(w);
        return new Mamba2ForCausalLM(cfg);
    }
}

/// <summary>
/// state-spaces' mamba_ssm checkpoints (config with d_model, n_layer, ssm_cfg): the same parameters, except the
/// embedding is <c>backbone.embedding.weight</c>.
/// </summary>
public sealed class Mamba2MambaSsmFamily : ICheckpointFamily
{
    public string Name => "mamba2 (mamba_ssm)";
    public bool Recognizes(ConfigJson config) => config.Root.ContainsKey("d_model") && config.Root.ContainsKey("n_layer");

    public ICausalLanguageModel Create(ConfigJson config, Action<string>? warn)
    {
        var cfg = Mamba2Config.FromMambaSsm(config, warn);
        if (config.UnknownKeysWarning() is { } w) warn?.Invoke(w);
        return new Mamba2ForCausalLM(cfg);
    }

    public ICausalLanguageModel Load(string directory, ConfigJson config, Device? device, ScalarType? dtype, Action<string>? warn)
    {
        var cfg = Mamba2Config.FromMambaSsm(config, warn);
        if (config.UnknownKeysWarning() is { } w) warn?.Invoke(w);
        return Mamba2Weights.Load(directory, cfg, ToMambaSsmName, device, dtype, warn);
    }

    public static string ToMambaSsmName(string hfName) =>
        hfName == "backbone.embeddings.weight" ? "backbone.embedding.weight" : hfName;
}

/// <summary>Reads a checkpoint folder's weights (model.safetensors, or shards listed in model.safetensors.index.json).</summary>
static class Mamba2Weights
{
    public static Mamba2ForCausalLM Load(string directory, Mamba2Config cfg, Func<string, string> stored, Device? device, ScalarType? dtype, Action<string>? warn)
    {
        using var files = WeightFiles.Open(directory);
        var model = new Mamba2ForCausalLM(cfg);
        var used = new HashSet<string>(StringComparer.Ordinal);
        using (no_grad())
        {
            foreach (var (name, p) in model.named_parameters())
            {
                var key = stored(name);
                var reader = files.Find(key)
                    ?? throw new SafeTensorsException($"{directory}: weight '{key}' is missing from the checkpoint ({cfg})");
                using var t = reader.Load(key, p.shape, p.dtype);
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

    sealed class WeightFiles : IDisposable
    {
        readonly Dictionary<string, SafeTensorsReader> _byName = new(StringComparer.Ordinal);
        readonly List<SafeTensorsReader> _readers = [];

        public IEnumerable<string> Names => _byName.Keys;
        public SafeTensorsReader? Find(string name) => _byName.GetValueOrDefault(name);

        public static WeightFiles Open(string directory)
        {
            var files = new WeightFiles();
            var single = Path.Combine(directory, "model.safetensors");
            var index = Path.Combine(directory, "model.safetensors.index.json");
            if (File.Exists(single)) files.Add(single, null);
            else if (File.Exists(index))
            {
                var map = (JsonNode.Parse(File.ReadAllText(index)) as JsonObject)?["weight_map"] as JsonObject
                    ?? throw new SafeTensorsException($"{index}: no 'weight_map' object");
                foreach (var shard in map.GroupBy(kv => kv.Value!.ToString()))
                    files.Add(Path.Combine(directory, shard.Key), shard.Select(kv => kv.Key).ToHashSet());
            }
            else if (File.Exists(Path.Combine(directory, "pytorch_model.bin")))
                throw new SafeTensorsException($"{directory}: only pytorch_model.bin found; StateX reads safetensors (convert with safetensors.torch.save_file)");
            else throw new SafeTensorsException($"{directory}: no model.safetensors or model.safetensors.index.json");
            return files;
        }

        void Add(string path, HashSet<string>? listed)
        {
            var r = new SafeTensorsReader(path);
            _readers.Add(r);
            foreach (var name in r.Tensors.Keys)
                if (listed is null || listed.Contains(name)) _byName[name] = r;
        }

        public void Dispose() { foreach (var r in _readers) r.Dispose(); }
    }
}
