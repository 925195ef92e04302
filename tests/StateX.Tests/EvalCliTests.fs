/// `statex eval` and `statex generate` as a user runs them: every task at a tiny size on a fixture model, the
/// files they write, and the errors bad input gets.
module StateX.Tests.EvalCliTests

open System
open System.IO
open System.Text.Json
open Expecto
open StateX.Models

let private example = Fixtures.example

/// `statex <args>` on one intra-op thread: at these tiny shapes threads gain nothing, and on a small machine busy
/// with other work a second OpenMP thread waiting for a core made a run up to ten times slower.
let private run args = Cli.runWith [ "OMP_NUM_THREADS", "1" ] 300 args

/// Runs `statex eval --model <fixture> <args> --out <tmp>/results.<ext>` and returns the output file's path.
let private evalTo (fixture: string) (ext: string) (args: string list) =
    let out = Path.Combine(Fixtures.tempDir (), "results." + ext)
    let r = run ([ "eval"; "--model"; Fixtures.dir fixture; "--device"; "cpu"; "--out"; out; "--no-progress" ] @ args)
    Expect.equal r.ExitCode 0 (sprintf "exit 0; stderr: %s" r.Stderr)
    Expect.isTrue (File.Exists out) "results file written"
    Expect.isGreaterThan (r.Stdout.Split('\n').Length) 4 "a results table"
    Expect.stringContains r.Stdout ("results written to " + out) "says where the results went"
    out

/// CSV → header and rows of cells (our results hold no quoted commas here).
let private csv (path: string) =
    let lines = File.ReadAllLines path |> Array.filter (fun l -> l <> "")
    lines.[0].Split ',', lines.[1..] |> Array.map (fun l -> l.Split ',')

let private column (header: string[]) (rows: string[][]) name =
    let i = Array.IndexOf(header, name)
    if i < 0 then failwithf "no column %s in %A" name header
    rows |> Array.map (fun r -> r.[i])

let private jsonl (path: string) =
    File.ReadAllLines path |> Array.filter (fun l -> l <> "") |> Array.map (fun l -> JsonDocument.Parse(l).RootElement)

let private expectUnit (values: float seq) what =
    for v in values do
        Expect.isTrue (v >= 0.0 && v <= 1.0) (sprintf "%s in [0, 1] (got %g)" what v)

let private fails (args: string list) (parts: string list) =
    let r = run args
    Expect.notEqual r.ExitCode 0 "fails"
    for p in parts do
        Expect.stringContains r.Stderr p "the error names the problem"
    Expect.isFalse (r.Stderr.Contains "   at ") "a message, not a stack trace"

