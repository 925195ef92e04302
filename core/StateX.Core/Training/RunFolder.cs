using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using StateX.IO;

namespace StateX.Training;

/// <summary>
/// The files of one run: config.json (what was asked), metrics.jsonl (a line per step), eval.jsonl (periodic
/// evaluations), log.txt (human-readable events), checkpoints/, model/ (final weights).
/// </summary>
public sealed class RunFolder
{
    public string Root { get; }
    public string ConfigPath => Path.Combine(Root, "config.json");
    public string MetricsPath => Path.Combine(Root, "metrics.jsonl");
    public string EvalPath => Path.Combine(Root, "eval.jsonl");
    public string LogPath => Path.Combine(Root, "log.txt");
    public string ModelDirectory => Path.Combine(Root, "model");
    public string CheckpointsDirectory => Path.Combine(Root, "checkpoints");

    public RunFolder(string root)
    {
        Root = Path.GetFullPath(root);
        try
        {
            Directory.CreateDirectory(Root);
            // Found out now rather than after the first steps' work, at the first metrics line or checkpoint.
            var probe = Path.Combine(Root, $".write-test.{Environment.ProcessId}");
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"{Root}: the run folder is not writable: {e.Message}");
        }
    }

    public void Log(string line, Action<string>? echo)
    {
        File.AppendAllText(LogPath, $"{DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)} {line}\n");
        echo?.Invoke(line);
    }

    public void AppendMetrics(JsonObject line)
    {
        var text = line.ToJsonString() + "\n";
        if (CrashPoints.IsNext(CrashPoints.MetricsLine))
        {
            // Dies with half a line on disk, as a kill inside the append would leave it.
            File.AppendAllText(MetricsPath, text[..(text.Length / 2)]);
            CrashPoints.Reach(CrashPoints.MetricsLine);
        }
        CrashPoints.Reach(CrashPoints.MetricsLine);
        File.AppendAllText(MetricsPath, text);
    }
    public void AppendEval(JsonObject line) => File.AppendAllText(EvalPath, line.ToJsonString() + "\n");

    /// <summary>Drops metric and eval lines past <paramref name="step"/>: those of a killed run's steps that its last checkpoint does not include, which the resumed run will redo.</summary>
    public void TruncateAfter(int step)
    {
        foreach (var path in new[] { MetricsPath, EvalPath })
        {
            if (!File.Exists(path)) continue;
            var kept = File.ReadLines(path).Where(l =>
            {
                // A line torn by a kill is not JSON, or (cut at the right place) JSON of another shape: either way not a step's line.
                try { return JsonErrors.Parse(l) is JsonObject o && o["step"] is JsonValue v && v.TryGetValue<int>(out var s) && s <= step; }
                catch (JsonException) { return false; }
            }).ToArray();
            AtomicFile.WriteAllText(path, kept.Length == 0 ? "" : string.Join("\n", kept) + "\n");
        }
    }

    public void WriteConfig(JsonObject config) =>
        AtomicFile.WriteAllText(ConfigPath, config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

    public JsonObject ReadConfig() =>
        JsonNode.Parse(File.ReadAllText(ConfigPath, Encoding.UTF8)) as JsonObject
        ?? throw new InvalidDataException($"{ConfigPath}: not a JSON object");
}
