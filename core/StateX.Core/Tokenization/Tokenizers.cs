using System.Text.Json.Nodes;

namespace StateX.Tokenization;

/// <summary>Finds and loads the tokenizer a folder holds.</summary>
public static class Tokenizers
{
    /// <summary>
    /// "byte" → <see cref="ByteTokenizer"/>; otherwise a folder (or a tokenizer.json / tokenizer.model path) holding
    /// statex_tokenizer.json (byte), a byte-level BPE tokenizer.json (GPT-NeoX), or a SentencePiece BPE
    /// tokenizer.model (Llama/Mistral; tokenizer.json beside it supplies added tokens and the template).
    /// </summary>
    public static ITokenizer Load(string folderOrName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folderOrName);
        if (folderOrName == "byte") return new ByteTokenizer();
        var folder = File.Exists(folderOrName) ? Path.GetDirectoryName(Path.GetFullPath(folderOrName))! : folderOrName;
        if (!Directory.Exists(folder))
            throw new TokenizerException($"tokenizer folder '{folderOrName}' not found (give a folder with tokenizer.json / tokenizer.model, or \"byte\")");

        var marker = Path.Combine(folder, ByteTokenizer.MarkerFile);
        if (File.Exists(marker))
        {
            var type = (JsonNode.Parse(File.ReadAllText(marker)) as JsonObject)?["type"]?.GetValue<string>();
            return type == "byte" ? new ByteTokenizer()
                : throw new TokenizerException($"{marker}: unknown tokenizer type '{type}' (expected \"byte\")");
        }

        var jsonPath = Path.Combine(folder, "tokenizer.json");
        var modelPath = Path.Combine(folder, "tokenizer.model");
        if (File.Exists(jsonPath))
        {
            try { return FromJson(jsonPath, modelPath); }
            // tokenizer.json has no schema: its readers navigate the entries Hugging Face writes, and an entry that is
            // missing or of another type surfaces as one of these, naming no file.
            catch (Exception e) when (e is InvalidOperationException or FormatException or InvalidCastException or NullReferenceException
                                        or KeyNotFoundException or ArgumentException or IndexOutOfRangeException)
            { throw new TokenizerException($"{jsonPath}: malformed tokenizer.json: an entry is missing or of the wrong type ({e.GetType().Name}: {e.Message.Split('\n')[0]})", e); }
        }
        if (File.Exists(modelPath)) return SentencePieceBpeTokenizer.Load(modelPath);
        throw new TokenizerException($"no tokenizer in '{folder}': expected tokenizer.json, tokenizer.model or {ByteTokenizer.MarkerFile}");
    }

    static ITokenizer FromJson(string jsonPath, string modelPath)
    {
        var json = HfTokenizerJson.Read(jsonPath);
        if (json.IsByteLevel) return new ByteLevelBpeTokenizer(json);
        if (json.ModelType == "BPE" && json.ByteFallback)
            return File.Exists(modelPath) ? SentencePieceBpeTokenizer.Load(modelPath, jsonPath)
                : throw new TokenizerException($"{jsonPath}: a SentencePiece-style BPE (byte fallback) needs tokenizer.model beside it; {modelPath} is missing");
        throw new TokenizerException($"{jsonPath}: unsupported tokenizer (model {json.ModelType}, pre-tokenizer {json.PreTokenizer?["type"]}); supported: byte-level BPE (GPT-2/NeoX) and SentencePiece BPE with byte fallback (Llama/Mistral)");
    }

    /// <summary>Files that make up a tokenizer folder (what <see cref="CopyTo"/> copies).</summary>
    static readonly string[] TokenizerFiles = ["tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", ByteTokenizer.MarkerFile];

    /// <summary>
    /// Puts the tokenizer named by <paramref name="folderOrName"/> into <paramref name="directory"/> (a saved model's
    /// folder), so that the model folder alone is enough to evaluate or generate with it.
    /// </summary>
    public static void CopyTo(string folderOrName, string directory)
    {
        Directory.CreateDirectory(directory);
        if (folderOrName == "byte") { ByteTokenizer.Save(directory); return; }
        var folder = File.Exists(folderOrName) ? Path.GetDirectoryName(Path.GetFullPath(folderOrName))! : folderOrName;
        foreach (var f in TokenizerFiles)
        {
            var src = Path.Combine(folder, f);
            if (File.Exists(src)) File.Copy(src, Path.Combine(directory, f), overwrite: true);
        }
    }
}
