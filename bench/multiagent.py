"""Multi-agent steps per second (spec §18): the C arena (sdk/c/examples/arena.c, three agents, two
leave and one joins in each 8-step episode) through rlay.pettingzoo.ClientParallelEnv, resets
included. Run from the repository root: ``python bench/multiagent.py [SECONDS]``."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from rlay.pettingzoo import ClientParallelEnv


def main(seconds: float) -> None:
    subprocess.run(["make", "-s", "-C", "sdk/c", "build/arena"], check=True)
    env = ClientParallelEnv(launch=["sdk/c/build/arena"])
    actions = {"hunter": 1, "scout": np.zeros(2, np.float32), "medic": np.array([1, 1])}
    steps = episodes = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.reset(seed=episodes)
        episodes += 1
        while env.agents:
            env.step({a: actions[a] for a in env.agents})
            steps += 1
    elapsed = time.perf_counter() - start
    env.close()
    print(f"{steps} steps ({episodes} episodes) in {elapsed:.2f} s: {steps / elapsed:,.0f} steps/s")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
