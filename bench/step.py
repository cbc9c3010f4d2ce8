"""Step round trips per second: rlay next to the raw-socket floor and gymnasium's AsyncVectorEnv.

    python bench/step.py [--steps N] [--rounds R]

Every row runs its env side in another process. "raw ping-pong" moves the same bytes as an rlay
step (the STEP frame one way, the STEP_RESULT frame back) with no framework: the floor a Python
peer can reach on that transport. Rows are measured in interleaved rounds (so a noisy moment hits
all of them alike); the table shows the median round and the best one. Ratios use medians.
"""

from __future__ import annotations

import argparse
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


def _raw_server(address: str, reply_size: int, ready: Any) -> None:
    listener = listen(address)
    ready.set()
    sock = listener.accept(None)._sock
    reply = bytes(reply_size)
    while sock.recv(65536):
        sock.sendall(reply)


def _rlay_server(address: str, ready: Any) -> None:
    server = rlay.Server(TrivialEnv, address)
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
    def __init__(self, name: str, address: str) -> None:
        super().__init__(name)
        request_size, reply_size = frame_sizes()
        self.spawn(_raw_server, address, reply_size)
        self.stream = dial(address, 10)
        self.sock = self.stream._sock
        self.request = bytes(request_size)
        self.run(WARMUP)

    def run(self, steps: int) -> None:
        sock, request = self.sock, self.request
        for _ in range(steps):
            sock.sendall(request)
            sock.recv(65536)

    def stop(self) -> None:
        self.stream.close()
        super().stop()


class RlayRow(Row):
    def __init__(self, name: str, address: str) -> None:
        super().__init__(name)
        self.spawn(_rlay_server, address)
        self.env = rlay.ClientEnv(address)
        self.env.reset(seed=0)
        self.run(WARMUP)

    def run(self, steps: int) -> None:
        step = self.env.step
        for _ in range(steps):
            step(0)

    def stop(self) -> None:
        self.env.close()
        super().stop()


class CRow(Row):
    """A C env side (sdk/c/examples) launched listening, stepped by ClientEnv."""

    def __init__(self, name: str, program: str, address: str | None) -> None:
        super().__init__(name)
        self.env = rlay.ClientEnv(address, launch=[program, "--listen", "{address}"])
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


def free_tcp_address() -> str:
    """A free port known in advance (the raw server cannot report the one it bound)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"tcp://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=5000, help="steps per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-c", action="store_true", help="skip the C env side rows (no gcc)")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="rlay-bench-")
    rows: list[Row] = [
        RawRow("raw ping-pong, unix (floor)", f"unix://{tmp}/raw.sock"),
        RlayRow("rlay ClientEnv <-> Python serve, unix", f"unix://{tmp}/rlay.sock"),
        RawRow("raw ping-pong, tcp (floor)", free_tcp_address()),
        RlayRow("rlay ClientEnv <-> Python serve, tcp", free_tcp_address()),
        AsyncRow("gymnasium AsyncVectorEnv(1), pipe"),
    ]
    if not args.no_c:
        trivial, cartpole = build_c("trivial"), build_c("cartpole")
        rows += [
            CRow("rlay ClientEnv <-> C trivial, unix", trivial, None),
            CRow("rlay ClientEnv <-> C trivial, tcp", trivial, free_tcp_address()),
            CRow("rlay ClientEnv <-> C CartPole, unix", cartpole, None),
            CRow("rlay ClientEnv <-> C CartPole, tcp", cartpole, free_tcp_address()),
        ]
    try:
        for _ in range(args.rounds):
            for row in rows:
                row.measure(args.steps)
    finally:
        for row in rows:
            row.stop()
    med = {row.name: statistics.median(row.samples) for row in rows}
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.rounds} rounds x {args.steps} steps"
    )
    print(f"{'':42} {'median µs':>10} {'best µs':>8} {'steps/s':>8} {'vs floor':>9}")
    floors = {"unix": rows[0], "tcp": rows[2]}
    for row in rows:
        ratio = ""
        for transport, floor in floors.items():
            if row is not floor and row.name.startswith("rlay") and row.name.endswith(transport):
                ratio = f"{med[row.name] / med[floor.name]:8.2f}x"
        m = med[row.name]
        print(f"{row.name:42} {m * 1e6:10.1f} {min(row.samples) * 1e6:8.1f} {1 / m:8.0f} {ratio:>9}")
    faster = med[rows[4].name] / med[rows[1].name]
    print(f"rlay ClientEnv (unix) is {faster:.2f}x the speed of gymnasium AsyncVectorEnv(1)")


if __name__ == "__main__":
    main()
