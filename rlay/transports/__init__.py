"""Transports move bytes and nothing else (design: layer 3).

An address string picks the transport: ``tcp://HOST:PORT`` or ``unix:///path/to.sock``.

Contract of a :class:`Stream` (every transport honours it; ``tests/test_transports.py`` checks
each with the same battery):

- ``send(buffers)`` writes all the buffers, in order, or raises: :class:`ConnectionClosed` if the
  peer is gone, :class:`Timeout` if the peer stopped reading for longer than the timeout.
- ``recv()`` returns at least one byte, or ``b""`` if and only if the peer ended the stream
  (orderly close). A reset connection raises :class:`ConnectionClosed`; silence longer than the
  timeout raises :class:`Timeout` (never returns ``None``).
- ``close()`` is idempotent; afterwards every call raises :class:`ConnectionClosed`.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rlay.errors import ConnectionClosed, Timeout, UsageError

if TYPE_CHECKING:
    from rlay.protocol.codec import Buffer

RECV_SIZE = 256 * 1024  # one read takes a whole typical frame (an 84x84x3 image is 21 KiB)


@dataclass(frozen=True)
class Address:
    scheme: str  # "tcp" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def parse_address(address: str) -> Address:
    """Parse ``tcp://HOST:PORT`` or ``unix:///path``; raise :class:`UsageError` naming the problem."""
    if not isinstance(address, str):
        raise UsageError(f"an address must be a str like 'tcp://127.0.0.1:0', got {address!r}")
    scheme, sep, rest = address.partition("://")
    if not sep:
        raise UsageError(f"address {address!r} has no scheme; expected 'tcp://HOST:PORT' or 'unix:///path'")
    if scheme == "unix":
        if not rest:
            raise UsageError(f"address {address!r} has no path; expected 'unix:///path/to.sock'")
        return Address("unix", path=rest)
    if scheme == "tcp":
        if rest.startswith("["):
            host, close, port_text = rest[1:].partition("]")
            if not close or not port_text.startswith(":"):
                raise UsageError(f"address {address!r}: expected 'tcp://[IPV6]:PORT'")
            port_text = port_text[1:]
        else:
            host, colon, port_text = rest.rpartition(":")
            if not colon:
                raise UsageError(f"address {address!r} has no port; expected 'tcp://HOST:PORT'")
        try:
            port = int(port_text)
        except ValueError:
            raise UsageError(f"address {address!r}: port {port_text!r} is not a number") from None
        if not 0 <= port <= 65535:
            raise UsageError(f"address {address!r}: port {port} is outside 0..65535")
        return Address("tcp", host=host or "127.0.0.1", port=port)
    raise UsageError(f"address {address!r}: unknown scheme {scheme!r}; rlay speaks 'tcp' and 'unix'")


class Stream:
    """A connected socket with the contract in the module docstring."""

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self._sock = sock
        self.peer = peer
        self._timeout: float | None = None
        sock.settimeout(None)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def fileno(self) -> int:
        return self._sock.fileno()

    def set_timeout(self, seconds: float | None) -> None:
        if seconds != self._timeout:
            if self._sock.fileno() < 0:
                raise ConnectionClosed("the connection was closed locally")
            self._sock.settimeout(seconds)
            self._timeout = seconds

    def send(self, buffers: list[Buffer], stage: str = "sending") -> None:
        sock = self._sock
        try:
            if len(buffers) == 1:
                sock.sendall(buffers[0])
                return
            sent = sock.sendmsg(buffers)  # a gather write: tensors go out without a copy
            total = sum(map(len, buffers))  # type: ignore[arg-type]  # bytes or byte memoryviews
            if sent < total:  # rare: a big frame and a full socket buffer
                sock.sendall(memoryview(b"".join(buffers))[sent:])
        except TimeoutError:
            raise Timeout(f"{stage}: the peer did not read", self._timeout or 0.0) from None
        except OSError as exc:
            if sock.fileno() < 0:
                raise ConnectionClosed(f"{stage}: the connection was closed locally") from None
            raise ConnectionClosed(f"{stage}: the connection to {self.peer} broke ({exc})") from None

    def recv(self, stage: str = "receiving") -> bytes:
        sock = self._sock
        try:
            return sock.recv(RECV_SIZE)
        except TimeoutError:
            raise Timeout(stage, self._timeout or 0.0) from None
        except OSError as exc:
            if sock.fileno() < 0:
                raise ConnectionClosed(f"{stage}: the connection was closed locally") from None
            raise ConnectionClosed(f"{stage}: the connection to {self.peer} broke ({exc})") from None

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


class Listener:
    """A listening socket. ``address`` is the address actually bound (port 0 resolved)."""

    def __init__(self, address: str | Address, backlog: int = 64) -> None:
        addr = parse_address(address) if isinstance(address, str) else address
        self._unlink: str | None = None
        if addr.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                _bind_unix(sock, addr.path)
            except BaseException:
                sock.close()
                raise
            self._unlink = addr.path
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

    def accept(self, timeout: float | None) -> Stream:
        """Wait for one peer; :class:`Timeout` if none dials in time."""
        self._sock.settimeout(timeout)
        try:
            sock, peer = self._sock.accept()
        except TimeoutError:
            raise Timeout(f"waiting for an env side to connect to {self.address}", timeout or 0) from None
        except OSError:
            if self._sock.fileno() < 0:
                raise ConnectionClosed(f"the listener on {self.address} was closed") from None
            raise
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else f"a peer on {self.address}"
        return Stream(sock, where)

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


def dial(address: str | Address, timeout: float | None) -> Stream:
    """Connect to a listener; :class:`Timeout` or :class:`ConnectionClosed` say why it failed."""
    addr = parse_address(address) if isinstance(address, str) else address
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
    return Stream(sock, str(addr))
