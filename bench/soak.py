"""Soak: millions of steps, with memory and descriptors of both processes sampled and checked flat.

    python bench/soak.py [--steps 10000000] [--env c|python|both] [--num-envs 1] [--samples 20]

For each env side — ``c``: the C SDK's CartPole (sdk/c/build/cartpole), ``python``: ``rlay serve
CartPole-v1`` (a Python env side) — rlay launches the program and a Python agent steps it
``--steps`` times (a ``ClientEnv``; with ``--num-envs N`` the program hosts N batched sub-envs
behind a ``ClientVectorEnv`` and steps count sub-env steps), resetting each ended episode. Every
``steps / samples`` steps it reads, from /proc, the resident memory (VmRSS) and the number of
open descriptors of the agent (this process) and of the env program, and prints a table row.

Flat means: after the warm-up (the first sample, at ``steps / samples`` steps), descriptors never
change and resident memory grows by at most ``--rss-slack`` MiB (default 4) on either side. The
exit status is 0 if every run was flat, 1 if not. ``make soak`` runs 10**7 steps on both env
sides; the test suite runs the short cousins (tests/test_cycles.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

import rlay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RLAY = os.path.join(os.path.dirname(sys.executable), "rlay")
HEAD = [("steps", 12), ("seconds", 8), ("avg st/s", 9), ("agent RSS", 10), ("fds", 4)]
HEAD += [("env RSS", 10), ("fds", 4)]


def rss_kib(pid: int | str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def fds(pid: int | str) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def command(env: str, num_envs: int) -> list[str]:
    if env == "c":
        subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "sdk", "c"), "build/cartpole"], check=True)
        cmd = [os.path.join(ROOT, "sdk", "c", "build", "cartpole")]
        return cmd + (["--num-envs", str(num_envs)] if num_envs > 1 else [])
    cmd = [RLAY, "serve", "CartPole-v1", "--address", "{address}"]
    return cmd + (["--num-envs", str(num_envs)] if num_envs > 1 else [])


def soak(env_name: str, steps: int, num_envs: int, samples: int, slack_mib: float) -> bool:
    cmd = command(env_name, num_envs)
    env: Any = rlay.ClientEnv(launch=cmd) if num_envs == 1 else rlay.make_vec(cmd, 1)
    pid = (env.process if num_envs == 1 else env.processes[0]).pid  # the program, not a wrapper
    every = max(1, steps // samples)
    rows: list[tuple[int, float, int, int, int, int]] = []
    print(f"\n== {env_name} env side ({' '.join(cmd)}), {steps:,} steps, {num_envs} sub-env(s) per step")
    print(" ".join(name.rjust(width) for name, width in HEAD))
    start = time.perf_counter()
    done = 0
    episodes = 0
    try:
        env.reset(seed=0)
        first = _sample(0, start, pid)  # before any step: shows what the warm-up costs
        if num_envs == 1:
            action = 0
            while done < steps:
                for _ in range(every):
                    _, _, terminated, truncated, _ = env.step(action)
                    action ^= 1
                    if terminated or truncated:
                        env.reset()
                        episodes += 1
                done += every
                rows.append(_sample(done, start, pid))
        else:
            actions = np.zeros(num_envs, dtype=np.int64)
            per = max(1, every // num_envs)
            while done < steps:
                for _ in range(per):
                    _, _, terminated, truncated, _ = env.step(actions)
                    actions ^= 1
                    episodes += int(np.count_nonzero(terminated | truncated))
                done += per * num_envs
                rows.append(_sample(done, start, pid))
    finally:
        env.close()
    base, last = rows[0], rows[-1]
    fds_flat = all(r[3] == base[3] and r[5] == base[5] for r in rows)
    agent_growth = (max(r[2] for r in rows) - base[2]) / 1024
    env_growth = (max(r[4] for r in rows) - base[4]) / 1024
    flat = fds_flat and agent_growth <= slack_mib and env_growth <= slack_mib
    print(
        f"{episodes:,} episodes; before stepping: agent RSS {first[2] / 1024:.1f} MiB, env RSS "
        f"{first[4] / 1024:.1f} MiB; after warm-up (row 1): agent RSS {base[2] / 1024:.1f} -> "
        f"{last[2] / 1024:.1f} MiB (peak growth {agent_growth:+.2f}), env RSS {base[4] / 1024:.1f} -> "
        f"{last[4] / 1024:.1f} MiB (peak growth {env_growth:+.2f}), fds agent {base[3]} -> {last[3]}, "
        f"env {base[5]} -> {last[5]}: {'FLAT' if flat else 'NOT FLAT'}"
    )
    return flat


def _sample(done: int, start: float, pid: int) -> tuple[int, float, int, int, int, int]:
    elapsed = time.perf_counter() - start
    row = (done, elapsed, rss_kib("self"), fds("self"), rss_kib(pid), fds(pid))
    print(
        f"{done:>12,} {elapsed:>8.1f} {done / max(elapsed, 1e-9):>9,.0f} "
        f"{row[2] / 1024:>7.1f} MiB {row[3]:>4} {row[4] / 1024:>7.1f} MiB {row[5]:>4}",
        flush=True,
    )
    return row


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000_000)
    parser.add_argument("--env", choices=("c", "python", "both"), default="both")
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--rss-slack", type=float, default=4.0, help="allowed RSS growth, MiB")
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("soak reads /proc: Linux only", file=sys.stderr)
        return 2
    names = ("c", "python") if args.env == "both" else (args.env,)
    results = [soak(name, args.steps, args.num_envs, args.samples, args.rss_slack) for name in names]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
