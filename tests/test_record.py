"""Record and replay (rlay.record, ``rlay record``, ``rlay replay``) with real processes: the C
CartPole, a Python env side whose observations depend on the clock, and a recording served back
to a ClientEnv by ``rlay replay --serve``."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import require_tool

import rlay
from rlay.errors import RemoteError
from rlay.protocol.wire import Kind
from rlay.record import FILE_HEADER, MAGIC, RECORD_HEADER, RecordingError, load

ROOT = Path(__file__).resolve().parents[1]
RLAY = [sys.executable, "-m", "rlay.cli"]
CARTPOLE = [str(ROOT / "sdk" / "c" / "bin" / "cartpole"), "--listen", "{address}"]

#: An env side that is deterministic for 5 steps, then reads the clock into its observation.
CLOCK_ENV = """
import os, time, gymnasium as gym, numpy as np, rlay

class Clock(gym.Env):
    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float64)
    action_space = gym.spaces.Discrete(2)
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.n = 0
        return np.zeros(2), {}
    def step(self, action):
        self.n += 1
        second = float(time.perf_counter_ns()) if self.n > 5 else 0.5 * self.n
        return np.array([float(action), second]), 1.0, False, False, {"n": self.n}

rlay.serve(Clock, os.environ["RLAY_ADDRESS"])
"""


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RLAY, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def cartpole() -> list[str]:
    require_tool("gcc")
    require_tool("make")
    return CARTPOLE


def rollout(env: Any, steps: int, seed: int) -> list[Any]:
    """Seeded reset and seeded random actions; everything the env returned, in order."""
    out: list[Any] = [env.reset(seed=seed)[0]]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        obs, reward, term, trunc, _ = env.step(int(rng.integers(2)))
        out.append((obs, reward, term, trunc))
        if term or trunc:
            out.append(env.reset()[0])
    return out


def same(a: list[Any], b: list[Any]) -> bool:
    def key(x: Any) -> Any:
        if isinstance(x, tuple):
            return (x[0].dtype, x[0].tobytes(), *x[1:])
        return (x.dtype, x.tobytes())

    return [key(x) for x in a] == [key(x) for x in b]


def test_rlay_record_then_replay_against_a_fresh_c_cartpole_is_all_equal(
    cartpole: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "cartpole.rlayrec"
    out = run("record", str(path), "--steps", "300", "--seed", "3", "--", *cartpole)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "recorded 300 steps" in out.stdout

    blob = path.read_bytes()
    magic, version, flags, started = FILE_HEADER.unpack_from(blob)
    assert (magic, version, flags) == (MAGIC, 1, 0) and abs(started - time.time()) < 60
    recording = load(path)
    names = [(f.direction, f.name) for f in recording.frames]
    assert names[:4] == [(b">", "HELLO"), (b"<", "HELLO"), (b"<", "ENV_INFO"), (b">", "RESET")]
    assert names[-2:] == [(b">", "CLOSE"), (b"<", "CLOSE_RESULT")]
    assert sum(f.kind == Kind.STEP for f in recording.frames) == 300
    times = [f.t for f in recording.frames]
    assert times == sorted(times) and times[-1] > 0
    # The file is the frames themselves: its size is the header plus each record.
    assert len(blob) == FILE_HEADER.size + sum(RECORD_HEADER.size + len(f.raw) for f in recording.frames)

    out = run("replay", str(path), "--", *cartpole)
    assert out.returncode == 0, out.stdout + out.stderr
    replies = sum(f.direction == b"<" for f in recording.frames)
    assert f"all {replies} replies equal to the recording" in out.stdout


def test_record_option_writes_what_the_env_returned_and_a_server_env_replays(
    cartpole: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "server.rlayrec"
    # ServerEnv: the C program dials in (RLAY_MODE=dial from the launcher, no flag).
    env = rlay.ServerEnv(launch=cartpole[:1], record=path)
    try:
        seen = rollout(env, 120, seed=11)
    finally:
        env.close()
    recording = load(path)
    recorded = []
    for frame in recording.frames:
        if frame.kind in (Kind.RESET_RESULT, Kind.STEP_RESULT):
            body = frame.value()
            obs = body["obs"]
            if frame.kind == Kind.STEP_RESULT:
                recorded.append((obs, body["reward"], body["terminated"], body["truncated"]))
            else:
                recorded.append(obs)
    assert same(recorded, seen)

    out = run("replay", str(path), "--server", "--", *cartpole[:1])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "equal to the recording" in out.stdout


def test_replay_finds_the_first_step_of_a_nondeterministic_env(tmp_path: Path) -> None:
    path = tmp_path / "clock.rlayrec"
    env_side = [sys.executable, "-c", CLOCK_ENV]
    out = run("record", str(path), "--steps", "12", "--", *env_side)
    assert out.returncode == 0, out.stdout + out.stderr

    out = run("replay", str(path), "--", *env_side)
    assert out.returncode == 1, out.stdout + out.stderr
    # Commands: HELLO 0, RESET 1, then STEP i is command i + 2. The sixth step (index 5) is the
    # first whose observation reads the clock; its action is in the line, and the diff names obs[1].
    line = out.stdout.strip()
    assert line.startswith("first difference at command 7 (STEP, step 5, action="), line
    assert ": obs[1]: recorded " in line and ", now " in line


def test_a_served_recording_reproduces_observations_bit_for_bit(cartpole: list[str], tmp_path: Path) -> None:
    path = tmp_path / "served.rlayrec"
    env = rlay.ClientEnv(launch=cartpole, record=path)
    try:
        seen = rollout(env, 150, seed=5)
    finally:
        env.close()

    # The recorded env side, run by hand: it says where it listens, serves one agent, exits 0.
    proc = subprocess.Popen(
        [*RLAY, "replay", str(path), "--serve", "tcp://127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("RLAY_LISTENING tcp://127.0.0.1:"), line
        env = rlay.ClientEnv(line.split()[1])
        try:
            again = rollout(env, 150, seed=5)
        finally:
            env.close()
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert same(again, seen)
    assert proc.returncode == 0, err
    assert f"served {len(load(path).commands)} recorded commands" in err

    # Launched by the env itself; another action than the recorded one is refused by name,
    # with the step it happened at.
    env = rlay.ClientEnv(launch=[*RLAY, "replay", str(path), "--serve", "{address}"])
    try:
        env.reset(seed=5)
        first = int(np.random.default_rng(5).integers(2))
        with pytest.raises(RemoteError) as caught:
            env.step(1 - first)
    finally:
        env.close()
    error = caught.value
    assert error.remote_type == "rlay.record.ReplayMismatch" and error.fatal
    assert "command 2 (STEP, step 0" in error.message
    assert f"action: recorded {first}, now {1 - first}" in error.message


def test_truncated_foreign_and_future_files_are_named(cartpole: list[str], tmp_path: Path) -> None:
    good = tmp_path / "good.rlayrec"
    env = rlay.ClientEnv(launch=cartpole, record=good)
    try:
        rollout(env, 5, seed=0)
    finally:
        env.close()
    blob = good.read_bytes()
    frames = load(good).frames

    cut = tmp_path / "cut.rlayrec"
    cut.write_bytes(blob[: FILE_HEADER.size + RECORD_HEADER.size + len(frames[0].raw) + 30])
    with pytest.raises(RecordingError, match=r"truncated: record 1 .* holds a HELLO frame of \d+ bytes"):
        load(cut)
    short = tmp_path / "short.rlayrec"
    short.write_bytes(blob[:10])
    with pytest.raises(RecordingError, match="truncated: the file header is 20 bytes, the file has 10"):
        load(short)
    foreign = tmp_path / "foreign.rlayrec"
    foreign.write_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(RecordingError, match="not an rlay recording: it starts b'GET / HT'"):
        load(foreign)
    future = tmp_path / "future.rlayrec"
    future.write_bytes(blob[:8] + struct.pack("<H", 2) + blob[10:])
    with pytest.raises(RecordingError, match="recording format version 2; this rlay reads version 1"):
        load(future)
    garbled = tmp_path / "garbled.rlayrec"
    pos = FILE_HEADER.size + RECORD_HEADER.size
    garbled.write_bytes(blob[:pos] + b"XX" + blob[pos + 2 :])
    with pytest.raises(RecordingError, match=r"record 0 \(byte 20\): not an rlay frame: BAD_MAGIC"):
        load(garbled)

    # The command line says the same and exits 2, before launching anything.
    out = run("replay", str(cut), "--", *cartpole)
    assert out.returncode == 2 and "RecordingError" in out.stderr and "truncated" in out.stderr
    out = run("replay", str(foreign), "--serve", "tcp://127.0.0.1:0")
    assert out.returncode == 2 and "not an rlay recording" in out.stderr
    assert not os.path.exists(tmp_path / "missing.rlayrec")
    out = run("replay", str(tmp_path / "missing.rlayrec"), "--", *cartpole)
    assert out.returncode == 2 and "cannot read it" in out.stderr
