using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using StateX.IO;

namespace StateX.Training;

/// <summary>A checkpoint folder that passed validation.</summary>
public sealed record CheckpointEntry(int Step, string Directory);

/// <summary>
/// Training checkpoints under <c>RUN/checkpoints/step-NNNNNNNN/</c>. A checkpoint is written into a hidden temporary
/// folder, sealed with a manifest (size and SHA-256 of every file, written last), then renamed into place, so a run
/// killed mid-write never leaves a checkpoint that looks complete. Loading validates the manifest and falls back to
/// the newest intact checkpoint, saying which one it skipped and why. Only the last <see cref="KeepLast"/> are kept.
/// </summary>
public sealed class CheckpointStore(string runDirectory, int keepLast = 3, Action<string>? warn = null)
{
    public const string Manifest = "manifest.json";
    public string Root { get; } = Path.Combine(runDirectory, "checkpoints");
    public int KeepLast { get; } = keepLast < 1 ? throw new ArgumentException("keepLast must be at least 1") : keepLast;
    readonly Action<string> _warn = warn ?? (m => Console.Error.WriteLine(m));

    public static string FolderName(int step) => $"step-{step:D8}";

    /// <summary>Writes a checkpoint: <paramref name="write"/> fills the folder it is given; then it is sealed and published.</summary>
    public CheckpointEntry Save(int step, Action<string> write)
    {
        Directory.CreateDirectory(Root);
        RemoveAbandoned();
        var final = Path.Combine(Root, FolderName(step));
        var tmp = Path.Combine(Root, $".{FolderName(step)}.tmp-{Environment.ProcessId}");
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        Directory.CreateDirectory(tmp);
        try
        {
            write(tmp);
            CrashPoints.Reach(CrashPoints.CheckpointFiles);
            var files = new JsonObject();
            foreach (var f in Directory.GetFiles(tmp).OrderBy(f => f, StringComparer.Ordinal))
                files[Path.GetFileName(f)] = new JsonObject { ["bytes"] = new FileInfo(f).Length, ["sha256"] = Hash(f) };
            var manifest = new JsonObject { ["step"] = step, ["files"] = files, ["written_utc"] = DateTime.UtcNow.ToString("o", CultureInfo.InvariantCulture) };
            File.WriteAllText(Path.Combine(tmp, Manifest), manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            CrashPoints.Reach(CrashPoints.CheckpointSealed);
            if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
            Directory.Move(tmp, final);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { Directory.Delete(tmp, recursive: true); } catch (Exception) { }
            // A full disk or a read-only folder: say so in one line, and that the older checkpoints are untouched
            // (the new one was being written beside them, never over them). No inner exception: the CLI prints the
            // innermost message, which would lose the checkpoint's name.
            throw new IOException($"{final}: could not write the checkpoint of step {step}: {e.Message.TrimEnd('.')}; " +
                (LatestValid() is { } prev ? $"the previous checkpoint {prev.Directory} is intact" : "no earlier checkpoint exists"));
        }
        catch
        {
            try { Directory.Delete(tmp, recursive: true); } catch (IOException) { }
            throw;
        }
        CrashPoints.Reach(CrashPoints.CheckpointPublished);
        Prune();
        return new CheckpointEntry(step, final);
    }

    /// <summary>Checkpoint folders present (intact or not), newest first.</summary>
    public IReadOnlyList<(int Step, string Directory)> List()
    {
        if (!Directory.Exists(Root)) return [];
        return Directory.GetDirectories(Root, "step-*")
            .Select(d => (Ok: int.TryParse(Path.GetFileName(d)["step-".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var s), Step: s, Dir: d))
            .Where(x => x.Ok).OrderByDescending(x => x.Step).Select(x => (x.Step, x.Dir)).ToArray();
    }

    /// <summary>The newest checkpoint whose files match its manifest; corrupt ones are reported and skipped.</summary>
    public CheckpointEntry? LatestValid()
    {
        foreach (var (step, dir) in List())
        {
            var problem = Validate(dir);
            if (problem is null) return new CheckpointEntry(step, dir);
            _warn($"warning: checkpoint {dir} is unusable ({problem}); trying an older one");
        }
        return null;
    }

    /// <summary>Null when intact, else what is wrong.</summary>
    public static string? Validate(string dir)
    {
        var mpath = Path.Combine(dir, Manifest);
        if (!File.Exists(mpath)) return "no manifest: it was never completed";
        JsonObject files;
        try { files = (JsonErrors.Parse(File.ReadAllText(mpath)) as JsonObject)?["files"] as JsonObject ?? throw new JsonException("no 'files'"); }
        catch (JsonException e) { return $"manifest is corrupt: {JsonErrors.Brief(e)}"; }
        foreach (var (name, node) in files)
        {
            // The manifest is ours, but a damaged one must read as damaged, not as a NullReferenceException.
            if (name.Length == 0 || name.IndexOfAny(['/', '\\']) >= 0 || name.Any(char.IsControl) || name is "." or ".."
                || node is not JsonObject entry || entry["bytes"] is not JsonValue b || !b.TryGetValue<long>(out var want)
                || entry["sha256"] is not JsonValue h || !h.TryGetValue<string>(out var sha))
                return $"manifest is corrupt: its entry for {ConfigJson.Show(JsonValue.Create(name))} is malformed";
            var f = Path.Combine(dir, name);
            if (!File.Exists(f)) return $"{name} is missing";
            long have = new FileInfo(f).Length;
            if (have != want) return $"{name} is {have} bytes, the manifest says {want} (truncated?)";
            if (Hash(f) != sha) return $"{name} does not match its checksum (corrupted)";
        }
        return null;
    }

    /// <summary>
    /// Deletes the temporary folders of writers that were killed mid-checkpoint (their process is gone): they are
    /// invisible to <see cref="List"/>, but each is a whole checkpoint's worth of disk.
    /// </summary>
    void RemoveAbandoned()
    {
        foreach (var dir in Directory.GetDirectories(Root, ".step-*.tmp-*"))
        {
            var name = Path.GetFileName(dir);
            if (!int.TryParse(name[(name.LastIndexOf("-", StringComparison.Ordinal) + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
                || pid == Environment.ProcessId || ProcessAlive(pid)) continue;
            try { Directory.Delete(dir, recursive: true); }
            catch (IOException e) { _warn($"warning: could not remove abandoned checkpoint folder {dir}: {e.Message}"); }
        }
    }

    static bool ProcessAlive(int pid)
    {
        try { using var p = System.Diagnostics.Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    void Prune()
    {
        foreach (var (_, dir) in List().Skip(KeepLast))
            try { Directory.Delete(dir, recursive: true); }
            catch (IOException e) { _warn($"warning: could not remove old checkpoint {dir}: {e.Message}"); }
    }

    static string Hash(string file)
    {
        using var fs = File.OpenRead(file);
        return Convert.ToHexString(SHA256.HashData(fs)).ToLowerInvariant();
    }
}
