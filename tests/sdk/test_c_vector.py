"""Batched sub-envs in the C SDK (spec §10): the C CartPole (sdk/c/examples/cartpole.c) hosting
N CartPoles on one connection, against Gymnasium's own
``SyncVectorEnv([CartPole-v1] * N, autoreset_mode=NEXT_STEP)``.

Both sides start from the same states (the same seeds: the C program reproduces numpy's
``Generator(PCG64(SeedSequence(seed)))`` stream, or Gymnasium's states passed as the reset option
``state``), take the same actions, and must be *equal*, not close: observations, rewards,
terminated/truncated and the float64 states, across terminations, the 500-step truncation and
the next-step autoresets that follow them, and across partial resets (``reset_mask``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import require_tool
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv

import rlay
from rlay.envs._session import AgentSession
from rlay.errors import EnvSideFailed, InvalidSubEnvAction, RemoteError
from rlay.protocol.messages import Reset, ResetResult, Step, StepResult
from rlay.transports import dial

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "c"
SAN_ENV = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "halt_on_error=1"}
N = 4


def build(out: Path, *extra: str) -> str:
    require_tool("gcc")
    require_tool("make")
    cmd = ["make", "-C", str(SDK), f"OUT={out}", "CC=gcc", *extra, f"{out}/cartpole"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return str(out / "cartpole")


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build(tmp_path_factory.mktemp("cartpole-vec"))


@pytest.fixture(scope="module")
def cartpole_asan(tmp_path_factory: pytest.TempPathFactory) -> str:
    san = "-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    return build(tmp_path_factory.mktemp("cartpole-vec-asan"), f"CFLAGS={san}")


def reference(n: int) -> SyncVectorEnv:
    return SyncVectorEnv([lambda: gym.make("CartPole-v1")] * n, autoreset_mode=AutoresetMode.NEXT_STEP)


def ref_states(ref: SyncVectorEnv) -> np.ndarray:
    return np.stack([np.asarray(env.unwrapped.state, dtype=np.float64) for env in ref.envs])


def same(a: Any, b: Any, where: str) -> None:
    """a == b exactly: type, dtype, shape and bytes."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), (where, a, b)
        assert a.dtype == b.dtype and a.shape == b.shape, (where, a, b)
        assert a.tobytes() == b.tobytes(), (where, a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), (where, a, b)
        for key in a:
            same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, tuple):
        assert type(b) is tuple and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, (where, a, b)


