namespace StateX.Native;

/// <summary>What the compatibility step decided for one libLibTorchSharp.so.</summary>
/// <param name="MissingVersions">libstdc++ versions the library requires that the system libstdc++ lacks.</param>
/// <param name="Patchable">True when every missing version is one the shim can stand in for.</param>
/// <param name="Reason">One line a person can read.</param>
public sealed record PatchDecision(IReadOnlyList<string> MissingVersions, bool Patchable, string Reason)
{
    public bool NeedsPatch => MissingVersions.Count > 0;
}

/// <summary>
/// TorchSharp 0.107's libLibTorchSharp.so was built with GCC 13 and asks for GLIBCXX_3.4.32, which
/// Debian 12 and Ubuntu 22.04 (libstdc++ up to 3.4.30) lack. The only symbol it needs at that version is
/// <c>std::ios_base_library_init()</c>, which <see cref="IosInitShim"/> provides. The patch marks that
/// version requirement weak and clears the symbol's version, on a copy of the library.
/// </summary>
public static class LibStdCxxCompat
{
    /// <summary>Versions we know how to stand in for, with the only symbols allowed to need them.</summary>
    static readonly Dictionary<string, string[]> Shimmable = new()
    {
        ["GLIBCXX_3.4.32"] = [IosInitShim.ExportedSymbol],
    };

    /// <summary>The pure decision: which required libstdc++ versions the provider lacks, and can we shim them.</summary>
    public static PatchDecision Decide(IEnumerable<string> requiredVersions, IEnumerable<string> providedVersions)
    {
        var provided = providedVersions.ToHashSet(StringComparer.Ordinal);
        var missing = requiredVersions.Distinct().Where(v => !provided.Contains(v)).OrderBy(v => v, StringComparer.Ordinal).ToArray();
        if (missing.Length == 0)
            return new PatchDecision(missing, true, "system libstdc++ has every version LibTorchSharp needs; no patch");
        var unknown = missing.Where(v => !Shimmable.ContainsKey(v)).ToArray();
        return unknown.Length == 0
            ? new PatchDecision(missing, true, $"system libstdc++ lacks {string.Join(", ", missing)}; patching a copy of LibTorchSharp")
            : new PatchDecision(missing, false, $"system libstdc++ lacks {string.Join(", ", unknown)}, which StateX cannot stand in for");
    }

    /// <summary>Reads both libraries and decides.</summary>
    public static PatchDecision Decide(string libTorchSharpPath, string libStdCxxPath)
    {
        var lib = ElfImage.Read(libTorchSharpPath);
        var required = lib.VersionNeeds().Where(n => n.File.StartsWith("libstdc++", StringComparison.Ordinal)).Select(n => n.Name);
        var provided = ElfImage.Read(libStdCxxPath).VersionDefinitions();
        return Decide(required, provided);
    }

    /// <summary>
    /// Returns a patched copy of <paramref name="image"/>: each missing libstdc++ version requirement marked
    /// VER_FLG_WEAK and each symbol bound to it unversioned. Throws if a symbol outside the shim's set needs it.
    /// </summary>
    public static byte[] Patch(string name, byte[] image, IReadOnlyCollection<string> missingVersions)
    {
        var elf = ElfImage.FromBytes(name, (byte[])image.Clone());
        var needs = elf.VersionNeeds().Where(n => n.File.StartsWith("libstdc++", StringComparison.Ordinal) && missingVersions.Contains(n.Name)).ToArray();
        var symbols = elf.DynamicSymbols();
        foreach (var need in needs)
        {
            var bound = symbols.Where(s => s.VersionIndex == need.Index && !s.Defined).ToArray();
            var allowed = Shimmable.TryGetValue(need.Name, out var a) ? a : [];
            var foreign = bound.Where(s => !allowed.Contains(s.Name)).Select(s => s.Name).ToArray();
            if (foreign.Length > 0)
                throw new InvalidOperationException($"{name}: symbols {string.Join(", ", foreign)} need {need.Name}, which no shim provides");
            elf.SetVersionNeedFlags(need, (ushort)(need.Flags | ElfImage.VerFlagWeak));
            foreach (var s in bound) elf.ClearSymbolVersion(s);
        }
        return elf.Bytes;
    }
}
