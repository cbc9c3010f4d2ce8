"""The one catalogue of test spaces: every kind of §9, every Box dtype, the awkward corners.

``CATALOGUE`` is a list of ``(id, space)``; parametrize with
``pytest.mark.parametrize("space", [s for _, s in CATALOGUE], ids=[i for i, _ in CATALOGUE])``
or use :data:`IDS` / :data:`SPACES`. Spaces are built fresh at import and are not seeded; seed
them (``space.seed(0)``) before sampling if a test needs reproducible samples. Tests that
mutate a space (seeding counts) should ``copy.deepcopy`` it first if they share the module.
"""

from __future__ import annotations

from collections import OrderedDict

import gymnasium as gym
import numpy as np
from gymnasium.spaces import (
    Box,
    Dict,
    Discrete,
    Graph,
    MultiBinary,
    MultiDiscrete,
    OneOf,
    Sequence,
    Text,
    Tuple,
)

BOX_DTYPES = [
    np.bool_,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
]


def _box_of(dtype: type) -> Box:
    """A (2, 3) Box of ``dtype`` with per-element bounds near the dtype's extremes."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return Box(
            low=np.array([[0, 0, 1], [0, 1, 1]], dtype=bool), high=np.ones((2, 3), dtype=bool), dtype=dt
        )
    if dt.kind == "f":
        # ±inf, -0.0, a point interval, half-bounded, and the dtype's largest finite value.
        low = np.array([[-np.inf, -1.5, -0.0], [0.0, 2.0, -np.inf]], dtype=dt)
        high = np.array([[np.inf, 1.5, 0.0], [np.inf, 2.0, np.finfo(dt).max]], dtype=dt)
        return Box(low=low, high=high, dtype=dt)
    info = np.iinfo(dt)
    # Box.sample computes ``high + 1`` in int64, so 64-bit dtypes stay clear of their limits here;
    # the limits themselves are covered by descriptor-only tests.
    lo, hi = (int(info.min), int(info.max)) if dt.itemsize < 8 else (-(2**62) if info.min else 0, 2**62)
    low = np.array([[lo, 0, 1], [lo // 2, hi - 1, 7]], dtype=dt)
    high = np.array([[hi, 0, 3], [hi // 2, hi, 9]], dtype=dt)
    return Box(low=low, high=high, dtype=dt)


def _catalogue() -> list[tuple[str, gym.Space]]:
    cat: list[tuple[str, gym.Space]] = [(f"box-{np.dtype(dt).name}", _box_of(dt)) for dt in BOX_DTYPES]
    cat += [
        ("box-cartpole", Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)),
        ("box-scalar-shape", Box(-1.0, 1.0, shape=(), dtype=np.float32)),
        ("box-zero-size", Box(0.0, 1.0, shape=(0, 3), dtype=np.float64)),
        ("box-image", Box(0, 255, shape=(8, 8, 3), dtype=np.uint8)),
        ("box-int-unbounded", Box(-np.inf, np.inf, shape=(3,), dtype=np.int32)),
        ("box-half-bounded", Box(np.array([0.0, -np.inf]), np.array([np.inf, 0.0]), dtype=np.float64)),
        ("discrete", Discrete(5)),
        ("discrete-negative-start", Discrete(3, start=-2)),
        ("discrete-int8", Discrete(4, start=-128, dtype=np.int8)),
        ("discrete-uint16", Discrete(7, start=100, dtype=np.uint16)),
        ("multi-discrete", MultiDiscrete([5, 2, 2])),
        (
            "multi-discrete-start-int32",
            MultiDiscrete(np.array([3, 4]), start=np.array([-1, 10]), dtype=np.int32),
        ),
        ("multi-discrete-2d-uint8", MultiDiscrete(np.array([[2, 3], [4, 5]]), dtype=np.uint8)),
        ("multi-binary-int", MultiBinary(5)),
        ("multi-binary-list", MultiBinary([5])),
        ("multi-binary-2d", MultiBinary([2, 3])),
        ("text", Text(8)),
        ("text-charset", Text(6, min_length=2, charset="é☃zyx0 ")),
        ("text-empty-ok", Text(3, min_length=0, charset="ab")),
        ("dict-flat", Dict({"pos": Box(-1.0, 1.0, (2,), np.float32), "id": Discrete(3)})),
        (
            "dict-unsorted-keys",
            Dict(OrderedDict([("zeta", Discrete(2)), ("alpha", MultiBinary(2)), ("mid", Text(3))])),
        ),
        ("dict-empty", Dict({})),
        ("tuple", Tuple((Discrete(2), Box(0.0, 1.0, (3,), np.float32), Text(4)))),
        ("tuple-empty", Tuple(())),
        ("sequence", Sequence(Box(-1.0, 1.0, (2,), np.float32))),
        ("sequence-stack", Sequence(Box(-1.0, 1.0, (2,), np.float32), stack=True)),
        ("sequence-stack-discrete", Sequence(Discrete(4, start=1), stack=True)),
        (
            "sequence-stack-dict",
            Sequence(Dict({"a": Discrete(3), "b": Box(0, 5, (2,), np.int16)}), stack=True),
        ),
        ("sequence-of-text", Sequence(Text(4))),
        ("graph", Graph(node_space=Box(-1.0, 1.0, (3,), np.float32), edge_space=Discrete(3))),
        ("graph-no-edges", Graph(node_space=Discrete(4, start=-1), edge_space=None)),
        ("graph-box-edges", Graph(node_space=Discrete(5), edge_space=Box(0.0, 1.0, (2,), np.float64))),
        ("one-of", OneOf([Discrete(3), Box(-1.0, 1.0, (2,), np.float32)])),
        ("one-of-nested", OneOf([Text(3), Tuple((Discrete(2), MultiBinary(3)))])),
    ]
    nested = Dict(
        OrderedDict(
            [
                ("obs", Tuple((Box(-np.inf, np.inf, (2, 2), np.float16), Discrete(3, start=-1)))),
                ("seq", Sequence(Tuple((Discrete(2), Text(2, min_length=0))), stack=True)),
                ("graph", Graph(Box(0, 10, (2,), np.int64), Box(-1.0, 1.0, (), np.float32))),
                ("choice", OneOf([MultiDiscrete([2, 3]), Dict({"x": MultiBinary([1, 2])})])),
                ("list", Sequence(Sequence(Discrete(3)))),
            ]
        )
    )
    cat.append(("nested-everything", nested))
    return cat


CATALOGUE: list[tuple[str, gym.Space]] = _catalogue()
IDS: list[str] = [name for name, _ in CATALOGUE]
SPACES: list[gym.Space] = [space for _, space in CATALOGUE]
