// CartPole-v1 in C#, served as a Gymnasium env over rlay (callback style): one CartPole, or with
// --num-envs N a batch of N on one connection (spec section 10).
//
// The dynamics are Gymnasium's CartPole-v1 (gymnasium/envs/classic_control/cartpole.py): euler
// integration in float64 with the same expressions in the same order, float32 observations,
// reward 1.0 (0.0 for steps after termination), termination at |x| > 2.4 or |theta| > 12
// degrees, and the 500-step truncation that gym.make's TimeLimit adds.
//
// Reset draws the state as Gymnasium does, bit for bit: np_random.uniform(low, high, size=4)
// (default [-0.05, 0.05], options "low"/"high") from numpy's Generator(PCG64(SeedSequence(seed))),
// reproduced below; a reset without a seed continues the stream (a never-seeded one starts from
// the clock). The option "state" (float64 tensor (4,), or (N, 4) for a batch) sets the state
// exactly. CALL "get_state" returns the float64 state (an array of N for a batch).
//
// A batch autoresets as Gymnasium 1.x's AutoresetMode.NEXT_STEP: the STEP after a sub-env's
// episode ended resets it (no seed: its stream goes on) and answers its first observation with
// reward 0 and terminated/truncated false; its action is ignored.
//
// Usage: cartpole --listen ADDRESS | --connect ADDRESS | (neither: RLAY_MODE, RLAY_ADDRESS)
//                 [--num-envs N] [--render-mode rgb_array] [--connect-timeout SECONDS]
using System;
using Rlay;

/// <summary>numpy's random stream: SeedSequence(seed) -> PCG64 -> Generator.random.</summary>
struct Pcg64
{
    ulong stateHi, stateLo, incHi, incLo;

    static void Mul128(ulong aHi, ulong aLo, ulong bHi, ulong bLo, out ulong hi, out ulong lo)
    {
        ulong a0 = aLo & 0xffffffffUL, a1 = aLo >> 32, b0 = bLo & 0xffffffffUL, b1 = bLo >> 32;
        ulong p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
        ulong mid = (p00 >> 32) + (p01 & 0xffffffffUL) + (p10 & 0xffffffffUL);
        lo = (mid << 32) | (p00 & 0xffffffffUL);
        hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32) + aHi * bLo + aLo * bHi;
    }
    void Step()
    {
        // PCG_DEFAULT_MULTIPLIER_128
        Mul128(stateHi, stateLo, 2549297995355413924UL, 4865540595714422341UL, out ulong hi, out ulong lo);
        ulong nlo = lo + incLo;
        stateHi = hi + incHi + (nlo < lo ? 1UL : 0UL);
        stateLo = nlo;
    }
    public ulong Next()
    {
        Step();
        ulong v = stateHi ^ stateLo;
        int rot = (int)(stateHi >> 58);
        return (v >> rot) | (v << ((64 - rot) & 63));
    }
    public double NextDouble() { return (Next() >> 11) * (1.0 / 9007199254740992.0); }

    static uint HashMix(uint v, ref uint h)
    {
        v ^= h; h *= 0x931e8875u; v *= h; v ^= v >> 16;
        return v;
    }
    static uint Mix(uint x, uint y)
    {
        uint r = 0xca01f9ddu * x - 0x4973f715u * y;
        return r ^ (r >> 16);
    }
    /// <summary>PCG64(SeedSequence(seed)): generate_state(4, uint64) gives state and sequence.</summary>
    public void Seed(ulong seed)
    {
        uint[] entropy = { (uint)seed, (uint)(seed >> 32) };
        int n = (seed >> 32) != 0 ? 2 : 1;
        var pool = new uint[4];
        uint h = 0x43b0d7e5u;
        for (int i = 0; i < 4; i++) pool[i] = HashMix(i < n ? entropy[i] : 0, ref h);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                if (i != j) pool[j] = Mix(pool[j], HashMix(pool[i], ref h));
        h = 0x8b51f9ddu;
        var words = new uint[8];
        for (int i = 0; i < 8; i++)
        {
            uint d = pool[i % 4] ^ h;
            h *= 0x58f38dedu; d *= h; d ^= d >> 16;
            words[i] = d;
        }
        ulong initHi = words[0] | (ulong)words[1] << 32, initLo = words[2] | (ulong)words[3] << 32;
        ulong seqHi = words[4] | (ulong)words[5] << 32, seqLo = words[6] | (ulong)words[7] << 32;
        incHi = (seqHi << 1) | (seqLo >> 63);
        incLo = (seqLo << 1) | 1;
        stateHi = 0; stateLo = 0;
        Step();
        ulong lo = stateLo + initLo;
        stateHi = stateHi + initHi + (lo < stateLo ? 1UL : 0UL);
        stateLo = lo;
        Step();
    }
}

