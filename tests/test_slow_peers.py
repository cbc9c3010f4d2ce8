"""Hostile and slow peers against ``rlay serve`` (spec §17.4; 8 MiB hostile frames are
tests/test_server_under_attack.py's). While peers send one byte a second, hold 300 idle
connections, declare 60 MiB frames and send nothing, or send garbage, a good ClientEnv is served
at full speed; the handshake deadline (here 2 s) ends the slow and the idle ones, the idle
timeout (here 3 s) a frame that never comes; the server's memory and threads stay bounded (its
RSS is sampled every 20 ms). Loopback only; a few seconds each."""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import rlay
from rlay.protocol.connection import Connection
from rlay.protocol.wire import Role

HANDSHAKE = 2.0
IDLE = 3.0
AGENT_HELLO = b"".join(bytes(b) for b in Connection(Role.AGENT).data_to_send())


def proc_status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class Server:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "rlay.cli", "serve", "CartPole-v1",
                "--handshake-timeout", str(HANDSHAKE), "--idle-timeout", str(IDLE),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # a warning per bad peer
            text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.address = self.proc.stdout.readline().split()[1]
        host, port = self.address.removeprefix("tcp://").rsplit(":", 1)
        self.where = (host, int(port))

    def rss_mib(self) -> float:
        return proc_status(self.proc.pid, "VmRSS") / 1024

    def threads(self) -> int:
        return proc_status(self.proc.pid, "Threads")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    env = rlay.ClientEnv(srv.address)  # warm up: imports done, one env made and closed
    env.reset(seed=0)
    env.step(0)
    env.close()
    yield srv
    srv.proc.terminate()
    srv.proc.wait(10)


