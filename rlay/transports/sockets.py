"""``tcp://HOST:PORT`` and ``unix:///path``: stream sockets (the contract is in ``base.py``).

Timeouts are kernel timeouts (``SO_RCVTIMEO`` / ``SO_SNDTIMEO``) on a blocking socket, set only
when they change: a steady-state step costs one ``recv`` and one ``sendmsg`` system call, where a
Python-level socket timeout would add a ``poll`` before each (issue #8's measurement: 4 → 2).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rlay.errors import ConnectionClosed, Timeout, UsageError
from rlay.transports.base import Address, Transport, format_host_port, parse_host_port, register

if TYPE_CHECKING:
    from rlay.protocol.codec import Buffer

RECV_SIZE = 256 * 1024  # one read takes a whole typical frame (an 84x84x3 image is 21 KiB)
_WOULD_BLOCK = (BlockingIOError, TimeoutError)  # EAGAIN from a kernel timeout, or MSG_DONTWAIT


def _timeval(seconds: float | None) -> bytes:
    """``struct timeval`` for SO_RCVTIMEO/SO_SNDTIMEO; 0 means "wait forever" to the kernel."""
    if seconds is None:
        return struct.pack("@ll", 0, 0)
    whole = int(seconds)
    micros = int((seconds - whole) * 1e6)
    if whole == 0 and micros == 0:
        micros = 1  # a positive timeout that rounds to zero must not become "forever"
    return struct.pack("@ll", whole, micros)


#: TCP keep-alive (spec §17.3): seconds idle before the first probe, seconds between probes, and
#: probes unanswered before the kernel declares the connection dead. A vanished host (power off,
#: network gone) is then ConnectionClosed after about 30 + 6 x 10 = 90 s of silence, even with
#: timeout=None; a process paused in a debugger (SIGSTOP) is not, since its kernel still answers.
#: ``RLAY_KEEPALIVE=IDLE,INTERVAL,COUNT`` changes it; ``RLAY_KEEPALIVE=0`` turns it off.
KEEPALIVE = (30, 10, 6)


def keepalive(sock: socket.socket) -> None:
    setting = os.environ.get("RLAY_KEEPALIVE", "").strip()
    values = KEEPALIVE
    if setting:
        try:
            parts = tuple(int(p) for p in setting.split(","))
        except ValueError:
            parts = ()
        if parts == (0,):
            return
        if len(parts) != 3 or min(parts) < 1:
            raise UsageError(f"RLAY_KEEPALIVE={setting!r}: expected IDLE,INTERVAL,COUNT (e.g. 30,10,6) or 0")
        values = parts  # type: ignore[assignment]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle, interval, count = values
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
        option = getattr(socket, name, None)  # Linux, recent macOS and Windows have all three
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


class SocketStream:
    """A connected stream socket (tcp or unix) honouring the transport contract."""

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self._sock = sock
        self.peer = peer
        self._closed = False
        self._rcv: float | None = None  # the kernel receive timeout now set (None: forever)
        self._snd: float | None = None
        sock.settimeout(None)  # blocking; the kernel times out
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            keepalive(sock)

    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def family(self) -> int:
        """``AF_UNIX``, ``AF_INET`` or ``AF_INET6`` (shared memory is offered on ``AF_UNIX`` only)."""
        return self._sock.family

    def send_fds(self, data: bytes, fds: Sequence[int], timeout: float | None, stage: str) -> None:
        """Send ``data`` with ``fds`` as ``SCM_RIGHTS`` data on its first byte (unix sockets, §16.1)."""
        if self._closed:
            raise ConnectionClosed(f"{stage}: the connection was closed locally")
        try:
            if timeout != self._snd:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(timeout))
                self._snd = timeout
            sent = socket.send_fds(self._sock, [data], list(fds))
            if sent < len(data):
                self._sock.sendall(data[sent:])
        except _WOULD_BLOCK:
            raise Timeout(f"{stage}: the peer did not read", timeout or 0.0) from None
        except OSError as exc:
            raise self._gone(stage, exc) from None

    def recv_fds(
        self, max_fds: int, timeout: float | None = None, stage: str = "receiving"
    ) -> tuple[bytes, list[int], bool]:
        """Like :meth:`recv`, also returning the descriptors that came with the bytes (at most
        ``max_fds``; the third value is true if the kernel dropped more for lack of room)."""
        if self._closed:
            raise ConnectionClosed(f"{stage}: the connection was closed locally")
        sock = self._sock
        try:
            if timeout != self._rcv:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
                self._rcv = timeout
            data, fds, flags, _ = socket.recv_fds(sock, RECV_SIZE, max_fds, socket.MSG_CMSG_CLOEXEC)
        except _WOULD_BLOCK:
            raise Timeout(stage, timeout or 0.0) from None
        except OSError as exc:
            raise self._gone(stage, exc) from None
        return data, fds, bool(flags & socket.MSG_CTRUNC)

    def _gone(self, stage: str, exc: OSError) -> ConnectionClosed:
        if self._closed:
            return ConnectionClosed(f"{stage}: the connection was closed locally")
        return ConnectionClosed(f"{stage}: the connection to {self.peer} broke ({exc.strerror or exc})")

    def send(self, buffers: Sequence[Buffer], timeout: float | None = None, stage: str = "sending") -> None:
        if self._closed:
            raise ConnectionClosed(f"{stage}: the connection was closed locally")
        sock = self._sock
        try:
            if timeout != self._snd:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(timeout))
                self._snd = timeout
            if len(buffers) == 1:
                sock.sendall(buffers[0])
                return
            sent = sock.sendmsg(buffers)  # a gather write: tensors go out without a copy
            total = sum(map(len, buffers))  # type: ignore[arg-type]  # bytes or byte memoryviews
            if sent < total:  # rare: a big frame and a full socket buffer
                sock.sendall(memoryview(b"".join(buffers))[sent:])
        except _WOULD_BLOCK:
            raise Timeout(f"{stage}: the peer did not read", timeout or 0.0) from None
        except OSError as exc:
            raise self._gone(stage, exc) from None

    def recv(self, timeout: float | None = None, stage: str = "receiving") -> bytes:
        if self._closed:
            raise ConnectionClosed(f"{stage}: the connection was closed locally")
        sock = self._sock
        try:
            if timeout == 0:
                return sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
            if timeout != self._rcv:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
                self._rcv = timeout
            return sock.recv(RECV_SIZE)
        except _WOULD_BLOCK:
            raise Timeout(stage, timeout or 0.0) from None
        except OSError as exc:
            raise self._gone(stage, exc) from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


class SocketListener:
    """A listening stream socket. ``address`` is the address actually bound (port 0 resolved)."""

    def __init__(self, addr: Address, backlog: int = 64) -> None:
        self._unlink: str | None = None
        if addr.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                _bind_unix(sock, addr.path)
            except BaseException:
                sock.close()
                raise
            self._unlink = addr.path
            # Owner-only whatever the umask. Done before listen(): until then a connect() is
            # refused, so nobody gets in through the window between bind and chmod.
            os.chmod(addr.path, 0o600)
            self.address = addr
        else:
            family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((addr.host, addr.port))
            except OSError as exc:
                sock.close()
                raise UsageError(f"cannot listen on {addr}: {exc.strerror or exc}") from None
            self.address = Address("tcp", host=addr.host, port=sock.getsockname()[1])
        sock.listen(backlog)
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def accept(self, timeout: float | None) -> SocketStream:
        """Wait for one peer; :class:`Timeout` if none dials in time."""
        try:
            self._sock.settimeout(timeout)
            sock, peer = self._sock.accept()
        except TimeoutError:
            raise Timeout(f"waiting for an env side to connect to {self.address}", timeout or 0) from None
        except OSError:
            if self._sock.fileno() < 0:
                raise ConnectionClosed(f"the listener on {self.address} was closed") from None
            raise
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else f"a peer on {self.address}"
        return SocketStream(sock, where)

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._sock.close()
        if self._unlink is not None:
            try:
                os.unlink(self._unlink)
            except FileNotFoundError:
                pass
            self._unlink = None


def _bind_unix(sock: socket.socket, path: str) -> None:
    try:
        sock.bind(path)
        return
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise UsageError(f"cannot listen on unix://{path}: {exc.strerror or exc}") from None
    # The path exists. A socket file nobody listens on is stale (a crashed run): replace it.
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = 0
    if mode and not stat.S_ISSOCK(mode):
        raise UsageError(f"cannot listen on unix://{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        sock.bind(path)
        return
    finally:
        probe.close()
    raise UsageError(f"cannot listen on unix://{path}: another process is listening there")


def _dial(addr: Address, timeout: float | None) -> SocketStream:
    if addr.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: str | tuple[str, int] = addr.path
    else:
        family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        target = (addr.host, addr.port)
    sock.settimeout(timeout)
    try:
        sock.connect(target)
    except TimeoutError:
        sock.close()
        raise Timeout(f"connecting to {addr}", timeout or 0) from None
    except OSError as exc:
        sock.close()
        raise ConnectionClosed(
            f"cannot connect to {addr}: {exc.strerror or exc} (is the env side running and listening there?)"
        ) from None
    return SocketStream(sock, str(addr))


def _parse_tcp(rest: str, address: str) -> Address:
    host, port, path = parse_host_port(rest, address, "tcp")
    if path:
        raise UsageError(f"address {address!r}: a tcp address has no path; expected 'tcp://HOST:PORT'")
    return Address("tcp", host=host, port=port)


def _parse_unix(rest: str, address: str) -> Address:
    if not rest:
        raise UsageError(f"address {address!r} has no path; expected 'unix:///path/to.sock'")
    return Address("unix", path=rest)


register(Transport("tcp", _parse_tcp, format_host_port, SocketListener, _dial, "tcp://HOST:PORT"))
register(Transport("unix", _parse_unix, lambda a: f"unix://{a.path}", SocketListener, _dial, "unix:///path"))
