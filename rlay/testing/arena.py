"""Arena: a small multi-agent game (spec §18) written twice, here in Python and in C
(``sdk/c/examples/arena.c``), so that the two can be compared step by step.

Three possible agents with different spaces; agents leave and one joins during an episode:

- ``hunter``: observation ``Box(-inf, inf, (3,), float32)`` = ``[t, base, score]``; action
  ``Discrete(4)``; reward 1.0 when the action equals ``(t + base) % 4``, else 0.0; truncated at
  ``t == 8``; info ``{"score": score}`` (a float).
- ``scout``: observation ``Box(-10, 10, (2,), float32)``, its position; action
  ``Box(-1, 1, (2,), float32)``, added to the position in float32 and clipped to ±10; reward
  ``-(|x| + |y|)``; terminated at ``t == 4``.
- ``medic``: joins at ``t == 2`` (that step's result has its first observation, reward 0.0, both
  flags false); observation ``Discrete(16)`` = ``t % 16``; action ``MultiDiscrete([3, 2])``; reward
  ``a[0] + a[1]``; terminated at ``t == 6``.

``reset(seed)``: ``t = 0``, ``base = seed % 100`` (a reset without a seed keeps the last base, 0
at first), position (0, 0), score 0, live agents ``[hunter, scout]``. A step's results hold every
agent live before it, then a joiner; the live agents after it are those whose flags are false.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

AGENTS = ("hunter", "scout", "medic")
OBSERVATION_SPACES = {
    "hunter": spaces.Box(-np.inf, np.inf, (3,), np.float32),
    "scout": spaces.Box(-10.0, 10.0, (2,), np.float32),
    "medic": spaces.Discrete(16),
}
ACTION_SPACES = {
    "hunter": spaces.Discrete(4),
    "scout": spaces.Box(-1.0, 1.0, (2,), np.float32),
    "medic": spaces.MultiDiscrete([3, 2]),
}


class Arena:
    """The Python Arena, with PettingZoo's ``ParallelEnv`` API (PettingZoo not needed)."""

    metadata: dict[str, Any] = {"render_modes": [], "name": "arena_v0"}
    render_mode = None

    def __init__(self) -> None:
        self.possible_agents = list(AGENTS)
        self.agents: list[str] = []
        self.base = 0
        self.t = 0
        self.score = 0.0
        self.pos = np.zeros(2, np.float32)

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        # the same object every time (PettingZoo's API test checks it)
        return OBSERVATION_SPACES[agent]

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return ACTION_SPACES[agent]

    def _obs(self, agent: str) -> Any:
        if agent == "hunter":
            return np.array([self.t, self.base, self.score], np.float32)
        if agent == "scout":
            return self.pos.copy()
        return np.int64(self.t % 16)

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        if seed is not None:
            self.base = seed % 100
        self.t = 0
        self.score = 0.0
        self.pos = np.zeros(2, np.float32)
        self.agents = ["hunter", "scout"]
        return {a: self._obs(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        self.t += 1
        t = self.t
        rewards: dict[str, float] = {}
        for agent in self.agents:
            a = actions[agent]
            if agent == "hunter":
                r = 1.0 if int(a) == (t + self.base) % 4 else 0.0
                self.score += r
            elif agent == "scout":
                self.pos = np.clip(self.pos + np.asarray(a, np.float32), -10, 10).astype(np.float32)
                r = -(abs(float(self.pos[0])) + abs(float(self.pos[1])))
            else:
                r = float(int(a[0]) + int(a[1]))
            rewards[agent] = r
        keys = list(self.agents)
        if t == 2:
            keys.append("medic")
            rewards["medic"] = 0.0
        end = {"hunter": 8, "scout": 4, "medic": 6}
        terminations = {a: a != "hunter" and t == end[a] for a in keys}
        truncations = {a: a == "hunter" and t == end[a] for a in keys}
        obs = {a: self._obs(a) for a in keys}
        infos: dict[str, dict[str, Any]] = {a: {} for a in keys}
        if "hunter" in keys:
            infos["hunter"] = {"score": self.score}
        self.agents = [a for a in keys if not terminations[a] and not truncations[a]]
        return obs, rewards, terminations, truncations, infos

    def render(self) -> None:
        return None

    def close(self) -> None:
        pass
