using StateX.Layers;
using StateX.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace StateX.Mamba2;

/// <summary>
/// The Mamba2 mixer (Dao and Gu 2024), with transformers' parameter names:
/// [z, xBC, dt] = in_proj(u);  xBC = silu(conv1d(xBC));  [x, B, C] = xBC;  dt = clamp(softplus(dt + dt_bias));
/// A = −exp(A_log);  y = SSD(x, dt, A, B, C) + D x;  out = out_proj(norm(y · silu(z))).
/// The state size <c>dState</c> is per layer (StateX expansion widens chosen layers).
/// </summary>
public sealed class Mamba2Mixer : nn.Module<Tensor, Tensor>
{
    // The fields are spelt as transformers spells them (snake_case, A_log, D) on purpose: TorchSharp's
    // RegisterComponents names each submodule and parameter after its field (backbone.layers.0.mixer.in_proj.weight,
    // ...mixer.A_log), and those names are what make transformers checkpoints load (mamba_ssm's differ only in the
    // embedding, mapped on load) and what Save writes. Renaming a field renames a checkpoint key.
    public readonly Linear in_proj;
    public readonly Conv1d conv1d;
    public readonly Parameter dt_bias;
    public readonly Parameter A_log;
    public readonly Parameter D;
    public readonly GatedRMSNorm norm;
    public readonly Linear out_proj;

    public long Hidden { get; }
    public long Heads { get; }
    public long HeadDim { get; }
    public long Groups { get; }
    public long DState { get; }
    public long Inner => Heads * HeadDim;
    public long ConvDim => Inner + 2 * Groups * DState;
    public long ConvKernel { get; }
    public long ChunkSize { get; }
    /// <summary>How the chunked form's intra-chunk scores are computed (fused CUDA kernels on CUDA by default).</summary>
    public SsdBackend Backend { get; set; } = SsdBackend.Auto;
    public double TimeStepLow { get; }
    public double TimeStepHigh { get; }

    public Mamba2Mixer(Mamba2Config config, int dState) : base(nameof(Mamba2Mixer))
    {
        Hidden = config.HiddenSize; Heads = config.NumHeads; HeadDim = config.HeadDim; Groups = config.NGroups;
        DState = dState; ConvKernel = config.ConvKernel; ChunkSize = config.ChunkSize;
        TimeStepLow = config.TimeStepLimitLow; TimeStepHigh = config.TimeStepLimitHigh;
        in_proj = nn.Linear(Hidden, Inner + ConvDim + Heads, hasBias: config.UseBias);
        conv1d = nn.Conv1d(ConvDim, ConvDim, ConvKernel, groups: ConvDim, bias: config.UseConvBias);
        // Initialisation as transformers': A = 1..H, dt log-uniform in [dt_min, dt_max] stored as softplus⁻¹.
        A_log = new Parameter(arange(1, Heads + 1, ScalarType.Float32).log());
        var dt = (rand(Heads) * (Math.Log(config.TimeStepMax) - Math.Log(config.TimeStepMin)) + Math.Log(config.TimeStepMin)).exp()
            .clamp_min(config.TimeStepFloor);
        dt_bias = new Parameter(dt + (-(-dt).expm1()).log());
        D = new Parameter(ones(Heads));
        // transformers normalises the whole width at once; mamba_ssm each group separately (identical when n_groups = 1).
        norm = new GatedRMSNorm(Inner, config.NormPerGroup ? Inner / Groups : Inner, config.LayerNormEpsilon);
        out_proj = nn.Linear(Inner, Hidden, hasBias: config.UseBias);
        RegisterComponents();
    }

    public override Tensor forward(Tensor u) { var (y, s) = Forward(u, null, ForwardMode.Chunked); s.Dispose(); return y; }

    /// <summary>A zero state for a batch: conv state in <paramref name="dtype"/>, SSM state in float32.</summary>
    public Mamba2LayerState InitialState(long batch, Device device, ScalarType dtype) =>
        new(zeros(batch, ConvDim, ConvKernel - 1, dtype, device), zeros(batch, Heads, HeadDim, DState, ScalarType.Float32, device));

    /// <summary>Elements of one sequence's state: the SSM state H·P·N and the conv state conv_dim·(K−1).</summary>
    public long StateElements => Heads * HeadDim * DState + ConvDim * (ConvKernel - 1);

    /// <param name="u">[B, T, hidden]</param>
    /// <param name="state">the state to continue from, or null for zeros</param>
    /// <param name="mode">chunked SSD or the token-by-token recurrence (same function)</param>
    /// <returns>[B, T, hidden] and the state after the last token.</returns>
    public (Tensor Y, Mamba2LayerState State) Forward(Tensor u, Mamba2LayerState? state, ForwardMode mode)
    {
        using var scope = NewDisposeScope();
        long b = u.shape[0], t = u.shape[1];
        var zxbcdt = in_proj.forward(u);                                                       // [B, T, I + conv_dim + H]
        var z = zxbcdt[.., .., ..(int)Inner];                                                  // [B, T, I]
        var xbc = zxbcdt[.., .., (int)Inner..(int)(Inner + ConvDim)];                          // [B, T, conv_dim]
        var dtRaw = zxbcdt[.., .., (int)(Inner + ConvDim)..];                                  // [B, T, H]

        var (conv, convState) = CausalConv1d.Forward(xbc, conv1d.weight!, conv1d.bias, state?.Conv);
        xbc = nn.functional.silu(conv);                                                        // [B, T, conv_dim]
        long gn = Groups * DState;
        var x = xbc[.., .., ..(int)Inner].reshape(b, t, Heads, HeadDim);                       // [B, T, H, P]
        var bm = xbc[.., .., (int)Inner..(int)(Inner + gn)].reshape(b, t, Groups, DState);     // [B, T, G, N]
        var cm = xbc[.., .., (int)(Inner + gn)..].reshape(b, t, Groups, DState);               // [B, T, G, N]

        var dt = nn.functional.softplus(dtRaw.to_type(ScalarType.Float32) + dt_bias.to_type(ScalarType.Float32)); // [B, T, H]
        if (TimeStepLow > 0 || !double.IsPositiveInfinity(TimeStepHigh)) dt = dt.clamp(TimeStepLow, TimeStepHigh);
        var a = -A_log.to_type(ScalarType.Float32).exp();                                      // [H]

        var (y, ssmState) = mode == ForwardMode.Recurrent
            ? RecurrentSsd.Forward(x, dt, a, bm, cm, state?.Ssm)
            : ChunkedSsd.Forward(x, dt, a, bm, cm, ChunkSize, state?.Ssm, Backend);                     // [B, T, H, P]
        y = y + D.to_type(y.dtype).view(Heads, 1) * x;
        var gated = norm.forward(y.reshape(b, t, Inner), z);                                   // [B, T, I]
        var outp = out_proj.forward(gated.to_type(u.dtype));                                   // [B, T, hidden]
        var newState = new Mamba2LayerState(convState, ssmState).MoveToOuterDisposeScope();
        return (outp.MoveToOuterDisposeScope(), newState);
    }
}
