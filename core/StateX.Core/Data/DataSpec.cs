using System.Globalization;
using System.Text.RegularExpressions;

namespace StateX.Data;

/// <summary>
/// The --data string. Grammar:
/// <code>
/// spec     := single | "mix:" weighted ("," weighted)*
/// weighted := NUMBER "*" single                    (weights need not sum to 1)
/// single   := KIND ":" PATH (":" KEY "=" VALUE)*
/// KIND     := text | jsonl | parquet | tokens | npy | synth
/// PATH     := a file, a folder (searched recursively for the kind's extensions) or a glob (* ? **);
///             for synth: the generator's name
/// </code>
/// Options (all kinds): shuffle=N (shuffle buffer of N documents, default 0), order=shuffle|sorted (file order per
/// epoch, default shuffle), epochs=N (default: forever). text: split=file|line|blank (default file), chunk=CHARS.
/// jsonl: field=NAME (default text). parquet: column=NAME (default text). tokens: dtype=uint16|uint32|int32|int64
/// (default uint16), window=N. npy: window=N. synth: count=N, plus the generator's own options.
/// A PATH may itself contain ':' (C:\...); only trailing ":key=value" parts are options.
/// </summary>
public abstract record DataSpec
{
    public static readonly string[] Kinds = ["text", "jsonl", "parquet", "tokens", "npy", "synth"];

    public static DataSpec Parse(string spec)
    {
        if (string.IsNullOrWhiteSpace(spec)) throw new DataException("empty data spec (expected e.g. text:corpus/*.txt or mix:0.7*SPEC,0.3*SPEC)");
        spec = spec.Trim();
        if (spec.StartsWith("mix:", StringComparison.Ordinal))
        {
            var parts = Regex.Split(spec[4..], @",(?=[^,:*]*\*\s*[A-Za-z]+:)");
            var items = new List<(double, SourceSpec)>();
            foreach (var p in parts)
            {
                int star = p.IndexOf('*');
                if (star < 0 || !double.TryParse(p[..star], NumberStyles.Float, CultureInfo.InvariantCulture, out var w))
                    throw new DataException($"mixture part '{p}' of '{spec}' is not WEIGHT*SPEC (e.g. 0.7*text:a.txt)");
                if (!(w > 0) || double.IsInfinity(w)) throw new DataException($"mixture weight '{p[..star]}' in '{spec}' must be a positive number (WEIGHT*SPEC)");
                var inner = p[(star + 1)..].Trim();
                if (inner.StartsWith("mix:", StringComparison.Ordinal)) throw new DataException($"nested mixtures are not supported: '{p}'");
                items.Add((w, SourceSpec.ParseSingle(inner)));
            }
            return new MixSpec(items);
        }
        return SourceSpec.ParseSingle(spec);
    }

    /// <summary>The source this spec describes; <paramref name="synthetic"/> resolves synth: names (default: built-ins).</summary>
    public abstract IDataSource Build(SyntheticRegistry? synthetic = null);
}

/// <summary>One weighted list of single sources.</summary>
public sealed record MixSpec(IReadOnlyList<(double Weight, SourceSpec Source)> Parts) : DataSpec
{
    public override IDataSource Build(SyntheticRegistry? synthetic = null) =>
        new MixtureSource(Parts.Select(p => (p.Weight, p.Source.Build(synthetic))).ToList());

    public override string ToString() =>
        "mix:" + string.Join(",", Parts.Select(p => $"{p.Weight.ToString(CultureInfo.InvariantCulture)}*{p.Source}"));
}

/// <summary>One source: kind, path and options.</summary>
public sealed record SourceSpec(string Kind, string Path, IReadOnlyDictionary<string, string> Options) : DataSpec
{
    static readonly Dictionary<string, string[]> Allowed = new()
    {
        ["text"] = ["split", "chunk"],
        ["jsonl"] = ["field"],
        ["parquet"] = ["column"],
        ["tokens"] = ["dtype", "window"],
        ["npy"] = ["window"],
        ["synth"] = ["count"],
    };
    static readonly string[] Common = ["shuffle", "order", "epochs"];

