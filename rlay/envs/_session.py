"""The agent side of one session: the handshake, then one command and its reply at a time
(spec §7-§8), on the shared session engine (:mod:`rlay.session`)."""

from __future__ import annotations

import logging
import os
from typing import Any, NoReturn

from rlay.errors import (
    AuthenticationFailed,
    ConnectionClosed,
    NotAnswering,
    ProtocolError,
    RemoteError,
    Timeout,
    VersionMismatch,
)
from rlay.protocol.connection import Connection, State
from rlay.protocol.messages import Close, EnvInfo, Error, Message
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE, ErrorCode
from rlay.protocol.wire import Role as _Role
from rlay.session import Session
from rlay.transports import Stream
from rlay.transports import shm as _shm

log = logging.getLogger("rlay")


class AgentSession:
    """Every failure leaves the session in a clear state: a fatal error, a vanished peer or a
    timeout closes the stream, and every later request raises :class:`ConnectionClosed` saying
    why."""

    def __init__(
        self,
        stream: Stream,
        *,
        handshake_timeout: float | None,
        timeout: float | None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        capabilities: dict[str, Any] | None = None,
        token: str | bytes | None = None,
        auth_required: bool = True,
        shm: bool = True,
    ) -> None:
        from rlay import __version__

        self.timeout = timeout
        if token is None:  # §7.1: the shared secret, else RLAY_TOKEN
            token = os.environ.get("RLAY_TOKEN") or None
        conn = Connection(
            _Role.AGENT,
            sdk="rlay-python",
            sdk_version=__version__,
            capabilities={**(capabilities or {}), **_shm.capability(stream, shm)},  # §16.1
            max_frame_size=max_frame_size,
            token=token,
            auth_required=auth_required,
        )
        self.engine = Session(conn, stream, "env side")
        self.conn = conn
        self.stream = stream
        try:
            self._flush("sending HELLO", handshake_timeout)
            for stage in ("HELLO", "ENV_INFO"):
                event = self.engine.receive(
                    f"during the handshake, waiting for the env side's {stage}", handshake_timeout
                )
                if type(event) is Error:
                    raise self._remote_error(event, "the handshake")
            if conn.state is State.SHM:  # §16.1: both announced shared memory; offer it
                refused = _shm.offer(self.engine, handshake_timeout)
                if type(refused) is Error:
                    raise self._remote_error(refused, "the shared-memory offer")
                self.stream = self.engine.stream
        except BaseException:
            self.engine.close("the handshake failed")
            raise
        if type(event) is not EnvInfo:  # the state table allows nothing else here
            raise AssertionError(f"state machine let {event!r} through as ENV_INFO")
        self.info: EnvInfo = event
        hello = conn.peer_hello
        self.peer_sdk = f"{hello.sdk} {hello.sdk_version}".strip() if hello else "?"
        log.info("= connected to %s (%s), env %r", stream.peer, self.peer_sdk, event.name)

    @property
    def closed(self) -> bool:
        return self.engine.closed

    def request(self, message: Message, what: str, timeout: Any = ...) -> Message:
        """Send one command and return its reply; an ERROR reply raises :class:`RemoteError`."""
        self.send_command(message, what)
        return self.receive_reply(what, timeout)

    def send_command(self, message: Message, what: str) -> None:
        """The first half of :meth:`request`: send the command (many sessions can each have one
        in flight; a vector env sends all, then gathers all replies)."""
        self.engine.check_open(f"send {what}")
        self.conn.send(message)
        self._flush(f"sending {what}", self.timeout)

    def receive_reply(self, what: str, timeout: Any = ...) -> Message:
        """The second half of :meth:`request`: wait for the reply to the command in flight."""
        try:
            reply = self.engine.receive(
                f"waiting for the reply to {what}", self.timeout if timeout is ... else timeout
            )
        except NotAnswering:
            raise
        except Timeout as exc:  # connected, silent: paused or busy, not dead (§17.3)
            raise NotAnswering(exc.stage, exc.seconds) from None
        if type(reply) is Error:
            raise self._remote_error(reply, what)
        assert reply is not None  # not polling: None never comes back
        return reply

    def peek(self) -> None:
        """Notice, without waiting, an env side that left while no command was outstanding (its
        fatal ERROR or end of stream is already here): the session is then closed."""
        if self.engine.closed or self.conn.state is not State.IDLE:
            return
        try:
            event = self.engine.receive("checking that the env side is still there", 0, poll=True)
        except (ConnectionClosed, ProtocolError):
            return
        if type(event) is Error:
            self._remote_error(event, "while idle")

    def fail(self, exc: ProtocolError, what: str) -> NoReturn:
        """A reply broke the protocol above the core (e.g. a value outside its space, BAD_VALUE):
        tell the env side with a fatal ERROR (spec §11), end the session, raise."""
        self.engine.fail(exc, f"in the reply to {what}")

    def abandon(self, why: str) -> None:
        """Close the stream now; later requests raise :class:`ConnectionClosed` saying ``why``."""
        self.engine.close(why)

    def _remote_error(self, err: Error, what: str) -> Exception:
        if err.fatal:
            self.engine.close(f"the env side ended the session with {_code_name(err.code)}: {err.message}")
        if err.code == ErrorCode.VERSION_MISMATCH:
            return VersionMismatch(f"the env side reports: {err.message}")
        if err.code == ErrorCode.AUTH_FAILED:
            return AuthenticationFailed(f"the env side reports: {err.message}")
        return RemoteError(
            err.code,
            err.message,
            fatal=err.fatal,
            remote_type=err.remote_type,
            traceback=err.traceback,
            during=what,
        )

    def _flush(self, stage: str, timeout: float | None) -> None:
        try:
            self.engine.flush(stage, timeout)
        except ConnectionClosed:
            # The env side may have said why before it hung up (a fatal ERROR): prefer that.
            reason = self.engine.last_error
            if reason is not None:
                raise self._remote_error(reason, stage) from None
            raise

    def close(self, timeout: float | None = 5.0) -> None:
        """Say CLOSE (if the session is usable), wait briefly for CLOSE_RESULT, close the stream."""
        if self.engine.closed:
            return
        try:
            if self.conn.state is State.IDLE:
                self.request(Close(), "CLOSE", timeout=timeout)
        except (ConnectionClosed, Timeout, RemoteError, ProtocolError):
            pass
        finally:
            self.engine.close("the env was closed")


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error code {code}"
