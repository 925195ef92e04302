using System.Text;
using StateX.Data;
using StateX.Gla;
using StateX.Gsa;
using StateX.IO;
using StateX.Mamba2;
using StateX.Models;
using StateX.Power;
using StateX.Tokenization;
using StateX.Training;

namespace StateX.Fuzz;

/// <summary>
/// The readers of files a user hands StateX, each fed one fuzzed input. A reader may refuse an input, but only in
/// the way a user can act on: a one-line message naming the file. Anything else (a NullReferenceException, an
/// index out of range, a JSON or cast error that names no file, a multi-line native error) is a finding, raised as
/// <see cref="FuzzFinding"/>, which is what the fuzzer (and the corpus-replay test) counts as a crash.
/// </summary>
public static class FuzzTargets
{
    public static readonly IReadOnlyList<string> Names = ["safetensors", "config", "tokenizer", "data", "sweep", "checkpoint"];

    /// <summary>Runs <paramref name="target"/> on <paramref name="input"/> in <paramref name="work"/> (a scratch folder it empties).</summary>
    public static void Run(string target, byte[] input, string work)
    {
        if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
        Directory.CreateDirectory(work);
        Action<string> run = target switch
        {
            "safetensors" => dir => SafeTensorsTarget(Write(dir, "fuzz.safetensors", input)),
            "config" => dir => ConfigTarget(Write(dir, "config.json", input)),
            "tokenizer" => dir => TokenizerTarget(Path.GetDirectoryName(Write(dir, "tokenizer.json", input))!),
            "data" => dir => DataTarget(dir, input),
            "sweep" => dir => StateX.SweepFile.load(Write(dir, "fuzz.sweep.json", input)),
            "checkpoint" => dir => CheckpointTarget(dir, input),
            _ => throw new ArgumentException($"unknown fuzz target '{target}' (known: {string.Join(", ", Names)})"),
        };
        try { run(work); }
        catch (Exception e) when (IsClean(e, work)) { }
        catch (Exception e) { throw new FuzzFinding(target, e); }
    }

    /// <summary>A refusal a user can act on: one line naming the input's file or folder, of no bug-revealing type.</summary>
    public static bool IsClean(Exception e, string work) =>
        e is not (NullReferenceException or IndexOutOfRangeException or ArgumentOutOfRangeException or ArgumentNullException
                  or InvalidCastException or KeyNotFoundException or OverflowException or OutOfMemoryException
                  or StackOverflowException or AccessViolationException or DivideByZeroException or NotImplementedException)
        && e.Message.Contains(work, StringComparison.Ordinal)
        && !e.Message.Contains('\n');

    static string Write(string dir, string name, byte[] input)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllBytes(path, input);
        return path;
    }

    static void SafeTensorsTarget(string path)
    {
        NativeRuntime.EnsureInitialized();
        using var r = new SafeTensorsReader(path);
        foreach (var name in r.Tensors.Keys.Take(16))
        {
            using var t = r.Load(name);
        }
    }

    /// <summary>Every dialect reads the file; a config that reads is sized (never built: that is the point of sizing).</summary>
    static void ConfigTarget(string path)
    {
        var families = new Func<ConfigJson, IReadOnlyList<ParameterTerm>>[]
        {
            c => GlaConfig.FromJson(c).ParameterTerms(),
            c => Mamba2Config.FromHuggingFace(c).ParameterTerms(),
            c => Mamba2Config.FromMambaSsm(c).ParameterTerms(),
            c => GsaConfig.FromJson(c).ParameterTerms(),
            c => PowerConfig.FromJson(c).ParameterTerms(),
        };
        Exception? first = null;
        foreach (var read in families)
        {
            try { ParameterBudget.Check(path, read(ConfigJson.Load(path))); }
            catch (Exception e) when (IsClean(e, Path.GetDirectoryName(path)!)) { first ??= e; }
        }
        if (first is not null) throw first;
    }

    static void TokenizerTarget(string dir)
    {
        var tok = Tokenizers.Load(dir);
        var ids = tok.Encode("Hello, world! ünïcødé 123\n\tend", addSpecialTokens: true);
        foreach (var id in ids) if (id < 0 || id >= tok.VocabSize) throw new InvalidOperationException($"encode produced id {id} outside the vocabulary of {tok.VocabSize} (no file named: a finding)");
        tok.Decode(ids, skipSpecialTokens: false);
    }

    /// <summary>The first byte picks the kind (text, jsonl, parquet, tokens, npy); the rest is the file.</summary>
    static void DataTarget(string dir, byte[] input)
    {
        if (input.Length == 0) return;
        string[] kinds = ["text", "jsonl", "parquet", "tokens", "npy"];
        string[] extensions = ["txt", "jsonl", "parquet", "bin", "npy"];
        int k = input[0] % kinds.Length;
        var path = Write(dir, $"fuzz.{extensions[k]}", input[1..]);
        var spec = DataSpec.Parse(kinds[k] == "tokens" ? $"tokens:{path}:dtype=uint16" : $"{kinds[k]}:{path}");
        using var loader = DataLoader.Open(spec, new ByteTokenizer(), new LoaderOptions(16, 2));
        for (int i = 0; i < 8 && loader.Next() is not null; i++) { }
    }

    /// <summary>A run folder as a resume reads it: the first byte picks the file, the rest is its content.</summary>
    static void CheckpointTarget(string dir, byte[] input)
    {
        if (input.Length == 0) return;
        var run = new RunFolder(Path.Combine(dir, "run"));
        var ck = Path.Combine(run.CheckpointsDirectory, CheckpointStore.FolderName(3));
        Directory.CreateDirectory(ck);
        File.WriteAllText(Path.Combine(ck, "trainer.json"), "{\"step\": 3}");
        var body = input[1..];
        switch (input[0] % 3)
        {
            case 0:
                File.WriteAllBytes(Path.Combine(ck, CheckpointStore.Manifest), body);
                new CheckpointStore(run.Root, warn: _ => { }).LatestValid();
                break;
            case 1:
                File.WriteAllBytes(run.MetricsPath, body);
                run.TruncateAfter(2);
                break;
            default:
                var cursor = Path.Combine(ck, "cursor.json");
                File.WriteAllBytes(cursor, body);
                DataCursor.Load(cursor);
                break;
        }
    }
}

/// <summary>An input that made a reader fail in a way no user can act on.</summary>
public sealed class FuzzFinding(string target, Exception inner)
    : Exception($"fuzz target '{target}': {inner.GetType().Name}: {inner.Message.Split('\n')[0]}", inner);
