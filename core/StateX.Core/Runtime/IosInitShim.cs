using System.Buffers.Binary;
using System.Text;

namespace StateX.Native;

/// <summary>
/// Builds, without a compiler, the tiny shared object that stands in for GCC 13's
/// <c>std::ios_base_library_init()</c> on a libstdc++ that predates it (GLIBCXX_3.4.32).
/// GCC 13 moved the construction of the standard streams into libstdc++ itself and made every
/// object that includes &lt;iostream&gt; depend on that symbol instead of carrying its own static
/// <c>std::ios_base::Init</c>. On an older libstdc++ the shim restores the old guarantee: its
/// initialiser constructs one <c>std::ios_base::Init</c> (so std::cout and friends exist before
/// LibTorchSharp runs), and it exports the symbol so the reference resolves.
/// x86-64 only; the object has no section headers, which the dynamic loader does not need.
/// </summary>
internal static class IosInitShim
{
    public const string SoName = "libstatex_iosinit.so";
    public const string ExportedSymbol = "_ZSt21ios_base_library_initv";
    const string InitCtor = "_ZNSt8ios_base4InitC1Ev"; // std::ios_base::Init::Init()

    public static byte[] Build()
    {
        const int page = 0x1000;
        var str = new MemoryStream();
        str.WriteByte(0);
        int Add(string s) { int o = (int)str.Position; var b = Encoding.ASCII.GetBytes(s); str.Write(b); str.WriteByte(0); return o; }
        int nLibstdcxx = Add("libstdc++.so.6"), nCtor = Add(InitCtor), nExport = Add(ExportedSymbol), nSoname = Add(SoName);
        byte[] dynstr = str.ToArray();

        // Segment 1 (R+X) at file offset 0: ehdr, phdrs, hash, dynsym, dynstr, rela, text.
        const int ehdr = 64, phnum = 4, phdrSize = 56;
        int hashOff = ehdr + phnum * phdrSize;               // nbucket, nchain, bucket[1], chain[3]
        int dynsymOff = hashOff + 6 * 4;
        int dynstrOff = dynsymOff + 3 * 24;
        int relaOff = Align(dynstrOff + dynstr.Length, 8);
        int textOff = relaOff + 24;
        int exportAddr = textOff;                              // ret
        int initAddr = textOff + 1;                            // sub rsp,8; lea rdi,[obj]; call [got]; add rsp,8; ret
        int textEnd = initAddr + 4 + 7 + 6 + 4 + 1;

        // Segment 2 (RW) at file offset/vaddr 0x1000: dynamic, GOT slot, the Init object.
        int dynOff = page;
        const int dynCount = 12;
        int gotAddr = dynOff + dynCount * 16;
        int objAddr = gotAddr + 8;
        int fileEnd = objAddr + 8;

        var b = new byte[fileEnd];
        void W16(int o, int v) => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(o), (ushort)v);
        void W32(int o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(o), v);
        void W64(int o, long v) => BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(o), v);

        // ELF header
        b[0] = 0x7f; b[1] = (byte)'E'; b[2] = (byte)'L'; b[3] = (byte)'F'; b[4] = 2; b[5] = 1; b[6] = 1;
        W16(16, 3);          // ET_DYN
        W16(18, 62);         // EM_X86_64
        W32(20, 1);
        W64(32, ehdr);       // e_phoff
        W16(52, ehdr); W16(54, phdrSize); W16(56, phnum); W16(58, 64);

        void Phdr(int i, uint type, uint flags, long off, long size, long align)
        {
            int p = ehdr + i * phdrSize;
            W32(p, type); W32(p + 4, flags); W64(p + 8, off); W64(p + 16, off); W64(p + 24, off);
            W64(p + 32, size); W64(p + 40, size); W64(p + 48, align);
        }
        Phdr(0, 1, 5, 0, textEnd, page);                        // PT_LOAD R+X
        Phdr(1, 1, 6, dynOff, fileEnd - dynOff, page);          // PT_LOAD RW
        Phdr(2, 2, 6, dynOff, dynCount * 16, 8);                // PT_DYNAMIC
        Phdr(3, 0x6474e551, 6, 0, 0, 16);                       // PT_GNU_STACK: no executable stack

        // SysV hash: one bucket holding symbol 2 (the export), chained to 1 (the import).
        W32(hashOff, 1); W32(hashOff + 4, 3); W32(hashOff + 8, 2);
        W32(hashOff + 12, 0); W32(hashOff + 16, 0); W32(hashOff + 20, 1);

        // dynsym: [0] null, [1] undefined ctor (GLOBAL FUNC), [2] exported function (GLOBAL FUNC, defined)
        int s1 = dynsymOff + 24, s2 = dynsymOff + 48;
        W32(s1, (uint)nCtor); b[s1 + 4] = 0x12;
        W32(s2, (uint)nExport); b[s2 + 4] = 0x12; W64(s2 + 8, exportAddr); W64(s2 + 16, 1);
        W16(s2 + 6, 1);   // any section index but SHN_UNDEF; SHN_ABS would skip relocation by the load base

        dynstr.CopyTo(b, dynstrOff);

        // R_X86_64_GLOB_DAT: GOT slot <- address of the ctor
        W64(relaOff, gotAddr); W64(relaOff + 8, (1L << 32) | 6); W64(relaOff + 16, 0);

        int t = textOff;
        b[t++] = 0xC3;                                                    // export: ret
        b[t++] = 0x48; b[t++] = 0x83; b[t++] = 0xEC; b[t++] = 0x08;       // sub rsp, 8
        b[t++] = 0x48; b[t++] = 0x8D; b[t++] = 0x3D; W32(t, (uint)(objAddr - (t + 4))); t += 4;  // lea rdi, [rip+obj]
        b[t++] = 0xFF; b[t++] = 0x15; W32(t, (uint)(gotAddr - (t + 4))); t += 4;                 // call [rip+got]
        b[t++] = 0x48; b[t++] = 0x83; b[t++] = 0xC4; b[t++] = 0x08;       // add rsp, 8
        b[t++] = 0xC3;                                                    // ret

        int d = dynOff;
        void Dyn(long tag, long val) { W64(d, tag); W64(d + 8, val); d += 16; }
        Dyn(1, nLibstdcxx);      // DT_NEEDED
        Dyn(14, nSoname);        // DT_SONAME
        Dyn(4, hashOff);         // DT_HASH
        Dyn(5, dynstrOff);       // DT_STRTAB
        Dyn(6, dynsymOff);       // DT_SYMTAB
        Dyn(10, dynstr.Length);  // DT_STRSZ
        Dyn(11, 24);             // DT_SYMENT
        Dyn(7, relaOff);         // DT_RELA
        Dyn(8, 24);              // DT_RELASZ
        Dyn(9, 24);              // DT_RELAENT
        Dyn(12, initAddr);       // DT_INIT
        Dyn(0, 0);               // DT_NULL
        return b;
    }

    static int Align(int v, int a) => (v + a - 1) / a * a;
}
