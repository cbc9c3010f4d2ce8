"""Ring 1: the state machine of spec/protocol.md §7-§8, bytes in / messages out, no sockets.

The table below is written from the spec, not imported from rlay.protocol.connection, so the
implementation's table is checked against the spec's: every row is exercised on a pair of
Connections (both sides move together), and every (state, message, role) combination that is
*not* a row is refused — on receipt with UNEXPECTED_MESSAGE naming the state and the message
(and a fatal ERROR queued for the peer), on sending with a UsageError that queues nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rlay.errors import ProtocolError, UsageError, VersionMismatch
from rlay.protocol.codec import decode
from rlay.protocol.connection import Connection, State
from rlay.protocol.framing import FrameReader
from rlay.protocol.messages import (
    Call,
    CallResult,
    Close,
    CloseResult,
    EnvInfo,
    Error,
    Hello,
    Message,
    Render,
    RenderResult,
    Reset,
    ResetResult,
    Step,
    StepResult,
)
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE, ErrorCode, Kind, Role
from rlay.testing.conformance import connection_in, fields_of, pair_in, same

STATES = ("hello", "describe", "idle", "reset", "step", "render", "call", "close", "closed")
COMMAND_STATES = ("reset", "step", "render", "call")

#: §8, the rows without ERROR: (state, message) -> next state.
ROWS = {
    ("hello", "HELLO"): "describe",
    ("describe", "ENV_INFO"): "idle",
    ("idle", "RESET"): "reset",
    ("idle", "STEP"): "step",
    ("idle", "RENDER"): "render",
    ("idle", "CALL"): "call",
    ("idle", "CLOSE"): "close",
    ("reset", "RESET_RESULT"): "idle",
    ("step", "STEP_RESULT"): "idle",
    ("render", "RENDER_RESULT"): "idle",
    ("call", "CALL_RESULT"): "idle",
    ("close", "CLOSE_RESULT"): "closed",
}
#: §6: who sends each message.
SENDER = {
    "HELLO": "both",
    "ENV_INFO": "env",
    "RESET": "agent",
    "STEP": "agent",
    "RENDER": "agent",
    "CLOSE": "agent",
    "CALL": "agent",
    "RESET_RESULT": "env",
    "STEP_RESULT": "env",
    "RENDER_RESULT": "env",
    "CLOSE_RESULT": "env",
    "CALL_RESULT": "env",
    "ERROR": "both",
}
SPACE = {"kind": "discrete", "n": 3, "start": 0, "dtype": "int64"}


def sample(name: str, sender: str) -> Message:
    """A valid message of each kind; ERROR_FATAL / ERROR are the two flavours of ERROR."""
    return {
        "HELLO": lambda: Hello("rlay", 1, sender, "test", "0", {}),
        "ENV_INFO": lambda: EnvInfo(SPACE, SPACE, 1, {}, None, None),
        "RESET": lambda: Reset(3, {"a": 1}),
        "STEP": lambda: Step(np.array([1.5, 2.5], np.float32)),
        "RENDER": Render,
        "CLOSE": Close,
        "CALL": lambda: Call("f", [1], {"k": "v"}),
        "RESET_RESULT": lambda: ResetResult(np.arange(3, dtype=np.int16), {}),
        "STEP_RESULT": lambda: StepResult(np.zeros(2), 1.0, False, True, {"x": [1, None]}),
        "RENDER_RESULT": lambda: RenderResult("ansi"),
        "CLOSE_RESULT": CloseResult,
        "CALL_RESULT": lambda: CallResult({"v": 2}),
        "ERROR": lambda: Error(int(ErrorCode.ENV_EXCEPTION), "boom", False, "ValueError", "tb"),
        "ERROR_FATAL": lambda: Error(int(ErrorCode.SHUTTING_DOWN), "bye", True, None, None),
    }[name]()


VARIANTS = (*SENDER, "ERROR_FATAL")


def expected_next(state: str, variant: str, sender: str) -> str | None:
    """The spec's answer: the next state, or None if §8 has no such row."""
    if variant in ("ERROR", "ERROR_FATAL"):
        if state == "closed":
            return None
        if variant == "ERROR_FATAL":
            return "closed"  # any but closed, either side
        if sender == "env" and state in COMMAND_STATES:
            return "idle"
        if sender == "env" and state == "close":
            return "closed"
        return None
    if SENDER[variant] not in ("both", sender):
        return None
    return ROWS.get((state, variant))


