using System.Text.Json;
using StateX.IO;
using StateX.Layers;
using StateX.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace StateX.Mamba2;

/// <summary>One residual block: u ← u + mixer(norm(u)), the residual stream kept in float32 when configured.</summary>
public sealed class Mamba2Block : nn.Module<Tensor, Tensor>
{
    // Named as transformers names them: the field names are the checkpoint's parameter names (see Mamba2Mixer).
    public readonly RMSNorm norm;
    public readonly Mamba2Mixer mixer;
    readonly bool _residualInFp32;

    public Mamba2Block(Mamba2Config config, int layer) : base(nameof(Mamba2Block))
    {
        norm = new RMSNorm(config.HiddenSize, config.LayerNormEpsilon);
        mixer = new Mamba2Mixer(config, config.StateSizeOf(layer));
        _residualInFp32 = config.ResidualInFp32;
        RegisterComponents();
    }

    public override Tensor forward(Tensor u) { var (y, s) = Forward(u, null, ForwardMode.Chunked); s.Dispose(); return y; }

    /// <param name="u">[B, T, hidden] residual stream</param>
    /// <param name="state">the mixer's state to continue from, or null</param>
    /// <param name="mode">execution form of the mixer</param>
    public (Tensor Y, Mamba2LayerState State) Forward(Tensor u, Mamba2LayerState? state, ForwardMode mode)
    {
        using var scope = NewDisposeScope();
        var residual = _residualInFp32 ? u.to_type(ScalarType.Float32) : u;
        var (mixed, s) = mixer.Forward(norm.forward(u.to_type(norm.weight.dtype)), state, mode);
        var y = residual + mixed.to_type(residual.dtype);
        return (y.MoveToOuterDisposeScope(), s.MoveToOuterDisposeScope());
    }
}

/// <summary>transformers' <c>Mamba2Model</c>: embeddings, blocks, final norm.</summary>
public sealed class Mamba2Backbone : nn.Module<Tensor, Tensor>
{
    public readonly Embedding embeddings;
    public readonly ModuleList<Mamba2Block> layers;
    public readonly RMSNorm norm_f;

    public Mamba2Backbone(Mamba2Config config) : base(nameof(Mamba2Backbone))
    {
        embeddings = nn.Embedding(config.VocabSize, config.HiddenSize);
        layers = nn.ModuleList(Enumerable.Range(0, config.NumLayers).Select(i => new Mamba2Block(config, i)).ToArray());
        norm_f = new RMSNorm(config.HiddenSize, config.LayerNormEpsilon);
        RegisterComponents();
    }

    public override Tensor forward(Tensor ids) => throw new NotSupportedException("use Mamba2ForCausalLM.Forward");
}

/// <summary>
/// The Mamba2 language model (transformers' <c>Mamba2ForCausalLM</c>): embeddings → N blocks → norm_f → LM head,
/// the head tied to the embeddings unless <c>tie_word_embeddings</c> is false.
/// </summary>
public sealed class Mamba2ForCausalLM : nn.Module, ICausalLanguageModel, ITrainableModel
{
    public readonly Mamba2Backbone backbone;
    public readonly Linear? lm_head;
    public Mamba2Config Config { get; }

    public Mamba2ForCausalLM(Mamba2Config config) : base(nameof(Mamba2ForCausalLM))
    {
        Config = config.Validate();
        backbone = new Mamba2Backbone(config);
        if (!config.TieWordEmbeddings) lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        using (no_grad())
        {
            nn.init.normal_(backbone.embeddings.weight!, 0, config.InitializerRange);
            if (lm_head is not null) nn.init.normal_(lm_head.weight!, 0, config.InitializerRange);
            if (config.RescalePrenormResidual)
                foreach (var layer in backbone.layers) layer.mixer.out_proj.weight!.div_(Math.Sqrt(config.NumLayers));
        }
        RegisterComponents();
    }

