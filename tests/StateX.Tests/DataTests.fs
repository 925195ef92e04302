module StateX.Tests.DataTests

open System
open System.IO
open System.Text
open Expecto
open StateX.Data
open StateX.Tokenization

let private byteTok = ByteTokenizer() :> ITokenizer
let private eod = ByteTokenizer.Eos

/// Every chunk a source gives, from a fresh open.
let private readAll (src: IDataSource) =
    use s = src.Open(SourceContext(byteTok, 7UL), null)
    [
        let mutable c = Unchecked.defaultof<DocumentChunk>
        while s.TryNext(&c) do
            yield c
    ]

let private docsOf spec = DataSpec.Parse(spec).Build() |> readAll |> List.map (fun c -> byteTok.Decode c.Tokens)

let private batches (loader: DataLoader) n = [ for _ in 1..n -> (loader.Next() |> Option.ofObj |> Option.get).Tokens ]

/// A generator whose document i holds ids (i*7 mod 200)+1 .. of length 1 + (i*13 mod 17): easy to rebuild in a test.
type private Numbered() =
    static member Doc(i: int64) = Array.init (1 + int (i * 13L % 17L)) (fun k -> int ((i * 7L + int64 k) % 200L) + 1)
    interface ISyntheticGenerator with
        member _.Name = "numbered"
        member _.Generate(_, index, _) = SyntheticDocument(Tokens = Numbered.Doc index)

/// Documents of `len` copies of `value`.
type private Constant(value: int, len: int) =
    interface ISyntheticGenerator with
        member _.Name = "constant"
        member _.Generate(_, _, _) = SyntheticDocument(Tokens = Array.create len value)

let private registry () =
    SyntheticRegistry
        .Default()
        .Register("numbered", fun _ -> Numbered() :> ISyntheticGenerator)
        .Register("constant", fun o -> Constant(int o.["value"], int o.["len"]) :> ISyntheticGenerator)

let private writeNpy (path: string) (descr: string) (shape: string) (data: byte[]) =
    let mutable hdr = sprintf "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" descr shape
    hdr <- hdr + String(' ', 63 - (10 + hdr.Length) % 64) + "\n"
    use fs = File.Create path
    let write (b: byte[]) = fs.Write(b, 0, b.Length)
    write [| 0x93uy; byte 'N'; byte 'U'; byte 'M'; byte 'P'; byte 'Y'; 1uy; 0uy |]
    write (BitConverter.GetBytes(uint16 hdr.Length))
    write (Encoding.Latin1.GetBytes hdr)
    write data

let private writeParquet (path: string) (column: string) (values: string[]) (rowGroups: int) =
    let field = Parquet.Schema.DataField(column, typeof<string>)
    use fs = File.Create path
    let w =
        Parquet.ParquetWriter.CreateAsync(Parquet.Schema.ParquetSchema([| field :> Parquet.Schema.Field |]), fs).GetAwaiter().GetResult()
    let per = (values.Length + rowGroups - 1) / rowGroups
    for part in Array.chunkBySize per values do
        use rg = w.CreateRowGroup()
        rg.WriteAsync(field, part :> Collections.Generic.IReadOnlyCollection<string>).GetAwaiter().GetResult()
    w.DisposeAsync().AsTask().GetAwaiter().GetResult()

let private expectDataError (f: unit -> unit) (fragments: string list) =
    let e = Expect.throwsC (fun () -> f ()) id
    Expect.isTrue (e :? DataException) (sprintf "a DataException, got %s: %s" (e.GetType().Name) e.Message)
    for fr in fragments do
        Expect.stringContains e.Message fr (sprintf "message names '%s'" fr)

