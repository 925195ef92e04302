using System.Text.Json.Nodes;
using StateX.Evaluation;
using StateX.Models;

namespace StateX.Training;

/// <summary>
/// One training run: what model to start from, what data, how, and where its run folder is.
/// </summary>
/// <param name="CreateModel">Builds the starting model (random, loaded or expanded) when the run starts fresh; called after the seed is set. Not called on resume: the model comes from the checkpoint.</param>
/// <param name="DataSpec">A <see cref="Data.DataSpec"/> text, e.g. <c>synth:mqar?pairs=16&amp;seq_len=256</c>.</param>
/// <param name="Tokenizer">"byte" or a folder with tokenizer.json / tokenizer.model.</param>
/// <param name="Options">Steps, batch, optimiser, schedule, device and checkpointing (<see cref="TrainOptions"/>).</param>
/// <param name="RunDirectory">Holds config.json, metrics.jsonl, eval.jsonl, log.txt, checkpoints/ and, at the end, model/.</param>
/// <param name="Resume">Continue from the newest intact checkpoint in the run folder (a fresh start when there is none).</param>
/// <param name="Recipe">lpt, statex or custom: recorded in the run's config.</param>
/// <param name="Trainable">Names of the parameters to train; null: those the created model leaves trainable (all, unless e.g. an expansion froze some). The others keep their values.</param>
/// <param name="Describe">Anything else worth recording in the run's config (model source, expansion, ...).</param>
public sealed record TrainJob(
    Func<ICausalLanguageModel> CreateModel,
    string DataSpec,
    string Tokenizer,
    TrainOptions Options,
    string RunDirectory,
    bool Resume = false,
    string Recipe = "custom",
    IReadOnlyList<string>? Trainable = null,
    JsonObject? Describe = null);

/// <summary>Where a run stands after a step.</summary>
public sealed record TrainProgress(int Step, int TotalSteps, double Loss, double LearningRate, double GradNorm,
    double TokensPerSecond, long Tokens, TimeSpan Elapsed, TimeSpan? Eta, long MemoryBytes);

/// <summary>Callbacks a caller may attach: progress display, log lines, periodic evaluation.</summary>
/// <param name="Progress">after every step</param>
/// <param name="Log">every line the run writes to log.txt (start, resume, checkpoints, warnings)</param>
/// <param name="EvalEvery">run <paramref name="Evaluate"/> every this many steps (0: never) and after the last step</param>
/// <param name="Evaluate">(step, model) → results, appended to eval.jsonl with the step</param>
public sealed record TrainHooks(
    Action<TrainProgress>? Progress = null,
    Action<string>? Log = null,
    int EvalEvery = 0,
    Func<int, ICausalLanguageModel, IEnumerable<EvalResult>>? Evaluate = null);

/// <summary>What a finished run did.</summary>
/// <param name="RunDirectory">the run folder</param>
/// <param name="ModelDirectory">RUN/model: the final weights, loadable with <see cref="Checkpoint.Load"/>.</param>
/// <param name="Steps">optimiser steps taken in all (resumed ones included)</param>
/// <param name="FinalLoss">training loss of the last step</param>
/// <param name="TokensPerSecond">training throughput of this process</param>
/// <param name="Tokens">training tokens seen in all</param>
/// <param name="Elapsed">wall time of this process</param>
/// <param name="ResumedFrom">the step a resumed run continued from (null for a fresh start)</param>
/// <param name="PeakMemoryBytes">CPU: the process's peak resident set; CUDA: growth of device memory in use (an upper bound)</param>
public sealed record TrainSummary(string RunDirectory, string ModelDirectory, int Steps, double FinalLoss,
    double TokensPerSecond, long Tokens, long PeakMemoryBytes, TimeSpan Elapsed, int? ResumedFrom);

/// <summary>The loss or the gradients went NaN/Inf: the run stopped without writing the bad state.</summary>
public sealed class TrainingDivergedException(string message, int step, string? tensor) : Exception(message)
{
    public int Step { get; } = step;
    /// <summary>The first non-finite tensor found, when one could be named.</summary>
    public string? Tensor { get; } = tensor;
}
