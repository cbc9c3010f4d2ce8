"""RLlib over rlay, with Ray (opt-in: ``make test-rllib``; pytest ``--rllib``; pyproject.toml says
why Ray is not in the dev extra). Selected, a missing Ray fails: it is never skipped.

Real Ray, real env runner actors, the real C CartPole launched by each runner through
``rlay.rllib.env_creator``; bounded: a few small PPO iterations, not a training run (that is
``make train-rllib``). The proof of "no orphans": ``kill -9`` of an env runner leaves none of its
programs running, RLlib's restarted runner launches fresh ones and training goes on, and after
the algorithm stops (and after ``ray stop`` on a ``ray start`` cluster) no program is left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool
from test_tls import Certs, make_ca, make_cert

import rlay.rllib

pytestmark = pytest.mark.rllib

try:
    import ray
except ImportError:  # selected without the extra: each test fails (below), none is skipped
    ray = None

ROOT = Path(__file__).resolve().parents[1]
MARK = "RLAY_RLLIB_TEST"


def need_ray() -> Any:
    if ray is None:
        pytest.fail(
            "ray is not installed: `make test-rllib` runs these tests in .venv-rllib (the rllib extra)"
        )
    return ray


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> str:
    require_tool("gcc")
    require_tool("make")
    out = tmp_path_factory.mktemp("rllib-cartpole")
    proc = subprocess.run(
        ["make", "-C", str(ROOT / "sdk" / "c"), f"OUT={out}", "CC=gcc", f"{out}/cartpole"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return str(out / "cartpole")


@pytest.fixture(scope="module")
def game(cartpole: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The C CartPole as a game that starts a helper process of its own (as engines do), which
    never connects to anything: only the launcher's process-group kill can end it."""
    script = tmp_path_factory.mktemp("rllib-game") / "game"
    script.write_text(f'#!/bin/sh\nsleep 600 &\nexec {cartpole} "$@"\n')
    script.chmod(0o755)
    return str(script)


