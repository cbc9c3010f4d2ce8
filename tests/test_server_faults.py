"""Faults of the env-side server itself (issue 16, issue 17 item 5), each caused for real over
loopback: accept failures, bad clients by the thousand, a silent client, a second client of a
shared instance, a failing factory."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import textwrap
import time

import gymnasium as gym
import pytest

import rlay
from rlay.errors import RemoteError, clip
from rlay.protocol.wire import ErrorCode

CARTPOLE = "CartPole-v1"


def _serve_in_subprocess(script: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ADDRESS "), (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, line.split()[1]


def test_accept_survives_running_out_of_file_descriptors() -> None:
    """Under a low RLIMIT_NOFILE, idle connections exhaust the server's descriptors so accept()
    fails with EMFILE; once they close, a normal client is served, and the log says what happened."""
    proc, address = _serve_in_subprocess(
        """
        import logging, resource, sys
        import gymnasium as gym
        import rlay
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        server = rlay.serve(lambda: gym.make("CartPole-v1"), block=False, handshake_timeout=60)
        import os
        used = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (used + 24, hard))
        print("ADDRESS", server.address, flush=True)
        import time; time.sleep(120)
        """
    )
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    idle = []
    try:
        for _ in range(60):
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect((host, int(port)))
            except OSError:
                s.close()
                break
            idle.append(s)
        time.sleep(0.5)  # the server hits EMFILE on the ones beyond its limit
        for s in idle:
            s.close()
        env = rlay.ClientEnv(address, connect_timeout=5, handshake_timeout=10, timeout=10)
        try:
            obs, _ = env.reset(seed=1)
            assert obs.shape == (4,)
            env.step(0)
        finally:
            env.close()
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert "accept failed" in err and "Too many open files" in err, err
    assert "accepting again" in err, err


def test_error_history_is_bounded_and_releases_buffers() -> None:
    """Hundreds of garbage clients, each making the server read ~200 KiB: it keeps counts and
    the last few errors without their tracebacks (which would pin each read buffer), so its
    memory does not grow with the number of bad clients."""
    import tracemalloc

    server = rlay.serve(lambda: gym.make(CARTPOLE), block=False, handshake_timeout=5)
    host, port = server.address.removeprefix("tcp://").rsplit(":", 1)
    junk = b"XX" + b"\x00" * (200 << 10)  # not "RL": BAD_MAGIC once read

    def garbage(n: int) -> None:
        for _ in range(n):
            with socket.create_connection((host, int(port)), timeout=5) as s:
                try:
                    s.sendall(junk)
                    while s.recv(65536):
                        pass
                except OSError:
                    pass

    def settled(count: int) -> int:
        deadline = time.monotonic() + 10
        while sum(server.error_counts.values()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        garbage(20)
        base = settled(20)
        garbage(150)
        grown = settled(170) - base
        assert sum(server.error_counts.values()) == 170, server.error_counts
        assert len(server.errors) == rlay.backends.server.KEEP_ERRORS
        assert all(e.__traceback__ is None for e in server.errors)
        assert grown < 4 << 20, f"{grown / 2**20:.1f} MiB kept after 150 more bad clients"
    finally:
        tracemalloc.stop()
        server.close()


def test_clip_never_formats_a_whole_hostile_value() -> None:
    huge = "x" * 50_000_000
    t = time.perf_counter()
    text = clip(huge)
    assert time.perf_counter() - t < 0.05
    assert len(text) <= 200 and text.startswith("'xxx")
    assert len(clip(b"\xff" * 10_000_000)) <= 200
    assert len(clip({"k" * 10_000: ["v" * 10_000] * 10_000})) <= 200
    assert clip(10**10_000) == "<int of 33220 bits>"


def test_idle_timeout_ends_a_silent_client_and_frees_a_shared_instance() -> None:
    server = rlay.serve(gym.make(CARTPOLE), block=False, idle_timeout=0.5)
    try:
        silent = rlay.ClientEnv(server.address, timeout=10)
        silent.reset(seed=0)
        time.sleep(1.0)  # longer than the idle timeout
        with pytest.raises(RemoteError) as info:
            silent.step(0)
        assert info.value.code == ErrorCode.SHUTTING_DOWN and info.value.fatal
        assert "idle timeout" in str(info.value), str(info.value)
        silent.close()
        second = rlay.ClientEnv(server.address, timeout=10)  # the instance is free again
        second.reset(seed=0)
        second.close()
    finally:
        server.close()


def test_second_client_of_a_shared_instance_is_told_at_once() -> None:
    server = rlay.serve(gym.make(CARTPOLE), block=False)
    first = rlay.ClientEnv(server.address, timeout=10)
    try:
        first.reset(seed=0)
        t = time.monotonic()
        with pytest.raises(RemoteError) as info:
            rlay.ClientEnv(server.address, handshake_timeout=20)
        assert time.monotonic() - t < 5
        assert info.value.code == ErrorCode.NOT_SUPPORTED and info.value.fatal
        assert "busy" in str(info.value) and "factory" in str(info.value)
        first.step(0)  # the first one is untouched
    finally:
        first.close()
        server.close()


def test_a_failing_factory_reaches_the_agent_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    def factory() -> gym.Env:
        raise FileNotFoundError("level.dat is missing")

    server = rlay.serve(factory, block=False)
    try:
        with caplog.at_level("ERROR", logger="rlay"), pytest.raises(RemoteError) as info:
            rlay.ClientEnv(server.address, handshake_timeout=10)
        err = info.value
        assert err.code == ErrorCode.ENV_EXCEPTION and err.fatal
        assert err.remote_type == "FileNotFoundError" and "level.dat is missing" in str(err)
        assert "raise FileNotFoundError" in (err.traceback or "")
        deadline = time.monotonic() + 5
        while not any("factory failed" in r.getMessage() for r in caplog.records) or not server.error_counts:
            assert time.monotonic() < deadline, "nothing was logged on the server"
            time.sleep(0.02)
        # The server goes on.
        assert server.error_counts["FileNotFoundError"] == 1
    finally:
        server.close()


def test_vector_server_idle_timeout_is_passed_on() -> None:
    from rlay.backends.vector import serve_vector

    server = serve_vector(
        lambda: gym.vector.SyncVectorEnv([lambda: gym.make(CARTPOLE)] * 2), block=False, idle_timeout=0.3
    )
    try:
        assert server.idle_timeout == 0.3
    finally:
        server.close()


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="posix only")
def test_unix_socket_is_owner_only_whatever_the_umask(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "env.sock")
    old = os.umask(0)
    try:
        server = rlay.serve(lambda: gym.make(CARTPOLE), f"unix://{path}", block=False)
    finally:
        os.umask(old)
    try:
        assert os.stat(path).st_mode & 0o777 == 0o600
    finally:
        server.close()


def test_a_failing_factory_under_connect_reaches_the_server_env(tmp_path: object) -> None:
    import threading

    path = os.path.join(str(tmp_path), "agent.sock")
    raised: list[BaseException] = []

    def factory() -> gym.Env:
        raise RuntimeError("no GPU for the renderer")

    def env_side() -> None:
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            rlay.connect(factory, f"unix://{path}")
        except RuntimeError as exc:
            raised.append(exc)

    thread = threading.Thread(target=env_side, daemon=True)
    thread.start()
    with pytest.raises(RemoteError) as info:
        rlay.ServerEnv(f"unix://{path}", accept_timeout=10, handshake_timeout=10)
    thread.join(10)
    assert info.value.remote_type == "RuntimeError" and "no GPU for the renderer" in str(info.value)
    assert info.value.code == ErrorCode.ENV_EXCEPTION and info.value.fatal
    assert len(raised) == 1  # and the env side raises it too


def test_back_to_back_clients_of_a_shared_instance_are_not_refused() -> None:
    server = rlay.serve(gym.make(CARTPOLE), block=False)
    try:
        for seed in range(5):
            env = rlay.ClientEnv(server.address, timeout=10)
            env.reset(seed=seed)
            env.close()
    finally:
        server.close()
