"""The C# SDK (sdk/csharp/Runtime/Rlay.cs) beyond the shared contract (test_csharp_contract.py):
its unit tests, the space vectors, a bounded fuzz of the decoder, the loop style of a game that
answers a STEP over several frames (both directions), exceptions in env code as ENV_EXCEPTION
with their stack trace, no allocation per step over a real socket, the Unity sample compiled and
played against a stub of UnityEngine, and the program's answers to hostile peers.

Everything is built once per module with Debian's mcs and run with mono; in CI (CI=true) a
missing mcs/mono/make fails these tests, elsewhere they skip.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import require_tool
from harness import HELLO, frame, read_frame

import rlay
from rlay.errors import EnvSideFailed
from rlay.protocol.codec import Encoder
from rlay.testing.conformance import VECTORS_DIR, conformance_lines, run_conformance, space_lines

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "csharp"


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every program of sdk/csharp/Makefile, compiled into a fresh directory."""
    for tool in ("mcs", "mono", "make"):
        require_tool(tool)
    out = tmp_path_factory.mktemp("csharp")
    proc = subprocess.run(
        ["make", "-C", str(SDK), f"OUT={out}", "all"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out


def mono(build: Path, program: str, *args: str) -> list[str]:
    return ["mono", str(build / program), *args]


# -- the C# side by itself -----------------------------------------------------------------------


def test_unit_tests(build: Path) -> None:
    """Canonical bytes, received values, spaces, the state machine, usage errors, and 0 bytes
    allocated in 20 000 steps of the codec path (GC.GetAllocatedBytesForCurrentThread)."""
    proc = subprocess.run(mono(build, "unit.exe"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith(", 0 failed"), (
        proc.stdout[-3000:] + proc.stderr
    )
    assert int(proc.stdout.rstrip().splitlines()[-1].split()[0]) >= 80, proc.stdout[-2000:]
    assert "allocated 0 bytes in 20000 steps" in proc.stdout, proc.stdout[-2000:]


def test_space_vectors(build: Path) -> None:
    """Every descriptor read and re-encoded byte for byte, every value checked against its space."""
    failures = run_conformance(mono(build, "conformance.exe"), lines=space_lines(), timeout=30)
    assert not failures, "\n".join(failures[:30])


def test_every_vector_line_for_both_roles(build: Path) -> None:
    """The runner plays agent receivers too (the contract asks only for the env role)."""
    failures = run_conformance(mono(build, "conformance.exe"), timeout=30)
    assert not failures, "\n".join(failures[:30])


RUNNER_LINES = [
    ("roundtrip 524c2400000000000900000081a576616c7565d005 524c2400000000000800000081a576616c756505", "ok"),
    ("roundtrip 524c2400000000000900000081a576616c7565d005 524c2400000000000800000081a576616c756506", "fail"),
    ("reject 474554202f20485454502f312e310d0a BAD_MAGIC - -", "ok"),
    ("reject 524c1100000000000100 BAD_MAGIC - -", "fail expected BAD_MAGIC, got TRUNCATED"),
    ("reject 524c11000000000001000000c0 UNEXPECTED_MESSAGE env hello", "ok"),
    ("reject  TRUNCATED - -", "fail accepted"),
    ("reject zz BAD_MAGIC - -", "fail bad hex"),
    ("bogus 00", "fail unknown command"),
    ("reject 00 BAD_MAGIC robot -", "fail unknown role"),
]


def test_runner_answers_one_line_per_line(build: Path) -> None:
    stdin = "".join(line + "\n" for line, _ in RUNNER_LINES)
    proc = subprocess.run(
        mono(build, "conformance.exe"), input=stdin, capture_output=True, text=True, timeout=60
    )
    answers = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(answers) == len(RUNNER_LINES), proc.stdout + proc.stderr
    for (line, want), got in zip(RUNNER_LINES, answers, strict=True):
        assert got.startswith(want), f"{line[:80]}: answered {got!r}, expected {want!r}..."


def space_value_frames() -> list[str]:
    """Each wire value of spaces.json (and each descriptor) as a CALL_RESULT frame, in hex: fuzz
    seeds that reach Space.Read and Space.Check."""
    out = []
    for vec in json.loads((VECTORS_DIR / "spaces.json").read_text())["vectors"]:
        if vec["type"] != "space":
            continue
        for body, data in [(vec["bytes"], vec["data"])] + [(v["body"], v["data"]) for v in vec["values"]]:
            raw = bytes.fromhex("81a576616c7565" + body)
            out.append(
                (
                    struct.pack("<2sBBII", b"RL", 36, 0, len(data) // 2, len(raw)) + bytes.fromhex(data) + raw
                ).hex()
            )
    return out


def test_fuzz_the_decoder(build: Path) -> None:
    """Mutants of every vector frame and space value, decoded stand-alone and by receivers in
    random roles and states, their values read as descriptors and checked against a catalogue of
    spaces: only RlayException escapes, Space.Check never throws, accepted frames re-encode
    idempotently. Bounded: FUZZ_ITERATIONS (default 20 000, a few seconds)."""
    iterations = os.environ.get("FUZZ_ITERATIONS", "20000")
    seeds = "".join(line + "\n" for _, line in conformance_lines()) + "".join(
        f + "\n" for f in space_value_frames()
    )
    proc = subprocess.run(
        mono(build, "fuzz.exe", iterations, "7"), input=seeds, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{iterations} inputs fuzzed" in proc.stdout and "0 failures" in proc.stdout, proc.stdout
    accepted = int(proc.stdout.split(" frames accepted")[0].split()[-1])
    assert accepted > 100, proc.stdout  # the mutants reach the message and space checks


# -- loop style: a game that answers a STEP over several frames ------------------------------------


def game(build: Path, direction: str) -> Any:
    if direction == "ClientEnv":
        return rlay.ClientEnv(launch=mono(build, "game_loop.exe", "--listen"), connect_timeout=60)
    return rlay.ServerEnv(launch=mono(build, "game_loop.exe", "--connect"), accept_timeout=60)


@pytest.mark.parametrize("direction", ["ClientEnv", "ServerEnv"])
def test_game_loop_holds_a_step_over_frames(build: Path, direction: str) -> None:
    """examples/GameLoop.cs: Poll(0) every frame, each STEP played over 4 frames, then answered."""
    env = game(build, direction)
    try:
        assert env.action_space.n == 3
        env.reset()
        x, v, dt = np.float32(0), np.float32(0), np.float32(0.05)
        for step, action in enumerate([2, 2, 1, 0, 0, 2]):
            for _ in range(4):  # the same float32 frames as the C# game
                v = np.float32(v + np.float32(action - 1) * dt)
                x = np.float32(x + v * dt)
            obs, reward, terminated, truncated, info = env.step(action)
            assert obs.tolist() == [x, v], (step, obs, x, v)
            assert reward == -abs(float(x)) and not terminated and not truncated and info == {"frames": 4}
    finally:
        env.close()


def test_an_exception_in_game_code_is_env_exception_and_the_game_goes_on(build: Path) -> None:
    env = game(build, "ClientEnv")
    try:
        env.reset()
        with pytest.raises(rlay.RemoteError) as info:
            env.call("boom")
        err = info.value
        assert err.code_name == "ENV_EXCEPTION" and not err.fatal
        assert err.remote_type == "InvalidOperationException"
        assert "the game's own bug" in str(err)
        assert err.traceback and err.traceback.count("GameLoop.Boom") == 4, err.traceback
        assert env.step(2)[0].shape == (2,)  # the session goes on
        with pytest.raises(rlay.RemoteError) as info:
            env.call("nothing_here")
        assert info.value.code_name == "NOT_SUPPORTED" and "nothing_here" in str(info.value)
    finally:
        env.close()


def test_no_allocation_per_step_over_a_socket(build: Path) -> None:
    """The game's own count (GC.GetAllocatedBytesForCurrentThread, CALL "allocated") across 1000
    steps, each polled over several frames: only the two CALLs themselves allocate."""
    env = game(build, "ClientEnv")
    try:
        env.reset()
        for i in range(300):  # warm up: buffers grow to their size, methods compile
            env.step(i % 3)
        before = env.call("allocated")
        for i in range(1000):
            env.step(i % 3)
        after = env.call("allocated")
        assert after - before < 1000, f"{after - before} bytes allocated in 1000 steps"
    finally:
        env.close()


# -- the Unity sample, compiled and played against the stub of UnityEngine -------------------------


def test_unity_sample_plays_against_stub_physics(build: Path) -> None:
    """Samples~/CartAgent: dials ServerEnv (RLAY_ADDRESS from the launcher), acts in FixedUpdate
    over 2 physics steps per action with time frozen between decisions, answers -|x|."""
    env = rlay.ServerEnv(launch=mono(build, "sample_host.exe"), accept_timeout=60)
    try:
        assert env.action_space == gym.spaces.Discrete(3) and env.observation_space.shape == (2,)
        obs, _ = env.reset()
        assert obs.tolist() == [0.0, 0.0]
        x, v = np.float32(0), np.float32(0)
        dt = np.float32(0.02)
        for action in [2, 2, 1, 0, 0, 0, 2, 1]:
            for _ in range(2):  # stub physics: v += F * (dt / m); x += v * dt, in float32
                v = np.float32(v + np.float32(np.float32(action - 1) * np.float32(10)) * dt)
                x = np.float32(x + v * dt)
            obs, reward, terminated, truncated, _ = env.step(action)
            assert obs.tolist() == [x, v] and reward == -abs(float(x)), (obs, x, v)
            assert not terminated and not truncated
        obs, _ = env.reset()
        assert obs.tolist() == [0.0, 0.0]
    finally:
        env.close()


def test_the_package_layout_is_upm() -> None:
    package = json.loads((SDK / "package.json").read_text())
    assert package["name"] == "dev.rlay.sdk" and package["samples"][0]["path"] == "Samples~/CartAgent"
    assert (SDK / package["samples"][0]["path"] / "RlayCartAgent.cs").is_file()
    asmdef = json.loads((SDK / "Runtime" / "Rlay.asmdef").read_text())
    assert asmdef["name"] == "Rlay" and asmdef["noEngineReferences"] is True
    assert sorted(p.name for p in (SDK / "Runtime").glob("*.cs")) == ["Rlay.cs"]
    for path in ("Runtime", "Runtime/Rlay.cs", "Runtime/Rlay.asmdef", "package.json", "README.md"):
        assert (SDK / f"{path}.meta").is_file(), f"{path} has no .meta (a git-installed package ignores it)"
    # the Mono-only programs are kept out of a Unity build by an unsatisfiable define constraint
    for folder in ("tests", "examples"):
        (asm,) = (SDK / folder).glob("*.asmdef")
        assert json.loads(asm.read_text())["defineConstraints"] == ["RLAY_MONO_ONLY_NEVER_DEFINED"]


def test_the_sdk_uses_only_netstandard_apis() -> None:
    """The one file Unity compiles, code lines only: no unsafe code, none of the APIs Mono has
    beyond .NET Standard 2.0 that are easy to reach for (the test programs may use
    GC.GetAllocatedBytesForCurrentThread; Rlay.cs must not). A textual check: no netstandard.dll
    reference assembly is installed here to compile against."""
    code = "\n".join(line.split("//")[0] for line in (SDK / "Runtime" / "Rlay.cs").read_text().splitlines())
    banned = (
        "unsafe",
        "GetAllocatedBytesForCurrentThread",
        "UnixDomainSocketEndPoint",
        "Span<",
        "Mono.",
        "DllImport",
    )
    for word in banned:
        assert word not in code, word


# -- hostile peers -------------------------------------------------------------------------------


@pytest.fixture
def listening(build: Path) -> Any:
    """A C# CartPole listening on a free port; yields (process, port)."""
    proc = subprocess.Popen(
        mono(build, "cartpole.exe", "--listen", "tcp://127.0.0.1:0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("RLAY_LISTENING tcp://127.0.0.1:"), line
    yield proc, int(line.rsplit(":", 1)[1])
    proc.kill()
    proc.wait()


def test_a_version_mismatch_is_named_on_both_sides(listening: Any) -> None:
    proc, port = listening
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(frame(1, {**HELLO, "version": 2}))
        assert read_frame(sock)[0] == 1  # its HELLO, sent without waiting
        kind, body = read_frame(sock)
        assert kind == 48 and body["code"] == 12 and body["fatal"], body
    assert proc.wait(30) == 1
    assert "VERSION_MISMATCH" in proc.stderr.read()


def test_a_non_rlay_peer_is_rejected_on_its_first_bytes(listening: Any) -> None:
    proc, port = listening
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        read_frame(sock)
        kind, body = read_frame(sock)
        assert kind == 48 and body["code"] == 1 and body["fatal"], body
    assert proc.wait(30) == 1
    assert "BAD_MAGIC" in proc.stderr.read()


def test_a_structurally_wrong_action_is_bad_value_and_fatal(listening: Any) -> None:
    proc, port = listening
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(frame(1, HELLO))
        read_frame(sock), read_frame(sock)  # HELLO, ENV_INFO
        sock.sendall(frame(16, {"seed": 1, "options": None}))
        assert read_frame(sock)[0] == 32
        sock.sendall(frame(17, {"action": "left"}))
        kind, body = read_frame(sock)
        assert kind == 48 and body["code"] == 15 and body["fatal"] and "str" in body["message"], body
    assert proc.wait(30) == 1


def tensor_frame(kind: int, body: dict[str, Any]) -> bytes:
    """A frame whose body may hold numpy arrays (tensors, with their data section), by rlay's encoder."""
    raw, chunks, dlen = Encoder().encode(body)
    return struct.pack("<2sBBII", b"RL", kind, 0, dlen, len(raw)) + b"".join(bytes(c) for c in chunks) + raw


def test_step_checks_the_structure_first(listening: Any) -> None:
    """Spec §8: a STEP's action structure (BAD_VALUE, fatal) is checked before RESET_NEEDED."""
    proc, port = listening
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(frame(1, HELLO))
        read_frame(sock), read_frame(sock)
        sock.sendall(frame(17, {"action": [1]}))  # before any RESET, and not an int
        kind, body = read_frame(sock)
        assert kind == 48 and body["code"] == 15 and body["fatal"], body
    assert proc.wait(30) == 1
    assert "BAD_VALUE" in proc.stderr.read()


def test_step_checks_reset_needed_before_the_bounds(listening: Any) -> None:
    """Spec §8: RESET_NEEDED (non-fatal) comes before INVALID_ACTION (non-fatal); both go on."""
    proc, port = listening
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(frame(1, HELLO))
        read_frame(sock), read_frame(sock)
        sock.sendall(frame(17, {"action": 7}))  # before any RESET, and outside Discrete(2)
        kind, body = read_frame(sock)
        assert kind == 48 and body["code"] == 35 and not body["fatal"], body
        sock.sendall(frame(16, {"seed": 3, "options": None}))
        assert read_frame(sock)[0] == 32
        sock.sendall(frame(17, {"action": 7}))
        kind, body = read_frame(sock)
        assert kind == 48 and body["code"] == 33 and not body["fatal"], body
        sock.sendall(frame(17, {"action": 1}))
        assert read_frame(sock)[0] == 33
        sock.sendall(frame(19, {}))
        assert read_frame(sock)[0] == 35
    assert proc.wait(30) == 0


def test_a_batch_needs_every_sub_env_reset_before_a_step(build: Path) -> None:
    """Spec §8/§10: a partial first RESET is legal; STEP is RESET_NEEDED (naming the sub-env)
    until every sub-env has been reset once; a reset_mask of the wrong shape is BAD_FIELD."""
    proc = subprocess.Popen(
        mono(build, "cartpole.exe", "--listen", "tcp://127.0.0.1:0", "--num-envs", "3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(frame(1, HELLO))
            read_frame(sock), read_frame(sock)
            mask = np.array([True, False, True])
            sock.sendall(tensor_frame(16, {"seed": 5, "options": {"reset_mask": mask}}))
            assert read_frame(sock)[0] == 32
            step = tensor_frame(17, {"action": np.array([0, 1, 0], dtype=np.int64)})
            sock.sendall(step)
            kind, body = read_frame(sock)
            assert kind == 48 and body["code"] == 35 and "sub-env 1" in body["message"], body
            sock.sendall(tensor_frame(16, {"seed": None, "options": {"reset_mask": ~mask}}))
            assert read_frame(sock)[0] == 32
            sock.sendall(step)
            assert read_frame(sock)[0] == 33
            sock.sendall(tensor_frame(16, {"seed": None, "options": {"reset_mask": mask[:2]}}))
            kind, body = read_frame(sock)
            assert kind == 48 and body["code"] == 7 and body["fatal"], body
            assert "reset_mask" in body["message"], body
        assert proc.wait(30) == 1
    finally:
        proc.kill()
        proc.wait()


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


ARRAY_OF_4M = b"\xdd" + struct.pack(">I", 4 << 20) + b"\x91\x90" * (4 << 20)  # 8 MiB of [[]]
ARRAYS_OF_1000 = b"\xdc\x03\xe8" + b"\x91\x90" * 1000
TENSOR_0D = b"\xc7\x06\x01\x05\x00\x00\x00\x00\x00"
HOSTILE = {
    "HELLO {protocol: 4M x [[]]}": (1, b"\x81\xa8protocol" + ARRAY_OF_4M, b""),
    "STEP, action = one array of 4M [[]]": (17, b"\x81\xa6action" + ARRAY_OF_4M, b""),
    "STEP, action = arrays of 1000 [[]]": (
        17,
        b"\x81\xa6action\xdd" + struct.pack(">I", 4194) + ARRAYS_OF_1000 * 4194,
        b"",
    ),
    "STEP, action = 32768 0-d tensors": (
        17,
        b"\x81\xa6action\xdd" + struct.pack(">I", 32768) + TENSOR_0D * 32768,
        b"\0" * 8,
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_frames_are_refused_before_they_cost_much(listening: Any, name: str) -> None:
    """Spec §13: an 8 MiB frame that would build millions of values is FRAME_TOO_LARGE (the
    handshake limit on a HELLO's header; max_values at the container header or tensor that
    passes it), answered within seconds and without building it (README: the figures, with -s)."""
    proc, port = listening
    kind, raw, data = HOSTILE[name]
    with socket.create_connection(("127.0.0.1", port)) as sock:
        read_frame(sock)  # its HELLO
        if kind != 1:
            sock.sendall(frame(1, HELLO))
            read_frame(sock)
            sock.sendall(frame(16, {"seed": 1, "options": None}))
            assert read_frame(sock)[0] == 32
        start = time.perf_counter()
        try:
            sock.sendall(struct.pack("<2sBBII", b"RL", kind, 0, len(data), len(raw)) + data + raw)
        except OSError:
            pass  # it may close before reading all of it
        got, body = read_frame(sock)
        elapsed = time.perf_counter() - start
        rss = peak_rss_mib(proc.pid)
    assert got == 48 and body["code"] == 3 and body["fatal"], body
    assert proc.wait(30) == 1 and "FRAME_TOO_LARGE" in proc.stderr.read()
    print(f"\n| {name} | FRAME_TOO_LARGE | {elapsed * 1000:.1f} ms | {rss:.1f} MiB |")
    assert elapsed < 10 and rss < 200, (elapsed, rss)


def test_the_program_ends_cleanly_when_the_agent_leaves_between_commands(listening: Any) -> None:
    proc, port = listening
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(frame(1, HELLO))
        read_frame(sock), read_frame(sock)
    assert proc.wait(30) == 0  # end of stream in idle is an orderly end (spec §8)


def test_callback_exceptions_and_render(build: Path) -> None:
    """Serve answers an exception in a callback with ENV_EXCEPTION (type and stack trace); RENDER
    with --render-mode rgb_array gives Gymnasium's 400x600x3 uint8 frame."""
    env = rlay.ClientEnv(
        launch=mono(build, "cartpole.exe", "--listen", "{address}", "--render-mode", "rgb_array"),
        render_mode="rgb_array",
        connect_timeout=60,
    )
    try:
        with pytest.raises(rlay.RemoteError) as info:
            env.reset(options={"state": np.zeros(3)})
        assert info.value.code_name == "ENV_EXCEPTION" and info.value.remote_type == "ArgumentException"
        assert "CartPoleServer.Reset" in (info.value.traceback or ""), info.value.traceback
        env.reset(seed=0, options={"state": np.array([1.0, 0.0, 0.2, 0.0])})
        rgb = env.render()
        assert rgb.shape == (400, 600, 3) and rgb.dtype == np.uint8
        assert (rgb == 255).all(axis=2).mean() > 0.8 and (rgb == 0).all(axis=2).any()
        assert np.array_equal(env.call("get_state"), [1.0, 0.0, 0.2, 0.0])
    finally:
        env.close()


def test_a_dialler_gives_up_on_a_listener_that_never_comes(build: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    proc = subprocess.run(
        mono(build, "cartpole.exe", "--connect", f"tcp://127.0.0.1:{port}", "--connect-timeout", "1.5"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "cannot connect" in proc.stderr, proc.stderr
    assert 1.5 < time.monotonic() - start < 30  # retried until the timeout, then a clear error


def test_a_wrong_observation_is_never_sent_nor_rounded(build: Path) -> None:
    """Spec §9: game code that writes a float64 observation for its float32 Box gets the command
    answered with a non-fatal ENV_EXCEPTION naming the problem; the session goes on."""
    env = game(build, "ClientEnv")
    try:
        with pytest.raises(rlay.RemoteError) as info:
            env.reset(options={"float64": True})
        err = info.value
        assert err.code_name == "ENV_EXCEPTION" and not err.fatal, err
        assert "observation_space" in str(err) and "float32" in str(err) and "float64" in str(err), err
        obs, _ = env.reset()
        assert obs.dtype == np.float32 and obs.tolist() == [0.0, 0.0]
        assert env.step(2)[0][1] > 0
    finally:
        env.close()


def launched(cmd: list[str], mode: str | None, address: str = "tcp://127.0.0.1:0") -> subprocess.Popen[str]:
    """A program started as rlay's launcher starts it (spec §15)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RLAY_")}
    environ["RLAY_ADDRESS"] = address
    if mode is not None:
        environ["RLAY_MODE"] = mode
    return subprocess.Popen(cmd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("program", ["cartpole.exe", "game_loop.exe", "sample_host.exe"])
def test_rlay_mode_other_than_listen_or_dial_is_an_error(build: Path, program: str) -> None:
    """Spec §15: any RLAY_MODE but listen/dial (or unset/empty) exits non-zero naming it."""
    proc = launched(mono(build, program), "both")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode not in (0, None) and "RLAY_MODE" in err and "'both'" in err, (out, err)
    assert "RLAY_" not in out


@pytest.mark.parametrize(
    ("program", "mode"),
    [
        ("cartpole.exe", None),
        ("cartpole.exe", ""),
        ("cartpole.exe", "listen"),
        ("game_loop.exe", None),
        ("sample_host.exe", None),
    ],
)
def test_a_launched_listener_serves_one_session_and_exits_0(
    build: Path, program: str, mode: str | None
) -> None:
    """Spec §15: RLAY_MODE unset, empty or listen: one RLAY_LISTENING line with the bound port,
    one session, exit 0 after CLOSE (the Unity sample quits through Application.Quit)."""
    proc = launched(mono(build, program), mode)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("RLAY_LISTENING tcp://127.0.0.1:") and not line.endswith(":0\n"), line
        env = rlay.ClientEnv(line.split()[1], connect_timeout=30)
        try:
            env.reset(seed=1)
            env.step(1)
        finally:
            env.close()
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
        assert proc.stdout.read() == ""  # nothing else on stdout
    finally:
        proc.kill()
        proc.wait()


def test_a_game_that_quits_tells_the_trainer(build: Path) -> None:
    """env.Dispose() with a command outstanding: the trainer gets a fatal SHUTTING_DOWN."""
    env = game(build, "ClientEnv")
    try:
        env.reset()
        with pytest.raises(rlay.RemoteError) as info:
            env.call("quit")
        assert info.value.code_name == "SHUTTING_DOWN" and info.value.fatal
    finally:
        env.close()


# -- batched sub-envs beyond the contract --------------------------------------------------------


def test_a_batch_takes_seed_arrays_and_partial_resets(build: Path) -> None:
    """RESET with an array of seeds (None keeps a sub-env's stream) and options["reset_mask"],
    bit for bit against SyncVectorEnv; a pending autoreset is cleared by a partial reset."""
    n = 3
    env = rlay.ClientVectorEnv(
        launch=mono(build, "cartpole.exe", "--listen", "{address}", "--num-envs", str(n))
    )
    ref = gym.vector.SyncVectorEnv(
        [lambda: gym.make("CartPole-v1")] * n, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP
    )
    try:
        assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
        obs, want_obs = env.reset(seed=[4, 5, 6])[0], ref.reset(seed=[4, 5, 6])[0]
        assert obs.tobytes() == want_obs.tobytes()
        rng = np.random.default_rng(3)
        for step in range(200):
            actions = rng.integers(0, 2, n)
            got, want = env.step(actions), ref.step(actions)
            for i in range(4):
                assert np.asarray(got[i]).tobytes() == np.asarray(want[i]).tobytes(), (step, i)
            ended = np.logical_or(want[2], want[3])
            if ended.any() and not ended.all():
                break
        else:
            pytest.fail("no sub-env ended alone")
        seeds = [None if not e else 100 + i for i, e in enumerate(ended)]
        obs = env.reset(seed=seeds, options={"reset_mask": ended})[0]
        assert obs.tobytes() == ref.reset(seed=seeds, options={"reset_mask": ended})[0].tobytes()
        actions = rng.integers(0, 2, n)
        got, want = env.step(actions), ref.step(actions)
        assert got[0].tobytes() == want[0].tobytes() and np.all(got[1][ended] == 1.0)
    finally:
        env.close()
        ref.close()


def test_a_batch_names_the_sub_env_of_a_bad_action(build: Path) -> None:
    env = rlay.ClientVectorEnv(
        launch=mono(build, "cartpole.exe", "--listen", "{address}", "--num-envs", "4"), check_actions=False
    )
    try:
        env.reset(seed=0)
        with pytest.raises(EnvSideFailed) as info:
            env.step(np.array([0, 1, 0, 5]))
        cause = info.value.cause
        assert isinstance(cause, rlay.RemoteError) and cause.code_name == "INVALID_ACTION" and not cause.fatal
        assert "sub-env 3: 5 is not in Discrete(2, start=0)" in str(cause), cause
    finally:
        env.close()


def test_the_sample_started_before_the_trainer_keeps_dialling(build: Path) -> None:
    """Play pressed first: the sample dials a port where nothing listens yet (refused, retried
    every 100 ms without blocking its frames), and is served once the trainer listens there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    game_proc = subprocess.Popen(
        mono(build, "sample_host.exe"),
        env={**os.environ, "RLAY_ADDRESS": address, "RLAY_MODE": "dial"},
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.0)
        assert game_proc.poll() is None, "the sample gave up instead of dialling again"
        env = rlay.ServerEnv(address, accept_timeout=30)
        try:
            obs, _ = env.reset()
            assert obs.tolist() == [0.0, 0.0]
            assert env.step(2)[0][1] > 0
        finally:
            env.close()
        assert game_proc.wait(30) == 0
    finally:
        game_proc.kill()
        game_proc.wait()


def manual_example() -> str:
    """The example of Rlay.cs's top comment, as a program (it listens at $RLAY_ADDRESS)."""
    text = (SDK / "Runtime" / "Rlay.cs").read_text()
    block = text.split("// EXAMPLE", 1)[1].split("\n//\n", 1)[1].split("\n//\n// MODEL", 1)[0]
    code = "\n".join(line[7:] for line in block.splitlines())
    assert '"tcp://127.0.0.1:5555"' in code
    code = code.replace('"tcp://127.0.0.1:5555"', 'System.Environment.GetEnvironmentVariable("RLAY_ADDRESS")')
    return f"static class Manual {{\n    static void Main() {{\n{code}\n    }}\n}}\n"


def test_the_manuals_example_compiles_and_serves_python(build: Path, tmp_path: Path) -> None:
    (tmp_path / "Manual.cs").write_text(manual_example())
    exe = tmp_path / "manual.exe"
    cmd = [
        "mcs",
        "-langversion:7.2",
        "-nologo",
        "-warnaserror",
        f"-out:{exe}",
        str(SDK / "Runtime" / "Rlay.cs"),
    ]
    proc = subprocess.run([*cmd, str(tmp_path / "Manual.cs")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = rlay.ClientEnv(launch=["mono", str(exe)], connect_timeout=60)
    try:
        obs, _ = env.reset()
        assert obs.tolist() == [0.0]
        for _ in range(5):
            obs, reward, terminated, truncated, _ = env.step(1)
        assert obs.tolist() == [5.0] and reward == 1.0 and terminated and not truncated
        assert env.step(np.int64(0))[0].tolist() == [4.0]
    finally:
        env.close()


def test_many_agents_in_one_scene_as_a_vector_env(build: Path) -> None:
    """Samples~/ManyCarts: 3 carts of one scene are the 3 sub-envs of one session (ServerVectorEnv),
    with next-step autoreset, against the same float32 physics computed here."""
    n, dt, limit = 3, np.float32(0.02), np.float32(5)
    env = rlay.ServerVectorEnv(launch=mono(build, "sample_host.exe", "squad", str(n)), accept_timeout=60)
    try:
        assert env.num_envs == n
        obs, _ = env.reset(seed=0)
        start = np.array([[i, 0] for i in range(n)], dtype=np.float32)
        assert obs.tobytes() == start.tobytes()
        x, v = start[:, 0].copy(), np.zeros(n, dtype=np.float32)
        steps, pending = np.zeros(n, dtype=int), np.zeros(n, dtype=bool)
        rng = np.random.default_rng(1)
        ends = 0
        for t in range(60):
            actions = np.where(rng.random(n) < 0.8, 2, rng.integers(0, 3, n))
            want_r, want_te, want_tr = np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
            for i in range(n):
                if pending[i]:  # next-step autoreset: back to the start, reward 0, flags false
                    x[i], v[i], steps[i] = start[i, 0], 0, 0
                    continue
                for _ in range(2):
                    v[i] = np.float32(v[i] + np.float32(np.float32(actions[i] - 1) * np.float32(10)) * dt)
                    x[i] = np.float32(x[i] + v[i] * dt)
                steps[i] += 1
                want_r[i] = -abs(float(x[i]))
                want_te[i] = abs(x[i]) > limit
                want_tr[i] = steps[i] >= 500
            obs, rewards, terminated, truncated, _ = env.step(actions)
            assert obs.tobytes() == np.stack([x, v], axis=1).tobytes(), (t, obs, x, v)
            assert rewards.tobytes() == want_r.tobytes(), (t, rewards, want_r)
            assert np.array_equal(terminated, want_te) and np.array_equal(truncated, want_tr), t
            pending = want_te | want_tr
            ends += int(pending.sum())
        assert ends >= 3, ends
    finally:
        env.close()


@pytest.mark.parametrize(
    "server,flags",
    [
        (False, ["--listen", "{address}", "--num-envs", "3"]),
        (True, ["--connect", "{address}", "--num-envs", "2", "--render-mode", "rgb_array"]),
    ],
    ids=["batch-listens", "batch-dials-render"],
)
def test_rlay_check_passes_on_batches(build: Path, server: bool, flags: list[str]) -> None:
    """rlay check's batched checks (spaces, flags, autoreset, determinism, a bad action naming
    its sub-env, render) on the C# CartPole, both directions."""
    cmd = [sys.executable, "-m", "rlay.cli", "check", *(["--server"] if server else []), "--"]
    proc = subprocess.run(
        [*cmd, *mono(build, "cartpole.exe"), *flags], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0 and " 0 failed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "batched sub-envs" in proc.stdout
