"""The JavaScript SDK (sdk/js/rlay.mjs) beyond the shared contract (test_js_contract.py), with the
real node: its conformance runner line by line and on the space vectors, glibc-identical sin/cos,
every space kind and every free-form value type round-tripped through a node env, error replies
with the JavaScript stack, the raw protocol as a broken peer sees it, framing over a real
WebSocket (one rlay frame per binary message), usage errors, the TypeScript declarations, and
`npm pack` producing a package that installs and imports.

In CI (CI=true) a missing node/npm fails these tests; elsewhere they skip.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import msgpack
import numpy as np
import pytest
from conftest import require_tool
from harness import HELLO, frame, read_frame

import rlay
from rlay.protocol.connection import Connection
from rlay.protocol.messages import (
    Close,
    CloseResult,
    EnvInfo,
    Hello,
    Render,
    RenderResult,
    Reset,
    ResetResult,
    Step,
    StepResult,
)
from rlay.protocol.wire import Role
from rlay.testing.conformance import run_conformance, space_lines

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "js"
CONFORMANCE = str(SDK / "bin" / "conformance")
CARTPOLE = str(SDK / "bin" / "cartpole")
ECHO = str(SDK / "tests" / "echo_env.mjs")


@pytest.fixture(scope="module")
def node() -> str:
    return require_tool("node")


def test_unit_tests(node: str) -> None:
    """sdk/js/tests/unit.mjs under node --test: framing in any chunking, WebSocket messages and
    zero-copy views, float16, spaces and batches, the state machine, addresses, launcher variables."""
    proc = subprocess.run(
        [node, "--test", str(SDK / "tests" / "unit.mjs")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "# fail 0" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert int(re.search(r"# pass (\d+)", proc.stdout).group(1)) >= 9  # type: ignore[union-attr]


# -- the runner ------------------------------------------------------------------------------------

RUNNER_LINES = [
    # (input line, expected answer prefix): hand-made frames of spec §2-§6
    ("roundtrip 524c2400000000000900000081a576616c7565d005 524c2400000000000800000081a576616c756505", "ok"),
    ("roundtrip 524c2400000000000900000081a576616c7565d005 524c2400000000000800000081a576616c756506", "fail"),
    (
        "roundtrip 524c2100000000002b000000"
        "85a36f6273c0a672657761726401aa7465726d696e61746564c2a97472756e6361746564c3a4696e666f80"
        " 524c21000000000033000000"
        "85a36f6273c0a6726577617264cb3ff0000000000000aa7465726d696e61746564c2a97472756e6361746564c3a4696e666f80",
        "ok",
    ),
    ("reject 474554202f20485454502f312e310d0a BAD_MAGIC - -", "ok"),
    ("reject 524c1100000000000100 TRUNCATED - -", "ok"),
    ("reject 524c1100000000000100 BAD_MAGIC - -", "fail expected BAD_MAGIC, got TRUNCATED"),
    ("reject 524c11000000000001000000c0 BAD_FIELD - -", "ok"),
    ("reject 524c11000000000001000000c0 UNEXPECTED_MESSAGE env hello", "ok"),
    ("reject  TRUNCATED - -", "fail accepted"),  # an empty stream is an orderly end
    ("reject zz BAD_MAGIC - -", "fail bad hex"),
    ("bogus 00", "fail unknown command"),
    ("reject 00 BAD_MAGIC robot -", "fail unknown role"),
]


def test_runner_answers_one_line_per_line(node: str) -> None:
    stdin = "".join(line + "\n" for line, _ in RUNNER_LINES)
    proc = subprocess.run([CONFORMANCE], input=stdin, capture_output=True, text=True, timeout=60)
    answers = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(answers) == len(RUNNER_LINES), proc.stdout + proc.stderr
    for (line, want), got in zip(RUNNER_LINES, answers, strict=True):
        assert got.startswith(want), f"{line[:80]}: answered {got!r}, expected {want!r}..."


def test_every_vector_line_for_both_roles(node: str) -> None:
    """The contract runs the env role's lines; the runner also plays an agent receiver."""
    failures = run_conformance([CONFORMANCE], timeout=30)
    assert not failures, "\n".join(failures[:30])


