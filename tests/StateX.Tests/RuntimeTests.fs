module StateX.Tests.RuntimeTests

open System
open System.IO
open System.Runtime.InteropServices
open Expecto
open TorchSharp
open StateX
open StateX.Native

[<DllImport("libc", EntryPoint = "dlopen")>]
extern nativeint dlopen(string path, int flags)
[<DllImport("libc", EntryPoint = "dlsym")>]
extern nativeint dlsym(nativeint handle, string name)

[<Tests>]
let tests =
    testList "runtime" [
        test "tensor math on CPU through the runtime set-up" {
            let info = NativeRuntime.Initialize()
            Expect.isTrue (File.Exists(Path.Combine(info.LibTorchDirectory, "libtorch_cpu.so"))) "libtorch folder holds libtorch_cpu.so"
            use a = torch.tensor([| 1.0f; 2.0f; 3.0f; 4.0f |]).reshape(2L, 2L)
            use p = a.matmul (a)
            Expect.sequenceEqual (p.data<float32>().ToArray()) [| 7.0f; 10.0f; 15.0f; 22.0f |] "2x2 matmul"
        }

        test "Initialize is idempotent and refuses a second libtorch folder" {
            let a = NativeRuntime.Initialize()
            let b = NativeRuntime.Initialize()
            Expect.equal a b "same info"
            let other = Fixtures.tempDir ()
            Expect.throwsC (fun () -> NativeRuntime.Initialize(RuntimeOptions(LibTorchDirectory = other)) |> ignore) (fun e ->
                Expect.isTrue (e :? InvalidOperationException) (sprintf "an InvalidOperationException, not %s" (e.GetType().Name))
                Expect.stringContains
                    e.Message
                    (sprintf "already loaded from %s; cannot switch to %s" a.LibTorchDirectory other)
                    "names both folders")
        }

        test "patch decision: a libstdc++ lacking GLIBCXX_3.4.32 needs the patch" {
            let d = LibStdCxxCompat.Decide([ "GLIBCXX_3.4"; "GLIBCXX_3.4.32" ], [ "GLIBCXX_3.4"; "GLIBCXX_3.4.30" ])
            Expect.isTrue d.NeedsPatch "needs patch"
            Expect.isTrue d.Patchable "patchable"
            Expect.sequenceEqual d.MissingVersions [ "GLIBCXX_3.4.32" ] "missing"
        }

        test "patch decision: a libstdc++ that has the version needs nothing" {
            let d =
                LibStdCxxCompat.Decide(
                    [ "GLIBCXX_3.4"; "GLIBCXX_3.4.32" ],
                    [ "GLIBCXX_3.4"; "GLIBCXX_3.4.30"; "GLIBCXX_3.4.32"; "GLIBCXX_3.4.33" ]
                )
            Expect.isFalse d.NeedsPatch "no patch"
        }

        test "patch decision: a version the shim cannot stand in for is refused" {
            let d = LibStdCxxCompat.Decide([ "GLIBCXX_3.4.33" ], [ "GLIBCXX_3.4.30" ])
            Expect.isTrue d.NeedsPatch "missing"
            Expect.isFalse d.Patchable "not patchable"
            Expect.stringContains d.Reason "GLIBCXX_3.4.33" "names the version"
        }

        test "the patched LibTorchSharp has a weak requirement and an unversioned symbol" {
            let original =
                let asmDir = Path.GetDirectoryName(typeof<torch>.Assembly.Location)
                [
                    Path.Combine(asmDir, "runtimes", "linux-x64", "native", "libLibTorchSharp.so")
                    Path.Combine(asmDir, "libLibTorchSharp.so")
                ]
                |> List.find File.Exists
            let elf = ElfImage.Read original
            let need = elf.VersionNeeds() |> Seq.find (fun n -> n.Name = "GLIBCXX_3.4.32")
            Expect.equal (need.Flags &&& ElfImage.VerFlagWeak) 0us "original requirement is strong"
            let patched = ElfImage.FromBytes("patched", LibStdCxxCompat.Patch(original, File.ReadAllBytes original, [| "GLIBCXX_3.4.32" |]))
            let pneed = patched.VersionNeeds() |> Seq.find (fun n -> n.Name = "GLIBCXX_3.4.32")
            Expect.equal (pneed.Flags &&& ElfImage.VerFlagWeak) ElfImage.VerFlagWeak "patched requirement is weak"
            let sym = patched.DynamicSymbols() |> Seq.find (fun s -> s.Name = IosInitShim.ExportedSymbol)
            Expect.equal sym.VersionIndex 1us "symbol unversioned"
            let others =
                Seq.zip (elf.DynamicSymbols()) (patched.DynamicSymbols())
                |> Seq.filter (fun (a, b) -> a.Name <> IosInitShim.ExportedSymbol && a.VersionIndex <> b.VersionIndex)
            Expect.isEmpty others "no other symbol changed"
        }

        test "the generated shim loads and exports std::ios_base_library_init" {
            let path = Path.Combine(Fixtures.tempDir (), IosInitShim.SoName)
            File.WriteAllBytes(path, IosInitShim.Build())
            let h = dlopen (path, 2)
            Expect.notEqual h 0n "dlopen succeeds (its initialiser constructs std::ios_base::Init)"
            Expect.notEqual (dlsym (h, IosInitShim.ExportedSymbol)) 0n "symbol exported"
        }

        test "a libtorch folder that does not exist is named in the error" {
            Expect.throwsC (fun () -> NativeRuntime.ValidateLibTorchDirectory("/nonexistent/torch/lib", "STATEX_LIBTORCH")) (fun e ->
                Expect.isTrue (e :? DirectoryNotFoundException) (sprintf "a DirectoryNotFoundException, not %s" (e.GetType().Name))
                Expect.equal
                    e.Message
                    "libtorch folder '/nonexistent/torch/lib' (from STATEX_LIBTORCH) does not exist"
                    "names the folder and where it came from")
        }

        test "a folder without libtorch is named in the error" {
            let d = Fixtures.tempDir ()
            try
                NativeRuntime.ValidateLibTorchDirectory(d, "STATEX_LIBTORCH")
                failtest "expected an error"
            with :? FileNotFoundException as e ->
                Expect.stringContains e.Message d "names the folder"
                Expect.stringContains e.Message "holds no libtorch" "says what is wrong"
        }

        testList "devices" [
            test "parse" {
                Expect.equal (DeviceSpec.Parse "auto") DeviceSpec.Auto "auto"
                Expect.equal (DeviceSpec.Parse "CPU") DeviceSpec.Cpu "cpu"
                Expect.equal (DeviceSpec.Parse "cuda:1") (DeviceSpec("cuda", Nullable 1)) "cuda:1"
                Expect.equal (DeviceSpec.Parse "cuda") (DeviceSpec("cuda", Nullable())) "cuda"
            }
            test "bad device strings are refused by name" {
                for bad in [ "tpu"; "cuda:x"; "cuda:-1"; "CUDA:2x" ] do
                    Expect.throwsC (fun () -> DeviceSpec.Parse bad |> ignore) (fun e ->
                        Expect.isTrue (e :? ArgumentException) (sprintf "%s: an ArgumentException, not %s" bad (e.GetType().Name))
                        Expect.equal
                            e.Message
                            (sprintf "unknown device '%s': expected auto, cpu, cuda or cuda:N" bad)
                            (bad + ": named as written, with the accepted forms"))
            }
            test "auto resolves to CUDA when there is one, else to CPU; an unusable cuda device fails with a clear message" {
                let fails (device: string) (message: string) =
                    Expect.throwsC (fun () -> DeviceSpec.Parse(device).Resolve() |> ignore) (fun e ->
                        Expect.isTrue
                            (e :? InvalidOperationException)
                            (sprintf "%s: an InvalidOperationException, not %s" device (e.GetType().Name))
                        Expect.stringContains e.Message message (device + ": message"))
                let resolves (device: string) = let d = DeviceSpec.Parse(device).Resolve() in d.``type``, d.index
                if torch.cuda.is_available () then
                    let n = torch.cuda.device_count ()
                    Expect.equal (resolves "auto") (DeviceType.CUDA, 0) "auto -> cuda:0"
                    Expect.equal (resolves "cuda") (DeviceType.CUDA, 0) "cuda -> cuda:0"
                    Expect.equal (resolves (sprintf "cuda:%d" (n - 1))) (DeviceType.CUDA, n - 1) "the last device"
                    fails (sprintf "cuda:%d" n) (sprintf "device 'cuda:%d' requested but only %d CUDA device(s) are visible" n n)
                else
                    Expect.equal (fst (resolves "auto")) DeviceType.CPU "auto -> cpu"
                    for device in [ "cuda"; "cuda:0" ] do
                        fails
                            device
                            (sprintf
                                "device '%s' requested but CUDA is not available with libtorch from %s"
                                device
                                NativeRuntime.Info.LibTorchDirectory)
            }
        ]
    ]
