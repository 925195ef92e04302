using System.Globalization;

namespace StateX.Bench;

/// <summary>
/// The one argument reader of every bench suite: <c>--key value</c> pairs and the suite's named switches
/// (<c>--check</c>, <c>--no-backward</c>, ...), which take no value. Anything else is refused naming it.
/// </summary>
static class BenchArgs
{
    /// <summary>Options by key (without the dashes); a switch maps to "1".</summary>
    public static Dictionary<string, string> Parse(string[] args, string usage, params string[] switches)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"unexpected argument '{args[i]}'\n{usage}");
            var key = args[i][2..];
            if (key == "help" || switches.Contains(key)) { d[key] = "1"; continue; }
            if (i + 1 >= args.Length) throw new ArgumentException($"--{key} needs a value");
            d[key] = args[++i];
        }
        return d;
    }

    /// <summary>An integer option; a K suffix multiplies by 1024 (<c>--T 32K</c>).</summary>
    public static int Int(Dictionary<string, string> a, string key, int fallback)
    {
        if (!a.TryGetValue(key, out var v)) return fallback;
        bool k = v.EndsWith('K') || v.EndsWith('k');
        if (!int.TryParse(k ? v[..^1] : v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n))
            throw new ArgumentException($"--{key}: '{v}' is not an integer");
        return k ? n * 1024 : n;
    }
}
