using System.Runtime.InteropServices;

namespace StateX.Native;

/// <summary>
/// The process's resident memory, and a way to hand freed memory back to the system. glibc keeps the memory of freed
/// CPU tensors in its heaps; when small long-lived allocations (a carried state, TorchSharp handles awaiting
/// finalisation) land between the large temporaries of a forward pass, the next pass cannot reuse the holes and
/// the heap grows. Over a long context run in segments that looked like memory growing with length (about 1.5 GB
/// at 128K tokens for a fixture-sized model whose segment needs 0.4 GB); <c>malloc_trim</c> returns the free pages.
/// </summary>
public static partial class HostMemory
{
    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);

    static bool _trimUnavailable;

    /// <summary>Resident set size in bytes (Linux; −1 elsewhere).</summary>
    public static long ResidentBytes()
    {
        try
        {
            // statm: size resident shared ... in pages.
            var fields = File.ReadAllText("/proc/self/statm").Split(' ');
            return long.Parse(fields[1]) * Environment.SystemPageSize;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException) { return -1; }
    }

    /// <summary>Returns free heap pages to the system (glibc); false where there is no malloc_trim.</summary>
    public static bool Trim()
    {
        if (_trimUnavailable || !OperatingSystem.IsLinux()) return false;
        try { MallocTrim(0); return true; }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException) { _trimUnavailable = true; return false; }
    }
}

/// <summary>
/// Keeps the resident memory of a long CPU run near what it was after its first step: once it has grown by more than
/// a quarter (and 64 MiB), free heap pages go back to the system. Trimming costs page faults on the next step, so
/// it happens only when the heap has actually grown, not after every step. One guard per run: the run should
/// trim at its end, so that the next run's baseline is not the grown heap of this one.
/// </summary>
public sealed class HostMemoryGuard
{
    long _baseline = -1;

    public void AfterStep()
    {
        long rss = HostMemory.ResidentBytes();
        if (rss < 0) return;
        if (_baseline < 0) { _baseline = rss; return; }
        if (rss > _baseline + Math.Max(64L << 20, _baseline / 4)) HostMemory.Trim();
    }
}
