"""Batched sub-envs (spec/protocol.md §10): autoreset modes, batched values and vector info.

Shared by the agent side (``rlay.envs.vector``) and the env side (``rlay.backends.vector``);
this module knows Gymnasium's batching rules and nothing about connections.
"""

from __future__ import annotations

import copy as _copy
import itertools
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box, Dict, Discrete, MultiBinary, MultiDiscrete, Tuple
from gymnasium.vector import AutoresetMode

from rlay.errors import UsageError, clip
from rlay.protocol.codec import free_from_wire
from rlay.protocol.fastpath import BatchResultTemplate, FastPaths, StepTemplate, TensorTemplate
from rlay.spaces import SpaceCodec, batched

AUTORESET_TO_WIRE = {
    AutoresetMode.NEXT_STEP: "next_step",
    AutoresetMode.SAME_STEP: "same_step",
    AutoresetMode.DISABLED: "disabled",
}
AUTORESET_FROM_WIRE = {name: mode for mode, name in AUTORESET_TO_WIRE.items()}


def parse_autoreset_mode(value: Any) -> AutoresetMode:
    """An :class:`AutoresetMode` from the enum, its Gymnasium value (``"NextStep"``) or the §10
    name (``"next_step"``); :class:`UsageError` for anything else."""
    if isinstance(value, AutoresetMode):
        return value
    if isinstance(value, str):
        if value in AUTORESET_FROM_WIRE:
            return AUTORESET_FROM_WIRE[value]
        for mode in AutoresetMode:
            if value == mode.value:
                return mode
    names = ", ".join(repr(n) for n in AUTORESET_FROM_WIRE)
    raise UsageError(f"autoreset_mode: expected an AutoresetMode or one of {names}, actual {clip(value, 60)}")


_ARRAY_SPACES = (Box, Discrete, MultiDiscrete, MultiBinary)


def wire_space(space: gym.Space[Any], num_envs: int) -> gym.Space[Any]:
    """The space whose values travel on the wire for one sub-env's ``space`` (§10): the space
    itself when ``num_envs == 1`` (nothing is batched), else ``batch_space(space, num_envs)``.
    The one place that decides it; both sides call it."""
    return space if num_envs == 1 else batched(space, num_envs)


def wire_spaces(
    observation_space: gym.Space[Any], action_space: gym.Space[Any], num_envs: int
) -> tuple[gym.Space[Any], gym.Space[Any]]:
    """``(wire observation space, wire action space)`` of a session with ``num_envs`` (§10)."""
    return wire_space(observation_space, num_envs), wire_space(action_space, num_envs)


def batch_one(space: gym.Space[Any], value: Any) -> Any:
    """One sub-env's value as a batch of one (a value of ``batched(space, 1)``), without copying."""
    if isinstance(space, _ARRAY_SPACES):
        return np.asarray(value, dtype=space.dtype)[np.newaxis]
    if isinstance(space, Dict):
        return {key: batch_one(sub, value[key]) for key, sub in space.spaces.items()}
    if isinstance(space, Tuple):
        return tuple(batch_one(sub, v) for sub, v in zip(space.spaces, value, strict=True))
    return (value,)


def item(space: gym.Space[Any], value: Any, i: int) -> Any:
    """Sub-env ``i``'s value out of a batched ``value`` (Gymnasium's ``iterate``, one element)."""
    if isinstance(space, _ARRAY_SPACES):
        return value[i]
    if isinstance(space, Dict):
        return {key: item(sub, value[key], i) for key, sub in space.spaces.items()}
    if isinstance(space, Tuple):
        return tuple(item(sub, v, i) for sub, v in zip(space.spaces, value, strict=True))
    return value[i]


def part(space: gym.Space[Any], value: Any, start: int, stop: int) -> Any:
    """Sub-envs ``start`` to ``stop - 1`` of a batched ``value``, still batched."""
    if isinstance(space, _ARRAY_SPACES):
        return value[start:stop]
    if isinstance(space, Dict):
        return {key: part(sub, value[key], start, stop) for key, sub in space.spaces.items()}
    if isinstance(space, Tuple):
        return tuple(part(sub, v, start, stop) for sub, v in zip(space.spaces, value, strict=True))
    return tuple(value[start:stop])


def join(space: gym.Space[Any], parts: list[Any]) -> Any:
    """Batched values of consecutive sub-envs, concatenated into one new batched value."""
    if isinstance(space, _ARRAY_SPACES):
        return np.concatenate(parts)
    if isinstance(space, Dict):
        return {key: join(sub, [p[key] for p in parts]) for key, sub in space.spaces.items()}
    if isinstance(space, Tuple):
        return tuple(join(sub, [p[j] for p in parts]) for j, sub in enumerate(space.spaces))
    return tuple(itertools.chain.from_iterable(parts))


