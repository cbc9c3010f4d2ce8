"""Batched sub-envs in the JavaScript SDK (spec §10): sdk/js/bin/cartpole --num-envs N against
Gymnasium's own ``SyncVectorEnv([CartPole-v1] * N, autoreset_mode=NEXT_STEP)``, beyond the shared
harness's plain run: partial resets with per-sub-env seeds, a partial reset clearing a pending
autoreset, the state option, CALL and RENDER per sub-env, and the SDK's per-sub-env action check.
Everything must be equal, not close.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import require_tool
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import rlay
from rlay.errors import EnvSideFailed, RemoteError

ROOT = Path(__file__).resolve().parents[2]
CARTPOLE = str(ROOT / "sdk" / "js" / "bin" / "cartpole")
N = 4


@pytest.fixture(scope="module", autouse=True)
def node() -> str:
    return require_tool("node")


def reference(n: int) -> SyncVectorEnv:
    return SyncVectorEnv([lambda: gym.make("CartPole-v1")] * n, autoreset_mode=AutoresetMode.NEXT_STEP)


def ref_states(ref: SyncVectorEnv) -> np.ndarray:
    envs: list[Any] = list(ref.envs)
    return np.stack([np.asarray(env.unwrapped.state, dtype=np.float64) for env in envs])


def same(a: Any, b: Any, where: str) -> None:
    """a == b exactly: type, dtype, shape and bytes."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), (where, a, b)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), (where, a, b)
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
    """Sub-envs 0 and 1 balance the pole (their episodes reach the truncation), the others act
    at random (they terminate within a few dozen steps)."""
    x, x_dot, theta, theta_dot = states.T
    balance = (theta + 0.5 * theta_dot + 0.01 * x + 0.05 * x_dot > 0).astype(np.int64)
    actions = rng.integers(0, 2, len(states))
    actions[:2] = balance[:2]
    return actions


def compare(
    env: Any, ref: SyncVectorEnv, steps: int, seed: int | None, partial: dict[int, Any]
) -> tuple[int, int]:
    same(env.reset(seed=seed), ref.reset(seed=seed), "reset")
    rng = np.random.default_rng(seed)
    terminations = truncations = 0
    for t in range(steps):
        actions = actions_for(ref_states(ref), rng)
        got, want = env.step(actions), ref.step(actions)
        same(got, want, f"step {t}")
        terminations += int(want[2].sum())
        truncations += int(want[3].sum())
        if t % 50 == 0:
            same(np.stack(env.call("get_state")), ref_states(ref), f"state after step {t}")
        if t in partial:
            mask, seeds = partial[t]
            got_reset = env.reset(seed=seeds, options={"reset_mask": mask})
            same(got_reset, ref.reset(seed=seeds, options={"reset_mask": mask}), f"partial reset after {t}")
    return terminations, truncations


def test_batch_with_partial_resets_matches_sync_vector_env() -> None:
    env = rlay.ClientVectorEnv(launch=[CARTPOLE, "--listen", "{address}", "--num-envs", str(N)])
    ref = reference(N)
    try:
        assert env.num_envs == N and env.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
        assert env.observation_space == ref.observation_space and env.action_space == ref.action_space
        partial = {
            120: (np.array([True, False, True, False]), [31, None, None, None]),
            300: (np.array([False, False, True, True]), [None, None, 8, None]),
        }
        terminations, truncations = compare(env, ref, 560, seed=11, partial=partial)
        assert terminations >= 10 and truncations >= 1, (terminations, truncations)
        same(env.reset(), ref.reset(), "unseeded reset")  # both streams go on
    finally:
        env.close()
        ref.close()


def test_a_partial_reset_clears_the_pending_autoreset() -> None:
    env = rlay.ClientVectorEnv(launch=[CARTPOLE, "--listen", "{address}", "--num-envs", str(N)])
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
        same(env.reset(options={"reset_mask": mask}), ref.reset(options={"reset_mask": mask}), "partial")
        actions = rng.integers(0, 2, N)
        got, want = env.step(actions), ref.step(actions)
        same(got, want, "step after the partial reset")
        assert np.all(got[1][mask] == 1.0), "the reset sub-envs are stepped, not autoreset"
    finally:
        env.close()
        ref.close()


def test_state_option_call_and_render_per_sub_env() -> None:
    env = rlay.ClientVectorEnv(
        launch=[CARTPOLE, "--listen", "{address}", "--num-envs", "2", "--render-mode", "rgb_array"],
        render_mode="rgb_array",
    )
    try:
        states = np.array([[-1.0, 0, 0, 0], [1.0, 0, 0.2, 0]])
        obs, _ = env.reset(options={"state": states})
        assert obs.tobytes() == states.astype(np.float32).tobytes()
        got = env.call("get_state")
        assert len(got) == 2 and all(g.tobytes() == s.tobytes() for g, s in zip(got, states, strict=True))
        frames = env.render()
        assert isinstance(frames, tuple) and len(frames) == 2
        for frame, x in zip(frames, (-1.0, 1.0), strict=True):
            assert frame.dtype == np.uint8 and frame.shape == (400, 600, 3)
            cols = np.nonzero(np.all(frame[:290] == 0, axis=2).any(axis=0))[0]  # the cart
            assert abs(cols.mean() - (x * 600 / 4.8 + 300)) < 3
        with pytest.raises(EnvSideFailed) as info:
            env.reset(options={"state": np.zeros(4)})
        cause: Any = info.value.cause
        assert cause.remote_type == "ValueError" and "(2, 4)" in cause.message
    finally:
        env.close()


def test_the_sdk_names_the_sub_env_of_a_bad_action() -> None:
    env = rlay.ClientVectorEnv(
        launch=[CARTPOLE, "--listen", "{address}", "--num-envs", str(N)], check_actions=False
    )
    try:
        env.reset(seed=0)
        with pytest.raises(EnvSideFailed, match="sub-env 3") as info:
            env.step(np.array([0, 1, 0, -1]))
        assert isinstance(info.value.cause, RemoteError) and info.value.cause.code_name == "INVALID_ACTION"
    finally:
        env.close()
