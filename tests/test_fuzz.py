"""A bounded fuzz of the receiving side: random and mutated frames into every receiver.

Targets (each fed whole or in random-sized pieces, then end of stream):
- the stand-alone decoder (FrameReader -> decode -> Message.from_body);
- a Connection in each role and each state of §8;
- ``codec.decode`` on a random body and data section;
- the step-loop templates (rlay.protocol.fastpath), differentially: a Connection with templates
  must give exactly what one without them gives (the same message, or the same error code).

The only exception allowed is :class:`rlay.errors.ProtocolError`: anything else, a hang (the
hypothesis deadline) or an allocation out of proportion to the input (tracemalloc) fails.
Seeds are the golden vectors' frames; mutations flip bytes, truncate, splice lengths into the
header and into MessagePack length fields, duplicate and join frames.

``fuzz/fuzz_protocol.py`` runs the same targets for longer (``make fuzz``).
"""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlay.errors import ProtocolError
from rlay.protocol.codec import Encoder, decode
from rlay.protocol.connection import Connection
from rlay.protocol.framing import FrameReader, pack_header
from rlay.protocol.messages import MESSAGE_TYPES, Message, Step, StepResult
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE, HEADER, Kind
from rlay.testing.conformance import connection_in, fields_of, load_vectors, same

try:
    from rlay.protocol.fastpath import FastPaths
except ImportError:  # pragma: no cover - the templates are optional to this test
    FastPaths = None  # type: ignore[assignment,misc]

STATES = ("hello", "describe", "idle", "reset", "step", "render", "call", "close", "closed")
ROLES = ("agent", "env")
RECEIVERS = [(role, state) for role in ROLES for state in STATES]

SEEDS: list[bytes] = sorted(
    {bytes.fromhex(v["frame"]) for v in load_vectors() if "frame" in v and len(v["frame"]) <= 2 * 4096},
    key=lambda b: (len(b), b),
)

#: Allowed memory growth for one input: Python objects cost up to ~64 bytes per input byte
#: (an array of empty maps), so anything beyond this is an allocation driven by a declared length.
ALLOC_SLACK = 2 * 1024 * 1024
ALLOC_PER_BYTE = 100


# ------------------------------------------------------------------------------------------------
# Targets. Each returns a comparable outcome: ("ok", messages) or ("error", code name).


def _pieces(stream: bytes, chunk: int) -> list[bytes]:
    if chunk <= 0:
        return [stream]
    return [stream[i : i + chunk] for i in range(0, len(stream), chunk)]


def feed_standalone(stream: bytes, chunk: int = 0) -> tuple[str, Any]:
    reader = FrameReader(DEFAULT_MAX_FRAME_SIZE)
    out: list[Message] = []
    try:
        for piece in _pieces(stream, chunk):
            reader.feed(piece)
            while reader.frames:
                kind, data, body = reader.frames.popleft()
                out.append(MESSAGE_TYPES[kind].from_body(decode(body, data)))
        reader.feed_eof()
    except ProtocolError as exc:
        return ("error", exc.code.name)
    return ("ok", out)


def feed_connection(conn: Connection, stream: bytes, chunk: int = 0) -> tuple[str, Any]:
    out: list[Message] = []
    try:
        for piece in _pieces(stream, chunk):
            conn.receive_data(piece)
            while (msg := conn.next_event()) is not None:
                out.append(msg)
        conn.receive_eof()
        while (msg := conn.next_event()) is not None:
            out.append(msg)
    except ProtocolError as exc:
        assert conn.state.value == "closed", "a connection that raised must be closed"
        return ("error", exc.code.name)
    return ("ok", out)


def decode_raw(body: bytes, data: bytes) -> tuple[str, Any]:
    try:
        return ("ok", decode(body, data))
    except ProtocolError as exc:
        return ("error", exc.code.name)


#: Template sets for the differential target: (action, obs) as FastPaths.for_shapes takes them.
FAST_SHAPES: list[tuple[Any, Any]] = [
    ("int", (np.float32, (4,))),
    ((np.float32, (2,)), (np.float64, (3,))),
    ((np.uint8, (2, 3)), (np.int16, (1,))),
]


