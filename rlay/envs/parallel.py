"""``ClientParallelEnv`` and ``ServerParallelEnv``: the agents of one game in another process, as a
PettingZoo ``ParallelEnv`` (spec/protocol.md §18). For PettingZoo's AEC API wrap one with
``pettingzoo.utils.conversions.parallel_to_aec``. Needs the ``pettingzoo`` extra.

Connections come from the same place as ``ClientEnv`` / ``ServerEnv``'s (``_endpoints``: dial,
listen, launch), and the session is the same agent-side engine (``_session``), which announces the
``multi_agent`` capability: an env side that does not announce it is refused (``NOT_SUPPORTED``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from rlay import attributes as _attrs
from rlay.envs._endpoints import Endpoints
from rlay.envs._session import AgentSession
from rlay.envs.single import (
    DEFAULT_ACCEPT_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_TIMEOUT,
    SETTLE,
)
from rlay.errors import AgentMismatch, ConnectionClosed, InvalidAgentAction, ProtocolError, UsageError
from rlay.launch import Process
from rlay.protocol import multiagent
from rlay.protocol.codec import check_free_value, free_from_wire
from rlay.protocol.messages import (
    Call,
    CallResult,
    Message,
    MultiResult,
    MultiStep,
    Render,
    RenderResult,
    Reset,
)
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE
from rlay.spaces import SpaceCodec, fast_contains
from rlay.transports import Stream

try:
    from pettingzoo import ParallelEnv
except ImportError as exc:  # pragma: no cover - the extra is part of the test environment
    raise ImportError(
        f"rlay's multi-agent envs need PettingZoo: pip install 'rlay[pettingzoo]' ({exc})"
    ) from None

__all__ = ["ClientParallelEnv", "ServerParallelEnv"]

log = logging.getLogger("rlay")


class _RemoteParallelEnv(ParallelEnv):  # type: ignore[misc]
    """What ClientParallelEnv and ServerParallelEnv share once a session is established."""

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
        self.agents: list[str] = []
        self.possible_agents: list[str] = []
        self.observation_spaces: dict[str, Any] = {}
        self.action_spaces: dict[str, Any] = {}
        self.render_mode: str | None = None

    # -- session ---------------------------------------------------------------------------------

    def _attach(self, stream: Stream) -> None:
        endpoints = self._endpoints
        session = AgentSession(
            stream,
            handshake_timeout=self._handshake_timeout,
            timeout=self._timeout,
            max_frame_size=self._max_frame_size,
            capabilities={multiagent.CAPABILITY: True},
            shm=self._shm,
            token=endpoints.token if endpoints else None,
            auth_required=endpoints.auth_required if endpoints else False,
        )
        info = session.info
        try:
            if not session.conn.multi_agent:  # the Connection refuses a v1 env side; never here
                raise AssertionError("a multi-agent session was not negotiated")
            obs_dict, act_dict = info.spaces
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
        self.env_name = info.name
        self.possible_agents = list(session.conn.possible_agents)
        # observation_space(agent) returns the same object every time (PettingZoo's API test checks).
        self.observation_spaces = {a: obs_dict.spaces[a] for a in self.possible_agents}
        self.action_spaces = {a: act_dict.spaces[a] for a in self.possible_agents}
        self._obs_codecs = {
            a: SpaceCodec(s, f"observation of agent {a!r}") for a, s in self.observation_spaces.items()
        }
        self._act_codecs = {a: SpaceCodec(s, f"action of agent {a!r}") for a, s in self.action_spaces.items()}
        self._contains = {a: fast_contains(s) for a, s in self.action_spaces.items()}
        self.agents = []
        self._attributes: dict[str, _attrs.Attribute] | None = None  # §19, asked once per session
        self._session = session

    def _live(self) -> AgentSession:
        session = self._session
        if session is None:
            raise ConnectionClosed("the env is closed")
        return session

    def _request(self, message: Message, what: str) -> Message:
        session = self._live()
        session.engine.check_open(f"send {what}")  # an env already gone fails at once
        try:
            return session.request(message, what)
        except ConnectionClosed as exc:
            if self._endpoints is None:
                raise
            raise self._endpoints.process_failure(0, exc) from None

    def _results(self, reply: Message, what: str) -> MultiResult:
        if type(reply) is not MultiResult:
            raise AssertionError(f"state machine let {reply!r} through as MULTI_RESULT")
        self.agents = list(reply.agents)  # the protocol core checked them (§18)
        return reply

    def _observations(self, reply: MultiResult, what: str) -> dict[str, Any]:
        """Each agent's observation in its space; one outside it ends the session (BAD_VALUE)."""
        try:
            return {a: self._obs_codecs[a].from_wire(v) for a, v in reply.obs.items()}
        except ProtocolError as exc:
            self._live().fail(exc, what)

    def _before_reset(self) -> None:
        """Where a ServerParallelEnv waits for a game that left to come back."""

    @property
    def process(self) -> Process | None:
        """The env program this env launched (``launch=[...]``): its ``pid``, output and exit."""
        endpoints = self._endpoints
        return endpoints.processes[0] if endpoints is not None and endpoints.processes else None

    # -- pettingzoo.ParallelEnv ------------------------------------------------------------------

    def observation_space(self, agent: str) -> Any:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> Any:
        return self.action_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if seed is not None:
            if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise UsageError(f"seed must be an int >= 0 or None, got {type(seed).__name__} {seed!r}")
            seed = int(seed)
        if options is not None:
            if not isinstance(options, dict):
                raise UsageError(f"options must be a dict or None, got {type(options).__name__}")
            check_free_value(options, where="options")
        self._before_reset()
        reply = self._results(self._request(Reset(seed, options), "RESET"), "RESET")
        return self._observations(reply, "RESET"), free_from_wire(reply.infos)

    def step(
        self, actions: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, float], dict[str, bool], dict[str, bool], dict[str, Any]]:
        self._live()
        if not isinstance(actions, dict):
            raise UsageError(f"actions must be a dict agent -> action, got {type(actions).__name__}")
        live = self.agents
        mismatch = multiagent.agent_mismatch(actions, live, self.possible_agents)
        if mismatch:
            raise AgentMismatch(mismatch)
        if self._check_actions:
            for agent in live:
                if not self._contains[agent](actions[agent]):
                    raise InvalidAgentAction(agent, actions[agent], self.action_spaces[agent])
        wire = {a: self._act_codecs[a].to_wire(actions[a]) for a in live}
        reply = self._results(self._request(MultiStep(wire), "MULTI_STEP"), "MULTI_STEP")
        return (
            self._observations(reply, "MULTI_STEP"),
            dict(reply.rewards),
            dict(reply.terminations),
            dict(reply.truncations),
            free_from_wire(reply.infos),
        )

    def render(self) -> Any:
        if self.render_mode is None:
            return None
        reply = self._request(Render(), "RENDER")
        if type(reply) is not RenderResult:
            raise AssertionError(f"state machine let {reply!r} through as RENDER_RESULT")
        return free_from_wire(reply.frame)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call a function the env side registered under ``name`` (spec §6 ``CALL``)."""
        check_free_value(list(args), where="call args")
        check_free_value(kwargs, where="call kwargs")
        reply = self._request(Call(name, list(args), kwargs), f"CALL {name!r}")
        if type(reply) is not CallResult:
            raise AssertionError(f"state machine let {reply!r} through as CALL_RESULT")
        return free_from_wire(reply.value)

    # -- attributes and engine settings (spec §19), as rlay.ClientEnv offers them ----------------

    @property
    def attributes(self) -> dict[str, _attrs.Attribute]:
        """The typed attributes the env side offers (``rlay.describe``), asked once per session."""
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
            self._live().fail(exc, f"CALL {_attrs.GET!r}")

    def set_attr(self, name: str, value: Any) -> None:
        """Set attribute ``name`` on the env side (§19 ``rlay.set``); checked first
        (:class:`rlay.InvalidAttribute`, nothing sent)."""
        attr = _attrs.lookup(self.attributes, name)
        self.call(_attrs.SET, attr.name, _attrs.for_set(attr, value))

    def close(self) -> None:
        session, self._session = self._session, None
        orderly = session is not None and not session.closed
        if session is not None:
            session.close()
        if self._endpoints is not None:
            self._endpoints.close(SETTLE if orderly else 0.0)  # after CLOSE it exits by itself (§15)
            self._endpoints = None

    def __del__(self) -> None:
        session = getattr(self, "_session", None)
        if session is not None:
            session.abandon("the env was garbage-collected")


class ClientParallelEnv(_RemoteParallelEnv):
    """A PettingZoo ``ParallelEnv`` that dials a multi-agent env side listening at ``address``
    (or launches the program with ``launch=[...]``, spec §15), like :class:`rlay.ClientEnv`."""

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
    ) -> None:
        super().__init__(
            render_mode=render_mode,
            handshake_timeout=handshake_timeout,
            timeout=timeout,
            max_frame_size=max_frame_size,
            check_actions=check_actions,
        )
        self._shm = shm  # §16: shared memory on unix sockets unless False (or RLAY_SHM=0)
        try:
            self._endpoints = Endpoints(
                "dial",
                address,
                launch=launch,
                launch_env=launch_env,
                launch_cwd=launch_cwd,
                token=token,
                who="ClientParallelEnv",
            )
            self.address, stream = self._endpoints.connect(0, connect_timeout)
            self._attach(stream)
        except BaseException:
            self.close()
            raise


class ServerParallelEnv(_RemoteParallelEnv):
    """A PettingZoo ``ParallelEnv`` that listens at ``address`` (default ``tcp://127.0.0.1:0``;
    with ``launch=[...]`` a fresh unix socket) and waits in the constructor for a multi-agent env
    side to dial in, like :class:`rlay.ServerEnv`. When the game leaves (stop in the editor, a
    crash), a step raises; the next ``reset`` (or :meth:`accept`) waits for it to dial in again,
    with the same agents and spaces. A launched program is not waited for again."""

    def __init__(
        self,
        address: str | None = None,
        *,
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
    ) -> None:
        super().__init__(
            render_mode=render_mode,
            handshake_timeout=handshake_timeout,
            timeout=timeout,
            max_frame_size=max_frame_size,
            check_actions=check_actions,
        )
        self._shm = shm  # §16: shared memory on unix sockets unless False (or RLAY_SHM=0)
        try:
            self._endpoints = Endpoints(
                "listen",
                address,
                launch=launch,
                launch_env=launch_env,
                launch_cwd=launch_cwd,
                token=token,
                who="ServerParallelEnv",
            )
            self.address = self._endpoints.addresses[0]
            self._accept_timeout = accept_timeout
            self.accept()
        except BaseException:
            self.close()
            raise

    @property
    def connected(self) -> bool:
        """Whether a game is attached and its session usable."""
        session = self._session
        return session is not None and not session.closed

    def accept(self, timeout: Any = ...) -> None:
        """Wait for a game to dial in and do the handshake (no-op while one is attached)."""
        session = self._session
        if session is not None and not session.closed:
            return
        endpoints = self._endpoints
        if endpoints is None:
            raise ConnectionClosed("the env is closed")
        before = None
        if session is not None:
            if endpoints.processes:
                raise ConnectionClosed(f"the launched env program is gone ({session.engine.closed_why})")
            log.info("= the game left (%s); waiting for it at %s", session.engine.closed_why, self.address)
            before = (self.possible_agents, self.observation_spaces, self.action_spaces)
            self._session = None
        _, stream = endpoints.connect(0, self._accept_timeout if timeout is ... else timeout)
        self._attach(stream)
        now = (self.possible_agents, self.observation_spaces, self.action_spaces)
        if before is not None and before != now:
            self._session.close()  # type: ignore[union-attr]
            self._session = None
            raise UsageError(
                f"the game that dialled in has the agents {now[0]} and spaces {now[1]} / {now[2]}, but "
                f"this env had {before[0]} and {before[1]} / {before[2]}; a returning game keeps them"
            )

    def _before_reset(self) -> None:
        endpoints = self._endpoints
        if endpoints is not None and not endpoints.processes:
            if self._session is not None:
                self._session.peek()  # a game that left since the last command: notice it now
            if not self.connected:
                self.accept()
