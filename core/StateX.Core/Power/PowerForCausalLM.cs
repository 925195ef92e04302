using StateX.Gla;
using StateX.Layers;
using StateX.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace StateX.Power;

/// <summary>A pre-norm block as fla's: h += attn(attn_norm(h)); h += mlp(mlp_norm(h)).</summary>
public sealed class PowerBlock : nn.Module<Tensor, Tensor>
{
    public readonly RMSNorm attn_norm, mlp_norm;
    public readonly PowerAttentionLayer attn;
    public readonly GatedMlp mlp;

    public PowerBlock(PowerConfig config, string name = "PowerBlock") : base(name)
    {
        attn_norm = new RMSNorm(config.HiddenSize, config.NormEps);
        attn = new PowerAttentionLayer(config);
        mlp_norm = new RMSNorm(config.HiddenSize, config.NormEps);
        mlp = new GatedMlp(config.HiddenSize, config.MlpIntermediateSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Forward(x, null, ForwardMode.Chunked).Y;

    /// <param name="x">[B, T, hidden]</param>
    /// <param name="state">state from the previous segment, or null</param>
    /// <param name="mode">chunked or recurrent form</param>
    public (Tensor Y, PowerLayerState State) Forward(Tensor x, PowerLayerState? state, ForwardMode mode)
    {
        using var scope = NewDisposeScope();
        var (a, s) = attn.Forward(attn_norm.call(x), state, mode);
        var h = x + a;
        var y = h + mlp.call(mlp_norm.call(h));
        s.MoveToOuterDisposeScope();
        return (y.MoveToOuterDisposeScope(), s);
    }
}

public sealed class PowerModel : nn.Module<Tensor, Tensor>
{
    public readonly Embedding embeddings;
    public readonly ModuleList<PowerBlock> layers;
    public readonly RMSNorm norm;

    public PowerModel(PowerConfig config, string name = "PowerModel") : base(name)
    {
        embeddings = nn.Embedding(config.VocabSize, config.HiddenSize);
        layers = nn.ModuleList(Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new PowerBlock(config)).ToArray());
        norm = new RMSNorm(config.HiddenSize, config.NormEps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor ids) => throw new NotSupportedException("use PowerForCausalLM.Forward");
}

/// <summary>
/// A tiny causal LM around power attention (ours: no reference checkpoints exist), laid out as fla's models
/// (<c>model.embeddings</c>, <c>model.layers.{i}.attn</c>, <c>lm_head</c>) so the framework's tools apply unchanged.
/// </summary>
public sealed class PowerForCausalLM : nn.Module<Tensor, Tensor>, ICausalLanguageModel, ITrainableModel
{
    public readonly PowerModel model;
    public readonly Linear? lm_head;
    public PowerConfig Config { get; }
    public string Family => "power";
    public int VocabSize => Config.VocabSize;
    public int NumLayers => Config.NumHiddenLayers;
    public nn.Module Module => this;

    public PowerForCausalLM(PowerConfig config, string name = "PowerForCausalLM") : base(name)
    {
        config.Validate();
        Config = config;
        model = new PowerModel(config);
        if (!config.TieWordEmbeddings) lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
        InitWeights();
    }

    /// <summary>
    /// fla's rule, N(0, initializer_range) for linear and embedding weights, norms one; gate biases 3 (ours: σ(3) ≈ 0.95
    /// retention per step, so a fresh model remembers over tens of tokens instead of forgetting half each step).
    /// </summary>
    void InitWeights()
    {
        using var _ = no_grad();
        foreach (var (n, p) in named_parameters())
        {
            if (n.EndsWith("norm.weight")) continue;
            if (n.EndsWith("g_proj.bias")) p.fill_(3.0);
            else if (n.EndsWith(".bias")) p.zero_();
            else p.normal_(0, Config.InitializerRange);
        }
    }

    public override Tensor forward(Tensor inputIds) => Forward(inputIds).Logits;

    public LmOutput Forward(Tensor inputIds, Tensor? labels = null, ModelState? state = null, bool returnState = false, ForwardMode mode = ForwardMode.Chunked)
    {
        if (inputIds.dim() != 2) throw new ArgumentException($"input ids must be [B, T], got [{string.Join(", ", inputIds.shape)}]");
        if (state is not null && state.Layers.Count != NumLayers) throw new ArgumentException($"state has {state.Layers.Count} layers, the model {NumLayers}");
        using var scope = NewDisposeScope();
        var h = model.embeddings.call(inputIds);                                     // [B, T, hidden]
        var states = new ILayerState[NumLayers];
        for (int i = 0; i < NumLayers; i++)
        {
            var prev = state?.Layers[i] as PowerLayerState
                ?? (state is null ? null : throw new ArgumentException($"layer {i} state is a {state.Layers[i].GetType().Name}, not a power-attention state"));
            var (y, s) = model.layers[i].Forward(h, prev, mode);
            h = y;
            states[i] = s;
        }
        return LmOutput.Of(Head(model.norm.call(h)), labels, states, returnState);
    }

    Tensor Head(Tensor h) => lm_head is null ? nn.functional.linear(h, model.embeddings.weight!) : lm_head.call(h);

    public ModelState InitialState(long batch, Device device, ScalarType dtype) =>
        new(model.layers.Select(l => (ILayerState)l.attn.InitialState(batch, device)).ToArray());

    public StateSizeReport StateSize() =>
        new(Enumerable.Range(0, NumLayers).Select(i => new LayerStateSize(i, "power", Config.StateElementsPerLayer,
            $"{Config.NumHeads} heads × C({Config.HeadDim}+{Config.Degree}−1, {Config.Degree}) = {SymmetricPower.FeatureCount(Config.HeadDim, Config.Degree)} × ({Config.HeadDim} + 1)")).ToArray());

    public void Save(string directory) => PowerCheckpoint.Save(this, directory);

    public Models.TrainingStack TrainingStack() => Models.TrainingStack.OfSegmentBlocks(
        ids => model.embeddings.call(ids),
        model.layers.Select(l => new SegmentBlock(
            (x, s) => l.Forward(x, (PowerLayerState?)s, ForwardMode.Chunked),
            PowerLayerState.FromTensors)).ToArray(),
        h => model.norm.call(h),
        Head);
}
