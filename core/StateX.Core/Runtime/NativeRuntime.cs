using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using StateX.IO;
using StateX.Native;
using TorchSharp;

namespace StateX;

/// <summary>How to set up libtorch. Everything is optional; environment variables fill the gaps.</summary>
public sealed record RuntimeOptions
{
    /// <summary>Folder holding libtorch_cpu.so etc. (typically torch/lib of a PyTorch install). Else STATEX_LIBTORCH, else the CPU libtorch NuGet package.</summary>
    public string? LibTorchDirectory { get; init; }
    /// <summary>Where patched native files are kept. Else STATEX_CACHE, else $XDG_CACHE_HOME/statex, else ~/.cache/statex.</summary>
    public string? CacheDirectory { get; init; }
}

/// <summary>What the runtime set-up found and did.</summary>
public sealed record RuntimeInfo(
    string StateXVersion,
    string TorchSharpVersion,
    string LibTorchVersion,
    string LibTorchDirectory,
    string LibTorchSource,
    string LibTorchSharpPath,
    bool PatchApplied,
    string PatchReason,
    bool CudaLibrariesLoaded);

/// <summary>
/// The native runtime set-up: chooses one libtorch folder, loads every libtorch library from it, makes
/// TorchSharp's own LibTorchSharp load on systems whose libstdc++ is too old, and routes TorchSharp's native
/// look-ups to what was loaded. Idempotent; runs implicitly before the first tensor StateX makes.
/// This is the project's only global mutable state.
/// </summary>
public static class NativeRuntime
{
    public const string LibTorchEnvironmentVariable = "STATEX_LIBTORCH";
    public const string CacheEnvironmentVariable = "STATEX_CACHE";
    const string CpuPackage = "libtorch-cpu-linux-x64";
    const string CpuPackageVersion = "2.10.0";

    static readonly object Gate = new();
    static RuntimeInfo? _info;
    static RuntimeOptions? _options;
    static readonly Dictionary<string, IntPtr> Handles = new(StringComparer.Ordinal);

    [ModuleInitializer]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255")]
    internal static void RegisterResolver()
    {
        // TorchSharp asks for "LibTorchSharp", "torch_cpu" and "torch_cuda" by name; answer with what we loaded.
        try { NativeLibrary.SetDllImportResolver(typeof(torch).Assembly, Resolve); }
        catch (InvalidOperationException) { /* a host already installed one; Initialize still preloads by soname */ }
    }

