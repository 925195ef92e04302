using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;

namespace StateX.IO;

/// <summary>
/// An exclusive lock across threads and processes on <c>PATH</c>, with its holder written beside it in
/// <c>PATH.owner</c> (process id, host, command, since when) so that a process kept waiting can say who holds it.
/// The lock itself is the operating system's (an exclusive open, flock on Linux): a process killed while holding it
/// releases it, so a stale lock is never an obstacle; the next holder finds the dead process's owner file, says it is
/// taking the lock over, and replaces the file.
/// </summary>
public sealed class FileLock : IDisposable
{
    readonly FileStream _stream;
    public string Path { get; }
    public string OwnerPath => Path + ".owner";

    FileLock(string path, FileStream stream) { Path = path; _stream = stream; }

    /// <summary>
    /// Takes the lock, waiting for it; <paramref name="log"/> hears once that it is waiting (and for whom), and when
    /// a lock left by a process that is no longer running is taken over.
    /// </summary>
    public static FileLock Acquire(string path, Action<string>? log = null, string? what = null)
    {
        var full = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(full)!);
        bool told = false;
        while (true)
        {
            if (TryAcquire(full, log) is { } held) return held;
            if (!told)
            {
                log?.Invoke($"waiting for {what ?? full}: locked by {Describe(ReadOwner(full + ".owner"))}");
                told = true;
            }
            Thread.Sleep(200);
        }
    }

    /// <summary>The lock if it is free now, else null.</summary>
    public static FileLock? TryAcquire(string path, Action<string>? log = null)
    {
        var full = System.IO.Path.GetFullPath(path);
        FileStream stream;
        try { stream = new FileStream(full, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
        catch (IOException) when (File.Exists(full)) { return null; }
        var owner = full + ".owner";
        if (ReadOwner(owner) is { } previous && previous["pid"]?.GetValue<int>() is int pid && pid != Environment.ProcessId
            && previous["host"]?.GetValue<string>() == Environment.MachineName && !Alive(pid))
            log?.Invoke($"taking over the lock {full} left by {Describe(previous)}, which is no longer running");
        AtomicFile.WriteAllText(owner, new JsonObject
        {
            ["pid"] = Environment.ProcessId,
            ["host"] = Environment.MachineName,
            ["command"] = string.Join(" ", Environment.GetCommandLineArgs().Skip(1).Take(6)),
            ["since_utc"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
        }.ToJsonString() + "\n");
        return new FileLock(full, stream);
    }

    static JsonObject? ReadOwner(string path)
    {
        try { return File.Exists(path) ? JsonErrors.Parse(File.ReadAllText(path)) as JsonObject : null; }
        catch (Exception e) when (e is IOException or System.Text.Json.JsonException or InvalidOperationException) { return null; }
    }

    static string Describe(JsonObject? owner) =>
        owner is null ? "another process (its owner file is not written yet)"
        : $"pid {owner["pid"]} on {owner["host"]} since {owner["since_utc"]} ({owner["command"]})";

    static bool Alive(int pid)
    {
        try { using var p = Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    /// <summary>Releases the lock; the owner file goes first, so a waiter never reads a released holder's name.</summary>
    public void Dispose()
    {
        try { File.Delete(OwnerPath); } catch (IOException) { }
        _stream.Dispose();
    }
}
