using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using StateX.Models;
using static TorchSharp.torch;

namespace StateX.Expansion;

/// <summary>Before/after of one layer: recurrent state per sequence (elements) and parameter count.</summary>
public sealed record LayerAccount(int Layer, bool Expanded, string StateShapeBefore, long StateBefore, string StateShapeAfter, long StateAfter, long ParamsBefore, long ParamsAfter)
{
    public long ParamsDelta => ParamsAfter - ParamsBefore;
    public double StateRatio => StateBefore == 0 ? double.NaN : (double)StateAfter / StateBefore;
}

/// <summary>Per-layer and total accounting of an expansion; <see cref="Format"/> prints it as a table.</summary>
public sealed record ExpansionAccount(IReadOnlyList<LayerAccount> Layers, long TotalParamsBefore, long TotalParamsAfter)
{
    public long StateBefore => Layers.Sum(l => l.StateBefore);
    public long StateAfter => Layers.Sum(l => l.StateAfter);
    public long ParamsDelta => TotalParamsAfter - TotalParamsBefore;

    /// <summary>Compares two models layer by layer (any family): state from <c>StateSize()</c>, parameters by the <c>layers.{i}.</c> name prefix.</summary>
    public static ExpansionAccount Compute(ICausalLanguageModel before, ICausalLanguageModel after, IReadOnlyCollection<int> expanded)
    {
        var sb = before.StateSize().Layers;
        var sa = after.StateSize().Layers;
        var pb = ParamsPerLayer(before, out var totalBefore);
        var pa = ParamsPerLayer(after, out var totalAfter);
        var layers = Enumerable.Range(0, before.NumLayers).Select(i =>
            new LayerAccount(i, expanded.Contains(i),
                StateShape(sb, i), StateElements(sb, i), StateShape(sa, i), StateElements(sa, i),
                pb.GetValueOrDefault(i), pa.GetValueOrDefault(i))).ToArray();
        return new ExpansionAccount(layers, totalBefore, totalAfter);
    }

    static long StateElements(IReadOnlyList<LayerStateSize> s, int layer) => s.Where(x => x.Layer == layer).Sum(x => x.Elements);
    static string StateShape(IReadOnlyList<LayerStateSize> s, int layer) => string.Join(" + ", s.Where(x => x.Layer == layer).Select(x => x.Shape));

    static readonly Regex LayerIndex = new(@"(?:^|\.)layers\.(\d+)\.", RegexOptions.Compiled);

    /// <summary>The layer index in a parameter name (<c>...layers.{i}....</c>), or −1 outside the layers.</summary>
    public static int LayerOf(string name)
    {
        var m = LayerIndex.Match(name);
        return m.Success ? int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : -1;
    }

    /// <summary>Parameter count per layer index (from names containing <c>layers.{i}.</c>), and the model total.</summary>
    public static Dictionary<int, long> ParamsPerLayer(ICausalLanguageModel model, out long total)
    {
        var d = new Dictionary<int, long>();
        total = 0;
        foreach (var (name, p) in model.Module.named_parameters())
        {
            long n = p.numel();
            total += n;
            if (LayerOf(name) is var i and >= 0) d[i] = d.GetValueOrDefault(i) + n;
        }
        return d;
    }

    /// <summary>A plain-text table: one row per layer, then totals; state bytes at <paramref name="dtype"/>.</summary>
    public string Format(ScalarType dtype = ScalarType.BFloat16, bool onlyExpanded = false)
    {
        int bytes = DTypeSize.Of(dtype);
        var rows = new List<string[]>
        {
            new[] { "layer", "expanded", "state before", "state after", "×", $"state after ({dtype})", "params before", "params after", "Δ params" },
        };
        foreach (var l in Layers.Where(l => !onlyExpanded || l.Expanded))
            rows.Add(new[]
            {
                l.Layer.ToString(CultureInfo.InvariantCulture), l.Expanded ? "yes" : "",
                $"{Count(l.StateBefore)} ({l.StateShapeBefore})", $"{Count(l.StateAfter)} ({l.StateShapeAfter})",
                l.StateRatio.ToString("0.##", CultureInfo.InvariantCulture), Bytes(l.StateAfter * bytes),
                Count(l.ParamsBefore), Count(l.ParamsAfter), Signed(l.ParamsDelta),
            });
        rows.Add(new[]
        {
            "total", $"{Layers.Count(l => l.Expanded)}/{Layers.Count}", Count(StateBefore), Count(StateAfter),
            (StateBefore == 0 ? double.NaN : (double)StateAfter / StateBefore).ToString("0.##", CultureInfo.InvariantCulture), Bytes(StateAfter * bytes),
            Count(TotalParamsBefore), Count(TotalParamsAfter), Signed(ParamsDelta),
        });
        var widths = Enumerable.Range(0, rows[0].Length).Select(c => rows.Max(r => r[c].Length)).ToArray();
        var sb = new StringBuilder();
        for (int r = 0; r < rows.Count; r++)
        {
            if (r == rows.Count - 1) sb.AppendLine(string.Join("  ", widths.Select(w => new string('-', w))));
            sb.AppendLine(string.Join("  ", rows[r].Select((c, i) => i == 0 || i == 1 ? c.PadRight(widths[i]) : c.PadLeft(widths[i]))).TrimEnd());
            if (r == 0) sb.AppendLine(string.Join("  ", widths.Select(w => new string('-', w))));
        }
        sb.AppendLine($"state per sequence: {Count(StateBefore)} → {Count(StateAfter)} elements; parameters: {Count(TotalParamsBefore)} → {Count(TotalParamsAfter)} ({Signed(ParamsDelta)}, {(TotalParamsBefore == 0 ? 0 : 100.0 * ParamsDelta / TotalParamsBefore).ToString("+0.######;-0.######;0", CultureInfo.InvariantCulture)}%)");
        return sb.ToString();
    }

    static string Count(long n) => n.ToString("N0", CultureInfo.InvariantCulture);
    static string Signed(long n) => (n > 0 ? "+" : "") + n.ToString("N0", CultureInfo.InvariantCulture);
    static string Bytes(long b) => b >= 1L << 20 ? $"{b / (double)(1L << 20):0.##} MiB" : b >= 1L << 10 ? $"{b / 1024.0:0.##} KiB" : $"{b} B";
}
