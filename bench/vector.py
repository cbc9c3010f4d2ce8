"""Sub-env steps per second of vector envs: rlay batched sub-envs on one connection, rlay over
many connections, next to gymnasium's SyncVectorEnv and AsyncVectorEnv, on rlay.testing.TrivialEnv.

    python bench/vector.py [--sub-steps N] [--rounds R] [--sizes 1,8,64,256] [--connections 1,2,4,8]
                           [--c-sizes 1,8,64,256] [--no-c]

Rows, all measured in the same run, in interleaved rounds (a noisy moment hits every row alike);
the table shows medians:
- ``ClientEnv round trip``: one env, one rlay round trip per step (a Python env side in another
  process, unix socket). The per-sub-env overhead of every other rlay row is compared with it.
- ``rlay batch of n``: ``ClientVectorEnv`` over ``serve_vector(SyncVectorEnv([TrivialEnv] * n))``
  in another process: one STEP carries n actions, one STEP_RESULT n results (spec §10).
- ``rlay k connections``: ``ClientVectorEnv`` over k env processes with one TrivialEnv each,
  stepped concurrently (all STEPs sent, then all replies read).
- ``gymnasium SyncVectorEnv(n)`` in this process and ``AsyncVectorEnv(n)`` (worker processes, pipes).
- ``in process: TrivialEnv.step`` — the env's own cost.
- ``C ClientEnv round trip`` and ``C batch of n``: the same with a C env side,
  ``sdk/c/examples/trivial.c`` (built with gcc -O2), launched listening on a unix socket:
  ``ClientEnv`` over one C trivial env, and ``ClientVectorEnv`` over one C process hosting n
  sub-envs (``--num-envs n``, rlay.h's batched sub-envs).

A caution when reading ratios on a small VM: a round trip costs far more when the two processes
sit on different cores (a cross-core wake-up) than on one core, and the scheduler moves a
ping-ponging pair apart after some tens of milliseconds. A row measured in long bursts (a
single-env round trip: ``--sub-steps`` steps in a row) can then run in the slow regime while a
large batch (``--sub-steps / n`` steps) stays in the fast one, which inflates ``x fewer``. Pinning
both processes (``taskset``) to one core, or to two, shows each regime alone.

*Overhead per sub-env step* is what rlay adds to the env's own work: for a batch of n, (vector
step − the same SyncVectorEnv(n) step in process, measured just before it) / n; for k
connections, (vector step − k × TrivialEnv.step) / k; for the round trip, (round trip −
TrivialEnv.step). The C env's own work (a counter per sub-env) is a few nanoseconds and is not
subtracted: a C row's overhead is its whole step time per sub-env. ``x fewer`` is the round
trip's overhead divided by the row's (for C rows, the C round trip's): the goal is at least 20x
with a batch of 64. Overheads and ratios are computed round by round and the medians
shown, so that a slow moment of a shared machine does not pair a fast row with a slow one.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
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
from rlay.backends.vector import serve_vector
from rlay.envs.vector import ClientVectorEnv
from rlay.testing import TrivialEnv

WARMUP_SUB_STEPS = 2000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _serve_single(address: str, ready: Any) -> None:
    server = rlay.Server(TrivialEnv, address)
    ready.set()
    server.serve_forever()


def _serve_batch(address: str, n: int, ready: Any) -> None:
    server = serve_vector(lambda: gym.vector.SyncVectorEnv([TrivialEnv] * n), address, block=False)
    ready.set()
    while True:
        time.sleep(3600)
    server.close()  # pragma: no cover


class Row:
    """One configuration of ``n`` sub-envs: ``step()`` advances all of them once."""

    def __init__(self, name: str, n: int, kind: str) -> None:
        self.name = name
        self.n = n
        self.kind = kind  # "rt", "batch", "conn", "sync", "async", "local", "c-rt", "c-batch"
        self.samples: list[float] = []  # seconds per vector step
        self.procs: list[Any] = []
        self.env: Any = None
        self.action: Any = np.zeros(n, dtype=np.int64)

    def spawn(self, target: Callable[..., None], *args: Any) -> None:
        ready = mp.Event()
        proc = mp.Process(target=target, args=(*args, ready), daemon=True)
        proc.start()
        if not ready.wait(30):
            raise RuntimeError(f"{self.name}: the env side did not start")
        self.procs.append(proc)

    def warm_up(self) -> None:
        self.run(max(10, WARMUP_SUB_STEPS // self.n))

    def run(self, steps: int) -> None:
        step, action = self.env.step, self.action
        for _ in range(steps):
            step(action)

    def measure(self, sub_steps: int) -> None:
        steps = max(20, sub_steps // self.n)
        t0 = time.perf_counter()
        self.run(steps)
        self.samples.append((time.perf_counter() - t0) / steps)

    def stop(self) -> None:
        if self.env is not None:
            self.env.close()
        for proc in self.procs:
            proc.terminate()
            proc.join(5)


def round_trip_row(tmp: str) -> Row:
    row = Row("rlay ClientEnv round trip (1 env)", 1, "rt")
    address = f"unix://{tmp}/rt.sock"
    row.spawn(_serve_single, address)
    row.env = rlay.ClientEnv(address)
    row.env.reset(seed=0)
    row.action = 0
    return row


def batch_row(tmp: str, n: int) -> Row:
    row = Row(f"rlay batch of {n}, 1 connection", n, "batch")
    address = f"unix://{tmp}/batch{n}.sock"
    row.spawn(_serve_batch, address, n)
    row.env = ClientVectorEnv(address)
    row.env.reset(seed=0)
    return row


def connections_row(tmp: str, k: int) -> Row:
    row = Row(f"rlay {k} connection{'s' if k > 1 else ''} x 1 env", k, "conn")
    addresses = [f"unix://{tmp}/conn{k}_{i}.sock" for i in range(k)]
    for address in addresses:
        row.spawn(_serve_single, address)
    row.env = ClientVectorEnv(addresses)
    row.env.reset(seed=0)
    return row


def sync_row(n: int) -> Row:
    row = Row(f"gymnasium SyncVectorEnv({n}), in process", n, "sync")
    row.env = gym.vector.SyncVectorEnv([TrivialEnv] * n)
    row.env.reset(seed=0)
    return row


def async_row(n: int) -> Row:
    row = Row(f"gymnasium AsyncVectorEnv({n}), pipes", n, "async")
    row.env = gym.vector.AsyncVectorEnv([TrivialEnv] * n)
    row.env.reset(seed=0)
    return row


def local_row() -> Row:
    row = Row("in process: TrivialEnv.step", 1, "local")
    row.env = TrivialEnv()
    row.env.reset(seed=0)
    row.action = 0
    return row


def build_c_trivial() -> str:
    """Compile sdk/c/examples/trivial.c with gcc -O2 (the C rows need gcc)."""
    source = os.path.join(ROOT, "sdk", "c", "examples", "trivial.c")
    binary = os.path.join(ROOT, "sdk", "c", "build", "bench-trivial")
    os.makedirs(os.path.dirname(binary), exist_ok=True)
    subprocess.run(["gcc", "-std=c99", "-O2", "-o", binary, source, "-lm"], check=True)
    return binary


def c_round_trip_row(program: str) -> Row:
    """One C trivial env (it truncates at 1000 steps and keeps counting: stepping on is fine)."""
    row = Row("rlay ClientEnv round trip, C env (1 env)", 1, "c-rt")
    row.env = rlay.ClientEnv(launch=[program, "--listen", "{address}"])
    row.env.reset(seed=0)
    row.action = 0
    return row


def c_batch_row(program: str, n: int) -> Row:
    row = Row(f"rlay batch of {n}, 1 connection, C env", n, "c-batch")
    row.env = ClientVectorEnv(launch=[program, "--listen", "{address}", "--num-envs", str(n)])
    row.env.reset(seed=0)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sub-steps", type=int, default=10000, help="sub-env steps per row per round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--sizes", default="1,8,64,256", help="batch sizes on one connection")
    parser.add_argument("--connections", default="1,2,4,8", help="numbers of connections")
    parser.add_argument("--async-sizes", default="1,8", help="AsyncVectorEnv sizes (one process each)")
    parser.add_argument("--c-sizes", default="1,8,64,256", help="batch sizes of the C env side")
    parser.add_argument("--no-c", action="store_true", help="skip the C env side rows (no gcc)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    conns = [int(s) for s in args.connections.split(",") if s]
    async_sizes = [int(s) for s in args.async_sizes.split(",") if s]
    c_sizes = [] if args.no_c else [int(s) for s in args.c_sizes.split(",") if s]
    tmp = tempfile.mkdtemp(prefix="rlay-bench-")
    rows: list[Row] = []
    try:
        rows.append(local_row())
        rows.append(round_trip_row(tmp))
        for n in sizes:
            rows.append(sync_row(n))
            rows.append(batch_row(tmp, n))
        for k in conns:
            rows.append(connections_row(tmp, k))
        for n in async_sizes:
            rows.append(async_row(n))
        if c_sizes:
            trivial = build_c_trivial()
            rows.append(c_round_trip_row(trivial))
            for n in c_sizes:
                rows.append(c_batch_row(trivial, n))
        for row in rows:
            row.warm_up()
        for _ in range(args.rounds):
            for row in rows:
                row.measure(args.sub_steps)
    finally:
        for row in rows:
            row.stop()
    report(rows, args)


def report(rows: list[Row], args: argparse.Namespace) -> None:
    local = next(r for r in rows if r.kind == "local")
    rt = next(r for r in rows if r.kind == "rt")
    sync = {r.n: r for r in rows if r.kind == "sync"}
    rt_over = [t - e for t, e in zip(rt.samples, local.samples, strict=True)]
    c_rt = next((r for r in rows if r.kind == "c-rt"), None)

    def overheads(row: Row) -> list[float] | None:
        """Seconds rlay adds per sub-env step, round by round."""
        if row.kind == "rt":
            return rt_over
        if row.kind == "batch" and row.n in sync:
            return [(m - s) / row.n for m, s in zip(row.samples, sync[row.n].samples, strict=True)]
        if row.kind == "conn":
            return [(m - row.n * e) / row.n for m, e in zip(row.samples, local.samples, strict=True)]
        if row.kind in ("c-rt", "c-batch"):  # the C env's own work (ns) is not subtracted
            return [m / row.n for m in row.samples]
        return None

    def ratio(row: Row) -> float | None:
        over = overheads(row)
        base = rt_over
        if row.kind == "c-batch" and c_rt is not None:
            base = [m / c_rt.n for m in c_rt.samples]
        if over is None or row.kind in ("rt", "c-rt") or min(over) <= 0:
            return None
        return statistics.median(r / o for r, o in zip(base, over, strict=True))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"python {sys.version.split()[0]}, gymnasium {gym.__version__}, {os.cpu_count()} cores "
        f"(load average {load:.1f} at the end), {args.rounds} rounds x ~{args.sub_steps} sub-env "
        "steps per row, medians"
    )
    print(
        f"{'':40} {'sub-envs':>8} {'µs/step':>9} {'µs/sub-env':>10} {'sub-env steps/s':>15} "
        f"{'overhead µs/sub-env':>19} {'x fewer':>8}"
    )
    for row in rows:
        m = statistics.median(row.samples)
        per = m / row.n
        over = overheads(row)
        over_s = f"{statistics.median(over) * 1e6:19.2f}" if over is not None else f"{'':19}"
        x = ratio(row)
        x_s = f"{x:7.1f}x" if x is not None else f"{'':8}"
        print(f"{row.name:40} {row.n:8} {m * 1e6:9.1f} {per * 1e6:10.2f} {1 / per:15,.0f} {over_s} {x_s}")
    for row in rows:
        if row.kind in ("batch", "c-batch") and row.n == 64:
            x = ratio(row)
            verdict = "met" if x is not None and x >= 20 else "NOT met"
            shown = f"{x:.1f}x" if x is not None else "n/a"
            side = "C env" if row.kind == "c-batch" else "Python env"
            print(
                f"goal, {side} (batch of 64: per-sub-env overhead >= 20x lower than a single-env "
                f"round trip): {shown}, {verdict}"
            )


if __name__ == "__main__":
    main()
