// Many agents in one Unity scene, trained from Python as one vector env (spec section 10): each
// Rigidbody in Carts is a sub-env of one rlay session, so Python sees
// rlay.ServerVectorEnv(...).num_envs == Carts.Length and steps them all with one message.
//
// Each cart observes [x, vx] and is pushed left (0), not at all (1) or right (2) for
// DecisionPeriod physics steps; reward -|x|; its episode ends when |x| > Limit (terminated) or
// after MaxSteps actions (truncated). Autoreset is Gymnasium's "next_step": the STEP after a
// cart's episode ended resets that cart (its action is ignored) and answers reward 0.
//
// Python side:
//     import rlay
//     envs = rlay.ServerVectorEnv("tcp://127.0.0.1:5555")   # waits for the game
//     obs, info = envs.reset(seed=0)                         # obs.shape == (len(Carts), 2)
//     obs, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
using System;
using Rlay;
using UnityEngine;

public class RlayCartSquad : MonoBehaviour
{
    [Tooltip("The carts: one sub-env each (each a Rigidbody on a rail along x).")]
    [SerializeField] Rigidbody[] carts = new Rigidbody[0];
    [Tooltip("Where the Python trainer (rlay.ServerVectorEnv) listens. Empty: $RLAY_ADDRESS, else tcp://127.0.0.1:5555.")]
    [SerializeField] string address = "";
    [SerializeField] float force = 10f;
    [SerializeField] int decisionPeriod = 2;
    [SerializeField] float limit = 5f;
    [SerializeField] int maxSteps = 500;

    Env env;
    bool launched;   // started by rlay's launcher (RLAY_ADDRESS set, no inspector address)
    Vector3[] starts;
    int[] steps;
    long[] actions;
    float[] obs;
    int[] obsShape;
    bool[] autoreset;   // the STEP's cmd.Autoreset: valid until the reply
    int framesLeft;
    bool acting;

    /// <summary>True once the training session has ended.</summary>
    public bool SessionOver { get { return env == null || env.IsOver; } }

    /// <summary>For code that builds the scene (and the tests): the carts to drive.</summary>
    public void SetCarts(Rigidbody[] bodies) { carts = bodies; }

    void Start()
    {
        int n = carts.Length;
        starts = new Vector3[n];
        for (int i = 0; i < n; i++) starts[i] = carts[i].position;
        steps = new int[n];
        actions = new long[n];
        obs = new float[2 * n];
        obsShape = new[] { n, 2 };
        env = new Env(Space.Box(Dtype.Float32, new[] { 2 }, double.NegativeInfinity, double.PositiveInfinity),
                      Space.Discrete(3));
        env.Name = "RlayCartSquad";
        env.NumEnvs = n;
        env.Metadata.PutKey("autoreset_mode"); env.Metadata.PutStr("next_step");
        env.ConnectTimeoutMs = -1;
        // An address in the inspector: dial it. A player started by rlay's launcher (RLAY_ADDRESS
        // set: ClientEnv(launch=...) or ServerEnv(launch=...)) follows spec section 15: RLAY_MODE
        // listen (or unset: it prints RLAY_LISTENING) or dial. Otherwise: dial the default port.
        launched = string.IsNullOrEmpty(address) && !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("RLAY_ADDRESS"));
        try
        {
            if (launched) env.Start();
            else env.Connect(!string.IsNullOrEmpty(address) ? address : "tcp://127.0.0.1:5555");
        }
        catch (RlayException e)
        {
            Debug.LogError("rlay: " + e);
            if (launched) Application.Quit(1);   // section 15: a bad RLAY_MODE or address exits non-zero
            env = null;
            return;
        }
        Time.timeScale = 0f;   // time stands still between decisions
    }

    void Update()
    {
        if (env == null || env.IsOver || acting) return;
        Command cmd = env.Poll(0);
        if (cmd == null) { if (env.IsOver) Ended(); return; }
        try
        {
            if (cmd.Kind == CommandKind.Reset)
            {
                for (int i = 0; i < carts.Length; i++) if (cmd.ResetMask[i]) ResetCart(i);
                Observe();
                env.ReplyReset();
            }
            else if (cmd.Kind == CommandKind.Step)
            {
                for (int i = 0; i < carts.Length; i++)
                {
                    if (cmd.Autoreset[i]) { ResetCart(i); actions[i] = 1; }   // next-step autoreset
                    else actions[i] = cmd.Action.GetLong(i);
                }
                framesLeft = decisionPeriod;
                acting = true;
                Time.timeScale = 1f;
                autoreset = cmd.Autoreset;
            }
            else env.ReplyDefault(cmd);
        }
        catch (Exception e)
        {
            env.ReplyException(e);
        }
        if (env.IsOver) Ended();   // CLOSE answered
    }

    void FixedUpdate()
    {
        if (!acting) return;
        if (framesLeft == 0)
        {
            acting = false;
            Time.timeScale = 0f;
            Answer();
            return;
        }
        for (int i = 0; i < carts.Length; i++)
            if (!autoreset[i]) carts[i].AddForce(Vector3.right * ((actions[i] - 1) * force));
        framesLeft--;
    }

    void ResetCart(int i)
    {
        carts[i].position = starts[i];
        carts[i].velocity = Vector3.zero;
        steps[i] = 0;
    }

    void Answer()
    {
        try
        {
            for (int i = 0; i < carts.Length; i++)
            {
                if (autoreset[i])   // reset at this step: its first observation, reward 0, flags false
                {
                    ResetCart(i);
                    env.Rewards[i] = 0; env.Terminations[i] = false; env.Truncations[i] = false;
                    continue;
                }
                float x = carts[i].position.x;
                steps[i]++;
                env.Rewards[i] = -Math.Abs(x);
                env.Terminations[i] = Math.Abs(x) > limit;
                env.Truncations[i] = steps[i] >= maxSteps;
            }
            Observe();
            env.ReplyStepBatch();
        }
        catch (Exception e)
        {
            env.ReplyException(e);
        }
    }

    void Observe()
    {
        for (int i = 0; i < carts.Length; i++)
        {
            obs[2 * i] = carts[i].position.x;
            obs[2 * i + 1] = carts[i].velocity.x;
        }
        env.Obs.PutTensor(obs, obsShape);
    }

    /// <summary>The session is over. A launched player exits (spec section 15): 0 after CLOSE or the
    /// trainer's end of stream in idle, 1 with the error logged otherwise.</summary>
    void Ended()
    {
        if (env.Error != null) Debug.LogError("rlay: " + env.Error);
        if (launched) Application.Quit(env.Error == null ? 0 : 1);
    }

    void OnDestroy()
    {
        if (env != null) env.Dispose();
        Time.timeScale = 1f;
    }
}
