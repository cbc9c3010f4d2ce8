"""A raw agent side of spec §16 (shared memory), written from the spec with hand-made frames, for
the C SDK's shm tests: it announces ``"shm": 1``, creates the region (a sealed memfd), sends the
SHM offer with the descriptor (``SCM_RIGHTS``), and then moves frames through the region exactly as
§16.4-16.6 say — or, on request, breaks a rule (a mangled header, a sequence jump, a bad length, an
unannounced frame on the socket) so that the env side's checks can be seen.

It uses no rlay code (only ``msgpack``), so it checks the C side against the spec, not against
the Python implementation. Memory ordering: x86-64 plain aligned 8-byte stores and loads are
release/acquire (§16.6); the full fence is a lock acquire (a locked instruction).

As a script (``python shm_agent.py PATH [sleep|spin]``) it negotiates with the env side listening at
``unix://PATH``, resets, prints ``READY`` and waits to be killed (the kill -9 tests).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import select
import socket
import struct
import sys
import threading
import time
from typing import Any

import msgpack
import numpy as np

MIB = 1 << 20
ON_SOCKET = 2**64 - 1
A2E, E2A = 128, 256
SEQ, LEN, ACK, SLEEPING = 0, 8, 64, 72
HEADER = struct.Struct("<8sIIQQQQQ")  # magic, layout, header_size, region_size, a2e off/cap, e2a off/cap
HELLO = {
    "protocol": "rlay",
    "version": 1,
    "role": "agent",
    "sdk": "test-shm",
    "sdk_version": "0",
    "capabilities": {},
}
DTYPES = {1: np.bool_, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.uint8, 7: np.uint16}
DTYPES.update({8: np.uint32, 9: np.uint64, 10: np.float16, 11: np.float32, 12: np.float64})
_fence_lock = threading.Lock()


def fence() -> None:
    """A full fence: acquiring an uncontended lock is a locked instruction."""
    with _fence_lock:
        pass


def frame(kind: int, body: Any, data: bytes = b"") -> bytes:
    payload = msgpack.packb(body)
    return struct.pack("<2sBBII", b"RL", kind, 0, len(data), len(payload)) + data + payload


def decode(raw: bytes) -> tuple[int, Any]:
    """A frame's kind and body, tensors as numpy arrays."""
    assert raw[:2] == b"RL", raw[:16]
    dlen, blen = struct.unpack("<II", raw[4:12])
    assert len(raw) == 12 + dlen + blen, (len(raw), dlen, blen)
    data = raw[12 : 12 + dlen]

    def ext(code: int, payload: bytes) -> Any:
        assert code == 1
        dt, nd = payload[0], payload[1]
        shape = struct.unpack(f"<{nd}I", payload[2 : 2 + 4 * nd])
        (off,) = struct.unpack("<I", payload[2 + 4 * nd :])
        count = int(np.prod(shape)) if nd else 1
        return np.frombuffer(data, DTYPES[dt], count, off).reshape(shape).copy()

    return raw[2], msgpack.unpackb(raw[12 + dlen :], ext_hook=ext)


def header_bytes(size: int, a2e: tuple[int, int], e2a: tuple[int, int], **over: Any) -> bytes:
    f = {"magic": b"rlay-shm", "layout": 1, "header_size": 4096, "region_size": size}
    f.update(over)
    return HEADER.pack(f["magic"], f["layout"], f["header_size"], f["region_size"], *a2e, *e2a)


