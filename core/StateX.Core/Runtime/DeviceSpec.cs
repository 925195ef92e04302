using StateX.Native;
using TorchSharp;

namespace StateX;

/// <summary>
/// The one place device strings are parsed: <c>auto</c> (CUDA when available), <c>cpu</c>, <c>cuda</c>, <c>cuda:N</c>.
/// </summary>
public sealed record DeviceSpec(string Kind, int? Index)
{
    public static readonly DeviceSpec Auto = new("auto", null);
    public static readonly DeviceSpec Cpu = new("cpu", null);

    public static DeviceSpec Parse(string? text)
    {
        var t = (text ?? "auto").Trim().ToLowerInvariant();
        if (t is "" or "auto") return Auto;
        if (t == "cpu") return Cpu;
        if (t == "cuda" || t == "gpu") return new("cuda", null);
        if (t.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(t[5..], out var i) && i >= 0) return new("cuda", i);
        throw new ArgumentException($"unknown device '{text}': expected auto, cpu, cuda or cuda:N");
    }

    /// <summary>Resolves to a TorchSharp device, initialising the native runtime first.</summary>
    public torch.Device Resolve()
    {
        NativeRuntime.EnsureInitialized();
        switch (Kind)
        {
            case "cpu": return torch.CPU;
            case "auto": return torch.cuda.is_available() ? torch.CUDA : torch.CPU;
            default:
                if (!torch.cuda.is_available())
                    throw new InvalidOperationException($"device '{this}' requested but CUDA is not available with libtorch from {NativeRuntime.Info.LibTorchDirectory} (set STATEX_LIBTORCH to torch/lib of a CUDA PyTorch install)");
                var n = torch.cuda.device_count();
                if (Index is { } i && i >= n)
                    throw new InvalidOperationException($"device '{this}' requested but only {n} CUDA device(s) are visible");
                return new torch.Device(DeviceType.CUDA, Index ?? 0);
        }
    }

    public override string ToString() => Index is { } i ? $"{Kind}:{i}" : Kind;
}
