using System.Runtime.InteropServices;
using System.Text;

namespace StateX.Native;

/// <summary>
/// NVRTC, CUDA's run-time compiler, as shipped beside a PyTorch install (site-packages/nvidia/cu*/lib) or in the
/// CUDA toolkit. It turns the project's CUDA C kernels into a cubin for the GPU at hand when they are first needed,
/// so StateX needs no compiler at build time and no CUDA NuGet package.
/// Looked up, in order: STATEX_NVRTC (the library's path), the libtorch folder, the nvidia/*/lib folders of the
/// Python install that folder belongs to, /usr/local/cuda/lib64, then the loader's default search.
/// </summary>
internal static unsafe class Nvrtc
{
    public const string EnvironmentVariable = "STATEX_NVRTC";

    static readonly object Gate = new();
    static Api? _api;
    static string? _failure;

    sealed class Api
    {
        public required string Path;
        public required delegate* unmanaged<IntPtr*, byte*, byte*, int, byte**, byte**, int> CreateProgram;
        public required delegate* unmanaged<IntPtr, int, byte**, int> CompileProgram;
        public required delegate* unmanaged<IntPtr, nuint*, int> GetProgramLogSize;
        public required delegate* unmanaged<IntPtr, byte*, int> GetProgramLog;
        public required delegate* unmanaged<IntPtr, nuint*, int> GetCubinSize;
        public required delegate* unmanaged<IntPtr, byte*, int> GetCubin;
        public required delegate* unmanaged<IntPtr*, int> DestroyProgram;
        public required delegate* unmanaged<int, IntPtr> GetErrorString;
        public required delegate* unmanaged<int*, int*, int> Version;
    }

    /// <summary>Where NVRTC was found, or why it was not.</summary>
    public static string Describe() => TryLoad(out var api, out var why) ? $"{api!.Path} ({VersionOf(api)})" : $"not found: {why}";

    public static bool IsAvailable => TryLoad(out _, out _);

    static string VersionOf(Api api)
    {
        int major, minor;
        return api.Version(&major, &minor) == 0 ? $"{major}.{minor}" : "?";
    }

    static bool TryLoad(out Api? api, out string? why)
    {
        lock (Gate)
        {
            if (_api is null && _failure is null)
            {
                try { _api = Load(); }
                catch (Exception e) { _failure = e.Message; }
            }
            api = _api;
            why = _failure;
            return api is not null;
        }
    }

