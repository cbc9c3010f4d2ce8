"""Shared memory on unix sockets: the ``shm`` capability (spec/protocol.md §16).

After the handshake, an agent side and an env side that both announced ``"shm": 1`` move their
frames into a memory region both map (a sealed ``memfd`` the agent passes over the unix socket);
the socket stays for wake-ups, frames larger than a channel, a fatal ERROR sent out of turn, and
liveness. :class:`ShmStream` honours the transport contract of :mod:`rlay.transports.base`, so
once :func:`offer` (agent) or :func:`answer` (env) has swapped it in as the session's stream,
nothing above the transport changes: each frame is still checked by the protocol core, with this
session's limits, exactly as if it came from the socket.

Memory ordering (§16.6). Python has no atomics; this module relies on x86-64, where

- an aligned 8-byte load or store is atomic, and total store order gives loads acquire and stores
  release semantics: the control words are read and written through a ``memoryview`` cast to
  ``'Q'`` over the page-aligned header, whose item access is one ``memcpy`` of 8 aligned bytes
  (a single ``mov``); and nothing a compiler could reorder lies between two Python statements;
- the one full fence the protocol needs (the Dekker pattern of §16.6: store ``sleeping``/``seq``,
  fence, load ``seq``/``sleeping``) is an uncontended ``threading.Lock`` acquire and release. In
  CPython 3.11 on Linux (``sys.thread_info.lock == 'semaphore'``) ``acquire`` first tries
  ``sem_trywait`` and ``release`` is ``sem_post``; glibc implements both with ``lock cmpxchg``,
  a locked instruction, which is a full barrier on x86-64 (Intel SDM vol. 3 §8.2.2).
  ``tests/test_shm.py`` checks that this libc's ``sem_trywait`` contains it. On any other
  platform :func:`unsupported` names the reason and the capability is not announced.

Waiting (§16.6): a reader spins for ``RLAY_SHM_SPIN_US`` microseconds (default 50) re-loading
``seq``, then sets ``sleeping``, fences, re-checks, and blocks in ``recv`` on the socket; a writer
sends a wake byte only when it sees ``sleeping``. A side that waits long costs no CPU.
:func:`wait_all` waits for a whole batch of replies (a vector env): one spin over every pending
``seq``, then one ``poll`` over every socket.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import platform
import select
import struct
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from rlay.errors import ConnectionClosed, ProtocolError, Timeout
from rlay.protocol.messages import Error, ShmAnswer, ShmOffer
from rlay.protocol.wire import HEADER, HEADER_SIZE, MAGIC, ErrorCode, Kind, Role
from rlay.transports.sockets import RECV_SIZE, SocketStream

if TYPE_CHECKING:
    from rlay.protocol.codec import Buffer
    from rlay.session import Session

log = logging.getLogger("rlay")

# -- §16.2: the region ------------------------------------------------------------------------------

REGION_MAGIC = b"rlay-shm"
LAYOUT = 1
REGION_HEADER_SIZE = 4096  # the header page; the data areas start here
MIN_CAPACITY = 4096
DEFAULT_CAPACITY = 8 * 1024 * 1024  # each direction (§16.2: the agent's default)
DEFAULT_MAX_SHM_SIZE = 1024 * 1024 * 1024  # §16.3: the env side's default limit
SOCKET_FRAME = (1 << 64) - 1  # §16.5: `len` of a frame that travels on the socket
WAKE = b"\x00"  # §16.5: a wake byte; a frame starts with 0x52 ('R'), never 0x00
DEFAULT_SPIN_US = 50.0  # §16.6
MAX_FDS = 4  # room for descriptors on the offer: one is expected, more are refused

#: The fixed fields at the start of the header (§16.2): magic, layout, header_size, region_size,
#: a2e_offset, a2e_capacity, e2a_offset, e2a_capacity.
_FIXED = struct.Struct("<8sIIQQQQQ")
#: Word indexes (u64) of the two control blocks (§16.2) and of the fields inside one.
A2E_BLOCK = 128 // 8
E2A_BLOCK = 256 // 8
SEQ, LEN, ACK, SLEEPING = 0, 1, 8, 9


@dataclass
class Layout:
    """The header fields of §16.2 as an agent writes them (the conformance peer corrupts them)."""

    magic: bytes = REGION_MAGIC
    layout: int = LAYOUT
    header_size: int = REGION_HEADER_SIZE
    region_size: int = REGION_HEADER_SIZE + 2 * DEFAULT_CAPACITY
    a2e_offset: int = REGION_HEADER_SIZE
    a2e_capacity: int = DEFAULT_CAPACITY
    e2a_offset: int = REGION_HEADER_SIZE + DEFAULT_CAPACITY
    e2a_capacity: int = DEFAULT_CAPACITY

    @classmethod
    def for_capacities(cls, a2e: int = DEFAULT_CAPACITY, e2a: int = DEFAULT_CAPACITY) -> Layout:
        """Areas one after the other from the header page, each offset a multiple of 4096."""
        a2e_room = -(-a2e // 4096) * 4096
        e2a_room = -(-e2a // 4096) * 4096
        return cls(
            region_size=REGION_HEADER_SIZE + a2e_room + e2a_room,
            a2e_offset=REGION_HEADER_SIZE,
            a2e_capacity=a2e,
            e2a_offset=REGION_HEADER_SIZE + a2e_room,
            e2a_capacity=e2a,
        )

    def pack(self) -> bytes:
        return _FIXED.pack(*(getattr(self, f.name) for f in fields(self)))


def unsupported() -> str | None:
    """Why this process cannot use shared memory safely (None: it can). §16.6: an implementation
    that cannot guarantee the memory orderings on its platform MUST NOT announce ``shm``."""
    if sys.platform != "linux":
        return f"shared memory is implemented for Linux only, not {sys.platform}"
    machine = platform.machine()
    if machine not in ("x86_64", "AMD64"):
        return f"shared memory from Python needs x86-64's memory ordering, not {machine}"
    if not hasattr(os, "memfd_create") or not hasattr(fcntl, "F_ADD_SEALS"):
        return "this Python has no memfd_create or file seals"
    return None


def enabled(shm: bool = True) -> bool:
    """§16.1: announce ``shm`` unless ``shm=False``, ``RLAY_SHM=0``, or the platform cannot."""
    return bool(shm) and os.environ.get("RLAY_SHM", "1").strip() != "0" and unsupported() is None


def capability(stream: Any, shm: bool = True) -> dict[str, Any]:
    """The ``HELLO.capabilities`` entry for ``stream``: ``{"shm": 1}`` on a unix socket when
    :func:`enabled`, else nothing (tcp, ws, a recording stream …: §16.1 forbids announcing)."""
    import socket

    if type(stream) is SocketStream and stream.family == socket.AF_UNIX and enabled(shm):
        return {"shm": LAYOUT}
    return {}


_FENCE = threading.Lock()


def fence() -> None:
    """A sequentially consistent fence on x86-64: a locked instruction (see the module docstring)."""
    _FENCE.acquire()
    _FENCE.release()


#: RLAY_SHM_YIELD=1: os.sched_yield() in each spin iteration (default: a bare spin, no system
#: call). On a machine with more runnable processes than cores it hands the core to a peer that
#: shares it; the adaptive spin already stops spinning there, so it is off by default.
_YIELD = os.environ.get("RLAY_SHM_YIELD", "0") == "1"
PROBE = 7  # see ShmStream.__init__: every 8th wait spins even when waits run long
SPIN_STRETCH = 4  # a spin grows with the waits seen, up to this many times the base spin


_load_checked = 0.0
_load_allows = True


def _spare_core() -> bool:
    """Whether a spin can pay: a spinning reader holds a core, which only helps when another core
    runs its peer. With as many runnable processes as cores (the 1-minute load average, looked at
    once a second), a spin only delays the peer, so readers sleep at once (§16.6 SHOULD adapt).
    An explicit RLAY_SHM_SPIN_US spins regardless."""
    global _load_checked, _load_allows
    now = time.monotonic()
    if now - _load_checked > 1.0:
        _load_checked = now
        try:
            _load_allows = os.getloadavg()[0] < (os.cpu_count() or 1) - 0.5
        except OSError:
            _load_allows = True
    return _load_allows


def _spin_seconds() -> float:
    text = os.environ.get("RLAY_SHM_SPIN_US", "").strip()
    try:
        us = float(text) if text else DEFAULT_SPIN_US
    except ValueError:
        us = DEFAULT_SPIN_US
    return max(0.0, us) / 1e6


class Region:
    """A mapped region: the mmap, its ``u64`` header words, and the two data areas."""

    def __init__(self, mm: mmap.mmap, layout: Layout) -> None:
        self.mm = mm
        self.layout = layout
        self.size = layout.region_size
        self.view = memoryview(mm)
        self.words = self.view[:REGION_HEADER_SIZE].cast("Q")

    @classmethod
    def create(
        cls,
        layout: Layout | None = None,
        *,
        file_size: int | None = None,
        seal: bool = True,
        words: dict[int, int] | None = None,
    ) -> tuple[Region, int]:
        """The agent's region (§16.1): a sealed memfd with ``layout``'s header. Returns the region
        and its descriptor (the caller sends it, then closes it). ``file_size``, ``seal`` and
        ``words`` (u64 header words to set) exist to build broken regions for tests."""
        layout = layout or Layout()
        size = layout.region_size if file_size is None else file_size
        fd = os.memfd_create("rlay-shm", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, size)
            if seal:
                fcntl.fcntl(
                    fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
                )
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        mm[: _FIXED.size] = layout.pack()
        region = cls(mm, layout)
        for index, value in (words or {}).items():
            region.words[index] = value
        return region, fd

    def close(self) -> None:
        self.words.release()
        self.view.release()
        try:
            self.mm.close()
        except BufferError:  # a view still exported somewhere: the mapping goes with it
            pass


def check_offer(fds: list[int], truncated: bool, size: int, max_size: int) -> Region | str:
    """§16.3, in its order: the env side's checks of an offer. Returns the mapped region, or the
    reason to refuse it. Every descriptor received is closed here (a mapping outlives it)."""
    try:
        if truncated or len(fds) > 1:
            return (
                f"expected one descriptor with the SHM offer, got {len(fds)}{' or more' if truncated else ''}"
            )
        if not fds:
            return "no descriptor arrived with the SHM offer"
        fd = fds[0]
        if not REGION_HEADER_SIZE <= size <= max_size:
            return f"the region size {size} is outside {REGION_HEADER_SIZE}..{max_size} (max_shm_size)"
        actual = os.fstat(fd).st_size
        if actual != size:
            return f"the descriptor's size is {actual} bytes, but the offer says {size}"
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        except OSError as exc:
            return (
                f"cannot read the region's seals ({exc.strerror}): it must be a memfd sealed (F_SEAL_SHRINK)"
            )
        if not seals & fcntl.F_SEAL_SHRINK:
            return "the region is not sealed against shrinking (F_SEAL_SHRINK)"
        try:
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except (OSError, ValueError) as exc:
            return f"cannot map the region: {exc}"
    finally:
        for fd in fds:
            os.close(fd)
    head = Layout(*_FIXED.unpack_from(mm, 0))
    reason = _check_header(head, size)
    if reason is None:
        words = memoryview(mm)[:REGION_HEADER_SIZE].cast("Q")
        for name, block in (("a2e", A2E_BLOCK), ("e2a", E2A_BLOCK)):
            for field, index in (("seq", SEQ), ("ack", ACK), ("sleeping", SLEEPING)):
                if words[block + index] != 0:
                    reason = f"channel {name}: {field} is {words[block + index]}, not 0"
                    break
            if reason is not None:
                break
        words.release()
    if reason is not None:
        mm.close()
        return reason
    return Region(mm, head)


def _check_header(h: Layout, size: int) -> str | None:
    if h.magic != REGION_MAGIC:
        return f"the region's magic is {h.magic!r}, not {REGION_MAGIC!r}"
    if h.layout != LAYOUT:
        return f"the region's layout is {h.layout}, this side speaks {LAYOUT}"
    if h.header_size != REGION_HEADER_SIZE:
        return f"header_size is {h.header_size}, not {REGION_HEADER_SIZE}"
    if h.region_size != size:
        return f"region_size is {h.region_size}, but the offer says {size}"
    areas = (("a2e", h.a2e_offset, h.a2e_capacity), ("e2a", h.e2a_offset, h.e2a_capacity))
    for name, offset, capacity in areas:  # Python ints: no overflow
        if offset < REGION_HEADER_SIZE or offset + capacity > h.region_size:
            return f"the {name} area [{offset}, {offset + capacity}) is not inside [4096, {h.region_size})"
        if capacity < MIN_CAPACITY:
            return f"the {name} capacity {capacity} is below {MIN_CAPACITY}"
        if offset % 64:
            return f"the {name} offset {offset} is not a multiple of 64"
    (_, a, n), (_, b, m) = areas
    if a < b + m and b < a + n:
        return f"the a2e area [{a}, {a + n}) and the e2a area [{b}, {b + m}) overlap"
    return None


# -- §16.4-§16.6: the stream -------------------------------------------------------------------------


class ShmStream:
    """One side's end of a switched session: frames through the region, the socket beside it.

    ``recv`` returns one whole frame copied out of the region (§16.4 step 3: never parsed in
    place, and an observation decoded from it never changes), or the bytes of a frame that came
    on the socket, or ``b""`` at end of stream.
    """

    def __init__(self, sock: SocketStream, region: Region, role: Role) -> None:
        self._sock = sock
        self.peer = sock.peer
        self._region = region
        lay = region.layout
        tx_block, rx_block = (A2E_BLOCK, E2A_BLOCK) if role is Role.AGENT else (E2A_BLOCK, A2E_BLOCK)
        (tx_off, tx_cap), (rx_off, rx_cap) = (
            ((lay.a2e_offset, lay.a2e_capacity), (lay.e2a_offset, lay.e2a_capacity))
            if role is Role.AGENT
            else ((lay.e2a_offset, lay.e2a_capacity), (lay.a2e_offset, lay.a2e_capacity))
        )
        self._words = region.words
        self._tx_seq, self._tx_len = tx_block + SEQ, tx_block + LEN
        self._tx_ack, self._tx_sleeping = tx_block + ACK, tx_block + SLEEPING
        self._rx_seq, self._rx_len = rx_block + SEQ, rx_block + LEN
        self._rx_ack, self._rx_sleeping = rx_block + ACK, rx_block + SLEEPING
        self._tx_area = region.view[tx_off : tx_off + tx_cap]
        self._rx_area = region.view[rx_off : rx_off + rx_cap]
        self.tx_capacity = tx_cap
        self.rx_capacity = rx_cap
        self._sent = 0  # frames written to tx (§16.4: never trusted from the region)
        self._got = 0  # frames read from rx
        # Both ends in one process (a Server thread serving this process's own ClientEnv): a spin
        # would hold the GIL the other end needs to answer, so such a reader only sleeps.
        self._spin = 0.0 if _peer_pid(sock) == os.getpid() else _spin_seconds()
        self._spin_forced = bool(os.environ.get("RLAY_SHM_SPIN_US", "").strip())
        # The spin adapts, both ways. A reader whose frames take a little longer than the base
        # spin (a 1 MiB observation to write) spins longer, 1.5 times its average wait, up to
        # SPIN_STRETCH times the base: a sleep and a wake-up would cost more than the extra spin.
        # A reader whose frames keep arriving later than that (an agent
        # that thinks for milliseconds, or a machine with more runnable processes than cores,
        # where a spin only delays the peer it waits for) goes to sleep at once, until the
        # average wait is short again. Each wait, spun or slept, updates the average; a slept
        # wait also counts the wake-up's latency, so one wait in PROBE + 1 spins regardless.
        self._wait_avg = 0.0
        self._waits = 0
        self._sockbuf = b""  # socket bytes not yet handed on (wake bytes already dropped)
        self._sock_left: int | None = None  # bytes left of a socket frame being handed on
        self._ack_after = False  # that socket frame was announced by seq (len = SOCKET_FRAME)
        self._eof = False
        self._broken: ConnectionClosed | None = None
        self._closed = False
        self._fd = sock.fileno()

    def fileno(self) -> int:
        return self._fd

    # -- sending (§16.4 write, §16.5) ----------------------------------------------------------

    def send(self, buffers: Sequence[Buffer], timeout: float | None = None, stage: str = "sending") -> None:
        if self._closed:
            raise ConnectionClosed(f"{stage}: the connection was closed locally")
        if len(buffers) == 1:  # the common step frame (a fast-path template): one bytes object
            frame = buffers[0]
            n = len(frame) if type(frame) is bytes else -1
            w = self._words
            if (
                HEADER_SIZE <= n <= self.tx_capacity
                and w[self._tx_ack] == self._sent
                and _frame_size(frame) == n  # type: ignore[arg-type]  # bytes, checked above
            ):
                self._tx_area[:n] = frame
                w[self._tx_len] = n
                self._sent += 1
                w[self._tx_seq] = self._sent  # release: x86-64 keeps the stores above before this
                fence()
                if w[self._tx_sleeping]:
                    w[self._tx_sleeping] = 0
                    self._wake(timeout, stage)
                return
        views = [_bytes_view(b) for b in buffers]
        total = sum(len(v) for v in views)
        first = views[0] if views else b""
        if len(first) >= HEADER_SIZE:
            _, _, _, data_len, body_len = HEADER.unpack_from(first)
            if HEADER_SIZE + data_len + body_len == total:
                self._send_frame(views, total, timeout, stage)
                return
        joined = b"".join(views)  # several frames at once (rare): one at a time
        pos = 0
        while pos < len(joined):
            size = len(joined) - pos
            if size >= HEADER_SIZE:
                _, _, _, data_len, body_len = HEADER.unpack_from(joined, pos)
                size = min(size, HEADER_SIZE + data_len + body_len)
            self._send_frame([memoryview(joined)[pos : pos + size]], size, timeout, stage)
            pos += size

    def _send_frame(self, views: list[memoryview], n: int, timeout: float | None, stage: str) -> None:
        w = self._words
        if w[self._tx_ack] != self._sent:
            if len(views[0]) >= 3 and views[0][2] == Kind.ERROR:
                self._sock.send(views, timeout, stage)  # §16.5: a fatal ERROR out of turn
                return
            raise ConnectionClosed(
                f"{stage}: the {self.peer} has not consumed frame {self._sent} of the shared memory "
                f"(ack {w[self._tx_ack]}), yet a new frame is due: it broke the channel"
            )
        if n <= self.tx_capacity:
            area = self._tx_area
            pos = 0
            for v in views:
                k = len(v)
                area[pos : pos + k] = v
                pos += k
            w[self._tx_len] = n
        else:
            w[self._tx_len] = SOCKET_FRAME  # §16.5: too large for the channel
        self._sent += 1
        w[self._tx_seq] = self._sent  # release: x86-64 keeps the stores above before this one
        fence()
        if w[self._tx_sleeping]:
            w[self._tx_sleeping] = 0
            self._wake(timeout, stage)
        if n > self.tx_capacity:
            self._sock.send(views, timeout, stage)

    def _wake(self, timeout: float | None, stage: str) -> None:
        """One wake byte (§16.4 step 4): straight to the socket when no send timeout is to change."""
        sock = self._sock
        if timeout == sock._snd:
            try:
                if sock._sock.send(WAKE):
                    return
            except OSError:
                pass  # the slow path below names the failure
        sock.send([WAKE], timeout, stage)

    # -- receiving (§16.4 read, §16.5, §16.6) ---------------------------------------------------

    def ready(self) -> bool:
        """True if :meth:`recv` would return without waiting."""
        if self._closed:
            return True  # recv raises ConnectionClosed at once
        return bool(
            self._words[self._rx_seq] != self._got
            or self._sockbuf
            or self._sock_left
            or self._eof
            or self._broken
        )

    def recv(self, timeout: float | None = None, stage: str = "receiving") -> bytes:
        if self._closed:
            raise ConnectionClosed(f"{stage}: the connection was closed locally")
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._sock_left is not None:
            return self._socket_frame(deadline, stage)
        w = self._words
        rx_seq = self._rx_seq
        got = self._got
        if w[rx_seq] != got:
            if timeout != 0:
                self._wait_avg -= self._wait_avg * 0.125  # a wait of 0
            return self._take(stage, deadline)
        if self._sockbuf:
            return self._socket_frame(deadline, stage)  # §16.5: a fatal ERROR out of turn
        if self._eof or self._broken:
            return self._end()
        clock = time.perf_counter
        start = clock()
        self._waits += 1
        if (
            timeout != 0
            and self._spin
            and (self._wait_avg < self._spin * SPIN_STRETCH or not self._waits & PROBE)
            and (self._spin_forced or _spare_core())
        ):
            # §16.6 phase 1; adaptive (see __init__), with every PROBE+1-th wait spun anyway
            spin = min(self._spin * SPIN_STRETCH, max(self._spin, 1.5 * self._wait_avg))
            end = start + (spin if timeout is None else min(spin, timeout))
            while True:
                now = clock()
                if w[rx_seq] != got:
                    self._wait_avg += (now - start - self._wait_avg) * 0.125
                    return self._take(stage, deadline)
                if now >= end:
                    break
                if _YIELD:
                    os.sched_yield()
        first = True
        while True:  # §16.6 phase 2
            if timeout == 0:
                data = self._sock.recv(0, stage)  # never blocks: nothing there is Timeout
            else:
                w[self._rx_sleeping] = 1
                fence()
                if w[rx_seq] != got:
                    w[self._rx_sleeping] = 0
                    self._wait_avg += (clock() - start - self._wait_avg) * 0.125
                    return self._take(stage, deadline)
                try:
                    # The first sleep waits the caller's whole timeout: the socket keeps the same
                    # kernel timeout from step to step (no setsockopt per wait, see sockets.py).
                    wait = timeout if first else _left(deadline)
                    first = False
                    sock = self._sock
                    if wait is None and sock._rcv is None:  # no timeout to set: straight in
                        try:
                            data = sock._sock.recv(RECV_SIZE)
                        except OSError:
                            data = sock.recv(wait, stage)  # names the failure (or retries EINTR)
                    else:
                        data = sock.recv(wait, stage)
                except ConnectionClosed as exc:
                    self._broken = exc
                    data = b""
                except Timeout:
                    raise Timeout(stage, timeout or 0.0) from None
                finally:
                    w[self._rx_sleeping] = 0
            if not data:
                self._eof = True
                return self._end()
            self._note(data)
            if w[rx_seq] != got:  # read step 1 again: seq first, it was published before any byte
                if timeout != 0:
                    self._wait_avg += (clock() - start - self._wait_avg) * 0.125
                return self._take(stage, deadline)
            if self._sockbuf:
                return self._socket_frame(deadline, stage)
            if deadline is not None and deadline <= time.monotonic():
                raise Timeout(stage, timeout or 0.0)

    def _end(self) -> bytes:
        """End of stream: a frame the peer published before it closed is read first (§16.5)."""
        if self._words[self._rx_seq] != self._got:
            return self._take("reading the last frame", None)
        if self._broken is not None:
            raise self._broken
        return b""

    def _note(self, data: bytes) -> None:
        """Keep socket bytes: wake bytes at a frame boundary are dropped (§16.5)."""
        if self._sockbuf or self._sock_left:
            self._sockbuf += data
        else:
            self._sockbuf = data.lstrip(WAKE)

    def _take(self, stage: str, deadline: float | None) -> bytes:
        w = self._words
        seq = w[self._rx_seq]
        got = self._got
        if seq != got + 1:
            raise ProtocolError(ErrorCode.BAD_HEADER, f"shared-memory sequence jumped from {got} to {seq}")
        n = w[self._rx_len]
        if n == SOCKET_FRAME:
            self._got = got + 1
            self._ack_after = True
            return self._socket_frame(deadline, stage)
        if n < HEADER_SIZE or n > self.rx_capacity:
            raise ProtocolError(
                ErrorCode.BAD_HEADER,
                f"shared-memory frame length {n} is outside {HEADER_SIZE}..{self.rx_capacity}",
            )
        data = self._rx_area[:n].tobytes()  # §16.4 step 3: copy out, then check the copy
        if data[:2] == MAGIC:  # (a copy that is no frame at all is the core's BAD_MAGIC)
            _, _, _, data_len, body_len = HEADER.unpack_from(data)
            if HEADER_SIZE + data_len + body_len != n:
                raise ProtocolError(
                    ErrorCode.BAD_HEADER,
                    f"shared-memory frame length {n} is not the size its header says "
                    f"({HEADER_SIZE + data_len + body_len})",
                )
        self._got = got + 1
        w[self._rx_ack] = self._got  # §16.4 step 4: before anything is sent in reply
        return data

    def _socket_frame(self, deadline: float | None, stage: str) -> bytes:
        """The next bytes of the one frame that travels on the socket (§16.5)."""
        while True:
            if self._sock_left is None:
                buf = self._sockbuf = self._sockbuf.lstrip(WAKE)
                if len(buf) >= HEADER_SIZE or (buf and buf[:2] != MAGIC[: len(buf[:2])]):
                    if buf[:2] != MAGIC:
                        self._sockbuf = b""
                        return buf  # not a frame: the protocol core names it (BAD_MAGIC)
                    _, kind, _, data_len, body_len = HEADER.unpack_from(buf)
                    if not self._ack_after and kind != Kind.ERROR:
                        raise ProtocolError(  # §16.5: unannounced, only a fatal ERROR may come
                            ErrorCode.UNEXPECTED_MESSAGE,
                            f"a frame of kind {kind} arrived on the socket unannounced while the "
                            "session runs on shared memory: only a fatal ERROR may (§16.5)",
                        )
                    self._sock_left = HEADER_SIZE + data_len + body_len
            if self._sock_left is not None and self._sockbuf:
                buf = self._sockbuf
                k = min(len(buf), self._sock_left)
                chunk, self._sockbuf = buf[:k], buf[k:]
                self._sock_left -= k
                if self._sock_left == 0:
                    self._sock_left = None
                    if self._ack_after:
                        self._ack_after = False
                        self._words[self._rx_ack] = self._got
                return chunk
            if self._eof or self._broken:
                self._sockbuf = b""
                return b""  # inside a frame: the protocol core reports TRUNCATED
            try:
                data = self._sock.recv(_left(deadline), stage)
            except ConnectionClosed as exc:
                self._broken = exc
                data = b""
            if not data:
                self._eof = True
                if self._sockbuf:
                    buf, self._sockbuf = self._sockbuf, b""
                    return buf
                return b""
            self._sockbuf += data

    def pump(self) -> None:
        """Take what the socket has without blocking (a batch wait saw it readable)."""
        if self._eof or self._broken or self._closed:
            return
        try:
            data = self._sock.recv(0, "waiting for replies")
        except Timeout:
            return
        except ConnectionClosed as exc:
            self._broken = exc
            return
        if not data:
            self._eof = True
        else:
            self._note(data)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sock.close()
        self._tx_area.release()
        self._rx_area.release()
        self._region.close()


def _peer_pid(sock: SocketStream) -> int | None:
    import socket

    try:
        creds = sock._sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return int(struct.unpack("3i", creds)[0])


def _frame_size(frame: bytes) -> int:
    """The size a §2 header announces (12 + data_len + body_len); -1 if it is not a header."""
    _, _, _, data_len, body_len = HEADER.unpack_from(frame)
    return HEADER_SIZE + data_len + body_len


def _bytes_view(b: Buffer) -> memoryview:
    v = memoryview(b)
    if v.format != "B" or v.ndim != 1:
        v = v.cast("B")
    return v


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def wait_all(streams: Sequence[Any], timeout: float | None) -> list[int]:
    """Wait until every :class:`ShmStream` among ``streams`` has its next frame (or its end of
    stream) ready, for at most ``timeout`` seconds: one spin over all pending ``seq`` words,
    then one ``poll`` over all their sockets (§16.6, the end note). Other streams are skipped;
    the caller's own ``recv`` then finds each reply without waiting. Returns the positions of
    the streams still not ready when ``timeout`` ran out."""
    pending = [s for s in streams if type(s) is ShmStream and not s.ready()]
    if not pending:
        return []
    deadline = None if timeout is None else time.monotonic() + timeout
    clock = time.perf_counter
    lead = pending[0]
    lead._waits += 1
    if (
        lead._spin
        and (min(s._wait_avg for s in pending) < lead._spin * SPIN_STRETCH or not lead._waits & PROBE)
        and (lead._spin_forced or _spare_core())
    ):
        start = clock()
        longest = max(s._wait_avg for s in pending)
        end = start + min(lead._spin * SPIN_STRETCH, max(lead._spin, 1.5 * longest))
        while pending:
            now = clock()
            still = []
            for s in pending:
                if s.ready():
                    s._wait_avg += (now - start - s._wait_avg) * 0.125
                else:
                    still.append(s)
            pending = still
            if not pending or now >= end:
                break
            if _YIELD:
                os.sched_yield()
    while pending:
        for s in pending:
            s._words[s._rx_sleeping] = 1
        fence()
        asleep = [s for s in pending if not s.ready()]
        if not asleep:
            for s in pending:
                s._words[s._rx_sleeping] = 0
            return []
        poller = select.poll()
        for s in asleep:
            poller.register(s.fileno(), select.POLLIN)
        left = _left(deadline)
        try:
            events = poller.poll(None if left is None else left * 1000.0)
        finally:
            for s in pending:
                s._words[s._rx_sleeping] = 0
        readable = {fd for fd, _ in events}
        for s in asleep:
            if s.fileno() in readable:
                s.pump()
        pending = [s for s in pending if not s.ready()]
        if pending and deadline is not None and deadline <= time.monotonic():
            return [i for i, s in enumerate(streams) if any(s is p for p in pending)]
    return []


# -- §16.1: negotiation --------------------------------------------------------------------------


def offer(engine: Session, timeout: float | None, capacity: int = DEFAULT_CAPACITY) -> str | Error | None:
    """Agent side, in state ``shm``: create the region, offer it with its descriptor, read the
    answer. Accepted: the session's stream becomes a :class:`ShmStream` and None is returned;
    refused: the reason (the session goes on over the socket). A fatal ERROR the env side sent
    instead of an answer is returned as is (the caller reports it as the remote error it is)."""
    stream = engine.stream
    if type(stream) is not SocketStream:
        raise ProtocolError(
            ErrorCode.INTERNAL, "shared memory was agreed on a stream that is not a unix socket"
        )
    try:
        region, fd = Region.create(Layout.for_capacities(capacity, capacity))
    except OSError as exc:
        # No region (out of memory, a memfd limit): the state table still wants an offer, so
        # offer nothing (no descriptor); the env side refuses it and both stay on the socket.
        log.warning("! cannot create a shared-memory region (%s): staying on the socket", exc)
        engine.send(ShmOffer(REGION_HEADER_SIZE), "sending the shared-memory offer", timeout)
        reply = engine.receive("waiting for the env side's answer to the shared-memory offer", timeout)
        if type(reply) is Error:
            return reply
        if type(reply) is ShmAnswer and reply.accepted:  # §16.3: no descriptor is refused
            engine.fail(
                ProtocolError(
                    ErrorCode.BAD_FIELD, "the env side accepted an SHM offer that carried no descriptor"
                ),
                "in the answer to the shared-memory offer",
            )
        return f"this side could not create a region: {exc}"
    try:
        try:
            engine.conn.send(ShmOffer(region.size))
            data = b"".join(bytes(b) for b in engine.conn.data_to_send())
            stream.send_fds(data, [fd], timeout, "sending the shared-memory offer")
        finally:
            os.close(fd)
        reply = engine.receive("waiting for the env side's answer to the shared-memory offer", timeout)
    except BaseException:
        region.close()
        raise
    if type(reply) is ShmAnswer and reply.accepted:
        engine.stream = ShmStream(stream, region, Role.AGENT)
        log.info("= shared memory with %s (%d bytes)", stream.peer, region.size)
        return None
    region.close()
    if type(reply) is ShmAnswer:
        log.info("= the env side refused shared memory: %s", reply.reason)
        return reply.reason or "refused"
    if type(reply) is Error:  # a fatal ERROR: the state table lets nothing else through
        return reply
    raise _ended_by(reply)


def answer(engine: Session, timeout: float | None, max_size: int = DEFAULT_MAX_SHM_SIZE) -> str | None:
    """Env side, in state ``shm`` (ENV_INFO sent, both announced ``shm``): read the offer with
    its descriptor, check it (§16.3), answer. Returns None when accepted (the session's stream is
    now a :class:`ShmStream`), else the reason of the refusal (the session goes on over the socket)."""
    stream = engine.stream
    if type(stream) is not SocketStream:
        raise ProtocolError(
            ErrorCode.INTERNAL, "shared memory was agreed on a stream that is not a unix socket"
        )
    conn = engine.conn
    stage = "waiting for the agent side's shared-memory offer"
    fds: list[int] = []
    truncated = False
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            event = conn.next_event()
            if event is not None:
                break
            if conn.eof:
                why = f"the agent side closed the connection {stage}"
                engine.close(why)
                raise ConnectionClosed(why)
            data, got, cut = stream.recv_fds(MAX_FDS, _left(deadline), stage)
            fds.extend(got)
            truncated = truncated or cut
            if data:
                conn.receive_data(data)
            else:
                conn.receive_eof()
    except ProtocolError as exc:
        _close_all(fds)
        engine.fail(exc, stage)
    except (Timeout, ConnectionClosed) as exc:
        _close_all(fds)
        engine.close(f"the session ended {stage}: {exc}")
        raise
    except BaseException:
        _close_all(fds)
        raise
    if type(event) is not ShmOffer:
        _close_all(fds)
        engine.close("the agent side ended the session")
        raise _ended_by(event)
    result = check_offer(fds, truncated, event.size, max_size)
    if isinstance(result, str):
        log.info("= refusing shared memory from %s: %s", stream.peer, result)
        engine.send(ShmAnswer(False, result), "answering the shared-memory offer", timeout)
        return result
    try:
        engine.send(ShmAnswer(True, None), "answering the shared-memory offer", timeout)
    except BaseException:
        result.close()
        raise
    engine.stream = ShmStream(stream, result, Role.ENV)
    log.info("= shared memory with %s (%d bytes)", stream.peer, result.size)
    return None


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _ended_by(message: Any) -> ConnectionClosed:
    if type(message) is Error:
        try:
            name = ErrorCode(message.code).name
        except ValueError:
            name = f"error code {message.code}"
        return ConnectionClosed(
            f"the peer ended the session during the shared-memory offer: {name}: {message.message}"
        )
    return ConnectionClosed(f"unexpected {message!r} during the shared-memory offer")
