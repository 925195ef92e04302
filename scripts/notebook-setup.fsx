// A notebook's first cell, in the .NET Interactive kernel (Jupyter's `.net-fsharp`, or VS Code Polyglot):
//
//     #load "../scripts/notebook-setup.fsx"
//
// then, in the next cell, `#r "nuget: Plotly.NET.Interactive, 6.0.0"` and `#load "../scripts/prelude.fsx"`.
//
// 1. The build check (build-check.fsx): stops with the command that builds the libraries when they are missing.
// 2. FSharp.Core: the StateX build, Deedle 8.1 and Plotly.NET 6.0 are compiled against FSharp.Core 10.1, while the
//    kernel (Microsoft.dotnet-interactive 1.0.712001) runs on its own FSharp.Core 10.0, and a process holds one
//    FSharp.Core. Without help, the first cell that touches StateX or Plotly.NET fails with "Could not load file or
//    assembly 'FSharp.Core, Version=10.1.0.0'". This cell answers those requests with the kernel's FSharp.Core; the
//    libraries use nothing that 10.0 lacks (the notebooks' CI run executes every cell in the kernel). A kernel whose
//    FSharp.Core is already 10.1 or newer never asks.
#load "build-check.fsx"

open System
open System.Runtime.Loader

let private kernelFSharpCore = typeof<list<int>>.Assembly

let private bindFSharpCore =
    Func<AssemblyLoadContext, Reflection.AssemblyName, Reflection.Assembly>(fun _ name ->
        if name.Name = "FSharp.Core" then kernelFSharpCore else null)

// Once per kernel, however often the cell runs.
if isNull (AppDomain.CurrentDomain.GetData "statex.fsharp-core-binding") then
    AssemblyLoadContext.Default.add_Resolving bindFSharpCore
    AppDomain.CurrentDomain.SetData("statex.fsharp-core-binding", box true)
