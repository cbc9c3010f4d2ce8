"""Multi-agent sessions (spec §18) in Python, both sides: the protocol core without sockets, then
rlay.pettingzoo's ParallelEnv against a Python env side (serve_parallel / connect_parallel) over
real sockets, with PettingZoo's own API tests, real episodes against the Python Arena, and every
bad input of §18.4 (each a named error that leaves the session usable)."""

from __future__ import annotations

import threading
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test
from pettingzoo.utils.conversions import parallel_to_aec

import rlay
from rlay.errors import AgentMismatch, InvalidAgentAction, ProtocolError, RemoteError, UsageError
from rlay.pettingzoo import (
    ClientParallelEnv,
    MultiAgentSession,
    ServerParallelEnv,
    connect_parallel,
    serve_parallel,
)
from rlay.protocol.connection import Connection, State
from rlay.protocol.messages import EnvInfo, MultiResult, MultiStep, Reset, Step
from rlay.protocol.wire import ErrorCode, Role
from rlay.spaces import describe
from rlay.testing.arena import Arena
from rlay.testing.conformance import VECTORS_DIR, conformance_lines, load_vectors, run_conformance

# -- ring 1: the protocol core, no sockets ---------------------------------------------------------


def _pump(src: Connection, dst: Connection) -> list[Any]:
    for buf in src.data_to_send():
        dst.receive_data(bytes(buf))
    out = []
    while (event := dst.next_event()) is not None:
        out.append(event)
    return out


def _pair(agent_ma: bool = True, env_ma: bool = True) -> tuple[Connection, Connection]:
    agent = Connection(Role.AGENT, capabilities={"multi_agent": True} if agent_ma else None)
    env = Connection(Role.ENV, capabilities={"multi_agent": True} if env_ma else None)
    _pump(agent, env)
    _pump(env, agent)
    return agent, env


def _arena_info() -> EnvInfo:
    obs = gym.spaces.Dict([(a, Arena().observation_space(a)) for a in Arena().possible_agents])
    act = gym.spaces.Dict([(a, Arena().action_space(a)) for a in Arena().possible_agents])
    return EnvInfo(describe(obs), describe(act), 1, {}, None, "arena_v0")


def test_both_announce_then_the_multi_agent_table_rules() -> None:
    agent, env = _pair()
    assert agent.multi_agent and env.multi_agent
    env.send(_arena_info())
    _pump(env, agent)
    assert agent.possible_agents == ("hunter", "scout", "medic") == env.possible_agents
    with pytest.raises(UsageError, match="cannot send STEP"):
        agent.send(Step(1))  # §18: MULTI_STEP replaces STEP
    agent.send(Reset(None, None))
    _pump(agent, env)
    with pytest.raises(UsageError, match="cannot send RESET_RESULT"):
        from rlay.protocol.messages import ResetResult

        env.send(ResetResult(None, {}))
    obs = {"hunter": np.zeros(3, np.float32), "scout": np.zeros(2, np.float32)}
    env.send(MultiResult(["hunter", "scout"], obs, {}, {}, {}, {"hunter": {}, "scout": {}}))
    (result,) = _pump(env, agent)
    assert type(result) is MultiResult and agent.agents == ("hunter", "scout") == env.agents
    assert agent.state is State.IDLE


def test_one_side_only_is_refused_with_not_supported() -> None:
    agent = Connection(Role.AGENT)  # a v1 agent side: its HELLO has no multi_agent
    env = Connection(Role.ENV, capabilities={"multi_agent": True})
    agent_hello = b"".join(bytes(b) for b in agent.data_to_send())
    env.receive_data(agent_hello)
    with pytest.raises(ProtocolError) as err:
        env.next_event()
    assert err.value.code is ErrorCode.NOT_SUPPORTED and "multi_agent" in str(err.value)
    # ... and a multi-agent agent side refuses a v1 env side the same way
    agent2 = Connection(Role.AGENT, capabilities={"multi_agent": True})
    env2 = Connection(Role.ENV)
    with pytest.raises(ProtocolError) as err:
        _pump(env2, agent2)
    assert err.value.code is ErrorCode.NOT_SUPPORTED