[<Tests>]
let tests =
    testList "data" [
        test "DataSpec.Parse: kinds, options, paths with ':', mixtures" {
            match DataSpec.Parse "jsonl:C:\\data\\a.jsonl:field=body:shuffle=8" with
            | :? SourceSpec as s ->
                Expect.equal (s.Kind, s.Path) ("jsonl", "C:\\data\\a.jsonl") "kind and path"
                Expect.equal (s.Options.["field"], s.Options.["shuffle"]) ("body", "8") "options"
            | other -> failtestf "expected a SourceSpec, got %A" other
            match DataSpec.Parse "mix:0.7*text:a/*.txt:split=line, 0.3*tokens:b.bin:dtype=uint32" with
            | :? MixSpec as m ->
                Expect.equal (m.Parts |> Seq.map (fun (struct (w, _)) -> w) |> List.ofSeq) [ 0.7; 0.3 ] "weights"
                Expect.equal (m.Parts |> Seq.map (fun (struct (_, s)) -> s.Kind) |> List.ofSeq) [ "text"; "tokens" ] "kinds"
                let struct (_, second) = m.Parts.[1]
                Expect.equal second.Options.["dtype"] "uint32" "inner options"
            | other -> failtestf "expected a MixSpec, got %A" other
            expectDataError (fun () -> DataSpec.Parse "csv:a.csv" |> ignore) [ "unknown kind 'csv'" ]
            expectDataError (fun () -> DataSpec.Parse "jsonl:a.jsonl:colum=text" |> ignore) [ "unknown option 'colum'" ]
            expectDataError (fun () -> DataSpec.Parse "mix:0.5*text:a.txt,x*text:b.txt" |> ignore) [ "WEIGHT*SPEC" ]
            expectDataError (fun () -> DataSpec.Parse "mix:-1*text:a.txt" |> ignore) [ "WEIGHT*SPEC" ]
            expectDataError (fun () -> DataSpec.Parse("tokens:a.bin:dtype=float16").Build() |> ignore) [ "a.bin" ]
        }

        test "text reader: split=line, blank and file; globs and folders" {
            let d = Fixtures.tempDir ()
            File.WriteAllText(Path.Combine(d, "a.txt"), "one\r\ntwo\n\nthree\nfour")
            Directory.CreateDirectory(Path.Combine(d, "sub")) |> ignore
            File.WriteAllText(Path.Combine(d, "sub", "b.txt"), "\uFEFFfive\n")
            File.WriteAllText(Path.Combine(d, "sub", "skip.dat"), "not text")
            let a = Path.Combine(d, "a.txt")
            Expect.equal (docsOf $"text:{a}:split=line:epochs=1") [ "one"; "two"; "three"; "four" ] "lines"
            Expect.equal (docsOf $"text:{a}:split=blank:epochs=1") [ "one\ntwo"; "three\nfour" ] "paragraphs"
            let whole = DataSpec.Parse($"text:{a}:epochs=1:chunk=5").Build() |> readAll
            Expect.equal
                (whole |> List.map (fun c -> byteTok.Decode c.Tokens) |> String.concat "")
                "one\ntwo\n\nthree\nfour"
                "file mode keeps the whole text"
            Expect.equal
                (whole |> List.map (fun c -> c.EndsDocument))
                ([ for _ in 1 .. whole.Length - 1 -> false ] @ [ true ])
                "only the last piece ends the document"
            Expect.isTrue
                (whole.Length > 1 && whole |> List.take (whole.Length - 1) |> List.forall (fun c -> c.Continues))
                "pieces say they continue"
            Expect.equal
                (docsOf $"text:{d}:split=line:epochs=1:order=sorted")
                [ "one"; "two"; "three"; "four"; "five" ]
                "folder, recursive, .txt only, BOM dropped"
            Expect.equal (docsOf $"text:{d}/**/*.txt:split=line:epochs=1:order=sorted").Length 5 "glob with **"
            Expect.equal (docsOf $"text:{d}/sub/*.txt:split=line:epochs=1") [ "five" ] "glob"
            expectDataError (fun () -> docsOf $"text:{d}/*.nothing" |> ignore) [ "no files match" ]
            expectDataError (fun () -> docsOf $"text:{d}/missing.txt" |> ignore) [ "missing.txt"; "no such file" ]
        }

        test "jsonl reader: field, blank lines, nulls; errors name file and line" {
            let d = Fixtures.tempDir ()
            let f = Path.Combine(d, "a.jsonl")
            File.WriteAllText(f, "{\"body\": \"first\", \"n\": 1}\n\n{\"body\": null}\n{\"body\": \"second\"}\n")
            Expect.equal (docsOf $"jsonl:{f}:field=body:epochs=1") [ "first"; "second" ] "documents"
            File.WriteAllText(f, "{\"text\": \"ok\"}\n{\"text\": \"broken\"\n")
            expectDataError (fun () -> docsOf $"jsonl:{f}:epochs=1" |> ignore) [ f + ":2:"; "invalid JSON" ]
            File.WriteAllText(f, "{\"text\": \"ok\"}\n{\"text\": \"ok\"}\n{\"body\": \"x\"}\n")
            expectDataError (fun () -> docsOf $"jsonl:{f}:epochs=1" |> ignore) [ f + ":3:"; "no field \"text\""; "body" ]
            File.WriteAllText(f, "{\"text\": 5}\n")
            expectDataError (fun () -> docsOf $"jsonl:{f}:epochs=1" |> ignore) [ f + ":1:"; "expected a string" ]
        }

        test "parquet reader: text column over row groups; missing column named" {
            let d = Fixtures.tempDir ()
            let f = Path.Combine(d, "a.parquet")
            let values = [| for i in 1..7 -> sprintf "row %d" i |]
            writeParquet f "text" values 3
            Expect.equal (docsOf $"parquet:{f}:epochs=1") (List.ofArray values) "all rows, in order"
            expectDataError (fun () -> docsOf $"parquet:{f}:column=body:epochs=1" |> ignore) [ f; "no column \"body\""; "text" ]
            let bad = Path.Combine(d, "bad.parquet")
            File.WriteAllText(bad, "not parquet at all")
            expectDataError (fun () -> docsOf $"parquet:{bad}:epochs=1" |> ignore) [ "bad.parquet" ]
        }

        test "token readers: .bin uint16/uint32 and .npy; size, dtype and range errors" {
            let d = Fixtures.tempDir ()
            let ids = [| 5; 258; 0; 77; 100; 3; 9; 11 |]
            let b16 = Path.Combine(d, "a.bin")
            File.WriteAllBytes(b16, ids |> Array.collect (fun i -> BitConverter.GetBytes(uint16 i)))
            let b32 = Path.Combine(d, "b.bin")
            File.WriteAllBytes(b32, ids |> Array.collect (fun i -> BitConverter.GetBytes(uint32 i)))
            let flat spec = DataSpec.Parse(spec).Build() |> readAll |> List.collect (fun c -> List.ofArray c.Tokens)
            Expect.equal (flat $"tokens:{b16}:epochs=1:window=3") (List.ofArray ids) "uint16 in windows of 3"
            Expect.equal (flat $"tokens:{b32}:dtype=uint32:epochs=1") (List.ofArray ids) "uint32"
            for (descr, conv) in
                [
                    "<u2", (fun (i: int) -> BitConverter.GetBytes(uint16 i))
                    "<i4", (fun i -> BitConverter.GetBytes i)
                    "<i8", (fun i -> BitConverter.GetBytes(int64 i))
                ] do
                let n = Path.Combine(d, sprintf "c%s.npy" (descr.Substring 1))
                writeNpy n descr (sprintf "(%d,)" ids.Length) (ids |> Array.collect conv)
                Expect.equal (flat $"npy:{n}:epochs=1:window=4") (List.ofArray ids) (sprintf ".npy %s" descr)
            let odd = Path.Combine(d, "odd.bin")
            File.WriteAllBytes(odd, [| 1uy; 2uy; 3uy |])
            expectDataError (fun () -> flat $"tokens:{odd}:epochs=1" |> ignore) [ "odd.bin"; "not a multiple of 2" ]
            expectDataError (fun () -> flat $"tokens:{b16}:dtype=uint32:epochs=1" |> ignore) [
                "a.bin"
                "outside the vocabulary"
                "byte offset"
            ]
            let f4 = Path.Combine(d, "f.npy")
            writeNpy f4 "<f4" "(2,)" (Array.zeroCreate 8)
            expectDataError (fun () -> flat $"npy:{f4}:epochs=1" |> ignore) [ "f.npy"; "'<f4'" ]
            let m2 = Path.Combine(d, "m.npy")
            writeNpy m2 "<i4" "(2, 2)" (Array.zeroCreate 16)
            expectDataError (fun () -> flat $"npy:{m2}:epochs=1" |> ignore) [ "m.npy"; "1-D" ]
            let short = Path.Combine(d, "s.npy")
            writeNpy short "<i4" "(10,)" (Array.zeroCreate 8)
            expectDataError (fun () -> flat $"npy:{short}:epochs=1" |> ignore) [ "s.npy"; "header says 10 tokens" ]
        }

        test "packing: fixed-length rows, every token once and in order, EOD after each document" {
            for withTarget in [ true; false ] do
                let opts = LoaderOptions(SeqLen = 10, BatchSize = 3, Seed = 1UL, WithTarget = withTarget)
                use loader = DataLoader.Open(DataSpec.Parse "synth:numbered:count=40", byteTok, opts, synthetic = registry ())
                let got = [
                    let mutable b = loader.Next() in
                    while not (isNull b) do
                        (Expect.equal (b.BatchSize, b.RowLength) (3, opts.RowLength) "shape")
                        yield! b.Tokens
                        b <- loader.Next()
                ]
                let expected = [
                    for i in 0L .. 39L do
                        yield! Numbered.Doc i |> Array.map int64
                        yield int64 eod
                ]
                let rowTokens = 3 * opts.RowLength
                Expect.equal got.Length (expected.Length / rowTokens * rowTokens) "whole batches only; the rest is dropped at the end"
                Expect.equal got (List.take got.Length expected) "the packed stream is the documents with EOD between them"
        }

        test "cursor: save after N batches, restore, the next M batches are identical" {
            let d = Fixtures.tempDir ()
            File.WriteAllLines(
                Path.Combine(d, "a.jsonl"),
                [ for i in 1..30 -> sprintf "{\"text\": \"document %d %s\"}" i (String('x', i % 11)) ]
            )
            File.WriteAllText(Path.Combine(d, "b.txt"), String.Join("\n", [ for i in 1..200 -> sprintf "line %d of a long text file" i ]))
            File.WriteAllText(Path.Combine(d, "c.txt"), "short file\n")
            File.WriteAllBytes(Path.Combine(d, "t.bin"), [| for i in 0..999 -> uint16 (i % 250) |] |> Array.collect BitConverter.GetBytes)
            let spec =
                DataSpec.Parse(
                    $"mix:0.4*jsonl:{d}/a.jsonl:shuffle=4,0.3*text:{d}/*.txt:chunk=100,0.2*tokens:{d}/t.bin:window=37:shuffle=3,0.1*synth:random:len=9"
                )
            let opts = LoaderOptions(SeqLen = 16, BatchSize = 2, Seed = 42UL)
            use first = DataLoader.Open(spec, byteTok, opts)
            let _ = batches first 7
            let json = first.Cursor.ToJson()
            let cont = batches first 40
            use resumed = DataLoader.Open(spec, byteTok, opts, DataCursor.Parse json)
            Expect.equal (batches resumed 40) cont "same batches after restoring the cursor"
            Expect.equal resumed.BatchesRead 47L "batch count carried"
            // Saved to disk and loaded again, too.
            let path = Path.Combine(d, "cursor.json")
            first.Cursor.Save path
            let next = batches first 5
            use again = DataLoader.Open(spec, byteTok, opts, DataCursor.Load path)
            Expect.equal (batches again 5) next "through a file"
            // A different seed reads differently; the cursor refuses a run it does not belong to.
            use other = DataLoader.Open(spec, byteTok, LoaderOptions(SeqLen = 16, BatchSize = 2, Seed = 43UL))
            Expect.notEqual (batches other 20) (batches (DataLoader.Open(spec, byteTok, opts)) 20) "seed matters"
            expectDataError
                (fun () ->
                    DataLoader.Open(spec, byteTok, LoaderOptions(SeqLen = 8, BatchSize = 2, Seed = 42UL), DataCursor.Parse json) |> ignore)
                [ "T=16" ]
            expectDataError (fun () -> DataLoader.Open(DataSpec.Parse $"text:{d}/c.txt", byteTok, opts, DataCursor.Parse json) |> ignore) [
                "saved for data"
            ]
            expectDataError (fun () -> DataCursor.Parse("{\"format\": 1}", "ck/cursor.json") |> ignore) [ "ck/cursor.json" ]
        }

        test "epochs revisit every file, in a seeded order per epoch" {
            let d = Fixtures.tempDir ()
            for i in 0..5 do
                File.WriteAllText(Path.Combine(d, sprintf "%d.txt" i), string i)
            let order seed =
                use s = DataSpec.Parse($"text:{d}:epochs=3").Build().Open(SourceContext(byteTok, seed), null)
                [
                    let mutable c = Unchecked.defaultof<DocumentChunk>
                    while s.TryNext(&c) do
                        yield byteTok.Decode c.Tokens
                ]
            let o = order 1UL
            Expect.equal o.Length 18 "3 epochs of 6 files"
            for e in 0..2 do
                Expect.equal
                    (o |> List.skip (6 * e) |> List.take 6 |> List.sort)
                    [ "0"; "1"; "2"; "3"; "4"; "5" ]
                    "each epoch sees each file once"
            Expect.equal (order 1UL) o "deterministic"
            Expect.notEqual (o |> List.take 6) (o |> List.skip 6 |> List.take 6) "epochs are shuffled differently"
            Expect.notEqual (order 2UL) o "another seed, another order"
        }

        test "mixture: token shares follow the weights, deterministically by seed" {
            // Documents of different lengths: the mixture balances tokens, not documents.
            let spec = DataSpec.Parse "mix:0.7*synth:constant:value=1:len=5,0.3*synth:constant:value=2:len=40"
            let shares seed =
                use l = DataLoader.Open(spec, byteTok, LoaderOptions(SeqLen = 255, BatchSize = 4, Seed = seed), synthetic = registry ())
                let toks = batches l 40 |> Array.concat
                let ones = toks |> Array.filter ((=) 1L) |> Array.length |> float
                let twos = toks |> Array.filter ((=) 2L) |> Array.length |> float
                ones / (ones + twos), toks
            let (s1, t1) = shares 5UL
            Expect.floatClose { absolute = 0.05; relative = 0. } s1 0.7 "70% of tokens from the first source"
            let (s1b, t1b) = shares 5UL
            Expect.equal t1b t1 "same seed, same stream"
            Expect.equal s1b s1 "same seed, same shares"
            let (_, t2) = shares 6UL
            Expect.notEqual t2 t1 "another seed, another draw"
            let finite = DataSpec.Parse "mix:1*synth:numbered:count=3,1*synth:numbered:count=2"
            let chunks = finite.Build(registry ()) |> readAll
            Expect.equal chunks.Length 5 "exhausted sources drop out; the mixture ends when all have"
        }

        test "documents read in pieces stay whole through mixtures" {
            let d = Fixtures.tempDir ()
            File.WriteAllText(Path.Combine(d, "long.txt"), String.Join("\n", [ for i in 1..50 -> sprintf "piece %02d" i ]) + "\n")
            let spec = DataSpec.Parse $"mix:0.5*text:{d}/long.txt:chunk=20:epochs=1,0.5*synth:constant:value=2:len=3:count=30"
            let chunks = spec.Build(registry ()) |> readAll
            let textRun = chunks |> List.filter (fun c -> c.Tokens |> Array.exists ((<>) 2)) |> List.map (fun c -> byteTok.Decode c.Tokens)
            let firstText = chunks |> List.findIndex (fun c -> c.Tokens |> Array.exists ((<>) 2))
            Expect.equal
                (chunks |> List.skip firstText |> List.take textRun.Length |> List.map (fun c -> byteTok.Decode c.Tokens))
                textRun
                "text pieces are consecutive"
            Expect.equal (String.concat "" textRun) (File.ReadAllText(Path.Combine(d, "long.txt"))) "and complete"
        }

        test "the examples in data/examples read as documented" {
            let ex =
                match Fixtures.examplesDir with
                | Some d -> d
                | None -> skiptest "data/examples not found above the test binary"
            Expect.equal (docsOf $"jsonl:{ex}/tiny.jsonl:epochs=1").Length 3 "tiny.jsonl: 3 documents"
            Expect.equal (docsOf $"text:{ex}/tiny.txt:split=blank:epochs=1").Length 2 "tiny.txt: 2 paragraphs"
            Expect.equal (docsOf $"tokens:{ex}/tiny-uint16.bin:epochs=1" |> String.concat "") "Hello<eos>World<eos>" "tiny-uint16.bin"
            Expect.equal (docsOf $"npy:{ex}/tiny-int32.npy:epochs=1" |> String.concat "") "Hello<eos>World<eos>" "tiny-int32.npy"
            Expect.equal (docsOf $"parquet:{ex}/tiny.parquet:epochs=1").Length 2 "tiny.parquet: 2 rows"
            Expect.equal
                (docsOf $"mix:0.5*jsonl:{ex}/tiny.jsonl:epochs=1,0.5*parquet:{ex}/tiny.parquet:epochs=1").Length
                5
                "a mixture of both"
        }
    ]
