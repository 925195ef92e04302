using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace StateX.IO;

/// <summary>Raised for any malformed safetensors input; the message names the file and, where it applies, the tensor.</summary>
public sealed class SafeTensorsException(string message) : Exception(message);

/// <summary>One entry of a safetensors header.</summary>
public sealed record SafeTensorInfo(string Name, string DType, long[] Shape, long Begin, long End)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// Reads a .safetensors file through a memory map: each tensor is copied once, from the page cache into
/// the tensor's own memory, so a multi-gigabyte checkpoint never passes through managed arrays.
/// </summary>
public sealed class SafeTensorsReader : IDisposable
{
    const long MaxHeader = 100L << 20;
    readonly MemoryMappedFile? _map;
    readonly MemoryMappedViewAccessor? _view;
    readonly long _dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public static readonly IReadOnlyDictionary<string, (ScalarType Type, int Size)> DTypes = new Dictionary<string, (ScalarType, int)>
    {
        ["F64"] = (ScalarType.Float64, 8),
        ["F32"] = (ScalarType.Float32, 4),
        ["F16"] = (ScalarType.Float16, 2),
        ["BF16"] = (ScalarType.BFloat16, 2),
        ["I64"] = (ScalarType.Int64, 8),
        ["I32"] = (ScalarType.Int32, 4),
        ["I16"] = (ScalarType.Int16, 2),
        ["I8"] = (ScalarType.Int8, 1),
        ["U8"] = (ScalarType.Byte, 1),
        ["BOOL"] = (ScalarType.Bool, 1),
    };

    public static string DTypeName(ScalarType t) =>
        DTypes.FirstOrDefault(kv => kv.Value.Type == t).Key ?? throw new SafeTensorsException($"dtype {t} cannot be stored in safetensors");

