"""Generate the golden vectors of spec/protocol.md §12 into spec/vectors/*.json.

Run ``python spec/vectors/generate.py`` from anywhere; it rewrites the JSON files next to it.
The output is deterministic: running it again reproduces the files byte for byte
(``tests/test_vectors.py`` checks that).

This script deliberately does **not** import ``rlay``: it carries its own small canonical encoder
written from the spec (§2 framing, §3-§5 values, tensors and canonical form, §6 field order), so
the vectors are a second implementation that the Python core is checked against, not a recording
of what the core happens to do. Non-canonical and invalid inputs are written out byte by byte.

Files:
- ``messages.json``   encode vectors, every message kind (§6, §9 descriptors, §10 batched forms)
- ``values.json``     encode vectors for the value model: every int/str/bin/array/map header
                      boundary, floats, every dtype and shape, tensor layout (§3-§5)
- ``decode.json``     decode vectors: valid non-canonical frames with their canonical bytes (§5)
- ``reject_framing.json``  header and stream errors (§2)
- ``reject_values.json``   body errors: MessagePack subset, tensors, depth (§3, §4)
- ``reject_fields.json``   message field errors (§6)
- ``reject_states.json``   state machine and handshake errors, with role and state (§7, §8)
- ``spaces.json``     space descriptors and values (§9); descriptors and values to refuse
"""

from __future__ import annotations

import json
import math
import struct
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

# ------------------------------------------------------------------------------------------------
# The spec's tables, written out again (not imported) so that a mistake in rlay.protocol.wire
# shows up as a vector failure.

KIND = {
    "HELLO": 1,
    "ENV_INFO": 2,
    "RESET": 16,
    "STEP": 17,
    "RENDER": 18,
    "CLOSE": 19,
    "CALL": 20,
    "RESET_RESULT": 32,
    "STEP_RESULT": 33,
    "RENDER_RESULT": 34,
    "CLOSE_RESULT": 35,
    "CALL_RESULT": 36,
    "ERROR": 48,
}

# §6, canonical field order.
FIELDS = {
    "HELLO": ("protocol", "version", "role", "sdk", "sdk_version", "capabilities"),
    "ENV_INFO": ("observation_space", "action_space", "num_envs", "metadata", "render_mode", "name"),
    "RESET": ("seed", "options"),
    "STEP": ("action",),
    "RENDER": (),
    "CLOSE": (),
    "CALL": ("name", "args", "kwargs"),
    "RESET_RESULT": ("obs", "info"),
    "STEP_RESULT": ("obs", "reward", "terminated", "truncated", "info"),
    "RENDER_RESULT": ("frame",),
    "CLOSE_RESULT": (),
    "CALL_RESULT": ("value",),
    "ERROR": ("code", "message", "fatal", "remote_type", "traceback"),
}

# §4: code, numpy dtype (little-endian).
DTYPES = {
    "bool": (1, "|b1"),
    "int8": (2, "|i1"),
    "int16": (3, "<i2"),
    "int32": (4, "<i4"),
    "int64": (5, "<i8"),
    "uint8": (6, "|u1"),
    "uint16": (7, "<u2"),
    "uint32": (8, "<u4"),
    "uint64": (9, "<u8"),
    "float16": (10, "<f2"),
    "float32": (11, "<f4"),
    "float64": (12, "<f8"),
}

ERRORS = {
    "BAD_MAGIC": 1,
    "BAD_HEADER": 2,
    "FRAME_TOO_LARGE": 3,
    "TRUNCATED": 4,
    "MALFORMED": 5,
    "UNKNOWN_KIND": 6,
    "BAD_FIELD": 7,
    "BAD_TENSOR": 8,
    "UNKNOWN_DTYPE": 9,
    "TOO_DEEP": 10,
    "UNEXPECTED_MESSAGE": 11,
    "VERSION_MISMATCH": 12,
    "ROLE_CONFLICT": 13,
    "BAD_SPACE": 14,
    "BAD_VALUE": 15,
    "ENV_EXCEPTION": 32,
    "INVALID_ACTION": 33,
    "NOT_SUPPORTED": 34,
    "RESET_NEEDED": 35,
    "SHUTTING_DOWN": 36,
    "INTERNAL": 37,
}

MAX_FRAME = 64 * 1024 * 1024  # §2 default max_frame_size
MAX_HANDSHAKE_FRAME = 64 * 1024  # §13 default max_handshake_frame_size
MAX_VALUES = 256 * 1024  # §13 default max_values
STATES = ("hello", "describe", "idle", "reset", "step", "render", "call", "close", "closed")

# ------------------------------------------------------------------------------------------------
# Values. Python natives stand for themselves (bool is checked before int); tensors are Tensor.


class Tensor:
    """A tensor value: dtype name, shape and its raw little-endian C-order bytes (§4)."""

    __slots__ = ("dtype", "shape", "raw")

    def __init__(self, dtype: str, shape: tuple[int, ...], raw: bytes) -> None:
        itemsize = np.dtype(DTYPES[dtype][1]).itemsize
        if len(raw) != itemsize * math.prod(shape):
            raise ValueError(f"{dtype}{list(shape)} needs {itemsize * math.prod(shape)} bytes")
        self.dtype = dtype
        self.shape = tuple(shape)
        self.raw = bytes(raw)


def t(dtype: str, values: Any, shape: tuple[int, ...] | None = None) -> Tensor:
    """A tensor of ``dtype`` from nested values (through numpy, for the byte layout only)."""
    arr = np.array(values, dtype=DTYPES[dtype][1])
    if shape is not None:
        arr = arr.reshape(shape)
    return Tensor(dtype, arr.shape, arr.tobytes())


