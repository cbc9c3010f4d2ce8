// Runs a Unity sample outside Unity (`sample_host` for Samples~/CartAgent/RlayCartAgent.cs,
// `sample_host squad N` for Samples~/ManyCarts/RlayCartSquad.cs with N carts), against the stub of
// tests/UnityStub.cs: Awake, Start, then frames as Unity plays them: Update every frame, and
// while Time.timeScale > 0 a FixedUpdate and a stub physics step of 0.02 s, until the session
// ends (or the sample calls Application.Quit: the host exits with its code). RLAY_ADDRESS and
// RLAY_MODE come from rlay's launcher (spec section 15).
using System;
using System.Reflection;
using UnityEngine;

static class SampleHost
{
    static void Call(object o, string name)
    {
        o.GetType().GetMethod(name, BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public).Invoke(o, null);
    }

    static int Main(string[] args)
    {
        var go = new GameObject();
        Rigidbody[] bodies;
        MonoBehaviour agent;
        Func<bool> over;
        if (args.Length == 2 && args[0] == "squad")
        {
            bodies = new Rigidbody[int.Parse(args[1])];
            for (int i = 0; i < bodies.Length; i++)
            {
                bodies[i] = new GameObject().AddComponent<Rigidbody>();
                bodies[i].position = new Vector3(i, 0, 0);   // each cart starts at its own x
            }
            var squad = go.AddComponent<RlayCartSquad>();
            squad.SetCarts(bodies);
            agent = squad;
            over = () => squad.SessionOver;
        }
        else
        {
            bodies = new[] { go.AddComponent<Rigidbody>() };
            var cart = go.AddComponent<RlayCartAgent>();
            Call(cart, "Awake");
            agent = cart;
            over = () => cart.SessionOver;
        }
        Call(agent, "Start");
        long frames = 0;
        while (!over() && Application.exitCode == null)
        {
            Call(agent, "Update");
            if (Time.timeScale > 0)
            {
                Call(agent, "FixedUpdate");
                if (Time.timeScale > 0) foreach (Rigidbody body in bodies) body.Simulate(0.02f);
                frames++;
            }
            else System.Threading.Thread.Sleep(1);   // a frame with nothing to simulate
        }
        Console.Error.WriteLine("sample host: " + frames + " physics steps");
        Call(agent, "OnDestroy");
        return Application.exitCode ?? 0;
    }
}
