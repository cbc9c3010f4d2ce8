"""The agent side of one session: a protocol Connection joined to a transport Stream."""

from __future__ import annotations

from typing import Any

from rlay.errors import ConnectionClosed, ProtocolError, RemoteError, Timeout, VersionMismatch
from rlay.protocol.connection import Connection, State
from rlay.protocol.messages import Close, EnvInfo, Error, Message
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE, ErrorCode, Role
from rlay.transports import Stream


class AgentSession:
    """Handshake, then one request/reply at a time (spec §7-§8).

    Every failure leaves the session in a clear state: a fatal error, a vanished peer or a
    timeout (after which a late reply could arrive) closes the stream, and every later request
    raises :class:`ConnectionClosed` saying why.
    """

    def __init__(
        self,
        stream: Stream,
        *,
        handshake_timeout: float | None,
        timeout: float | None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        capabilities: dict[str, Any] | None = None,
    ) -> None:
        from rlay import __version__

        self.stream = stream
        self.timeout = timeout
        self._closed_why: str | None = None
        self.conn = Connection(
            Role.AGENT,
            sdk="rlay-python",
            sdk_version=__version__,
            capabilities=capabilities,
            max_frame_size=max_frame_size,
        )
        try:
            self._flush("sending HELLO")
            for stage in ("HELLO", "ENV_INFO"):
                what = f"during the handshake, waiting for the env side's {stage}"
                event = self._next(what, handshake_timeout)
                if type(event) is Error:
                    raise self._remote_error(event, "the handshake")
        except BaseException:
            self._close("the handshake failed")
            raise
        if type(event) is not EnvInfo:  # the state table allows nothing else here
            raise AssertionError(f"state machine let {event!r} through as ENV_INFO")
        self.info: EnvInfo = event
        hello = self.conn.peer_hello
        self.peer_sdk = f"{hello.sdk} {hello.sdk_version}".strip() if hello else "?"

    @property
    def closed(self) -> bool:
        return self._closed_why is not None

    def request(self, message: Message, what: str, timeout: Any = ...) -> Message:
        """Send one command and return its reply; an ERROR reply raises :class:`RemoteError`."""
        self.send_command(message, what)
        return self.receive_reply(what, timeout)

    def send_command(self, message: Message, what: str) -> None:
        """The first half of :meth:`request`: send the command (many sessions can each have one
        in flight; a vector env sends all, then gathers all replies)."""
        if self._closed_why is not None:
            raise ConnectionClosed(f"cannot send {what}: {self._closed_why}")
        self.conn.send(message)
        self._flush(f"sending {what}")

    def receive_reply(self, what: str, timeout: Any = ...) -> Message:
        """The second half of :meth:`request`: wait for the reply to the command in flight."""
        reply = self._next(f"waiting for the reply to {what}", self.timeout if timeout is ... else timeout)
        if type(reply) is Error:
            raise self._remote_error(reply, what)
        return reply

    def abandon(self, why: str) -> None:
        """Close the stream now; later requests raise :class:`ConnectionClosed` saying ``why``."""
        self._close(why)

    def report_protocol_error(self) -> None:
        """Send the fatal ERROR the Connection queued for a peer that broke the protocol."""
        try:
            self._flush("reporting a protocol error")
        except (ConnectionClosed, Timeout):
            pass

    def _remote_error(self, err: Error, what: str) -> Exception:
        if err.fatal:
            self._close(f"the env side ended the session with {_code_name(err.code)}: {err.message}")
        if err.code == ErrorCode.VERSION_MISMATCH:
            return VersionMismatch(f"the env side reports: {err.message}")
        return RemoteError(
            err.code,
            err.message,
            fatal=err.fatal,
            remote_type=err.remote_type,
            traceback=err.traceback,
            during=what,
        )

    def _flush(self, stage: str) -> None:
        data = self.conn.data_to_send()
        if data:
            try:
                self.stream.send(data, stage)
            except ConnectionClosed as exc:
                # The env side may have said why before it hung up (a fatal ERROR): prefer that.
                reason = self._last_words()
                self._close(f"the connection failed {stage}: {exc}")
                if reason is not None:
                    raise self._remote_error(reason, stage) from None
                raise
            except Timeout as exc:
                self._close(f"the connection failed {stage}: {exc}")
                raise

    def _last_words(self) -> Error | None:
        """A fatal ERROR the peer sent before closing, if it is already here (no waiting)."""
        try:
            self.stream.set_timeout(0.05)
            while True:
                event = self.conn.next_event()
                if type(event) is Error:
                    return event
                if event is None:
                    data = self.stream.recv("reading the env side's last words")
                    if not data:
                        return None
                    self.conn.receive_data(data)
        except (ConnectionClosed, Timeout, ProtocolError):
            return None

    def _next(self, stage: str, timeout: float | None) -> Message:
        conn = self.conn
        stream = self.stream
        while True:
            try:
                event = conn.next_event()
                if event is None:
                    if conn.eof:
                        self._close(f"the env side closed the connection {stage}")
                        raise ConnectionClosed(f"the env side closed the connection {stage}")
                    stream.set_timeout(timeout)
                    data = stream.recv(stage)
                    if data:
                        conn.receive_data(data)
                    else:
                        conn.receive_eof()
                    continue
            except ProtocolError as exc:
                # Tell the peer why (the Connection queued a fatal ERROR), then hang up.
                try:
                    self._flush("reporting a protocol error")
                except (ConnectionClosed, Timeout):
                    pass
                self._close(f"the env side broke the protocol {stage}: {exc}")
                raise
            except Timeout:
                self._close(f"the session was abandoned after a timeout {stage}")
                raise
            except ConnectionClosed as exc:
                self._close(str(exc))
                raise
            return event

    def _close(self, why: str) -> None:
        if self._closed_why is None:
            self._closed_why = why
            self.stream.close()

    def close(self, timeout: float | None = 5.0) -> None:
        """Say CLOSE (if the session is usable), wait briefly for CLOSE_RESULT, close the stream."""
        if self._closed_why is not None:
            return
        try:
            if self.conn.state is State.IDLE:
                self.request(Close(), "CLOSE", timeout=timeout)
        except (ConnectionClosed, Timeout, RemoteError, ProtocolError):
            pass
        finally:
            self._close("the env was closed")


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error code {code}"
