using System.Runtime.InteropServices;
using System.Text;

namespace StateX.Native;

/// <summary>A CUDA device as the driver reports it.</summary>
public sealed record CudaDeviceInfo(int Index, string Name, long TotalMemoryBytes);

/// <summary>
/// Device names and memory straight from the CUDA driver (libcuda.so.1), which TorchSharp does not expose.
/// Returns nothing when there is no driver.
/// </summary>
public static partial class CudaDevices
{
    [LibraryImport("libcuda.so.1")] private static partial int cuInit(uint flags);
    [LibraryImport("libcuda.so.1")] private static partial int cuDeviceGetCount(out int count);
    [LibraryImport("libcuda.so.1")] private static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport("libcuda.so.1")] private static unsafe partial int cuDeviceGetName(byte* name, int len, int device);
    [LibraryImport("libcuda.so.1", EntryPoint = "cuDeviceTotalMem_v2")] private static partial int cuDeviceTotalMem(out nuint bytes, int device);

    [LibraryImport("libcuda.so.1", EntryPoint = "cuMemGetInfo_v2")] private static partial int cuMemGetInfo(out nuint free, out nuint total);

    /// <summary>
    /// Device memory in use on the current thread's CUDA context (every process's allocations, and libtorch's cached
    /// blocks): an upper bound on what this process's tensors occupy. -1 when it cannot be read.
    /// </summary>
    public static long MemoryInUse()
    {
        try { return cuMemGetInfo(out var free, out var total) == 0 ? (long)(total - free) : -1; }
        catch (DllNotFoundException) { return -1; }
        catch (EntryPointNotFoundException) { return -1; }
    }

    public static unsafe IReadOnlyList<CudaDeviceInfo> List()
    {
        try
        {
            if (cuInit(0) != 0 || cuDeviceGetCount(out var n) != 0) return [];
            var list = new List<CudaDeviceInfo>();
            var buf = new byte[256];
            for (int i = 0; i < n; i++)
            {
                if (cuDeviceGet(out var dev, i) != 0) continue;
                string name;
                fixed (byte* p = buf) name = cuDeviceGetName(p, buf.Length, dev) == 0 ? Encoding.ASCII.GetString(buf, 0, Array.IndexOf(buf, (byte)0)) : "?";
                long mem = cuDeviceTotalMem(out var bytes, dev) == 0 ? (long)bytes : -1;
                list.Add(new CudaDeviceInfo(i, name, mem));
            }
            return list;
        }
        catch (DllNotFoundException) { return []; }
        catch (EntryPointNotFoundException) { return []; }
    }
}