class Watch:
    """While the block runs: a good client steps, and the server's RSS is sampled."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.stop = threading.Event()
        self.peak = self.base = server.rss_mib()
        self.threads0 = server.threads()
        self.steps = 0
        self.slowest = 0.0
        self.error: BaseException | None = None

    def __enter__(self) -> Watch:
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._client = threading.Thread(target=self._good_client, daemon=True)
        self._sampler.start()
        self._client.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self.server.rss_mib())

    def _good_client(self) -> None:
        try:
            env = rlay.ClientEnv(self.server.address, timeout=10)
            local = gym.make("CartPole-v1")
            env.reset(seed=1)
            local.reset(seed=1)
            while not self.stop.is_set():
                t = time.perf_counter()
                got = env.step(self.steps % 2)
                self.slowest = max(self.slowest, time.perf_counter() - t)
                exp = local.step(self.steps % 2)
                np.testing.assert_array_equal(got[0], exp[0])
                self.steps += 1
                if got[2] or got[3]:
                    env.reset(seed=self.steps)
                    local.reset(seed=self.steps)
            env.close()
        except BaseException as exc:
            self.error = exc

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._client.join(15)
        self._sampler.join(5)

    def check(self, what: str, max_growth_mib: float) -> None:
        grown = self.peak - self.base
        print(
            f"{what}: {self.steps} good steps, slowest {self.slowest * 1e3:.0f} ms, server RSS "
            f"{self.base:.0f} -> peak {self.peak:.0f} MiB (+{grown:.1f})"
        )
        assert self.error is None, self.error
        assert self.steps > 50, f"the good client made only {self.steps} steps during {what}"
        assert self.slowest < 1.5, f"a good step waited {self.slowest:.2f} s during {what}"
        assert grown < max_growth_mib, f"the server's RSS grew by {grown:.1f} MiB during {what}"


def wait_closed(socks: list[socket.socket], within: float) -> list[float]:
    """Read each socket until the server closes it; return when each closed (seconds from now)."""
    start = time.monotonic()
    closed: dict[socket.socket, float] = {}
    while len(closed) < len(socks) and time.monotonic() - start < within:
        open_ = [s for s in socks if s not in closed]
        ready, _, _ = select.select(open_, [], [], 0.1)
        for s in ready:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                closed[s] = time.monotonic() - start
    left = len(socks) - len(closed)
    assert not left, f"{left} of {len(socks)} still open after {within} s"
    return list(closed.values())


def wait_threads(server: Server, at_most: int, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while server.threads() > at_most and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.threads() <= at_most, f"the server still has {server.threads()} threads"


def test_peers_sending_one_byte_a_second_are_ended_at_the_handshake_deadline(server: Server) -> None:
    n = 10
    ended: list[float] = []

    def slow() -> None:
        with socket.create_connection(server.where, timeout=5) as sock:
            t = time.monotonic()
            for byte in AGENT_HELLO:  # a valid HELLO, if it were ever finished (~100 s)
                try:
                    sock.send(bytes([byte]))
                    ready, _, _ = select.select([sock], [], [], 1.0)  # one byte a second
                    while ready:
                        if not sock.recv(65536):  # the server hung up
                            ended.append(time.monotonic() - t)
                            return
                        ready, _, _ = select.select([sock], [], [], 0)
                except OSError:
                    ended.append(time.monotonic() - t)
                    return

    with Watch(server) as watch:
        peers = [threading.Thread(target=slow, daemon=True) for _ in range(n)]
        for p in peers:
            p.start()
        for p in peers:
            p.join(HANDSHAKE + 10)
    watch.check("10 peers sending a byte a second", 20)
    assert len(ended) == n, f"only {len(ended)} of {n} slow peers were ended"
    assert all(HANDSHAKE - 0.2 < t < HANDSHAKE + 3 for t in ended), ended


def test_three_hundred_idle_connections_are_dropped_and_cost_little(server: Server) -> None:
    with Watch(server) as watch:
        socks = [socket.create_connection(server.where, timeout=5) for _ in range(300)]
        threads = server.threads()
        try:
            closed = wait_closed(socks, HANDSHAKE + 8)
        finally:
            for s in socks:
                s.close()
    watch.check(f"300 idle connections ({threads} server threads at most)", 60)
    assert max(closed) < HANDSHAKE + 5, max(closed)
    wait_threads(server, watch.threads0 + 2)


def test_declared_60_mib_frames_with_nothing_sent_cost_nothing(server: Server) -> None:
    big = b"RL" + bytes([17, 0]) + struct.pack("<II", 0, 60 << 20)  # a STEP of 60 MiB, never sent

    with Watch(server) as watch:
        # Before the handshake: the first frame is limited to 64 KiB (§13), refused on its header.
        with socket.create_connection(server.where, timeout=5) as sock:
            t = time.monotonic()
            sock.sendall(b"RL" + bytes([1, 0]) + struct.pack("<II", 0, 60 << 20))
            assert b"the first frame" in read_all(sock)
            assert time.monotonic() - t < 1
        # After it: 20 sessions each start a 60 MiB frame and stop; the idle timeout ends them.
        socks = []
        for _ in range(20):
            sock = socket.create_connection(server.where, timeout=5)
            sock.sendall(AGENT_HELLO + big)
            socks.append(sock)
        try:
            closed = wait_closed(socks, IDLE + 8)
        finally:
            for s in socks:
                s.close()
    watch.check("20 sessions that declared 60 MiB frames", 40)
    assert IDLE - 0.2 < min(closed) and max(closed) < IDLE + 5, closed


def read_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_garbage_gets_bad_magic_and_the_server_serves_on(server: Server) -> None:
    sent = 0
    with Watch(server) as watch:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            with socket.create_connection(server.where, timeout=5) as sock:
                sock.sendall(b"\x00" + os.urandom(255))
                reply: Any = read_all(sock)
                assert b"BAD_MAGIC" in reply or b"not speaking rlay" in reply, reply[:200]
            sent += 1
    watch.check(f"{sent} connections sending garbage", 20)
    assert sent >= 20
    wait_threads(server, watch.threads0 + 2)
