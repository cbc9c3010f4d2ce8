"""Spaces and values <-> wire (spec/protocol.md §9, §10), always through the real codec bytes."""

from __future__ import annotations

import copy
import math
import os
import struct
import warnings
from collections import OrderedDict
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.spaces import (
    Box,
    Dict,
    Discrete,
    Graph,
    GraphInstance,
    MultiBinary,
    MultiDiscrete,
    OneOf,
    Sequence,
    Text,
    Tuple,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from spaces_catalogue import BOX_DTYPES, IDS, SPACES

from rlay.errors import EncodeError, ProtocolError, SpaceError, UsageError
from rlay.protocol.codec import Encoder, decode
from rlay.protocol.wire import ErrorCode
from rlay.spaces import SpaceCodec, batched, describe, from_descriptor

# Gymnasium's own Box.contains warns when Graph/Sequence checks hand it NumPy scalars.
pytestmark = pytest.mark.filterwarnings("ignore:.*Casting input x to numpy array")

# §9: field order of each descriptor kind (canonical).
FIELDS = {
    "box": ["kind", "dtype", "shape", "low", "high"],
    "discrete": ["kind", "n", "start", "dtype"],
    "multi_discrete": ["kind", "nvec", "start"],
    "multi_binary": ["kind", "n"],
    "text": ["kind", "min_length", "max_length", "charset"],
    "dict": ["kind", "spaces"],
    "tuple": ["kind", "spaces"],
    "sequence": ["kind", "space", "stack"],
    "graph": ["kind", "node_space", "edge_space"],
    "one_of": ["kind", "spaces"],
}


# -- helpers -----------------------------------------------------------------------------------


def through_bytes(value: Any) -> Any:
    """Encode ``value`` with the real encoder and decode it from a fresh receive buffer."""
    body, chunks, data_len = Encoder().encode(value)
    data = bytearray(b"".join(bytes(memoryview(c)) for c in chunks))
    assert len(data) == data_len
    return decode(bytes(body), memoryview(data))


def space_through_bytes(space: gym.Space[Any]) -> gym.Space[Any]:
    return from_descriptor(through_bytes(describe(space)))


def assert_same(actual: Any, expected: Any, path: str = "value") -> None:
    """Exact equality: same types, dtypes, shapes, bytes (NaN payloads, -0.0), key order."""
    if isinstance(expected, np.ndarray):
        assert type(actual) is np.ndarray, f"{path}: {type(actual)}"
        assert actual.dtype == expected.dtype, f"{path}: {actual.dtype} != {expected.dtype}"
        assert actual.shape == expected.shape, f"{path}: {actual.shape} != {expected.shape}"
        assert actual.tobytes() == expected.tobytes(), f"{path}: {actual!r} != {expected!r}"
    elif isinstance(expected, np.generic):
        assert type(actual) is type(expected), f"{path}: {type(actual)} != {type(expected)}"
        assert actual.tobytes() == expected.tobytes(), f"{path}: {actual!r} != {expected!r}"
    elif isinstance(expected, GraphInstance):
        assert isinstance(actual, GraphInstance), path
        for field in ("nodes", "edges", "edge_links"):
            assert_same(getattr(actual, field), getattr(expected, field), f"{path}.{field}")
    elif isinstance(expected, dict):
        assert type(actual) is dict, f"{path}: {type(actual)}"
        assert list(actual) == list(expected), f"{path}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_same(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, (tuple, list)):
        assert type(actual) is type(expected), f"{path}: {type(actual)} != {type(expected)}"
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{path}[{i}]")
    else:
        assert type(actual) is type(expected), f"{path}: {type(actual)} != {type(expected)}"
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def assert_same_space(actual: gym.Space[Any], expected: gym.Space[Any], path: str = "space") -> None:
    """Stricter than ``==`` (Box.__eq__ uses allclose, Dict.__eq__ ignores order)."""
    assert type(actual) is type(expected), f"{path}: {type(actual)} != {type(expected)}"
    assert actual == expected, path
    if isinstance(expected, Box):
        assert isinstance(actual, Box)
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, path
        assert_same(actual.low, expected.low, f"{path}.low")
        assert_same(actual.high, expected.high, f"{path}.high")
    elif isinstance(expected, Discrete):
        assert isinstance(actual, Discrete)
        assert_same(actual.n, expected.n, f"{path}.n")
        assert_same(actual.start, expected.start, f"{path}.start")
    elif isinstance(expected, MultiDiscrete):
        assert isinstance(actual, MultiDiscrete)
        assert_same(actual.nvec, expected.nvec, f"{path}.nvec")
        assert_same(actual.start, expected.start, f"{path}.start")
    elif isinstance(expected, MultiBinary):
        assert_same(actual.n, expected.n, f"{path}.n")  # 5 and (5,) stay apart
    elif isinstance(expected, Text):
        assert isinstance(actual, Text)
        assert (actual.min_length, actual.max_length) == (expected.min_length, expected.max_length), path
        assert actual.characters == expected.characters, path
    elif isinstance(expected, Dict):
        assert isinstance(actual, Dict)
        assert list(actual.spaces) == list(expected.spaces), f"{path}: key order"
        for key in expected.spaces:
            assert_same_space(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, (Tuple, OneOf)):
        assert isinstance(actual, (Tuple, OneOf))
        for i, (a, e) in enumerate(zip(actual.spaces, expected.spaces, strict=True)):
            assert_same_space(a, e, f"{path}[{i}]")
    elif isinstance(expected, Sequence):
        assert isinstance(actual, Sequence)
        assert actual.stack is expected.stack, path
        assert_same_space(actual.feature_space, expected.feature_space, f"{path}.feature")
    elif isinstance(expected, Graph):
        assert isinstance(actual, Graph)
        assert_same_space(actual.node_space, expected.node_space, f"{path}.node")
        if expected.edge_space is None:
            assert actual.edge_space is None, path
        else:
            assert actual.edge_space is not None, path
            assert_same_space(actual.edge_space, expected.edge_space, f"{path}.edge")


def expected_value(space: gym.Space[Any], v: Any) -> Any:
    """What a value of ``space`` must decode to, per §9's value table (an oracle independent of
    the codec under test)."""
    if isinstance(space, (Box, MultiDiscrete, MultiBinary)):
        return np.array(v, dtype=space.dtype)  # (ascontiguousarray would make 0-d arrays 1-d)
    if isinstance(space, Discrete):
        return space.dtype.type(int(v))
    if isinstance(space, Text):
        return v
    if isinstance(space, Dict):
        return {key: expected_value(sub, v[key]) for key, sub in space.spaces.items()}
    if isinstance(space, Tuple):
        return tuple(expected_value(sub, x) for sub, x in zip(space.spaces, v, strict=True))
    if isinstance(space, Sequence):
        if space.stack:
            return expected_stacked(space.feature_space, v)
        return tuple(expected_value(space.feature_space, x) for x in v)
    if isinstance(space, Graph):
        edges = None if v.edges is None else np.asarray(v.edges, dtype=space.edge_space.dtype)
        # §9: int32 links (Gymnasium's own Graph.sample()) keep their dtype; others become int64.
        link_dtype = np.int32 if getattr(v.edge_links, "dtype", None) == np.int32 else np.int64
        links = None if v.edge_links is None else np.asarray(v.edge_links, dtype=link_dtype)
        return GraphInstance(np.asarray(v.nodes, dtype=space.node_space.dtype), edges, links)
    if isinstance(space, OneOf):
        return (np.int64(v[0]), expected_value(space.spaces[int(v[0])], v[1]))
    raise AssertionError(f"no oracle for {space}")


def expected_stacked(feature: gym.Space[Any], v: Any) -> Any:
    """A stacked Sequence value, as Gymnasium's create_empty_array + concatenate build it."""
    if isinstance(feature, (Box, Discrete, MultiDiscrete, MultiBinary)):
        return np.asarray(v, dtype=feature.dtype)
    if isinstance(feature, Dict):
        return {key: expected_stacked(sub, v[key]) for key, sub in feature.spaces.items()}
    if isinstance(feature, Tuple):
        return tuple(expected_stacked(sub, x) for sub, x in zip(feature.spaces, v, strict=True))
    return tuple(expected_value(feature, x) for x in v)


def sample(space: gym.Space[Any]) -> Any:
    if isinstance(space, Graph):
        return space.sample(num_nodes=int(space.np_random.integers(1, 5)))
    return space.sample()


def reject(code: ErrorCode, fn: Any, *args: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        fn(*args)
    assert info.value.code is code, f"{info.value.code.name} != {code.name}: {info.value}"
    return info.value


# -- descriptors -------------------------------------------------------------------------------


@pytest.mark.parametrize("space", SPACES, ids=IDS)
def test_descriptor_round_trip_through_bytes(space: gym.Space[Any]) -> None:
    desc = describe(space)
    body, chunks, _ = Encoder().encode(desc)
    rebuilt = space_through_bytes(space)
    assert_same_space(rebuilt, space)
    # Canonical bytes are stable: the rebuilt space describes itself with the same bytes.
    body2, chunks2, _ = Encoder().encode(describe(rebuilt))
    assert body2 == body
    assert b"".join(map(bytes, chunks2)) == b"".join(map(bytes, chunks))


@pytest.mark.parametrize("space", SPACES, ids=IDS)
def test_descriptor_fields_in_canonical_order(space: gym.Space[Any]) -> None:
    def check(desc: dict[str, Any]) -> None:
        assert list(desc) == FIELDS[desc["kind"]]
        for value in desc.values():
            if isinstance(value, dict) and "kind" in value:
                check(value)
            elif isinstance(value, dict):
                for sub in value.values():
                    check(sub)
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                for sub in value:
                    check(sub)

    check(describe(space))


def _s(text: str) -> str:
    """A fixstr (< 32 bytes) as hex."""
    return f"{0xA0 | len(text):02x}" + text.encode().hex()


def test_descriptor_canonical_bytes() -> None:
    """Byte tables: one line per expected encoding (§5 canonical form)."""
    body, chunks, data_len = Encoder().encode(describe(Discrete(3, start=-2)))
    assert body.hex() == "".join(
        [
            "84",  # fixmap of 4, fields in §9 order
            _s("kind") + _s("discrete"),
            _s("n") + "03",
            _s("start") + "fe",  # negative fixint -2
            _s("dtype") + _s("int64"),
        ]
    )
    assert chunks == [] and data_len == 0

    body, chunks, data_len = Encoder().encode(describe(Box(-1.0, 2.0, (2,), np.float32)))
    assert body.hex() == "".join(
        [
            "85",
            _s("kind") + _s("box"),
            _s("dtype") + _s("float32"),
            _s("shape") + "9102",
            # ext 8, 10 bytes, type 1: float32 (11), ndim 1, shape (2,), offset 0 / 8
            _s("low") + "c70a01" + "0b01" + "02000000" + "00000000",
            _s("high") + "c70a01" + "0b01" + "02000000" + "08000000",
        ]
    )
    assert data_len == 16
    assert b"".join(map(bytes, chunks)) == struct.pack("<4f", -1.0, -1.0, 2.0, 2.0)


@pytest.mark.parametrize(
    "space",
    [
        Box(np.iinfo(np.int64).min, np.iinfo(np.int64).max, (2,), np.int64),
        Box(0, np.iinfo(np.uint64).max, (2,), np.uint64),
        Box(-np.finfo(np.float64).max, np.finfo(np.float64).max, (1,), np.float64),
        Box(np.array([-0.0, 0.0], np.float16), np.array([-0.0, 0.0], np.float16), dtype=np.float16),
        Box(np.float32(-np.inf), np.float32(-np.inf), (1,), np.float32),
        Discrete(np.iinfo(np.int64).max, start=np.iinfo(np.int64).min),
        Discrete(2**64 - 1, start=0, dtype=np.uint64),
        MultiDiscrete(np.array([np.iinfo(np.int64).max]), start=np.array([np.iinfo(np.int64).min])),
        Text(2**40, min_length=2**39, charset="\x00\U0010ffff"),
    ],
    ids=[
        "int64-limits",
        "uint64-limits",
        "float64-max",
        "negative-zero",
        "both-neg-inf",
        "discrete-int64",
        "discrete-uint64",
        "multi-discrete-limits",
        "text-extremes",
    ],
)
def test_descriptor_round_trip_extremes(space: gym.Space[Any]) -> None:
    assert_same_space(space_through_bytes(space), space)


def test_negative_zero_bound_kept_bit_for_bit() -> None:
    space = Box(np.array([-0.0], np.float32), np.array([0.0], np.float32), dtype=np.float32)
    rebuilt = space_through_bytes(space)
    assert isinstance(rebuilt, Box)
    assert math.copysign(1.0, float(rebuilt.low[0])) == -1.0
    assert math.copysign(1.0, float(rebuilt.high[0])) == 1.0


def test_dict_key_order_kept_and_not_sorted() -> None:
    space = Dict(OrderedDict([("b", Discrete(2)), ("a", Discrete(3)), ("c", Text(2))]))
    desc = describe(space)
    assert list(desc["spaces"]) == ["b", "a", "c"]
    rebuilt = space_through_bytes(space)
    assert isinstance(rebuilt, Dict)
    assert list(rebuilt.spaces) == ["b", "a", "c"]


def test_multi_binary_int_and_list_kept_apart() -> None:
    assert describe(MultiBinary(5))["n"] == 5
    assert describe(MultiBinary([5]))["n"] == [5]
    assert space_through_bytes(MultiBinary(5)).n == 5  # type: ignore[attr-defined]
    assert space_through_bytes(MultiBinary([5])).n == (5,)  # type: ignore[attr-defined]


def test_text_charset_is_sorted_unique() -> None:
    desc = describe(Text(3, charset="cbaab"))
    assert desc["charset"] == "abc"
    assert describe(Text(3, charset=frozenset("zy")))["charset"] == "yz"


def test_from_descriptor_accepts_any_field_order() -> None:
    desc = describe(Box(0.0, 1.0, (2,), np.float32))
    reordered = {k: desc[k] for k in reversed(list(desc))}
    assert_same_space(from_descriptor(reordered), Box(0.0, 1.0, (2,), np.float32))


def test_big_endian_box_is_described_with_its_wire_dtype() -> None:
    space = Box(0.0, 1.0, (2,), np.dtype(">f4"))
    desc = describe(space)
    assert desc["dtype"] == "float32" and desc["low"].dtype == np.dtype("<f4")
    rebuilt = space_through_bytes(space)
    assert isinstance(rebuilt, Box) and rebuilt.dtype == np.dtype("<f4")
    assert np.array_equal(rebuilt.high, space.high)


# -- describe: what cannot be carried ----------------------------------------------------------


class _CustomSpace(gym.Space[int]):
    def __init__(self) -> None:
        super().__init__((), np.int64)

    def contains(self, x: Any) -> bool:
        return True


def test_describe_unknown_space_type_says_how_to_fix() -> None:
    with pytest.raises(SpaceError) as info:
        describe(Dict({"a": Tuple((Discrete(2), _CustomSpace()))}), "observation_space")
    text = str(info.value)
    assert "observation_space.spaces['a'].spaces[1]" in text
    assert "_CustomSpace" in text and "Wrap it in a supported space" in text
    with pytest.raises(SpaceError, match="_CustomSpace"):
        SpaceCodec(_CustomSpace())


def test_describe_rejects_non_str_dict_keys() -> None:
    space = Dict({1: Discrete(2)})  # type: ignore[dict-item]
    with pytest.raises(SpaceError, match=r"Dict keys must be str.*int key 1"):
        describe(space)
    with pytest.raises(SpaceError, match="Dict keys must be str"):
        SpaceCodec(space)


def test_describe_rejects_graph_with_composite_node_space() -> None:
    with pytest.raises(SpaceError, match=r"space\.node_space: expected a Box or Discrete.*actual Dict"):
        describe(Graph(node_space=Dict({"a": Discrete(2)}), edge_space=None))


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize == 8, reason="longdouble is float64 here")
def test_describe_rejects_dtype_without_wire_code() -> None:
    with pytest.raises(SpaceError, match="has no wire code; expected one of bool, int8"):
        describe(Box(0.0, 1.0, (2,), np.longdouble))


# -- descriptors: must reject ------------------------------------------------------------------


def _box() -> dict[str, Any]:
    return describe(
        Box(np.array([0.0, -1.0], np.float32), np.array([1.0, 1.0], np.float32), dtype=np.float32)
    )


def _with(desc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(desc)
    for key, value in changes.items():
        if value is _DROP:
            del out[key]
        else:
            out[key] = value
    return out


_DROP = object()
_BAD = ErrorCode.BAD_SPACE


def _nested(depth: int) -> dict[str, Any]:
    desc = describe(Discrete(2))
    for _ in range(depth):
        desc = {"kind": "tuple", "spaces": [desc]}
    return desc


BAD_DESCRIPTORS: list[tuple[str, Any, ErrorCode, str]] = [
    ("not-a-map", 5, _BAD, "space: expected a space descriptor (a map), actual int 5"),
    ("array", [], _BAD, "actual array of 0 value(s)"),
    ("missing-kind", {"n": 3}, _BAD, "missing field 'kind'"),
    ("kind-not-str", {"kind": 1}, _BAD, "space.kind: expected one of 'box'"),
    ("unknown-kind", {"kind": "boxes"}, _BAD, "actual str 'boxes'"),
    ("missing-field", _with(_box(), high=_DROP), _BAD, "missing field(s) 'high'"),
    ("extra-field", _with(_box(), seed=1), _BAD, "unknown field(s) 'seed'"),
    (
        "box-unknown-dtype",
        _with(_box(), dtype="float128"),
        ErrorCode.UNKNOWN_DTYPE,
        "space.dtype: expected one of",
    ),
    ("box-dtype-not-str", _with(_box(), dtype=11), _BAD, "space.dtype: expected a dtype name"),
    ("box-shape-not-array", _with(_box(), shape=2), _BAD, "space.shape: expected an array"),
    ("box-shape-negative", _with(_box(), shape=[-2]), _BAD, "space.shape"),
    ("box-shape-bool", _with(_box(), shape=[True, True]), _BAD, "space.shape"),
    ("box-shape-too-many-dims", _with(_box(), shape=[1] * 33), _BAD, "at most 32"),
    (
        "box-low-list",
        _with(_box(), low=[0.0, 1.0]),
        _BAD,
        "space.low: expected a float32 tensor of shape (2,), actual array",
    ),
    (
        "box-low-dtype",
        _with(_box(), low=np.zeros(2, np.float64)),
        _BAD,
        "space.low: expected a float32 tensor of shape (2,), actual float64",
    ),
    (
        "box-high-shape",
        _with(_box(), high=np.ones(3, np.float32)),
        _BAD,
        "space.high: expected a float32 tensor of shape (2,), actual float32 tensor of shape (3,)",
    ),
    (
        "box-shape-mismatch",
        _with(_box(), shape=[1, 2]),
        _BAD,
        "space.low: expected a float32 tensor of shape (1, 2)",
    ),
    (
        "box-low-nan",
        _with(_box(), low=np.array([0.0, np.nan], np.float32)),
        _BAD,
        "space.low: expected no NaN bound, actual NaN at [1]",
    ),
    (
        "box-high-nan",
        _with(_box(), high=np.array([np.nan, 1.0], np.float32)),
        _BAD,
        "space.high: expected no NaN bound",
    ),
    (
        "box-low-above-high",
        _with(_box(), low=np.array([0.0, 2.0], np.float32)),
        _BAD,
        "expected low <= high everywhere, actual low[1] = 2.0 > high[1] = 1.0",
    ),
    (
        "discrete-n-zero",
        {"kind": "discrete", "n": 0, "start": 0, "dtype": "int64"},
        _BAD,
        "space.n: expected an int >= 1, actual 0",
    ),
    (
        "discrete-n-bool",
        {"kind": "discrete", "n": True, "start": 0, "dtype": "int64"},
        _BAD,
        "space.n: expected an int, actual bool True",
    ),
    (
        "discrete-start-float",
        {"kind": "discrete", "n": 2, "start": 0.0, "dtype": "int64"},
        _BAD,
        "space.start: expected an int, actual float 0.0",
    ),
    (
        "discrete-float-dtype",
        {"kind": "discrete", "n": 2, "start": 0, "dtype": "float32"},
        _BAD,
        "space.dtype: expected an integer dtype",
    ),
    (
        "discrete-unknown-dtype",
        {"kind": "discrete", "n": 2, "start": 0, "dtype": "int128"},
        ErrorCode.UNKNOWN_DTYPE,
        "int128",
    ),
    (
        "discrete-n-overflows-dtype",
        {"kind": "discrete", "n": 300, "start": 0, "dtype": "int8"},
        _BAD,
        "space.n: expected an int in the int8 range [-128, 127], actual 300",
    ),
    (
        "discrete-start-overflows-dtype",
        {"kind": "discrete", "n": 2, "start": -1, "dtype": "uint8"},
        _BAD,
        "space.start",
    ),
    (
        "multi-discrete-float",
        {"kind": "multi_discrete", "nvec": np.ones(2), "start": np.zeros(2)},
        _BAD,
        "space.nvec: expected an integer tensor",
    ),
    (
        "multi-discrete-start-dtype",
        {"kind": "multi_discrete", "nvec": np.ones(2, np.int64), "start": np.zeros(2, np.int32)},
        _BAD,
        "space.start: expected a int64 tensor of shape (2,)",
    ),
    (
        "multi-discrete-zero-count",
        {"kind": "multi_discrete", "nvec": np.array([2, 0]), "start": np.zeros(2, np.int64)},
        _BAD,
        "nvec[1] = 0",
    ),
    (
        "multi-discrete-not-tensor",
        {"kind": "multi_discrete", "nvec": [2, 3], "start": [0, 0]},
        _BAD,
        "space.nvec: expected a tensor",
    ),
    ("multi-binary-zero", {"kind": "multi_binary", "n": 0}, _BAD, "space.n: expected an int >= 1, actual 0"),
    ("multi-binary-list-zero", {"kind": "multi_binary", "n": [2, 0]}, _BAD, "space.n"),
    ("multi-binary-str", {"kind": "multi_binary", "n": "3"}, _BAD, "space.n"),
    ("multi-binary-bool", {"kind": "multi_binary", "n": True}, _BAD, "space.n"),
    (
        "text-min-above-max",
        {"kind": "text", "min_length": 4, "max_length": 3, "charset": "ab"},
        _BAD,
        "expected min_length <= max_length, actual 4 > 3",
    ),
    (
        "text-negative",
        {"kind": "text", "min_length": -1, "max_length": 3, "charset": "ab"},
        _BAD,
        "space.min_length",
    ),
    (
        "text-unsorted",
        {"kind": "text", "min_length": 0, "max_length": 3, "charset": "ba"},
        _BAD,
        "ascending code-point order",
    ),
    (
        "text-duplicate",
        {"kind": "text", "min_length": 0, "max_length": 3, "charset": "abb"},
        _BAD,
        "'b' before 'b' at position 2",
    ),
    (
        "text-charset-bytes",
        {"kind": "text", "min_length": 0, "max_length": 3, "charset": b"ab"},
        _BAD,
        "space.charset: expected a str",
    ),
    ("dict-spaces-array", {"kind": "dict", "spaces": []}, _BAD, "space.spaces: expected a map"),
    (
        "dict-nested-bad",
        {"kind": "dict", "spaces": {"pos": _with(_box(), low=np.zeros(3, np.float32))}},
        _BAD,
        "space.spaces['pos'].low: expected",
    ),
    ("tuple-spaces-map", {"kind": "tuple", "spaces": {}}, _BAD, "space.spaces: expected an array of spaces"),
    (
        "tuple-nested-bad",
        {"kind": "tuple", "spaces": [describe(Discrete(2)), {"kind": "nope"}]},
        _BAD,
        "space.spaces[1].kind",
    ),
    (
        "sequence-stack-int",
        {"kind": "sequence", "space": describe(Discrete(2)), "stack": 1},
        _BAD,
        "space.stack: expected a bool, actual int 1",
    ),
    (
        "sequence-space-nil",
        {"kind": "sequence", "space": None, "stack": False},
        _BAD,
        "space.space: expected a space descriptor",
    ),
    (
        "graph-node-dict",
        {"kind": "graph", "node_space": describe(Dict({})), "edge_space": None},
        _BAD,
        "space.node_space: expected a 'box' or 'discrete' space, actual kind 'dict'",
    ),
    ("graph-node-nil", {"kind": "graph", "node_space": None, "edge_space": None}, _BAD, "space.node_space"),
    (
        "graph-edge-text",
        {"kind": "graph", "node_space": describe(Discrete(2)), "edge_space": describe(Text(2))},
        _BAD,
        "space.edge_space: expected a 'box' or 'discrete' space or nil",
    ),
    (
        "graph-edge-bad-box",
        {"kind": "graph", "node_space": describe(Discrete(2)), "edge_space": _with(_box(), dtype="bool")},
        _BAD,
        "space.edge_space.low",
    ),
    (
        "one-of-empty",
        {"kind": "one_of", "spaces": []},
        _BAD,
        "space.spaces: expected a non-empty array of spaces",
    ),
    ("too-deep", _nested(70), ErrorCode.TOO_DEEP, "nested deeper than 64"),
]


@pytest.mark.parametrize(
    ("desc", "code", "message"),
    [case[1:] for case in BAD_DESCRIPTORS],
    ids=[case[0] for case in BAD_DESCRIPTORS],
)
def test_bad_descriptor_rejected(desc: Any, code: ErrorCode, message: str) -> None:
    err = reject(code, from_descriptor, desc)
    assert message in str(err), str(err)


def test_bad_descriptor_path_names_the_field_through_bytes() -> None:
    desc = describe(Dict({"pos": Box(0.0, 1.0, (2,), np.float32)}))
    desc["spaces"]["pos"]["low"] = np.zeros(2, np.float64)
    err = reject(ErrorCode.BAD_SPACE, from_descriptor, through_bytes(desc), "observation_space")
    assert str(err) == (
        "BAD_SPACE: observation_space.spaces['pos'].low: expected a float32 tensor of shape (2,), "
        "actual float64 tensor of shape (2,)"
    )


def test_deep_descriptor_is_stopped_by_the_codec_first() -> None:
    body, chunks, _ = Encoder().encode(_nested(70))
    reject(ErrorCode.TOO_DEEP, decode, body, b"".join(map(bytes, chunks)))


# -- values: catalogue round trips -------------------------------------------------------------


@pytest.mark.parametrize("space", SPACES, ids=IDS)
def test_samples_round_trip_through_bytes(space: gym.Space[Any]) -> None:
    space = copy.deepcopy(space)
    space.seed(7)
    codec = SpaceCodec(space)
    # The codec of a space rebuilt from its descriptor must decode the same way (agent side).
    remote = SpaceCodec(space_through_bytes(space))
    for _ in range(12):
        value = sample(space)
        wire = codec.to_wire(value)
        decoded = remote.from_wire(through_bytes(wire))
        assert_same(decoded, expected_value(space, value))
        assert space.contains(decoded), f"{decoded!r} not in {space}"
        assert_same(codec.from_wire(through_bytes(remote.to_wire(decoded))), decoded)


@pytest.mark.parametrize("space", SPACES, ids=IDS)
def test_batched_samples_round_trip(space: gym.Space[Any]) -> None:
    batch = batched(copy.deepcopy(space), 3)
    batch.seed(3)
    codec = SpaceCodec(batch)
    for _ in range(4):
        value = batch.sample()
        decoded = codec.from_wire(through_bytes(codec.to_wire(value)))
        assert_same(decoded, expected_value(batch, value))
        assert batch.contains(decoded)


def test_batched_follows_gymnasium_batch_space() -> None:
    assert batched(Discrete(3, start=1), 4) == MultiDiscrete([3] * 4, start=[1] * 4)
    box = batched(Box(0.0, 1.0, (2,), np.float32), 4)
    assert isinstance(box, Box) and box.shape == (4, 2)
    text = batched(Text(3), 2)
    assert isinstance(text, Tuple) and len(text) == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(UsageError, match="expected a number of sub-envs >= 1"):
            batched(Discrete(2), bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_bits_round_trip_exactly(dtype: type) -> None:
    """NaN payloads and signs, -0.0, ±inf and subnormals survive bit for bit (no bounds check)."""
    dt = np.dtype(dtype)
    uint = np.dtype(f"<u{dt.itemsize}")
    bits = dt.itemsize * 8
    exp_mask = {16: 0x7C00, 32: 0x7F800000, 64: 0x7FF0000000000000}[bits]
    sign = 1 << (bits - 1)
    patterns = [exp_mask | 1, exp_mask | 0x155, sign | exp_mask | 3, sign, exp_mask, sign | exp_mask, 1, 0]
    value = np.array(patterns, dtype=uint).view(dt)
    space = Box(-np.inf, np.inf, (len(patterns),), dt)
    codec = SpaceCodec(space)
    decoded = codec.from_wire(through_bytes(codec.to_wire(value)))
    assert decoded.dtype == dt
    assert decoded.view(uint).tolist() == patterns


def test_box_value_is_a_read_only_view_on_the_received_buffer() -> None:
    space = Box(0, 255, (84, 84, 3), np.uint8)
    codec = SpaceCodec(space)
    obs = space.sample()
    wire = codec.to_wire(obs)
    assert wire is obs  # right dtype and shape: no copy on the way out
    body, chunks, _ = Encoder().encode({"obs": wire})
    received = bytearray(b"".join(map(bytes, chunks)))
    decoded = codec.from_wire(decode(body, memoryview(received))["obs"])
    assert np.shares_memory(decoded, np.frombuffer(received, np.uint8))
    assert not decoded.flags.writeable
    assert_same(decoded, obs)
    again = decode(body, memoryview(received))["obs"]
    assert codec.from_wire(again) is again  # from_wire returns the decoded tensor itself


def test_discrete_values() -> None:
    codec = SpaceCodec(Discrete(3, start=-1, dtype=np.int16))
    for local in (2, np.int64(2), np.int16(2), np.array(2, np.int32)):
        wire = codec.to_wire(local)
        assert type(wire) is int and wire == 2
    assert_same(codec.from_wire(through_bytes(-1)), np.int16(-1))
    # §9: decoders also accept a 0-d integer tensor.
    assert_same(codec.from_wire(through_bytes(np.array(1, np.uint8))), np.int16(1))
    assert_same(codec.from_wire(np.array(-1, np.int64)), np.int16(-1))
    # Bounds are not the codec's business: 7 is outside Discrete(3, start=-1) but a valid int16.
    assert_same(codec.from_wire(7), np.int16(7))


@pytest.mark.parametrize(
    ("space", "values"),
    [
        (Discrete(5000, start=-3), [-3, 0, 1020, 1021, 4996, 5000, -4]),  # in and past the cache
        (Discrete(10, start=250, dtype=np.uint8), [250, 255, 0, 249]),  # the space overflows uint8
        (Discrete(3, start=-128, dtype=np.int8), [-128, -126, 127]),
    ],
)
def test_discrete_from_wire_scalars(space: Discrete, values: list[int]) -> None:
    codec = SpaceCodec(space)
    for v in values:
        assert_same(codec.from_wire(through_bytes(v)), space.dtype.type(v))


def test_dict_value_accepts_any_key_order_and_returns_space_order() -> None:
    space = Dict(OrderedDict([("b", Discrete(2)), ("a", Text(3))]))
    codec = SpaceCodec(space)
    assert list(codec.to_wire({"a": "xy", "b": 1})) == ["b", "a"]
    decoded = codec.from_wire(through_bytes({"a": "xyz", "b": 1}))
    assert list(decoded) == ["b", "a"]
    assert_same(decoded, {"b": np.int64(1), "a": "xyz"})


def test_stacked_sequence_of_length_zero() -> None:
    space = Sequence(Dict({"p": Box(0.0, 1.0, (2,), np.float32), "d": Discrete(2)}), stack=True)
    codec = SpaceCodec(space)
    decoded = codec.from_wire(through_bytes([]))
    assert_same(decoded, {"d": np.zeros(0, np.int64), "p": np.zeros((0, 2), np.float32)})
    assert codec.to_wire(decoded) == []


def test_to_wire_shapes_array_likes() -> None:
    codec = SpaceCodec(Box(-1.0, 1.0, (2, 2), np.float32))
    from_list = codec.to_wire([[0.5, 0.25], [0.0, -1.0]])
    assert from_list.dtype == np.float32 and from_list.shape == (2, 2)
    from_f64 = codec.to_wire(np.full((2, 2), 0.5))
    assert from_f64.dtype == np.float32
    # A non-contiguous view is passed on as is; the encoder writes it in C order (§4).
    transposed = np.arange(4, dtype=np.float32).reshape(2, 2).T
    assert codec.to_wire(transposed) is transposed
    assert codec.from_wire(through_bytes(transposed)).tolist() == [[0.0, 2.0], [1.0, 3.0]]
    strided = SpaceCodec(Box(0, 9, (2,), np.int16)).to_wire(np.arange(4)[::2])
    assert strided.dtype == np.int16 and strided.tolist() == [0, 2]
    assert SpaceCodec(MultiBinary(3)).to_wire(np.array([True, False, True])).dtype == np.int8
    assert SpaceCodec(Box(-1.0, 1.0, (), np.float64)).to_wire(0.5).shape == ()
    graph = SpaceCodec(Graph(Discrete(2), Discrete(2)))
    links = graph.to_wire(GraphInstance(np.array([0, 1]), np.array([1]), np.array([[0, 1]], np.int32)))
    assert links["edge_links"].dtype == np.int32  # §9: int32 links keep their dtype
    links = graph.to_wire(GraphInstance(np.array([0, 1]), np.array([1]), np.array([[0, 1]], np.uint8)))
    assert links["edge_links"].dtype == np.int64  # any other integer dtype becomes int64


# -- values: must reject -----------------------------------------------------------------------

_F4 = Box(-1.0, 1.0, (4,), np.float32)
_GRAPH = Graph(Box(0.0, 1.0, (2,), np.float32), Discrete(3))
_NODES = np.zeros((3, 2), np.float32)
_EDGES = np.zeros(2, np.int64)
_LINKS = np.zeros((2, 2), np.int64)

BAD_VALUES: list[tuple[str, gym.Space[Any], Any, str]] = [
    (
        "box-dtype-and-shape",
        _F4,
        np.zeros(3, np.int64),
        "value: expected float32 tensor of shape (4,), actual int64 tensor of shape (3,)",
    ),
    ("box-dtype", _F4, np.zeros(4, np.float64), "actual float64 tensor of shape (4,)"),
    ("box-list", _F4, [0.0, 0.0, 0.0, 0.0], "actual array of 4 value(s)"),
    (
        "box-float",
        Box(-1.0, 1.0, (), np.float32),
        0.5,
        "expected float32 tensor of shape (), actual float 0.5",
    ),
    ("box-nil", _F4, None, "actual nil"),
    ("discrete-float", Discrete(3), 1.0, "value: expected an int in the int64 range"),
    ("discrete-bool", Discrete(3), True, "actual bool True"),
    ("discrete-str", Discrete(3), "1", "actual str '1'"),
    (
        "discrete-overflow",
        Discrete(3, dtype=np.int8),
        300,
        "expected an int in the int8 range [-128, 127] (or a 0-d integer tensor), actual int 300",
    ),
    ("discrete-float-tensor", Discrete(3), np.array(1.0), "actual float64 tensor of shape ()"),
    ("discrete-1d-tensor", Discrete(3), np.array([1]), "actual int64 tensor of shape (1,)"),
    (
        "multi-discrete-dtype",
        MultiDiscrete([2, 2]),
        np.zeros(2, np.int32),
        "expected int64 tensor of shape (2,)",
    ),
    (
        "multi-binary-bool",
        MultiBinary(3),
        np.zeros(3, bool),
        "expected int8 tensor of shape (3,), actual bool tensor",
    ),
    ("text-bytes", Text(3), b"ab", "value: expected a str, actual bytes of length 2"),
    (
        "dict-not-map",
        Dict({"a": Discrete(2)}),
        [1],
        "value: expected a map with the keys {'a'}, actual array",
    ),
    ("dict-missing", Dict({"a": Discrete(2), "b": Discrete(2)}), {"a": 1}, "(missing {'b'})"),
    ("dict-extra", Dict({"a": Discrete(2)}), {"a": 1, "z": 2}, "(unexpected {'z'})"),
    ("dict-renamed", Dict({"a": Discrete(2)}), {"z": 1}, "(missing {'a'}; unexpected {'z'})"),
    (
        "dict-nested",
        Dict({"pos": _F4}),
        {"pos": np.zeros(3, np.float32)},
        "value['pos']: expected float32 tensor of shape (4,)",
    ),
    (
        "tuple-length",
        Tuple((Discrete(2), Discrete(2))),
        [1],
        "value: expected an array of 2 value(s), actual array of 1",
    ),
    ("tuple-not-array", Tuple((Discrete(2),)), {"0": 1}, "actual map with keys {'0'}"),
    ("tuple-nested", Tuple((Discrete(2), Text(2))), [1, 2], "value[1]: expected a str, actual int 2"),
    ("sequence-not-array", Sequence(Discrete(2)), 3, "value: expected an array of values, actual int 3"),
    ("sequence-element", Sequence(Discrete(2)), [0, 1, "x"], "value[2]: expected an int"),
    (
        "sequence-stack-element",
        Sequence(_F4, stack=True),
        [np.zeros(4, np.float32), np.zeros(2, np.float32)],
        "value[1]: expected float32 tensor of shape (4,)",
    ),
    ("graph-not-map", _GRAPH, [], "value: expected a map with the keys {'nodes', 'edges', 'edge_links'}"),
    ("graph-missing-field", _GRAPH, {"nodes": _NODES, "edges": None}, "expected a map with the keys"),
    (
        "graph-nodes-shape",
        _GRAPH,
        {"nodes": np.zeros((3, 3), np.float32), "edges": None, "edge_links": None},
        "value.nodes: expected float32 tensor of shape (m, 2), actual float32 tensor of shape (3, 3)",
    ),
    (
        "graph-edges-without-links",
        _GRAPH,
        {"nodes": _NODES, "edges": _EDGES, "edge_links": None},
        "expected edges and edge_links both nil or both tensors",
    ),
    (
        "graph-links-int16",
        _GRAPH,
        {"nodes": _NODES, "edges": _EDGES, "edge_links": _LINKS.astype(np.int16)},
        "value.edge_links: expected int64 tensor of shape (m, 2), actual int16",
    ),
    (
        "graph-links-count",
        _GRAPH,
        {"nodes": _NODES, "edges": _EDGES, "edge_links": np.zeros((3, 2), np.int64)},
        "expected one edge_links row per edge (2), actual 3 rows",
    ),
    (
        "graph-edges-without-space",
        Graph(Discrete(2), None),
        {"nodes": np.zeros(1, np.int64), "edges": _EDGES, "edge_links": _LINKS},
        "expected nil edges and edge_links (the graph has no edge space)",
    ),
    (
        "one-of-index-range",
        OneOf([Discrete(2), Text(2)]),
        [2, 0],
        "value: expected an array [index, value] with an int index in [0, 1], actual array of 2",
    ),
    ("one-of-index-bool", OneOf([Discrete(2), Text(2)]), [True, 0], "expected an array [index, value]"),
    ("one-of-not-pair", OneOf([Discrete(2)]), [0], "expected an array [index, value]"),
    ("one-of-value", OneOf([Discrete(2), Text(2)]), [1, 5], "value[1]: expected a str, actual int 5"),
]


@pytest.mark.parametrize(
    ("space", "wire", "message"),
    [case[1:] for case in BAD_VALUES],
    ids=[case[0] for case in BAD_VALUES],
)
def test_bad_value_rejected(space: gym.Space[Any], wire: Any, message: str) -> None:
    codec = SpaceCodec(space)
    err = reject(ErrorCode.BAD_VALUE, codec.from_wire, wire)
    assert message in str(err), str(err)
    # The same bytes from a real peer are rejected the same way.
    err = reject(ErrorCode.BAD_VALUE, codec.from_wire, through_bytes(wire))
    assert message in str(err), str(err)


def test_bad_value_names_the_codec_path() -> None:
    codec = SpaceCodec(Dict({"pos": _F4}), where="obs")
    err = reject(ErrorCode.BAD_VALUE, codec.from_wire, {"pos": np.zeros(3, np.int64)})
    assert (
        str(err)
        == "BAD_VALUE: obs['pos']: expected float32 tensor of shape (4,), actual int64 tensor of shape (3,)"
    )


BAD_LOCAL_VALUES: list[tuple[str, gym.Space[Any], Any, str]] = [
    (
        "box-shape",
        _F4,
        np.zeros(3, np.float32),
        "value: expected a float32 tensor of shape (4,), actual float32 tensor of shape (3,)",
    ),
    ("box-float-to-int", Box(0, 10, (2,), np.int32), np.array([1.5, 2.0]), "would change the values' kind"),
    (
        "box-narrowing-overflow",
        Box(-10, 10, (2,), np.int8),
        np.array([1, 300]),
        "values outside the int8 range",
    ),
    ("box-str", _F4, "abcd", "actual str 'abcd'"),
    ("box-ragged", _F4, [[1.0], [1.0, 2.0]], "value: expected a float32 tensor of shape (4,)"),
    ("discrete-float", Discrete(3), 1.5, "value: expected an integer for Discrete(3), actual float 1.5"),
    (
        "discrete-overflow",
        Discrete(3, dtype=np.uint8),
        -1,
        "value: expected an integer in the uint8 range [0, 255], actual int -1",
    ),
    ("text-int", Text(3), 5, "value: expected a str, actual int 5"),
    ("dict-not-mapping", Dict({"a": Discrete(2)}), [1], "expected a map with the keys {'a'}"),
    ("dict-missing", Dict({"a": Discrete(2), "b": Discrete(2)}), {"a": 1}, "(missing {'b'})"),
    (
        "tuple-length",
        Tuple((Discrete(2),)),
        (1, 1),
        "value: expected a tuple of 1 value(s), actual tuple of 2",
    ),
    ("sequence-element", Sequence(Text(3)), ("a", 1), "value[1]: expected a str, actual int 1"),
    (
        "sequence-stack-wrong",
        Sequence(_F4, stack=True),
        np.zeros((2, 3), np.float32),
        "value[0]: expected a float32 tensor of shape (4,)",
    ),
    ("graph-not-instance", _GRAPH, {"nodes": _NODES}, "value: expected a GraphInstance"),
    (
        "graph-links-without-edges",
        _GRAPH,
        GraphInstance(_NODES, None, _LINKS),
        "expected edges and edge_links both None or both arrays",
    ),
    (
        "graph-edges-without-space",
        Graph(Discrete(2), None),
        GraphInstance(np.zeros(1, np.int64), _EDGES, _LINKS),
        "expected edges and edge_links both None,",
    ),
    (
        "graph-nodes-float-for-discrete",
        Graph(Discrete(2), None),
        GraphInstance(np.zeros(2), None, None),
        "value.nodes",
    ),
    (
        "one-of-index",
        OneOf([Discrete(2)]),
        (1, 0),
        "value: expected a tuple (index, value) with an integer index in [0, 0]",
    ),
    ("one-of-float-index", OneOf([Discrete(2)]), (0.0, 0), "with an integer index"),
]


@pytest.mark.parametrize(
    ("space", "local", "message"),
    [case[1:] for case in BAD_LOCAL_VALUES],
    ids=[case[0] for case in BAD_LOCAL_VALUES],
)
def test_to_wire_rejects_values_that_do_not_fit(space: gym.Space[Any], local: Any, message: str) -> None:
    with pytest.raises(EncodeError) as info:
        SpaceCodec(space).to_wire(local)
    assert message in str(info.value), str(info.value)


# -- hypothesis: random nested spaces and their samples ----------------------------------------

_SIGNED = [np.int8, np.int16, np.int32, np.int64]
_UNSIGNED = [np.uint8, np.uint16, np.uint32, np.uint64]


@st.composite
def boxes(draw: st.DrawFn) -> Box:
    dt = np.dtype(draw(st.sampled_from(BOX_DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    if dt.kind == "b":
        elements: st.SearchStrategy[Any] = st.booleans()
    elif dt.kind == "f":
        # Box.sample needs finite spans it can draw uniformly from; ±inf and -0.0 still appear.
        elements = st.one_of(
            st.floats(-1000, 1000, width=min(dt.itemsize * 8, 64)),
            st.sampled_from([-np.inf, np.inf, -0.0]),
        )
    else:
        info = np.iinfo(dt)
        elements = st.integers(max(int(info.min), -100), min(int(info.max), 100))
    a = draw(hnp.arrays(dt, shape, elements=elements))
    b = draw(hnp.arrays(dt, shape, elements=elements))
    return Box(low=np.asarray(np.minimum(a, b)), high=np.asarray(np.maximum(a, b)), shape=shape, dtype=dt)


@st.composite
def discretes(draw: st.DrawFn) -> Discrete:
    if draw(st.booleans()):
        return Discrete(
            draw(st.integers(1, 20)), start=draw(st.integers(-50, 50)), dtype=draw(st.sampled_from(_SIGNED))
        )
    return Discrete(
        draw(st.integers(1, 20)), start=draw(st.integers(0, 50)), dtype=draw(st.sampled_from(_UNSIGNED))
    )


@st.composite
def multi_discretes(draw: st.DrawFn) -> MultiDiscrete:
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=2)))
    nvec = draw(hnp.arrays(np.int64, shape, elements=st.integers(1, 5)))
    start = draw(hnp.arrays(np.int64, shape, elements=st.integers(-3, 3)))
    return MultiDiscrete(nvec, start=start, dtype=draw(st.sampled_from(_SIGNED)))


multi_binaries = st.one_of(
    st.integers(1, 4).map(MultiBinary),
    st.lists(st.integers(1, 3), max_size=3).map(MultiBinary),
)
texts = st.builds(
    lambda lo, extra, chars: Text(lo + extra, min_length=lo, charset=chars),
    st.integers(0, 3),
    st.integers(0, 3),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=6),
)
graph_parts = st.one_of(boxes(), discretes())
leaves = st.one_of(boxes(), discretes(), multi_discretes(), multi_binaries, texts)


def _not_empty_container(space: gym.Space[Any]) -> bool:
    # A stacked Sequence of an empty Dict/Tuple, at any depth, has no way to record its length
    # (Gymnasium's own stacking turns N empty dicts into one), so its length cannot round-trip.
    if isinstance(space, Dict):
        return len(space) > 0 and all(_not_empty_container(s) for s in space.spaces.values())
    if isinstance(space, Tuple):
        return len(space) > 0 and all(_not_empty_container(s) for s in space.spaces)
    return True


def _composites(children: st.SearchStrategy[gym.Space[Any]]) -> st.SearchStrategy[gym.Space[Any]]:
    return st.one_of(
        st.lists(st.tuples(st.text(max_size=4), children), max_size=3, unique_by=lambda kv: kv[0]).map(Dict),
        st.lists(children, max_size=3).map(lambda subs: Tuple(tuple(subs))),
        st.builds(Sequence, children, stack=st.just(False)),
        st.builds(Sequence, children.filter(_not_empty_container), stack=st.just(True)),
        st.builds(Graph, graph_parts, st.one_of(st.none(), graph_parts)),
        st.lists(children, min_size=1, max_size=3).map(OneOf),
    )


spaces = st.recursive(leaves, _composites, max_leaves=6)
#: More examples for a soak run: RLAY_HYPOTHESIS_EXAMPLES=5000 pytest tests/test_spaces.py -k hypothesis
_EXAMPLES = int(os.environ.get("RLAY_HYPOTHESIS_EXAMPLES", "150"))


@settings(max_examples=_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=spaces)
def test_hypothesis_descriptor_round_trip(space: gym.Space[Any]) -> None:
    assert_same_space(space_through_bytes(space), space)


@settings(max_examples=_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=spaces, seed=st.integers(0, 2**32 - 1))
def test_hypothesis_samples_round_trip(space: gym.Space[Any], seed: int) -> None:
    space.seed(seed)
    codec = SpaceCodec(space)
    remote = SpaceCodec(space_through_bytes(space))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Box.sample overflow warnings for extreme random bounds
        values = [sample(space) for _ in range(3)]
    for value in values:
        decoded = remote.from_wire(through_bytes(codec.to_wire(value)))
        assert_same(decoded, expected_value(space, value))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Gymnasium's own samples are not always contained (a 0-d MultiDiscrete samples a
            # NumPy scalar that its contains rejects); decoded values are at least as good.
            if space.contains(value):
                assert space.contains(decoded)


def test_exact_codec_never_rounds_an_observation() -> None:
    """§9: an env side's observation of another dtype is sent only if every element converts
    exactly; otherwise EncodeError names the element (the env side answers ENV_EXCEPTION)."""
    obs = SpaceCodec(Dict({"pos": Box(-5.0, 5.0, (3,), np.float32)}), "observation", exact=True)
    sent = obs.to_wire({"pos": np.array([0.5, -1.25, np.nan])})  # float64 holding float32 values
    assert sent["pos"].dtype == np.float32 and sent["pos"][:2].tolist() == [0.5, -1.25]
    assert obs.to_wire({"pos": np.array([1, 2, 3])})["pos"].dtype == np.float32  # exact ints
    with pytest.raises(EncodeError) as info:
        obs.to_wire({"pos": np.array([0.5, 0.1, 0.0])})
    assert "observation['pos']" in str(info.value) or "observation" in str(info.value)
    assert "element [1]" in str(info.value) and "not exactly a float32" in str(info.value)
    # the agent side's actions keep Gymnasium's casting (a float64 policy output for a float32 Box)
    assert SpaceCodec(Box(-1.0, 1.0, (1,), np.float32)).to_wire(np.array([0.1])).dtype == np.float32


def test_wire_spaces_follow_the_batch_table() -> None:
    """§10's table: single spaces with one sub-env, batch_space with N; Dict keys keep the order
    of the single Dict (the descriptor's order)."""
    from collections import OrderedDict

    from rlay.batching import wire_space, wire_spaces

    box = Box(-1.0, 1.0, (2,), np.float32)
    assert wire_spaces(box, Discrete(3), 1) == (box, Discrete(3))
    obs, act = wire_spaces(box, Discrete(3, start=2), 4)
    assert obs == Box(-1.0, 1.0, (4, 2), np.float32)
    assert act == MultiDiscrete([3] * 4, start=[2] * 4)
    assert wire_space(MultiDiscrete([2, 3]), 2).shape == (2, 2)
    assert wire_space(MultiBinary(3), 2) == Box(0, 1, (2, 3), np.int8)
    unsorted = Dict(OrderedDict([("b", Discrete(2)), ("a", box)]))
    assert list(wire_space(unsorted, 3).spaces) == ["b", "a"]
    assert list(wire_space(Dict({"b": Discrete(2), "a": box}), 3).spaces) == ["a", "b"]
    assert wire_space(Text(3), 2) == Tuple((Text(3), Text(3)))
