using System.Text;
using StateX.Tokenization;

namespace StateX.Data;

/// <summary>
/// Language-like English generated from a small probabilistic grammar: sentences with subjects, verbs, objects,
/// adjectives, prepositional phrases, names, numbers and a little agreement, in paragraphs. It has the local
/// structure of text (words, syntax, punctuation, frequent and rare words) that a language model learns first,
/// needs no download, and is reproducible from the seed. It stands in for real text in the demo: the held-out
/// loss on it is the "other capabilities" check. Spec: <c>synth:text:len=CHARS</c> (approximate document length,
/// default 1024).
/// </summary>
public sealed class GrammarTextGenerator(int length) : ISyntheticGenerator
{
    public string Name => "text";

    static readonly string[] Names = ["Ada", "Bruno", "Chen", "Dara", "Emil", "Farah", "Gus", "Hana", "Ivo", "Jun", "Kemal", "Lena", "Mira", "Nils", "Omar", "Pia"];
    static readonly string[] Nouns = ["river", "garden", "machine", "letter", "village", "teacher", "window", "market", "bridge", "song", "engine", "forest", "doctor", "table", "story", "harbor", "lamp", "farmer", "clock", "road", "island", "painter", "storm", "library"];
    static readonly string[] Adjectives = ["old", "quiet", "bright", "small", "heavy", "green", "careful", "strange", "warm", "broken", "famous", "narrow", "gentle", "early", "distant", "red"];
    static readonly (string Singular, string Plural, string Past)[] Verbs =
    [
        ("sees", "see", "saw"), ("builds", "build", "built"), ("finds", "find", "found"), ("carries", "carry", "carried"),
        ("paints", "paint", "painted"), ("follows", "follow", "followed"), ("opens", "open", "opened"), ("remembers", "remember", "remembered"),
        ("repairs", "repair", "repaired"), ("visits", "visit", "visited"), ("watches", "watch", "watched"), ("sells", "sell", "sold"),
    ];
    static readonly string[] Prepositions = ["near", "behind", "under", "across", "beside", "inside", "beyond", "above"];
    static readonly string[] Adverbs = ["slowly", "often", "quietly", "again", "never", "always", "suddenly", "carefully"];
    static readonly string[] Connectives = ["and", "but", "because", "while", "so"];
    static readonly string[] Numbers = ["two", "three", "four", "five", "seven", "ten", "twelve"];

    public SyntheticDocument Generate(ulong seed, long index, ITokenizer tokenizer)
    {
        var rng = new Rng(Rng.Derive(seed, index, 0x7e47));
        var sb = new StringBuilder();
        while (sb.Length < length)
        {
            if (sb.Length > 0) sb.Append(rng.NextInt(5) == 0 ? "\n\n" : " ");
            sb.Append(Sentence(rng));
        }
        return new SyntheticDocument(Text: sb.ToString());
    }

    static string Pick(Rng rng, string[] words) => words[rng.NextInt(words.Length)];

    static string Capitalise(string s) => char.ToUpperInvariant(s[0]) + s[1..];

    /// <summary>A noun phrase and whether it is plural.</summary>
    static (string Text, bool Plural) NounPhrase(Rng rng)
    {
        switch (rng.NextInt(6))
        {
            case 0: return (Pick(rng, Names), false);
            case 1: return ($"{Pick(rng, Numbers)} {Pick(rng, Adjectives)} {Pick(rng, Nouns)}s", true);
            case 2: return ($"the {Pick(rng, Nouns)}s", true);
            default:
                var adj = rng.NextInt(2) == 0 ? Pick(rng, Adjectives) + " " : "";
                return ($"the {adj}{Pick(rng, Nouns)}", false);
        }
    }

    static string Clause(Rng rng)
    {
        var (subject, plural) = NounPhrase(rng);
        var verb = Verbs[rng.NextInt(Verbs.Length)];
        var form = rng.NextInt(3) == 0 ? verb.Past : plural ? verb.Plural : verb.Singular;
        var (obj, _) = NounPhrase(rng);
        var sb = new StringBuilder($"{subject} ");
        if (rng.NextInt(4) == 0) sb.Append(Pick(rng, Adverbs)).Append(' ');
        sb.Append(form).Append(' ').Append(obj);
        if (rng.NextInt(3) == 0) sb.Append(' ').Append(Pick(rng, Prepositions)).Append(' ').Append(NounPhrase(rng).Text);
        return sb.ToString();
    }

    static string Sentence(Rng rng)
    {
        var s = Clause(rng);
        if (rng.NextInt(3) == 0) s += $"{(rng.NextInt(2) == 0 ? "," : "")} {Pick(rng, Connectives)} {Clause(rng)}";
        return Capitalise(s) + (rng.NextInt(10) == 0 ? "!" : ".");
    }

    public static GrammarTextGenerator FromOptions(IReadOnlyDictionary<string, string> o) =>
        new(Math.Max(1, SpecOptions.Int(o, "len", 1024, "synth:text")));
}
