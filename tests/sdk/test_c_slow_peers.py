"""The C SDK's listener under hostile and slow peers (spec §17.4). A launched C program serves one
session, so "keeps serving good clients" means: whoever connects first - peers sending a byte a
second, 300 idle connections, 60 MiB frames declared and never sent, garbage - the good agent
that dials afterwards gets its session at once (it is served as soon as its whole HELLO is
there), the program's memory stays flat, and it exits 0 after that session naming what it
dropped. Each case runs the compiled cartpole example for real, in a few seconds."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from test_c_cartpole import SAN_ENV, build

import rlay
from rlay.protocol.connection import Connection
from rlay.protocol.wire import Role

AGENT_HELLO = b"".join(bytes(b) for b in Connection(Role.AGENT).data_to_send())


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> str:
    # Under ASan/UBSan (leak check on exit): the pool of pending connections, dropping and
    # serving the next are where a use-after-close or a leaked descriptor would hide.
    out = tmp_path_factory.mktemp("cartpole-slow")
    san = "-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    build(out, f"{out}/cartpole", f"CFLAGS={san}")
    return str(out / "cartpole")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def connect_nowait(where: tuple[str, int]) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex(where)
    return s


def slow(where: tuple[str, int], stop: threading.Event, out: list[socket.socket]) -> None:
    """A valid agent HELLO, one byte a second (it would take ~100 s)."""
    s = socket.create_connection(where, timeout=5)
    out.append(s)
    for byte in AGENT_HELLO:
        try:
            s.send(bytes([byte]))
        except OSError:
            return
        if stop.wait(1.0):
            return


def garbage(where: tuple[str, int], stop: threading.Event, out: list[socket.socket]) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(where, timeout=5) as s:
                s.sendall(b"\x00" + os.urandom(200))
                while s.recv(65536):
                    pass
        except OSError:
            pass
        out.append(s)


def big_frames(where: tuple[str, int], stop: threading.Event, out: list[socket.socket]) -> None:
    """HELLOs declaring 60 MiB (the first frame may have 64 KiB), the body never sent."""
    while not stop.is_set() and len(out) < 40:
        s = socket.create_connection(where, timeout=5)
        s.sendall(b"RL" + bytes([1, 0]) + struct.pack("<II", 0, 60 << 20))
        out.append(s)


Attack = Callable[[tuple[str, int], threading.Event, list[socket.socket]], None]


def idle_300(where: tuple[str, int], stop: threading.Event, out: list[socket.socket]) -> None:
    for _ in range(300):
        out.append(connect_nowait(where))


@pytest.mark.parametrize(
    ("what", "attack", "attackers"),
    [
        ("5 peers sending a byte a second", slow, 5),
        ("300 idle connections", idle_300, 1),
        ("60 MiB frames declared, never sent", big_frames, 1),
        ("garbage", garbage, 2),
    ],
)
def test_the_good_agent_is_served_whoever_connected_first(
    cartpole: str, what: str, attack: Attack, attackers: int
) -> None:
    proc = subprocess.Popen(
        [cartpole, "--listen", "tcp://127.0.0.1:0", "--handshake-timeout", "5000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=SAN_ENV,
    )
    stop = threading.Event()
    socks: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().split()[1]
        host, port = address.removeprefix("tcp://").rsplit(":", 1)
        where = (host, int(port))
        base = rss_kib(proc.pid)
        threads = [
            threading.Thread(target=attack, args=(where, stop, socks), daemon=True) for _ in range(attackers)
        ]
        for t in threads:
            t.start()
        time.sleep(0.5)  # the attackers are in first
        peak = rss_kib(proc.pid)
        t0 = time.monotonic()
        env = rlay.ClientEnv(address, connect_timeout=10, handshake_timeout=10, timeout=10)
        served = time.monotonic() - t0
        local = gym.make("CartPole-v1")
        np.testing.assert_array_equal(env.reset(seed=2)[0], local.reset(seed=2)[0])
        for i in range(20):
            np.testing.assert_array_equal(env.step(i % 2)[0], local.step(i % 2)[0])
            peak = max(peak, rss_kib(proc.pid))
        env.close()
        stop.set()
        _, err = proc.communicate(timeout=10)
        grown = (peak - base) / 1024
        print(
            f"{what}: the good agent was served after {served * 1e3:.0f} ms; "
            f"RSS +{grown:.2f} MiB; {err.strip()}"
        )
        assert proc.returncode == 0, err
        assert served < 3.0, f"{what}: the good agent waited {served:.2f} s"
        assert grown < 4, f"{what}: the program's RSS grew by {grown:.1f} MiB"
        if attack is not idle_300:  # idle ones that never got a turn are closed unseen
            assert "dropped" in err, err
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for s in socks:
            s.close()
