using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace StateX.Layers;

/// <summary>fla's GatedMLP (SwiGLU): down_proj(silu(gate_proj(x)) ⊙ up_proj(x)).</summary>
public sealed class GatedMlp : nn.Module<Tensor, Tensor>
{
    // snake_case as fla: the field names are the checkpoint's parameter names (see GatedLinearAttention).
    public readonly Linear gate_proj, up_proj, down_proj;

    public GatedMlp(long hidden, long intermediate, string name = "GatedMlp") : base(name)
    {
        gate_proj = nn.Linear(hidden, intermediate, hasBias: false);
        up_proj = nn.Linear(hidden, intermediate, hasBias: false);
        down_proj = nn.Linear(intermediate, hidden, hasBias: false);
        RegisterComponents();
    }

    /// <param name="x">[B, T, hidden]</param>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return down_proj.call(nn.functional.silu(gate_proj.call(x)) * up_proj.call(x)).MoveToOuterDisposeScope();
    }
}
