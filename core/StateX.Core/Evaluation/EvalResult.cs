using System.Diagnostics;
using StateX.Models;
using static TorchSharp.torch;

namespace StateX.Evaluation;

/// <summary>
/// One number an evaluation produced: <c>Value</c> of <c>Metric</c> for <c>Task</c> under <c>Setting</c>
/// (e.g. {"pairs": 8, "seq_len": 256}), measured over <c>N</c> items (queries, examples, tokens).
/// Setting values are strings, ints, longs or doubles (written as JSON numbers where numeric).
/// <c>Labels</c> say which run of a larger experiment the number belongs to (a study's family, arm and seed; a
/// sweep's axes): empty for a plain evaluation. Results files (<see cref="ResultFiles"/>) carry them as leading columns.
/// </summary>
public sealed record EvalResult(string Model, string Task, IReadOnlyDictionary<string, object> Setting, string Metric, double Value, long N)
{
    /// <summary>Which run this result belongs to, label → value (ordered as given); empty by default.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Labels { get; init; } = [];

    /// <summary>A setting from name/value pairs, ordered by name (so files list them the same way every time).</summary>
    public static IReadOnlyDictionary<string, object> SettingOf(params (string Key, object Value)[] pairs)
    {
        var d = new SortedDictionary<string, object>(StringComparer.Ordinal);
        foreach (var (k, v) in pairs) d[k] = v;
        return d;
    }
}

/// <summary>Where an evaluation stands: <c>Step</c> of <c>Total</c> units done after <c>Elapsed</c>; ETA once a step is done.</summary>
public sealed record EvalProgress(string Task, long Step, long Total, TimeSpan Elapsed, TimeSpan? Eta);

/// <summary>
/// How evaluations run a model. <c>SegmentLength</c> bounds memory: every context runs in segments of that many
/// tokens carrying the recurrent state, so a 256K-token context costs the memory of one segment.
/// </summary>
/// <param name="SegmentLength">Tokens per forward pass of a long context.</param>
/// <param name="Device">Where inputs go; default: the device of the model's first parameter (CPU when it has none).</param>
/// <param name="BatchSize">Sequences per forward pass (sequences of unequal length are right-padded, which a causal model ignores).</param>
/// <param name="ModelName">Goes into every <see cref="EvalResult"/>.</param>
/// <param name="Progress">Called after each batch of a long evaluation.</param>
public sealed record EvalOptions(
    int SegmentLength = 2048,
    int BatchSize = 8,
    Device? Device = null,
    string ModelName = "model",
    Action<EvalProgress>? Progress = null)
{
    public void Validate()
    {
        if (SegmentLength < 1) throw new ArgumentException($"segment length must be at least 1 (got {SegmentLength})");
        if (BatchSize < 1) throw new ArgumentException($"batch size must be at least 1 (got {BatchSize})");
    }

    public Device ResolveDevice(ICausalLanguageModel model) =>
        Device ?? model.Module.parameters().Select(p => p.device).FirstOrDefault() ?? CPU;
}

/// <summary>Counts steps of one evaluation and reports them (with an ETA from the mean step time so far).</summary>
public sealed class ProgressReporter(string task, long total, Action<EvalProgress>? callback)
{
    readonly Stopwatch _clock = Stopwatch.StartNew();
    long _step;

    public void Advance(long steps = 1) => ReportAt(_step + steps);

    /// <summary>
    /// A callback for a part of this evaluation that covers steps [offset, offset + size) of this one's (a passkey
    /// cell within the grid): its reports become this reporter's, with the grid's total and ETA.
    /// </summary>
    public Action<EvalProgress>? Part(long offset, long size) => callback is null ? null : p => ReportAt(offset + Math.Min(p.Step, size));

    /// <summary>Sets the steps done to <paramref name="step"/> and reports.</summary>
    public void ReportAt(long step)
    {
        _step = step;
        if (callback is null) return;
        var elapsed = _clock.Elapsed;
        TimeSpan? eta = _step > 0 && total >= _step ? elapsed * ((double)(total - _step) / _step) : null;
        callback(new EvalProgress(task, _step, total, elapsed, eta));
    }
}
