module StateX.Tests.SafeTensorsTests

open System
open System.IO
open System.Text
open Expecto
open TorchSharp
open StateX.IO

let private writeRaw (path: string) (header: string) (data: byte[]) =
    let h = Encoding.UTF8.GetBytes header
    use fs = File.Create path
    fs.Write(BitConverter.GetBytes(uint64 h.Length), 0, 8)
    fs.Write(h, 0, h.Length)
    fs.Write(data, 0, data.Length)

let private expectError (path: string) (fragment: string) =
    try
        use r = new SafeTensorsReader(path)
        r.Load(r.Tensors.Keys |> Seq.head) |> ignore
        failtestf "expected an error mentioning '%s'" fragment
    with :? SafeTensorsException as e ->
        Expect.stringContains e.Message path "names the file"
        Expect.stringContains e.Message fragment "says what is wrong"

[<Tests>]
let tests =
    testList "safetensors" [
        test "round trip keeps dtypes, shapes and bits" {
            let d = Fixtures.tempDir ()
            let path = Path.Combine(d, "t.safetensors")
            let tensors = [
                "a", torch.randn (3L, 5L)
                "b", torch.randn(7L).to_type(torch.ScalarType.BFloat16)
                "c", torch.arange (10L)
                "d", torch.randn(2L, 2L).to_type(torch.ScalarType.Float16)
            ]
            SafeTensorsWriter.Write(
                path,
                tensors |> Seq.map (fun (k, v) -> Collections.Generic.KeyValuePair(k, v)),
                readOnlyDict [ "format", "pt" ]
            )
            use r = new SafeTensorsReader(path)
            Expect.equal r.Metadata.["format"] "pt" "metadata"
            for (k, v) in tensors do
                use t = r.Load k
                Expect.equal t.dtype v.dtype (k + " dtype")
                Expect.sequenceEqual t.shape v.shape (k + " shape")
                Expect.isTrue (t.equal(v).all().item<bool>()) (k + " bits")
        }

        test "a wrong expected shape names the tensor and both shapes" {
            let d = Fixtures.tempDir ()
            let path = Path.Combine(d, "t.safetensors")
            SafeTensorsWriter.Write(path, [ Collections.Generic.KeyValuePair("w", torch.zeros (2L, 3L)) ])
            use r = new SafeTensorsReader(path)
            Expect.throwsC (fun () -> r.Load("w", [| 3L; 2L |]) |> ignore) (fun e ->
                Expect.isTrue (e :? SafeTensorsException) "a SafeTensorsException"
                Expect.equal e.Message (sprintf "%s: tensor 'w' has shape [2, 3], expected [3, 2]" path) "message")
        }

        test "corrupt headers, bad offsets and unknown dtypes are rejected by name" {
            let d = Fixtures.tempDir ()
            let p1 = Path.Combine(d, "huge-header.safetensors")
            File.WriteAllBytes(p1, Array.append (BitConverter.GetBytes(99999UL)) [| 1uy; 2uy |])
            expectError p1 "corrupt header"
            let p2 = Path.Combine(d, "bad-json.safetensors")
            writeRaw p2 "{\"x\": {\"dtype\": " [||]
            expectError p2 "corrupt header"
            let p3 = Path.Combine(d, "offsets.safetensors")
            writeRaw p3 """{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""" (Array.zeroCreate 8)
            expectError p3 "out of range"
            let p4 = Path.Combine(d, "dtype.safetensors")
            writeRaw p4 """{"x":{"dtype":"F8_E9","shape":[1],"data_offsets":[0,1]}}""" [| 0uy |]
            expectError p4 "unknown dtype"
            let p5 = Path.Combine(d, "size.safetensors")
            writeRaw p5 """{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""" (Array.zeroCreate 8)
            expectError p5 "needs 12 bytes"
            let p6 = Path.Combine(d, "short.safetensors")
            File.WriteAllBytes(p6, [| 1uy; 2uy |])
            expectError p6 "too short"
        }

        test "a missing file is a FileNotFoundException naming it" {
            Expect.throwsC (fun () -> new SafeTensorsReader("/nonexistent/model.safetensors") |> ignore) (fun e ->
                Expect.isTrue (e :? FileNotFoundException) "a FileNotFoundException"
                Expect.equal e.Message "safetensors file not found: /nonexistent/model.safetensors" "message")
        }

        test "reads the fla fixture's io file" {
            let dir = Fixtures.dir "gla-tiny"
            use r = new SafeTensorsReader(Path.Combine(dir, "io.safetensors"))
            use ids = r.Load "input_ids"
            Expect.equal ids.dtype torch.ScalarType.Int64 "ids int64"
            Expect.equal ids.shape [| 2L; 100L |] "ids shape"
        }
    ]