def frame_of(msg: Message) -> bytes:
    return b"".join(bytes(b) for b in Connection(Role.AGENT).encode_frame(msg))


def pump(src: Connection, dst: Connection) -> None:
    for buf in src.data_to_send():
        dst.receive_data(buf)


def events(conn: Connection) -> list[Message]:
    out = []
    while (msg := conn.next_event()) is not None:
        out.append(msg)
    return out


# ------------------------------------------------------------------------------------------------
# Every row, on a pair: the sender and the receiver move to the same state.

ROW_CASES = [(state, name, SENDER[name]) for (state, name) in ROWS if name != "HELLO"]
ROW_CASES += [(state, "ERROR", "env") for state in (*COMMAND_STATES, "close")]
ROW_CASES += [
    (state, "ERROR_FATAL", side) for state in STATES if state != "closed" for side in ("agent", "env")
]


def test_hello_row_both_sides():
    agent, env = Connection(Role.AGENT), Connection(Role.ENV)
    assert (agent.state, env.state) == (State.HELLO, State.HELLO)
    pump(agent, env)
    pump(env, agent)
    (from_env,) = events(agent)
    (from_agent,) = events(env)
    assert isinstance(from_env, Hello) and from_env.role == "env"
    assert isinstance(from_agent, Hello) and from_agent.role == "agent"
    assert (agent.state, env.state) == (State.DESCRIBE, State.DESCRIBE)
    assert agent.peer_hello is from_env and env.peer_hello is from_agent


@pytest.mark.parametrize(
    ("state", "name", "sender"), ROW_CASES, ids=[f"{s}-{n}-by-{r}" for s, n, r in ROW_CASES]
)
def test_row(state, name, sender):
    agent, env = pair_in(state)
    src, dst = (agent, env) if sender == "agent" else (env, agent)
    msg = sample(name, sender)
    src.send(msg)
    want = State(expected_next(state, name, sender))
    assert src.state is want
    pump(src, dst)
    got = events(dst)
    if state == "hello":  # the sender's HELLO was still queued in front of it
        assert [type(m) for m in got] == [Hello, type(msg)]
    else:
        assert [type(m) for m in got] == [type(msg)]
    assert same(fields_of(got[-1]), fields_of(msg)) is None
    assert dst.state is want


def test_a_whole_session_visits_every_state():
    agent, env = pair_in("describe")
    seen = {"hello", "describe"}
    env.send(sample("ENV_INFO", "env"))
    pump(env, agent)
    events(agent)
    for command, reply in (("RESET", "RESET_RESULT"), ("STEP", "STEP_RESULT"), ("RENDER", "RENDER_RESULT")):
        for _ in range(2):
            agent.send(sample(command, "agent"))
            pump(agent, env)
            events(env)
            seen.add(env.state.value)
            env.send(sample(reply, "env"))
            pump(env, agent)
            events(agent)
            seen.add(agent.state.value)
    agent.send(sample("CALL", "agent"))
    pump(agent, env)
    events(env)
    seen.add(env.state.value)
    env.send(sample("ERROR", "env"))  # a non-fatal error answers the call; the session goes on
    pump(env, agent)
    (err,) = events(agent)
    assert isinstance(err, Error) and not err.fatal and agent.state is State.IDLE
    agent.send(sample("CLOSE", "agent"))
    pump(agent, env)
    events(env)
    seen.add(env.state.value)
    env.send(sample("CLOSE_RESULT", "env"))
    pump(env, agent)
    events(agent)
    assert agent.state is env.state is State.CLOSED
    seen.add("closed")
    assert seen == set(STATES)
    agent.receive_eof()
    assert agent.next_event() is None and agent.eof  # end of stream in closed: the normal end


# ------------------------------------------------------------------------------------------------
# Everything that is not a row is refused.

ALL = [(role, state, v) for role in ("agent", "env") for state in STATES for v in VARIANTS]


