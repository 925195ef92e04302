using System.Text.Json.Nodes;
using StateX.Expansion;
using StateX.Models;

namespace StateX.Training;

/// <summary>A model made ready for one of the recipes: what to train and what to record about it.</summary>
public sealed record PreparedModel(ICausalLanguageModel Model, IReadOnlyList<string>? Trainable, JsonObject Describe, ExpansionResult? Expansion);

/// <summary>
/// The two arms of the StateX paper's comparison. They differ only in the model that goes into the same training
/// run: <c>lpt</c> (long-context post-training) trains the model as it is; <c>statex</c> first enlarges the state of
/// some layers (<see cref="StateExpansion"/>, by default the paper's recipe for the family) and then trains it.
/// Options, data, tokens, schedule and seed are shared, so their comparison is fair.
/// </summary>
public static class TrainRecipes
{
    public static readonly IReadOnlyList<string> Names = ["lpt", "statex"];

    /// <summary>The paper's expansion for the family (one layer in six from layer 0; GLA heads merged, Mamba2 d_state ×4; reinitialised).
    /// GSA has no paper recipe; its default is ours, the paper's layer choice with Mamba2's ×4 fresh state: every:6, slots ×4, fresh slots.</summary>
    public static ExpansionRequest DefaultExpansion(string family, long seed = 0) =>
        family == "gsa" ? new ExpansionRequest(new LayerSelection.Every(6), new Rewrite.WidenState(4), ExpansionInit.Reinit, seed) :
        (ExpansionPresets.All.FirstOrDefault(p => p.Family == family)
            ?? throw new NotSupportedException($"no default StateX expansion for {family} models")).ToRequest(seed);

    /// <summary>Applies <paramref name="recipe"/> to <paramref name="model"/>; for statex the input model is disposed and replaced by its expansion.</summary>
    /// <param name="recipe">lpt (the model as is) or statex (expanded first)</param>
    /// <param name="model">the starting model; for statex, disposed once expanded</param>
    /// <param name="expansion">statex only: what to expand (null: <see cref="DefaultExpansion"/>)</param>
    /// <param name="freezeUnexpanded">statex only: train only the expanded layers</param>
    public static PreparedModel Prepare(string recipe, ICausalLanguageModel model, ExpansionRequest? expansion = null, bool freezeUnexpanded = false)
    {
        switch (recipe)
        {
            case "lpt":
                if (expansion is not null) throw new ArgumentException("the lpt recipe trains the model unchanged; an expansion belongs to the statex recipe");
                if (freezeUnexpanded) throw new ArgumentException("freezing the unexpanded layers needs the statex recipe: lpt expands no layer");
                return new PreparedModel(model, null, new JsonObject { ["recipe"] = "lpt" }, null);
            case "statex":
                var request = (expansion ?? DefaultExpansion(model.Family)) with { FreezeOthers = freezeUnexpanded };
                var result = StateExpansion.Apply(model, request);
                model.Module.Dispose();
                var describe = new JsonObject
                {
                    ["recipe"] = "statex",
                    ["expansion"] = new JsonObject
                    {
                        ["layers"] = request.Layers.ToString(),
                        ["rewrite"] = request.Rewrite.ToString(),
                        ["init"] = request.Init.ToString().ToLowerInvariant(),
                        ["seed"] = request.Seed,
                        ["expanded_layers"] = new JsonArray(result.ExpandedLayers.Select(i => (JsonNode)i).ToArray()),
                        ["freeze_unexpanded"] = freezeUnexpanded,
                        ["state_elements_before"] = result.Account.StateBefore,
                        ["state_elements_after"] = result.Account.StateAfter,
                    },
                };
                return new PreparedModel(result.Model, freezeUnexpanded ? result.TrainableParameters : null, describe, result);
            default:
                throw new ArgumentException($"unknown recipe '{recipe}': expected {string.Join(" or ", Names)}");
        }
    }
}