def test_a_v1_session_knows_nothing_of_multi_step() -> None:
    agent, env = _pair(agent_ma=False, env_ma=False)
    assert not agent.multi_agent
    env.send(_arena_info())
    _pump(env, agent)
    with pytest.raises(UsageError):
        agent.send(MultiStep({}))
    raw = agent.encode_frame(MultiStep({"hunter": 1}))
    env.receive_data(b"".join(bytes(b) for b in raw))
    with pytest.raises(ProtocolError) as err:
        env.next_event()
    assert err.value.code is ErrorCode.UNEXPECTED_MESSAGE


@pytest.mark.parametrize(
    ("result", "why"),
    [
        (MultiResult(["hunter", "nobody"], {}, {}, {}, {}, {}), "not a possible agent"),
        (MultiResult(["hunter"], {"hunter": 0}, {"hunter": 1.0}, {}, {}, {"hunter": {}}), "empty map"),
        (MultiResult(["hunter"], {"scout": 0}, {}, {}, {}, {"scout": {}}), "one entry per live agent"),
        (MultiResult(["hunter", "hunter"], {}, {}, {}, {}, {}), "twice"),
        (MultiResult(["hunter"], {"hunter": 0}, {}, {}, {}, {}), "infos must have the keys"),
    ],
)
def test_a_bad_result_after_reset_is_bad_field(result: MultiResult, why: str) -> None:
    agent, env = _pair()
    env.send(_arena_info())
    _pump(env, agent)
    agent.send(Reset(None, None))
    _pump(agent, env)
    env._write(result)  # bypass the env side's own checks: a broken peer
    env.state = State.IDLE
    with pytest.raises(ProtocolError, match=why) as err:
        _pump(env, agent)
    assert err.value.code is ErrorCode.BAD_FIELD


def test_multi_agent_vectors_pass_in_python() -> None:
    lines = conformance_lines(load_vectors(VECTORS_DIR / "multi_agent"))
    assert len(lines) >= 10
    runner = [__import__("sys").executable, "-m", "rlay.testing.conformance", "--python-runner"]
    assert run_conformance(runner, lines=lines) == []


