"""The transport contract (design: layer 3) and the table of schemes.

A transport moves bytes and nothing else. It is one module that registers a :class:`Transport`
row under its scheme (``tcp``, ``unix``, ``ws`` …); an address string picks the row. Every
transport passes the same battery, :mod:`rlay.testing.transports`.

A :class:`Stream` (one connection):

- ``send(buffers, timeout)`` writes all the buffers, in order (a gather write where it can), or
  raises :class:`ConnectionClosed` (the peer is gone, or this side closed the stream) or
  :class:`Timeout` (the peer stopped reading for longer than ``timeout`` seconds; ``None`` waits
  forever).
- ``recv(timeout)`` returns at least one byte, or ``b""`` if and only if the peer ended the stream
  in order. A broken connection raises :class:`ConnectionClosed`; nothing within ``timeout``
  seconds raises :class:`Timeout` (never returns ``None``). ``timeout=0`` never blocks.
  Only the transport knows how to wait: callers never select on a file descriptor.
- ``close()`` is idempotent; afterwards every call raises :class:`ConnectionClosed`.
- ``peer`` names the other end for messages.

Steady state costs one system call per ``send`` and one per ``recv`` where the transport allows
it (socket timeouts are kernel timeouts, set only when they change): the step's hot path.

A :class:`Listener`: ``address`` (the address actually bound, port 0 resolved), ``accept(timeout)``
returning a :class:`Stream` or raising :class:`Timeout`, ``close()`` (idempotent; removes what it
created, such as a unix socket file).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rlay.errors import UsageError, clip

if TYPE_CHECKING:
    from rlay.protocol.codec import Buffer


class Stream(Protocol):
    peer: str

    def send(
        self, buffers: Sequence[Buffer], timeout: float | None = None, stage: str = "sending"
    ) -> None: ...

    def recv(self, timeout: float | None = None, stage: str = "receiving") -> bytes: ...

    def close(self) -> None: ...


class Listener(Protocol):
    address: Address

    def accept(self, timeout: float | None) -> Stream: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Address:
    """A parsed address. ``host``/``port`` for network schemes, ``path`` for unix sockets (and
    the resource path of ``ws://``)."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        return SCHEMES[self.scheme].format(self) if self.scheme in SCHEMES else f"{self.scheme}://?"


@dataclass(frozen=True)
class Transport:
    """One row of the scheme table: how to parse, print, listen on and dial an address."""

    scheme: str
    parse: Callable[[str, str], Address]  # (rest after "scheme://", the whole text) -> Address
    format: Callable[[Address], str]
    listen: Callable[[Address], Listener]
    dial: Callable[[Address, float | None], Stream]
    example: str  # shown in error messages


#: scheme -> Transport. A new transport is one module that calls :func:`register`.
SCHEMES: dict[str, Transport] = {}


def register(transport: Transport) -> None:
    SCHEMES[transport.scheme] = transport


def parse_address(address: str | Address) -> Address:
    """Parse ``SCHEME://…`` by the scheme table; raise :class:`UsageError` naming the problem."""
    if isinstance(address, Address):
        return address
    if not isinstance(address, str):
        raise UsageError(f"an address must be a str like 'tcp://127.0.0.1:0', got {clip(address, 80)}")
    scheme, sep, rest = address.partition("://")
    examples = " or ".join(repr(t.example) for t in SCHEMES.values())
    if not sep:
        raise UsageError(f"address {address!r} has no scheme; expected {examples}")
    transport = SCHEMES.get(scheme)
    if transport is None:
        raise UsageError(
            f"address {address!r}: unknown scheme {scheme!r}; rlay speaks {', '.join(map(repr, SCHEMES))}"
        )
    return transport.parse(rest, address)


def listen(address: str | Address) -> Listener:
    """Listen at ``address`` (port 0: the OS picks; the listener's ``address`` says which)."""
    addr = parse_address(address)
    return SCHEMES[addr.scheme].listen(addr)


def dial(address: str | Address, timeout: float | None) -> Stream:
    """Connect to a listener; :class:`Timeout` or :class:`ConnectionClosed` say why it failed."""
    addr = parse_address(address)
    return SCHEMES[addr.scheme].dial(addr, timeout)


def parse_host_port(rest: str, address: str, scheme: str) -> tuple[str, int, str]:
    """``HOST:PORT[/path]`` (``[IPV6]:PORT`` too) for network schemes; the host defaults to loopback."""
    rest, slash, path = rest.partition("/")
    if rest.startswith("["):
        host, close, port_text = rest[1:].partition("]")
        if not close or not port_text.startswith(":"):
            raise UsageError(f"address {address!r}: expected '{scheme}://[IPV6]:PORT'")
        port_text = port_text[1:]
    else:
        host, colon, port_text = rest.rpartition(":")
        if not colon:
            raise UsageError(f"address {address!r} has no port; expected '{scheme}://HOST:PORT'")
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"address {address!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"address {address!r}: port {port} is outside 0..65535")
    return host or "127.0.0.1", port, slash + path


def format_host_port(addr: Address) -> str:
    host = f"[{addr.host}]" if ":" in addr.host else addr.host
    return f"{addr.scheme}://{host}:{addr.port}{addr.path}"
