"""The C SDK's multi-agent env side (spec §18) as a real process: sdk/c/examples/arena.c (three
agents with different spaces, two leave, one joins) driven through rlay.pettingzoo's ParallelEnv in
both directions, under ASan/UBSan, against the same game in Python (rlay/testing/arena.py): every
observation, reward, flag, info and live-agent list must be equal, not close. Plus PettingZoo's
parallel_api_test and AEC api_test, every fault of §18.4, a v1 agent side refused, and the §18
vectors through the C conformance runner."""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import require_tool
from pettingzoo.test import api_test, parallel_api_test
from pettingzoo.utils.conversions import parallel_to_aec

import rlay
from rlay.errors import RemoteError
from rlay.pettingzoo import ClientParallelEnv, ServerParallelEnv
from rlay.protocol.messages import MultiStep
from rlay.protocol.wire import ErrorCode
from rlay.testing.arena import Arena
from rlay.testing.conformance import VECTORS_DIR, conformance_lines, load_vectors, run_conformance

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "c"
SAN = "-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
SAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "halt_on_error=1"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """arena under ASan/UBSan, compiled once for the module."""
    require_tool("gcc")
    require_tool("make")
    out = tmp_path_factory.mktemp("c-multiagent")
    cmd = ["make", "-C", str(SDK), f"OUT={out}", "CC=gcc", f"CFLAGS={SAN}", f"{out}/arena"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return out


@pytest.fixture
def env(built: Path) -> Any:
    e = ClientParallelEnv(launch=[str(built / "arena")], launch_env=SAN_ENV)
    yield e
    e.close()


def _close_and_exit_code(e: Any) -> int:
    process = e.process
    e.close()
    return process.popen.wait(10)  # type: ignore[no-any-return]


def test_multi_agent_vectors() -> None:
    require_tool("gcc")
    lines = conformance_lines(load_vectors(VECTORS_DIR / "multi_agent"))  # the SDK contract's runner
    assert run_conformance([str(SDK / "bin" / "conformance")], lines=lines, timeout=120) == []


def test_spaces_are_per_agent(env: ClientParallelEnv) -> None:
    ref = Arena()
    assert env.possible_agents == ["hunter", "scout", "medic"]
    for a in env.possible_agents:
        assert env.observation_space(a) == ref.observation_space(a)
        assert env.action_space(a) == ref.action_space(a)
    assert env.env_name == "arena_v0" and env.agents == []


def _compare_episode(env: Any, ref: Arena, seed: int | None, rng: np.random.Generator) -> int:
    obs, infos = env.reset(seed=seed)
    robs, rinfos = ref.reset(seed=seed)
    assert list(obs) == list(robs) and infos == rinfos
    for a in obs:
        assert obs[a].tobytes() == np.asarray(robs[a]).tobytes()
    steps = 0
    while env.agents:
        actions = {}
        for a in env.agents:
            space = env.action_space(a)
            space.seed(int(rng.integers(1 << 31)))
            actions[a] = space.sample()
        got, want = env.step(actions), ref.step(actions)
        for g, w in zip(got, want, strict=True):
            assert list(g) == list(w)
            for k in g:
                if isinstance(g[k], np.ndarray) or isinstance(g[k], np.integer):
                    assert np.asarray(g[k]).dtype == np.asarray(w[k]).dtype
                    assert np.asarray(g[k]).tobytes() == np.asarray(w[k]).tobytes(), (k, g[k], w[k])
                else:
                    assert g[k] == w[k] and type(g[k]) is type(w[k]), (k, g[k], w[k])
        assert env.agents == ref.agents
        steps += 1
    return steps


def test_episodes_equal_the_python_arena(env: ClientParallelEnv) -> None:
    ref, rng = Arena(), np.random.default_rng(7)
    for seed in (0, 5, None, 2**63 + 11, 99):
        assert _compare_episode(env, ref, seed, rng) == 8
    assert _close_and_exit_code(env) == 0


def test_pettingzoo_api_tests(env: ClientParallelEnv) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_api_test(env, num_cycles=20)
    assert not [w for w in caught if "agent" in str(w.message).lower()], [str(w.message) for w in caught]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PettingZoo's own deprecation notes
        api_test(parallel_to_aec(env), num_cycles=20)


def test_server_parallel_env_launches_the_game_dialling_in(built: Path) -> None:
    env = ServerParallelEnv(launch=[str(built / "arena")], launch_env=SAN_ENV)
    assert _compare_episode(env, Arena(), 3, np.random.default_rng(1)) == 8
    assert _close_and_exit_code(env) == 0


def test_bad_steps_get_named_errors_and_change_nothing(env: ClientParallelEnv) -> None:
    session = env._session
    assert session is not None

    def send(actions: dict[str, Any]) -> RemoteError:
        with pytest.raises(RemoteError) as err:
            session.request(MultiStep(actions), "MULTI_STEP")
        return err.value

    err = send({})
    assert err.code == ErrorCode.RESET_NEEDED and not err.fatal
    env.reset(seed=4)
    scout = np.array([0.5, -0.5], np.float32)
    for actions, code, text in (
        (
            {"hunter": 1, "scout": scout, "ghost": 0},
            ErrorCode.AGENT_MISMATCH,
            "'ghost', which is not a possible agent",
        ),
        (
            {"hunter": 1, "scout": scout, "medic": np.array([0, 1])},
            ErrorCode.AGENT_MISMATCH,
            "'medic', which is not live",
        ),
        ({"hunter": 1}, ErrorCode.AGENT_MISMATCH, "no action for the live agent 'scout'"),
        ({"hunter": 7, "scout": scout}, ErrorCode.INVALID_ACTION, "agent 'hunter' is outside"),
        ({"hunter": 1, "scout": np.array([2, 0], np.float32)}, ErrorCode.INVALID_ACTION, "agent 'scout'"),
    ):
        err = send(actions)
        assert err.code == code and not err.fatal, err
        assert text in err.message, err.message
    # nothing moved: the first real step is step 1 of the episode, equal to Python's
    ref = Arena()
    ref.reset(seed=4)
    got, want = env.step({"hunter": 1, "scout": scout}), ref.step({"hunter": 1, "scout": scout})
    assert got[1] == want[1] and got[0]["scout"].tobytes() == want[0]["scout"].tobytes()
    # a value of the wrong structure is BAD_VALUE: fatal, the program says why and exits non-zero
    err = send({"hunter": 1, "scout": np.zeros(3, np.float32)})
    assert err.code == ErrorCode.BAD_VALUE and err.fatal and "agent 'scout'" in err.message
    process = env.process
    assert process is not None and process.popen.wait(10) != 0


def test_a_v1_agent_side_is_refused(built: Path) -> None:
    with pytest.raises(RemoteError) as err:
        rlay.ClientEnv(launch=[str(built / "arena")], launch_env=SAN_ENV)
    assert err.value.code == ErrorCode.NOT_SUPPORTED and "multi_agent" in err.value.message


def test_the_bin_entry_point_builds_and_serves() -> None:
    require_tool("make")
    env = ClientParallelEnv(launch=[str(SDK / "bin" / "arena")], launch_env=dict(os.environ))
    try:
        obs, _ = env.reset(seed=1)
        assert env.agents == ["hunter", "scout"] and obs["hunter"][1] == 1.0
    finally:
        env.close()


@pytest.mark.parametrize("shm", [True, False])
def test_a_launched_arena_runs_on_shared_memory_unless_told_not_to(shm: bool) -> None:
    """§16 under §18: a launched program talks over a unix socket, so the parallel env offers
    shared memory (on by default, like ClientEnv) and ``shm=False`` keeps it on the socket;
    the episode is the same either way."""
    require_tool("make")
    env = ClientParallelEnv(launch=[str(SDK / "bin" / "arena")], launch_env=dict(os.environ), shm=shm)
    try:
        kind = type(env._session.engine.stream).__name__  # type: ignore[union-attr]
        assert kind == ("ShmStream" if shm else "SocketStream")
        obs, _ = env.reset(seed=1)
        assert env.agents == ["hunter", "scout"] and obs["hunter"][1] == 1.0
        while env.agents:
            env.step({a: env.action_space(a).sample() for a in env.agents})
    finally:
        env.close()


def test_a_parallel_env_refuses_the_single_agent_cartpole() -> None:
    require_tool("make")
    with pytest.raises(rlay.ProtocolError) as err:
        ClientParallelEnv(launch=[str(SDK / "bin" / "cartpole")])
    assert err.value.code is ErrorCode.NOT_SUPPORTED and "single-agent" in str(err.value)