    internal static SourceSpec ParseSingle(string s)
    {
        int colon = s.IndexOf(':');
        if (colon < 0) throw new DataException($"data spec '{s}' has no kind: expected KIND:PATH with KIND one of {string.Join(", ", Kinds)}");
        var kind = s[..colon].Trim().ToLowerInvariant();
        if (!Kinds.Contains(kind)) throw new DataException($"data spec '{s}': unknown kind '{kind}' (expected {string.Join(", ", Kinds)})");
        var segs = s[(colon + 1)..].Split(':').ToList();
        var opts = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        while (segs.Count > 1 && Regex.IsMatch(segs[^1], @"^\s*[A-Za-z_][A-Za-z0-9_]*\s*="))
        {
            var kv = segs[^1]; int eq = kv.IndexOf('=');
            opts[kv[..eq].Trim()] = kv[(eq + 1)..].Trim();
            segs.RemoveAt(segs.Count - 1);
        }
        var path = string.Join(":", segs).Trim();
        if (path.Length == 0) throw new DataException($"data spec '{s}' has no path");
        if (kind != "synth")
            foreach (var k in opts.Keys)
                if (!Common.Contains(k) && !Allowed[kind].Contains(k))
                    throw new DataException($"data spec '{s}': unknown option '{k}' for {kind} (allowed: {string.Join(", ", Common.Concat(Allowed[kind]))})");
        return new SourceSpec(kind, path, opts);
    }

    public override string ToString() =>
        $"{Kind}:{Path}" + string.Concat(Options.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => $":{o.Key}={o.Value}"));

    public override IDataSource Build(SyntheticRegistry? synthetic = null)
    {
        var where = ToString();
        int? epochs = SpecOptions.IntOrNull(Options, "epochs", where);
        var order = Options.GetValueOrDefault("order", "shuffle");
        if (order is not ("shuffle" or "sorted")) throw new DataException($"{where}: order must be shuffle or sorted, got '{order}'");
        int shuffle = SpecOptions.Int(Options, "shuffle", 0, where);
        IDataSource src = Kind switch
        {
            "text" => Files(["txt", "text", "md"], (p, c, pos) => new TextFileReader(p, c.Tokenizer, Split(where), SpecOptions.Int(Options, "chunk", 1 << 16, where), pos)),
            "jsonl" => Files(["jsonl", "json", "ndjson"], (p, c, pos) => new JsonlFileReader(p, c.Tokenizer, Options.GetValueOrDefault("field", "text"), pos)),
            "parquet" => Files(["parquet"], (p, c, pos) => new ParquetFileReader(p, c.Tokenizer, Options.GetValueOrDefault("column", "text"), pos)),
            "tokens" => Files(["bin"], (p, c, pos) => new TokenFileReader(p, DType(where), 0, null, SpecOptions.Int(Options, "window", 4096, where), c.Tokenizer.VocabSize, pos)),
            "npy" => Files(["npy"], (p, c, pos) =>
            {
                var (dt, off, n) = NpyHeader.Read(p);
                return new TokenFileReader(p, dt, off, n, SpecOptions.Int(Options, "window", 4096, where), c.Tokenizer.VocabSize, pos);
            }),
            "synth" => new SyntheticSource(where,
                (synthetic ?? SyntheticRegistry.Default()).Create(Path, Options.Where(o => !Common.Contains(o.Key) && o.Key != "count").ToDictionary(o => o.Key, o => o.Value)),
                SpecOptions.IntOrNull(Options, "count", where)),
            _ => throw new DataException($"unknown kind '{Kind}'"),
        };
        return shuffle > 0 ? new ShuffleBuffer(src, shuffle) : src;

        FileSource Files(string[] exts, FileSource.ReaderFactory open) =>
            new(where, FileSource.Resolve(Path, exts.Select(e => "." + e).ToArray()), open, epochs, order == "shuffle");
    }

    TextSplit Split(string where) => Options.GetValueOrDefault("split", "file") switch
    {
        "file" => TextSplit.File,
        "line" => TextSplit.Line,
        "blank" => TextSplit.Blank,
        var v => throw new DataException($"{where}: split must be file, line or blank, got '{v}'"),
    };

    TokenDType DType(string where) => Options.GetValueOrDefault("dtype", "uint16") switch
    {
        "uint16" => TokenDType.UInt16,
        "uint32" => TokenDType.UInt32,
        "int32" => TokenDType.Int32,
        "int64" => TokenDType.Int64,
        var v => throw new DataException($"{where}: dtype must be uint16, uint32, int32 or int64, got '{v}'"),
    };
}

/// <summary>Typed reads of spec options with errors naming the spec.</summary>
public static class SpecOptions
{
    public static int Int(IReadOnlyDictionary<string, string> o, string key, int fallback, string where) =>
        IntOrNull(o, key, where) ?? fallback;

    public static int? IntOrNull(IReadOnlyDictionary<string, string> o, string key, string where)
    {
        if (!o.TryGetValue(key, out var v)) return null;
        return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i) && i >= 0 ? i
            : throw new DataException($"{where}: option {key}={v} is not a non-negative integer");
    }
}
