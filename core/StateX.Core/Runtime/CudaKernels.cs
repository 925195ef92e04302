using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Native;

/// <summary>
/// Kernels compiled at run time (see <see cref="Nvrtc"/>) and launched through the CUDA driver on libtorch's current
/// stream, on the memory of TorchSharp tensors. TorchSharp never switches streams, so libtorch's current stream is
/// the legacy default stream, and a launch there is ordered with every tensor operation before and after it.
/// Compiled modules are cached per (device, source, defines) for the life of the process, like the rest of the
/// native runtime set-up.
/// </summary>
public static unsafe partial class CudaKernels
{
    [LibraryImport("libcuda.so.1")] private static partial int cuInit(uint flags);
    [LibraryImport("libcuda.so.1")] private static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport("libcuda.so.1")] private static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport("libcuda.so.1", EntryPoint = "cuCtxGetCurrent")] private static partial int cuCtxGetCurrent(out IntPtr ctx);
    [LibraryImport("libcuda.so.1", EntryPoint = "cuCtxSetCurrent")] private static partial int cuCtxSetCurrent(IntPtr ctx);
    [LibraryImport("libcuda.so.1", EntryPoint = "cuDevicePrimaryCtxRetain")] private static partial int cuDevicePrimaryCtxRetain(out IntPtr ctx, int device);
    [LibraryImport("libcuda.so.1", EntryPoint = "cuCtxGetDevice")] private static partial int cuCtxGetDevice(out int device);
    [LibraryImport("libcuda.so.1")] private static partial int cuModuleLoadData(out IntPtr module, byte* image);
    [LibraryImport("libcuda.so.1", StringMarshalling = StringMarshalling.Utf8)] private static partial int cuModuleGetFunction(out IntPtr function, IntPtr module, string name);
    [LibraryImport("libcuda.so.1")]
    private static partial int cuLaunchKernel(IntPtr f, uint gx, uint gy, uint gz, uint bx, uint by, uint bz, uint sharedBytes, IntPtr stream, void** args, void** extra);
    [LibraryImport("libcuda.so.1")] private static partial int cuGetErrorString(int error, out IntPtr text);

    const int AttrComputeMajor = 75, AttrComputeMinor = 76;

    sealed record Module(IntPtr Handle, ConcurrentDictionary<string, IntPtr> Functions);
    static readonly ConcurrentDictionary<(int Device, string Key), Lazy<Module>> Modules = new();

    static delegate* unmanaged<IntPtr, IntPtr> _tensorData;

    /// <summary>Whether kernels can be compiled and launched here (a CUDA driver and NVRTC).</summary>
    public static bool Available(Device device) => device.type == DeviceType.CUDA && Nvrtc.IsAvailable && cuda.is_available();

    /// <summary>A one-line account of the run-time kernel compiler, for `statex info`.</summary>
    public static string Describe() => Nvrtc.Describe();

    /// <summary>The device address of a tensor's first element (libtorch's data_ptr, storage offset included).</summary>
    public static IntPtr DataPointer(Tensor t)
    {
        if (_tensorData == null)
        {
            var f = NativeRuntime.Export("LibTorchSharp", "THSTensor_data");
            if (f == IntPtr.Zero) throw new EntryPointNotFoundException("LibTorchSharp exports no THSTensor_data");
            _tensorData = (delegate* unmanaged<IntPtr, IntPtr>)f;
        }
        return _tensorData(t.Handle);
    }

    /// <summary>
    /// A kernel from one of StateX.Core's embedded CUDA C sources (e.g. "StateX.Gla.GlaKernels.cu"), compiled once per
    /// (device, source, defines) with Runtime/CudaCommon.cuh in front. The source's kernels are extern "C";
    /// <paramref name="defines"/> become -D options (compile-time sizes).
    /// </summary>
    public static Kernel Get(Device device, string resource, string function, IReadOnlyDictionary<string, string>? defines = null)
    {
        int ordinal = device.index < 0 ? 0 : (int)device.index;
        var defs = defines is null ? "" : string.Join(";", defines.OrderBy(p => p.Key).Select(p => $"{p.Key}={p.Value}"));
        var module = Modules.GetOrAdd((ordinal, $"{resource}|{defs}"), _ => new Lazy<Module>(() =>
        {
            EnsureContext(ordinal);
            Check(cuDeviceGet(out var dev, ordinal), "cuDeviceGet");
            Check(cuDeviceGetAttribute(out var major, AttrComputeMajor, dev), "cuDeviceGetAttribute");
            Check(cuDeviceGetAttribute(out var minor, AttrComputeMinor, dev), "cuDeviceGetAttribute");
            var options = (defines ?? new Dictionary<string, string>()).Select(p => $"-D{p.Key}={p.Value}").Append("--use_fast_math");
            var cubin = Nvrtc.Compile(ReadSource(resource), resource, major, minor, options);
            IntPtr handle;
            fixed (byte* image = cubin) Check(cuModuleLoadData(out handle, image), $"cuModuleLoadData({resource})");
            return new Module(handle, new ConcurrentDictionary<string, IntPtr>());
        })).Value;
        var fn = module.Functions.GetOrAdd(function, name =>
        {
            Check(cuModuleGetFunction(out var f, module.Handle, name), $"cuModuleGetFunction({resource}: {name})");
            return f;
        });
        return new Kernel(fn, ordinal, $"{resource}:{function}");
    }

    static string ReadSource(string resource)
    {
        string Read(string name)
        {
            using var s = typeof(CudaKernels).Assembly.GetManifestResourceStream(name)
                ?? throw new InvalidOperationException($"the CUDA source {name} is missing from StateX.Core (an embedded resource)");
            using var r = new StreamReader(s);
            return r.ReadToEnd();
        }
        return Read("StateX.Native.CudaCommon.cuh") + "\n#line 1 \"" + resource + "\"\n" + Read(resource);
    }

    /// <summary>
    /// The thread launching must have the device's primary context current (the one libtorch uses). libtorch makes it
    /// current on the threads it runs on, the autograd engine's included; this covers any other thread.
    /// </summary>
    static void EnsureContext(int ordinal)
    {
        Check(cuInit(0), "cuInit");
        if (cuCtxGetCurrent(out var ctx) == 0 && ctx != IntPtr.Zero && cuCtxGetDevice(out var current) == 0 && current == ordinal) return;
        Check(cuDeviceGet(out var dev, ordinal), "cuDeviceGet");
        Check(cuDevicePrimaryCtxRetain(out var primary, dev), "cuDevicePrimaryCtxRetain");
        Check(cuCtxSetCurrent(primary), "cuCtxSetCurrent");
    }

    internal static void Check(int rc, string what)
    {
        if (rc == 0) return;
        cuGetErrorString(rc, out var text);
        throw new InvalidOperationException($"{what} failed: CUDA error {rc} ({Marshal.PtrToStringUTF8(text) ?? "?"})");
    }

    /// <summary>One compiled kernel. Arguments are tensors (passed as device pointers; null passes a null pointer), int, long or float.</summary>
    public readonly struct Kernel(IntPtr function, int device, string name)
    {
        public string Name => name;

        public void Launch((int X, int Y, int Z) grid, int blockThreads, params object?[] args)
        {
            EnsureContext(device);
            // Every argument as 8 bytes of storage, and an array of pointers to them (the driver's calling convention).
            var storage = stackalloc long[args.Length];
            var pointers = stackalloc void*[args.Length];
            for (int i = 0; i < args.Length; i++)
            {
                switch (args[i])
                {
                    case null: storage[i] = 0; break;
                    case Tensor t:
                        if (t.device_type != DeviceType.CUDA) throw new ArgumentException($"{name}: argument {i} is on {t.device}, not CUDA");
                        if (!t.is_contiguous()) throw new ArgumentException($"{name}: argument {i} is not contiguous");
                        storage[i] = (long)DataPointer(t);
                        break;
                    case int v: *(int*)&storage[i] = v; break;
                    case long v: storage[i] = v; break;
                    case float v: *(float*)&storage[i] = v; break;
                    default: throw new ArgumentException($"{name}: argument {i} has unsupported type {args[i]!.GetType().Name}");
                }
                pointers[i] = &storage[i];
            }
            if (grid.X <= 0 || grid.Y <= 0 || grid.Z <= 0) return;
            Check(cuLaunchKernel(function, (uint)grid.X, (uint)grid.Y, (uint)grid.Z, (uint)blockThreads, 1, 1, 0, IntPtr.Zero, pointers, null), $"launch of {name}");
        }
    }
}
