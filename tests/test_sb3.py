"""rlay.sb3.SB3VecEnv: Stable-Baselines3 takes rlay's vector envs, batched env sides included, and
sees exactly what its own DummyVecEnv of Gymnasium's CartPole-v1 shows (same seeds, same
actions): observations, rewards, dones, terminal observations, TimeLimit.truncated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import require_tool
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

import rlay
from rlay.errors import UsageError
from rlay.sb3 import SB3VecEnv

CARTPOLE = str(Path(__file__).resolve().parents[1] / "sdk" / "c" / "bin" / "cartpole")
N = 4


def balance(obs: np.ndarray) -> np.ndarray:
    return (obs[:, 2] + 0.5 * obs[:, 3] + 0.01 * obs[:, 0] + 0.05 * obs[:, 1] > 0).astype(np.int64)


def compare(ours: Any, ref: Any, steps: int) -> tuple[int, int]:
    ours.seed(7)
    ref.seed(7)
    a, b = ours.reset(), ref.reset()
    assert a.tobytes() == b.tobytes()
    rng = np.random.default_rng(0)
    terminated = truncated = 0
    for t in range(steps):
        # mostly balancing (so the 500-step truncation comes), sometimes random (terminations)
        actions = balance(b) if t % 600 < 520 else rng.integers(0, 2, size=N)
        a, ra, da, ia = ours.step(actions)
        b, rb, db, ib = ref.step(actions)
        assert a.tobytes() == b.tobytes(), t
        assert ra.dtype == rb.dtype and ra.tobytes() == rb.tobytes(), t
        assert da.tolist() == db.tolist(), t
        for i in np.flatnonzero(db):
            assert ia[i]["terminal_observation"].tobytes() == ib[i]["terminal_observation"].tobytes()
            assert ia[i]["TimeLimit.truncated"] == ib[i]["TimeLimit.truncated"], (t, i)
            truncated += ib[i]["TimeLimit.truncated"]
            terminated += not ib[i]["TimeLimit.truncated"]
    return terminated, truncated


def reference() -> DummyVecEnv:
    return DummyVecEnv([lambda: gym.make("CartPole-v1")] * N)


@pytest.mark.parametrize("how", ["batched-next-step", "processes-same-step"])
def test_sb3_sees_what_dummy_vec_env_shows(how: str) -> None:
    require_tool("gcc")
    if how == "batched-next-step":  # one C program hosting 4 sub-envs (it autoresets next-step)
        venv = rlay.make_vec([CARTPOLE, "--listen", "{address}", "--num-envs", str(N)])
    else:  # 4 C programs, this side autoresets in the same step
        venv = rlay.make_vec([CARTPOLE, "--listen", "{address}"], N, autoreset_mode="same_step")
    ours = SB3VecEnv(venv)
    ref = reference()
    try:
        assert ours.num_envs == N and ours.observation_space == ref.observation_space
        terminated, truncated = compare(ours, ref, 1300)
        assert terminated >= 4 and truncated >= 4, (terminated, truncated)
    finally:
        ours.close()
        ref.close()


def test_ppo_learns_through_the_adapter() -> None:
    """A short PPO run: the adapter is a VecEnv SB3 accepts, learning works (the return grows)."""
    require_tool("gcc")
    venv = VecMonitor(SB3VecEnv(rlay.make_vec([CARTPOLE, "--listen", "{address}", "--num-envs", "8"])))
    try:
        model = PPO("MlpPolicy", venv, n_steps=128, batch_size=256, seed=0, device="cpu", verbose=0)
        model.learn(4096)
        returns = [ep["r"] for ep in model.ep_info_buffer]
        assert len(returns) > 20 and np.mean(returns[-10:]) > np.mean(returns[:10]), returns
        assert venv.env_method("get_state")[0].shape == (4,)  # CALL on the sub-envs
        with pytest.raises(AttributeError, match="lives in the env program"):
            venv.get_attr("lives")
        venv.set_attr("gravity", 12.0, indices=[1])  # an attribute the env side offers (§19)
        assert venv.get_attr("gravity") == [9.8, 12.0] + [9.8] * 6
    finally:
        venv.close()


def test_a_vector_env_without_autoreset_is_refused() -> None:
    venv = rlay.make_vec([CARTPOLE, "--listen", "{address}"], 1, autoreset_mode="disabled")
    try:
        with pytest.raises(UsageError, match="reset themselves"):
            SB3VecEnv(venv)
    finally:
        venv.close()
