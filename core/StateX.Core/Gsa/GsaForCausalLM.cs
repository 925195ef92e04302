using StateX.Gla;
using StateX.Layers;
using StateX.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace StateX.Gsa;

/// <summary>
/// fla's GSABlock (fla/models/gsa/modeling_gsa.py): h += attn(attn_norm(h)); h += mlp(mlp_norm(h)). With fuse_norm
/// fla adds the residual inside mlp_norm; the function is the same.
/// </summary>
public sealed class GsaBlock : nn.Module<Tensor, Tensor>
{
    // snake_case as fla: the field names are the checkpoint's parameter names.
    public readonly RMSNorm attn_norm, mlp_norm;
    public readonly GatedSlotAttention attn;
    public readonly GatedMlp mlp;

    public GsaBlock(GsaConfig config, int layer, string name = "GsaBlock") : base(name)
    {
        attn_norm = new RMSNorm(config.HiddenSize, config.NormEps);
        attn = new GatedSlotAttention(config, config.SlotsOf(layer));
        mlp_norm = new RMSNorm(config.HiddenSize, config.NormEps);
        mlp = new GatedMlp(config.HiddenSize, config.MlpIntermediateSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Forward(x, null, ForwardMode.Chunked).Y;

    /// <param name="x">[B, T, hidden]</param>
    /// <param name="state">state from the previous segment, or null</param>
    /// <param name="mode">chunked or recurrent form</param>
    public (Tensor Y, GsaLayerState State) Forward(Tensor x, GsaLayerState? state, ForwardMode mode)
    {
        using var scope = NewDisposeScope();
        var (a, s) = attn.Forward(attn_norm.call(x), state, mode);
        var h = x + a;
        var y = h + mlp.call(mlp_norm.call(h));
        s.MoveToOuterDisposeScope();
        return (y.MoveToOuterDisposeScope(), s);
    }
}

/// <summary>fla's GSAModel: embeddings, blocks, final norm.</summary>
public sealed class GsaModel : nn.Module<Tensor, Tensor>
{
    public readonly Embedding embeddings;
    public readonly ModuleList<GsaBlock> layers;
    public readonly RMSNorm norm;

    public GsaModel(GsaConfig config, string name = "GsaModel") : base(name)
    {
        embeddings = nn.Embedding(config.VocabSize, config.HiddenSize);
        layers = nn.ModuleList(Enumerable.Range(0, config.NumHiddenLayers).Select(i => new GsaBlock(config, i)).ToArray());
        norm = new RMSNorm(config.HiddenSize, config.NormEps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor ids) => throw new NotSupportedException("use GsaForCausalLM.Forward");
}

/// <summary>
/// fla's GSAForCausalLM: parameter names <c>model.embeddings.weight</c>, <c>model.layers.{i}.attn.f_proj.weight</c>,
/// ..., <c>lm_head.weight</c> (absent when tied to the embeddings, as transformers saves a tied head).
/// </summary>
public sealed class GsaForCausalLM : nn.Module<Tensor, Tensor>, ICausalLanguageModel, ITrainableModel
{
    public readonly GsaModel model;
    public readonly Linear? lm_head;

    public GsaConfig Config { get; }
    public string Family => "gsa";
    public int VocabSize => Config.VocabSize;
    public int NumLayers => Config.NumHiddenLayers;
    public nn.Module Module => this;

    public GsaForCausalLM(GsaConfig config, string name = "GsaForCausalLM") : base(name)
    {
        config.Validate();
        Config = config;
        model = new GsaModel(config);
        if (!config.TieWordEmbeddings) lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
        InitWeights();
    }

    /// <summary>
    /// fla's GSAPreTrainedModel._init_weights as post_init calls it (no prenorm-residual strategy): N(0,
    /// initializer_range) for every nn.Linear (the t2r map's too), nn.Conv1d (ShortConvolution) and embedding weight,
    /// zero biases; RMSNorm weights ones.
    /// </summary>
    void InitWeights()
    {
        using var _ = no_grad();
        foreach (var (n, p) in named_parameters())
        {
            if (n.EndsWith("norm.weight")) continue;
            if (n.EndsWith(".bias")) p.zero_();
            else p.normal_(0, Config.InitializerRange);
        }
    }

    public IEnumerable<GatedSlotAttention> Attentions => model.layers.Select(l => l.attn);

    /// <summary>How every layer's pass 2 is computed and differentiated.</summary>
    public GlaBackend Backend
    {
        get => model.layers[0].attn.Backend;
        set { foreach (var l in model.layers) l.attn.Backend = value; }
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
            var prev = state?.Layers[i] as GsaLayerState
                ?? (state is null ? null : throw new ArgumentException($"layer {i} state is a {state.Layers[i].GetType().Name}, not a GSA state"));
            var (y, s) = model.layers[i].Forward(h, prev, mode);
            h = y;
            states[i] = s;
        }
        h = model.norm.call(h);
        var logits = Head(h);                                                        // [B, T, V]
        return LmOutput.Of(logits, labels, states, returnState);
    }

    Tensor Head(Tensor h) => lm_head is null ? nn.functional.linear(h, model.embeddings.weight!) : lm_head.call(h);

    public ModelState InitialState(long batch, Device device, ScalarType dtype) =>
        new(Attentions.Select(a => (ILayerState)a.InitialState(batch, device, dtype)).ToArray());

    public StateSizeReport StateSize() =>
        new(Attentions.Select((a, i) => { var (e, s) = a.StateElements(); return new LayerStateSize(i, "gsa", e, s); }).ToArray());

    public void Save(string directory) => GsaCheckpoint.Save(this, directory);

    public Models.TrainingStack TrainingStack() => Models.TrainingStack.OfSegmentBlocks(
        ids => model.embeddings.call(ids),
        model.layers.Select(l => new SegmentBlock(
            (x, s) => l.Forward(x, (GsaLayerState?)s, ForwardMode.Chunked),
            GsaLayerState.FromTensors)).ToArray(),
        h => model.norm.call(h),
        Head);
}
