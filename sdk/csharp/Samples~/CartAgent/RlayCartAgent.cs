// A Unity scene agent trained from Python through rlay: add this component to a GameObject with
// a Rigidbody (a cart on a rail along x), press Play, and it dials the Python trainer
// (rlay.ServerEnv). It observes [x, vx] of its Rigidbody and acts in FixedUpdate: 0 pushes left,
// 1 does nothing, 2 pushes right, for DecisionPeriod physics steps per action. Reward -|x|; the
// episode ends when |x| > Limit (terminated) or after MaxSteps actions (truncated).
//
// Python side (the trainer listens; Unity dials in when you press Play):
//     import rlay
//     env = rlay.ServerEnv("tcp://127.0.0.1:5555")   # waits for the game
//     obs, info = env.reset(seed=0)
//     obs, reward, terminated, truncated, info = env.step(2)
//
// Loop style: Update asks rlay for a command with Poll(0), which never blocks the frame. A STEP
// is played over DecisionPeriod physics steps (FixedUpdate) and answered afterwards; meanwhile
// the command stays valid and Poll returns null. Between decisions the scene's time stands still
// (Time.timeScale = 0; Update still runs, FixedUpdate does not), so an episode does not depend on
// how fast Python answers. While the editor is paused nothing is polled: the trainer waits.
using System;
using Rlay;
using UnityEngine;

[RequireComponent(typeof(Rigidbody))]
public class RlayCartAgent : MonoBehaviour
{
    [Tooltip("Where the Python trainer (rlay.ServerEnv) listens. Empty: $RLAY_ADDRESS, else tcp://127.0.0.1:5555.")]
    [SerializeField] string address = "";
    [Tooltip("Force applied along x while pushing.")]
    [SerializeField] float force = 10f;
    [Tooltip("Physics steps (FixedUpdate calls) per action.")]
    [SerializeField] int decisionPeriod = 2;
    [Tooltip("|x| beyond which the episode terminates.")]
    [SerializeField] float limit = 5f;
    [Tooltip("Actions per episode before truncation.")]
    [SerializeField] int maxSteps = 500;

    Rigidbody body;
    Env env;
    bool launched;   // started by rlay's launcher (RLAY_ADDRESS set, no inspector address)
    readonly float[] obs = new float[2];
    Vector3 start;
    int action, framesLeft, steps;
    bool acting;

    /// <summary>True once the training session has ended (the trainer closed or vanished).</summary>
    public bool SessionOver { get { return env == null || env.IsOver; } }

    void Awake()
    {
        body = GetComponent<Rigidbody>();
        start = body.position;
    }

    void Start()
    {
        env = new Env(Space.Box(Dtype.Float32, new[] { 2 }, double.NegativeInfinity, double.PositiveInfinity),
                      Space.Discrete(3));
        env.Name = "RlayCartAgent";
        env.Metadata.PutKey("render_fps"); env.Metadata.PutInt(50);
        env.ConnectTimeoutMs = -1;   // the trainer may start after Play: keep dialling
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
        Time.timeScale = 0f;
        Debug.Log("rlay: serving the trainer at " + env.Address);
    }

    void Update()
    {
        if (env == null || env.IsOver || acting) return;
        Command cmd = env.Poll(0);   // never blocks the frame
        if (cmd != null) Handle(cmd);
        if (env.IsOver) Ended();
    }

    void FixedUpdate()
    {
        if (!acting) return;
        if (framesLeft == 0)   // the physics of the last DecisionPeriod steps has run
        {
            acting = false;
            Time.timeScale = 0f;   // time stands still until the next decision
            Answer();
            return;
        }
        body.AddForce(Vector3.right * ((action - 1) * force));
        framesLeft--;
    }

    void Handle(Command cmd)
    {
        try
        {
            switch (cmd.Kind)
            {
                case CommandKind.Reset:
                    body.position = start;
                    body.velocity = Vector3.zero;
                    steps = 0;
                    Observe();
                    env.ReplyReset();
                    break;
                case CommandKind.Step:
                    action = (int)cmd.Action.AsLong();   // checked against Discrete(3) by rlay
                    framesLeft = decisionPeriod;
                    acting = true;
                    Time.timeScale = 1f;
                    break;
                default:
                    env.ReplyDefault(cmd);   // CLOSE; NOT_SUPPORTED for RENDER and CALL
                    break;
            }
        }
        catch (Exception e)
        {
            env.ReplyException(e);   // the trainer gets ENV_EXCEPTION with this stack trace
        }
    }

    void Answer()
    {
        try
        {
            steps++;
            Observe();
            float x = body.position.x;
            env.ReplyStep(-Math.Abs(x), Math.Abs(x) > limit, steps >= maxSteps);
        }
        catch (Exception e)
        {
            env.ReplyException(e);
        }
    }

    void Observe()
    {
        obs[0] = body.position.x;
        obs[1] = body.velocity.x;
        env.Obs.PutTensor(obs);
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
        if (env != null) env.Dispose();   // tells a live trainer SHUTTING_DOWN
        Time.timeScale = 1f;
    }
}
