"""The Python core against the golden vectors of spec/protocol.md §12, plus byte tables written by
hand (not by spec/vectors/generate.py) so the vectors are not only checked against themselves."""

from __future__ import annotations

import importlib.util
import struct
import sys

import gymnasium.spaces
import msgpack
import numpy as np
import pytest

from rlay import spaces
from rlay.errors import ProtocolError
from rlay.protocol.codec import Encoder, decode
from rlay.protocol.connection import Connection, State
from rlay.protocol.framing import FrameReader
from rlay.protocol.messages import MESSAGE_TYPES, CallResult, Error, Hello, StepResult
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE, ErrorCode, Kind, Role
from rlay.testing.conformance import (
    VECTORS_DIR,
    conformance_lines,
    connection_in,
    fields_of,
    from_json,
    load_vectors,
    message_from_json,
    python_reject,
    run_conformance,
    same,
)

VECTORS = load_vectors()
BY_TYPE: dict[str, list[dict]] = {}
for _vec in VECTORS:
    BY_TYPE.setdefault(_vec["type"], []).append(_vec)


#: Vectors the Python core fails today (each a bug in rlay/protocol). The xfail is strict: once
#: the core is fixed the test fails until the entry leaves this table. Empty: all fixed.
KNOWN_CORE_BUGS: dict[str, str] = {}


def params(vectors: list[dict]) -> list:
    out = []
    for v in vectors:
        bug = KNOWN_CORE_BUGS.get(v["name"])
        marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
        out.append(pytest.param(v, id=f"{v['file'].removesuffix('.json')}:{v['name']}", marks=marks))
    return out


def encode_frame(msg) -> bytes:
    return b"".join(bytes(b) for b in Connection(Role.AGENT).encode_frame(msg))


def decode_frame(frame: bytes):
    """One whole frame -> (kind, message), through FrameReader, decode and from_body."""
    reader = FrameReader(DEFAULT_MAX_FRAME_SIZE)
    reader.feed(frame)
    reader.feed_eof()
    assert len(reader.frames) == 1, f"expected one frame, got {len(reader.frames)}"
    kind, data, body = reader.frames[0]
    return kind, MESSAGE_TYPES[kind].from_body(decode(body, data))


def first_difference(got: bytes, want: bytes) -> str:
    at = next(
        (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want))
    )
    return (
        f"{len(got)} bytes vs {len(want)} expected; first difference at byte {at}: "
        f"got {got[at : at + 16].hex()} want {want[at : at + 16].hex()}"
    )


# ------------------------------------------------------------------------------------------------
# The vector files themselves


