"""Long runs, short (issue 13): 2,000 connect/close cycles and 500 launch/close cycles leave no
descriptor, thread, process (zombies included) or temporary directory behind, on either side.

The soak of 10**7 steps (``make soak``, ``bench/soak.py``) is the long version; not in CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from conftest import require_tool

import rlay

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc entries")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C_CARTPOLE = [os.path.join(ROOT, "sdk", "c", "build", "cartpole")]
RLAY = os.path.join(os.path.dirname(sys.executable), "rlay")

CONNECT_CYCLES = 2000
LAUNCH_CYCLES = 500


def fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


def children() -> set[int]:
    """This process's children, zombies included (a zombie is a child not yet reaped)."""
    out: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                out.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            pass
    return out


def our_temp_dirs() -> set[str]:
    """The launcher's socket directories of this process (``rlay-<pid>-*``, rlay/launch.py)."""
    prefix = f"rlay-{os.getpid()}-"
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith(prefix)}


def settled(measure: Callable[[], object], want: object, seconds: float = 10.0) -> object:
    """``measure()`` once it equals ``want`` (threads and peers tidy up asynchronously), else its
    last value."""
    deadline = time.monotonic() + seconds
    while True:
        got = measure()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


@pytest.fixture(scope="module")
def c_cartpole() -> None:
    require_tool("gcc")
    subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "sdk", "c"), "build/cartpole"], check=True)


@pytest.fixture
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[subprocess.Popen[str], str]]]:
    """Two ``rlay serve CartPole-v1`` processes (a Python env side serving any number of
    sessions): one on a unix socket, one on TCP."""
    sock = tmp_path_factory.mktemp("cyc") / "env.sock"
    procs = []
    for address in (f"unix://{sock}", "tcp://127.0.0.1:0"):
        proc = subprocess.Popen(
            [RLAY, "serve", "CartPole-v1", "--address", address], stdout=subprocess.PIPE, text=True
        )
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("RLAY_LISTENING "), line
        procs.append((proc, line.split()[1]))
    yield procs
    for proc, _ in procs:
        proc.terminate()
        proc.wait(10)


@linux_only
def test_2000_connect_close_cycles_leak_nothing(servers: list[tuple[subprocess.Popen[str], str]]) -> None:
    def cycle(address: str, i: int) -> None:
        env = rlay.ClientEnv(address)
        if i % 100 == 0:  # now and then a real episode start, so that sessions are not just handshakes
            obs, _ = env.reset(seed=i)
            env.step(0)
            assert obs.shape == (4,)
        env.close()

    def server(proc: subprocess.Popen[str]) -> tuple[int, int]:
        return fds(proc.pid), threads(proc.pid)

    idle = [server(p) for p, _ in servers]  # no session yet
    for _, address in servers:  # warm up: imports, first allocations, the server's first session
        cycle(address, 0)
    ours = fds(), threading.active_count()
    # A server ends a session (its thread, its socket) just after our close(): wait for it.
    theirs = [settled(lambda p=p: server(p), was) for (p, _), was in zip(servers, idle, strict=True)]
    start = time.perf_counter()
    for i in range(CONNECT_CYCLES):
        cycle(servers[i % 2][1], i)
    took = time.perf_counter() - start
    assert settled(lambda: (fds(), threading.active_count()), ours) == ours
    for (proc, address), before in zip(servers, theirs, strict=True):
        assert proc.poll() is None, f"the server at {address} died"
        after = settled(lambda p=proc: server(p), before)  # type: ignore[misc]
        assert after == before, f"the server at {address}: (fds, threads) {before} -> {after}"
    print(f"{CONNECT_CYCLES} connect/close cycles in {took:.1f} s; fds {ours[0]} / server fds {theirs}")


@linux_only
def test_500_launch_close_cycles_leak_nothing(c_cartpole: None) -> None:
    """Half ClientEnv (the program listens), half ServerEnv (it dials in), the C CartPole."""

    def cycle(i: int) -> None:
        env = rlay.ClientEnv(launch=C_CARTPOLE) if i % 2 else rlay.ServerEnv(launch=C_CARTPOLE)
        if i % 50 == 0:
            env.reset(seed=i)
            env.step(np.int64(1))
        env.close()

    cycle(0)  # warm up: the spawner thread, imports
    cycle(1)
    # The last program's output readers end just after it does: let them, for the baseline.
    settled(lambda: [t for t in threading.enumerate() if t.name.startswith("rlay-std")], [])
    before = fds(), threading.active_count(), children(), our_temp_dirs()
    start = time.perf_counter()
    for i in range(LAUNCH_CYCLES):
        cycle(i)
    took = time.perf_counter() - start
    after = settled(lambda: (fds(), threading.active_count(), children(), our_temp_dirs()), before)
    assert after == before, f"(fds, threads, children, temp dirs): {before} -> {after}"
    print(f"{LAUNCH_CYCLES} launch/close cycles in {took:.1f} s ({took / LAUNCH_CYCLES * 1000:.0f} ms each)")