class Raw:
    """Bytes written into a body verbatim (for non-canonical and invalid encodings)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class At:
    """A tensor descriptor with an explicit data offset; its bytes are placed by hand."""

    __slots__ = ("tensor", "offset", "ext_header")

    def __init__(self, tensor: Tensor, offset: int, ext_header: bytes | None = None) -> None:
        self.tensor = tensor
        self.offset = offset
        self.ext_header = ext_header  # None: canonical ext header


class _Layout:
    """§5 canonical tensor layout: document order, 8-byte aligned, zero gaps, empty at 0."""

    def __init__(self) -> None:
        self.data = bytearray()

    def place(self, tensor: Tensor) -> int:
        if not tensor.raw:
            return 0
        offset = (len(self.data) + 7) // 8 * 8
        self.data += bytes(offset - len(self.data))
        self.data += tensor.raw
        return offset


def tensor_payload(tensor: Tensor, offset: int) -> bytes:
    code = DTYPES[tensor.dtype][0]
    return struct.pack(f"<BB{len(tensor.shape)}II", code, len(tensor.shape), *tensor.shape, offset)


def ext(ext_type: int, payload: bytes) -> bytes:
    """Canonical ext header (§5): fixext 1/2/4/8/16 when the length fits, else ext 8/16/32."""
    n = len(payload)
    fix = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    tb = struct.pack("b", ext_type)
    if n in fix:
        return bytes([fix[n]]) + tb + payload
    if n <= 0xFF:
        return b"\xc7" + struct.pack(">B", n) + tb + payload
    if n <= 0xFFFF:
        return b"\xc8" + struct.pack(">H", n) + tb + payload
    return b"\xc9" + struct.pack(">I", n) + tb + payload


def pack_int(v: int) -> bytes:
    """Shortest form (§5)."""
    if v >= 0:
        if v <= 0x7F:
            return bytes([v])
        for code, fmt, top in ((0xCC, ">B", 0xFF), (0xCD, ">H", 0xFFFF), (0xCE, ">I", 0xFFFFFFFF)):
            if v <= top:
                return bytes([code]) + struct.pack(fmt, v)
        if v <= 0xFFFFFFFFFFFFFFFF:
            return b"\xcf" + struct.pack(">Q", v)
        raise ValueError(f"int {v} out of range")
    if v >= -32:
        return struct.pack("b", v)
    for code, fmt, bottom in ((0xD0, ">b", -0x80), (0xD1, ">h", -0x8000), (0xD2, ">i", -0x80000000)):
        if v >= bottom:
            return bytes([code]) + struct.pack(fmt, v)
    if v >= -(1 << 63):
        return b"\xd3" + struct.pack(">q", v)
    raise ValueError(f"int {v} out of range")


def _header(n: int, fix_base: int | None, fix_max: int, codes: Iterable[tuple[int, str, int]]) -> bytes:
    if fix_base is not None and n <= fix_max:
        return bytes([fix_base | n])
    for code, fmt, top in codes:
        if n <= top:
            return bytes([code]) + struct.pack(fmt, n)
    raise ValueError(f"length {n} too large")


STR_CODES = ((0xD9, ">B", 0xFF), (0xDA, ">H", 0xFFFF), (0xDB, ">I", 0xFFFFFFFF))
BIN_CODES = ((0xC4, ">B", 0xFF), (0xC5, ">H", 0xFFFF), (0xC6, ">I", 0xFFFFFFFF))
ARRAY_CODES = ((0xDC, ">H", 0xFFFF), (0xDD, ">I", 0xFFFFFFFF))
MAP_CODES = ((0xDE, ">H", 0xFFFF), (0xDF, ">I", 0xFFFFFFFF))


def _pack(v: Any, out: bytearray, layout: _Layout) -> None:
    tp = type(v)
    if v is None:
        out += b"\xc0"
    elif tp is bool:
        out += b"\xc3" if v else b"\xc2"
    elif tp is int:
        out += pack_int(v)
    elif tp is float:
        out += b"\xcb" + struct.pack(">d", v)
    elif tp is str:
        b = v.encode("utf-8")
        out += _header(len(b), 0xA0, 31, STR_CODES) + b
    elif tp is bytes:
        out += _header(len(v), None, 0, BIN_CODES) + v
    elif tp is list or tp is tuple:
        out += _header(len(v), 0x90, 15, ARRAY_CODES)
        for item in v:
            _pack(item, out, layout)
    elif tp is dict:
        out += _header(len(v), 0x80, 15, MAP_CODES)
        for key, item in v.items():
            if type(key) is not str:
                raise TypeError(f"map key {key!r} is not a str")
            _pack(key, out, layout)
            _pack(item, out, layout)
    elif tp is Tensor:
        out += ext(1, tensor_payload(v, layout.place(v)))
    elif tp is At:
        payload = tensor_payload(v.tensor, v.offset)
        out += (v.ext_header + payload) if v.ext_header is not None else ext(1, payload)
    elif tp is Raw:
        out += v.data
    else:
        raise TypeError(f"cannot pack {tp.__name__}")


def pack(value: Any) -> tuple[bytes, bytes]:
    """Canonical ``(body, data)`` of a value."""
    out = bytearray()
    layout = _Layout()
    _pack(value, out, layout)
    return bytes(out), bytes(layout.data)


def header(kind: int, data_len: int, body_len: int, *, magic: bytes = b"RL", flags: int = 0) -> bytes:
    return magic + struct.pack("<BBII", kind, flags, data_len, body_len)


def raw_frame(kind: int, body: bytes, data: bytes = b"") -> bytes:
    return header(kind, len(data), len(body)) + data + body


def message(kind: str, **fields: Any) -> dict[str, Any]:
    """A message body with exactly the fields of §6, in canonical order."""
    if set(fields) != set(FIELDS[kind]):
        raise ValueError(f"{kind}: fields {sorted(fields)} != {sorted(FIELDS[kind])}")
    return {name: fields[name] for name in FIELDS[kind]}


def frame(kind: str, body_value: Any) -> bytes:
    body, data = pack(body_value)
    return raw_frame(KIND[kind], body, data)


# ------------------------------------------------------------------------------------------------
# The JSON value notation of §12.


def to_json(v: Any) -> Any:
    tp = type(v)
    if v is None or tp is bool or tp is str:
        return v
    if tp is int:
        return {"$int": str(v)}
    if tp is float:
        if math.isnan(v):
            if struct.pack(">d", v) != struct.pack(">d", math.nan):
                return {"$float_hex": struct.pack(">d", v).hex()}
            return {"$float": "nan"}
        return {"$float": repr(v)}  # repr is the shortest string that reads back exactly
    if tp is bytes:
        return {"$bytes": v.hex()}
    if tp is list or tp is tuple:
        return [to_json(x) for x in v]
    if tp is dict:
        for key in v:
            if key.startswith("$"):
                raise ValueError(f"key {key!r} would read as a tag of the JSON notation")
        return {k: to_json(x) for k, x in v.items()}
    if tp is Tensor:
        return {"$tensor": {"dtype": v.dtype, "shape": list(v.shape), "hex": v.raw.hex()}}
    raise TypeError(f"no JSON notation for {tp.__name__}")


class Vectors:
    """One output file."""

    def __init__(self, filename: str, description: str) -> None:
        self.filename = filename
        self.description = description
        self.vectors: list[dict[str, Any]] = []

    def encode(self, name: str, kind: str, body_value: dict[str, Any]) -> None:
        self.vectors.append(
            {
                "name": name,
                "type": "encode",
                "kind": KIND[kind],
                "message": to_json(body_value),
                "frame": frame(kind, body_value).hex(),
            }
        )

    def decode(self, name: str, kind: str, body: Any, data: bytes, value: dict[str, Any]) -> None:
        """``body`` is packed as written (with Raw/At parts); ``value`` is what it means."""
        body_bytes, layout_data = pack(body)
        if layout_data and data:
            raise ValueError("give the data section either by layout or by hand, not both")
        raw = raw_frame(KIND[kind], body_bytes, data or layout_data)
        canonical = frame(kind, value)
        if raw == canonical:
            raise ValueError(f"decode vector {name!r} is canonical; make it an encode vector")
        self.vectors.append(
            {
                "name": name,
                "type": "decode",
                "frame": raw.hex(),
                "message": to_json(value),
                "canonical": canonical.hex(),
            }
        )

    def reject(
        self,
        name: str,
        stream: bytes,
        error: str,
        role: str | None = None,
        state: str | None = None,
        num_envs: int | None = None,
    ) -> None:
        if error not in ERRORS:
            raise ValueError(error)
        vec: dict[str, Any] = {"name": name, "type": "reject", "frame": stream.hex(), "error": error}
        if state is not None:
            if state not in STATES or role not in ("agent", "env"):
                raise ValueError(f"{name}: bad role/state {role}/{state}")
            vec["state"] = state
            vec["role"] = role
        if num_envs is not None:  # §12: the num_envs of the receiver's ENV_INFO (default 1)
            if state is None:
                raise ValueError(f"{name}: num_envs needs a receiver in a state")
            vec["num_envs"] = num_envs
        self.vectors.append(vec)

    def add(self, vec: dict[str, Any]) -> None:
        self.vectors.append(vec)

    def dumps(self) -> str:
        names = [v["name"] for v in self.vectors]
        if len(names) != len(set(names)):
            raise ValueError(f"{self.filename}: duplicate vector names")
        # One vector per line: readable, greppable, and diffs stay small.
        lines = [json.dumps(vec, ensure_ascii=True) for vec in self.vectors]
        return (
            '{"description": '
            + json.dumps(self.description, ensure_ascii=True)
            + ',\n "vectors": [\n  '
            + ",\n  ".join(lines)
            + "\n ]\n}\n"
        )


# ------------------------------------------------------------------------------------------------
# Shared sample values.

INF = math.inf
NAN = math.nan

# Gymnasium 1.x CartPole-v1: x_threshold * 2, inf, theta_threshold_radians * 2, inf (float32).
CARTPOLE_HIGH = [4.8, math.inf, 12 * 2 * math.pi / 360 * 2, math.inf]


def box(dtype: str, low: Tensor, high: Tensor) -> dict[str, Any]:
    return {"kind": "box", "dtype": dtype, "shape": list(low.shape), "low": low, "high": high}


def discrete(n: int, start: int = 0, dtype: str = "int64") -> dict[str, Any]:
    return {"kind": "discrete", "n": n, "start": start, "dtype": dtype}


def hello(role: str, sdk: str = "rlay-python", sdk_version: str = "0.1.0", **over: Any) -> dict[str, Any]:
    fields = dict(protocol="rlay", version=1, role=role, sdk=sdk, sdk_version=sdk_version, capabilities={})
    fields.update(over)
    return message("HELLO", **fields)


def cartpole_info() -> dict[str, Any]:
    return message(
        "ENV_INFO",
        observation_space=box(
            "float32",
            t("float32", [-v for v in CARTPOLE_HIGH]),
            t("float32", CARTPOLE_HIGH),
        ),
        action_space=discrete(2),
        num_envs=1,
        metadata={"render_modes": ["human", "rgb_array"], "render_fps": 50},
        render_mode=None,
        name="CartPole-v1",
    )


OBS4 = t("float32", [0.0125, -0.5, 0.03125, 1.0])

SAMPLE = {  # one small tensor of each dtype, with its edge values
    "bool": [True, False, True],
    "int8": [-128, -1, 127],
    "int16": [-32768, 1, 32767],
    "int32": [-(2**31), 2, 2**31 - 1],
    "int64": [-(2**63), 3, 2**63 - 1],
    "uint8": [0, 128, 255],
    "uint16": [0, 256, 65535],
    "uint32": [0, 65536, 2**32 - 1],
    "uint64": [0, 2**32, 2**64 - 1],
    "float16": [-0.0, 65504.0, INF],
    "float32": [1.5, -INF, NAN],
    "float64": [-0.0, 5e-324, NAN],
}

# ------------------------------------------------------------------------------------------------
# messages.json


def gen_messages() -> Vectors:
    v = Vectors(
        "messages.json",
        "Encode vectors: every message kind of §6 in canonical form (field order, float reward, "
        "tensor layout). Encoders must produce `frame` exactly; decoders must read it back.",
    )
    v.encode("HELLO from the agent side", "HELLO", hello("agent"))
    v.encode("HELLO from the env side", "HELLO", hello("env", sdk="rlay-c", sdk_version="1.0.0"))
    v.encode(
        "HELLO with capabilities (nested values)",
        "HELLO",
        hello("env", capabilities={"shared_memory": {"size": 1048576}, "auth": ["token", "hmac-sha256"]}),
    )
    v.encode(
        "ENV_INFO CartPole-v1: box float32 (4,) with inf bounds, discrete(2)", "ENV_INFO", cartpole_info()
    )
    v.encode(
        "ENV_INFO box float64 with infinite bounds, discrete with start -2 and int32",
        "ENV_INFO",
        message(
            "ENV_INFO",
            observation_space=box("float64", t("float64", [-INF, 0.0, -1.0]), t("float64", [INF, 1.0, INF])),
            action_space=discrete(5, start=-2, dtype="int32"),
            num_envs=1,
            metadata={},
            render_mode="ansi",
            name=None,
        ),
    )
    v.encode(
        "ENV_INFO batched: 8 sub-envs, uint8 image box (2,2,3), float32 action box (2,)",
        "ENV_INFO",
        message(
            "ENV_INFO",
            observation_space=box(
                "uint8", t("uint8", [0] * 12, (2, 2, 3)), t("uint8", [255] * 12, (2, 2, 3))
            ),
            action_space=box("float32", t("float32", [-1.0, -2.0]), t("float32", [1.0, 2.0])),
            num_envs=8,
            metadata={"render_modes": ["rgb_array"], "render_fps": 30, "autoreset_mode": "next_step"},
            render_mode="rgb_array",
            name="Batched-v0",
        ),
    )
    v.encode("RESET seed nil, options nil", "RESET", message("RESET", seed=None, options=None))
    v.encode("RESET seed 42", "RESET", message("RESET", seed=42, options=None))
    v.encode("RESET seed 0", "RESET", message("RESET", seed=0, options=None))
    v.encode("RESET seed 2^64-1 (uint64)", "RESET", message("RESET", seed=2**64 - 1, options=None))
    v.encode("RESET seed 2^63 (first value past int64)", "RESET", message("RESET", seed=2**63, options=None))
    v.encode(
        "RESET options with nested values",
        "RESET",
        message(
            "RESET",
            seed=7,
            options={
                "difficulty": 3,
                "level": {"name": "level-1", "size": [16, 16], "walls": True, "spawn": None},
                "weights": [0.5, -1.25],
                "mask": t("bool", [True, False, True]),
            },
        ),
    )
    v.encode(
        "RESET batched: seed array with nil, reset_mask option",
        "RESET",
        message("RESET", seed=[0, None, 7], options={"reset_mask": t("bool", [False, True, True])}),
    )
    for dtype, values in SAMPLE.items():
        v.encode(f"STEP action {dtype} tensor (3,)", "STEP", message("STEP", action=t(dtype, values)))
    v.encode("STEP action int (discrete)", "STEP", message("STEP", action=1))
    v.encode(
        "STEP action dict of box and discrete",
        "STEP",
        message("STEP", action={"move": t("float32", [0.25, -1.0]), "fire": 1}),
    )
    v.encode("STEP action one_of [index, value]", "STEP", message("STEP", action=[1, t("int64", 3, ())]))
    v.encode("RENDER", "RENDER", message("RENDER"))
    v.encode("CLOSE", "CLOSE", message("CLOSE"))
    v.encode(
        "CALL with no args (a registered function named like an attribute)",
        "CALL",
        message("CALL", name="lives", args=[], kwargs={}),
    )
    # §7: the handshake's checks need a receiver in state hello; stand-alone, a HELLO of another
    # protocol, version or role decodes by §6's field rules alone.
    v.encode("HELLO of version 2, decoded stand-alone", "HELLO", hello("agent", version=2))
    v.encode(
        "HELLO of protocol 'xyz' and role 'observer', decoded stand-alone",
        "HELLO",
        hello("observer", protocol="xyz"),
    )
    v.encode(
        "CALL with args and kwargs",
        "CALL",
        message(
            "CALL",
            name="set_difficulty",
            args=[3, 0.5, t("int16", [1, -1])],
            kwargs={"mode": "hard", "verbose": True, "extra": None},
        ),
    )
    v.encode("RESET_RESULT with empty info", "RESET_RESULT", message("RESET_RESULT", obs=OBS4, info={}))
    v.encode(
        "RESET_RESULT with info",
        "RESET_RESULT",
        message("RESET_RESULT", obs=OBS4, info={"seed": 42, "lives": t("int64", 3, ())}),
    )
    v.encode(
        "STEP_RESULT reward 1.0 (always float64), not done",
        "STEP_RESULT",
        message("STEP_RESULT", obs=OBS4, reward=1.0, terminated=False, truncated=False, info={}),
    )
    v.encode(
        "STEP_RESULT terminated with negative reward",
        "STEP_RESULT",
        message("STEP_RESULT", obs=OBS4, reward=-0.5, terminated=True, truncated=False, info={}),
    )
    v.encode(
        "STEP_RESULT truncated with reward 0.0",
        "STEP_RESULT",
        message("STEP_RESULT", obs=OBS4, reward=0.0, terminated=False, truncated=True, info={}),
    )
    v.encode(
        "STEP_RESULT info with every kind of value",
        "STEP_RESULT",
        message(
            "STEP_RESULT",
            obs=t("int64", 5, ()),
            reward=0.125,
            terminated=False,
            truncated=False,
            info={
                "nested": {"a": {"b": [1, [2, 3]], "c": {}}},
                "ok": True,
                "off": False,
                "count": t("int64", 7, ()),
                "ratio": 0.25,
                "label": "r\u00e9sum\u00e9",
                "blob": b"\x00\xff\x10",
                "none": None,
                "image": t("uint8", [[1, 2], [3, 4]]),
                "list": [1, "two", 3.0, None, False, []],
                "episode": {"r": 21.5, "l": 22, "t": 0.0625},
            },
        ),
    )
    v.encode(
        "STEP_RESULT batched: float64 rewards, bool flags, vector info",
        "STEP_RESULT",
        message(
            "STEP_RESULT",
            obs=t("float32", [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]),
            reward=t("float64", [1.0, 0.0, -1.0]),
            terminated=t("bool", [False, True, False]),
            truncated=t("bool", [False, False, True]),
            info={"score": t("int32", [0, 10, 0]), "_score": t("bool", [False, True, False])},
        ),
    )
    v.encode(
        "RENDER_RESULT rgb_array frame uint8 (2,3,3)",
        "RENDER_RESULT",
        message("RENDER_RESULT", frame=t("uint8", list(range(0, 180, 10)), (2, 3, 3))),
    )
    v.encode(
        "RENDER_RESULT ansi string",
        "RENDER_RESULT",
        message("RENDER_RESULT", frame="+---+\n|\x1b[31mx\x1b[0m  |\n+---+\n"),
    )
    v.encode("RENDER_RESULT nil (human)", "RENDER_RESULT", message("RENDER_RESULT", frame=None))
    v.encode(
        "RENDER_RESULT rgb_array_list of two frames",
        "RENDER_RESULT",
        message(
            "RENDER_RESULT",
            frame=[t("uint8", [0] * 12, (2, 2, 3)), t("uint8", [255] * 12, (2, 2, 3))],
        ),
    )
    v.encode("CLOSE_RESULT", "CLOSE_RESULT", message("CLOSE_RESULT"))
    v.encode("CALL_RESULT nil", "CALL_RESULT", message("CALL_RESULT", value=None))
    v.encode(
        "CALL_RESULT map",
        "CALL_RESULT",
        message("CALL_RESULT", value={"id": "CartPole-v1", "max_episode_steps": 500}),
    )
    v.encode(
        "ERROR from env code, non-fatal, with remote_type and traceback",
        "ERROR",
        message(
            "ERROR",
            code=ERRORS["ENV_EXCEPTION"],
            message="division by zero",
            fatal=False,
            remote_type="ZeroDivisionError",
            traceback=(
                "Traceback (most recent call last):\n"
                '  File "env.py", line 12, in step\n'
                "    return 1 / 0\n"
                "ZeroDivisionError: division by zero\n"
            ),
        ),
    )
    v.encode(
        "ERROR fatal VERSION_MISMATCH",
        "ERROR",
        message(
            "ERROR",
            code=ERRORS["VERSION_MISMATCH"],
            message="protocol version mismatch: this side speaks 1, peer speaks 2",
            fatal=True,
            remote_type=None,
            traceback=None,
        ),
    )
    v.encode(
        "ERROR RESET_NEEDED",
        "ERROR",
        message(
            "ERROR",
            code=ERRORS["RESET_NEEDED"],
            message="step() called before reset()",
            fatal=False,
            remote_type=None,
            traceback=None,
        ),
    )
    return v


# ------------------------------------------------------------------------------------------------
# values.json


def value_msg(value: Any) -> dict[str, Any]:
    return message("CALL_RESULT", value=value)


INT_BOUNDARIES = [
    ("0", 0),
    ("1", 1),
    ("127 (largest positive fixint)", 127),
    ("128 (uint 8)", 128),
    ("255", 255),
    ("256 (uint 16)", 256),
    ("65535", 65535),
    ("65536 (uint 32)", 65536),
    ("2^32-1", 2**32 - 1),
    ("2^32 (uint 64)", 2**32),
    ("2^63-1", 2**63 - 1),
    ("2^63 (uint 64 only)", 2**63),
    ("2^64-1 (largest)", 2**64 - 1),
    ("-1", -1),
    ("-32 (smallest negative fixint)", -32),
    ("-33 (int 8)", -33),
    ("-128", -128),
    ("-129 (int 16)", -129),
    ("-32768", -32768),
    ("-32769 (int 32)", -32769),
    ("-2^31", -(2**31)),
    ("-2^31-1 (int 64)", -(2**31) - 1),
    ("-2^63 (smallest)", -(2**63)),
]

FLOATS = [
    ("0.0", 0.0),
    ("-0.0", -0.0),
    ("1.0", 1.0),
    ("1.5", 1.5),
    ("0.1", 0.1),
    ("-2.5e-300", -2.5e-300),
    ("5e-324 (smallest subnormal)", 5e-324),
    ("largest double", 1.7976931348623157e308),
    ("NaN", NAN),
    ("+inf", INF),
    ("-inf", -INF),
]

# Per dtype: a 0-d value and six values for a (2,3) tensor, at the dtype's edges.
DTYPE_CASES = {
    "bool": (True, [True, False, False, True, True, False]),
    "int8": (-128, [-128, -1, 0, 1, 127, 42]),
    "int16": (-32768, [-32768, -1, 0, 255, 32767, 256]),
    "int32": (-(2**31), [-(2**31), -1, 0, 65536, 2**31 - 1, 7]),
    "int64": (-(2**63), [-(2**63), -1, 0, 2**32, 2**63 - 1, 7]),
    "uint8": (255, [0, 1, 127, 128, 254, 255]),
    "uint16": (65535, [0, 1, 255, 256, 65534, 65535]),
    "uint32": (2**32 - 1, [0, 1, 65535, 65536, 2**31, 2**32 - 1]),
    "uint64": (2**64 - 1, [0, 1, 2**32, 2**63, 2**63 + 1, 2**64 - 1]),
    "float16": (-0.0, [NAN, INF, -INF, -0.0, 65504.0, 5.960464477539063e-08]),
    "float32": (NAN, [NAN, INF, -INF, -0.0, 3.4028234663852886e38, 1.401298464324817e-45]),
    "float64": (-INF, [NAN, INF, -INF, -0.0, 1.7976931348623157e308, 5e-324]),
}


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def gen_values() -> Vectors:
    v = Vectors(
        "values.json",
        "Encode vectors for the value model of §3-§5, each carried as a CALL_RESULT (or where "
        "noted another message): every int family boundary, floats with NaN/inf/-0.0, str/bin/"
        "array/map header boundaries, UTF-8, map key order, depth 64, every dtype in 0-d, empty "
        "and (2,3) shapes, and the canonical tensor layout (document order, 8-byte alignment).",
    )
    for label, n in INT_BOUNDARIES:
        v.encode(f"int {label}", "CALL_RESULT", value_msg(n))
    for label, x in FLOATS:
        v.encode(f"float {label}", "CALL_RESULT", value_msg(x))
    v.encode("true", "CALL_RESULT", value_msg(True))
    v.encode("false", "CALL_RESULT", value_msg(False))
    v.encode("bool and int side by side", "CALL_RESULT", value_msg([True, 1, False, 0, 1.0]))
    for n in (0, 1, 31, 32, 255, 256, 65535, 65536):
        v.encode(f"str of {n} bytes", "CALL_RESULT", value_msg("".join(chr(97 + i % 26) for i in range(n))))
    v.encode(
        "str with multi-byte UTF-8 (length counts bytes)",
        "CALL_RESULT",
        value_msg("h\u00e9llo w\u00f6rld \u2713 \U0001f3ae \u65e5\u672c \u0000end"),
    )
    v.encode(
        "str of 31 characters but 62 bytes (str 8)",
        "CALL_RESULT",
        value_msg("\u00e9" * 31),
    )
    for n in (0, 1, 255, 256, 65536):
        v.encode(f"bytes of {n}", "CALL_RESULT", value_msg(bytes(i % 251 for i in range(n))))
    for n in (0, 1, 15, 16, 65535):
        items = [i % 128 for i in range(n)] if n < 256 else [None] * n
        v.encode(f"array of {n}", "CALL_RESULT", value_msg(items))
    v.encode("array of 65536 nils (array 32)", "CALL_RESULT", value_msg([None] * 65536))
    for n in (0, 1, 15, 16):
        v.encode(f"map of {n}", "CALL_RESULT", value_msg({f"k{i}": i % 128 for i in range(n)}))
    v.encode(
        "map keys keep their order (not sorted, integer-like keys too)",
        "CALL_RESULT",
        value_msg({"zeta": 1, "alpha": 2, "10": 3, "9": 4, "": 5, "\u00e9": 6}),
    )
    v.encode("nesting depth exactly 64 (the limit)", "CALL_RESULT", value_msg(_nested(63)))
    v.encode(
        "nesting depth 64 through maps and arrays",
        "STEP",
        message("STEP", action=_nested_maps(63)),
    )
    for dtype, (scalar, six) in DTYPE_CASES.items():
        v.encode(f"tensor {dtype} 0-d", "CALL_RESULT", value_msg(t(dtype, scalar, ())))
        v.encode(f"tensor {dtype} empty (0,3)", "CALL_RESULT", value_msg(t(dtype, [], (0, 3))))
        v.encode(f"tensor {dtype} (2,3)", "CALL_RESULT", value_msg(t(dtype, six, (2, 3))))
    v.encode("tensor float32 (4,): 16 bytes", "CALL_RESULT", value_msg(t("float32", [1.0, 2.0, 3.0, 4.0])))
    v.encode("tensor with 32 dimensions (the limit)", "CALL_RESULT", value_msg(t("int8", [9], (1,) * 32)))
    v.encode(
        "empty tensor with a 2^32-1 dimension",
        "CALL_RESULT",
        value_msg(Tensor("float64", (0, 2**32 - 1), b"")),
    )
    v.encode("tensor shape (1,1,1) float64", "CALL_RESULT", value_msg(t("float64", [2.5], (1, 1, 1))))
    v.encode(
        "layout: several tensors in document order with padding",
        "STEP_RESULT",
        message(
            "STEP_RESULT",
            obs=t("int8", [1, 2, 3]),  # offset 0, 3 bytes
            reward=1.0,
            terminated=False,
            truncated=False,
            info={
                "a": t("float64", [0.5, -0.5]),  # offset 8
                "b": [
                    t("uint16", [7]),  # offset 24
                    t("float32", [], (0,)),  # empty: offset 0, takes no room
                    t("bool", [True, False, True, True, False]),  # offset 32
                ],
                "c": t("float32", 1.0, ()),  # offset 40
                "d": t("int64", [], (2, 0)),  # empty at the end: data_len stays 44
            },
        ),
    )
    v.encode(
        "layout: map values in key order, not sorted",
        "CALL_RESULT",
        value_msg({"z": t("uint8", [1]), "a": t("uint8", [2]), "m": t("uint8", [3])}),
    )
    v.encode(
        "layout: the same tensor twice is laid out twice",
        "CALL_RESULT",
        value_msg([t("int32", [5, 6]), t("int32", [5, 6])]),
    )
    v.encode(
        "layout: 8-byte tensors need no padding",
        "CALL_RESULT",
        value_msg([t("int64", [1]), t("uint8", [1] * 8), t("float64", [2.0])]),
    )
    return v


def _nested_maps(depth: int) -> Any:
    """``depth`` containers alternating map/array; the outermost is a map."""
    value: Any = 0
    for i in range(depth):
        value = {"k": value} if (depth - i) % 2 else [value]
    return value


# ------------------------------------------------------------------------------------------------
# decode.json


def gen_decode() -> Vectors:
    v = Vectors(
        "decode.json",
        "Decode vectors: valid but non-canonical frames (§5 'decoders also accept'). Each must "
        "decode to `message`, whose canonical encoding is `canonical`.",
    )

    def val(name: str, raw: bytes, meaning: Any) -> None:
        v.decode(name, "CALL_RESULT", {"value": Raw(raw)}, b"", value_msg(meaning))

    val("int 5 as int 8 (d0 05)", b"\xd0\x05", 5)
    val("int 5 as uint 8 (cc 05)", b"\xcc\x05", 5)
    val("int 5 as uint 16", b"\xcd\x00\x05", 5)
    val("int 5 as uint 32", b"\xce\x00\x00\x00\x05", 5)
    val("int 5 as uint 64", b"\xcf" + struct.pack(">Q", 5), 5)
    val("int 5 as int 16", b"\xd1\x00\x05", 5)
    val("int 5 as int 32", b"\xd2\x00\x00\x00\x05", 5)
    val("int 5 as int 64", b"\xd3" + struct.pack(">q", 5), 5)
    val("int 200 as int 16", b"\xd1\x00\xc8", 200)
    val("int -1 as int 8", b"\xd0\xff", -1)
    val("int -1 as int 64", b"\xd3" + b"\xff" * 8, -1)
    val("int -100 as int 32", b"\xd2" + struct.pack(">i", -100), -100)
    val("int 2^63-1 as int 64", b"\xd3" + struct.pack(">q", 2**63 - 1), 2**63 - 1)
    val("int 2^32 as int 64", b"\xd3" + struct.pack(">q", 2**32), 2**32)
    val("float 1.5 as float 32", b"\xca" + struct.pack(">f", 1.5), 1.5)
    val(
        "float 0.1f as float 32 (widened exactly)",
        b"\xca" + struct.pack(">f", 0.1),
        struct.unpack(">f", struct.pack(">f", 0.1))[0],
    )
    val("float -inf as float 32", b"\xca\xff\x80\x00\x00", -INF)
    val("float NaN as float 32", b"\xca\x7f\xc0\x00\x00", NAN)
    val("float -0.0 as float 32", b"\xca\x80\x00\x00\x00", -0.0)
    val("str as str 8", b"\xd9\x03abc", "abc")
    val("str as str 16", b"\xda\x00\x03abc", "abc")
    val("str as str 32", b"\xdb\x00\x00\x00\x03abc", "abc")
    val("empty str as str 8", b"\xd9\x00", "")
    val("bytes as bin 16", b"\xc5\x00\x02\x01\x02", b"\x01\x02")
    val("bytes as bin 32", b"\xc6\x00\x00\x00\x02\x01\x02", b"\x01\x02")
    val("array as array 16", b"\xdc\x00\x02\x01\x02", [1, 2])
    val("array as array 32", b"\xdd\x00\x00\x00\x02\x01\x02", [1, 2])
    val("map as map 16", b"\xde\x00\x01\xa1a\x01", {"a": 1})
    val("map as map 32", b"\xdf\x00\x00\x00\x01\xa1a\x01", {"a": 1})
    val("empty map as map 32", b"\xdf\x00\x00\x00\x00", {})

    # The body map itself with long headers, and its fields in another order.
    hello_fields = hello("agent")
    v.decode(
        "HELLO body as map 16 with str 8 keys",
        "HELLO",
        Raw(
            b"\xde\x00\x06"
            + b"".join(b"\xd9" + bytes([len(k)]) + k.encode() + pack(x)[0] for k, x in hello_fields.items())
        ),
        b"",
        hello_fields,
    )
    v.decode(
        "HELLO fields in reverse order",
        "HELLO",
        dict(reversed(list(hello_fields.items()))),
        b"",
        hello_fields,
    )
    v.decode(
        "HELLO version as uint 16",
        "HELLO",
        {**hello_fields, "version": Raw(b"\xcd\x00\x01")},
        b"",
        hello_fields,
    )
    step = message("STEP_RESULT", obs=OBS4, reward=1.0, terminated=False, truncated=True, info={})
    v.decode(
        "STEP_RESULT fields in another order",
        "STEP_RESULT",
        {"info": {}, "truncated": True, "obs": OBS4, "terminated": False, "reward": 1.0},
        b"",
        step,
    )
    v.decode(
        "STEP_RESULT int reward 1 (a float field accepts an int)",
        "STEP_RESULT",
        {**step, "reward": 1},
        b"",
        step,
    )
    v.decode(
        "STEP_RESULT int reward -3 as int 64",
        "STEP_RESULT",
        {**step, "reward": Raw(b"\xd3" + struct.pack(">q", -3))},
        b"",
        {**step, "reward": -3.0},
    )
    v.decode(
        "STEP_RESULT reward as float 32",
        "STEP_RESULT",
        {**step, "reward": Raw(b"\xca" + struct.pack(">f", 0.75))},
        b"",
        {**step, "reward": 0.75},
    )
    v.decode(
        "ERROR fields in another order",
        "ERROR",
        {"fatal": False, "traceback": None, "code": 34, "remote_type": None, "message": "no render mode"},
        b"",
        message("ERROR", code=34, message="no render mode", fatal=False, remote_type=None, traceback=None),
    )
    v.decode(
        "RESET seed 2^64-1 fields reversed",
        "RESET",
        {"options": None, "seed": 2**64 - 1},
        b"",
        message("RESET", seed=2**64 - 1, options=None),
    )

    # Tensors: longer ext headers, other orders, gaps, overlap, trailing data.
    a = t("float32", [1.0, 2.0])  # 8 bytes
    b = t("int16", [3, 4, 5])  # 6 bytes
    pa = tensor_payload(a, 0)
    v.decode(
        "tensor descriptor as ext 16",
        "CALL_RESULT",
        {"value": At(a, 0, b"\xc8\x00" + bytes([len(pa)]) + b"\x01")},
        a.raw,
        value_msg(a),
    )
    v.decode(
        "tensor descriptor as ext 32",
        "CALL_RESULT",
        {"value": At(a, 0, b"\xc9\x00\x00\x00" + bytes([len(pa)]) + b"\x01")},
        a.raw,
        value_msg(a),
    )
    v.decode(
        "tensors in reverse document order in the data section",
        "CALL_RESULT",
        {"value": [At(a, 8), At(b, 0)]},
        b.raw + b"\x00\x00" + a.raw,
        value_msg([a, b]),
    )
    v.decode(
        "tensors with gaps of garbage bytes and trailing bytes",
        "CALL_RESULT",
        {"value": [At(a, 16), At(b, 40)]},
        b"\xee" * 16 + a.raw + b"\xee" * 16 + b.raw + b"\xee" * 10,
        value_msg([a, b]),
    )
    v.decode(
        "two descriptors overlapping the same bytes",
        "CALL_RESULT",
        {"value": [At(a, 0), At(t("uint8", list(a.raw[:4])), 0)]},
        a.raw,
        value_msg([a, t("uint8", list(a.raw[:4]))]),
    )
    v.decode(
        "empty tensor with a non-zero offset inside the section",
        "CALL_RESULT",
        {"value": [At(a, 0), At(t("float64", [], (0,)), 8)]},
        a.raw,
        value_msg([a, t("float64", [], (0,))]),
    )
    v.decode(
        "data section with bytes no tensor covers",
        "CALL_RESULT",
        {"value": [At(a, 0)]},
        a.raw + b"\xab" * 24,
        value_msg([a]),
    )
    v.decode(
        "data section present but no tensor at all",
        "CALL_RESULT",
        {"value": 1},
        b"\x00" * 8,
        value_msg(1),
    )
    return v


# ------------------------------------------------------------------------------------------------
# reject_framing.json


def gen_reject_framing() -> Vectors:
    v = Vectors(
        "reject_framing.json",
        "Reject vectors for the frame header and the stream (§2). Decoded stand-alone with the "
        "default max_frame_size of 64 MiB; the stream ends after the given bytes.",
    )
    good = frame("CLOSE", message("CLOSE"))
    body = b"\x80"
    v.reject("bad magic 'XX'", b"XX" + good[2:], "BAD_MAGIC")
    v.reject("bad magic reversed 'LR'", b"LR" + good[2:], "BAD_MAGIC")
    v.reject("bad magic lowercase 'rl'", b"rl" + good[2:], "BAD_MAGIC")
    v.reject(
        "an HTTP request",
        b"GET / HTTP/1.1\r\nHost: localhost:5555\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n",
        "BAD_MAGIC",
    )
    v.reject("an HTTP request cut after 2 bytes", b"GE", "BAD_MAGIC")
    v.reject("a TLS ClientHello", bytes.fromhex("160301020001000200030367b3a1"), "BAD_MAGIC")
    v.reject("bad magic in the second frame", good + b"HTTP/1.1 200 OK\r\n\r\n", "BAD_MAGIC")
    v.reject("flags 0x01", header(KIND["CLOSE"], 0, 1, flags=1) + body, "BAD_HEADER")
    v.reject("flags 0x80", header(KIND["CLOSE"], 0, 1, flags=0x80) + body, "BAD_HEADER")
    v.reject("body_len 0", header(KIND["CLOSE"], 0, 0), "BAD_HEADER")
    v.reject("body_len 0 with a data section", header(KIND["CLOSE"], 8, 0) + bytes(8), "BAD_HEADER")
    v.reject(
        "data_len + body_len = 64 MiB + 1",
        header(KIND["STEP"], MAX_FRAME, 1),
        "FRAME_TOO_LARGE",
    )
    v.reject("body_len = 64 MiB + 1", header(KIND["STEP"], 0, MAX_FRAME + 1), "FRAME_TOO_LARGE")
    v.reject("both lengths 2^32-1", header(KIND["STEP"], 2**32 - 1, 2**32 - 1), "FRAME_TOO_LARGE")
    v.reject(
        "data_len 2^32-1 + body_len 1 (a sum that wraps to 0 in 32 bits)",
        header(KIND["STEP"], 2**32 - 1, 1),
        "FRAME_TOO_LARGE",
    )
    v.reject(
        "a frame of exactly 64 MiB is allowed: the stream then ends inside it",
        header(KIND["STEP"], MAX_FRAME - 16, 16) + bytes(64),
        "TRUNCATED",
    )
    v.reject("stream ends after 2 header bytes", good[:2], "TRUNCATED")
    v.reject("stream ends inside the header", good[:7], "TRUNCATED")
    v.reject("stream ends after the header", good[:12], "TRUNCATED")
    step = frame("STEP", message("STEP", action=t("float32", [1.0, 2.0])))
    v.reject("stream ends inside the data section", step[:16], "TRUNCATED")
    v.reject("stream ends inside the body", step[:-1], "TRUNCATED")
    v.reject("stream ends inside the second frame's header", good + good[:5], "TRUNCATED")
    for kind in (0, 3, 15, 21, 37, 49, 255):
        v.reject(f"unknown kind {kind}", header(kind, 0, 1) + body, "UNKNOWN_KIND")
    # §2 fixes the order of the header checks: magic, flags/body_len, size, kind.
    v.reject(
        "order: bad flags and unknown kind -> flags first", header(0, 0, 1, flags=1) + body, "BAD_HEADER"
    )
    v.reject(
        "order: too large and unknown kind -> size first",
        header(0, MAX_FRAME, 1),
        "FRAME_TOO_LARGE",
    )
    v.reject(
        "order: bad magic and bad flags -> magic first",
        b"XX" + struct.pack("<BBII", KIND["CLOSE"], 1, 0, 1) + body,
        "BAD_MAGIC",
    )
    return v


# ------------------------------------------------------------------------------------------------
# reject_values.json


def gen_reject_values() -> Vectors:
    v = Vectors(
        "reject_values.json",
        "Reject vectors for bodies outside the MessagePack subset of §3, bad tensors (§4) and "
        "nesting beyond max_depth 64. Decoded stand-alone; the header is valid.",
    )

    def body(name: str, raw_body: bytes, error: str, data: bytes = b"", kind: str = "CALL_RESULT") -> None:
        v.reject(name, raw_frame(KIND[kind], raw_body, data), error)

    def value(name: str, raw_value: bytes, error: str, data: bytes = b"") -> None:
        body(name, b"\x81\xa5value" + raw_value, error, data)

    body("reserved byte 0xc1 as the body", b"\xc1", "MALFORMED")
    value("reserved byte 0xc1 as a value", b"\xc1", "MALFORMED")
    body("trailing bytes after the body", b"\x81\xa5value\xc0\xc0", "MALFORMED")
    body("two maps in one body", b"\x80\x80", "MALFORMED", kind="CLOSE")
    body("body ends inside a map (value missing)", b"\x81\xa5value", "MALFORMED")
    body("body ends inside a key", b"\x81\xa5val", "MALFORMED")
    value("str 8 longer than the body", b"\xd9\x10ab", "MALFORMED")
    value("str 32 declaring 2^32-1 bytes", b"\xdb\xff\xff\xff\xffab", "MALFORMED")
    value("bin 32 declaring 2^32-1 bytes", b"\xc6\xff\xff\xff\xff\x00", "MALFORMED")
    value("array 32 declaring 2^32-1 elements", b"\xdd\xff\xff\xff\xff\xc0", "MALFORMED")
    value("map 32 declaring 2^32-1 pairs", b"\xdf\xff\xff\xff\xff\xa1a\xc0", "MALFORMED")
    value("ext 32 declaring 2^32-1 bytes", b"\xc9\xff\xff\xff\xff\x01\x00", "MALFORMED")
    value("fixarray of 3 with 2 elements", b"\x93\x01\x02", "MALFORMED")
    value("float 64 cut short", b"\xcb\x3f\xf0", "MALFORMED")
    value("invalid UTF-8: byte 0xff", b"\xa3a\xffb", "MALFORMED")
    value("invalid UTF-8: overlong '/' (c0 af)", b"\xa2\xc0\xaf", "MALFORMED")
    value("invalid UTF-8: UTF-16 surrogate (ed a0 80)", b"\xa3\xed\xa0\x80", "MALFORMED")
    value("invalid UTF-8: sequence cut at the end of the str", b"\xa2a\xe2", "MALFORMED")
    value("invalid UTF-8 in a map key", b"\x81\xa2\xc3\x28\x01", "MALFORMED")
    value("int map key", b"\x81\x01\x02", "MALFORMED")
    value("nil map key", b"\x81\xc0\x02", "MALFORMED")
    value("bin map key", b"\x81\xc4\x01a\x02", "MALFORMED")
    value("bool map key", b"\x81\xc3\x02", "MALFORMED")
    value("float map key", b"\x81\xcb" + struct.pack(">d", 1.0) + b"\x02", "MALFORMED")
    value("array map key", b"\x81\x91\x01\x02", "MALFORMED")
    body("int key in the body map", b"\x81\x01\xc0", "MALFORMED")
    value("duplicate key in a free-form map", b"\x82\xa1a\x01\xa1a\x02", "MALFORMED")
    body("duplicate field in the body map", b"\x82\xa5value\x01\xa5value\x02", "MALFORMED")
    value("ext type 2", b"\xd4\x02\x00", "MALFORMED")
    value("ext type 127", b"\xc7\x03\x7f\x00\x00\x00", "MALFORMED")
    value("ext type -128", b"\xd5\x80\x00\x00", "MALFORMED")
    value("timestamp ext (-1), 32-bit", b"\xd6\xff\x00\x00\x00\x01", "MALFORMED")
    value("timestamp ext (-1), 96-bit", b"\xc7\x0c\xff" + bytes(11) + b"\x01", "MALFORMED")

    # §13 max_values: the body map counts 1, {"value": …} adds 2 (a key and a value), an array
    # of n adds n. 262141 nils reach the limit exactly; one more passes it at the array header.
    n_ok = MAX_VALUES - 3
    at_limit = b"\x81\xa5value\xdd" + struct.pack(">I", n_ok) + b"\xc0" * n_ok
    v.reject(
        f"max_values: {n_ok} nils in one array (the body declares exactly {MAX_VALUES} values), "
        "then the stream ends inside a frame",
        raw_frame(KIND["CALL_RESULT"], at_limit) + b"RL\x24",
        "TRUNCATED",
    )
    past = b"\x81\xa5value\xdd" + struct.pack(">I", n_ok + 1) + b"\xc0" * (n_ok + 1)
    body(f"max_values: {n_ok + 1} nils in one array ({MAX_VALUES + 1} values)", past, "FRAME_TOO_LARGE")
    # Counted at each header: 1 + 2 + 2 (an array of two) + 131071 + 131071 = 262147 > 262144,
    # passed at the second inner header although no single header declares that much.
    half = MAX_VALUES // 2 - 1
    nested = b"\x81\xa5value\x92" + (b"\xdd" + struct.pack(">I", half) + b"\x90" * half) * 2
    body("max_values: passed at the second of two arrays of 131071 empty arrays", nested, "FRAME_TOO_LARGE")
    # A tensor counts 8: 3 + 8 x 32767 = 262139 values fit, 3 + 8 x 32768 = 262147 do not.
    one = ext(1, struct.pack("<BBI", 1, 0, 0))  # a 0-d bool tensor at offset 0 (they may overlap)
    flag = b"\x01" + bytes(7)
    for n, error in ((MAX_VALUES // 8 - 1, "TRUNCATED"), (MAX_VALUES // 8, "FRAME_TOO_LARGE")):
        tensors = b"\x81\xa5value\xdd" + struct.pack(">I", n) + one * n
        stream = raw_frame(KIND["CALL_RESULT"], tensors, flag)
        v.reject(
            f"max_values: {n} tensors in one array ({3 + 8 * n} values)"
            + (", then the stream ends inside a frame" if error == "TRUNCATED" else ""),
            stream + (b"RL\x24" if error == "TRUNCATED" else b""),
            error,
        )

    # Depth: the body map is depth 1 (§3).
    value("nesting depth 65 (arrays)", pack(_nested(64))[0], "TOO_DEEP")
    value("nesting depth 65 (maps and arrays)", pack(_nested_maps(64))[0], "TOO_DEEP")
    value("nesting depth 100000 (fixarrays)", b"\x91" * 99_999 + b"\x90", "TOO_DEEP")

    # Tensors (§4). 8 bytes of data is room for one float64.
    data8 = struct.pack("<d", 1.5)

    def tensor(name: str, payload: bytes, error: str, data: bytes = data8) -> None:
        value(name, ext(1, payload), error, data)

    tensor("tensor descriptor of 0 bytes", b"", "BAD_TENSOR")
    tensor("tensor descriptor of 5 bytes", b"\x0c\x00\x00\x00\x00", "BAD_TENSOR")
    tensor(
        "tensor descriptor too long for ndim 1",
        struct.pack("<BBII", 12, 1, 1, 0) + b"\x00\x00\x00\x00",
        "BAD_TENSOR",
    )
    tensor("tensor descriptor too short for ndim 2", struct.pack("<BBII", 12, 2, 1, 0), "BAD_TENSOR")
    tensor(
        "tensor with ndim 33",
        struct.pack(f"<BB{33}II", 12, 33, *([1] * 33), 0),
        "BAD_TENSOR",
    )
    tensor("tensor with ndim 255, descriptor of 6 bytes", struct.pack("<BBI", 12, 255, 0), "BAD_TENSOR")
    for code in (0, 13, 255):
        tensor(f"unknown dtype code {code}", struct.pack("<BBI", code, 0, 0), "UNKNOWN_DTYPE")
    # §4's order of checks: length >= 6, ndim <= 32, length == 6 + 4 ndim, dtype, offset, range, bools.
    tensor(
        "order: unknown dtype 13 and a descriptor of 5 bytes -> length first",
        b"\x0d\x00\x00\x00\x00",
        "BAD_TENSOR",
    )
    tensor(
        "order: unknown dtype 0 and ndim 33 -> ndim first",
        struct.pack(f"<BB{33}II", 0, 33, *([1] * 33), 0),
        "BAD_TENSOR",
    )
    tensor(
        "order: unknown dtype 200 and a descriptor too long for ndim 1 -> length first",
        struct.pack("<BBII", 200, 1, 1, 0) + b"\x00\x00\x00\x00",
        "BAD_TENSOR",
    )
    tensor(
        "order: unknown dtype 13 and offset 4 -> dtype first",
        struct.pack("<BBII", 13, 1, 1, 4),
        "UNKNOWN_DTYPE",
    )
    tensor(
        "order: unknown dtype 13 and bytes past the data section -> dtype first",
        struct.pack("<BBII", 13, 1, 1000, 0),
        "UNKNOWN_DTYPE",
    )
    tensor("tensor offset 4 (not a multiple of 8)", struct.pack("<BBII", 6, 1, 1, 4), "BAD_TENSOR", bytes(16))
    tensor("tensor offset 1", struct.pack("<BBII", 6, 1, 1, 1), "BAD_TENSOR", bytes(16))
    tensor("tensor one byte past the data section", struct.pack("<BBII", 6, 1, 9, 0), "BAD_TENSOR")
    tensor("tensor with no data section at all", struct.pack("<BBI", 12, 0, 0), "BAD_TENSOR", b"")
    tensor("tensor offset past the data section", struct.pack("<BBII", 6, 1, 1, 16), "BAD_TENSOR")
    tensor(
        "empty tensor whose offset is past the data section",
        struct.pack("<BBII", 12, 1, 0, 16),
        "BAD_TENSOR",
    )
    tensor(
        "tensor offset 2^32-8 (offset + nbytes wraps in 32 bits)",
        struct.pack("<BBII", 12, 1, 2, 2**32 - 8),
        "BAD_TENSOR",
    )
    tensor(
        "tensor shape product wraps to 0 in 32 bits (65536 x 65536 uint8)",
        struct.pack("<BBIII", 6, 2, 65536, 65536, 0),
        "BAD_TENSOR",
    )
    tensor(
        "tensor shape product wraps in 64 bits (4 dims of 2^32-1 float64)",
        struct.pack("<BB4II", 12, 4, *([2**32 - 1] * 4), 0),
        "BAD_TENSOR",
    )
    tensor(
        "tensor shape product 2^64 wraps to 0 in 64 bits (uint8, 4 dims of 2^16)",
        struct.pack("<BB4II", 6, 4, *([65536] * 4), 0),
        "BAD_TENSOR",
    )
    tensor(
        "bool tensor with byte 2", struct.pack("<BBII", 1, 1, 3, 0), "BAD_TENSOR", b"\x01\x00\x02" + bytes(5)
    )
    tensor(
        "bool tensor with byte 0xff last",
        struct.pack("<BBII", 1, 1, 8, 0),
        "BAD_TENSOR",
        b"\x01" * 7 + b"\xff",
    )
    tensor("bool 0-d tensor with byte 0x80", struct.pack("<BBI", 1, 0, 0), "BAD_TENSOR", b"\x80" + bytes(7))
    return v


# ------------------------------------------------------------------------------------------------
# reject_fields.json


def gen_reject_fields() -> Vectors:
    v = Vectors(
        "reject_fields.json",
        "Reject vectors for message fields (§6): a missing, unknown or wrongly typed field is "
        "BAD_FIELD, and so is a body that is not a map. Decoded stand-alone (no state machine).",
    )

    def bad(name: str, kind: str, body_value: Any, data: bytes = b"") -> None:
        body, layout = pack(body_value)
        v.reject(f"{kind}: {name}", raw_frame(KIND[kind], body, data or layout), "BAD_FIELD")

    h = hello("agent")
    bad("body is an array", "HELLO", list(h.values()))
    bad("body is nil", "CLOSE", None)
    bad("body is an int", "RENDER", 0)
    bad("body is a str", "CLOSE_RESULT", "close")
    bad("missing capabilities", "HELLO", {k: x for k, x in h.items() if k != "capabilities"})
    bad("unknown field", "HELLO", {**h, "features": []})
    bad("version is a str", "HELLO", {**h, "version": "1"})
    bad("capabilities is nil", "HELLO", {**h, "capabilities": None})
    bad("sdk is nil", "HELLO", {**h, "sdk": None})
    info = cartpole_info()
    bad("num_envs 0", "ENV_INFO", {**info, "num_envs": 0})
    bad("num_envs -1", "ENV_INFO", {**info, "num_envs": -1})
    bad("num_envs is a float", "ENV_INFO", {**info, "num_envs": 1.0})
    bad("observation_space is nil", "ENV_INFO", {**info, "observation_space": None})
    bad("render_mode is an int", "ENV_INFO", {**info, "render_mode": 0})
    bad("metadata is nil", "ENV_INFO", {**info, "metadata": None})
    bad("missing name", "ENV_INFO", {k: x for k, x in info.items() if k != "name"})
    bad("missing options", "RESET", {"seed": None})
    bad("seed is a str", "RESET", {"seed": "42", "options": None})
    bad("seed is a float", "RESET", {"seed": 42.0, "options": None})
    bad("seed is a bool", "RESET", {"seed": True, "options": None})
    bad("seed array holds a str", "RESET", {"seed": [1, "2"], "options": None})
    bad("options is an array", "RESET", {"seed": None, "options": []})
    bad("field name in another case", "RESET", {"Seed": None, "options": None})
    bad("empty body", "STEP", {})
    bad("unknown field beside action", "STEP", {"action": 1, "actions": 2})
    bad("a field in an empty message", "RENDER", {"mode": "rgb_array"})
    bad("a nil field in an empty message", "CLOSE", {"reason": None})
    bad("a field in CLOSE_RESULT", "CLOSE_RESULT", {"ok": True})
    bad("name is an int", "CALL", {"name": 1, "args": [], "kwargs": {}})
    bad("args is a map", "CALL", {"name": "f", "args": {}, "kwargs": {}})
    bad("kwargs is an array", "CALL", {"name": "f", "args": [], "kwargs": []})
    bad("kwargs is nil", "CALL", {"name": "f", "args": [], "kwargs": None})
    bad("missing info", "RESET_RESULT", {"obs": 1})
    bad("info is nil", "RESET_RESULT", {"obs": 1, "info": None})
    s = message("STEP_RESULT", obs=1, reward=1.0, terminated=False, truncated=False, info={})
    bad("terminated is int 1 (bool and int are apart)", "STEP_RESULT", {**s, "terminated": 1})
    bad("truncated is int 0", "STEP_RESULT", {**s, "truncated": 0})
    bad("terminated is nil", "STEP_RESULT", {**s, "terminated": None})
    bad("reward is a str", "STEP_RESULT", {**s, "reward": "1.0"})
    bad("reward is nil", "STEP_RESULT", {**s, "reward": None})
    bad("reward is a bool", "STEP_RESULT", {**s, "reward": True})
    bad("missing truncated", "STEP_RESULT", {k: x for k, x in s.items() if k != "truncated"})
    # §10: batched, reward is a float64 tensor (N,) and the flags bool tensors (N,); nothing else.
    bad("reward is a uint8 tensor", "STEP_RESULT", {**s, "reward": t("uint8", [1, 0])})
    bad("reward is a float32 tensor", "STEP_RESULT", {**s, "reward": t("float32", [1.0, 0.0])})
    bad("reward is a 0-d float64 tensor", "STEP_RESULT", {**s, "reward": t("float64", 1.0, ())})
    bad("reward is a 2-d float64 tensor", "STEP_RESULT", {**s, "reward": t("float64", [[1.0], [0.0]])})
    bad("terminated is an int64 tensor", "STEP_RESULT", {**s, "terminated": t("int64", [0, 3])})
    bad("truncated is a uint8 tensor", "STEP_RESULT", {**s, "truncated": t("uint8", [0, 1])})
    bad("terminated is a 0-d bool tensor", "STEP_RESULT", {**s, "terminated": t("bool", True, ())})
    bad("truncated is a 2-d bool tensor", "STEP_RESULT", {**s, "truncated": t("bool", [[True], [False]])})
    bad("info is an array", "STEP_RESULT", {**s, "info": []})
    bad("missing frame", "RENDER_RESULT", {})
    bad("missing value", "CALL_RESULT", {})
    bad("value and an unknown field", "CALL_RESULT", {"value": 1, "extra": 1})
    e = message("ERROR", code=37, message="bug", fatal=True, remote_type=None, traceback=None)
    bad("code is a str", "ERROR", {**e, "code": "INTERNAL"})
    bad("code is a float", "ERROR", {**e, "code": 37.0})
    bad("fatal is int 1", "ERROR", {**e, "fatal": 1})
    bad("message is nil", "ERROR", {**e, "message": None})
    bad("remote_type is an int", "ERROR", {**e, "remote_type": 0})
    bad("traceback is bytes", "ERROR", {**e, "traceback": b"tb"})
    bad("missing traceback", "ERROR", {k: x for k, x in e.items() if k != "traceback"})
    return v


# ------------------------------------------------------------------------------------------------
# reject_states.json


def gen_reject_states() -> Vectors:
    v = Vectors(
        "reject_states.json",
        "Reject vectors for the state machine (§8) and the handshake (§7). The receiver plays "
        "`role` and is in `state` (reached by a valid conversation; its own HELLO already sent). "
        "State 'hello': waiting for the peer's HELLO. A message not allowed in the state is "
        "UNEXPECTED_MESSAGE, even when it is a valid message of the other state.",
    )
    f = {
        "HELLO_AGENT": frame("HELLO", hello("agent")),
        "HELLO_ENV": frame("HELLO", hello("env")),
        "ENV_INFO": frame("ENV_INFO", cartpole_info()),
        "RESET": frame("RESET", message("RESET", seed=None, options=None)),
        "STEP": frame("STEP", message("STEP", action=1)),
        "RENDER": frame("RENDER", message("RENDER")),
        "CLOSE": frame("CLOSE", message("CLOSE")),
        "CALL": frame("CALL", message("CALL", name="f", args=[], kwargs={})),
        # obs=1: a value of the Discrete(2) observation space these receivers were given (§12), so
        # a receiver that checks values at once still meets the fault each vector is about.
        "RESET_RESULT": frame("RESET_RESULT", message("RESET_RESULT", obs=1, info={})),
        "STEP_RESULT": frame(
            "STEP_RESULT",
            message("STEP_RESULT", obs=1, reward=1.0, terminated=False, truncated=False, info={}),
        ),
        "RENDER_RESULT": frame("RENDER_RESULT", message("RENDER_RESULT", frame=None)),
        "CLOSE_RESULT": frame("CLOSE_RESULT", message("CLOSE_RESULT")),
        "CALL_RESULT": frame("CALL_RESULT", message("CALL_RESULT", value=None)),
        "ERROR": frame(
            "ERROR", message("ERROR", code=34, message="no", fatal=False, remote_type=None, traceback=None)
        ),
        "FATAL": frame(
            "ERROR", message("ERROR", code=37, message="bye", fatal=True, remote_type=None, traceback=None)
        ),
    }

    def unexpected(role: str, state: str, what: str, stream: bytes | None = None, why: str = "") -> None:
        name = f"{role} in {state} receives {what}" + (f" ({why})" if why else "")
        v.reject(name, f[what] if stream is None else stream, "UNEXPECTED_MESSAGE", role, state)

    # Agent-side messages received by the agent, env-side ones by the env (§6 senders).
    for what in ("RESET", "STEP", "RENDER", "CLOSE", "CALL"):
        unexpected("agent", "idle", what, why="only the agent sends it")
    for what in ("ENV_INFO", "RESET_RESULT", "STEP_RESULT", "RENDER_RESULT", "CLOSE_RESULT", "CALL_RESULT"):
        unexpected("env", "idle", what, why="only the env sends it")
    unexpected("env", "step", "STEP_RESULT", why="the env's own reply")
    unexpected("env", "describe", "ENV_INFO", why="the env's own message")
    # Before the handshake: only HELLO (or a fatal ERROR).
    for role in ("agent", "env"):
        for what in ("RESET", "STEP", "ENV_INFO", "STEP_RESULT", "ERROR"):
            unexpected(role, "hello", what)
    # describe: only ENV_INFO from the env.
    unexpected("env", "describe", "STEP", why="a command before ENV_INFO")
    unexpected("env", "describe", "RESET")
    unexpected("env", "describe", "HELLO_AGENT", why="a second HELLO")
    unexpected("agent", "describe", "RESET_RESULT")
    unexpected("agent", "describe", "HELLO_ENV", why="a second HELLO")
    unexpected("agent", "describe", "ERROR", why="a non-fatal ERROR answers no command")
    # idle: a reply with no command outstanding; a second HELLO or ENV_INFO.
    for what in ("RESET_RESULT", "STEP_RESULT", "RENDER_RESULT", "CALL_RESULT", "CLOSE_RESULT", "ERROR"):
        unexpected("agent", "idle", what, why="no command is outstanding")
    unexpected("agent", "idle", "ENV_INFO", why="ENV_INFO twice")
    unexpected("agent", "idle", "HELLO_ENV", why="HELLO twice")
    unexpected("env", "idle", "HELLO_AGENT", why="HELLO twice")
    unexpected("env", "idle", "ERROR", why="the agent never sends a non-fatal ERROR")
    # A command outstanding: only its own reply (or an ERROR from the env).
    replies = {
        "reset": "RESET_RESULT",
        "step": "STEP_RESULT",
        "render": "RENDER_RESULT",
        "call": "CALL_RESULT",
        "close": "CLOSE_RESULT",
    }
    for state, reply in replies.items():
        for other in replies.values():
            if other != reply:
                unexpected("agent", state, other, why=f"the reply to {state.upper()} is {reply}")
        unexpected("env", state, "STEP", why="one command at a time")
        unexpected("env", state, "ERROR", why="the agent never sends a non-fatal ERROR")
    unexpected("env", "step", "RESET", why="one command at a time")
    # closed: nothing at all, not even a fatal ERROR.
    for role, what in (
        ("env", "STEP"),
        ("env", "CLOSE"),
        ("env", "FATAL"),
        ("agent", "CLOSE_RESULT"),
        ("agent", "FATAL"),
    ):
        unexpected(role, "closed", what)
    # Several frames: the first is fine and moves the state, the second is not.
    v.reject(
        "env in hello receives HELLO then STEP (STEP in describe)",
        f["HELLO_AGENT"] + f["STEP"],
        "UNEXPECTED_MESSAGE",
        "env",
        "hello",
    )
    v.reject(
        "agent in step receives STEP_RESULT then STEP_RESULT (nothing outstanding)",
        f["STEP_RESULT"] + f["STEP_RESULT"],
        "UNEXPECTED_MESSAGE",
        "agent",
        "step",
    )
    v.reject(
        "agent in reset receives a non-fatal ERROR then RESET_RESULT",
        f["ERROR"] + f["RESET_RESULT"],
        "UNEXPECTED_MESSAGE",
        "agent",
        "reset",
    )
    v.reject(
        "agent in close receives a non-fatal ERROR (-> closed) then CLOSE_RESULT",
        f["ERROR"] + f["CLOSE_RESULT"],
        "UNEXPECTED_MESSAGE",
        "agent",
        "close",
    )
    v.reject(
        "env in idle receives a fatal ERROR (-> closed) then STEP",
        f["FATAL"] + f["STEP"],
        "UNEXPECTED_MESSAGE",
        "env",
        "idle",
    )

    # Handshake (§7): protocol, then version, then role, before any other field.
    def hs(name: str, role: str, body_value: Any, error: str) -> None:
        v.reject(f"handshake: {role} receives {name}", frame("HELLO", body_value), error, role, "hello")

    for role in ("agent", "env"):
        peer = "env" if role == "agent" else "agent"
        hs("version 2", role, hello(peer, version=2), "VERSION_MISMATCH")
        hs("version 0", role, hello(peer, version=0), "VERSION_MISMATCH")
        hs("version 2^64-1", role, hello(peer, version=2**64 - 1), "VERSION_MISMATCH")
        hs("its own role", role, hello(role), "ROLE_CONFLICT")
        hs("protocol 'http'", role, hello(peer, protocol="http"), "BAD_MAGIC")
    hs("version -1", "env", hello("agent", version=-1), "VERSION_MISMATCH")
    hs("version as str '1'", "env", hello("agent", version="1"), "VERSION_MISMATCH")
    hs(
        "a future HELLO: version 2 with other fields (no field error)",
        "env",
        {"protocol": "rlay", "version": 2, "role": "agent", "auth": {"scheme": "token"}, "sdk": 7},
        "VERSION_MISMATCH",
    )
    hs(
        "a future HELLO: only protocol and version",
        "agent",
        {"protocol": "rlay", "version": 3},
        "VERSION_MISMATCH",
    )
    hs("role 'observer'", "env", hello("observer"), "ROLE_CONFLICT")
    hs("role nil", "agent", {**hello("env"), "role": None}, "ROLE_CONFLICT")
    hs("protocol 'RLAY' (case matters)", "env", hello("agent", protocol="RLAY"), "BAD_MAGIC")
    hs("protocol nil", "env", hello("agent", protocol=None), "BAD_MAGIC")
    hs(
        "no protocol field",
        "env",
        {k: x for k, x in hello("agent").items() if k != "protocol"},
        "BAD_MAGIC",
    )
    hs(
        "order: protocol 'x' and version 2 -> protocol first",
        "env",
        hello("agent", protocol="x", version=2),
        "BAD_MAGIC",
    )
    hs(
        "order: version 2 and the same role -> version first",
        "env",
        hello("env", version=2),
        "VERSION_MISMATCH",
    )
    hs(
        "order: the same role and a missing field -> role first",
        "env",
        {k: x for k, x in hello("env").items() if k != "sdk"},
        "ROLE_CONFLICT",
    )
    hs(
        "a valid head but a missing field",
        "env",
        {k: x for k, x in hello("agent").items() if k != "sdk_version"},
        "BAD_FIELD",
    )
    hs("a valid head but sdk is an int", "agent", hello("env", sdk=1), "BAD_FIELD")

    # §13: the first frame a side receives is at most max_handshake_frame_size (64 KiB), checked
    # on its header; later frames (ENV_INFO, commands, replies) have the full max_frame_size.
    def head(kind: str, data_len: int, body_len: int) -> bytes:
        return header(KIND[kind], data_len, body_len)

    big = MAX_HANDSHAKE_FRAME
    for role, peer_kind, state in (
        ("env", "HELLO", "hello"),
        ("agent", "HELLO", "hello"),
        ("agent", "ERROR", "hello"),
    ):
        v.reject(
            f"handshake limit: {role} in hello receives a {peer_kind} header of {big + 1} bytes",
            head(peer_kind, 0, big + 1),
            "FRAME_TOO_LARGE",
            role,
            state,
        )
    v.reject(
        f"handshake limit: env in hello receives a HELLO header of data {big} + body 1",
        head("HELLO", big, 1),
        "FRAME_TOO_LARGE",
        "env",
        "hello",
    )
    v.reject(
        f"handshake limit: env in hello accepts a HELLO header of exactly {big} bytes (then the stream ends)",
        head("HELLO", 0, big),
        "TRUNCATED",
        "env",
        "hello",
    )
    v.reject(
        "after the handshake: agent in describe accepts an ENV_INFO header of 16 MiB (then the stream ends)",
        head("ENV_INFO", 8 << 20, 8 << 20),
        "TRUNCATED",
        "agent",
        "describe",
    )
    v.reject(
        "after the handshake: env in idle accepts a STEP header of 1 MiB (then the stream ends)",
        head("STEP", 0, 1 << 20),
        "TRUNCATED",
        "env",
        "idle",
    )
    v.reject(
        f"stand-alone: a HELLO header of {big + 1} bytes is within max_frame_size (then the stream ends)",
        head("HELLO", 0, big + 1),
        "TRUNCATED",
    )
    hs("a body that is an array (HELLO is a map in every version)", "env", ["rlay", 1, "agent"], "BAD_FIELD")
    hs("role is an int", "env", {**hello("agent"), "role": 2}, "ROLE_CONFLICT")
    hs("no role field", "agent", {k: x for k, x in hello("env").items() if k != "role"}, "ROLE_CONFLICT")

    # A stream that ends inside a frame header: TRUNCATED, so a vector that ends with it proves
    # that every frame before it was accepted.
    cut = frame("CLOSE", message("CLOSE"))[:5]

    # §6/§11: an ERROR with a code 1-15 is fatal whatever its `fatal` field says.
    def err(code: int, fatal: bool) -> bytes:
        return frame(
            "ERROR", message("ERROR", code=code, message="x", fatal=fatal, remote_type=None, traceback=None)
        )

    for code in (1, 7, 15):
        v.reject(
            f"env in idle receives ERROR code {code} with fatal=false: fatal all the same (-> closed), "
            "then the stream ends inside a frame",
            err(code, False) + cut,
            "TRUNCATED",
            "env",
            "idle",
        )
    v.reject(
        "env in idle receives ERROR code 32 with fatal=false: a non-fatal ERROR (the agent never sends one)",
        err(32, False) + cut,
        "UNEXPECTED_MESSAGE",
        "env",
        "idle",
    )
    v.reject(
        "agent in step receives ERROR code 15 with fatal=false (-> closed), then STEP_RESULT",
        err(15, False) + f["STEP_RESULT"],
        "UNEXPECTED_MESSAGE",
        "agent",
        "step",
    )

    # §6: a space field that is not a map is BAD_FIELD; a map that is not a space is BAD_SPACE.
    info = cartpole_info()
    for name, space, error in (
        ("observation_space is an int", 5, "BAD_FIELD"),
        ("action_space is an array", [], "BAD_FIELD"),
        ("observation_space of an unknown kind", {"kind": "nope"}, "BAD_SPACE"),
        ("observation_space discrete n 0", discrete(0), "BAD_SPACE"),
        ("observation_space box of dtype 'float128'", {**discrete(2), "dtype": "float128"}, "UNKNOWN_DTYPE"),
    ):
        v.reject(
            f"agent in describe receives ENV_INFO: {name}",
            frame(
                "ENV_INFO",
                {**info, "observation_space": space}
                if "observation" in name
                else {**info, "action_space": space},
            ),
            error,
            "agent",
            "describe",
        )

    # §10: replies and RESET against the session's num_envs (BAD_FIELD). Accepted ones are
    # followed by a cut frame (TRUNCATED).
    def step_result(reward: Any, terminated: Any, truncated: Any, obs: Any = 1) -> bytes:
        return frame(
            "STEP_RESULT",
            message(
                "STEP_RESULT", obs=obs, reward=reward, terminated=terminated, truncated=truncated, info={}
            ),
        )

    b3 = t("bool", [False, True, False])
    r3 = t("float64", [1.0, 0.0, -1.0])
    a3 = t("int64", [1, 0, 1])
    batched_ok = step_result(r3, b3, b3, a3)
    v.reject(
        "agent in step (num_envs 3) accepts a batched STEP_RESULT",
        batched_ok + cut,
        "TRUNCATED",
        "agent",
        "step",
        3,
    )
    v.reject(
        "agent in step (num_envs 1) accepts an int reward (a float field)",
        step_result(1, False, True) + cut,
        "TRUNCATED",
        "agent",
        "step",
        1,
    )
    for name, stream, n in (
        ("num_envs 1: reward is a float64 tensor (1,)", step_result(t("float64", [1.0]), False, False), 1),
        ("num_envs 1: terminated is a bool tensor (1,)", step_result(1.0, t("bool", [True]), False), 1),
        ("num_envs 3: reward is a float", step_result(1.0, b3, b3, a3), 3),
        ("num_envs 3: terminated is a bool", step_result(r3, False, b3, a3), 3),
        ("num_envs 3: reward of 2 sub-envs", step_result(t("float64", [1.0, 0.0]), b3, b3, a3), 3),
        ("num_envs 3: truncated of 4 sub-envs", step_result(r3, b3, t("bool", [0, 0, 0, 1]), a3), 3),
        ("num_envs 3: reward is float32", step_result(t("float32", [1.0, 0.0, 0.0]), b3, b3, a3), 3),
        ("num_envs 3: terminated is uint8", step_result(r3, t("uint8", [0, 1, 0]), b3, a3), 3),
    ):
        v.reject(f"agent in step receives STEP_RESULT, {name}", stream, "BAD_FIELD", "agent", "step", n)
    v.reject(
        "agent in call (num_envs 3) receives CALL_RESULT with 2 values",
        frame("CALL_RESULT", message("CALL_RESULT", value=[1, 2])),
        "BAD_FIELD",
        "agent",
        "call",
        3,
    )
    v.reject(
        "agent in call (num_envs 3) accepts CALL_RESULT with 3 values",
        frame("CALL_RESULT", message("CALL_RESULT", value=[1, None, "x"])) + cut,
        "TRUNCATED",
        "agent",
        "call",
        3,
    )
    v.reject(
        "agent in render (num_envs 3) receives RENDER_RESULT whose frame is a str",
        frame("RENDER_RESULT", message("RENDER_RESULT", frame="ansi")),
        "BAD_FIELD",
        "agent",
        "render",
        3,
    )
    v.reject(
        "agent in render (num_envs 3) accepts RENDER_RESULT with a nil frame",
        frame("RENDER_RESULT", message("RENDER_RESULT", frame=None)) + cut,
        "TRUNCATED",
        "agent",
        "render",
        3,
    )

    def reset(seed: Any, options: Any = None) -> bytes:
        return frame("RESET", message("RESET", seed=seed, options=options))

    u64 = 2**64 - 1
    for name, stream, n in (
        ("seed -1", reset(-1), 1),
        ("seed -1 (num_envs 3)", reset(-1), 3),
        ("seed 2^64-2 (num_envs 3): seed + 2 overflows", reset(u64 - 1), 3),
        ("a seed array when num_envs is 1", reset([5]), 1),
        ("a seed array of 2 (num_envs 3)", reset([1, 2]), 3),
        ("a seed array of 4 (num_envs 3)", reset([1, 2, 3, 4]), 3),
        ("a seed array holding -1 (num_envs 3)", reset([1, None, -1]), 3),
        ("reset_mask is an int8 tensor (num_envs 3)", reset(None, {"reset_mask": t("int8", [1, 0, 1])}), 3),
        ("reset_mask of 2 (num_envs 3)", reset(None, {"reset_mask": t("bool", [True, False])}), 3),
        ("reset_mask is an array of bools (num_envs 3)", reset(None, {"reset_mask": [True, False, True]}), 3),
        ("reset_mask is a bool (num_envs 3)", reset(None, {"reset_mask": True}), 3),
    ):
        v.reject(f"env in idle receives RESET, {name}", stream, "BAD_FIELD", "env", "idle", n)
    for name, stream, n in (
        ("seed 2^64-1 (num_envs 1)", reset(u64), 1),
        ("seed 2^64-3 (num_envs 3): sub-env 2 gets 2^64-1", reset(u64 - 2), 3),
        ("seed array of 3 int/nil (num_envs 3)", reset([0, None, u64]), 3),
        ("reset_mask bool (3,) (num_envs 3)", reset(7, {"reset_mask": t("bool", [False, True, False])}), 3),
        ("reset_mask of any type when num_envs is 1 (an ordinary option)", reset(7, {"reset_mask": "x"}), 1),
    ):
        v.reject(f"env in idle accepts RESET, {name}", stream + cut, "TRUNCATED", "env", "idle", n)
    return v


# ------------------------------------------------------------------------------------------------
# spaces.json


B2_EXPR = (
    "Box(low=np.array([-1.0, -2.0], np.float32), high=np.array([1.0, 2.0], np.float32), dtype=np.float32)"
)


def f32(*values: float) -> Tensor:
    return t("float32", list(values))


def gen_spaces() -> Vectors:
    v = Vectors(
        "spaces.json",
        "Space vectors (§9). `space`: a vector with the Gymnasium space (`space`, a Python expression"
        " over gymnasium.spaces and numpy as np, for reference), its descriptor in the JSON notation,"
        " the descriptor's canonical encoding as a stand-alone value (`bytes` = body, `data` = data "
        "section), and sample values of the space in wire form, each with its canonical `body` and "
        "`data`. `space_reject`: a descriptor a receiver must refuse with `error`. `value_reject`: a "
        "wire value that does not match the structure of `descriptor`'s space (BAD_VALUE). Values are"
        " never checked against bounds here (§9).",
    )

    def space(name: str, expr: str, desc: dict[str, Any], values: list[Any]) -> None:
        body, data = pack(desc)
        samples = []
        for value in values:
            vb, vd = pack(value)
            samples.append({"value": to_json(value), "body": vb.hex(), "data": vd.hex()})
        v.add(
            {
                "name": name,
                "type": "space",
                "space": expr,
                "descriptor": to_json(desc),
                "bytes": body.hex(),
                "data": data.hex(),
                "values": samples,
            }
        )

    b2 = box("float32", f32(-1.0, -2.0), f32(1.0, 2.0))
    d3 = discrete(3)
    space(
        "box float32 (2,)",
        B2_EXPR,
        b2,
        [f32(0.5, -1.5), f32(-1.0, 2.0)],
    )
    space(
        "box float64 (2,2) with inf, -0.0 and a point interval",
        "Box(low=np.array([[-np.inf, -0.0], [0.0, 1.0]]), high=np.array([[np.inf, 0.0], [np.inf, 1.0]]),"
        " dtype=np.float64)",
        box("float64", t("float64", [[-INF, -0.0], [0.0, 1.0]]), t("float64", [[INF, 0.0], [INF, 1.0]])),
        [t("float64", [[1e300, -0.0], [0.5, 1.0]])],
    )
    space(
        "box uint8 (2,2,3) image",
        "Box(low=0, high=255, shape=(2, 2, 3), dtype=np.uint8)",
        box("uint8", t("uint8", [0] * 12, (2, 2, 3)), t("uint8", [255] * 12, (2, 2, 3))),
        [t("uint8", list(range(0, 240, 20)), (2, 2, 3))],
    )
    space(
        "box int64 (3,) with large bounds",
        "Box(low=np.array([-5, 0, -(2**62)]), high=np.array([5, 10, 2**62]), dtype=np.int64)",
        box("int64", t("int64", [-5, 0, -(2**62)]), t("int64", [5, 10, 2**62])),
        [t("int64", [-5, 10, 2**61])],
    )
    space(
        "box bool (2,)",
        "Box(low=0, high=1, shape=(2,), dtype=np.bool_)",
        box("bool", t("bool", [False, False]), t("bool", [True, True])),
        [t("bool", [True, False])],
    )
    space(
        "box float16 0-d",
        "Box(low=-1.0, high=1.0, shape=(), dtype=np.float16)",
        box("float16", t("float16", -1.0, ()), t("float16", 1.0, ())),
        [t("float16", 0.5, ())],
    )
    space("discrete(2)", "Discrete(2)", discrete(2), [0, 1])
    space("discrete(5, start=-2)", "Discrete(5, start=-2)", discrete(5, start=-2), [-2, 2])
    space("discrete int32 dtype", "Discrete(3, dtype=np.int32)", discrete(3, dtype="int32"), [2])
    space(
        "discrete with a start past 2^32",
        "Discrete(2, start=2**40)",
        discrete(2, start=2**40),
        [2**40, 2**40 + 1],
    )
    space(
        "multi_discrete [3, 4]",
        "MultiDiscrete([3, 4])",
        {"kind": "multi_discrete", "nvec": t("int64", [3, 4]), "start": t("int64", [0, 0])},
        [t("int64", [2, 3])],
    )
    space(
        "multi_discrete int32 (2,2) with start",
        "MultiDiscrete(np.array([[2, 3], [4, 5]]), dtype=np.int32, start=np.array([[-1, 0], [0, 1]]))",
        {
            "kind": "multi_discrete",
            "nvec": t("int32", [[2, 3], [4, 5]]),
            "start": t("int32", [[-1, 0], [0, 1]]),
        },
        [t("int32", [[-1, 2], [3, 5]])],
    )
    space("multi_binary 4", "MultiBinary(4)", {"kind": "multi_binary", "n": 4}, [t("int8", [0, 1, 1, 0])])
    space(
        "multi_binary [2, 2] (kept apart from 4)",
        "MultiBinary([2, 2])",
        {"kind": "multi_binary", "n": [2, 2]},
        [t("int8", [[1, 0], [0, 1]])],
    )
    space(
        "multi_binary [5] (kept apart from 5)",
        "MultiBinary([5])",
        {"kind": "multi_binary", "n": [5]},
        [t("int8", [1, 1, 0, 0, 1])],
    )
    alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    space(
        "text with the default charset",
        "Text(5)",
        {"kind": "text", "min_length": 1, "max_length": 5, "charset": alnum},
        ["a", "Ab12z"],
    )
    space(
        "text with a charset given out of order and min_length 0",
        'Text(max_length=3, min_length=0, charset="cba")',
        {"kind": "text", "min_length": 0, "max_length": 3, "charset": "abc"},
        ["", "cab"],
    )
    space(
        "text with non-ASCII characters",
        'Text(max_length=4, charset="\u00e9\u65e5a")',
        {"kind": "text", "min_length": 1, "max_length": 4, "charset": "a\u00e9\u65e5"},
        ["\u65e5\u00e9"],
    )
    space(
        "dict keeps its key order (not sorted)",
        'Dict([("pos", Box(low=np.array([-1.0, -2.0], np.float32), high=np.array([1.0, 2.0], np.float32),'
        ' dtype=np.float32)), ("id", Discrete(3))])',
        {"kind": "dict", "spaces": {"pos": b2, "id": d3}},
        [{"pos": f32(0.0, 1.0), "id": 2}],
    )
    space(
        "tuple of discrete and box",
        f"Tuple((Discrete(3), {B2_EXPR}))",
        {"kind": "tuple", "spaces": [d3, b2]},
        [[1, f32(0.25, 0.5)]],
    )
    space(
        "sequence of discrete",
        "Sequence(Discrete(3))",
        {"kind": "sequence", "space": d3, "stack": False},
        [[], [0, 2, 1]],
    )
    space(
        "sequence of box, stacked",
        f"Sequence({B2_EXPR}, stack=True)",
        {"kind": "sequence", "space": b2, "stack": True},
        [[f32(0.0, 0.5), f32(1.0, -2.0)]],
    )
    space(
        "graph with box nodes and discrete edges",
        f"Graph(node_space={B2_EXPR}, edge_space=Discrete(3))",
        {"kind": "graph", "node_space": b2, "edge_space": d3},
        [
            {
                "nodes": t("float32", [[0.0, 0.5], [1.0, -1.0], [-0.5, 2.0]]),
                "edges": t("int64", [0, 2]),
                "edge_links": t("int64", [[0, 1], [2, 0]]),
            }
        ],
    )
    space(
        "graph whose edge_links are int32 (Gymnasium's Graph.sample() dtype, kept as is)",
        f"Graph(node_space={B2_EXPR}, edge_space=Discrete(3))",
        {"kind": "graph", "node_space": b2, "edge_space": d3},
        [
            {
                "nodes": t("float32", [[0.0, 0.5], [1.0, -1.0]]),
                "edges": t("int64", [1]),
                "edge_links": t("int32", [[1, 0]]),
            },
            {"nodes": t("float32", [[0.0, 0.5]]), "edges": None, "edge_links": None},
        ],
    )
    space(
        "discrete uint64 starting at 2^63 + 5",
        "Discrete(3, start=2**63 + 5, dtype=np.uint64)",
        discrete(3, 2**63 + 5, "uint64"),
        [2**63 + 5, 2**63 + 7],
    )
    space(
        "graph with discrete nodes and no edge space",
        "Graph(node_space=Discrete(3), edge_space=None)",
        {"kind": "graph", "node_space": d3, "edge_space": None},
        [{"nodes": t("int64", [2, 0, 1]), "edges": None, "edge_links": None}],
    )
    space(
        "one_of discrete or box",
        f"OneOf((Discrete(3), {B2_EXPR}))",
        {"kind": "one_of", "spaces": [d3, b2]},
        [[0, 2], [1, f32(-1.0, 1.0)]],
    )
    space(
        "nested: dict of tuple of dict, with a sequence inside",
        'Dict([("agent", Tuple((Dict([("hp", Discrete(3))]), Sequence(MultiBinary(2))))), ("t", Text(2))])',
        {
            "kind": "dict",
            "spaces": {
                "agent": {
                    "kind": "tuple",
                    "spaces": [
                        {"kind": "dict", "spaces": {"hp": d3}},
                        {"kind": "sequence", "space": {"kind": "multi_binary", "n": 2}, "stack": False},
                    ],
                },
                "t": {"kind": "text", "min_length": 1, "max_length": 2, "charset": alnum},
            },
        },
        [{"agent": [{"hp": 1}, [t("int8", [1, 0]), t("int8", [0, 0])]], "t": "ok"}],
    )

    def bad_space(name: str, desc: Any, error: str = "BAD_SPACE") -> None:
        v.add({"name": name, "type": "space_reject", "descriptor": to_json(desc), "error": error})

    bad_space("descriptor is not a map", [b2])
    bad_space("unknown kind", {**b2, "kind": "boxes"})
    bad_space("kind is not a str", {**d3, "kind": 1})
    bad_space("kind missing", {k: x for k, x in d3.items() if k != "kind"})
    bad_space("box without high", {k: x for k, x in b2.items() if k != "high"})
    bad_space("box with an extra field", {**b2, "bounded": True})
    bad_space("box low of the wrong shape", {**b2, "low": f32(-1.0, -2.0, -3.0)})
    bad_space("box low of the wrong dtype", {**b2, "low": t("float64", [-1.0, -2.0])})
    bad_space("box shape is not an array", {**b2, "shape": 2})
    bad_space("box dtype unknown", {**b2, "dtype": "complex64"}, "UNKNOWN_DTYPE")
    bad_space("discrete n 0", discrete(0))
    bad_space("discrete n is a str", {**d3, "n": "3"})
    bad_space("discrete dtype float32", discrete(3, dtype="float32"))
    bad_space(
        "multi_discrete start of another shape",
        {"kind": "multi_discrete", "nvec": t("int64", [3, 4]), "start": t("int64", [0])},
    )
    bad_space(
        "text min_length > max_length", {"kind": "text", "min_length": 4, "max_length": 3, "charset": "ab"}
    )
    bad_space("dict spaces is an array", {"kind": "dict", "spaces": [d3]})
    bad_space("tuple spaces is a map", {"kind": "tuple", "spaces": {"a": d3}})
    bad_space("sequence without stack", {"kind": "sequence", "space": d3})
    bad_space("sequence stack is an int", {"kind": "sequence", "space": d3, "stack": 1})
    bad_space(
        "graph node space is a dict",
        {"kind": "graph", "node_space": {"kind": "dict", "spaces": {}}, "edge_space": None},
    )
    bad_space(
        "text charset out of order", {"kind": "text", "min_length": 1, "max_length": 3, "charset": "ba"}
    )
    bad_space(
        "text charset with a character twice",
        {"kind": "text", "min_length": 1, "max_length": 3, "charset": "abb"},
    )
    bad_space("discrete uint64 whose last value passes 2^64-1", discrete(3, 2**64 - 2, "uint64"))
    bad_space("a bad space nested in a dict", {"kind": "dict", "spaces": {"a": d3, "b": discrete(0)}})

    def bad_value(name: str, desc: dict[str, Any], value: Any) -> None:
        v.add(
            {
                "name": name,
                "type": "value_reject",
                "descriptor": to_json(desc),
                "value": to_json(value),
                "error": "BAD_VALUE",
            }
        )

    bad_value("box value of another dtype", b2, t("float64", [0.0, 0.0]))
    bad_value("box value of another shape", b2, f32(0.0, 0.0, 0.0))
    bad_value("box value as an array of floats", b2, [0.0, 0.0])
    bad_value("discrete value is a str", d3, "1")
    bad_value("discrete value is a float", d3, 1.0)
    bad_value("discrete value is a bool", d3, True)
    bad_value("discrete value is a float tensor", d3, t("float64", 1.0, ()))
    bad_value("multi_binary value of uint8", {"kind": "multi_binary", "n": 2}, t("uint8", [0, 1]))
    bad_value(
        "text value is bytes", {"kind": "text", "min_length": 1, "max_length": 3, "charset": "ab"}, b"ab"
    )
    bad_value(
        "dict value missing a key", {"kind": "dict", "spaces": {"pos": b2, "id": d3}}, {"pos": f32(0.0, 0.0)}
    )
    bad_value(
        "dict value with an extra key",
        {"kind": "dict", "spaces": {"id": d3}},
        {"id": 1, "other": 2},
    )
    bad_value("tuple value too short", {"kind": "tuple", "spaces": [d3, d3]}, [1])
    bad_value("sequence value is a map", {"kind": "sequence", "space": d3, "stack": False}, {"0": 1})
    bad_value("one_of index out of range", {"kind": "one_of", "spaces": [d3]}, [1, 0])
    bad_value("one_of value is not a pair", {"kind": "one_of", "spaces": [d3]}, [0])
    bad_value(
        "graph value without edge_links",
        {"kind": "graph", "node_space": d3, "edge_space": d3},
        {"nodes": t("int64", [0, 1]), "edges": t("int64", [0])},
    )
    g_none = {"kind": "graph", "node_space": d3, "edge_space": None}
    bad_value(
        "graph without edge space but with edges and edge_links",
        g_none,
        {"nodes": t("int64", [0, 1]), "edges": t("int64", [0]), "edge_links": t("int64", [[0, 1]])},
    )
    bad_value(
        "graph without edge space but with empty edge_links",
        g_none,
        {"nodes": t("int64", [0, 1]), "edges": None, "edge_links": t("int64", [], (0, 2))},
    )
    g3 = {"kind": "graph", "node_space": d3, "edge_space": d3}
    bad_value(
        "graph edge_links of int16",
        g3,
        {"nodes": t("int64", [0, 1]), "edges": t("int64", [0]), "edge_links": t("int16", [[0, 1]])},
    )
    bad_value(
        "graph nodes of another dtype than the node space",
        g3,
        {"nodes": t("int32", [0, 1]), "edges": None, "edge_links": None},
    )
    bad_value("discrete uint64 value given as a float", discrete(3, 2**63 + 5, "uint64"), float(2**63))
    return v


# ------------------------------------------------------------------------------------------------
# Multi-agent (spec §18) — this block only. Two files:
# - multi_agent.json: the v1 frames a multi-agent session uses (a HELLO announcing `multi_agent`,
#   an ENV_INFO with one dict entry per agent). Every SDK passes them, with or without §18.
# - multi_agent/multi_agent.json: MULTI_STEP and MULTI_RESULT (kinds 8, 9), for SDKs with §18 only
#   (an SDK without it answers UNKNOWN_KIND); not in the top-level files every runner reads.

KIND.update({"MULTI_STEP": 8, "MULTI_RESULT": 9})
FIELDS.update(
    {
        "MULTI_STEP": ("actions",),
        "MULTI_RESULT": ("agents", "obs", "rewards", "terminations", "truncations", "infos"),
    }
)


def arena_info() -> dict[str, Any]:
    """The ENV_INFO of a three-agent game: per-agent spaces, in possible_agents order."""
    return message(
        "ENV_INFO",
        observation_space={
            "kind": "dict",
            "spaces": {
                "hunter": box("float32", t("float32", [-INF] * 3), t("float32", [INF] * 3)),
                "scout": box("float32", t("float32", [-10.0, -10.0]), t("float32", [10.0, 10.0])),
                "medic": discrete(16),
            },
        },
        action_space={
            "kind": "dict",
            "spaces": {
                "hunter": discrete(4),
                "scout": box("float32", t("float32", [-1.0, -1.0]), t("float32", [1.0, 1.0])),
                "medic": discrete(3, start=-1),
            },
        },
        num_envs=1,
        metadata={"render_modes": [], "name": "arena_v0"},
        render_mode=None,
        name="arena_v0",
    )


def gen_multi_agent_v1() -> Vectors:
    v = Vectors(
        "multi_agent.json",
        "Multi-agent (§18): the v1 messages of a multi-agent session — HELLOs announcing the "
        "multi_agent capability and an ENV_INFO whose two dict spaces list the possible agents. "
        "Every SDK passes these, whether or not it implements §18.",
    )
    v.encode(
        "HELLO agent announcing multi_agent", "HELLO", hello("agent", capabilities={"multi_agent": True})
    )
    v.encode(
        "HELLO env announcing multi_agent",
        "HELLO",
        hello("env", sdk="rlay-c", sdk_version="0.2.0", capabilities={"multi_agent": True}),
    )
    v.encode("ENV_INFO of three agents with their own spaces", "ENV_INFO", arena_info())
    return v


def gen_multi_agent() -> Vectors:
    v = Vectors(
        "multi_agent/multi_agent.json",
        "Multi-agent (§18): MULTI_STEP (kind 8) and MULTI_RESULT (kind 9), decoded stand-alone. "
        "For SDKs that implement §18 only: an SDK without it rejects kinds 8 and 9 as UNKNOWN_KIND.",
    )
    two = t("float32", [0.5, -0.25])
    v.encode(
        "MULTI_STEP, one action per live agent",
        "MULTI_STEP",
        message("MULTI_STEP", actions={"hunter": 2, "scout": two}),
    )
    v.encode("MULTI_STEP, no live agent", "MULTI_STEP", message("MULTI_STEP", actions={}))
    v.encode(
        "MULTI_RESULT after RESET (empty rewards and flags)",
        "MULTI_RESULT",
        message(
            "MULTI_RESULT",
            agents=["hunter", "scout"],
            obs={"hunter": t("float32", [0.0, 5.0, 0.0]), "scout": t("float32", [0.0, 0.0])},
            rewards={},
            terminations={},
            truncations={},
            infos={"hunter": {}, "scout": {}},
        ),
    )
    v.encode(
        "MULTI_RESULT after a step: scout leaves, medic joins",
        "MULTI_RESULT",
        message(
            "MULTI_RESULT",
            agents=["hunter", "medic"],
            obs={"hunter": t("float32", [2.0, 5.0, 1.0]), "scout": two, "medic": 2},
            rewards={"hunter": 1.0, "scout": -0.75, "medic": 0.0},
            terminations={"hunter": False, "scout": True, "medic": False},
            truncations={"hunter": False, "scout": False, "medic": False},
            infos={"hunter": {"score": 1.0}, "scout": {}, "medic": {}},
        ),
    )
    v.decode(  # §5: a float field accepts an int; the canonical form is a float 64
        "MULTI_RESULT with an int reward",
        "MULTI_RESULT",
        {
            "agents": [],
            "obs": {"medic": 3},
            "rewards": {"medic": Raw(b"\xd0\x01")},
            "terminations": {"medic": True},
            "truncations": {"medic": False},
            "infos": {"medic": {}},
        },
        b"",
        message(
            "MULTI_RESULT",
            agents=[],
            obs={"medic": 3},
            rewards={"medic": 1.0},
            terminations={"medic": True},
            truncations={"medic": False},
            infos={"medic": {}},
        ),
    )
    v.reject("MULTI_STEP.actions is an array", frame("MULTI_STEP", {"actions": [1, 2]}), "BAD_FIELD")
    v.reject("MULTI_STEP without actions", frame("MULTI_STEP", {}), "BAD_FIELD")
    result = message("MULTI_RESULT", agents=[], obs={}, rewards={}, terminations={}, truncations={}, infos={})
    v.reject("MULTI_RESULT.agents is a map", frame("MULTI_RESULT", {**result, "agents": {}}), "BAD_FIELD")
    v.reject("MULTI_RESULT.obs is nil", frame("MULTI_RESULT", {**result, "obs": None}), "BAD_FIELD")
    without = {k: x for k, x in result.items() if k != "infos"}
    v.reject("MULTI_RESULT without infos", frame("MULTI_RESULT", without), "BAD_FIELD")
    v.reject("MULTI_RESULT with an extra field", frame("MULTI_RESULT", {**result, "x": 1}), "BAD_FIELD")
    return v


# attributes.json -- side channels (§19): typed attributes over reserved CALL names. These are
# ordinary CALL / CALL_RESULT / ERROR frames, so an SDK without §19 passes them too; they pin the
# descriptor layout (§19.1) and the argument shapes (§19.2) byte for byte.

BAD_ATTRIBUTE = 20  # §11, §19


def attribute(
    kind: str,
    default: Any = None,
    lo: Any = None,
    hi: Any = None,
    choices: list[Any] | None = None,
    writable: bool = True,
    doc: str = "",
) -> dict[str, Any]:
    """A §19.1 descriptor, fields in canonical order."""
    return {
        "type": kind,
        "default": default,
        "min": lo,
        "max": hi,
        "choices": choices,
        "writable": writable,
        "doc": doc,
    }


def gen_attributes() -> Vectors:
    v = Vectors(
        "attributes.json",
        "Encode vectors of §19 (side channels): the reserved CALLs rlay.describe, rlay.get and "
        "rlay.set, their results, and a BAD_ATTRIBUTE (20) refusal.",
    )
    call = {"name": "rlay.describe", "args": [], "kwargs": {}}
    v.encode("CALL rlay.describe", "CALL", message("CALL", **call))
    table = {
        "time_scale": attribute("float", 1.0, 0.01, 100.0, doc="simulated seconds per real second"),
        "quality_level": attribute("int", 2, 0, 5),
        "paused": attribute("bool", False),
        "difficulty": attribute("str", "easy", choices=["easy", "hard"], writable=False),
    }
    v.encode(
        "CALL_RESULT of rlay.describe: four typed descriptors",
        "CALL_RESULT",
        message("CALL_RESULT", value=table),
    )
    v.encode(
        "CALL_RESULT of rlay.describe: an env side offering nothing",
        "CALL_RESULT",
        message("CALL_RESULT", value={}),
    )
    v.encode(
        "CALL_RESULT of rlay.describe, batched (num_envs 2): one table per sub-env",
        "CALL_RESULT",
        message("CALL_RESULT", value=[{"gravity": attribute("float", 9.8, 0.0, None)}] * 2),
    )
    v.encode(
        "CALL rlay.get time_scale",
        "CALL",
        message("CALL", name="rlay.get", args=["time_scale"], kwargs={}),
    )
    v.encode("CALL_RESULT of rlay.get: a float", "CALL_RESULT", message("CALL_RESULT", value=1.0))
    v.encode(
        "CALL rlay.set time_scale 20.0 (a float attribute travels as float 64)",
        "CALL",
        message("CALL", name="rlay.set", args=["time_scale", 20.0], kwargs={}),
    )
    v.encode(
        "CALL rlay.set, batched: one value per sub-env",
        "CALL",
        message("CALL", name="rlay.set", args=["gravity", [9.8, 4.9]], kwargs={}),
    )
    v.encode(
        "CALL_RESULT of rlay.set, batched (num_envs 2)",
        "CALL_RESULT",
        message("CALL_RESULT", value=[None, None]),
    )
    v.encode(
        "ERROR BAD_ATTRIBUTE (20), non-fatal: a value below its minimum",
        "ERROR",
        message(
            "ERROR",
            code=BAD_ATTRIBUTE,
            message="attribute 'time_scale': 0.0 is below its minimum 0.01",
            fatal=False,
            remote_type=None,
            traceback=None,
        ),
    )
    return v


GENERATORS: list[Callable[[], Vectors]] = [
    gen_messages,
    gen_values,
    gen_decode,
    gen_reject_framing,
    gen_reject_values,
    gen_reject_fields,
    gen_reject_states,
    gen_spaces,
    gen_multi_agent_v1,  # §18
    gen_attributes,  # §19 side channels
]

#: Vectors of a capability, in a folder of their own: only SDKs that implement it run them.
CAPABILITY_GENERATORS: list[Callable[[], Vectors]] = [
    gen_multi_agent,  # §18: multi_agent/
]


def build() -> dict[str, str]:
    """Return ``{filename: text}`` of every vector file."""
    out = {}
    for gen in GENERATORS:
        vectors = gen()
        out[vectors.filename] = vectors.dumps()
    return out


def build_capabilities() -> dict[str, str]:
    """Return ``{relative path: text}`` of every capability's own vector file."""
    return {vectors.filename: vectors.dumps() for vectors in (gen() for gen in CAPABILITY_GENERATORS)}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in {**build(), **build_capabilities()}.items():
        path = HERE / name
        path.parent.mkdir(exist_ok=True)  # multi_agent/ (§18's own vectors)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale vector files (run spec/vectors/generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
