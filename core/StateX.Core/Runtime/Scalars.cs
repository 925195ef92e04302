using TorchSharp;

namespace StateX;

/// <summary>
/// Scalars that native calls take often, held for the life of the process. A Scalar made implicitly from a literal
/// (<c>masked_fill(mask, double.NegativeInfinity)</c>) is referenced only until the call starts, and its finaliser
/// frees the native value: when a collection runs during the call, libtorch reads freed memory (seen as
/// "Expected false to be true" from <c>Scalar::toFloat</c> inside <c>masked_fill</c> during an evaluation).
/// </summary>
public static class Scalars
{
    public static readonly Scalar NegativeInfinity = double.NegativeInfinity.ToScalar();
    public static readonly Scalar Zero = 0.0.ToScalar();
}
