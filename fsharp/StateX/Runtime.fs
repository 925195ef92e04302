namespace StateX

open StateX.Native

/// F# face of the native runtime set-up.
[<RequireQualifiedAccess>]
module Runtime =
    /// Sets up libtorch with defaults (STATEX_LIBTORCH, else the CPU package). Idempotent.
    let init () = NativeRuntime.Initialize()

    /// Sets up libtorch from an explicit folder, typically `torch/lib` of a PyTorch install.
    let initFrom (libTorchDirectory: string) = NativeRuntime.Initialize(RuntimeOptions(LibTorchDirectory = libTorchDirectory))

    /// `auto`, `cpu`, `cuda`, `cuda:N` to a TorchSharp device.
    let device (spec: string) = DeviceSpec.Parse(spec).Resolve()

    let cudaDevices () = CudaDevices.List() |> List.ofSeq