@pytest.mark.parametrize(("role", "state", "variant"), ALL, ids=[f"{r}-{s}-{v}" for r, s, v in ALL])
def test_receive(role, state, variant):
    peer = "env" if role == "agent" else "agent"
    conn = connection_in(role, state)
    msg = sample(variant, peer)
    want = expected_next(state, variant, peer)
    if want is not None:
        conn.receive_data(frame_of(msg))
        (got,) = events(conn)
        assert type(got) is type(msg) and conn.state is State(want)
        assert conn.data_to_send() == []
        return
    conn.receive_data(frame_of(msg))
    with pytest.raises(ProtocolError) as info:
        conn.next_event()
    exc = info.value
    assert exc.code is ErrorCode.UNEXPECTED_MESSAGE
    kind = msg.KIND.name
    assert kind in str(exc) and repr(state) in str(exc), f"the error must name {kind} and {state!r}: {exc}"
    assert conn.state is State.CLOSED
    out = b"".join(bytes(b) for b in conn.data_to_send())
    if state == "closed":
        assert out == b"", "nothing is sent once closed"
        return
    reader = FrameReader(DEFAULT_MAX_FRAME_SIZE)
    reader.feed(out)
    ((k, data, body),) = reader.frames
    assert k == Kind.ERROR, "exactly one frame, a fatal ERROR, is queued for the peer"
    err = Error.from_body(decode(body, data))
    assert isinstance(err, Error) and err.fatal and err.code == ErrorCode.UNEXPECTED_MESSAGE
    assert kind in err.message and state in err.message


@pytest.mark.parametrize(("role", "state", "variant"), ALL, ids=[f"{r}-{s}-{v}" for r, s, v in ALL])
def test_send(role, state, variant):
    conn = connection_in(role, state)
    msg = sample(variant, role)
    want = None if variant == "HELLO" else expected_next(state, variant, role)  # HELLO: sent by __init__
    if want is not None:
        conn.send(msg)
        assert conn.state is State(want)
        assert len(conn.data_to_send()) >= 2  # header and body, maybe tensor chunks
        return
    with pytest.raises(UsageError) as info:
        conn.send(msg)
    assert msg.KIND.name in str(info.value)
    assert conn.state is State(state), "a refused send must not change the state"
    assert conn.data_to_send() == [], "a refused send must queue nothing"


def test_the_table_has_as_many_legal_receipts_as_rows():
    legal = [(r, s, v) for r, s, v in ALL if expected_next(s, v, "env" if r == "agent" else "agent")]
    # 12 message rows (HELLO for both roles: 13), 5 non-fatal ERROR rows, 8 states x 2 fatal ERROR.
    assert len(legal) == 13 + 5 + 16


def test_send_fatal_in_every_state():
    for state in STATES:
        for role in ("agent", "env"):
            conn = connection_in(role, state)
            conn.send_fatal(ErrorCode.INTERNAL, "bug")
            out = conn.data_to_send()
            assert conn.state is State.CLOSED
            assert (out == []) == (state == "closed"), state


# ------------------------------------------------------------------------------------------------
# Handshake (§7)


def test_version_mismatch_is_raised_on_both_sides():
    agent, env = Connection(Role.AGENT, version=2), Connection(Role.ENV)
    pump(agent, env)
    pump(env, agent)
    with pytest.raises(VersionMismatch) as on_env:
        env.next_event()
    with pytest.raises(VersionMismatch) as on_agent:
        agent.next_event()
    assert on_env.value.code is on_agent.value.code is ErrorCode.VERSION_MISMATCH
    assert "1" in str(on_env.value) and "2" in str(on_env.value)
    assert agent.state is env.state is State.CLOSED
    # Each side tells the other why, with the same code, in a fatal ERROR.
    for side in (agent, env):
        out = b"".join(bytes(b) for b in side.data_to_send())
        peer = Connection(Role.ENV if side is agent else Role.AGENT)
        peer.data_to_send()
        peer.receive_data(out)
        (err,) = events(peer)
        assert isinstance(err, Error) and err.fatal and err.code == ErrorCode.VERSION_MISMATCH


def test_a_fatal_error_instead_of_hello_reaches_the_caller():
    """§7.3: a side that gets a fatal ERROR during the handshake can report that error."""
    agent = Connection(Role.AGENT)
    agent.receive_data(frame_of(Error(int(ErrorCode.VERSION_MISMATCH), "speaks 2", True, None, None)))
    (err,) = events(agent)
    assert isinstance(err, Error) and err.code == ErrorCode.VERSION_MISMATCH
    assert agent.state is State.CLOSED


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"role": "agent"}, ErrorCode.ROLE_CONFLICT),
        ({"protocol": "rlay2"}, ErrorCode.BAD_MAGIC),
        ({"version": 0}, ErrorCode.VERSION_MISMATCH),
        ({"sdk": 5}, ErrorCode.BAD_FIELD),
    ],
)
def test_handshake_checks(fields, code):
    agent = Connection(Role.AGENT)
    hello = {
        "protocol": "rlay",
        "version": 1,
        "role": "env",
        "sdk": "x",
        "sdk_version": "1",
        "capabilities": {},
    }
    hello.update(fields)
    agent.receive_data(frame_of(Hello(**hello)))
    with pytest.raises(ProtocolError) as info:
        agent.next_event()
    assert info.value.code is code
    assert agent.state is State.CLOSED


