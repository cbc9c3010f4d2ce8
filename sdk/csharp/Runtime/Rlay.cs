// Rlay.cs - turn a C# program (a Unity scene, a .NET simulator) into a Gymnasium environment.
// rlay protocol v1, env side. One file, no dependencies: C# 7.3 and .NET Standard 2.0 APIs only
// (what Unity and Mono compile). Drop it into a project, or add the UPM package around it.
//
// EXAMPLE - a walk on a line, served to Python's rlay.ClientEnv("tcp://127.0.0.1:5555"):
//
//     var env = new Rlay.Env(Rlay.Space.Box(Rlay.Dtype.Float32, new[] { 1 }, -10, 10),
//                            Rlay.Space.Discrete(2));
//     env.Start("tcp://127.0.0.1:5555");   // listens (or dials if RLAY_MODE=dial); prints RLAY_LISTENING
//     float[] pos = new float[1];
//     while (!env.IsOver) {
//         Rlay.Command cmd = env.Poll(-1);          // a game passes 0 from Update(): never blocks
//         if (cmd == null) continue;
//         if (cmd.Kind == Rlay.CommandKind.Reset) { pos[0] = 0; env.Obs.PutTensor(pos); env.ReplyReset(); }
//         else if (cmd.Kind == Rlay.CommandKind.Step) {
//             pos[0] += cmd.Action.AsLong() == 1 ? 1 : -1; env.Obs.PutTensor(pos);
//             env.ReplyStep(pos[0] >= 5 ? 1.0 : 0.0, pos[0] >= 5 || pos[0] <= -5, false);
//         } else env.ReplyDefault(cmd);             // CLOSE, and NOT_SUPPORTED for the rest
//     }
//
// MODEL (spec/protocol.md). The agent side (Python) sends commands; the env side answers each with
// exactly one reply. Env.Listen waits for the agent to dial (Python rlay.ClientEnv); Env.Connect
// dials an agent that listens (Python rlay.ServerEnv); Env.Start uses the launcher's variables
// RLAY_ADDRESS / RLAY_MODE (a listener it starts prints "RLAY_LISTENING <address>", the signal
// rlay's launcher waits for). All three return at once: Poll(timeoutMs) accepts or connects, does
// the handshake (section 7) and reads, and never blocks longer than timeoutMs (0: not at all, -1:
// until a command). It returns a Command, or null when none is ready; IsOver turns true when the
// session has ended (Error is then null for an orderly end, else why). Answer each command with
// its Reply*; while a reply is owed Poll returns null, so a game can take several frames to act.
// Callback style: env.Serve(callbacks) runs the loop for you with a Callbacks subclass.
//
// VALUES. Writers encode observations, info, metadata, render frames and call results: env.Obs
// takes one value, env.Info key/value pairs (PutKey then a value). Containers state their item
// count up front (PutArray(n), PutMap(n)). Tensors are copied into the frame at Put time, so the
// caller's arrays can be reused at once. Received values (actions, options, call arguments) are
// Value structs that read the received frame in place; they stay valid until the reply is sent.
//
// ERRORS. A protocol error ends the session (the peer is told why with a fatal ERROR) and shows as
// an RlayException (Code: the wire code of section 11) in env.Error. An exception thrown by env
// code is not an rlay error: Serve answers it with ENV_EXCEPTION (type name and stack trace) and
// the session goes on; in loop style call env.ReplyException(e). An observation you write that
// does not match the observation space exactly (dtype, shape, keys) is never sent nor rounded:
// the command is answered with ENV_EXCEPTION naming the problem (section 9). A STEP is checked in
// section 8's order: structure (BAD_VALUE, fatal), RESET_NEEDED, bounds (INVALID_ACTION).
//
// BATCHES (section 10). env.NumEnvs = n before Listen/Connect hosts n sub-envs on one connection
// (Python: rlay.ClientVectorEnv / rlay.ServerVectorEnv). The spaces given are one sub-env's; on
// the wire every value is Gymnasium's batch_space(space, n): Box, Discrete, MultiDiscrete and
// MultiBinary are one tensor with a leading n (a Discrete action is an int64 (n,) tensor: read
// cmd.Action.GetLong(i)), Dict/Tuple hold the batches of their parts, other spaces are arrays of
// n values. Write the observation batched, set env.Rewards[i], env.Terminations[i],
// env.Truncations[i] and call ReplyStepBatch(). Per sub-env, a RESET says cmd.Seeded[i] /
// cmd.Seeds[i] (an int seed s gives sub-env i the seed s + i) and cmd.ResetMask[i] (Gymnasium's
// partial reset); a STEP says cmd.Autoreset[i] (its episode ended at the previous STEP: under the
// default "next_step" autoreset, reset it instead of stepping, answer reward 0 and flags false).
//
// LIMITS. Little-endian hosts only (every desktop, mobile and console CPU Unity targets). Input
// is hostile: every length is checked before use, frames above MaxFrameSize (64 MiB) are refused
// on their header, the first frame (the agent's HELLO) above 64 KiB, and a body that declares
// more than MaxValues (262 144) values at the header that passes it (section 13). Nothing is allocated per step once the buffers have grown to the largest
// frame (measured by the SDK's tests). Unix sockets use a small EndPoint of this file (the
// netstandard2.0 API has no UnixDomainSocketEndPoint); they work on Mono and .NET on Linux/macOS.
using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Rlay
{
    /// <summary>Error codes: 1..37 are the wire codes of spec section 11; negative ones are local.</summary>
    public enum ErrorCode
    {
        BadMagic = 1, BadHeader = 2, FrameTooLarge = 3, Truncated = 4, Malformed = 5, UnknownKind = 6,
        BadField = 7, BadTensor = 8, UnknownDtype = 9, TooDeep = 10, UnexpectedMessage = 11,
        VersionMismatch = 12, RoleConflict = 13, BadSpace = 14, BadValue = 15,
        EnvException = 32, InvalidAction = 33, NotSupported = 34, ResetNeeded = 35, ShuttingDown = 36,
        Internal = 37,
        /// <summary>A socket call failed.</summary>
        Io = -1,
        /// <summary>The peer closed the connection outside an orderly end (section 8).</summary>
        PeerClosed = -2,
        /// <summary>This API was misused (the message says how).</summary>
        Usage = -3,
        /// <summary>An address string could not be used.</summary>
        Address = -5,
    }

    /// <summary>Every rlay error: a protocol error (ours or the peer's), a socket failure, a misuse.</summary>
    public sealed class RlayException : Exception
    {
        public readonly ErrorCode Code;
        /// <summary>True when the error arrived from the peer in an ERROR message.</summary>
        public readonly bool Remote;
        public RlayException(ErrorCode code, string message, bool remote = false) : base(message)
        {
            Code = code;
            Remote = remote;
        }
        /// <summary>The spec's name of the code ("FRAME_TOO_LARGE"), or the code as a number.</summary>
        public string Name { get { return Wire.ErrorName((int)Code); } }
        public override string ToString() { return Name + ": " + Message; }
    }

    /// <summary>Dtype codes of spec section 4. 0 is invalid on purpose.</summary>
    public enum Dtype : byte
    {
        Bool = 1, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64, Float16, Float32, Float64
    }

    /// <summary>Types of a received value.</summary>
    public enum ValueKind : byte { Nil = 1, Bool, Int, Float, Str, Bytes, Array, Map, Tensor }

    /// <summary>Message kinds of spec section 6.</summary>
    public enum Kind : byte
    {
        Hello = 1, EnvInfo = 2, Reset = 16, Step = 17, Render = 18, Close = 19, Call = 20,
        ResetResult = 32, StepResult = 33, RenderResult = 34, CloseResult = 35, CallResult = 36, Error = 48
    }

    /// <summary>The protocol's constants and name tables (spec sections 2, 4, 6, 11).</summary>
    public static class Wire
    {
        public const string Protocol = "rlay";
        public const int Version = 1;
        public const string Sdk = "rlay-csharp";
        public const string SdkVersion = "0.1.0";
        public const int MaxNdim = 32;
        public const int MaxDepth = 64;
        public const int DefaultMaxFrameSize = 64 << 20;
        /// <summary>Section 13: the first frame a side receives (the peer's HELLO, or a fatal ERROR).</summary>
        public const int DefaultMaxHandshakeFrameSize = 64 << 10;
        /// <summary>Section 13: values one body may declare (a tensor counts 8), checked while decoding.</summary>
        public const int DefaultMaxValues = 262144;

        static readonly string[] DtypeNames =
            { null, "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64" };
        static readonly int[] ItemSizes = { 0, 1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8 };

        public static int ItemSize(Dtype d) { return ItemSizes[(int)d]; }
        public static string DtypeName(Dtype d) { return DtypeNames[(int)d]; }
        public static bool IsKnownDtype(int code) { return code >= 1 && code <= 12; }
        public static bool IsInteger(Dtype d) { return d >= Dtype.Int8 && d <= Dtype.UInt64; }
        public static bool IsFloat(Dtype d) { return d >= Dtype.Float16; }
        /// <summary>The dtype called <paramref name="name"/>, or 0 if there is none.</summary>
        public static Dtype DtypeByName(string name)
        {
            for (int i = 1; i < DtypeNames.Length; i++) if (DtypeNames[i] == name) return (Dtype)i;
            return 0;
        }

        public static bool IsKnownKind(int k)
        {
            return k == 1 || k == 2 || (k >= 16 && k <= 20) || (k >= 32 && k <= 36) || k == 48;
        }
        public static string KindName(int k)
        {
            switch (k)
            {
                case 1: return "HELLO"; case 2: return "ENV_INFO"; case 16: return "RESET"; case 17: return "STEP";
                case 18: return "RENDER"; case 19: return "CLOSE"; case 20: return "CALL";
                case 32: return "RESET_RESULT"; case 33: return "STEP_RESULT"; case 34: return "RENDER_RESULT";
                case 35: return "CLOSE_RESULT"; case 36: return "CALL_RESULT"; case 48: return "ERROR";
            }
            return "kind " + k;
        }
        public static string ErrorName(int code)
        {
            switch (code)
            {
                case 1: return "BAD_MAGIC"; case 2: return "BAD_HEADER"; case 3: return "FRAME_TOO_LARGE";
                case 4: return "TRUNCATED"; case 5: return "MALFORMED"; case 6: return "UNKNOWN_KIND";
                case 7: return "BAD_FIELD"; case 8: return "BAD_TENSOR"; case 9: return "UNKNOWN_DTYPE";
                case 10: return "TOO_DEEP"; case 11: return "UNEXPECTED_MESSAGE"; case 12: return "VERSION_MISMATCH";
                case 13: return "ROLE_CONFLICT"; case 14: return "BAD_SPACE"; case 15: return "BAD_VALUE";
                case 32: return "ENV_EXCEPTION"; case 33: return "INVALID_ACTION"; case 34: return "NOT_SUPPORTED";
                case 35: return "RESET_NEEDED"; case 36: return "SHUTTING_DOWN"; case 37: return "INTERNAL";
                case -1: return "IO"; case -2: return "PEER_CLOSED"; case -3: return "USAGE"; case -5: return "ADDRESS";
            }
            return "code " + code;
        }

        internal static RlayException Err(ErrorCode code, string message) { return new RlayException(code, message); }

        internal static uint Rd32(byte[] b, int p) { return (uint)(b[p] | b[p + 1] << 8 | b[p + 2] << 16 | b[p + 3] << 24); }
        internal static void Wr32(byte[] b, int p, uint v)
        {
            b[p] = (byte)v; b[p + 1] = (byte)(v >> 8); b[p + 2] = (byte)(v >> 16); b[p + 3] = (byte)(v >> 24);
        }
    }

    /// <summary>A float's bits without allocating (BitConverter.SingleToInt32Bits is not in netstandard2.0).</summary>
    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Explicit)]
    struct FloatBits
    {
        [System.Runtime.InteropServices.FieldOffset(0)] public float F;
        [System.Runtime.InteropServices.FieldOffset(0)] public uint U;
    }

    // ============================================================================================
    // Received values: a flat, reusable array of nodes over the received frame (no allocation)

    struct Node
    {
        public ValueKind Type;
        public bool Neg;        // Int: the value is negative (read as long)
        public byte Dtype;      // Tensor
        public byte Ndim;       // Tensor
        public ulong U;         // Int (bits), Bool (0/1)
        public double F;        // Float
        public int Start;       // Str/Bytes: byte offset in the body; Array/Map: first child node; Tensor: first dim
        public int Len;         // Str/Bytes: byte count; Array: items; Map: pairs (children: key, value, key, ...)
        public int Offset;      // Tensor: byte offset in the data section
        public long Count;      // Tensor: elements
    }

    /// <summary>One decoded body: its nodes, tensor dimensions and the buffers they point into.</summary>
    sealed class Doc
    {
        internal Node[] Nodes = new Node[64];
        internal int NodeCount;
        internal int[] Dims = new int[64];
        internal int DimCount;
        internal byte[] Buf;     // body and data section live here
        internal int BodyStart, BodyEnd, DataStart, DataLen;
        internal int MaxDepth = Wire.MaxDepth;
        internal int MaxValues = Wire.DefaultMaxValues;
        HashSet<string> keySet;

        int pos;
        long values;   // values declared so far (section 3's value count)

        /// <summary>Section 3: a container header or tensor adds what it declares; past MaxValues the
        /// body is FRAME_TOO_LARGE, detected before anything is allocated for it.</summary>
        void Declare(long n, string what)   // what: a literal, so nothing is allocated per container
        {
            values += n;
            if (values > MaxValues)
                throw Wire.Err(ErrorCode.FrameTooLarge, "the body declares more than " + MaxValues + " values (max_values, section 13), at " + what + (what == "a tensor" ? "" : " of " + (what == "a map" ? n / 2 : n)));
        }

        /// <summary>Decodes exactly one value from buf[bodyStart, bodyEnd); tensors in buf[dataStart, +dataLen).</summary>
        internal void Decode(byte[] buf, int bodyStart, int bodyEnd, int dataStart, int dataLen)
        {
            Buf = buf; BodyStart = bodyStart; BodyEnd = bodyEnd; DataStart = dataStart; DataLen = dataLen;
            NodeCount = 1; DimCount = 0;
            pos = bodyStart;
            values = 1;
            if (bodyEnd <= bodyStart) throw Wire.Err(ErrorCode.Malformed, "empty body");
            Read(0, 0);
            if (pos != bodyEnd)
                throw Wire.Err(ErrorCode.Malformed, "trailing bytes after the body's value (" + (bodyEnd - pos) + " bytes)");
        }

        internal Value Root { get { return new Value(this, 0); } }

        int Reserve(int n)
        {
            int first = NodeCount;
            if (NodeCount + n > Nodes.Length)
            {
                int cap = Nodes.Length;
                while (cap < NodeCount + n) cap *= 2;
                Array.Resize(ref Nodes, cap);
            }
            NodeCount += n;
            return first;
        }

        int Need(int n, string what)
        {
            if (n < 0 || n > BodyEnd - pos)
                throw Wire.Err(ErrorCode.Malformed, "the body ends inside " + what);
            int p = pos;
            pos += n;
            return p;
        }

        ulong Be(int n, string what)
        {
            int p = Need(n, what);
            ulong v = 0;
            for (int i = 0; i < n; i++) v = v << 8 | Buf[p + i];
            return v;
        }

        void SetInt(int at, ulong bits, bool neg)
        {
            Nodes[at].Type = ValueKind.Int; Nodes[at].U = bits; Nodes[at].Neg = neg;
        }

        void SetSigned(int at, long v) { SetInt(at, (ulong)v, v < 0); }

        void Read(int at, int depth)
        {
            int b = Buf[Need(1, "a value")];
            if (b <= 0x7f) { SetInt(at, (ulong)b, false); return; }
            if (b >= 0xe0) { SetSigned(at, (sbyte)b); return; }
            if (b >= 0x80 && b <= 0x8f) { ReadMap(at, b & 0x0f, depth); return; }
            if (b >= 0x90 && b <= 0x9f) { ReadArray(at, b & 0x0f, depth); return; }
            if (b >= 0xa0 && b <= 0xbf) { ReadStr(at, b & 0x1f); return; }
            switch (b)
            {
                case 0xc0: Nodes[at].Type = ValueKind.Nil; return;
                case 0xc2: case 0xc3: Nodes[at].Type = ValueKind.Bool; Nodes[at].U = (ulong)(b - 0xc2); return;
                case 0xc4: ReadBin(at, (int)Be(1, "a bin header")); return;
                case 0xc5: ReadBin(at, (int)Be(2, "a bin header")); return;
                case 0xc6: ReadBin(at, Len32(Be(4, "a bin header"))); return;
                case 0xc7: ReadExt(at, (int)Be(1, "an ext header")); return;
                case 0xc8: ReadExt(at, (int)Be(2, "an ext header")); return;
                case 0xc9: ReadExt(at, Len32(Be(4, "an ext header"))); return;
                case 0xca:
                    {
                        uint bits = (uint)Be(4, "a float 32");
                        Nodes[at].Type = ValueKind.Float;
                        Nodes[at].F = new FloatBits { U = bits }.F;   // widened exactly (section 5)
                        return;
                    }
                case 0xcb:
                    Nodes[at].Type = ValueKind.Float;
                    Nodes[at].F = BitConverter.Int64BitsToDouble((long)Be(8, "a float 64"));
                    return;
                case 0xcc: SetInt(at, Be(1, "a uint 8"), false); return;
                case 0xcd: SetInt(at, Be(2, "a uint 16"), false); return;
                case 0xce: SetInt(at, Be(4, "a uint 32"), false); return;
                case 0xcf: SetInt(at, Be(8, "a uint 64"), false); return;
                case 0xd0: SetSigned(at, (sbyte)Be(1, "an int 8")); return;
                case 0xd1: SetSigned(at, (short)Be(2, "an int 16")); return;
                case 0xd2: SetSigned(at, (int)Be(4, "an int 32")); return;
                case 0xd3: SetSigned(at, (long)Be(8, "an int 64")); return;
                case 0xd4: ReadExt(at, 1); return;
                case 0xd5: ReadExt(at, 2); return;
                case 0xd6: ReadExt(at, 4); return;
                case 0xd7: ReadExt(at, 8); return;
                case 0xd8: ReadExt(at, 16); return;
                case 0xd9: ReadStr(at, (int)Be(1, "a str header")); return;
                case 0xda: ReadStr(at, (int)Be(2, "a str header")); return;
                case 0xdb: ReadStr(at, Len32(Be(4, "a str header"))); return;
                case 0xdc: ReadArray(at, (int)Be(2, "an array header"), depth); return;
                case 0xdd: ReadArray(at, Len32(Be(4, "an array header")), depth); return;
                case 0xde: ReadMap(at, (int)Be(2, "a map header"), depth); return;
                case 0xdf: ReadMap(at, Len32(Be(4, "a map header")), depth); return;
            }
            throw Wire.Err(ErrorCode.Malformed, "byte 0x" + b.ToString("x2") + " does not start a MessagePack value (0xc1 is never used)");
        }

        int Len32(ulong n)
        {
            if (n > (ulong)(BodyEnd - pos)) throw Wire.Err(ErrorCode.Malformed, "a declared length of " + n + " exceeds the " + (BodyEnd - pos) + " bytes left in the body");
            return (int)n;
        }

        void ReadStr(int at, int n)
        {
            int p = Need(n, "a str");
            if (!Utf8Valid(Buf, p, n)) throw Wire.Err(ErrorCode.Malformed, "a string is not valid UTF-8");
            Nodes[at].Type = ValueKind.Str; Nodes[at].Start = p; Nodes[at].Len = n;
        }

        void ReadBin(int at, int n)
        {
            int p = Need(n, "a bin");
            Nodes[at].Type = ValueKind.Bytes; Nodes[at].Start = p; Nodes[at].Len = n;
        }

        void ReadArray(int at, int n, int depth)
        {
            if (depth + 1 > MaxDepth) throw Wire.Err(ErrorCode.TooDeep, "nesting deeper than " + MaxDepth);
            if (n > BodyEnd - pos) throw Wire.Err(ErrorCode.Malformed, "an array of " + n + " items cannot fit in the " + (BodyEnd - pos) + " bytes left");
            Declare(n, "an array");
            int first = Reserve(n);
            Nodes[at].Type = ValueKind.Array; Nodes[at].Start = first; Nodes[at].Len = n;
            for (int i = 0; i < n; i++) Read(first + i, depth + 1);
        }

        void ReadMap(int at, int n, int depth)
        {
            if (depth + 1 > MaxDepth) throw Wire.Err(ErrorCode.TooDeep, "nesting deeper than " + MaxDepth);
            if ((long)n * 2 > BodyEnd - pos) throw Wire.Err(ErrorCode.Malformed, "a map of " + n + " pairs cannot fit in the " + (BodyEnd - pos) + " bytes left");
            Declare(2L * n, "a map");
            int first = Reserve(2 * n);
            Nodes[at].Type = ValueKind.Map; Nodes[at].Start = first; Nodes[at].Len = n;
            for (int i = 0; i < n; i++)
            {
                Read(first + 2 * i, depth + 1);
                if (Nodes[first + 2 * i].Type != ValueKind.Str)
                    throw Wire.Err(ErrorCode.Malformed, "a map key is a " + Nodes[first + 2 * i].Type + ", not a str");
                Read(first + 2 * i + 1, depth + 1);
            }
            // Duplicate keys (section 3), checked once the map is read, as the reference decoder does.
            if (n <= 16)
            {
                for (int i = 1; i < n; i++)
                    for (int j = 0; j < i; j++)
                        if (SameBytes(first + 2 * i, first + 2 * j))
                            throw Wire.Err(ErrorCode.Malformed, "map has duplicate key '" + new Value(this, first + 2 * i).AsString() + "'");
            }
            else
            {
                if (keySet == null) keySet = new HashSet<string>(); // large maps only: not the step path
                keySet.Clear();
                for (int i = 0; i < n; i++)
                {
                    string k = new Value(this, first + 2 * i).AsString();
                    if (!keySet.Add(k)) throw Wire.Err(ErrorCode.Malformed, "map has duplicate key '" + k + "'");
                }
            }
        }

        bool SameBytes(int a, int b)
        {
            int la = Nodes[a].Len;
            if (la != Nodes[b].Len) return false;
            int pa = Nodes[a].Start, pb = Nodes[b].Start;
            for (int i = 0; i < la; i++) if (Buf[pa + i] != Buf[pb + i]) return false;
            return true;
        }

        void ReadExt(int at, int n)
        {
            int type = (sbyte)Buf[Need(1, "an ext type")];
            int p = Need(n, "an ext payload");
            if (type != 1) throw Wire.Err(ErrorCode.Malformed, "MessagePack ext type " + type + " is not allowed (only 1, the tensor)");
            Declare(7, "a tensor");   // a tensor counts as 8 values (section 3)
            // Section 4, in the order the spec lists the checks.
            if (n < 6) throw Wire.Err(ErrorCode.BadTensor, "tensor descriptor of " + n + " bytes, need at least 6");
            int code = Buf[p], ndim = Buf[p + 1];
            if (ndim > Wire.MaxNdim) throw Wire.Err(ErrorCode.BadTensor, "tensor has " + ndim + " dimensions, limit " + Wire.MaxNdim);
            if (n != 6 + 4 * ndim) throw Wire.Err(ErrorCode.BadTensor, "tensor descriptor with ndim=" + ndim + " must be " + (6 + 4 * ndim) + " bytes, got " + n);
            if (!Wire.IsKnownDtype(code)) throw Wire.Err(ErrorCode.UnknownDtype, "unknown dtype code " + code);
            uint offset = Wire.Rd32(Buf, p + 2 + 4 * ndim);
            if (offset % 8 != 0) throw Wire.Err(ErrorCode.BadTensor, "tensor offset " + offset + " is not a multiple of 8");
            long room = (long)DataLen - offset;
            long item = Wire.ItemSize((Dtype)code);
            long count = 1;
            bool empty = false, tooBig = false;
            for (int i = 0; i < ndim; i++)
            {
                uint d = Wire.Rd32(Buf, p + 2 + 4 * i);
                if (d == 0) empty = true;
            }
            if (!empty)
            {
                for (int i = 0; i < ndim; i++) // stop as soon as it is too big: no overflow (section 4)
                {
                    count *= Wire.Rd32(Buf, p + 2 + 4 * i);
                    if (count * item > room) { tooBig = true; break; }
                }
                if (count * item > room) tooBig = true;
            }
            else
            {
                count = 0;
                if (offset > DataLen) tooBig = true;
            }
            if (tooBig)
                throw Wire.Err(ErrorCode.BadTensor, "tensor of dtype " + Wire.DtypeName((Dtype)code) + " at offset " + offset + " does not fit in the " + DataLen + "-byte data section");
            if (code == (int)Dtype.Bool)
                for (long i = 0; i < count; i++)
                    if (Buf[DataStart + offset + i] > 1) throw Wire.Err(ErrorCode.BadTensor, "bool tensor holds a byte other than 0 or 1");
            if (DimCount + ndim > Dims.Length) Array.Resize(ref Dims, Math.Max(Dims.Length * 2, DimCount + ndim));
            Nodes[at].Type = ValueKind.Tensor; Nodes[at].Dtype = (byte)code; Nodes[at].Ndim = (byte)ndim;
            Nodes[at].Start = DimCount; Nodes[at].Offset = (int)(count == 0 ? 0 : offset); Nodes[at].Count = count;
            for (int i = 0; i < ndim; i++) Dims[DimCount++] = (int)Wire.Rd32(Buf, p + 2 + 4 * i); // > int.MaxValue only in empty tensors
        }

        /// <summary>Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).</summary>
        internal static bool Utf8Valid(byte[] b, int p, int n)
        {
            int end = p + n;
            while (p < end)
            {
                int c = b[p];
                if (c < 0x80) { p++; continue; }
                int need; int min;
                if (c >= 0xc2 && c <= 0xdf) { need = 1; min = 0x80; c &= 0x1f; }
                else if (c >= 0xe0 && c <= 0xef) { need = 2; min = 0x800; c &= 0x0f; }
                else if (c >= 0xf0 && c <= 0xf4) { need = 3; min = 0x10000; c &= 0x07; }
                else return false;
                if (end - p <= need) return false;
                for (int i = 1; i <= need; i++)
                {
                    int cc = b[p + i];
                    if ((cc & 0xc0) != 0x80) return false;
                    c = c << 6 | (cc & 0x3f);
                }
                if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return false;
                p += need + 1;
            }
            return true;
        }
    }

    /// <summary>A received value: a view on a node of a decoded frame. Valid until the reply is sent.</summary>
    public struct Value
    {
        readonly Doc doc;
        readonly int at;
        internal Value(Doc doc, int at) { this.doc = doc; this.at = at; }

        /// <summary>False for the default Value (a field that is absent).</summary>
        public bool Exists { get { return doc != null; } }
        public ValueKind Type { get { return doc == null ? 0 : doc.Nodes[at].Type; } }
        public bool IsNil { get { return doc == null || doc.Nodes[at].Type == ValueKind.Nil; } }
        /// <summary>Int: true if the value is negative (read it with AsLong).</summary>
        public bool IsNegative { get { return doc.Nodes[at].Neg; } }

        public bool AsBool()
        {
            if (Type != ValueKind.Bool) throw Mismatch("a bool");
            return doc.Nodes[at].U != 0;
        }
        /// <summary>An int (or a 0-d integer tensor, as a Discrete value may arrive) as a long.</summary>
        public long AsLong()
        {
            ValueKind t = Type;
            if (t == ValueKind.Int)
            {
                if (!doc.Nodes[at].Neg && doc.Nodes[at].U > long.MaxValue) throw Mismatch("an int that fits a long");
                return (long)doc.Nodes[at].U;
            }
            if (t == ValueKind.Tensor && doc.Nodes[at].Ndim == 0 && Wire.IsInteger(Dtype)) return GetLong(0);
            throw Mismatch("an int");
        }
        /// <summary>An int's bits as an ulong (for values above long.MaxValue; check IsNegative).</summary>
        public ulong AsULongBits()
        {
            if (Type != ValueKind.Int) throw Mismatch("an int");
            return doc.Nodes[at].U;
        }
        /// <summary>A float or an int as a double.</summary>
        public double AsDouble()
        {
            ValueKind t = Type;
            if (t == ValueKind.Float) return doc.Nodes[at].F;
            if (t == ValueKind.Int) return doc.Nodes[at].Neg ? (double)(long)doc.Nodes[at].U : (double)doc.Nodes[at].U;
            if (t == ValueKind.Tensor && doc.Nodes[at].Ndim == 0 && Dtype != Dtype.Bool) return GetDouble(0);
            throw Mismatch("a number");
        }
        /// <summary>A str (allocates the string).</summary>
        public string AsString()
        {
            if (Type != ValueKind.Str) throw Mismatch("a str");
            return Encoding.UTF8.GetString(doc.Buf, doc.Nodes[at].Start, doc.Nodes[at].Len);
        }
        /// <summary>A bin's bytes (allocates a copy).</summary>
        public byte[] AsBytes()
        {
            if (Type != ValueKind.Bytes) throw Mismatch("bytes");
            var r = new byte[doc.Nodes[at].Len];
            Buffer.BlockCopy(doc.Buf, doc.Nodes[at].Start, r, 0, r.Length);
            return r;
        }
        /// <summary>True if this is a str equal to <paramref name="s"/> (compared without allocating).</summary>
        public bool IsString(string s)
        {
            if (Type != ValueKind.Str) return false;
            return Utf8Equals(doc.Buf, doc.Nodes[at].Start, doc.Nodes[at].Len, s);
        }

        /// <summary>Array: its items; Map: its pairs; Str/Bytes: bytes; Tensor: elements.</summary>
        public int Count
        {
            get
            {
                if (Type == ValueKind.Tensor) return (int)doc.Nodes[at].Count;
                return doc == null ? 0 : doc.Nodes[at].Len;
            }
        }
        /// <summary>Array item i.</summary>
        public Value this[int i]
        {
            get
            {
                if (Type != ValueKind.Array) throw Mismatch("an array");
                if ((uint)i >= (uint)doc.Nodes[at].Len) throw new IndexOutOfRangeException("array index " + i + " of " + doc.Nodes[at].Len);
                return new Value(doc, doc.Nodes[at].Start + i);
            }
        }
        /// <summary>Map: the value under key, or a Value whose Exists is false (no allocation).</summary>
        public Value Get(string key)
        {
            if (Type != ValueKind.Map) return default(Value);
            int first = doc.Nodes[at].Start, n = doc.Nodes[at].Len;
            for (int i = 0; i < n; i++)
            {
                Node k = doc.Nodes[first + 2 * i];
                if (Utf8Equals(doc.Buf, k.Start, k.Len, key)) return new Value(doc, first + 2 * i + 1);
            }
            return default(Value);
        }
        public Value KeyAt(int i) { if (Type != ValueKind.Map) throw Mismatch("a map"); return new Value(doc, doc.Nodes[at].Start + 2 * i); }
        public Value ValueAt(int i) { if (Type != ValueKind.Map) throw Mismatch("a map"); return new Value(doc, doc.Nodes[at].Start + 2 * i + 1); }

        // ---- tensors ----
        public Dtype Dtype { get { return (Dtype)doc.Nodes[at].Dtype; } }
        public int Ndim { get { return doc.Nodes[at].Ndim; } }
        public int Dim(int i) { return doc.Dims[doc.Nodes[at].Start + i]; }
        internal int DataOffset { get { return doc.DataStart + doc.Nodes[at].Offset; } }
        internal int NBytes { get { return (int)doc.Nodes[at].Count * Wire.ItemSize(Dtype); } }
        internal byte[] Buffer_ { get { return doc.Buf; } }
        internal void StrBytes(out byte[] b, out int p, out int n) { b = doc.Buf; p = doc.Nodes[at].Start; n = doc.Nodes[at].Len; }

        /// <summary>Element i of a tensor (C order) as a double.</summary>
        public double GetDouble(int i)
        {
            if (Type != ValueKind.Tensor) throw Mismatch("a tensor");
            if ((uint)i >= (uint)doc.Nodes[at].Count) throw new IndexOutOfRangeException("tensor element " + i + " of " + doc.Nodes[at].Count);
            return ReadDouble(doc.Buf, DataOffset, Dtype, i);
        }
        /// <summary>Element i of an integer or bool tensor as a long (uint64 above long.MaxValue wraps).</summary>
        public long GetLong(int i)
        {
            if (Type != ValueKind.Tensor) throw Mismatch("a tensor");
            if ((uint)i >= (uint)doc.Nodes[at].Count) throw new IndexOutOfRangeException("tensor element " + i + " of " + doc.Nodes[at].Count);
            return ReadLong(doc.Buf, DataOffset, Dtype, i);
        }
        /// <summary>Copies a tensor's raw elements into dst (an array of the matching element type).</summary>
        public void CopyTo(Array dst)
        {
            if (Type != ValueKind.Tensor) throw Mismatch("a tensor");
            int n = NBytes;
            if (Buffer.ByteLength(dst) < n) throw new ArgumentException("destination holds " + Buffer.ByteLength(dst) + " bytes, the tensor " + n);
            Buffer.BlockCopy(doc.Buf, DataOffset, dst, 0, n);
        }

        internal static double ReadDouble(byte[] b, int p, Dtype dt, int i)
        {
            switch (dt)
            {
                case Dtype.Float32: return BitConverter.ToSingle(b, p + 4 * i);
                case Dtype.Float64: return BitConverter.ToDouble(b, p + 8 * i);
                case Dtype.Float16: return HalfToDouble(BitConverter.ToUInt16(b, p + 2 * i));
                case Dtype.UInt64: return BitConverter.ToUInt64(b, p + 8 * i);
                default: return ReadLong(b, p, dt, i);
            }
        }
        internal static long ReadLong(byte[] b, int p, Dtype dt, int i)
        {
            switch (dt)
            {
                case Dtype.Bool: case Dtype.UInt8: return b[p + i];
                case Dtype.Int8: return (sbyte)b[p + i];
                case Dtype.Int16: return BitConverter.ToInt16(b, p + 2 * i);
                case Dtype.UInt16: return BitConverter.ToUInt16(b, p + 2 * i);
                case Dtype.Int32: return BitConverter.ToInt32(b, p + 4 * i);
                case Dtype.UInt32: return BitConverter.ToUInt32(b, p + 4 * i);
                case Dtype.Int64: return BitConverter.ToInt64(b, p + 8 * i);
                case Dtype.UInt64: return (long)BitConverter.ToUInt64(b, p + 8 * i);
                case Dtype.Float16: return (long)HalfToDouble(BitConverter.ToUInt16(b, p + 2 * i));
                case Dtype.Float32: return (long)BitConverter.ToSingle(b, p + 4 * i);
                default: return (long)BitConverter.ToDouble(b, p + 8 * i);
            }
        }
        internal static double HalfToDouble(ushort h)
        {
            int e = (h >> 10) & 0x1f, m = h & 0x3ff;
            double s = (h & 0x8000) != 0 ? -1 : 1;
            if (e == 0) return s * m * Math.Pow(2, -24);
            if (e == 31) return m == 0 ? s * double.PositiveInfinity : double.NaN;
            return s * (1 + m / 1024.0) * Math.Pow(2, e - 15);
        }

        internal static bool Utf8Equals(byte[] b, int p, int n, string s)
        {
            // ASCII fast path, exact for the ASCII keys of the protocol; otherwise compare decoded.
            if (s.Length == n)
            {
                bool ascii = true;
                for (int i = 0; i < n; i++)
                {
                    char c = s[i];
                    if (c >= 0x80) { ascii = false; break; }
                    if (b[p + i] != c) return false;
                }
                if (ascii) return true;
            }
            if (Encoding.UTF8.GetByteCount(s) != n) return false;
            return Encoding.UTF8.GetString(b, p, n) == s;
        }

        RlayException Mismatch(string want)
        {
            return new RlayException(ErrorCode.Usage, "expected " + want + ", got " + Describe());
        }
        /// <summary>A short description of this value ("a float32 tensor of shape (4)", "int 3").</summary>
        public string Describe()
        {
            switch (Type)
            {
                case 0: return "no value";
                case ValueKind.Nil: return "nil";
                case ValueKind.Bool: return "bool " + (AsBool() ? "true" : "false");
                case ValueKind.Int: return "int " + (IsNegative ? ((long)doc.Nodes[at].U).ToString() : doc.Nodes[at].U.ToString());
                case ValueKind.Float: return "float " + doc.Nodes[at].F.ToString("R");
                case ValueKind.Str: return "str";
                case ValueKind.Bytes: return "bytes";
                case ValueKind.Array: return "an array of " + Count;
                case ValueKind.Map: return "a map of " + Count;
            }
            var sb = new StringBuilder("a " + Wire.DtypeName(Dtype) + " tensor of shape (");
            for (int i = 0; i < Ndim; i++) sb.Append(i > 0 ? ", " : "").Append(Dim(i));
            return sb.Append(Ndim == 1 ? ",)" : ")").ToString();
        }
    }

    // ============================================================================================
    // Writing values: MessagePack in canonical form (section 5) with tensors in a data section

    /// <summary>Encodes values: a body and its data section, tensors laid out canonically.</summary>
    public sealed class Writer
    {
        internal byte[] Body = new byte[256];
        internal int BodyLen;
        internal byte[] Data = new byte[256];
        internal int DataLen;
        internal int[] Patches = new int[8];  // body positions of non-empty tensors' offset fields
        internal int PatchCount;
        int[] remaining = new int[Wire.MaxDepth + 2];
        int depth;
        int items;

        /// <summary>Values written at the top level (a key and its value count as two).</summary>
        public int TopLevelItems { get { return items; } }
        /// <summary>True when every container written has received its items.</summary>
        public bool Complete { get { return depth == 0; } }

        public void Clear() { BodyLen = 0; DataLen = 0; PatchCount = 0; depth = 0; items = 0; }

        void Item()
        {
            if (depth == 0) { items++; return; }
            remaining[depth - 1]--;
            while (depth > 0 && remaining[depth - 1] == 0) depth--;
        }
        void Open(int n)
        {
            Item();
            if (n > 0)
            {
                if (depth >= remaining.Length) throw new RlayException(ErrorCode.Usage, "nesting deeper than " + Wire.MaxDepth);
                remaining[depth++] = n;
            }
        }

        void Room(int n)
        {
            if (BodyLen + n > Body.Length) Array.Resize(ref Body, Math.Max(Body.Length * 2, BodyLen + n));
        }
        void B(int v) { Body[BodyLen++] = (byte)v; }
        void Be16(int v) { B(v >> 8); B(v); }
        void Be32(uint v) { B((int)(v >> 24)); B((int)(v >> 16)); B((int)(v >> 8)); B((int)v); }
        void Be64(ulong v) { Be32((uint)(v >> 32)); Be32((uint)v); }

        public void PutNil() { Item(); Room(1); B(0xc0); }
        public void PutBool(bool v) { Item(); Room(1); B(v ? 0xc3 : 0xc2); }
        public void PutInt(long v)
        {
            if (v >= 0) { PutUInt((ulong)v); return; }
            Item(); Room(9);
            if (v >= -32) B((int)v & 0xff);
            else if (v >= sbyte.MinValue) { B(0xd0); B((int)v); }
            else if (v >= short.MinValue) { B(0xd1); Be16((int)v); }
            else if (v >= int.MinValue) { B(0xd2); Be32((uint)v); }
            else { B(0xd3); Be64((ulong)v); }
        }
        public void PutUInt(ulong v)
        {
            Item(); Room(9);
            if (v <= 0x7f) B((int)v);
            else if (v <= 0xff) { B(0xcc); B((int)v); }
            else if (v <= 0xffff) { B(0xcd); Be16((int)v); }
            else if (v <= 0xffffffff) { B(0xce); Be32((uint)v); }
            else { B(0xcf); Be64(v); }
        }
        /// <summary>A float, always as float 64 (section 5).</summary>
        public void PutFloat(double v) { Item(); Room(9); B(0xcb); Be64((ulong)BitConverter.DoubleToInt64Bits(v)); }
        public void PutStr(string s)
        {
            int n = Encoding.UTF8.GetByteCount(s);
            Item(); Room(5 + n);
            StrHeader(n);
            BodyLen += Encoding.UTF8.GetBytes(s, 0, s.Length, Body, BodyLen);
        }
        /// <summary>A map key (a str). Also counts as an item of the enclosing map.</summary>
        public void PutKey(string key) { PutStr(key); }
        internal void PutStrBytes(byte[] b, int p, int n) { Item(); Room(5 + n); StrHeader(n); Buffer.BlockCopy(b, p, Body, BodyLen, n); BodyLen += n; }
        void StrHeader(int n)
        {
            if (n <= 31) B(0xa0 | n);
            else if (n <= 0xff) { B(0xd9); B(n); }
            else if (n <= 0xffff) { B(0xda); Be16(n); }
            else { B(0xdb); Be32((uint)n); }
        }
        public void PutBytes(byte[] b, int offset, int count)
        {
            Item(); Room(5 + count);
            if (count <= 0xff) { B(0xc4); B(count); }
            else if (count <= 0xffff) { B(0xc5); Be16(count); }
            else { B(0xc6); Be32((uint)count); }
            Buffer.BlockCopy(b, offset, Body, BodyLen, count);
            BodyLen += count;
        }
        /// <summary>An array of n items: write the n items next.</summary>
        public void PutArray(int n)
        {
            Open(n); Room(5);
            if (n <= 15) B(0x90 | n);
            else if (n <= 0xffff) { B(0xdc); Be16(n); }
            else { B(0xdd); Be32((uint)n); }
        }
        /// <summary>A map of n pairs: write n times a key (PutKey) and its value next.</summary>
        public void PutMap(int n)
        {
            Open(2 * n); Room(5);
            if (n <= 15) B(0x80 | n);
            else if (n <= 0xffff) { B(0xde); Be16(n); }
            else { B(0xdf); Be32((uint)n); }
        }

        // ---- tensors: the elements are copied now; `shape` null means 1-D of `count` elements ----
        public void PutTensor(float[] a) { PutTensorRaw(Dtype.Float32, null, a.Length, a, 0); }
        public void PutTensor(float[] a, int[] shape) { PutTensorRaw(Dtype.Float32, shape, -1, a, 0); }
        public void PutTensor(double[] a) { PutTensorRaw(Dtype.Float64, null, a.Length, a, 0); }
        public void PutTensor(double[] a, int[] shape) { PutTensorRaw(Dtype.Float64, shape, -1, a, 0); }
        public void PutTensor(int[] a) { PutTensorRaw(Dtype.Int32, null, a.Length, a, 0); }
        public void PutTensor(int[] a, int[] shape) { PutTensorRaw(Dtype.Int32, shape, -1, a, 0); }
        public void PutTensor(long[] a) { PutTensorRaw(Dtype.Int64, null, a.Length, a, 0); }
        public void PutTensor(long[] a, int[] shape) { PutTensorRaw(Dtype.Int64, shape, -1, a, 0); }
        public void PutTensor(byte[] a) { PutTensorRaw(Dtype.UInt8, null, a.Length, a, 0); }
        public void PutTensor(byte[] a, int[] shape) { PutTensorRaw(Dtype.UInt8, shape, -1, a, 0); }
        public void PutTensor(sbyte[] a) { PutTensorRaw(Dtype.Int8, null, a.Length, a, 0); }
        public void PutTensor(sbyte[] a, int[] shape) { PutTensorRaw(Dtype.Int8, shape, -1, a, 0); }
        public void PutTensor(bool[] a) { PutTensorRaw(Dtype.Bool, null, a.Length, a, 0); }
        public void PutTensor(bool[] a, int[] shape) { PutTensorRaw(Dtype.Bool, shape, -1, a, 0); }
        /// <summary>Any dtype from a primitive array holding its little-endian bytes (ushort[] for
        /// float16 bits, short[], uint[], ulong[], ...), first <paramref name="count"/> elements, 1-D.</summary>
        public void PutTensor(Dtype dtype, Array a, int count) { PutTensorRaw(dtype, null, count, a, 0); }
        /// <summary>Any dtype from a primitive array, with a shape (C order).</summary>
        public void PutTensor(Dtype dtype, Array a, int[] shape) { PutTensorRaw(dtype, shape, -1, a, 0); }
        /// <summary>A tensor from raw little-endian bytes at src[byteOffset...].</summary>
        public void PutTensorBytes(Dtype dtype, int[] shape, byte[] src, int byteOffset) { PutTensorRaw(dtype, shape, -1, src, byteOffset); }

        /// <summary>A 0-d tensor: a NumPy scalar of that dtype on the Python side (section 3).</summary>
        public void PutScalar(Dtype dtype, double v)
        {
            ReserveTensor(dtype, 0, null, 0, 1, out int at);
            WriteElement(Data, at, dtype, v);
        }

        internal void PutTensorRaw(Dtype dtype, int[] shape, int count1d, Array src, int byteOffset)
        {
            if (!Wire.IsKnownDtype((int)dtype)) throw new RlayException(ErrorCode.Usage, "unknown dtype " + (int)dtype);
            long count = 1;
            int ndim;
            if (shape == null) { ndim = 1; count = count1d; }
            else
            {
                ndim = shape.Length;
                if (ndim > Wire.MaxNdim) throw new RlayException(ErrorCode.Usage, "a tensor may have at most 32 dimensions, got " + ndim);
                for (int i = 0; i < ndim; i++)
                {
                    if (shape[i] < 0) throw new RlayException(ErrorCode.Usage, "negative tensor dimension " + shape[i]);
                    count *= shape[i];
                }
            }
            long nbytes = count * Wire.ItemSize(dtype);
            if (nbytes > (long)Buffer.ByteLength(src) - byteOffset)
                throw new RlayException(ErrorCode.Usage, "a " + Wire.DtypeName(dtype) + " tensor of " + count + " elements needs " + nbytes + " bytes; the array holds " + (Buffer.ByteLength(src) - byteOffset));
            ReserveTensor(dtype, ndim, shape, count1d, count, out int at);
            if (nbytes > 0) Buffer.BlockCopy(src, byteOffset, Data, at, (int)nbytes);
        }

        /// <summary>Writes the ext descriptor and reserves the canonical place in the data section.</summary>
        void ReserveTensor(Dtype dtype, int ndim, int[] shape, int count1d, long count, out int at)
        {
            int nbytes = (int)(count * Wire.ItemSize(dtype));
            int payload = 6 + 4 * ndim;
            Item(); Room(payload + 3);
            switch (payload)
            {
                case 8: B(0xd7); break;
                case 16: B(0xd8); break;
                default: B(0xc7); B(payload); break;  // 6 + 4n is never 1, 2 or 4; it is < 256
            }
            B(1);
            B((int)dtype); B(ndim);
            for (int i = 0; i < ndim; i++)
            {
                uint d = shape == null ? (uint)count1d : (uint)shape[i];
                B((int)d); B((int)(d >> 8)); B((int)(d >> 16)); B((int)(d >> 24));
            }
            if (nbytes == 0) { at = 0; Wr(0); return; }
            at = (DataLen + 7) & ~7;
            if (at + nbytes > Data.Length) Array.Resize(ref Data, Math.Max(Data.Length * 2, at + nbytes));
            for (int i = DataLen; i < at; i++) Data[i] = 0;
            if (PatchCount == Patches.Length) Array.Resize(ref Patches, Patches.Length * 2);
            Patches[PatchCount++] = BodyLen;
            Wr((uint)at);
            DataLen = at + nbytes;
        }
        void Wr(uint v) { Room(4); Wire.Wr32(Body, BodyLen, v); BodyLen += 4; }

        internal static void WriteElement(byte[] b, int p, Dtype dt, double v)
        {
            switch (dt)
            {
                case Dtype.Bool: b[p] = (byte)(v != 0 ? 1 : 0); break;
                case Dtype.Int8: b[p] = (byte)(sbyte)v; break;
                case Dtype.UInt8: b[p] = (byte)v; break;
                case Dtype.Int16: Le(b, p, (ulong)(long)(short)v, 2); break;
                case Dtype.UInt16: Le(b, p, (ushort)v, 2); break;
                case Dtype.Int32: Le(b, p, (ulong)(long)(int)v, 4); break;
                case Dtype.UInt32: Le(b, p, (uint)v, 4); break;
                case Dtype.Int64: Le(b, p, (ulong)(long)v, 8); break;
                case Dtype.UInt64: Le(b, p, (ulong)v, 8); break;
                case Dtype.Float16: Le(b, p, DoubleToHalf(v), 2); break;
                case Dtype.Float32: Le(b, p, new FloatBits { F = (float)v }.U, 4); break;
                default: Le(b, p, (ulong)BitConverter.DoubleToInt64Bits(v), 8); break;
            }
        }
        internal static void Le(byte[] b, int p, ulong v, int n) { for (int i = 0; i < n; i++) b[p + i] = (byte)(v >> (8 * i)); }
        internal static ushort DoubleToHalf(double v)
        {
            // round to nearest even, as numpy does
            if (double.IsNaN(v)) return 0x7e00;
            int sign = v < 0 || (v == 0 && 1 / v < 0) ? 0x8000 : 0;
            double a = Math.Abs(v);
            if (a >= 65520) return (ushort)(sign | 0x7c00);
            if (a < Math.Pow(2, -14))
            {
                double m = Math.Round(a / Math.Pow(2, -24), MidpointRounding.ToEven);
                return (ushort)(sign | (int)m);
            }
            int e = (int)Math.Floor(Math.Log(a, 2));
            if (Math.Pow(2, e) > a) e--;
            if (Math.Pow(2, e + 1) <= a) e++;
            double mant = Math.Round((a / Math.Pow(2, e) - 1) * 1024, MidpointRounding.ToEven);
            if (mant >= 1024) { mant = 0; e++; }
            if (e + 15 >= 31) return (ushort)(sign | 0x7c00);
            return (ushort)(sign | (e + 15) << 10 | (int)mant);
        }

        /// <summary>Copies another writer's values here (its tensors moved to this data section).</summary>
        public void Append(Writer w)
        {
            if (!w.Complete) throw new RlayException(ErrorCode.Usage, "a value written is incomplete: a container still expects items");
            for (int i = 0; i < w.items; i++) Item();
            int baseOff = (DataLen + 7) & ~7;
            int bodyBase = BodyLen;
            Room(w.BodyLen);
            Buffer.BlockCopy(w.Body, 0, Body, BodyLen, w.BodyLen);
            BodyLen += w.BodyLen;
            if (w.PatchCount > 0)
            {
                if (baseOff + w.DataLen > Data.Length) Array.Resize(ref Data, Math.Max(Data.Length * 2, baseOff + w.DataLen));
                for (int i = DataLen; i < baseOff; i++) Data[i] = 0;
                Buffer.BlockCopy(w.Data, 0, Data, baseOff, w.DataLen);
                if (PatchCount + w.PatchCount > Patches.Length) Array.Resize(ref Patches, Math.Max(Patches.Length * 2, PatchCount + w.PatchCount));
                for (int i = 0; i < w.PatchCount; i++)
                {
                    int p = bodyBase + w.Patches[i];
                    Wire.Wr32(Body, p, Wire.Rd32(Body, p) + (uint)baseOff);
                    Patches[PatchCount++] = p;
                }
                DataLen = baseOff + w.DataLen;
            }
        }

        /// <summary>Re-encodes a received value canonically (ints shortest, floats 64, tensors laid out anew).</summary>
        public void PutValue(Value v)
        {
            switch (v.Type)
            {
                case ValueKind.Nil: PutNil(); break;
                case ValueKind.Bool: PutBool(v.AsBool()); break;
                case ValueKind.Int: if (v.IsNegative) PutInt(v.AsLong()); else PutUInt(v.AsULongBits()); break;
                case ValueKind.Float: PutFloat(v.AsDouble()); break;
                case ValueKind.Str:
                    PutStrNode(v);
                    break;
                case ValueKind.Bytes: PutBytesNode(v); break;
                case ValueKind.Array:
                    PutArray(v.Count);
                    for (int i = 0; i < v.Count; i++) PutValue(v[i]);
                    break;
                case ValueKind.Map:
                    PutMap(v.Count);
                    for (int i = 0; i < v.Count; i++) { PutValue(v.KeyAt(i)); PutValue(v.ValueAt(i)); }
                    break;
                case ValueKind.Tensor:
                    {
                        int nd = v.Ndim;
                        int[] shape = ShapeScratch(nd);
                        for (int i = 0; i < nd; i++) shape[i] = v.Dim(i);
                        ReserveTensor(v.Dtype, nd, shape, -1, v.Count, out int at);
                        if (v.NBytes > 0) Buffer.BlockCopy(v.Buffer_, v.DataOffset, Data, at, v.NBytes);
                        break;
                    }
                default: throw new RlayException(ErrorCode.Usage, "no value to write");
            }
        }
        int[][] shapeScratch = new int[Wire.MaxNdim + 1][];
        int[] ShapeScratch(int nd) { return shapeScratch[nd] ?? (shapeScratch[nd] = new int[nd]); }
        void PutStrNode(Value v) { v.StrBytes(out byte[] b, out int p, out int n); PutStrBytes(b, p, n); }
        void PutBytesNode(Value v) { v.StrBytes(out byte[] b, out int p, out int n); PutBytes(b, p, n); }
    }


    // ============================================================================================
    // Spaces (section 9)

    /// <summary>The kind of a space (section 9).</summary>
    public enum SpaceKind { Box = 1, Discrete, MultiDiscrete, MultiBinary, Text, Dict, Tuple, Sequence, Graph, OneOf }

    /// <summary>A space descriptor: every Gymnasium space, nested arbitrarily. Build with the static
    /// methods; a space checks the values that arrive for it (structure, then bounds).</summary>
    public sealed class Space
    {
        public readonly SpaceKind Kind;
        public Dtype Dtype { get; private set; }
        int[] shape = new int[0];
        byte[] low, high;            // box: raw elements; multi_discrete: nvec and start as raw elements
        public long N { get; private set; }          // discrete n
        /// <summary>Discrete start as a long (a uint64 start at 2^63 or above wraps: read StartValue).</summary>
        public long Start { get { return startValue > long.MaxValue ? (long)(ulong)startValue : (long)startValue; } }
        /// <summary>Discrete start exactly, whatever the dtype (a uint64 start may pass long.MaxValue; section 9).</summary>
        public decimal StartValue { get { return startValue; } }
        decimal startValue;
        int[] binaryN; bool binaryNIsArray;          // multi_binary
        public int MinLength { get; private set; }
        public int MaxLength { get; private set; }
        string charset; int[] charsetPoints;         // text: sorted unique code points
        string[] keys; Space[] subs;                 // dict (keys), tuple, one_of
        Space sub; bool stack;                       // sequence
        Space nodeSpace, edgeSpace;                  // graph

        Space(SpaceKind k) { Kind = k; }

        /// <summary>The shape of a box, multi_discrete or multi_binary space (a copy).</summary>
        public int[] Shape { get { return (int[])shape.Clone(); } }
        public int Size { get { int n = 1; foreach (int d in shape) n *= d; return n; } }
        public string[] Keys { get { return keys == null ? null : (string[])keys.Clone(); } }
        public Space this[int i] { get { return subs[i]; } }
        public Space this[string key] { get { return subs[Array.IndexOf(keys, key)]; } }

        static RlayException Usage(string m) { return new RlayException(ErrorCode.Usage, m); }

        static int Count(int[] shape)
        {
            long n = 1;
            foreach (int d in shape) { if (d < 0) throw Usage("negative dimension " + d); n *= d; }
            if (n > int.MaxValue) throw Usage("space too large");
            return (int)n;
        }

        /// <summary>Box(low, high, shape, dtype) with the same bounds for every element (±inf allowed;
        /// an integer dtype's infinite bound becomes the dtype's limit, as Gymnasium does).</summary>
        public static Space Box(Dtype dtype, int[] shape, double low, double high)
        {
            int n = Count(shape);
            var lo = new double[n]; var hi = new double[n];
            for (int i = 0; i < n; i++) { lo[i] = low; hi[i] = high; }
            return Box(dtype, shape, lo, hi);
        }
        /// <summary>Box with per-element bounds (C order).</summary>
        public static Space Box(Dtype dtype, int[] shape, double[] low, double[] high)
        {
            int n = Count(shape);
            if (low.Length != n || high.Length != n) throw Usage("Box bounds must hold " + n + " elements each");
            if (!Wire.IsKnownDtype((int)dtype)) throw Usage("unknown Box dtype");
            var s = new Space(SpaceKind.Box) { Dtype = dtype, shape = (int[])shape.Clone() };
            int item = Wire.ItemSize(dtype);
            s.low = new byte[n * item]; s.high = new byte[n * item];
            for (int i = 0; i < n; i++)
            {
                if (low[i] > high[i]) throw Usage("Box low[" + i + "] > high[" + i + "]");
                Writer.WriteElement(s.low, i * item, dtype, Clamp(dtype, low[i]));
                Writer.WriteElement(s.high, i * item, dtype, Clamp(dtype, high[i]));
            }
            return s;
        }
        static double Clamp(Dtype dt, double v)
        {
            if (!Wire.IsInteger(dt)) return v;
            double lo, hi;
            switch (dt)
            {
                case Dtype.Int8: lo = sbyte.MinValue; hi = sbyte.MaxValue; break;
                case Dtype.UInt8: lo = 0; hi = byte.MaxValue; break;
                case Dtype.Int16: lo = short.MinValue; hi = short.MaxValue; break;
                case Dtype.UInt16: lo = 0; hi = ushort.MaxValue; break;
                case Dtype.Int32: lo = int.MinValue; hi = int.MaxValue; break;
                case Dtype.UInt32: lo = 0; hi = uint.MaxValue; break;
                case Dtype.Int64: lo = long.MinValue; hi = 9223372036854774784.0; break;
                default: lo = 0; hi = 18446744073709549568.0; break;
            }
            return Math.Max(lo, Math.Min(hi, v));
        }
        /// <summary>Discrete(n, start), int64 as Gymnasium's default.</summary>
        public static Space Discrete(long n, long start = 0)
        {
            if (n < 1) throw Usage("Discrete n must be >= 1, got " + n);
            return new Space(SpaceKind.Discrete) { Dtype = Dtype.Int64, N = n, startValue = start };
        }
        /// <summary>MultiDiscrete(nvec, start), int64, 1-D.</summary>
        public static Space MultiDiscrete(long[] nvec, long[] start = null)
        {
            var s = new Space(SpaceKind.MultiDiscrete) { Dtype = Dtype.Int64, shape = new[] { nvec.Length } };
            s.low = new byte[8 * nvec.Length]; s.high = new byte[8 * nvec.Length];
            for (int i = 0; i < nvec.Length; i++)
            {
                if (nvec[i] < 1) throw Usage("MultiDiscrete nvec must be >= 1");
                Writer.Le(s.low, 8 * i, (ulong)nvec[i], 8);
                Writer.Le(s.high, 8 * i, (ulong)(start == null ? 0 : start[i]), 8);
            }
            return s;
        }
        /// <summary>MultiBinary(n) (1-D, sent as the int n).</summary>
        public static Space MultiBinary(int n)
        {
            return new Space(SpaceKind.MultiBinary) { Dtype = Dtype.Int8, shape = new[] { n }, binaryN = new[] { n } };
        }
        /// <summary>MultiBinary(shape) (sent as an array, as Gymnasium's MultiBinary([..]) keeps it).</summary>
        public static Space MultiBinary(int[] shape)
        {
            Count(shape);
            return new Space(SpaceKind.MultiBinary) { Dtype = Dtype.Int8, shape = (int[])shape.Clone(), binaryN = (int[])shape.Clone(), binaryNIsArray = true };
        }
        /// <summary>Text(max_length, min_length, charset); charset null: Gymnasium's alphanumeric default.</summary>
        public static Space Text(int maxLength, int minLength = 1, string charset = null)
        {
            if (minLength < 0 || minLength > maxLength) throw Usage("Text needs 0 <= min_length <= max_length");
            if (charset == null) charset = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
            var pts = new SortedSet<int>();
            for (int i = 0; i < charset.Length; i++)
            {
                int cp = char.ConvertToUtf32(charset, i);
                if (char.IsHighSurrogate(charset[i])) i++;
                pts.Add(cp);
            }
            var s = new Space(SpaceKind.Text) { MinLength = minLength, MaxLength = maxLength };
            s.charsetPoints = new int[pts.Count];
            pts.CopyTo(s.charsetPoints);
            var sb = new StringBuilder();
            foreach (int cp in s.charsetPoints) sb.Append(char.ConvertFromUtf32(cp));
            s.charset = sb.ToString();
            return s;
        }
        /// <summary>Dict: keys and spaces in the space's order.</summary>
        public static Space Dict(string[] keys, Space[] spaces)
        {
            if (keys.Length != spaces.Length) throw Usage("Dict needs as many keys as spaces");
            if (new HashSet<string>(keys).Count != keys.Length) throw Usage("Dict keys must be distinct");
            return new Space(SpaceKind.Dict) { keys = (string[])keys.Clone(), subs = (Space[])spaces.Clone() };
        }
        public static Space Tuple(params Space[] spaces) { return new Space(SpaceKind.Tuple) { subs = (Space[])spaces.Clone() }; }
        public static Space Sequence(Space element, bool stack = false) { return new Space(SpaceKind.Sequence) { sub = element, stack = stack }; }
        /// <summary>Graph(node_space, edge_space): each a box or discrete space; edge_space may be null.</summary>
        public static Space Graph(Space nodeSpace, Space edgeSpace)
        {
            if (!IsBoxOrDiscrete(nodeSpace) || (edgeSpace != null && !IsBoxOrDiscrete(edgeSpace))) throw Usage("Graph node and edge spaces must be box or discrete");
            return new Space(SpaceKind.Graph) { nodeSpace = nodeSpace, edgeSpace = edgeSpace };
        }
        static bool IsBoxOrDiscrete(Space s) { return s != null && (s.Kind == SpaceKind.Box || s.Kind == SpaceKind.Discrete); }
        public static Space OneOf(params Space[] spaces)
        {
            if (spaces.Length < 1) throw Usage("OneOf needs at least one space");
            return new Space(SpaceKind.OneOf) { subs = (Space[])spaces.Clone() };
        }

        // ---- the descriptor (section 9, canonical field order) ----
        public void Write(Writer w)
        {
            switch (Kind)
            {
                case SpaceKind.Box:
                    w.PutMap(5); w.PutKey("kind"); w.PutStr("box"); w.PutKey("dtype"); w.PutStr(Wire.DtypeName(Dtype));
                    w.PutKey("shape"); WriteInts(w, shape);
                    w.PutKey("low"); w.PutTensorBytes(Dtype, shape, low, 0);
                    w.PutKey("high"); w.PutTensorBytes(Dtype, shape, high, 0);
                    break;
                case SpaceKind.Discrete:
                    w.PutMap(4); w.PutKey("kind"); w.PutStr("discrete"); w.PutKey("n"); w.PutInt(N);
                    w.PutKey("start"); if (startValue >= 0) w.PutUInt((ulong)startValue); else w.PutInt((long)startValue);
                    w.PutKey("dtype"); w.PutStr(Wire.DtypeName(Dtype));
                    break;
                case SpaceKind.MultiDiscrete:
                    w.PutMap(3); w.PutKey("kind"); w.PutStr("multi_discrete");
                    w.PutKey("nvec"); w.PutTensorBytes(Dtype, shape, low, 0);
                    w.PutKey("start"); w.PutTensorBytes(Dtype, shape, high, 0);
                    break;
                case SpaceKind.MultiBinary:
                    w.PutMap(2); w.PutKey("kind"); w.PutStr("multi_binary"); w.PutKey("n");
                    if (binaryNIsArray) WriteInts(w, binaryN); else w.PutInt(binaryN[0]);
                    break;
                case SpaceKind.Text:
                    w.PutMap(4); w.PutKey("kind"); w.PutStr("text"); w.PutKey("min_length"); w.PutInt(MinLength);
                    w.PutKey("max_length"); w.PutInt(MaxLength); w.PutKey("charset"); w.PutStr(charset);
                    break;
                case SpaceKind.Dict:
                    w.PutMap(2); w.PutKey("kind"); w.PutStr("dict"); w.PutKey("spaces"); w.PutMap(keys.Length);
                    for (int i = 0; i < keys.Length; i++) { w.PutKey(keys[i]); subs[i].Write(w); }
                    break;
                case SpaceKind.Tuple:
                case SpaceKind.OneOf:
                    w.PutMap(2); w.PutKey("kind"); w.PutStr(Kind == SpaceKind.Tuple ? "tuple" : "one_of"); w.PutKey("spaces"); w.PutArray(subs.Length);
                    foreach (Space s in subs) s.Write(w);
                    break;
                case SpaceKind.Sequence:
                    w.PutMap(3); w.PutKey("kind"); w.PutStr("sequence"); w.PutKey("space"); sub.Write(w); w.PutKey("stack"); w.PutBool(stack);
                    break;
                case SpaceKind.Graph:
                    w.PutMap(3); w.PutKey("kind"); w.PutStr("graph"); w.PutKey("node_space"); nodeSpace.Write(w);
                    w.PutKey("edge_space"); if (edgeSpace == null) w.PutNil(); else edgeSpace.Write(w);
                    break;
            }
        }
        static void WriteInts(Writer w, int[] a) { w.PutArray(a.Length); foreach (int d in a) w.PutInt(d); }

        /// <summary>Reads a descriptor (any field order); BAD_SPACE / UNKNOWN_DTYPE if it is invalid.</summary>
        public static Space Read(Value v) { return Read(v, "space", 0); }

        internal static Space Read(Value v, string where) { return Read(v, where, 0); }

        /// <summary>An int of the wire exactly (decimal holds every int64 and uint64 without allocating).</summary>
        internal static decimal Wide(Value v) { return v.IsNegative ? (decimal)v.AsLong() : (decimal)v.AsULongBits(); }
        static decimal DtypeMin(Dtype dt)
        {
            switch (dt)
            {
                case Dtype.Int8: return sbyte.MinValue; case Dtype.Int16: return short.MinValue;
                case Dtype.Int32: return int.MinValue; case Dtype.Int64: return long.MinValue;
            }
            return 0;
        }
        static decimal DtypeMax(Dtype dt)
        {
            switch (dt)
            {
                case Dtype.Int8: return sbyte.MaxValue; case Dtype.Int16: return short.MaxValue;
                case Dtype.Int32: return int.MaxValue; case Dtype.Int64: return long.MaxValue;
                case Dtype.UInt8: return byte.MaxValue; case Dtype.UInt16: return ushort.MaxValue;
                case Dtype.UInt32: return uint.MaxValue;
            }
            return ulong.MaxValue;
        }

        static RlayException Bad(string where, string m) { return new RlayException(ErrorCode.BadSpace, where + ": " + m); }

        static Value Field(Value v, string name, string where)
        {
            Value f = v.Get(name);
            if (!f.Exists) throw Bad(where, "missing field '" + name + "'");
            return f;
        }
        static void OnlyFields(Value v, string where, params string[] names)
        {
            if (v.Count != names.Length)
                for (int i = 0; i < v.Count; i++)
                {
                    bool known = false;
                    foreach (string n in names) if (v.KeyAt(i).IsString(n)) known = true;
                    if (!known) throw Bad(where, "unknown field '" + v.KeyAt(i).AsString() + "'");
                }
            foreach (string n in names) Field(v, n, where);
        }
        static long Int(Value v, string where)
        {
            if (v.Type != ValueKind.Int || (!v.IsNegative && v.AsULongBits() > long.MaxValue)) throw Bad(where, "expected an int, got " + v.Describe());
            return v.AsLong();
        }
        static Dtype DtypeOf(Value v, string where)
        {
            if (v.Type != ValueKind.Str) throw Bad(where, "dtype must be a str");
            Dtype d = Wire.DtypeByName(v.AsString());
            if (d == 0) throw new RlayException(ErrorCode.UnknownDtype, where + ": unknown dtype '" + v.AsString() + "'");
            return d;
        }
        static int[] Ints(Value v, string where)
        {
            if (v.Type != ValueKind.Array) throw Bad(where, "expected an array of int, got " + v.Describe());
            var r = new int[v.Count];
            for (int i = 0; i < r.Length; i++)
            {
                long d = Int(v[i], where);
                if (d < 0 || d > int.MaxValue) throw Bad(where, "dimension " + d + " out of range");
                r[i] = (int)d;
            }
            return r;
        }
        static byte[] TensorOf(Value v, Dtype dt, int[] shape, string where, string name)
        {
            if (v.Type != ValueKind.Tensor || v.Dtype != dt || v.Ndim != shape.Length) throw Bad(where, name + " must be a " + Wire.DtypeName(dt) + " tensor of the space's shape, got " + v.Describe());
            for (int i = 0; i < shape.Length; i++) if (v.Dim(i) != shape[i]) throw Bad(where, name + " has the wrong shape: " + v.Describe());
            var b = new byte[v.NBytes];
            v.CopyTo(b);
            return b;
        }

        static Space Read(Value v, string where, int depth)
        {
            if (v.Type != ValueKind.Map) throw Bad(where, "a space is a map, got " + v.Describe());
            Value kindV = Field(v, "kind", where);
            if (kindV.Type != ValueKind.Str) throw Bad(where, "kind must be a str");
            string kind = kindV.AsString();
            switch (kind)
            {
                case "box":
                    {
                        OnlyFields(v, where, "kind", "dtype", "shape", "low", "high");
                        Dtype dt = DtypeOf(v.Get("dtype"), where);
                        var s = new Space(SpaceKind.Box) { Dtype = dt, shape = Ints(v.Get("shape"), where) };
                        s.low = TensorOf(v.Get("low"), dt, s.shape, where, "low");
                        s.high = TensorOf(v.Get("high"), dt, s.shape, where, "high");
                        return s;
                    }
                case "discrete":
                    {
                        OnlyFields(v, where, "kind", "n", "start", "dtype");
                        Dtype dt = DtypeOf(v.Get("dtype"), where);
                        if (!Wire.IsInteger(dt)) throw Bad(where, "a discrete space needs an integer dtype");
                        long n = Int(v.Get("n"), where);
                        if (n < 1) throw Bad(where, "n must be >= 1, got " + n);
                        Value sv = v.Get("start");
                        if (sv.Type != ValueKind.Int) throw Bad(where, "start must be an int, got " + sv.Describe());
                        decimal start = Wide(sv);
                        // Section 9: start and start + n - 1 both in the dtype's range (uint64 may start at 2^63 and above).
                        if (start < DtypeMin(dt) || start + n - 1 > DtypeMax(dt))
                            throw Bad(where, "Discrete(" + n + ", start=" + start + ") does not fit " + Wire.DtypeName(dt));
                        return new Space(SpaceKind.Discrete) { Dtype = dt, N = n, startValue = start };
                    }
                case "multi_discrete":
                    {
                        OnlyFields(v, where, "kind", "nvec", "start");
                        Value nv = v.Get("nvec");
                        if (nv.Type != ValueKind.Tensor || !Wire.IsInteger(nv.Dtype)) throw Bad(where, "nvec must be an integer tensor, got " + nv.Describe());
                        var shape = new int[nv.Ndim];
                        for (int i = 0; i < shape.Length; i++) shape[i] = nv.Dim(i);
                        var s = new Space(SpaceKind.MultiDiscrete) { Dtype = nv.Dtype, shape = shape };
                        s.low = TensorOf(nv, nv.Dtype, shape, where, "nvec");
                        s.high = TensorOf(v.Get("start"), nv.Dtype, shape, where, "start");
                        return s;
                    }
                case "multi_binary":
                    {
                        OnlyFields(v, where, "kind", "n");
                        Value nv = v.Get("n");
                        if (nv.Type == ValueKind.Int)
                        {
                            long n = Int(nv, where);
                            if (n < 0 || n > int.MaxValue) throw Bad(where, "n out of range");
                            return MultiBinary((int)n);
                        }
                        return MultiBinary(Ints(nv, where));
                    }
                case "text":
                    {
                        OnlyFields(v, where, "kind", "min_length", "max_length", "charset");
                        long lo = Int(v.Get("min_length"), where), hi = Int(v.Get("max_length"), where);
                        if (lo < 0 || lo > hi || hi > int.MaxValue) throw Bad(where, "needs 0 <= min_length <= max_length");
                        Value cs = v.Get("charset");
                        if (cs.Type != ValueKind.Str) throw Bad(where, "charset must be a str");
                        // Section 9: each character once, ascending; a receiver never sorts it.
                        string chars = cs.AsString();
                        int prev = -1;
                        for (int i = 0; i < chars.Length; i++)
                        {
                            int cp = char.ConvertToUtf32(chars, i);
                            if (char.IsHighSurrogate(chars[i])) i++;
                            if (cp <= prev) throw Bad(where, "charset must list each character once in ascending code-point order (U+" + cp.ToString("X4") + (cp == prev ? " twice)" : " after U+" + prev.ToString("X4") + ")"));
                            prev = cp;
                        }
                        return Text((int)hi, (int)lo, chars);
                    }
                case "dict":
                    {
                        OnlyFields(v, where, "kind", "spaces");
                        Value sp = v.Get("spaces");
                        if (sp.Type != ValueKind.Map) throw Bad(where, "spaces must be a map");
                        var s = new Space(SpaceKind.Dict) { keys = new string[sp.Count], subs = new Space[sp.Count] };
                        for (int i = 0; i < sp.Count; i++)
                        {
                            s.keys[i] = sp.KeyAt(i).AsString();
                            s.subs[i] = Read(sp.ValueAt(i), where + "." + s.keys[i], depth + 1);
                        }
                        return s;
                    }
                case "tuple":
                case "one_of":
                    {
                        OnlyFields(v, where, "kind", "spaces");
                        Value sp = v.Get("spaces");
                        if (sp.Type != ValueKind.Array) throw Bad(where, "spaces must be an array");
                        if (kind == "one_of" && sp.Count < 1) throw Bad(where, "one_of needs at least one space");
                        var s = new Space(kind == "tuple" ? SpaceKind.Tuple : SpaceKind.OneOf) { subs = new Space[sp.Count] };
                        for (int i = 0; i < sp.Count; i++) s.subs[i] = Read(sp[i], where + "[" + i + "]", depth + 1);
                        return s;
                    }
                case "sequence":
                    {
                        OnlyFields(v, where, "kind", "space", "stack");
                        Value st = v.Get("stack");
                        if (st.Type != ValueKind.Bool) throw Bad(where, "stack must be a bool");
                        return Sequence(Read(v.Get("space"), where + ".space", depth + 1), st.AsBool());
                    }
                case "graph":
                    {
                        OnlyFields(v, where, "kind", "node_space", "edge_space");
                        Space node = Read(v.Get("node_space"), where + ".node_space", depth + 1);
                        Value ev = v.Get("edge_space");
                        Space edge = ev.IsNil ? null : Read(ev, where + ".edge_space", depth + 1);
                        if (!IsBoxOrDiscrete(node) || (edge != null && !IsBoxOrDiscrete(edge))) throw Bad(where, "graph node and edge spaces must be box or discrete");
                        return new Space(SpaceKind.Graph) { nodeSpace = node, edgeSpace = edge };
                    }
            }
            throw Bad(where, "unknown kind '" + kind + "'");
        }

        // ---- checking values (section 9): -1 structure (BAD_VALUE), 1 outside the bounds, 0 fine ----

        /// <summary>Checks a received value; <paramref name="batch"/> > 0 checks batch_space(space, batch)
        /// (section 10). Returns 0 if it fits, 1 if it is outside the bounds (INVALID_ACTION), -1 if its
        /// structure does not match (BAD_VALUE); <paramref name="why"/> says what is wrong.</summary>
        public int Check(Value v, int batch, out string why)
        {
            why = null;
            return CheckAt(v, batch, ref why, true);
        }

        /// <summary>The structure only (dtype, shape, keys, lengths of containers): -1 if it does not
        /// match (BAD_VALUE), else 0. What the core checks on receipt and on its own observations.</summary>
        public int CheckStructure(Value v, int batch, out string why)
        {
            why = null;
            return CheckAt(v, batch, ref why, false);
        }

        int Fail(ref string why, string m) { why = m; return -1; }

        bool TensorShape(Value v, Dtype dt, int batch, int[] shp)
        {
            if (v.Type != ValueKind.Tensor || v.Dtype != dt) return false;
            int lead = batch > 0 ? 1 : 0;
            if (v.Ndim != shp.Length + lead) return false;
            if (lead == 1 && v.Dim(0) != batch) return false;
            for (int i = 0; i < shp.Length; i++) if (v.Dim(i + lead) != shp[i]) return false;
            return true;
        }

        int CheckAt(Value v, int batch, ref string why, bool bounds)
        {
            switch (Kind)
            {
                case SpaceKind.Box:
                    {
                        if (!TensorShape(v, Dtype, batch, shape)) return Fail(ref why, "expected a " + Wire.DtypeName(Dtype) + " tensor of shape " + ShapeText(batch) + ", got " + v.Describe());
                        if (!bounds) return 0;
                        int n = low.Length / Wire.ItemSize(Dtype), total = v.Count;
                        bool big = Dtype == Dtype.Int64 || Dtype == Dtype.UInt64;
                        for (int i = 0; i < total; i++)
                        {
                            int k = i % n;
                            bool ok;
                            if (big && Dtype == Dtype.Int64) { long x = v.GetLong(i); ok = x >= Value.ReadLong(low, 0, Dtype, k) && x <= Value.ReadLong(high, 0, Dtype, k); }
                            else if (big) { ulong x = (ulong)v.GetLong(i); ok = x >= (ulong)Value.ReadLong(low, 0, Dtype, k) && x <= (ulong)Value.ReadLong(high, 0, Dtype, k); }
                            else { double x = v.GetDouble(i); ok = x >= Value.ReadDouble(low, 0, Dtype, k) && x <= Value.ReadDouble(high, 0, Dtype, k); }
                            if (!ok) { why = "element " + i + " (" + v.GetDouble(i).ToString("R") + ") is outside the box"; return 1; }
                        }
                        return 0;
                    }
                case SpaceKind.Discrete:
                    {
                        if (batch > 0)
                        {
                            if (!TensorShape(v, Dtype, batch, shape)) return Fail(ref why, "expected a " + Wire.DtypeName(Dtype) + " tensor of shape (" + batch + ",), got " + v.Describe());
                            if (!bounds) return 0;
                            for (int i = 0; i < batch; i++)
                            {
                                long x = v.GetLong(i);
                                decimal d = Dtype == Dtype.UInt64 ? (decimal)(ulong)x : x;
                                if (d < startValue || d - startValue >= N) { why = "sub-env " + i + ": " + d + " is not in Discrete(" + N + ", start=" + startValue + ")"; return 1; }
                            }
                            return 0;
                        }
                        decimal a;
                        if (v.Type == ValueKind.Int) a = Wide(v);
                        else if (v.Type == ValueKind.Tensor && v.Ndim == 0 && Wire.IsInteger(v.Dtype)) a = v.Dtype == Dtype.UInt64 ? (decimal)(ulong)v.GetLong(0) : v.GetLong(0);
                        else return Fail(ref why, "expected an int, got " + v.Describe());
                        // Section 9: a value outside the dtype's range is BAD_VALUE; outside the space, out of bounds.
                        if (a < DtypeMin(Dtype) || a > DtypeMax(Dtype)) return Fail(ref why, a + " does not fit the space's dtype " + Wire.DtypeName(Dtype));
                        if (!bounds) return 0;
                        if (a < startValue || a - startValue >= N) { why = a + " is not in Discrete(" + N + ", start=" + startValue + ")"; return 1; }
                        return 0;
                    }
                case SpaceKind.MultiDiscrete:
                    {
                        if (!TensorShape(v, Dtype, batch, shape)) return Fail(ref why, "expected a " + Wire.DtypeName(Dtype) + " tensor of shape " + ShapeText(batch) + ", got " + v.Describe());
                        if (!bounds) return 0;
                        int n = low.Length / Wire.ItemSize(Dtype);
                        for (int i = 0; i < v.Count; i++)
                        {
                            long x = v.GetLong(i), st = Value.ReadLong(high, 0, Dtype, i % n), nv = Value.ReadLong(low, 0, Dtype, i % n);
                            if (x < st || x - st >= nv) { why = "element " + i + " (" + x + ") is outside the space"; return 1; }
                        }
                        return 0;
                    }
                case SpaceKind.MultiBinary:
                    {
                        if (!TensorShape(v, Dtype.Int8, batch, shape)) return Fail(ref why, "expected an int8 tensor of shape " + ShapeText(batch) + ", got " + v.Describe());
                        if (!bounds) return 0;
                        for (int i = 0; i < v.Count; i++)
                        {
                            long x = v.GetLong(i);
                            if (x != 0 && x != 1) { why = "element " + i + " is " + x + ", not 0 or 1"; return 1; }
                        }
                        return 0;
                    }
                case SpaceKind.Dict:
                    {
                        if (v.Type != ValueKind.Map || v.Count != keys.Length) return Fail(ref why, "expected a map with the keys of the Dict space, got " + v.Describe());
                        int worst = 0;
                        for (int i = 0; i < keys.Length; i++)
                        {
                            Value x = v.Get(keys[i]);
                            if (!x.Exists) return Fail(ref why, "missing key '" + keys[i] + "'");
                            int r = subs[i].CheckAt(x, batch, ref why, bounds);
                            if (r < 0) { why = "[" + keys[i] + "] " + why; return r; }
                            if (r > 0 && worst == 0) { worst = r; why = "[" + keys[i] + "] " + why; }
                        }
                        return worst;
                    }
                case SpaceKind.Tuple:
                    {
                        if (v.Type != ValueKind.Array || v.Count != subs.Length) return Fail(ref why, "expected an array of " + subs.Length + " values, got " + v.Describe());
                        int worst = 0;
                        for (int i = 0; i < subs.Length; i++)
                        {
                            string w2 = null;
                            int r = subs[i].CheckAt(v[i], batch, ref w2, bounds);
                            if (r < 0) { why = "[" + i + "] " + w2; return r; }
                            if (r > 0 && worst == 0) { worst = r; why = "[" + i + "] " + w2; }
                        }
                        return worst;
                    }
            }
            // Text, Sequence, Graph, OneOf: a batch of them is an array of `batch` values (section 10).
            if (batch > 0)
            {
                if (v.Type != ValueKind.Array || v.Count != batch) return Fail(ref why, "expected an array of " + batch + " values, got " + v.Describe());
                int worst = 0;
                for (int i = 0; i < batch; i++)
                {
                    string w2 = null;
                    int r = CheckAt(v[i], 0, ref w2, bounds);
                    if (r < 0) { why = "sub-env " + i + ": " + w2; return r; }
                    if (r > 0 && worst == 0) { worst = r; why = "sub-env " + i + ": " + w2; }
                }
                return worst;
            }
            switch (Kind)
            {
                case SpaceKind.Text:
                    {
                        if (v.Type != ValueKind.Str) return Fail(ref why, "expected a str, got " + v.Describe());
                        if (!bounds) return 0;
                        string s = v.AsString();
                        int len = 0;
                        for (int i = 0; i < s.Length; i++)
                        {
                            int cp = char.ConvertToUtf32(s, i);
                            if (char.IsHighSurrogate(s[i])) i++;
                            len++;
                            if (Array.BinarySearch(charsetPoints, cp) < 0) { why = "character U+" + cp.ToString("X4") + " is not in the charset"; return 1; }
                        }
                        if (len < MinLength || len > MaxLength) { why = "length " + len + " is not in " + MinLength + ".." + MaxLength; return 1; }
                        return 0;
                    }
                case SpaceKind.Sequence:
                    {
                        if (v.Type != ValueKind.Array) return Fail(ref why, "expected an array, got " + v.Describe());
                        int worst = 0;
                        for (int i = 0; i < v.Count; i++)
                        {
                            string w2 = null;
                            int r = sub.CheckAt(v[i], 0, ref w2, bounds);
                            if (r < 0) { why = "[" + i + "] " + w2; return r; }
                            if (r > 0 && worst == 0) { worst = r; why = "[" + i + "] " + w2; }
                        }
                        return worst;
                    }
                case SpaceKind.Graph:
                    {
                        // Section 9's graph value: exactly nodes, edges, edge_links.
                        if (v.Type != ValueKind.Map || v.Count != 3) return Fail(ref why, "expected a map of nodes, edges, edge_links, got " + v.Describe());
                        Value nodes = v.Get("nodes"), edges = v.Get("edges"), links = v.Get("edge_links");
                        if (!nodes.Exists || !edges.Exists || !links.Exists) return Fail(ref why, "a graph value holds nodes, edges and edge_links");
                        if (!Leading(nodes, nodeSpace)) return Fail(ref why, "nodes must be a " + Wire.DtypeName(nodeSpace.Dtype) + " tensor of shape (n" + ShapeTail(nodeSpace) + "), got " + nodes.Describe());
                        if (edgeSpace == null)
                        {
                            if (!edges.IsNil || !links.IsNil) return Fail(ref why, "a graph without an edge space has nil edges and edge_links");
                            return 0;
                        }
                        if (edges.IsNil && links.IsNil) return 0;
                        if (!Leading(edges, edgeSpace)) return Fail(ref why, "edges must be a " + Wire.DtypeName(edgeSpace.Dtype) + " tensor of shape (m" + ShapeTail(edgeSpace) + "), got " + edges.Describe());
                        if (links.Type != ValueKind.Tensor || (links.Dtype != Dtype.Int64 && links.Dtype != Dtype.Int32) || links.Ndim != 2 || links.Dim(1) != 2 || links.Dim(0) != edges.Dim(0))
                            return Fail(ref why, "edge_links must be an int64 or int32 tensor of shape (" + edges.Dim(0) + ", 2), got " + links.Describe());
                        return 0;
                    }
                case SpaceKind.OneOf:
                    {
                        if (v.Type != ValueKind.Array || v.Count != 2 || v[0].Type != ValueKind.Int) return Fail(ref why, "expected [index, value], got " + v.Describe());
                        if (v[0].IsNegative || v[0].AsULongBits() >= (ulong)subs.Length) return Fail(ref why, "index " + v[0].Describe() + " is not below " + subs.Length);
                        return subs[(int)v[0].AsULongBits()].CheckAt(v[1], 0, ref why, bounds);
                    }
            }
            return Fail(ref why, "unknown space");
        }

        /// <summary>A tensor of the space's dtype and shape (k, *shape), any k (graph nodes and edges).</summary>
        static bool Leading(Value v, Space s)
        {
            if (v.Type != ValueKind.Tensor || v.Dtype != s.Dtype || v.Ndim != 1 + s.shape.Length) return false;
            for (int i = 0; i < s.shape.Length; i++) if (v.Dim(i + 1) != s.shape[i]) return false;
            return true;
        }
        /// <summary>", 2, 3" for a space of shape (2, 3); "," for a Discrete: "(n,)".</summary>
        static string ShapeTail(Space s)
        {
            if (s.shape.Length == 0) return ",";
            var sb = new StringBuilder();
            foreach (int d in s.shape) sb.Append(", ").Append(d);
            return sb.ToString();
        }

        string ShapeText(int batch)
        {
            var sb = new StringBuilder("(");
            if (batch > 0) sb.Append(batch).Append(shape.Length > 0 ? ", " : ",");
            for (int i = 0; i < shape.Length; i++) sb.Append(i > 0 ? ", " : "").Append(shape[i]);
            if (batch == 0 && shape.Length == 1) sb.Append(",");
            return sb.Append(")").ToString();
        }
    }

    // ============================================================================================
    // The protocol core without I/O (sections 2, 6-8): bytes in, messages out; messages in, bytes out

    /// <summary>The conversation's state (section 8), the same on both sides.</summary>
    public enum State { Hello, Describe, Idle, Reset, Step, Render, Call, Close, Closed }

    /// <summary>One side of one session, without I/O. It can play either role (the env side is what
    /// this SDK serves; the agent role is there for the conformance runner and tests).</summary>
    public sealed class Connection
    {
        public readonly bool IsEnv;
        public State State = State.Hello;
        public int MaxFrameSize = Wire.DefaultMaxFrameSize;
        /// <summary>Section 13: the limit of the first frame received (the peer's HELLO or a fatal ERROR).</summary>
        public int MaxHandshakeFrameSize = Wire.DefaultMaxHandshakeFrameSize;
        /// <summary>Section 13: values one received body may declare (FRAME_TOO_LARGE past it).</summary>
        public int MaxValues { get { return doc.MaxValues; } set { doc.MaxValues = value; } }

        /// <summary>The session's description (section 10): an agent learns it from the ENV_INFO it
        /// receives; an env side sets it before sending its ENV_INFO (Env does). Null spaces: the
        /// values are not checked against them.</summary>
        public int NumEnvs = 1;
        public Space ObservationSpace, ActionSpace;

        byte[] rbuf = new byte[4096];
        int rstart, rend;
        bool firstReceived;
        readonly Doc doc = new Doc();
        Doc outDoc;
        readonly Writer scratch = new Writer();

        /// <summary>Bytes to write to the stream (Out[0, OutLen)); the I/O layer empties it.</summary>
        public byte[] Out = new byte[4096];
        public int OutLen;

        /// <summary>The last message received: its kind and its body.</summary>
        public Kind LastKind { get; private set; }
        public Value Body { get { return doc.Root; } }

        /// <summary>Queues this side's HELLO at once (section 7): write Out next.</summary>
        public Connection(bool isEnv)
        {
            IsEnv = isEnv;
            var w = scratch;
            w.Clear();
            w.PutMap(6);
            w.PutKey("protocol"); w.PutStr(Wire.Protocol);
            w.PutKey("version"); w.PutInt(Wire.Version);
            w.PutKey("role"); w.PutStr(isEnv ? "env" : "agent");
            w.PutKey("sdk"); w.PutStr(Wire.Sdk);
            w.PutKey("sdk_version"); w.PutStr(Wire.SdkVersion);
            w.PutKey("capabilities"); w.PutMap(0);
            AppendFrame(Kind.Hello, w);
        }

        // ---- receiving ----

        /// <summary>Room to receive into: write up to RecvRoom bytes at RecvBuffer[RecvEnd], then Received(n).</summary>
        public byte[] RecvBuffer { get { return rbuf; } }
        public int RecvEnd { get { return rend; } }
        public int RecvRoom
        {
            get
            {
                if (rend == rbuf.Length) Grow(rbuf.Length);
                return rbuf.Length - rend;
            }
        }
        public void Received(int n) { rend += n; }

        /// <summary>Feeds bytes (a copy is kept).</summary>
        public void Feed(byte[] b, int off, int n)
        {
            while (n > 0)
            {
                int k = Math.Min(n, RecvRoom);
                Buffer.BlockCopy(b, off, rbuf, rend, k);
                rend += k; off += k; n -= k;
            }
        }

        void Grow(int need)
        {
            if (rstart > 0) { Compact(); if (rbuf.Length - rend >= need && rend < rbuf.Length) return; }
            Array.Resize(ref rbuf, Math.Max(rbuf.Length * 2, rend + need));
        }

        /// <summary>Drops consumed bytes. Values of the last message are invalid afterwards.</summary>
        public void Compact()
        {
            if (rstart == 0) return;
            Buffer.BlockCopy(rbuf, rstart, rbuf, 0, rend - rstart);
            rend -= rstart;
            rstart = 0;
        }

        /// <summary>The stream ended: TRUNCATED if it ended inside a frame.</summary>
        public void FeedEof()
        {
            if (rend > rstart) Fail(ErrorCode.Truncated, "the stream ended inside a frame (" + (rend - rstart) + " bytes of it received)");
        }

        /// <summary>Decodes the next complete message (true) or says more bytes are needed (false).
        /// A peer breaking the rules: a fatal ERROR is queued, State becomes Closed, and the
        /// RlayException is thrown.</summary>
        public bool Next()
        {
            int avail = rend - rstart;
            if (avail >= 2 && (rbuf[rstart] != 0x52 || rbuf[rstart + 1] != 0x4c))
                Fail(ErrorCode.BadMagic, "the peer is not speaking rlay: its bytes start " + Hex(rbuf, rstart, Math.Min(avail, 8)));
            if (avail < 12) return false;
            int p = rstart;
            int kind = rbuf[p + 2], flags = rbuf[p + 3];
            uint dlen = Wire.Rd32(rbuf, p + 4), blen = Wire.Rd32(rbuf, p + 8);
            if (flags != 0) Fail(ErrorCode.BadHeader, "header flags must be 0 in v1, got 0x" + flags.ToString("x2"));
            if (blen == 0) Fail(ErrorCode.BadHeader, "header body_len is 0; a body is at least one byte");
            // Section 2: the first frame has the handshake's smaller limit (section 13).
            int limit = firstReceived ? MaxFrameSize : MaxHandshakeFrameSize;
            if ((ulong)dlen + blen > (ulong)limit)
                Fail(ErrorCode.FrameTooLarge, "frame of " + ((ulong)dlen + blen) + " bytes exceeds the limit of " + limit + " bytes" + (firstReceived ? "" : " for the first frame (the peer's HELLO)"));
            if (!Wire.IsKnownKind(kind)) Fail(ErrorCode.UnknownKind, "unknown message kind " + kind);
            int total = 12 + (int)dlen + (int)blen;
            if (avail < total)
            {
                if (rbuf.Length - rstart < total) { Compact(); if (rbuf.Length < total) Array.Resize(ref rbuf, total); }
                return false;
            }
            rstart += total;
            firstReceived = true;
            try
            {
                doc.Decode(rbuf, p + 12 + (int)dlen, p + total, p + 12, (int)dlen);
                Receive((Kind)kind, doc.Root);
            }
            catch (RlayException e)
            {
                if (e.Code > 0 && e.Code < ErrorCode.EnvException) { QueueFatal(e.Code, e.Message); }
                throw;
            }
            return true;
        }

        /// <summary>Decodes one stand-alone frame's body and checks its fields (no state machine).</summary>
        public bool NextStandalone()
        {
            int avail = rend - rstart;
            if (avail >= 2 && (rbuf[rstart] != 0x52 || rbuf[rstart + 1] != 0x4c))
                Fail(ErrorCode.BadMagic, "the peer is not speaking rlay");
            if (avail < 12) return false;
            int p = rstart, kind = rbuf[p + 2];
            uint dlen = Wire.Rd32(rbuf, p + 4), blen = Wire.Rd32(rbuf, p + 8);
            if (rbuf[p + 3] != 0) Fail(ErrorCode.BadHeader, "header flags must be 0");
            if (blen == 0) Fail(ErrorCode.BadHeader, "body_len is 0");
            if ((ulong)dlen + blen > (ulong)MaxFrameSize) Fail(ErrorCode.FrameTooLarge, "frame too large");
            if (!Wire.IsKnownKind(kind)) Fail(ErrorCode.UnknownKind, "unknown message kind " + kind);
            int total = 12 + (int)dlen + (int)blen;
            if (avail < total) return false;
            rstart += total;
            doc.Decode(rbuf, p + 12 + (int)dlen, p + total, p + 12, (int)dlen);
            LastKind = (Kind)kind;
            CheckFields((Kind)kind, doc.Root);
            return true;
        }

        static string Hex(byte[] b, int p, int n)
        {
            var sb = new StringBuilder();
            for (int i = 0; i < n; i++) sb.Append(b[p + i].ToString("x2"));
            return sb.ToString();
        }

        void Fail(ErrorCode code, string message)
        {
            QueueFatal(code, message);
            throw new RlayException(code, message);
        }

        static bool SentByEnv(Kind k) { return k == Kind.EnvInfo || (int)k >= 32 && k != Kind.Error; }
        static bool SentByAgent(Kind k) { return (int)k >= 16 && (int)k <= 20; }

        /// <summary>Section 8's table; -1: not allowed.</summary>
        static int Transition(State s, Kind k)
        {
            switch (s)
            {
                case State.Hello: return k == Kind.Hello ? (int)State.Describe : -1;
                case State.Describe: return k == Kind.EnvInfo ? (int)State.Idle : -1;
                case State.Idle:
                    switch (k)
                    {
                        case Kind.Reset: return (int)State.Reset;
                        case Kind.Step: return (int)State.Step;
                        case Kind.Render: return (int)State.Render;
                        case Kind.Call: return (int)State.Call;
                        case Kind.Close: return (int)State.Close;
                    }
                    return -1;
                case State.Reset: return k == Kind.ResetResult ? (int)State.Idle : -1;
                case State.Step: return k == Kind.StepResult ? (int)State.Idle : -1;
                case State.Render: return k == Kind.RenderResult ? (int)State.Idle : -1;
                case State.Call: return k == Kind.CallResult ? (int)State.Idle : -1;
                case State.Close: return k == Kind.CloseResult ? (int)State.Closed : -1;
            }
            return -1;
        }

        static int AfterError(State s, bool fatal, bool senderIsEnv)
        {
            if (s == State.Closed) return -1;
            if (fatal) return (int)State.Closed;
            if (senderIsEnv && (s == State.Reset || s == State.Step || s == State.Render || s == State.Call)) return (int)State.Idle;
            if (senderIsEnv && s == State.Close) return (int)State.Closed;
            return -1;
        }

        static string StateName(State s) { return s.ToString().ToLowerInvariant(); }

        void Receive(Kind kind, Value body)
        {
            // Section 8's order: (header, body: done) then the table by kind and sender, then fields.
            LastKind = kind;
            string role = IsEnv ? "env" : "agent";
            if ((IsEnv && SentByEnv(kind)) || (!IsEnv && SentByAgent(kind)))
                throw new RlayException(ErrorCode.UnexpectedMessage, "received " + Wire.KindName((int)kind) + " in state '" + StateName(State) + "', but only the " + role + " side sends it and that is this side");
            int next = kind == Kind.Error ? 0 : Transition(State, kind);
            if (next < 0)
                throw new RlayException(ErrorCode.UnexpectedMessage, "received " + Wire.KindName((int)kind) + " in state '" + StateName(State) + "' (role " + role + ")");
            if (kind == Kind.Hello) CheckHelloHead(body);
            CheckFields(kind, body);
            if (kind == Kind.EnvInfo) Describe(body);
            CheckBatch(kind, body);
            CheckValues(kind, body);
            if (kind == Kind.Error)
            {
                // Section 11: a code 1-15 is always fatal, whatever the fatal field says.
                long code = body.Get("code").AsLong();
                bool fatal = body.Get("fatal").AsBool() || (code >= 1 && code <= 15);
                next = AfterError(State, fatal, !IsEnv);
                if (next < 0)
                    throw new RlayException(ErrorCode.UnexpectedMessage, "received a " + (fatal ? "fatal" : "non-fatal") + " ERROR in state '" + StateName(State) + "' (role " + role + ")");
            }
            State = (State)next;
        }

        /// <summary>An agent takes the session's description from ENV_INFO (sections 6, 9, 10): a space
        /// field that is a map but not a valid descriptor is BAD_SPACE (BAD_FIELD was checked before).</summary>
        void Describe(Value body)
        {
            Value n = body.Get("num_envs");
            if (n.AsULongBits() > int.MaxValue) throw new RlayException(ErrorCode.BadField, "ENV_INFO.num_envs " + n.Describe() + " is too large for this side");
            Value mode = body.Get("metadata").Get("autoreset_mode");
            if (mode.Exists && !mode.IsString("next_step") && !mode.IsString("same_step") && !mode.IsString("disabled"))
                throw new RlayException(ErrorCode.BadField, "ENV_INFO.metadata['autoreset_mode'] must be 'next_step', 'same_step' or 'disabled', got " + mode.Describe());
            ObservationSpace = Space.Read(body.Get("observation_space"), "observation_space");
            ActionSpace = Space.Read(body.Get("action_space"), "action_space");
            NumEnvs = (int)n.AsULongBits();
        }

        /// <summary>Section 10: the fields whose type depends on num_envs, against this session's.</summary>
        void CheckBatch(Kind kind, Value body)
        {
            int n = NumEnvs;
            switch (kind)
            {
                case Kind.Reset:
                    {
                        Value seed = body.Get("seed");
                        if (seed.Type == ValueKind.Int)
                        {
                            if (seed.IsNegative) throw new RlayException(ErrorCode.BadField, "RESET.seed must be >= 0, got " + seed.Describe());
                            if (seed.AsULongBits() > ulong.MaxValue - (ulong)(n - 1))
                                throw new RlayException(ErrorCode.BadField, "RESET.seed " + seed.Describe() + " + " + (n - 1) + " (the last of " + n + " sub-envs) passes 2^64-1");
                        }
                        else if (seed.Type == ValueKind.Array)
                        {
                            if (n == 1) throw new RlayException(ErrorCode.BadField, "RESET.seed is an array, but this session has one env (num_envs 1)");
                            if (seed.Count != n) throw new RlayException(ErrorCode.BadField, "RESET.seed is an array of " + seed.Count + " seeds for " + n + " sub-envs");
                            for (int i = 0; i < n; i++)
                                if (seed[i].Type == ValueKind.Int && seed[i].IsNegative)
                                    throw new RlayException(ErrorCode.BadField, "RESET.seed[" + i + "] must be >= 0, got " + seed[i].Describe());
                        }
                        if (n > 1)
                        {
                            Value mask = body.Get("options").Get("reset_mask");
                            if (mask.Exists && !mask.IsNil && !IsVector(mask, Dtype.Bool, n))
                                throw new RlayException(ErrorCode.BadField, "RESET.options['reset_mask'] must be a bool tensor of shape (" + n + ",), got " + mask.Describe());
                        }
                        return;
                    }
                case Kind.StepResult:
                    {
                        Value r = body.Get("reward"), te = body.Get("terminated"), tr = body.Get("truncated");
                        if (n == 1)
                        {
                            if (r.Type == ValueKind.Tensor) throw new RlayException(ErrorCode.BadField, "STEP_RESULT.reward must be a float with num_envs 1, got " + r.Describe());
                            if (te.Type != ValueKind.Bool || tr.Type != ValueKind.Bool) throw new RlayException(ErrorCode.BadField, "STEP_RESULT.terminated and truncated must be bools with num_envs 1");
                            return;
                        }
                        if (!IsVector(r, Dtype.Float64, n)) throw new RlayException(ErrorCode.BadField, "STEP_RESULT.reward must be a float64 tensor of shape (" + n + ",), got " + r.Describe());
                        if (!IsVector(te, Dtype.Bool, n)) throw new RlayException(ErrorCode.BadField, "STEP_RESULT.terminated must be a bool tensor of shape (" + n + ",), got " + te.Describe());
                        if (!IsVector(tr, Dtype.Bool, n)) throw new RlayException(ErrorCode.BadField, "STEP_RESULT.truncated must be a bool tensor of shape (" + n + ",), got " + tr.Describe());
                        return;
                    }
                case Kind.CallResult:
                    {
                        Value v = body.Get("value");
                        if (n > 1 && (v.Type != ValueKind.Array || v.Count != n)) throw new RlayException(ErrorCode.BadField, "CALL_RESULT.value must be an array of " + n + " values (one per sub-env), got " + v.Describe());
                        return;
                    }
                case Kind.RenderResult:
                    {
                        Value f = body.Get("frame");
                        if (n > 1 && !f.IsNil && (f.Type != ValueKind.Array || f.Count != n)) throw new RlayException(ErrorCode.BadField, "RENDER_RESULT.frame must be nil or an array of " + n + " frames, got " + f.Describe());
                        return;
                    }
            }
        }

        static bool IsVector(Value v, Dtype dt, int n)
        {
            return v.Type == ValueKind.Tensor && v.Dtype == dt && v.Ndim == 1 && v.Dim(0) == n;
        }

        /// <summary>Section 9: a received action against its (batched) space: BAD_VALUE if its structure
        /// does not match; the bounds are the Env's business (INVALID_ACTION, after RESET_NEEDED).
        /// The agent role (this SDK's runner and tests) does not check observations: the vectors of
        /// section 12 send a float32 observation for their Discrete(2) session (a STEP_RESULT twice).</summary>
        void CheckValues(Kind kind, Value body)
        {
            Space sp = kind == Kind.Step ? ActionSpace : null;
            if (sp == null) return;
            string why;
            if (sp.CheckStructure(body.Get(kind == Kind.Step ? "action" : "obs"), NumEnvs > 1 ? NumEnvs : 0, out why) < 0)
                throw new RlayException(ErrorCode.BadValue, (kind == Kind.Step ? "the action does not match " : "the observation does not match ") + (NumEnvs > 1 ? "batch_space(" + (kind == Kind.Step ? "action_space, " : "observation_space, ") + NumEnvs + ")" : kind == Kind.Step ? "action_space" : "observation_space") + ": " + why);
        }

        void CheckHelloHead(Value body)
        {
            // Section 7: protocol, version, role, in that order, before any other field.
            if (body.Type != ValueKind.Map) throw new RlayException(ErrorCode.BadField, "HELLO body must be a map");
            if (!body.Get("protocol").IsString(Wire.Protocol))
                throw new RlayException(ErrorCode.BadMagic, "the peer's HELLO does not name the protocol 'rlay'");
            Value v = body.Get("version");
            if (v.Type != ValueKind.Int || v.IsNegative || v.AsULongBits() != Wire.Version)
                throw new RlayException(ErrorCode.VersionMismatch, "protocol version mismatch: this side speaks " + Wire.Version + ", peer speaks " + (v.Exists ? v.Describe() : "none"));
            Value r = body.Get("role");
            string mine = IsEnv ? "env" : "agent", peer = IsEnv ? "agent" : "env";
            if (!r.IsString(peer))
                throw new RlayException(ErrorCode.RoleConflict, r.IsString(mine) ? "both sides claim the role '" + mine + "'" : "the peer's role is not '" + peer + "'");
        }

        // ---- message fields (section 6) ----
        // Types: s str, S str/nil, i int, b bool, m map, M map/nil, a array, * any, r reward, f flag, d seed
        static readonly string[][] Fields = new string[49][];
        static readonly string[] Types = new string[49];
        static Connection()
        {
            Def(Kind.Hello, "sisssm", "protocol", "version", "role", "sdk", "sdk_version", "capabilities");
            Def(Kind.EnvInfo, "mmimSS", "observation_space", "action_space", "num_envs", "metadata", "render_mode", "name");
            Def(Kind.Reset, "dM", "seed", "options");
            Def(Kind.Step, "*", "action");
            Def(Kind.Render, "");
            Def(Kind.Close, "");
            Def(Kind.Call, "sam", "name", "args", "kwargs");
            Def(Kind.ResetResult, "*m", "obs", "info");
            Def(Kind.StepResult, "*rffm", "obs", "reward", "terminated", "truncated", "info");
            Def(Kind.RenderResult, "*", "frame");
            Def(Kind.CloseResult, "");
            Def(Kind.CallResult, "*", "value");
            Def(Kind.Error, "isbSS", "code", "message", "fatal", "remote_type", "traceback");
        }
        static void Def(Kind k, string types, params string[] names)
        {
            Types[(int)k] = types;
            Fields[(int)k] = names;
        }
        /// <summary>The canonical field names of a message kind, in order.</summary>
        public static string[] FieldNames(Kind k) { return Fields[(int)k]; }

        static bool TypeOk(char t, Value v)
        {
            ValueKind vt = v.Type;
            switch (t)
            {
                case 's': return vt == ValueKind.Str;
                case 'S': return vt == ValueKind.Str || vt == ValueKind.Nil;
                case 'i': return vt == ValueKind.Int;
                case 'b': return vt == ValueKind.Bool;
                case 'm': return vt == ValueKind.Map;
                case 'M': return vt == ValueKind.Map || vt == ValueKind.Nil;
                case 'a': return vt == ValueKind.Array;
                case 'r': return vt == ValueKind.Float || vt == ValueKind.Int || (vt == ValueKind.Tensor && v.Dtype == Dtype.Float64 && v.Ndim == 1);
                case 'f': return vt == ValueKind.Bool || (vt == ValueKind.Tensor && v.Dtype == Dtype.Bool && v.Ndim == 1);
                case 'd':
                    if (vt == ValueKind.Nil || vt == ValueKind.Int) return true;
                    if (vt != ValueKind.Array) return false;
                    for (int i = 0; i < v.Count; i++) if (v[i].Type != ValueKind.Nil && v[i].Type != ValueKind.Int) return false;
                    return true;
            }
            return true;
        }

        /// <summary>BAD_FIELD unless the body holds exactly the kind's fields with the right types.</summary>
        public static void CheckFields(Kind kind, Value body)
        {
            string name = Wire.KindName((int)kind);
            if (body.Type != ValueKind.Map) throw new RlayException(ErrorCode.BadField, name + " body must be a map, got " + body.Describe());
            string[] names = Fields[(int)kind];
            string types = Types[(int)kind];
            bool ok = body.Count == names.Length;
            for (int i = 0; ok && i < names.Length; i++) if (!body.Get(names[i]).Exists) ok = false;
            if (!ok)
            {
                var sb = new StringBuilder(name + ": ");
                foreach (string n in names) if (!body.Get(n).Exists) sb.Append("missing field ").Append(n).Append("; ");
                for (int i = 0; i < body.Count; i++)
                    if (Array.IndexOf(names, body.KeyAt(i).AsString()) < 0) sb.Append("unknown field ").Append(body.KeyAt(i).AsString()).Append("; ");
                throw new RlayException(ErrorCode.BadField, sb.ToString().TrimEnd(' ', ';'));
            }
            for (int i = 0; i < names.Length; i++)
            {
                Value v = body.Get(names[i]);
                if (!TypeOk(types[i], v))
                    throw new RlayException(ErrorCode.BadField, name + "." + names[i] + " has the wrong type: " + v.Describe());
            }
            if (kind == Kind.EnvInfo)
            {
                Value n = body.Get("num_envs");
                if (n.IsNegative || n.AsULongBits() < 1) throw new RlayException(ErrorCode.BadField, "ENV_INFO.num_envs must be >= 1, got " + n.Describe());
            }
            else if (kind == Kind.Error)
            {
                Value c = body.Get("code");
                if (c.IsNegative || c.AsULongBits() < 1 || c.AsULongBits() > 0x7fffffff) throw new RlayException(ErrorCode.BadField, "ERROR.code must be in 1..2147483647, got " + c.Describe());
            }
        }

        /// <summary>Writes the last message received again, canonically (section 5), into w.</summary>
        public static void Recode(Kind kind, Value body, Writer w)
        {
            string[] names = Fields[(int)kind];
            w.PutMap(names.Length);
            foreach (string n in names)
            {
                w.PutKey(n);
                Value v = body.Get(n);
                if (kind == Kind.StepResult && n == "reward" && v.Type == ValueKind.Int) w.PutFloat(v.AsDouble());
                else w.PutValue(v);
            }
        }

        // ---- sending ----

        /// <summary>Queues a message whose body map is in w; UsageError if the table forbids it now.</summary>
        public void Send(Kind kind, Writer w, bool fatal = false)
        {
            int next;
            if (kind == Kind.Error) next = AfterError(State, fatal, IsEnv);
            else if ((IsEnv && SentByAgent(kind)) || (!IsEnv && SentByEnv(kind)) || kind == Kind.Hello) next = -1;
            else next = Transition(State, kind);
            if (next < 0) throw new RlayException(ErrorCode.Usage, "cannot send " + Wire.KindName((int)kind) + " in state '" + StateName(State) + "'");
            int at = OutLen;
            AppendFrame(kind, w);
            if (IsEnv && ObservationSpace != null && (kind == Kind.ResetResult || kind == Kind.StepResult)) CheckOwnObservation(at);
            State = (State)next;
        }

        /// <summary>Section 9: an env side never sends (nor rounds) an observation that does not match
        /// its space. The frame just appended at Out[at] is read back as the peer will read it; on a
        /// mismatch it is taken back and an ENV_EXCEPTION (the env code's error) is thrown.</summary>
        void CheckOwnObservation(int at)
        {
            if (outDoc == null) outDoc = new Doc();
            int dlen = (int)Wire.Rd32(Out, at + 4), blen = (int)Wire.Rd32(Out, at + 8);
            string why;
            int r;
            try
            {
                outDoc.Decode(Out, at + 12 + dlen, at + 12 + dlen + blen, at + 12, dlen);
                r = ObservationSpace.CheckStructure(outDoc.Root.Get("obs"), NumEnvs > 1 ? NumEnvs : 0, out why);
            }
            catch (RlayException e) { r = -1; why = e.Name + ": " + e.Message; }
            if (r >= 0) return;
            OutLen = at;
            throw new RlayException(ErrorCode.EnvException, "the env's observation does not match " + (NumEnvs > 1 ? "batch_space(observation_space, " + NumEnvs + ")" : "observation_space") + " (it was not sent): " + why);
        }

        /// <summary>Queues a fatal ERROR (any state but closed) and moves to closed.</summary>
        public void QueueFatal(ErrorCode code, string message)
        {
            if (State == State.Closed) return;
            var w = scratch;
            w.Clear();
            WriteError(w, (int)code, message, true, null, null);
            AppendFrame(Kind.Error, w);
            State = State.Closed;
        }

        internal static void WriteError(Writer w, int code, string message, bool fatal, string type, string tb)
        {
            w.PutMap(5);
            w.PutKey("code"); w.PutInt(code);
            w.PutKey("message"); w.PutStr(message ?? "");
            w.PutKey("fatal"); w.PutBool(fatal);
            w.PutKey("remote_type"); if (type == null) w.PutNil(); else w.PutStr(type);
            w.PutKey("traceback"); if (tb == null) w.PutNil(); else w.PutStr(tb);
        }

        /// <summary>Appends header, data section and body of w as one frame to Out (no state change).</summary>
        public void AppendFrame(Kind kind, Writer w)
        {
            if (w.TopLevelItems != 1 || !w.Complete) throw new RlayException(ErrorCode.Usage, "a message body is exactly one map");
            int total = 12 + w.DataLen + w.BodyLen;
            if (OutLen + total > Out.Length) Array.Resize(ref Out, Math.Max(Out.Length * 2, OutLen + total));
            byte[] o = Out;
            int p = OutLen;
            o[p] = 0x52; o[p + 1] = 0x4c; o[p + 2] = (byte)kind; o[p + 3] = 0;
            Wire.Wr32(o, p + 4, (uint)w.DataLen);
            Wire.Wr32(o, p + 8, (uint)w.BodyLen);
            Buffer.BlockCopy(w.Data, 0, o, p + 12, w.DataLen);
            Buffer.BlockCopy(w.Body, 0, o, p + 12 + w.DataLen, w.BodyLen);
            OutLen += total;
        }
    }

    // ============================================================================================
    // The env side over a socket: listen or dial, loop style (Poll) and callback style (Serve)

    /// <summary>What a command asks.</summary>
    public enum CommandKind { Reset = 16, Step = 17, Render = 18, Close = 19, Call = 20 }

    /// <summary>A command from the agent side. One instance is reused; its Values stay valid until
    /// the reply is sent.</summary>
    public sealed class Command
    {
        public CommandKind Kind { get; internal set; }
        /// <summary>RESET: sub-env 0 got a seed (Seed). Per sub-env: Seeded[i], Seeds[i].</summary>
        public bool HasSeed { get { return Seeded[0]; } }
        public ulong Seed { get { return Seeds[0]; } }
        /// <summary>RESET: the options map, or a nil Value for None. With NumEnvs > 1 it may hold
        /// "reset_mask" (read ResetMask instead): a sub-env's reset takes the other keys (section 10).</summary>
        public Value Options { get; internal set; }
        /// <summary>STEP: the action, already checked against the action space.</summary>
        public Value Action { get; internal set; }
        /// <summary>CALL: the function's name, positional and keyword arguments.</summary>
        public string Name { get; internal set; }
        public Value Args { get; internal set; }
        public Value Kwargs { get; internal set; }
        /// <summary>Per sub-env (NumEnvs entries, also for one env). RESET: Seeded/Seeds; ResetMask
        /// (all true unless options held "reset_mask"). STEP: Autoreset (the sub-env's episode
        /// ended at the previous STEP and it was not reset since).</summary>
        public bool[] Seeded { get; internal set; }
        public ulong[] Seeds { get; internal set; }
        public bool[] ResetMask { get; internal set; }
        public bool[] Autoreset { get; internal set; }
    }

    /// <summary>Callback style: subclass, then env.Serve(callbacks). An exception thrown here is
    /// answered as ENV_EXCEPTION (NotSupportedException as NOT_SUPPORTED) and the session goes on.</summary>
    public abstract class Callbacks
    {
        /// <summary>Write env.Obs (and env.Info).</summary>
        public abstract void Reset(Env env, Command cmd);
        /// <summary>Write env.Obs (and env.Info); set env.Reward/Terminated/Truncated, or for a batch
        /// env.Rewards[i], env.Terminations[i], env.Truncations[i].</summary>
        public abstract void Step(Env env, Command cmd);
        /// <summary>Write env.Frame (one value).</summary>
        public virtual void Render(Env env, Command cmd) { throw new NotSupportedException("this env does not render"); }
        /// <summary>Write env.Result (one value).</summary>
        public virtual void Call(Env env, Command cmd) { throw new NotSupportedException("this env has no function named '" + cmd.Name + "'"); }
        public virtual void Close(Env env) { }
    }

    /// <summary>A unix socket address for the netstandard2.0 socket API (it has no
    /// UnixDomainSocketEndPoint): sockaddr_un is the family, then the path, NUL-terminated.</summary>
    public sealed class UnixEndPoint : EndPoint
    {
        public readonly string Path;
        public UnixEndPoint(string path) { Path = path; }
        public override AddressFamily AddressFamily { get { return AddressFamily.Unix; } }
        public override SocketAddress Serialize()
        {
            byte[] b = Encoding.UTF8.GetBytes(Path);
            var sa = new SocketAddress(AddressFamily.Unix, 2 + b.Length + 1);
            for (int i = 0; i < b.Length; i++) sa[2 + i] = b[i];
            sa[2 + b.Length] = 0;
            return sa;
        }
        public override EndPoint Create(SocketAddress sa)
        {
            int n = 0;
            while (2 + n < sa.Size && sa[2 + n] != 0) n++;
            var b = new byte[n];
            for (int i = 0; i < n; i++) b[i] = sa[2 + i];
            return new UnixEndPoint(Encoding.UTF8.GetString(b));
        }
        public override string ToString() { return "unix://" + Path; }
    }

    /// <summary>The env side of one session (section 1): hosts one env or a batch of NumEnvs.</summary>
    public sealed class Env : IDisposable
    {
        public readonly Space ObservationSpace, ActionSpace;
        /// <summary>Sub-envs hosted on this connection (section 10); set before Listen/Connect.</summary>
        public int NumEnvs = 1;
        public string Name;
        /// <summary>ENV_INFO.render_mode, e.g. "rgb_array" (null: none).</summary>
        public string RenderMode;
        /// <summary>ENV_INFO.metadata: key/value pairs (PutKey, then a value).</summary>
        public readonly Writer Metadata = new Writer();
        public int MaxFrameSize = Wire.DefaultMaxFrameSize;
        /// <summary>Section 13's other limits of what this side receives: the first frame (the agent's
        /// HELLO, 64 KiB) and the values one body may declare (262 144; a tensor counts 8).</summary>
        public int MaxHandshakeFrameSize = Wire.DefaultMaxHandshakeFrameSize, MaxValues = Wire.DefaultMaxValues;
        /// <summary>How long a dialer keeps trying to reach a listener that is not up yet (ms; -1: forever).</summary>
        public int ConnectTimeoutMs = 10000;

        /// <summary>The reply's observation (one value), info (key/value pairs), render frame, call result.</summary>
        public readonly Writer Obs = new Writer(), Info = new Writer(), Frame = new Writer(), Result = new Writer();
        /// <summary>Callback style, one env: the step's outcome.</summary>
        public double Reward;
        public bool Terminated, Truncated;
        /// <summary>A batch's outcomes (NumEnvs entries; allocated by Listen/Connect).</summary>
        public double[] Rewards;
        public bool[] Terminations, Truncations;

        /// <summary>True once the session has ended; Error is null for an orderly end.</summary>
        public bool IsOver { get; private set; }
        public RlayException Error { get; private set; }
        /// <summary>The address listened on (port 0 resolved), or dialled.</summary>
        public string Address { get; private set; }
        /// <summary>True between the handshake and the end of the session.</summary>
        public bool IsReady { get { return conn != null && !IsOver && conn.State != State.Hello && conn.State != State.Describe; } }
        /// <summary>A command is waiting for its reply.</summary>
        public bool ReplyOwed { get { return owed != 0; } }

        Socket listener, sock, dialSock;
        string listenPath;
        EndPoint target;
        bool dialing;
        long dialDeadline, nextDial;
        Connection conn;
        readonly Command cmd = new Command();
        CommandKind owed;
        bool[] resetOnce;   // per sub-env: reset at least once (section 8: STEP is RESET_NEEDED until all are)
        bool[] ended;
        readonly Writer frame = new Writer();
        readonly System.Diagnostics.Stopwatch clock = System.Diagnostics.Stopwatch.StartNew();

        public Env(Space observationSpace, Space actionSpace)
        {
            if (!BitConverter.IsLittleEndian) throw new RlayException(ErrorCode.Usage, "rlay-csharp needs a little-endian host");
            ObservationSpace = observationSpace ?? throw new ArgumentNullException("observationSpace");
            ActionSpace = actionSpace ?? throw new ArgumentNullException("actionSpace");
        }

        // ---- connecting ----

        static EndPoint Parse(string address, out bool unix)
        {
            unix = false;
            if (address == null) throw new RlayException(ErrorCode.Address, "no address (expected tcp://HOST:PORT or unix:///path)");
            if (address.StartsWith("unix://", StringComparison.Ordinal))
            {
                string path = address.Substring(7);
                if (path.Length == 0 || path[0] != '/') throw new RlayException(ErrorCode.Address, "a unix address needs an absolute path: unix:///path, got '" + address + "'");
                unix = true;
                return new UnixEndPoint(path);
            }
            if (address.StartsWith("tcp://", StringComparison.Ordinal))
            {
                string rest = address.Substring(6);
                int colon = rest.LastIndexOf(':');
                if (colon <= 0) throw new RlayException(ErrorCode.Address, "a tcp address is tcp://HOST:PORT, got '" + address + "'");
                string host = rest.Substring(0, colon);
                if (host.StartsWith("[") && host.EndsWith("]")) host = host.Substring(1, host.Length - 2);
                if (!int.TryParse(rest.Substring(colon + 1), out int port) || port < 0 || port > 65535)
                    throw new RlayException(ErrorCode.Address, "bad port in '" + address + "'");
                IPAddress ip;
                if (host == "localhost") ip = IPAddress.Loopback;
                else if (!IPAddress.TryParse(host, out ip))
                {
                    try { ip = Dns.GetHostAddresses(host)[0]; }
                    catch (Exception e) { throw new RlayException(ErrorCode.Address, "cannot resolve '" + host + "': " + e.Message); }
                }
                return new IPEndPoint(ip, port);
            }
            throw new RlayException(ErrorCode.Address, "unknown address scheme in '" + address + "' (expected tcp://HOST:PORT or unix:///path)");
        }

        void Prepare()
        {
            if (conn != null || listener != null || dialing) throw new RlayException(ErrorCode.Usage, "this Env already listens or dials; one Env serves one session");
            if (NumEnvs < 1) throw new RlayException(ErrorCode.Usage, "NumEnvs must be >= 1");
            if (!Metadata.Complete || Metadata.TopLevelItems % 2 != 0)
                throw new RlayException(ErrorCode.Usage, "Metadata must hold complete key/value pairs (PutKey, then a value)");
            int n = NumEnvs;
            Rewards = new double[n]; Terminations = new bool[n]; Truncations = new bool[n];
            ended = new bool[n];
            resetOnce = new bool[n];
            cmd.Seeded = new bool[n]; cmd.Seeds = new ulong[n]; cmd.ResetMask = new bool[n]; cmd.Autoreset = new bool[n];
        }

        /// <summary>Listens at address (port 0: any free port; see Address) for the agent to dial
        /// (Python rlay.ClientEnv). Returns at once; Poll accepts the connection.</summary>
        public void Listen(string address)
        {
            Prepare();
            EndPoint ep = Parse(address, out bool unix);
            var s = new Socket(ep.AddressFamily, SocketType.Stream, unix ? ProtocolType.Unspecified : ProtocolType.Tcp);
            try
            {
                try { s.Bind(ep); }
                catch (SocketException e) when (unix && e.SocketErrorCode == SocketError.AddressAlreadyInUse)
                {
                    // A stale socket file from a dead process: nobody accepts on it, so it can go.
                    using (var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
                    {
                        try { probe.Connect(ep); throw new RlayException(ErrorCode.Address, "'" + address + "' is in use by a live listener"); }
                        catch (SocketException) { System.IO.File.Delete(((UnixEndPoint)ep).Path); }
                    }
                    s.Bind(ep);
                }
                s.Listen(1);
            }
            catch (SocketException e)
            {
                s.Close();
                throw new RlayException(ErrorCode.Address, "cannot listen at '" + address + "': " + e.Message);
            }
            listener = s;
            if (unix) listenPath = ((UnixEndPoint)ep).Path;
            Address = unix ? address : "tcp://" + Host(((IPEndPoint)s.LocalEndPoint).Address) + ":" + ((IPEndPoint)s.LocalEndPoint).Port;
        }
        static string Host(IPAddress ip) { return ip.AddressFamily == AddressFamily.InterNetworkV6 ? "[" + ip + "]" : ip.ToString(); }

        /// <summary>Dials the agent that listens at address (Python rlay.ServerEnv). Returns at once;
        /// Poll connects, retrying a refused connection for ConnectTimeoutMs.</summary>
        public void Connect(string address)
        {
            Prepare();
            target = Parse(address, out bool _);
            Address = address;
            dialing = true;
            dialDeadline = ConnectTimeoutMs < 0 ? long.MaxValue : clock.ElapsedMilliseconds + ConnectTimeoutMs;
            nextDial = 0;
        }

        /// <summary>The launcher's variables (RLAY_ADDRESS, RLAY_MODE = listen | dial; unset: listen),
        /// unless address/mode are given. A listener prints "RLAY_LISTENING address" on stdout.</summary>
        public void Start(string address = null, string mode = null)
        {
            address = address ?? Environment.GetEnvironmentVariable("RLAY_ADDRESS");
            // Section 15: RLAY_MODE unset or empty means listen; any other value is an error.
            mode = mode ?? Environment.GetEnvironmentVariable("RLAY_MODE");
            if (string.IsNullOrEmpty(mode)) mode = "listen";
            if (mode != "listen" && mode != "dial")
                throw new RlayException(ErrorCode.Usage, "RLAY_MODE must be 'listen' or 'dial' (or unset), got '" + mode + "'");
            if (address == null) throw new RlayException(ErrorCode.Address, "no address: pass one or set RLAY_ADDRESS");
            if (mode == "dial") Connect(address);
            else if (mode == "listen")
            {
                Listen(address);
                Console.Out.WriteLine("RLAY_LISTENING " + Address);
                Console.Out.Flush();
            }
            else throw new RlayException(ErrorCode.Usage, "RLAY_MODE must be 'listen' or 'dial', got '" + mode + "'");
        }

        bool TryOpen(int waitMs)
        {
            if (listener != null)
            {
                if (!listener.Poll(Micro(waitMs), SelectMode.SelectRead)) return false;
                sock = listener.Accept();
                listener.Close();
                listener = null;
                // One session per Env: the socket file has done its job (no stale file is left).
                if (listenPath != null) { try { System.IO.File.Delete(listenPath); } catch (Exception) { } }
            }
            else if (dialing)
            {
                // A non-blocking connect: Poll never waits on the network longer than it was told.
                if (dialSock == null)
                {
                    long now = clock.ElapsedMilliseconds;
                    if (now < nextDial)
                    {
                        int w = (int)Math.Min(nextDial - now, waitMs < 0 ? int.MaxValue : waitMs);
                        if (w > 0) System.Threading.Thread.Sleep(w);
                        if (clock.ElapsedMilliseconds < nextDial) return false;
                    }
                    dialSock = new Socket(target.AddressFamily, SocketType.Stream, target is UnixEndPoint ? ProtocolType.Unspecified : ProtocolType.Tcp);
                    dialSock.Blocking = false;
                    try { dialSock.Connect(target); }
                    catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock || e.SocketErrorCode == SocketError.InProgress || e.SocketErrorCode == SocketError.AlreadyInProgress) { }
                    catch (SocketException e) { return DialFailed(e.Message); }
                }
                if (!dialSock.Poll(Micro(waitMs), SelectMode.SelectWrite) && !dialSock.Poll(0, SelectMode.SelectError))
                {
                    if (clock.ElapsedMilliseconds >= dialDeadline) return DialFailed("timed out");
                    return false;
                }
                int soError = (int)dialSock.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Error);
                if (soError != 0) return DialFailed(new SocketException(soError).Message);
                dialing = false;
                sock = dialSock;
                dialSock = null;
            }
            else return false;
            if (sock.AddressFamily != AddressFamily.Unix) sock.NoDelay = true;
            sock.Blocking = false;
            conn = new Connection(true) { MaxFrameSize = MaxFrameSize, MaxHandshakeFrameSize = MaxHandshakeFrameSize, MaxValues = MaxValues };
            Flush();
            return true;
        }

        /// <summary>A refused dial is retried every 100 ms until ConnectTimeoutMs has passed.</summary>
        bool DialFailed(string why)
        {
            dialSock.Close();
            dialSock = null;
            if (clock.ElapsedMilliseconds >= dialDeadline)
                throw new RlayException(ErrorCode.Io, "cannot connect to '" + Address + "': " + why);
            nextDial = clock.ElapsedMilliseconds + 100;
            return false;
        }

        // ---- the loop ----

        static int Micro(int ms) { return ms < 0 ? -1 : (int)Math.Min(ms * 1000L, int.MaxValue); }

        long Deadline(int timeoutMs) { return timeoutMs < 0 ? long.MaxValue : clock.ElapsedMilliseconds + timeoutMs; }
        int Left(long deadline)
        {
            if (deadline == long.MaxValue) return -1;
            return (int)Math.Max(0, deadline - clock.ElapsedMilliseconds);
        }

        /// <summary>The next command, or null if none is ready within timeoutMs (0: never blocks;
        /// -1: waits until a command or the end of the session). Null while a reply is owed, and
        /// once IsOver. Accepting, dialling and the handshake happen in here.</summary>
        public Command Poll(int timeoutMs = 0)
        {
            if (IsOver || owed != 0) return null;
            if (conn == null && listener == null && !dialing) throw new RlayException(ErrorCode.Usage, "call Listen, Connect or Start before Poll");
            long deadline = Deadline(timeoutMs);
            try
            {
                while (true)
                {
                    if (conn == null)
                    {
                        if (!TryOpen(Left(deadline)))
                        {
                            if (Left(deadline) == 0) return null;
                            continue;
                        }
                    }
                    conn.Compact();
                    while (conn.Next())
                    {
                        Command c = Handle();
                        if (c != null) return c;
                        if (IsOver) return null;
                    }
                    if (!Read(Left(deadline)))
                    {
                        if (IsOver || Left(deadline) == 0) return null;
                    }
                }
            }
            catch (RlayException e)
            {
                Finish(e);
                return null;
            }
            catch (SocketException e)
            {
                Finish(new RlayException(ErrorCode.Io, "socket error: " + e.Message));
                return null;
            }
        }

        /// <summary>Reads what is there (waiting up to waitMs); false if nothing came.</summary>
        bool Read(int waitMs)
        {
            if (!sock.Poll(Micro(waitMs), SelectMode.SelectRead)) return false;
            int room = conn.RecvRoom;
            int n = sock.Receive(conn.RecvBuffer, conn.RecvEnd, room, SocketFlags.None, out SocketError err);
            if (err == SocketError.WouldBlock) return false;
            if (err == SocketError.ConnectionReset) n = 0;
            else if (err != SocketError.Success) throw new RlayException(ErrorCode.Io, "receive failed: " + err);
            if (n == 0)
            {
                conn.FeedEof();
                // Section 8: the end of the stream is orderly after CLOSE, and for an env side in idle.
                if (conn.State == State.Closed || conn.State == State.Idle) Finish(null);
                else Finish(new RlayException(ErrorCode.PeerClosed, "connection closed by peer during the handshake (state '" + conn.State.ToString().ToLowerInvariant() + "')"));
                return false;
            }
            conn.Received(n);
            return true;
        }

        void Flush()
        {
            int off = 0;
            while (off < conn.OutLen)
            {
                int n = sock.Send(conn.Out, off, conn.OutLen - off, SocketFlags.None, out SocketError err);
                if (err == SocketError.WouldBlock) { sock.Poll(100000, SelectMode.SelectWrite); continue; }
                if (err != SocketError.Success)
                {
                    conn.OutLen = 0;
                    throw new RlayException(err == SocketError.ConnectionReset || err == SocketError.Shutdown ? ErrorCode.PeerClosed : ErrorCode.Io, "send failed: " + err);
                }
                off += n;
            }
            conn.OutLen = 0;
        }

        void Finish(RlayException e)
        {
            if (IsOver) return;
            IsOver = true;
            Error = e;
            if (sock != null)
            {
                try { if (conn != null && conn.OutLen > 0) Flush(); } catch (Exception) { }
                try { sock.Shutdown(SocketShutdown.Both); } catch (Exception) { }
                sock.Close();
                sock = null;
            }
            if (listener != null) { listener.Close(); listener = null; }
            if (dialSock != null) { dialSock.Close(); dialSock = null; }
            owed = 0;
        }

        Command Handle()
        {
            Value body = conn.Body;
            switch (conn.LastKind)
            {
                case Kind.Hello: SendEnvInfo(); return null;
                case Kind.Error:
                    {
                        // The agent sends only fatal ERRORs (section 8): the session is over.
                        string m = body.Get("message").AsString();
                        Finish(new RlayException((ErrorCode)body.Get("code").AsLong(), "the agent side ended the session: " + m, true));
                        return null;
                    }
                case Kind.Reset: return OnReset(body);
                case Kind.Step: return OnStep(body);
                case Kind.Render: cmd.Kind = CommandKind.Render; owed = CommandKind.Render; return cmd;
                case Kind.Close: cmd.Kind = CommandKind.Close; owed = CommandKind.Close; return cmd;
                case Kind.Call:
                    cmd.Kind = CommandKind.Call;
                    cmd.Name = body.Get("name").AsString();
                    cmd.Args = body.Get("args");
                    cmd.Kwargs = body.Get("kwargs");
                    owed = CommandKind.Call;
                    return cmd;
            }
            throw new RlayException(ErrorCode.Internal, "unhandled message " + conn.LastKind);
        }

        void SendEnvInfo()
        {
            var w = frame;
            w.Clear();
            w.PutMap(6);
            w.PutKey("observation_space"); ObservationSpace.Write(w);
            w.PutKey("action_space"); ActionSpace.Write(w);
            w.PutKey("num_envs"); w.PutInt(NumEnvs);
            w.PutKey("metadata"); w.PutMap(Metadata.TopLevelItems / 2); w.Append(Metadata);
            w.PutKey("render_mode"); if (RenderMode == null) w.PutNil(); else w.PutStr(RenderMode);
            w.PutKey("name"); if (Name == null) w.PutNil(); else w.PutStr(Name);
            // The core checks actions, RESETs and our own observations against these (sections 9, 10).
            conn.NumEnvs = NumEnvs; conn.ObservationSpace = ObservationSpace; conn.ActionSpace = ActionSpace;
            conn.Send(Kind.EnvInfo, w);
            Flush();
        }

        Command OnReset(Value body)
        {
            int n = NumEnvs;
            Value seed = body.Get("seed"), options = body.Get("options");
            for (int i = 0; i < n; i++) { cmd.Seeded[i] = false; cmd.Seeds[i] = 0; cmd.ResetMask[i] = true; }
            // The core has checked seed and reset_mask against num_envs (section 10: BAD_FIELD).
            if (seed.Type == ValueKind.Int)
                for (int i = 0; i < n; i++) { cmd.Seeded[i] = true; cmd.Seeds[i] = seed.AsULongBits() + (ulong)i; }
            else if (seed.Type == ValueKind.Array)
                for (int i = 0; i < n; i++)
                {
                    Value s = seed[i];
                    if (s.IsNil) continue;
                    cmd.Seeded[i] = true; cmd.Seeds[i] = s.AsULongBits();
                }
            // With one env, reset_mask is an ordinary option, passed on as is (section 10).
            Value mask = n > 1 ? options.Get("reset_mask") : default(Value);
            if (mask.Type == ValueKind.Tensor)
                for (int i = 0; i < n; i++) cmd.ResetMask[i] = mask.GetLong(i) != 0;
            for (int i = 0; i < n; i++)
            {
                if (cmd.ResetMask[i]) { ended[i] = false; resetOnce[i] = true; }
                else cmd.Seeded[i] = false;   // section 10: seeds of unselected sub-envs are ignored
            }
            cmd.Kind = CommandKind.Reset;
            cmd.Options = options;
            owed = CommandKind.Reset;
            return cmd;
        }

        Command OnStep(Value body)
        {
            // Section 8's order: the action's structure (BAD_VALUE, fatal: the core checked it on
            // receipt), then RESET_NEEDED, then the bounds (INVALID_ACTION), both non-fatal.
            Value action = body.Get("action");
            owed = CommandKind.Step;
            for (int i = 0; i < NumEnvs; i++)
                if (!resetOnce[i])
                {
                    ReplyError(ErrorCode.ResetNeeded, NumEnvs > 1 ? "step() called before sub-env " + i + " was ever reset" : "step() called before reset()");
                    return null;
                }
            int r = ActionSpace.Check(action, NumEnvs > 1 ? NumEnvs : 0, out string why);
            if (r < 0) Fatal(ErrorCode.BadValue, "the action does not match the action space: " + why);
            if (r > 0)
            {
                ReplyError(ErrorCode.InvalidAction, "the action is outside the action space: " + why);
                return null;
            }
            for (int i = 0; i < NumEnvs; i++) cmd.Autoreset[i] = ended[i];
            cmd.Kind = CommandKind.Step;
            cmd.Action = action;
            return cmd;
        }

        void Fatal(ErrorCode code, string message)
        {
            conn.QueueFatal(code, message);
            throw new RlayException(code, message);
        }

        // ---- replies ----

        void Owe(CommandKind k, string what)
        {
            if (IsOver) throw new RlayException(ErrorCode.Usage, what + ": the session is over" + (Error != null ? " (" + Error.Message + ")" : ""));
            if (owed != k) throw new RlayException(ErrorCode.Usage, what + ": " + (owed == 0 ? "no command is waiting for a reply" : "the command waiting is " + owed));
        }

        void One(Writer w, string what)
        {
            if (w.TopLevelItems != 1 || !w.Complete)
                throw new RlayException(ErrorCode.Usage, what + " must hold exactly one complete value (it holds " + w.TopLevelItems + (w.Complete ? "" : ", incomplete") + ")");
        }
        void Pairs(Writer w)
        {
            if (w.TopLevelItems % 2 != 0 || !w.Complete) throw new RlayException(ErrorCode.Usage, "Info must hold key/value pairs (PutKey, then a value)");
        }

        void Send(Kind kind)
        {
            CommandKind was = owed;
            owed = 0;
            Obs.Clear(); Info.Clear(); Frame.Clear(); Result.Clear();
            try
            {
                conn.Send(kind, frame);
                Flush();
            }
            catch (RlayException e) when (e.Code == ErrorCode.EnvException)
            {
                // Section 9: an observation that does not match its space is the env code's error;
                // it was not sent (nor rounded): the command is answered with ENV_EXCEPTION instead.
                owed = was;
                ReplyError(ErrorCode.EnvException, e.Message, "ValueError", e.Message);
                return;
            }
            catch (RlayException e) when (e.Code != ErrorCode.Usage) { Finish(e); }
            catch (SocketException e) { Finish(new RlayException(ErrorCode.Io, "socket error: " + e.Message)); }
            if (kind == Kind.CloseResult) Finish(null);
        }

        /// <summary>Answers RESET with Obs and Info.</summary>
        public void ReplyReset()
        {
            Owe(CommandKind.Reset, "ReplyReset");
            One(Obs, "Obs"); Pairs(Info);
            var w = frame;
            w.Clear();
            w.PutMap(2);
            w.PutKey("obs"); w.Append(Obs);
            w.PutKey("info"); w.PutMap(Info.TopLevelItems / 2); w.Append(Info);
            Send(Kind.ResetResult);
        }

        /// <summary>Answers STEP of one env with Obs, Info and these.</summary>
        public void ReplyStep(double reward, bool terminated, bool truncated)
        {
            Owe(CommandKind.Step, "ReplyStep");
            if (NumEnvs > 1) throw new RlayException(ErrorCode.Usage, "a batch of " + NumEnvs + " answers STEP with ReplyStepBatch");
            One(Obs, "Obs"); Pairs(Info);
            var w = frame;
            w.Clear();
            w.PutMap(5);
            w.PutKey("obs"); w.Append(Obs);
            w.PutKey("reward"); w.PutFloat(reward);
            w.PutKey("terminated"); w.PutBool(terminated);
            w.PutKey("truncated"); w.PutBool(truncated);
            w.PutKey("info"); w.PutMap(Info.TopLevelItems / 2); w.Append(Info);
            ended[0] = terminated || truncated;
            Send(Kind.StepResult);
        }

        /// <summary>Answers STEP of a batch with Obs (batched), Info, Rewards, Terminations, Truncations.</summary>
        public void ReplyStepBatch()
        {
            Owe(CommandKind.Step, "ReplyStepBatch");
            One(Obs, "Obs"); Pairs(Info);
            var w = frame;
            w.Clear();
            w.PutMap(5);
            w.PutKey("obs"); w.Append(Obs);
            w.PutKey("reward"); w.PutTensor(Rewards);
            w.PutKey("terminated"); w.PutTensor(Terminations);
            w.PutKey("truncated"); w.PutTensor(Truncations);
            w.PutKey("info"); w.PutMap(Info.TopLevelItems / 2); w.Append(Info);
            for (int i = 0; i < NumEnvs; i++) ended[i] = Terminations[i] || Truncations[i];
            Send(Kind.StepResult);
        }

        /// <summary>Answers RENDER with Frame (one value; nil if nothing was written).</summary>
        public void ReplyRender()
        {
            Owe(CommandKind.Render, "ReplyRender");
            var w = frame;
            w.Clear();
            w.PutMap(1);
            w.PutKey("frame");
            if (Frame.TopLevelItems == 0) w.PutNil(); else { One(Frame, "Frame"); w.Append(Frame); }
            Send(Kind.RenderResult);
        }

        /// <summary>Answers CALL with Result (one value; nil if nothing was written).</summary>
        public void ReplyCall()
        {
            Owe(CommandKind.Call, "ReplyCall");
            var w = frame;
            w.Clear();
            w.PutMap(1);
            w.PutKey("value");
            if (Result.TopLevelItems == 0) w.PutNil(); else { One(Result, "Result"); w.Append(Result); }
            Send(Kind.CallResult);
        }

        /// <summary>Answers CLOSE; the session then ends (IsOver, Error null).</summary>
        public void ReplyClose()
        {
            Owe(CommandKind.Close, "ReplyClose");
            frame.Clear();
            frame.PutMap(0);
            Send(Kind.CloseResult);
        }

        /// <summary>Answers the command waiting with an ERROR (section 11). Not fatal: the session goes on.</summary>
        public void ReplyError(ErrorCode code, string message, string remoteType = null, string traceback = null, bool fatal = false)
        {
            if (owed == 0) throw new RlayException(ErrorCode.Usage, "ReplyError: no command is waiting for a reply");
            frame.Clear();
            Connection.WriteError(frame, (int)code, message, fatal, remoteType, traceback);
            bool wasClose = owed == CommandKind.Close;
            owed = 0;
            Obs.Clear(); Info.Clear(); Frame.Clear(); Result.Clear();
            try { conn.Send(Kind.Error, frame, fatal); Flush(); }
            catch (RlayException e) { Finish(e); }
            catch (SocketException e) { Finish(new RlayException(ErrorCode.Io, "socket error: " + e.Message)); }
            if (fatal || wasClose) Finish(fatal ? new RlayException(code, message) : null);
        }

        /// <summary>Answers the command waiting with ENV_EXCEPTION: the exception's type and stack trace.</summary>
        public void ReplyException(Exception e)
        {
            if (e is NotSupportedException) ReplyError(ErrorCode.NotSupported, e.Message);
            else ReplyError(ErrorCode.EnvException, e.Message, e.GetType().Name, e.ToString());
        }

        /// <summary>The default answer: CLOSE_RESULT for CLOSE, NOT_SUPPORTED for anything else.</summary>
        public void ReplyDefault(Command c)
        {
            if (c.Kind == CommandKind.Close) ReplyClose();
            else if (c.Kind == CommandKind.Call) ReplyError(ErrorCode.NotSupported, "this env has no function named '" + c.Name + "'");
            else ReplyError(ErrorCode.NotSupported, "this env does not answer " + c.Kind.ToString().ToUpperInvariant());
        }

        /// <summary>Callback style: serves the session until it ends. Returns Error (null: orderly).</summary>
        public RlayException Serve(Callbacks callbacks, int pollMs = -1)
        {
            while (!IsOver)
            {
                Command c = Poll(pollMs);
                if (c == null) continue;
                try
                {
                    switch (c.Kind)
                    {
                        case CommandKind.Reset: callbacks.Reset(this, c); ReplyReset(); break;
                        case CommandKind.Step:
                            Reward = 0; Terminated = false; Truncated = false;
                            for (int i = 0; i < NumEnvs; i++) { Rewards[i] = 0; Terminations[i] = false; Truncations[i] = false; }
                            callbacks.Step(this, c);
                            if (NumEnvs > 1) ReplyStepBatch(); else ReplyStep(Reward, Terminated, Truncated);
                            break;
                        case CommandKind.Render: callbacks.Render(this, c); ReplyRender(); break;
                        case CommandKind.Call: callbacks.Call(this, c); ReplyCall(); break;
                        case CommandKind.Close: callbacks.Close(this); ReplyClose(); break;
                    }
                }
                catch (Exception e)
                {
                    if (owed != 0 && !IsOver) ReplyException(e);
                    else throw;
                }
            }
            return Error;
        }

        /// <summary>Ends the session: a live peer is told SHUTTING_DOWN (a fatal ERROR).</summary>
        public void Dispose()
        {
            if (IsOver) return;
            if (conn != null && sock != null && conn.State != State.Closed)
            {
                try { conn.QueueFatal(ErrorCode.ShuttingDown, "the env side is shutting down"); Flush(); } catch (Exception) { }
            }
            Finish(null);
        }
    }
}
