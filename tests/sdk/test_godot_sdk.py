"""The Godot addon's own checks, beyond the shared harness (test_godot_contract.py): every space
kind it converts, one env and a batch; GDScript errors as ENV_EXCEPTION replies; the Puck game
(RigidBody2D, the engine's own physics) through ``rlay.make_vec`` over several headless engines;
kill -9 of the trainer ends every engine. All against the real engine (godot3-server)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import require_tool
from harness import wait_gone

import rlay
from rlay.protocol.connection import Connection
from rlay.protocol.messages import Reset, Step
from rlay.protocol.wire import ErrorCode, Role

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "godot"
GAME = ROOT / "examples" / "godot_puck"


@pytest.fixture(scope="module")
def godot() -> str:
    require_tool("godot3-server")
    return "godot3-server"


def echo(godot: str, *extra: str) -> list[str]:
    return [
        godot,
        "--no-window",
        "--fixed-fps",
        "60",
        "--path",
        str(SDK),
        "-s",
        "res://examples/echo/main.gd",
        "--",
        *extra,
    ]


def puck(godot: str) -> list[str]:
    return [godot, "--no-window", "--fixed-fps", "15", "--path", str(GAME)]


def same(got: Any, want: Any) -> bool:
    if want is None:
        return got is None
    if isinstance(want, dict):
        return list(got) == list(want) and all(same(got[k], want[k]) for k in want)
    if isinstance(want, tuple):
        return len(got) == len(want) and all(same(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(want, str):
        return got == want
    got, want = np.asarray(got), np.asarray(want)
    return got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


def test_every_space_kind_round_trips(godot: str) -> None:
    """Actions sampled from a Dict of box (float32 with ±inf, uint8), discrete with a start,
    multi_discrete, multi_binary, text, a tuple, a sequence, a one_of and two graphs (with edges
    of a Discrete space and int32 links as Gymnasium samples them; without an edge space) and a
    uint64 Discrete above 2^63 and a uint64 Box up to 2^64 - 1 come back as observations, bit for bit."""
    env = rlay.ClientEnv("tcp://127.0.0.1:0", launch=echo(godot, "--listen", "{address}"), connect_timeout=60)
    try:
        space = env.observation_space
        assert space == env.action_space
        kinds = ["box", "grid", "discrete", "multi_discrete", "multi_binary", "text", "tuple"]
        kinds += ["sequence", "one_of", "graph", "graph_nodes", "big", "big_box"]
        assert list(space) == kinds
        obs, _ = env.reset(seed=0)
        assert space.contains(obs)
        env.action_space.seed(0)
        for _ in range(20):
            action = env.action_space.sample()
            obs, reward, terminated, truncated, info = env.step(action)
            assert same(obs, action), (obs, action)
            assert (reward, terminated, truncated, info) == (0.0, False, False, {"echo": True})
        assert env.call("echo", 1, "x", [2.5]) == [1, "x", [2.5]]
    finally:
        env.close()


def test_a_batch_of_every_space_kind_round_trips(godot: str) -> None:
    """--num-envs 3: the batched action is split per sub-env, each echoed, and stacked back
    (spec §10), with rewards, flags and a vector info."""
    env = rlay.ClientVectorEnv(
        "tcp://127.0.0.1:0", launch=echo(godot, "--listen", "{address}", "--num-envs", "3")
    )
    try:
        assert env.num_envs == 3
        env.reset(seed=1)
        env.action_space.seed(1)
        for _ in range(5):
            action = env.action_space.sample()
            obs, reward, terminated, truncated, info = env.step(action)
            assert same(obs, action), (obs, action)
            assert reward.tolist() == [0.0, 1.0, 2.0] and not terminated.any() and not truncated.any()
            assert info["index"].tolist() == [0, 1, 2] and info["_index"].all()
    finally:
        env.close()


def test_script_errors_are_env_exception_replies(godot: str) -> None:
    """A GDScript runtime error in a handler (no exceptions in GDScript: the function aborts)
    and an error a handler returns both reach Python as non-fatal ENV_EXCEPTION replies."""
    env = rlay.ClientEnv("tcp://127.0.0.1:0", launch=echo(godot, "--listen", "{address}"), connect_timeout=60)
    try:
        with pytest.raises(rlay.RemoteError) as info:
            env.reset(options={"script_error": True})
        assert info.value.code_name == "ENV_EXCEPTION" and info.value.remote_type == "ScriptError"
        assert not info.value.fatal and "runtime error" in str(info.value)
        with pytest.raises(rlay.RemoteError) as info:
            env.call("fail")
        assert info.value.remote_type == "ValueError" and "asked to fail" in str(info.value)
        obs, _ = env.reset()  # the session goes on
        assert obs["text"] == "a"
    finally:
        env.close()


def test_a_malformed_action_is_a_fatal_bad_value_and_the_engine_exits() -> None:
    """An action of the wrong structure (a str for Discrete(2): rlay's Python side never sends
    one, so this test speaks the protocol itself) is answered with a fatal BAD_VALUE naming the
    problem, and the engine exits 1 with the message on stderr."""
    proc = subprocess.Popen(
        [str(SDK / "bin" / "cartpole"), "--listen", "tcp://127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = next(ln for ln in proc.stdout if ln.startswith("RLAY_LISTENING "))
        host, port = line.split("//")[1].strip().rsplit(":", 1)
        conn = Connection(Role.AGENT)
        replies: list[Any] = []
        with socket.create_connection((host, int(port)), timeout=30) as sock:

            def exchange(until: int) -> None:
                for buf in conn.data_to_send():
                    sock.sendall(bytes(buf))
                while len(replies) < until:
                    conn.receive_data(sock.recv(65536))
                    while (m := conn.next_event()) is not None:
                        replies.append(m)

            exchange(2)  # HELLO, ENV_INFO
            conn.send(Reset(None, None))
            exchange(3)
            conn.send(Step("left"))
            exchange(4)
        error = replies[3]
        assert error.code == ErrorCode.BAD_VALUE and error.fatal, error
        assert "expected an int" in error.message
        assert proc.wait(15) == 1
        assert "BAD_VALUE" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_a_unix_address_is_refused_with_a_clear_message(godot: str) -> None:
    proc = subprocess.run(
        [str(SDK / "bin" / "cartpole"), "--listen", "unix:///tmp/nowhere.sock"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "tcp://HOST:PORT only" in proc.stderr, proc.stderr[-2000:]


def heuristic(obs: np.ndarray) -> np.ndarray:
    """Thrust toward the target along the larger offset (1 left, 2 right, 3 up, 4 down)."""
    dx, dy = obs[:, 0], obs[:, 1]
    horizontal = np.where(dx < 0, 1, 2)
    vertical = np.where(dy < 0, 3, 4)
    return np.where(np.abs(dx) > np.abs(dy), horizontal, vertical)


def test_puck_episodes_through_make_vec_over_three_engines(godot: str) -> None:
    """Three headless engines dial in (the Godot way); the RigidBody2D puck moves under the
    engine's physics: pushing toward the target reaches it (terminated, +10), doing nothing
    is truncated at 200 steps; seeded resets repeat."""
    env = rlay.make_vec(puck(godot), 3, server=True, address="tcp://127.0.0.1:0", accept_timeout=60)
    try:
        assert env.num_envs == 3 and env.single_action_space.n == 5
        obs, info = env.reset(seed=7)
        again, _ = env.reset(seed=7)
        assert obs.tobytes() == again.tobytes()
        assert env.single_observation_space.contains(obs[0])
        returns, reached, steps = np.zeros(3), np.zeros(3, bool), 0
        while not reached.all() and steps < 150:
            obs, reward, terminated, truncated, info = env.step(heuristic(obs))
            returns += np.where(reached, 0.0, reward)
            reached |= terminated
            steps += 1
        assert reached.all(), (steps, info)
        assert (returns > 10).all(), returns  # +10 for reaching, plus the distance covered
        env.reset(seed=8)
        for step in range(1, 201):
            obs, reward, terminated, truncated, info = env.step(np.zeros(3, dtype=np.int64))
            assert not terminated.any()
            assert truncated.all() == (step == 200), step
        assert all(n >= 1 for n in env.call("reaches"))  # a CALL answered by each engine
    finally:
        env.close()


def test_puck_with_many_agents_in_one_scene(godot: str) -> None:
    """`--num-envs 3`: three arenas in one scene, one physics world, one connection (spec §10);
    two such engines through make_vec make 6 sub-envs. Every puck reaches its target, and the
    step after that is the next-step autoreset (reward 0, new episode)."""
    launch = [*puck(godot), "--", "--num-envs", "3"]
    env = rlay.make_vec(launch, 2, server=True, address="tcp://127.0.0.1:0", accept_timeout=60)
    try:
        assert env.num_envs == 6 and env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
        obs, _ = env.reset(seed=3)
        assert obs.shape == (6, 8) and len({row.tobytes() for row in obs}) == 6
        reached = np.zeros(6, bool)
        autoreset_seen = np.zeros(6, bool)
        for _ in range(150):
            before = reached.copy()
            obs, reward, terminated, truncated, _ = env.step(heuristic(obs))
            assert not truncated.any()
            autoreset_seen |= before & (reward == 0.0) & ~terminated
            reached |= terminated
            if autoreset_seen.all():
                break
        assert reached.all() and autoreset_seen.all(), (reached, autoreset_seen)
        assert all(n >= 1 for n in env.call("reaches"))  # one value per sub-env
    finally:
        env.close()


@pytest.mark.parametrize("agents", ["1", "3"])
def test_rlay_check_passes_on_puck(godot: str, agents: str) -> None:
    """`rlay check` on the game as it dials in (one puck, and three in one scene): spaces,
    check_env, observations inside the space, seeded determinism (the physics is frozen between
    steps), replies to bad commands."""
    launch = [*puck(godot), "--", "--connect", "{address}", "--num-envs", agents]
    cmd = [sys.executable, "-m", "rlay.cli", "check", "--server", "tcp://127.0.0.1:0", "--", *launch]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and " 0 failed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


KILLED = """
import sys, time, rlay
launch = sys.argv[1:]
env = rlay.make_vec(launch, 3, server=True, address="tcp://127.0.0.1:0", accept_timeout=60)
env.reset(seed=0)
print("PIDS", *[p.pid for p in env.processes], flush=True)
time.sleep(60)
"""


def test_every_engine_exits_when_the_trainer_is_killed(godot: str) -> None:
    trainer = subprocess.Popen(
        [sys.executable, "-c", KILLED, *puck(godot)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert trainer.stdout is not None
        line = next((ln for ln in trainer.stdout if ln.startswith("PIDS")), "")
        assert line, f"the trainer did not start its engines (exit {trainer.poll()})"
        pids = [int(w) for w in line.split()[1:]]
        assert len(pids) == 3
        os.kill(trainer.pid, signal.SIGKILL)
        trainer.wait(10)
    finally:
        trainer.kill()
        trainer.wait()
    left = wait_gone(pids, 15)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"engines outlived the killed trainer: {left}"
