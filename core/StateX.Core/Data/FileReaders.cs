using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using StateX.Tokenization;

namespace StateX.Data;

/// <summary>Reads one file as chunks; <see cref="Position"/> is where the next read starts (saved in the cursor).</summary>
internal interface IFileReader : IDisposable
{
    bool TryNext(out DocumentChunk chunk);
    JsonNode Position { get; }
}

/// <summary>How a plain text file divides into documents.</summary>
public enum TextSplit { File, Line, Blank }

/// <summary>
/// Plain text. split=file: the whole file is one document, read in pieces of about <c>chunkChars</c> characters
/// ending at line ends; split=line: each non-blank line; split=blank: paragraphs separated by blank lines.
/// </summary>
internal sealed class TextFileReader(string path, ITokenizer tok, TextSplit split, int chunkChars, JsonNode? pos) : IFileReader
{
    readonly LineReader _lines = new(path, pos?["offset"]?.GetValue<long>() ?? 0, pos?["line"]?.GetValue<long>() ?? 1);

    public JsonNode Position => new JsonObject { ["offset"] = _lines.Offset, ["line"] = _lines.LineNumber };

    public bool TryNext(out DocumentChunk chunk)
    {
        var sb = new StringBuilder();
        while (_lines.TryReadLine(out var line, out var nl))
        {
            switch (split)
            {
                case TextSplit.Line:
                    if (string.IsNullOrWhiteSpace(line)) continue;
                    chunk = new DocumentChunk(tok.Encode(line), true);
                    return true;
                case TextSplit.Blank:
                    if (string.IsNullOrWhiteSpace(line))
                    {
                        if (sb.Length == 0) continue;
                        chunk = new DocumentChunk(tok.Encode(sb.ToString()), true);
                        return true;
                    }
                    if (sb.Length > 0) sb.Append('\n');
                    sb.Append(line);
                    break;
                default:
                    sb.Append(line);
                    if (nl) sb.Append('\n');
                    if (sb.Length >= chunkChars)
                    {
                        chunk = new DocumentChunk(tok.Encode(sb.ToString()), false, Continues: true);
                        return true;
                    }
                    break;
            }
        }
        // End of file ends the document in progress (for split=file, even an empty tail ends it).
        if (sb.Length > 0 || (split == TextSplit.File && !_endedFile))
        {
            _endedFile = true;
            chunk = new DocumentChunk(tok.Encode(sb.ToString()), true);
            return true;
        }
        chunk = default;
        return false;
    }
    bool _endedFile;

    public void Dispose() => _lines.Dispose();
}

/// <summary>JSON Lines: one JSON object per line; the document is its string field <c>field</c>. Blank lines are skipped.</summary>
internal sealed class JsonlFileReader(string path, ITokenizer tok, string field, JsonNode? pos) : IFileReader
{
    readonly LineReader _lines = new(path, pos?["offset"]?.GetValue<long>() ?? 0, pos?["line"]?.GetValue<long>() ?? 1);

    public JsonNode Position => new JsonObject { ["offset"] = _lines.Offset, ["line"] = _lines.LineNumber };

    public bool TryNext(out DocumentChunk chunk)
    {
        while (true)
        {
            long lineNo = _lines.LineNumber;
            if (!_lines.TryReadLine(out var line, out _)) { chunk = default; return false; }
            if (string.IsNullOrWhiteSpace(line)) continue;
            string? text;
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                    throw new DataException($"{path}:{lineNo}: expected a JSON object, got {doc.RootElement.ValueKind}");
                if (!doc.RootElement.TryGetProperty(field, out var v))
                    throw new DataException($"{path}:{lineNo}: no field \"{field}\" (fields: {string.Join(", ", doc.RootElement.EnumerateObject().Select(p => p.Name))})");
                if (v.ValueKind == JsonValueKind.Null) continue;
                if (v.ValueKind != JsonValueKind.String)
                    throw new DataException($"{path}:{lineNo}: field \"{field}\" is {v.ValueKind}, expected a string");
                text = v.GetString();
            }
            catch (JsonException e) { throw new DataException($"{path}:{lineNo}: invalid JSON ({IO.JsonErrors.Brief(e)})", e); }
            chunk = new DocumentChunk(tok.Encode(text ?? ""), true);
            return true;
        }
    }

    public void Dispose() => _lines.Dispose();
}

/// <summary>Parquet: the documents are the non-null strings of column <c>column</c>; one row group in memory at a time.</summary>
internal sealed class ParquetFileReader : IFileReader
{
    readonly string _path;
    readonly ITokenizer _tok;
    readonly FileStream _fs;
    readonly Parquet.ParquetReader _reader;
    readonly Parquet.Schema.DataField _field;
    int _group, _row;
    string?[]? _values;