def _load_generator():
    spec = importlib.util.spec_from_file_location("rlay_vectors_generate", VECTORS_DIR / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_generator_reproduces_the_files_byte_for_byte():
    built = _load_generator().build()
    on_disk = {p.name: p.read_text() for p in VECTORS_DIR.glob("*.json")}
    assert sorted(built) == sorted(on_disk), "vector files on disk differ from the generator's list"
    stale = [name for name, text in built.items() if on_disk[name] != text]
    assert not stale, f"stale vector files, run `python spec/vectors/generate.py`: {stale}"


def test_vector_files_are_well_formed():
    names = set()
    for vec in VECTORS:
        key = (vec["file"], vec["name"])
        assert key not in names, f"duplicate vector name {key}"
        names.add(key)
        assert vec["type"] in ("encode", "decode", "reject", "space", "space_reject", "value_reject"), vec[
            "name"
        ]
        for field in ("frame", "canonical"):
            if field in vec:
                assert vec[field] == vec[field].lower() and bytes.fromhex(vec[field]) is not None
        if vec["type"] == "reject":
            assert vec["error"] in ErrorCode.__members__, vec["name"]
            assert ("state" in vec) == ("role" in vec), vec["name"]


def test_vectors_cover_every_kind_dtype_and_protocol_error():
    # AUTH (kind 4, state auth, spec §7.1) is pinned by §7.1's HMAC check values and
    # tests/test_auth.py, not by vectors: an SDK without the auth capability never receives it and
    # must still pass every vector line. SHM (kind 5, states shm and shm-answer, §16) likewise: it
    # carries a descriptor, so tests/test_shm.py and rlay.testing.shm check it over a real socket.
    # MULTI_STEP and MULTI_RESULT (kinds 8-9, §18) have their vectors in multi_agent/, which only
    # SDKs with the multi_agent capability run (tests/test_multiagent.py).
    multi = {v["kind"] for v in load_vectors(VECTORS_DIR / "multi_agent") if v["type"] == "encode"}
    kinds = {v["kind"] for v in BY_TYPE["encode"]} | {int(Kind.AUTH), int(Kind.SHM)} | multi
    assert kinds == {int(k) for k in Kind}, (
        f"message kinds without an encode vector: {set(map(int, Kind)) - kinds}"
    )
    text = " ".join(str(v.get("message")) for v in BY_TYPE["encode"])
    for dtype in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
        assert f"'dtype': '{dtype}'" in text, dtype
    for dtype in ("float16", "float32", "float64"):
        assert f"'dtype': '{dtype}'" in text, dtype
    errors = {v["error"] for v in BY_TYPE["reject"]}
    wanted = {e.name for e in ErrorCode if e <= ErrorCode.ROLE_CONFLICT}
    assert wanted <= errors, f"protocol errors without a reject vector: {wanted - errors}"
    states = {v.get("state") for v in BY_TYPE["reject"]} | {
        State.AUTH.value,
        State.SHM.value,
        State.SHM_ANSWER.value,
    }
    assert {s.value for s in State} <= states, (
        f"states without a reject vector: {set(s.value for s in State) - states}"
    )


# ------------------------------------------------------------------------------------------------
# encode / decode / reject


@pytest.mark.parametrize("vec", params(BY_TYPE["encode"]))
def test_encode_vector(vec):
    msg = message_from_json(vec["kind"], vec["message"])
    got = encode_frame(msg)
    want = bytes.fromhex(vec["frame"])
    assert got == want, first_difference(got, want)


@pytest.mark.parametrize("vec", params(BY_TYPE["encode"]))
def test_encode_vector_decodes_back(vec):
    kind, msg = decode_frame(bytes.fromhex(vec["frame"]))
    assert kind == vec["kind"]
    diff = same(fields_of(msg), from_json(vec["message"]))
    assert diff is None, diff


@pytest.mark.parametrize("vec", params(BY_TYPE["decode"]))
def test_decode_vector(vec):
    _, msg = decode_frame(bytes.fromhex(vec["frame"]))
    diff = same(fields_of(msg), from_json(vec["message"]))
    assert diff is None, diff
    got = encode_frame(msg)
    want = bytes.fromhex(vec["canonical"])
    assert got == want, first_difference(got, want)


@pytest.mark.parametrize("vec", params(BY_TYPE["reject"]))
def test_reject_vector(vec):
    stream = bytes.fromhex(vec["frame"])
    exc = python_reject(stream, vec.get("role"), vec.get("state"), num_envs=vec.get("num_envs", 1))
    assert exc is not None, f"accepted; expected {vec['error']}"
    assert exc.code.name == vec["error"], f"got {exc}; expected {vec['error']}"
    assert exc.detail, "a rejection must say what is wrong"


@pytest.mark.parametrize("vec", params(BY_TYPE["reject"]))
def test_reject_vector_fed_byte_by_byte(vec):
    stream = bytes.fromhex(vec["frame"])
    if len(stream) > 4096:  # the same code path, just slower; 4 KiB-pieces instead
        exc = python_reject(
            stream, vec.get("role"), vec.get("state"), chunk=4096, num_envs=vec.get("num_envs", 1)
        )
    else:
        exc = python_reject(
            stream, vec.get("role"), vec.get("state"), chunk=1, num_envs=vec.get("num_envs", 1)
        )
    assert exc is not None and exc.code.name == vec["error"], f"got {exc!r}; expected {vec['error']}"


STATEFUL = [v for v in BY_TYPE["reject"] if "state" in v]


@pytest.mark.parametrize("vec", params(STATEFUL))
def test_reject_in_a_state_queues_a_fatal_error_for_the_peer(vec):
    conn = connection_in(vec["role"], vec["state"], vec.get("num_envs", 1))
    before = conn.state  # the state when the offending frame arrived
    with pytest.raises(ProtocolError) as info:
        conn.receive_data(bytes.fromhex(vec["frame"]))
        while True:
            before = conn.state
            if conn.next_event() is None:
                break
        conn.receive_eof()
    assert info.value.code.name == vec["error"]
    assert conn.state is State.CLOSED
    out = b"".join(bytes(b) for b in conn.data_to_send())
    if before is State.CLOSED:
        assert out == b"", "no ERROR is sent once the session is closed"
        return
    kind, err = decode_frame(out)
    assert kind == Kind.ERROR and isinstance(err, Error)
    assert (err.code, err.fatal) == (ErrorCode[vec["error"]], True)
    assert err.message, "the ERROR sent to the peer names the problem"


def test_unexpected_message_names_the_state_and_the_message():
    exc = python_reject(bytes.fromhex(_vector("env in describe receives STEP")["frame"]), "env", "describe")
    assert exc is not None and "STEP" in str(exc) and "describe" in str(exc)


def _vector(name_start: str) -> dict:
    found = [v for v in VECTORS if v["name"].startswith(name_start)]
    assert found, name_start
    return found[0]


# ------------------------------------------------------------------------------------------------
# spaces (§9)

#: The names a vector's ``space`` expression may use; nothing else (no builtins).
SPACE_NAMES = {"np": np} | {n: getattr(gymnasium.spaces, n) for n in gymnasium.spaces.__all__}


def space_of(expr: str) -> gymnasium.Space:
    return eval(expr, {"__builtins__": {}}, SPACE_NAMES)  # our own vector file, not peer input


def encoded(value) -> tuple[str, str]:
    body, chunks, _ = Encoder().encode(value)
    return body.hex(), b"".join(bytes(c) for c in chunks).hex()


SPACES = BY_TYPE.get("space", [])


@pytest.mark.parametrize("vec", params(SPACES))
def test_space_vector_describes_the_gymnasium_space(vec):
    space = space_of(vec["space"])
    desc = spaces.describe(space)
    diff = same(desc, from_json(vec["descriptor"]))
    assert diff is None, diff
    assert encoded(desc) == (vec["bytes"], vec["data"])
    received = decode(bytes.fromhex(vec["bytes"]), bytes.fromhex(vec["data"]))
    rebuilt = spaces.from_descriptor(received)
    assert rebuilt == space, f"{rebuilt} != {space}"
    assert same(spaces.describe(rebuilt), desc) is None


@pytest.mark.parametrize("vec", params(SPACES))
def test_space_vector_values(vec):
    space = space_of(vec["space"])
    codec = spaces.SpaceCodec(space)
    assert vec["values"], "a space vector carries sample values"
    for sample in vec["values"]:
        wire = from_json(sample["value"])
        assert encoded(wire) == (sample["body"], sample["data"])
        value = codec.from_wire(decode(bytes.fromhex(sample["body"]), bytes.fromhex(sample["data"])))
        assert space.contains(value), f"{value!r} is not in {space}"
        assert encoded(codec.to_wire(value)) == (sample["body"], sample["data"])


@pytest.mark.parametrize("vec", params(BY_TYPE.get("space_reject", [])))
def test_space_reject_vector(vec):
    received = decode(*(bytes.fromhex(h) for h in encoded(from_json(vec["descriptor"]))))
    with pytest.raises(ProtocolError) as info:
        spaces.from_descriptor(received)
    assert info.value.code.name == vec["error"], str(info.value)
    assert info.value.detail


@pytest.mark.parametrize("vec", params(BY_TYPE.get("value_reject", [])))
def test_value_reject_vector(vec):
    codec = spaces.SpaceCodec(spaces.from_descriptor(from_json(vec["descriptor"])))
    received = decode(*(bytes.fromhex(h) for h in encoded(from_json(vec["value"]))))
    with pytest.raises(ProtocolError) as info:
        codec.from_wire(received)
    assert info.value.code.name == vec["error"], str(info.value)


def test_every_space_kind_has_vectors():
    kinds = {from_json(v["descriptor"])["kind"] for v in SPACES}
    assert kinds == {"box", "discrete", "multi_discrete", "multi_binary", "text", "dict", "tuple"} | {
        "sequence",
        "graph",
        "one_of",
    }


# ------------------------------------------------------------------------------------------------
# The §12 line protocol, proven against the Python runner


def test_conformance_lines_cover_every_vector():
    lines = conformance_lines()
    assert len(lines) == len(BY_TYPE["encode"]) + len(BY_TYPE["decode"]) + len(BY_TYPE["reject"])
    assert all(line.split()[0] in ("roundtrip", "reject") for _, line in lines)
    env_only = conformance_lines(roles=("env",))
    assert all(" agent " not in line[-20:] for _, line in env_only if line.startswith("reject"))
    assert len(env_only) < len(lines)


def test_python_runner_passes_every_line():
    failures = run_conformance([sys.executable, "-m", "rlay.testing.conformance", "--python-runner"])
    known = [v["name"] for v in BY_TYPE["reject"] if v["name"] in KNOWN_CORE_BUGS]
    unexpected = [f for f in failures if not any(f": {name}: fail" in f for name in known)]
    assert not unexpected, "\n".join(unexpected[:20])
    assert len(failures) == len(known), "a known core bug no longer fails: update KNOWN_CORE_BUGS"


def test_driver_reports_wrong_answers_crashes_and_stalls(tmp_path):
    """A fake runner: answers ok, fail, garbage; dies on one line; stalls on another."""
    script = tmp_path / "runner.py"
    script.write_text(
        "import sys, time, os\n"
        "for line in sys.stdin:\n"
        "    word = line.split()[1]\n"
        "    if word == 'aa': print('ok')\n"
        "    elif word == 'bb': print('fail because')\n"
        "    elif word == 'cc': print('maybe')\n"
        "    elif word == 'dd': os._exit(3)\n"
        "    elif word == 'ee': time.sleep(30)\n"
        "    else: print('ok')\n"
        "    sys.stdout.flush()\n"
    )
    lines = [
        ("a", "roundtrip aa aa"),
        ("b", "roundtrip bb bb"),
        ("c", "roundtrip cc cc"),
        ("d", "roundtrip dd dd"),
        ("after-crash", "roundtrip aa aa"),
        ("e", "roundtrip ee ee"),
        ("after-stall", "roundtrip ff " + "ff" * 200_000),  # longer than a pipe buffer
    ]
    failures = run_conformance([sys.executable, str(script)], lines=lines, timeout=2.0)
    assert [f.split(":")[0] for f in failures] == ["b", "c", "d", "e"], failures
    assert "fail because" in failures[0]
    assert "neither 'ok' nor" in failures[1]
    assert "exited" in failures[2]
    assert "no answer within" in failures[3]


def test_driver_reports_a_runner_that_exits_non_zero_at_the_end(tmp_path):
    script = tmp_path / "runner.py"
    script.write_text("import sys\nfor line in sys.stdin:\n    print('ok', flush=True)\nsys.exit(1)\n")
    failures = run_conformance([sys.executable, str(script)], lines=[("a", "roundtrip 00 00")])
    assert failures == ["the runner exited with status 1 at the end of its input"]


# ------------------------------------------------------------------------------------------------
# Byte tables written by hand from the spec (one line per expected encoding)


def body_of(value) -> tuple[str, str]:
    body, chunks, data_len = Encoder().encode(value)
    data = b"".join(bytes(c) for c in chunks)
    assert len(data) == data_len
    return body.hex(), data.hex()


@pytest.mark.parametrize(
    ("value", "body"),
    [
        (None, "c0"),
        (False, "c2"),
        (True, "c3"),
        (0, "00"),
        (127, "7f"),
        (128, "cc80"),
        (255, "ccff"),
        (256, "cd0100"),
        (65535, "cdffff"),
        (65536, "ce00010000"),
        (2**32 - 1, "ceffffffff"),
        (2**32, "cf0000000100000000"),
        (2**63 - 1, "cf7fffffffffffffff"),
        (2**64 - 1, "cfffffffffffffffff"),
        (-1, "ff"),
        (-32, "e0"),
        (-33, "d0df"),
        (-128, "d080"),
        (-129, "d1ff7f"),
        (-32768, "d18000"),
        (-32769, "d2ffff7fff"),
        (-(2**31), "d280000000"),
        (-(2**31) - 1, "d3ffffffff7fffffff"),
        (-(2**63), "d38000000000000000"),
        (1.5, "cb3ff8000000000000"),
        (1.0, "cb3ff0000000000000"),
        (-0.0, "cb8000000000000000"),
        (float("inf"), "cb7ff0000000000000"),
        (float("-inf"), "cbfff0000000000000"),
        (float("nan"), "cb7ff8000000000000"),
        ("", "a0"),
        ("rlay", "a4726c6179"),
        ("é", "a2c3a9"),
        ("a" * 31, "bf" + "61" * 31),
        ("a" * 32, "d920" + "61" * 32),
        ("a" * 256, "da0100" + "61" * 256),
        (b"", "c400"),
        (b"\x00\xff", "c40200ff"),
        (b"x" * 256, "c50100" + "78" * 256),
        ([], "90"),
        ([1, [2]], "920191" + "02"),
        ([0] * 16, "dc0010" + "00" * 16),
        ({}, "80"),
        ({"b": 1, "a": 2}, "82a16201a16102"),
        (
            {f"{i:02}": None for i in range(16)},
            "de0010" + "".join(f"a2{ord(str(i // 10)):02x}{ord(str(i % 10)):02x}c0" for i in range(16)),
        ),
    ],
)
def test_value_byte_table(value, body):
    assert body_of(value) == (body, "")


def test_four_float32_tensor():
    # ext 8 (c7), length 10, type 1; dtype 11 (float32), ndim 1, shape [4], offset 0.
    body, data = body_of(np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32))
    assert body == "c70a01" + "0b01" + "04000000" + "00000000"
    assert data == "0000803f" + "00000040" + "00004040" + "00008040"