    static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        string? key = name switch
        {
            "LibTorchSharp" or "libLibTorchSharp" or "libLibTorchSharp.so" => "LibTorchSharp",
            "torch_cpu" or "libtorch_cpu" or "libtorch_cpu.so" => "libtorch_cpu.so",
            "torch_cuda" or "libtorch_cuda" or "libtorch_cuda.so" => "libtorch_cuda.so",
            _ => null,
        };
        if (key is null) return IntPtr.Zero;
        Initialize();
        lock (Gate) return Handles.TryGetValue(key, out var h) ? h : IntPtr.Zero;
    }

    /// <summary>The address of a function exported by a library this set-up loaded (e.g. "LibTorchSharp"), or zero.</summary>
    internal static IntPtr Export(string library, string symbol)
    {
        Initialize();
        IntPtr h;
        lock (Gate) if (!Handles.TryGetValue(library, out h)) return IntPtr.Zero;
        return NativeLibrary.TryGetExport(h, symbol, out var f) ? f : IntPtr.Zero;
    }

    /// <summary>The set-up result, initialising with defaults if nothing has yet.</summary>
    public static RuntimeInfo Info => Initialize();

    public static void EnsureInitialized() => Initialize();

    /// <summary>
    /// Sets up libtorch once. Later calls return the same result; a later call asking for a different
    /// libtorch folder fails, since a process can hold only one libtorch.
    /// </summary>
    public static RuntimeInfo Initialize(RuntimeOptions? options = null)
    {
        lock (Gate)
        {
            if (_info is not null)
            {
                var wanted = options?.LibTorchDirectory is { } d ? Path.GetFullPath(d) : null;
                if (wanted is not null && wanted.TrimEnd('/') != _info.LibTorchDirectory.TrimEnd('/'))
                    throw new InvalidOperationException($"libtorch is already loaded from {_info.LibTorchDirectory}; cannot switch to {wanted} in the same process");
                return _info;
            }
            _options = options ?? new RuntimeOptions();
            _info = Load(_options);
            return _info;
        }
    }

    static RuntimeInfo Load(RuntimeOptions options)
    {
        if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux) || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            throw new PlatformNotSupportedException("StateX's native runtime set-up supports linux-x64 only");

        var (dir, source) = ChooseLibTorchDirectory(options);
        var libTorchSharp = FindLibTorchSharp();
        var libStdCxx = FindLoadedLibStdCxx();
        var decision = LibStdCxxCompat.Decide(libTorchSharp, libStdCxx);
        if (decision.NeedsPatch && !decision.Patchable)
            throw new InvalidOperationException($"cannot load {libTorchSharp}: {decision.Reason} (libstdc++ in use: {libStdCxx}). Install a newer libstdc++6 (GCC 13 or later).");

        string loadPath = libTorchSharp;
        if (decision.NeedsPatch)
        {
            var (patched, shim) = PreparePatchedCopy(libTorchSharp, decision, CacheDirectory(options));
            NativeLoader.LoadGlobal(shim);
            loadPath = patched;
        }

        // Dependency order; LibTorchSharp's own NEEDED entries then match these by soname.
        bool cuda = File.Exists(Path.Combine(dir, "libtorch_cuda.so"));
        string[] order = cuda
            ? ["libc10.so", "libtorch_cpu.so", "libc10_cuda.so", "libtorch_cuda.so", "libtorch.so"]
            : ["libc10.so", "libtorch_cpu.so", "libtorch.so"];
        foreach (var lib in order)
        {
            var p = Path.Combine(dir, lib);
            if (File.Exists(p)) Handles[lib] = NativeLoader.Load(p);
        }
        try { Handles["LibTorchSharp"] = NativeLoader.Load(loadPath); }
        catch (DllNotFoundException e)
        {
            throw new InvalidOperationException($"LibTorchSharp ({loadPath}) did not load against libtorch in {dir}: {e.Message}", e);
        }

        return new RuntimeInfo(
            StateXVersion: typeof(NativeRuntime).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "unknown",
            TorchSharpVersion: typeof(torch).Assembly.GetName().Version?.ToString(3) ?? "unknown",
            LibTorchVersion: LibTorchVersion(dir),
            LibTorchDirectory: dir,
            LibTorchSource: source,
            LibTorchSharpPath: loadPath,
            PatchApplied: decision.NeedsPatch,
            PatchReason: decision.Reason,
            CudaLibrariesLoaded: cuda);
    }

    /// <summary>Checks a candidate libtorch folder; the error names the folder and what is missing.</summary>
    public static void ValidateLibTorchDirectory(string dir, string origin)
    {
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"libtorch folder '{dir}' (from {origin}) does not exist");
        foreach (var must in new[] { "libc10.so", "libtorch_cpu.so" })
            if (!File.Exists(Path.Combine(dir, must)))
                throw new FileNotFoundException($"libtorch folder '{dir}' (from {origin}) holds no libtorch: {must} is missing. Point it at torch/lib of a PyTorch install.");
    }

    static (string Dir, string Source) ChooseLibTorchDirectory(RuntimeOptions options)
    {
        if (options.LibTorchDirectory is { } explicitDir)
        {
            var full = Path.GetFullPath(explicitDir);
            ValidateLibTorchDirectory(full, "RuntimeOptions.LibTorchDirectory");
            return (full, "option");
        }
        if (Environment.GetEnvironmentVariable(LibTorchEnvironmentVariable) is { Length: > 0 } env)
        {
            var full = Path.GetFullPath(env);
            ValidateLibTorchDirectory(full, LibTorchEnvironmentVariable);
            return (full, LibTorchEnvironmentVariable);
        }
        foreach (var candidate in CpuPackageCandidates())
            if (File.Exists(Path.Combine(candidate, "libtorch_cpu.so")))
                return (candidate, $"NuGet package {CpuPackage}");
        throw new FileNotFoundException(
            $"no libtorch found: the {CpuPackage} {CpuPackageVersion} package is not in the NuGet cache ({NuGetRoot()}) and {LibTorchEnvironmentVariable} is not set. " +
            "Run the README's build command (it restores packages), or set STATEX_LIBTORCH to torch/lib of a PyTorch install.");
    }

    static string NuGetRoot() =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p ? p
        : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    static IEnumerable<string> CpuPackageCandidates()
    {
        yield return Path.Combine(AppContext.BaseDirectory, "libtorch");
        var pkg = Path.Combine(NuGetRoot(), CpuPackage);
        yield return Path.Combine(pkg, CpuPackageVersion, "runtimes", "linux-x64", "native");
        if (Directory.Exists(pkg))
            foreach (var v in Directory.GetDirectories(pkg).OrderDescending())
                yield return Path.Combine(v, "runtimes", "linux-x64", "native");
    }

    static string FindLibTorchSharp()
    {
        const string file = "libLibTorchSharp.so";
        var asmDir = Path.GetDirectoryName(typeof(torch).Assembly.Location) ?? AppContext.BaseDirectory;
        var version = typeof(torch).Assembly.GetName().Version?.ToString(3) ?? "";
        var candidates = new[]
        {
            Path.Combine(asmDir, "runtimes", "linux-x64", "native", file),
            Path.Combine(asmDir, file),
            Path.Combine(asmDir, "..", "..", "runtimes", "linux-x64", "native", file),   // loaded straight from the NuGet cache (F# Interactive)
            Path.Combine(NuGetRoot(), "torchsharp", version, "runtimes", "linux-x64", "native", file),
        };
        return candidates.Select(Path.GetFullPath).FirstOrDefault(File.Exists)
            ?? throw new FileNotFoundException($"{file} not found; looked in: {string.Join(", ", candidates.Select(Path.GetFullPath))}");
    }

    /// <summary>The libstdc++ the process already uses (the .NET host links it), else the system's.</summary>
    internal static string FindLoadedLibStdCxx()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/maps"))
            {
                int i = line.IndexOf('/');
                if (i >= 0 && line.Contains("libstdc++.so", StringComparison.Ordinal)) return line[i..].Trim();
            }
        }
        catch (IOException) { }
        foreach (var p in new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6", "/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6" })
            if (File.Exists(p)) return p;
        throw new FileNotFoundException("libstdc++.so.6 not found; install libstdc++6");
    }

    static string CacheDirectory(RuntimeOptions options)
    {
        if (options.CacheDirectory is { } c) return c;
        if (Environment.GetEnvironmentVariable(CacheEnvironmentVariable) is { Length: > 0 } e) return e;
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var root = xdg is { Length: > 0 } ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "statex");
    }

    /// <summary>Writes (once, atomically) the patched LibTorchSharp and the shim into a folder keyed by the original's hash.</summary>
    internal static (string Patched, string Shim) PreparePatchedCopy(string original, PatchDecision decision, string cacheRoot)
    {
        var bytes = File.ReadAllBytes(original);
        var key = Convert.ToHexString(SHA256.HashData(bytes))[..16].ToLowerInvariant();
        var dir = Path.Combine(cacheRoot, "native", key);
        var patched = Path.Combine(dir, "libLibTorchSharp.so");
        var shim = Path.Combine(dir, IosInitShim.SoName);
        try
        {
            Directory.CreateDirectory(dir);
            if (!File.Exists(patched)) AtomicFile.WriteAllBytes(patched, LibStdCxxCompat.Patch(original, bytes, decision.MissingVersions.ToArray()));
            if (!File.Exists(shim)) AtomicFile.WriteAllBytes(shim, IosInitShim.Build());
        }
        catch (UnauthorizedAccessException e)
        {
            throw new InvalidOperationException($"cannot write StateX's patched native files to {dir}: {e.Message}. Set {CacheEnvironmentVariable} to a writable folder.", e);
        }
        return (patched, shim);
    }

    static string LibTorchVersion(string dir)
    {
        // torch/lib/../version.py in a PyTorch install
        var versionPy = Path.Combine(dir, "..", "version.py");
        if (File.Exists(versionPy))
            foreach (var line in File.ReadLines(versionPy))
                if (line.StartsWith("__version__", StringComparison.Ordinal))
                    return line.Split('=', 2)[1].Trim().Trim('\'', '"');
        var parts = dir.Split('/');
        int i = Array.IndexOf(parts, CpuPackage);
        return i >= 0 && i + 1 < parts.Length ? parts[i + 1] + " (cpu)" : "unknown";
    }
}