    public ParquetFileReader(string path, ITokenizer tok, string column, JsonNode? pos)
    {
        _path = path; _tok = tok;
        _group = pos?["group"]?.GetValue<int>() ?? 0;
        _row = pos?["row"]?.GetValue<int>() ?? 0;
        Parquet.Schema.DataField[] fields;
        try
        {
            _fs = File.OpenRead(path);
            _reader = OpenWithin(_fs, path);
            fields = _reader.Schema.GetDataFields();
        }
        // Parquet.Net parses a damaged footer with whatever exception its code meets first (index, overflow, argument,
        // Thrift errors): for a file that is not ours to fix, any of them means the same thing to the user.
        catch (Exception e) when (e is not (OutOfMemoryException or DataException))
        { throw new DataException($"{path}: not a readable Parquet file ({e.GetType().Name}: {e.Message.Split('\n')[0]})", e); }
        _field = fields.FirstOrDefault(f => f.Name == column)
            ?? throw new DataException($"{path}: no column \"{column}\" (columns: {string.Join(", ", fields.Select(f => f.Name))})");
        if (_field.ClrType.IsPrimitive)
            throw new DataException($"{path}: column \"{column}\" holds {_field.ClrType.Name}, expected strings");
    }

    /// <summary>
    /// Parquet.Net's footer parser can spin forever on a damaged footer (found by fuzzing: a 743-byte file whose
    /// parse never returned, fuzz/hangs/data). It runs on a pool thread under a deadline far above any real footer's
    /// parse; past it the file is refused. That thread cannot be stopped and is abandoned, still spinning.
    /// </summary>
    static Parquet.ParquetReader OpenWithin(FileStream fs, string path)
    {
        var deadline = TimeSpan.FromSeconds(Math.Min(300, 10 + fs.Length / (64L << 20)));
        var parse = Task.Run(() => Parquet.ParquetReader.CreateAsync(fs));
        // WhenAny, not Wait(timeout): a parse that fails in time rethrows its own exception below, not an AggregateException.
        if (Task.WhenAny(parse, Task.Delay(deadline)).GetAwaiter().GetResult() != parse)
        {
            fs.Dispose();
            throw new DataException($"{path}: not a readable Parquet file (its footer did not parse within {deadline.TotalSeconds:0} s)");
        }
        return parse.GetAwaiter().GetResult();
    }

    public JsonNode Position => new JsonObject { ["group"] = _group, ["row"] = _row };

    public bool TryNext(out DocumentChunk chunk)
    {
        while (_group < _reader.RowGroupCount)
        {
            if (_values is null)
            {
                string?[] values;
                try
                {
                    using var rg = _reader.OpenRowGroupReader(_group);
                    // A damaged footer can claim any row count; the column's values cannot outnumber the file's bits.
                    if (rg.RowCount < 0 || rg.RowCount > Math.Min(int.MaxValue, _fs.Length * 8))
                        throw new DataException($"{_path}: row group {_group} claims {rg.RowCount} rows, impossible in a {_fs.Length}-byte file");
                    values = new string?[rg.RowCount];
                    rg.ReadAsync(_field, values.AsMemory()).GetAwaiter().GetResult();
                }
                catch (Exception e) when (e is not (OutOfMemoryException or DataException))
                { throw new DataException($"{_path}: cannot read column \"{_field.Name}\" of row group {_group} as strings ({e.GetType().Name}: {e.Message.Split('\n')[0]})", e); }
                _values = values;
                if (_row > _values.Length) throw new DataException($"{_path}: cursor row {_row} is beyond row group {_group} ({_values.Length} rows); the file changed since the cursor was saved");
            }
            while (_row < _values.Length)
            {
                var s = _values[_row++];
                if (s is null) continue;
                chunk = new DocumentChunk(_tok.Encode(s), true);
                return true;
            }
            _group++; _row = 0; _values = null;
        }
        chunk = default;
        return false;
    }

    public void Dispose() { _reader.DisposeAsync().AsTask().GetAwaiter().GetResult(); _fs.Dispose(); }
}

/// <summary>Element type of a pre-tokenised file.</summary>
public enum TokenDType { UInt16, UInt32, Int32, Int64 }

/// <summary>
/// Pre-tokenised ids, little-endian, from <c>dataOffset</c> on (0 for .bin, after the header for .npy), read in
/// windows of <c>window</c> tokens. The ids are taken as they are: put end-of-document ids in the file yourself.
/// </summary>
internal sealed class TokenFileReader : IFileReader
{
    readonly string _path;
    readonly FileStream _fs;
    readonly TokenDType _dtype;
    readonly int _itemSize, _window, _vocab;
    readonly long _dataOffset, _count;
    long _index;

