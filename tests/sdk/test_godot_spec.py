"""The Godot addon against the settled points of the spec that the vectors cannot check, with the
real engine over real sockets: the env side's order of checks on a STEP (§8), first resets and
reset_mask with sub-envs (§10), observations never rounded (§9), the launched-program rules
(§15: RLAY_MODE, one session, exit status) and what hostile frames cost it (§13)."""

from __future__ import annotations

import math
import os
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import require_tool

import rlay
from rlay.protocol.connection import Connection
from rlay.protocol.messages import Close, Error, Message, Reset, ResetResult, Step, StepResult
from rlay.protocol.wire import ErrorCode, Role

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "godot"
CARTPOLE = str(SDK / "bin" / "cartpole")
MIB = 1 << 20


@pytest.fixture(scope="module", autouse=True)
def godot() -> str:
    require_tool("godot3-server")
    return "godot3-server"


def listening(proc: subprocess.Popen[str]) -> tuple[str, int]:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("RLAY_LISTENING "):
            host, port = line.split("//", 1)[1].strip().rsplit(":", 1)
            return host, int(port)
    raise AssertionError(f"no RLAY_LISTENING line (exit {proc.wait(10)})")


class Agent:
    """A hand-driven agent side (rlay's own sans-I/O Connection on a socket), so that a test can
    send what rlay's envs never would (an action of the wrong structure, a STEP before RESET)."""

    def __init__(
        self, args: list[str], env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
    ) -> None:
        flags = ["--listen", "tcp://127.0.0.1:0"] if env is None else []
        self.proc = subprocess.Popen(
            [*prefix, CARTPOLE, *flags, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.sock = socket.create_connection(listening(self.proc), timeout=30)
        self.conn = Connection(Role.AGENT)
        self.flush()
        self.hello, self.info = self.receive(), self.receive()

    def flush(self) -> None:
        for buf in self.conn.data_to_send():
            self.sock.sendall(bytes(buf))

    def receive(self) -> Message:
        while (m := self.conn.next_event()) is None:
            data = self.sock.recv(1 << 16)
            assert data, "the env side closed the stream"
            self.conn.receive_data(data)
        return m

    def ask(self, message: Message) -> Message:
        self.conn.send(message)
        self.flush()
        return self.receive()

    def exit(self, timeout: float = 20) -> tuple[int, str]:
        self.sock.close()
        rc = self.proc.wait(timeout)
        assert self.proc.stderr is not None
        return rc, self.proc.stderr.read()

    def kill(self) -> None:
        self.sock.close()
        self.proc.kill()
        self.proc.wait()


def error(m: Message, code: ErrorCode, fatal: bool) -> Error:
    assert type(m) is Error, m
    assert m.code == code and m.fatal is fatal, m
    return m


def test_step_structure_then_reset_needed_then_bounds() -> None:
    """§8: on a STEP the action's structure comes first (BAD_VALUE, fatal), then RESET_NEEDED,
    then the bounds (INVALID_ACTION): an out-of-bounds action before the first RESET is
    RESET_NEEDED, a malformed one BAD_VALUE."""
    a = Agent([])
    try:
        error(a.ask(Step(5)), ErrorCode.RESET_NEEDED, False)
        assert type(a.ask(Reset(3, None))) is ResetResult
        e = error(a.ask(Step(5)), ErrorCode.INVALID_ACTION, False)
        assert "5 is outside" in e.message
        assert type(a.ask(Step(np.int64(1)))) is StepResult
        assert type(a.ask(Close())) is not Error
        assert a.exit() == (0, "")  # §15: an orderly end exits 0 and says nothing
    finally:
        a.kill()
    a = Agent([])
    try:
        e = error(a.ask(Step("left")), ErrorCode.BAD_VALUE, True)  # before RESET: still BAD_VALUE
        assert "expected an int" in e.message
        rc, err = a.exit()
        assert rc == 1 and "BAD_VALUE" in err, err
    finally:
        a.kill()


def test_sub_envs_need_a_first_reset_each_and_reset_mask_selects() -> None:
    """§10: a first RESET whose reset_mask leaves sub-env 1 out is legal, STEP is RESET_NEEDED
    (naming sub-env 1) until it was reset too; the masked-out sub-envs keep their observation
    and ignore their seed; a bad action names its sub-env; a batch of the wrong shape is a fatal
    BAD_VALUE."""
    a = Agent(["--num-envs", "3"])
    try:
        first = a.ask(Reset(7, {"reset_mask": np.array([True, False, True])}))
        assert type(first) is ResetResult
        for i, seed in ((0, 7), (2, 9)):  # sub-env i gets seed + i
            want, _ = gym.make("CartPole-v1").reset(seed=seed)
            assert first.obs[i].tobytes() == want.tobytes()
        assert not first.obs[1].any()  # never reset: its (initial) state, seed ignored
        e = error(a.ask(Step(np.array([0, 1, 0]))), ErrorCode.RESET_NEEDED, False)
        assert "sub-env 1" in e.message
        second = a.ask(Reset([100, 11, 100], {"reset_mask": np.array([False, True, False])}))
        assert type(second) is ResetResult
        assert second.obs[0].tobytes() == first.obs[0].tobytes()  # not reset: kept
        assert second.obs[1].tobytes() == gym.make("CartPole-v1").reset(seed=11)[0].tobytes()
        e = error(a.ask(Step(np.array([0, 5, 0]))), ErrorCode.INVALID_ACTION, False)
        assert "action[1]" in e.message
        assert type(a.ask(Step(np.array([0, 1, 0])))) is StepResult
        e = error(a.ask(Step(np.array([0, 1]))), ErrorCode.BAD_VALUE, True)
        assert "leading dimension of 3" in e.message
        rc, err = a.exit()
        assert rc == 1 and "BAD_VALUE" in err
    finally:
        a.kill()


def echo_env() -> rlay.ClientEnv:
    cmd = ["godot3-server", "--no-window", "--fixed-fps", "60", "--path", str(SDK)]
    cmd += ["-s", "res://examples/echo/main.gd", "--", "--listen", "{address}"]
    return rlay.ClientEnv("tcp://127.0.0.1:0", launch=cmd, connect_timeout=60)


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"box": [0.1, 0.0, 0.0, 0.0]}, "obs[box]: element 0"),  # 0.1 is not a float32
        ({"box": [[0.0, 0.0], [0.0, 1e300]]}, "obs[box]: element 3"),  # float32 overflows
        ({"grid": [256, 0, 0]}, "obs[grid]: element 0"),  # not a uint8
        ({"grid": [0, 1.5, 0]}, "obs[grid]: element 1"),
        ({"tuple": [1, [0.5, "x"]]}, "obs[tuple][1]: element 1"),
        ({"discrete": 2.5}, "obs[discrete]"),
        ({"multi_binary": [0, 1]}, "obs[multi_binary]: expected 3 numbers"),
        ({"graph": {"nodes": [[0.5, 0.1]], "edges": [], "edge_links": []}}, "obs[graph][nodes]: element 1"),
        ({"graph": {"nodes": [[0.5, 0.5]], "edges": [1], "edge_links": None}}, "obs[graph][edge_links]"),
        ({"graph_nodes": {"nodes": [1], "edges": [], "edge_links": []}}, "without an edge space"),
    ],
)
def test_an_observation_that_does_not_convert_exactly_is_never_sent(
    patch: dict[str, Any], where: str
) -> None:
    """§9: an env side never rounds its own observation: the reply is a non-fatal ENV_EXCEPTION
    naming the element, and the session goes on."""
    env = echo_env()
    try:
        with pytest.raises(rlay.RemoteError) as info:
            env.reset(options={"patch": patch})
        assert info.value.code_name == "ENV_EXCEPTION" and not info.value.fatal
        assert where in str(info.value), str(info.value)
        obs, _ = env.reset()
        assert obs["text"] == "a"
    finally:
        env.close()


