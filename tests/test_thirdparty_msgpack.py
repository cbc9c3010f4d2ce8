"""Independent proof that rlay bodies are real MessagePack: an unrelated library decodes them.

``tests/thirdparty/decode_vectors.cjs`` decodes the body of every golden vector with
@msgpack/msgpack (npm) and prints a structural summary; this test checks it against what the
Python core decoded: map keys and their order, ints, floats (bit for bit), strings, bytes, and
every tensor as ext type 1 whose payload (dtype code, shape, offset) points at the right bytes.
MessagePack that is broken as MessagePack (reserved byte, trailing bytes, a body that ends inside
a value) must be refused by that library too.

Setup: ``npm ci --prefix tests/thirdparty`` (``make setup`` runs it). With ``CI=true`` a missing
node or node_modules fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from typing import Any

import numpy as np
import pytest

from rlay.protocol.codec import decode
from rlay.protocol.framing import FrameReader
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE
from rlay.testing.conformance import DTYPES, ROOT, VECTORS_DIR, load_vectors

THIRDPARTY = ROOT / "tests" / "thirdparty"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: §4's dtype codes in order (code = index + 1), written out from the spec.
DTYPE_BY_CODE = {i + 1: name for i, name in enumerate(DTYPES)}

VECTORS = [v for v in load_vectors() if v["type"] in ("encode", "decode")]

#: Reject vectors whose body is not MessagePack at all, whatever the subset rules (§3).
NOT_MSGPACK = [
    "reserved byte 0xc1 as the body",
    "reserved byte 0xc1 as a value",
    "trailing bytes after the body",
    "two maps in one body",
    "body ends inside a map (value missing)",
    "body ends inside a key",
    "str 8 longer than the body",
    "str 32 declaring 2^32-1 bytes",
    "bin 32 declaring 2^32-1 bytes",
    "array 32 declaring 2^32-1 elements",
    "map 32 declaring 2^32-1 pairs",
    "ext 32 declaring 2^32-1 bytes",
    "fixarray of 3 with 2 elements",
    "float 64 cut short",
]


@pytest.fixture(scope="module")
def node_results() -> dict[str, dict[str, Any]]:
    node = shutil.which("node")
    installed = (THIRDPARTY / "node_modules" / "@msgpack" / "msgpack" / "package.json").exists()
    if node is None or not installed:
        reason = (
            "node is not installed (run `make setup`)"
            if node is None
            else "@msgpack/msgpack is not installed: run `npm ci --prefix tests/thirdparty` (or `make setup`)"
        )
        if IN_CI:
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)
    proc = subprocess.run(
        [node, str(THIRDPARTY / "decode_vectors.cjs"), str(VECTORS_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"node failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return {item["id"]: item for item in json.loads(proc.stdout)}


def frame_parts(frame: bytes) -> tuple[memoryview, memoryview]:
    reader = FrameReader(DEFAULT_MAX_FRAME_SIZE)
    reader.feed(frame)
    reader.feed_eof()
    ((_, data, body),) = reader.frames
    return data, body


def match(py: Any, js: Any, data: memoryview, path: str = "<body>") -> str | None:
    """``None`` if the Python value and the library's summary agree, else the first difference."""
    if py is None or type(py) is bool:
        return None if js is py else f"{path}: python {py!r}, library {js!r}"
    if not isinstance(js, list) or not js:
        return f"{path}: python {type(py).__name__} {py!r:.40}, library {js!r:.60}"
    tag = js[0]
    if type(py) is int:
        ok = tag in ("num", "int") and js[1] == str(py)
        return None if ok else f"{path}: python int {py}, library {js!r}"
    if type(py) is float:
        if tag == "num":  # the library cannot tell 2.0 from 2: compare the value
            ok = py.is_integer() and struct.pack(">d", py) != struct.pack(">d", -0.0) and int(js[1]) == py
        else:
            bits = struct.pack(">d", py).hex()
            ok = tag == "f64" and (js[1] == bits or (py != py and _is_nan_bits(js[1])))
        return None if ok else f"{path}: python float {py!r} ({struct.pack('>d', py).hex()}), library {js!r}"
    if type(py) is str:
        return None if js == ["str", py] else f"{path}: python str {py!r:.40}, library {js!r:.60}"
    if type(py) is bytes:
        return (
            None if js == ["bin", py.hex()] else f"{path}: python bytes {py.hex()[:40]}, library {js!r:.60}"
        )
    if type(py) is list:
        if tag != "arr" or len(js[1]) != len(py):
            return f"{path}: python array of {len(py)}, library {js!r:.60}"
        for i, (a, b) in enumerate(zip(py, js[1], strict=True)):
            diff = match(a, b, data, f"{path}[{i}]")
            if diff:
                return diff
        return None
    if type(py) is dict:
        if tag != "map" or [k for k, _ in js[1]] != list(py):
            return f"{path}: python map keys {list(py)[:8]}, library {js!r:.100}"
        for (key, b), a in zip(js[1], py.values(), strict=True):
            diff = match(a, b, data, f"{path}[{key!r}]")
            if diff:
                return diff
        return None
    if type(py) is np.ndarray:
        if tag != "ext" or js[1] != 1:
            return f"{path}: python tensor, library {js!r:.60}"
        payload = bytes.fromhex(js[2])
        code, ndim = payload[0], payload[1]
        if len(payload) != 6 + 4 * ndim:
            return f"{path}: ext payload of {len(payload)} bytes for ndim {ndim}"
        *shape, offset = struct.unpack(f"<{ndim}II", payload[2:])
        if DTYPE_BY_CODE.get(code) != py.dtype.name or tuple(shape) != py.shape:
            return f"{path}: payload says {DTYPE_BY_CODE.get(code)}{shape}, python has {py.dtype}{py.shape}"
        raw = bytes(data[offset : offset + py.nbytes])
        if raw != py.tobytes():
            return f"{path}: data[{offset}:{offset + py.nbytes}] differs from the decoded tensor's bytes"
        return None
    return f"{path}: unexpected python value {type(py).__name__}"


