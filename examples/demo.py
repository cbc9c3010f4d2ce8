"""rlay's main job in one run: a C program becomes a Gymnasium env, stepped from Python both ways.

    python examples/demo.py [--steps N]

1. Compiles sdk/c/examples/cartpole.c (CartPole-v1 with Gymnasium's exact dynamics) with gcc.
2. ClientEnv: launches it listening on a fresh unix socket, dials it, plays episodes.
3. ServerEnv: listens on a free TCP port, launches it to dial in, plays episodes.
4. Checks one episode against Gymnasium's own CartPole-v1 started from the same state.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

import gymnasium as gym
import numpy as np

import rlay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "sdk", "c", "examples", "cartpole.c")
BINARY = os.path.join(ROOT, "sdk", "c", "build", "demo-cartpole")


def build() -> str:
    os.makedirs(os.path.dirname(BINARY), exist_ok=True)
    command = ["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-o", BINARY, SOURCE, "-lm"]
    print("$", " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in command))
    subprocess.run(command, check=True)
    return BINARY


def policy(obs: np.ndarray) -> int:
    """A hand-written controller: push the cart towards where the pole is falling."""
    _, x_dot, theta, theta_dot = obs
    return int(theta + 0.5 * theta_dot + 0.01 * x_dot > 0)


def play(env: gym.Env[Any, Any], steps: int, label: str) -> None:
    """Episodes with the controller, and a random action 15% of the time so that some fail."""
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=1)
    episode_return, episodes, length = 0.0, 0, 0
    started = time.perf_counter()
    for _ in range(steps):
        action = policy(obs) if rng.random() > 0.15 else int(rng.integers(2))
        obs, reward, terminated, truncated, _ = env.step(action)
        episode_return += float(reward)
        length += 1
        if terminated or truncated:
            episodes += 1
            if episodes <= 5:
                end = "truncated at 500" if truncated else "pole fell"
                print(f"  episode {episodes}: return {episode_return:5.0f} in {length} steps ({end})")
            obs, _ = env.reset()
            episode_return, length = 0.0, 0
    elapsed = time.perf_counter() - started
    print(f"  {label}: {steps} steps, {episodes} episodes, {steps / elapsed:,.0f} steps/s")


def same_as_gymnasium(env: gym.Env[Any, Any]) -> None:
    """Start both from Gymnasium's initial state, apply the same actions, compare everything."""
    ref = gym.make("CartPole-v1")
    ref_obs, _ = ref.reset(seed=42)
    obs, _ = env.reset(seed=42, options={"state": np.asarray(ref.unwrapped.state, dtype=np.float64)})
    steps = 0
    while True:
        action = policy(ref_obs)
        ref_obs, ref_r, ref_term, ref_trunc, _ = ref.step(action)
        obs, r, term, trunc, _ = env.step(action)
        steps += 1
        if not (np.array_equal(obs, ref_obs) and r == ref_r and term == ref_term and trunc == ref_trunc):
            raise SystemExit(f"the C CartPole differs from Gymnasium's at step {steps}: {obs} vs {ref_obs}")
        if ref_term or ref_trunc:
            break
    print(f"  identical to gymnasium's CartPole-v1 over a {steps}-step episode (observations bit for bit)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20000)
    args = parser.parse_args()
    cartpole = build()

    print("\nClientEnv: the C program listens (on a fresh unix socket), Python dials it")
    env: gym.Env[Any, Any] = rlay.ClientEnv(launch=[cartpole, "--listen", "{address}"])
    print(f"  connected to {env.address}: {env.env_name}, action space {env.action_space}")
    same_as_gymnasium(env)
    play(env, args.steps, "ClientEnv")
    env.close()

    print("\nServerEnv: Python listens (on a free TCP port), the C program dials in")
    env = rlay.ServerEnv("tcp://127.0.0.1:0", launch=[cartpole, "--connect", "{address}"])
    print(f"  the C program connected to {env.address}")
    play(env, args.steps, "ServerEnv")
    env.close()
    print("\nboth env processes have exited; nothing is left running")


if __name__ == "__main__":
    sys.exit(main())