def test_observations_that_convert_exactly_are_sent_unchanged() -> None:
    """Ints for a float Box, integral floats for a uint8 Box and a Discrete, float64 values that
    are float32 values, ±inf and NaN: each converts exactly and is sent."""
    env = echo_env()
    try:
        patch = {
            "box": [[1, -2], [0.5, -math.inf]],
            "grid": [255.0, 0, 7],
            "discrete": 2.0,
            "tuple": [0, [0.1, -1]],  # float64 Box: any float
            "one_of": [1, [math.nan, 2**-20]],
        }
        obs, _ = env.reset(options={"patch": patch})
        assert obs["box"].dtype == np.float32 and obs["box"].tolist() == [[1.0, -2.0], [0.5, -math.inf]]
        assert obs["grid"].tolist() == [255, 0, 7] and obs["discrete"] == 2
        assert obs["tuple"][1].tolist() == [0.1, -1.0]
        assert math.isnan(obs["one_of"][1][0]) and obs["one_of"][1][1] == 2**-20
    finally:
        env.close()


def launcher_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLAY_")}
    return {**env, "RLAY_ADDRESS": "tcp://127.0.0.1:0", **extra}


def test_rlay_mode_other_than_listen_or_dial_is_an_error() -> None:
    proc = subprocess.run(
        [CARTPOLE], env=launcher_env(RLAY_MODE="server"), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "RLAY_MODE" in proc.stderr and "'server'" in proc.stderr, proc.stderr[-2000:]
    assert "RLAY_" not in proc.stdout


def test_the_puck_game_follows_rlay_mode_too() -> None:
    """The Puck game (examples/godot_puck, loop style) reads the launcher's variables through the
    same node: an unknown RLAY_MODE ends it with exit 1 and a message naming it."""
    game = str(ROOT / "examples" / "godot_puck")
    cmd = ["godot3-server", "--no-window", "--fixed-fps", "15", "--path", game]
    env = {**launcher_env(RLAY_MODE="both"), "LANG": "en_US.UTF-8"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "RLAY_MODE must be listen or dial, got 'both'" in proc.stderr, proc.stderr[-2000:]


def test_rlay_mode_unset_or_empty_listens_and_end_of_stream_in_idle_exits_0() -> None:
    """§15: RLAY_MODE unset or empty is listen; unknown RLAY_* variables are ignored; end of stream
    in idle (a trainer that exits without CLOSE) is an orderly end: exit 0."""
    for extra in ({}, {"RLAY_MODE": ""}, {"RLAY_TOKEN": "later"}):
        a = Agent([], env=launcher_env(**extra))
        try:
            assert type(a.ask(Reset(None, None))) is ResetResult
            assert a.exit() == (0, "")
        finally:
            a.kill()


def test_one_session_and_non_zero_exits() -> None:
    """§15: the listener stops listening once it accepted (a second dialer is refused); a peer
    that vanishes with a command outstanding or during the handshake, or that sends garbage,
    makes the program exit non-zero with a message on stderr."""
    a = Agent([])
    try:
        host, port = a.sock.getpeername()
        with pytest.raises(OSError):
            socket.create_connection((host, port), timeout=5).recv(1)  # refused, or closed at once
        assert type(a.ask(Reset(None, None))) is ResetResult
    finally:
        a.kill()

    proc = subprocess.Popen(
        [CARTPOLE, "--listen", "tcp://127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with socket.create_connection(listening(proc), timeout=30) as sock:
        sock.recv(1 << 16)  # its HELLO; then the stream ends during the handshake
    assert proc.wait(20) == 1
    assert proc.stderr is not None and "handshake" in proc.stderr.read()

    proc = subprocess.Popen(
        [CARTPOLE, "--listen", "tcp://127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with socket.create_connection(listening(proc), timeout=30) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        got = b""
        while chunk := sock.recv(1 << 16):
            got += chunk
        assert b"RL\x30\x00" in got  # its fatal ERROR frame (kind 48) came after its HELLO
    assert proc.wait(20) == 1
    assert proc.stderr is not None and "BAD_MAGIC" in proc.stderr.read()


# ------------------------------------------------------------------------------------------------
# §13: what a hostile frame costs the engine (time to its fatal ERROR, peak RSS)

LAUNCHER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int status; struct rusage ru; pid_t pid = fork();
    if (pid == 0) { execv(argv[2], argv + 2); _exit(127); }
    if (pid < 0 || wait4(pid, &status, 0, &ru) < 0) return 126;
    FILE *f = fopen(argv[1], "w"); fprintf(f, "maxrss %ld\n", ru.ru_maxrss); fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 125;
}
"""


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A C launcher whose wait4 reports the engine's own peak RSS (a child forked from this
    Python would inherit Python's high-water mark)."""
    require_tool("gcc")
    out = tmp_path_factory.mktemp("launcher")
    (out / "launcher.c").write_text(LAUNCHER)
    cmd = ["gcc", "-O2", "-o", str(out / "launcher"), str(out / "launcher.c")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return str(out / "launcher")


def header(kind: int, data_len: int, body_len: int) -> bytes:
    return struct.pack("<2sBBII", b"RL", kind, 0, data_len, body_len)


def one_array(key: str, n: int) -> bytes:
    """``{key: [[[]], [[]], ...]}``: n two-byte arrays in one array32."""
    k = key.encode()
    return b"\x81" + bytes([0xA0 | len(k)]) + k + b"\xdd" + struct.pack(">I", n) + b"\x91\x90" * n


def chunked(key: str, size: int) -> bytes:
    """``{key: [[[[]] x 1000] x k]}``: no single header declares much."""
    chunk = b"\xdc" + struct.pack(">H", 1000) + b"\x91\x90" * 1000
    k = (size - 16) // len(chunk)
    return b"\x81" + bytes([0xA0 | len(key)]) + key.encode() + b"\xdd" + struct.pack(">I", k) + chunk * k


def tensors(key: str, n: int) -> bytes:
    """``{key: [n 0-d bool tensors]}``, all at offset 0 of an 8-byte data section."""
    t = b"\xc7\x06\x01\x01\x00\x00\x00\x00\x00"
    return b"\x81" + bytes([0xA0 | len(key)]) + key.encode() + b"\xdd" + struct.pack(">I", n) + t * n


HOSTILE = {
    "hello_8mib": (1, b"", one_array("protocol", 4 * MIB - 8)),
    "step_one_array_8mib": (17, b"", one_array("action", 4 * MIB - 8)),
    "step_chunked_8mib": (17, b"", chunked("action", 8 * MIB)),
    "step_32768_tensors": (17, b"\x01" + b"\x00" * 7, tensors("action", 32768)),
}


@pytest.fixture(scope="module")
def quiet_rss(launcher: str, tmp_path_factory: pytest.TempPathFactory) -> float:
    """The engine's peak RSS (MiB) in a quiet session: RESET, STEP, CLOSE."""
    rss_file = tmp_path_factory.mktemp("quiet") / "rss"
    a = Agent([], prefix=(launcher, str(rss_file)))
    try:
        assert type(a.ask(Reset(None, None))) is ResetResult
        assert type(a.ask(Step(1))) is StepResult
        a.ask(Close())
        assert a.exit()[0] == 0
    finally:
        a.kill()
    rss = int(rss_file.read_text().split()[1]) / 1024
    print(f"\nquiet session (RESET, STEP, CLOSE): peak RSS {rss:.1f} MiB")
    return rss


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_frame_is_refused_cheaply(
    launcher: str, quiet_rss: float, tmp_path: Path, case: str
) -> None:
    """One hostile frame is answered with a fatal FRAME_TOO_LARGE (the handshake limit on a
    HELLO's header; max_values at the header or tensor that passes it) within a few seconds, and
    the engine's peak RSS stays within 64 MiB of a quiet session's. Prints the figures (-s)."""
    kind, data, body = HOSTILE[case]
    rss_file = tmp_path / "rss"
    cmd = [launcher, str(rss_file), CARTPOLE, "--listen", "tcp://127.0.0.1:0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with socket.create_connection(listening(proc), timeout=30) as sock:
            conn = Connection(Role.AGENT)
            got: list[Message] = []

            def until(n: int) -> None:
                while len(got) < n:
                    chunk = sock.recv(1 << 16)
                    assert chunk, f"the stream ended after {got}"
                    conn.receive_data(chunk)
                    while (m := conn.next_event()) is not None:
                        got.append(m)

            if kind == 1:
                conn.data_to_send()  # not our HELLO: the hostile one instead
                until(1)  # the engine's HELLO
            else:
                for buf in conn.data_to_send():
                    sock.sendall(bytes(buf))
                until(2)  # HELLO, ENV_INFO
            start = time.monotonic()
            try:
                sock.sendall(header(kind, len(data), len(body)) + data + body)
            except OSError:
                pass  # refused on its header: the engine may close before the body is in
            until(len(got) + 1)
            elapsed = time.monotonic() - start
        e = got[-1]
        assert type(e) is Error and e.code == ErrorCode.FRAME_TOO_LARGE and e.fatal, e
        assert proc.wait(30) == 1
        rss_mib = int(rss_file.read_text().split()[1]) / 1024
        print(f"\n{case}: FRAME_TOO_LARGE after {elapsed * 1000:.0f} ms, peak RSS {rss_mib:.1f} MiB")
        assert elapsed < 10, elapsed
        assert rss_mib < quiet_rss + 64, (rss_mib, quiet_rss)
    finally:
        proc.kill()
        proc.wait()
