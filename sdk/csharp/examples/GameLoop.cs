// A game with its own frame loop, served as a Gymnasium env in loop style: what a Unity scene
// does from Update/FixedUpdate, here as a console program.
//
// The game runs frame after frame and asks rlay each frame whether a command is waiting
// (env.Poll(0): never blocks). A STEP is played over FrameSkip frames and only then answered; the
// command stays valid until its reply, and Poll returns null meanwhile. Between commands the game
// keeps running (here it idles at about 1 kHz).
//
// The game: a cart on a line, pushed left (0), right (2) or not (1); obs float32 [x, v];
// reward -|x|; the episode ends when |x| > 10 (terminated) or after 200 steps (truncated).
// CALL "boom" throws (an exception in game code: answered as ENV_EXCEPTION, the game goes on);
// CALL "allocated" returns the bytes this thread has allocated so far (the no-allocation check);
// CALL "quit" quits the game with the call outstanding (the trainer gets SHUTTING_DOWN).
//
// Usage: game_loop [--listen [ADDRESS] | --connect [ADDRESS]]   (default: $RLAY_ADDRESS, $RLAY_MODE)
using System;
using System.Threading;
using Rlay;

static class GameLoop
{
    const int FrameSkip = 4;
    const float Dt = 0.05f;

    static void Boom(int depth)
    {
        if (depth == 0) throw new InvalidOperationException("the game's own bug");
        Boom(depth - 1);
    }

    static int Main(string[] args)
    {
        // Flags, or (none) the launcher's variables of spec section 15: RLAY_ADDRESS, RLAY_MODE.
        string address = args.Length > 1 ? args[1] : Environment.GetEnvironmentVariable("RLAY_ADDRESS");
        string mode = args.Length == 0 ? null : args[0] == "--connect" ? "dial" : args[0] == "--listen" ? "listen" : "";
        if (mode == "" || args.Length > 2 || address == null)
        {
            Console.Error.WriteLine("usage: game_loop [--listen|--connect [ADDRESS]]   (default: $RLAY_ADDRESS, $RLAY_MODE)");
            return 2;
        }
        var env = new Env(Space.Box(Dtype.Float32, new[] { 2 }, double.NegativeInfinity, double.PositiveInfinity), Space.Discrete(3));
        env.Name = "game_loop";
        try { env.Start(address, mode); }
        catch (RlayException e)
        {
            Console.Error.WriteLine("game_loop: " + e);
            return 1;
        }

        float[] obs = new float[2];
        float x = 0, v = 0, push = 0;
        int framesLeft = 0, steps = 0;
        while (!env.IsOver)                            // the game's frame loop
        {
            Command cmd = env.Poll(0);                 // never blocks
            if (cmd != null)
            {
                try
                {
                    switch (cmd.Kind)
                    {
                        case CommandKind.Reset:
                            x = 0; v = 0; steps = 0;
                            obs[0] = x; obs[1] = v;
                            // reset(options={"float64": True}) plays a game bug: a float64 observation
                            // for the float32 Box. The SDK neither sends nor rounds it (ENV_EXCEPTION).
                            if (cmd.Options.Get("float64").Exists) env.Obs.PutTensor(new double[] { x, v });
                            else env.Obs.PutTensor(obs);
                            env.ReplyReset();
                            break;
                        case CommandKind.Step:
                            push = cmd.Action.AsLong() - 1; // checked against Discrete(3) by the SDK
                            framesLeft = FrameSkip;         // answered FrameSkip frames from now
                            break;
                        case CommandKind.Call:
                            if (cmd.Name == "boom") Boom(3);
                            if (cmd.Name == "quit") { env.Dispose(); break; }
                            if (cmd.Name == "allocated")
                            {
                                env.Result.PutInt(GC.GetAllocatedBytesForCurrentThread());
                                env.ReplyCall();
                            }
                            else env.ReplyDefault(cmd);
                            break;
                        default:
                            env.ReplyDefault(cmd);          // CLOSE; NOT_SUPPORTED for the rest
                            break;
                    }
                }
                catch (Exception e)
                {
                    env.ReplyException(e);                  // ENV_EXCEPTION with the stack trace
                }
            }
            if (framesLeft > 0)                             // one frame of the game
            {
                v += push * Dt;
                x += v * Dt;
                if (--framesLeft == 0)
                {
                    steps++;
                    obs[0] = x; obs[1] = v;
                    env.Obs.PutTensor(obs);
                    env.Info.PutKey("frames"); env.Info.PutInt(FrameSkip);
                    env.ReplyStep(-Math.Abs(x), x > 10 || x < -10, steps >= 200);
                }
            }
            else Thread.Sleep(1);                           // nothing to play: wait for the next frame
        }
        if (env.Error != null)
        {
            Console.Error.WriteLine("game_loop: " + env.Error);
            return 1;
        }
        return 0;
    }
}
