using StateX.Tokenization;

namespace StateX.Evaluation.Tasks;

/// <summary>
/// Builds long prompts in token space from pieces of text, so that lengths are exact and a 256K-token haystack
/// costs one tokenisation of each piece. A piece is encoded as it tokenises after the text that precedes it
/// (so a byte-level BPE sees the leading space, a SentencePiece model no dummy prefix), which equals encoding
/// the joined text whenever the tokenizer does not merge across the boundary.
/// </summary>
public static class TextParts
{
    public static int[] After(ITokenizer tok, string before, string text)
    {
        var a = tok.Encode(before);
        var ab = tok.Encode(before + text);
        return ab.Length >= a.Length && ab.AsSpan(0, a.Length).SequenceEqual(a) ? ab[a.Length..] : tok.Encode(text);
    }

    /// <summary><paramref name="count"/> tokens of <paramref name="unit"/> repeated cyclically.</summary>
    public static IEnumerable<int> Cycle(int[] unit, int count)
    {
        if (count > 0 && unit.Length == 0) throw new ArgumentException("the filler text encodes to no tokens");
        for (int i = 0; i < count; i++) yield return unit[i % unit.Length];
    }

    /// <summary>Default filler (as in the passkey tests of Landmark Attention and "Stuffed Mamba").</summary>
    public const string Filler = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
}

/// <summary>Small word pools for synthetic tasks (keys of needles, inputs and labels of in-context learning).</summary>
public static class Words
{
    public static readonly string[] Nouns =
    [
        "apple", "river", "candle", "window", "garden", "rocket", "pencil", "mirror", "forest", "bottle", "castle", "dragon",
        "engine", "feather", "guitar", "hammer", "island", "jacket", "kettle", "ladder", "magnet", "needle", "orange", "pillow",
        "rabbit", "saddle", "tunnel", "violin", "wallet", "yogurt", "anchor", "basket", "carpet", "desert", "falcon", "glacier",
        "harbor", "insect", "jungle", "lantern", "meadow", "napkin", "oyster", "parrot", "quarry", "ribbon", "shovel", "tomato",
        "umbrella", "valley", "walnut", "zipper", "button", "cactus", "dolphin", "elbow", "fossil", "goblet", "helmet", "igloo",
    ];

    public static readonly string[] Adjectives =
    [
        "abundant", "brave", "calm", "distant", "eager", "fancy", "gentle", "hollow", "icy", "jolly", "keen", "lively",
        "mellow", "nimble", "odd", "proud", "quiet", "rapid", "shiny", "tidy", "upbeat", "vivid", "witty", "young",
        "ancient", "bitter", "crisp", "dusty", "early", "fierce", "grumpy", "hungry",
    ];
}
