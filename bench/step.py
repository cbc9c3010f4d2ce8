"""Step round trips per second: rlay next to the raw-socket floor and gymnasium's AsyncVectorEnv.

    python bench/step.py [--steps N] [--rounds R] [--no-c] [--json PATH]

Every row runs its env side in another process. "raw ping-pong" moves the same bytes as an rlay
step (the STEP frame one way, the STEP_RESULT frame back) with no framework: the floor a Python
peer can reach on that transport. Rows are measured in interleaved rounds (so a noisy moment hits
all of them alike); the table shows the median round and the best one. Ratios use medians.

Shared memory (spec §16) is on by default on unix sockets: the "unix" rlay rows use it when both
sides announce it, and a "unix, no shm" twin (``shm=False``) runs beside each, so the table ends
with the speed-up per step. The "1 MiB obs" rows step an env whose observation is 1 MiB, next to
a raw ping-pong that moves the same bytes back (a small request, a 1 MiB reply). Last, the CPU an
idle env side (shm on) uses while the agent waits 3 s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

import rlay
from rlay.protocol.connection import Connection
from rlay.protocol.messages import Step, StepResult
from rlay.protocol.wire import Role
from rlay.testing import TrivialEnv
from rlay.transports import dial, listen

WARMUP = 1000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def frame_sizes() -> tuple[int, int]:
    conn = Connection(Role.AGENT)
    step = sum(memoryview(b).nbytes for b in conn.encode_frame(Step(0)))
    result = StepResult(np.zeros(4, np.float32), 1.0, False, False, {})
    return step, sum(memoryview(b).nbytes for b in conn.encode_frame(result))


MIB = 1024 * 1024


class BigObsEnv(gym.Env[Any, Any]):
    """TrivialEnv with a 1 MiB uint8 observation (the same array every step)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (MIB,), np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self.obs = np.arange(MIB, dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        return self.obs, {}

    def step(self, action: Any) -> Any:
        return self.obs, 1.0, False, False, {}


def _raw_server(address: str, reply_size: int, ready: Any) -> None:
    listener = listen(address)
    ready.set()
    sock = listener.accept(None)._sock  # type: ignore[attr-defined]
    reply = bytes(reply_size)
    while sock.recv(65536):
        sock.sendall(reply)


def _rlay_server(address: str, big: bool, ready: Any) -> None:
    server = rlay.Server(BigObsEnv if big else TrivialEnv, address)
    ready.set()
    server.serve_forever()


class Row:
    """One configuration: ``start`` its env side, ``run(n)`` n steps, ``stop``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.samples: list[float] = []
        self.proc: Any = None

    def spawn(self, target: Callable[..., None], *args: Any) -> None:
        ready = mp.Event()
        self.proc = mp.Process(target=target, args=(*args, ready), daemon=True)
        self.proc.start()
        if not ready.wait(30):
            raise RuntimeError(f"{self.name}: the env side did not start")

    def measure(self, steps: int) -> None:
        t0 = time.perf_counter()
        self.run(steps)
        self.samples.append((time.perf_counter() - t0) / steps)

    def run(self, steps: int) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.join(5)


class RawRow(Row):
    def __init__(self, name: str, address: str, reply_size: int | None = None) -> None:
        super().__init__(name)
        request_size, small_reply = frame_sizes()
        self.reply_size = reply_size or small_reply
        self.spawn(_raw_server, address, self.reply_size)
        self.stream = dial(address, 10)
        self.sock = self.stream._sock  # type: ignore[attr-defined]
        self.request = bytes(request_size)
        self.buffer = bytearray(max(self.reply_size, 65536))
        self.run(WARMUP if reply_size is None else WARMUP // 10)

    def run(self, steps: int) -> None:
        sock, request, size = self.sock, self.request, self.reply_size
        view = memoryview(self.buffer)
        for _ in range(steps):
            sock.sendall(request)
            got = 0
            while got < size:  # the whole reply, into one buffer: the floor for these bytes
                got += sock.recv_into(view[got:])

    def stop(self) -> None:
        self.stream.close()
        super().stop()


class RlayRow(Row):
    def __init__(self, name: str, address: str, *, shm: bool = True, big: bool = False) -> None:
        super().__init__(name)
        self.spawn(_rlay_server, address, big)
        self.env = rlay.ClientEnv(address, shm=shm)
        self.shm = type(self.env._session.engine.stream).__name__ == "ShmStream"  # type: ignore[union-attr]
        self.env.reset(seed=0)
        self.run(WARMUP // 10 if big else WARMUP)

    def idle_cpu(self, seconds: float = 3.0) -> float:
        """The share of a core the env side's process uses while this agent waits ``seconds``."""
        pid = self.proc.pid
        t0, c0 = time.monotonic(), _cpu_seconds(pid)
        time.sleep(seconds)
        return (_cpu_seconds(pid) - c0) / (time.monotonic() - t0)

    def run(self, steps: int) -> None:
        step = self.env.step
        for _ in range(steps):
            step(0)

    def stop(self) -> None:
        self.env.close()
        super().stop()


class CRow(Row):
    """A C env side (sdk/c/examples) launched listening, stepped by ClientEnv."""

    def __init__(self, name: str, program: str, address: str | None, *, shm: bool = True) -> None:
        super().__init__(name)
        self.env = rlay.ClientEnv(address, launch=[program, "--listen", "{address}"], shm=shm)
        self.shm = type(self.env._session.engine.stream).__name__ == "ShmStream"  # type: ignore[union-attr]
        self.env.reset(seed=0)
        self.run(WARMUP)

    def run(self, steps: int) -> None:
        step, reset = self.env.step, self.env.reset
        for _ in range(steps):
            _, _, terminated, truncated, _ = step(0)
            if terminated or truncated:
                reset()

    def stop(self) -> None:
        self.env.close()


def build_c(name: str) -> str:
    """Compile sdk/c/examples/NAME.c with gcc -O2 (the C rows need gcc)."""
    source = os.path.join(ROOT, "sdk", "c", "examples", f"{name}.c")
    binary = os.path.join(ROOT, "sdk", "c", "build", f"bench-{name}")
    os.makedirs(os.path.dirname(binary), exist_ok=True)
    subprocess.run(["gcc", "-std=c99", "-O2", "-o", binary, source, "-lm"], check=True)
    return binary


class AsyncRow(Row):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.env = gym.vector.AsyncVectorEnv([TrivialEnv])
        self.env.reset(seed=0)
        self.action = np.zeros(1, dtype=np.int64)
        self.run(WARMUP)

    def run(self, steps: int) -> None:
        step, action = self.env.step, self.action
        for _ in range(steps):
            step(action)

    def stop(self) -> None:
        self.env.close()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_tcp_address() -> str:
    """A free port known in advance (the raw server cannot report the one it bound)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"tcp://127.0.0.1:{port}"


def measure(steps: int, rounds: int, with_c: bool) -> dict[str, Any]:
    """Run every row (interleaved rounds); return the figures (what ``--json`` writes)."""
    tmp = tempfile.mkdtemp(prefix="rlay-bench-")
    rows: list[Row] = [
        RawRow("raw ping-pong, unix (floor)", f"unix://{tmp}/raw.sock"),
        RlayRow("rlay ClientEnv <-> Python serve, unix", f"unix://{tmp}/rlay.sock"),
        RlayRow("rlay ClientEnv <-> Python serve, unix, no shm", f"unix://{tmp}/plain.sock", shm=False),
        RawRow("raw ping-pong, tcp (floor)", free_tcp_address()),
        RlayRow("rlay ClientEnv <-> Python serve, tcp", free_tcp_address()),
        AsyncRow("gymnasium AsyncVectorEnv(1), pipe"),
    ]
    big = [
        RawRow("raw ping-pong, 1 MiB reply, unix", f"unix://{tmp}/rawbig.sock", reply_size=MIB),
        RlayRow("rlay 1 MiB obs, unix", f"unix://{tmp}/big.sock", big=True),
        RlayRow("rlay 1 MiB obs, unix, no shm", f"unix://{tmp}/bigplain.sock", shm=False, big=True),
    ]
    if with_c:
        trivial, cartpole = build_c("trivial"), build_c("cartpole")
        rows += [
            CRow("rlay ClientEnv <-> C trivial, unix", trivial, None),
            CRow("rlay ClientEnv <-> C trivial, unix, no shm", trivial, None, shm=False),
            CRow("rlay ClientEnv <-> C trivial, tcp", trivial, free_tcp_address()),
            CRow("rlay ClientEnv <-> C CartPole, unix", cartpole, None),
            CRow("rlay ClientEnv <-> C CartPole, unix, no shm", cartpole, None, shm=False),
            CRow("rlay ClientEnv <-> C CartPole, tcp", cartpole, free_tcp_address()),
        ]
    try:
        for _ in range(rounds):
            for row in rows:
                row.measure(steps)
            for row in big:
                row.measure(max(20, steps // 50))
        idle = rows[1].idle_cpu(3.0)  # type: ignore[attr-defined]
    finally:
        for row in rows + big:
            row.stop()
    out: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cores": os.cpu_count(),
        "steps": steps,
        "rounds": rounds,
        "rows": {
            row.name: {
                "median_us": statistics.median(row.samples) * 1e6,
                "best_us": min(row.samples) * 1e6,
                "shm": getattr(row, "shm", None),
            }
            for row in rows + big
        },
        "idle_cpu": idle,
    }
    return out


def speedups(figures: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(what, ratio, target) lines: shm against the plain socket, 1 MiB against the raw floor."""
    med = {name: r["median_us"] for name, r in figures["rows"].items()}
    out = []
    for who, target in (("Python serve", "2.5x"), ("C trivial", "4x"), ("C CartPole", "")):
        shm, plain = f"rlay ClientEnv <-> {who}, unix", f"rlay ClientEnv <-> {who}, unix, no shm"
        if shm in med and plain in med and figures["rows"][shm]["shm"]:
            out.append((f"{who}: shm vs the plain unix socket, per step", med[plain] / med[shm], target))
    if "rlay 1 MiB obs, unix" in med:
        raw = med["raw ping-pong, 1 MiB reply, unix"]
        out.append(
            (
                "1 MiB obs: raw 1 MiB socket ping-pong / rlay shm step",
                raw / med["rlay 1 MiB obs, unix"],
                ">1x",
            )
        )
        out.append(
            (
                "1 MiB obs: rlay no-shm step / rlay shm step",
                med["rlay 1 MiB obs, unix, no shm"] / med["rlay 1 MiB obs, unix"],
                "",
            )
        )
    return out


def print_table(figures: dict[str, Any]) -> None:
    print(
        f"python {figures['python']}, {figures['cores']} cores, {figures['rounds']} rounds x "
        f"{figures['steps']} steps"
    )
    print(f"{'':46} {'median µs':>10} {'best µs':>8} {'steps/s':>8} {'vs floor':>9}")
    rows = figures["rows"]
    floors = {"unix": rows["raw ping-pong, unix (floor)"], "tcp": rows["raw ping-pong, tcp (floor)"]}
    for name, row in rows.items():
        ratio = ""
        for transport, floor in floors.items():
            if name.startswith("rlay") and name.endswith(transport) and "1 MiB" not in name:
                ratio = f"{row['median_us'] / floor['median_us']:8.2f}x"
        label = name + (" (shm)" if row["shm"] else "")
        m = row["median_us"]
        print(f"{label:46} {m:10.1f} {row['best_us']:8.1f} {1e6 / m:8.0f} {ratio:>9}")
    faster = (
        rows["gymnasium AsyncVectorEnv(1), pipe"]["median_us"]
        / rows["rlay ClientEnv <-> Python serve, unix"]["median_us"]
    )
    print(f"rlay ClientEnv (unix) is {faster:.2f}x the speed of gymnasium AsyncVectorEnv(1)")
    for what, ratio, target in speedups(figures):
        print(f"{what}: {ratio:.2f}x" + (f" (target {target})" if target else ""))
    print(f"idle env side (shm, Python) while the agent waits 3 s: {figures['idle_cpu']:.2%} of a core")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=5000, help="steps per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-c", action="store_true", help="skip the C env side rows (no gcc)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = measure(args.steps, args.rounds, not args.no_c)
    print_table(figures)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
