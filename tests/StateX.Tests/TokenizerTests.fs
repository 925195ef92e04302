module StateX.Tests.TokenizerTests

open System
open System.IO
open System.Text.Json
open Expecto
open StateX.Tokenization

let private cache = Collections.Concurrent.ConcurrentDictionary<string, ITokenizer>()
let private load name = cache.GetOrAdd(name, fun n -> Tokenizers.Load(Fixtures.tokenizer n))

type private Reference = { Tokenizer: string; Text: string; Ids: int[]; Decoded: string }

let private reference () = [
    for line in File.ReadLines(Fixtures.tokenizer "reference.jsonl") do
        if not (String.IsNullOrWhiteSpace line) then
            let e = JsonDocument.Parse(line).RootElement
            yield {
                Tokenizer = e.GetProperty("tokenizer").GetString()
                Text = e.GetProperty("text").GetString()
                Ids = [| for x in e.GetProperty("ids").EnumerateArray() -> x.GetInt32() |]
                Decoded = e.GetProperty("decoded").GetString()
            }
]

let private parity name =
    test (sprintf "%s matches every line of reference.jsonl (ids and decoded text)" name) {
        let refs = reference () |> List.filter (fun r -> r.Tokenizer = name)
        Expect.isNonEmpty refs "reference.jsonl has lines for this tokenizer"
        let tok = load name
        for r in refs do
            Expect.sequenceEqual (tok.Encode(r.Text, false)) r.Ids (sprintf "ids of %A" r.Text)
            Expect.equal (tok.Decode r.Ids) r.Decoded (sprintf "decoding of %A" r.Text)
    }

[<Tests>]
let tests =
    testList "tokenizers" [
        parity "llama"
        parity "gpt-neox"

        test "llama: vocabulary, specials, and the <s> template" {
            let tok = load "llama"
            Expect.equal tok.VocabSize 32000 "32000 entries"
            Expect.equal (tok.BosId, tok.EosId, tok.PadId) (Nullable 1, Nullable 2, Nullable()) "<s>=1, </s>=2, no pad"
            let plain = tok.Encode "Hello world"
            Expect.sequenceEqual (tok.Encode("Hello world", true)) (Array.append [| 1 |] plain) "adds <s> in front"
            // Special tokens written in the text are single ids; the text around them is encoded on its own.
            Expect.sequenceEqual (tok.Encode "<s>Hello</s>") (Array.concat [ [| 1 |]; tok.Encode "Hello"; [| 2 |] ]) "<s>/</s> in text"
            Expect.equal (tok.Decode([ 1; 22557; 2 ], true)) "Hello" "skipping specials"
            Expect.equal (tok.Encode "") [||] "empty text, no ids"
        }

        test "gpt-neox: vocabulary, specials, no template, added space tokens" {
            let tok = load "gpt-neox"
            Expect.equal tok.VocabSize 50277 "50254 BPE entries + added tokens up to 50276"
            Expect.equal (tok.BosId, tok.EosId) (Nullable 0, Nullable 0) "<|endoftext|> is 0"
            Expect.sequenceEqual (tok.Encode("Hello world", true)) (tok.Encode "Hello world") "add_special_tokens adds nothing"
            Expect.sequenceEqual
                (tok.Encode "a<|endoftext|>b")
                (Array.concat [ tok.Encode "a"; [| 0 |]; tok.Encode "b" ])
                "<|endoftext|> in text is id 0"
            let ids = Array.append [| 0 |] (tok.Encode "Hello")
            Expect.equal (tok.Decode(ids, true)) "Hello" "skipping specials"
            Expect.equal (tok.Decode ids) "<|endoftext|>Hello" "keeping specials"
        }

        test "byte tokenizer round-trips any text, specials after the 256 bytes" {
            let tok = ByteTokenizer() :> ITokenizer
            for s in [ ""; "Hello"; "naïve café, 東京, 🚀\t\n"; String('x', 1000) ] do
                let ids = tok.Encode s
                Expect.equal ids.Length (Text.Encoding.UTF8.GetByteCount s) "one id per UTF-8 byte"
                Expect.equal (tok.Decode ids) s "round trip"
            Expect.equal (tok.Encode("A", true)) [| ByteTokenizer.Bos; 65 |] "BOS in front"
            Expect.equal (tok.Decode([ 72; 105; ByteTokenizer.Eos ], true)) "Hi" "skip specials"
            Expect.throwsT<ArgumentOutOfRangeException> (fun () -> tok.Decode [ 259 ] |> ignore) "id beyond the vocabulary"
            let d = Fixtures.tempDir ()
            ByteTokenizer.Save d
            Expect.equal (Tokenizers.Load(d).Name) tok.Name "Load finds a saved byte tokenizer"
        }

        test "Load picks by files and explains what is missing" {
            Expect.equal (Tokenizers.Load("byte").VocabSize) 259 "\"byte\""
            let missing = Path.Combine(Fixtures.tempDir (), "nope")
            let e = Expect.throwsC (fun () -> Tokenizers.Load missing |> ignore) id
            Expect.stringContains e.Message missing "names the folder"
            let empty = Fixtures.tempDir ()
            let e = Expect.throwsC (fun () -> Tokenizers.Load empty |> ignore) id
            Expect.stringContains e.Message "tokenizer.json" "says what it looked for"
            let bad = Fixtures.tempDir ()
            File.WriteAllText(Path.Combine(bad, "tokenizer.json"), """{"model": {"type": "WordPiece", "vocab": {}}}""")
            let e = Expect.throwsC (fun () -> Tokenizers.Load bad |> ignore) id
            Expect.stringContains e.Message "unsupported" "refuses other models"
            let broken = Fixtures.tempDir ()
            File.WriteAllText(Path.Combine(broken, "tokenizer.json"), "{not json")
            let e = Expect.throwsC (fun () -> Tokenizers.Load broken |> ignore) id
            Expect.stringContains e.Message (Path.Combine(broken, "tokenizer.json")) "names the file"
        }
    ]