# ------------------------------------------------------------------------------------------------
# Bytes in: frames split anywhere decode the same; whole frames give zero-copy tensors.


def _stream() -> bytes:
    """What an env side receives in a short session: HELLO, RESET, two STEPs, CALL, CLOSE."""
    msgs = [
        Hello("rlay", 1, "agent", "t", "0", {}),
        Reset(2**64 - 1, {"mask": np.array([True, False])}),
        Step(np.arange(6, dtype=np.float32).reshape(2, 3)),
        Step({"a": np.array([1], np.int8), "b": [np.float64(2.5), "x", b"\x00"]}),
        Call("f", [np.arange(3, dtype=np.uint64)], {}),
    ]
    return b"".join(frame_of(m) for m in msgs)


def _answering(pieces: list[bytes]) -> list[Message]:
    """Feed ``pieces`` to an env side, answering each command as it arrives; return the messages."""
    env = connection_in("env", "hello")
    got: list[Message] = []
    for piece in pieces:
        env.receive_data(piece)
        while (msg := env.next_event()) is not None:
            got.append(msg)
            if env.state is State.DESCRIBE:
                env.send(EnvInfo(SPACE, SPACE, 1, {}, None, None))
            elif env.state is State.RESET:
                env.send(ResetResult(0, {}))
            elif env.state is State.STEP:
                env.send(StepResult(0, 0.0, False, False, {}))
    env.receive_eof()
    return got


def _same_messages(a: list[Message], b: list[Message]) -> None:
    assert [type(m) for m in a] == [type(m) for m in b]
    for x, y in zip(a, b, strict=True):
        diff = same(fields_of(x), fields_of(y))
        assert diff is None, diff


def test_frames_split_at_every_byte_boundary_decode_the_same():
    stream = _stream()
    whole = _answering([stream])
    assert len(whole) == 5
    for i in range(len(stream) + 1):
        _same_messages(_answering([stream[:i], stream[i:]]), whole)


def test_frames_fed_one_byte_at_a_time_decode_the_same():
    stream = _stream()
    _same_messages(_answering([stream[i : i + 1] for i in range(len(stream))]), _answering([stream]))


def test_frames_split_at_every_pair_of_boundaries_in_one_frame():
    frame = frame_of(Step(np.arange(4, dtype=np.int16)))
    env = connection_in("env", "idle")
    env.receive_data(frame)
    (whole,) = events(env)
    for i in range(len(frame) + 1):
        for j in range(i, len(frame) + 1):
            env = connection_in("env", "idle")
            got = []
            for piece in (frame[:i], frame[i:j], frame[j:]):
                env.receive_data(piece)
                got += events(env)
            _same_messages(got, [whole])


def test_a_whole_frame_yields_tensors_that_are_views_on_the_fed_buffer():
    buf = bytearray(frame_of(Step({"obs": np.arange(4, dtype=np.float32), "k": np.array([7], np.uint64)})))
    env = connection_in("env", "idle")
    env.receive_data(buf)
    (step,) = events(env)
    arr, k = step.action["obs"], step.action["k"]
    raw = np.frombuffer(buf, np.uint8)
    assert np.shares_memory(arr, raw) and np.shares_memory(k, raw), "the tensor was copied"
    assert not arr.flags.writeable, "a view on received bytes is read-only"
    # Proof by mutation: the decoded array sees a change to the bytes that were fed.
    offset = arr.__array_interface__["data"][0] - raw.__array_interface__["data"][0]
    buf[offset : offset + 4] = np.float32(42.0).tobytes()
    assert arr[0] == 42.0
    # The data section starts after the 12-byte header; inside it every tensor is 8-aligned (§4).
    assert (k.__array_interface__["data"][0] - raw.__array_interface__["data"][0] - 12) % 8 == 0