/// <summary>One CartPole with Gymnasium's constants and expressions.</summary>
sealed class CartPoleEnv
{
    const double Gravity = 9.8, MassCart = 1.0, MassPole = 0.1, Length = 0.5, ForceMag = 10.0, Tau = 0.02, XThreshold = 2.4;
    const double TotalMass = MassPole + MassCart, PoleMassLength = MassPole * Length;
    internal const double ThetaThreshold = 12 * 2 * 3.141592653589793 / 360;
    const int MaxEpisodeSteps = 500;

    public readonly double[] S = new double[4];   // x, x_dot, theta, theta_dot
    long elapsed, beyond = -1;
    Pcg64 rng;
    bool seeded;

    public void Reset(bool withSeed, ulong seed, double low, double high, double[] state, int stateRow, int salt)
    {
        if (withSeed) rng.Seed(seed);
        else if (!seeded) rng.Seed((ulong)DateTime.UtcNow.Ticks ^ ((ulong)salt << 48));
        seeded = true;
        for (int k = 0; k < 4; k++) S[k] = state != null ? state[4 * stateRow + k] : low + (high - low) * rng.NextDouble();
        elapsed = 0;
        beyond = -1;
    }

    public void Step(long action, out double reward, out bool terminated, out bool truncated)
    {
        double x = S[0], xDot = S[1], theta = S[2], thetaDot = S[3];
        double force = action == 1 ? ForceMag : -ForceMag;
        double costheta = Math.Cos(theta);
        double sintheta = Math.Sin(theta);
        double temp = (force + PoleMassLength * (thetaDot * thetaDot) * sintheta) / TotalMass;
        double thetaacc = (Gravity * sintheta - costheta * temp) /
                          (Length * (4.0 / 3.0 - MassPole * (costheta * costheta) / TotalMass));
        double xacc = temp - PoleMassLength * thetaacc * costheta / TotalMass;
        x = x + Tau * xDot;
        xDot = xDot + Tau * xacc;
        theta = theta + Tau * thetaDot;
        thetaDot = thetaDot + Tau * thetaacc;
        S[0] = x; S[1] = xDot; S[2] = theta; S[3] = thetaDot;
        terminated = x < -XThreshold || x > XThreshold || theta < -ThetaThreshold || theta > ThetaThreshold;
        if (!terminated) reward = 1.0;
        else if (beyond < 0) { beyond = 0; reward = 1.0; }
        else { beyond++; reward = 0.0; }
        elapsed++;
        truncated = elapsed >= MaxEpisodeSteps;
    }

    const int Width = 600, Height = 400;
    public const int FrameBytes = Width * Height * 3;

    static void FillPoly(byte[] img, int off, double[] px, double[] py, byte r, byte g, byte b)
    {
        double minx = px[0], maxx = px[0], miny = py[0], maxy = py[0];
        for (int i = 1; i < px.Length; i++) { minx = Math.Min(minx, px[i]); maxx = Math.Max(maxx, px[i]); miny = Math.Min(miny, py[i]); maxy = Math.Max(maxy, py[i]); }
        for (int y = (int)Math.Max(0, Math.Floor(miny)); y <= (int)Math.Min(Height - 1, Math.Ceiling(maxy)); y++)
            for (int x = (int)Math.Max(0, Math.Floor(minx)); x <= (int)Math.Min(Width - 1, Math.Ceiling(maxx)); x++)
            {
                bool pos = false, neg = false;
                for (int i = 0; i < px.Length; i++)
                {
                    int j = (i + 1) % px.Length;
                    double cr = (px[j] - px[i]) * (y + 0.5 - py[i]) - (py[j] - py[i]) * (x + 0.5 - px[i]);
                    if (cr > 0) pos = true; else if (cr < 0) neg = true;
                }
                if (!(pos && neg)) Put(img, off, x, y, r, g, b);
            }
    }
    static void Put(byte[] img, int off, int x, int y, byte r, byte g, byte b)
    {
        int p = off + ((Height - 1 - y) * Width + x) * 3;
        img[p] = r; img[p + 1] = g; img[p + 2] = b;
    }

