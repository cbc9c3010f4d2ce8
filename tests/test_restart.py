"""Surviving a crash (issue 13): ``max_restarts`` relaunches an env program that died.

Real programs (the C CartPole, a Python CartPole env side), ``kill -9`` of one of them while
stepping: its sub-envs' episodes end truncated with the reason in ``info["rlay_restart"]``, the
program is relaunched and its sub-envs reset, and every other sub-env's trajectory is bit for bit
the one of the same seeded run without the kill. One relaunch more than ``max_restarts`` is the
usual :class:`rlay.EnvSideFailed`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest
from conftest import require_tool

import rlay
from rlay.launch import LaunchError, Process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C_CARTPOLE = [os.path.join(ROOT, "sdk", "c", "build", "cartpole")]
PY_CARTPOLE = [sys.executable, os.path.join(ROOT, "tests", "py_cartpole.py")]


@pytest.fixture(scope="module", autouse=True)
def c_cartpole() -> None:
    require_tool("gcc")
    subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "sdk", "c"), "build/cartpole"], check=True)


def kill(process: Process) -> None:
    """kill -9, and wait until it is gone (so the next command surely meets a dead program)."""
    os.kill(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process.exited() is None:
        assert time.monotonic() < deadline, "the killed program did not exit"
        time.sleep(0.005)


def actions(steps: int, n: int) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 2, size=(steps, n))


Step = tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]


def run(env: Any, steps: int, kill_at: dict[int, int] | None = None, seed: int = 0) -> list[Step]:
    """Reset with ``seed``, then ``steps`` steps; before step t, kill ``env.processes[kill_at[t]]``."""
    kill_at = kill_at or {}
    obs, _ = env.reset(seed=seed)
    flags = np.zeros(env.num_envs, bool)
    out: list[Step] = [(obs, np.zeros(env.num_envs), flags, flags, {})]
    for t, action in enumerate(actions(steps, env.num_envs)):
        if t in kill_at:
            kill(env.processes[kill_at[t]])
        out.append(env.step(action))
    return out


def same_subenv(a: list[Step], b: list[Step], i: int) -> None:
    """Sub-env ``i`` had the very same trajectory in both runs (obs bits, rewards, flags)."""
    for t, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x[0][i].tobytes() == y[0][i].tobytes(), f"step {t}: obs of sub-env {i} differ"
        for k in (1, 2, 3):
            assert x[k][i] == y[k][i], f"step {t}: field {k} of sub-env {i} differs"


def check_restart(result: list[Step], t: int, hit: list[int], before: Any, restarts: int) -> None:
    """Step ``t`` noticed the death of the program hosting sub-envs ``hit`` (next-step mode)."""
    obs, reward, terminated, truncated, info = result[t + 1]
    n = len(reward)
    mask = np.zeros(n, bool)
    mask[hit] = True
    assert info["_rlay_restart"].tolist() == mask.tolist()
    for i in hit:
        why = info["rlay_restart"][i]
        assert "killed by SIGKILL" in why and f"restart {restarts} of" in why, why
        assert truncated[i] and not terminated[i] and reward[i] == 0.0
        assert obs[i].tobytes() == before[i].tobytes()  # the last observation stands as the final one
    # The next step resets the relaunched program's sub-envs (Gymnasium's next-step autoreset).
    obs2, reward2, terminated2, truncated2, info2 = result[t + 2]
    for i in hit:
        assert reward2[i] == 0.0 and not terminated2[i] and not truncated2[i]
        assert np.all(np.abs(obs2[i]) <= 0.05), obs2[i]  # CartPole's reset state
    assert "rlay_restart" not in info2


@pytest.mark.parametrize("server", [False, True], ids=["client", "server"])
def test_c_program_killed_mid_episode_is_relaunched(server: bool) -> None:
    steps, t = 40, 12
    env = rlay.make_vec(C_CARTPOLE, 3, server=server, max_restarts=2)
    try:
        reference = run(env, steps)
        pids = [p.pid for p in env.processes]
        result = run(env, steps, kill_at={t: 1})
        assert env.restarts == 1
        assert sorted(p.pid for p in env.processes) != sorted(pids)
        # Listening, which program served which connection is not known: find the sub-env hit.
        hit = [int(i) for i in np.flatnonzero(result[t + 1][4]["_rlay_restart"])]
        assert len(hit) == 1 and (server or hit == [1])
        check_restart(result, t, hit, result[t][0], 1)
        for i in set(range(3)) - set(hit):
            same_subenv(reference, result, i)
        # It goes on as before after a seeded reset, the relaunched program included.
        again = run(env, 20)
        for i in range(3):
            same_subenv(reference[:21], again, i)
    finally:
        env.close()


def test_batched_c_program_all_its_sub_envs_truncated() -> None:
    steps, t = 30, 9
    env = rlay.make_vec([*C_CARTPOLE, "--num-envs", "3"], 2, max_restarts=1)
    try:
        assert env.num_envs == 6
        reference = run(env, steps)
        result = run(env, steps, kill_at={t: 0})
        check_restart(result, t, [0, 1, 2], result[t][0], 1)
        for i in (3, 4, 5):
            same_subenv(reference, result, i)
    finally:
        env.close()


def test_the_limit_is_the_usual_failure() -> None:
    env = rlay.make_vec(C_CARTPOLE, 2, max_restarts=1)
    try:
        env.reset(seed=1)
        kill(env.processes[0])
        env.step(np.array([0, 1]))
        assert env.restarts == 1
        env.step(np.array([0, 1]))
        kill(env.processes[0])
        with pytest.raises(rlay.EnvSideFailed, match="max_restarts=1 used up") as info:
            env.step(np.array([0, 1]))
        assert isinstance(info.value.cause, LaunchError) and info.value.cause.returncode == -signal.SIGKILL
        assert info.value.index == 0 and env.restarts == 1
        pids = [p.pid for p in env._endpoints.processes] if env._endpoints else []
        with pytest.raises(rlay.ConnectionClosed):
            env.step(np.array([0, 1]))
    finally:
        env.close()
    assert not env.processes and all(not os.path.exists(f"/proc/{pid}") for pid in pids)


def test_a_reset_is_sent_again_to_the_relaunched_program() -> None:
    """Killed between steps, noticed by reset(seed=...): the new program gets the same RESET, so
    the observation is the seeded one, and the info says why."""
    env = rlay.make_vec(C_CARTPOLE, 3, max_restarts=1)
    try:
        first, _ = env.reset(seed=5)
        env.step(np.array([1, 1, 1]))
        kill(env.processes[2])
        obs, info = env.reset(seed=5)
        assert obs.tobytes() == first.tobytes()
        assert info["_rlay_restart"].tolist() == [False, False, True]
        assert "while sending RESET" in info["rlay_restart"][2] or "reply to RESET" in info["rlay_restart"][2]
        assert env.restarts == 1
    finally:
        env.close()


def test_disabled_autoreset_asks_for_a_reset_of_the_relaunched_sub_envs() -> None:
    command = [*PY_CARTPOLE, "--num-envs", "2", "--autoreset", "disabled"]
    env = rlay.make_vec(command, 2, max_restarts=1, autoreset_mode="disabled", connect_timeout=60)
    try:
        env.reset(seed=3)
        kill(env.processes[1])
        truncated = env.step(np.array([0, 1, 0, 1]))[3]
        assert truncated.tolist() == [False, False, True, True]
        with pytest.raises(rlay.UsageError, match="sub-env 2 ended its episode"):
            env.step(np.array([0, 1, 0, 1]))
        # A mask naming one of a relaunched batch resets all of it (it was never reset).
        obs, _ = env.reset(options={"reset_mask": np.array([False, False, True, False])})
        assert np.all(np.abs(obs[2:]) <= 0.05)
        env.step(np.array([0, 1, 0, 1]))
    finally:
        env.close()


def test_python_env_side_killed_client_and_same_step_server() -> None:
    # ClientVectorEnv over two Python programs, next-step autoreset.
    steps, t = 12, 5
    env = rlay.make_vec(PY_CARTPOLE, 2, max_restarts=1, connect_timeout=60)
    try:
        reference = run(env, steps)
        result = run(env, steps, kill_at={t: 1})
        check_restart(result, t, [1], result[t][0], 1)
        same_subenv(reference, result, 0)
    finally:
        env.close()
    # ServerVectorEnv over two Python programs hosting 2 sub-envs each, same-step autoreset.
    command = [*PY_CARTPOLE, "--num-envs", "2", "--autoreset", "same-step"]
    env = rlay.make_vec(command, 2, server=True, max_restarts=1, accept_timeout=60)
    try:
        assert env.autoreset_mode.value == "SameStep"
        reference = run(env, steps)
        result = run(env, steps, kill_at={t: 0})
        obs, reward, terminated, truncated, info = result[t + 1]
        hit = np.flatnonzero(info["_rlay_restart"]).tolist()
        assert hit in ([0, 1], [2, 3])
        for i in hit:
            assert truncated[i] and not terminated[i] and reward[i] == 0.0
            # Same-step: the final observation in info, the reset one in obs.
            assert info["_final_obs"][i]
            assert info["final_obs"][i].tobytes() == result[t][0][i].tobytes()
            assert np.all(np.abs(obs[i]) <= 0.05)
        for i in set(range(4)) - set(hit):
            same_subenv(reference, result, i)
    finally:
        env.close()


def test_a_program_that_keeps_crashing_uses_up_the_restarts() -> None:
    """It exits by itself (code 3, a line on stderr) at its 4th step, each time it is launched."""
    env = rlay.make_vec([*PY_CARTPOLE, "--crash-after", "3"], 1, max_restarts=2, connect_timeout=60)
    reasons = []
    try:
        env.reset(seed=0)
        with pytest.raises(rlay.EnvSideFailed, match="max_restarts=2 used up") as failed:
            for _ in range(20):
                _, _, _, truncated, info = env.step(np.array([1]))
                if "rlay_restart" in info:
                    assert truncated[0]
                    reasons.append(info["rlay_restart"][0])
        # 3 steps, the crash, a reset, 3 steps, the crash, a reset, 3 steps, the crash: no more.
        assert len(reasons) == 2 and env.restarts == 2
        for k, why in enumerate(reasons, 1):
            assert "exit code 3" in why and f"restart {k} of max_restarts=2" in why, why
            assert "py_cartpole: boom (--crash-after)" in why
        cause = failed.value.cause
        assert isinstance(cause, LaunchError) and cause.returncode == 3 and "boom" in cause.stderr
    finally:
        env.close()
    assert not env.processes


def test_max_restarts_needs_launched_programs() -> None:
    with pytest.raises(rlay.UsageError, match="needs launch"):
        rlay.ClientVectorEnv("tcp://127.0.0.1:9", max_restarts=1)
    with pytest.raises(rlay.UsageError, match="max_restarts must be an int"):
        rlay.make_vec(C_CARTPOLE, 1, max_restarts=-1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc entries")
def test_fifty_restarts_leak_nothing() -> None:
    """Descriptors, threads, children (zombies included) and socket files stay flat."""
    import threading

    from test_cycles import children, fds, settled

    def state() -> tuple[int, int, set[int], int]:
        sockets = os.listdir(os.path.dirname(env.addresses[0][len("unix://") :]))
        others = children() - {p.popen.pid for p in env.processes}
        return fds(), threading.active_count(), others, len(sockets)

    env = rlay.make_vec(C_CARTPOLE, 2, max_restarts=51)
    try:
        env.reset(seed=0)
        kill(env.processes[0])
        env.step(np.array([0, 1]))  # the first relaunch: what it sets up once
        before = settled(state, state())
        for k in range(50):
            kill(env.processes[k % 2])
            _, _, _, truncated, info = env.step(np.array([0, 1]))
            assert truncated[k % 2] and info["_rlay_restart"][k % 2]
        assert env.restarts == 51
        after = settled(state, before)
        assert after == before, f"(fds, threads, other children, socket files): {before} -> {after}"
    finally:
        env.close()
