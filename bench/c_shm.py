"""Python agent <-> C env side: shared memory (spec §16) next to the plain unix socket and tcp.

    python bench/c_shm.py [--steps N] [--rounds R] [--idle S] [--programs trivial,cartpole]

Each row is rlay.ClientEnv launching an sdk/c example (trivial.c: a counter, the smallest env
side; cartpole.c) and stepping it; rows differ only in the transport: a unix socket with shared
memory (the default), the same with the C side not spinning (``RLAY_SHM_SPIN_US=0`` for the C
program only), the same socket with ``shm=False``, and tcp. Rows are measured in
interleaved rounds (a noisy moment hits all of them alike); the table shows the median round and
the best one, and the ratio of each row's median to the shm row's of the same program. Then the
C side's CPU while the agent thinks for ``--idle`` seconds between two steps (it spins about 50 µs,
then sleeps in poll() until the wake byte), read from /proc.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

import rlay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP = 2000


def build(name: str) -> str:
    sdk = os.path.join(ROOT, "sdk", "c")
    subprocess.run(["make", "-s", "-C", sdk, f"build/{name}"], check=True)
    return os.path.join(sdk, "build", name)


def free_tcp_address() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"tcp://127.0.0.1:{port}"


class Row:
    def __init__(self, name: str, program: str, transport: str) -> None:
        self.name = f"C {name}, {transport}"
        self.program = name
        address = free_tcp_address() if transport == "tcp" else None
        shm = transport.startswith("unix, shm")
        # "C side spin 0": RLAY_SHM_SPIN_US=0 for the C program only (it sleeps at once)
        pre = ["env", "RLAY_SHM_SPIN_US=0"] if transport.endswith("spin 0") else []
        self.env = rlay.ClientEnv(address, launch=[*pre, program, "--listen", "{address}"], shm=shm)
        kind = type(self.env._session.engine.stream).__name__  # type: ignore[union-attr]
        assert (kind == "ShmStream") is shm, (self.name, kind)
        self.env.reset(seed=0)
        self.samples: list[float] = []
        self.run(WARMUP)

    def run(self, steps: int) -> None:
        step, reset = self.env.step, self.env.reset
        for _ in range(steps):
            _, _, terminated, truncated, _ = step(0)
            if terminated or truncated:
                reset()

    def measure(self, steps: int) -> None:
        t0 = time.perf_counter()
        self.run(steps)
        self.samples.append((time.perf_counter() - t0) / steps)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(program: str, seconds: float) -> tuple[float, float]:
    """CPU share of the C side while the agent waits ``seconds``; latency of the step after."""
    env = rlay.ClientEnv(launch=[program, "--listen", "{address}"])
    try:
        env.reset(seed=0)
        env.step(0)
        pid = env.process.pid  # type: ignore[union-attr]
        before = cpu_seconds(pid)
        time.sleep(seconds)
        used = cpu_seconds(pid) - before
        t0 = time.perf_counter()
        env.step(0)
        return used / seconds, time.perf_counter() - t0
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=5000, help="steps per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--idle", type=float, default=3.0, help="seconds the agent thinks (CPU row)")
    parser.add_argument("--programs", default="trivial,cartpole", help="sdk/c/examples to step")
    args = parser.parse_args()
    programs = {name: build(name) for name in args.programs.split(",")}
    rows: list[Row] = []
    try:
        for name, program in programs.items():
            for transport in ("unix, shm", "unix, shm, C side spin 0", "unix, socket", "tcp"):
                rows.append(Row(name, program, transport))
        for _ in range(args.rounds):
            for row in rows:
                row.measure(args.steps)
    finally:
        for row in rows:
            row.env.close()
    med = {row.name: statistics.median(row.samples) for row in rows}
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.rounds} rounds x {args.steps} steps"
    )
    print(f"{'rlay.ClientEnv <->':38} {'median µs':>10} {'best µs':>8} {'steps/s':>8} {'vs shm':>7}")
    for row in rows:
        base = med[f"C {row.program}, unix, shm"]
        m = med[row.name]
        print(f"{row.name:38} {m * 1e6:10.1f} {min(row.samples) * 1e6:8.1f} {1 / m:8.0f} {m / base:6.2f}x")
    share, latency = idle_cpu(next(iter(programs.values())), args.idle)
    first = next(iter(programs))
    print(
        f"C {first} (shm) waiting {args.idle:.0f} s for the next command: {share * 100:.2f}% of a core; ",
        end="",
    )
    print(f"the step after it took {latency * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
