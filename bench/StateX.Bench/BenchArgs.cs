using System.Globalization;
using System.Text.RegularExpressions;

namespace StateX.Bench;

/// <summary>
/// The one argument reader of every bench suite: <c>--key value</c> pairs and the suite's named switches
/// (<c>--check</c>, <c>--no-backward</c>, ...), which take no value. Anything else is refused naming it.
/// </summary>
static class BenchArgs
{
    /// <summary>Options by key (without the dashes); a switch maps to "1".</summary>
    public static Dictionary<string, string> Parse(string[] args, string usage, params string[] switches) =>
        Parse(args, usage, switches, []);

    /// <summary>
    /// As above, with <paramref name="hidden"/> keys that take a value but are not in the usage (what a suite passes
    /// to its own child processes). A key must appear in the usage as <c>--key</c>, or be a switch or hidden:
    /// a misspelt option is refused, not ignored.
    /// </summary>
    public static Dictionary<string, string> Parse(string[] args, string usage, string[] switches, string[] hidden)
    {
        var known = new HashSet<string>(
            Regex.Matches(usage, @"--([A-Za-z0-9][A-Za-z0-9-]*)").Select(m => m.Groups[1].Value).Concat(switches).Concat(hidden),
            StringComparer.Ordinal);
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"unexpected argument '{args[i]}'\n{usage}");
            var key = args[i][2..];
            if (key == "help" || switches.Contains(key)) { d[key] = "1"; continue; }
            if (!known.Contains(key)) throw new ArgumentException($"unknown option '--{key}'\n{usage}");
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
