"""``rlay.rllib.env_creator`` without Ray: what each RLlib env runner builds, driven exactly as
RLlib's ``SingleAgentEnvRunner.make_env`` drives it (``gymnasium.register`` with a
``vector_entry_point``, then ``gymnasium.make_vec``), against the real C CartPole. The Ray run
itself (PPO on a cluster, kill -9 of an env runner) is ``tests/test_rllib.py`` (``make test-rllib``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import require_tool
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import rlay
import rlay.rllib
from rlay.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


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


class EnvContext(dict[str, Any]):
    """What RLlib passes: a dict of env_config with the runner's index as an attribute."""

    def __init__(self, config: dict[str, Any], worker_index: int = 1) -> None:
        super().__init__(config)
        self.worker_index = worker_index


def rllib_make_vec(config: dict[str, Any], num_envs: int) -> Any:
    """RLlib's make_env with gym_env_vectorize_mode='vector_entry_point' (ray 2.60)."""
    ctx = EnvContext(config)
    gym.register(
        "rlay-test-rllib-v0",
        entry_point=lambda: rlay.rllib.env_creator(ctx),
        vector_entry_point=lambda num_envs: rlay.rllib.env_creator(EnvContext({**ctx, "num_envs": num_envs})),
    )
    try:
        return gym.make_vec("rlay-test-rllib-v0", num_envs=num_envs, vectorization_mode="vector_entry_point")
    finally:
        del gym.registry["rlay-test-rllib-v0"]


def assert_matches_gymnasium(env: Any, n: int, steps: int = 60) -> None:
    """Same seeds, same actions: equal to Gymnasium's own CartPole-v1, next-step autoreset."""
    ref = SyncVectorEnv([lambda: gym.make("CartPole-v1")] * n, autoreset_mode=AutoresetMode.NEXT_STEP)
    seeds = list(range(100, 100 + n))
    obs, _ = env.reset(seed=seeds)
    want, _ = ref.reset(seed=seeds)
    np.testing.assert_array_equal(obs, want)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        actions = rng.integers(0, 2, n)
        got = env.step(actions)
        expected = ref.step(actions)
        for a, b in zip(got[:4], expected[:4], strict=True):
            np.testing.assert_array_equal(a, b)
    ref.close()


def test_a_runner_gets_one_program_hosting_all_its_envs(cartpole: str) -> None:
    env = rllib_make_vec({"launch": [cartpole, "--num-envs", rlay.rllib.NUM_ENVS]}, num_envs=3)
    try:
        inner = env.unwrapped
        assert isinstance(inner, rlay.ClientVectorEnv)
        assert (env.num_envs, len(inner.addresses)) == (3, 1)
        assert inner.autoreset_mode is AutoresetMode.NEXT_STEP  # what RLlib's env runner expects
        assert all(a.startswith("unix://") for a in inner.addresses)  # no port anywhere
        assert_matches_gymnasium(env, 3)
    finally:
        env.close()


def test_without_the_placeholder_a_runner_gets_one_program_per_env(cartpole: str) -> None:
    env = rllib_make_vec({"launch": [cartpole]}, num_envs=2)
    try:
        assert (env.num_envs, len(env.unwrapped.addresses)) == (2, 1 + 1)
        assert_matches_gymnasium(env, 2)
    finally:
        env.close()


def test_rllib_default_sync_mode_gets_a_client_env_per_env(cartpole: str) -> None:
    env = rlay.rllib.env_creator(EnvContext({"launch": [cartpole]}))
    try:
        assert isinstance(env, rlay.ClientEnv)
        obs, _ = env.reset(seed=7)
        want, _ = gym.make("CartPole-v1").reset(seed=7)
        np.testing.assert_array_equal(obs, want)
    finally:
        env.close()


def test_launch_env_reaches_the_program_and_close_ends_it(cartpole: str) -> None:
    mark = f"test-{os.getpid()}"
    env = rlay.rllib.env_creator(EnvContext({"launch": [cartpole], "launch_env": {"RLAY_TEST_MARK": mark}}))
    process = env._endpoints.processes[0]
    pid = process.pid
    with open(f"/proc/{pid}/environ", "rb") as f:
        environ = f.read().split(b"\0")
    assert f"RLAY_TEST_MARK={mark}".encode() in environ
    assert b"PATH=" + os.environ["PATH"].encode() in environ  # added to, not instead of, the environment
    env.close()
    assert process.exited() is not None


def test_a_batch_of_the_wrong_size_is_named(cartpole: str) -> None:
    # 3 programs (no {num_envs} in the arguments) hosting 2 sub-envs each: 6, not the 3 asked for.
    with pytest.raises(UsageError, match=r"asked this env runner for 3 envs.*host 6.*\{num_envs\}"):
        rllib_make_vec({"launch": [cartpole, "--num-envs", "2"]}, num_envs=3)


@pytest.mark.parametrize(
    "config, match",
    [
        ({}, r"needs env_config\['launch'\].*or env_config\['address'\].*got keys \[\]"),
        ({"launch": ["x"], "address": "tcp://127.0.0.1:1"}, "exactly one of them"),
        ({"launch": "./cartpole --num-envs 4"}, r"must be a list of arguments, got './cartpole"),
        ({"launch": []}, "must be a list of arguments"),
        ({"address": []}, "empty list"),
    ],
)
def test_bad_env_config_is_named(config: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        rlay.rllib.env_creator(EnvContext(config))


def test_address_lists_give_each_runner_its_own_env_side(cartpole: str) -> None:
    """Env sides started elsewhere (docs/rllib.md, across machines): runner i dials address i."""
    listeners = [
        subprocess.Popen([cartpole, "--listen", "tcp://127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        addresses = [p.stdout.readline().split()[1] for p in listeners if p.stdout]  # RLAY_LISTENING ADDR
        for index in (1, 2):
            env = rlay.rllib.env_creator(EnvContext({"address": addresses, "token": ""}, worker_index=index))
            assert env.address == addresses[index - 1]
            env.reset(seed=1)
            env.close()
    finally:
        for p in listeners:
            p.kill()
            p.wait()


def test_an_address_list_in_vector_entry_point_mode_is_refused_with_the_way_out() -> None:
    """RLlib's vector_entry_point mode hands the creator a plain dict without worker_index."""
    config = {"address": ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"], "num_envs": 2}
    with pytest.raises(UsageError, match=r"drops worker_index.*gym_env_vectorize_mode='sync'"):
        rlay.rllib.env_creator(config)


def test_one_address_in_vector_mode_needs_a_batch_of_the_right_size() -> None:
    """Every runner dials the one env side (here `rlay serve --num-envs 2`, a session per runner)."""
    rlay_cli = str(Path(sys.executable).parent / "rlay")
    server = subprocess.Popen(
        [rlay_cli, "serve", "CartPole-v1", "--address", "tcp://127.0.0.1:0", "--num-envs", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        address = server.stdout.readline().split()[1]
        env = rlay.rllib.env_creator({"address": address, "num_envs": 2})
        assert (env.num_envs, env.addresses) == (2, [address])
        env.reset(seed=0)
        env.step(np.array([0, 1]))
        env.close()
        with pytest.raises(UsageError, match=r"for 3 envs.*host 2: start it with 3 sub-envs"):
            rlay.rllib.env_creator({"address": address, "num_envs": 3})
    finally:
        server.kill()
        server.wait()
