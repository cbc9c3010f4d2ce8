"""The ``rlay`` command: serve a Gymnasium env, check an env side, benchmark one.

rlay serve CartPole-v1 --address tcp://127.0.0.1:5555
rlay check tcp://127.0.0.1:5555            # an env side that listens
rlay check -- ./cartpole --listen {address}     # launch it (rlay picks the address)
rlay check --server -- ./game              # launch a program that dials in (RLAY_ADDRESS)
rlay bench unix:///tmp/env.sock --steps 20000
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

import rlay
from rlay.envs import ClientEnv, ServerEnv
from rlay.errors import RemoteError, RlayError
from rlay.protocol.wire import ErrorCode


def _open_env(args: argparse.Namespace, **kwargs: Any) -> ClientEnv | ServerEnv:
    """The env under test: dial ADDRESS, listen on it (--server), or launch COMMAND."""
    if args.command:
        if args.server:
            return ServerEnv(args.address, launch=args.command, accept_timeout=args.timeout, **kwargs)
        return ClientEnv(args.address, launch=args.command, connect_timeout=args.timeout, **kwargs)
    if args.address is None:
        raise SystemExit("rlay: give an ADDRESS, or -- COMMAND to launch (see --help)")
    if args.server:
        print(f"waiting for an env side to connect to {args.address} ...", file=sys.stderr)
        return ServerEnv(args.address, accept_timeout=args.timeout, **kwargs)
    return ClientEnv(args.address, connect_timeout=args.timeout, **kwargs)


# -- serve -----------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    def make() -> gym.Env[Any, Any]:
        return gym.make(args.env_id, render_mode=args.render_mode)

    make().close()  # fail here, clearly, if the id is unknown
    if args.num_envs != 1:
        from rlay.backends.vector import serve_vector  # type: ignore[import-not-found, unused-ignore]

        def make_vec() -> gym.vector.VectorEnv[Any, Any, Any]:
            return gym.vector.SyncVectorEnv([make] * args.num_envs)

        server = serve_vector(make_vec, args.address, block=False)
    else:
        server = rlay.serve(make, args.address, block=False)
    print(f"RLAY_LISTENING {server.address}", flush=True)
    print(
        f"serving {args.env_id} (num_envs={args.num_envs}) at {server.address}; Ctrl-C stops", file=sys.stderr
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


# -- check -----------------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.failures = 0

    def run(self, name: str, check: Callable[[], str | None]) -> bool:
        try:
            detail = check()
        except Exception as exc:  # a check failed: say how, go on with the next
            self.failures += 1
            text = str(exc).splitlines() or [type(exc).__name__]
            print(f"  FAIL  {name}: {type(exc).__name__}: {text[0]}")
            for line in text[1:8]:
                print(f"          {line}")
            if not isinstance(exc, (RlayError, AssertionError)):
                print("          " + "".join(traceback.format_tb(exc.__traceback__)[-1:]).strip())
            return False
        print(f"  ok    {name}" + (f": {detail}" if detail else ""))
        return True


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, (np.ndarray, np.generic)) or isinstance(b, (np.ndarray, np.generic)):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return bool(a == b)


def cmd_check(args: argparse.Namespace) -> int:
    report = Report()
    print(f"rlay check {args.address or ' '.join(args.command)}")
    env_box: list[ClientEnv | ServerEnv] = []

    def connect() -> str:
        env_box.append(_open_env(args))
        env = env_box[0]
        return f"{env._live().peer_sdk}, env {env.env_name or '?'} at {env.address}"

    if not report.run("handshake (protocol name, version, roles, ENV_INFO)", connect):
        return 1
    env = env_box[0]
    try:
        report.run(
            "spaces are valid Gymnasium spaces",
            lambda: f"observation {env.observation_space}, action {env.action_space}",
        )

        def checker() -> str:
            from gymnasium.utils.env_checker import check_env

            check_env(env, skip_render_check=True)
            return "gymnasium.utils.env_checker.check_env passed"

        report.run("check_env", checker)

        def inside() -> str:
            obs, _ = env.reset(seed=args.seed)
            if obs not in env.observation_space:
                raise AssertionError(f"reset observation {obs!r:.200} is outside {env.observation_space}")
            env.action_space.seed(args.seed)
            episodes = 0
            for t in range(args.steps):
                obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                if obs not in env.observation_space:
                    raise AssertionError(
                        f"step {t}: observation {obs!r:.200} is outside {env.observation_space}"
                    )
                if not np.isfinite(float(reward)):
                    raise AssertionError(f"step {t}: reward {reward!r} is not finite")
                if terminated or truncated:
                    episodes += 1
                    env.reset()
            return f"{args.steps} random steps, {episodes} episodes ended"

        report.run("observations stay inside the observation space", inside)

        def determinism() -> str:
            traces = []
            for _ in range(2):
                env.action_space.seed(args.seed)
                obs, info = env.reset(seed=args.seed)
                trace: list[Any] = [obs, info]
                for _ in range(min(args.steps, 50)):
                    out = env.step(env.action_space.sample())
                    trace.append(out)
                    if out[2] or out[3]:
                        break
                traces.append(trace)
            for i, (a, b) in enumerate(zip(*traces, strict=False)):
                if not _same(a, b):
                    raise AssertionError(
                        f"two runs with seed {args.seed} differ at step {i}: {a!r:.120} vs {b!r:.120}"
                    )
            return f"two runs with seed {args.seed} agree over {len(traces[0]) - 1} steps"

        report.run("seeded determinism", determinism)

        def render() -> str:
            if env.render_mode is None:
                return "no render mode (skipped)"
            frame = env.render()
            if env.render_mode == "rgb_array":
                if not (
                    isinstance(frame, np.ndarray)
                    and frame.dtype == np.uint8
                    and frame.ndim == 3
                    and frame.shape[2] == 3
                ):
                    raise AssertionError(f"rgb_array frame must be uint8 (H, W, 3), got {frame!r:.80}")
                return f"rgb_array frame {frame.shape}"
            if env.render_mode == "ansi" and not isinstance(frame, str):
                raise AssertionError(f"ansi frame must be a str, got {type(frame).__name__}")
            return f"{env.render_mode} frame"

        report.run("render", render)

        def bad_command() -> str:
            try:
                env.call("rlay-check-no-such-function")
            except RemoteError as exc:
                if exc.code != ErrorCode.NOT_SUPPORTED or exc.fatal:
                    raise AssertionError(f"expected a non-fatal NOT_SUPPORTED error, got {exc}") from None
            else:
                raise AssertionError("an unknown CALL was answered with a result, not an error")
            env._check_actions = False
            bad = _bad_action(env.action_space)
            try:
                if bad is not None:
                    env.step(bad)
                    raise AssertionError(f"the out-of-space action {bad!r} was accepted")
            except RemoteError as exc:
                if exc.code != ErrorCode.INVALID_ACTION or exc.fatal:
                    raise AssertionError(f"expected a non-fatal INVALID_ACTION error, got {exc}") from None
            finally:
                env._check_actions = True
            env.reset(seed=args.seed)
            env.step(env.action_space.sample())
            return "unknown CALL -> NOT_SUPPORTED, bad action -> INVALID_ACTION, session still usable"

        report.run("errors for bad commands", bad_command)
    finally:
        env.close()
    total = 7
    print(f"{total - report.failures} passed, {report.failures} failed")
    return 1 if report.failures else 0


def _bad_action(space: gym.Space[Any]) -> Any:
    if isinstance(space, gym.spaces.Discrete):
        return int(space.start + space.n)
    if isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.integer):
        high = np.where(np.isfinite(space.high), space.high, 0)
        if np.all(high < np.iinfo(space.dtype).max):
            return (high + 1).astype(space.dtype)
    if isinstance(space, gym.spaces.Box) and np.all(np.isfinite(space.high)):
        return (space.high + 1 + np.abs(space.high)).astype(space.dtype)
    return None


# -- bench -----------------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    env = _open_env(args)
    try:
        env.reset(seed=0)
        env.action_space.seed(0)
        actions = [env.action_space.sample() for _ in range(256)]
        for i in range(min(1000, args.steps)):
            _, _, term, trunc, _ = env.step(actions[i % 256])
            if term or trunc:
                env.reset()
        times = np.empty(args.steps)
        clock = time.perf_counter
        started = last_print = clock()
        for i in range(args.steps):
            t0 = clock()
            _, _, term, trunc, _ = env.step(actions[i & 255])
            t1 = clock()
            times[i] = t1 - t0
            if term or trunc:
                env.reset()
            if t1 - last_print > 0.2 and sys.stderr.isatty():
                last_print = t1
                done = i + 1
                print(
                    f"\r  {done}/{args.steps} steps, {done / (t1 - started):,.0f} steps/s",
                    end="",
                    file=sys.stderr,
                )
        total = clock() - started
        if sys.stderr.isatty():
            print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    finally:
        env.close()
    p50, p90, p99 = np.percentile(times, [50, 90, 99]) * 1e6
    print(f"{args.steps} steps in {total:.2f} s: {args.steps / total:,.0f} steps/s (resets included)")
    print(f"step latency µs: p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {times.max() * 1e6:.1f}")
    return 0


# -- main ------------------------------------------------------------------------------------------


def _target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("address", nargs="?", help="tcp://HOST:PORT or unix:///path (omit with -- COMMAND)")
    p.add_argument("--server", action="store_true", help="listen; the env side dials in (ServerEnv)")
    p.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the env side (default 30)"
    )
    p.usage = f"rlay {p.prog.split()[-1]} [options] (ADDRESS | -- COMMAND...)"
    p.epilog = (
        "-- COMMAND...: launch the env program; {address} in its arguments and RLAY_ADDRESS in its "
        "environment give it the address rlay chose (a fresh unix socket: no port to pick)."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlay",
        description="rlay turns a program in any language into a Gymnasium env. "
        "These commands serve a Gymnasium env, check that an env side speaks rlay correctly, "
        "and measure its speed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--version", action="version", version=f"rlay {rlay.__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="{serve,check,bench}")

    p = sub.add_parser(
        "serve",
        help="serve a registered Gymnasium env to ClientEnvs",
        description="Serve any registered Gymnasium env. Each connection gets its own env.",
    )
    p.add_argument("env_id", help="a Gymnasium env id, e.g. CartPole-v1")
    p.add_argument(
        "--address", default="tcp://127.0.0.1:0", help="where to listen (default: a free TCP port)"
    )
    p.add_argument("--num-envs", type=int, default=1, help="batched sub-envs per connection (default 1)")
    p.add_argument("--render-mode", default=None, help="e.g. rgb_array or ansi")
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser(
        "check",
        help="run a conformance battery on an env side",
        description="Connect to (or launch) an env side and check it: handshake, spaces, "
        "check_env, observations inside their space, seeded determinism, render, and the "
        "replies to bad commands. Exits non-zero if any check fails.",
    )
    _target_args(p)
    p.add_argument("--steps", type=int, default=300, help="random steps to take (default 300)")
    p.add_argument("--seed", type=int, default=123)
    p.set_defaults(run=cmd_check)

    p = sub.add_parser(
        "bench",
        help="measure steps/s and step latency of an env side",
        description="Step an env side with random actions; print steps/s and latency percentiles.",
    )
    _target_args(p)
    p.add_argument("--steps", type=int, default=10000)
    p.set_defaults(run=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:  # everything after -- is the env program to launch
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1 :]
    args = build_parser().parse_args(argv)
    args.command = command
    try:
        return int(args.run(args))
    except RlayError as exc:
        print(f"rlay: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