    /// <summary>Gymnasium's picture of the cart and pole (without antialiasing), 400x600 RGB.</summary>
    public void Render(byte[] img, int off)
    {
        double scale = Width / (XThreshold * 2), polelen = scale * (2 * Length);
        double cartx = S[0] * scale + Width / 2.0, carty = 100, axley = carty + 30 / 4.0;
        for (int i = 0; i < FrameBytes; i++) img[off + i] = 255;
        double[] cx = { -25 + cartx, -25 + cartx, 25 + cartx, 25 + cartx }, cy = { -15 + carty, 15 + carty, 15 + carty, -15 + carty };
        FillPoly(img, off, cx, cy, 0, 0, 0);
        double[] lx = { -5, -5, 5, 5 }, ly = { -5, polelen - 5, polelen - 5, -5 }, qx = new double[4], qy = new double[4];
        double a = -S[2];
        for (int i = 0; i < 4; i++)
        {
            qx[i] = lx[i] * Math.Cos(a) - ly[i] * Math.Sin(a) + cartx;
            qy[i] = lx[i] * Math.Sin(a) + ly[i] * Math.Cos(a) + axley;
        }
        FillPoly(img, off, qx, qy, 202, 152, 101);
        for (int y = -5; y <= 5; y++)
            for (int x = -5; x <= 5; x++)
            {
                int px = (int)cartx + x, py = (int)axley + y;
                if (x * x + y * y <= 25 && px >= 0 && px < Width && py >= 0 && py < Height) Put(img, off, px, py, 129, 132, 203);
            }
        for (int x = 0; x < Width; x++) Put(img, off, x, (int)carty, 0, 0, 0);
    }
}

/// <summary>The batch served over rlay.</summary>
sealed class CartPoleServer : Callbacks
{
    readonly CartPoleEnv[] envs;
    readonly float[] obs;
    readonly int[] batchShape;
    readonly double[] state;
    readonly byte[] frames;
    static readonly int[] FrameShape = { 400, 600, 3 };

    public CartPoleServer(int n, bool rgb)
    {
        envs = new CartPoleEnv[n];
        for (int i = 0; i < n; i++) envs[i] = new CartPoleEnv();
        obs = new float[4 * n];
        batchShape = new[] { n, 4 };
        state = new double[4 * n];
        if (rgb) frames = new byte[n * CartPoleEnv.FrameBytes];
    }

    void WriteObs(Env env)
    {
        for (int i = 0; i < envs.Length; i++)
            for (int k = 0; k < 4; k++) obs[4 * i + k] = (float)envs[i].S[k];
        if (envs.Length == 1) env.Obs.PutTensor(obs);   // one env: unbatched
        else env.Obs.PutTensor(obs, batchShape);
    }

    public override void Reset(Env env, Command cmd)
    {
        int n = envs.Length;
        Value st = cmd.Options.Get("state"), lo = cmd.Options.Get("low"), hi = cmd.Options.Get("high");
        double low = -0.05, high = 0.05;
        double[] rows = null;
        if (st.Exists)   // checked before any sub-env is touched
        {
            bool ok = st.Type == ValueKind.Tensor && st.Dtype == Dtype.Float64 &&
                      (n == 1 ? st.Ndim == 1 && st.Dim(0) == 4 : st.Ndim == 2 && st.Dim(0) == n && st.Dim(1) == 4);
            if (!ok) throw new ArgumentException(n == 1 ? "the reset option 'state' must be a float64 tensor of shape (4,)"
                                                        : "the reset option 'state' must be a float64 tensor of shape (" + n + ", 4)");
            st.CopyTo(state);
            rows = state;
        }
        else
        {
            if (lo.Exists) low = lo.AsDouble();
            if (hi.Exists) high = hi.AsDouble();
            if (low > high) throw new ArgumentException("Lower bound (" + low + ") must be lower than higher bound (" + high + ").");
        }
        for (int i = 0; i < n; i++)
            if (cmd.ResetMask[i]) envs[i].Reset(cmd.Seeded[i], cmd.Seeds[i], low, high, rows, i, i);
        WriteObs(env);
    }