def test_numpy_scalars_are_0d_tensors():
    assert body_of(np.float32(1.5)) == ("c70601" + "0b00" + "00000000", "0000c03f")
    assert body_of(np.bool_(True)) == ("c70601" + "0100" + "00000000", "01")
    assert body_of(np.int64(-2)) == ("c70601" + "0500" + "00000000", "feffffffffffffff")


# fmt: off
def test_tensor_layout_pads_to_8_in_document_order():
    body, data = body_of([np.array([7], np.int8), np.zeros((0, 3), np.uint16), np.array([2.0])])
    assert body == (
        "93"
        + "c70a01" + "0201" + "01000000" + "00000000"  # int8 [1] at 0
        + "c70e01" + "0702" + "00000000" + "03000000" + "00000000"  # empty uint16 (0,3) at 0
        + "c70a01" + "0c01" + "01000000" + "08000000"  # float64 [1] at 8
    )
    assert data == "07" + "00" * 7 + "0000000000000040"
# fmt: on


# fmt: off
def test_non_contiguous_and_big_endian_arrays_go_out_canonical():
    arr = np.arange(6, dtype="<i2").reshape(2, 3).T  # Fortran-ordered view: C order is 0 3 1 4 2 5
    body, data = body_of(arr)
    assert body == "c70e01" + "0302" + "03000000" + "02000000" + "00000000"
    assert data == "0000" "0300" "0100" "0400" "0200" "0500"
    assert body_of(np.array([1, 2], dtype=">u4"))[1] == "01000000" "02000000"