def test_space_vectors(node: str) -> None:
    failures = run_conformance([CONFORMANCE], lines=space_lines())
    assert not failures, "\n".join(failures[:30])


# -- sin/cos: the bits glibc (and so numpy) returns -----------------------------------------------

SINCOS = """
import { sin, cos, FUSED } from %s;
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const buf = Buffer.concat(chunks);
const x = new Float64Array(buf.buffer, buf.byteOffset, buf.length / 8);
const out = new Float64Array(2 * x.length);
for (let i = 0; i < x.length; i++) { out[2 * i] = sin(x[i]); out[2 * i + 1] = cos(x[i]); }
process.stdout.write(Buffer.from(out.buffer));
"""


def test_sin_cos_equal_glibcs(node: str, tmp_path: Path) -> None:
    """CartPole's bit identity rests on this: exact_math.mjs returns math.sin/math.cos's bits
    (V8's Math.sin differs in the last bit on about 1.5% of these arguments)."""
    script = tmp_path / "sincos.mjs"
    script.write_text(SINCOS % json.dumps(str(SDK / "examples" / "exact_math.mjs")))
    rng = np.random.default_rng(7)
    x = np.concatenate(
        [
            rng.uniform(-0.3, 0.3, 60000),  # CartPole's angles
            rng.uniform(-3.5, 3.5, 20000),
            rng.uniform(-1e3, 1e3, 5000),
            rng.uniform(-1e-7, 1e-7, 1000),
            np.array([0.0, -0.0, 0.126, -0.126, 0.855469, 2.426265, 1e-300, 5e-324]),
        ]
    )
    proc = subprocess.run([node, str(script)], input=x.tobytes(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    got = np.frombuffer(proc.stdout, dtype=np.float64).reshape(-1, 2)
    want_sin = np.array([math.sin(v) for v in x])
    want_cos = np.array([math.cos(v) for v in x])
    bad_sin = np.nonzero(got[:, 0].view(np.int64) != want_sin.view(np.int64))[0]
    bad_cos = np.nonzero(got[:, 1].view(np.int64) != want_cos.view(np.int64))[0]
    assert len(bad_sin) == 0, f"sin differs at {x[bad_sin[:5]].tolist()} ({len(bad_sin)} of {len(x)})"
    assert len(bad_cos) == 0, f"cos differs at {x[bad_cos[:5]].tolist()} ({len(bad_cos)} of {len(x)})"


# -- every space, every value ----------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    if isinstance(a, gym.spaces.GraphInstance):
        # edge_links keep the dtype they were sent with, int32 (Gymnasium's sample) or int64 (§9)
        links = a.edge_links is None or (
            b.edge_links.dtype == a.edge_links.dtype and np.array_equal(a.edge_links, b.edge_links)
        )
        return links and same(a.nodes, b.nodes) and same(a.edges, b.edges)
    if isinstance(a, (np.ndarray, np.generic)) or isinstance(b, (np.ndarray, np.generic)):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("direction", ["ClientEnv", "ServerEnv"])
def test_every_space_kind_round_trips(node: str, direction: str) -> None:
    """Python samples actions of a Dict holding every space kind; the node env answers each as
    its observation: decoded, checked and re-encoded by rlay.mjs, they must come back equal."""
    if direction == "ClientEnv":
        env: Any = rlay.ClientEnv(launch=[node, ECHO, "--listen", "{address}"])
    else:
        env = rlay.ServerEnv(launch=[node, ECHO, "--connect", "{address}"])
    try:
        assert env.observation_space == env.action_space
        kinds = {type(s).__name__ for s in env.action_space.spaces.values()}
        assert kinds >= {"Box", "Discrete", "MultiDiscrete", "MultiBinary", "Text", "Tuple"}
        assert kinds >= {"Sequence", "Graph", "OneOf"}
        obs, info = env.reset(seed=2**64 - 1, options={"level": [1, "two", 3.5]})
        assert obs in env.observation_space
        assert info == {"seed": 2**64 - 1, "options": {"level": [1, "two", 3.5]}}
        env.action_space.seed(3)
        for _ in range(40):
            action = env.action_space.sample()
            obs, reward, terminated, truncated, info = env.step(action)
            assert same(action, obs), (action, obs)
            assert type(reward) is float and reward == 0.5 and terminated is False and truncated is False
        assert info["int"] == 3 and type(info["int"]) is int
        assert info["big"] == 2**63 and info["neg"] == -7
        assert info["float"] == 0.25 and type(info["whole_float"]) is float and info["whole_float"] == 2.0
        assert info["str"] == "héllo ✓" and info["bytes"] == b"\x00\x01\xff" and info["nil"] is None
        assert info["flag"] is True and info["list"] == [1, "a", [False]]
        assert info["nested"] == {"deep": {"x": 1.5}}
        assert same(info["tensor"], np.array([[1, 2], [3, 4]], dtype=np.int32))
        assert same(info["floats"], np.array([0.5, -0.5]))
        assert env.call("echo", 1, "x", [2.5], k={"a": None}) == [1, "x", [2.5], {"k": {"a": None}}]
    finally:
        env.close()


def test_errors_are_replies_with_the_javascript_stack(node: str) -> None:
    env = rlay.ClientEnv(launch=[node, ECHO, "--listen", "{address}"], check_actions=False)
    try:
        with pytest.raises(rlay.RemoteError) as info:
            env.call("boom")
        err = info.value
        assert err.code_name == "ENV_EXCEPTION" and not err.fatal and err.remote_type == "TypeError"
        assert "boom from the env" in err.message and "echo_env.mjs" in (err.traceback or "")
        with pytest.raises(rlay.RemoteError) as info:
            env.call("no_such_function")
        assert info.value.code_name == "NOT_SUPPORTED" and not info.value.fatal
        with pytest.raises(rlay.RemoteError) as info:
            env.step(env.action_space.sample())  # STEP before RESET
        assert info.value.code_name == "RESET_NEEDED"
        env.reset()
        bad = env.action_space.sample()
        bad["disc"] = 7  # outside Discrete(5, start=-2): the SDK answers, not the env code
        with pytest.raises(rlay.RemoteError) as info:
            env.step(bad)
        assert info.value.code_name == "INVALID_ACTION" and "disc" in info.value.message
        bad = env.action_space.sample()
        bad["text"] = "nope!"  # characters outside the charset
        with pytest.raises(rlay.RemoteError) as info:
            env.step(bad)
        assert info.value.code_name == "INVALID_ACTION"
        with pytest.warns(UserWarning, match="no render mode"):
            assert env.render() is None
        obs, *_ = env.step(env.action_space.sample())  # the session goes on
        assert obs in env.observation_space
    finally:
        env.close()


def test_cartpole_env_code_errors(node: str) -> None:
    env = rlay.ClientEnv(launch=[CARTPOLE, "--listen", "{address}"])
    try:
        with pytest.raises(rlay.RemoteError) as info:
            env.reset(options={"state": np.zeros(3)})
        assert info.value.code_name == "ENV_EXCEPTION" and info.value.remote_type == "ValueError"
        assert "float64 tensor of shape (4,)" in info.value.message
        with pytest.raises(rlay.RemoteError) as info:
            env.reset(options={"low": 0.1, "high": -0.1})
        assert "Lower bound" in info.value.message
        state = np.array([0.01, -0.02, 0.03, 0.04])
        obs, _ = env.reset(seed=1, options={"state": state})
        assert obs.tobytes() == state.astype(np.float32).tobytes()
        assert env.call("get_state").tobytes() == state.tobytes()
        ref = gym.make("CartPole-v1")
        got = env.reset(seed=5, options={"low": -0.2, "high": 0.1})[0]
        assert got.tobytes() == ref.reset(seed=5, options={"low": -0.2, "high": 0.1})[0].tobytes()
    finally:
        env.close()


def test_cartpole_render_rgb_array(node: str) -> None:
    env = rlay.ClientEnv(
        launch=[CARTPOLE, "--listen", "{address}", "--render-mode", "rgb_array"], render_mode="rgb_array"
    )
    try:
        env.reset(seed=0, options={"state": np.array([1.0, 0.0, 0.2, 0.0])})
        frame = env.render()
        assert frame.dtype == np.uint8 and frame.shape == (400, 600, 3)
        black = np.all(frame == 0, axis=2)
        cols = np.nonzero(black[:290].any(axis=0))[0]  # the cart, above the track line
        assert abs(cols.mean() - (1.0 * 600 / 4.8 + 300)) < 3
        assert np.all(frame[299] == 0) and np.all(frame == (202, 152, 101), axis=2).sum() > 500
    finally:
        env.close()


# -- the raw protocol: what a broken peer sees -------------------------------------------------------


def finish(proc: subprocess.Popen[str], code: int) -> str:
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the node program did not exit by itself; stderr: {err[-2000:]}")
    assert proc.returncode == code, f"exit code {proc.returncode}; stderr: {err[-3000:]}"
    return err


@pytest.fixture
def listening(node: str) -> Iterator[tuple[subprocess.Popen[str], socket.socket]]:
    proc = subprocess.Popen(
        [CARTPOLE, "--listen", "tcp://127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("RLAY_LISTENING tcp://127.0.0.1:"), line
    host, port = line.split()[1][len("tcp://") :].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    yield proc, sock
    sock.close()
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_version_mismatch_is_named_on_both_sides(listening: Any) -> None:
    proc, sock = listening
    kind, hello = read_frame(sock)  # the env side speaks first, without waiting
    assert kind == 1 and hello["role"] == "env" and hello["sdk"] == "rlay-js" and hello["capabilities"] == {}
    sock.sendall(frame(1, {**HELLO, "version": 2}))
    kind, err = read_frame(sock)
    assert kind == 48 and err["code"] == 12 and err["fatal"] is True
    assert err["message"] == "protocol version mismatch: this side speaks 1, peer speaks 2"
    assert sock.recv(1) == b""
    assert "VERSION_MISMATCH" in finish(proc, 1)


def test_a_non_rlay_peer_is_rejected_on_its_first_bytes(listening: Any) -> None:
    proc, sock = listening
    read_frame(sock)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    kind, err = read_frame(sock)
    assert kind == 48 and err["code"] == 1 and err["fatal"] is True and "47 45" in err["message"]
    assert "BAD_MAGIC" in finish(proc, 1)


def test_truncated_and_oversized_frames(node: str) -> None:
    for data, code in (
        (frame(1, HELLO)[:-3], "TRUNCATED"),
        (b"RL\x11\x00" + struct.pack("<II", 2**32 - 1, 1), None),
    ):
        proc = subprocess.Popen(
            [CARTPOLE, "--listen", "tcp://127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            read_frame(sock)
            sock.sendall(data)
            if code is None:  # refused on its header: the body is never waited for
                kind, err = read_frame(sock)
                assert kind == 48 and err["code"] == 3 and err["fatal"] is True
                code = "FRAME_TOO_LARGE"
            else:
                sock.shutdown(socket.SHUT_WR)
            assert code in finish(proc, 1)


def test_the_env_side_exits_when_the_agent_vanishes(listening: Any) -> None:
    proc, sock = listening
    read_frame(sock)
    sock.sendall(frame(1, HELLO))
    assert read_frame(sock)[0] == 2  # ENV_INFO
    sock.sendall(frame(18, {}))  # RENDER without a render mode
    kind, err = read_frame(sock)
    assert kind == 48 and err["code"] == 34 and err["fatal"] is False
    sock.sendall(frame(16, {"seed": 1, "options": None}))
    assert read_frame(sock)[0] == 32
    sock.close()  # no CLOSE: the agent process died
    finish(proc, 0)


def test_a_peer_vanishing_outside_idle_is_a_non_zero_exit(listening: Any) -> None:
    """Spec §15: only CLOSE or end of stream in idle is an orderly end; a dialer that goes away
    before its HELLO leaves the program in state hello: exit 1, one line on stderr."""
    proc, sock = listening
    assert read_frame(sock)[0] == 1  # the env side's HELLO
    sock.close()
    assert "closed by peer in state hello" in finish(proc, 1)


def test_usage_errors(node: str) -> None:
    bad = subprocess.run([CARTPOLE, "--listen", "http://x"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "ADDRESS" in bad.stderr and "tcp://HOST:PORT" in bad.stderr
    none = subprocess.run(
        [CARTPOLE], capture_output=True, text=True, timeout=30, env={"PATH": os.environ["PATH"]}
    )
    assert none.returncode == 2 and "RLAY_ADDRESS" in none.stderr
    # spec §15: RLAY_MODE other than listen|dial (or unset/empty) is an error naming it
    mode = subprocess.run(
        [CARTPOLE],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ["PATH"], "RLAY_ADDRESS": "tcp://127.0.0.1:0", "RLAY_MODE": "both"},
    )
    assert mode.returncode != 0 and "RLAY_MODE" in mode.stderr and '"both"' in mode.stderr
    assert mode.stdout == ""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    refused = subprocess.run(
        [CARTPOLE, "--connect", f"tcp://127.0.0.1:{port}"], capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 1 and "refused" in refused.stderr.lower()


# -- WebSocket: one rlay frame per binary message ------------------------------------------------------


class WsFrames:
    """Reading WebSocket messages (RFC 6455 §5.2), unfragmented, masked or not."""

    sock: socket.socket

    def _exactly(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("the WebSocket peer closed the stream")
            buf += chunk
        return buf

    def recv(self) -> tuple[int, bytes]:
        b0, b1 = self._exactly(2)
        assert b0 & 0x80, "fragmented messages are not expected"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._exactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._exactly(8))[0]
        mask = self._exactly(4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(self._exactly(n)))
        return b0 & 0x0F, data


class MiniWsServer(WsFrames):
    """Just enough of RFC 6455 (stdlib only) for a test agent: the opening handshake, unfragmented
    binary messages. Each message received must hold exactly one whole rlay frame."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(30)
        self.address = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/rlay"

    def accept(self) -> None:
        self.sock, _ = self.listener.accept()
        self.sock.settimeout(30)
        request = b""
        while b"\r\n\r\n" not in request:
            request += self.sock.recv(4096)
        self.path = request.split(b" ", 2)[1].decode()
        key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", request)
        assert key, request
        accept = base64.b64encode(hashlib.sha1(key.group(1) + self.GUID.encode()).digest()).decode()
        self.sock.sendall(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )

    def send(self, data: bytes) -> None:
        n = len(data)
        head = bytes([0x82]) + (
            bytes([n])
            if n < 126
            else bytes([126]) + struct.pack(">H", n)
            if n < 65536
            else bytes([127]) + struct.pack(">Q", n)
        )
        self.sock.sendall(head + data)

    def closing_handshake(self) -> None:
        """The peer's close message, answered as a server does."""
        opcode, _ = self.recv()
        assert opcode == 8, f"expected a close message, got opcode {opcode}"
        self.sock.sendall(b"\x88\x00")
        self.sock.close()

    def close(self) -> None:
        for s in (getattr(self, "sock", None), self.listener):
            if s is not None:
                s.close()


class MiniWsClient(WsFrames):
    """The client side of MiniWsServer: it dials, sends masked binary messages (RFC 6455 §5.1)."""

    def __init__(self, address: str) -> None:
        host_port, _, path = address[len("ws://") :].partition("/")
        host, port = host_port.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise EOFError(f"no handshake answer: {head!r}")
            head += chunk
        self.status = head.split(b"\r\n", 1)[0].decode()
        want = base64.b64encode(hashlib.sha1((key + MiniWsServer.GUID).encode()).digest())
        self.accepted = b"101" in head.split(b"\r\n", 1)[0] and want in head

    def send(self, data: bytes, opcode: int = 2) -> None:
        n, mask = len(data), os.urandom(4)
        if n < 126:
            head = bytes([0x80 | opcode, 0x80 | n])
        elif n < 65536:
            head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack(">H", n)
        else:
            head = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data)))


class WsAgent:
    """rlay's own protocol core (rlay.protocol.connection) as the agent, over MiniWsServer."""

    def __init__(self, ws: MiniWsServer) -> None:
        self.ws = ws
        self.conn = Connection(Role.AGENT)
        self.flush()

    def flush(self) -> None:
        data = b"".join(bytes(b) for b in self.conn.data_to_send())
        if data:
            self.ws.send(data)  # one message: the one frame just queued

    def receive(self) -> Any:
        opcode, data = self.ws.recv()
        assert opcode == 2, f"expected a binary message, got opcode {opcode}"
        head = struct.unpack("<II", data[4:12])
        assert data[:2] == b"RL" and len(data) == 12 + head[0] + head[1], (
            "a message must hold exactly one frame"
        )
        self.conn.receive_data(data)
        event = self.conn.next_event()
        assert event is not None and self.conn.next_event() is None
        return event

    def ask(self, message: Any) -> Any:
        self.conn.send(message)
        self.flush()
        return self.receive()


def test_websocket_framing_end_to_end(node: str) -> None:
    """The node CartPole dials a WebSocket (Node's own, `--experimental-websocket` on Node 20),
    one rlay frame per binary message both ways; a seeded episode equals Gymnasium's."""
    probe = subprocess.run(
        [node, "--experimental-websocket", "-e", "WebSocket"], capture_output=True, timeout=30
    )
    if probe.returncode != 0:
        pytest.skip(
            "this node has no WebSocket client (Node >= 20.10 has it behind --experimental-websocket)"
        )
    ws = MiniWsServer()
    cmd = [node, "--experimental-websocket", str(SDK / "examples" / "cartpole.mjs")]
    proc = subprocess.Popen(
        [*cmd, "--connect", ws.address, "--render-mode", "rgb_array"], stderr=subprocess.PIPE, text=True
    )
    try:
        ws.accept()
        assert ws.path == "/rlay"
        agent = WsAgent(ws)
        hello = agent.receive()
        assert isinstance(hello, Hello) and hello.sdk == "rlay-js"
        info = agent.receive()
        assert isinstance(info, EnvInfo) and info.name == "CartPole-v1"
        ref = gym.make("CartPole-v1")
        want, _ = ref.reset(seed=4)
        got = agent.ask(Reset(4, None))
        assert isinstance(got, ResetResult) and got.obs.tobytes() == want.tobytes()
        for t in range(60):
            action = t % 2
            want_step = ref.step(action)
            got = agent.ask(Step(action))
            assert isinstance(got, StepResult) and got.obs.tobytes() == want_step[0].tobytes(), t
            if want_step[2]:
                break
        frame_msg = agent.ask(Render())  # 720 KB in one message
        assert isinstance(frame_msg, RenderResult) and frame_msg.frame.shape == (400, 600, 3)
        assert isinstance(agent.ask(Close()), CloseResult)
        ws.closing_handshake()
        finish(proc, 0)
    finally:
        ws.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# -- the package ---------------------------------------------------------------------------------------


def exported_names() -> set[str]:
    text = (SDK / "rlay.mjs").read_text()
    return set(re.findall(r"^export (?:async )?(?:function|class|const|let)\s+(\w+)", text, re.M))


def test_typescript_declarations_name_every_export() -> None:
    declared = set(
        re.findall(
            r"^export (?:declare )?(?:function|class|const|let|type|interface)\s+(\w+)",
            (SDK / "rlay.d.mts").read_text(),
            re.M,
        )
    )
    missing = exported_names() - declared
    assert not missing, f"rlay.d.mts does not declare {sorted(missing)}"


def test_npm_pack_installs_and_imports(node: str, tmp_path: Path) -> None:
    npm = require_tool("npm")
    env = {**os.environ, "npm_config_cache": str(tmp_path / "cache"), "npm_config_update_notifier": "false"}
    packed = subprocess.run(
        [npm, "pack", "--json", "--pack-destination", str(tmp_path)],
        cwd=SDK,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert packed.returncode == 0, packed.stderr[-2000:]
    meta = json.loads(packed.stdout)[0]
    files = {f["path"] for f in meta["files"]}
    assert {"rlay.mjs", "rlay.d.mts", "package.json", "README.md"} <= files, files
    assert not any(f.startswith("tests/") for f in files), files
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "app", "version": "1.0.0", "type": "module"}')
    installed = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--offline", str(tmp_path / meta["filename"])],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    check = (
        'import * as rlay from "rlay";'
        "const s = rlay.box({low: -1, high: 1, shape: [2]});"
        "const env = new rlay.EnvSide({observationSpace: s, actionSpace: rlay.discrete(3)});"
        "console.log(rlay.SDK_NAME, rlay.PROTOCOL_VERSION, env.numEnvs, Object.keys(rlay).length);"
    )
    (app / "check.mjs").write_text(check)
    run = subprocess.run([node, "check.mjs"], cwd=app, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith("rlay-js 1 1 "), run.stdout + run.stderr


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


# -- loop style: a game's own frame loop --------------------------------------------------------------


@pytest.mark.parametrize("direction", ["ClientEnv", "ServerEnv"])
def test_game_loop_holds_a_step_over_frames(node: str, direction: str) -> None:
    """examples/game_loop.mjs: poll() every frame, a STEP played over 4 frames, then answered."""
    program = [node, str(SDK / "examples" / "game_loop.mjs")]
    if direction == "ClientEnv":
        env: Any = rlay.ClientEnv(launch=[*program, "--listen"])
    else:
        env = rlay.ServerEnv(launch=[*program, "--connect"])
    try:
        env.reset()
        x, v = np.float32(0), np.float32(0)
        dt = np.float32(0.05)
        for step, action in enumerate([2, 2, 1, 0, 0, 2]):
            for _ in range(4):  # the same float32 frames as the game
                v = np.float32(v + np.float32(action - 1) * dt)
                x = np.float32(x + v * dt)
            obs, reward, terminated, truncated, info = env.step(action)
            assert obs.tolist() == [x, v], (step, obs, x, v)
            assert reward == -abs(float(x)) and not terminated and not truncated and info == {"frames": 4}
    finally:
        env.close()


def test_the_game_quitting_is_a_named_error(node: str) -> None:
    """env.shutdown() (the game quit) reaches Python as a fatal SHUTTING_DOWN; the program exits 0."""
    env = rlay.ClientEnv(launch=[node, ECHO, "--listen", "{address}"])
    try:
        env.reset()
        with pytest.raises(rlay.RemoteError) as info:
            env.call("quit")
        assert info.value.code_name == "SHUTTING_DOWN" and info.value.fatal
        assert "the player closed the game" in info.value.message
        assert env.process is not None and env.process.popen.wait(15) == 0
    finally:
        env.close()


@pytest.mark.parametrize(
    "how",
    [
        ["--", CARTPOLE, "--listen", "{address}"],  # ClientEnv over a unix socket
        [
            "--server",
            "tcp://127.0.0.1:0",
            "--",
            CARTPOLE,
            "--connect",
            "{address}",
            "--render-mode",
            "rgb_array",
        ],
    ],
    ids=["listen-unix", "dial-tcp-render"],
)
def test_rlay_check_the_other_transports(node: str, how: list[str]) -> None:
    """The shared harness checks listen/tcp and dial/unix; these are the other two pairings."""
    proc = subprocess.run(
        [sys.executable, "-m", "rlay.cli", "check", *how], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0 and " 0 failed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert ("unix://" if "--listen" in how else "tcp://127.0.0.1:") in proc.stdout
    assert "rgb_array frame (400, 600, 3)" in proc.stdout or "--server" not in how


def start_ws_listener(node: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [node, str(SDK / "examples" / "cartpole.mjs"), "--listen", "ws://127.0.0.1:0/rlay", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("RLAY_LISTENING ws://127.0.0.1:") and line.rstrip().endswith("/rlay"), line
    return proc, line.split()[1]


def test_a_node_env_side_listening_on_websocket(node: str) -> None:
    """cartpole --listen ws://127.0.0.1:0/rlay (what rlay.ClientEnv("ws://...") will dial): the
    SDK's own dependency-free WebSocket server, one rlay frame per binary message both ways."""
    proc, address = start_ws_listener(node, "--render-mode", "rgb_array")
    ws = MiniWsClient(address)
    try:
        assert ws.accepted, ws.status
        agent = WsAgent(ws)  # type: ignore[arg-type]
        assert isinstance(agent.receive(), Hello) and isinstance(agent.receive(), EnvInfo)
        ref = gym.make("CartPole-v1")
        want, _ = ref.reset(seed=8)
        assert agent.ask(Reset(8, None)).obs.tobytes() == want.tobytes()
        for t in range(500):
            want_step = ref.step(t % 2)
            got = agent.ask(Step(t % 2))
            assert got.obs.tobytes() == want_step[0].tobytes() and got.reward == want_step[1], t
            if want_step[2]:
                break
        assert agent.ask(Render()).frame.shape == (400, 600, 3)  # 720 KB: a 64-bit length
        ws.send(b"", opcode=9)  # a ping is answered with a pong, the session goes on
        assert ws.recv()[0] == 0xA
        assert isinstance(agent.ask(Close()), CloseResult)
        assert ws.recv()[0] == 8  # the env side closes the WebSocket after CLOSE_RESULT
        finish(proc, 0)
    finally:
        ws.sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize(
    "request_head,status,error",
    [
        (b"GET /rlay HTTP/1.1\r\nHost: x\r\n\r\n", b"426", "plain HTTP request"),
        (
            b"GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            b"404",
            'path "/other"',
        ),
    ],
    ids=["plain-http", "wrong-path"],
)
def test_the_websocket_listener_refuses_a_wrong_client(
    node: str, request_head: bytes, status: bytes, error: str
) -> None:
    proc, address = start_ws_listener(node)
    port = int(address.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request_head)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 " + status) and error.encode() in answer, answer
    assert error in finish(proc, 1)


def test_a_text_websocket_message_is_refused(node: str) -> None:
    proc, address = start_ws_listener(node)
    ws = MiniWsClient(address)
    try:
        ws.recv()  # the env's HELLO
        ws.send(b"hello", opcode=1)
        opcode, data = ws.recv()
        assert opcode == 2 and data[2] == 48  # a fatal ERROR frame
        assert "BAD_MAGIC" in finish(proc, 1)
    finally:
        ws.sock.close()


def test_the_first_websocket_message_has_the_handshake_limit(node: str) -> None:
    """Spec §13: before the peer's HELLO a side reads at most 64 KiB. The SDK's ws listener
    refuses a first message declaring more on its WebSocket header, before buffering it."""
    proc, address = start_ws_listener(node)
    ws = MiniWsClient(address)
    try:
        ws.recv()  # the env's HELLO
        ws.sock.sendall(bytes([0x82, 0x80 | 127]) + struct.pack(">Q", 65536 + 12 + 1) + os.urandom(4))
        opcode, data = ws.recv()
        assert opcode == 2 and data[2] == 48  # a fatal ERROR frame, code 3
        body = msgpack.unpackb(data[12:])
        assert body["code"] == 3 and body["fatal"] is True, body
        assert "FRAME_TOO_LARGE" in finish(proc, 1)
    finally:
        ws.sock.close()


def test_the_readmes_example_serves_python(node: str, tmp_path: Path) -> None:
    """The callback-style example at the top of sdk/js/README.md, run as written (its fixed
    address swapped for the launcher's), stepped from Python."""
    text = (SDK / "README.md").read_text()
    code = text.split("```js\n", 1)[1].split("```", 1)[0]
    assert 'env.listen("tcp://127.0.0.1:5555")' in code
    code = code.replace('"./rlay.mjs"', json.dumps(str(SDK / "rlay.mjs")))
    code = code.replace('env.listen("tcp://127.0.0.1:5555")', "rlay.open(env)")
    (tmp_path / "example.mjs").write_text(code)
    env = rlay.ClientEnv(launch=[node, str(tmp_path / "example.mjs"), "--listen", "{address}"])
    try:
        obs, _ = env.reset()
        assert obs.tolist() == [0.0] and env.metadata["render_fps"] == 30
        for _ in range(5):
            obs, reward, terminated, truncated, _ = env.step(1)
        assert obs.tolist() == [5.0] and reward == 1.0 and terminated and not truncated
        assert env.call("get_pos") == 5 and env.step(0)[0].tolist() == [4.0]
    finally:
        env.close()
