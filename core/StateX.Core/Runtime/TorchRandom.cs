using static TorchSharp.torch;

namespace StateX;

/// <summary>
/// libtorch's default generator is one per process: models built on several threads at once (the demo runs seeds
/// side by side) would interleave its draws and lose reproducibility. Seeding and building under one lock keeps
/// every model a function of its seed alone.
/// </summary>
public static class TorchRandom
{
    static readonly object Gate = new();

    /// <summary>Seeds the default generator with <paramref name="seed"/> and runs <paramref name="create"/>, with no other <c>Seeded</c> call in between.</summary>
    public static T Seeded<T>(long seed, Func<T> create)
    {
        lock (Gate)
        {
            manual_seed(seed);
            return create();
        }
    }

    /// <summary>
    /// Runs <paramref name="create"/> (a model constructor, which draws its initial weights from the default
    /// generator even when a checkpoint overwrites them next) outside any other thread's <c>Seeded</c> call.
    /// </summary>
    public static T Exclusive<T>(Func<T> create)
    {
        lock (Gate) return create();
    }
}
