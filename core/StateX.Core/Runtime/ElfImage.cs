using System.Buffers.Binary;
using System.Text;

namespace StateX.Native;

/// <summary>
/// Just enough of an ELF64 little-endian reader to inspect and patch symbol versioning
/// (.gnu.version_r, .gnu.version_d, .gnu.version, .dynsym). Works on a byte[] copy so that
/// patches never touch the original file.
/// </summary>
internal sealed class ElfImage
{
    const uint ShtDynsym = 11, ShtGnuVerdef = 0x6ffffffd, ShtGnuVerneed = 0x6ffffffe, ShtGnuVersym = 0x6fffffff;

    internal readonly record struct Section(string Name, uint Type, long Offset, long Size, uint Link, uint Info, long EntrySize);

    /// <summary>One vernaux entry: library <c>File</c> must provide version <c>Name</c>.</summary>
    internal readonly record struct VersionNeed(string File, string Name, ushort Flags, ushort Index, long AuxOffset);

    internal readonly record struct DynamicSymbol(string Name, int Index, ushort VersionIndex, long VersymOffset, bool Defined);

    public const ushort VerFlagWeak = 0x2;

    public byte[] Bytes { get; }
    public string Path { get; }
    public IReadOnlyList<Section> Sections { get; }

    ElfImage(string path, byte[] bytes)
    {
        Path = path;
        Bytes = bytes;
        if (bytes.Length < 64 || bytes[0] != 0x7f || bytes[1] != (byte)'E' || bytes[2] != (byte)'L' || bytes[3] != (byte)'F')
            throw new InvalidDataException($"{path}: not an ELF file");
        if (bytes[4] != 2 || bytes[5] != 1)
            throw new InvalidDataException($"{path}: only 64-bit little-endian ELF is supported");
        long shoff = I64(0x28);
        int shentsize = U16(0x3A), shnum = U16(0x3C), shstrndx = U16(0x3E);
        if (shoff <= 0 || shoff + (long)shnum * shentsize > bytes.Length)
            throw new InvalidDataException($"{path}: section header table out of range");
        var raw = new (uint name, uint type, long off, long size, uint link, uint info, long entsize)[shnum];
        for (int i = 0; i < shnum; i++)
        {
            long b = shoff + (long)i * shentsize;
            raw[i] = (U32(b), U32(b + 4), I64(b + 0x18), I64(b + 0x20), U32(b + 0x28), U32(b + 0x2C), I64(b + 0x38));
        }
        var shstr = raw[shstrndx];
        Sections = raw.Select(s => new Section(CString(shstr.off + s.name), s.type, s.off, s.size, s.link, s.info, s.entsize)).ToArray();
    }

    public static ElfImage Read(string path) => new(path, File.ReadAllBytes(path));
    public static ElfImage FromBytes(string name, byte[] bytes) => new(name, bytes);

    ushort U16(long o) => BinaryPrimitives.ReadUInt16LittleEndian(Bytes.AsSpan((int)o));
    uint U32(long o) => BinaryPrimitives.ReadUInt32LittleEndian(Bytes.AsSpan((int)o));
    long I64(long o) => BinaryPrimitives.ReadInt64LittleEndian(Bytes.AsSpan((int)o));

    string CString(long o)
    {
        int end = Array.IndexOf(Bytes, (byte)0, (int)o);
        return Encoding.ASCII.GetString(Bytes, (int)o, end - (int)o);
    }

    Section? Find(uint type) => Sections.Where(s => s.Type == type).Select(s => (Section?)s).FirstOrDefault();

    /// <summary>Every (library, version) requirement of this object.</summary>
    public IReadOnlyList<VersionNeed> VersionNeeds()
    {
        var list = new List<VersionNeed>();
        if (Find(ShtGnuVerneed) is not { } sec) return list;
        long strtab = Sections[(int)sec.Link].Offset;
        long p = sec.Offset;
        for (uint n = 0; n < sec.Info; n++)
        {
            ushort cnt = U16(p + 2);
            string file = CString(strtab + U32(p + 4));
            long aux = p + U32(p + 8);
            for (int a = 0; a < cnt; a++)
            {
                list.Add(new VersionNeed(file, CString(strtab + U32(aux + 8)), U16(aux + 4), U16(aux + 6), aux));
                aux += U32(aux + 12);
            }
            uint next = U32(p + 12);
            if (next == 0) break;
            p += next;
        }
        return list;
    }

    /// <summary>The version names this object defines (what a libstdc++ provides).</summary>
    public IReadOnlyList<string> VersionDefinitions()
    {
        var list = new List<string>();
        if (Find(ShtGnuVerdef) is not { } sec) return list;
        long strtab = Sections[(int)sec.Link].Offset;
        long p = sec.Offset;
        for (uint n = 0; n < sec.Info; n++)
        {
            ushort cnt = U16(p + 6);
            long aux = p + U32(p + 12);
            if (cnt > 0) list.Add(CString(strtab + U32(aux)));
            uint next = U32(p + 16);
            if (next == 0) break;
            p += next;
        }
        return list;
    }

    public IReadOnlyList<DynamicSymbol> DynamicSymbols()
    {
        var list = new List<DynamicSymbol>();
        if (Find(ShtDynsym) is not { } dynsym) return list;
        var versym = Find(ShtGnuVersym);
        long strtab = Sections[(int)dynsym.Link].Offset;
        long count = dynsym.Size / 24;
        for (int i = 0; i < count; i++)
        {
            long b = dynsym.Offset + i * 24L;
            ushort shndx = U16(b + 6);
            long vo = versym is { } vs ? vs.Offset + i * 2L : -1;
            ushort ver = vo >= 0 ? (ushort)(U16(vo) & 0x7fff) : (ushort)1;
            list.Add(new DynamicSymbol(CString(strtab + U32(b)), i, ver, vo, shndx != 0));
        }
        return list;
    }

    public void SetVersionNeedFlags(VersionNeed need, ushort flags) =>
        BinaryPrimitives.WriteUInt16LittleEndian(Bytes.AsSpan((int)need.AuxOffset + 4), flags);

    /// <summary>Binds the symbol to no particular version (VER_NDX_GLOBAL), as patchelf --clear-symbol-version does.</summary>
    public void ClearSymbolVersion(DynamicSymbol sym) =>
        BinaryPrimitives.WriteUInt16LittleEndian(Bytes.AsSpan((int)sym.VersymOffset), 1);
}
