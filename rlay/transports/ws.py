"""``ws://HOST:PORT/path``: rlay over WebSocket, for env sides in a browser (which can only dial)
and Node programs. Each rlay frame travels as one binary WebSocket message (spec §1).

The handshake is the ``websockets`` package's (an optional dependency: ``pip install 'rlay[ws]'``).
A listener binds loopback unless told otherwise and answers, before any rlay byte:

- a request whose ``Origin`` header is not allowed: 403, naming the origin and the allow-list.
  A page served from a loopback address (``http://127.0.0.1:*``, ``http://localhost:*``,
  ``http://[::1]:*``) and a client that sends no ``Origin`` (Node, Python) are allowed by default;
  ``rlay.transports.ws.ALLOWED_ORIGINS`` (or ``RLAY_WS_ORIGINS``, comma-separated) adds others;
- a request for another path: 404, naming the path the listener serves;
- a plain HTTP request (no WebSocket upgrade): 426, saying this is an rlay WebSocket endpoint.

No keep-alive pings: a paused game or debugger must not be declared dead (a killed browser
closes its TCP connection, which is noticed at once).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import threading
from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from rlay.errors import ConnectionClosed, Timeout, UsageError
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE, HEADER, HEADER_SIZE
from rlay.transports.base import Address, Transport, format_host_port, parse_host_port, register

if TYPE_CHECKING:
    from rlay.protocol.codec import Buffer

#: Origins a dialling page may have besides loopback ones (``scheme://host:port``).
ALLOWED_ORIGINS: list[str] = []
_LOOPBACK_ORIGIN = re.compile(r"^https?://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$")
#: The largest message accepted: a whole frame of the default maximum size.
MAX_MESSAGE = DEFAULT_MAX_FRAME_SIZE + HEADER_SIZE


def _websockets() -> Any:
    try:
        import websockets.sync.client
        import websockets.sync.server
    except ImportError:
        raise UsageError("ws:// addresses need the websockets package: pip install 'rlay[ws]'") from None
    return websockets


def origin_allowed(origin: str | None) -> bool:
    if origin is None:
        return True  # not a browser
    extra = [o.strip() for o in os.environ.get("RLAY_WS_ORIGINS", "").split(",") if o.strip()]
    return bool(_LOOPBACK_ORIGIN.match(origin)) or origin in ALLOWED_ORIGINS or origin in extra


class WsStream:
    """One WebSocket connection as an rlay stream (the contract in ``base.py``)."""

    def __init__(
        self, conn: Any, peer: str, done: threading.Event | None = None, on_close: Any = None
    ) -> None:
        self._conn = conn
        self.peer = peer
        self._done = done  # set on close: lets the server's handler thread return
        self._on_close = on_close
        self._closed = False
        self._pending = bytearray()  # bytes of a frame not yet complete (sends are cut in frames)

    def send(self, buffers: Sequence[Buffer], timeout: float | None = None, stage: str = "sending") -> None:
        if self._closed:
            raise ConnectionClosed(f"{stage}: the connection was closed locally")
        from websockets.exceptions import ConnectionClosed as WsClosed

        out = self._pending
        for b in buffers:
            out += b
        try:
            while len(out) >= HEADER_SIZE:  # one message per whole frame (spec §1)
                _, _, _, data_len, body_len = HEADER.unpack_from(out)
                size = HEADER_SIZE + data_len + body_len
                if len(out) < size:
                    break
                self._conn.send(bytes(out[:size]))
                del out[:size]
        except WsClosed as exc:
            raise ConnectionClosed(f"{stage}: the connection to {self.peer} broke ({exc})") from None
        except TimeoutError:
            raise Timeout(f"{stage}: the peer did not read", timeout or 0.0) from None

    def recv(self, timeout: float | None = None, stage: str = "receiving") -> bytes:
        if self._closed:
            raise ConnectionClosed(f"{stage}: the connection was closed locally")
        from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

        try:
            message = self._conn.recv(timeout)
        except TimeoutError:
            raise Timeout(stage, timeout or 0.0) from None
        except ConnectionClosedOK:
            return b""
        except ConnectionClosedError as exc:
            raise ConnectionClosed(f"{stage}: the connection to {self.peer} broke ({exc})") from None
        if isinstance(message, str):
            raise ConnectionClosed(
                f"{stage}: {self.peer} sent a text message; rlay frames travel as binary messages"
            )
        return bytes(message) if not isinstance(message, bytes) else message

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._conn.close()
            if self._on_close is not None:
                self._on_close()
        finally:
            if self._done is not None:
                self._done.set()


class WsListener:
    """A WebSocket server thread; :meth:`accept` hands out its connections one at a time."""

    def __init__(self, addr: Address) -> None:
        ws = _websockets()
        self._path = addr.path or "/"
        self._queue: queue.SimpleQueue[WsStream] = queue.SimpleQueue()
        self._closed = False
        try:
            self._server = ws.sync.server.serve(
                self._handle,
                addr.host,
                addr.port,
                process_request=self._check_request,
                compression=None,
                max_size=MAX_MESSAGE,
                ping_interval=None,
                server_header="rlay",
            )
        except OSError as exc:
            raise UsageError(f"cannot listen on {format_host_port(addr)}: {exc.strerror or exc}") from None
        port = self._server.socket.getsockname()[1]
        self.address = Address("ws", host=addr.host, port=port, path=addr.path)
        self._thread = threading.Thread(target=self._server.serve_forever, name="rlay-ws", daemon=True)
        self._thread.start()

    def _check_request(self, conn: Any, request: Any) -> Any:
        origin = request.headers.get("Origin")
        if not origin_allowed(origin):
            allowed = ", ".join(["loopback pages", *ALLOWED_ORIGINS]) or "loopback pages"
            return conn.respond(
                HTTPStatus.FORBIDDEN,
                f"rlay: a page from {origin} may not connect here (allowed: {allowed}; add it to "
                "RLAY_WS_ORIGINS or rlay.transports.ws.ALLOWED_ORIGINS)\n",
            )
        path = request.path.split("?", 1)[0]
        if path != self._path:
            return conn.respond(
                HTTPStatus.NOT_FOUND, f"rlay: no endpoint at {path}; this rlay listener serves {self._path}\n"
            )
        if "upgrade" not in request.headers.get("Connection", "").lower():
            return conn.respond(
                HTTPStatus.UPGRADE_REQUIRED,
                f"rlay: this is an rlay WebSocket endpoint ({self.address}); connect with a WebSocket "
                "client, e.g. rlay.ServerEnv / an rlay SDK\n",
            )
        return None

    def _handle(self, conn: Any) -> None:
        done = threading.Event()
        host, port = conn.remote_address[:2]
        self._queue.put(WsStream(conn, f"{host}:{port} over ws", done))
        done.wait()  # the connection lives as long as its stream

    def accept(self, timeout: float | None) -> WsStream:
        if self._closed:
            raise ConnectionClosed(f"the listener on {self.address} was closed")
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise Timeout(f"waiting for an env side to connect to {self.address}", timeout or 0) from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        while True:  # connections nobody accepted
            try:
                self._queue.get_nowait().close()
            except queue.Empty:
                break
        # Stop accepting; streams already accepted live on (as with a socket listener), and the
        # server's shutdown waits for their handlers, so it must not hold up this call.
        self._server.socket.close()
        threading.Thread(
            target=self._server.shutdown,
            kwargs={"close_connections": False},
            name="rlay-ws-close",
            daemon=True,
        ).start()


def _dial(addr: Address, timeout: float | None) -> WsStream:
    ws = _websockets()
    uri = format_host_port(addr) + ("" if addr.path else "/")
    stack = contextlib.ExitStack()  # websockets wants connect() entered as a context manager
    try:
        conn = stack.enter_context(
            ws.sync.client.connect(
                uri,
                open_timeout=timeout,
                compression=None,
                max_size=MAX_MESSAGE,
                ping_interval=None,
                proxy=None,
                user_agent_header="rlay",
            )
        )
    except TimeoutError:
        raise Timeout(f"connecting to {uri}", timeout or 0) from None
    except OSError as exc:
        raise ConnectionClosed(
            f"cannot connect to {uri}: {exc.strerror or exc} (is the env side running and listening there?)"
        ) from None
    except ws.exceptions.InvalidStatus as exc:
        body = (exc.response.body or b"").decode("utf-8", "replace").strip()
        raise ConnectionClosed(f"cannot connect to {uri}: HTTP {exc.response.status_code} {body}") from None
    except ws.exceptions.InvalidHandshake as exc:
        raise ConnectionClosed(f"cannot connect to {uri}: not a WebSocket endpoint ({exc})") from None
    return WsStream(conn, uri, on_close=stack.close)


def _parse(rest: str, address: str) -> Address:
    host, port, path = parse_host_port(rest, address, "ws")
    return Address("ws", host=host, port=port, path=path)


register(Transport("ws", _parse, format_host_port, WsListener, _dial, "ws://HOST:PORT/path"))