    public string Family => "mamba2";
    public int VocabSize => Config.VocabSize;
    public int NumLayers => Config.NumLayers;
    public nn.Module Module => this;

    /// <summary>The LM head's weight [V, hidden]: the embeddings when tied.</summary>
    public Tensor HeadWeight => lm_head?.weight ?? backbone.embeddings.weight!;

    public LmOutput Forward(Tensor inputIds, Tensor? labels = null, ModelState? state = null, bool returnState = false, ForwardMode mode = ForwardMode.Chunked)
    {
        if (inputIds.dim() != 2) throw new ArgumentException($"input_ids must be [B, T], got [{string.Join(", ", inputIds.shape)}]");
        if (state is not null && state.Layers.Count != NumLayers) throw new ArgumentException($"state has {state.Layers.Count} layers, the model {NumLayers}");
        using var scope = NewDisposeScope();
        var u = backbone.embeddings.forward(inputIds);                                         // [B, T, hidden]
        var states = new ILayerState[NumLayers];
        for (int i = 0; i < NumLayers; i++)
        {
            var layerState = state is null ? null
                : state.Layers[i] as Mamba2LayerState ?? throw new ArgumentException($"layer {i}: state is {state.Layers[i].GetType().Name}, not a Mamba2 state");
            (u, var s) = backbone.layers[i].Forward(u, layerState, mode);
            states[i] = s;
        }
        var hidden = backbone.norm_f.forward(u.to_type(backbone.norm_f.weight.dtype));         // [B, T, hidden]
        var logits = nn.functional.linear(hidden.to_type(HeadWeight.dtype), HeadWeight);       // [B, T, V]
        return LmOutput.Of(logits, labels, states, returnState);
    }

    public ModelState InitialState(long batch, Device device, ScalarType dtype) =>
        new(backbone.layers.Select(l => (ILayerState)l.mixer.InitialState(batch, device, dtype)).ToArray());

    /// <summary>How every mixer's chunked form computes its intra-chunk scores.</summary>
    public SsdBackend Backend
    {
        get => backbone.layers[0].mixer.Backend;
        set { foreach (var l in backbone.layers) l.mixer.Backend = value; }
    }

    public StateSizeReport StateSize() => new(backbone.layers.Select((l, i) =>
    {
        var m = l.mixer;
        return new LayerStateSize(i, "mamba2", m.StateElements,
            $"{m.Heads} heads × {m.HeadDim} × {m.DState} + conv {m.ConvDim} × {m.ConvKernel - 1}");
    }).ToArray());

    /// <summary>Writes config.json and model.safetensors in the transformers dialect (tied head not stored).</summary>
    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        var cfg = Config.ToHuggingFace();
        cfg["dtype"] = backbone.embeddings.weight!.dtype switch
        {
            ScalarType.BFloat16 => "bfloat16",
            ScalarType.Float16 => "float16",
            ScalarType.Float64 => "float64",
            _ => "float32",
        };
        File.WriteAllText(Path.Combine(directory, "config.json"), cfg.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        var tensors = named_parameters().Select(kv => new KeyValuePair<string, Tensor>(kv.name, kv.parameter.detach().cpu())).ToList();
        SafeTensorsWriter.Write(Path.Combine(directory, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        foreach (var (_, t) in tensors) t.Dispose();
    }

    public Models.TrainingStack TrainingStack() => Models.TrainingStack.OfSegmentBlocks(
        ids => backbone.embeddings.forward(ids),
        backbone.layers.Select(l => new SegmentBlock(
            (u, s) => l.Forward(u, (Mamba2LayerState?)s, ForwardMode.Chunked),
            Mamba2LayerState.FromTensors)).ToArray(),
        u => backbone.norm_f.forward(u.to_type(backbone.norm_f.weight.dtype)),
        h => nn.functional.linear(h.to_type(HeadWeight.dtype), HeadWeight));
}
