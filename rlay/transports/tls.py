"""``tls://HOST:PORT``: rlay over TLS on TCP, for sessions that cross machines (spec §17.1).

The rlay bytes are exactly those of ``tcp://``; TLS wraps the stream. Certificates are checked
by default: a dialler verifies the listener's certificate against a CA (the system's trust store
unless told otherwise) and its name against the host dialled. Options, each an address query
parameter or else an environment variable (the parameter wins)::

    tls://gpu-box:5555?ca=/etc/rlay/ca.pem            # dial: trust this CA (RLAY_TLS_CA)
    tls://0.0.0.0:5555?cert=srv.pem&key=srv.key      # listen: this certificate (RLAY_TLS_CERT/KEY)
    tls://10.0.0.7:5555?server_name=gpu-box          # dial: the name to check (RLAY_TLS_SERVER_NAME)

A listener needs ``cert`` and ``key``; a dialler uses ``ca`` and ``server_name``. Nothing turns
verification off: for a self-signed certificate, give that certificate as ``ca``. TLS protects
the frames; who may drive the env is the shared token's job (§7.1), so use both across machines.

Mismatches are named on both ends (:class:`~rlay.errors.TlsMismatch` on the TLS end):

- a plain rlay peer dials a TLS listener: its first bytes are ``RL`` where a TLS ClientHello
  (``16 03``) was expected; the listener answers with a plain fatal ``BAD_MAGIC`` ERROR saying
  "this listener speaks TLS; dial tls://…" (so the plain peer hears why) and hangs up;
- a TLS dialler reaches a plain listener: the listener's plain rlay bytes (``RL``) arrive where a
  TLS ServerHello was expected (and the plain listener reports "the peer speaks TLS", §2).

The TLS handshake of an accepted connection runs on the stream's first ``send`` or ``recv`` (so
``accept`` never waits on a slow peer), bounded by :data:`HANDSHAKE_TIMEOUT` whatever the caller's
timeout. TLS runs over memory BIOs on top of a :class:`~rlay.transports.sockets.SocketStream`, so
timeouts, keep-alive and errors are the tcp transport's.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

from rlay.errors import ConnectionClosed, Timeout, TlsCertificateError, TlsError, TlsMismatch, UsageError
from rlay.protocol.codec import Encoder
from rlay.protocol.framing import pack_header
from rlay.protocol.messages import Error
from rlay.protocol.wire import ErrorCode, Kind
from rlay.transports.base import Address, Transport, format_host_port, parse_host_port, register
from rlay.transports.sockets import RECV_SIZE, SocketListener, SocketStream
from rlay.transports.sockets import _dial as _dial_tcp

if TYPE_CHECKING:
    from rlay.protocol.codec import Buffer

#: Seconds the TLS handshake of one connection may take, from its first send/recv (accepted) or
#: from the dial: a peer that connects and stays silent cannot hold a listener's thread longer.
HANDSHAKE_TIMEOUT = 30.0

#: Address query parameter -> environment variable read when it is absent.
OPTIONS = {
    "ca": "RLAY_TLS_CA",
    "cert": "RLAY_TLS_CERT",
    "key": "RLAY_TLS_KEY",
    "server_name": "RLAY_TLS_SERVER_NAME",
}

_TLS_RECORD = (b"\x16\x03", b"\x15\x03")  # a handshake or alert record, TLS 1.0-1.3
_RL = b"RL"


def _options(addr: Address) -> dict[str, str]:
    given = dict(parse_qsl(addr.path.lstrip("?"), keep_blank_values=True))
    return {name: given.get(name) or os.environ.get(var, "") for name, var in OPTIONS.items()}


def _error_frame(message: str) -> bytes:
    """A plain fatal ``BAD_MAGIC`` ERROR frame (§2, §11): what a plain rlay peer can read."""
    body, _, data_len = Encoder().encode(Error(int(ErrorCode.BAD_MAGIC), message, True, None, None).to_body())
    return pack_header(Kind.ERROR, data_len, len(body)) + bytes(body)


def client_context(opts: dict[str, str]) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=opts["ca"] or None)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"tls: cannot load the CA file {opts['ca']!r} (ca= / RLAY_TLS_CA): {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def server_context(opts: dict[str, str], where: str) -> ssl.SSLContext:
    if not opts["cert"]:
        raise UsageError(
            f"cannot listen on {where}: a TLS listener needs a certificate and its key; give "
            "?cert=PATH&key=PATH in the address, or set RLAY_TLS_CERT and RLAY_TLS_KEY"
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # No TLS 1.3 session tickets: nothing is resumed, and a dialler that only sends would leave
    # them unread, so its close() would reset the connection (RST) over data still in flight.
    ctx.num_tickets = 0
    try:
        ctx.load_cert_chain(opts["cert"], opts["key"] or None)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(
            f"cannot listen on {where}: cannot load the certificate {opts['cert']!r} / key "
            f"{opts['key']!r} (cert=, key= / RLAY_TLS_CERT, RLAY_TLS_KEY): {exc}"
        ) from None
    return ctx


class TlsStream:
    """One TLS connection as an rlay stream (the contract in ``base.py``)."""

    def __init__(
        self, raw: SocketStream, ctx: ssl.SSLContext, *, server: bool, server_name: str | None, peer: str
    ) -> None:
        self._raw = raw
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls = ctx.wrap_bio(self._in, self._out, server_side=server, server_hostname=server_name)
        self._server = server
        self._handshaken = False
        self._first = True  # no raw byte received yet
        self._deadline: float | None = None
        self._closed = False
        self.peer = peer
        self._done = threading.Event()  # the handshake ended (``_failure`` says how)
        self._failure: BaseException | None = None
        if server:  # accept() must not wait on a slow peer: the handshake runs beside it
            threading.Thread(target=self._handshake_beside, name="rlay-tls-handshake", daemon=True).start()

    def _handshake_beside(self) -> None:
        try:
            self.handshake(None, "accepting a connection")
        except BaseException as exc:  # kept for the first send/recv, which raises it
            self._failure = exc

    def _ready(self, timeout: float | None, stage: str) -> None:
        """Wait for the handshake of an accepted stream (a dialled one finished it in dial)."""
        if not self._done.wait(timeout):
            raise Timeout(f"{stage} (waiting for the TLS handshake with {self.peer})", timeout or 0.0)
        if self._failure is not None:
            raise self._failure

    def fileno(self) -> int:
        return self._raw.fileno()

    # -- the TLS handshake -----------------------------------------------------------------------

    def handshake(self, timeout: float | None, stage: str) -> None:
        """Run the TLS handshake (once), within ``timeout`` and :data:`HANDSHAKE_TIMEOUT`."""
        try:
            self._handshake(timeout, stage)
        except BaseException as exc:
            self._failure = exc
            self._done.set()
            raise

    def _handshake(self, timeout: float | None, stage: str) -> None:
        if self._deadline is None:
            self._deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        limit = time.monotonic() + timeout if timeout is not None else None
        stage = f"{stage} (TLS handshake with {self.peer})"
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._push(timeout, stage)
                now = time.monotonic()
                own_left = self._deadline - now
                if limit is not None and limit - now < own_left:
                    wait, own = max(0.0, limit - now), False
                else:
                    wait, own = max(0.0, own_left), True
                try:
                    data = self._raw.recv(wait, stage)
                except Timeout:
                    if own:
                        self._abort()
                        raise TlsError(f"{stage}: no TLS handshake within {HANDSHAKE_TIMEOUT:g} s") from None
                    raise Timeout(stage, timeout or 0.0) from None
                except ConnectionClosed as exc:
                    self._abort()
                    raise TlsError(str(exc)) from None
                if not data:
                    self._abort()
                    raise self._closed_during_handshake(stage) from None
                self._look(data, stage)
                self._in.write(data)
            except ssl.SSLCertVerificationError as exc:
                self._push_quietly()
                self._abort()
                raise TlsCertificateError(
                    f"{stage}: the certificate of {self.peer} was not accepted: {exc.verify_message} "
                    "(check ca= / RLAY_TLS_CA, and server_name= / RLAY_TLS_SERVER_NAME)"
                ) from None
            except ssl.SSLError as exc:
                self._push_quietly()
                self._abort()
                raise TlsError(f"{stage}: TLS failed: {exc.reason or exc}") from None
        self._push(timeout, stage)
        self._handshaken = True
        self._done.set()

    def _look(self, data: bytes, stage: str) -> None:
        """The peer's first raw bytes: plain rlay (``RL``) where TLS was expected is a mismatch."""
        if not self._first:
            return
        self._first = False
        if data[:2] == _RL[: len(data[:2])] and not data.startswith(_TLS_RECORD):
            if self._server:
                try:  # tell the plain peer why, in words it can read, then hang up
                    self._raw.send(
                        [_error_frame("this listener speaks TLS; dial it with tls:// (not tcp://)")], 1.0
                    )
                except (ConnectionClosed, Timeout):
                    pass
                self._abort()
                raise TlsMismatch(
                    f"{stage}: the peer is not speaking TLS: it sent plain rlay bytes (RL); it must dial "
                    "tls:// to reach this listener"
                )
            self._abort()
            raise TlsMismatch(
                f"{stage}: the peer is not speaking TLS: {self.peer} answered with plain rlay bytes "
                "(RL); it listens on tcp://, so dial tcp:// or make it listen on tls://"
            )

    def _closed_during_handshake(self, stage: str) -> ConnectionClosed:
        if self._first and not self._server:
            return TlsError(f"{stage}: {self.peer} closed the connection before the TLS handshake")
        return TlsError(f"{stage}: {self.peer} closed the connection during the TLS handshake")

    # -- moving bytes ----------------------------------------------------------------------------

    def _push(self, timeout: float | None, stage: str) -> None:
        if self._out.pending:
            self._raw.send([self._out.read()], timeout, stage)

    def _push_quietly(self) -> None:
        try:
            self._push(0.5, "sending a TLS alert")
        except (ConnectionClosed, Timeout):
            pass

    def send(self, buffers: Sequence[Buffer], timeout: float | None = None, stage: str = "sending") -> None:
        if self._closed:
            raise ConnectionClosed(f"{stage}: the connection was closed locally")
        if not self._handshaken:
            self._ready(timeout, stage)
        try:
            for b in buffers:
                view = memoryview(b).cast("B")
                while view:
                    n = self._tls.write(view)
                    view = view[n:]
        except ssl.SSLError as exc:
            self._abort()
            raise ConnectionClosed(f"{stage}: TLS failed: {exc.reason or exc}") from None
        self._push(timeout, stage)

    def recv(self, timeout: float | None = None, stage: str = "receiving") -> bytes:
        if self._closed:
            raise ConnectionClosed(f"{stage}: the connection was closed locally")
        if not self._handshaken:
            self._ready(timeout, stage)
        wait = timeout  # the first wait is the whole timeout (as the tcp transport's)
        deadline = None if not timeout else time.monotonic() + timeout
        while True:
            try:
                data = self._tls.read(RECV_SIZE)
                if self._out.pending:  # e.g. a TLS 1.3 key update answered
                    self._push(timeout, stage)
                return data  # b"" only after the peer's close_notify: the end of the stream
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            except ssl.SSLError as exc:
                self._abort()
                raise ConnectionClosed(f"{stage}: TLS failed: {exc.reason or exc}") from None
            try:
                raw = self._raw.recv(wait, stage)
            except Timeout:
                raise Timeout(stage, timeout or 0.0) from None
            if not raw:
                return b""  # the peer hung up without close_notify: rlay's framing sees truncation
            self._in.write(raw)
            if deadline is not None:
                wait = max(0.0, deadline - time.monotonic())

    def _abort(self) -> None:
        """Drop the connection after a failure (the failure, not "closed locally", is what later
        calls report: ``_failure`` during the handshake, the raw stream's error after it)."""
        self._drain()
        self._raw.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._handshaken and self._done.is_set():
            try:  # close_notify, best effort: a peer gone or stuck must not hold this up
                self._tls.unwrap()
            except ssl.SSLError:
                pass
            self._push_quietly()
        self._drain()
        self._raw.close()

    def _drain(self) -> None:
        """Read what already arrived (a close_notify, an alert): closing a socket with unread
        bytes sends a reset, which can destroy data the peer has not read yet."""
        try:
            for _ in range(64):
                if not self._raw.recv(0, "closing"):
                    return
        except (ConnectionClosed, Timeout):
            pass


