// A bounded fuzz of the decoder: mutates golden-vector frames and feeds each mutant to a
// stand-alone decode and to a receiver in a random role and state. Nothing may escape but the
// SDK's own RlayException; an accepted frame must re-encode canonically to bytes that decode and
// re-encode to themselves (idempotence). Every field value of an accepted frame is also read as a
// space descriptor (only RlayException may escape) and checked against a catalogue of spaces
// (Space.Check runs on hostile actions: it must never throw).
//   mono fuzz.exe ITERATIONS [SEED] < lines     (lines: "roundtrip HEX ..." / "reject HEX ..." / bare hex)
using System;
using System.Collections.Generic;
using System.IO;
using Rlay;

static class Fuzz
{
    static readonly string[] States = { "hello", "describe", "idle", "reset", "step", "render", "call", "close", "closed" };

    static readonly Space[] Catalogue =
    {
        Space.Box(Dtype.Float32, new[] { 4 }, -1, 1),
        Space.Box(Dtype.Int64, new[] { 2, 2 }, double.NegativeInfinity, double.PositiveInfinity),
        Space.Box(Dtype.UInt64, new[] { 1 }, 0, double.PositiveInfinity),
        Space.Discrete(2),
        Space.Discrete(5, -2),
        Space.MultiDiscrete(new long[] { 3, 4 }),
        Space.MultiBinary(3),
        Space.MultiBinary(new[] { 2, 2 }),
        Space.Text(5, 0, "abc"),
        Space.Dict(new[] { "a", "b" }, new[] { Space.Discrete(3), Space.Box(Dtype.Float64, new[] { 1 }, 0, 1) }),
        Space.Tuple(Space.Discrete(2), Space.Text(3)),
        Space.Sequence(Space.Discrete(4), true),
        Space.Graph(Space.Box(Dtype.Float32, new[] { 3 }, 0, 1), Space.Discrete(2)),
        Space.OneOf(Space.Discrete(2), Space.Box(Dtype.Int16, new[] { 1 }, -5, 5)),
    };

    static void Spaces(Value body)
    {
        for (int i = 0; i < body.Count; i++)
        {
            Value v = body.ValueAt(i);
            try { Space.Read(v).Write(new Writer()); }
            catch (RlayException) { }
            foreach (Space s in Catalogue)
            {
                s.Check(v, 0, out string why);
                s.Check(v, 3, out why);
            }
        }
    }

    static byte[] Unhex(string s)
    {
        var b = new byte[s.Length / 2];
        for (int i = 0; i < b.Length; i++) b[i] = Convert.ToByte(s.Substring(2 * i, 2), 16);
        return b;
    }

    static byte[] Mutate(Random r, List<byte[]> seeds)
    {
        byte[] s = seeds[r.Next(seeds.Count)];
        var b = new List<byte>(s);
        int n = 1 + r.Next(4);
        for (int k = 0; k < n; k++)
        {
            int op = r.Next(7);
            int at = b.Count == 0 ? 0 : r.Next(b.Count);
            switch (op)
            {
                case 0: if (b.Count > 0) b[at] = (byte)r.Next(256); break;                  // replace a byte
                case 1: if (b.Count > 0) b[at] ^= (byte)(1 << r.Next(8)); break;            // flip a bit
                case 2: b.Insert(at, (byte)r.Next(256)); break;                             // insert a byte
                case 3: if (b.Count > 0) b.RemoveAt(at); break;                             // delete a byte
                case 4: if (b.Count > 0) b.RemoveRange(at, b.Count - at); break;            // truncate
                case 5:                                                                     // interesting values
                    {
                        byte[] vals = { 0x00, 0x7f, 0x80, 0xff, 0xc1, 0xc7, 0xd4, 0xdc, 0xdd, 0xde, 0xdf, 0xcf, 0xd3, 0x01 };
                        if (b.Count > 0) b[at] = vals[r.Next(vals.Length)];
                        break;
                    }
                default:                                                                    // splice another seed
                    {
                        byte[] o = seeds[r.Next(seeds.Count)];
                        int from = o.Length == 0 ? 0 : r.Next(o.Length);
                        for (int i = from; i < o.Length && i < from + 32; i++) b.Insert(Math.Min(at + i - from, b.Count), o[i]);
                        break;
                    }
            }
        }
        // keep the header's lengths consistent half of the time, so mutants reach the body decoder
        if (r.Next(2) == 0 && b.Count >= 12)
        {
            int body = b.Count - 12 - (int)(b[4] | b[5] << 8 | b[6] << 16 | b[7] << 24);
            if (body > 0) { b[8] = (byte)body; b[9] = (byte)(body >> 8); b[10] = (byte)(body >> 16); b[11] = (byte)(body >> 24); }
        }
        return b.ToArray();
    }

