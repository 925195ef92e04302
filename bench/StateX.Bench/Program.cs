using System.Reflection;
using StateX;

namespace StateX.Bench;

/// <summary>A benchmark suite: prints numbers (tokens/s, peak memory), never asserts.</summary>
public interface IBenchSuite
{
    /// <summary>The name given on the command line, e.g. "gla".</summary>
    string Name { get; }
    string Description { get; }
    int Run(string[] args);
}

public static class Program
{
    public static int Main(string[] args)
    {
        NativeRuntime.Initialize();
        var suites = Assembly.GetExecutingAssembly().GetTypes()
            .Where(t => typeof(IBenchSuite).IsAssignableFrom(t) && !t.IsAbstract && !t.IsInterface)
            .Select(t => (IBenchSuite)Activator.CreateInstance(t)!)
            .OrderBy(s => s.Name).ToArray();
        if (args.Length == 0 || args[0] is "-h" or "--help")
        {
            Console.WriteLine("usage: StateX.Bench <suite> [options]   (dotnet run -c Release --project bench/StateX.Bench -- <suite>)");
            foreach (var s in suites) Console.WriteLine($"  {s.Name,-12} {s.Description}");
            return args.Length == 0 ? 2 : 0;
        }
        var suite = suites.FirstOrDefault(s => s.Name == args[0]);
        if (suite is null) { Console.Error.WriteLine($"unknown suite '{args[0]}'; known: {string.Join(", ", suites.Select(s => s.Name))}"); return 2; }
        try { return suite.Run(args[1..]); }
        catch (ArgumentException e)
        {
            // Bad options are the user's to fix: one line, no stack trace.
            Console.Error.WriteLine($"{suite.Name}: {e.Message}");
            return 2;
        }
    }
}
