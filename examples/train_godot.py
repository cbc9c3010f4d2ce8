"""Training proof for the Godot addon: PPO (Stable-Baselines3) learns Puck, a Godot 3 game whose
puck is a RigidBody2D simulated by the engine's own 2D physics (examples/godot_puck/).

    python examples/train_godot.py [--timesteps N] [--engines N] [--target R] [--stop R]

``rlay.make_vec(..., server=True)`` launches N headless engines (godot3-server) that dial in,
the Godot way: the game's RlayEnv node connects to the Python ServerEnv. Each engine runs with
``--fixed-fps 15`` at 60 physics ticks per second of game time: one engine iteration is the 4
physics ticks of one env step, with no real-time sync (as fast as the CPU goes). The stated
score is a mean return of ``--target`` (default 10: the puck reaches its target, +10, in
nearly every episode; a random policy scores about -2 and never reaches it).

Training stops once the mean return of the last 50 episodes reaches ``--stop`` (default 12,
above the target so that the evaluation is not decided by a lucky streak); the run passes when
the deterministic policy's mean return over 20 evaluation episodes on fresh engines reaches
``--target`` (exit status 0, else 1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections import deque
from typing import Any

import numpy as np

import rlay
from rlay.progress import progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GAME = os.path.join(ROOT, "examples", "godot_puck")


def engines(n: int) -> Any:
    godot = shutil.which("godot3-server")
    if godot is None:
        raise SystemExit("godot3-server is not installed (scripts/setup-system.sh installs it)")
    launch = [godot, "--no-window", "--fixed-fps", "15", "--path", GAME]
    return rlay.make_vec(
        launch, n, server=True, address="tcp://127.0.0.1:0", autoreset_mode="same_step", accept_timeout=60
    )


def sb3_vec_env(venv: Any) -> Any:
    """A gymnasium VectorEnv (same-step autoreset) as a Stable-Baselines3 VecEnv."""
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv

    class Adapter(VecEnv):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
            self.actions: Any = None

        def reset(self) -> Any:
            obs, _ = venv.reset(seed=self._seeds[0] if self._seeds and self._seeds[0] is not None else None)
            self._seeds = []
            return np.array(obs)

        def step_async(self, actions: Any) -> None:
            self.actions = actions

        def step_wait(self) -> Any:
            obs, reward, terminated, truncated, info = venv.step(self.actions)
            obs = np.array(obs)
            dones = np.logical_or(terminated, truncated)
            infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = np.array(info["final_obs"][i])
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            return obs, np.asarray(reward, dtype=np.float32), dones, infos

        def close(self) -> None:
            venv.close()

        def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
            return [None] * self.num_envs

        def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
            pass

        def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
            return [None] * self.num_envs

        def env_is_wrapped(self, wrapper_class: Any, indices: Any = None) -> list[bool]:
            return [False] * self.num_envs

    return Adapter()


def main() -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--timesteps", type=int, default=300_000, help="budget (stops earlier at --stop)")
    parser.add_argument("--engines", type=int, default=4, help="headless Godot engines")
    parser.add_argument("--target", type=float, default=10.0, help="mean evaluation return to pass")
    parser.add_argument("--stop", type=float, default=12.0, help="stop at this mean of the last 50 episodes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--progress", action="store_true", help="draw a progress bar even when not on a terminal"
    )
    args = parser.parse_args()
    try:
        import torch
        from stable_baselines3 import PPO
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.vec_env import VecMonitor
    except ImportError as exc:
        raise SystemExit(f"{exc}: install the training extra: pip install torch stable-baselines3") from None

    torch.set_num_threads(1)
    started = time.perf_counter()
    venv = VecMonitor(sb3_vec_env(engines(args.engines)))
    print(f"{args.engines} headless engines up in {time.perf_counter() - started:.1f} s", flush=True)
    venv.seed(args.seed)

    class Curve(BaseCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.returns: deque[float] = deque(maxlen=50)
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
            mean = float(np.mean(self.returns)) if self.returns else float("nan")
            if self.num_timesteps >= self.next_print:
                self.next_print += 5_000
                elapsed = time.perf_counter() - self.started
                self.bar.write(
                    f"  {self.num_timesteps:7d} steps  {elapsed:6.1f} s  episodes {self.episodes:5d}"
                    f"  mean return (last 50) {mean:6.2f}",
                )
            self.bar.update(self.num_timesteps - self.shown)
            self.shown = self.num_timesteps
            self.bar.set_postfix_str(f"mean return {mean:.1f}")
            return not (len(self.returns) == self.returns.maxlen and mean >= args.stop)

    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=256,
        batch_size=256,
        n_epochs=10,
        gamma=0.99,
        gae_lambda=0.95,
        learning_rate=3e-4,
        ent_coef=0.0,
        seed=args.seed,
        verbose=0,
        device="cpu",
    )
    print(f"PPO on Puck (Godot RigidBody2D) through rlay: budget {args.timesteps}, target {args.target}")
    curve = Curve()
    t0 = time.perf_counter()
    model.learn(total_timesteps=args.timesteps, callback=curve)
    curve.bar.close()
    train_time = time.perf_counter() - t0
    venv.close()
    mean_train = float(np.mean(curve.returns)) if curve.returns else float("nan")
    print(
        f"training: {model.num_timesteps} steps, {train_time:.1f} s "
        f"({model.num_timesteps / train_time:.0f} steps/s), "
        f"mean return of the last 50 episodes {mean_train:.2f}"
    )

    # Evaluation on fresh engines, deterministic policy, 20 episodes.
    env = engines(2)
    returns: list[float] = []
    reached = 0
    obs, _ = env.reset(seed=1000)
    acc = np.zeros(env.num_envs)
    while len(returns) < 20:
        action, _ = model.predict(np.array(obs), deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(action)
        acc += reward
        for i in np.flatnonzero(np.logical_or(terminated, truncated)):
            returns.append(float(acc[i]))
            reached += int(terminated[i])
            acc[i] = 0.0
    env.close()
    mean_eval = float(np.mean(returns[:20]))
    print(f"evaluation: 20 episodes on fresh engines, mean return {mean_eval:.2f}, reached {reached}/20")
    ok = mean_eval >= args.target
    print("RESULT:", "learned" if ok else "not learned", f"(target {args.target})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