def actions_for(states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sub-envs 0 and 1 balance the pole (their episodes reach the 500-step truncation), the
    others act at random (they terminate within a few dozen steps)."""
    x, x_dot, theta, theta_dot = states.T
    balance = (theta + 0.5 * theta_dot + 0.01 * x + 0.05 * x_dot > 0).astype(np.int64)
    actions = rng.integers(0, 2, len(states))
    actions[:2] = balance[:2]
    return actions


def compare(
    env: VectorEnv,
    ref: SyncVectorEnv,
    steps: int,
    seed: int | None,
    partial: dict[int, tuple[np.ndarray, list[int | None]]] | None = None,
    reset: bool = True,
) -> tuple[int, int]:
    """Steps ``env`` and ``ref`` side by side; returns the numbers of terminations and truncations.

    ``partial`` maps a step to a partial reset done after it: (reset_mask, per-sub-env seeds).
    """
    if reset:
        same(env.reset(seed=seed), ref.reset(seed=seed), "reset")
    rng = np.random.default_rng(seed)
    terminations = truncations = 0
    for t in range(steps):
        actions = actions_for(ref_states(ref), rng)
        got = env.step(actions)
        want = ref.step(actions)
        same(got, want, f"step {t}")
        terminations += int(want[2].sum())
        truncations += int(want[3].sum())
        if t % 50 == 0:
            same(np.stack(env.call("get_state")), ref_states(ref), f"state after step {t}")
        if partial and t in partial:
            mask, seeds = partial[t]
            got_reset = env.reset(seed=seeds, options={"reset_mask": mask})
            same(got_reset, ref.reset(seed=seeds, options={"reset_mask": mask}), f"partial reset after {t}")
    return terminations, truncations


def start_listening(
    program: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [program, "--listen", "tcp://127.0.0.1:0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("RLAY_LISTENING "), (line, proc.stderr.read() if proc.stderr else "")
    return proc, line.split(" ", 1)[1].strip()


def finish(proc: subprocess.Popen[str], code: int = 0) -> str:
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the env program did not exit by itself; stderr: {err[-2000:]}")
    assert proc.returncode == code, f"exit code {proc.returncode}; stderr: {err[-3000:]}"
    return err


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# -- equivalence with SyncVectorEnv --------------------------------------------------------------


def test_launched_batch_matches_sync_vector_env(cartpole: str) -> None:
    """ClientVectorEnv launching the C program: terminations, truncations, autoresets and
    partial resets (with per-sub-env seeds and None) are bit-identical to SyncVectorEnv."""
    env = rlay.ClientVectorEnv(launch=[cartpole, "--listen", "{address}", "--num-envs", str(N)])
    ref = reference(N)
    try:
        assert env.num_envs == N and env.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
        assert env.single_observation_space == ref.single_observation_space
        assert env.observation_space == ref.observation_space and env.action_space == ref.action_space
        partial = {
            120: (np.array([True, False, True, False]), [31, None, None, None]),
            300: (np.array([False, False, True, True]), [None, None, 8, None]),
        }
        terminations, truncations = compare(env, ref, 560, seed=11, partial=partial)
        assert terminations >= 10 and truncations >= 1, (terminations, truncations)
        same(env.reset(), ref.reset(), "unseeded reset")  # both streams go on
        compare(env, ref, 30, seed=None, reset=False)
    finally:
        env.close()
        ref.close()


def test_a_partial_reset_clears_the_pending_autoreset(cartpole: str) -> None:
    """A sub-env reset by reset_mask right after its episode ended is stepped next, not
    autoreset again (Gymnasium clears its autoreset flag)."""
    env = rlay.ClientVectorEnv(launch=[cartpole, "--listen", "{address}", "--num-envs", str(N)])
    ref = reference(N)
    try:
        same(env.reset(seed=5), ref.reset(seed=5), "reset")
        rng = np.random.default_rng(5)
        for t in range(200):
            actions = rng.integers(0, 2, N)
            got, want = env.step(actions), ref.step(actions)
            same(got, want, f"step {t}")
            ended = np.logical_or(want[2], want[3])
            if ended.any() and not ended.all():
                break
        else:
            pytest.fail("no sub-env ended alone")
        mask = ended.copy()
        same(
            env.reset(options={"reset_mask": mask}), ref.reset(options={"reset_mask": mask}), "partial reset"
        )
        actions = rng.integers(0, 2, N)
        got, want = env.step(actions), ref.step(actions)
        same(got, want, "step after the partial reset")
        assert np.all(got[1][mask] == 1.0), "the reset sub-envs are stepped, not autoreset"
    finally:
        env.close()
        ref.close()


def test_gymnasium_states_through_the_state_option(cartpole: str) -> None:
    """The reset option "state" (float64 (N, 4)) starts each sub-env from a given state (here near
    the edges, so that every sub-env terminates soon) without drawing from its stream."""
    env = rlay.ClientVectorEnv(launch=[cartpole, "--listen", "{address}", "--num-envs", str(N)])
    ref = reference(N)
    try:
        same(env.reset(seed=3), ref.reset(seed=3), "reset")
        states = np.array(
            [[2.3, 0.5, 0.0, 0.0], [-2.3, -0.5, 0.1, 0.0], [0.0, 0.0, 0.2, 0.3], [0.01, -0.02, -0.2, -0.3]]
        )
        obs, info = env.reset(options={"state": states})
        assert obs.tobytes() == states.astype(np.float32).tobytes() and info == {}
        for sub, state in zip(ref.envs, states, strict=True):
            sub.unwrapped.state = state.copy()
        terminations, _ = compare(env, ref, 60, seed=3, reset=False)
        assert terminations >= N
        with pytest.raises(EnvSideFailed, match=r"float64 tensor of shape \(4, 4\)") as info_:
            env.reset(options={"state": np.zeros(4)})
        assert isinstance(info_.value.cause, RemoteError) and info_.value.cause.remote_type == "ValueError"
    finally:
        env.close()
        ref.close()


@pytest.mark.parametrize("how", ["dialled", "server", "server-launched"])
def test_dialled_and_dialling_batches(cartpole: str, how: str) -> None:
    """The C program listening (ClientVectorEnv dials it) or dialling (ServerVectorEnv)."""
    proc = None
    env: VectorEnv
    if how == "dialled":
        proc, address = start_listening(cartpole, "--num-envs", str(N))
        env = rlay.ClientVectorEnv(address)
    elif how == "server":
        env = rlay.ServerVectorEnv("tcp://127.0.0.1:0", wait=False)
        proc = subprocess.Popen(
            [cartpole, "--connect", env.address, "--num-envs", str(N)], stderr=subprocess.PIPE, text=True
        )
        env.accept(30)
    else:
        env = rlay.ServerVectorEnv(launch=[cartpole, "--connect", "--num-envs", str(N)])
    ref = reference(N)
    try:
        assert env.num_envs == N
        terminations, _ = compare(env, ref, 150, seed=21, partial={70: (np.array([True] * N), [1, 2, 3, 4])})
        assert terminations >= 5
    finally:
        env.close()
        ref.close()
    if proc is not None:
        finish(proc)  # CLOSE is answered and the program exits 0


def test_make_vec_over_three_plain_c_env_sides(cartpole: str) -> None:
    """Three C processes, one CartPole each: the agent side does the next-step autoreset (a
    RESET without a seed: the C program's stream goes on, as Gymnasium's does)."""
    env = rlay.make_vec([cartpole, "--listen", "{address}"], num_processes=3)
    ref = reference(3)
    try:
        assert env.num_envs == 3 and len(env.processes) == 3
        partial = {90: (np.array([False, True, False]), [None, 99, None])}
        terminations, _ = compare(env, ref, 200, seed=8, partial=partial)
        assert terminations >= 5
    finally:
        env.close()
        ref.close()


# -- errors ----------------------------------------------------------------------------------------


def test_an_out_of_bounds_action_names_its_sub_env(cartpole: str) -> None:
    proc, address = start_listening(cartpole, "--num-envs", str(N))
    session = AgentSession(dial(address, 10), handshake_timeout=10, timeout=10)
    try:
        assert session.info.num_envs == N and session.info.metadata["autoreset_mode"] == "next_step"
        reply = session.request(Reset([1, None, 3, 4], None), "RESET")
        assert type(reply) is ResetResult and reply.obs.shape == (N, 4) and reply.obs.dtype == np.float32
        with pytest.raises(RemoteError) as info:
            session.request(Step(np.array([0, 1, 2, 0])), "STEP")
        assert info.value.code_name == "INVALID_ACTION" and not info.value.fatal
        assert (
            "sub-env 2" in info.value.message
            and "Discrete(2, start=0): 2 is out of range" in info.value.message
        )
        reply = session.request(Step(np.array([0, 1, 1, 0])), "STEP")  # the session goes on
        assert type(reply) is StepResult and reply.reward.dtype == np.float64 and reply.reward.shape == (N,)
        assert reply.terminated.dtype == np.bool_ and reply.truncated.shape == (N,)
        with pytest.raises(RemoteError) as info:
            session.request(Step(np.array([0, 1], dtype=np.int64)), "STEP")  # 2 actions for 4 sub-envs
        assert info.value.code_name == "BAD_VALUE" and info.value.fatal
        assert "batch_space(action_space, 4)" in info.value.message
    finally:
        session.close()
    assert "BAD_VALUE" in finish(proc, 1)


def test_the_vector_env_reports_the_c_side_refusal(cartpole: str) -> None:
    env = rlay.ClientVectorEnv(
        launch=[cartpole, "--listen", "{address}", "--num-envs", str(N)], check_actions=False
    )
    try:
        env.reset(seed=0)
        with pytest.raises(EnvSideFailed, match="sub-env 3 is outside action_space") as info:
            env.step(np.array([0, 1, 0, -1]))
        assert isinstance(info.value.cause, RemoteError) and info.value.cause.code_name == "INVALID_ACTION"
    finally:
        env.close()
    checked = rlay.ClientVectorEnv(launch=[cartpole, "--listen", "{address}", "--num-envs", str(N)])
    try:
        checked.reset(seed=0)
        with pytest.raises(InvalidSubEnvAction):  # the agent side checks first by default
            checked.step(np.array([0, 1, 0, 5]))
        checked.step(np.array([0, 1, 0, 1]))  # nothing was sent: still usable
    finally:
        checked.close()


def test_render_a_batch(cartpole: str) -> None:
    env = rlay.ClientVectorEnv(
        launch=[cartpole, "--listen", "{address}", "--num-envs", "2", "--render-mode", "rgb_array"],
        render_mode="rgb_array",
    )
    try:
        env.reset(options={"state": np.array([[-1.0, 0, 0, 0], [1.0, 0, 0.2, 0]])})
        frames = env.render()
        assert isinstance(frames, tuple) and len(frames) == 2
        for frame, x in zip(frames, (-1.0, 1.0), strict=True):
            assert frame.dtype == np.uint8 and frame.shape == (400, 600, 3)
            cols = np.nonzero(np.all(frame[:290] == 0, axis=2).any(axis=0))[0]  # the cart
            assert abs(cols.mean() - (x * 600 / 4.8 + 300)) < 3
    finally:
        env.close()


# -- under the sanitizers ------------------------------------------------------------------------


def test_a_batch_under_sanitizers(cartpole_asan: str) -> None:
    """The batched session (checks of each sub-env's action, batched replies, partial resets,
    CALL per sub-env, an INVALID_ACTION, a clean close) is ASan+UBSan clean and leak-free."""
    proc, address = start_listening(cartpole_asan, "--num-envs", str(N), env=SAN_ENV)
    env = rlay.ClientVectorEnv(address)
    ref = reference(N)
    try:
        compare(
            env, ref, 120, seed=4, partial={50: (np.array([True, False, False, True]), [None, None, None, 6])}
        )
    finally:
        env.close()
        ref.close()
    assert finish(proc) == ""
    proc, address = start_listening(cartpole_asan, "--num-envs", "3", env=SAN_ENV)
    session = AgentSession(dial(address, 10), handshake_timeout=10, timeout=10)
    try:
        session.request(Reset(0, None), "RESET")
        with pytest.raises(RemoteError, match="sub-env 0"):
            session.request(Step(np.array([9, 0, 0])), "STEP")
        with pytest.raises(RemoteError, match="one per sub-env"):
            session.request(Reset([1, 2], None), "RESET")
    finally:
        session.close()
    assert "BAD_FIELD" in finish(proc, 1)


# -- no orphans ----------------------------------------------------------------------------------

LAUNCHING_TRAINER = """
import sys, time, rlay
from rlay.launch import Process, SocketDir
program = sys.argv[1]
env = rlay.make_vec([program, "--listen", "{address}", "--num-envs", "4"], num_processes=2)
env.reset(seed=0)
waiting = Process([program, "--listen", "{address}"], SocketDir().address())  # never dialled
print("PIDS", *[p.pid for p in env.processes], waiting.pid, flush=True)
time.sleep(60)
"""

DIALLING_TRAINER = """
import sys, time, rlay
env = rlay.ClientVectorEnv(sys.argv[1])
env.reset(seed=0)
print("READY", flush=True)
time.sleep(60)
"""


def kill_trainer(script: str, *args: str) -> list[int]:
    """Runs ``script``, reads its first line, kills it with SIGKILL; returns the line's ints."""
    trainer = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert trainer.stdout is not None
        # (launched programs share its stdout: skip their RLAY_LISTENING lines)
        line = next(line for line in trainer.stdout if line.startswith(("PIDS", "READY")))
        trainer.kill()
        trainer.wait(10)
        return [int(word) for word in line.split()[1:]]
    finally:
        trainer.kill()


def test_kill_9_of_a_trainer_leaves_no_c_program_alive(cartpole: str) -> None:
    """Connected batches and a launched program that never got a connection all end."""
    pids = kill_trainer(LAUNCHING_TRAINER, cartpole)
    assert len(pids) == 3
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if alive(pid)], "a C env program outlived its trainer"


def test_the_c_side_exits_when_its_connection_closes(cartpole: str) -> None:
    """Not launched by rlay (no parent-death signal): the C program exits by itself, with code 0,
    when the trainer that dialled it dies without a CLOSE."""
    proc, address = start_listening(cartpole, "--num-envs", str(N))
    try:
        kill_trainer(DIALLING_TRAINER, address)
        finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