def test_the_capability_generator_reproduces_its_files() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("rlay_vectors_generate_ma", VECTORS_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for name, text in gen.build_capabilities().items():
        assert (VECTORS_DIR / name).read_text() == text, name


# -- rings 2-3: a Python env side over real sockets ----------------------------------------------


@pytest.fixture
def server() -> Any:
    srv = serve_parallel(Arena, block=False)
    yield srv
    srv.close()


@pytest.fixture
def env(server: Any) -> Any:
    e = ClientParallelEnv(server.address)
    yield e
    e.close()


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and np.array_equal(np.asarray(a), np.asarray(b))


def test_spaces_and_agents_come_from_the_env_side(env: ClientParallelEnv) -> None:
    ref = Arena()
    assert env.possible_agents == ref.possible_agents
    for a in ref.possible_agents:
        assert env.observation_space(a) == ref.observation_space(a)
        assert env.action_space(a) == ref.action_space(a)
        assert env.observation_space(a) is env.observation_space(a)
    assert env.agents == [] and env.metadata["name"] == "arena_v0"


def test_episodes_match_the_arena_step_by_step(env: ClientParallelEnv) -> None:
    ref = Arena()
    for seed in (3, None, 41):
        obs, infos = env.reset(seed=seed)
        robs, rinfos = ref.reset(seed=seed)
        assert list(obs) == list(robs) and infos == rinfos and env.agents == ref.agents
        steps, joined, left = 0, False, set()
        while env.agents:
            actions = {a: env.action_space(a).sample() for a in env.agents}
            got, want = env.step(actions), ref.step(actions)
            for g, w in zip(got, want, strict=True):
                assert list(g) == list(w)
                for k in g:
                    assert _same(g[k], w[k]) or g[k] == w[k], (k, g[k], w[k])
            assert env.agents == ref.agents
            joined |= "medic" in env.agents
            left |= {a for a in got[0] if a not in env.agents}
            steps += 1
        assert steps == 8 and joined and left == {"hunter", "scout", "medic"}


def test_parallel_api_test_and_the_aec_wrapper(env: ClientParallelEnv) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_api_test(env, num_cycles=20)
    assert not [w for w in caught if "agent" in str(w.message).lower()], [str(w.message) for w in caught]
    aec = parallel_to_aec(env)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PettingZoo warns about its own deprecated dict attributes
        api_test(aec, num_cycles=20)


def test_bad_steps_are_named_and_change_nothing(env: ClientParallelEnv) -> None:
    env.reset(seed=1)
    good = {"hunter": 1, "scout": np.zeros(2, np.float32)}
    with pytest.raises(AgentMismatch, match="'nobody', which is not a possible agent"):
        env.step({**good, "nobody": 0})
    with pytest.raises(AgentMismatch, match="'medic', which is not live"):
        env.step({**good, "medic": np.array([0, 0])})
    with pytest.raises(AgentMismatch, match="no action for the live agent"):
        env.step({"hunter": 1})
    with pytest.raises(InvalidAgentAction, match="agent 'scout'"):
        env.step({"hunter": 1, "scout": np.array([5.0, 0.0], np.float32)})
    with pytest.raises(UsageError, match="dict"):
        env.step([1, 2])  # type: ignore[arg-type]
    # the same faults sent anyway (a buggy agent side): the env side answers each, non-fatal
    session = env._session
    assert session is not None
    for actions, code in (
        ({"hunter": 1, "scout": good["scout"], "medic": np.array([0, 0])}, ErrorCode.AGENT_MISMATCH),
        ({"hunter": 1, "scout": good["scout"], "ghost": 3}, ErrorCode.AGENT_MISMATCH),
        ({"hunter": 1}, ErrorCode.AGENT_MISMATCH),
        ({"hunter": 1, "scout": np.array([5.0, 0.0], np.float32)}, ErrorCode.INVALID_ACTION),
    ):
        with pytest.raises(RemoteError) as err:
            session.request(MultiStep(actions), "MULTI_STEP")
        assert err.value.code == code and not err.value.fatal
    obs, rewards, *_ = env.step(good)  # nothing changed: the first step of the episode
    assert obs["hunter"][0] == 1.0 and set(rewards) == {"hunter", "scout"}
    # a structure fault is BAD_VALUE and ends the session (§8, §18.4)
    with pytest.raises(RemoteError) as err:
        session.request(MultiStep({"hunter": 1, "scout": "north"}), "MULTI_STEP")
    assert err.value.code == ErrorCode.BAD_VALUE and err.value.fatal


def test_step_after_the_episode_ended_needs_a_reset(env: ClientParallelEnv) -> None:
    with pytest.raises(RemoteError) as err:
        env.step({})
    assert err.value.code == ErrorCode.RESET_NEEDED
    env.reset()
    while env.agents:
        env.step({a: env.action_space(a).sample() for a in env.agents})
    with pytest.raises(RemoteError) as err:
        env.step({})
    assert err.value.code == ErrorCode.RESET_NEEDED and not err.value.fatal
    env.reset()
    assert env.agents == ["hunter", "scout"]


def test_a_v1_client_is_refused_by_a_multi_agent_env_side(server: Any) -> None:
    with pytest.raises(RemoteError) as err:
        rlay.ClientEnv(server.address)
    assert err.value.code == ErrorCode.NOT_SUPPORTED and "ClientParallelEnv" in str(err.value)


def test_a_parallel_env_refuses_a_v1_env_side() -> None:
    srv = rlay.serve(lambda: gym.make("CartPole-v1"), block=False)
    try:
        with pytest.raises(ProtocolError) as err:
            ClientParallelEnv(srv.address)
        assert err.value.code is ErrorCode.NOT_SUPPORTED and "single-agent" in str(err.value)
    finally:
        srv.close()


class _BrokenArena(Arena):
    """Breaks §18's rules on its first step, as the reset option "break" says."""

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        self.fault = (options or {}).get("break")
        return super().reset(seed, options)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        obs, rew, term, trunc, infos = super().step(actions)
        if self.fault == "shape":
            obs["scout"] = np.zeros(3, np.float32)
        elif self.fault == "missing":
            del obs["hunter"], rew["hunter"], term["hunter"], trunc["hunter"], infos["hunter"]
        elif self.fault == "alien":
            obs["alien"] = rew["alien"] = term["alien"] = trunc["alien"] = infos["alien"] = 0
        return obs, rew, term, trunc, infos


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        ("shape", "observation of agent 'scout'"),
        ("missing", "no entry for"),
        ("alien", "'alien', which is not a possible agent"),
    ],
)
def test_an_env_that_breaks_the_rules_gets_env_exception(fault: str, why: str) -> None:
    srv = serve_parallel(_BrokenArena, block=False)
    env = ClientParallelEnv(srv.address)
    try:
        env.reset(options={"break": fault})
        with pytest.raises(RemoteError, match=why) as err:
            env.step({"hunter": 0, "scout": np.zeros(2, np.float32)})
        assert err.value.code == ErrorCode.ENV_EXCEPTION and not err.value.fatal
        obs, _ = env.reset()  # the session goes on
        assert set(obs) == {"hunter", "scout"}
    finally:
        env.close()
        srv.close()


