module StateX.Cli.Commands.Info

open Argu
open TorchSharp
open StateX
open StateX.Native

type InfoArgs =
    | Selftest
    | Device of string
    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Selftest -> "run a matmul on the chosen device (bf16 on CUDA) and print the TFLOP/s reached."
            | Device _ -> "device for the self-test: auto (default), cpu, cuda, cuda:N."

let run (args: ParseResults<InfoArgs>) =
    let info = NativeRuntime.Initialize()
    printfn "StateX        %s" info.StateXVersion
    printfn "TorchSharp    %s" info.TorchSharpVersion
    printfn "libtorch      %s" info.LibTorchVersion
    printfn "libtorch dir  %s (from %s)" info.LibTorchDirectory info.LibTorchSource
    printfn "LibTorchSharp %s" info.LibTorchSharpPath
    printfn "compat patch  %s (%s)" (if info.PatchApplied then "applied" else "not needed") info.PatchReason
    let cuda = torch.cuda.is_available ()
    printfn "CUDA          %s" (if cuda then sprintf "available, %d device(s)" (torch.cuda.device_count ()) else "not available")
    for d in CudaDevices.List() do
        printfn "  cuda:%d      %s, %.1f GiB" d.Index d.Name (float d.TotalMemoryBytes / float (1L <<< 30))
    if cuda then
        // The fused GLA and SSD kernels are compiled at first use by NVRTC; without it the tensor-op forms run.
        printfn "NVRTC         %s" (CudaKernels.Describe())
    printfn "CPU threads   %d" (torch.get_num_threads ())
    if args.Contains Selftest then
        let spec = DeviceSpec.Parse(args.GetResult(Device, "auto"))
        let r = SelfTest.Matmul(spec)
        printfn
            "selftest      %s %s matmul %dx%d: %d iterations in %.2f s, max |err| vs float64 (256x256) %.3g"
            r.Device
            r.DType
            r.Size
            r.Size
            r.Iterations
            r.Seconds
            r.MaxAbsErrorVsFloat64
        printfn "selftest      %.2f TFLOP/s" r.TFlops
    0
