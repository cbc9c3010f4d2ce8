"""The rlay command line, run as a user would: a real process, real output, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

import rlay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RLAY = [sys.executable, "-m", "rlay.cli"]
GAME = [sys.executable, os.path.join(ROOT, "examples", "game_loop.py")]

SLOPPY_ENV = """
import os, gymnasium as gym, numpy as np, rlay

class Sloppy(gym.Env):
    # ignores its seed, and leaves its observation space now and then
    observation_space = gym.spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.random.default_rng().uniform(0, 1, 2).astype(np.float32), {}
    def step(self, action):
        return np.full(2, 5.0, np.float32), 0.0, False, False, {}

rlay.serve(Sloppy, os.environ["RLAY_ADDRESS"])
"""


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RLAY, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_help_explains_each_verb() -> None:
    out = run("--help")
    assert out.returncode == 0
    for verb in ("serve", "check", "bench"):
        assert verb in out.stdout
    check = run("check", "--help")
    assert "conformance" in check.stdout.lower() or "check" in check.stdout
    assert "RLAY_ADDRESS" in check.stdout


def test_check_passes_a_good_env_side() -> None:
    out = run("check", "--", *GAME, "--listen", "{address}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "8 passed, 0 failed" in out.stdout


def test_check_passes_a_dialling_env_side() -> None:
    out = run("check", "--server", "--", *GAME)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "handshake" in out.stdout and "0 failed" in out.stdout


def test_check_fails_a_sloppy_env_side_and_says_why() -> None:
    out = run("check", "--steps", "20", "--", sys.executable, "-c", SLOPPY_ENV)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAIL  observations stay inside the observation space" in out.stdout
    assert "outside Box(0.0, 1.0, (2,), float32)" in out.stdout
    assert "FAIL  seeded determinism" in out.stdout


def test_check_reports_an_unreachable_address() -> None:
    out = run("check", "unix:///tmp/rlay-no-such-dir/x.sock", "--timeout", "1")
    assert out.returncode == 1
    assert "FAIL  handshake" in out.stdout and "cannot connect" in out.stdout


def test_bench_prints_rate_and_percentiles() -> None:
    out = run("bench", "--steps", "2000", "--", *GAME, "--listen", "{address}")
    assert out.returncode == 0, out.stderr
    assert "steps/s" in out.stdout and "p99" in out.stdout


def test_serve_a_registered_gymnasium_env() -> None:
    proc = subprocess.Popen([*RLAY, "serve", "CartPole-v1"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("RLAY_LISTENING tcp://127.0.0.1:")
        env = rlay.ClientEnv(line.split()[1])
        obs, _ = env.reset(seed=0)
        assert env.env_name == "CartPole-v1" and obs.shape == (4,)
        env.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_num_envs_hosts_a_batch() -> None:
    proc = subprocess.Popen(
        [*RLAY, "serve", "CartPole-v1", "--num-envs", "4"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        env = rlay.ClientVectorEnv(line.split()[1])
        obs, _ = env.reset(seed=0)
        assert env.num_envs == 4 and obs.shape == (4, 4)
        _, reward, *_ = env.step(env.action_space.sample())
        assert reward.tolist() == [1.0] * 4
        env.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_check_takes_a_batched_env_side_as_a_vector_env() -> None:
    """An env side hosting sub-envs (spec §10) is checked as a vector env, not refused."""
    out = run(
        "check", "tcp://127.0.0.1:0", "--steps", "60", "--",
        *RLAY, "serve", "CartPole-v1", "--num-envs", "3", "--address", "{address}",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 batched sub-envs" in out.stdout and "7 passed, 0 failed" in out.stdout
    assert "refused naming its sub-env" in out.stdout


def test_check_as_a_library() -> None:
    from rlay.check import open_env_side, run_checks

    lines: list[str] = []
    env = open_env_side(launch=[*GAME, "--listen", "{address}"])
    report = run_checks(env, steps=30, out=lines.append)
    assert report.ok and report.passed == 7 and len(lines) == 7, str(report)
    assert "check_env" in str(report)


def test_serve_an_unknown_env_id_says_so_in_one_line() -> None:
    out = run("serve", "NoSuchEnv-v0")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "cannot make 'NoSuchEnv-v0'" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_serve_passes_kwargs_and_seeds_each_env() -> None:
    cmd = [*RLAY, "serve", "CartPole-v1", "--kwarg", "sutton_barto_reward=true", "--seed", "7"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        env = rlay.ClientEnv(line.split()[1])
        env.reset()  # no seed: the env's own stream, started from --seed 7
        rewards = [env.step(1)[1] for _ in range(3)]
        assert rewards == [0.0, 0.0, 0.0], rewards  # sutton_barto_reward: 0 per step until the end
        env.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_help_is_plain_text_and_bench_talks_when_piped() -> None:
    help_text = run("--help").stdout
    assert "``" not in help_text and "examples:" in help_text
    out = run("bench", "--steps", "500", "--", *GAME, "--listen", "{address}")
    assert out.returncode == 0 and "stepping" in out.stderr and "steps/s" in out.stdout