# fmt: on


# fmt: off
def test_hello_frame_bytes():
    conn = Connection(Role.AGENT, sdk="x", sdk_version="1")
    frame = b"".join(bytes(b) for b in conn.data_to_send())
    body = (
        "86"
        + "a8" + b"protocol".hex() + "a4" + b"rlay".hex()
        + "a7" + b"version".hex() + "01"
        + "a4" + b"role".hex() + "a5" + b"agent".hex()
        + "a3" + b"sdk".hex() + "a1" + b"x".hex()
        + "ab" + b"sdk_version".hex() + "a1" + b"1".hex()
        + "ac" + b"capabilities".hex() + "80"
    )
    header = "524c" + "01" + "00" + "00000000" + struct.pack("<I", len(body) // 2).hex()
    assert frame.hex() == header + body
# fmt: on


# fmt: off
def test_step_result_frame_bytes():
    msg = StepResult(np.array([0.5], dtype=np.float32), 1, True, False, {})
    frame = encode_frame(msg)
    body = (
        "85"
        + "a3" + b"obs".hex() + "c70a01" + "0b01" + "01000000" + "00000000"
        + "a6" + b"reward".hex() + "cb3ff0000000000000"  # an int reward goes out as float64 (§5)
        + "aa" + b"terminated".hex() + "c3"
        + "a9" + b"truncated".hex() + "c2"
        + "a4" + b"info".hex() + "80"
    )
    header = "524c" + "21" + "00" + "04000000" + struct.pack("<I", len(body) // 2).hex()
    assert frame.hex() == header + "0000003f" + body
# fmt: on


# fmt: off
def test_close_frame_is_thirteen_bytes():
    assert encode_frame(MESSAGE_TYPES[Kind.CLOSE]()).hex() == "524c" "13" "00" "00000000" "01000000" "80"
# fmt: on


@pytest.mark.parametrize(
    ("body", "value"),
    [
        ("d005", 5),
        ("cd0005", 5),
        ("d3ffffffffffffffff", -1),
        ("ca3fc00000", 1.5),
        ("d90161", "a"),
        ("dc000101", [1]),
        ("de0001a16101", {"a": 1}),
    ],
)
def test_decoders_accept_longer_forms_by_hand(body, value):
    got = decode(bytes.fromhex(body))
    assert same(got, value) is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("c1", ErrorCode.MALFORMED),
        ("c0c0", ErrorCode.MALFORMED),
        pytest.param("81c4016101", ErrorCode.MALFORMED, id="bin-key"),
        pytest.param("81a161d6ff00000001", ErrorCode.MALFORMED, id="timestamp-ext"),
        ("d40200", ErrorCode.MALFORMED),  # ext type 2
        ("c70501" + "0c00000000", ErrorCode.BAD_TENSOR),  # 5-byte descriptor
        ("c70601" + "0d00" + "00000000", ErrorCode.UNKNOWN_DTYPE),
        ("91" * 64 + "90", ErrorCode.TOO_DEEP),  # 65 arrays
    ],
)
def test_codec_rejects_by_hand(body, code):
    with pytest.raises(ProtocolError) as info:
        decode(bytes.fromhex(body))
    assert info.value.code is code


def test_the_timestamp_type_never_reaches_the_caller():
    # msgpack-python decodes ext -1 itself (without calling the ext hook); §3 forbids it.
    packed = msgpack.packb({"t": msgpack.Timestamp(1, 0)})
    with pytest.raises(ProtocolError) as info:
        decode(packed)
    assert info.value.code is ErrorCode.MALFORMED
    with pytest.raises(ProtocolError):
        decode(msgpack.packb(msgpack.Timestamp(1, 0)))


def test_hello_message_type_fields_are_the_specs():
    hello = ["protocol", "version", "role", "sdk", "sdk_version", "capabilities"]
    assert [name for name, _ in Hello.FIELDS] == hello
    assert [name for name, _ in CallResult.FIELDS] == ["value"]
