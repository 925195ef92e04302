/// The paper's benchmarks (issue #22): Stuffed Mamba's passkey prompt, RULER's NIAH generators and scoring, and
/// `statex eval --suite paper` end to end on a fixture model.
module StateX.Tests.PaperBenchmarkTests

open System
open System.IO
open System.Text.RegularExpressions
open Expecto
open StateX.Data
open StateX.Tokenization
open StateX.Evaluation.Tasks

let private byteTok = ByteTokenizer() :> ITokenizer

let private throwsContaining (f: unit -> 'a) (parts: string list) =
    let message =
        try
            f () |> ignore
            None
        with
        | :? ArgumentException as e -> Some e.Message
        | :? DataException as e -> Some e.Message
    match message with
    | None -> failtest "expected an ArgumentException or DataException"
    | Some m ->
        for p in parts do
            Expect.stringContains m p "the message names the problem"

// Stuffed Mamba's passkey pieces as ../shared/docs/statex-official.md §7 states them (with "\n" for newlines).
let private smIntro = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it.\n\n"
let private smFiller = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n"
let private smNeedle (k: string) = sprintf "The passkey is %s. Remember it. %s is the passkey.\n" k k
let private smQuestion = "\nWhat is the pass key? The passkey is"

/// The protocol document, where this checkout has the shared folder next to it.
let private protocolDoc =
    let rec up (d: DirectoryInfo) =
        if isNull d then
            None
        else
            let p = Path.Combine(d.FullName, "shared", "docs", "statex-official.md")
            if File.Exists p then Some p else up d.Parent
    up (DirectoryInfo AppContext.BaseDirectory)

let private ruler = RulerNiahTask.Named

/// Tokens of a sample's prompt plus the tokens to generate must fit; one more haystack unit would not.
let private expectFits (e: RulerNiahExample) (length: int) (maxNew: int) (slack: int) what =
    Expect.isLessThanOrEqual (e.Prompt.Length + maxNew) length (sprintf "%s: prompt + generation within the length" what)
    Expect.isGreaterThan (e.Prompt.Length + maxNew) (length - slack) (sprintf "%s: within %d tokens of the length" what slack)

/// `statex` on one intra-op thread (as EvalCliTests: tiny shapes gain nothing from threads).
let private cli args = Cli.runWith [ "OMP_NUM_THREADS", "1" ] 300 args

let private csvRows (path: string) =
    let lines = File.ReadAllLines path |> Array.filter (fun l -> l <> "")
    let header = lines.[0].Split ','
    [ for l in lines.[1..] -> let c = l.Split ',' in fun (name: string) -> c.[Array.IndexOf(header, name)] ]

[<Tests>]
let tests =
    testList "paper benchmarks" [
        testList "passkey (Stuffed Mamba)" [
            test "the prompt byte for byte, the answer, depths (i+0.5)/n" {
                let t = PasskeyTemplate.Named "stuffed-mamba"
                // A length of whole filler sentences: BOS, intro, 4 fillers, needle, question.
                let needleLen = (smNeedle "12345").Length
                let len = (byteTok.Encode(smIntro, addSpecialTokens = true)).Length + 4 * smFiller.Length + needleLen + smQuestion.Length
                let e = Passkey.Build(byteTok, len, 0.5, 7UL, 0L, t)
                Expect.equal e.Prompt.Length len "exact length"
                Expect.isTrue (e.Key.Length = 5 && e.Key |> Seq.forall Char.IsDigit && e.Key.[0] <> '0') "a 5-digit number"
                let expected = smIntro + smFiller + smFiller + smNeedle e.Key + smFiller + smFiller + smQuestion
                Expect.equal (byteTok.Decode(e.Prompt, skipSpecialTokens = true)) expected "the prompt, byte for byte"
                Expect.equal (byteTok.Decode e.Answer) (" " + e.Key) "greedy continues with the key"
                Expect.equal e.Depth 0.5 "2 of 4 fillers before the needle"
                Expect.equal (Passkey.SpreadDepths 4) [| 0.125; 0.375; 0.625; 0.875 |] "depth of sample i of 4: (i+0.5)/4"
                let at8 = (byteTok.Encode(smIntro, addSpecialTokens = true)).Length + 8 * smFiller.Length + needleLen + smQuestion.Length
                for d, before in Seq.zip (Passkey.SpreadDepths 4) [ 1; 3; 5; 7 ] do
                    let e = Passkey.Build(byteTok, at8, d, 7UL, 1L, t)
                    Expect.equal e.Depth (float before / 8.0) (sprintf "depth %g: %d of 8 fillers before" d before)
                    Expect.equal e.NeedlePosition (1 + smIntro.Length + before * smFiller.Length) "needle after BOS, intro and the fillers"
                throwsContaining (fun () -> Passkey.SpreadDepths 0) [ "at least one sample" ]
            }
            test "the template's texts are those of the protocol document §7" {
                match protocolDoc with
                | None -> skiptest "no ../shared/docs/statex-official.md in this checkout"
                | Some path ->
                    let doc = File.ReadAllText path
                    let s7 = doc.Substring(doc.IndexOf "## 7.")
                    let escaped (s: string) = "\"" + s.Replace("\n", "\\n") + "\""
                    for piece in [ smIntro; smFiller; smNeedle "{passkey}"; smQuestion ] do
                        Expect.stringContains s7 (escaped piece) "the test's literal is the protocol's"
                    let t = PasskeyTemplate.StuffedMamba
                    Expect.equal
                        [ t.Intro; t.Filler; t.Needle.Replace("{key}", "{passkey}"); t.Question ]
                        [ smIntro; smFiller; smNeedle "{passkey}"; smQuestion ]
                        "the template's pieces"
            }
        ]

        testList "RULER NIAH" [
            test "the eight tasks with RULER's parameters; depths; UUIDs" {
                Expect.equal
                    [ for t in RulerNiahTask.All -> t.Name ]
                    [
                        "niah_single_1"
                        "niah_single_2"
                        "niah_single_3"
                        "niah_multikey_1"
                        "niah_multikey_2"
                        "niah_multikey_3"
                        "niah_multivalue"
                        "niah_multiquery"
                    ]
                    "names"
                Expect.equal (ruler "niah_single_1").Haystack RulerHaystack.Noise "single_1: noise"
                Expect.equal (ruler "niah_single_3").ValueType RulerNeedle.Uuids "single_3: uuid values"
                Expect.equal
                    ((ruler "niah_multikey_3").KeyType, (ruler "niah_multikey_3").Haystack)
                    (RulerNeedle.Uuids, RulerHaystack.Needle)
                    "multikey_3: uuid keys among needles"
                Expect.equal ((ruler "niah_multiquery").Keys, (ruler "niah_multiquery").Queries) (4, 4) "multiquery: 4 keys, 4 asked"
                Expect.equal (ruler "niah_multivalue").Values 4 "multivalue: 4 values"
                Expect.equal RulerNiah.DepthPercents.Length 40 "40 depths"
                Expect.equal RulerNiah.DepthPercents.[0..5] [| 0; 3; 5; 8; 10; 13 |] "np.round(np.linspace(0, 100, 40)) begins"
                Expect.equal RulerNiah.DepthPercents.[39] 100 "and ends at 100"
                let rng = Rng(5UL)
                for _ in 1..50 do
                    let u = RulerNiah.Uuid rng
                    Expect.isTrue
                        (Regex.IsMatch(u, "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"))
                        (sprintf "version-4 UUID: %s" u)
                throwsContaining (fun () -> ruler "niah_single_9") [ "niah_single_9"; "niah_multiquery" ]
            }
            test "niah_single_1 pinned byte for byte (needle at depth 0)" {
                let e = RulerNiah.Build(byteTok, ruler "niah_single_1", 1024, 3UL, 0L, maxNewTokens = 16, depth = 0.0)
                let m = Regex.Match(e.Text, "One of the special magic numbers for ([a-z]+-[a-z]+) is: ([0-9]{7})\\.")
                Expect.isTrue m.Success "the needle"
                let key, value = m.Groups.[1].Value, m.Groups.[2].Value
                let context =
                    String.Join(
                        "\n",
                        Array.append
                            [| sprintf "One of the special magic numbers for %s is: %s." key value |]
                            (Array.create e.HaystackUnits RulerNiah.Noise)
                    )
                let expected =
                    "A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about the number afterwards.\n"
                    + context
                    + "\n"
                    + sprintf
                        "What is the special magic number for %s mentioned in the provided text? The special magic number for %s mentioned in the provided text is"
                        key
                        key
                Expect.equal e.Text expected "RULER's template, singular, with the answer prefix"
                Expect.equal e.Outputs [| value |] "the answer"
                Expect.equal (byteTok.Decode(e.Prompt, skipSpecialTokens = true)) e.Text "the prompt is the text's tokens"
                expectFits e 1024 16 (RulerNiah.Noise.Length + 2) "noise"
                // The plural form: RULER's template unchanged.
                Expect.equal
                    (RulerNiah.Prompt(ruler "niah_multiquery", "CTX", RulerNiah.JoinQueries [| "a"; "b"; "c"; "d" |]))
                    ("Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz you about the numbers afterwards.\nCTX\n"
                     + "What are all the special magic numbers for a, b, c, and d mentioned in the provided text? The special magic numbers for a, b, c, and d mentioned in the provided text are")
                    "plural"
            }
            test "every task: deterministic per seed, length within tolerance, needles and answers present" {
                let essay = RulerNiah.SynthWords(2048, 0UL)
                for t in RulerNiahTask.All do
                    let build seed i = RulerNiah.Build(byteTok, t, 2048, seed, i, essay, 32)
                    let e = build 1UL 0L
                    Expect.equal (build 1UL 0L).Text e.Text (sprintf "%s: same seed, same sample" t.Name)
                    Expect.notEqual (build 1UL 1L).Text e.Text (sprintf "%s: another index, another sample" t.Name)
                    Expect.notEqual (build 2UL 0L).Text e.Text (sprintf "%s: another seed, another sample" t.Name)
                    // One more unit of haystack: a noise sentence, a needle sentence or an essay word (with the sentence split's space).
                    expectFits e 2048 32 (if t.Haystack = RulerHaystack.Essay then 40 else 130) t.Name
                    // Sized from another sample's haystack (as Evaluate does), even one too large: shrunk until it fits.
                    for hint in [ e.HaystackUnits; 2 * e.HaystackUnits ] do
                        let h = RulerNiah.Build(byteTok, t, 2048, 1UL, 1L, essay, 32, haystackUnits = hint)
                        expectFits
                            h
                            2048
                            32
                            (if t.Haystack = RulerHaystack.Essay then 80 else 200)
                            (sprintf "%s from a hint of %d units" t.Name hint)
                    Expect.equal e.Outputs.Length (t.Queries * t.Values) (sprintf "%s: answers" t.Name)
                    Expect.equal e.Depths.Length (t.Keys * t.Values) (sprintf "%s: needles" t.Name)
                    for o in e.Outputs do
                        Expect.stringContains e.Text (sprintf " is: %s." o) (sprintf "%s: each answer in a needle" t.Name)
                    let body = e.Text.Substring(0, e.Text.LastIndexOf "\nWhat")
                    Expect.isFalse (body.Contains "\nWhat") "one question"
                let mq = RulerNiah.Build(byteTok, ruler "niah_multiquery", 2048, 1UL, 0L, essay, 32)
                Expect.equal
                    (Regex.Matches(mq.Text.Substring(mq.Text.LastIndexOf "\nWhat"), ", and ").Count)
                    2
                    "four keys asked: a, b, c, and d (twice)"
                throwsContaining (fun () -> RulerNiah.Build(byteTok, ruler "niah_multiquery", 300, 0UL, 0L, essay, 32)) [
                    "niah_multiquery"
                    "300"
                    "no room"
                ]
            }
            test "needles at the requested depth" {
                let essay = RulerNiah.SynthWords(4096, 0UL)
                for name in [ "niah_single_1"; "niah_single_2"; "niah_multikey_2" ] do
                    for d in [ 0.0; 0.25; 0.5; 0.9 ] do
                        let e = RulerNiah.Build(byteTok, ruler name, 4096, 0UL, 0L, essay, 32, d)
                        Expect.isLessThanOrEqual (abs (e.Depths.[0] - d)) 0.03 (sprintf "%s: needle at %g (got %g)" name d e.Depths.[0])
                // RULER's own depths for the essay: each needle at one of its 40 depths (to a sentence).
                let e = RulerNiah.Build(byteTok, ruler "niah_multikey_1", 4096, 0UL, 3L, essay, 32)
                for d in e.Depths do
                    let nearest = RulerNiah.DepthPercents |> Array.map (fun p -> abs (float p / 100.0 - d)) |> Array.min
                    Expect.isLessThanOrEqual nearest 0.05 (sprintf "depth %g near one of RULER's" d)
                throwsContaining (fun () -> RulerNiah.Build(byteTok, ruler "niah_single_1", 4096, 0UL, 0L, depth = 1.5)) [ "depth"; "1.5" ]
            }
            test "string_match_all on hand-computed cases" {
                Expect.equal (RulerNiah.StringMatchAll("The numbers are 1234567 and 7654321.", [| "1234567"; "7654321" |])) 1.0 "both"
                Expect.equal (RulerNiah.StringMatchAll("The numbers are 1234567.", [| "1234567"; "7654321" |])) 0.5 "one of two"
                Expect.equal (RulerNiah.StringMatchAll("nothing", [| "1"; "2"; "3"; "4" |])) 0.0 "none"
                Expect.equal (RulerNiah.StringMatchAll("ID: ABCDEF01-2345", [| "abcdef01-2345" |])) 1.0 "case is ignored"
                Expect.equal (RulerNiah.StringMatchAll("12 34", [| "1234" |])) 0.0 "a substring, not digits anywhere"
            }
        ]

        testList "lm-evaluation-harness multiple choice" [
            test "ARC in allenai/ai2_arc's schema: \"Question: … Answer:\", gold by answerKey" {
                let items = MultipleChoice.ReadFile(Fixtures.example "arc_easy.jsonl")
                Expect.equal
                    items.[0].Prompt
                    "Question: Which tool is best for measuring the mass of a small rock?\nAnswer:"
                    "the harness's doc_to_text"
                Expect.equal
                    (List.ofSeq items.[0].Choices)
                    [ " a ruler"; " a balance"; " a thermometer"; " a magnet" ]
                    "choices after the delimiter"
                Expect.equal (items.[0].Gold, items.[1].Gold) (1, 2) "answerKey B of A-D, 3 of 1-3"
            }
            test "HellaSwag in Rowan/hellaswag's schema: the harness's preprocessing" {
                let items = MultipleChoice.ReadFile(Fixtures.example "hellaswag.jsonl")
                Expect.equal
                    items.[0].Prompt
                    "Making tea: A woman fills a kettle with water. She"
                    "activity label, ctx_a, capitalised ctx_b"
                Expect.equal items.[0].Choices.[0] " puts the kettle on the stove." "an ending"
                Expect.equal items.[0].Gold 0 "label \"0\" (a string in the Hugging Face files)"
                Expect.equal
                    items.[1].Prompt
                    "Home and Garden: How to water a plant. Check the soil. Then"
                    "[title] → '. ', [header] dropped, double spaces folded"
                // Stripped before the brackets go, as the harness does: the space after "[step]" stays.
                Expect.equal
                    (List.ofSeq items.[1].Choices)
                    [
                        "  burn the soil to keep it dry."
                        "  pour water slowly at the base of the plant until the soil is moist."
                        " sell the plant at a market."
                        "  the plant sings."
                    ]
                    "endings"
                Expect.equal (MultipleChoice.HellaSwagPreprocess "  A [x]b  [title] c ") "A b . c" "preprocess on a hand-made case"
                let bad = Path.Combine(Fixtures.tempDir (), "bad.jsonl")
                File.WriteAllText(bad, """{"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "E"}""")
                throwsContaining (fun () -> MultipleChoice.ReadFile bad) [ bad + ":1"; "answerKey"; "'E'" ]
            }
        ]
        testList "cli" [
            test "eval --task ruler: a row per task and length, RULER's metric" {
                let out = Path.Combine(Fixtures.tempDir (), "ruler.csv")
                let r =
                    cli [
                        "eval"
                        "--model"
                        Fixtures.dir "gla-tiny"
                        "--device"
                        "cpu"
                        "--no-progress"
                        "--task"
                        "ruler"
                        "--niah"
                        "niah_single_1,niah_multivalue"
                        "--lengths"
                        "700,900"
                        "--trials"
                        "2"
                        "--max-new"
                        "4"
                        "--out"
                        out
                    ]
                Expect.equal r.ExitCode 0 r.Stderr
                let rows = csvRows out
                Expect.equal
                    [ for c in rows -> c "task", c "length" ]
                    [ "niah_single_1", "700"; "niah_single_1", "900"; "niah_multivalue", "700"; "niah_multivalue", "900" ]
                    "tasks × lengths"
                for c in rows do
                    Expect.equal (c "metric") "string_match_all" "metric"
                    Expect.equal (c "n") "2" "samples"
                    let v = float (c "value") in
                    Expect.isTrue (v >= 0.0 && v <= 1.0) "a fraction"
                Expect.equal
                    [ for c in rows -> c "haystack" ]
                    [ "noise"; "noise"; "synth:text"; "synth:text" ]
                    "the haystack, with the essay substitution stated"
                let bad = cli [ "eval"; "--model"; Fixtures.dir "gla-tiny"; "--task"; "ruler"; "--niah"; "niah_x" ]
                Expect.notEqual bad.ExitCode 0 "unknown RULER task fails"
                Expect.stringContains bad.Stderr "--niah" "names the option"
            }
            test "eval --task passkey --template stuffed-mamba: depths spread:10 by default, spread:N" {
                let depthsOf (extra: string list) =
                    let out = Path.Combine(Fixtures.tempDir (), "passkey.csv")
                    let r =
                        cli (
                            [
                                "eval"
                                "--model"
                                Fixtures.dir "mamba2-tiny"
                                "--device"
                                "cpu"
                                "--no-progress"
                                "--task"
                                "passkey"
                                "--template"
                                "stuffed-mamba"
                                "--lengths"
                                "400"
                                "--trials"
                                "1"
                                "--out"
                                out
                            ]
                            @ extra
                        )
                    Expect.equal r.ExitCode 0 r.Stderr
                    csvRows out |> List.filter (fun c -> c "metric" = "accuracy") |> List.map (fun c -> float (c "depth"))
                Expect.equal (depthsOf []) [ for i in 0..9 -> (float i + 0.5) / 10.0 ] "(i+0.5)/10"
                Expect.equal (depthsOf [ "--depths"; "spread:4" ]) [ 0.125; 0.375; 0.625; 0.875 ] "spread:4"
                let bad = cli [ "eval"; "--model"; Fixtures.dir "mamba2-tiny"; "--task"; "passkey"; "--depths"; "spread:0" ]
                Expect.stringContains bad.Stderr "--depths" "spread:0 refused, naming the option"
            }
            test "eval --suite paper: generated tasks, the datasets found, the missing ones listed, one results file" {
                let data = Fixtures.tempDir ()
                for name in [ "squad.jsonl"; "piqa.jsonl"; "winogrande.jsonl"; "arc_easy.jsonl"; "lambada.jsonl" ] do
                    File.Copy(Fixtures.example name, Path.Combine(data, name))
                let out = Path.Combine(Fixtures.tempDir (), "paper.jsonl")
                let r =
                    cli [
                        "eval"
                        "--suite"
                        "paper"
                        "--model"
                        Fixtures.dir "gla-tiny"
                        "--device"
                        "cpu"
                        "--no-progress"
                        "--data-dir"
                        data
                        "--lengths"
                        "1k"
                        "--trials"
                        "2"
                        "--max-new"
                        "4"
                        "--limit"
                        "2"
                        "--out"
                        out
                    ]
                Expect.equal r.ExitCode 0 r.Stderr
                let rs =
                    File.ReadAllLines out
                    |> Array.filter (fun l -> l <> "")
                    |> Array.map (fun l -> System.Text.Json.JsonDocument.Parse(l).RootElement)
                let tasks = rs |> Array.map (fun e -> e.GetProperty("task").GetString()) |> Array.distinct |> List.ofArray
                Expect.equal
                    tasks
                    ([ for t in RulerNiahTask.All -> t.Name ] @ [ "passkey"; "squad"; "multiple_choice"; "winogrande"; "lambada" ])
                    "RULER, passkey, then the files found"
                let passkeyDepths =
                    rs
                    |> Array.filter (fun e -> e.GetProperty("task").GetString() = "passkey")
                    |> Array.map (fun e -> e.GetProperty("setting").GetProperty("depth").GetDouble())
                    |> Array.distinct
                Expect.equal passkeyDepths [| 0.25; 0.75 |] "Stuffed Mamba's depths for 2 samples"
                let files =
                    rs
                    |> Array.choose (fun e ->
                        match e.GetProperty("setting").TryGetProperty "file" with
                        | true, f -> Some(f.GetString())
                        | _ -> None)
                    |> Array.distinct
                Expect.equal
                    files
                    [| "squad.jsonl"; "piqa.jsonl"; "winogrande.jsonl"; "arc_easy.jsonl"; "lambada.jsonl" |]
                    "the datasets present, in their published schemas"
                let contextLengths =
                    rs
                    |> Array.filter (fun e -> e.GetProperty("task").GetString() = "squad")
                    |> Array.map (fun e -> e.GetProperty("setting").GetProperty("context_length").GetInt32())
                Expect.equal contextLengths [| 1000 |] "recall: JRT's context length by default"
                Expect.equal
                    (rs
                     |> Array.filter (fun e -> e.GetProperty("task").GetString() = "lambada")
                     |> Array.map (fun e -> e.GetProperty("metric").GetString()))
                    [| "acc"; "perplexity" |]
                    "LAMBADA's metrics"
                let missing = r.Stdout.Split('\n') |> Array.filter (fun l -> l.StartsWith "missing dataset: ")
                Expect.equal missing.Length 8 "13 datasets, 5 present: 8 listed"
                for name in [ "swde"; "fda"; "triviaqa"; "nq"; "drop"; "hellaswag"; "arc_challenge"; "icl" ] do
                    Expect.isTrue
                        (missing
                         |> Array.exists (fun l ->
                             l.StartsWith(sprintf "missing dataset: %s.jsonl or %s.parquet (" (Path.Combine(data, name)) name)))
                        (sprintf "%s listed with its path" name)
                Expect.isFalse
                    (missing |> Array.exists (fun l -> l.Contains "squad" || l.Contains "piqa" || l.Contains "lambada"))
                    "present ones not listed"
                Expect.stringContains r.Stdout "synth:text" "the essay substitution stated"
                for col in [ "task"; "setting"; "metric"; "value"; "n" ] do
                    Expect.stringContains r.Stdout col "table columns"
                let both = cli [ "eval"; "--suite"; "paper"; "--task"; "mqar"; "--model"; Fixtures.dir "gla-tiny" ]
                Expect.stringContains both.Stderr "--suite or --task" "not both"
                let foreign = cli [ "eval"; "--suite"; "paper"; "--model"; Fixtures.dir "gla-tiny"; "--pairs"; "4" ]
                Expect.stringContains foreign.Stderr "--pairs does not apply to suite paper" "suite options checked"
            }
        ]
    ]
