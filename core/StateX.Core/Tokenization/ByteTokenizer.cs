using System.Text;

namespace StateX.Tokenization;

/// <summary>
/// UTF-8 bytes as ids 0–255, then &lt;pad&gt; = 256, &lt;bos&gt; = 257, &lt;eos&gt; = 258: the tokenizer for models
/// trained from scratch, where no vocabulary needs learning. Decoding invalid UTF-8 gives U+FFFD.
/// </summary>
public sealed class ByteTokenizer : ITokenizer
{
    public const int Pad = 256, Bos = 257, Eos = 258;
    /// <summary>The marker file <see cref="Save"/> writes and <see cref="Tokenizers.Load"/> recognises.</summary>
    public const string MarkerFile = "statex_tokenizer.json";

    public string Name => "byte(259)";
    public int VocabSize => 259;
    public int? BosId => Bos;
    public int? EosId => Eos;
    public int? PadId => Pad;

    public int[] Encode(string text, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var bytes = Encoding.UTF8.GetBytes(text);
        var ids = new int[bytes.Length + (addSpecialTokens ? 1 : 0)];
        int o = 0;
        if (addSpecialTokens) ids[o++] = Bos;
        foreach (var b in bytes) ids[o++] = b;
        return ids;
    }

    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        var sb = new StringBuilder();
        var run = new List<byte>();
        void Flush() { if (run.Count > 0) { sb.Append(Encoding.UTF8.GetString(run.ToArray())); run.Clear(); } }
        foreach (var id in ids)
        {
            if (id is >= 0 and < 256) { run.Add((byte)id); continue; }
            if (id is < 0 or >= 259) throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside the vocabulary of {Name}");
            Flush();
            if (!skipSpecialTokens) sb.Append(id switch { Pad => "<pad>", Bos => "<bos>", _ => "<eos>" });
        }
        Flush();
        return sb.ToString();
    }

    /// <summary>Writes the marker file so that <see cref="Tokenizers.Load"/> finds this tokenizer in a model folder.</summary>
    public static void Save(string folder)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, MarkerFile), "{\"type\": \"byte\", \"vocab_size\": 259}\n");
    }
}