[<Tests>]
let tests =
    testList "cli eval" [
        test "mqar: a row per (pairs, seq_len), CSV columns per setting key" {
            let header, rows = csv (evalTo "gla-tiny" "csv" [ "--task"; "mqar"; "--pairs"; "2,4"; "--seq-len"; "32"; "--examples"; "3" ])
            Expect.equal header [| "model"; "task"; "pairs"; "seq_len"; "vocab"; "metric"; "value"; "n" |] "columns"
            Expect.equal (column header rows "pairs") [| "2"; "4" |] "settings"
            Expect.equal (column header rows "vocab") [| "300"; "300" |] "default vocab: the model's"
            Expect.equal (column header rows "n") [| "6"; "12" |] "queries = examples × pairs"
            Expect.equal (column header rows "model") [| "gla-tiny"; "gla-tiny" |] "model named after its folder"
            expectUnit (column header rows "value" |> Seq.map float) "accuracy"
        }

        test "passkey: the length × depth grid, accuracy and answer NLL, as JSON Lines" {
            let rs =
                jsonl (
                    evalTo "mamba2-tiny" "jsonl" [
                        "--task"
                        "passkey"
                        "--lengths"
                        "300,400"
                        "--depths"
                        "0,100"
                        "--trials"
                        "1"
                        "--segment"
                        "128"
                    ]
                )
            Expect.equal rs.Length 8 "2 lengths × 2 depths × 2 metrics"
            let cells =
                rs
                |> Array.map (fun r ->
                    let s = r.GetProperty "setting" in s.GetProperty("length").GetInt32(), s.GetProperty("depth").GetDouble())
                |> Array.distinct
            Expect.equal (Set.ofArray cells) (set [ 300, 0.0; 300, 1.0; 400, 0.0; 400, 1.0 ]) "cells (depth as a fraction)"
            let metrics = rs |> Array.map (fun r -> r.GetProperty("metric").GetString())
            Expect.equal (metrics |> Array.countBy id |> Set.ofArray) (set [ "accuracy", 4; "answer_nll", 4 ]) "two metrics per cell"
            for r in rs do
                let v = r.GetProperty("value").GetDouble()
                if r.GetProperty("metric").GetString() = "accuracy" then
                    expectUnit [ v ] "accuracy"
                else
                    Expect.isGreaterThan v 0.0 "NLL > 0"
        }

        test "haystack: a row per length" {
            let header, rows =
                csv (
                    evalTo "gla-conv" "csv" [
                        "--task"
                        "haystack"
                        "--lengths"
                        "500,600"
                        "--needles"
                        "2"
                        "--trials"
                        "1"
                        "--segment"
                        "256"
                    ]
                )
            Expect.equal (column header rows "length") [| "500"; "600" |] "lengths"
            Expect.equal (column header rows "needles") [| "2"; "2" |] "needles"
            Expect.equal (column header rows "task") [| "niah"; "niah" |] "task"
        }

        test "icl: synthetic (a row per number of shots) and from the example file" {
            let header, rows = csv (evalTo "gla-tiny" "csv" [ "--task"; "icl"; "--shots"; "0,1"; "--trials"; "2" ])
            Expect.equal (column header rows "shots") [| "0"; "1" |] "shots"
            Expect.equal (column header rows "n") [| "2"; "2" |] "trials"
            let h2, r2 =
                csv (evalTo "mamba2-tiny" "csv" [ "--task"; "icl"; "--file"; example "fewshot.jsonl"; "--shots"; "1"; "--limit"; "2" ])
            Expect.equal (column h2 r2 "file") [| "fewshot.jsonl" |] "file"
            Expect.equal (column h2 r2 "n") [| "2" |] "limited to 2 queries"
            expectUnit (column h2 r2 "value" |> Seq.map float) "accuracy"
        }

        test "qa and mc from the example files" {
            let h, r = csv (evalTo "mamba2-tiny" "csv" [ "--task"; "qa"; "--file"; example "recall_qa.jsonl"; "--max-new"; "4" ])
            Expect.equal (column h r "metric") [| "contains" |] "metric"
            Expect.equal (column h r "max_new_tokens") [| "4" |] "setting"
            Expect.equal
                (column h r "n")
                [| string (File.ReadAllLines(example "recall_qa.jsonl") |> Array.filter (fun l -> l.Trim() <> "")).Length |]
                "every example"
            let h2, r2 = csv (evalTo "gla-tiny" "csv" [ "--task"; "mc"; "--file"; example "multiple_choice.jsonl" ])
            Expect.equal (column h2 r2 "metric") [| "acc"; "acc_norm" |] "metrics"
            expectUnit (column h2 r2 "value" |> Seq.map float) "accuracy"
        }

        test "loss-position: bins cover every position up to --max-len" {
            let h, r =
                csv (
                    evalTo "gla-tiny" "csv" [
                        "--task"
                        "loss-position"
                        "--file"
                        example "tiny.txt"
                        "--max-len"
                        "64"
                        "--segment"
                        "16"
                    ]
                )
            Expect.equal (column h r "from") [| "0"; "1"; "2"; "4"; "8"; "16"; "32" |] "power-of-two bins"
            Expect.equal (column h r "n" |> Array.sumBy int) 63 "63 predictions in 64 tokens"
            for v in column h r "value" do
                Expect.isGreaterThan (float v) 0.0 "loss > 0"
            let h2, r2 =
                csv (
                    evalTo "gla-tiny" "csv" [
                        "--task"
                        "loss-position"
                        "--file"
                        example "tiny.jsonl"
                        "--max-len"
                        "40"
                        "--bin-width"
                        "20"
                    ]
                )
            Expect.equal (column h2 r2 "to") [| "20"; "40" |] "fixed-width bins"
        }

        test "generate: greedy and seeded sampling reproduce; speed on stderr" {
            let dir = Fixtures.dir "gla-tiny"
            let gen extra = run ([ "generate"; "--model"; dir; "--prompt"; "Once"; "--max-new"; "6"; "--device"; "cpu" ] @ extra)
            let a, b = gen [], gen []
            Expect.equal a.ExitCode 0 a.Stderr
            Expect.stringContains a.Stderr "tokens/s" "speed"
            Expect.equal a.Stdout b.Stdout "greedy is deterministic"
            let s1, s2 =
                gen [ "--temperature"; "1.5"; "--top-k"; "50"; "--seed"; "4" ],
                gen [ "--temperature"; "1.5"; "--top-k"; "50"; "--seed"; "4" ]
            Expect.equal s1.ExitCode 0 s1.Stderr
            Expect.equal s1.Stdout s2.Stdout "a seed reproduces"
            fails [ "generate"; "--model"; dir; "--prompt"; "x"; "--top-p"; "0" ] [ "--top-p"; "(0, 1]" ]
        }

        test "bad input: unknown task, missing or absent --file, unreadable model folder, foreign options, bad lists" {
            let dir = Fixtures.dir "gla-tiny"
            fails [ "eval"; "--model"; dir; "--task"; "sqad" ] [ "--task"; "unknown task 'sqad'"; "mqar"; "loss-position" ]
            fails [ "eval"; "--model"; dir; "--task"; "qa" ] [ "--file"; "required"; "qa" ]
            fails [ "eval"; "--model"; dir; "--task"; "mc"; "--file"; "/nonexistent/mc.jsonl" ] [
                "--file"
                "/nonexistent/mc.jsonl"
                "not found"
            ]
            fails [ "eval"; "--model"; "/nonexistent/model"; "--task"; "mqar" ] [ "--model"; "/nonexistent/model"; "not found" ]
            let empty = Fixtures.tempDir ()
            fails [ "eval"; "--model"; empty; "--task"; "mqar" ] [ empty; "config.json" ]
            fails [ "eval"; "--model"; dir; "--task"; "mqar"; "--depths"; "50" ] [ "--depths"; "does not apply to task mqar" ]
            fails [ "eval"; "--model"; dir; "--task"; "passkey"; "--lengths"; "1k,2q" ] [ "--lengths"; "'2q'" ]
            fails [ "eval"; "--model"; dir; "--task"; "passkey"; "--depths"; "120" ] [ "--depths"; "120"; "0..100" ]
            fails [ "eval"; "--model"; dir; "--task"; "mqar"; "--out"; "r.txt" ] [ "--out"; "r.txt"; ".csv" ]
            fails [ "eval"; "--model"; dir; "--task"; "mqar"; "--device"; "tpu" ] [ "--device"; "'tpu'" ]
            fails [ "eval"; "--model"; dir; "--task"; "mqar"; "--vocab"; "1000" ] [ "--vocab"; "1000"; "300" ]
            let bad = Path.Combine(Fixtures.tempDir (), "bad.jsonl")
            File.WriteAllLines(bad, [ """{"prompt": "a", "answer": "b"}"""; """{"prompt": 3, "answer": "b"}""" ])
            fails [ "eval"; "--model"; dir; "--task"; "qa"; "--file"; bad ] [ bad + ":2:"; "prompt" ]
        }

        test "a tokenizer with ids beyond the model's vocabulary is refused" {
            // A model of 200 ids cannot take the byte tokenizer's 259.
            let dir = Fixtures.tempDir ()
            let config =
                File.ReadAllText(Path.Combine(Fixtures.dir "gla-tiny", "config.json")).Replace("\"vocab_size\": 300", "\"vocab_size\": 200")
            let configPath = Path.Combine(dir, "source.json")
            File.WriteAllText(configPath, config)
            let modelDir = Path.Combine(dir, "small")
            (Checkpoint.FromConfig configPath).Save modelDir
            fails [ "eval"; "--model"; modelDir; "--task"; "passkey"; "--lengths"; "300"; "--tokenizer"; "byte" ] [
                "--tokenizer"
                "258"
                "200"
            ]
            fails [ "generate"; "--model"; modelDir; "--prompt"; "x" ] [ "--tokenizer"; "200" ]
        }
    ]
