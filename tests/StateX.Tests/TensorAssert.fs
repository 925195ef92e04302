/// Tensor comparisons shared by the test files: one definition of "how far apart" for every tolerance in the suite.
module StateX.Tests.TensorAssert

open Expecto
open TorchSharp

type private T = torch.Tensor

let f32 = torch.ScalarType.Float32

/// max |a − b| over all elements, computed in float32 on detached copies (any dtype and device; shapes broadcast).
let maxAbs (a: T) (b: T) =
    use _ = torch.NewDisposeScope()
    (a.detach().to_type(f32) - b.detach().to_type(f32)).abs().max().item<float32>() |> float

/// Fails, giving the measured difference, unless max |actual − expected| ≤ tol; returns the difference.
let close (tol: float) (what: string) (actual: T) (expected: T) =
    let d = maxAbs actual expected
    if not (d <= tol) then failtestf "%s: max abs diff %g > %g" what d tol
    d
