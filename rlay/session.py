"""One session engine for both sides: a protocol :class:`~rlay.protocol.connection.Connection`
(sans-I/O) joined to a transport :class:`~rlay.transports.Stream` (bytes only).

The agent side (``rlay.envs``) and the env side (``rlay.backends``) both read, feed, flush and
close through :class:`Session`; neither touches a socket, and only the transport knows how to
wait. The rules it keeps:

- A peer that breaks the protocol gets the fatal ERROR the Connection queued (spec §11: every
  code 1–15 ends the session), then the stream is closed and :class:`ProtocolError` raised.
- A vanished peer is :class:`ConnectionClosed`; silence past the deadline is :class:`Timeout` and
  also ends the session (a late reply could otherwise be taken for the next one) — except in
  ``poll`` mode, where silence is the normal answer "no command yet".
- After the session ended, every call raises :class:`ConnectionClosed` saying why it ended.
"""

from __future__ import annotations

import logging
import time
from typing import NoReturn

from rlay.errors import ConnectionClosed, ProtocolError, Timeout
from rlay.protocol.connection import Connection
from rlay.protocol.messages import Error, Message
from rlay.transports import Stream

log = logging.getLogger("rlay")


class Deadline:
    """A point in time (``None``: never). ``remaining()`` is what a transport wait is given."""

    __slots__ = ("at",)

    def __init__(self, seconds: float | None) -> None:
        self.at = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())


class Session:
    """One side of one session. ``peer`` names the other side in messages ("env side")."""

    def __init__(self, conn: Connection, stream: Stream, peer: str) -> None:
        self.conn = conn
        self.stream = stream
        self.peer = peer
        self.closed_why: str | None = None
        #: The fatal ERROR the peer sent just before a send found the connection broken.
        self.last_error: Error | None = None

    @property
    def closed(self) -> bool:
        return self.closed_why is not None

    def check_open(self, what: str) -> None:
        if self.closed_why is not None:
            raise ConnectionClosed(f"cannot {what}: {self.closed_why}")

    # -- sending ---------------------------------------------------------------------------------

    def flush(self, stage: str, timeout: float | None = None) -> None:
        """Write what the Connection queued. A failure ends the session and raises."""
        data = self.conn.data_to_send()
        if data:
            try:
                self.stream.send(data, timeout, stage)
            except ConnectionClosed as exc:
                # The peer may have said why before it hung up (a fatal ERROR): keep it.
                self.last_error = self.last_words()
                self.close(f"the connection failed {stage}: {exc}")
                raise
            except Timeout as exc:
                self.close(f"the connection failed {stage}: {exc}")
                raise

    def send(self, message: Message, stage: str, timeout: float | None = None) -> None:
        self.check_open(stage)
        self.conn.send(message)
        self.flush(stage, timeout)

    # -- receiving -------------------------------------------------------------------------------

    def receive(self, stage: str, timeout: float | None, *, poll: bool = False) -> Message | None:
        """The next message, waiting up to ``timeout`` seconds (``None``: forever, ``0``: not at
        all). Returns ``None`` only with ``poll=True`` when nothing arrived in time."""
        conn = self.conn
        stream = self.stream
        deadline: float | None = None
        wait = timeout
        while True:
            try:
                event = conn.next_event()
                if event is not None:
                    return event
                if conn.eof:
                    why = f"the {self.peer} closed the connection {stage}"
                    self.close(why)
                    raise ConnectionClosed(why)
                if timeout:  # the first wait is the whole timeout: no new kernel timeout per step
                    if deadline is None:
                        deadline = time.monotonic() + timeout
                    else:
                        wait = max(0.0, deadline - time.monotonic())
                if conn.has_data_to_send:  # e.g. the AUTH proof queued by the peer's HELLO (§7.1)
                    try:
                        self.flush(stage, wait)
                    except ConnectionClosed:
                        # The peer refused and hung up before reading it: its fatal ERROR, if
                        # it sent one, is the reason to report (flush kept it), not the EPIPE.
                        if self.last_error is not None:
                            return self.last_error
                        raise
                data = stream.recv(wait, stage)
                if data:
                    conn.receive_data(data)
                else:
                    conn.receive_eof()
            except ProtocolError as exc:
                self.fail(exc, stage)
            except Timeout:
                if poll:
                    return None
                self.close(f"the session was abandoned after a timeout {stage}")
                raise
            except ConnectionClosed as exc:
                self.close(str(exc))
                raise

    def last_words(self) -> Error | None:
        """A fatal ERROR the peer sent before it hung up, if it is already here (a short wait)."""
        try:
            while True:
                event = self.conn.next_event()
                if type(event) is Error:
                    return event
                if event is None:
                    data = self.stream.recv(0.05, "reading the peer's last words")
                    if not data:
                        return None
                    self.conn.receive_data(data)
        except (ConnectionClosed, Timeout, ProtocolError):
            return None

    # -- ending ----------------------------------------------------------------------------------

    def fail(self, exc: ProtocolError, stage: str) -> NoReturn:
        """The peer broke the protocol: send it the fatal ERROR (queued by the Connection, or
        queued here for a fault found above it, e.g. a value outside its space), close, raise."""
        self.conn.send_fatal(exc.code, exc.detail)  # no-op if the Connection already did
        if self.closed_why is None:
            try:
                self.stream.send(self.conn.data_to_send(), 1.0, "reporting a protocol error")
            except (ConnectionClosed, Timeout):
                pass
            self.close(f"the {self.peer} broke the protocol {stage}: {exc}")
        log.warning("! %s broke the protocol %s: %s", self.peer, stage, exc)
        raise exc

    def close(self, why: str) -> None:
        """End the session now (idempotent); later calls raise :class:`ConnectionClosed` with ``why``."""
        if self.closed_why is None:
            self.closed_why = why
            self.stream.close()
