"""``ClientEnv`` and ``ServerEnv``: one Gymnasium env whose logic runs in another process. Both
are the same ``gymnasium.Env`` once connected; only who opened the port differs (``_endpoints``)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from rlay import attributes as _attrs
from rlay.envs._endpoints import Endpoints
from rlay.envs._session import AgentSession
from rlay.errors import ConnectionClosed, InvalidAction, ProtocolError, UsageError
from rlay.launch import Process
from rlay.protocol.codec import check_free_value, free_from_wire
from rlay.protocol.messages import (
    Call,
    CallResult,
    Message,
    Render,
    RenderResult,
    Reset,
    ResetResult,
    Step,
    StepResult,
)
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE
from rlay.spaces import SpaceCodec, fast_contains, fast_paths
from rlay.transports import Stream

__all__ = ["GAME_ADDRESS", "ClientEnv", "ServerEnv"]

log = logging.getLogger("rlay")

#: Where a game dials a ServerEnv by default (every SDK's samples use it): an editor game cannot
#: learn a port chosen at run time. ``rlay.ServerEnv(rlay.GAME_ADDRESS)`` listens there.
GAME_ADDRESS = "tcp://127.0.0.1:5555"

DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_ACCEPT_TIMEOUT = 120.0
DEFAULT_HANDSHAKE_TIMEOUT = 30.0
DEFAULT_TIMEOUT = 60.0
#: Seconds a launched program gets to exit by itself after an orderly CLOSE, before SIGTERM.
SETTLE = 0.5


class _RemoteEnv(gym.Env[Any, Any]):
    """What ClientEnv and ServerEnv share once a session is established."""

    metadata: dict[str, Any] = {"render_modes": []}
    address: str  #: the env side's address (dialled), or the address bound (listening)

    def __init__(
        self,
        *,
        render_mode: str | None,
        handshake_timeout: float | None,
        timeout: float | None,
        max_frame_size: int,
        check_actions: bool,
    ) -> None:
        self._want_render_mode = render_mode
        self._handshake_timeout = handshake_timeout
        self._timeout = timeout
        self._max_frame_size = max_frame_size
        self._check_actions = check_actions
        self._shm = True
        self._session: AgentSession | None = None
        self._endpoints: Endpoints | None = None
        self._record: str | None = None  # record=PATH: the first session's frames go there
        self._attributes: dict[str, _attrs.Attribute] | None = None  # §19, asked once per session

    # -- session ---------------------------------------------------------------------------------

    def _attach(self, stream: Stream) -> None:
        if self._record is not None:  # rlay.record: tee every frame into the file
            from rlay.record import RecordingStream

            stream, self._record = RecordingStream(stream, self._record), None
        self._adopt(
            AgentSession(
                stream,
                handshake_timeout=self._handshake_timeout,
                timeout=self._timeout,
                max_frame_size=self._max_frame_size,
                token=self._endpoints.token if self._endpoints else None,
                auth_required=self._endpoints.auth_required if self._endpoints else False,
                shm=self._shm,
            )
        )

    @classmethod
    def from_session(cls, session: AgentSession, endpoints: Endpoints, **options: Any) -> Any:
        """This env over a session whose handshake is done (``rlay.check`` opens one, reads
        ENV_INFO's ``num_envs``, then picks the single or the vector env)."""
        env = cls.__new__(cls)
        _RemoteEnv.__init__(
            env,
            render_mode=options.get("render_mode"),
            handshake_timeout=options.get("handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT),
            timeout=options.get("timeout", DEFAULT_TIMEOUT),
            max_frame_size=options.get("max_frame_size", DEFAULT_MAX_FRAME_SIZE),
            check_actions=options.get("check_actions", True),
        )
        env._endpoints = endpoints
        env.address = endpoints.addresses[0]
        env._adopt(session)
        return env

    def _adopt(self, session: AgentSession) -> None:
        info = session.info
        try:
            obs_space, act_space = info.spaces  # built once, when ENV_INFO was received
            if info.num_envs != 1:
                raise UsageError(
                    f"the env side hosts {info.num_envs} sub-envs; use a vector env for it, "
                    "not a single gymnasium.Env"
                )
            if self._want_render_mode is not None and info.render_mode != self._want_render_mode:
                raise UsageError(
                    f"render_mode={self._want_render_mode!r} was asked for, but the env side renders "
                    f"in mode {info.render_mode!r}; start the env side with that render mode"
                )
        except (ProtocolError, UsageError):
            session.close()
            raise
        metadata = free_from_wire(info.metadata)
        metadata.setdefault("render_modes", [])
        self.metadata = metadata
        self.render_mode = info.render_mode
        self.observation_space = obs_space
        self.action_space = act_space
        self.env_name = info.name
        self._obs_codec = SpaceCodec(obs_space)
        self._act_codec = SpaceCodec(act_space)
        self._contains = fast_contains(act_space)
        session.conn.fast = fast_paths(obs_space, act_space)
        self._session = session
        self._attributes = None

    def _request(self, session: AgentSession, message: Message, what: str) -> Message:
        session.engine.check_open(f"send {what}")  # an env already gone fails at once
        try:
            return session.request(message, what)
        except ConnectionClosed as exc:
            if self._endpoints is None:
                raise
            raise self._endpoints.process_failure(0, exc) from None

    def _from_wire(self, session: AgentSession, codec: SpaceCodec, value: Any, what: str) -> Any:
        """A reply's value in its space; one outside it ends the session (spec §11, BAD_VALUE)."""
        try:
            return codec.from_wire(value)
        except ProtocolError as exc:
            session.fail(exc, what)

    @property
    def process(self) -> Process | None:
        """The env program this env launched (``launch=[...]``): its ``pid``, output and exit."""
        endpoints = self._endpoints
        return endpoints.processes[0] if endpoints is not None and endpoints.processes else None

    def _stop_endpoints(self, settle: float = 0.0) -> None:
        if self._endpoints is not None:
            self._endpoints.close(settle)
            self._endpoints = None

    def _live(self) -> AgentSession:
        session = self._session
        if session is None:
            raise ConnectionClosed("the env is closed")
        return session

    def _live_for_reset(self) -> AgentSession:
        """The session a reset goes to (a ServerEnv waits here for a game that left to return)."""
        return self._live()

    # -- gymnasium.Env ---------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        session = self._live_for_reset()
        super().reset(seed=seed)
        if seed is not None:
            if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
                raise UsageError(f"seed must be an int or None, got {type(seed).__name__} {seed!r}")
            seed = int(seed)
        if options is not None:
            if not isinstance(options, dict):
                raise UsageError(f"options must be a dict or None, got {type(options).__name__}")
            check_free_value(options, where="options")
        reply = self._request(session, Reset(seed, options), "RESET")
        if type(reply) is not ResetResult:
            raise AssertionError(f"state machine let {reply!r} through as RESET_RESULT")
        obs = self._from_wire(session, self._obs_codec, reply.obs, "RESET")
        return obs, free_from_wire(reply.info)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        session = self._live()
        if self._check_actions and not self._contains(action):
            raise InvalidAction(action, self.action_space)
        reply = self._request(session, Step(self._act_codec.to_wire(action)), "STEP")
        if type(reply) is not StepResult:
            raise AssertionError(f"state machine let {reply!r} through as STEP_RESULT")
        # The protocol core checked the fields against num_envs (§10): a float, two bools.
        reward, terminated, truncated = reply.reward, reply.terminated, reply.truncated
        info = reply.info
        return (
            self._from_wire(session, self._obs_codec, reply.obs, "STEP"),
            reward,
            terminated,
            truncated,
            (free_from_wire(info) if info else {}),
        )

    def render(self) -> Any:
        session = self._live()
        if self.render_mode is None:
            warnings.warn(
                "render() was called but the env side has no render mode; start it with one "
                "(for example render_mode='rgb_array')",
                stacklevel=2,
            )
            return None
        reply = self._request(session, Render(), "RENDER")
        if type(reply) is not RenderResult:
            raise AssertionError(f"state machine let {reply!r} through as RENDER_RESULT")
        return free_from_wire(reply.frame)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call a function the env side registered under ``name`` (spec §6 ``CALL``)."""
        session = self._live()
        check_free_value(list(args), where="call args")
        check_free_value(kwargs, where="call kwargs")
        reply = self._request(session, Call(name, list(args), kwargs), f"CALL {name!r}")
        if type(reply) is not CallResult:
            raise AssertionError(f"state machine let {reply!r} through as CALL_RESULT")
        return free_from_wire(reply.value)

    # -- attributes and engine settings (spec §19) --------------------------------------------

    @property
    def attributes(self) -> dict[str, _attrs.Attribute]:
        """The typed attributes the env side offers, name -> :class:`rlay.Attribute` (type,
        default, min/max, choices, writable, doc); asked once per session (``rlay.describe``)."""
        if self._attributes is None:
            self._attributes = _attrs.fetch(self.call)
        return dict(self._attributes)

    def get_attr(self, name: str) -> Any:
        """The env side's current value of attribute ``name`` (§19 ``rlay.get``)."""
        attr = _attrs.lookup(self.attributes, name)
        value = self.call(_attrs.GET, attr.name)
        try:
            return _attrs.from_reply(attr, value)
        except ProtocolError as exc:
            self._from_wire_failed(exc, f"CALL {_attrs.GET!r}")

    def set_attr(self, name: str, value: Any) -> None:
        """Set attribute ``name`` on the env side (§19 ``rlay.set``). The value is checked first
        (type, range, choices, writable): :class:`rlay.InvalidAttribute`, and nothing is sent."""
        attr = _attrs.lookup(self.attributes, name)
        self.call(_attrs.SET, attr.name, _attrs.for_set(attr, value))

    def _from_wire_failed(self, exc: ProtocolError, what: str) -> Any:
        self._live().fail(exc, what)

    def close(self) -> None:
        session = self._session
        self._session = None
        orderly = session is not None and not session.closed
        if session is not None:
            session.close()
        self._stop_endpoints(SETTLE if orderly else 0.0)  # after CLOSE it exits by itself (§15)
        super().close()

    def __del__(self) -> None:
        session = getattr(self, "_session", None)
        if session is not None:
            session.abandon("the env was garbage-collected")


class ClientEnv(_RemoteEnv):
    """A Gymnasium env that dials an env side listening at ``address``.

    ``ClientEnv("tcp://127.0.0.1:5555")`` connects, does the handshake and takes its spaces,
    metadata and render mode from the env side. Timeouts are in seconds; ``None`` waits forever
    (for an env side paused in a debugger). ``launch=[...]`` starts the env program first
    (``rlay.launch``, spec §15): it listens at a fresh unix socket, or at ``address`` if given
    (``tcp://127.0.0.1:0``: the port it announces), and it is ended on close. ``record=PATH``
    writes every frame of the session to PATH (:mod:`rlay.record`; ``rlay replay`` reads it).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        launch: Sequence[str] | None = None,
        launch_env: dict[str, str] | None = None,
        launch_cwd: str | None = None,
        token: str | bytes | None = None,
        render_mode: str | None = None,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        check_actions: bool = True,
        shm: bool = True,
        record: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(
            render_mode=render_mode,
            handshake_timeout=handshake_timeout,
            timeout=timeout,
            max_frame_size=max_frame_size,
            check_actions=check_actions,
        )
        self._shm = shm  # §16: shared memory on unix sockets unless False (or RLAY_SHM=0)
        self._record = None if record is None else os.fspath(record)
        try:
            self._endpoints = Endpoints(
                "dial",
                address,
                launch=launch,
                launch_env=launch_env,
                launch_cwd=launch_cwd,
                token=token,
                who="ClientEnv",
            )
            self.address, stream = self._endpoints.connect(0, connect_timeout)
            self._attach(stream)
        except BaseException:
            self.close()
            raise


class LazyAccept:
    """For envs that listen with ``wait=False``: reading what comes from the env side (its spaces,
    metadata, ``num_envs`` …) before it has connected waits for it (:meth:`accept`)."""

    _FROM_ENV_SIDE: frozenset[str] = frozenset()

    def accept(self, timeout: Any = ...) -> None:
        raise NotImplementedError

    def _accepted(self) -> bool:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        if name in self._FROM_ENV_SIDE and self.__dict__.get("_endpoints") is not None:
            if not self._accepted():
                self.accept()
                return getattr(self, name)
        raise AttributeError(name)


class ServerEnv(LazyAccept, _RemoteEnv):
    """A Gymnasium env that listens at ``address`` and waits for an env side to dial in.

    ``address`` defaults to ``tcp://127.0.0.1:0`` (a free port), or with ``launch=[...]`` to a
    fresh unix socket handed to the launched program; :attr:`address` is the address actually
    bound, to hand to the game. With ``wait=True`` (default) the constructor waits for the env
    side; with ``wait=False`` it returns at once and :meth:`accept` (or the first use of the
    spaces, ``reset`` …) waits. A launched program is always waited for. ``record=PATH`` writes
    every frame of the first session to PATH (:mod:`rlay.record`).
    """

    _FROM_ENV_SIDE = frozenset({"observation_space", "action_space", "render_mode", "env_name"})

    def __init__(
        self,
        address: str | None = None,
        *,
        wait: bool = True,
        launch: Sequence[str] | None = None,
        launch_env: dict[str, str] | None = None,
        launch_cwd: str | None = None,
        token: str | bytes | None = None,
        render_mode: str | None = None,
        accept_timeout: float | None = DEFAULT_ACCEPT_TIMEOUT,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        check_actions: bool = True,
        shm: bool = True,
        record: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(
            render_mode=render_mode,
            handshake_timeout=handshake_timeout,
            timeout=timeout,
            max_frame_size=max_frame_size,
            check_actions=check_actions,
        )
        self._shm = shm  # §16: shared memory on unix sockets unless False (or RLAY_SHM=0)
        self._record = None if record is None else os.fspath(record)
        self._accept_timeout = accept_timeout
        try:
            self._endpoints = Endpoints(
                "listen",
                address,
                launch=launch,
                launch_env=launch_env,
                launch_cwd=launch_cwd,
                token=token,
                who="ServerEnv",
            )
            self.address = self._endpoints.addresses[0]
            if wait or launch is not None:
                self.accept()
        except BaseException:
            self.close()
            raise

    def _accepted(self) -> bool:
        return self.__dict__.get("_session") is not None

    @property
    def connected(self) -> bool:
        """Whether an env side is attached and its session usable. Between a game leaving (stop
        in the editor, a crash) and the next one dialling in, this is False: ``step`` raises
        :class:`ConnectionClosed`, and ``reset`` / :meth:`accept` wait for the game to return."""
        session = self.__dict__.get("_session")
        return session is not None and not session.closed

    def accept(self, timeout: Any = ...) -> None:
        """Wait for an env side to dial in and do the handshake (no-op while one is attached).

        After the env side has gone (the game was stopped), this waits for the next one: the
        loop of a game developer who presses stop and play again. The returning game must have
        the same spaces (:class:`UsageError` otherwise). A launched program is not waited for
        again: it is gone for good.
        """
        session = self._session
        if session is not None and not session.closed:
            return
        endpoints = self._endpoints
        if endpoints is None:
            raise ConnectionClosed("the env is closed")
        if session is not None:
            if endpoints.processes:
                raise ConnectionClosed(f"the launched env program is gone ({session.engine.closed_why})")
            why = session.engine.closed_why
            log.info("= the env side left (%s); waiting for it at %s", why, self.address)
            before = (self.observation_space, self.action_space)
            self._session = None
        else:
            before = None
        seconds = self._accept_timeout if timeout is ... else timeout
        _, stream = endpoints.connect(0, seconds)
        self._attach(stream)
        if before is not None and before != (self.observation_space, self.action_space):
            now = (self.observation_space, self.action_space)
            self._session.close()  # type: ignore[union-attr]
            self._session = None
            raise UsageError(
                f"the env side that dialled in has the spaces {now[0]} / {now[1]}, but this env "
                f"had {before[0]} / {before[1]}; a returning game must keep its spaces"
            )

    def _live(self) -> AgentSession:
        if self._session is None and self._endpoints is not None:
            self.accept()
        return super()._live()

    def _live_for_reset(self) -> AgentSession:
        endpoints = self._endpoints
        if endpoints is not None and not endpoints.processes:
            if self._session is not None:
                self._session.peek()  # a game stopped since the last command: notice it now
            if not self.connected:
                self.accept()
        return super()._live()
