using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace StateX.Data;

/// <summary>
/// Files of one kind (a file, a folder, or a glob with * ? **) read one after another, epoch after epoch; each
/// epoch visits the files in an order shuffled by the source's seed and the epoch number (or sorted order).
/// </summary>
public sealed class FileSource : IDataSource
{
    internal delegate IFileReader ReaderFactory(string path, SourceContext ctx, JsonNode? position);

    readonly string _spec;
    readonly ReaderFactory _open;
    public IReadOnlyList<string> Files { get; }
    /// <summary>Epochs to read; null reads forever.</summary>
    public int? Epochs { get; }
    public bool ShuffleFiles { get; }

    internal FileSource(string spec, IReadOnlyList<string> files, ReaderFactory open, int? epochs, bool shuffleFiles)
    {
        _spec = spec; Files = files; _open = open; Epochs = epochs; ShuffleFiles = shuffleFiles;
    }

    public string Describe() => _spec;

    public IDocumentStream Open(SourceContext context, JsonNode? state) => new Stream(this, context, state);

    /// <summary>Files a path, folder or glob names, sorted; folders are searched recursively for <paramref name="extensions"/>.</summary>
    public static IReadOnlyList<string> Resolve(string pattern, params string[] extensions)
    {
        if (pattern.IndexOfAny(['*', '?']) < 0)
        {
            if (File.Exists(pattern)) return [pattern];
            if (Directory.Exists(pattern))
            {
                var found = Directory.EnumerateFiles(pattern, "*", SearchOption.AllDirectories)
                    .Where(f => extensions.Length == 0 || extensions.Any(e => f.EndsWith(e, StringComparison.OrdinalIgnoreCase)))
                    .Order(StringComparer.Ordinal).ToArray();
                return found.Length > 0 ? found
                    : throw new DataException($"{pattern}: folder holds no {string.Join("/", extensions)} files");
            }
            throw new DataException($"{pattern}: no such file or folder");
        }
        // The fixed folder before the first wildcard, then a regex for the rest.
        var norm = pattern.Replace('\\', '/');
        int firstWild = norm.IndexOfAny(['*', '?']);
        int slash = norm.LastIndexOf('/', firstWild);
        var root = slash < 0 ? "." : (slash == 0 ? "/" : norm[..slash]);
        var rest = slash < 0 ? norm : norm[(slash + 1)..];
        var rx = new Regex("^" + Regex.Escape(rest).Replace(@"\*\*/", "(.*/)?").Replace(@"\*\*", ".*").Replace(@"\*", "[^/]*").Replace(@"\?", "[^/]") + "$");
        if (!Directory.Exists(root)) throw new DataException($"{pattern}: folder '{root}' not found");
        var files = Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Where(f => rx.IsMatch(Path.GetRelativePath(root, f).Replace('\\', '/')))
            .Select(f => slash < 0 ? Path.GetRelativePath(".", f) : f)
            .Order(StringComparer.Ordinal).ToArray();
        return files.Length > 0 ? files : throw new DataException($"{pattern}: no files match");
    }

    sealed class Stream : IDocumentStream
    {
        readonly FileSource _src;
        readonly SourceContext _ctx;
        int _epoch, _fileIndex;
        int[] _order;
        IFileReader? _reader;
        // Whether the current epoch began at its first file (not mid-way, from a cursor) and has yielded anything:
        // a whole pass over files holding no document would otherwise loop for ever (found by fuzzing: an empty
        // .jsonl file made the loader hang).
        bool _wholeEpoch, _yielded;

        public Stream(FileSource src, SourceContext ctx, JsonNode? state)
        {
            _src = src; _ctx = ctx;
            _epoch = state?["epoch"]?.GetValue<int>() ?? 0;
            _fileIndex = state?["file"]?.GetValue<int>() ?? 0;
            _order = OrderFor(_epoch);
            _wholeEpoch = _fileIndex == 0 && state?["pos"] is null;
            if (state?["pos"] is JsonNode pos && _fileIndex < _order.Length)
            {
                var expect = state["path"]?.GetValue<string>();
                var path = src.Files[_order[_fileIndex]];
                if (expect is not null && expect != path)
                    throw new DataException($"data cursor expects file '{expect}' at position {_fileIndex} of epoch {_epoch} but the source now gives '{path}'; the set of files changed since the cursor was saved");
                _reader = src._open(path, ctx, pos.DeepClone());
            }
        }

        int[] OrderFor(int epoch)
        {
            var order = Enumerable.Range(0, _src.Files.Count).ToArray();
            if (_src.ShuffleFiles) new Rng(Rng.Derive(_ctx.Seed, epoch)).Shuffle(order);
            return order;
        }

        public bool TryNext(out DocumentChunk chunk)
        {
            while (true)
            {
                if (_src.Epochs is int e && _epoch >= e) { chunk = default; return false; }
                _reader ??= _src._open(_src.Files[_order[_fileIndex]], _ctx, null);
                if (_reader.TryNext(out chunk)) { _yielded = true; return true; }
                _reader.Dispose(); _reader = null;
                if (++_fileIndex >= _order.Length)
                {
                    if (_wholeEpoch && !_yielded)
                        throw new DataException($"{_src._spec}: a whole pass over its {_order.Length} file(s) gave no document (empty files?)");
                    _fileIndex = 0; _epoch++; _order = OrderFor(_epoch); _wholeEpoch = true; _yielded = false;
                }
            }
        }

        public JsonNode SaveState()
        {
            var o = new JsonObject { ["epoch"] = _epoch, ["file"] = _fileIndex };
            if (_reader is not null) { o["path"] = _src.Files[_order[_fileIndex]]; o["pos"] = _reader.Position; }
            return o;
        }

        public void Dispose() => _reader?.Dispose();
    }
}
