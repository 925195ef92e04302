namespace StateX

open System
open System.Security.Cryptography
open System.Text

/// <summary>
/// Stable identities for descriptions: SHA-256 of a value's canonical text (<see cref="ValueJson.toText"/>: compact
/// JSON, record fields in declaration order, culture-invariant numbers, shortest round-trip floats). The same value
/// gives the same hash in every process and on every machine; changing any field changes it.
/// </summary>
[<RequireQualifiedAccess>]
module Hash =
    /// The text that is hashed.
    let canonical (value: 'T) : string = ValueJson.toText value

    let private hex (text: string) = SHA256.HashData(Encoding.UTF8.GetBytes text) |> Convert.ToHexString |> fun s -> s.ToLowerInvariant()

    /// Full SHA-256 (64 hex digits) of the canonical text.
    let sha256 (value: 'T) : string = hex (canonical value)

    /// The first 12 hex digits of <see cref="sha256"/>: the key of a run in sweeps and pipelines.
    let short (value: 'T) : string = (sha256 value).Substring(0, 12)