def copy_value(value: Any) -> Any:
    """A deep copy whose arrays are writable (received tensors are read-only views)."""
    if type(value) is np.ndarray:
        return value.copy()
    if type(value) is dict:
        return {k: copy_value(v) for k, v in value.items()}
    if type(value) is tuple:
        return tuple(copy_value(v) for v in value)
    return _copy.deepcopy(value)


def info_to_wire(info: dict[str, Any], final_obs: SpaceCodec | None = None) -> dict[str, Any]:
    """A Gymnasium vector ``info`` as a §10 wire value: object arrays (values NumPy cannot hold
    in a typed array) travel as arrays of N values. With ``final_obs`` (same-step autoreset),
    the ``final_obs`` entries are encoded as observations of the single space."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, dict):
            out[key] = info_to_wire(value, final_obs)
        elif isinstance(value, np.ndarray) and value.dtype == object:
            if key == "final_obs" and final_obs is not None:
                out[key] = [None if v is None else final_obs.to_wire(v) for v in value]
            else:
                out[key] = value.tolist()
        else:
            out[key] = value
    return out


def info_from_wire(info: dict[str, Any], final_obs: SpaceCodec | None = None) -> dict[str, Any]:
    """The inverse of :func:`info_to_wire`: arrays of values become NumPy object arrays (as
    Gymnasium's ``_add_info`` builds them), 0-d tensors NumPy scalars (§3)."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        t = type(value)
        if t is dict:
            out[key] = info_from_wire(value, final_obs)
        elif t is list:
            arr = np.empty(len(value), dtype=object)
            if key == "final_obs" and final_obs is not None:
                decode = final_obs.from_wire
                arr[:] = [None if v is None else decode(v) for v in value]
            else:
                arr[:] = [free_from_wire(v) for v in value]
            out[key] = arr
        else:
            out[key] = free_from_wire(value)
    return out


def unbatch_info(info: dict[str, Any], final_obs: SpaceCodec | None = None) -> dict[str, Any]:
    """The info of sub-env 0 out of a vector ``info`` of one sub-env (§10: with ``num_envs ==
    1`` values travel unbatched). Gymnasium's ``_add_info`` on the result rebuilds ``info``."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("_") and key[1:] in info:
            continue  # the mask of key[1:]
        mask = info.get(f"_{key}")
        if mask is not None and not mask[0]:
            continue
        if isinstance(value, dict):
            out[key] = unbatch_info(value, final_obs)
        elif isinstance(value, (np.ndarray, list, tuple)) and len(value) >= 1:
            first = value[0]
            if key == "final_obs" and final_obs is not None and first is not None:
                first = final_obs.to_wire(first)
            elif isinstance(value, np.ndarray) and value.dtype == np.bool_:
                first = bool(first)  # _add_info makes a bool array only from a Python bool
            out[key] = first
        else:
            out[key] = value
    return out


def batch_fast_paths(obs_space: gym.Space[Any], act_space: gym.Space[Any], n: int) -> FastPaths:
    """The step templates of a batch of ``n`` (``n > 1``) with these single spaces: an action
    that is one tensor (Box, Discrete, MultiDiscrete, MultiBinary batched) and an observation
    that is one tensor."""
    step = None
    wire_act = batched(act_space, n)
    if type(wire_act) in (Box, MultiDiscrete):
        tensor = TensorTemplate.create(wire_act.dtype, tuple(wire_act.shape or ()))
        step = StepTemplate(tensor) if tensor is not None else None
    result = None
    wire_obs = batched(obs_space, n)
    if type(wire_obs) in (Box, MultiDiscrete):
        tensor = TensorTemplate.create(wire_obs.dtype, tuple(wire_obs.shape or ()))
        result = BatchResultTemplate(tensor, n) if tensor is not None else None
    return FastPaths(step, result)


def batch_contains(single: gym.Space[Any], space: gym.Space[Any]) -> Callable[[Any], bool]:
    """``space.contains`` for a batched space, with a fast path for a batch of Discrete (the
    most common action space): one min and one max instead of Gymnasium's four array passes."""
    if type(single) is Discrete and type(space) is MultiDiscrete:
        lo = int(single.start)
        hi = lo + int(single.n)
        shape = space.shape

        def contains(x: Any) -> bool:
            if type(x) is np.ndarray and x.shape == shape and x.dtype.kind in "iu":
                return bool(x.min() >= lo and x.max() < hi)
            return bool(space.contains(x))

        return contains
    return space.contains
