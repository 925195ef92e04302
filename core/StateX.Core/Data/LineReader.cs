using System.Text;

namespace StateX.Data;

/// <summary>
/// Reads UTF-8 lines from a file while knowing the byte offset and the number of the next line, so that a
/// reader can be reopened exactly where it stopped and errors can name the line.
/// </summary>
internal sealed class LineReader : IDisposable
{
    readonly FileStream _fs;
    byte[] _buf = new byte[1 << 16];
    int _start, _end;
    long _bufFileOffset;
    bool _eof;

    public string Path { get; }
    /// <summary>Byte offset of the next unread line.</summary>
    public long Offset => _bufFileOffset + _start;
    /// <summary>1-based number of the next unread line.</summary>
    public long LineNumber { get; private set; }

    public LineReader(string path, long offset = 0, long lineNumber = 1)
    {
        Path = path;
        try { _fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan); }
        catch (IOException e) { throw new DataException($"{path}: cannot open ({e.Message})", e); }
        catch (UnauthorizedAccessException e) { throw new DataException($"{path}: cannot open ({e.Message})", e); }
        if (offset > _fs.Length) throw new DataException($"{path}: cursor offset {offset} is beyond the end of the file ({_fs.Length} bytes); the file changed since the cursor was saved");
        _fs.Position = offset;
        _bufFileOffset = offset;
        LineNumber = lineNumber;
        if (offset == 0)
        {
            Fill();
            if (_end >= 3 && _buf[0] == 0xEF && _buf[1] == 0xBB && _buf[2] == 0xBF) _start = 3; // UTF-8 BOM
        }
    }

    void Fill()
    {
        if (_start > 0)
        {
            Buffer.BlockCopy(_buf, _start, _buf, 0, _end - _start);
            _bufFileOffset += _start; _end -= _start; _start = 0;
        }
        if (_end == _buf.Length) Array.Resize(ref _buf, _buf.Length * 2);
        int n = _fs.Read(_buf, _end, _buf.Length - _end);
        if (n == 0) _eof = true;
        _end += n;
    }

    /// <summary>The next line without its "\n" / "\r\n"; <paramref name="newline"/> says whether one ended it.</summary>
    public bool TryReadLine(out string line, out bool newline)
    {
        int scanFrom = _start;
        while (true)
        {
            int nl = Array.IndexOf(_buf, (byte)'\n', scanFrom, _end - scanFrom);
            if (nl >= 0)
            {
                int len = nl - _start;
                if (len > 0 && _buf[nl - 1] == (byte)'\r') len--;
                line = Encoding.UTF8.GetString(_buf, _start, len);
                _start = nl + 1; newline = true; LineNumber++;
                return true;
            }
            if (_eof)
            {
                if (_end > _start)
                {
                    line = Encoding.UTF8.GetString(_buf, _start, _end - _start);
                    _start = _end; newline = false; LineNumber++;
                    return true;
                }
                line = ""; newline = false;
                return false;
            }
            // Fill moves the unread bytes to the front: resume the scan where it stopped.
            int shift = _start, scanned = _end;
            Fill();
            scanFrom = scanned - shift;
        }
    }

    public void Dispose() => _fs.Dispose();
}
