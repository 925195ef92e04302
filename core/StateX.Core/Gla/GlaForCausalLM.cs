using StateX.IO;
using StateX.Layers;
using StateX.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace StateX.Gla;

/// <summary>fla's GLABlock: h += attn(attn_norm(h)); h += mlp(mlp_norm(h)).</summary>
public sealed class GlaBlock : nn.Module<Tensor, Tensor>
{
    // snake_case as fla: the field names are the checkpoint's parameter names (see GatedLinearAttention).
    public readonly RMSNorm attn_norm, mlp_norm;
    public readonly GatedLinearAttention attn;
    public readonly GatedMlp mlp;

    public GlaBlock(GlaConfig config, int layer, string name = "GlaBlock") : base(name)
    {
        attn_norm = new RMSNorm(config.HiddenSize, config.NormEps);
        attn = new GatedLinearAttention(config, config.HeadsOf(layer), config.NumKvHeads);
        mlp_norm = new RMSNorm(config.HiddenSize, config.NormEps);
        mlp = new GatedMlp(config.HiddenSize, config.MlpIntermediateSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Forward(x, null, ForwardMode.Chunked).Y;

    /// <param name="x">[B, T, hidden]</param>
    /// <param name="state">state from the previous segment, or null</param>
    /// <param name="mode">chunked or recurrent form</param>
    public (Tensor Y, GlaLayerState State) Forward(Tensor x, GlaLayerState? state, ForwardMode mode)
    {
        using var scope = NewDisposeScope();
        var (a, s) = attn.Forward(attn_norm.call(x), state, mode);
        var h = x + a;
        var y = h + mlp.call(mlp_norm.call(h));
        s.MoveToOuterDisposeScope();
        return (y.MoveToOuterDisposeScope(), s);
    }
}

/// <summary>fla's GLAModel: embeddings, blocks, final norm.</summary>
public sealed class GlaModel : nn.Module<Tensor, Tensor>
{
    public readonly Embedding embeddings;
    public readonly ModuleList<GlaBlock> layers;
    public readonly RMSNorm norm;

    public GlaModel(GlaConfig config, string name = "GlaModel") : base(name)
    {
        embeddings = nn.Embedding(config.VocabSize, config.HiddenSize);
        layers = nn.ModuleList(Enumerable.Range(0, config.NumHiddenLayers).Select(i => new GlaBlock(config, i)).ToArray());
        norm = new RMSNorm(config.HiddenSize, config.NormEps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor ids) => throw new NotSupportedException("use GlaForCausalLM.Forward");
}

/// <summary>
/// fla's GLAForCausalLM: parameter names <c>model.embeddings.weight</c>, <c>model.layers.{i}.attn.q_proj.weight</c>,
/// ..., <c>lm_head.weight</c> (absent when tied to the embeddings).
/// </summary>
public sealed class GlaForCausalLM : nn.Module<Tensor, Tensor>, ICausalLanguageModel, ITrainableModel
{
    public readonly GlaModel model;
    public readonly Linear? lm_head;

    public GlaConfig Config { get; }
    public string Family => "gla";
    public int VocabSize => Config.VocabSize;
    public int NumLayers => Config.NumHiddenLayers;
    public nn.Module Module => this;

    public GlaForCausalLM(GlaConfig config, string name = "GlaForCausalLM") : base(name)
    {
        config.Validate();
        Config = config;
        model = new GlaModel(config);
        if (!config.TieWordEmbeddings) lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
        InitWeights();
    }

    /// <summary>fla's _init_weights: N(0, initializer_range) for linear, conv and embedding weights, zero biases.</summary>
    void InitWeights()
    {
        using var _ = no_grad();
        foreach (var (n, p) in named_parameters())
        {
            if (n.EndsWith("norm.weight") || n.EndsWith("g_norm_swish_gate.weight") || n.EndsWith("g_norm.weight")) continue;
            if (n.EndsWith(".bias")) p.zero_();
            else p.normal_(0, Config.InitializerRange);
        }
    }

    /// <summary>Chunk length used by every layer's chunked form.</summary>
    public int ChunkSize
    {
        get => model.layers[0].attn.ChunkSize;
        set { foreach (var l in model.layers) l.attn.ChunkSize = value; }
    }

    /// <summary>How every layer's chunked form is computed and differentiated.</summary>
    public GlaBackend Backend
    {
        get => model.layers[0].attn.Backend;
        set { foreach (var l in model.layers) l.attn.Backend = value; }
    }

    public IEnumerable<GatedLinearAttention> Attentions => model.layers.Select(l => l.attn);

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
            var prev = state?.Layers[i] as GlaLayerState
                ?? (state is null ? null : throw new ArgumentException($"layer {i} state is a {state.Layers[i].GetType().Name}, not a GLA state"));
            var (y, s) = model.layers[i].Forward(h, prev, mode);
            h = y;
            states[i] = s;
        }
        h = model.norm.call(h);
        var logits = lm_head is null ? nn.functional.linear(h, model.embeddings.weight!) : lm_head.call(h); // [B, T, V]
        return LmOutput.Of(logits, labels, states, returnState);
    }

    public ModelState InitialState(long batch, Device device, ScalarType dtype) =>
        new(Attentions.Select(a => (ILayerState)a.InitialState(batch, device, dtype)).ToArray());

    public StateSizeReport StateSize() =>
        new(Attentions.Select((a, i) => { var (e, s) = a.StateElements(); return new LayerStateSize(i, "gla", e, s); }).ToArray());

    public void Save(string directory) => GlaCheckpoint.Save(this, directory);

    public Models.TrainingStack TrainingStack() => Models.TrainingStack.OfSegmentBlocks(
        ids => model.embeddings.call(ids),
        model.layers.Select(l => new SegmentBlock(
            (x, s) => l.Forward(x, (GlaLayerState?)s, ForwardMode.Chunked),
            GlaLayerState.FromTensors)).ToArray(),
        h => model.norm.call(h),
        h => lm_head is null ? nn.functional.linear(h, model.embeddings.weight!) : lm_head.call(h));
}
