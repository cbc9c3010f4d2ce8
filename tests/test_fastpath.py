"""The step-loop templates produce exactly the general encoder's bytes and decode exactly like it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlay.protocol.codec import Encoder, decode
from rlay.protocol.fastpath import FastPaths, StepResultTemplate, StepTemplate, TensorTemplate
from rlay.protocol.framing import pack_header
from rlay.protocol.messages import Message, Step, StepResult

DTYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
]
SHAPES = [(), (1,), (4,), (84, 84, 3), (2, 3, 4, 5)]


def general(message: Message) -> tuple[bytes, bytes, bytes]:
    body, chunks, data_len = Encoder().encode(message.to_body())
    return pack_header(message.KIND, data_len, len(body)), b"".join(bytes(c) for c in chunks), body


def split(buffers: list[Any]) -> tuple[bytes, bytes, bytes]:
    parts = [bytes(memoryview(b)) for b in buffers]
    if len(parts) == 1:  # header and body in one buffer, no data
        return parts[0][:12], b"", parts[0][12:]
    return parts[0], b"".join(parts[1:-1]), parts[-1]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_step_result_template_is_the_canonical_encoding(dtype: str, shape: tuple[int, ...]) -> None:
    tensor = TensorTemplate.create(dtype, shape)
    assert tensor is not None
    template = StepResultTemplate(tensor)
    obs = (np.arange(int(np.prod(shape))) % 100).astype(dtype).reshape(shape)
    for reward, term, trunc in [
        (1.0, False, False),
        (-0.0, True, False),
        (float("nan"), False, True),
        (1e300, True, True),
    ]:
        message = StepResult(obs, reward, term, trunc, {})
        fast = template.encode(message)
        assert fast is not None
        header, data, body = split(fast)
        assert (header, data, body) == general(message)
        decoded = template.decode(memoryview(data), memoryview(body))
        assert decoded is not None and decoded == message
        assert decoded.obs.dtype == obs.dtype and not decoded.obs.flags.writeable


@given(
    action=st.integers(min_value=-(2**63), max_value=2**64 - 1),
)
@settings(max_examples=200, deadline=None)
def test_step_template_for_ints(action: int) -> None:
    template = StepTemplate(None)
    message = Step(action)
    fast = template.encode(message)
    header, data, body = general(message)
    if fast is not None:
        assert 0 <= action < 128
        assert split(fast) == (header, data, body)
    decoded = template.decode(memoryview(data), memoryview(body))
    if decoded is not None:
        assert decoded == message
    else:
        assert not 0 <= action < 128  # only what the general decoder must handle


@pytest.mark.parametrize("dtype,shape", [("float32", (6,)), ("int64", (2, 2)), ("float64", ())])
def test_step_template_for_tensors(dtype: str, shape: tuple[int, ...]) -> None:
    tensor = TensorTemplate.create(dtype, shape)
    assert tensor is not None
    template = StepTemplate(tensor)
    action = np.ones(shape, dtype=dtype)
    fast = template.encode(Step(action))
    assert fast is not None and split(fast) == general(Step(action))
    _, data, body = general(Step(action))
    assert template.decode(memoryview(data), memoryview(body)) == Step(action)
    # another dtype or shape is not the template's: general path
    assert template.encode(Step(action.astype("int8"))) is None
    assert template.encode(Step(np.ones((7,), dtype=dtype))) is None


def test_anything_but_the_template_falls_back_to_the_general_path() -> None:
    tensor = TensorTemplate.create("float32", (4,))
    assert tensor is not None
    template = StepResultTemplate(tensor)
    obs = np.zeros(4, np.float32)
    assert template.encode(StepResult(obs, 1.0, False, False, {"a": 1})) is None  # info
    assert template.encode(StepResult(obs.astype(np.float64), 1.0, False, False, {})) is None
    _, data, body = general(StepResult(obs, 1.0, False, False, {}))
    bad_flag = bytearray(body)
    bad_flag[template.term_at] = 0x01  # an int where a bool is due: the general path rejects it
    assert template.decode(memoryview(data), memoryview(bytes(bad_flag))) is None
    assert template.decode(memoryview(data[:8]), memoryview(body)) is None  # short data section
    reordered = Encoder().encode(
        {"reward": 1.0, "obs": obs, "terminated": False, "truncated": False, "info": {}}
    )
    assert (
        template.decode(memoryview(b"".join(bytes(c) for c in reordered[1])), memoryview(reordered[0]))
        is None
    )
    # and the general decoder still reads the reordered body as the same message
    value = decode(reordered[0], b"".join(bytes(c) for c in reordered[1]))
    assert StepResult.from_body(value) == StepResult(obs, 1.0, False, False, {})


def test_bool_and_empty_tensors_have_no_template() -> None:
    assert TensorTemplate.create("bool", (3,)) is None
    assert TensorTemplate.create("float32", (0, 3)) is None
    paths = FastPaths.for_shapes(("bool", (2,)), ("float32", (0,)))
    assert paths.step is None and paths.result is None
