"""Private by default (spec §17.2): listeners bind loopback unless told otherwise, unix sockets and
the launcher's directory are the owner's only, and a second program dialling a ServerEnv that
already has its env side is refused with a named error while the first session goes on."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import msgpack
import numpy as np
import pytest
from conftest import require_tool

import rlay
from rlay.transports import listen

ROOT = Path(__file__).resolve().parent.parent
C_CARTPOLE = str(ROOT / "sdk" / "c" / "bin" / "cartpole")
#: A launched Python env side that dials its ServerEnv (RLAY_ADDRESS, RLAY_TOKEN: spec §15).
DIALLING_GAME = [
    sys.executable,
    "-c",
    "import os, gymnasium, rlay; rlay.connect(gymnasium.make('CartPole-v1'), os.environ['RLAY_ADDRESS'])",
]


def test_python_listeners_bind_loopback_unless_told_otherwise() -> None:
    for address in ("tcp://:0", "tls://:0?cert=x"):
        assert rlay.transports.parse_address(address).host == "127.0.0.1"
    listener = listen("tcp://:0")
    try:
        assert listener.address.host == "127.0.0.1"
    finally:
        listener.close()
    env = rlay.ServerEnv(wait=False)
    try:
        assert env.address.startswith("tcp://127.0.0.1:")
    finally:
        env.close()
    server = rlay.serve(lambda: gym.make("CartPole-v1"), block=False)
    try:
        assert server.address.startswith("tcp://127.0.0.1:")
    finally:
        server.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlay.cli", "serve", "CartPole-v1"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split()[1].startswith("tcp://127.0.0.1:")
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_c_listener_binds_loopback_unless_told_otherwise() -> None:
    require_tool("gcc")
    proc = subprocess.Popen([C_CARTPOLE, "--listen", "tcp://:0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("RLAY_LISTENING tcp://127.0.0.1:"), line
    finally:
        proc.kill()
        proc.wait(10)


def test_unix_sockets_and_the_launchers_directory_are_owner_only(sock_dir: str) -> None:
    old = os.umask(0)
    try:
        listener = listen(f"unix://{sock_dir}/open.sock")
        try:
            assert stat.S_IMODE(os.stat(f"{sock_dir}/open.sock").st_mode) == 0o600
        finally:
            listener.close()
        env = rlay.ServerEnv(launch=DIALLING_GAME, accept_timeout=30)
    finally:
        os.umask(old)
    try:
        path = env.address.removeprefix("unix://")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        assert os.stat(os.path.dirname(path)).st_uid == os.getuid()
        env.reset(seed=0)
    finally:
        env.close()


HELLO = {
    "protocol": "rlay",
    "version": 1,
    "role": "env",
    "sdk": "raw",
    "sdk_version": "",
    "capabilities": {},
}


def first_frame(sock: socket.socket) -> tuple[int, Any]:
    data = b""
    while len(data) < 12:
        chunk = sock.recv(65536)
        assert chunk, "closed before a frame"
        data += chunk
    data_len = int.from_bytes(data[4:8], "little")
    body_len = int.from_bytes(data[8:12], "little")
    while len(data) < 12 + data_len + body_len:
        chunk = sock.recv(65536)
        assert chunk
        data += chunk
    return data[2], msgpack.unpackb(data[12 + data_len : 12 + data_len + body_len])


class Game(threading.Thread):
    """A Python env side that dials a ServerEnv (what a game does)."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            rlay.connect(gym.make("CartPole-v1"), self.address, connect_timeout=10)
        except BaseException as exc:
            self.error = exc