def test_server_parallel_env_with_a_dialling_env_side() -> None:
    # ServerParallelEnv waits in its constructor: start the env side first, dialling in a thread.
    from rlay.transports import listen

    probe = listen("tcp://127.0.0.1:0")
    address = str(probe.address)
    probe.close()
    worker = threading.Thread(target=_dial_with_retry, args=(address,), daemon=True)
    worker.start()
    env = ServerParallelEnv(address, accept_timeout=30)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parallel_api_test(env, num_cycles=10)
    finally:
        env.close()
    worker.join(10)
    assert not worker.is_alive()


def _dial_with_retry(address: str) -> None:
    import time

    for _ in range(100):
        try:
            connect_parallel(Arena, address, connect_timeout=5)
            return
        except rlay.ConnectionClosed:
            time.sleep(0.05)


def test_loop_style_session_offers_the_live_agents() -> None:
    from rlay.transports import listen

    listener = listen("tcp://127.0.0.1:0")
    seen: list[Any] = []

    def game() -> None:
        stream = listener.accept(10)
        ref = Arena()
        s = MultiAgentSession(
            stream,
            {a: ref.observation_space(a) for a in ref.possible_agents},
            {a: ref.action_space(a) for a in ref.possible_agents},
        )
        while (cmd := s.poll(10)) is not None and cmd.kind != "close":
            if cmd.kind == "reset":
                s.reply_reset(*ref.reset(seed=cmd.seed))
            elif cmd.kind == "step":
                seen.append(sorted(cmd.action))
                s.reply_step(*ref.step(cmd.action))  # agents default: those whose flags are false
            seen.append(s.agents)

    thread = threading.Thread(target=game, daemon=True)
    thread.start()
    env = ClientParallelEnv(str(listener.address))
    env.reset(seed=0)
    env.step({"hunter": 0, "scout": np.zeros(2, np.float32)})
    env.close()
    thread.join(10)
    listener.close()
    assert seen == [["hunter", "scout"], ["hunter", "scout"], ["hunter", "scout"]]


def test_a_failing_factory_is_reported_to_the_parallel_env() -> None:
    def broken() -> Arena:
        raise ValueError("no arena today")

    srv = serve_parallel(broken, block=False)
    try:
        with pytest.raises(RemoteError, match="no arena today") as err:
            ClientParallelEnv(srv.address)
        assert err.value.code == ErrorCode.ENV_EXCEPTION and err.value.remote_type == "ValueError"
    finally:
        srv.close()