class Agent:
    """One session with an env side at ``unix://path``. ``shm=None`` announces nothing.

    Offer knobs: ``capacity`` (each channel), ``size`` (the body's ``size``; default the real
    size), ``header`` (overrides of §16.2 fields), ``raw_header`` (bytes written at offset 0 after
    the header: fuzzing), ``seal``, ``nfds`` (descriptors sent with the offer)."""

    def __init__(
        self,
        path: str,
        *,
        shm: Any = 1,
        capacity: int = 8 * MIB,
        size: int | None = None,
        real_size: int | None = None,
        header: dict[str, Any] | None = None,
        raw_header: bytes | None = None,
        control: dict[int, int] | None = None,
        seal: bool = True,
        nfds: int = 1,
        timeout: float = 20.0,
        spin_s: float = 50e-6,
    ) -> None:
        self.timeout = timeout
        self.spin_s = spin_s
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.socket_frames_read = 0
        caps = {} if shm is None else {"shm": shm}
        self.sock.sendall(frame(1, {**HELLO, "capabilities": caps}))
        kind, self.env_hello = self.read_socket_frame()
        assert kind == 1, (kind, self.env_hello)
        kind, self.env_info = self.read_socket_frame()
        assert kind == 2, (kind, self.env_info)
        self.map: mmap.mmap | None = None
        self.answer: dict[str, Any] | None = None
        self.active = False
        self.sent = self.got = 0
        self.wakes_sent = 0
        if type(shm) is int and shm == 1 and self.env_hello["capabilities"].get("shm") == 1:
            self.offer(capacity, size, real_size, header or {}, raw_header, control or {}, seal, nfds)

    # -- negotiation (§16.1-16.3) -----------------------------------------------------------------

    def offer(
        self,
        capacity: int,
        size: int | None,
        real_size: int | None,
        header: dict[str, Any],
        raw_header: bytes | None,
        control: dict[int, int],
        seal: bool,
        nfds: int,
    ) -> None:
        true_size = real_size if real_size is not None else 4096 + 2 * capacity
        self.a2e = (4096, capacity)
        self.e2a = (4096 + capacity, capacity)
        fd = os.memfd_create("rlay-shm-test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, true_size)
        self.map = mmap.mmap(fd, true_size)
        over = dict(header)
        a2e = over.pop("a2e", self.a2e)
        e2a = over.pop("e2a", self.e2a)
        self.map[: HEADER.size] = header_bytes(true_size, a2e, e2a, **over)
        if raw_header is not None:
            self.map[: len(raw_header)] = raw_header
        for off, value in control.items():
            struct.pack_into("<Q", self.map, off, value)
        if seal:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        self.words = memoryview(self.map).cast("Q")
        body = frame(5, {"size": true_size if size is None else size})
        fds = [fd] + [os.dup(fd) for _ in range(nfds - 1)] if nfds else []
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
        sent = self.sock.sendmsg([body], anc)
        assert sent == len(body)
        for f in fds:
            os.close(f)
        kind, self.answer = self.read_socket_frame()
        assert kind == 5, (kind, self.answer)
        self.active = self.answer["accepted"] is True

    # -- the region (§16.4-16.6) ------------------------------------------------------------------

    def word(self, channel: int, field: int) -> int:
        return int(self.words[(channel + field) // 8])

    def set_word(self, channel: int, field: int, value: int) -> None:
        self.words[(channel + field) // 8] = value

    def send(self, kind: int, body: Any, data: bytes = b"") -> None:
        self.send_raw(frame(kind, body, data))

    def send_raw(self, f: bytes, *, seq: int | None = None, length: int | None = None) -> None:
        """One frame: through a2e (or announced there and sent on the socket if too large)."""
        if not self.active:
            self.sock.sendall(f)
            return
        assert self.word(A2E, ACK) == self.sent, "the env side did not consume the previous frame"
        off, cap = self.a2e
        on_socket = len(f) > cap
        if not on_socket:
            self.map[off : off + len(f)] = f
        self.set_word(A2E, LEN, ON_SOCKET if on_socket else len(f) if length is None else length)
        self.sent += 1
        self.set_word(A2E, SEQ, self.sent if seq is None else seq)
        fence()
        if self.word(A2E, SLEEPING) == 1:
            self.set_word(A2E, SLEEPING, 0)
            self.sock.sendall(b"\0")
            self.wakes_sent += 1
        if on_socket:
            self.sock.sendall(f)

    def recv(self) -> tuple[int, Any]:
        """The env side's next frame (§16.4 read, §16.6 wait); EOFError at end of stream."""
        if not self.active:
            return self.read_socket_frame()
        deadline = time.monotonic() + self.timeout
        spin_end = time.perf_counter() + self.spin_s
        eof = False
        while True:
            seq = self.word(E2A, SEQ)
            if seq == self.got + 1:
                n = self.word(E2A, LEN)
                if n == ON_SOCKET:
                    self.got += 1
                    out = self.read_socket_frame()
                    self.set_word(E2A, ACK, self.got)
                    return out
                assert 12 <= n <= self.e2a[1], n
                raw = bytes(self.map[self.e2a[0] : self.e2a[0] + n])
                self.got += 1
                self.set_word(E2A, ACK, self.got)
                return decode(raw)
            assert seq == self.got, f"e2a sequence jumped from {self.got} to {seq}"
            self.drain_wakes()
            if self.buf[:1] == b"R":  # a fatal ERROR out of turn
                return self.read_socket_frame()
            if eof:
                raise EOFError("the env side closed the connection")
            if time.perf_counter() < spin_end:
                continue
            self.set_word(E2A, SLEEPING, 1)
            fence()
            if self.word(E2A, SEQ) != self.got:
                self.set_word(E2A, SLEEPING, 0)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the env side")
            ready, _, _ = select.select([self.sock], [], [], left)
            if ready:
                chunk = self.sock.recv(1 << 20)
                eof = not chunk
                self.buf += chunk
            self.set_word(E2A, SLEEPING, 0)

    def drain_wakes(self) -> None:
        self.buf = self.buf.lstrip(b"\0")

    def read_socket_frame(self) -> tuple[int, Any]:
        """One frame from the socket, skipping wake bytes before it (§16.5)."""
        while True:
            self.drain_wakes()
            if len(self.buf) >= 12:
                assert self.buf[:2] == b"RL", self.buf[:16]
                dlen, blen = struct.unpack("<II", self.buf[4:12])
                if len(self.buf) >= 12 + dlen + blen:
                    raw, self.buf = self.buf[: 12 + dlen + blen], self.buf[12 + dlen + blen :]
                    self.socket_frames_read += 1
                    return decode(raw)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError(f"end of stream with {len(self.buf)} bytes of a frame")
            self.buf += chunk

    def command(self, kind: int, body: Any) -> tuple[int, Any]:
        self.send(kind, body)
        return self.recv()

    def close(self) -> None:
        self.sock.close()
        if self.map is not None:
            self.words.release()
            self.map.close()


if __name__ == "__main__":
    agent = Agent(sys.argv[1])
    assert agent.active, agent.answer
    assert agent.command(16, {"seed": 1, "options": None})[0] == 32
    print("READY", flush=True)
    time.sleep(600)