def test_a_split_frame_is_assembled_once_and_stays_correct():
    frame = frame_of(Step(np.arange(100, dtype=np.float64)))
    env = connection_in("env", "idle")
    env.receive_data(frame[:30])
    assert env.next_event() is None
    env.receive_data(frame[30:])
    (step,) = events(env)
    assert np.array_equal(step.action, np.arange(100, dtype=np.float64))
    assert not np.shares_memory(step.action, np.frombuffer(frame, np.uint8))


def _first_fault(pieces: list[bytes]) -> tuple[list[str], ErrorCode | None]:
    """Feed an env side in idle the pieces in turn, taking every message as it comes (answering
    each STEP, so the next STEP is legal): the kinds taken, and the code of the fault met."""
    env = connection_in("env", "idle")
    taken: list[str] = []
    try:
        for piece in pieces:
            env.receive_data(piece)
            while (msg := env.next_event()) is not None:
                taken.append(type(msg).__name__)
                env.send(StepResult(np.float32(0), 0.0, False, False, {}))
        env.receive_eof()
        while (msg := env.next_event()) is not None:
            taken.append(type(msg).__name__)
    except ProtocolError as exc:
        return taken, exc.code
    return taken, None


@pytest.mark.parametrize(
    "later",
    [b"GET / HTTP/1.1\r\n", b"RL\x11\x07" + bytes(8), b"RL\x03\x00" + bytes(4) + b"\x01\x00\x00\x00\x80"],
    ids=["bad magic", "bad flags", "unknown kind"],
)
@pytest.mark.parametrize("earlier", ["good", "bad body", "unexpected"])
def test_the_first_fault_in_a_stream_wins_however_it_is_split(earlier, later):
    """A good frame, or a frame with a fault of its own, then a bad header: whether the bytes come
    in one read, two, or one byte at a time, the side meets the same fault (§8's order of checks:
    the first fault in the stream), as the C SDK does reading byte by byte."""
    first = {
        "good": frame_of(Step(1)),
        "bad body": frame_of(Step(1))[:-1] + b"\xc1",  # 0xc1 is never valid MessagePack
        "unexpected": frame_of(Reset(None, None))[:2]
        + bytes([Kind.RESET_RESULT])
        + frame_of(Reset(None, None))[3:],
    }[earlier]
    stream = first + later
    whole = _first_fault([stream])
    assert whole == _first_fault([bytes([b]) for b in stream])
    assert whole == _first_fault([first, later])
    expected = {"good": None, "bad body": ErrorCode.MALFORMED, "unexpected": ErrorCode.UNEXPECTED_MESSAGE}
    if earlier == "good":
        assert whole[0] == ["Step"] and whole[1] is not None and whole[1] is not ErrorCode.MALFORMED
    else:
        assert whole == ([], expected[earlier])


# ------------------------------------------------------------------------------------------------
# End of stream (§8)


def test_end_of_stream_between_frames_is_not_an_error():
    env = connection_in("env", "idle")
    env.receive_data(frame_of(Step(1)))
    env.receive_eof()
    assert isinstance(env.next_event(), Step)
    assert env.next_event() is None and env.eof


def test_end_of_stream_inside_a_frame_is_truncated():
    env = connection_in("env", "idle")
    env.receive_data(frame_of(Step(1))[:-1])
    with pytest.raises(ProtocolError) as info:
        env.receive_eof()
    assert info.value.code is ErrorCode.TRUNCATED
    assert env.state is State.CLOSED
    assert env.data_to_send(), "a fatal ERROR is queued for the peer"


def test_receive_data_after_eof_is_a_usage_error():
    env = connection_in("env", "idle")
    env.receive_eof()
    with pytest.raises(UsageError):
        env.receive_data(b"RL")


# -- §13: decode amplification (issue 15) --------------------------------------------------------