def _is_nan_bits(bits_hex: str) -> bool:
    (x,) = struct.unpack(">d", bytes.fromhex(bits_hex))
    return x != x


@pytest.mark.parametrize("vec", VECTORS, ids=[f"{v['file']}:{v['name']}" for v in VECTORS])
def test_library_decodes_the_same_structure(vec, node_results):
    result = node_results.get(f"{vec['file']}:{vec['name']}")
    assert result is not None, "the node script did not see this vector"
    assert "error" not in result, f"@msgpack/msgpack refused the body: {result.get('error')}"
    data, body = frame_parts(bytes.fromhex(vec["frame"]))
    diff = match(decode(body, data), result["ok"], data)
    assert diff is None, diff


@pytest.mark.parametrize("name", NOT_MSGPACK)
def test_library_refuses_what_is_not_msgpack(name, node_results):
    (result,) = [r for key, r in node_results.items() if key.split(":", 1)[1] == name]
    assert "error" in result, f"@msgpack/msgpack accepted {name!r}: {result['ok']!r:.200}"


def test_summary_matcher_catches_differences():
    """The matcher itself: each of these must be reported."""
    data = memoryview(struct.pack("<f", 1.0) + bytes(4))
    tensor = np.frombuffer(bytes(data[:4]), "<f4")
    payload = struct.pack("<BBII", 11, 1, 1, 0)
    assert match({"a": 1, "b": 2}, ["map", [["b", ["num", "2"]], ["a", ["num", "1"]]]], data)  # order
    assert match(1, ["str", "1"], data)
    assert match(True, ["num", "1"], data)  # bool is not int
    assert match(0.5, ["f64", struct.pack(">d", 0.25).hex()], data)
    assert match(-0.0, ["num", "0"], data)
    assert match(tensor, ["ext", 2, payload.hex()], data)
    assert match(tensor, ["ext", 1, struct.pack("<BBII", 12, 1, 1, 0).hex()], data)  # dtype
    assert match(tensor, ["ext", 1, struct.pack("<BBII", 11, 1, 1, 4).hex()], data)  # offset
    assert match(tensor, ["ext", 1, payload.hex()], data) is None
    assert match([1.5, None], ["arr", [["f64", struct.pack(">d", 1.5).hex()], None]], data) is None
