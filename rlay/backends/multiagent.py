"""Env side in Python for multi-agent envs (spec/protocol.md §18): the agents of one game, served
to a PettingZoo ``ParallelEnv`` on the agent side (``rlay.pettingzoo.ClientParallelEnv`` /
``ServerParallelEnv``).

- *loop style* — :class:`MultiAgentSession`: per-agent spaces in, ``poll`` returns ``reset`` and
  ``step`` commands (a step's ``action`` is a dict agent → action, already checked: exactly the
  live agents, each in its space), answered with :meth:`~MultiAgentSession.reply_reset` and
  :meth:`~MultiAgentSession.reply_step` (dicts keyed by agent, and the live agents after).
- *callback style* — :func:`serve_parallel` listens, :func:`connect_parallel` dials; both run a
  PettingZoo-style parallel env (``possible_agents``, ``agents``, ``observation_space(agent)``,
  ``action_space(agent)``, ``reset``, ``step``, ``render``). PettingZoo itself is not needed here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym

from rlay.attributes import Attribute
from rlay.backends.server import (
    DEFAULT_IDLE_TIMEOUT,
    CallTable,
    Server,
    answer_commands,
    lookup_call,
    refuse,
)
from rlay.backends.session import DEFAULT_HANDSHAKE_TIMEOUT, Command, EnvSession, Greeting
from rlay.errors import ConnectionClosed, ProtocolError, Timeout, UsageError, clip
from rlay.protocol import multiagent
from rlay.protocol.codec import check_free_value
from rlay.protocol.messages import Error, MultiResult, MultiStep
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE, ErrorCode
from rlay.spaces import SpaceCodec, fast_contains
from rlay.transports import Stream, dial

__all__ = [
    "MultiAgentSession",
    "ParallelServer",
    "connect_parallel",
    "run_parallel_session",
    "serve_parallel",
]


def _agent_spaces(
    observation_spaces: Mapping[str, gym.Space[Any]], action_spaces: Mapping[str, gym.Space[Any]]
) -> list[str]:
    agents = list(observation_spaces)
    if not agents:
        raise UsageError("a multi-agent env needs at least one possible agent")
    if list(action_spaces) != agents:
        raise UsageError(
            "observation_spaces and action_spaces must list the same agents in the same order, got "
            f"{clip(agents, 80)} and {clip(list(action_spaces), 80)}"
        )
    for a in agents:
        if type(a) is not str:
            raise UsageError(f"agent ids travel as str (spec §18), got {type(a).__name__} {clip(a, 40)}")
    return agents


class MultiAgentSession(EnvSession):
    """The env side of one multi-agent session (spec §18), loop style.

    ``observation_spaces`` / ``action_spaces``: a mapping agent id → space for every possible
    agent, in the order of ``possible_agents``. ``poll`` answers by itself what needs no env code:
    a step before the first reset or after every agent left (``RESET_NEEDED``), a step whose
    agents are not exactly the live ones (``AGENT_MISMATCH``: an unknown or departed agent, a
    live agent without an action), an action outside its agent's space (``INVALID_ACTION``
    naming the agent). The live agents are :attr:`agents`: the ones the last reply named.
    """

    def __init__(
        self,
        stream: Stream,
        observation_spaces: Mapping[str, gym.Space[Any]],
        action_spaces: Mapping[str, gym.Space[Any]],
        *,
        metadata: dict[str, Any] | None = None,
        render_mode: str | None = None,
        name: str | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        check_actions: bool = True,
        send_timeout: float | None = None,
        token: str | bytes | None = None,
        attributes: Sequence[Attribute] | None = None,
        attribute_owner: Any = None,
        shm: bool = True,
        greeting: Greeting | None = None,
    ) -> None:
        agents = _agent_spaces(observation_spaces, action_spaces)
        self.possible_agents = agents
        self.observation_spaces = {a: observation_spaces[a] for a in agents}
        self.action_spaces = {a: action_spaces[a] for a in agents}
        self._obs_codecs = {
            a: SpaceCodec(s, f"observation of agent {a!r}", exact=True)
            for a, s in self.observation_spaces.items()
        }
        self._act_codecs = {a: SpaceCodec(s, f"action of agent {a!r}") for a, s in self.action_spaces.items()}
        self._agent_contains = {a: fast_contains(s) for a, s in self.action_spaces.items()}
        # §18: ENV_INFO carries two dict spaces keyed by the possible agents (a list of pairs keeps
        # their order: gymnasium's Dict sorts a plain dict's keys).
        super().__init__(
            stream,
            gym.spaces.Dict([(a, self.observation_spaces[a]) for a in agents]),
            gym.spaces.Dict([(a, self.action_spaces[a]) for a in agents]),
            metadata=metadata,
            render_mode=render_mode,
            name=name,
            handshake_timeout=handshake_timeout,
            max_frame_size=max_frame_size,
            check_actions=check_actions,
            send_timeout=send_timeout,
            token=token,
            attributes=attributes,  # §19: typed attributes over CALL, as for any env side
            attribute_owner=attribute_owner,
            capabilities={multiagent.CAPABILITY: True},
            shm=shm,  # §16: a ParallelServer's sessions get shared memory like any Server's
            greeting=greeting,  # a Server's handshake, done before the env (§17.4)
        )

    @property
    def agents(self) -> list[str]:
        """The live agents: those named by the last reply (empty before the first reset)."""
        return list(self.conn.agents)

    def _command(self, message: Any) -> Command | None:
        if type(message) is not MultiStep:
            return super()._command(message)  # RESET, RENDER, CALL, CLOSE, ERROR: as in v1
        actions: dict[str, Any] = {}
        # §18 order: structure of each possible agent's action (BAD_VALUE, fatal); RESET_NEEDED;
        # the set of agents (AGENT_MISMATCH); bounds (INVALID_ACTION). Nothing reaches env code
        # before all passed, so a bad step changes nothing.
        for agent, wire in message.actions.items():
            codec = self._act_codecs.get(agent)
            if codec is None:
                continue  # not a possible agent: AGENT_MISMATCH below
            try:
                actions[agent] = codec.from_wire(wire)
            except ProtocolError as exc:
                self._fail(exc)
        live = self.conn.agents
        if not self._was_reset or not live:
            why = "before the first RESET" if not self._was_reset else "after every agent left the episode"
            self._refuse(ErrorCode.RESET_NEEDED, f"MULTI_STEP {why}; call reset() first")
            return None
        mismatch = multiagent.agent_mismatch(message.actions, live, self.possible_agents)
        if mismatch:
            self._refuse(ErrorCode.AGENT_MISMATCH, mismatch)
            return None
        if self._check_actions:
            for agent in live:
                if not self._agent_contains[agent](actions[agent]):
                    self._refuse(
                        ErrorCode.INVALID_ACTION,
                        f"the action {clip(actions[agent])} of agent {agent!r} is not in its action space "
                        f"{self.action_spaces[agent]}",
                    )
                    return None
        cmd = Command("step", action={a: actions[a] for a in live})
        self._pending = cmd
        return cmd

    def _refuse(self, code: ErrorCode, text: str) -> None:
        self._send(Error(int(code), text, False, None, None))

    # -- replies ---------------------------------------------------------------------------------

    def reply_reset(  # type: ignore[override]
        self,
        obs: Mapping[str, Any],
        infos: Mapping[str, Any] | None = None,
        agents: Sequence[str] | None = None,
    ) -> None:
        """Answer RESET: ``obs`` one observation per live agent, ``infos`` (optional, default
        ``{}`` each) keyed the same; ``agents`` the live agents (default: ``obs``'s keys)."""
        live = list(obs) if agents is None else list(agents)
        message = self._result(obs, {}, {}, {}, infos, live, after_reset=True)
        self._take("reset")
        self._send(message)

    def reply_step(  # type: ignore[override]
        self,
        obs: Mapping[str, Any],
        rewards: Mapping[str, Any],
        terminations: Mapping[str, Any],
        truncations: Mapping[str, Any],
        infos: Mapping[str, Any] | None = None,
        agents: Sequence[str] | None = None,
    ) -> None:
        """Answer a step: dicts keyed by every agent that was live before it (and any that joined);
        ``agents``: the live agents after it (default: the keys whose flags are both false)."""
        if agents is None:
            agents = [a for a in obs if not terminations.get(a) and not truncations.get(a)]
        message = self._result(
            obs, rewards, terminations, truncations, infos, list(agents), after_reset=False
        )
        self._take("step")
        self._send(message)

    def _result(
        self,
        obs: Mapping[str, Any],
        rewards: Mapping[str, Any],
        terminations: Mapping[str, Any],
        truncations: Mapping[str, Any],
        infos: Mapping[str, Any] | None,
        agents: list[str],
        *,
        after_reset: bool,
    ) -> MultiResult:
        """The reply, checked with the rules a receiver applies (§18), so a faulty env result is
        this side's error (ENV_EXCEPTION in callback style) and never reaches the wire."""
        if not isinstance(obs, Mapping):
            raise UsageError(f"observations must be a dict agent -> observation, got {type(obs).__name__}")
        wire_obs = {}
        for agent, value in obs.items():
            codec = self._obs_codecs.get(agent)
            if codec is None:
                raise UsageError(f"an observation for {agent!r}, which is not a possible agent")
            wire_obs[agent] = codec.to_wire(value)
        infos = {a: {} for a in obs} if infos is None else {a: infos.get(a, {}) for a in obs} | dict(infos)
        check_free_value(infos, where="infos")
        try:
            message = MultiResult(
                list(agents),
                wire_obs,
                {a: float(r) for a, r in rewards.items()},
                {a: bool(t) for a, t in terminations.items()},
                {a: bool(t) for a, t in truncations.items()},
                infos,
            )
            multiagent.check_result(message, tuple(self.possible_agents), self.conn.agents, after_reset)
        except ProtocolError as exc:
            raise UsageError(f"the env's result does not follow spec §18: {exc.detail}") from None
        return message


# -- callback style: a PettingZoo-style ParallelEnv ---------------------------------------------


def session_for_parallel(env: Any, stream: Stream, **kwargs: Any) -> MultiAgentSession:
    """Hand-shake on ``stream`` and describe ``env`` (a PettingZoo-style parallel env)."""
    agents = list(env.possible_agents)
    metadata = {k: v for k, v in dict(getattr(env, "metadata", {}) or {}).items() if _plain(v)}
    return MultiAgentSession(
        stream,
        {a: env.observation_space(a) for a in agents},
        {a: env.action_space(a) for a in agents},
        metadata=metadata,
        render_mode=getattr(env, "render_mode", None),
        name=str(metadata.get("name") or type(getattr(env, "unwrapped", env)).__name__),
        attribute_owner=env,
        **kwargs,
    )


def _plain(value: Any) -> bool:
    try:
        check_free_value(value, where="metadata")
    except UsageError:
        return False  # e.g. a callable in metadata: not sent
    return True


def run_parallel_session(
    session: MultiAgentSession, env: Any, calls: CallTable | None = None, idle_timeout: float | None = None
) -> None:
    """Answer commands with the parallel env ``env`` until the agent side closes."""
    table = calls or {}

    def handle(cmd: Command) -> None:
        if cmd.kind == "step":
            obs, rewards, terminations, truncations, infos = env.step(cmd.action)
            session.reply_step(obs, rewards, terminations, truncations, infos, list(env.agents))
        elif cmd.kind == "reset":
            obs, infos = env.reset(seed=cmd.seed, options=cmd.options)
            session.reply_reset(obs, infos, list(env.agents))
        elif cmd.kind == "render":
            session.reply_render(env.render())
        elif cmd.kind == "call":
            fn = lookup_call(session, table, cmd.name)
            if fn is not None:
                session.reply_call(fn(env, *(cmd.args or []), **(cmd.kwargs or {})))

    answer_commands(session, handle, idle_timeout)


def _is_instance(source: Any) -> bool:
    return hasattr(source, "possible_agents") and hasattr(source, "step")


class ParallelServer(Server):
    """:class:`~rlay.backends.Server` for a parallel env (or a factory of them): one session per
    agent side that dials, each a multi-agent session (§18)."""

    def _shared(self) -> bool:
        return _is_instance(self._source)

    def _capabilities(self) -> dict[str, Any] | None:
        return {multiagent.CAPABILITY: True}

    def _open(self, env: Any, stream: Stream, greeting: Greeting | None = None) -> EnvSession:
        return session_for_parallel(env, stream, greeting=greeting, **self._kwargs)

    def _run(self, session: EnvSession, env: Any) -> None:
        assert isinstance(session, MultiAgentSession)
        run_parallel_session(session, env, self._calls, self.idle_timeout)


ParallelSource = Any  # a parallel env, or a zero-argument factory of one


def serve_parallel(
    env: ParallelSource, address: str = "tcp://127.0.0.1:0", *, block: bool = True, **kwargs: Any
) -> ParallelServer:
    """Serve a PettingZoo-style parallel env (or a factory) at ``address`` for
    ``rlay.pettingzoo.ClientParallelEnv``; ``block=False`` serves in a background thread and
    returns the server (``address``, ``close()``). ``kwargs`` as :func:`rlay.serve`."""
    kwargs.setdefault("idle_timeout", DEFAULT_IDLE_TIMEOUT)
    server = ParallelServer(env, address, **kwargs)
    if not block:
        return server.start()  # type: ignore[return-value]
    try:
        server.serve_forever()
    finally:
        server.close()
    return server


def connect_parallel(
    env: ParallelSource,
    address: str,
    *,
    connect_timeout: float | None = 30.0,
    calls: CallTable | None = None,
    **kwargs: Any,
) -> None:
    """Dial a ``rlay.pettingzoo.ServerParallelEnv`` at ``address`` and serve the parallel env
    ``env`` (or a factory's env) until the agent side closes."""
    factory: Callable[[], Any] | None = None if _is_instance(env) else env
    try:
        instance = env if factory is None else factory()
    except Exception as exc:
        try:
            stream = dial(address, connect_timeout)
        except (ConnectionClosed, Timeout):
            raise exc from None
        why = f"the env factory failed: {exc}"
        refuse(
            stream,
            ErrorCode.ENV_EXCEPTION,
            why,
            exc,
            token=kwargs.get("token"),
            capabilities={multiagent.CAPABILITY: True},
        )
        raise
    try:
        session = session_for_parallel(instance, dial(address, connect_timeout), **kwargs)
        try:
            run_parallel_session(session, instance, calls)
        finally:
            session._shutdown()
    finally:
        if factory is not None:
            instance.close()
