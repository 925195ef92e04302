using System.Runtime.InteropServices;

namespace StateX.Native;

/// <summary>dlopen with RTLD_GLOBAL, which NativeLibrary.Load does not offer.</summary>
internal static partial class NativeLoader
{
    const int RtldNow = 0x2, RtldGlobal = 0x100;

    [LibraryImport("libc", EntryPoint = "dlopen", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr DlOpen(string path, int flags);

    [LibraryImport("libc", EntryPoint = "dlerror")]
    private static partial IntPtr DlError();

    public static IntPtr LoadGlobal(string path)
    {
        var h = DlOpen(path, RtldNow | RtldGlobal);
        if (h == IntPtr.Zero)
            throw new DllNotFoundException($"could not load {path}: {Marshal.PtrToStringUTF8(DlError())}");
        return h;
    }

    public static IntPtr Load(string path)
    {
        try { return NativeLibrary.Load(path); }
        catch (DllNotFoundException e) { throw new DllNotFoundException($"could not load {path}: {e.Message}", e); }
    }
}
