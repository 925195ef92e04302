namespace StateX.Training;

/// <summary>
/// A fresh start was asked for in a run folder that already has progress (checkpoints or metrics): starting over
/// would destroy it. A typed error so that a front end can say how it spells "resume" (the CLI: --resume).
/// </summary>
public sealed class ExistingRunException(string runDirectory)
    : InvalidOperationException($"{runDirectory} already holds a run; resume it or choose another output folder")
{
    public string RunDirectory { get; } = runDirectory;
}
