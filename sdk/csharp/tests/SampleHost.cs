// Runs the Unity sample (Samples~/CartAgent/RlayCartAgent.cs) outside Unity, against the stub of
// tests/UnityStub.cs: Awake, Start, then frames as Unity plays them: Update every frame, and
// while Time.timeScale > 0 a FixedUpdate and a stub physics step of 0.02 s, until the session
// ends. RLAY_ADDRESS says where the trainer listens.
using System;
using System.Reflection;
using UnityEngine;

static class SampleHost
{
    static void Call(object o, string name)
    {
        o.GetType().GetMethod(name, BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public).Invoke(o, null);
    }

    static int Main()
    {
        var go = new GameObject();
        Rigidbody body = go.AddComponent<Rigidbody>();
        RlayCartAgent agent = go.AddComponent<RlayCartAgent>();
        Call(agent, "Awake");
        Call(agent, "Start");
        long frames = 0;
        while (!agent.SessionOver)
        {
            Call(agent, "Update");
            if (Time.timeScale > 0)
            {
                Call(agent, "FixedUpdate");
                if (Time.timeScale > 0) body.Simulate(0.02f);
                frames++;
            }
            else System.Threading.Thread.Sleep(1);   // a frame with nothing to simulate
        }
        Console.Error.WriteLine("sample host: " + frames + " physics steps");
        Call(agent, "OnDestroy");
        return 0;
    }
}