def test_a_second_program_dialling_a_server_env_is_refused_by_name() -> None:
    env = rlay.ServerEnv(wait=False)
    first = Game(env.address)
    first.start()
    try:
        env.accept(10)
        obs, _ = env.reset(seed=1)
        local = gym.make("CartPole-v1")
        np.testing.assert_array_equal(obs, local.reset(seed=1)[0])

        # A raw dialler: its connect() succeeds; the first frame it gets is the refusal.
        host, port = env.address.removeprefix("tcp://").rsplit(":", 1)
        t = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            kind, err = first_frame(raw)
            assert kind == 48 and err["fatal"] is True and err["code"] == 34, err
            assert "already has its env side" in err["message"], err
            assert raw.recv(1) == b""  # and it is closed
        assert time.monotonic() - t < 3

        # A Python env side: a named error, not a wait in the backlog.
        second = Game(env.address)
        second.start()
        second.join(10)
        assert not second.is_alive(), "the second env side was left waiting"
        assert isinstance(second.error, rlay.ConnectionClosed), second.error
        assert "already has its env side" in str(second.error), second.error

        # The first session never noticed.
        for i in range(10):
            got, exp = env.step(i % 2), local.step(i % 2)
            np.testing.assert_array_equal(got[0], exp[0])
    finally:
        env.close()
    first.join(10)
    assert first.error is None, first.error


def test_a_c_program_dialling_a_taken_server_env_exits_naming_why() -> None:
    require_tool("gcc")
    env = rlay.ServerEnv(wait=False)
    first = Game(env.address)
    first.start()
    try:
        env.accept(10)
        env.reset(seed=0)
        second = subprocess.run(
            [C_CARTPOLE, "--connect", env.address], capture_output=True, text=True, timeout=30
        )
        assert second.returncode != 0
        assert "already has its env side" in second.stderr, second.stderr
        env.step(0)
    finally:
        env.close()
    first.join(10)


class LeavingGame(threading.Thread):
    """An env side that answers a RESET and a STEP, then hangs up (the editor's stop button)."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            cp = gym.make("CartPole-v1")
            session = rlay.EnvSession.dial(self.address, cp.observation_space, cp.action_space)
            for _ in range(2):
                cmd = session.poll(10)
                assert cmd is not None
                if cmd.kind == "reset":
                    session.reply_reset(cp.reset(seed=cmd.seed)[0], {})
                else:
                    obs, reward, term, trunc, _ = cp.step(cmd.action)
                    session.reply_step(obs, reward, term, trunc, {})
            session.stream.close()
        except BaseException as exc:
            self.error = exc


def test_a_game_that_leaves_is_replaced_by_the_next_one_to_dial() -> None:
    """The doorman refuses only while the env side is attached: a game stopped and started
    again in its editor is let in (as without a doorman)."""
    env = rlay.ServerEnv(wait=False)
    host, port = env.address.removeprefix("tcp://").rsplit(":", 1)
    try:
        for _ in range(3):
            game = LeavingGame(env.address)
            game.start()
            env.reset(seed=0)
            with socket.create_connection((host, int(port)), timeout=5) as raw:  # refused meanwhile
                assert first_frame(raw)[0] == 48
            env.step(1)
            game.join(10)
            assert game.error is None, game.error
            with pytest.raises(rlay.ConnectionClosed):
                env.step(0)
    finally:
        env.close()


#: Diallers at once: within the listener's backlog (64), past which the kernel, not rlay, holds
#: connections back (SYN retries) for seconds.
FLOOD = 60


def test_a_flood_of_diallers_does_not_disturb_the_server_envs_session() -> None:
    env = rlay.ServerEnv(wait=False)
    game = Game(env.address)
    game.start()
    host, port = env.address.removeprefix("tcp://").rsplit(":", 1)
    socks = []
    try:
        env.accept(10)
        env.reset(seed=0)
        for _ in range(FLOOD):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((host, int(port)))
            socks.append(s)
        slowest = 0.0
        for i in range(200):
            t = time.perf_counter()
            _, _, term, trunc, _ = env.step(i % 2)
            slowest = max(slowest, time.perf_counter() - t)
            if term or trunc:
                env.reset()
        assert slowest < 1.0, slowest
        deadline = time.monotonic() + 10  # each is refused (or, past 32 at once, closed) and closed
        open_ = list(socks)
        while open_ and time.monotonic() < deadline:
            still = []
            for s in open_:
                try:
                    if s.recv(65536):
                        still.append(s)
                except BlockingIOError:
                    still.append(s)
                except OSError:
                    pass
            open_ = still
            time.sleep(0.05)
        assert not open_, f"{len(open_)} of {FLOOD} diallers still connected"
        env.step(0)
    finally:
        for s in socks:
            s.close()
        env.close()
    game.join(10)
    assert game.error is None, game.error
