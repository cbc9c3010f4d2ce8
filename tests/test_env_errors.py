"""Bad input, crashed peers, silence and mismatches: each gives a clear, named error."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import rlay
from rlay.errors import ConnectionClosed, InvalidAction, ProtocolError, RemoteError, Timeout, VersionMismatch
from rlay.protocol.codec import decode
from rlay.protocol.connection import Connection
from rlay.protocol.framing import FrameReader
from rlay.protocol.messages import Error
from rlay.protocol.wire import ErrorCode, Role
from rlay.testing import TrivialEnv
from rlay.transports import dial, listen

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FaultyEnv(TrivialEnv):
    """Raises inside step when the action is 1."""

    def step(self, action: Any) -> Any:
        if action == 1:
            raise ValueError("the simulator diverged")
        return super().step(action)


def test_invalid_action_is_refused_before_sending_and_session_survives(address: str) -> None:
    server = rlay.serve(TrivialEnv, address, block=False)
    env = rlay.ClientEnv(server.address)
    try:
        env.reset(seed=0)
        with pytest.raises(InvalidAction, match=r"action 5 is not in the action space Discrete\(2\)"):
            env.step(5)
        with pytest.raises(InvalidAction):
            env.step(np.array([0.5, 0.5]))
        obs, reward, *_ = env.step(1)
        assert obs.shape == (4,) and reward == 1.0
    finally:
        env.close()
        server.close()


def test_env_side_checks_actions_too(address: str) -> None:
    """An agent that skips its own check gets INVALID_ACTION from the env side, non-fatal."""
    server = rlay.serve(TrivialEnv, address, block=False)
    env = rlay.ClientEnv(server.address, check_actions=False)
    try:
        env.reset(seed=0)
        with pytest.raises(RemoteError) as info:
            env.step(7)
        assert info.value.code == ErrorCode.INVALID_ACTION and not info.value.fatal
        env.step(0)
    finally:
        env.close()
        server.close()


def test_exception_in_env_code_arrives_with_type_and_traceback(address: str) -> None:
    server = rlay.serve(FaultyEnv, address, block=False)
    env = rlay.ClientEnv(server.address)
    try:
        env.reset(seed=0)
        with pytest.raises(RemoteError) as info:
            env.step(1)
        err = info.value
        assert err.code == ErrorCode.ENV_EXCEPTION and err.remote_type == "ValueError"
        assert err.message == "the simulator diverged" and not err.fatal
        assert "raise ValueError" in (err.traceback or "") and "FaultyEnv" not in err.message
        assert "ValueError: the simulator diverged" in str(err) and "during STEP" in str(err)
        obs, _ = env.reset(seed=1)  # the session goes on
        assert obs.shape == (4,)
        env.step(0)
    finally:
        env.close()
        server.close()


def test_step_before_reset_is_reset_needed(address: str) -> None:
    server = rlay.serve(TrivialEnv, address, block=False)
    env = rlay.ClientEnv(server.address)
    try:
        with pytest.raises(RemoteError) as info:
            env.step(0)
        assert info.value.code == ErrorCode.RESET_NEEDED and not info.value.fatal
        env.reset()
        env.step(0)
    finally:
        env.close()
        server.close()


def _spawn_python_env(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


SERVE_SCRIPT = """
import sys, rlay
from rlay.testing import TrivialEnv
server = rlay.Server(TrivialEnv, sys.argv[1])
print("RLAY_LISTENING", server.address, flush=True)
server.serve_forever()
"""

CONNECT_SCRIPT = """
import sys, rlay
from rlay.testing import TrivialEnv
rlay.connect(TrivialEnv, sys.argv[1])
"""


def test_killed_env_process_is_a_closed_connection_not_a_hang(address: str) -> None:
    proc = _spawn_python_env(SERVE_SCRIPT, address)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("RLAY_LISTENING "), line + (proc.stderr.read() if proc.stderr else "")
        env = rlay.ClientEnv(line.split()[1], timeout=30)
        env.reset(seed=0)
        env.step(0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        started = time.monotonic()
        with pytest.raises(ConnectionClosed, match=r"closed the connection|broke"):
            env.step(0)
        assert time.monotonic() - started < 5
        with pytest.raises(ConnectionClosed):
            env.step(0)
        env.close()
    finally:
        proc.kill()
        proc.wait()


def test_killed_env_process_under_server_env(address: str) -> None:
    env = rlay.ServerEnv(address, wait=False)
    proc = _spawn_python_env(CONNECT_SCRIPT, env.address)
    try:
        env.accept(timeout=30)
        env.reset(seed=0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with pytest.raises(ConnectionClosed):
            env.step(0)
    finally:
        env.close()
        proc.kill()
        proc.wait()


def test_env_side_exits_when_agent_closes(address: str) -> None:
    """An env side (connect) returns by itself when the agent side goes away, even abruptly."""
    env = rlay.ServerEnv(address, wait=False)
    proc = _spawn_python_env(CONNECT_SCRIPT, env.address)
    try:
        env.accept(timeout=30)
        env.reset(seed=0)
        env._session.stream.close()  # vanish without CLOSE, like a killed trainer
        assert proc.wait(10) == 0
    finally:
        env.close()
        proc.kill()


def test_silent_peer_times_out_naming_the_stage(address: str) -> None:
    listener = listen(address)
    accepted: list[Any] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept(5)), daemon=True)
    thread.start()
    try:
        with pytest.raises(Timeout, match="waiting for the env side's HELLO") as info:
            rlay.ClientEnv(str(listener.address), handshake_timeout=0.3)
        assert info.value.seconds == 0.3
    finally:
        thread.join(5)
        for stream in accepted:
            stream.close()
        listener.close()


def test_unanswered_step_times_out_then_session_is_abandoned(address: str) -> None:
    listener = listen(address)

    def env_side() -> None:
        stream = listener.accept(5)
        session = rlay.EnvSession(stream, TrivialEnv().observation_space, TrivialEnv().action_space)
        cmd = session.poll(5)
        assert cmd is not None and cmd.kind == "reset"
        session.reply_reset(np.zeros(4, np.float32), {})
        session.poll(5)  # the step: never answered
        time.sleep(1)
        session.close()

    thread = threading.Thread(target=env_side, daemon=True)
    thread.start()
    env = rlay.ClientEnv(str(listener.address), timeout=0.3)
    try:
        env.reset()
        with pytest.raises(Timeout, match="waiting for the reply to STEP"):
            env.step(0)
        with pytest.raises(ConnectionClosed, match="abandoned after a timeout"):
            env.step(0)
    finally:
        env.close()
        thread.join(5)
        listener.close()


def test_timeouts_may_be_none(address: str) -> None:
    server = rlay.serve(TrivialEnv, address, block=False)
    env = rlay.ClientEnv(server.address, connect_timeout=None, handshake_timeout=None, timeout=None)
    try:
        env.reset()
        env.step(0)
    finally:
        env.close()
        server.close()


def _fake_peer(address: str, role: Role, version: int, received: list[Any]) -> threading.Thread:
    """A peer that speaks the given version, records the frames it gets, then hangs up."""
    listener = listen(address)

    def run() -> None:
        stream = listener.accept(5)
        conn = Connection(role, version=version)
        stream.send(conn.data_to_send())
        reader = FrameReader(1 << 20)
        while True:
            data = stream.recv(5)
            if not data:
                break
            reader.feed(data)
        for kind, data_section, body in reader.frames:
            received.append((kind, decode(body, data_section)))
        stream.close()
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_version_mismatch_is_named_on_both_sides(address: str, sock_dir: str) -> None:
    # agent side (ours) against an env side from the future
    received: list[Any] = []
    addr = f"unix://{sock_dir}/v2.sock"
    thread = _fake_peer(addr, Role.ENV, 2, received)
    with pytest.raises(VersionMismatch, match="this side speaks 1, the peer speaks 2"):
        rlay.ClientEnv(addr)
    thread.join(5)
    errors = [body for kind, body in received if kind == Error.KIND]
    assert errors and errors[0]["code"] == ErrorCode.VERSION_MISMATCH and errors[0]["fatal"] is True
    # env side (ours) against an agent side from the future
    listener = listen(address)
    result: list[BaseException] = []

    def env_side() -> None:
        try:
            rlay.EnvSession(listener.accept(5), TrivialEnv().observation_space, TrivialEnv().action_space)
        except BaseException as exc:
            result.append(exc)

    t2 = threading.Thread(target=env_side, daemon=True)
    t2.start()
    stream = dial(str(listener.address), 5)
    conn = Connection(Role.AGENT, version=2)
    stream.send(conn.data_to_send())
    reader = FrameReader(1 << 20)
    while (data := stream.recv(5)) != b"":
        reader.feed(data)
    t2.join(5)
    listener.close()
    assert result and isinstance(result[0], VersionMismatch)
    bodies = [decode(body, d) for kind, d, body in reader.frames if kind == Error.KIND]
    assert bodies and bodies[0]["code"] == ErrorCode.VERSION_MISMATCH


def test_non_rlay_server_is_rejected_at_once(address: str) -> None:
    listener = listen(address)

    def http_server() -> None:
        stream = listener.accept(5)
        stream.send([b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"])
        time.sleep(0.5)
        stream.close()

    thread = threading.Thread(target=http_server, daemon=True)
    thread.start()
    with pytest.raises(ProtocolError) as info:
        rlay.ClientEnv(str(listener.address))
    assert info.value.code == ErrorCode.BAD_MAGIC and "HTTP/1.1" in str(info.value)
    thread.join(5)
    listener.close()


def test_garbage_client_ends_only_its_own_session(address: str) -> None:
    server = rlay.serve(TrivialEnv, address, block=False)
    good = rlay.ClientEnv(server.address)
    try:
        good.reset(seed=0)
        bad = dial(server.address, 5)
        bad.send([b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"])
        reply = b""
        while chunk := bad.recv(5):
            reply += chunk
        bad.close()
        assert reply[:2] == b"RL", reply[:40]  # the server said why, in rlay, then hung up
        reader = FrameReader(1 << 20)
        reader.feed(reply)
        errors = [decode(b, d) for k, d, b in reader.frames if k == Error.KIND]
        assert errors[-1]["code"] == ErrorCode.BAD_MAGIC
        good.step(0)
        other = rlay.ClientEnv(server.address)
        other.reset()
        other.close()
        good.step(0)
    finally:
        good.close()
        server.close()


def test_many_clients_at_once_each_with_its_own_env(address: str) -> None:
    server = rlay.serve(lambda: gym.make("CartPole-v1"), address, block=False)
    envs = [rlay.ClientEnv(server.address) for _ in range(4)]
    try:
        firsts = [env.reset(seed=i)[0] for i, env in enumerate(envs)]
        expected = [gym.make("CartPole-v1").reset(seed=i)[0] for i in range(4)]
        for got, want in zip(firsts, expected, strict=True):
            assert np.array_equal(got, want)
        errors: list[BaseException] = []

        def run(env: rlay.ClientEnv) -> None:
            try:
                for _ in range(200):
                    _, _, term, trunc, _ = env.step(0)
                    if term or trunc:
                        env.reset()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(env,)) for env in envs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
    finally:
        for env in envs:
            env.close()
        server.close()


def test_connect_refused_and_accept_timeout_name_the_address(sock_dir: str) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConnectionClosed, match=f"cannot connect to tcp://127.0.0.1:{port}"):
        rlay.ClientEnv(f"tcp://127.0.0.1:{port}", connect_timeout=2)
    with pytest.raises(Timeout, match="waiting for an env side to connect to unix://"):
        rlay.ServerEnv(f"unix://{sock_dir}/nobody.sock", accept_timeout=0.2)


def test_env_side_shutting_down_is_reported(address: str) -> None:
    env = rlay.ServerEnv(address, wait=False)

    def game() -> None:
        session = rlay.EnvSession.dial(env.address, TrivialEnv().observation_space, TrivialEnv().action_space)
        cmd = session.poll(5)
        assert cmd is not None and cmd.kind == "reset"
        session.reply_reset(np.zeros(4, np.float32))
        session.close()  # the player quit the game

    thread = threading.Thread(target=game, daemon=True)
    thread.start()
    env.reset()
    thread.join(5)
    with pytest.raises(RemoteError) as info:
        env.step(0)
    assert info.value.code == ErrorCode.SHUTTING_DOWN and info.value.fatal
    with pytest.raises(ConnectionClosed):
        env.step(0)
    env.close()


@pytest.mark.parametrize("direction", ["listen", "connect"])
def test_loop_style_game_example(direction: str, sock_dir: str) -> None:
    script = os.path.join(ROOT, "examples", "game_loop.py")
    if direction == "listen":
        proc = subprocess.Popen(
            [sys.executable, script, "--listen", f"unix://{sock_dir}/game.sock"],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = proc.stdout.readline() if proc.stdout else ""
        env: Any = rlay.ClientEnv(line.split()[1])
    else:
        env = rlay.ServerEnv("tcp://127.0.0.1:0", wait=False)
        proc = subprocess.Popen([sys.executable, script, "--connect", env.address])
        env.accept(timeout=30)
    try:
        obs, info = env.reset(seed=5)
        assert obs.dtype == np.float32 and info["target"] == pytest.approx(float(obs[2]))
        total = 0.0
        for _ in range(50):
            push = 1 if obs[0] < obs[2] else -1
            obs, reward, terminated, _, _ = env.step(push)
            total += reward
            if terminated:
                break
        assert "o" in env.render()
        with pytest.raises(InvalidAction):
            env.step(2)
    finally:
        env.close()
    assert proc.wait(10) == 0


def test_a_reply_value_outside_its_space_ends_the_session(address: str) -> None:
    """BAD_VALUE (spec §11, codes 1-15 are fatal): an env side answering RESET with a float64
    (4,) tensor for its float32 Box(4) gets a fatal ERROR naming the problem, its connection is
    closed, and the agent side sends nothing more."""
    from rlay.protocol.messages import EnvInfo, Reset, ResetResult
    from rlay.spaces import describe

    listener = listen(address)
    received: list[Any] = []

    def env_side() -> None:
        stream = listener.accept(5)
        conn = Connection(Role.ENV)
        box = describe(TrivialEnv().observation_space)  # a float32 Box(4)
        stream.send(conn.data_to_send(), 5)
        while (event := conn.next_event()) is None:
            conn.receive_data(stream.recv(5))
        conn.send(EnvInfo(box, {"kind": "discrete", "n": 2, "start": 0, "dtype": "int64"}, 1, {}, None, None))
        stream.send(conn.data_to_send(), 5)
        while True:
            data = stream.recv(5)
            if not data:
                break
            conn.receive_data(data)
            while (event := conn.next_event()) is not None:
                received.append(event)
                if type(event) is Reset:
                    conn.send(ResetResult(np.zeros(4, np.float64), {}))
                    stream.send(conn.data_to_send(), 5)
        stream.close()

    thread = threading.Thread(target=env_side, daemon=True)
    thread.start()
    env = rlay.ClientEnv(str(listener.address))
    with pytest.raises(ProtocolError) as info:
        env.reset()
    assert info.value.code == ErrorCode.BAD_VALUE and "float64" in str(info.value)
    with pytest.raises(ConnectionClosed, match="broke the protocol"):
        env.step(0)
    thread.join(5)
    assert not thread.is_alive(), "the agent side did not close the connection"
    kinds = [type(m).__name__ for m in received]
    assert kinds == ["Reset", "Error"], kinds
    assert received[-1].fatal and received[-1].code == ErrorCode.BAD_VALUE
    env.close()
    listener.close()
