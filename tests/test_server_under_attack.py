"""Issue 15 end to end: ``rlay serve`` keeps serving a good client while attackers send 8 MiB
frames of nested empty arrays — a HELLO before the handshake, a STEP after it, two connections at
a time, in a loop for 8 s (some hundreds of frames) — and its peak memory stays bounded (each
session may hold one frame and one copy of its body, spec §13). Loopback only, bounded in time."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time

import rlay
from rlay.protocol.connection import Connection
from rlay.protocol.framing import pack_header
from rlay.protocol.wire import Kind, Role

SIZE = 8 << 20


def nested(key: str) -> bytes:
    """{key: [[[]] x 1000] x k}: 8 MiB of two-byte arrays, no header declaring much."""
    chunk = b"\xdc" + struct.pack(">H", 1000) + b"\x91\x90" * 1000
    k = (SIZE - 16) // len(chunk)
    return b"\x81" + bytes([0xA0 | len(key)]) + key.encode() + b"\xdd" + struct.pack(">I", k) + chunk * k


def vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def attack(address: str, after_handshake: bool, stop: threading.Event, sent: list[str]) -> None:
    host, port = address.rsplit("/", 1)[1].rsplit(":", 1)
    hello = pack_header(Kind.HELLO, 0, len(nested("protocol"))) + nested("protocol")
    step = pack_header(Kind.STEP, 0, len(nested("action"))) + nested("action")
    while not stop.is_set():
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            try:
                if after_handshake:  # a well-behaved HELLO, then the hostile STEP
                    sock.sendall(b"".join(bytes(b) for b in Connection(Role.AGENT).data_to_send()))
                    sock.sendall(step)
                else:
                    sock.sendall(hello)
                sock.recv(65536)  # the server's fatal ERROR (or its close)
            except OSError:  # the server refused the frame on its header and hung up mid-send
                pass
            sent.append("step" if after_handshake else "hello")


def test_a_good_client_is_served_while_hostile_frames_arrive() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "rlay.cli", "serve", "CartPole-v1"], stdout=subprocess.PIPE, text=True
    )
    stop = threading.Event()
    sent: list[str] = []
    try:
        assert server.stdout is not None
        address = server.stdout.readline().split()[1]
        env = rlay.ClientEnv(address)
        env.reset(seed=0)
        for _ in range(100):
            env.step(0)
        base = vm_kib(server.pid, "VmRSS")
        attackers = [
            threading.Thread(target=attack, args=(address, phase, stop, sent), daemon=True)
            for phase in (False, True)
        ]
        for t in attackers:
            t.start()
        slowest = 0.0
        deadline = time.monotonic() + 8
        steps = 0
        while time.monotonic() < deadline or len(sent) < 4:
            t0 = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(steps % 2)
            slowest = max(slowest, time.perf_counter() - t0)
            steps += 1
            if terminated or truncated:
                env.reset()
            assert time.monotonic() < deadline + 30, f"the attackers sent only {sent}"
        stop.set()
        for t in attackers:
            t.join(30)
        peak = vm_kib(server.pid, "VmHWM")
        env.close()
        assert sent.count("hello") >= 2 and sent.count("step") >= 2, sent
        assert slowest < 1.0, f"a good step waited {slowest:.2f} s while {len(sent)} hostile frames arrived"
        grown = (peak - base) / 1024
        print(f"{steps} good steps, slowest {slowest * 1e3:.0f} ms, {len(sent)} bad frames, +{grown:.0f} MiB")
        assert grown < 160, f"the server's peak RSS grew by {grown:.0f} MiB ({len(sent)} hostile frames)"
    finally:
        stop.set()
        server.terminate()
        server.wait(10)
