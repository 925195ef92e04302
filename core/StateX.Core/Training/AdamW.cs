using TorchSharp;
using static TorchSharp.torch;

namespace StateX.Training;

/// <summary>A named parameter and whether weight decay applies to it.</summary>
public sealed record ParameterEntry(string Name, TorchSharp.Modules.Parameter Parameter, bool Decay);

/// <summary>
/// AdamW (decoupled weight decay, Loshchilov &amp; Hutter) with two parameter groups (decay / no decay) and float32
/// optimiser state. When the model computes in a lower precision (bf16 on CUDA), the optimiser keeps a float32
/// master copy of every parameter, updates it, and writes it back rounded: the usual mixed-precision recipe.
/// Written here rather than taken from TorchSharp so that its whole state (moments, masters, step) can be saved
/// and restored exactly with the run's checkpoints.
/// </summary>
public sealed class AdamW : IDisposable
{
    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    public double WeightDecay { get; }
    public long Step { get; private set; }
    public IReadOnlyList<ParameterEntry> Parameters { get; }

    readonly Tensor[] _m, _v;
    readonly Tensor?[] _master;

    /// <summary>
    /// Weight decay applies exactly to the tensors with two or more dimensions — every Linear weight, the embeddings,
    /// lm_head and the (3-D) conv1d weights — and to nothing else (norm weights, biases, A_log, D, dt_bias). This is the
    /// official StateX optimizer's rule (thunlp/StateX optim/optimizer.py:L22-27, <c>p.dim() &gt;= 2</c>;
    /// statex-official.md §2), which ignores parameter names.
    /// </summary>
    public static bool DecaysByDefault(Tensor p) => p.dim() >= 2;

    public AdamW(IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> parameters, double weightDecay = 0.1, double beta1 = 0.9, double beta2 = 0.95, double eps = 1e-8)
    {
        Beta1 = beta1; Beta2 = beta2; Eps = eps; WeightDecay = weightDecay;
        Parameters = parameters.Where(p => p.Parameter.requires_grad).Select(p => new ParameterEntry(p.Name, p.Parameter, DecaysByDefault(p.Parameter))).ToArray();
        if (Parameters.Count == 0) throw new ArgumentException("no trainable parameters: every parameter is frozen");
        _m = new Tensor[Parameters.Count];
        _v = new Tensor[Parameters.Count];
        _master = new Tensor?[Parameters.Count];
        using var _ = no_grad();
        for (int i = 0; i < Parameters.Count; i++)
        {
            var p = Parameters[i].Parameter;
            _m[i] = zeros_like(p, dtype: ScalarType.Float32);
            _v[i] = zeros_like(p, dtype: ScalarType.Float32);
            _master[i] = p.dtype == ScalarType.Float32 ? null : p.detach().to_type(ScalarType.Float32);
        }
    }

    /// <summary>One update with learning rate <paramref name="lr"/>; parameters without a gradient are skipped.</summary>
    public void StepWith(double lr)
    {
        Step++;
        double bc1 = 1 - Math.Pow(Beta1, Step), bc2 = 1 - Math.Pow(Beta2, Step);
        using var _ = no_grad();
        for (int i = 0; i < Parameters.Count; i++)
        {
            var (p, decay) = (Parameters[i].Parameter, Parameters[i].Decay);
            if (p.grad is not { } g0) continue;
            using var scope = NewDisposeScope();
            var g = g0.to_type(ScalarType.Float32);
            var w = _master[i] ?? p;
            if (decay && WeightDecay > 0) w.mul_(1 - lr * WeightDecay);
            _m[i].mul_(Beta1).add_(g, alpha: 1 - Beta1);
            _v[i].mul_(Beta2).addcmul_(g, g, value: 1 - Beta2);
            var denom = (_v[i] / bc2).sqrt_().add_(Eps);
            w.addcdiv_(_m[i], denom, value: -lr / bc1);
            if (_master[i] is { } master) p.copy_(master);
        }
    }

    public void ZeroGrad()
    {
        foreach (var e in Parameters)
            if (e.Parameter.grad is { } g) { g.Dispose(); e.Parameter.grad = null; }
    }

    /// <summary>The state as named tensors (for a checkpoint): m, v and masters per parameter name.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors()
    {
        for (int i = 0; i < Parameters.Count; i++)
        {
            yield return new($"exp_avg.{Parameters[i].Name}", _m[i]);
            yield return new($"exp_avg_sq.{Parameters[i].Name}", _v[i]);
            if (_master[i] is { } m) yield return new($"master.{Parameters[i].Name}", m);
        }
    }

    /// <summary>Restores the state saved by <see cref="StateTensors"/>; a missing or misshapen entry is an error naming it.</summary>
    public void LoadState(Func<string, Tensor?> lookup, long step)
    {
        using var _ = no_grad();
        for (int i = 0; i < Parameters.Count; i++)
        {
            var name = Parameters[i].Name;
            Copy(lookup, $"exp_avg.{name}", _m[i]);
            Copy(lookup, $"exp_avg_sq.{name}", _v[i]);
            if (_master[i] is { } m) Copy(lookup, $"master.{name}", m);
        }
        Step = step;
    }

    static void Copy(Func<string, Tensor?> lookup, string key, Tensor dst)
    {
        using var src = lookup(key) ?? throw new InvalidDataException($"optimiser state '{key}' is missing from the checkpoint");
        if (!src.shape.SequenceEqual(dst.shape))
            throw new InvalidDataException($"optimiser state '{key}' has shape [{string.Join(", ", src.shape)}], expected [{string.Join(", ", dst.shape)}]");
        dst.copy_(src);
    }

    public void Dispose()
    {
        foreach (var t in _m.Concat(_v)) t.Dispose();
        foreach (var t in _master) t?.Dispose();
    }
}
