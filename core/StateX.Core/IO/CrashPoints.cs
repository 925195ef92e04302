using System.Diagnostics;
using System.Globalization;

namespace StateX.IO;

/// <summary>
/// Named places inside the writers of a run (checkpoint, metrics, atomic file) where a crash-consistency test can
/// have the process SIGKILL itself, so that it dies exactly there rather than wherever a timer happens to land.
/// Armed only by the environment variable <c>STATEX_CRASH_AT=NAME:N</c> (die at the N-th time NAME is reached);
/// otherwise each point costs one comparison. Names: see the constants.
/// </summary>
public static class CrashPoints
{
    public const string Variable = "STATEX_CRASH_AT";
    /// <summary>A checkpoint's files are written into its temporary folder, its manifest is not.</summary>
    public const string CheckpointFiles = "checkpoint-files";
    /// <summary>A checkpoint is sealed with its manifest but not yet renamed into place.</summary>
    public const string CheckpointSealed = "checkpoint-sealed";
    /// <summary>A checkpoint is in place; older ones are not yet pruned.</summary>
    public const string CheckpointPublished = "checkpoint-published";
    /// <summary>Half of a metrics line is on disk (a torn line).</summary>
    public const string MetricsLine = "metrics-line";
    /// <summary>An optimiser step is taken in memory; its metrics line and checkpoint are not written (a kill in the
    /// middle of training, placed by progress rather than by a timer, so a loaded machine cannot make it miss).</summary>
    public const string Step = "step";
    /// <summary>An atomic file's temporary copy is complete, not yet renamed over the target.</summary>
    public const string AtomicWrite = "atomic-write";

    static readonly (string Name, int At)? Armed = Parse(Environment.GetEnvironmentVariable(Variable));
    static int _hits;

    static (string, int)? Parse(string? value)
    {
        if (string.IsNullOrEmpty(value)) return null;
        int colon = value.LastIndexOf(':');
        return colon > 0 && int.TryParse(value[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0
            ? (value[..colon], n)
            : throw new ArgumentException($"{Variable}={value}: expected NAME:N (N ≥ 1)");
    }

    /// <summary>True when the next <see cref="Reach"/> of <paramref name="name"/> kills the process.</summary>
    public static bool IsNext(string name) => Armed is { } a && a.Name == name && _hits + 1 == a.At;

    /// <summary>Kills the process (SIGKILL: no finally block, no flush) when this is the armed point's N-th hit.</summary>
    public static void Reach(string name)
    {
        if (Armed is not { } a || a.Name != name) return;
        if (Interlocked.Increment(ref _hits) == a.At) Process.GetCurrentProcess().Kill();
    }
}
