"""Training proof: PPO (Stable-Baselines3) learns the C CartPole through rlay.

    python examples/train_cartpole.py [--timesteps N] [--envs N] [--program PATH] [--batched]

Each sub-env is a real env program launched and stepped through rlay.ClientEnv: by default the
C CartPole (sdk/c/examples/cartpole.c); ``--program sdk/<lang>/bin/cartpole`` trains on another
SDK's CartPole (every SDK's entry point takes ``--listen ADDRESS``, see sdk/README.md).
``--batched`` runs one program hosting all ``--envs`` CartPoles as batched sub-envs (spec §10),
handed to SB3 through ``rlay.sb3.SB3VecEnv``; without it, one program per env (SB3's
DummyVecEnv of ``rlay.ClientEnv``s). Steps per second are printed for comparison.
Training stops once the mean return of the last 20 episodes reaches 475 (the
CartPole-v1 "solved" threshold, with 500-step truncation), then the policy is evaluated on fresh
C processes. Prints the learning curve and the result (steps, wall time, final return).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import deque
from typing import Any

import numpy as np

import rlay
from rlay.progress import progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "sdk", "c", "examples", "cartpole.c")
BINARY = os.path.join(ROOT, "sdk", "c", "build", "train-cartpole")
SOLVED = 475.0


def build() -> str:
    os.makedirs(os.path.dirname(BINARY), exist_ok=True)
    subprocess.run(["gcc", "-std=c99", "-O2", "-o", BINARY, SOURCE, "-lm"], check=True)
    return BINARY


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timesteps", type=int, default=300_000, help="budget (stops earlier when solved)")
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--program", help="an SDK's CartPole entry point (default: the C one, built here)")
    parser.add_argument("--batched", action="store_true", help="one program hosting every env (spec §10)")
    parser.add_argument(
        "--progress", action="store_true", help="draw a progress bar even when not on a terminal"
    )
    args = parser.parse_args()
    try:
        import torch
        from stable_baselines3 import PPO
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.monitor import Monitor
        from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

        from rlay.sb3 import SB3VecEnv
    except ImportError as exc:
        raise SystemExit(f"{exc}: install the SB3 extra: pip install -e '.[sb3]'") from None

    torch.set_num_threads(1)
    cartpole = os.path.abspath(args.program) if args.program else build()
    which = os.path.relpath(cartpole, ROOT)

    def make_env() -> Any:
        return Monitor(rlay.ClientEnv(launch=[cartpole, "--listen", "{address}"]))

    venv: Any
    if args.batched:
        launch = [cartpole, "--listen", "{address}", "--num-envs", str(args.envs)]
        venv = VecMonitor(SB3VecEnv(rlay.make_vec(launch)))
        how = f"1 process hosting {args.envs} batched sub-envs"
    else:
        venv = DummyVecEnv([make_env] * args.envs)
        how = f"{args.envs} processes"
    venv.seed(args.seed)

    class Curve(BaseCallback):
        """Prints the learning curve; stops training once solved."""

        def __init__(self) -> None:
            super().__init__()
            self.returns: deque[float] = deque(maxlen=20)
            self.episodes = 0
            self.started = time.perf_counter()
            self.next_print = 0
            # a bar on a terminal (tqdm if installed); the curve's lines print above it
            self.bar = progress(args.timesteps, "training", show=args.progress or None)
            self.shown = 0

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
                    self.episodes += 1
            mean = float(np.mean(self.returns)) if self.returns else 0.0
            if self.num_timesteps >= self.next_print:
                self.next_print += 10_000
                elapsed = time.perf_counter() - self.started
                self.bar.write(
                    f"  {self.num_timesteps:7d} steps  {elapsed:6.1f} s  episodes {self.episodes:5d}"
                    f"  mean return (last 20) {mean:6.1f}",
                )
            self.bar.update(self.num_timesteps - self.shown)
            self.shown = self.num_timesteps
            self.bar.set_postfix_str(f"mean return {mean:.1f}")
            return not (len(self.returns) == self.returns.maxlen and mean >= SOLVED)

    # Hyperparameters of the RL Baselines3 Zoo for CartPole-v1.
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=lambda p: 0.001 * p,
        clip_range=lambda p: 0.2 * p,
        seed=args.seed,
        verbose=0,
        device="cpu",
    )
    print(f"PPO on {which} through rlay: {how}, budget {args.timesteps} steps")
    venv.reset()
    rollout, started = 0, time.perf_counter()
    while rollout < 20_000:  # the env alone, as SB3 steps it (random actions)
        venv.step(np.array([venv.action_space.sample() for _ in range(args.envs)]))
        rollout += args.envs
    rate = rollout / (time.perf_counter() - started)
    print(f"env steps alone, through SB3's VecEnv API: {rate:,.0f} steps/s ({how})")
    venv.seed(args.seed)
    curve = Curve()
    started = time.perf_counter()
    model.learn(total_timesteps=args.timesteps, callback=curve)
    curve.bar.close()
    train_time = time.perf_counter() - started
    venv.close()
    mean_train = float(np.mean(curve.returns)) if curve.returns else 0.0
    print(
        f"training: {model.num_timesteps} steps, {train_time:.1f} s ({model.num_timesteps / train_time:,.0f} "
        f"steps/s with learning), mean return of the last 20 episodes {mean_train:.1f}"
    )

    env = rlay.ClientEnv(launch=[cartpole, "--listen", "{address}"])
    returns = []
    for episode in range(10):
        obs, _ = env.reset(seed=1000 + episode)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    final = float(np.mean(returns))
    print(
        f"evaluation on fresh processes: mean return {final:.1f} over 10 episodes "
        f"(min {min(returns):.0f}, max {max(returns):.0f})"
    )
    solved = mean_train >= SOLVED and final >= SOLVED
    print("SOLVED" if solved else "NOT SOLVED")
    return 0 if solved else 1


if __name__ == "__main__":
    sys.exit(main())
