namespace StateX.Evaluation;

/// <summary>Raised when a model produces NaN where an evaluation needs a number; the message says where.</summary>
public sealed class NonFiniteScoreException(string message) : Exception(message);

/// <summary>
/// Refuses NaN log-probabilities and logits before they become a score or a token. A NaN compares false with
/// everything, so an argmax over NaN logits still picks an id and an accuracy still comes out as a plausible number:
/// without this check a model with one NaN weight "scores" and "generates" as if it worked.
/// </summary>
static class FiniteScores
{
    /// <summary>Fails naming <paramref name="what"/> when any value is NaN (−∞ is a legitimate log-probability).</summary>
    public static void Require(ReadOnlySpan<float> values, string what)
    {
        int nan = 0;
        foreach (var v in values) if (float.IsNaN(v) || float.IsPositiveInfinity(v)) nan++;
        if (nan > 0)
            throw new NonFiniteScoreException($"{what}: {nan} of {values.Length} values are NaN or +Inf (the model's weights or state are not finite); refusing to report them as a result");
    }
}
