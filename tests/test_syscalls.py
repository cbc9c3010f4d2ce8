"""A steady-state step costs one send and one receive system call on each side (issue #8):
socket timeouts are kernel timeouts set only when they change, and nobody polls before reading.

Each side runs as its own process under ``strace -f``, once with a short and once with a long
episode of steps; the difference divided by the extra steps is the marginal cost of one step,
so start-up, handshake and shutdown cancel out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from conftest import require_tool

import rlay
from rlay.testing import TrivialEnv

ENV_SIDE = """
import sys
from rlay.backends import EnvSession, run_session
from rlay.testing import TrivialEnv
from rlay.transports import listen
env = TrivialEnv()
listener = listen(sys.argv[1])
print("RLAY_LISTENING", listener.address, flush=True)
session = EnvSession(listener.accept(60), env.observation_space, env.action_space)
listener.close()
run_session(session, env)
"""

AGENT_SIDE = """
import sys, rlay
env = rlay.ClientEnv(sys.argv[1])
env.reset(seed=0)
for _ in range(int(sys.argv[2])):
    env.step(0)
env.close()
"""

SHORT, LONG = 40, 440
CALL = re.compile(r"^\d+\s+(?:<\.\.\. )?(\w+)\(")


def syscalls(trace: Path) -> Counter[str]:
    """Calls per name in an ``strace -f`` log (a call split by a thread switch counts once)."""
    counts: Counter[str] = Counter()
    for line in trace.read_text().splitlines():
        if "resumed>" in line:
            continue
        m = CALL.match(line)
        if m:
            counts[m.group(1)] += 1
    return counts


def traced(tmp_path: Path, name: str, script: str, *args: str) -> list[str]:
    out = tmp_path / f"{name}.strace"
    return ["strace", "-f", "-qq", "-o", str(out), sys.executable, "-c", script, *args]


def per_step(short: Counter[str], long: Counter[str]) -> dict[str, float]:
    names = set(short) | set(long)
    return {n: (long[n] - short[n]) / (LONG - SHORT) for n in names if long[n] != short[n]}


def steady(costs: dict[str, float]) -> str:
    return ", ".join(f"{n} {c:.3f}" for n, c in sorted(costs.items(), key=lambda kv: -kv[1]))


def check(costs: dict[str, float], side: str) -> None:
    """Two system calls a step: one that sends, one that receives; nothing that waits first."""
    sends = sum(costs.get(n, 0.0) for n in ("sendmsg", "sendto", "write"))
    recvs = sum(costs.get(n, 0.0) for n in ("recvfrom", "recvmsg", "read"))
    waiting = ("poll", "ppoll", "select", "pselect6", "epoll_wait", "setsockopt")
    waits = sum(costs.get(n, 0.0) for n in waiting)
    total = sum(costs.values())
    assert abs(sends - 1) < 0.02 and abs(recvs - 1) < 0.02, f"{side}: {steady(costs)}"
    assert waits < 0.01, f"{side} waits before it reads or sets a timeout per step: {steady(costs)}"
    assert total < 2.05, f"{side}: {total:.3f} system calls a step: {steady(costs)}"


def check_shm(costs: dict[str, float], side: str) -> None:
    """Shared memory (spec §16): about a wake byte and one receive a step at most (none when the
    spin sees the frame; now and then one more receive, for a late wake byte that §16.6 allows),
    and nothing that waits or sets a timeout first."""
    sends = sum(costs.get(n, 0.0) for n in ("sendmsg", "sendto", "write"))
    recvs = sum(costs.get(n, 0.0) for n in ("recvfrom", "recvmsg", "read"))
    waiting = ("poll", "ppoll", "select", "pselect6", "epoll_wait", "setsockopt")
    waits = sum(costs.get(n, 0.0) for n in waiting)
    assert sends < 1.05 and recvs < 1.3, f"{side}: {steady(costs)}"
    assert waits < 0.01, f"{side} waits before it reads or sets a timeout per step: {steady(costs)}"
    assert sum(costs.values()) < 2.4, f"{side}: {steady(costs)}"


# "unix": the plain socket (RLAY_SHM=0); "unix+shm": the default on unix sockets, shared memory.
@pytest.mark.parametrize("scheme", ["unix", "unix+shm", "tcp"])
def test_the_python_env_side_makes_two_calls_a_step(tmp_path: Path, scheme: str) -> None:
    require_tool("strace")
    counts = []
    for steps in (SHORT, LONG):
        trace = tmp_path / f"env{steps}.strace"
        cmd = ["strace", "-f", "-qq", "-o", str(trace), sys.executable, "-c", ENV_SIDE, "{address}"]
        address = "tcp://127.0.0.1:0" if scheme == "tcp" else None  # None: a fresh unix socket
        shm = {"RLAY_SHM": "1" if scheme == "unix+shm" else "0"}
        env = rlay.ClientEnv(address, launch=cmd, connect_timeout=30, launch_env={**os.environ, **shm})
        env.reset(seed=0)
        for _ in range(steps):
            env.step(0)
        env.close()
        counts.append(syscalls(trace))
    (check_shm if scheme == "unix+shm" else check)(per_step(*counts), f"the env side ({scheme})")


@pytest.mark.parametrize("shm", ["0", "1"])
def test_the_python_agent_side_makes_two_calls_a_step(tmp_path: Path, shm: str) -> None:
    require_tool("strace")
    counts = []
    for steps in (SHORT, LONG):
        server = rlay.serve(TrivialEnv, f"unix://{tmp_path}/s{steps}.sock", block=False)
        try:
            cmd = traced(tmp_path, f"agent{steps}", AGENT_SIDE, server.address, str(steps))
            env = {**os.environ, "RLAY_SHM": shm}
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
            assert proc.returncode == 0, proc.stderr[-2000:]
        finally:
            server.close()
        counts.append(syscalls(tmp_path / f"agent{steps}.strace"))
    (check_shm if shm == "1" else check)(per_step(*counts), f"the agent side (RLAY_SHM={shm})")


def test_the_counter_sees_a_poll_per_step(tmp_path: Path) -> None:
    """The check above would catch the old cost: a Python-level socket timeout polls first."""
    require_tool("strace")
    script = """
import socket, sys
a, b = socket.socketpair()
a.settimeout(5); b.settimeout(5)
def serve():
    while b.recv(64): b.sendall(b"r")
import threading; threading.Thread(target=serve, daemon=True).start()
for _ in range(int(sys.argv[1])):
    a.sendall(b"s"); a.recv(64)
"""
    counts = []
    for steps in (SHORT, LONG):
        cmd = traced(tmp_path, f"pp{steps}", script, str(steps))
        subprocess.run(cmd, check=True, timeout=60)
        counts.append(syscalls(tmp_path / f"pp{steps}.strace"))
    with pytest.raises(AssertionError, match="waits before it reads"):
        check({k: v / 2 for k, v in per_step(*counts).items()}, "a Python-level timeout")
    assert threading  # (threads are traced too: -f)