    public SafeTensorsReader(string path)
    {
        Path = path;
        if (!File.Exists(path)) throw new FileNotFoundException($"safetensors file not found: {path}", path);
        long length = new FileInfo(path).Length;
        if (length < 8) throw new SafeTensorsException($"{path}: file is {length} bytes, too short for a safetensors header");
        Span<byte> lenBytes = stackalloc byte[8];
        byte[] header;
        using (var fs = File.OpenRead(path))
        {
            fs.ReadExactly(lenBytes);
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
            if (n == 0 || n > MaxHeader || (long)n > length - 8)
                throw new SafeTensorsException($"{path}: corrupt header: declared header length {n} does not fit a {length}-byte file");
            header = new byte[n];
            fs.ReadExactly(header);
        }
        _dataStart = 8 + header.Length;
        long dataLength = length - _dataStart;

        JsonObject root;
        try { root = JsonErrors.Parse(Encoding.UTF8.GetString(header).TrimEnd(' ', '\0')) as JsonObject ?? throw new JsonException("header is not a JSON object"); }
        catch (JsonException e) { throw new SafeTensorsException($"{path}: corrupt header: {JsonErrors.Brief(e)}"); }

        var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        var meta = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, node) in root)
        {
            if (name == "__metadata__")
            {
                if (node is JsonObject m) foreach (var (k, v) in m) meta[k] = v?.ToString() ?? "";
                continue;
            }
            tensors[name] = ParseEntry(path, name, node, dataLength);
        }
        Tensors = tensors;
        Metadata = meta;
        if (dataLength > 0)
        {
            _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        }
    }

    static SafeTensorInfo ParseEntry(string path, string name, JsonNode? node, long dataLength)
    {
        try
        {
            var o = node as JsonObject ?? throw new SafeTensorsException("entry is not an object");
            var dtype = o["dtype"]?.GetValue<string>() ?? throw new SafeTensorsException("missing dtype");
            if (!DTypes.TryGetValue(dtype, out var dt)) throw new SafeTensorsException($"unknown dtype '{dtype}'");
            var shape = (o["shape"] as JsonArray ?? throw new SafeTensorsException("missing shape")).Select(x => x!.GetValue<long>()).ToArray();
            if (shape.Any(d => d < 0)) throw new SafeTensorsException($"negative dimension in shape [{string.Join(", ", shape)}]");
            var offs = (o["data_offsets"] as JsonArray ?? throw new SafeTensorsException("missing data_offsets")).Select(x => x!.GetValue<long>()).ToArray();
            if (offs.Length != 2 || offs[0] < 0 || offs[1] < offs[0] || offs[1] > dataLength)
                throw new SafeTensorsException($"data_offsets [{string.Join(", ", offs)}] out of range (data section is {dataLength} bytes)");
            var info = new SafeTensorInfo(name, dtype, shape, offs[0], offs[1]);
            if (info.ElementCount * dt.Size != offs[1] - offs[0])
                throw new SafeTensorsException($"shape [{string.Join(", ", shape)}] of {dtype} needs {info.ElementCount * dt.Size} bytes but data_offsets span {offs[1] - offs[0]}");
            return info;
        }
        catch (SafeTensorsException e) { throw new SafeTensorsException($"{path}: tensor '{name}': {e.Message}"); }
        catch (Exception e) when (e is InvalidOperationException or FormatException or JsonException)
        { throw new SafeTensorsException($"{path}: tensor '{name}': malformed entry ({e.Message})"); }
    }

    public bool Contains(string name) => Tensors.ContainsKey(name);

    /// <summary>
    /// Loads one tensor (on the CPU in its stored dtype, then converted). With <paramref name="expectedShape"/>,
    /// a mismatch is an error naming the file, tensor and both shapes.
    /// </summary>
    public Tensor Load(string name, long[]? expectedShape = null, ScalarType? dtype = null, Device? device = null)
    {
        if (!Tensors.TryGetValue(name, out var info))
            throw new SafeTensorsException($"{Path}: tensor '{name}' not found");
        if (expectedShape is not null && !expectedShape.SequenceEqual(info.Shape))
            throw new SafeTensorsException($"{Path}: tensor '{name}' has shape [{string.Join(", ", info.Shape)}], expected [{string.Join(", ", expectedShape)}]");
        var t = empty(info.Shape, DTypes[info.DType].Type);
        long n = info.End - info.Begin;
        if (n > 0)
        {
            unsafe
            {
                byte* basePtr = null;
                _view!.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
                try
                {
                    using var src = new UnmanagedMemoryStream(basePtr + _view.PointerOffset + _dataStart + info.Begin, n);
                    t.ReadBytesFromStream(src, 1 << 20);
                }
                finally { _view.SafeMemoryMappedViewHandle.ReleasePointer(); }
            }
        }
        if (dtype is { } d && d != t.dtype) { var c = t.to_type(d); t.Dispose(); t = c; }
        if (device is not null && device.type != DeviceType.CPU) { var c = t.to(device); t.Dispose(); t = c; }
        return t;
    }

    public void Dispose()
    {
        _view?.Dispose();
        _map?.Dispose();
    }
}

/// <summary>Writes safetensors atomically (<see cref="AtomicFile"/>), streaming each tensor's bytes.</summary>
public static class SafeTensorsWriter
{
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        var header = new JsonObject();
        if (metadata is { Count: > 0 })
        {
            var m = new JsonObject();
            foreach (var (k, v) in metadata) m[k] = v;
            header["__metadata__"] = m;
        }
        long offset = 0;
        foreach (var (name, t) in list)
        {
            long n = t.numel() * t.element_size();
            header[name] = new JsonObject
            {
                ["dtype"] = SafeTensorsReader.DTypeName(t.dtype),
                ["shape"] = new JsonArray(t.shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + n),
            };
            offset += n;
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int pad = (8 - json.Length % 8) % 8;   // the format aligns the data section to 8 bytes with spaces
        AtomicFile.Write(path, fs =>
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)(json.Length + pad));
            fs.Write(len);
            fs.Write(json);
            for (int i = 0; i < pad; i++) fs.WriteByte((byte)' ');
            foreach (var (_, t) in list)
            {
                using var c = t.device_type == DeviceType.CPU ? t.detach().contiguous() : t.detach().cpu().contiguous();
                c.WriteBytesToStream(fs, 1 << 20);
            }
        });
    }
}