@contextlib.contextmanager
def ray_session(**options: Any) -> Iterator[Any]:
    """A local Ray instance for one test: small, loopback, stopped afterwards."""
    ray = need_ray()
    import torch

    torch.set_num_threads(1)  # the learner runs in this process; 2 threads spin on a busy 2-core machine
    ray.init(
        num_cpus=3,
        object_store_memory=150 * 1024**2,
        include_dashboard=False,
        _node_ip_address="127.0.0.2",  # loopback; Ray replaces 127.0.0.1 by the outward address
        logging_level="WARNING",
        **options,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def local_ray() -> Iterator[Any]:
    with ray_session() as ray:
        yield ray


def programs(run: str, binary: str) -> dict[int, int]:
    """{pid: parent pid} of the running (not zombie) env programs started with ``MARK=run``."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/exe") != os.path.realpath(binary):
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                if f"{MARK}={run}".encode() not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            found[int(name)] = int(fields[1])
    return found


def ancestors(pid: int) -> set[int]:
    seen = set()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
        seen.add(pid)
    return seen


def wait_for(what: str, check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        time.sleep(0.1)


def small_ppo(program: str, run: str, runners: int = 2, envs: int = 2) -> Any:
    """PPO with small iterations (1000 env steps) over batched C CartPoles, one program per runner."""
    from ray.rllib.algorithms.ppo import PPOConfig

    rlay.rllib.register("rlay-test")
    return (
        PPOConfig()
        .environment(
            "rlay-test",
            env_config={"launch": [program, "--num-envs", rlay.rllib.NUM_ENVS], "launch_env": {MARK: run}},
        )
        .env_runners(
            num_env_runners=runners,
            num_envs_per_env_runner=envs,
            gym_env_vectorize_mode="vector_entry_point",
            num_cpus_per_env_runner=1,
        )
        .fault_tolerance(restart_failed_env_runners=True, delay_between_env_runner_restarts_s=0.0)
        .training(train_batch_size_per_learner=1000, minibatch_size=250, num_epochs=2, lr=0.0003)
        .debugging(seed=0)
    )


def test_runners_launch_their_programs_and_kill_9_of_a_runner_leaves_none(
    local_ray: Any, cartpole: str, game: str
) -> None:
    ray = local_ray
    run = uuid.uuid4().hex
    sleep = shutil.which("sleep") or "/bin/sleep"
    algo = small_ppo(game, run).build_algo()
    try:
        runners = dict(
            algo.env_runner_group.foreach_env_runner(
                lambda r: (r.worker_index, os.getpid()), local_env_runner=False
            )
        )
        assert sorted(runners) == [1, 2]
        # One program per runner (2 batched sub-envs each) with its helper, descendants of that
        # runner's process.
        wait_for("one program per runner", lambda: len(programs(run, cartpole)) == 2, 30)
        wait_for("a helper per program", lambda: len(programs(run, sleep)) == 2, 30)
        owner = {}
        for pid in [*programs(run, cartpole), *programs(run, sleep)]:
            (index,) = [i for i, runner in runners.items() if runner in ancestors(pid)]
            owner[pid] = index
        assert sorted(owner.values()) == [1, 1, 2, 2]

        result = algo.train()
        assert result["num_env_steps_sampled_lifetime"] >= 1000
        assert result["env_runners"]["num_episodes"] > 0
        assert result["env_runners"]["episode_return_mean"] > 0

        # kill -9 of runner 1: its program and the program's helper go; runner 2's stay.
        victim = runners[1]
        mine = {pid for pid, index in owner.items() if index == 1}
        os.kill(victim, signal.SIGKILL)

        def alive() -> set[int]:
            return set(programs(run, cartpole)) | set(programs(run, sleep))

        wait_for(f"the processes of the killed runner {mine} to exit", lambda: not mine & alive(), 15)
        assert alive() == set(owner) - mine

        # RLlib restarts the runner, which launches a fresh program; training goes on.
        steps = result["num_env_steps_sampled_lifetime"]
        for _ in range(5):
            result = algo.train()
            if len(programs(run, cartpole)) == 2 and result["fault_tolerance"]["num_healthy_workers"] == 2:
                break
        assert result["num_env_steps_sampled_lifetime"] > steps
        assert result["fault_tolerance"]["num_remote_worker_restarts"] >= 1
        now = programs(run, cartpole)
        assert len(now) == 2 and not mine & set(now)
        new = dict(
            algo.env_runner_group.foreach_env_runner(
                lambda r: (r.worker_index, os.getpid()), local_env_runner=False
            )
        )
        assert new[1] != victim and new[2] == runners[2]
    finally:
        algo.stop()
    wait_for("every program and helper to exit after algo.stop()", lambda: not alive(), 15)
    assert ray.is_initialized()


def test_the_example_on_a_ray_start_cluster_spreads_runners_over_both_nodes(cartpole: str) -> None:
    """scripts/ray-cluster.sh (what `make train-rllib` runs): `ray start` head + worker node, the
    example joins with --address auto for two iterations, `ray stop` at the end."""
    need_ray()
    bindir = Path(sys.executable).parent
    proc = subprocess.run(
        [
            "bash",
            "scripts/ray-cluster.sh",
            sys.executable,
            "examples/rllib_cartpole.py",
            "--address",
            "auto",
            "--iterations",
            "2",
            "--program",
            cartpole,
        ],
        cwd=ROOT,
        env={**os.environ, "RAY": str(bindir / "ray"), "RAY_TMP": "/tmp/ray-rlay-test"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    assert "ray cluster: 2 node(s), 2 CPUs" in out, out + proc.stderr[-3000:]
    nodes = {line.split(" on node ")[1] for line in out.splitlines() if line.startswith("env runner ")}
    assert len(nodes) == 2, out  # one runner on the head, one on the worker node
    assert "2 rlay-launched programs running on this machine" in out, out  # one per runner
    assert "iter   2  steps" in out, out
    assert "rlay-launched programs left running after the algorithm stopped: 0" in out, out
    # Two iterations do not reach the target: the example says so by its exit code.
    assert proc.returncode == 1, out + proc.stderr[-3000:]
    left = subprocess.run(
        ["pgrep", "-f", "/tmp/ray-rlay-test/"], capture_output=True, text=True
    ).stdout.split()
    assert not left, f"ray stop left Ray processes {left}"


def test_runners_dial_env_sides_started_elsewhere_over_tls_with_a_token(tmp_path: Path) -> None:
    """docs/rllib.md, env sides on other machines: each runner dials its own address (env_config
    ``address``, picked by worker_index) over ``tls://``, checking the env side's certificate
    against RLAY_TLS_CA, and proves RLAY_TOKEN; both variables reach the runners through Ray's
    runtime_env. The env sides (`rlay serve`, on loopback) require the token."""
    require_tool("openssl")
    make_ca(tmp_path, "ca")
    make_cert(tmp_path, "ca", "srv")
    certs = Certs(tmp_path)
    token = uuid.uuid4().hex
    rlay_cli = str(Path(sys.executable).parent / "rlay")
    servers = [
        subprocess.Popen(
            [rlay_cli, "serve", "CartPole-v1", "--address", certs.listen()],
            env={**os.environ, "RLAY_TOKEN": token},
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        addresses = [server.stdout.readline().split()[1] for server in servers if server.stdout]
        assert all(a.startswith("tls://127.0.0.1:") for a in addresses), addresses
        with ray_session(runtime_env={"env_vars": {"RLAY_TOKEN": token, "RLAY_TLS_CA": certs.ca}}):
            from ray.rllib.algorithms.ppo import PPOConfig

            rlay.rllib.register("rlay-test-remote")
            algo = (
                PPOConfig()
                .environment("rlay-test-remote", env_config={"address": addresses})
                # "sync": one rlay.ClientEnv per env (2 per runner, 2 sessions on its server).
                .env_runners(
                    num_env_runners=2,
                    num_envs_per_env_runner=2,
                    gym_env_vectorize_mode="sync",
                    num_cpus_per_env_runner=1,
                )
                .training(train_batch_size_per_learner=500, minibatch_size=250, num_epochs=1)
                .build_algo()
            )
            try:
                dialled = sorted(
                    algo.env_runner_group.foreach_env_runner(
                        lambda r: (r.worker_index, [e.unwrapped.address for e in r.env.unwrapped.envs]),
                        local_env_runner=False,
                    )
                )
                assert dialled == [(1, [addresses[0]] * 2), (2, [addresses[1]] * 2)]
                result = algo.train()
                assert result["num_env_steps_sampled_lifetime"] >= 500
                assert result["env_runners"]["num_episodes"] > 0
            finally:
                algo.stop()
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