    public override void Step(Env env, Command cmd)
    {
        int n = envs.Length;
        for (int i = 0; i < n; i++)
        {
            double reward = 0;
            bool terminated = false, truncated = false;
            if (n > 1 && cmd.Autoreset[i]) envs[i].Reset(false, 0, -0.05, 0.05, null, 0, i);   // next-step autoreset
            else envs[i].Step(n == 1 ? cmd.Action.AsLong() : cmd.Action.GetLong(i), out reward, out terminated, out truncated);
            if (n == 1) { env.Reward = reward; env.Terminated = terminated; env.Truncated = truncated; }
            else { env.Rewards[i] = reward; env.Terminations[i] = terminated; env.Truncations[i] = truncated; }
        }
        WriteObs(env);
    }

    public override void Render(Env env, Command cmd)
    {
        if (frames == null) throw new NotSupportedException("cartpole renders only with --render-mode rgb_array");
        if (envs.Length > 1) env.Frame.PutArray(envs.Length);   // section 10: one frame per sub-env
        for (int i = 0; i < envs.Length; i++)
        {
            envs[i].Render(frames, i * CartPoleEnv.FrameBytes);
            env.Frame.PutTensorBytes(Dtype.UInt8, FrameShape, frames, i * CartPoleEnv.FrameBytes);
        }
    }

    public override void Call(Env env, Command cmd)
    {
        if (cmd.Name != "get_state") throw new NotSupportedException("cartpole has no function named '" + cmd.Name + "'");
        if (envs.Length > 1) env.Result.PutArray(envs.Length);
        foreach (CartPoleEnv e in envs) env.Result.PutTensor(e.S);
    }
}

static class Program
{
    static int Usage(string why)
    {
        Console.Error.WriteLine("cartpole: " + why);
        Console.Error.WriteLine("usage: cartpole [--listen|--connect [ADDRESS]] [--num-envs N] [--render-mode rgb_array] [--connect-timeout SECONDS]");
        return 2;
    }

    static int Main(string[] args)
    {
        string address = null, mode = null, renderMode = null;
        int n = 1;
        double connectTimeout = 10;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--listen" || args[i] == "--connect")
            {
                mode = args[i] == "--listen" ? "listen" : "dial";
                if (i + 1 < args.Length && !args[i + 1].StartsWith("--")) address = args[++i];
            }
            else if (args[i] == "--num-envs" && i + 1 < args.Length)
            {
                if (!int.TryParse(args[++i], out n) || n < 1 || n > 65536) return Usage("--num-envs takes a number in 1..65536");
            }
            else if (args[i] == "--render-mode" && i + 1 < args.Length) renderMode = args[++i];
            else if (args[i] == "--connect-timeout" && i + 1 < args.Length)
            {
                if (!double.TryParse(args[++i], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out connectTimeout))
                    return Usage("--connect-timeout takes seconds");
            }
            else return Usage("unknown argument '" + args[i] + "'");
        }
        if (renderMode != null && renderMode != "rgb_array") return Usage("render mode '" + renderMode + "' is not offered (only rgb_array)");

        // Box(-high, high, float32), high = [x_threshold * 2, inf, theta_threshold_radians * 2, inf]
        float[] hi = { (float)(2.4 * 2), float.PositiveInfinity, (float)(CartPoleEnv.ThetaThreshold * 2), float.PositiveInfinity };
        var env = new Env(
            Space.Box(Dtype.Float32, new[] { 4 }, new double[] { -hi[0], -hi[1], -hi[2], -hi[3] }, new double[] { hi[0], hi[1], hi[2], hi[3] }),
            Space.Discrete(2));
        env.Name = "CartPole-v1";
        env.NumEnvs = n;
        env.RenderMode = renderMode;
        env.ConnectTimeoutMs = connectTimeout < 0 ? -1 : (int)(connectTimeout * 1000);
        env.Metadata.PutKey("render_modes"); env.Metadata.PutArray(1); env.Metadata.PutStr("rgb_array");
        env.Metadata.PutKey("render_fps"); env.Metadata.PutInt(50);
        if (n > 1) { env.Metadata.PutKey("autoreset_mode"); env.Metadata.PutStr("next_step"); }
        try
        {
            env.Start(address, mode);
        }
        catch (RlayException e)
        {
            Console.Error.WriteLine("cartpole: " + e);
            return 1;
        }
        RlayException err = env.Serve(new CartPoleServer(n, renderMode != null));
        if (err != null)
        {
            Console.Error.WriteLine("cartpole: " + err);
            return 1;
        }
        return 0;
    }
}
