using System.Globalization;
using StateX.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Models;

/// <summary>
/// One group of parameters a config describes: what it is, how many parameters (a double, because an absurd config
/// overflows a long before it is refused), and the config keys with the values that set its size.
/// </summary>
public sealed record ParameterTerm(string What, double Count, string Keys);

/// <summary>
/// Sizes a model from its config before any tensor is allocated, and refuses one the machine cannot hold: without it
/// a config asking for <c>hidden_size: 1000000000</c> reaches libtorch's allocator, whose error names no key.
/// </summary>
public static class ParameterBudget
{
    /// <summary>Beyond this nothing is built whatever the machine says it has (16 TiB of parameters).</summary>
    public const long AbsurdBytes = 16L << 40;

    public static double Parameters(IEnumerable<ParameterTerm> terms) => terms.Sum(t => t.Count);

    /// <summary>
    /// Fails with a <see cref="ConfigException"/> when the parameters of <paramref name="terms"/> need more bytes than
    /// the host's memory in float32 (every model is built there first, in float32) or, for a CUDA
    /// <paramref name="device"/>, than that device's memory in <paramref name="dtype"/>. The message names the file,
    /// the bytes needed, the limit, and the keys of the largest term.
    /// </summary>
    public static void Check(string path, IReadOnlyList<ParameterTerm> terms, Device? device = null, ScalarType? dtype = null)
    {
        double parameters = Parameters(terms);
        var (hostLimit, host) = HostLimit();
        Refuse(path, terms, parameters, ScalarType.Float32, hostLimit, host);
        if (device is { type: DeviceType.CUDA } && DeviceLimit(device) is { } d)
            Refuse(path, terms, parameters, dtype ?? ScalarType.Float32, d.Bytes, d.What);
    }

    static void Refuse(string path, IReadOnlyList<ParameterTerm> terms, double parameters, ScalarType dtype, long limit, string where)
    {
        double bytes = parameters * ElementSize(dtype);
        if (bytes <= limit && !double.IsNaN(bytes)) return;
        var largest = terms.OrderByDescending(t => t.Count).First();
        throw new ConfigException(string.Create(CultureInfo.InvariantCulture,
            $"{path}: the model needs {FormatBytes(bytes)} ({parameters:N0} parameters in {dtype.ToString().ToLowerInvariant()}), more than {where} ({FormatBytes(limit)}); the largest part is {largest.What}: {largest.Keys}"));
    }

    /// <summary>The host's memory as the runtime sees it (container limits included), capped at <see cref="AbsurdBytes"/>.</summary>
    public static (long Bytes, string What) HostLimit()
    {
        long total = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return total > 0 && total < AbsurdBytes ? (total, "this machine's memory") : (AbsurdBytes, "the bound StateX sets on any model");
    }

    static (long Bytes, string What)? DeviceLimit(Device device)
    {
        var devices = Native.CudaDevices.List();
        int index = device.index < 0 ? 0 : device.index;
        return index < devices.Count ? (devices[index].TotalMemoryBytes, $"the memory of cuda:{index}") : null;
    }

    static int ElementSize(ScalarType t) => t switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float16 or ScalarType.BFloat16 => 2,
        _ => 4,
    };

    public static string FormatBytes(double bytes)
    {
        string[] units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        int u = 0;
        while (bytes >= 1024 && u < units.Length - 1) { bytes /= 1024; u++; }
        return u == 0 ? string.Create(CultureInfo.InvariantCulture, $"{bytes:0} bytes") : string.Create(CultureInfo.InvariantCulture, $"{bytes:0.#} {units[u]}");
    }
}