def test_a_real_pettingzoo_env_served_through_rlay() -> None:
    """PettingZoo's own rock-paper-scissors (an AEC env behind PettingZoo's parallel wrapper) served
    by serve_parallel: the remote env equals a local one, and passes PettingZoo's API test."""
    from pettingzoo.classic import rps_v2

    srv = serve_parallel(lambda: rps_v2.parallel_env(max_cycles=6), block=False)
    env = ClientParallelEnv(srv.address)
    local = rps_v2.parallel_env(max_cycles=6)
    try:
        assert env.possible_agents == local.possible_agents and env.metadata["name"] == "rps_v2"
        rng = np.random.default_rng(0)
        (obs, infos), (lobs, linfos) = env.reset(seed=2), local.reset(seed=2)
        assert {a: int(o) for a, o in obs.items()} == {a: int(o) for a, o in lobs.items()}
        assert infos == linfos
        while env.agents:
            actions = {a: int(rng.integers(3)) for a in env.agents}
            got, want = env.step(actions), local.step(actions)
            assert {a: int(o) for a, o in got[0].items()} == {a: int(o) for a, o in want[0].items()}
            assert got[1:] == want[1:]
            assert env.agents == local.agents
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parallel_api_test(env, num_cycles=10)
    finally:
        env.close()
        srv.close()


def test_server_parallel_env_waits_for_a_game_that_left() -> None:
    """The game developer's loop: the game stops (its session ends), plays again, dials back."""
    import time

    from rlay.transports import dial, listen

    probe = listen("tcp://127.0.0.1:0")
    address = str(probe.address)
    probe.close()

    def game(leave: bool) -> None:
        for _ in range(200):  # the env may not listen yet: dial until it does
            try:
                stream = dial(address, 1)
                break
            except rlay.ConnectionClosed:
                time.sleep(0.05)
        ref = Arena()
        s = MultiAgentSession(
            stream,
            {a: ref.observation_space(a) for a in ref.possible_agents},
            {a: ref.action_space(a) for a in ref.possible_agents},
        )
        while (cmd := s.poll(10)) is not None and cmd.kind != "close":
            if cmd.kind == "reset":
                s.reply_reset(*ref.reset(seed=cmd.seed))
                if leave:
                    s.close()  # stop pressed: SHUTTING_DOWN
                    return
            elif cmd.kind == "step":
                s.reply_step(*ref.step(cmd.action))

    first = threading.Thread(target=game, args=(True,), daemon=True)
    first.start()
    env = ServerParallelEnv(address, accept_timeout=10)
    try:
        env.reset(seed=1)
        first.join(10)
        with pytest.raises((RemoteError, rlay.ConnectionClosed)):
            env.step({"hunter": 0, "scout": np.zeros(2, np.float32)})
        assert not env.connected
        second = threading.Thread(target=game, args=(False,), daemon=True)
        second.start()
        obs, _ = env.reset(seed=2)  # waits for the game to dial in again
        assert env.connected and set(obs) == {"hunter", "scout"}
        env.step({"hunter": 0, "scout": np.zeros(2, np.float32)})
    finally:
        env.close()


def test_attributes_reach_a_multi_agent_env_side() -> None:
    """§19's typed attributes work in a multi-agent session as in any other (they are CALLs)."""
    base = rlay.Attribute(
        "base",
        int,
        default=0,
        min=0,
        max=99,
        getter=lambda env: env.base,
        setter=lambda env, v: setattr(env, "base", v),
    )
    srv = serve_parallel(Arena, block=False, attributes=[base])
    env = ClientParallelEnv(srv.address)
    try:
        assert set(env.attributes) == {"base"}
        env.set_attr("base", 42)
        assert env.get_attr("base") == 42
        obs, _ = env.reset()  # no seed: the base set above stays
        assert obs["hunter"][1] == 42.0
        with pytest.raises(rlay.InvalidAttribute):
            env.set_attr("base", 100)
    finally:
        env.close()
        srv.close()