def fast_differential(stream: bytes, shapes: tuple[Any, Any], role: str, chunk: int) -> None:
    """With and without templates, a receiver must give the same outcome."""
    state = "idle" if role == "env" else "step"
    plain = connection_in(role, state)
    fast = connection_in(role, state)
    fast.fast = FastPaths.for_shapes(*shapes)
    # Only the feeding is measured: setting up two sessions has its own (fixed) cost.
    a = bounded(lambda: feed_connection(plain, stream, chunk), len(stream))
    b = bounded(lambda: feed_connection(fast, stream, chunk), len(stream))
    assert a[0] == b[0], f"general path {a[0]} {a[1] if a[0] == 'error' else ''}, templates {b}"
    if a[0] == "error":
        assert a[1] == b[1], f"general path {a[1]}, templates {b[1]}"
    else:
        assert len(a[1]) == len(b[1])
        for x, y in zip(a[1], b[1], strict=True):
            assert type(x) is type(y)
            diff = same(fields_of(y), fields_of(x))
            assert diff is None, f"templates decoded differently: {diff}"


def bounded(fn: Callable[[], Any], size: int) -> Any:
    """Run ``fn``; fail if it allocates out of proportion to an input of ``size`` bytes.

    If tracemalloc is already tracing (the long fuzz starts it once: starting and stopping it per
    input leaks a little inside CPython), only the peak is reset; otherwise it traces just ``fn``
    (fast: hypothesis' own allocations stay untraced).
    """
    owner = not tracemalloc.is_tracing()
    if owner:
        tracemalloc.start()
    else:
        tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if owner:
            tracemalloc.stop()
    limit = ALLOC_SLACK + ALLOC_PER_BYTE * size
    assert peak - before <= limit, f"allocated {peak - before} bytes for a {size}-byte input (limit {limit})"
    return result


# ------------------------------------------------------------------------------------------------
# Mutations


def _msgpack_length_positions(body_start: int, frame: bytes) -> list[tuple[int, int]]:
    """(position, width) of MessagePack length fields (str/bin/array/map/ext 8/16/32) in a body."""
    out = []
    widths = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4, 0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4}
    widths.update({0xC7: 1, 0xC8: 2, 0xC9: 4})
    for i in range(body_start, len(frame)):
        w = widths.get(frame[i])
        if w and i + 1 + w <= len(frame):
            out.append((i + 1, w))
    return out


