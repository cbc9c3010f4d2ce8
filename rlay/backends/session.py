"""Env side in Python (design: layer 4): serve a Gymnasium env to an rlay agent side.

Two styles over one state machine, each usable with both connection directions:

- *callback style* — :func:`serve` listens and runs each connection against its own env (for a
  ``ClientEnv``); :func:`connect` dials a ``ServerEnv`` and serves one session.
- *loop style* — :class:`EnvSession`: the program's own main loop asks :meth:`EnvSession.poll`
  for the next command when it is ready, and answers it (what a game engine needs).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import gymnasium as gym
import numpy as np

from rlay.attributes import RESERVED_PREFIX, Attribute, InvalidAttribute, table_for
from rlay.batching import batch_contains, batch_fast_paths, wire_spaces
from rlay.errors import AuthenticationFailed, ConnectionClosed, ProtocolError, Timeout, UsageError, clip
from rlay.protocol.codec import check_free_value, free_from_wire
from rlay.protocol.connection import Connection, State
from rlay.protocol.messages import (
    Call,
    CallResult,
    Close,
    CloseResult,
    EnvInfo,
    Error,
    Hello,
    Render,
    RenderResult,
    Reset,
    ResetResult,
    Step,
    StepResult,
)
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE, ErrorCode, Role
from rlay.session import Session
from rlay.spaces import SpaceCodec, describe, fast_contains, fast_paths
from rlay.transports import Stream, dial, listen
from rlay.transports import shm as _shm

__all__ = ["Command", "EnvSession"]

log = logging.getLogger("rlay")

DEFAULT_HANDSHAKE_TIMEOUT = 30.0


@dataclass
class Command:
    """One command from the agent side. ``kind`` is ``reset``, ``step``, ``render``, ``call`` or
    ``close``; the other fields are set for the kinds that carry them."""

    kind: str
    seed: int | list[int | None] | None = None
    options: dict[str, Any] | None = None
    action: Any = None
    name: str | None = None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None


class Greeting:
    """The first half of the env side's handshake (§7, §7.1): HELLOs exchanged and, with a token,
    the agent's proof checked. A server runs it before it creates the env it will serve, so a
    peer that is slow, silent, garbled or unauthenticated never costs an env (spec §17.4);
    :class:`EnvSession` takes it (``greeting=``) and goes on with ENV_INFO."""

    def __init__(self, conn: Connection, engine: Session) -> None:
        self.conn = conn
        self.engine = engine
        self.hello: Hello | None = None

    @classmethod
    def start(
        cls,
        stream: Stream,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        token: str | bytes | None = None,
        capabilities: dict[str, Any] | None = None,
        shm: bool = True,
    ) -> Greeting:
        """``capabilities``: what this side's HELLO announces (e.g. ``multi_agent``, §18); ``shm``
        adds ``"shm": 1`` on a unix socket unless turned off (§16.1)."""
        from rlay import __version__

        if token is None:  # §7.1: the shared secret, else RLAY_TOKEN (set by a launcher)
            token = os.environ.get("RLAY_TOKEN") or None
        conn = Connection(
            Role.ENV,
            sdk="rlay-python",
            sdk_version=__version__,
            max_frame_size=max_frame_size,
            token=token,
            capabilities={**(capabilities or {}), **_shm.capability(stream, shm)},  # §16.1
        )
        return cls(conn, Session(conn, stream, "agent side"))

    def finish(self, handshake_timeout: float | None) -> Hello:
        """Send this side's HELLO and wait for the agent's (all of it within ``handshake_timeout``
        seconds of this call); its fatal ERROR or anything else raises, closing the stream."""
        if self.hello is not None:
            return self.hello
        try:
            self.engine.flush("sending HELLO")
            stage = "during the handshake, waiting for the agent's HELLO"
            hello = self.engine.receive(stage, handshake_timeout)
            if type(hello) is Error and hello.code == ErrorCode.AUTH_FAILED:
                raise AuthenticationFailed(f"the agent side reports: {hello.message}")
            if type(hello) is not Hello:
                raise ConnectionClosed(f"the agent side ended the handshake: {_describe_error(hello)}")
        except BaseException:
            self.engine.close("the handshake failed")
            raise
        self.hello = hello
        return hello

    def refuse(self, code: ErrorCode, message: str, exc: BaseException | None = None) -> None:
        """End the greeted session with a fatal ERROR saying why (with ``exc``'s type and
        traceback, if given), then close."""
        remote_type = tb = None
        if exc is not None:
            remote_type = type(exc).__qualname__
            tb = "".join(traceback.format_exception(exc))
        try:
            self.conn.send(Error(int(code), message, True, remote_type, tb))
            self.engine.flush("refusing the session", 5.0)
        except Exception:
            pass
        finally:
            self.engine.close("refused")


class EnvSession:
    """The env side of one session, loop style.

    Create it on a connected :class:`~rlay.transports.Stream` (or with :meth:`listen` /
    :meth:`dial`); it does the handshake and describes the env. Then repeatedly call
    :meth:`poll` and answer each command it returns with the matching ``reply_*`` method (or
    :meth:`reply_error`). ``poll`` answers by itself what needs no env code: an action outside
    the action space (``INVALID_ACTION``), ``STEP`` before the first ``RESET``
    (``RESET_NEEDED``), ``CLOSE``.

    With ``num_envs > 1`` the session hosts that many sub-envs (spec §10): the spaces given are
    one sub-env's, actions arrive and observations are answered batched, and ``reply_step``
    takes arrays of ``num_envs`` rewards and flags (``rlay.backends.vector`` serves a
    ``gymnasium.vector.VectorEnv`` this way).
    """

    def __init__(
        self,
        stream: Stream,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        metadata: dict[str, Any] | None = None,
        render_mode: str | None = None,
        name: str | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        check_actions: bool = True,
        num_envs: int = 1,
        send_timeout: float | None = None,
        token: str | bytes | None = None,
        shm: bool = True,
        max_shm_size: int = _shm.DEFAULT_MAX_SHM_SIZE,
        attributes: Sequence[Attribute] | None = None,
        attribute_owner: Any = None,
        capabilities: dict[str, Any] | None = None,
        greeting: Greeting | None = None,
    ) -> None:
        if type(num_envs) is not int or num_envs < 1:
            raise UsageError(f"num_envs must be an int >= 1, got {num_envs!r}")
        self.stream = stream
        self.observation_space = observation_space
        self.action_space = action_space
        self.num_envs = num_envs
        # §10: ENV_INFO describes one sub-env; with num_envs > 1 the values on the wire are batched.
        wire_obs, wire_act = wire_spaces(observation_space, action_space, num_envs)
        self._wire_action_space = wire_act
        # §9: an observation outside its space is the env code's error (ENV_EXCEPTION): never rounded.
        self._obs_codec = SpaceCodec(wire_obs, "observation", exact=True)
        self._act_codec = SpaceCodec(wire_act)
        self._check_actions = check_actions
        self._contains = (
            fast_contains(action_space) if num_envs == 1 else batch_contains(action_space, wire_act)
        )
        self._pending: Command | None = None
        self._was_reset = False
        # §19: the reserved CALLs (rlay.describe/get/set) are answered here, never by user code.
        self.attributes = table_for(attributes, attribute_owner, num_envs)
        meta = dict(metadata or {})
        meta.setdefault("render_modes", [])
        check_free_value(meta, where="metadata")
        info = EnvInfo(describe(observation_space), describe(action_space), num_envs, meta, render_mode, name)
        #: Seconds a reply may wait for the agent side to read it (None: forever).
        self.send_timeout = send_timeout
        if greeting is None:
            greeting = Greeting.start(
                stream, max_frame_size=max_frame_size, token=token, capabilities=capabilities, shm=shm
            )
        self.conn = greeting.conn
        self.engine = greeting.engine
        try:
            hello = greeting.finish(handshake_timeout)
            self.conn.send(info)
            self._flush()
            if self.conn.state is State.SHM:  # §16.1: both announced shared memory
                _shm.answer(self.engine, handshake_timeout, max_shm_size)
                self.stream = self.engine.stream
            log.info("= serving %s (%s %s)", stream.peer, hello.sdk, hello.sdk_version)
            self.conn.fast = (
                fast_paths(wire_obs, wire_act)
                if num_envs == 1
                else batch_fast_paths(observation_space, action_space, num_envs)
            )
        except BaseException:
            self._shutdown()
            raise

    # -- constructors for both connection directions ---------------------------------------------

    @classmethod
    def listen(
        cls, address: str, *args: Any, accept_timeout: float | None = None, **kwargs: Any
    ) -> EnvSession:
        """Listen at ``address``, accept one agent side (a ``ClientEnv``), return its session."""
        listener = listen(address)
        try:
            stream = listener.accept(accept_timeout)
        finally:
            listener.close()
        return cls(stream, *args, **kwargs)

    @classmethod
    def dial(
        cls, address: str, *args: Any, connect_timeout: float | None = 30.0, **kwargs: Any
    ) -> EnvSession:
        """Dial an agent side listening at ``address`` (a ``ServerEnv``), return the session."""
        return cls(dial(address, connect_timeout), *args, **kwargs)

    # -- loop style ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.engine.closed

    def poll(self, timeout: float | None = None) -> Command | None:
        """Return the next command, or ``None`` if none arrived within ``timeout`` seconds.

        ``timeout=0`` never blocks (call it once per frame); ``None`` waits as long as it takes.
        Raises :class:`ConnectionClosed` when the agent side is gone. A ``close`` command is
        answered already when it is returned; the session is then over.
        """
        if self._pending is not None:
            raise UsageError(f"answer the pending {self._pending.kind!r} command before polling again")
        self.engine.check_open("poll")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            message = self._next_message(remaining, "waiting for a command", poll=True)
            if message is None:
                return None
            command = self._command(message)
            if command is not None:
                return command

    def _command(self, message: Any) -> Command | None:
        t = type(message)
        if t is Step:
            try:  # §8: structure (BAD_VALUE, fatal), then RESET_NEEDED, then bounds
                action = self._act_codec.from_wire(message.action)
            except ProtocolError as exc:
                self._fail(exc)
            if not self._was_reset:
                self._send(
                    Error(
                        ErrorCode.RESET_NEEDED,
                        "STEP before the first RESET; call reset() first",
                        False,
                        None,
                        None,
                    )
                )
                return None
            if self._check_actions and not self._contains(action):
                self._send(
                    Error(
                        ErrorCode.INVALID_ACTION,
                        f"action {clip(action)} is not in the action space {self._wire_action_space}",
                        False,
                        None,
                        None,
                    )
                )
                return None
            cmd = Command("step", action=action)
        elif t is Reset:
            seed = message.seed
            if type(seed) is list and len(seed) != self.num_envs:  # §10
                self._fail(
                    ProtocolError(
                        ErrorCode.BAD_FIELD,
                        f"RESET.seed is an array of {len(seed)} seeds; expected one per sub-env "
                        f"({self.num_envs})",
                    )
                )
            # §10: STEP is RESET_NEEDED until every sub-env was reset once (a reset_mask may leave
            # some out). The Connection has checked the mask's shape already.
            mask = (message.options or {}).get("reset_mask") if self.num_envs > 1 else None
            if mask is None:
                self._was_reset = True
            elif not self._was_reset:
                self._reset_once = mask | getattr(self, "_reset_once", False)
                self._was_reset = bool(self._reset_once.all())
            options = free_from_wire(message.options) if message.options is not None else None
            cmd = Command("reset", seed=message.seed, options=options)
        elif t is Render:
            cmd = Command("render")
        elif t is Call:
            if message.name.startswith(RESERVED_PREFIX):
                self._answer_reserved(message)
                return None
            cmd = Command(
                "call",
                name=message.name,
                args=free_from_wire(message.args),
                kwargs=free_from_wire(message.kwargs),
            )
        elif t is Close:
            self._send(CloseResult())
            self._shutdown()
            return Command("close")
        elif t is Error:  # a fatal ERROR from the agent side (§8)
            self._shutdown()
            raise ConnectionClosed(f"the agent side ended the session: {_describe_error(message)}")
        else:  # pragma: no cover - the state table admits nothing else
            raise AssertionError(f"unexpected {message!r}")
        self._pending = cmd
        return cmd

    def _answer_reserved(self, message: Call) -> None:
        """§19: answer rlay.describe / rlay.get / rlay.set from the attribute table."""
        try:
            value = self.attributes.answer(
                message.name, free_from_wire(message.args), free_from_wire(message.kwargs)
            )
            check_free_value(value, where="attribute value")
        except InvalidAttribute as exc:  # refused before anything changed
            self._send(Error(ErrorCode.BAD_ATTRIBUTE, str(exc), False, None, None))
        except LookupError as exc:
            self._send(Error(ErrorCode.NOT_SUPPORTED, str(exc), False, None, None))
        except Exception as exc:  # the user's getter or setter failed
            tb = "".join(traceback.format_exception(exc))
            text = str(exc) or type(exc).__name__
            self._send(Error(ErrorCode.ENV_EXCEPTION, text, False, type(exc).__qualname__, tb))
        else:
            self._send(CallResult(value))

    def _take(self, kind: str) -> None:
        pending = self._pending
        if pending is None or pending.kind != kind:
            what = f"the pending command is {pending.kind!r}" if pending else "no command is pending"
            raise UsageError(f"cannot answer {kind!r}: {what}")
        self._pending = None

    def reply_reset(self, obs: Any, info: dict[str, Any] | None = None) -> None:
        if info:
            check_free_value(info, where="info")
        message = ResetResult(self._obs_codec.to_wire(obs), info or {})
        self._take("reset")
        self._send(message)

    def reply_step(
        self, obs: Any, reward: Any, terminated: Any, truncated: Any, info: dict[str, Any] | None = None
    ) -> None:
        if info:
            check_free_value(info, where="info")
        if self.num_envs == 1:
            flags = (float(reward), bool(terminated), bool(truncated))
        else:
            flags = _batched_flags(reward, terminated, truncated, self.num_envs)
        message = StepResult(self._obs_codec.to_wire(obs), *flags, info or {})
        self._take("step")
        self._send(message)

    def reply_render(self, frame: Any) -> None:
        check_free_value(frame, where="render frame")
        self._take("render")
        self._send(RenderResult(frame))

    def reply_call(self, value: Any) -> None:
        check_free_value(value, where="call result")
        self._take("call")
        self._send(CallResult(value))

    def reply_error(
        self,
        error: BaseException | str,
        *,
        code: ErrorCode = ErrorCode.ENV_EXCEPTION,
        fatal: bool = False,
    ) -> None:
        """Answer the pending command with an ERROR (an exception in env code, by default)."""
        pending = self._pending
        if pending is None:
            raise UsageError("reply_error needs a pending command")
        if isinstance(error, BaseException):
            message = str(error) or type(error).__name__
            remote_type = type(error).__qualname__
            tb = "".join(traceback.format_exception(error))
        else:
            message, remote_type, tb = error, None, None
        self._pending = None
        self._send(Error(int(code), message, fatal, remote_type, tb))
        if fatal:
            self._shutdown()

    def close(self) -> None:
        """End the session from the env side (the game quits): tell the agent side why."""
        if not self.engine.closed:
            try:
                if self.conn.state is not State.CLOSED:
                    self.conn.send_fatal(ErrorCode.SHUTTING_DOWN, "the env side closed the session")
                    self._flush()
            except (ConnectionClosed, Timeout):
                pass
            self._shutdown()

    # -- plumbing (the shared engine, rlay.session) ---------------------------------------------

    def _send(self, message: Any) -> None:
        self.engine.send(message, "sending a reply to the agent side", self.send_timeout)

    def _flush(self) -> None:
        self.engine.flush("sending to the agent side", self.send_timeout)

    def _fail(self, exc: ProtocolError) -> NoReturn:
        self.engine.fail(exc, "in a command")

    def _shutdown(self) -> None:
        self.engine.close("the session is over")

    def _next_message(self, timeout: float | None, stage: str, poll: bool = False) -> Any:
        return self.engine.receive(stage, timeout, poll=poll)


def _batched_flags(reward: Any, terminated: Any, truncated: Any, n: int) -> tuple[Any, Any, Any]:
    """§10: a float64 reward tensor and bool flag tensors, each of shape (n,)."""
    out = []
    for name, value, dtype in (
        ("reward", reward, np.float64),
        ("terminated", terminated, np.bool_),
        ("truncated", truncated, np.bool_),
    ):
        arr = np.asarray(value)
        if arr.shape != (n,) or arr.dtype.kind not in ("biuf" if dtype is np.float64 else "b"):
            kind = "numbers" if dtype is np.float64 else "bools"
            raise UsageError(
                f"reply_step {name}: expected an array of {n} {kind} (one per sub-env), "
                f"actual {arr.dtype} array of shape {arr.shape}"
            )
        out.append(np.ascontiguousarray(arr, dtype=dtype))
    return out[0], out[1], out[2]


def _describe_error(message: Any) -> str:
    if type(message) is Error:
        try:
            name = ErrorCode(message.code).name
        except ValueError:
            name = f"code {message.code}"
        return f"{name}: {message.message}"
    return repr(message)
