"""The ``rlay`` command: serve a Gymnasium env, check an env side, benchmark, record and replay
one (``EXAMPLES``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

import rlay
from rlay.envs import ClientEnv, ServerEnv
from rlay.errors import RlayError
from rlay.progress import progress

EXAMPLES = """examples:
  rlay serve CartPole-v1 --address tcp://127.0.0.1:5555     serve a registered Gymnasium env
  rlay serve CartPole-v1 --kwarg sutton_barto_reward=true --seed 7
  rlay check tcp://127.0.0.1:5555                           an env side that listens
  rlay check -- ./cartpole --listen {address}               launch it (rlay picks the address)
  rlay check --server -- ./game                             launch a program that dials in
  rlay bench -- ./cartpole --listen {address}               steps/s and latency percentiles
  rlay record run.rlayrec -- ./cartpole --listen {address}  record a seeded random rollout
  rlay replay run.rlayrec -- ./cartpole --listen {address}  the first reply that differs, if any
  rlay replay run.rlayrec --serve tcp://127.0.0.1:5555      play the recorded env side
"""


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


def _kwargs(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a VALUE that reads as JSON (3, 0.5, true, [1, 2]) is taken as such."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"rlay serve: --kwarg takes KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    kwargs = _kwargs(args.kwarg)
    created = [0]

    def make() -> gym.Env[Any, Any]:
        env = gym.make(args.env_id, render_mode=args.render_mode, **kwargs)
        if args.seed is not None:  # each env's stream starts from a known seed, even unseeded
            env.reset(seed=args.seed + created[0])
            created[0] += 1
        return env

    try:
        gym.make(args.env_id, render_mode=args.render_mode, **kwargs).close()  # fail here, clearly
    except gym.error.Error as exc:
        print(f"rlay serve: cannot make {args.env_id!r}: {exc}", file=sys.stderr)
        return 2
    except TypeError as exc:
        print(f"rlay serve: {args.env_id!r} does not take these arguments: {exc}", file=sys.stderr)
        return 2
    if args.num_envs != 1:
        from rlay.backends.vector import serve_vector  # type: ignore[import-not-found, unused-ignore]

        def make_vec() -> gym.vector.VectorEnv[Any, Any, Any]:
            return gym.vector.SyncVectorEnv([make] * args.num_envs)

        server = serve_vector(
            make_vec,
            args.address,
            block=False,
            idle_timeout=args.idle_timeout,
            handshake_timeout=args.handshake_timeout,
            shm=not args.no_shm,
        )
    else:
        server = rlay.serve(
            make,
            args.address,
            block=False,
            idle_timeout=args.idle_timeout,
            handshake_timeout=args.handshake_timeout,
            shm=not args.no_shm,
        )
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
        if server.error_counts:
            ended = ", ".join(f"{n} {kind}" for kind, n in server.error_counts.most_common())
            print(f"sessions that ended abnormally: {ended}", file=sys.stderr)
    return 0


# -- check -----------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from rlay.check import CheckReport, open_env_side, run_checks

    print(f"rlay check {args.address or ' '.join(args.command)}")
    if args.server and not args.command and args.address:
        print(f"waiting for an env side to connect to {args.address} ...", file=sys.stderr)
    opened: list[Any] = []

    def connect() -> str:
        opened.append(
            open_env_side(args.address, launch=args.command or None, server=args.server, timeout=args.timeout)
        )
        env = opened[0]
        session = env._session if hasattr(env, "_session") else env._links[0].session
        kind = f"{env.num_envs} batched sub-envs" if hasattr(env, "num_envs") else "one env"
        return f"{session.peer_sdk}, {kind} at {env.address}"

    first = CheckReport()
    if not first.run("handshake (protocol name, version, roles, ENV_INFO)", connect, print):
        print("0 passed, 1 failed")
        return 1
    report = run_checks(opened[0], steps=args.steps, seed=args.seed, show_progress=args.progress or None)
    print(f"{report.passed + 1} passed, {report.failed} failed")
    return 0 if report.ok else 1


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
        print(
            f"stepping {env.address} {args.steps} times with random actions ...", file=sys.stderr, flush=True
        )
        clock = time.perf_counter
        with progress(args.steps, "rlay bench", show=args.progress or None) as bar:
            started = clock()
            for i in range(args.steps):
                t0 = clock()
                _, _, term, trunc, _ = env.step(actions[i & 255])
                t1 = clock()
                times[i] = t1 - t0
                if term or trunc:
                    env.reset()
                if i & 63 == 63:  # the bar, not each step, pays for its bookkeeping
                    bar.update(64)
            total = clock() - started
    finally:
        env.close()
    p50, p90, p99 = np.percentile(times, [50, 90, 99]) * 1e6
    print(f"{args.steps} steps in {total:.2f} s: {args.steps / total:,.0f} steps/s (resets included)")
    print(f"step latency µs: p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {times.max() * 1e6:.1f}")
    return 0


# -- record / replay -------------------------------------------------------------------------------


def cmd_record(args: argparse.Namespace) -> int:
    env = _open_env(args, record=args.out, token="")  # replayable: no per-connection auth (§7.1)
    steps = episodes = 0
    try:
        env.reset(seed=args.seed)
        env.action_space.seed(args.seed)
        for _ in range(args.steps):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            steps += 1
            if term or trunc:
                episodes += 1
                env.reset()
    finally:
        env.close()
    from rlay.record import load

    frames = len(load(args.out).frames)
    print(f"recorded {steps} steps ({episodes} episodes ended), {frames} frames, to {args.out}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from rlay.envs._endpoints import Endpoints
    from rlay.record import load, replay, serve_recording
    from rlay.transports import listen

    recording = load(args.file)
    commands = len(recording.commands)
    if args.serve is not None:
        address = args.serve or os.environ.get("RLAY_ADDRESS")
        if not address:
            raise SystemExit("rlay replay: --serve needs an ADDRESS (or RLAY_ADDRESS in the environment)")
        listener = listen(address)
        print(f"RLAY_LISTENING {listener.address}", flush=True)
        try:
            stream = listener.accept(args.timeout)
        finally:
            listener.close()
        try:
            mismatch = serve_recording(recording, stream, args.timeout)
        finally:
            stream.close()
        if mismatch is not None:
            print(f"rlay replay: the agent left the recording: {mismatch.describe()}", file=sys.stderr)
            return 1
        print(f"served {commands} recorded commands from {args.file}", file=sys.stderr)
        return 0
    if not args.command and args.address is None:
        raise SystemExit(
            "rlay replay: give an ADDRESS, -- COMMAND to launch, or --serve ADDRESS (see --help)"
        )
    endpoints = Endpoints(  # token="": the replayed frames carry no per-connection auth (§7.1)
        "listen" if args.server else "dial",
        args.address,
        launch=args.command or None,
        token="",
        who="rlay replay",
    )
    try:
        _, stream = endpoints.connect(0, args.timeout)
        try:
            mismatch = replay(recording, stream, args.timeout)
        finally:
            stream.close()
    finally:
        endpoints.close()
    if mismatch is not None:
        print(mismatch.describe())
        return 1
    print(f"all {len(recording.frames) - commands} replies equal to the recording ({commands} commands)")
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


PROGRESS_HELP = (
    "draw progress on stderr even when it is not a terminal (by default only on a terminal; "
    "tqdm draws it if installed: pip install 'rlay-gym[progress]')"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlay",
        description="rlay turns a program in any language into a Gymnasium env. "
        "These commands serve a Gymnasium env, check that an env side speaks rlay correctly, "
        "and measure its speed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    parser.add_argument("--version", action="version", version=f"rlay {rlay.__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="{serve,check,bench,record,replay}")

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
    p.add_argument(
        "--kwarg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an argument of gym.make (repeatable)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed each env created with SEED, SEED+1, ...")
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=1800.0,
        help="end a session whose agent sends nothing for this long (default 1800 s)",
    )
    p.add_argument(
        "--no-shm",
        action="store_true",
        help="never use shared memory with agents on unix sockets (spec §16; also RLAY_SHM=0)",
    )
    p.add_argument(
        "--handshake-timeout",
        type=float,
        default=30.0,
        help="drop a connection that has not said HELLO (and proven the token) within this long "
        "(default 30 s)",
    )
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
    p.add_argument("--progress", action="store_true", help=PROGRESS_HELP)
    p.set_defaults(run=cmd_check)

    p = sub.add_parser(
        "bench",
        help="measure steps/s and step latency of an env side",
        description="Step an env side with random actions; print steps/s and latency percentiles.",
    )
    _target_args(p)
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--progress", action="store_true", help=PROGRESS_HELP)
    p.set_defaults(run=cmd_bench)

    p = sub.add_parser(
        "record",
        help="record a seeded random rollout to a file",
        description="Reset with --seed, take --steps random actions (seeded too), and write every "
        "frame both ways to OUT (rlay's own framing, a direction and a timestamp per frame).",
    )
    p.add_argument("out", metavar="OUT", help="the recording to write, e.g. run.rlayrec")
    _target_args(p)
    p.usage = "rlay record OUT [options] (ADDRESS | -- COMMAND...)"
    p.add_argument("--steps", type=int, default=200, help="random steps to take (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=cmd_record)

    p = sub.add_parser(
        "replay",
        help="re-send a recording to a fresh env side, or serve it as one",
        description="Send the recorded commands to a fresh env side and compare each reply with "
        "the recorded one, bit for bit: print the first command whose reply differs and exit 1, "
        "or exit 0 if all are equal. With --serve, play the recorded env side instead: answer "
        "the recorded replies in order, and refuse a command that differs from the recording.",
    )
    p.add_argument("file", metavar="FILE", help="a recording (rlay record, or record=PATH)")
    _target_args(p)
    p.usage = "rlay replay FILE [options] (ADDRESS | -- COMMAND... | --serve ADDRESS)"
    p.add_argument(
        "--serve",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="listen at ADDRESS (default: RLAY_ADDRESS) and play the recorded env side to one agent",
    )
    p.set_defaults(run=cmd_replay)
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
