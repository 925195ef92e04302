using SharpFuzz;
using StateX.Fuzz;

// statex-fuzz TARGET             afl-fuzz harness: reads inputs through SharpFuzz's persistent loop.
// statex-fuzz TARGET FILE...     replays files (a crash found by afl, a corpus) and prints the findings.
if (args.Length == 0 || !FuzzTargets.Names.Contains(args[0]))
{
    Console.Error.WriteLine($"usage: StateX.Fuzz TARGET [FILE...]; TARGET is one of {string.Join(", ", FuzzTargets.Names)}");
    return 2;
}
var target = args[0];
var work = Path.Combine(Path.GetTempPath(), $"statex-fuzz-{target}-{Environment.ProcessId}");
if (args.Length > 1)
{
    int findings = 0;
    foreach (var file in args[1..])
    {
        try { FuzzTargets.Run(target, File.ReadAllBytes(file), work); }
        catch (FuzzFinding f) { findings++; Console.WriteLine($"{file}: {f.Message}"); Console.WriteLine(f.InnerException); }
    }
    return findings == 0 ? 0 : 1;
}
Action<Stream> once = stream =>
{
    using var ms = new MemoryStream();
    stream.CopyTo(ms);
    FuzzTargets.Run(target, ms.ToArray(), work);
};
// STATEX_FUZZ_OUT_OF_PROCESS=1: each input in a child process, so that one killing the process outright (a stack
// overflow) is saved as a crash instead of ending afl-fuzz ("unable to communicate with fork server"). Slower.
if (Environment.GetEnvironmentVariable("STATEX_FUZZ_OUT_OF_PROCESS") == "1") Fuzzer.OutOfProcess.Run(once);
else Fuzzer.Run(once);
return 0;
