// Conformance runner for rlay-csharp: the line protocol of spec/protocol.md section 12.
//   roundtrip FRAME_HEX CANON_HEX            decode FRAME, re-encode canonically, compare
//   reject FRAME_HEX ERROR_NAME ROLE STATE [NUM_ENVS]
//                                            feed FRAME (then end of stream) to a receiver playing
//                                            ROLE (agent/env) in STATE (- = stand-alone), whose
//                                            session's ENV_INFO had num_envs NUM_ENVS (absent: 1)
// Additions for spec/vectors/spaces.json (a space or value as a stand-alone body and data section):
//   space BODY DATA | space_value SBODY SDATA VBODY VDATA | space_reject BODY DATA ERROR_NAME
//   value_reject SBODY SDATA VBODY VDATA ERROR_NAME
using System;
using System.IO;
using System.Text;
using Rlay;

static class ConformanceRunner
{
    static byte[] Unhex(string s)
    {
        if (s.Length % 2 != 0) return null;
        var b = new byte[s.Length / 2];
        for (int i = 0; i < b.Length; i++)
        {
            int hi = H(s[2 * i]), lo = H(s[2 * i + 1]);
            if (hi < 0 || lo < 0) return null;
            b[i] = (byte)(hi * 16 + lo);
        }
        return b;
    }
    static int H(char c)
    {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }
    static string Hex(byte[] b, int p, int n, int max)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < n && i < max; i++) sb.Append(b[p + i].ToString("x2"));
        if (n > max) sb.Append("...");
        return sb.ToString();
    }
    static string Clean(string s)
    {
        var sb = new StringBuilder();
        foreach (char c in s) sb.Append(c < 0x20 || c == 0x7f ? '?' : c);
        return sb.ToString();
    }

    /// <summary>A connection of that role brought to that state by a valid conversation.</summary>
    internal static Connection In(bool env, string state, int numEnvs = 1)
    {
        var agent = new Connection(false);
        var envc = new Connection(true);
        if (state != "hello")
        {
            Pump(envc, agent); Pump(agent, envc);
            agent.Next(); envc.Next();
            if (state != "describe")
            {
                var w = new Writer();
                w.PutMap(6);
                w.PutKey("observation_space"); Space.Discrete(2).Write(w);
                w.PutKey("action_space"); Space.Discrete(2).Write(w);
                w.PutKey("num_envs"); w.PutInt(numEnvs);
                w.PutKey("metadata"); w.PutMap(0);
                w.PutKey("render_mode"); w.PutNil();
                w.PutKey("name"); w.PutNil();
                envc.NumEnvs = numEnvs; envc.ObservationSpace = Space.Discrete(2); envc.ActionSpace = Space.Discrete(2);
                envc.Send(Kind.EnvInfo, w);
                Pump(envc, agent); agent.Next();
                string command = state == "closed" ? "close" : state;
                Kind k = 0;
                switch (command)
                {
                    case "reset": k = Kind.Reset; break;
                    case "step": k = Kind.Step; break;
                    case "render": k = Kind.Render; break;
                    case "call": k = Kind.Call; break;
                    case "close": k = Kind.Close; break;
                }
                if (k != 0)
                {
                    w.Clear();
                    if (k == Kind.Reset) { w.PutMap(2); w.PutKey("seed"); w.PutNil(); w.PutKey("options"); w.PutNil(); }
                    else if (k == Kind.Step)
                    {
                        w.PutMap(1); w.PutKey("action");
                        if (numEnvs == 1) w.PutInt(1);
                        else { var ones = new long[numEnvs]; for (int i = 0; i < numEnvs; i++) ones[i] = 1; w.PutTensor(ones); }
                    }
                    else if (k == Kind.Call) { w.PutMap(3); w.PutKey("name"); w.PutStr("f"); w.PutKey("args"); w.PutArray(0); w.PutKey("kwargs"); w.PutMap(0); }
                    else w.PutMap(0);
                    agent.Send(k, w);
                    Pump(agent, envc); envc.Next();
                }
                if (state == "closed")
                {
                    w.Clear(); w.PutMap(0);
                    envc.Send(Kind.CloseResult, w);
                    Pump(envc, agent); agent.Next();
                }
            }
        }
        Connection me = env ? envc : agent;
        me.OutLen = 0;
        if (me.State.ToString().ToLowerInvariant() != state) throw new Exception("could not reach state " + state);
        return me;
    }
    static void Pump(Connection src, Connection dst)
    {
        dst.Feed(src.Out, 0, src.OutLen);
        src.OutLen = 0;
    }

    static string Roundtrip(string[] t)
    {
        if (t.Length != 3) return "fail roundtrip needs FRAME_HEX CANON_HEX";
        byte[] frame = Unhex(t[1]), canon = Unhex(t[2]);
        if (frame == null || canon == null) return "fail bad hex";
        var c = new Connection(false);
        c.Feed(frame, 0, frame.Length);
        try
        {
            if (!c.NextStandalone()) return "fail the frame is incomplete";
            var w = new Writer();
            Connection.Recode(c.LastKind, c.Body, w);
            var o = new Connection(false);
            o.OutLen = 0;
            o.AppendFrame(c.LastKind, w);
            int n = o.OutLen;
            int i = 0;
            while (i < n && i < canon.Length && o.Out[i] == canon[i]) i++;
            if (n == canon.Length && i == n) return "ok";
            return "fail re-encoded frame differs from byte " + i + ": got " + Hex(o.Out, i, n - i, 24) + " expected " + Hex(canon, i, canon.Length - i, 24) + " (lengths " + n + " and " + canon.Length + ")";
        }
        catch (RlayException e) { return "fail decoding failed with " + e.Name + ": " + Clean(e.Message); }
    }

    static string Reject(string[] t)
    {
        if (t.Length != 5 && t.Length != 6) return "fail reject needs FRAME_HEX ERROR_NAME ROLE STATE [NUM_ENVS]";
        int numEnvs = 1;
        if (t.Length == 6 && (!int.TryParse(t[5], out numEnvs) || numEnvs < 1)) return "fail bad NUM_ENVS '" + t[5] + "'";
        if (t[3] != "agent" && t[3] != "env" && t[3] != "-") return "fail unknown role '" + t[3] + "'";
        string[] states = { "-", "hello", "describe", "idle", "reset", "step", "render", "call", "close", "closed" };
        if (Array.IndexOf(states, t[4]) < 0) return "fail unknown state '" + t[4] + "'";
        byte[] bytes = Unhex(t[1]);
        if (bytes == null) return "fail bad hex";
        Connection c = t[4] == "-" ? new Connection(true) : In(t[3] != "agent", t[4], numEnvs);
        try
        {
            c.Feed(bytes, 0, bytes.Length);
            if (t[4] == "-") { while (c.NextStandalone()) { } }
            else { while (c.Next()) { } }
            c.FeedEof();
        }
        catch (RlayException e)
        {
            if (e.Name == t[2]) return "ok";
            return "fail expected " + t[2] + ", got " + e.Name + ": " + Clean(e.Message);
        }
        return "fail accepted: no error before the stream ended cleanly (state " + c.State.ToString().ToLowerInvariant() + ")";
    }

    static bool Decode(string bodyHex, string dataHex, out Value v, out string err)
    {
        byte[] body = Unhex(bodyHex), data = Unhex(dataHex);
        v = default(Value); err = null;
        if (body == null || data == null) { err = "bad hex"; return false; }
        // a stand-alone value travels as the value of a CALL_RESULT frame
        var c = new Connection(false);
        var frame = new byte[12 + data.Length + body.Length + 7];
        frame[0] = 0x52; frame[1] = 0x4c; frame[2] = (byte)Kind.CallResult;
        int blen = body.Length + 7;
        frame[4] = (byte)data.Length; frame[5] = (byte)(data.Length >> 8); frame[6] = (byte)(data.Length >> 16); frame[7] = (byte)(data.Length >> 24);
        frame[8] = (byte)blen; frame[9] = (byte)(blen >> 8); frame[10] = (byte)(blen >> 16); frame[11] = (byte)(blen >> 24);
        Buffer.BlockCopy(data, 0, frame, 12, data.Length);
        byte[] head = { 0x81, 0xa5, (byte)'v', (byte)'a', (byte)'l', (byte)'u', (byte)'e' };
        Buffer.BlockCopy(head, 0, frame, 12 + data.Length, 7);
        Buffer.BlockCopy(body, 0, frame, 19 + data.Length, body.Length);
        c.Feed(frame, 0, frame.Length);
        try
        {
            c.NextStandalone();
            v = c.Body.Get("value");
            return true;
        }
        catch (RlayException e) { err = e.Name + ": " + e.Message; return false; }
    }

    static string Compare(Writer w, string bodyHex, string dataHex)
    {
        string body = Hex(w.Body, 0, w.BodyLen, int.MaxValue), data = Hex(w.Data, 0, w.DataLen, int.MaxValue);
        if (data != dataHex) return "fail data section: got " + Trunc(data) + " expected " + Trunc(dataHex);
        if (body != bodyHex) return "fail body: got " + Trunc(body) + " expected " + Trunc(bodyHex);
        return "ok";
    }
    static string Trunc(string s) { return s.Length > 120 ? s.Substring(0, 120) + "..." : s; }

    static string Spaces(string[] t)
    {
        string cmd = t[0];
        int want = cmd == "space" ? 3 : cmd == "space_value" ? 5 : cmd == "space_reject" ? 4 : 6;
        if (t.Length != want) return "fail " + cmd + " takes " + (want - 1) + " fields";
        Value sv;
        string err;
        if (!Decode(t[1], t[2], out sv, out err)) return "fail the descriptor does not decode: " + Clean(err);
        Space sp;
        try { sp = Space.Read(sv); }
        catch (RlayException e)
        {
            if (cmd == "space_reject") return e.Name == t[3] ? "ok" : "fail expected " + t[3] + ", got " + e.Name + ": " + Clean(e.Message);
            return "fail the space was refused: " + e.Name + ": " + Clean(e.Message);
        }
        if (cmd == "space_reject") return "fail accepted; expected " + t[3];
        var w = new Writer();
        if (cmd == "space") { sp.Write(w); return Compare(w, t[1], t[2]); }
        Value v;
        if (!Decode(t[3], t[4], out v, out err)) return "fail the value does not decode: " + Clean(err);
        string why;
        int r = sp.Check(v, 0, out why);
        if (cmd == "value_reject")
        {
            if (r < 0) return t[5] == "BAD_VALUE" ? "ok" : "fail got BAD_VALUE (" + Clean(why) + "), expected " + t[5];
            return "fail accepted; expected " + t[5];
        }
        if (r < 0) return "fail BAD_VALUE: " + Clean(why);
        w.PutValue(v);
        return Compare(w, t[3], t[4]);
    }

    static int Main()
    {
        var stdin = new StreamReader(Console.OpenStandardInput(), new UTF8Encoding(false), false, 1 << 16);
        var stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false)) { AutoFlush = false, NewLine = "\n" };
        string line;
        while ((line = stdin.ReadLine()) != null)
        {
            line = line.TrimEnd('\r');
            if (line.Length == 0) continue;
            string[] t = line.Split(' ');
            string answer;
            try
            {
                if (t[0] == "roundtrip") answer = Roundtrip(t);
                else if (t[0] == "reject") answer = Reject(t);
                else if (t[0].StartsWith("space") || t[0] == "value_reject") answer = Spaces(t);
                else answer = "fail unknown command '" + Clean(t[0]) + "'";
            }
            catch (Exception e) { answer = "fail unexpected " + e.GetType().Name + ": " + Clean(e.Message); }
            stdout.WriteLine(answer);
            stdout.Flush();
        }
        return 0;
    }
}
