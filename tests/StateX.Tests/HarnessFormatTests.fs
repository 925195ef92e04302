/// The published formats of issue #22: the Based / "Just read twice" recall suite (SWDE, FDA, SQuAD, TriviaQA, NQ,
/// DROP) and lm-evaluation-harness's PIQA, WinoGrande and LAMBADA. Expected prompts are written out by hand from
/// those projects' task definitions (doc_to_text), applied to the sample files in data/examples.
module StateX.Tests.HarnessFormatTests

open System
open System.Collections.Generic
open System.IO
open Expecto
open StateX.Data
open StateX.Evaluation
open StateX.Evaluation.Tasks
open StateX.Tokenization

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

/// The prompts of a sample file with the document not cut.
let private prompts name = [
    for e in BasedRecall.ReadFile(RecallTask.Named name, Fixtures.example (name + ".jsonl"), byteTok, Nullable()) -> e.Prompt
]

let private cli args = Cli.runWith [ "OMP_NUM_THREADS", "1" ] 300 args

[<Tests>]
let tests =
    testList "harness formats" [
        testList "recall suite (Just read twice)" [
            test "SWDE and FDA: the trailing key cut, '. Key:' appended; SWDE's summary block dropped" {
                Expect.equal
                    (prompts "swde")
                    [
                        "<html><head><title>Inception (2010)</title></head><body><h1>Inception</h1><div class=\"credit\">Director: Christopher Nolan</div><div>Runtime: 148 min</div></body></html>. Director:"
                        "<html><body><h2>Alien</h2><p>Runtime: 117 min</p><p>Genre: Science Fiction</p></body></html>. Runtime:"
                    ]
                    "swde"
                Expect.equal
                    (prompts "fda")
                    [
                        "510(k) SUMMARY\nDevice trade name: HemosIL HIT-Ab\nClassification: Class II\nPanel: Hematology (81)\nIntended use: a qualitative immunoassay for the detection of anti-PF4/heparin antibodies. Classification:"
                        "Indications for use: The FlowSense pump delivers insulin subcutaneously. Product code: LZG. Purpose for submission: New device. Product code:"
                    ]
                    "fda"
                let labels = [
                    for e in BasedRecall.ReadFile(RecallTask.Fda, Fixtures.example "fda.jsonl", byteTok, Nullable()) -> List.ofSeq e.Labels
                ]
                Expect.equal labels [ [ "Class II" ]; [ "LZG" ] ] "the value is the label"
            }
            test "SQuAD: the text stripped; TriviaQA, NQ, DROP: 'context. question', the trailing question cut, TriviaQA's markup removed" {
                Expect.equal
                    (prompts "squad")
                    [
                        "Nairobi is the capital and largest city of Kenya. The city lies on the Nairobi River. The capital city of Kenya is"
                        "The Amazon River flows through Brazil, Peru and Colombia. Its source lies in the Andes. The Amazon's source lies in the"
                    ]
                    "squad"
                Expect.equal
                    (prompts "triviaqa")
                    [
                        "Ottawa  Ottawa is the capital city of Canada. It stands on the south bank of the Ottawa River. The capital of Canada is"
                        "Mount Everest  Mount Everest, in the Himalayas, is Earth's highest mountain above sea level. The highest mountain on Earth is"
                    ]
                    "triviaqa"
                Expect.equal
                    (prompts "nq")
                    [
                        "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the company of Gustave Eiffel and completed in 1889. The Eiffel Tower was completed in"
                        "Jupiter is the fifth planet from the Sun and the largest in the Solar System. The largest planet in the Solar System is"
                    ]
                    "nq"
                Expect.equal
                    (prompts "drop")
                    [
                        "The Bears scored on a 20-yard field goal in the first quarter. In the second quarter the Lions answered with two touchdowns. The team that scored two touchdowns in the second quarter was the"
                        "The census counted 4,512 households, of which 1,200 had children under 18. The number of households the census counted was"
                    ]
                    "drop"
                let labels = [
                    for e in BasedRecall.ReadFile(RecallTask.TriviaQa, Fixtures.example "triviaqa.jsonl", byteTok, Nullable()) ->
                        List.ofSeq e.Labels
                ]
                Expect.equal labels.[0] [ "Ottawa"; "Ottawa, Ontario" ] "every answer is a label"
            }
            test "the context cut: a window around the answer, at the end when not found, NQ's tok_pos" {
                // BOS + 100 'a' + ANSWER + 100 'b'; the answer at token 101; a window of 40 from 81 to 121.
                let doc = String('a', 100) + "ANSWER" + String('b', 100)
                Expect.equal
                    (BasedRecall.CutContext(byteTok, doc, [| "answer" |], 40))
                    (String('a', 20) + "ANSWER" + String('b', 14))
                    "centred, case ignored"
                Expect.equal
                    (BasedRecall.CutContext(byteTok, "  " + doc + "\n", [| "bbb"; "aNsWeR" |], 40))
                    (String('a', 20) + "ANSWER" + String('b', 14))
                    "stripped; the earliest of the answers"
                Expect.equal
                    (BasedRecall.CutContext(byteTok, "ANSWER" + String('b', 100), [| "answer" |], 40))
                    ("ANSWER" + String('b', 33))
                    "at the start: BOS + 39 tokens"
                // Not found: Python's context[:-1] puts the answer at the last character: 20 tokens before it, the last one.
                Expect.equal
                    (BasedRecall.CutContext(byteTok, String('x', 50), [| "zz" |], 40))
                    (String('x', 21))
                    "not found: the document's end"
                Expect.equal
                    (BasedRecall.CutContext(byteTok, String('x', 50), [| "zz" |], 40, 5L))
                    (String('x', 39))
                    "tok_pos when the document is longer than the window"
                Expect.equal
                    (BasedRecall.CutContext(byteTok, String('x', 30), [| "zz" |], 40, 5L))
                    (String('x', 21))
                    "tok_pos unused when the document fits the window"
                // Through a whole record: SWDE cut to 60 tokens (window 10) around "Christopher Nolan".
                let path = Path.Combine(Fixtures.tempDir (), "swde.jsonl")
                File.WriteAllText(
                    path,
                    """{"text": "aaaaaaaaaaaaaaaaaaaa Director: Christopher Nolan. bbbbbbbbbbbbbbbbbbbb\ndirector:", "key": "director", "value": "Christopher Nolan"}"""
                )
                let e = BasedRecall.ReadFile(RecallTask.Swde, path, byteTok, Nullable 60)
                // "director" (the key) occurs first, inside "Director:": 5 tokens before it, 5 from it.
                Expect.equal e.[0].Prompt "aaaa Direc. Director:" "the window, then doc_to_text"
            }
            test "records JRT drops, contains, until the newline; bad records named" {
                let path = Path.Combine(Fixtures.tempDir (), "drop.jsonl")
                File.WriteAllLines(
                    path,
                    [
                        """{"context": "Three goals were scored.", "question": "The number of goals was", "answers": ["3"]}"""
                        """{"context": "Three goals were scored.", "question": "The number of goals was", "answers": ["three"]}"""
                    ]
                )
                Expect.equal
                    (BasedRecall.ReadFile(RecallTask.Drop, path, byteTok, Nullable 1000)).Count
                    1
                    "a one-character answer is dropped when the context is cut (as JRT)"
                Expect.equal (BasedRecall.ReadFile(RecallTask.Drop, path, byteTok, Nullable())).Count 2 "kept when not cut"
                Expect.isTrue
                    (BasedRecall.Contains(BasedRecall.UntilNewline " christopher NOLAN, who\nalso", [| "Christopher Nolan" |]))
                    "case ignored"
                Expect.isFalse
                    (BasedRecall.Contains(BasedRecall.UntilNewline " the director\nChristopher Nolan", [| "Christopher Nolan" |]))
                    "after the newline does not count"
                Expect.isFalse (BasedRecall.Contains(" Chris Nolan", [| "Christopher Nolan"; "C. Nolan" |])) "none of the labels"
                Expect.isTrue (BasedRecall.Contains(" it was 4512 in all", [| "4,512"; "4512" |])) "any label"
                Expect.isFalse (BasedRecall.Contains(" the Eiffel-Tower", [| "Eiffel Tower" |])) "no normalisation beyond case"
                let bad = Path.Combine(Fixtures.tempDir (), "fda.jsonl")
                File.WriteAllText(bad, """{"text": "doc", "value": "v"}""")
                throwsContaining (fun () -> BasedRecall.ReadFile(RecallTask.Fda, bad, byteTok, Nullable())) [ bad + ":1"; "\"key\"" ]
                throwsContaining (fun () -> RecallTask.Named "hotpotqa") [ "hotpotqa"; "swde, fda, squad, triviaqa, nq, drop" ]
            }
            test "Parquet records read as their JSON Lines twins" {
                let rows (name: string) =
                    File.ReadAllLines(Fixtures.example name)
                    |> Array.filter (fun l -> l <> "")
                    |> Array.map (fun l -> System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, System.Text.Json.JsonElement>> l)
                let path = Path.Combine(Fixtures.tempDir (), "triviaqa.parquet")
                let src = rows "triviaqa.jsonl"
                let untyped: IDictionary<string, obj>[] = [|
                    for r in src ->
                        dict [
                            "context", box (r.["context"].GetString())
                            "question", box (r.["question"].GetString())
                            "answers", box [| for a in r.["answers"].EnumerateArray() -> Nullable(a.GetString().AsMemory()) |]
                            "doc_id", box (r.["doc_id"].GetInt64())
                        ]
                |]
                let schema =
                    Parquet.Schema.ParquetSchema(
                        [|
                            Parquet.Schema.DataField<string>("context") :> Parquet.Schema.Field
                            Parquet.Schema.DataField<string>("question")
                            Parquet.Schema.ListField("answers", Parquet.Schema.DataField<string>("element"))
                            Parquet.Schema.DataField<int64>("doc_id")
                        |]
                    )
                do
                    use fs = File.Create path
                    Parquet.Serialization.ParquetSerializer.SerializeUntypedAsync(untyped, schema, fs).GetAwaiter().GetResult()
                let a = BasedRecall.ReadFile(RecallTask.TriviaQa, path, byteTok, Nullable 1000)
                let b = BasedRecall.ReadFile(RecallTask.TriviaQa, Fixtures.example "triviaqa.jsonl", byteTok, Nullable 1000)
                Expect.equal
                    [ for e in a -> e.Prompt, List.ofSeq e.Labels ]
                    [ for e in b -> e.Prompt, List.ofSeq e.Labels ]
                    "same prompts and labels"
                let notParquet = Path.Combine(Fixtures.tempDir (), "nq.parquet")
                File.WriteAllText(notParquet, "{}")
                throwsContaining (fun () -> BasedRecall.ReadFile(RecallTask.Nq, notParquet, byteTok, Nullable())) [
                    notParquet
                    "not a readable Parquet file"
                ]
            }
        ]

        testList "lm-evaluation-harness" [
            test "PIQA: 'Question: goal\\nAnswer:', [sol1, sol2], label" {
                let items = MultipleChoice.ReadFile(Fixtures.example "piqa.jsonl")
                Expect.equal items.[0].Prompt "Question: How do I keep ice cream from melting?\nAnswer:" "doc_to_text"
                Expect.equal
                    (List.ofSeq items.[0].Choices)
                    [ " Put it in the oven."; " Put it in the freezer." ]
                    "choices after the delimiter"
                Expect.equal (items.[0].Gold, items.[1].Gold) (1, 0) "label"
            }
            test "WinoGrande: a context per option up to the blank, the rest of the sentence scored" {
                let items = WinoGrande.ReadFile(Fixtures.example "winogrande.jsonl")
                Expect.equal
                    (List.ofSeq items.[0].Contexts)
                    [
                        "The trophy doesn't fit into the brown suitcase because the trophy"
                        "The trophy doesn't fit into the brown suitcase because the suitcase"
                    ]
                    "contexts"
                Expect.equal items.[0].Continuation " is too large." "continuation"
                Expect.equal (items.[0].Gold, items.[1].Gold) (0, 1) "answer \"1\" / \"2\""
                Expect.equal
                    (List.ofSeq items.[1].Contexts)
                    [ "Sarah lent her umbrella to Maria because Sarah"; "Sarah lent her umbrella to Maria because Maria" ]
                    "second"
                let bad = Path.Combine(Fixtures.tempDir (), "winogrande.jsonl")
                File.WriteAllText(bad, """{"sentence": "No blank here.", "option1": "a", "option2": "b", "answer": "1"}""")
                throwsContaining (fun () -> WinoGrande.ReadFile bad) [ bad + ":1"; "blank" ]
                File.WriteAllText(bad, """{"sentence": "A _ b.", "option1": "a", "option2": "b", "answer": "3"}""")
                throwsContaining (fun () -> WinoGrande.ReadFile bad) [ bad + ":1"; "'3'" ]
            }
            test "LAMBADA: the passage split at its last space" {
                let items = Lambada.ReadFile(Fixtures.example "lambada.jsonl")
                Expect.equal
                    items.[0]
                    (LambadaItem(
                        "She poured the tea, set the pot down and handed him the cup. He thanked her and took a sip of the",
                        " tea"
                    ))
                    "first"
                Expect.equal items.[1].Target " dog" "second"
                let bad = Path.Combine(Fixtures.tempDir (), "lambada.jsonl")
                File.WriteAllText(bad, """{"text": "oneword"}""")
                throwsContaining (fun () -> Lambada.ReadFile bad) [ bad + ":1"; "no space" ]
            }
            test "WinoGrande acc and LAMBADA acc/perplexity equal the scores computed pair by pair (gla-tiny)" {
                let lm = Fixtures.load "gla-tiny"
                let o = EvalOptions(SegmentLength = 16, BatchSize = 2)
                let ll (ctx: string) (cont: string) =
                    (Scoring.LogLikelihood(lm, [| byteTok.Encode(ctx, true), byteTok.Encode cont |], o)).[0]
                let w = WinoGrande.ReadFile(Fixtures.example "winogrande.jsonl")
                let right =
                    w
                    |> Seq.filter (fun it ->
                        (if (ll it.Contexts.[0] it.Continuation).LogProb >= (ll it.Contexts.[1] it.Continuation).LogProb then 0 else 1) =
                            it.Gold)
                    |> Seq.length
                let r = WinoGrande.Evaluate(lm, byteTok, Fixtures.example "winogrande.jsonl", options = o)
                Expect.equal [ for x in r -> x.Metric, x.Value, x.N ] [ "acc", float right / 2.0, 2L ] "acc from the partial scores"
                let scores = [ for it in Lambada.ReadFile(Fixtures.example "lambada.jsonl") -> ll it.Context it.Target ]
                let r = Lambada.Evaluate(lm, byteTok, Fixtures.example "lambada.jsonl", options = o)
                let get m = (r |> Seq.find (fun x -> x.Metric = m)).Value
                Expect.equal (get "acc") (float (scores |> List.filter (fun s -> s.IsGreedy) |> List.length) / 2.0) "acc: greedy targets"
                Expect.floatClose
                    Accuracy.veryHigh
                    (get "perplexity")
                    (exp (-(scores |> List.averageBy (fun s -> s.LogProb))))
                    "perplexity = exp(−mean ll)"
                Expect.isGreaterThan (get "perplexity") 1.0 "a real perplexity"
            }
        ]

        test "sweep files name the paper's tasks: ruler, recall, winogrande, lambada" {
            let dir = Fixtures.tempDir ()
            let config = Path.Combine(Fixtures.example "..", "configs", "gla-tiny.json").Replace("\\", "/")
            let write (evaluate: string) =
                let file = Path.Combine(dir, "s.json")
                File.WriteAllText(file, (sprintf """{"model": {"config": "%s"}, "evaluate": %s}""" config evaluate))
                file
            let tasks file =
                let plan = StateX.SweepFile.load file
                [
                    for st in plan.Sweep.Runs.Head.Description.Stages do
                        match st with
                        | StateX.Evaluate e -> yield! e.Tasks
                        | _ -> ()
                ]
            let file =
                write
                    """[ {"ruler": {"tasks": ["niah_single_2"], "lengths": [4096], "samples": 3}},
                                  {"recall": {"task": "SWDE", "file": "swde.parquet", "context_length": 2048}},
                                  {"recall": {"task": "nq", "file": "nq.jsonl", "context_length": 0, "limit": 5}},
                                  {"winogrande": {"file": "w.jsonl"}}, {"lambada": {"file": "l.jsonl", "limit": 7}} ]"""
            Expect.equal
                (tasks file)
                [
                    StateX.EvalTask.RulerNiah([ "niah_single_2" ], [ 4096 ], 3, None, RulerNiah.RulerMaxNewTokens)
                    StateX.EvalTask.Recall("swde", Path.Combine(dir, "swde.parquet"), Some 2048, BasedRecall.MaxNewTokens, None)
                    StateX.EvalTask.Recall("nq", Path.Combine(dir, "nq.jsonl"), None, BasedRecall.MaxNewTokens, Some 5)
                    StateX.EvalTask.WinoGrande(Path.Combine(dir, "w.jsonl"), None)
                    StateX.EvalTask.Lambada(Path.Combine(dir, "l.jsonl"), Some 7)
                ]
                "the tasks, files beside the sweep file"
            let refused (evaluate: string) (parts: string list) =
                let f = write evaluate
                let m =
                    try
                        (tasks f |> ignore
                         "")
                    with e ->
                        e.Message
                for p in parts do
                    Expect.stringContains m p "the error names the key and value"
            refused """[ {"ruler": {"tasks": ["niah_double"], "lengths": [4096]}} ]""" [ "evaluate.ruler.tasks"; "niah_double" ]
            refused """[ {"recall": {"task": "hotpot", "file": "x.jsonl"}} ]""" [ "evaluate.recall.task"; "hotpot" ]
            refused """[ {"recall": {"task": "fda", "file": "x.jsonl", "context_length": 20}} ]""" [
                "evaluate.recall.context_length"
                "20"
            ]
        }

        testList "cli" [
            test "eval --task swde: contains over the sample, the context length in the setting; errors name the option" {
                let out = Path.Combine(Fixtures.tempDir (), "swde.csv")
                let r =
                    cli [
                        "eval"
                        "--model"
                        Fixtures.dir "gla-tiny"
                        "--device"
                        "cpu"
                        "--no-progress"
                        "--task"
                        "swde"
                        "--file"
                        Fixtures.example "swde.jsonl"
                        "--max-new"
                        "3"
                        "--context-length"
                        "200"
                        "--out"
                        out
                    ]
                Expect.equal r.ExitCode 0 r.Stderr
                let lines = File.ReadAllLines out |> Array.filter (fun l -> l <> "")
                let header = lines.[0].Split ','
                let row = lines.[1].Split ','
                let col (n: string) = row.[Array.IndexOf(header, n)]
                Expect.equal (col "task", col "metric", col "n", col "context_length") ("swde", "contains", "2", "200") "one row"
                let bad =
                    cli [
                        "eval"
                        "--model"
                        Fixtures.dir "gla-tiny"
                        "--task"
                        "nq"
                        "--file"
                        Fixtures.example "nq.jsonl"
                        "--context-length"
                        "40"
                    ]
                Expect.stringContains bad.Stderr "--context-length" "too short a context refused"
                let noFile = cli [ "eval"; "--model"; Fixtures.dir "gla-tiny"; "--task"; "lambada" ]
                Expect.stringContains noFile.Stderr "--file" "lambada needs a file"
            }
        ]
    ]
