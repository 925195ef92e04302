module StateX.Tests.CliTests

open System
open System.IO
open System.Collections.Generic
open Expecto
open TorchSharp
open StateX.IO
open StateX.Models
open StateX.Expansion

let private loadQuiet (dir: string) = Checkpoint.Load(dir, warn = Action<string>(ignore))
let private paramsOf (m: ICausalLanguageModel) =
    dict [ for struct (n, p) in m.Module.named_parameters () -> n, p.detach().to_type(torch.ScalarType.Float32) ]

[<Tests>]
let tests =
    testList "cli" [
        test "statex --help lists every command" {
            let r = Cli.run [ "--help" ]
            Expect.equal r.ExitCode 0 "exit 0"
            for c in [ "info"; "check-logits"; "expand" ] do
                Expect.stringContains (r.Stdout + r.Stderr) c (sprintf "lists %s" c)
        }

        test "statex info reports the runtime set-up" {
            let r = Cli.run [ "info" ]
            Expect.equal r.ExitCode 0 r.Stderr
            for key in [ "TorchSharp"; "libtorch dir"; "compat patch"; "CUDA"; "CPU threads" ] do
                Expect.stringContains r.Stdout key key
        }

        test "statex expand on a fixture prints the accounting and writes a checkpoint check-logits can read" {
            let dir = Fixtures.dir "gla-tiny"
            let tmp = Fixtures.tempDir ()
            let out = Path.Combine(tmp, "merged")
            let r = Cli.run [ "expand"; "--model"; dir; "--out"; out; "--layers"; "all"; "--rewrite"; "merge-heads"; "--init"; "inherit" ]
            Expect.equal r.ExitCode 0 r.Stderr
            Expect.stringContains r.Stdout "total" "accounting table"
            // The reference logits: the same expansion in-process (seed 0, the CLI's default) on gla-tiny-merged's inputs.
            // (gla-tiny-merged itself keeps the pretrained attn_norm, which the official merge resets to ones.)
            use reader = new SafeTensorsReader(Path.Combine(Fixtures.dir "gla-tiny-merged", "io.safetensors"))
            let ids = reader.Load("input_ids", dtype = torch.ScalarType.Int64)
            let expanded =
                StateExpansion.Apply(
                    loadQuiet dir,
                    ExpansionRequest(LayerSelection.Parse "all", Rewrite.Parse "merge-heads", ExpansionInit.Inherit, 0L)
                )
            let expected =
                (use _ = torch.no_grad () in
                 expanded.Model.Forward(ids, mode = ForwardMode.Chunked).Logits.to_type(torch.ScalarType.Float32))
            let io = Path.Combine(tmp, "io.safetensors")
            SafeTensorsWriter.Write(io, [ KeyValuePair("input_ids", ids); KeyValuePair("logits", expected) ])
            let c = Cli.run [ "check-logits"; "--model"; out; "--io"; io ]
            Expect.equal c.ExitCode 0 c.Stderr
            let last = c.Stdout.Trim().Split('\n') |> Array.last
            Expect.stringStarts last "max_abs_diff=" "last line"
            Expect.isLessThan
                (float (last.Substring "max_abs_diff=".Length))
                1e-5
                "the saved checkpoint computes what the in-process expansion does"
        }

        test "statex expand --layers all --rewrite state:x4 --init reinit writes the official mamba4 expansion" {
            let dir = Fixtures.dir "mamba2-tiny"
            let out = Path.Combine(Fixtures.tempDir (), "widened")
            let r = Cli.run [ "expand"; "--model"; dir; "--out"; out; "--layers"; "all"; "--rewrite"; "state:x4"; "--init"; "reinit" ]
            Expect.equal r.ExitCode 0 r.Stderr
            let src = loadQuiet dir
            let back = Checkpoint.Load(out, warn = Action<string>(fun w -> failtestf "unexpected warning: %s" w))
            let sp, bp = paramsOf src, paramsOf back
            let sm, bm = src :?> StateX.Mamba2.Mamba2ForCausalLM, back :?> StateX.Mamba2.Mamba2ForCausalLM
            for i in 0 .. sm.NumLayers - 1 do
                let a, b = sm.backbone.layers.[i].mixer, bm.backbone.layers.[i].mixer
                Expect.equal b.DState (4L * a.DState) "d_state ×4"
                let key leaf = sprintf "backbone.layers.%d.mixer.%s" i leaf
                let isConst (v: float) (t: torch.Tensor) = (t - v).abs().max().item<float32>() = 0.0f
                Expect.isTrue (isConst 1.0 bp.[key "dt_bias"]) "dt_bias = 1"
                Expect.isTrue (isConst 1.0 bp.[key "norm.weight"]) "gated norm = 1"
                let logH = torch.arange(1L, a.Heads + 1L, dtype = torch.ScalarType.Float32).log()
                Expect.isLessThan ((bp.[key "A_log"] - logH).abs().max().item<float32>()) 1e-6f "A_log = log(1..H)"
                for leaf in [ "D"; "out_proj.weight" ] do
                    Expect.isTrue (bp.[key leaf].equal(sp.[key leaf]).all().item<bool>()) (leaf + " pretrained")
                let w, w0 = bp.[key "in_proj.weight"], sp.[key "in_proj.weight"]
                Expect.isTrue
                    (w.narrow(0, 0L, 2L * a.Inner).equal(w0.narrow (0, 0L, 2L * a.Inner)).all().item<bool>())
                    "z, x rows pretrained"
                let bc = w.narrow (0, 2L * a.Inner, 2L * 4L * a.Groups * a.DState)
                Expect.isLessThanOrEqual
                    (bc.abs().max().item<float32>() |> float)
                    (1.0 / sqrt (float a.Hidden) * (1.0 + 1e-6))
                    "B/C rows inside U(±1/√d_model)"
            let expanded =
                StateExpansion.Apply(src, ExpansionRequest(LayerSelection.Parse "all", Rewrite.Parse "state:x4", ExpansionInit.Reinit, 0L))
            for KeyValue(n, p) in paramsOf expanded.Model do
                let d = if p.dtype = bp.[n].dtype && p.shape = bp.[n].shape then (p - bp.[n]).abs().max().item<float32>() |> float else nan
                Expect.isTrue
                    (p.equal(bp.[n]).all().item<bool>())
                    (sprintf
                        "%s: the saved checkpoint is the seed-0 in-process expansion (in-process %A %A, saved %A %A, max |Δ| %g)"
                        n
                        p.dtype
                        p.shape
                        bp.[n].dtype
                        bp.[n].shape
                        d)
        }

        test "statex expand refuses a bad request with a clear message" {
            let r =
                Cli.run [
                    "expand"
                    "--model"
                    Fixtures.dir "mamba2-tiny"
                    "--layers"
                    "all"
                    "--rewrite"
                    "merge-heads"
                    "--init"
                    "reinit"
                ]
            Expect.notEqual r.ExitCode 0 "fails"
            Expect.stringContains r.Stderr "applies to GLA" "says why"
        }

        test "a STATEX_LIBTORCH that does not exist is named in the error" {
            let r = Cli.runWith [ "STATEX_LIBTORCH", "/nonexistent/torch/lib" ] 120 [ "info" ]
            Expect.notEqual r.ExitCode 0 "fails"
            Expect.stringContains r.Stderr "/nonexistent/torch/lib" "names the folder"
            Expect.stringContains r.Stderr "does not exist" "says why"
        }

        test "a STATEX_LIBTORCH without libtorch is named in the error" {
            let d = Fixtures.tempDir ()
            let r = Cli.runWith [ "STATEX_LIBTORCH", d ] 120 [ "info" ]
            Expect.notEqual r.ExitCode 0 "fails"
            Expect.stringContains r.Stderr d "names the folder"
            Expect.stringContains r.Stderr "holds no libtorch" "says why"
        }
    ]
