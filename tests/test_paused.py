"""Paused is not dead (spec §17.3), with the C CartPole env side as the paused or killed game: a
SIGSTOPped program is "connected but not answering" (NotAnswering, a Timeout), never
ConnectionClosed; a short pause costs nothing; a killed one is ConnectionClosed at once even with
no timeout; TCP keep-alive (for a vanished host) is on for tcp and tls streams."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import require_tool

import rlay
from rlay.transports import dial, listen

C_CARTPOLE = str(Path(__file__).resolve().parent.parent / "sdk" / "c" / "bin" / "cartpole")


@pytest.fixture(scope="module")
def cartpole() -> str:
    require_tool("gcc")
    return C_CARTPOLE


def launched(kind: str, cartpole: str, timeout: float | None) -> Any:
    cls = rlay.ClientEnv if kind == "ClientEnv" else rlay.ServerEnv
    return cls(launch=[cartpole], timeout=timeout)


def test_a_stopped_env_side_is_not_answering_and_the_session_ends(cartpole: str) -> None:
    env = rlay.ClientEnv(launch=[cartpole], timeout=0.5)
    process = env.process
    assert process is not None
    try:
        env.reset(seed=0)
        os.kill(process.pid, signal.SIGSTOP)
        t = time.monotonic()
        with pytest.raises(rlay.NotAnswering, match="connected but not answering") as info:
            env.step(0)
        took = time.monotonic() - t
        assert isinstance(info.value, rlay.Timeout) and not isinstance(info.value, rlay.ConnectionClosed)
        assert 0.4 < took < 3, took
        assert process.exited() is None  # not reported dead, and not dead
        os.kill(process.pid, signal.SIGCONT)
        # The session was ended (a late reply must not pass for the next one): said plainly.
        with pytest.raises(rlay.ConnectionClosed, match="abandoned after a timeout"):
            env.step(0)
        process.popen.wait(10)  # once resumed, the program sees the end of the stream and exits
    finally:
        os.kill(process.pid, signal.SIGCONT) if process.exited() is None else None
        env.close()


def test_a_pause_shorter_than_the_timeout_costs_nothing(cartpole: str) -> None:
    env = rlay.ClientEnv(launch=[cartpole], timeout=20)
    process = env.process
    assert process is not None
    local = gym.make("CartPole-v1")
    try:
        np.testing.assert_array_equal(env.reset(seed=4)[0], local.reset(seed=4)[0])
        os.kill(process.pid, signal.SIGSTOP)
        resume = threading.Timer(1.0, os.kill, (process.pid, signal.SIGCONT))
        resume.start()
        t = time.monotonic()
        got, exp = env.step(1), local.step(1)
        assert time.monotonic() - t >= 0.9  # it waited through the pause
        np.testing.assert_array_equal(got[0], exp[0])
        for i in range(5):
            np.testing.assert_array_equal(env.step(i % 2)[0], local.step(i % 2)[0])
        resume.join()
    finally:
        os.kill(process.pid, signal.SIGCONT)
        env.close()


@pytest.mark.parametrize("kind", ["ClientEnv", "ServerEnv"])
def test_a_killed_env_side_is_reported_at_once_even_without_a_timeout(cartpole: str, kind: str) -> None:
    env = launched(kind, cartpole, timeout=None)
    process = env.process
    try:
        env.reset(seed=0)
        env.step(0)
        os.kill(process.pid, signal.SIGKILL)  # the program (popen is the launcher's wrapper)
        t = time.monotonic()
        with pytest.raises(rlay.ConnectionClosed) as info:
            env.step(0)
        assert time.monotonic() - t < 3
        assert not isinstance(info.value, rlay.Timeout)
        assert "SIGKILL" in str(info.value), info.value
    finally:
        env.close()


def keepalive_of(stream: Any) -> tuple[int, int, int, int]:
    s = socket.socket(fileno=os.dup(stream.fileno()))
    try:
        return (
            s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        )
    finally:
        s.close()


@pytest.fixture
def pair() -> Iterator[Any]:
    def make() -> tuple[Any, Any]:
        listener = listen("tcp://127.0.0.1:0")
        dialled = dial(str(listener.address), 5)
        accepted = listener.accept(5)
        listener.close()
        opened.extend([dialled, accepted])
        return dialled, accepted

    opened: list[Any] = []
    yield make
    for s in opened:
        s.close()


def test_tcp_keepalive_is_on_by_default_and_can_be_set(pair: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for stream in pair():
        assert keepalive_of(stream) == (1, 30, 10, 6)
    monkeypatch.setenv("RLAY_KEEPALIVE", "5,2,3")
    for stream in pair():
        assert keepalive_of(stream) == (1, 5, 2, 3)
    monkeypatch.setenv("RLAY_KEEPALIVE", "0")
    for stream in pair():
        assert keepalive_of(stream)[0] == 0
    monkeypatch.setenv("RLAY_KEEPALIVE", "often")
    with pytest.raises(rlay.UsageError, match="RLAY_KEEPALIVE"):
        pair()
