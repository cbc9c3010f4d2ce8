// Unit tests of rlay-csharp: the codec's canonical bytes, received values, spaces, the state
// machine, usage errors, and the allocation-free step path. Prints "N passed, M failed".
using System;
using System.Text;
using Rlay;

static class UnitTests
{
    static int passed, failed;

    static void Check(bool ok, string what)
    {
        if (ok) passed++;
        else { failed++; Console.WriteLine("FAIL " + what); }
    }

    static string Hex(byte[] b, int p, int n)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < n; i++) sb.Append(b[p + i].ToString("x2"));
        return sb.ToString();
    }
    static string BodyHex(Writer w) { return Hex(w.Body, 0, w.BodyLen); }
    static string DataHex(Writer w) { return Hex(w.Data, 0, w.DataLen); }

    static void Bytes(Action<Writer> put, string want, string what)
    {
        var w = new Writer();
        put(w);
        string got = BodyHex(w);
        Check(got == want, what + ": got " + got + ", expected " + want);
    }

    static ErrorCode Throws(Action a)
    {
        try { a(); }
        catch (RlayException e) { return e.Code; }
        return 0;
    }

    /// <summary>A body (one value) decoded stand-alone as a CALL_RESULT's value.</summary>
    static Connection Decoded(Writer value)
    {
        var w = new Writer();
        w.PutMap(1); w.PutKey("value"); w.Append(value);
        var src = new Connection(true) { OutLen = 0 };
        src.AppendFrame(Kind.CallResult, w);
        var c = new Connection(false);
        c.Feed(src.Out, 0, src.OutLen);
        c.NextStandalone();
        return c;
    }
    static ErrorCode DecodeError(string frameHex)
    {
        var b = new byte[frameHex.Length / 2];
        for (int i = 0; i < b.Length; i++) b[i] = Convert.ToByte(frameHex.Substring(2 * i, 2), 16);
        var c = new Connection(false);
        return Throws(() => { c.Feed(b, 0, b.Length); while (c.NextStandalone()) { } c.FeedEof(); });
    }
    static string Frame(int kind, string bodyHex)
    {
        int n = bodyHex.Length / 2;
        return "524c" + kind.ToString("x2") + "0000000000" + ((byte)n).ToString("x2") + ((byte)(n >> 8)).ToString("x2") + "0000" + bodyHex;
    }

    static void Codec()
    {
        // canonical ints (section 5): the shortest family
        Bytes(w => w.PutInt(0), "00", "0");
        Bytes(w => w.PutInt(127), "7f", "127");
        Bytes(w => w.PutInt(128), "cc80", "128");
        Bytes(w => w.PutInt(256), "cd0100", "256");
        Bytes(w => w.PutInt(65536), "ce00010000", "65536");
        Bytes(w => w.PutInt(1L << 32), "cf0000000100000000", "2^32");
        Bytes(w => w.PutUInt(ulong.MaxValue), "cfffffffffffffffff", "2^64-1");
        Bytes(w => w.PutInt(-1), "ff", "-1");
        Bytes(w => w.PutInt(-32), "e0", "-32");
        Bytes(w => w.PutInt(-33), "d0df", "-33");
        Bytes(w => w.PutInt(-129), "d1ff7f", "-129");
        Bytes(w => w.PutInt(-32769), "d2ffff7fff", "-32769");
        Bytes(w => w.PutInt(long.MinValue), "d38000000000000000", "int64 min");
        // floats are always float 64, ints never floats
        Bytes(w => w.PutFloat(1), "cb3ff0000000000000", "1.0");
        Bytes(w => w.PutFloat(double.NaN), "cbfff8000000000000", "NaN (C#'s NaN bits)");
        Bytes(w => w.PutFloat(-0.0), "cb8000000000000000", "-0.0");
        // str/bin/array/map headers
        Bytes(w => w.PutStr(new string('a', 31)), "bf" + new StringBuilder().Insert(0, "61", 31), "fixstr 31");
        Bytes(w => w.PutStr(new string('a', 32)), "d920" + new StringBuilder().Insert(0, "61", 32), "str8 32");
        Bytes(w => w.PutStr("é"), "a2c3a9", "utf-8");
        Bytes(w => w.PutBytes(new byte[] { 1, 2 }, 0, 2), "c4020102", "bin8");
        Bytes(w => { w.PutArray(16); for (int i = 0; i < 16; i++) w.PutNil(); }, "dc0010" + new StringBuilder().Insert(0, "c0", 16), "array16");
        Bytes(w => { w.PutMap(1); w.PutKey("a"); w.PutBool(true); }, "81a161c3", "map");
        // tensors: document order, 8-byte aligned, gaps zero, an empty tensor at offset 0
        var t = new Writer();
        t.PutArray(3);
        t.PutTensor(new byte[] { 1, 2, 3 });
        t.PutTensor(new float[0]);
        t.PutTensor(new double[] { 2.0 });
        Check(DataHex(t) == "0102030000000000" + "0000000000000040", "tensor layout data: " + DataHex(t));
        Check(BodyHex(t) == "93c70a0106010300000000000000c70a010b010000000000000000c70a010c010100000008000000", "tensor layout body: " + BodyHex(t));
        // Append relocates a writer's tensors after the ones already there
        var outer = new Writer();
        outer.PutArray(2);
        outer.PutTensor(new byte[] { 9 });
        var inner = new Writer();
        inner.PutTensor(new int[] { 7 });
        outer.Append(inner);
        Check(DataHex(outer) == "0900000000000000" + "07000000", "append relocates: " + DataHex(outer));
        Check(BodyHex(outer).EndsWith("08000000"), "append patches the offset: " + BodyHex(outer));
        Check(outer.Complete && outer.TopLevelItems == 1, "append counts items");
        // an incomplete container is refused where it is appended
        var half = new Writer();
        half.PutArray(2); half.PutNil();
        Check(!half.Complete && Throws(() => new Writer().Append(half)) == ErrorCode.Usage, "incomplete writer refused");
        Check(Throws(() => new Writer().PutTensor(new float[3], new[] { 2, 2 })) == ErrorCode.Usage, "tensor larger than its array refused");
        Check(Throws(() => new Writer().PutTensor(new float[3], new int[33])) == ErrorCode.Usage, "33 dimensions refused");
    }

    static void Values()
    {
        var w = new Writer();
        w.PutMap(5);
        w.PutKey("i"); w.PutInt(-5);
        w.PutKey("u"); w.PutUInt(ulong.MaxValue);
        w.PutKey("f"); w.PutFloat(0.25);
        w.PutKey("s"); w.PutStr("héllo");
        w.PutKey("t"); w.PutTensor(new long[] { 3, -4 }, new[] { 2, 1 });
        var c = Decoded(w);
        Value v = c.Body.Get("value");
        Check(v.Type == ValueKind.Map && v.Count == 5, "map of 5");
        Check(v.Get("i").AsLong() == -5 && v.Get("i").IsNegative, "negative int");
        Check(v.Get("u").AsULongBits() == ulong.MaxValue && Throws(() => v.Get("u").AsLong()) == ErrorCode.Usage, "uint64 max");
        Check(v.Get("f").AsDouble() == 0.25 && v.Get("i").AsDouble() == -5, "floats and ints as doubles");
        Check(v.Get("s").AsString() == "héllo" && v.Get("s").IsString("héllo") && !v.Get("s").IsString("hello"), "strings");
        Value t = v.Get("t");
        Check(t.Type == ValueKind.Tensor && t.Dtype == Dtype.Int64 && t.Ndim == 2 && t.Dim(0) == 2 && t.Dim(1) == 1, "tensor shape");
        Check(t.GetLong(1) == -4 && t.GetDouble(0) == 3, "tensor elements");
        Check(!v.Get("missing").Exists && v.Get("missing").IsNil, "a missing key");
        Check(Throws(() => v.Get("s").AsLong()) == ErrorCode.Usage, "a str is not an int");
        Check(t.Describe() == "a int64 tensor of shape (2, 1)", "describe: " + t.Describe());
        // PutScalar: a 0-d tensor (a NumPy scalar on the Python side), float32 rounded from the double
        var sc = new Writer();
        sc.PutScalar(Dtype.Float32, 0.1);
        Check(DataHex(sc) == "cdcccc3d" && BodyHex(sc) == "c706010b0000000000", "PutScalar float32: " + DataHex(sc) + " " + BodyHex(sc));
        // a 0-d integer tensor reads as an int (a Discrete value may arrive so)
        var z = new Writer();
        z.PutTensor(Dtype.Int32, new[] { 7 }, new int[0]);
        Check(Decoded(z).Body.Get("value").AsLong() == 7, "0-d tensor as an int");
        // the decoder's refusals (section 3): each before allocating
        Check(DecodeError(Frame(36, "81a576616c7565c1")) == ErrorCode.Malformed, "0xc1");
        Check(DecodeError(Frame(36, "81a576616c7565a2c328")) == ErrorCode.Malformed, "invalid utf-8");
        Check(DecodeError(Frame(36, "81a576616c7565a3eda080")) == ErrorCode.Malformed, "a surrogate in utf-8");
        Check(DecodeError(Frame(36, "81a576616c756582a16101a16102")) == ErrorCode.Malformed, "duplicate keys");
        Check(DecodeError(Frame(36, "81a576616c7565810102")) == ErrorCode.Malformed, "an int key");
        Check(DecodeError(Frame(36, "81a576616c7565ddffffffff")) == ErrorCode.Malformed, "array of 2^32-1 items in 4 bytes");
        Check(DecodeError(Frame(36, "81a576616c756501ff")) == ErrorCode.Malformed, "trailing bytes");
        Check(DecodeError(Frame(36, "81a576616c7565d6ff00000000")) == ErrorCode.Malformed, "timestamp ext");
        var deep = new StringBuilder("81a576616c7565");
        for (int i = 0; i < 64; i++) deep.Append("91");
        deep.Append("c0");
        Check(DecodeError(Frame(36, deep.ToString())) == ErrorCode.TooDeep, "depth 65");
        var ok = new StringBuilder("81a576616c7565");
        for (int i = 0; i < 63; i++) ok.Append("91");
        ok.Append("c0");
        Check(DecodeError(Frame(36, ok.ToString())) == 0, "depth 64 is fine");
    }

    static void Spaces()
    {
        Space[] all =
        {
            Space.Box(Dtype.Float32, new[] { 2, 3 }, -1, 1),
            Space.Box(Dtype.UInt8, new[] { 4 }, 0, double.PositiveInfinity),
            Space.Discrete(5, -2),
            Space.MultiDiscrete(new long[] { 3, 4 }, new long[] { 0, 1 }),
            Space.MultiBinary(3),
            Space.MultiBinary(new[] { 2, 2 }),
            Space.Text(8, 0, "cab"),
            Space.Dict(new[] { "pos", "id" }, new[] { Space.Box(Dtype.Float64, new[] { 2 }, -10, 10), Space.Discrete(3) }),
            Space.Tuple(Space.Discrete(2), Space.Text(3)),
            Space.Sequence(Space.Discrete(4), true),
            Space.Graph(Space.Box(Dtype.Float32, new[] { 3 }, 0, 1), null),
            Space.OneOf(Space.Discrete(2), Space.Box(Dtype.Int16, new[] { 1 }, -5, 5)),
        };
        foreach (Space s in all)
        {
            var w = new Writer();
            s.Write(w);
            Space back = Space.Read(Decoded(w).Body.Get("value"));
            var w2 = new Writer();
            back.Write(w2);
            Check(BodyHex(w) == BodyHex(w2) && DataHex(w) == DataHex(w2), s.Kind + " descriptor reads back to the same bytes");
        }
        Check(Throws(() => Space.Discrete(0)) == ErrorCode.Usage, "Discrete(0) refused");
        Check(Throws(() => Space.Box(Dtype.Float32, new[] { 2 }, new double[] { 1, 0 }, new double[] { 0, 0 })) == ErrorCode.Usage, "low > high refused");
        // checks: 0 fits, 1 outside the bounds (INVALID_ACTION), -1 structure (BAD_VALUE)
        Space d = Space.Discrete(3, 1);
        var v = new Writer();
        v.PutArray(4); v.PutInt(1); v.PutInt(4); v.PutStr("x"); v.PutTensor(new long[] { 1, 3 });
        Value a = Decoded(v).Body.Get("value");
        Check(d.Check(a[0], 0, out string why) == 0, "discrete fits");
        Check(d.Check(a[1], 0, out why) == 1 && why.Contains("4"), "discrete outside: " + why);
        Check(d.Check(a[2], 0, out why) == -1, "discrete gets a str");
        Check(d.Check(a[3], 2, out why) == 0, "a batch of discrete is an int64 (n,) tensor");
        Check(d.Check(a[3], 3, out why) == -1, "batch of the wrong size");
        Space box = Space.Box(Dtype.Float32, new[] { 2 }, -1, 1);
        var bv = new Writer();
        bv.PutArray(3); bv.PutTensor(new float[] { 0.5f, -1 }); bv.PutTensor(new float[] { 0.5f, float.NaN }); bv.PutTensor(new double[] { 0, 0 });
        Value b = Decoded(bv).Body.Get("value");
        Check(box.Check(b[0], 0, out why) == 0, "box fits");
        Check(box.Check(b[1], 0, out why) == 1, "NaN is outside a box");
        Check(box.Check(b[2], 0, out why) == -1 && why.Contains("float32"), "box of the wrong dtype: " + why);
    }

    static void StateMachine()
    {
        var env = ConformanceRunner.In(true, "idle");
        var w = new Writer();
        w.PutMap(0);
        Check(Throws(() => env.Send(Kind.CallResult, w)) == ErrorCode.Usage && env.State == State.Idle, "a reply with no command outstanding is a usage error");
        Check(Throws(() => env.Send(Kind.Reset, w)) == ErrorCode.Usage, "an env cannot send RESET");
        var agent = ConformanceRunner.In(false, "idle");
        var s = new Writer();
        s.PutMap(1); s.PutKey("action"); s.PutInt(1);
        agent.Send(Kind.Step, s);
        env.Feed(agent.Out, 0, agent.OutLen);
        Check(env.Next() && env.LastKind == Kind.Step && env.State == State.Step, "STEP moves to step");
        env.Feed(agent.Out, 0, agent.OutLen);
        Check(Throws(() => env.Next()) == ErrorCode.UnexpectedMessage && env.State == State.Closed, "a second STEP: UNEXPECTED_MESSAGE, closed");
        Check(env.OutLen > 0 && env.Out[2] == (byte)Kind.Error, "a fatal ERROR is queued for the peer");
        // usage errors of Env
        var e = new Env(Space.Discrete(2), Space.Discrete(2));
        Check(Throws(() => e.Poll(0)) == ErrorCode.Usage, "Poll before Listen");
        Check(Throws(() => e.Listen("http://127.0.0.1:1")) == ErrorCode.Address, "unknown scheme");
        Check(Throws(() => new Env(Space.Discrete(2), Space.Discrete(2)).Listen("unix://relative")) == ErrorCode.Address, "relative unix path");
        Check(Throws(() => new Env(Space.Discrete(2), Space.Discrete(2)).Listen("tcp://127.0.0.1:99999")) == ErrorCode.Address, "bad port");
        Check(Throws(() => e.ReplyReset()) == ErrorCode.Usage, "a reply with no command");
    }

    static byte[] FrameBytes(Kind kind, byte[] data, byte[] body)
    {
        var f = new byte[12 + data.Length + body.Length];
        f[0] = 0x52; f[1] = 0x4c; f[2] = (byte)kind;
        f[4] = (byte)data.Length; f[5] = (byte)(data.Length >> 8); f[6] = (byte)(data.Length >> 16);
        f[8] = (byte)body.Length; f[9] = (byte)(body.Length >> 8); f[10] = (byte)(body.Length >> 16); f[11] = (byte)(body.Length >> 24);
        Buffer.BlockCopy(data, 0, f, 12, data.Length);
        Buffer.BlockCopy(body, 0, f, 12 + data.Length, body.Length);
        return f;
    }

    /// <summary>Section 13's limits as settings, and the checks the vectors cannot make.</summary>
    static void Limits()
    {
        // {"value": [nil x 262142]}: 262 145 values; refused by default, accepted when raised.
        int n = 262142;
        var body = new byte[7 + 5 + n];
        byte[] head = { 0x81, 0xa5, (byte)'v', (byte)'a', (byte)'l', (byte)'u', (byte)'e', 0xdd, 0, 0, 0, 0 };
        Buffer.BlockCopy(head, 0, body, 0, head.Length);
        body[8] = (byte)(n >> 24); body[9] = (byte)(n >> 16); body[10] = (byte)(n >> 8); body[11] = (byte)n;
        for (int i = 12; i < body.Length; i++) body[i] = 0xc0;
        byte[] f = FrameBytes(Kind.CallResult, new byte[0], body);
        var c = new Connection(false);
        c.Feed(f, 0, f.Length);
        Check(Throws(() => c.NextStandalone()) == ErrorCode.FrameTooLarge, "max_values: 262 145 values are FRAME_TOO_LARGE");
        c = new Connection(false) { MaxValues = 262145 };
        c.Feed(f, 0, f.Length);
        Check(Throws(() => c.NextStandalone()) == 0 && c.Body.Get("value").Count == n, "max_values raised by the user: accepted");
        // the first frame's limit, raised: a 100 KiB HELLO header is then read (the stream ends inside it)
        byte[] big = { 0x52, 0x4c, 1, 0, 0, 0, 0, 0, 0, 0x90, 0x01, 0 };
        var h = new Connection(true);
        h.Feed(big, 0, big.Length);
        Check(Throws(() => h.Next()) == ErrorCode.FrameTooLarge, "a 100 KiB HELLO is past the 64 KiB handshake limit");
        h = new Connection(true) { MaxHandshakeFrameSize = 1 << 20 };
        h.Feed(big, 0, big.Length);
        Check(Throws(() => { h.Next(); h.FeedEof(); }) == ErrorCode.Truncated, "the handshake limit raised: read on");
        // an env side never sends an observation that does not match its space (section 9)
        var env = ConformanceRunner.In(true, "reset");
        env.ObservationSpace = Space.Box(Dtype.Float32, new[] { 2 }, -1, 1);
        var w = new Writer();
        w.PutMap(2); w.PutKey("obs"); w.PutTensor(new double[] { 0.5, 0.25 }); w.PutKey("info"); w.PutMap(0);
        ErrorCode got = 0;
        string msg = "";
        try { env.Send(Kind.ResetResult, w); } catch (RlayException e) { got = e.Code; msg = e.Message; }
        Check(got == ErrorCode.EnvException && env.OutLen == 0 && env.State == State.Reset, "a float64 obs for a float32 Box: ENV_EXCEPTION, nothing queued");
        Check(msg.Contains("float32") && msg.Contains("float64"), "the message names both dtypes: " + msg);
        w.Clear();
        w.PutMap(2); w.PutKey("obs"); w.PutTensor(new float[] { 0.5f, 0.25f }); w.PutKey("info"); w.PutMap(0);
        Check(Throws(() => env.Send(Kind.ResetResult, w)) == 0 && env.State == State.Idle, "a float32 obs is sent");
        // a uint64 Discrete starting past long.MaxValue keeps its start exactly (section 9)
        var d = new Writer();
        d.PutMap(4); d.PutKey("kind"); d.PutStr("discrete"); d.PutKey("n"); d.PutInt(3);
        d.PutKey("start"); d.PutUInt(9223372036854775813UL); d.PutKey("dtype"); d.PutStr("uint64");
        Space u = Space.Read(Decoded(d).Body.Get("value"));
        Check(u.StartValue == 9223372036854775813m, "uint64 start kept: " + u.StartValue);
        Check(u.Start == unchecked((long)9223372036854775813UL), "Start wraps like a cast, never throws");
        var back = new Writer();
        u.Write(back);
        Check(BodyHex(back) == BodyHex(d), "uint64 start written back as a uint 64");
        var val = new Writer();
        val.PutUInt(9223372036854775815UL);
        Check(u.Check(Decoded(val).Body.Get("value"), 0, out string why) == 0, "its last value fits: " + why);
        val.Clear(); val.PutUInt(9223372036854775816UL);
        Check(u.Check(Decoded(val).Body.Get("value"), 0, out why) == 1, "one past it is out of bounds");
        // ERROR with a code 1-15 and fatal=false is fatal all the same (section 11)
        var idle = ConformanceRunner.In(true, "idle");
        var err = new Writer();
        err.PutMap(5); err.PutKey("code"); err.PutInt(7); err.PutKey("message"); err.PutStr("x"); err.PutKey("fatal"); err.PutBool(false);
        err.PutKey("remote_type"); err.PutNil(); err.PutKey("traceback"); err.PutNil();
        var src = new Connection(false) { OutLen = 0 };
        src.AppendFrame(Kind.Error, err);
        idle.Feed(src.Out, 0, src.OutLen);
        Check(idle.Next() && idle.State == State.Closed, "ERROR code 7, fatal=false: closed");
    }

    /// <summary>The step path without sockets: decode STEP, check the action, encode STEP_RESULT.</summary>
    static void NoAllocation()
    {
        var agent = new Connection(false);
        var env = new Connection(true);
        env.Feed(agent.Out, 0, agent.OutLen); agent.OutLen = 0;
        agent.Feed(env.Out, 0, env.OutLen); env.OutLen = 0;
        env.Next(); agent.Next();
        Space obsSpace = Space.Box(Dtype.Float32, new[] { 4 }, -10, 10), act = Space.Discrete(2);
        var info = new Writer();
        info.PutMap(6);
        info.PutKey("observation_space"); obsSpace.Write(info);
        info.PutKey("action_space"); act.Write(info);
        info.PutKey("num_envs"); info.PutInt(1);
        info.PutKey("metadata"); info.PutMap(0);
        info.PutKey("render_mode"); info.PutNil();
        info.PutKey("name"); info.PutNil();
        env.ObservationSpace = obsSpace; env.ActionSpace = act;   // the core checks actions and own observations too
        env.Send(Kind.EnvInfo, info);
        agent.Feed(env.Out, 0, env.OutLen); env.OutLen = 0;
        agent.Next();
        Check(agent.ObservationSpace != null && agent.NumEnvs == 1, "the agent read ENV_INFO's spaces");
        var step = new Writer();
        var reply = new Writer();
        var obsW = new Writer();
        float[] obs = new float[4];
        long before = 0;
        int steps = 20000, bad = 0;
        for (int i = 0; i < steps + 1000; i++)
        {
            if (i == 1000) before = GC.GetAllocatedBytesForCurrentThread();
            step.Clear();
            step.PutMap(1); step.PutKey("action"); step.PutInt(i & 1);
            agent.Send(Kind.Step, step);
            env.Compact();
            env.Feed(agent.Out, 0, agent.OutLen); agent.OutLen = 0;
            env.Next();
            if (act.Check(env.Body.Get("action"), 0, out string why) != 0) bad++;
            obs[0] = i;
            obsW.Clear(); obsW.PutTensor(obs);
            reply.Clear();
            reply.PutMap(5);
            reply.PutKey("obs"); reply.Append(obsW);
            reply.PutKey("reward"); reply.PutFloat(1.0);
            reply.PutKey("terminated"); reply.PutBool(false);
            reply.PutKey("truncated"); reply.PutBool(false);
            reply.PutKey("info"); reply.PutMap(0);
            env.Send(Kind.StepResult, reply);
            agent.Compact();
            agent.Feed(env.Out, 0, env.OutLen); env.OutLen = 0;
            agent.Next();
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Check(bad == 0, "every action fits");
        Check(agent.Body.Get("obs").GetDouble(0) == steps + 999, "the last observation arrived");
        Console.WriteLine("allocated " + allocated + " bytes in " + steps + " steps (codec, state machine, action check)");
        Check(allocated == 0, "no allocation per step: " + allocated + " bytes in " + steps + " steps");
    }

    static int Main()
    {
        Codec();
        Values();
        Spaces();
        StateMachine();
        Limits();
        NoAllocation();
        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }
}
