"""Gymnasium spaces and their values <-> wire values (spec/protocol.md §9, §10).

Three things live here, one layer above the sans-I/O core (``rlay.protocol``):

- :func:`describe` turns a Gymnasium space into its descriptor, a wire value (maps, arrays, ints,
  strs, bools and NumPy arrays for tensors) whose fields are in the canonical order of §9.
- :func:`from_descriptor` turns a descriptor received from a peer back into the space. The input
  is untrusted: every field is checked and anything wrong is a :class:`ProtocolError` with
  ``BAD_SPACE`` (or ``UNKNOWN_DTYPE``) whose message names the path in the descriptor, e.g.
  ``observation_space.spaces['pos'].low``. ``from_descriptor(describe(s)) == s`` holds exactly:
  dtype, shape, bounds bit for bit (±inf, -0.0), start offsets, charset and key order.
- :class:`SpaceCodec` converts values of one space, built once per space: ``to_wire`` (a local
  Gymnasium value -> wire value, :class:`EncodeError` if it cannot be shaped to the space) and
  ``from_wire`` (a decoded wire value -> Gymnasium value, ``BAD_VALUE`` if its structure, dtype or
  shape does not match). Bounds are *not* checked here (§9: the side that owns the semantics
  checks ``space.contains``). Box and Discrete values are the hot path of every step, so each
  space is compiled into closures with everything precomputed.

Byte order is not part of a dtype on the wire (tensors are little-endian, §4): a space built with
a big-endian dtype is described with the dtype's name and comes back little-endian.

Integer boxes: Gymnasium turns an infinite bound of an integer Box into the dtype's limit and
remembers that it was unbounded only for sampling (``bounded_below``). The wire carries the
limit, so the rebuilt Box is equal but samples that coordinate as bounded.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import operator
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
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
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from rlay.errors import EncodeError, ProtocolError, SpaceError, UsageError, clip
from rlay.protocol.fastpath import FastPaths
from rlay.protocol.wire import (
    CODE_BY_DTYPE,
    DEFAULT_MAX_DEPTH,
    DTYPE_BY_CODE,
    DTYPE_BY_NAME,
    MAX_NDIM,
    ErrorCode,
)

__all__ = ["SpaceCodec", "batched", "describe", "from_descriptor"]

ToWire = Callable[[Any], Any]
FromWire = Callable[[Any], Any]

_SUPPORTED = "Box, Discrete, MultiDiscrete, MultiBinary, Text, Dict, Tuple, Sequence, Graph and OneOf"
_DTYPE_NAMES = ", ".join(dt.name for dt in DTYPE_BY_CODE.values())
_INT64 = DTYPE_BY_NAME["int64"]
_INT32 = DTYPE_BY_NAME["int32"]
_DISCRETE_CACHE = 1024  # Discrete values whose decoded NumPy scalars are made in advance


# -- shared helpers ---------------------------------------------------------------------------


def _wire_dtype(dtype: Any) -> np.dtype | None:
    """The §4 dtype (little-endian) for a local dtype, or None if the wire has no code for it."""
    dt = np.dtype(dtype)
    code = CODE_BY_DTYPE.get(dt)
    if code is None:
        code = CODE_BY_DTYPE.get(dt.newbyteorder("<"))
        if code is None:
            return None
    return DTYPE_BY_CODE[code]


def _shape_str(shape: tuple[int, ...]) -> str:
    return str(tuple(shape))


def _tensor_str(dtype: np.dtype, shape: tuple[int, ...]) -> str:
    return f"{dtype.name} tensor of shape {_shape_str(shape)}"


def _what(v: Any) -> str:
    """A short description of a (wire or local) value, for "expected X, actual Y" messages."""
    if isinstance(v, np.ndarray):
        return f"{v.dtype.name} tensor of shape {_shape_str(v.shape)}"
    if isinstance(v, np.generic):
        return f"NumPy {type(v).__name__} scalar {clip(v, 40)}"
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return f"bool {v}"
    if isinstance(v, int):
        return f"int {v}"
    if isinstance(v, float):
        return f"float {v!r}"
    if isinstance(v, str):
        return f"str {clip(v, 40)}"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return f"bytes of length {len(v)}"
    if isinstance(v, list):
        return f"array of {len(v)} value(s)"
    if isinstance(v, tuple):
        return f"tuple of {len(v)} value(s)"
    if isinstance(v, dict):
        keys = ", ".join(repr(k) for k in list(v)[:8])
        more = ", ..." if len(v) > 8 else ""
        return f"map with keys {{{keys}{more}}}" if v else "empty map"
    return f"{type(v).__name__} {clip(v, 40)}"


def _keys_str(keys: Any) -> str:
    return "{" + ", ".join(repr(k) for k in keys) + "}"


def _bad_space(where: str, detail: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_SPACE, f"{where}: {detail}")


def _bad_value(where: str, expected: str, actual: Any) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_VALUE, f"{where}: expected {expected}, actual {_what(actual)}")


def _encode_error(where: str, expected: str, actual: Any) -> EncodeError:
    return EncodeError(f"{where}: expected {expected}, actual {_what(actual)}")


# -- describe: space -> descriptor (§9) --------------------------------------------------------


@functools.singledispatch
def describe(space: gym.Space[Any], where: str = "space") -> dict[str, Any]:
    """Return the §9 descriptor of ``space``: a wire value with its fields in canonical order.

    Raises :class:`SpaceError` for a space the protocol cannot carry (an unknown space type, a
    non-str Dict key, a dtype without a §4 code); ``where`` names the space in that message.
    """
    raise SpaceError(
        f"{where}: cannot describe a {type(space).__name__} on the wire; rlay carries {_SUPPORTED} "
        "spaces, nested arbitrarily. Wrap it in a supported space (for example with an observation "
        "or action wrapper that converts its values)."
    )


def _describe_dtype(dtype: Any, where: str, space: str) -> np.dtype:
    dt = _wire_dtype(dtype)
    if dt is None:
        raise SpaceError(
            f"{where}: {space} dtype {np.dtype(dtype)} has no wire code; expected one of {_DTYPE_NAMES}"
        )
    return dt


@describe.register
def _describe_box(space: Box, where: str = "space") -> dict[str, Any]:
    dt = _describe_dtype(space.dtype, where, "Box")
    return {
        "kind": "box",
        "dtype": dt.name,
        "shape": [int(d) for d in space.shape],
        "low": np.array(space.low, dtype=dt, order="C", copy=True),
        "high": np.array(space.high, dtype=dt, order="C", copy=True),
    }


@describe.register
def _describe_discrete(space: Discrete, where: str = "space") -> dict[str, Any]:
    dt = _describe_dtype(space.dtype, where, "Discrete")
    return {"kind": "discrete", "n": int(space.n), "start": int(space.start), "dtype": dt.name}


@describe.register
def _describe_multi_discrete(space: MultiDiscrete, where: str = "space") -> dict[str, Any]:
    dt = _describe_dtype(space.dtype, where, "MultiDiscrete")
    return {
        "kind": "multi_discrete",
        "nvec": np.array(space.nvec, dtype=dt, order="C", copy=True),
        "start": np.array(space.start, dtype=dt, order="C", copy=True),
    }


@describe.register
def _describe_multi_binary(space: MultiBinary, where: str = "space") -> dict[str, Any]:
    n = space.n
    return {"kind": "multi_binary", "n": int(n) if isinstance(n, (int, np.integer)) else [int(d) for d in n]}


@describe.register
def _describe_text(space: Text, where: str = "space") -> dict[str, Any]:
    charset = space.characters  # the unique characters, sorted by code point
    try:
        charset.encode("utf-8")
    except UnicodeEncodeError:
        raise SpaceError(
            f"{where}: Text charset holds a character that is not valid in UTF-8 (a lone surrogate)"
        ) from None
    return {
        "kind": "text",
        "min_length": int(space.min_length),
        "max_length": int(space.max_length),
        "charset": charset,
    }


@describe.register
def _describe_dict(space: Dict, where: str = "space") -> dict[str, Any]:
    spaces = {}
    for key, sub in space.spaces.items():
        if type(key) is not str:
            raise SpaceError(
                f"{where}: Dict keys must be str on the wire, actual {type(key).__name__} key {clip(key, 40)}"
            )
        spaces[key] = describe(sub, f"{where}.spaces[{key!r}]")
    return {"kind": "dict", "spaces": spaces}


@describe.register
def _describe_tuple(space: Tuple, where: str = "space") -> dict[str, Any]:
    return {
        "kind": "tuple",
        "spaces": [describe(s, f"{where}.spaces[{i}]") for i, s in enumerate(space.spaces)],
    }


@describe.register
def _describe_sequence(space: Sequence, where: str = "space") -> dict[str, Any]:
    return {
        "kind": "sequence",
        "space": describe(space.feature_space, f"{where}.space"),
        "stack": bool(space.stack),
    }


@describe.register
def _describe_graph(space: Graph, where: str = "space") -> dict[str, Any]:
    for name, sub in (("node_space", space.node_space), ("edge_space", space.edge_space)):
        if not isinstance(sub, (Box, Discrete)) and not (name == "edge_space" and sub is None):
            raise SpaceError(
                f"{where}.{name}: expected a Box or Discrete space (§9), actual {type(sub).__name__}"
            )
    edge = space.edge_space
    return {
        "kind": "graph",
        "node_space": describe(space.node_space, f"{where}.node_space"),
        "edge_space": None if edge is None else describe(edge, f"{where}.edge_space"),
    }


@describe.register
def _describe_one_of(space: OneOf, where: str = "space") -> dict[str, Any]:
    return {
        "kind": "one_of",
        "spaces": [describe(s, f"{where}.spaces[{i}]") for i, s in enumerate(space.spaces)],
    }


# -- from_descriptor: descriptor -> space (§9), for untrusted input ----------------------------


def from_descriptor(desc: Any, where: str = "space") -> gym.Space[Any]:
    """Build the Gymnasium space a peer described.

    ``desc`` is the value as :func:`rlay.protocol.codec.decode` returns it (tensors are NumPy
    arrays). ``where`` names the descriptor in error messages (``"observation_space"``). Raises
    :class:`ProtocolError`: ``BAD_SPACE`` for anything §9 forbids, ``UNKNOWN_DTYPE`` for a dtype
    name not in §4, ``TOO_DEEP`` for spaces nested deeper than the codec's depth limit. Field order
    inside a descriptor is not checked (canonical order is for encoders).
    """
    return _build(desc, where, 1)


def _build(desc: Any, where: str, depth: int) -> gym.Space[Any]:
    if depth > DEFAULT_MAX_DEPTH:
        raise ProtocolError(ErrorCode.TOO_DEEP, f"{where}: spaces nested deeper than {DEFAULT_MAX_DEPTH}")
    if type(desc) is not dict:
        raise _bad_space(where, f"expected a space descriptor (a map), actual {_what(desc)}")
    if "kind" not in desc:
        raise _bad_space(where, f"missing field 'kind'; expected one of {', '.join(map(repr, _BUILDERS))}")
    kind = desc["kind"]
    entry = _BUILDERS.get(kind) if type(kind) is str else None
    if entry is None:
        raise _bad_space(
            f"{where}.kind", f"expected one of {', '.join(map(repr, _BUILDERS))}, actual {_what(kind)}"
        )
    fields, builder = entry
    if len(desc) != len(fields) + 1 or any(f not in desc for f in fields):
        missing = [f for f in fields if f not in desc]
        extra = [k for k in desc if k != "kind" and k not in fields]
        parts = []
        if missing:
            parts.append(f"missing field(s) {', '.join(map(repr, missing))}")
        if extra:
            parts.append(f"unknown field(s) {', '.join(repr(k)[:40] for k in extra)}")
        raise _bad_space(
            where,
            f"a {kind!r} descriptor has exactly the fields kind, {', '.join(fields)}: {'; '.join(parts)}",
        )
    try:
        return builder(desc, where, depth)
    except (ValueError, TypeError, OverflowError) as exc:
        # Everything Gymnasium checks is checked above it first; this is the safety net that
        # keeps a constructor's own exception from escaping as something other than BAD_SPACE.
        raise _bad_space(where, f"Gymnasium rejected the {kind!r} descriptor: {exc}") from None


def _int_field(desc: dict[str, Any], name: str, where: str, minimum: int | None = None) -> int:
    v = desc[name]
    if type(v) is not int:
        raise _bad_space(f"{where}.{name}", f"expected an int, actual {_what(v)}")
    if minimum is not None and v < minimum:
        raise _bad_space(f"{where}.{name}", f"expected an int >= {minimum}, actual {v}")
    return v


def _dtype_field(desc: dict[str, Any], where: str, integer: bool = False) -> np.dtype:
    name = desc["dtype"]
    if type(name) is not str:
        raise _bad_space(f"{where}.dtype", f"expected a dtype name (a str), actual {_what(name)}")
    dt = DTYPE_BY_NAME.get(name)
    if dt is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_DTYPE, f"{where}.dtype: expected one of {_DTYPE_NAMES}, actual {clip(name, 40)}"
        )
    if integer and dt.kind not in "iu":
        raise _bad_space(f"{where}.dtype", f"expected an integer dtype, actual {name}")
    return dt


def _tensor_field(
    desc: dict[str, Any], name: str, where: str, dtype: np.dtype | None, shape: tuple[int, ...] | None
) -> np.ndarray:
    v = desc[name]
    path = f"{where}.{name}"
    if type(v) is not np.ndarray:
        expected = "a tensor" if dtype is None or shape is None else f"a {_tensor_str(dtype, shape)}"
        raise _bad_space(path, f"expected {expected}, actual {_what(v)}")
    if (dtype is not None and v.dtype != dtype) or (shape is not None and v.shape != shape):
        dt = v.dtype if dtype is None else dtype
        sh = v.shape if shape is None else shape
        raise _bad_space(path, f"expected a {_tensor_str(dt, sh)}, actual {_what(v)}")
    return v


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    """The index of the first true element of ``mask`` (for messages)."""
    if not mask.ndim:
        return ()
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _index_str(idx: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, idx)) + "]"


def _build_box(desc: dict[str, Any], where: str, depth: int) -> gym.Space[Any]:
    dt = _dtype_field(desc, where)
    raw_shape = desc["shape"]
    if (
        type(raw_shape) is not list
        or len(raw_shape) > MAX_NDIM
        or any(type(d) is not int or d < 0 for d in raw_shape)
    ):
        raise _bad_space(
            f"{where}.shape",
            f"expected an array of at most {MAX_NDIM} ints >= 0, actual {clip(raw_shape, 80)}",
        )
    shape = tuple(raw_shape)
    low = _tensor_field(desc, "low", where, dt, shape)
    high = _tensor_field(desc, "high", where, dt, shape)
    if dt.kind == "f":
        for name, arr in (("low", low), ("high", high)):
            nan = np.isnan(arr)
            if nan.any():
                at = _index_str(_first_index(nan))
                raise _bad_space(f"{where}.{name}", f"expected no NaN bound, actual NaN at {at}")
    above = low > high
    if above.any():
        idx = _first_index(above)
        i = _index_str(idx)
        raise _bad_space(
            where, f"expected low <= high everywhere, actual low{i} = {low[idx]} > high{i} = {high[idx]}"
        )
    # Copies: the decoded tensors are read-only views on a frame buffer that will be reused.
    return Box(low=low.copy(), high=high.copy(), shape=shape, dtype=dt)


def _build_discrete(desc: dict[str, Any], where: str, depth: int) -> gym.Space[Any]:
    n = _int_field(desc, "n", where, minimum=1)
    start = _int_field(desc, "start", where)
    dt = _dtype_field(desc, where, integer=True)
    info = np.iinfo(dt)
    for name, v in (("n", n), ("start", start)):
        if not info.min <= v <= info.max:
            raise _bad_space(
                f"{where}.{name}",
                f"expected an int in the {dt.name} range [{info.min}, {info.max}], actual {v}",
            )
    if start + n - 1 > info.max:  # §9: every value of the space fits its dtype
        raise _bad_space(
            where, f"the last value start + n - 1 = {start + n - 1} is above the {dt.name} maximum {info.max}"
        )
    return Discrete(n, start=start, dtype=dt)


def _build_multi_discrete(desc: dict[str, Any], where: str, depth: int) -> gym.Space[Any]:
    nvec = _tensor_field(desc, "nvec", where, None, None)
    if nvec.dtype.kind not in "iu":
        raise _bad_space(f"{where}.nvec", f"expected an integer tensor, actual {_what(nvec)}")
    start = _tensor_field(desc, "start", where, nvec.dtype, nvec.shape)
    bad = nvec < 1
    if bad.any():
        idx = _first_index(bad)
        raise _bad_space(
            f"{where}.nvec", f"expected every count >= 1, actual nvec{_index_str(idx)} = {nvec[idx]}"
        )
    return MultiDiscrete(nvec.copy(), dtype=nvec.dtype, start=start.copy())


def _build_multi_binary(desc: dict[str, Any], where: str, depth: int) -> gym.Space[Any]:
    n = desc["n"]
    if type(n) is int:
        if n < 1:
            raise _bad_space(f"{where}.n", f"expected an int >= 1, actual {n}")
        return MultiBinary(n)
    if type(n) is list and len(n) <= MAX_NDIM and all(type(d) is int and d >= 1 for d in n):
        return MultiBinary(list(n))
    raise _bad_space(
        f"{where}.n",
        f"expected an int >= 1 or an array of at most {MAX_NDIM} ints >= 1, actual {clip(n, 80)}",
    )


def _build_text(desc: dict[str, Any], where: str, depth: int) -> gym.Space[Any]:
    min_length = _int_field(desc, "min_length", where, minimum=0)
    max_length = _int_field(desc, "max_length", where, minimum=0)
    if min_length > max_length:
        raise _bad_space(where, f"expected min_length <= max_length, actual {min_length} > {max_length}")
    charset = desc["charset"]
    if type(charset) is not str:
        raise _bad_space(f"{where}.charset", f"expected a str, actual {_what(charset)}")
    for i in range(1, len(charset)):
        if charset[i - 1] >= charset[i]:
            raise _bad_space(
                f"{where}.charset",
                "expected each character once, in ascending code-point order, actual "
                f"{charset[i - 1]!r} before {charset[i]!r} at position {i}",
            )
    return Text(max_length, min_length=min_length, charset=charset)


def _build_dict(desc: dict[str, Any], where: str, depth: int) -> gym.Space[Any]:
    spaces = desc["spaces"]
    if type(spaces) is not dict:
        raise _bad_space(f"{where}.spaces", f"expected a map of str to space, actual {_what(spaces)}")
    pairs = []
    for key, sub in spaces.items():
        if type(key) is not str:
            raise _bad_space(f"{where}.spaces", f"expected str keys, actual {_what(key)}")
        pairs.append((key, _build(sub, f"{where}.spaces[{key!r}]", depth + 1)))
    return Dict(pairs)  # a sequence of pairs keeps the peer's key order


def _space_list(desc: dict[str, Any], where: str, depth: int, nonempty: bool = False) -> list[gym.Space[Any]]:
    spaces = desc["spaces"]
    if type(spaces) is not list or (nonempty and not spaces):
        expected = "a non-empty array of spaces" if nonempty else "an array of spaces"
        raise _bad_space(f"{where}.spaces", f"expected {expected}, actual {_what(spaces)}")
    return [_build(sub, f"{where}.spaces[{i}]", depth + 1) for i, sub in enumerate(spaces)]


def _build_tuple(desc: dict[str, Any], where: str, depth: int) -> gym.Space[Any]:
    return Tuple(_space_list(desc, where, depth))


def _build_one_of(desc: dict[str, Any], where: str, depth: int) -> gym.Space[Any]:
    return OneOf(_space_list(desc, where, depth, nonempty=True))


def _build_sequence(desc: dict[str, Any], where: str, depth: int) -> gym.Space[Any]:
    stack = desc["stack"]
    if type(stack) is not bool:
        raise _bad_space(f"{where}.stack", f"expected a bool, actual {_what(stack)}")
    return Sequence(_build(desc["space"], f"{where}.space", depth + 1), stack=stack)


def _build_graph(desc: dict[str, Any], where: str, depth: int) -> gym.Space[Any]:
    def part(name: str) -> gym.Space[Any]:
        sub = desc[name]
        kind = sub.get("kind") if type(sub) is dict else None
        if kind not in ("box", "discrete"):
            actual = f"kind {clip(kind, 40)}" if type(sub) is dict else _what(sub)
            nil = " or nil" if name == "edge_space" else ""
            raise _bad_space(f"{where}.{name}", f"expected a 'box' or 'discrete' space{nil}, actual {actual}")
        return _build(sub, f"{where}.{name}", depth + 1)

    node_space = part("node_space")
    edge_space = None if desc["edge_space"] is None else part("edge_space")
    return Graph(node_space=node_space, edge_space=edge_space)


#: kind -> (fields after ``kind`` in canonical order, builder). The table of §9.
_BUILDERS: dict[str, tuple[tuple[str, ...], Callable[[dict[str, Any], str, int], gym.Space[Any]]]] = {
    "box": (("dtype", "shape", "low", "high"), _build_box),
    "discrete": (("n", "start", "dtype"), _build_discrete),
    "multi_discrete": (("nvec", "start"), _build_multi_discrete),
    "multi_binary": (("n",), _build_multi_binary),
    "text": (("min_length", "max_length", "charset"), _build_text),
    "dict": (("spaces",), _build_dict),
    "tuple": (("spaces",), _build_tuple),
    "sequence": (("space", "stack"), _build_sequence),
    "graph": (("node_space", "edge_space"), _build_graph),
    "one_of": (("spaces",), _build_one_of),
}


# -- values: SpaceCodec (§9 "Values") ----------------------------------------------------------


class SpaceCodec:
    """Converts values of one space to and from wire values. Build it once per space.

    ``to_wire(value)`` takes a Gymnasium value of the space and returns the wire value (a Box
    value is the array itself when it already has the space's dtype and shape, so nothing is
    copied); it raises :class:`EncodeError` for a value that cannot be shaped to the space.

    ``from_wire(wire)`` takes a value as :func:`rlay.protocol.codec.decode` returned it and returns
    the Gymnasium value (a Box value is the received read-only tensor view, not a copy); it raises
    :class:`ProtocolError` ``BAD_VALUE`` naming the path (``where``) when the structure, dtype or
    shape does not match. Neither direction checks bounds: call ``space.contains`` for that.

    For ``num_envs > 1`` (§10) build the codec for :func:`batched` ``(space, num_envs)``.

    ``exact=True`` (an env side's observations, spec §9 "Values"): ``to_wire`` converts an
    array of another dtype only when every element survives the conversion exactly (a float64
    observation for a float32 Box must hold float32 values); otherwise it raises
    :class:`EncodeError` naming the first element that would change. Without it (an agent side's
    actions, as Gymnasium's own envs take them) a same-kind cast is made, and only an integer
    narrowing that wraps is refused.
    """

    __slots__ = ("exact", "from_wire", "space", "to_wire", "where")

    def __init__(self, space: gym.Space[Any], where: str = "value", *, exact: bool = False) -> None:
        self.space = space
        self.where = where
        self.exact = exact
        # Plain instance attributes holding closures: a call is one attribute lookup.
        self.to_wire: ToWire
        self.from_wire: FromWire
        token = _EXACT.set(exact)
        try:
            self.to_wire, self.from_wire = _compile(space, where)
        finally:
            _EXACT.reset(token)

    def __repr__(self) -> str:
        return f"SpaceCodec({self.space}, where={self.where!r})"


def batched(space: gym.Space[Any], n: int) -> gym.Space[Any]:
    """The space of ``n`` stacked values of ``space``, as Gymnasium's ``batch_space`` defines it (§10).

    Box -> Box with a leading ``n`` dimension, Discrete -> MultiDiscrete, MultiDiscrete and
    MultiBinary -> Box, Dict/Tuple -> the same of batched sub-spaces, others -> Tuple of ``n``.
    §10 uses it only when ``num_envs > 1``; with one sub-env, values are not batched.
    """
    if type(n) is not int or n < 1:
        raise UsageError(f"batched: expected a number of sub-envs >= 1, actual {n!r}")
    # §10: a batched Dict keeps the single Dict's key order (its descriptor's order on the wire).
    # Gymnasium's batch_space builds Dict(..., sort_keys=True) and so sorts a Dict that was built
    # from an ordered list; the two are equal spaces (Dict equality ignores order), but values
    # would be encoded in another order than the descriptor's.
    if isinstance(space, Dict):
        return Dict(
            {key: batched(sub, n) for key, sub in space.spaces.items()},
            seed=copy.deepcopy(space.np_random),
            sort_keys=False,
        )
    if isinstance(space, Tuple):
        return Tuple(tuple(batched(sub, n) for sub in space.spaces), seed=copy.deepcopy(space.np_random))
    return batch_space(space, n)


@functools.singledispatch
def _compile(space: gym.Space[Any], where: str) -> tuple[ToWire, FromWire]:
    raise SpaceError(
        f"{where}: no value codec for a {type(space).__name__}; rlay carries {_SUPPORTED} spaces. "
        "Wrap it in a supported space."
    )


#: Read while a SpaceCodec compiles (its ``exact`` argument), captured by each array codec.
_EXACT: contextvars.ContextVar[bool] = contextvars.ContextVar("rlay_exact_casts", default=False)


def _array_codec(dtype: Any, shape: tuple[int, ...], where: str) -> tuple[ToWire, FromWire]:
    """Box, MultiDiscrete, MultiBinary: a tensor of exactly one dtype and shape."""
    exact = _EXACT.get()
    dt = _wire_dtype(dtype)
    if dt is None:
        raise SpaceError(f"{where}: dtype {np.dtype(dtype)} has no wire code; expected one of {_DTYPE_NAMES}")
    shape = tuple(int(d) for d in shape)
    expected = _tensor_str(dt, shape)
    ndarray = np.ndarray

    def from_wire(v: Any) -> Any:
        # The decoder builds tensors with the dtype objects of wire.DTYPE_BY_CODE, so ``is``
        # is the common case; ``==`` covers equal dtype objects built elsewhere.
        if type(v) is ndarray and (v.dtype is dt or v.dtype == dt) and v.shape == shape:
            return v
        raise _bad_value(where, expected, v)

    def to_wire(v: Any) -> Any:
        if type(v) is ndarray and v.dtype is dt and v.shape == shape:
            return v
        return _coerce_array(v, dt, shape, where, expected, exact)

    return to_wire, from_wire


def _coerce_array(
    v: Any, dt: np.dtype, shape: tuple[int, ...], where: str, expected: str, exact: bool = False
) -> np.ndarray:
    """The slow path of an array value: cast a same-kind dtype or an array-like, check the shape."""
    if isinstance(v, (str, bytes, dict, GraphInstance)) or v is None:
        raise _encode_error(where, f"a {expected}", v)
    try:
        arr = np.asarray(v)
    except (ValueError, TypeError) as exc:
        raise EncodeError(f"{where}: expected a {expected}, actual {_what(v)} ({exc})") from None
    if arr.shape != shape or arr.dtype.kind not in "biuf":
        raise _encode_error(where, f"a {expected}", arr if isinstance(v, np.ndarray) else v)
    if arr.dtype != dt:
        if not np.can_cast(arr.dtype, dt, casting="same_kind"):
            raise EncodeError(
                f"{where}: expected a {expected}, actual {_what(arr)} (casting {arr.dtype.name} to "
                f"{dt.name} would change the values' kind)"
            )
        cast = arr.astype(dt)
        # A narrowing integer cast wraps around silently; refuse it instead of sending garbage.
        if dt.kind in "iu" and arr.dtype.kind in "biu" and not np.array_equal(cast, arr):
            raise EncodeError(f"{where}: expected a {expected}, actual values outside the {dt.name} range")
        if exact:
            changed = cast.astype(arr.dtype) != arr
            if arr.dtype.kind == "f":
                changed &= ~(np.isnan(arr) & np.isnan(cast.astype(arr.dtype)))
            if changed.any():
                idx = _first_index(changed)
                raise EncodeError(
                    f"{where}: expected a {expected}, actual {_what(arr)} whose element "
                    f"{_index_str(idx)} = {arr[idx]!r} is not exactly a {dt.name} (rlay never rounds an "
                    f"observation: return values of the space's dtype)"
                )
        arr = cast
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr


@_compile.register
def _compile_box(space: Box, where: str) -> tuple[ToWire, FromWire]:
    return _array_codec(space.dtype, space.shape, where)


@_compile.register
def _compile_multi_discrete(space: MultiDiscrete, where: str) -> tuple[ToWire, FromWire]:
    return _array_codec(space.dtype, space.shape, where)


@_compile.register
def _compile_multi_binary(space: MultiBinary, where: str) -> tuple[ToWire, FromWire]:
    return _array_codec(space.dtype, space.shape, where)  # int8 (§9)


@_compile.register
def _compile_discrete(space: Discrete, where: str) -> tuple[ToWire, FromWire]:
    dt = _wire_dtype(space.dtype)
    if dt is None:
        raise SpaceError(f"{where}: dtype {space.dtype} has no wire code; expected one of {_DTYPE_NAMES}")
    info = np.iinfo(dt)
    lo, hi = int(info.min), int(info.max)
    scalar = dt.type
    index = operator.index
    expected = f"an int in the {dt.name} range [{lo}, {hi}] (or a 0-d integer tensor)"
    # Building a NumPy scalar costs more than the rest of a decode of a Discrete action, so the
    # scalars of the space's values are made once (they are immutable: sharing them is safe).
    # Values outside the space (bounds are not checked here) are built on demand.
    first = int(space.start)
    cached = tuple(scalar(first + i) for i in range(min(int(space.n), hi - first + 1, _DISCRETE_CACHE)))
    count = len(cached)

    def from_wire(v: Any) -> Any:
        if type(v) is int:
            i = v - first
            if 0 <= i < count:
                return cached[i]
            if lo <= v <= hi:
                return scalar(v)
        # §9: decoders also accept a 0-d integer tensor.
        if type(v) is np.ndarray and v.ndim == 0 and v.dtype.kind in "iu" and lo <= int(v) <= hi:
            return scalar(int(v))
        raise _bad_value(where, expected, v)

    def to_wire(v: Any) -> Any:
        try:
            i = index(v)  # int, NumPy integer, 0-d integer array; never a float
        except TypeError:
            raise _encode_error(where, f"an integer for {space}", v) from None
        if lo <= i <= hi:
            return i
        raise _encode_error(where, f"an integer in the {dt.name} range [{lo}, {hi}]", v)

    return to_wire, from_wire


@_compile.register
def _compile_text(space: Text, where: str) -> tuple[ToWire, FromWire]:
    def from_wire(v: Any) -> Any:
        if type(v) is str:
            return v
        raise _bad_value(where, "a str", v)

    def to_wire(v: Any) -> Any:
        if isinstance(v, str):
            return str(v)
        raise _encode_error(where, "a str", v)

    return to_wire, from_wire


@_compile.register
def _compile_dict(space: Dict, where: str) -> tuple[ToWire, FromWire]:
    for key in space.spaces:
        if type(key) is not str:
            raise SpaceError(
                f"{where}: Dict keys must be str on the wire, actual {type(key).__name__} {clip(key, 40)}"
            )
    codecs = [(key, *_compile(sub, f"{where}[{key!r}]")) for key, sub in space.spaces.items()]
    keys = [k for k, _, _ in codecs]
    to_items = [(k, to) for k, to, _ in codecs]
    from_items = [(k, fr) for k, _, fr in codecs]
    n = len(keys)
    expected = f"a map with the keys {_keys_str(keys)}"

    def keys_mismatch(v: Mapping[Any, Any]) -> str:
        missing = [k for k in keys if k not in v]
        extra = [k for k in v if k not in space.spaces]
        parts = [f"missing {_keys_str(missing)}"] if missing else []
        if extra:
            parts.append(f"unexpected {_keys_str(extra)}")
        return f"{expected}, actual {_what(dict(v))} ({'; '.join(parts)})"

    def from_wire(v: Any) -> Any:
        if type(v) is not dict:
            raise _bad_value(where, expected, v)
        if len(v) == n:
            try:
                return {k: fr(v[k]) for k, fr in from_items}  # the space's order, whatever the wire's
            except KeyError:
                pass
        raise ProtocolError(ErrorCode.BAD_VALUE, f"{where}: {keys_mismatch(v)}")

    def to_wire(v: Any) -> Any:
        if not isinstance(v, Mapping):
            raise _encode_error(where, expected, v)
        if len(v) == n:
            try:
                return {k: to(v[k]) for k, to in to_items}
            except KeyError:
                pass
        raise EncodeError(f"{where}: {keys_mismatch(v)}")

    return to_wire, from_wire


@_compile.register
def _compile_tuple(space: Tuple, where: str) -> tuple[ToWire, FromWire]:
    codecs = [_compile(sub, f"{where}[{i}]") for i, sub in enumerate(space.spaces)]
    tos = [to for to, _ in codecs]
    froms = [fr for _, fr in codecs]
    n = len(codecs)
    expected = f"an array of {n} value(s)"

    def from_wire(v: Any) -> Any:
        if type(v) is list and len(v) == n:
            return tuple([fr(x) for fr, x in zip(froms, v, strict=True)])
        raise _bad_value(where, expected, v)

    def to_wire(v: Any) -> Any:
        if isinstance(v, (tuple, list)) and len(v) == n:
            return [to(x) for to, x in zip(tos, v, strict=True)]
        raise _encode_error(where, f"a tuple of {n} value(s)", v)

    return to_wire, from_wire


def _at_index(exc: ProtocolError | EncodeError, elem_where: str, where: str, i: int) -> str:
    """Rewrite an element's error message so that it names the element's index."""
    text = exc.detail if isinstance(exc, ProtocolError) else str(exc)
    return text.replace(elem_where, f"{where}[{i}]", 1)


def _map_elements(fn: Callable[[Any], Any], items: Any, elem_where: str, where: str) -> list[Any]:
    try:
        return [fn(x) for x in items]
    except (ProtocolError, EncodeError):
        pass
    for i, x in enumerate(items):  # the error path: find the failing element to name it
        try:
            fn(x)
        except ProtocolError as exc:
            raise ProtocolError(exc.code, _at_index(exc, elem_where, where, i)) from None
        except EncodeError as exc:
            raise EncodeError(_at_index(exc, elem_where, where, i)) from None
    raise AssertionError("unreachable: an element failed once and then succeeded")  # pragma: no cover


@_compile.register
def _compile_sequence(space: Sequence, where: str) -> tuple[ToWire, FromWire]:
    feature = space.feature_space
    elem_where = f"{where}[i]"
    elem_to, elem_from = _compile(feature, elem_where)
    expected = "an array of values"

    if not space.stack:

        def from_wire(v: Any) -> Any:
            if type(v) is not list:
                raise _bad_value(where, expected, v)
            return tuple(_map_elements(elem_from, v, elem_where, where))

        def to_wire(v: Any) -> Any:
            if not isinstance(v, (tuple, list)):
                raise _encode_error(where, "a tuple of values", v)
            return _map_elements(elem_to, v, elem_where, where)

        return to_wire, from_wire

    # stack=True: locally the elements are stacked as Gymnasium stacks them; on the wire they
    # travel one by one like any sequence (§9).
    stacked = space.stacked_feature_space

    def from_wire_stacked(v: Any) -> Any:
        if type(v) is not list:
            raise _bad_value(where, expected, v)
        items = _map_elements(elem_from, v, elem_where, where)
        out: Any = create_empty_array(feature, len(items))
        if not items:  # Gymnasium's concatenate cannot stack nothing
            return out
        return concatenate(feature, items, out)

    def to_wire_stacked(v: Any) -> Any:
        try:
            items = list(iterate(stacked, v))
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise EncodeError(
                f"{where}: expected a stacked value of {feature} (as Sequence(..., stack=True) "
                f"samples it), actual {_what(v)} ({exc})"
            ) from None
        return _map_elements(elem_to, items, elem_where, where)

    return to_wire_stacked, from_wire_stacked


def _rows_codec(dtype: Any, tail: tuple[int, ...], where: str) -> tuple[ToWire, FromWire]:
    """A tensor of any number of rows, each of shape ``tail`` (graph nodes, edges, links)."""
    exact = _EXACT.get()
    dt = _wire_dtype(dtype)
    if dt is None:
        raise SpaceError(f"{where}: dtype {np.dtype(dtype)} has no wire code; expected one of {_DTYPE_NAMES}")
    tail = tuple(int(d) for d in tail)
    expected = f"{dt.name} tensor of shape ({', '.join(['m', *map(str, tail)])}{',' if not tail else ''})"

    def from_wire(v: Any) -> Any:
        if type(v) is np.ndarray and v.dtype == dt and v.ndim == len(tail) + 1 and v.shape[1:] == tail:
            return v
        raise _bad_value(where, expected, v)

    def to_wire(v: Any) -> Any:
        arr = v if type(v) is np.ndarray else None
        if arr is None or arr.dtype != dt or arr.ndim != len(tail) + 1 or arr.shape[1:] != tail:
            if v is None or isinstance(v, (str, bytes, dict)):
                raise _encode_error(where, f"a {expected}", v)
            try:
                arr = np.asarray(v)
            except (ValueError, TypeError) as exc:
                raise EncodeError(f"{where}: expected a {expected}, actual {_what(v)} ({exc})") from None
            if arr.ndim != len(tail) + 1:
                raise _encode_error(where, f"a {expected}", arr)
            arr = _coerce_array(arr, dt, (arr.shape[0], *tail), where, expected, exact)
        return arr

    return to_wire, from_wire


@_compile.register
def _compile_graph(space: Graph, where: str) -> tuple[ToWire, FromWire]:
    node, edge = space.node_space, space.edge_space
    for name, sub in (("node_space", node), ("edge_space", edge)):
        if not isinstance(sub, (Box, Discrete)) and not (name == "edge_space" and sub is None):
            raise SpaceError(f"{where}: the {name} of a Graph must be a Box or Discrete, actual {sub}")
    nodes_to, nodes_from = _rows_codec(node.dtype, node.shape or (), f"{where}.nodes")
    if edge is not None:
        edges_to, edges_from = _rows_codec(edge.dtype, edge.shape or (), f"{where}.edges")
    # §9: edge_links are int64 or int32 (Gymnasium's own Graph.sample() gives int32); a relay
    # keeps the dtype it was given.
    links_to, links_from = _rows_codec(_INT64, (2,), f"{where}.edge_links")
    links32_to, links32_from = _rows_codec(_INT32, (2,), f"{where}.edge_links")
    fields = ("nodes", "edges", "edge_links")
    expected = "a map with the keys {'nodes', 'edges', 'edge_links'}"

    def from_wire(v: Any) -> Any:
        if type(v) is not dict or len(v) != 3 or any(f not in v for f in fields):
            raise _bad_value(where, expected, v)
        nodes = nodes_from(v["nodes"])
        edges, links = v["edges"], v["edge_links"]
        if edges is None and links is None:
            return GraphInstance(nodes, None, None)
        if edge is None:
            raise ProtocolError(
                ErrorCode.BAD_VALUE,
                f"{where}: expected nil edges and edge_links (the graph has no edge space), "
                f"actual edges {_what(edges)}, edge_links {_what(links)}",
            )
        if edges is None or links is None:
            raise ProtocolError(
                ErrorCode.BAD_VALUE,
                f"{where}: expected edges and edge_links both nil or both tensors, "
                f"actual edges {_what(edges)}, edge_links {_what(links)}",
            )
        edges = edges_from(edges)
        links = (
            links32_from(links) if type(links) is np.ndarray and links.dtype == _INT32 else links_from(links)
        )
        if len(edges) != len(links):
            raise ProtocolError(
                ErrorCode.BAD_VALUE,
                f"{where}: expected one edge_links row per edge ({len(edges)}), actual {len(links)} rows",
            )
        return GraphInstance(nodes, edges, links)

    def to_wire(v: Any) -> Any:
        if not isinstance(v, GraphInstance):
            raise _encode_error(where, "a GraphInstance", v)
        nodes = nodes_to(v.nodes)
        if v.edges is None and v.edge_links is None:
            return {"nodes": nodes, "edges": None, "edge_links": None}
        if edge is None or v.edges is None or v.edge_links is None:
            raise EncodeError(
                f"{where}: expected edges and edge_links both None"
                + ("" if edge is None else " or both arrays")
                + f", actual edges {_what(v.edges)}, edge_links {_what(v.edge_links)}"
            )
        edges = edges_to(v.edges)
        raw = v.edge_links
        links = links32_to(raw) if type(raw) is np.ndarray and raw.dtype == _INT32 else links_to(raw)
        if len(edges) != len(links):
            raise EncodeError(
                f"{where}: expected one edge_links row per edge ({len(edges)}), actual {len(links)}"
            )
        return {"nodes": nodes, "edges": edges, "edge_links": links}

    return to_wire, from_wire


@_compile.register
def _compile_one_of(space: OneOf, where: str) -> tuple[ToWire, FromWire]:
    codecs = [_compile(sub, f"{where}[1]") for sub in space.spaces]
    n = len(codecs)
    index = operator.index
    int64 = np.int64
    expected = f"an array [index, value] with an int index in [0, {n - 1}]"

    def from_wire(v: Any) -> Any:
        if type(v) is list and len(v) == 2:
            i = v[0]
            if type(i) is int and 0 <= i < n:
                return (int64(i), codecs[i][1](v[1]))
        raise _bad_value(where, expected, v)

    def to_wire(v: Any) -> Any:
        if isinstance(v, (tuple, list)) and len(v) == 2:
            try:
                i = index(v[0])
            except TypeError:
                i = -1
            if 0 <= i < n:
                return [i, codecs[i][0](v[1])]
        raise _encode_error(where, f"a tuple (index, value) with an integer index in [0, {n - 1}]", v)

    return to_wire, from_wire


def fast_paths(observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> FastPaths:
    """The step-loop templates (``rlay.protocol.fastpath``) that fit these spaces, if any."""
    action: tuple[Any, tuple[int, ...]] | str | None = None
    if type(action_space) is Discrete:
        action = "int"
    elif type(action_space) is Box:
        action = (action_space.dtype, action_space.shape)
    obs = None
    if type(observation_space) is Box:
        obs = (observation_space.dtype, observation_space.shape)
    return FastPaths.for_shapes(action, obs)


def fast_contains(space: gym.Space[Any]) -> Callable[[Any], bool]:
    """``space.contains``, with a fast path for ``Discrete``, the most common action space."""
    if type(space) is Discrete:
        lo = int(space.start)
        hi = lo + int(space.n)
        integer = np.integer

        def contains(value: Any) -> bool:
            if type(value) is int or isinstance(value, integer):
                return bool(lo <= value < hi)
            return bool(space.contains(value))

        return contains
    return space.contains
