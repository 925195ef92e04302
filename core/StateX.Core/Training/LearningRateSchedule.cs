using System.Globalization;

namespace StateX.Training;

/// <summary>
/// Learning rate as a function of the optimiser step (0-based). Text forms:
/// <c>constant</c>; <c>cosine</c> — linear warm-up to the peak, then cosine decay to <c>floor·peak</c> at the last step;
/// <c>wsd</c> / <c>wsd:D</c> — warm-up, stable at the peak, then linear decay to the floor over the last fraction D
/// (default 0.2) of the steps.
/// </summary>
public abstract record LearningRateSchedule(double Peak, int WarmupSteps, int TotalSteps, double FloorRatio)
{
    public sealed record Constant(double Peak, int WarmupSteps, int TotalSteps) : LearningRateSchedule(Peak, WarmupSteps, TotalSteps, 1.0)
    {
        protected override double AfterWarmup(double progress) => 1.0;
    }

    public sealed record Cosine(double Peak, int WarmupSteps, int TotalSteps, double FloorRatio) : LearningRateSchedule(Peak, WarmupSteps, TotalSteps, FloorRatio)
    {
        protected override double AfterWarmup(double progress) => FloorRatio + (1 - FloorRatio) * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }

    public sealed record WarmupStableDecay(double Peak, int WarmupSteps, int TotalSteps, double FloorRatio, double DecayFraction) : LearningRateSchedule(Peak, WarmupSteps, TotalSteps, FloorRatio)
    {
        protected override double AfterWarmup(double progress)
        {
            double stableEnd = 1 - DecayFraction;
            if (progress <= stableEnd) return 1.0;
            double d = (progress - stableEnd) / DecayFraction;
            return 1 - (1 - FloorRatio) * d;
        }
    }

    /// <summary>Multiplier in [floor, 1] once warm-up is over; <paramref name="progress"/> runs from 0 (end of warm-up) to 1 (last step).</summary>
    protected abstract double AfterWarmup(double progress);

    public double At(int step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step));
        if (WarmupSteps > 0 && step < WarmupSteps) return Peak * (step + 1) / WarmupSteps;
        int span = Math.Max(1, TotalSteps - 1 - WarmupSteps);
        double progress = Math.Clamp((double)(step - WarmupSteps) / span, 0, 1);
        return Peak * AfterWarmup(progress);
    }

    public static LearningRateSchedule Parse(string text, double peak, int warmup, int total, double floorRatio = 0.1)
    {
        if (peak <= 0 || double.IsNaN(peak)) throw new ArgumentException($"learning rate must be positive (got {peak})");
        if (total < 1) throw new ArgumentException($"steps must be at least 1 (got {total})");
        if (warmup < 0 || warmup >= total && total > 1) throw new ArgumentException($"warm-up ({warmup} steps) must be shorter than the run ({total} steps)");
        if (floorRatio < 0 || floorRatio > 1) throw new ArgumentException($"the learning-rate floor must be a fraction of the peak in [0, 1] (got {floorRatio})");
        var t = text.Trim().ToLowerInvariant();
        if (t == "constant") return new Constant(peak, warmup, total);
        if (t == "cosine") return new Cosine(peak, warmup, total, floorRatio);
        if (t == "wsd" || t.StartsWith("wsd:"))
        {
            double d = 0.2;
            if (t.StartsWith("wsd:") && (!double.TryParse(t[4..], NumberStyles.Float, CultureInfo.InvariantCulture, out d) || d <= 0 || d > 1))
                throw new ArgumentException($"schedule '{text}': the decay fraction must be in (0, 1]");
            return new WarmupStableDecay(peak, warmup, total, floorRatio, d);
        }
        throw new ArgumentException($"unknown schedule '{text}': expected constant, cosine, wsd or wsd:FRACTION");
    }
}
