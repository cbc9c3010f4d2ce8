// The few UnityEngine types the sample uses, with the same names and signatures, so the tests can
// compile (and run) the sample with Mono. This is not Unity: Rigidbody.Simulate is a plain euler
// step standing in for PhysX, called by tests/SampleHost.cs after FixedUpdate while Time.timeScale > 0.
using System;

namespace UnityEngine
{
    public struct Vector3
    {
        public float x, y, z;
        public Vector3(float x, float y, float z) { this.x = x; this.y = y; this.z = z; }
        public static Vector3 zero { get { return new Vector3(0, 0, 0); } }
        public static Vector3 right { get { return new Vector3(1, 0, 0); } }
        public static Vector3 operator *(Vector3 a, float k) { return new Vector3(a.x * k, a.y * k, a.z * k); }
        public static Vector3 operator +(Vector3 a, Vector3 b) { return new Vector3(a.x + b.x, a.y + b.y, a.z + b.z); }
    }

    public class Object { }

    public class Component : Object
    {
        internal GameObject owner;
        public T GetComponent<T>() where T : Component { return owner == null ? null : owner.Get<T>(); }
    }

    public class Behaviour : Component { }
    public class MonoBehaviour : Behaviour { }

    public class Rigidbody : Component
    {
        public float mass = 1f;
        public Vector3 position;
        public Vector3 velocity;
        Vector3 force;
        public void AddForce(Vector3 f) { force = force + f; }
        /// <summary>Stub physics: one euler step of dt (not PhysX).</summary>
        public void Simulate(float dt)
        {
            velocity = velocity + force * (dt / mass);
            position = position + velocity * dt;
            force = Vector3.zero;
        }
    }

    /// <summary>Stub: holds components; AddComponent wires GetComponent as Unity does.</summary>
    public class GameObject : Object
    {
        readonly System.Collections.Generic.List<Component> components = new System.Collections.Generic.List<Component>();
        public T AddComponent<T>() where T : Component, new()
        {
            var c = new T { owner = this };
            components.Add(c);
            return c;
        }
        internal T Get<T>() where T : Component
        {
            foreach (Component c in components) if (c is T t) return t;
            return null;
        }
    }

    public static class Time
    {
        public static float timeScale = 1f;
    }

    /// <summary>Stub: Quit records the exit code; the host program exits with it after the frame.</summary>
    public static class Application
    {
        public static int? exitCode;
        public static void Quit(int exitCode) { Application.exitCode = exitCode; }
    }

    public static class Debug
    {
        public static void Log(object m) { Console.Error.WriteLine(m); }
        public static void LogError(object m) { Console.Error.WriteLine("ERROR " + m); }
    }

    [AttributeUsage(AttributeTargets.Field)] public sealed class SerializeField : Attribute { }
    [AttributeUsage(AttributeTargets.Field)] public sealed class TooltipAttribute : Attribute { public TooltipAttribute(string t) { } }
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = true)]
    public sealed class RequireComponent : Attribute { public RequireComponent(Type t) { } }
}