class TlsListener:
    """A TCP listener whose accepted streams speak TLS (handshake on first use)."""

    def __init__(self, addr: Address) -> None:
        opts = _options(addr)
        self._ctx = server_context(opts, format_host_port(addr))
        self._tcp = SocketListener(Address("tcp", host=addr.host, port=addr.port))
        bound = self._tcp.address
        # The address a dialler uses: the dial options given (ca, server_name), not the listener's
        # own (its cert and key).
        dial_opts = [(k, v) for k, v in parse_qsl(addr.path.lstrip("?")) if k in ("ca", "server_name")]
        self.address = Address("tls", host=bound.host, port=bound.port, path=_query(dial_opts))

    def fileno(self) -> int:
        return self._tcp.fileno()

    def accept(self, timeout: float | None) -> TlsStream:
        try:
            raw = self._tcp.accept(timeout)
        except Timeout:
            raise Timeout(f"waiting for an env side to connect to {self.address}", timeout or 0) from None
        except ConnectionClosed:
            raise ConnectionClosed(f"the listener on {self.address} was closed") from None
        return TlsStream(raw, self._ctx, server=True, server_name=None, peer=f"{raw.peer} over tls")

    def close(self) -> None:
        self._tcp.close()


def _dial(addr: Address, timeout: float | None) -> TlsStream:
    opts = _options(addr)
    ctx = client_context(opts)
    where = format_host_port(Address("tls", host=addr.host, port=addr.port))
    started = time.monotonic()
    raw = _dial_tcp(Address("tcp", host=addr.host, port=addr.port), timeout)
    stream = TlsStream(raw, ctx, server=False, server_name=opts["server_name"] or addr.host, peer=where)
    left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
    stream.handshake(left, f"connecting to {where}")
    return stream


def _parse(rest: str, address: str) -> Address:
    rest, _, query = rest.partition("?")
    host, port, path = parse_host_port(rest, address, "tls")
    if path:
        raise UsageError(f"address {address!r}: a tls address has no path; expected 'tls://HOST:PORT'")
    pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False) if query else []
    for name, _ in pairs:
        if name not in OPTIONS:
            raise UsageError(f"address {address!r}: unknown TLS option {name!r}; known: {', '.join(OPTIONS)}")
    return Address("tls", host=host, port=port, path=_query(pairs))


def _query(pairs: list[tuple[str, str]]) -> str:
    return "?" + urlencode(pairs, safe="/") if pairs else ""


def _format(addr: Address) -> str:
    return format_host_port(Address("tls", host=addr.host, port=addr.port)) + addr.path


register(Transport("tls", _parse, _format, TlsListener, _dial, "tls://HOST:PORT"))

__all__ = ["HANDSHAKE_TIMEOUT", "OPTIONS", "TlsListener", "TlsStream"]