# Run in a fresh interpreter so that its peak RSS says what the hostile frames cost. Each case
# feeds one 8 MiB frame to a Connection and reports the error, the seconds it took and the growth
# of the peak RSS (and of the current RSS afterwards) over the baseline taken before any frame.
_HOSTILE = r"""
import gc, json, resource, struct, sys, time
from rlay.errors import ProtocolError
from rlay.protocol.connection import Connection
from rlay.protocol.framing import pack_header
from rlay.protocol.messages import EnvInfo
from rlay.protocol.wire import Role

SIZE = 8 << 20
SPACE = {"kind": "discrete", "n": 2, "start": 0, "dtype": "int64"}

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def env_in_idle():
    agent, env = Connection(Role.AGENT), Connection(Role.ENV)
    for b in agent.data_to_send(): env.receive_data(b)
    for b in env.data_to_send(): agent.receive_data(b)
    env.next_event(); agent.next_event()
    env.send(EnvInfo(SPACE, SPACE, 1, {}, None, None)); env.data_to_send()
    return env

def pairs(key, n):  # {key: [[[]], [[]], ...]}: n two-byte arrays in one array32
    k = key.encode()
    return b"\x81" + bytes([0xA0 | len(k)]) + k + b"\xdd" + struct.pack(">I", n) + b"\x91\x90" * n

def chunked(key):  # {key: [[[[]] x 1000] x k]}: no single header declares much
    chunk = b"\xdc" + struct.pack(">H", 1000) + b"\x91\x90" * 1000
    k = (SIZE - 16) // len(chunk)
    return b"\x81\xa6" + key.encode() + b"\xdd" + struct.pack(">I", k) + chunk * k

def fresh_env(**kwargs):
    conn = Connection(Role.ENV, **kwargs); conn.data_to_send(); return conn

cases = {
    "HELLO of [[]] (handshake limit)": (fresh_env, 1, pairs("protocol", (SIZE - 16) // 2)),
    "HELLO of [[]] (handshake limit raised: max_values)": (
        lambda: fresh_env(max_handshake_frame_size=64 << 20),
        1,
        pairs("protocol", (SIZE - 16) // 2),
    ),
    "STEP action of [[]] elements": (env_in_idle, 17, pairs("action", (SIZE - 16) // 2)),
    "STEP action of chunks of [[]]": (env_in_idle, 17, chunked("action")),
    "STEP action of nils": (
        env_in_idle, 17, b"\x81\xa6action\xdd" + struct.pack(">I", SIZE - 16) + b"\xc0" * (SIZE - 16)
    ),
}
frames = {name: pack_header(kind, 0, len(body)) + body for name, (_, kind, body) in cases.items()}
conns = {name: make() for name, (make, _, _) in cases.items()}
base_peak, base_rss = peak(), rss()
out = {}
for name, stream in frames.items():
    conn = conns[name]
    t0 = time.perf_counter()
    try:
        conn.receive_data(stream)
        while conn.next_event() is not None:
            pass
        code = None
    except ProtocolError as exc:
        code = exc.code.name
    queued = b"".join(bytes(b) for b in conn.data_to_send())
    gc.collect()  # a raised exception's traceback is a cycle: collect it before reading the RSS
    out[name] = {
        "code": code, "seconds": time.perf_counter() - t0, "peak": peak() - base_peak,
        "rss": rss() - base_rss, "fatal_error_queued": queued[2:3] == b"\x30", "state": conn.state.value,
    }
print(json.dumps(out))
"""


def test_hostile_frames_cost_little_memory_and_time() -> None:
    """Issue 15: one 8 MiB frame of 4 million ``[[]]`` (a HELLO, or a STEP after the handshake)
    used to cost +900 MiB and 6 s. §13's limits refuse each with a fatal FRAME_TOO_LARGE, growing
    the peak RSS by less than 64 MiB and taking less than 2 s."""
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _HOSTILE], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    assert len(results) == 5
    mib = 1 << 20
    for name, r in results.items():
        assert r["code"] == "FRAME_TOO_LARGE", (name, r)
        assert r["fatal_error_queued"] and r["state"] == "closed", (name, r)
        assert r["seconds"] < 2.0, (name, r)
        assert r["peak"] < 64 * mib, (name, f"peak RSS grew by {r['peak'] / mib:.1f} MiB")
        assert r["rss"] < 64 * mib, (name, f"RSS stayed {r['rss'] / mib:.1f} MiB above the baseline")


def test_max_values_counts_at_each_container_header() -> None:
    """§3/§13: the count starts at 1, each header adds what it declares (a map 2 per entry)."""
    from rlay.protocol.codec import check_structure

    body = b"\x81\xa5value\x93\x90\x80\xc0"  # {"value": [[], {}, nil]}: 1 + 2 + 3 = 6 values
    check_structure(body, max_values=6)
    with pytest.raises(ProtocolError) as info:
        check_structure(body, max_values=5)
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE and "more than 5 values" in info.value.detail
    assert decode(body, max_values=6) == {"value": [[], {}, None]}
    with pytest.raises(ProtocolError) as info:
        decode(body, max_values=5)
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE
    deep = b"\x81\xa5value" + b"\x91" * 70 + b"\x90"  # depth before the count (§3's order)
    with pytest.raises(ProtocolError) as info:
        decode(deep, max_values=100)
    assert info.value.code is ErrorCode.TOO_DEEP


