"""The shared test harness of every SDK (sdk/README.md): one class of checks run against an SDK's
two entry points, ``sdk/<lang>/bin/conformance`` and ``sdk/<lang>/bin/cartpole``, as real
processes over real sockets.

An SDK's test file subclasses :class:`SdkContract`::

    from harness import SdkContract

    class TestContract(SdkContract):
        LANG = "csharp"
        TOOLS = ("mcs", "mono")      # required: CI fails (never skips) when one is missing

and gets: every golden vector line (spec §12); ``rlay check`` in both directions; CartPole-v1
bit-identical to Gymnasium's (seeded resets, terminations, the 500-step truncation) through
``ClientEnv`` (the program listens, over tcp and unix) and ``ServerEnv`` (it dials); the launcher
variables alone (no flags: ``RLAY_MODE``/``RLAY_ADDRESS``, spec §15); error replies that leave the
session usable; the program's exit when the agent side is killed with SIGKILL; and, with
``BATCHED``, ``--num-envs 3`` bit-identical to ``SyncVectorEnv`` (next-step autoreset).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import msgpack
import numpy as np
import pytest
from conftest import require_tool

import rlay
from rlay.testing.conformance import run_conformance

ROOT = Path(__file__).resolve().parents[2]


def balance(obs: np.ndarray) -> int:
    """A controller that keeps the pole up for the whole 500 steps (so truncation is reached)."""
    return int(obs[2] + 0.5 * obs[3] + 0.01 * obs[0] + 0.05 * obs[1] > 0)


def run_episode(env: gym.Env[Any, Any], seed: int, policy: str, extra_steps: int = 0) -> int:
    """Steps ``env`` and Gymnasium's CartPole-v1 side by side from the same seeded reset; every
    observation, reward and flag must be identical. Returns the episode's length."""
    ref = gym.make("CartPole-v1")
    want_obs, _ = ref.reset(seed=seed)
    obs, info = env.reset(seed=seed)
    assert obs.dtype == np.float32 and obs.shape == (4,), (obs.dtype, obs.shape)
    assert obs.tobytes() == want_obs.tobytes(), ("seeded reset", seed, obs, want_obs)
    assert info == {}
    rng = np.random.default_rng(seed)
    steps, done_at = 0, None
    while True:
        action = balance(want_obs) if policy == "balance" else int(rng.integers(2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Gymnasium warns about stepping after termination
            want = ref.step(action)
        got = env.step(action)
        steps += 1
        want_obs = want[0]
        assert got[0].dtype == np.float32 and got[0].tobytes() == want[0].tobytes(), (steps, got[0], want[0])
        assert type(got[1]) is float and got[1] == want[1], (steps, got[1], want[1])
        assert got[2] is want[2] and got[3] is want[3], (steps, got[2:4], want[2:4])
        if done_at is None and (want[2] or want[3]):
            done_at = steps
        if done_at is not None and steps >= done_at + extra_steps:
            return done_at


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: list[int], seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


# -- the raw protocol, as a non-Python or broken peer speaks it (hand-made frames, no rlay codec) --

#: An agent's HELLO body (spec §7), to start a raw session with an env side.
HELLO = {
    "protocol": "rlay",
    "version": 1,
    "role": "agent",
    "sdk": "test",
    "sdk_version": "0",
    "capabilities": {},
}


def frame(kind: int, body: dict[str, Any]) -> bytes:
    """A frame with no tensor data: the 12-byte header of spec §2 and a MessagePack body."""
    payload = msgpack.packb(body)
    return struct.pack("<2sBBII", b"RL", kind, 0, 0, len(payload)) + payload


def read_frame(sock: socket.socket) -> tuple[int, Any]:
    """The next frame's kind and body (ext values as ``msgpack.ExtType``, a ``(code, data)``)."""

    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError(f"end of stream after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    head = exactly(12)
    assert head[:2] == b"RL" and head[3] == 0, head
    dlen, blen = struct.unpack("<II", head[4:])
    rest = exactly(dlen + blen)
    return head[2], msgpack.unpackb(rest[dlen:], ext_hook=msgpack.ExtType)


KILLED_TRAINER = """
import sys, time, rlay
program = sys.argv[1]
client = rlay.ClientEnv("tcp://127.0.0.1:0", launch=[program, "--listen", "{address}"], connect_timeout=60)
server = rlay.ServerEnv("tcp://127.0.0.1:0", launch=[program, "--connect", "{address}"], accept_timeout=60)
client.reset(seed=0); server.reset(seed=0)
print("PIDS", client.process.pid, server.process.pid, flush=True)
time.sleep(60)
"""


class SdkContract:
    """The checks every SDK passes; subclass it in ``tests/sdk/test_<lang>*.py``."""

    LANG: ClassVar[str]
    #: Tools the SDK needs; CI fails when one is missing, elsewhere the tests skip.
    TOOLS: ClassVar[tuple[str, ...]] = ()
    #: Listens and dials on unix sockets too (Godot 3 has none).
    UNIX: ClassVar[bool] = True
    #: Hosts batched sub-envs (``--num-envs N``, spec §10).
    BATCHED: ClassVar[bool] = True
    #: Seconds to allow for the program to start (an engine is slower than a C binary).
    START_TIMEOUT: ClassVar[float] = 60.0

    @pytest.fixture(scope="class")
    @classmethod
    def bins(cls) -> tuple[str, str]:
        """The two entry points, built once (each builds on demand; a failed build fails here)."""
        for tool in cls.TOOLS:
            require_tool(tool)
        base = ROOT / "sdk" / cls.LANG / "bin"
        conformance, cartpole = str(base / "conformance"), str(base / "cartpole")
        for path in (conformance, cartpole):
            assert os.access(path, os.X_OK), f"{path} is missing or not executable (sdk/README.md)"
        proc = subprocess.run([conformance], input="", capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{conformance} on empty input: {proc.returncode}\n{proc.stderr[-3000:]}"
        return conformance, cartpole

    def client(self, cartpole: str, *extra: str, address: str | None = None, **kw: Any) -> rlay.ClientEnv:
        return rlay.ClientEnv(
            address,
            launch=[cartpole, "--listen", "{address}", *extra],
            connect_timeout=self.START_TIMEOUT,
            **kw,
        )

    def server(self, cartpole: str, *extra: str, **kw: Any) -> rlay.ServerEnv:
        return rlay.ServerEnv(
            "tcp://127.0.0.1:0",
            launch=[cartpole, "--connect", "{address}", *extra],
            accept_timeout=self.START_TIMEOUT,
            **kw,
        )

    # -- spec §12 --------------------------------------------------------------------------------

    def test_every_vector_line(self, bins: tuple[str, str]) -> None:
        failures = run_conformance([bins[0]], roles=("env",), timeout=30)
        assert not failures, f"{len(failures)} vector lines failed:\n" + "\n".join(failures[:30])

    # -- CartPole, bit for bit -------------------------------------------------------------------

    def test_cartpole_listens_over_tcp_and_matches_gymnasium(self, bins: tuple[str, str]) -> None:
        env = self.client(bins[1], address="tcp://127.0.0.1:0")
        try:
            assert env.observation_space == gym.make("CartPole-v1").observation_space
            assert env.action_space == gym.spaces.Discrete(2)
            assert [run_episode(env, seed, "balance") for seed in (0, 123)] == [500, 500]
            lengths = [run_episode(env, seed, "random", extra_steps=2) for seed in (7, 8)]
            assert all(5 < n < 200 for n in lengths), lengths
        finally:
            env.close()

    def test_cartpole_listens_over_unix(self, bins: tuple[str, str]) -> None:
        if not self.UNIX:  # then a unix address is refused, by name, at once
            proc = subprocess.run(
                [bins[1], "--listen", "unix:///tmp/rlay-no-unix.sock"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode != 0 and "unix" in proc.stderr.lower(), (
                proc.returncode,
                proc.stderr[-2000:],
            )
            return
        env = self.client(bins[1])
        try:
            assert env.address.startswith("unix://")
            assert run_episode(env, 5, "random", extra_steps=1) > 5
        finally:
            env.close()

    def test_cartpole_dials_server_env(self, bins: tuple[str, str]) -> None:
        env = self.server(bins[1])
        try:
            assert run_episode(env, 1, "balance") == 500
            assert run_episode(env, 9, "random") > 5
        finally:
            env.close()

    def test_seeded_and_unseeded_resets_follow_gymnasium(self, bins: tuple[str, str]) -> None:
        """numpy's Generator(PCG64(SeedSequence(seed))).uniform, reproduced: a seeded reset and
        the unseeded resets after it give Gymnasium's initial observations bit for bit."""
        env = self.client(bins[1], address="tcp://127.0.0.1:0")
        ref = gym.make("CartPole-v1")
        try:
            for seed in (0, 1, 2**32, 2**64 - 1):
                got, want = env.reset(seed=seed)[0], ref.reset(seed=seed)[0]
                assert got.tobytes() == want.tobytes(), (seed, got, want)
                for _ in range(3):
                    assert env.reset()[0].tobytes() == ref.reset()[0].tobytes(), seed
        finally:
            env.close()

    def test_launcher_variables_alone_decide(self, bins: tuple[str, str]) -> None:
        """No flags: RLAY_MODE and RLAY_ADDRESS (set by rlay's launcher) decide (spec §15)."""
        for make in (rlay.ClientEnv, rlay.ServerEnv):
            kw = {"connect_timeout" if make is rlay.ClientEnv else "accept_timeout": self.START_TIMEOUT}
            address = None if self.UNIX else "tcp://127.0.0.1:0"
            env = make(address, launch=[bins[1]], **kw)
            try:
                assert run_episode(env, 3, "random") > 5, make.__name__
            finally:
                env.close()

    # -- checks and errors -----------------------------------------------------------------------

    @pytest.mark.parametrize("direction", ["listen", "dial"])
    def test_rlay_check_passes(self, bins: tuple[str, str], direction: str) -> None:
        if direction == "listen":
            how = ["tcp://127.0.0.1:0", "--", bins[1], "--listen", "{address}"]
        else:
            how = ["--server", "tcp://127.0.0.1:0", "--", bins[1], "--connect", "{address}"]
        cmd = [sys.executable, "-m", "rlay.cli", "check", *how]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0 and " 0 failed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]

    def test_errors_are_replies_and_the_session_goes_on(self, bins: tuple[str, str]) -> None:
        env = self.client(bins[1], address="tcp://127.0.0.1:0", check_actions=False)
        try:
            with pytest.raises(rlay.RemoteError) as info:
                env.step(0)  # STEP before RESET
            assert info.value.code_name == "RESET_NEEDED" and not info.value.fatal
            env.reset(seed=0)
            with pytest.raises(rlay.RemoteError) as info:
                env.step(7)  # outside Discrete(2)
            assert info.value.code_name == "INVALID_ACTION" and not info.value.fatal
            obs, reward, *_ = env.step(1)
            assert obs.shape == (4,) and reward == 1.0
        finally:
            env.close()

    def test_the_program_exits_when_the_agent_is_killed(self, bins: tuple[str, str]) -> None:
        """kill -9 of the Python agent: each launched program (one listening, one dialled in)
        sees end of stream and exits by itself."""
        trainer = subprocess.Popen(
            [sys.executable, "-c", KILLED_TRAINER, bins[1]], stdout=subprocess.PIPE, text=True
        )
        try:
            assert trainer.stdout is not None
            line = next((ln for ln in trainer.stdout if ln.startswith("PIDS")), "")
            assert line, f"the trainer did not start its envs (exit {trainer.poll()})"
            pids = [int(w) for w in line.split()[1:]]
            os.kill(trainer.pid, signal.SIGKILL)
            trainer.wait(10)
        finally:
            trainer.kill()
            trainer.wait()
        left = wait_gone(pids, 15)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"{self.LANG} env programs outlived the killed agent: {left}"

    # -- batched sub-envs (spec §10) -------------------------------------------------------------

    def test_batched_cartpole_matches_sync_vector_env(self, bins: tuple[str, str]) -> None:
        if not self.BATCHED:
            pytest.skip(f"the {self.LANG} SDK hosts no batched sub-envs (its README says why)")
        n = 3
        env = rlay.ClientVectorEnv(
            "tcp://127.0.0.1:0" if not self.UNIX else None,
            launch=[bins[1], "--listen", "{address}", "--num-envs", str(n)],
        )
        ref = gym.vector.SyncVectorEnv(
            [lambda: gym.make("CartPole-v1")] * n, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP
        )
        try:
            assert env.num_envs == n and env.observation_space == ref.observation_space
            got, want = env.reset(seed=11), ref.reset(seed=11)
            assert got[0].tobytes() == want[0].tobytes()
            rng = np.random.default_rng(0)
            ends = 0
            for step in range(300):
                actions = rng.integers(0, 2, size=n)
                got, want = env.step(actions), ref.step(actions)
                for i, what in enumerate(("obs", "reward", "terminated", "truncated")):
                    assert np.asarray(got[i]).tobytes() == np.asarray(want[i]).tobytes(), (step, what)
                ends += int(np.sum(want[2]))
            assert ends >= 5, ends
        finally:
            env.close()
            ref.close()
