"""The C SDK under faults (issue 16): a client that never says HELLO, a live unix socket at the
path asked for, a permissive umask. Each runs the compiled cartpole example for real."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from test_c_cartpole import SAN_ENV, build

import rlay


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> str:
    # Under ASan/UBSan: the fault paths (dropping a connection, listening again) are where a
    # use-after-close would hide.
    out = tmp_path_factory.mktemp("cartpole-faults")
    san = "-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    build(out, f"{out}/cartpole", f"CFLAGS={san}")
    return str(out / "cartpole")


def start(cartpole: str, *args: str, umask: int | None = None) -> tuple[subprocess.Popen[str], str]:
    def set_umask() -> None:
        if umask is not None:
            os.umask(umask)

    proc = subprocess.Popen(
        [cartpole, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=set_umask,
        env=SAN_ENV,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("RLAY_LISTENING "), (line, proc.stderr.read() if proc.stderr else "")
    return proc, line.split()[1]


def test_a_client_that_never_says_hello_is_dropped(cartpole: str) -> None:
    """A squatter that connects and says nothing is dropped after the handshake timeout, and the
    env side listens on: a real agent then gets it."""
    proc, address = start(cartpole, "--listen", "tcp://127.0.0.1:0", "--handshake-timeout", "500")
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    try:
        silent = socket.create_connection((host, int(port)), timeout=5)  # connects, says nothing
        silent.settimeout(5)
        t = time.monotonic()
        data = b""
        while True:  # its HELLO, then end of stream when it gives up on us
            chunk = silent.recv(65536)
            if not chunk:
                break
            data += chunk
        assert 0.4 < time.monotonic() - t < 5 and data[:2] == b"RL"
        silent.close()
        assert proc.poll() is None
        env = rlay.ClientEnv(address)
        env.reset(seed=0)
        env.step(1)
        env.close()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_probe_that_hangs_up_before_hello_costs_nothing(cartpole: str) -> None:
    proc, address = start(cartpole, "--listen", "tcp://127.0.0.1:0")
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    try:
        for _ in range(3):
            socket.create_connection((host, int(port)), timeout=5).close()
        env = rlay.ClientEnv(address)
        env.reset(seed=0)
        env.close()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_default_handshake_timeout_does_not_disturb_a_real_agent(cartpole: str) -> None:
    proc, address = start(cartpole, "--listen", "tcp://127.0.0.1:0")
    try:
        env = rlay.ClientEnv(address)
        env.reset(seed=3)
        env.step(0)
        env.close()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_live_unix_socket_is_not_taken_over(cartpole: str, tmp_path: Path) -> None:
    path = tmp_path / "env.sock"
    first, address = start(cartpole, "--listen", f"unix://{path}")
    try:
        second = subprocess.run(
            [cartpole, "--listen", f"unix://{path}"], capture_output=True, text=True, timeout=10
        )
        assert second.returncode != 0
        assert "another process is listening there" in second.stderr, second.stderr
        env = rlay.ClientEnv(address)  # the first one is still reachable
        env.reset(seed=0)
        env.close()
        assert first.wait(10) == 0
    finally:
        if first.poll() is None:
            first.kill()


def test_a_stale_unix_socket_is_replaced(cartpole: str, tmp_path: Path) -> None:
    path = tmp_path / "env.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    proc, address = start(cartpole, "--listen", f"unix://{path}")
    try:
        env = rlay.ClientEnv(address)
        env.reset(seed=0)
        env.close()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_unix_socket_is_owner_only_whatever_the_umask(cartpole: str, tmp_path: Path) -> None:
    path = tmp_path / "env.sock"
    proc, address = start(cartpole, "--listen", f"unix://{path}", umask=0)
    try:
        assert os.stat(path).st_mode & 0o777 == 0o600
        env = rlay.ClientEnv(address)
        env.reset(seed=0)
        env.close()
    finally:
        proc.wait(10) if proc.poll() is None else None
        if proc.poll() is None:
            proc.kill()