    static IEnumerable<string> Candidates()
    {
        if (Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } env) { yield return env; yield break; }
        var dir = NativeRuntime.Info.LibTorchDirectory;
        foreach (var f in SafeGlob(dir, "libnvrtc.so*")) yield return f;
        // pip's PyTorch: site-packages/torch/lib and site-packages/nvidia/cu13/lib (or nvidia/cuda_nvrtc/lib for CUDA 12).
        var nvidia = Path.GetFullPath(Path.Combine(dir, "..", "..", "nvidia"));
        if (Directory.Exists(nvidia))
            foreach (var sub in Directory.GetDirectories(nvidia).OrderDescending())
                foreach (var f in SafeGlob(Path.Combine(sub, "lib"), "libnvrtc.so*")) yield return f;
        foreach (var f in SafeGlob("/usr/local/cuda/lib64", "libnvrtc.so*")) yield return f;
        yield return "libnvrtc.so";
    }

    static IEnumerable<string> SafeGlob(string dir, string pattern) =>
        Directory.Exists(dir)
            ? Directory.GetFiles(dir, pattern).Where(f => !f.Contains(".alt.")).OrderBy(f => f.Length)
            : [];

    static Api Load()
    {
        var tried = new List<string>();
        foreach (var path in Candidates())
        {
            if (!NativeLibrary.TryLoad(path, out var h)) { tried.Add(path); continue; }
            // NVRTC dlopens its builtins library by soname; load the one beside it first so that the matching copy is used.
            var folder = Path.GetDirectoryName(path);
            if (!string.IsNullOrEmpty(folder))
                foreach (var b in SafeGlob(folder, "libnvrtc-builtins.so*")) { NativeLibrary.TryLoad(b, out _); break; }
            IntPtr F(string name) => NativeLibrary.TryGetExport(h, name, out var f) ? f
                : throw new EntryPointNotFoundException($"{path} has no {name}");
            return new Api
            {
                Path = path,
                CreateProgram = (delegate* unmanaged<IntPtr*, byte*, byte*, int, byte**, byte**, int>)F("nvrtcCreateProgram"),
                CompileProgram = (delegate* unmanaged<IntPtr, int, byte**, int>)F("nvrtcCompileProgram"),
                GetProgramLogSize = (delegate* unmanaged<IntPtr, nuint*, int>)F("nvrtcGetProgramLogSize"),
                GetProgramLog = (delegate* unmanaged<IntPtr, byte*, int>)F("nvrtcGetProgramLog"),
                GetCubinSize = (delegate* unmanaged<IntPtr, nuint*, int>)F("nvrtcGetCUBINSize"),
                GetCubin = (delegate* unmanaged<IntPtr, byte*, int>)F("nvrtcGetCUBIN"),
                DestroyProgram = (delegate* unmanaged<IntPtr*, int>)F("nvrtcDestroyProgram"),
                GetErrorString = (delegate* unmanaged<int, IntPtr>)F("nvrtcGetErrorString"),
                Version = (delegate* unmanaged<int*, int*, int>)F("nvrtcVersion"),
            };
        }
        throw new DllNotFoundException($"no loadable libnvrtc (tried {string.Join(", ", tried)}); set {EnvironmentVariable} to its path");
    }

    /// <summary>Compiles CUDA C for one GPU architecture (sm_XY) and returns the cubin; a compile error carries NVRTC's log.</summary>
    public static byte[] Compile(string source, string name, int smMajor, int smMinor, IEnumerable<string> options)
    {
        if (!TryLoad(out var api, out var why)) throw new InvalidOperationException($"NVRTC is needed to compile the CUDA kernel {name} but is {why}");
        var opts = new List<string> { $"--gpu-architecture=sm_{smMajor}{smMinor}", "--std=c++17", "-default-device" };
        opts.AddRange(options);
        var allocated = new List<IntPtr>();
        byte* Utf8(string s) { var p = Marshal.StringToCoTaskMemUTF8(s); allocated.Add(p); return (byte*)p; }
        IntPtr prog = IntPtr.Zero;
        try
        {
            Check(api!, api!.CreateProgram(&prog, Utf8(source), Utf8(name), 0, null, null), "nvrtcCreateProgram", name);
            var argv = stackalloc byte*[opts.Count];
            for (int i = 0; i < opts.Count; i++) argv[i] = Utf8(opts[i]);
            int rc = api.CompileProgram(prog, opts.Count, argv);
            if (rc != 0)
            {
                nuint logSize;
                api.GetProgramLogSize(prog, &logSize);
                var log = new byte[(int)logSize];
                fixed (byte* l = log) api.GetProgramLog(prog, l);
                throw new InvalidOperationException($"NVRTC could not compile {name} for sm_{smMajor}{smMinor}: {Error(api, rc)}\n{Encoding.UTF8.GetString(log).TrimEnd('\0')}");
            }
            nuint size;
            Check(api, api.GetCubinSize(prog, &size), "nvrtcGetCUBINSize", name);
            var cubin = new byte[(int)size];
            fixed (byte* c = cubin) Check(api, api.GetCubin(prog, c), "nvrtcGetCUBIN", name);
            return cubin;
        }
        finally
        {
            if (prog != IntPtr.Zero) api!.DestroyProgram(&prog);
            foreach (var p in allocated) Marshal.FreeCoTaskMem(p);
        }
    }

    static string Error(Api api, int rc) => Marshal.PtrToStringUTF8(api.GetErrorString(rc)) ?? $"error {rc}";

    static void Check(Api api, int rc, string what, string name)
    {
        if (rc != 0) throw new InvalidOperationException($"{what} failed for {name}: {Error(api, rc)}");
    }
}
