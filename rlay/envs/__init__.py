"""Agent side: Gymnasium envs whose logic runs in another process (design: layer 4).

- :class:`ClientEnv` dials an env side that listens.
- :class:`ServerEnv` listens; the env side (a game's own main loop) dials in.

Both are the same ``gymnasium.Env`` once connected; only who opened the port differs.
"""

from __future__ import annotations

import subprocess
import time
import warnings
from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from rlay.envs._session import AgentSession
from rlay.errors import ConnectionClosed, InvalidAction, ProtocolError, Timeout, UsageError
from rlay.launch import Process, SocketDir
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
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE, ErrorCode
from rlay.spaces import SpaceCodec, fast_contains, fast_paths, from_descriptor
from rlay.transports import Listener, Stream, dial, parse_address

__all__ = ["ClientEnv", "ServerEnv"]

DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_ACCEPT_TIMEOUT = 120.0
DEFAULT_HANDSHAKE_TIMEOUT = 30.0
DEFAULT_TIMEOUT = 60.0


class _RemoteEnv(gym.Env[Any, Any]):
    """What ClientEnv and ServerEnv share once a session is established."""

    metadata: dict[str, Any] = {"render_modes": []}

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
        self._session: AgentSession | None = None
        self._process: Process | None = None
        self._sockets: SocketDir | None = None

    # -- session ---------------------------------------------------------------------------------

    def _attach(self, stream: Stream) -> None:
        session = AgentSession(
            stream,
            handshake_timeout=self._handshake_timeout,
            timeout=self._timeout,
            max_frame_size=self._max_frame_size,
        )
        info = session.info
        try:
            obs_space = from_descriptor(info.observation_space, "observation_space")
            act_space = from_descriptor(info.action_space, "action_space")
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

    def _request(self, session: AgentSession, message: Message, what: str) -> Message:
        try:
            return session.request(message, what)
        except ConnectionClosed as exc:
            process = self._process
            if process is None:
                raise
            try:
                process.popen.wait(1.0)  # it is probably exiting: say how
            except subprocess.TimeoutExpired:
                raise exc from None
            raise process.failure(f"{exc}; the env program exited") from None

    def _start(
        self,
        command: Sequence[str],
        address: str | None,
        env: dict[str, str] | None,
        cwd: str | None,
        mode: str = "listen",
    ) -> str:
        """Launch the env program with a fresh address (a unix socket in a private directory)."""
        if address is None:
            self._sockets = SocketDir()
            address = self._sockets.address()
        self._process = Process(command, address, env=env, cwd=cwd, mode=mode)
        return address

    def _stop_process(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None
        if self._sockets is not None:
            self._sockets.close()
            self._sockets = None

    def _live(self) -> AgentSession:
        session = self._session
        if session is None:
            raise ConnectionClosed("the env is closed")
        return session

    # -- gymnasium.Env ---------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        session = self._live()
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
        obs = self._obs_codec.from_wire(reply.obs)
        return obs, free_from_wire(reply.info)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        session = self._live()
        if self._check_actions and not self._contains(action):
            raise InvalidAction(action, self.action_space)
        reply = self._request(session, Step(self._act_codec.to_wire(action)), "STEP")
        if type(reply) is not StepResult:
            raise AssertionError(f"state machine let {reply!r} through as STEP_RESULT")
        reward = reply.reward
        terminated = reply.terminated
        truncated = reply.truncated
        if type(reward) is not float:
            reward = _float_reward(reward)
        if type(terminated) is not bool or type(truncated) is not bool:
            raise ProtocolError(
                ErrorCode.BAD_FIELD,
                "STEP_RESULT of a single env must carry bool flags, got "
                f"{type(terminated).__name__} and {type(truncated).__name__}",
            )
        info = reply.info
        return (
            self._obs_codec.from_wire(reply.obs),
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

    def close(self) -> None:
        session = self._session
        self._session = None
        if session is not None:
            session.close()
        self._stop_process()
        super().close()

    def __del__(self) -> None:
        session = getattr(self, "_session", None)
        if session is not None:
            session._close("the env was garbage-collected")


def _float_reward(reward: Any) -> float:
    if type(reward) is int:
        return float(reward)  # §5: decoders accept an int where a float is due
    raise ProtocolError(
        ErrorCode.BAD_FIELD,
        f"STEP_RESULT of a single env must carry a float reward, got {type(reward).__name__}",
    )


class ClientEnv(_RemoteEnv):
    """A Gymnasium env that dials an env side listening at ``address``.

    ``ClientEnv("tcp://127.0.0.1:5555")`` connects, does the handshake and takes its spaces,
    metadata and render mode from the env side. Timeouts are in seconds; ``None`` waits forever
    (for an env side paused in a debugger). ``launch=[...]`` starts the env program first
    (``rlay.launch``): without an address it gets a fresh unix socket, and it is ended on close.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        launch: Sequence[str] | None = None,
        launch_env: dict[str, str] | None = None,
        launch_cwd: str | None = None,
        render_mode: str | None = None,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        check_actions: bool = True,
    ) -> None:
        super().__init__(
            render_mode=render_mode,
            handshake_timeout=handshake_timeout,
            timeout=timeout,
            max_frame_size=max_frame_size,
            check_actions=check_actions,
        )
        if launch is None:
            if address is None:
                raise UsageError(
                    "ClientEnv needs an address to dial, or launch=[...] to start the env program"
                )
            self.address = address
            self._attach(dial(address, connect_timeout))
            return
        try:
            self.address = self._start(launch, address, launch_env, launch_cwd)
            process = self._process
            assert process is not None
            stream = process.wait_until(
                lambda seconds: _dial_launched(process, seconds),
                connect_timeout,
                f"it listened at {self.address}",
            )
            self.address = process.listening or self.address
            self._attach(stream)
        except BaseException:
            self.close()
            raise


def _dial_launched(process: Process, seconds: float) -> Stream | None:
    """One attempt to reach a launched listener: at the address its ``RLAY_LISTENING`` line
    announced (spec §15; the only way to learn a port 0), else at the address it was given."""
    address = process.listening
    if address is None:
        if parse_address(process.address).port == 0:
            process.wait_announced(seconds)
            return None
        address = process.address
    return _try_dial(address, seconds)


def _try_dial(address: str, seconds: float) -> Stream | None:
    try:
        return dial(address, seconds)
    except ConnectionClosed:  # not listening yet
        time.sleep(min(0.02, seconds))
        return None
    except Timeout:
        return None


class ServerEnv(_RemoteEnv):
    """A Gymnasium env that listens at ``address`` and waits for an env side to dial in.

    ``address`` defaults to ``tcp://127.0.0.1:0`` (a free port), or with ``launch=[...]`` to a
    fresh unix socket handed to the launched program; :attr:`address` is the address actually
    bound, to hand to the game. With ``wait=True`` (default) the constructor waits for the env
    side; with ``wait=False`` it returns at once and :meth:`accept` (or the first use of the
    spaces, ``reset`` …) waits. A launched program is always waited for.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        wait: bool = True,
        launch: Sequence[str] | None = None,
        launch_env: dict[str, str] | None = None,
        launch_cwd: str | None = None,
        render_mode: str | None = None,
        accept_timeout: float | None = DEFAULT_ACCEPT_TIMEOUT,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        check_actions: bool = True,
    ) -> None:
        super().__init__(
            render_mode=render_mode,
            handshake_timeout=handshake_timeout,
            timeout=timeout,
            max_frame_size=max_frame_size,
            check_actions=check_actions,
        )
        self._listener: Listener | None = None
        self._accept_timeout = accept_timeout
        try:
            if address is None and launch is not None:
                self._sockets = SocketDir()
                address = self._sockets.address()
            self._listener = Listener(address or "tcp://127.0.0.1:0")
            self.address = str(self._listener.address)
            if launch is not None:
                self._start(launch, self.address, launch_env, launch_cwd, mode="dial")
            if wait or launch is not None:
                self.accept()
        except BaseException:
            self.close()
            raise

    def accept(self, timeout: Any = ...) -> None:
        """Wait for an env side to dial in and do the handshake (no-op if one is attached)."""
        if self._session is not None:
            return
        listener = self._listener
        if listener is None:
            raise ConnectionClosed("the env is closed")
        seconds = self._accept_timeout if timeout is ... else timeout
        if self._process is None:
            stream = listener.accept(seconds)
        else:
            stream = self._process.wait_until(
                lambda s: _try_accept(listener, s), seconds, f"it connected to {self.address}"
            )
        self._attach(stream)

    def _live(self) -> AgentSession:
        if self._session is None and self._listener is not None:
            self.accept()
        return super()._live()

    def __getattr__(self, name: str) -> Any:
        # observation_space, action_space, metadata and render_mode come from the env side:
        # reading one before it has connected waits for it (wait=False).
        if name in ("observation_space", "action_space", "render_mode", "env_name"):
            if self.__dict__.get("_session") is None and self.__dict__.get("_listener") is not None:
                self.accept()
                return getattr(self, name)
        raise AttributeError(name)

    def close(self) -> None:
        listener = self.__dict__.get("_listener")
        if listener is not None:
            listener.close()
            self._listener = None
        super().close()


def _try_accept(listener: Listener, seconds: float) -> Stream | None:
    try:
        return listener.accept(seconds)
    except Timeout:
        return None
