"""Values and tensors <-> MessagePack body + data section (spec/protocol.md §3-§5).

Encoding produces a body (``bytes``) and a list of buffers forming the data section, so that a
transport can send tensors with a gather write and no copy. Decoding returns NumPy arrays that are
read-only views on the received data section: no tensor byte is copied.

What a hostile body can cost (§13): a body longer than ``max_values`` bytes has its headers walked
first (:func:`check_structure`: at most ``max_values`` steps, one copy of the body), so msgpack
never builds more than ``max_values`` (262 144) objects: at most about 30 MiB of Python objects
(an empty list per value) plus the body's own bytes, whatever the frame's size. Measured with one
8 MiB frame (``tests/test_protocol.py::test_hostile_frames_cost_little_memory_and_time``): a HELLO
of 4 M ``[[]]`` is refused on its header (+0 MiB); with the handshake limit raised, that HELLO,
a STEP of 4 M ``[[]]`` and a STEP of 8 M nils each take 5-15 ms and +8 MiB (the copy); the same
``[[]]`` in arrays of 1000 takes ~120 ms and +8 MiB. A legitimate body of 262 000 ints decodes in
13 ms, +2 MiB.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, TypeAlias

import msgpack
import numpy as np

from rlay.errors import EncodeError, ProtocolError, clip
from rlay.protocol.wire import (
    BOOL_CODE,
    CODE_BY_DTYPE,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_VALUES,
    DTYPE_BY_CODE,
    MAX_NDIM,
    TENSOR_ALIGN,
    TENSOR_EXT,
    ErrorCode,
)

if TYPE_CHECKING:  # Python 3.11 has no collections.abc.Buffer; typeshed's stand-in is here.
    from typing_extensions import Buffer
else:
    Buffer: TypeAlias = object  # anything with the buffer protocol (bytes, memoryview, ndarray)

# One struct per ndim: dtype code, ndim, shape..., offset (§4).
_TENSOR_STRUCTS = [struct.Struct(f"<BB{n}II") for n in range(MAX_NDIM + 1)]
_PAD = bytes(TENSOR_ALIGN)
_EMPTY = np.empty(0, dtype=np.uint8)
_Timestamp = msgpack.Timestamp


class Encoder:
    """Packs values into (body, data buffers). One per connection; not thread-safe.

    ``encode`` returns the canonical encoding of §5: shortest ints, float64 floats, shortest
    headers, maps in their own order, tensors laid out in document order at 8-byte alignment.
    """

    __slots__ = ("_packer", "_chunks", "_cursor")

    def __init__(self) -> None:
        # use_single_float=False: floats are always float64 (§5). use_bin_type: bytes -> bin.
        self._packer = msgpack.Packer(
            default=self._default, use_bin_type=True, use_single_float=False, autoreset=True
        )
        self._chunks: list[Buffer] = []
        self._cursor = 0

    def encode(self, value: Any) -> tuple[bytes, list[Buffer], int]:
        """Return ``(body, data_chunks, data_len)``; ``b"".join(data_chunks)`` is the data section."""
        self._chunks = chunks = list[Buffer]()
        self._cursor = 0
        try:
            body = self._packer.pack(value)
        except EncodeError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(f"cannot encode value: {exc}") from None
        finally:
            self._packer.reset()
        return body, chunks, self._cursor

    def _default(self, obj: Any) -> msgpack.ExtType:
        if isinstance(obj, np.ndarray):
            arr = obj
        elif isinstance(obj, np.generic):
            arr = np.asarray(obj)  # NumPy scalar -> 0-d tensor, so its dtype survives (§3)
        else:
            raise EncodeError(
                f"cannot encode a value of type {type(obj).__name__}; expected None, bool, int, "
                "float, str, bytes, list, tuple, dict with str keys, or a numpy array"
            )
        code = CODE_BY_DTYPE.get(arr.dtype)
        if code is None:
            le = arr.dtype.newbyteorder("<")
            code = CODE_BY_DTYPE.get(le)
            if code is None:
                raise EncodeError(
                    f"cannot encode a numpy array of dtype {arr.dtype}; supported: bool, "
                    "int8-int64, uint8-uint64, float16/32/64"
                )
            arr = arr.astype(le)
        ndim = arr.ndim
        if ndim > MAX_NDIM:
            raise EncodeError(f"a tensor may have at most {MAX_NDIM} dimensions, got {ndim}")
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        nbytes = arr.nbytes
        if nbytes:
            cursor = self._cursor
            offset = (cursor + TENSOR_ALIGN - 1) & ~(TENSOR_ALIGN - 1)
            if offset != cursor:
                self._chunks.append(_PAD[: offset - cursor])
            self._chunks.append(arr.data.cast("B"))
            self._cursor = offset + nbytes
        else:
            offset = 0
        for dim in arr.shape:
            if dim > 0xFFFFFFFF:
                raise EncodeError(f"tensor dimension {dim} does not fit in 32 bits")
        return msgpack.ExtType(TENSOR_EXT, _TENSOR_STRUCTS[ndim].pack(code, ndim, *arr.shape, offset))


def _reject(code: ErrorCode, detail: str) -> ProtocolError:
    return ProtocolError(code, detail)


class _TensorHook:
    """The ext hook of one decode: builds read-only views on that frame's data section."""

    __slots__ = ("data", "size")

    def __init__(self, data: memoryview) -> None:
        # Read-only, so every array built on it below is read-only without touching its flags.
        self.data = data.toreadonly()
        self.size = len(data)

    def __call__(self, ext_type: int, payload: bytes) -> np.ndarray:
        if ext_type != TENSOR_EXT:
            raise _reject(ErrorCode.MALFORMED, f"unknown MessagePack ext type {ext_type}")
        n = len(payload)
        if n < 6:
            raise _reject(ErrorCode.BAD_TENSOR, f"tensor descriptor of {n} bytes, need at least 6")
        code = payload[0]
        ndim = payload[1]
        if ndim > MAX_NDIM:
            raise _reject(ErrorCode.BAD_TENSOR, f"tensor has {ndim} dimensions, limit {MAX_NDIM}")
        if n != 6 + 4 * ndim:
            raise _reject(
                ErrorCode.BAD_TENSOR,
                f"tensor descriptor with ndim={ndim} must be {6 + 4 * ndim} bytes, got {n}",
            )
        dtype = DTYPE_BY_CODE.get(code)
        if dtype is None:
            raise _reject(ErrorCode.UNKNOWN_DTYPE, f"unknown dtype code {code}")
        fields = _TENSOR_STRUCTS[ndim].unpack(payload)
        shape = fields[2:-1]
        offset = fields[-1]
        if offset % TENSOR_ALIGN:
            raise _reject(ErrorCode.BAD_TENSOR, f"tensor offset {offset} is not a multiple of 8")
        room = self.size - offset  # may be negative
        nbytes = 0 if 0 in shape else dtype.itemsize
        if nbytes:
            for dim in shape:  # stop as soon as it is too big: no huge products (§4)
                nbytes *= dim
                if nbytes > room:
                    break
        if nbytes > room or (nbytes and offset > self.size):
            raise _reject(
                ErrorCode.BAD_TENSOR,
                f"tensor {dtype.name}{list(shape)} at offset {offset} does not fit in the "
                f"{self.size}-byte data section",
            )
        if nbytes == 0:
            return np.frombuffer(_EMPTY, dtype=dtype, count=0).reshape(shape)
        if code == BOOL_CODE and self.data[offset : offset + nbytes].tobytes().translate(None, b"\x00\x01"):
            raise _reject(ErrorCode.BAD_TENSOR, "bool tensor holds a byte other than 0 or 1")
        # One call builds the view with its shape (bench/codec.py: ~4x faster than slicing,
        # frombuffer, reshape and clearing the writeable flag).
        return np.ndarray(shape, dtype, self.data, offset)