    public TokenFileReader(string path, TokenDType dtype, long dataOffset, long? count, int window, int vocabSize, JsonNode? pos)
    {
        _path = path; _dtype = dtype; _dataOffset = dataOffset; _window = window; _vocab = vocabSize;
        _itemSize = ItemSize(dtype);
        try { _fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16); }
        catch (IOException e) { throw new DataException($"{path}: cannot open ({e.Message})", e); }
        long bytes = _fs.Length - dataOffset;
        if (count is long c)
        {
            if (bytes < c * _itemSize) throw new DataException($"{path}: header says {c} tokens of {dtype} ({c * _itemSize} bytes) but only {bytes} bytes follow it");
            _count = c;
        }
        else
        {
            if (bytes % _itemSize != 0) throw new DataException($"{path}: size {bytes} bytes is not a multiple of {_itemSize} ({dtype}); wrong dtype?");
            _count = bytes / _itemSize;
        }
        _index = pos?["token"]?.GetValue<long>() ?? 0;
        if (_index > _count) throw new DataException($"{path}: cursor token {_index} is beyond the end ({_count} tokens); the file changed since the cursor was saved");
    }

    public static int ItemSize(TokenDType d) => d switch { TokenDType.UInt16 => 2, TokenDType.Int64 => 8, _ => 4 };

    public JsonNode Position => new JsonObject { ["token"] = _index };

    public bool TryNext(out DocumentChunk chunk)
    {
        if (_index >= _count) { chunk = default; return false; }
        int n = (int)Math.Min(_window, _count - _index);
        var raw = new byte[n * _itemSize];
        _fs.Position = _dataOffset + _index * _itemSize;
        _fs.ReadExactly(raw);
        var ids = new int[n];
        for (int i = 0; i < n; i++)
        {
            var span = raw.AsSpan(i * _itemSize, _itemSize);
            long v = _dtype switch
            {
                TokenDType.UInt16 => System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(span),
                TokenDType.UInt32 => System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(span),
                TokenDType.Int32 => System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(span),
                _ => System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(span),
            };
            if (v < 0 || v >= _vocab)
                throw new DataException($"{_path}: token {v} at index {_index + i} (byte offset {_dataOffset + (_index + i) * _itemSize}) is outside the vocabulary (size {_vocab}); wrong dtype or tokenizer?");
            ids[i] = (int)v;
        }
        _index += n;
        chunk = new DocumentChunk(ids, false);
        return true;
    }

    public void Dispose() => _fs.Dispose();
}

/// <summary>The header of a NumPy .npy file holding a 1-D array of token ids.</summary>
internal static class NpyHeader
{
    public static (TokenDType DType, long DataOffset, long Count) Read(string path)
    {
        using var fs = File.OpenRead(path);
        var pre = new byte[10];
        if (fs.Read(pre) < 10 || pre[0] != 0x93 || Encoding.ASCII.GetString(pre, 1, 5) != "NUMPY")
            throw new DataException($"{path}: not a .npy file (no \\x93NUMPY magic at offset 0)");
        int major = pre[6];
        long headerLen; int lenBytes;
        if (major == 1) { headerLen = BitConverter.ToUInt16(pre, 8); lenBytes = 2; }
        else if (major is 2 or 3)
        {
            // Found by fuzzing: a 10-byte file of version 2 ended inside its 4-byte length (EndOfStreamException).
            if (fs.Length < 12) throw new DataException($"{path}: .npy file of {fs.Length} bytes ends inside its 4-byte header length");
            var b = new byte[4]; fs.Position = 8; fs.ReadExactly(b);
            headerLen = BitConverter.ToUInt32(b); lenBytes = 4;
        }
        else throw new DataException($"{path}: .npy format version {major} is not supported (1, 2 or 3)");
        long start = 8 + lenBytes;
        if (fs.Length < start || headerLen > fs.Length - start)
            throw new DataException($"{path}: .npy header length {headerLen} runs past the end of the {fs.Length}-byte file");
        var hb = new byte[headerLen]; fs.Position = start; fs.ReadExactly(hb);
        var header = Encoding.Latin1.GetString(hb);
        string? descr = Match(header, @"'descr'\s*:\s*'([^']*)'");
        string? fortran = Match(header, @"'fortran_order'\s*:\s*(True|False)");
        string? shape = Match(header, @"'shape'\s*:\s*\(([^)]*)\)");
        if (descr is null || shape is null) throw new DataException($"{path}: .npy header at byte 0 is malformed: {Printable(header)}");
        if (fortran == "True") throw new DataException($"{path}: Fortran-ordered arrays are not supported");
        var dtype = descr switch
        {
            "<u2" => TokenDType.UInt16,
            "<u4" => TokenDType.UInt32,
            "<i4" => TokenDType.Int32,
            "<i8" => TokenDType.Int64,
            _ => throw new DataException($"{path}: dtype '{Printable(descr)}' is not supported for token ids (<u2, <u4, <i4 or <i8: little-endian uint16, uint32, int32, int64)"),
        };
        var dims = shape.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (dims.Length != 1) throw new DataException($"{path}: expected a 1-D array of token ids, got shape ({Printable(shape)})");
        if (!long.TryParse(dims[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var count))
            throw new DataException($"{path}: .npy shape ({Printable(shape)}) is not a count of tokens");
        return (dtype, start + headerLen, count);
    }

    /// <summary>Header text for a message: control characters shown as '?', at most 80 characters (a damaged header
    /// holds anything, line breaks included, and the message must stay one line).</summary>
    static string Printable(string s)
    {
        var t = new string(s.Trim().Select(c => char.IsControl(c) ? '?' : c).ToArray());
        return t.Length > 80 ? t[..80] + "…" : t;
    }

    static string? Match(string s, string pattern)
    {
        var m = System.Text.RegularExpressions.Regex.Match(s, pattern);
        return m.Success ? m.Groups[1].Value : null;
    }
}
