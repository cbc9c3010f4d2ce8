"""Small envs and helpers shipped for tests, benchmarks and SDK authors."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class TrivialEnv(gym.Env[np.ndarray, np.int64]):
    """The benchmark env: obs 4×float32, ``Discrete(2)``, constant dynamics, episodes of 1000 steps.

    It does as little as an env can, so that a benchmark measures the transport and the codec.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 30}

    def __init__(self, render_mode: str | None = None, episode_length: int = 1000) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.render_mode = render_mode
        self.episode_length = episode_length
        self._obs = np.zeros(4, dtype=np.float32)
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        self._obs = self.np_random.uniform(-0.05, 0.05, size=4).astype(np.float32)
        return self._obs, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._t += 1
        return self._obs, 1.0, False, self._t >= self.episode_length, {}

    def render(self) -> str | None:
        return f"t={self._t}" if self.render_mode == "ansi" else None