def _pairs_to_dict(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    for key, _ in pairs:
        if type(key) is not str:  # msgpack's strict_map_key still lets bytes keys through
            raise _reject(ErrorCode.MALFORMED, f"map key {clip(key, 40)} is not a str")
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[Any] = set()
        for key, _ in pairs:
            if key in seen:
                raise _reject(ErrorCode.MALFORMED, f"map has duplicate key {clip(key, 60)}")
            seen.add(key)
    return d


# §13's value count: what each first byte of a MessagePack value is, for the structure walk of
# :func:`check_structure`. (0, n): a scalar of n bytes in all; (1, n, mult): a container of n
# entries (mult values each) in the byte itself; (2, k, mult): a container whose count is a
# k-byte big-endian field; (3, k, extra): a str/bin/ext whose byte length is a k-byte field,
# followed by ``extra`` bytes (the ext type) and the payload; (4,): a byte that starts no value.
def _structure_table() -> list[tuple[int, ...]]:
    table: list[tuple[int, ...]] = [(4,)] * 256
    for b in range(0x00, 0x80):
        table[b] = (0, 1)
    for b in range(0xE0, 0x100):
        table[b] = (0, 1)
    for b in range(0x80, 0x90):
        table[b] = (1, b & 15, 2)
    for b in range(0x90, 0xA0):
        table[b] = (1, b & 15, 1)
    for b in range(0xA0, 0xC0):
        table[b] = (0, 1 + (b & 31))
    table[0xC0] = table[0xC2] = table[0xC3] = (0, 1)
    for b, k in ((0xC4, 1), (0xC5, 2), (0xC6, 4), (0xD9, 1), (0xDA, 2), (0xDB, 4)):
        table[b] = (3, k, 0)
    for b, k in ((0xC7, 1), (0xC8, 2), (0xC9, 4)):
        table[b] = (3, k, 1)
    table[0xCA], table[0xCB] = (0, 5), (0, 9)
    for b, k in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8), (0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
        table[b] = (0, 1 + k)
    for b, k in ((0xD4, 1), (0xD5, 2), (0xD6, 4), (0xD7, 8), (0xD8, 16)):
        table[b] = (3, 0, 1 + k)  # fixext: no length field, the type and k payload bytes
    table[0xDC], table[0xDD] = (2, 2, 1), (2, 4, 1)
    table[0xDE], table[0xDF] = (2, 2, 2), (2, 4, 2)
    return table


_STRUCTURE = _structure_table()
#: §3: what one tensor counts toward max_values (it costs a receiver far more than a scalar).
TENSOR_WEIGHT = 8


def check_structure(body: bytes, max_values: int, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """§13: walk the body's headers (nothing is built) and raise ``FRAME_TOO_LARGE`` once the
    values it declares pass ``max_values``, ``TOO_DEEP`` once containers nest deeper than
    ``max_depth``. Every container's count is added when its header is read: the body map counts
    1, an array of n n, a map of n entries 2n; a tensor adds 7 more when it is read (8 in all).
    The walk stops quietly at anything else that is
    wrong (the decoder then names it), and after at most ``max_values`` steps, so its cost is
    bounded whatever the body's size."""
    table = _STRUCTURE
    end = len(body)
    pos = 0
    count = 1
    remaining = [1]  # values still to read at each open level
    while remaining:
        if remaining[-1] == 0:
            remaining.pop()
            continue
        remaining[-1] -= 1
        if pos >= end:
            return
        entry = table[body[pos]]
        what = entry[0]
        if what == 0:
            pos += entry[1]
            continue
        if what == 3:
            k, extra = entry[1], entry[2]
            length = int.from_bytes(body[pos + 1 : pos + 1 + k], "big") if k else 0
            if extra and pos + 1 + k < end and body[pos + 1 + k] == TENSOR_EXT:
                count += TENSOR_WEIGHT - 1  # §3: a tensor counts as 8 values
                if count > max_values:
                    raise _too_many(max_values, pos)
            pos += 1 + k + extra + length
            continue
        if what == 4:
            return
        if what == 1:
            items = entry[1] * entry[2]
            pos += 1
        else:
            k = entry[1]
            if pos + 1 + k > end:
                return
            items = int.from_bytes(body[pos + 1 : pos + 1 + k], "big") * entry[2]
            pos += 1 + k
        if len(remaining) > max_depth:
            raise _reject(ErrorCode.TOO_DEEP, f"nesting deeper than {max_depth}")
        if items > end - pos:
            return  # the decoder reports the declared length as MALFORMED
        count += items
        if count > max_values:
            raise _too_many(max_values, pos)
        remaining.append(items)


def _too_many(max_values: int, pos: int) -> ProtocolError:
    return _reject(
        ErrorCode.FRAME_TOO_LARGE,
        f"the body declares more than {max_values} values (at body byte {pos}); limit max_values (§13)",
    )


def decode(
    body: Buffer,
    data: Buffer = b"",
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_values: int = DEFAULT_MAX_VALUES,
) -> Any:
    """Decode one body (exactly one value) whose tensors live in ``data``.

    Raises :class:`ProtocolError` (``MALFORMED``, ``BAD_TENSOR``, ``UNKNOWN_DTYPE``,
    ``TOO_DEEP``, ``FRAME_TOO_LARGE`` for more than ``max_values`` values) for anything outside
    §3-§4 and §13. Declared lengths are bounded by the body size before anything is allocated
    (msgpack's ``unpackb`` limits default to the buffer length). Every value takes at least one
    byte, so a body no longer than ``max_values`` bytes is decoded at once; a longer one has its
    structure walked first (:func:`check_structure`), so that no more than ``max_values`` objects
    are ever built.
    """
    if len(body) > max_values:  # type: ignore[arg-type]
        check_structure(memoryview(body).tobytes(), max_values, max_depth)  # type: ignore[arg-type]
    try:
        value = msgpack.unpackb(
            body,
            ext_hook=_TensorHook(memoryview(data)),
            object_pairs_hook=_pairs_to_dict,
            raw=False,
            strict_map_key=True,
            use_list=True,
        )
    except ProtocolError:
        raise
    except msgpack.ExtraData:
        raise _reject(ErrorCode.MALFORMED, "trailing bytes after the body's value") from None
    except UnicodeDecodeError:
        raise _reject(ErrorCode.MALFORMED, "a string is not valid UTF-8") from None
    except RecursionError:
        raise _reject(ErrorCode.TOO_DEEP, f"nesting deeper than {max_depth}") from None
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # Includes msgpack's StackError (nesting beyond its own stack), OutOfData (truncated),
        # FormatError (reserved byte 0xc1), limit errors and non-str map keys.
        text = str(exc) or type(exc).__name__
        if "depth" in text or isinstance(exc, msgpack.StackError):
            raise _reject(ErrorCode.TOO_DEEP, f"nesting deeper than {max_depth}") from None
        raise _reject(ErrorCode.MALFORMED, f"not a valid body: {text}") from None
    # Each level of nesting costs at least one byte, so a body no longer than max_depth bytes
    # cannot be too deep: the common small message (a step) skips the walk.
    # msgpack turns the timestamp ext (-1) into a Timestamp by itself, without the ext hook, so
    # the tree is searched for one too. A timestamp needs a 0xff type byte in the body.
    # (``in`` on a memoryview walks it element by element, ~1 µs for a step body; the short
    # body is copied to bytes instead, where ``in`` is a memchr.)
    if len(body) > max_depth or b"\xff" in memoryview(body).tobytes():  # type: ignore[arg-type]
        check_tree(value, max_depth)
    return value


def check_tree(value: Any, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """Raise ``TOO_DEEP`` if containers nest deeper than ``max_depth`` (the outer one is 1), and
    ``MALFORMED`` for a timestamp ext anywhere (§3 allows ext type 1 only)."""
    if type(value) is _Timestamp:
        raise _reject(ErrorCode.MALFORMED, "the timestamp ext type (-1) is not allowed")
    if type(value) is not dict and type(value) is not list:
        return
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise _reject(ErrorCode.TOO_DEEP, f"nesting deeper than {max_depth}")
        children = item.values() if type(item) is dict else item
        for child in children:
            t = type(child)
            if t is dict or t is list:
                stack.append((child, depth + 1))
            elif t is _Timestamp:
                raise _reject(ErrorCode.MALFORMED, "the timestamp ext type (-1) is not allowed")


def check_free_value(value: Any, max_depth: int = DEFAULT_MAX_DEPTH, where: str = "value") -> None:
    """Check a local free-form value before encoding: str keys only, depth within the limit.

    MessagePack itself would happily send int keys or nest 1000 levels; the spec (§3) does not
    allow either, so a local mistake is caught here with a :class:`EncodeError` naming it.
    """
    stack = [(value, 1, where)]
    while stack:
        item, depth, path = stack.pop()
        t = type(item)
        if t is dict or isinstance(item, dict):
            if depth > max_depth:
                raise EncodeError(f"{path}: nesting deeper than {max_depth}")
            for key, child in item.items():
                if type(key) is not str:
                    raise EncodeError(
                        f"{path}: map keys must be str, got {type(key).__name__} {clip(key, 40)}"
                    )
                if isinstance(child, (dict, list, tuple)):
                    stack.append((child, depth + 1, f"{path}[{key!r}]"))
        elif t is list or t is tuple or isinstance(item, (list, tuple)):
            if depth > max_depth:
                raise EncodeError(f"{path}: nesting deeper than {max_depth}")
            for i, child in enumerate(item):
                if isinstance(child, (dict, list, tuple)):
                    stack.append((child, depth + 1, f"{path}[{i}]"))


def free_from_wire(value: Any) -> Any:
    """Turn 0-d tensors inside a decoded free-form value into NumPy scalars (§3)."""
    t = type(value)
    if t is np.ndarray:
        return value[()] if value.ndim == 0 else value
    if t is dict:
        if not value:
            return value
        return {k: free_from_wire(v) for k, v in value.items()}
    if t is list:
        return [free_from_wire(v) for v in value]
    return value
