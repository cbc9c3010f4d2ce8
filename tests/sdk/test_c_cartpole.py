"""The C SDK's CartPole (sdk/c/examples/cartpole.c) as a real process, against Gymnasium's own
CartPole-v1, through rlay.ClientEnv (the C program listens) and rlay.ServerEnv (it dials in).

Each episode starts from Gymnasium's initial state (passed as the reset option "state"), both
envs take the same actions, and everything must be *equal*, not close: the C program does the
same float64 operations in the same order (no fused multiply-add), glibc's sin/cos are the ones
numpy uses for float64 scalars, and float64 -> float32 rounds to nearest in both. So the float32
observations and the float64 state (CALL "get_state") match bit for bit, and so do rewards,
terminated and truncated, through the 500-step truncation. Any difference is a bug to explain,
not a tolerance to widen.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import require_tool
from harness import HELLO, frame, read_frame

import rlay
from rlay.errors import RemoteError

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "c"
SAN_ENV = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "halt_on_error=1"}


def build(out: Path, target: str, *extra: str) -> None:
    require_tool("gcc")
    require_tool("make")
    cmd = ["make", "-C", str(SDK), f"OUT={out}", "CC=gcc", *extra, target]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("cartpole")
    build(out, f"{out}/cartpole")
    return str(out / "cartpole")


@pytest.fixture(scope="module")
def cartpole_asan(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("cartpole-asan")
    san = "-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    build(out, f"{out}/cartpole", f"CFLAGS={san}")
    return str(out / "cartpole")


def balance(state: np.ndarray) -> int:
    """A controller that keeps the pole up for the whole 500 steps (so truncation is reached)."""
    return int(state[2] + 0.5 * state[3] + 0.01 * state[0] + 0.05 * state[1] > 0)


def run_episode(env: gym.Env[Any, Any], seed: int, policy: str, extra_steps: int = 0) -> int:
    """Steps ``env`` and Gymnasium's CartPole-v1 side by side; returns the episode length."""
    ref = gym.make("CartPole-v1")
    obs_ref, _ = ref.reset(seed=seed)
    state0 = np.array(ref.unwrapped.state, dtype=np.float64)
    obs, info = env.reset(seed=seed, options={"state": state0})
    assert obs.dtype == np.float32 and obs.shape == (4,)
    assert obs.tobytes() == obs_ref.tobytes() and info == {}
    rng = np.random.default_rng(seed)
    steps = 0
    done_at = None
    while True:
        state = np.array(ref.unwrapped.state)
        action = balance(state) if policy == "balance" else int(rng.integers(2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Gymnasium warns about stepping after termination
            want = ref.step(action)
        got = env.step(action)
        steps += 1
        assert got[0].dtype == np.float32 and got[0].tobytes() == want[0].tobytes(), (steps, got[0], want[0])
        assert type(got[1]) is float and got[1] == want[1], (steps, got[1], want[1])
        assert got[2] is want[2] and got[3] is want[3], (steps, got[2:4], want[2:4])
        assert got[4] == {}
        exact = env.call("get_state")
        assert exact.dtype == np.float64 and exact.tobytes() == ref.unwrapped.state.tobytes(), steps
        if done_at is None and (want[2] or want[3]):
            done_at = steps
        if done_at is not None and steps >= done_at + extra_steps:
            return done_at


def check_gymnasium_parity(env: gym.Env[Any, Any]) -> None:
    assert env.observation_space == gym.make("CartPole-v1").observation_space
    assert env.action_space == gym.spaces.Discrete(2)
    assert env.metadata["render_fps"] == 50
    lengths = [run_episode(env, seed, "balance") for seed in (0, 1, 123)]
    assert lengths == [500, 500, 500], "the controller should reach the TimeLimit truncation"
    # random actions: termination (then two steps after it: reward 0.0, terminated again)
    lengths = [run_episode(env, seed, "random", extra_steps=2) for seed in (7, 8)]
    assert all(5 < n < 200 for n in lengths), lengths


def start_listening(
    program: str, address: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [program, "--listen", address, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("RLAY_LISTENING "), (line, proc.stderr.read() if proc.stderr else "")
    return proc, line.split(" ", 1)[1].strip()


def finish(proc: subprocess.Popen[str], code: int = 0) -> str:
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the env program did not exit by itself; stderr: {err[-2000:]}")
    assert proc.returncode == code, f"exit code {proc.returncode}; stderr: {err[-3000:]}"
    return err


def test_client_env_over_tcp_matches_gymnasium(cartpole: str) -> None:
    proc, address = start_listening(cartpole, "tcp://127.0.0.1:0")
    assert address.startswith("tcp://127.0.0.1:") and not address.endswith(":0")
    env = rlay.ClientEnv(address)
    try:
        check_gymnasium_parity(env)
    finally:
        env.close()
    finish(proc)  # CLOSE is answered and the program exits 0


def test_client_env_over_unix_socket_with_launch(cartpole: str) -> None:
    env = rlay.ClientEnv(launch=[cartpole, "--listen", "{address}"])
    try:
        assert env.address.startswith("unix://")
        assert run_episode(env, 5, "balance") == 500
    finally:
        env.close()


def test_server_env_the_c_program_dials_in(cartpole: str) -> None:
    env = rlay.ServerEnv("tcp://127.0.0.1:0", wait=False)
    proc = subprocess.Popen([cartpole, "--connect", env.address], stderr=subprocess.PIPE, text=True)
    try:
        env.accept(30)
        check_gymnasium_parity(env)
    finally:
        env.close()
    finish(proc)


def test_server_env_address_from_the_environment(cartpole: str) -> None:
    """No address argument: RLAY_ADDRESS (what rlay's launcher sets) is used."""
    env = rlay.ServerEnv(launch=[cartpole, "--connect"])
    try:
        assert run_episode(env, 11, "random") > 0
    finally:
        env.close()


def test_under_sanitizers_both_ways(cartpole_asan: str) -> None:
    """The session layer (sockets, partial reads, replies, close) is ASan+UBSan clean."""
    proc, address = start_listening(cartpole_asan, "tcp://127.0.0.1:0", env=SAN_ENV)
    env = rlay.ClientEnv(address)
    try:
        run_episode(env, 3, "balance")
        run_episode(env, 4, "random", extra_steps=1)
    finally:
        env.close()
    finish(proc)
    server = rlay.ServerEnv("tcp://127.0.0.1:0", wait=False)
    proc2 = subprocess.Popen(
        [cartpole_asan, "--connect", server.address], stderr=subprocess.PIPE, text=True, env=SAN_ENV
    )
    try:
        server.accept(30)
        run_episode(server, 9, "random")
    finally:
        server.close()
    finish(proc2)


@pytest.mark.parametrize(
    "how",
    [["--listen", "{address}"], ["--connect", "--render-mode", "rgb_array"]],
    ids=["listen", "connect-render"],
)
def test_rlay_check_passes(cartpole: str, how: list[str]) -> None:
    """rlay's own checker (handshake, spaces, gymnasium's check_env, bounds, determinism,
    render, replies to bad commands) passes against the C program."""
    server = ["--server"] if how[0] == "--connect" else []
    cmd = [sys.executable, "-m", "rlay.cli", "check", *server, "--", cartpole, *how]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "0 failed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_seeded_resets_draw_gymnasiums_states(cartpole: str) -> None:
    """The C program reproduces numpy's Generator(PCG64(SeedSequence(seed))).uniform: a seeded
    reset, and the unseeded resets after it, give Gymnasium's initial states bit for bit."""
    env = rlay.ClientEnv(launch=[cartpole, "--listen", "{address}"])
    ref = gym.make("CartPole-v1")
    try:
        for seed in (0, 1, 2**32, 2**64 - 1):
            got, want = env.reset(seed=seed)[0], ref.reset(seed=seed)[0]
            assert got.tobytes() == want.tobytes(), (seed, got, want)
            for _ in range(3):
                assert env.reset()[0].tobytes() == ref.reset()[0].tobytes()
            exact = env.call("get_state")
            assert exact.tobytes() == ref.unwrapped.state.tobytes()
        got = env.reset(seed=5, options={"low": -0.2, "high": 0.1})[0]
        assert got.tobytes() == ref.reset(seed=5, options={"low": -0.2, "high": 0.1})[0].tobytes()
    finally:
        env.close()


def test_errors_are_replies_and_the_session_goes_on(cartpole: str) -> None:
    env = rlay.ClientEnv(launch=[cartpole, "--listen", "{address}"], check_actions=False)
    try:
        with pytest.raises(RemoteError) as info:
            env.step(0)  # STEP before RESET
        assert info.value.code_name == "RESET_NEEDED" and not info.value.fatal
        with pytest.raises(RemoteError) as info:
            env.reset(options={"state": np.zeros(3)})  # wrong shape: the env's own ValueError
        assert info.value.code_name == "ENV_EXCEPTION" and info.value.remote_type == "ValueError"
        assert "float64 tensor of shape (4,)" in info.value.message and not info.value.fatal
        with pytest.raises(RemoteError) as info:
            env.reset(options={"low": 0.1, "high": -0.1})
        assert info.value.remote_type == "ValueError" and "Lower bound" in info.value.message
        obs, _ = env.reset(seed=1, options={"low": 0.2, "high": 0.2})
        assert obs.tolist() == [np.float32(0.2)] * 4
        with pytest.raises(RemoteError) as info:
            env.step(2)  # outside Discrete(2): the SDK answers, not the env code
        assert info.value.code_name == "INVALID_ACTION" and not info.value.fatal
        with pytest.raises(RemoteError) as info:
            env.call("no_such_function")
        assert info.value.code_name == "NOT_SUPPORTED"
        assert env.step(np.int64(1))[1] == 1.0  # still usable; a NumPy scalar action is fine
        # seeds: the same seed gives the same draw, another seed another
        a, _ = env.reset(seed=42)
        b, _ = env.reset(seed=42)
        c, _ = env.reset(seed=43)
        assert a.tobytes() == b.tobytes() != c.tobytes() and np.all(np.abs(a) <= 0.05)
        with pytest.warns(UserWarning, match="no render mode"):
            assert env.render() is None  # no render mode: rlay warns and sends nothing
    finally:
        env.close()


def test_render_rgb_array(cartpole: str) -> None:
    env = rlay.ClientEnv(
        launch=[cartpole, "--listen", "{address}", "--render-mode", "rgb_array"], render_mode="rgb_array"
    )
    try:
        env.reset(seed=0, options={"state": np.array([1.0, 0.0, 0.2, 0.0])})
        frame = env.render()
        assert frame.dtype == np.uint8 and frame.shape == (400, 600, 3)
        white = np.all(frame == 255, axis=2).mean()
        assert 0.9 < white < 1.0
        black = np.all(frame == 0, axis=2)
        cols = np.nonzero(black[:290].any(axis=0))[0]  # the cart, above the track line
        assert abs(cols.mean() - (1.0 * 600 / 4.8 + 300)) < 3  # centred on x = 1.0
        assert np.all(frame[299] == 0)  # the track: Gymnasium's hline at y=100, flipped
        pole = np.all(frame == (202, 152, 101), axis=2)
        assert pole.sum() > 500
    finally:
        env.close()


# -- the raw protocol: what a non-Python or broken peer sees ------------------------------------


@pytest.fixture
def listening(cartpole: str) -> Iterator[tuple[subprocess.Popen[str], socket.socket]]:
    proc, address = start_listening(cartpole, "tcp://127.0.0.1:0")
    host, port = address[len("tcp://") :].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    yield proc, sock
    sock.close()
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def serve_next(proc: subprocess.Popen[str], where: tuple[str, int]) -> str:
    """The program (listening at ``where``) still listens after it dropped a connection: a real
    agent gets a session; its stderr (returned) names why it dropped the first one."""
    host, port = where[:2]
    env = rlay.ClientEnv(f"tcp://{host}:{port}")
    env.reset(seed=0)
    env.step(0)
    env.close()
    err = finish(proc, 0)
    assert "dropped 1 connection(s) before the session" in err, err
    return err


def test_handshake_version_mismatch_is_named_on_both_sides(listening: Any) -> None:
    proc, sock = listening
    where = sock.getpeername()
    kind, hello = read_frame(sock)  # the env side speaks first, without waiting
    assert kind == 1 and hello["protocol"] == "rlay" and hello["version"] == 1 and hello["role"] == "env"
    assert hello["sdk"] == "rlay-c" and hello["capabilities"] == {}
    sock.sendall(frame(1, {**HELLO, "version": 2}))
    kind, err = read_frame(sock)
    assert kind == 48 and err["code"] == 12 and err["fatal"] is True
    assert err["message"] == "protocol version mismatch: this side speaks 1, peer speaks 2"
    assert sock.recv(1) == b""
    # Before its session a listener drops a failed connection and serves the next (spec §17.4).
    assert "VERSION_MISMATCH" in serve_next(proc, where)


def test_a_non_rlay_peer_is_rejected_on_its_first_bytes(listening: Any) -> None:
    proc, sock = listening
    where = sock.getpeername()
    read_frame(sock)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    kind, err = read_frame(sock)
    assert kind == 48 and err["code"] == 1 and err["fatal"] is True and "47 45 54" in err["message"]
    assert "BAD_MAGIC" in serve_next(proc, where)


def test_the_env_side_exits_when_the_agent_vanishes(listening: Any) -> None:
    proc, sock = listening
    read_frame(sock)
    sock.sendall(frame(1, HELLO))
    assert read_frame(sock)[0] == 2  # ENV_INFO
    sock.sendall(frame(18, {}))  # RENDER without a render mode
    kind, err = read_frame(sock)
    assert kind == 48 and err["code"] == 34 and err["fatal"] is False and err["remote_type"] is None
    sock.sendall(frame(16, {"seed": 1, "options": None}))
    assert read_frame(sock)[0] == 32
    sock.close()  # no CLOSE: the agent process died
    finish(proc, 0)


def test_a_truncated_frame_is_reported(listening: Any) -> None:
    proc, sock = listening
    where = sock.getpeername()
    read_frame(sock)
    sock.sendall(frame(1, HELLO)[:-3])
    sock.shutdown(socket.SHUT_WR)
    assert "TRUNCATED" in serve_next(proc, where)


def test_a_frame_too_large_is_refused_on_its_header(listening: Any) -> None:
    proc, sock = listening
    where = sock.getpeername()
    read_frame(sock)
    sock.sendall(b"RL\x11\x00" + struct.pack("<II", 0xFFFFFFFF, 1))  # no body follows: never read
    kind, err = read_frame(sock)
    assert kind == 48 and err["code"] == 3 and err["fatal"] is True
    assert "FRAME_TOO_LARGE" in serve_next(proc, where)


def test_usage_errors(cartpole: str, tmp_path: Path) -> None:
    bad = subprocess.run([cartpole, "--listen", "http://x"], capture_output=True, text=True, timeout=10)
    assert bad.returncode == 1 and "ADDRESS" in bad.stderr and "tcp://HOST:PORT" in bad.stderr
    none = subprocess.run(
        [cartpole], capture_output=True, text=True, timeout=10, env={"PATH": os.environ["PATH"]}
    )
    assert none.returncode == 2 and "RLAY_ADDRESS" in none.stderr
    # nobody listening: the dial fails with the OS's reason
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    refused = subprocess.run(
        [cartpole, "--connect", f"tcp://127.0.0.1:{port}"], capture_output=True, text=True, timeout=10
    )
    assert refused.returncode == 1 and "refused" in refused.stderr.lower()


def test_many_short_sessions_in_threads(cartpole: str) -> None:
    """Several C processes at once, each a full session: no shared state, no fixed ports."""
    errors: list[BaseException] = []

    def one(seed: int) -> None:
        try:
            env = rlay.ClientEnv(launch=[cartpole, "--listen", "{address}"])
            try:
                run_episode(env, seed, "random")
            finally:
                env.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


@pytest.fixture(scope="module")
def game_loop(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("game-loop")
    build(out, f"{out}/game_loop")
    return str(out / "game_loop")


@pytest.mark.parametrize("direction", ["ClientEnv", "ServerEnv"])
def test_game_loop_holds_a_step_over_frames(game_loop: str, direction: str) -> None:
    """examples/game_loop.c: poll(0) every frame, a STEP played over 4 frames, then answered."""
    if direction == "ClientEnv":
        env: Any = rlay.ClientEnv(launch=[game_loop, "--listen"])
    else:
        env = rlay.ServerEnv(launch=[game_loop, "--connect"])
    try:
        obs, _ = env.reset()
        x, v = np.float32(0), np.float32(0)
        dt = np.float32(0.05)
        for step, action in enumerate([2, 2, 1, 0, 0, 2]):
            for _ in range(4):  # the same float32 frames as the C game
                v = np.float32(v + np.float32(action - 1) * dt)
                x = np.float32(x + v * dt)
            obs, reward, terminated, truncated, info = env.step(action)
            assert obs.tolist() == [x, v], (step, obs, x, v)
            assert reward == -abs(float(x)) and not terminated and not truncated and info == {"frames": 4}
    finally:
        env.close()
