"""Precompiled encoders/decoders for the two messages of the step loop (spec §5 canonical form).

Every step sends a ``STEP`` and gets a ``STEP_RESULT``. When the action is an int (Discrete) or
one tensor, and the observation is one tensor, the canonical bytes of these messages are a fixed
template with a few holes (the action, the reward, the two flags). This module builds those
templates once per session and fills them with ``struct`` — a fraction of the cost of the general
MessagePack path.

The general codec stays the reference. A template only ever produces the bytes the general
encoder would produce (``tests/test_fastpath.py`` checks it value by value), and a decoder
template only accepts bodies that match it byte for byte outside the holes; anything else
(a non-canonical peer, an info map, a bad flag byte) returns ``None`` and the caller uses the
general decoder, which also produces the errors. So behaviour, including every rejection, is the
general path's.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import numpy as np

from rlay.protocol.codec import Encoder
from rlay.protocol.framing import pack_header
from rlay.protocol.messages import Step, StepResult
from rlay.protocol.wire import CODE_BY_DTYPE, TENSOR_ALIGN, TENSOR_EXT, Kind

_DOUBLE = struct.Struct(">d")  # MessagePack floats are big-endian
_TRUE, _FALSE = b"\xc3", b"\xc2"
_FLAGS = (0xC2, 0xC3)


def _key(name: str) -> bytes:
    return msgpack.packb(name)


def _tensor_ext(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    payload = struct.pack(f"<BB{len(shape)}II", CODE_BY_DTYPE[dtype], len(shape), *shape, 0)
    return msgpack.packb(msgpack.ExtType(TENSOR_EXT, payload))


class TensorTemplate:
    """One tensor of a fixed dtype and shape, at offset 0 of the data section."""

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.dtype = dtype
        self.shape = shape
        self.count = int(np.prod(shape))
        self.nbytes = self.count * dtype.itemsize
        self.ext = _tensor_ext(dtype, shape)

    @classmethod
    def create(cls, dtype: Any, shape: tuple[int, ...]) -> TensorTemplate | None:
        dt = np.dtype(dtype)
        # bool needs its 0/1 check and empty tensors have offset 0 and no bytes: general path.
        if dt not in CODE_BY_DTYPE or dt.kind == "b" or not all(shape) or len(shape) > 32:
            return None
        return cls(dt, shape)

    def wire(self, value: Any) -> Any:
        """The array to send, or None if ``value`` is not exactly such a tensor."""
        if type(value) is np.ndarray and value.dtype == self.dtype and value.shape == self.shape:
            return value if value.flags.c_contiguous else np.ascontiguousarray(value)
        return None

    def view(self, data: memoryview) -> np.ndarray:
        arr = np.frombuffer(data, self.dtype, self.count, 0)
        if len(self.shape) != 1:
            arr = arr.reshape(self.shape)
        arr.flags.writeable = False
        return arr


class StepTemplate:
    """``STEP`` whose action is a small non-negative int, or one tensor."""

    _PREFIX = b"\x81" + _key("action")

    def __init__(self, tensor: TensorTemplate | None) -> None:
        self.tensor = tensor
        if tensor is not None:
            self.body = self._PREFIX + tensor.ext
            self.header = pack_header(Kind.STEP, tensor.nbytes, len(self.body))
        else:
            self._headers = pack_header(Kind.STEP, 0, len(self._PREFIX) + 1)

    def encode(self, message: Step) -> list[Any] | None:
        action = message.action
        if self.tensor is None:
            if type(action) is int and 0 <= action < 0x80:  # positive fixint
                return [self._headers + self._PREFIX + bytes((action,))]
            return None
        arr = self.tensor.wire(action)
        if arr is None:
            return None
        return [self.header, arr.data.cast("B"), self.body]

    def decode(self, data: memoryview, body: memoryview) -> Step | None:
        prefix = self._PREFIX
        if self.tensor is None:
            if len(body) == len(prefix) + 1 and body[-1] < 0x80 and body[: len(prefix)] == prefix:
                return Step(body[-1])
            return None
        if len(data) == self.tensor.nbytes and body == self.body:
            return Step(self.tensor.view(data))
        return None


class StepResultTemplate:
    """``STEP_RESULT`` of one env whose observation is one tensor and whose info is empty."""

    def __init__(self, tensor: TensorTemplate) -> None:
        self.tensor = tensor
        self.head = b"\x85" + _key("obs") + tensor.ext + _key("reward") + b"\xcb"
        self.term_key = _key("terminated")
        self.trunc_key = _key("truncated")
        self.tail = _key("info") + b"\x80"
        self.reward_at = len(self.head)
        self.term_at = self.reward_at + 8 + len(self.term_key)
        self.trunc_at = self.term_at + 1 + len(self.trunc_key)
        self.size = self.trunc_at + 1 + len(self.tail)
        self.header = pack_header(Kind.STEP_RESULT, tensor.nbytes, self.size)
        self._flags = {
            (t, u): self.term_key
            + (_TRUE if t else _FALSE)
            + self.trunc_key
            + (_TRUE if u else _FALSE)
            + self.tail
            for t in (False, True)
            for u in (False, True)
        }
        # the whole body in one unpack: the fixed parts come back as bytes to compare
        self._layout = struct.Struct(
            f">{len(self.head)}sd{len(self.term_key)}sB{len(self.trunc_key)}sB{len(self.tail)}s"
        )

    def encode(self, message: StepResult) -> list[Any] | None:
        if message.info or type(message.reward) is not float:
            return None
        arr = self.tensor.wire(message.obs)
        if arr is None or type(message.terminated) is not bool or type(message.truncated) is not bool:
            return None
        body = self.head + _DOUBLE.pack(message.reward) + self._flags[(message.terminated, message.truncated)]
        return [self.header, arr.data.cast("B"), body]

    def decode(self, data: memoryview, body: memoryview) -> StepResult | None:
        if len(body) != self.size or len(data) != self.tensor.nbytes:
            return None
        head, reward, term_key, term, trunc_key, trunc, tail = self._layout.unpack_from(body)
        if (
            head != self.head
            or term_key != self.term_key
            or trunc_key != self.trunc_key
            or tail != self.tail
            or term not in _FLAGS
            or trunc not in _FLAGS
        ):
            return None
        return StepResult(self.tensor.view(data), reward, term == 0xC3, trunc == 0xC3, {})


class BatchResultTemplate:
    """``STEP_RESULT`` of a batch of ``n`` whose observation is one tensor and whose info is empty.

    Its body never changes: four tensor descriptors (obs, reward ``float64 (n,)``, terminated and
    truncated ``bool (n,)``, at fixed offsets in document order, §5) and an empty info. It is
    built by the general encoder from a sample, so it *is* the canonical encoding; encoding only
    lays the four arrays out in the data section, and decoding compares the body byte for byte
    and makes views. Anything else (an info, a bool byte other than 0/1, another layout) returns
    ``None`` and the caller takes the general path, which also produces the errors.
    """

    def __init__(self, obs: TensorTemplate, n: int) -> None:
        self.obs = obs
        self.n = n
        sample = StepResult(
            np.zeros(obs.shape, obs.dtype), np.zeros(n), np.zeros(n, np.bool_), np.zeros(n, np.bool_), {}
        )
        self.body, _, self.data_len = Encoder().encode(sample.to_body())
        self.header = pack_header(Kind.STEP_RESULT, self.data_len, len(self.body))
        align = TENSOR_ALIGN - 1
        self.reward_at = (obs.nbytes + align) & ~align
        self.term_at = (self.reward_at + 8 * n + align) & ~align
        self.trunc_at = (self.term_at + n + align) & ~align
        self.pads = (
            bytes(self.reward_at - obs.nbytes),
            bytes(self.term_at - self.reward_at - 8 * n),
            bytes(self.trunc_at - self.term_at - n),
        )
        if self.data_len != self.trunc_at + n:  # pragma: no cover - the layout rule of §5
            raise AssertionError("batch template layout differs from the general encoder's")

    def encode(self, message: StepResult) -> list[Any] | None:
        if message.info:
            return None
        obs = self.obs.wire(message.obs)
        n = (self.n,)
        arrays: list[Any] = [message.reward, message.terminated, message.truncated]
        for arr, dt in zip(arrays, (np.float64, np.bool_, np.bool_), strict=True):
            if type(arr) is not np.ndarray or arr.dtype != dt or arr.shape != n or not arr.flags.c_contiguous:
                return None
        if obs is None:
            return None
        pad_r, pad_t, pad_u = self.pads
        out: list[Any] = [self.header, obs.data.cast("B")]
        for pad, arr in ((pad_r, arrays[0]), (pad_t, arrays[1]), (pad_u, arrays[2])):
            if pad:
                out.append(pad)
            out.append(arr.data.cast("B"))
        out.append(self.body)
        return out

    def decode(self, data: memoryview, body: memoryview) -> StepResult | None:
        if len(data) != self.data_len or body != self.body:
            return None
        n = self.n
        flags = (
            data[self.term_at : self.term_at + n].tobytes()
            + data[self.trunc_at : self.trunc_at + n].tobytes()
        )
        if flags.translate(None, b"\x00\x01"):
            return None  # a bool byte other than 0/1: the general decoder names the error
        reward = np.frombuffer(data, np.float64, n, self.reward_at)
        terminated = np.frombuffer(data, np.bool_, n, self.term_at)
        truncated = np.frombuffer(data, np.bool_, n, self.trunc_at)
        for arr in (reward, terminated, truncated):
            arr.flags.writeable = False
        return StepResult(self.obs.view(data), reward, terminated, truncated, {})


class FastPaths:
    """The templates of one session, chosen from its spaces' shapes (or none)."""

    def __init__(
        self, step: StepTemplate | None, result: StepResultTemplate | BatchResultTemplate | None
    ) -> None:
        self.step = step
        self.result = result

    @classmethod
    def for_shapes(
        cls, action: tuple[Any, tuple[int, ...]] | str | None, obs: tuple[Any, tuple[int, ...]] | None
    ) -> FastPaths:
        """``action``: ``"int"`` for Discrete, ``(dtype, shape)`` for Box, else None;
        ``obs``: ``(dtype, shape)`` for a Box observation, else None."""
        step: StepTemplate | None = None
        if action == "int":
            step = StepTemplate(None)
        elif isinstance(action, tuple):
            tensor = TensorTemplate.create(*action)
            step = StepTemplate(tensor) if tensor is not None else None
        result: StepResultTemplate | BatchResultTemplate | None = None
        if obs is not None:
            tensor = TensorTemplate.create(*obs)
            result = StepResultTemplate(tensor) if tensor is not None else None
        return cls(step, result)