def mutate(frame: bytes, rng: random.Random, rounds: int) -> bytes:
    buf = bytearray(frame)
    for _ in range(rounds):
        op = rng.randrange(9)
        if op == 0 and buf:  # flip a byte
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 1 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 2 and buf:  # truncate
            del buf[rng.randrange(len(buf)) :]
        elif op == 3 and len(buf) >= 12:  # splice a length into the header
            field = rng.choice((4, 8))
            value = rng.choice((0, 1, 7, 8, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, DEFAULT_MAX_FRAME_SIZE))
            value = rng.choice((value, int.from_bytes(buf[field : field + 4], "little") + rng.randint(-9, 9)))
            buf[field : field + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")
        elif op == 4 and len(buf) >= 12:  # splice a length into the body's MessagePack
            data_len = int.from_bytes(buf[4:8], "little")
            spots = _msgpack_length_positions(12 + data_len, bytes(buf))
            if spots:
                pos, width = rng.choice(spots)
                value = rng.choice((0, 1, 2, 255, 256, 65535, 2**32 - 1, rng.randrange(2 ** (8 * width))))
                buf[pos : pos + width] = (value % 2 ** (8 * width)).to_bytes(width, "big")
        elif op == 5:  # insert bytes
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        elif op == 6 and buf:  # delete a run
            i = rng.randrange(len(buf))
            del buf[i : i + rng.randrange(1, 9)]
        elif op == 7:  # join another seed (several frames in one stream)
            other = rng.choice(SEEDS)
            buf = buf + other if rng.random() < 0.5 else bytearray(other) + buf
        elif op == 8 and len(buf) >= 4:  # change the kind, to any assigned or unassigned number
            buf[2] = rng.choice([int(k) for k in Kind] + [0, 3, 255])
    return bytes(buf[: 64 * 1024])


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    how = draw(st.integers(0, 9))
    if how == 0:  # pure noise
        return draw(st.binary(max_size=256))
    if how == 1:  # a valid header, then noise
        kind = draw(st.sampled_from([int(k) for k in Kind]))
        body = draw(st.binary(min_size=1, max_size=200))
        data = draw(st.binary(max_size=64))
        return HEADER.pack(b"RL", kind, 0, len(data), len(body)) + data + body
    seed = draw(st.sampled_from(SEEDS))
    rng = random.Random(draw(st.integers(0, 2**32)))
    return mutate(seed, rng, draw(st.integers(1, 4)))


FUZZ = settings(
    max_examples=1000,
    deadline=2000,  # ms per example: a hang fails
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
    database=None,
)


@FUZZ
@given(stream=streams(), chunk=st.sampled_from([0, 0, 1, 3, 12, 100]))
def test_fuzz_standalone_decoder(stream, chunk):
    bounded(lambda: feed_standalone(stream, chunk), len(stream))


@FUZZ
@given(stream=streams(), receiver=st.sampled_from(RECEIVERS), chunk=st.sampled_from([0, 0, 1, 7, 64]))
def test_fuzz_connection_in_every_role_and_state(stream, receiver, chunk):
    role, state = receiver
    conn = connection_in(role, state)
    bounded(lambda: feed_connection(conn, stream, chunk), len(stream))


@FUZZ
@given(body=st.binary(max_size=300), data=st.binary(max_size=80))
def test_fuzz_decode_random_bytes(body, data):
    bounded(lambda: decode_raw(body, data), len(body) + len(data))


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A seed's body and data section, mutated separately."""
    seed = draw(st.sampled_from([s for s in SEEDS if len(s) >= 12]))
    data_len = int.from_bytes(seed[4:8], "little")
    body_len = int.from_bytes(seed[8:12], "little")
    data = seed[12 : 12 + data_len]
    body = seed[12 + data_len : 12 + data_len + body_len]
    rng = random.Random(draw(st.integers(0, 2**32)))
    frame = mutate(HEADER.pack(b"RL", 1, 0, 0, len(body)) + body, rng, draw(st.integers(1, 3)))
    return frame[12:], data[: draw(st.integers(0, len(data)))]


@FUZZ
@given(parts=bodies())
def test_fuzz_decode_mutated_bodies(parts):
    body, data = parts
    bounded(lambda: decode_raw(body, data), len(body) + len(data))


def _fast_seeds() -> list[bytes]:
    """Valid STEP / STEP_RESULT frames that the templates of FAST_SHAPES accept (and a few not)."""
    encoder = Encoder()

    def frame(msg: Message) -> bytes:
        body, chunks, data_len = encoder.encode(msg.to_body())
        return pack_header(msg.KIND, data_len, len(body)) + b"".join(bytes(c) for c in chunks) + body

    frames = []
    for action, obs in FAST_SHAPES:
        if action == "int":
            frames += [frame(Step(3)), frame(Step(127)), frame(Step(128))]
        else:
            dtype, shape = action
            frames.append(frame(Step(np.ones(shape, dtype))))
        dtype, shape = obs
        for t, u in ((False, False), (True, False), (False, True)):
            frames.append(frame(StepResult(np.zeros(shape, dtype), 0.5, t, u, {})))
        frames.append(frame(StepResult(np.zeros(shape, dtype), 1.0, False, False, {"k": 1})))
    return frames


FAST_SEEDS = _fast_seeds()


@pytest.mark.skipif(FastPaths is None, reason="rlay.protocol.fastpath is not there")
@FUZZ
@given(
    seed=st.sampled_from(FAST_SEEDS),
    salt=st.integers(0, 2**32),
    rounds=st.integers(0, 3),
    shapes=st.sampled_from(FAST_SHAPES),
    role=st.sampled_from(ROLES),
    chunk=st.sampled_from([0, 0, 5]),
)
def test_fuzz_step_templates_match_the_general_path(seed, salt, rounds, shapes, role, chunk):
    stream = mutate(seed, random.Random(salt), rounds) if rounds else seed
    fast_differential(stream, shapes, role, chunk)


def test_mutations_reach_every_outcome():
    """The fuzzer is not vacuous: mutated seeds give valid messages and most error codes."""
    rng = random.Random(1)
    outcomes = set()
    for _ in range(3000):
        kind, what = feed_standalone(mutate(rng.choice(SEEDS), rng, rng.randint(1, 3)))
        outcomes.add("ok" if kind == "ok" else what)
    assert "ok" in outcomes
    assert len(outcomes - {"ok"}) >= 9, f"mutations reached only {sorted(outcomes)}"


def test_the_allocation_guard_works():
    with pytest.raises(AssertionError, match="allocated"):
        bounded(lambda: bytearray(16 * 1024 * 1024), 10)
    with pytest.raises(AssertionError, match="allocated"):
        bounded(lambda: np.empty(4 * 1024 * 1024), 10)  # numpy's buffers are traced too
    assert bounded(lambda: bytes(1000), 10) == bytes(1000)
