"""RLlib proof: PPO (Ray RLlib) learns the C CartPole, each env runner launching its own programs.

    python examples/rllib_cartpole.py [--address auto] [--env-runners 2] [--envs-per-runner 4]
                                      [--processes] [--target 450] [--timesteps 400000]

Every RLlib env runner (a Ray actor, on whichever node of the cluster Ray puts it) builds its envs
with ``rlay.rllib.env_creator``, which launches the C CartPole (``sdk/c/examples/cartpole.c``,
bit-exact Gymnasium CartPole-v1) through rlay on a private unix socket: no port anywhere, and a
runner that dies takes its programs with it. By default one program per runner hosts all of the
runner's envs as batched sub-envs (spec §10); ``--processes`` starts one program per env instead.

``--address auto`` joins a cluster started with ``ray start`` (``make train-rllib`` starts a head
and a worker node on this machine); without it a local Ray instance is started (loopback only).
Training stops once the mean episode return reaches ``--target`` (450: RLlib's own CartPole-v1
bar); the policy is then played greedily on fresh C programs, and the programs left running by the
run are counted (there must be none). Prints the learning curve, the env steps per second, the
reward reached, the wall time, and which node each env runner ran on.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid

import rlay
import rlay.rllib
from rlay.progress import progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The variable every program launched by this run carries, to find any left behind.
MARK = "RLAY_RLLIB_RUN"


def build_cartpole() -> str:
    """The C CartPole, built once here (the runners all start the same binary)."""
    subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "sdk", "c"), "build/cartpole"], check=True)
    return os.path.join(ROOT, "sdk", "c", "build", "cartpole")


def marked_processes(run_id: str, program: str) -> list[int]:
    """Pids of ``program`` on this machine whose environment carries ``MARK=run_id`` (Linux /proc)."""
    needle = f"{MARK}={run_id}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/exe") != os.path.realpath(program):
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def ppo_config(program: str, args: argparse.Namespace, run_id: str):  # -> PPOConfig
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    launch = [program] if args.processes else [program, "--num-envs", rlay.rllib.NUM_ENVS]
    return (
        PPOConfig()
        .environment("rlay", env_config={"launch": launch, "launch_env": {MARK: run_id}})
        .env_runners(
            num_env_runners=args.env_runners,
            num_envs_per_env_runner=args.envs_per_runner,
            gym_env_vectorize_mode="vector_entry_point",  # all of a runner's envs at once
            num_cpus_per_env_runner=args.cpus_per_runner,
        )
        # RLlib's tuned CartPole-v1 PPO (rllib/examples/algorithms/ppo/cartpole_ppo.py).
        .training(lr=0.0003, num_epochs=6, vf_loss_coeff=0.01)
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=[32], fcnet_activation="linear", vf_share_layers=True
            )
        )
        .debugging(seed=args.seed)
    )


def play(algo, program: str, episodes: int, seed: int) -> list[float]:
    """Greedy episodes of the trained policy on a fresh C program, stepped from this process."""
    import numpy as np
    import torch

    module = algo.get_module()
    env = rlay.ClientEnv(launch=[program])
    returns = []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            total, done = 0.0, False
            while not done:
                with torch.no_grad():
                    out = module.forward_inference({"obs": torch.from_numpy(np.array(obs)[None])})
                action = int(out["action_dist_inputs"][0].argmax())
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return returns


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--address", help="a Ray cluster to join ('auto': the one `ray start` started)")
    parser.add_argument("--env-runners", type=int, default=2)
    parser.add_argument("--envs-per-runner", type=int, default=4)
    parser.add_argument("--cpus-per-runner", type=float, default=1.0)
    parser.add_argument("--processes", action="store_true", help="one program per env, not one per runner")
    parser.add_argument("--target", type=float, default=450.0, help="mean episode return to reach")
    parser.add_argument("--timesteps", type=int, default=400_000, help="budget (stops earlier at the target)")
    parser.add_argument("--iterations", type=int, default=0, help="stop after N iterations (0: no limit)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--progress", action="store_true", help="draw a progress bar even when not on a terminal"
    )
    parser.add_argument("--torch-threads", type=int, default=1, help="of the learner, in this process")
    parser.add_argument("--program", help="the CartPole env program (default: the C one, built here)")
    args = parser.parse_args()
    try:
        import ray
    except ImportError as exc:
        raise SystemExit(f"{exc}: install the RLlib extra: pip install -e '.[rllib]'") from None

    # The learner runs in this process (num_learners=0). On a small machine shared with other work,
    # torch's intra-op threads spin against each other: 1 thread learned 17x faster here (2 cores,
    # load 8: 0.9 s against 15.6 s per iteration).
    import torch

    torch.set_num_threads(args.torch_threads)
    program = os.path.abspath(args.program) if args.program else build_cartpole()
    load_before = os.getloadavg()[0]
    run_id = uuid.uuid4().hex
    started = time.perf_counter()
    if args.address:
        ray.init(address=args.address, logging_level="WARNING")
    else:  # a local instance: loopback only, small (2 shared cores here)
        ray.init(
            num_cpus=args.env_runners * args.cpus_per_runner + 1,
            object_store_memory=200 * 1024**2,
            include_dashboard=False,
            _node_ip_address="127.0.0.2",  # loopback (Ray replaces 127.0.0.1 by the outward address)
            logging_level="WARNING",
        )
    nodes = [node for node in ray.nodes() if node["Alive"]]
    print(f"ray cluster: {len(nodes)} node(s), {ray.cluster_resources().get('CPU', 0):g} CPUs", flush=True)
    rlay.rllib.register("rlay")
    algo = ppo_config(program, args, run_id).build_algo()
    where = algo.env_runner_group.foreach_env_runner(
        lambda runner: (runner.worker_index, os.getpid(), ray.get_runtime_context().get_node_id()),
        local_env_runner=False,
    )
    for index, pid, node in sorted(where):
        print(f"env runner {index}: pid {pid} on node {node[:12]}", flush=True)
    print(
        f"{len(marked_processes(run_id, program))} rlay-launched programs running on this machine", flush=True
    )

    how = "one program per env" if args.processes else "one program per runner, batched sub-envs"
    print(
        f"PPO on {os.path.relpath(program, ROOT)}: {args.env_runners} runners x "
        f"{args.envs_per_runner} envs, {how}",
        flush=True,
    )
    train_started = time.perf_counter()
    ret, steps, iteration, sample_s = float("nan"), 0, 0, float("nan")
    # a bar on a terminal (tqdm if installed); the curve's lines print above it
    bar = progress(args.timesteps, "training", show=args.progress or None)
    try:
        while steps < args.timesteps and not (args.iterations and iteration >= args.iterations):
            result = algo.train()
            iteration += 1
            runners = result["env_runners"]
            bar.update(int(result["num_env_steps_sampled_lifetime"]) - steps)
            steps = int(result["num_env_steps_sampled_lifetime"])
            ret = float(runners.get("episode_return_mean", float("nan")))
            # RLlib's timers are running means over the recent iterations, not this one's.
            sample_s = float(result["timers"]["env_runner_sampling_timer"])
            learn_s = float(result["timers"]["learner_update_timer"])
            elapsed = time.perf_counter() - train_started
            bar.write(
                f"iter {iteration:3d}  steps {steps:7d}  return {ret:6.1f}  "
                f"{steps / elapsed:6.0f} steps/s  ({elapsed:.0f} s; per iteration: "
                f"sampling {sample_s:.1f} s, learning {learn_s:.1f} s)"
            )
            bar.set_postfix_str(f"mean return {ret:.1f}")
            if ret >= args.target:
                break
        bar.close()
        train_s = time.perf_counter() - train_started
        solved = ret >= args.target
        greedy = play(algo, program, 5, seed=1000) if solved else []
    finally:
        algo.stop()
    left = marked_processes(run_id, program)
    ray.shutdown()
    wall = time.perf_counter() - started
    print()
    print(f"command: {' '.join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])}")
    print(f"reward reached: {ret:.1f} (target {args.target:g}), {steps} env steps, {iteration} iterations")
    per_iteration = steps / max(iteration, 1)
    print(
        f"env steps/s: {steps / train_s:.0f} overall (sampling and learning); "
        f"{per_iteration / max(sample_s, 1e-9):.0f} while sampling (RLlib's mean sampling time)"
    )
    print(f"wall time: {train_s:.0f} s training, {wall:.0f} s in all (Ray start and stop included)")
    print(
        f"load average (1 min) on this machine's {os.cpu_count()} cores: {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end (other work shares the cores)"
    )
    if greedy:
        print(f"greedy policy on fresh C programs: returns {[round(r) for r in greedy]}")
    print(f"rlay-launched programs left running after the algorithm stopped: {len(left)}")
    if left:
        print(f"ORPHANS: {left}", file=sys.stderr)
        return 1
    return 0 if solved else 1


if __name__ == "__main__":
    sys.exit(main())
