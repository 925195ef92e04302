using StateX.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Models;

/// <summary>A checkpoint format one model family reads (fla GLA, HF Mamba2, mamba_ssm Mamba2, ...).</summary>
public interface ICheckpointFamily
{
    string Name { get; }
    /// <summary>True when this config.json is in this family's dialect.</summary>
    bool Recognizes(ConfigJson config);
    /// <summary>
    /// Builds the model from config.json and loads the weights of the checkpoint folder; a weight holding NaN or ±Inf
    /// is refused unless <paramref name="allowNonFinite"/> (see <see cref="CheckpointWeights.Open"/>).
    /// </summary>
    ICausalLanguageModel Load(string directory, ConfigJson config, Device? device, ScalarType? dtype, Action<string>? warn, bool allowNonFinite = false);
    /// <summary>Builds the model from a config alone, with the family's fresh random initialisation.</summary>
    ICausalLanguageModel Create(ConfigJson config, Action<string>? warn);
}

/// <summary>Loads any checkpoint folder StateX understands, choosing the family from its config.json.</summary>
public static class Checkpoint
{
    /// <summary>Every family StateX reads, by name. No two may claim one config (<see cref="FamilyOf"/> refuses it).</summary>
    public static IReadOnlyList<ICheckpointFamily> Families { get; } = Discover();

    // Found in this assembly by reflection, not listed: Models is the room the families are built on, so naming
    // them here would make it depend on every family and every family on it (a cycle). A family is a non-abstract
    // class implementing ICheckpointFamily with a parameterless constructor; it needs no registration.
    static ICheckpointFamily[] Discover() =>
        typeof(Checkpoint).Assembly.GetTypes()
            .Where(t => t is { IsClass: true, IsAbstract: false } && typeof(ICheckpointFamily).IsAssignableFrom(t) && t.GetConstructor(Type.EmptyTypes) is not null)
            .Select(t => (ICheckpointFamily)Activator.CreateInstance(t)!)
            .OrderBy(f => f.Name, StringComparer.Ordinal)
            .ToArray();

    /// <summary>A model with random weights from a config.json (any family's dialect): for sizing and accounting without a download.</summary>
    public static ICausalLanguageModel FromConfig(string configPath, Action<string>? warn = null)
    {
        NativeRuntime.EnsureInitialized();
        var config = ConfigJson.Load(configPath);
        return FamilyOf(config).Create(config, warn ?? (m => Console.Error.WriteLine(m)));
    }

    /// <summary>Loads a checkpoint folder of any family; <paramref name="allowNonFinite"/> loads NaN/Inf weights (debugging only).</summary>
    public static ICausalLanguageModel Load(string directory, Device? device = null, ScalarType? dtype = null, Action<string>? warn = null, bool allowNonFinite = false)
    {
        NativeRuntime.EnsureInitialized();
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"checkpoint folder not found: {directory}");
        var config = ConfigJson.Load(Path.Combine(directory, "config.json"));
        return FamilyOf(config).Load(directory, config, device, dtype, warn ?? (m => Console.Error.WriteLine(m)), allowNonFinite);
    }

    static ICheckpointFamily FamilyOf(ConfigJson config)
    {
        var claim = Families.Where(f => f.Recognizes(config)).ToArray();
        if (claim.Length > 1)
            throw new ConfigException($"{config.Path}: claimed by several checkpoint families ({string.Join(", ", claim.Select(f => f.Name))}); its keys must say which");
        return claim.FirstOrDefault()
        ?? throw new ConfigException($"{config.Path}: not a checkpoint StateX can read (model_type {ConfigJson.Show(config.Root["model_type"])}; known: {string.Join(", ", Families.Select(f => f.Name))})");
    }
}