@pytest.mark.parametrize("mode", ["next_stzp", "", 1, None])
def test_an_env_info_whose_autoreset_mode_is_no_mode_is_bad_field(mode: Any) -> None:
    """§10: metadata["autoreset_mode"] is one of three strings (absent: next_step); anything else
    is BAD_FIELD on decoding, as in C (found by the differential fuzz, tests/test_fuzz_c.py)."""
    import gymnasium as gym

    from rlay.spaces import describe

    space = describe(gym.spaces.Discrete(2))
    info = EnvInfo(space, space, 1, {"autoreset_mode": mode}, None, None)
    with pytest.raises(ProtocolError) as exc:
        EnvInfo.from_body(info.to_body())
    assert exc.value.code is ErrorCode.BAD_FIELD and "autoreset_mode" in str(exc.value)
    for good in ("next_step", "same_step", "disabled"):
        EnvInfo.from_body(EnvInfo(space, space, 1, {"autoreset_mode": good}, None, None).to_body())


def test_an_env_side_never_rounds_its_own_observation() -> None:
    """§9: an env whose own code returns a float64 observation that is not exactly float32 gets
    a non-fatal ENV_EXCEPTION naming the problem; exact float64 values go through, and the
    session goes on."""
    import gymnasium as gym

    import rlay
    from rlay.backends import serve
    from rlay.errors import RemoteError

    class Sloppy(gym.Env[np.ndarray, int]):
        observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            return np.array([0.5, -0.25]), {}  # float64, exactly float32 values

        def step(self, action):
            return np.array([0.1, 0.0]), 0.0, False, False, {}  # 0.1 is not a float32

    server = serve(Sloppy, block=False)
    try:
        env = rlay.ClientEnv(server.address)
        try:
            obs, _ = env.reset()
            assert obs.dtype == np.float32 and obs.tolist() == [0.5, -0.25]
            with pytest.raises(RemoteError) as info:
                env.step(0)
            assert info.value.code == ErrorCode.ENV_EXCEPTION
            assert "element [0]" in str(info.value) and "not exactly a float32" in str(info.value)
            assert env.reset()[0].tolist() == [0.5, -0.25]  # the session goes on
        finally:
            env.close()
    finally:
        server.close()


def test_a_partial_first_reset_leaves_step_reset_needed() -> None:
    """§8/§10: with sub-envs, STEP is RESET_NEEDED (non-fatal) until every sub-env was reset once."""
    import threading

    from gymnasium.spaces import Box, Discrete

    from rlay.backends import EnvSession
    from rlay.transports import dial, listen

    listener = listen("tcp://127.0.0.1:0")

    def env_side() -> None:
        session = EnvSession(listener.accept(5), Box(-1, 1, (2,), np.float32), Discrete(2), num_envs=3)
        while (cmd := session.poll(5)) is not None and cmd.kind != "close":
            obs = np.zeros((3, 2), np.float32)
            if cmd.kind == "reset":
                session.reply_reset(obs, {})
            else:
                session.reply_step(obs, np.zeros(3), np.zeros(3, bool), np.zeros(3, bool), {})

    thread = threading.Thread(target=env_side, daemon=True)
    thread.start()
    stream = dial(str(listener.address), 5)
    agent = Connection(Role.AGENT)

    def ask(message: Any = None) -> Any:
        if message is not None:
            agent.send(message)
        stream.send(agent.data_to_send())
        while (event := agent.next_event()) is None:
            agent.receive_data(stream.recv(65536))
        return event

    assert isinstance(ask(), Hello) and isinstance(ask(), EnvInfo) and agent.num_envs == 3
    assert isinstance(ask(Reset(None, {"reset_mask": np.array([True, False, False])})), ResetResult)
    reply = ask(Step(np.zeros(3, np.int64)))
    assert isinstance(reply, Error) and reply.code == ErrorCode.RESET_NEEDED and not reply.fatal
    assert isinstance(ask(Reset(None, {"reset_mask": np.array([False, True, True])})), ResetResult)
    assert isinstance(ask(Step(np.zeros(3, np.int64))), StepResult)
    ask(Close())
    stream.close()
    thread.join(5)
    listener.close()