    static int Main(string[] args)
    {
        int iterations = args.Length > 0 ? int.Parse(args[0]) : 10000;
        int seed = args.Length > 1 ? int.Parse(args[1]) : 1;
        var seeds = new List<byte[]>();
        string line;
        while ((line = Console.In.ReadLine()) != null)
        {
            string[] t = line.Trim().Split(' ');
            string hex = t.Length > 1 ? t[1] : t[0];
            if (hex.Length % 2 == 0 && hex.Length > 0) seeds.Add(Unhex(hex));
        }
        if (seeds.Count == 0) { Console.Error.WriteLine("fuzz: no seed frames on stdin"); return 2; }
        var r = new Random(seed);
        int accepted = 0, rejected = 0;
        var w = new Writer();
        for (int it = 0; it < iterations; it++)
        {
            byte[] input = Mutate(r, seeds);
            try
            {
                // 1. stand-alone: frames, bodies, message fields; an accepted frame re-encodes idempotently
                var c = new Connection(true);
                c.Feed(input, 0, input.Length);
                try
                {
                    while (c.NextStandalone())
                    {
                        accepted++;
                        Spaces(c.Body);
                        w.Clear();
                        Connection.Recode(c.LastKind, c.Body, w);
                        var o = new Connection(true) { OutLen = 0 };
                        o.AppendFrame(c.LastKind, w);
                        byte[] once = new byte[o.OutLen];
                        Buffer.BlockCopy(o.Out, 0, once, 0, once.Length);
                        var c2 = new Connection(true);
                        c2.Feed(once, 0, once.Length);
                        if (!c2.NextStandalone()) throw new Exception("a canonical re-encoding is incomplete");
                        w.Clear();
                        Connection.Recode(c2.LastKind, c2.Body, w);
                        o.OutLen = 0;
                        o.AppendFrame(c2.LastKind, w);
                        if (o.OutLen != once.Length) throw new Exception("re-encoding is not idempotent");
                        for (int i = 0; i < once.Length; i++) if (o.Out[i] != once[i]) throw new Exception("re-encoding is not idempotent");
                    }
                    c.FeedEof();
                }
                catch (RlayException) { rejected++; }
                // 2. a receiver in a random role and state
                var rc = ConformanceRunner.In(r.Next(2) == 0, States[r.Next(States.Length)]);
                rc.Feed(input, 0, input.Length);
                try { while (rc.Next()) { } rc.FeedEof(); }
                catch (RlayException) { }
            }
            catch (Exception e)
            {
                Console.WriteLine("FAIL iteration " + it + ": " + e.GetType().Name + ": " + e.Message);
                var sb = new System.Text.StringBuilder();
                foreach (byte x in input) sb.Append(x.ToString("x2"));
                Console.WriteLine("input " + sb);
                Console.WriteLine(e.StackTrace);
                return 1;
            }
        }
        Console.WriteLine(iterations + " inputs fuzzed, " + accepted + " frames accepted, " + rejected + " rejected, 0 failures");
        return 0;
    }
}
