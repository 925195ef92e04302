using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace StateX.IO;

/// <summary>
/// The tensors of a checkpoint folder, from one <c>model.safetensors</c> or from the shards that
/// <c>model.safetensors.index.json</c> lists; every family's loader reads weights through it.
/// </summary>
public sealed class CheckpointWeights : IDisposable
{
    public const string WeightsFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    readonly Dictionary<string, SafeTensorsReader> _readers = new(StringComparer.Ordinal);
    readonly Dictionary<string, SafeTensorsReader> _byTensor = new(StringComparer.Ordinal);
    readonly string _describe;
    readonly bool _allowNonFinite;
    readonly Action<string>? _warn;

    public IEnumerable<string> Names => _byTensor.Keys;

    CheckpointWeights(string describe, bool allowNonFinite, Action<string>? warn) { _describe = describe; _allowNonFinite = allowNonFinite; _warn = warn; }

    /// <summary>Opens a checkpoint folder's weights.</summary>
    /// <param name="directory">The checkpoint folder (model.safetensors, or the shards of model.safetensors.index.json).</param>
    /// <param name="allowNonFinite">Load tensors holding NaN or ±Inf (with a warning) instead of failing: for
    /// debugging a diverged checkpoint only, since every number computed from such a model is meaningless.</param>
    /// <param name="warn">Receives that warning.</param>
    public static CheckpointWeights Open(string directory, bool allowNonFinite = false, Action<string>? warn = null)
    {
        var single = Path.Combine(directory, WeightsFile);
        var index = Path.Combine(directory, IndexFile);
        if (File.Exists(single))
        {
            var w = new CheckpointWeights(single, allowNonFinite, warn);
            var r = new SafeTensorsReader(single);
            w._readers[single] = r;
            foreach (var n in r.Tensors.Keys) w._byTensor[n] = r;
            return w;
        }
        if (!File.Exists(index))
        {
            if (File.Exists(Path.Combine(directory, "pytorch_model.bin")))
                throw new FileNotFoundException($"{directory}: only pytorch_model.bin found; StateX reads safetensors (convert with safetensors.torch.save_file)", single);
            throw new FileNotFoundException($"{directory}: no weights: neither {WeightsFile} nor {IndexFile} is there", single);
        }
        JsonObject map;
        try
        {
            map = (JsonErrors.Parse(File.ReadAllText(index)) as JsonObject)?["weight_map"] as JsonObject
                ?? throw new SafeTensorsException($"{index}: no \"weight_map\" object");
        }
        catch (JsonException e) { throw new SafeTensorsException($"{index}: not valid JSON: {JsonErrors.Brief(e)}"); }
        var sharded = new CheckpointWeights(index, allowNonFinite, warn);
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
                if (!r.Contains(name)) throw new SafeTensorsException($"{path}: tensor '{name}' listed in {IndexFile} is not in the shard");
                sharded._byTensor[name] = r;
            }
        }
        catch { sharded.Dispose(); throw; }
        return sharded;
    }

    public bool Contains(string name) => _byTensor.ContainsKey(name);

    public SafeTensorInfo? Info(string name) => _byTensor.TryGetValue(name, out var r) ? r.Tensors[name] : null;

    /// <summary>Loads one tensor, checking its shape; a missing tensor is an error naming it and the expected shape.</summary>
    public Tensor Load(string name, long[] shape, ScalarType dtype)
    {
        if (!_byTensor.TryGetValue(name, out var r))
            throw new SafeTensorsException($"{_describe}: tensor '{name}' is missing (the config asks for a parameter of shape [{string.Join(", ", shape)}])");
        var t = r.Load(name, shape, dtype);
        try { CheckFinite(r.Path, name, t); }
        catch { t.Dispose(); throw; }
        return t;
    }

    /// <summary>
    /// One pass over the tensor where it was loaded: a NaN in a weight otherwise loads silently and every logit,
    /// score and generated token computed from it is NaN or garbage, printed as if it were a result.
    /// </summary>
    void CheckFinite(string file, string name, Tensor t)
    {
        if (!t.is_floating_point()) return;
        using var finite = t.isfinite();
        using var all = finite.all();
        if (all.item<bool>()) return;
        using var isNan = t.isnan();
        using var nan = isNan.sum();
        using var good = finite.sum();
        long nans = nan.item<long>(), bad = t.numel() - good.item<long>();
        string what = $"{file}: tensor '{name}' holds {nans} NaN and {bad - nans} infinite value(s) among {t.numel()}";
        if (!_allowNonFinite)
            throw new SafeTensorsException($"{what}; refusing to load it (the allow-non-finite option loads it anyway, for debugging)");
        _warn?.Invoke($"warning: {what}; loaded anyway (allow-non-finite)");
    }

    /// <summary>The stored dtype of <paramref name="name"/> (a model without a dtype asked for takes its embeddings'), float32 if absent.</summary>
    public ScalarType StoredType(string name) => Info(name) is { } e ? SafeTensorsReader.DTypes[e.DType].Type : ScalarType.Float32;

    /// <summary>
    /// Copies every parameter of <paramref name="module"/> from the checkpoint under its own name, checking its shape
    /// and casting to <paramref name="dtype"/>; tensors the module does not use are named in one warning. For the
    /// families whose parameter names are the checkpoint's (fla's); Mamba2 maps names first (Mamba2Weights).
    /// </summary>
    public void CopyInto(TorchSharp.torch.nn.Module module, ScalarType dtype, string directory, Action<string>? warn)
    {
        var expected = new HashSet<string>(StringComparer.Ordinal);
        using (no_grad())
            foreach (var (name, p) in module.named_parameters())
            {
                expected.Add(name);
                using var t = Load(name, p.shape, dtype);
                p.copy_(t);
            }
        var extra = Names.Where(n => !expected.Contains(n)).OrderBy(n => n, StringComparer.Ordinal).ToArray();
        if (extra.Length > 0)
            warn?.Invoke($"warning: {directory}: ignoring {extra.Length} tensor(s) the model does not use: {string.Join(", ", extra.Take(8))}{(extra.Length > 8 ? ", ..." : "")}");
    }

    /// <summary>
    /// Writes <paramref name="module"/>'s parameters under their own names (each in its own dtype) to
    /// model.safetensors and <paramref name="config"/> to config.json, and removes a stale shard index, which would
    /// point the loader at shards no longer written.
    /// </summary>
    public static void Save(TorchSharp.torch.nn.Module module, JsonObject config, string directory)
    {
        Directory.CreateDirectory(directory);
        var tensors = module.named_parameters().Select(p => new KeyValuePair<string, Tensor>(p.name, p.parameter)).ToList();
        SafeTensorsWriter.Write(Path.Combine(directory, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        var index = Path.Combine(directory, IndexFile);
        if (File.Exists(index)) File.Delete(index);
    }

    /// <summary>The dtype name transformers writes in config.json (float32, bfloat16, ...).</summary>
    public static string ConfigDTypeName(ScalarType t) => t switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        ScalarType.Float64 => "float64",
        _ => t.ToString().ToLowerInvariant(),
    };

    public void Dispose() { foreach (var r in _readers.Values) r.Dispose(); }
}
