"""The messages of protocol v1 and their fields (spec/protocol.md §6).

Each message is a small slotted class whose ``FIELDS`` tuple lists its fields in canonical order
with the wire types they accept. ``to_body`` builds the body map; ``from_body`` checks a decoded
body (missing, unknown, wrongly typed fields -> ``BAD_FIELD``) and builds the message.

Observations and actions stay *wire values* here (arrays, maps, lists, ints): turning them into
Gymnasium values needs the spaces, which live a layer above (``rlay.spaces``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from rlay.errors import ProtocolError, clip
from rlay.protocol.wire import ErrorCode, Kind


# Field types: a name and a predicate on the decoded value. "any" accepts every value (§3).
def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_float(v: Any) -> bool:  # §5: float fields also accept an int
    return type(v) is float or type(v) is int


_F64 = np.dtype("<f8")
_BOOL = np.dtype("bool")


def _is_batch(v: Any, dtype: np.dtype) -> bool:
    return type(v) is np.ndarray and v.dtype == dtype and v.ndim == 1


_TYPES: dict[str, tuple[str, Any]] = {
    "str": ("a str", lambda v: type(v) is str),
    "str?": ("a str or nil", lambda v: v is None or type(v) is str),
    "int": ("an int", _is_int),
    "bool": ("a bool", lambda v: type(v) is bool),
    "map": ("a map", lambda v: type(v) is dict),
    "bin": ("a bin", lambda v: type(v) is bytes),
    "map?": ("a map or nil", lambda v: v is None or type(v) is dict),
    "array": ("an array", lambda v: type(v) is list),
    "any": ("a value", lambda v: True),
    # §10: reward/terminated/truncated are float64 / bool tensors of shape (N,) when num_envs > 1.
    "reward": ("a float (or float64 tensor of shape (N,))", lambda v: _is_float(v) or _is_batch(v, _F64)),
    "flag": ("a bool (or bool tensor of shape (N,))", lambda v: type(v) is bool or _is_batch(v, _BOOL)),
    "seed": (
        "an int, nil, or an array of int/nil",
        lambda v: (
            v is None or type(v) is int or (type(v) is list and all(x is None or type(x) is int for x in v))
        ),
    ),
}


class Message:
    """Base of all messages. Subclasses set ``KIND`` and ``FIELDS``."""

    KIND: ClassVar[Kind]
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()
    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = [name for name, _ in self.FIELDS]
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes {len(names)} fields, got {len(args)}")
        values = dict(zip(names, args, strict=False))
        for key, val in kwargs.items():
            if key not in names or key in values:
                raise TypeError(f"{type(self).__name__}: unexpected or repeated field {key!r}")
            values[key] = val
        for name in names:
            if name not in values:
                raise TypeError(f"{type(self).__name__}: missing field {name!r}")
            object.__setattr__(self, name, values[name])

    def to_body(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name, _ in self.FIELDS}

    @classmethod
    def from_body(cls, body: Any) -> Message:
        if type(body) is not dict:
            raise ProtocolError(
                ErrorCode.BAD_FIELD, f"{cls.KIND.name} body must be a map, got {type(body).__name__}"
            )
        fields = cls.FIELDS
        if len(body) != len(fields):
            _field_error(cls, body)
        msg = cls.__new__(cls)
        for name, ftype in fields:
            try:
                val = body[name]
            except KeyError:
                _field_error(cls, body)
            what, ok = _TYPES[ftype]
            if not ok(val):
                raise ProtocolError(
                    ErrorCode.BAD_FIELD,
                    f"{cls.KIND.name}.{name} must be {what}, got {_describe(val)}",
                )
            object.__setattr__(msg, name, val)
        return msg

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(_same(getattr(self, n), getattr(other, n)) for n, _ in self.FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={clip(getattr(self, n), 80)}" for n, _ in self.FIELDS)
        return f"{type(self).__name__}({inner})"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is float and a != a:
        return b != b
    return bool(a == b)


def _describe(val: Any) -> str:
    if isinstance(val, np.ndarray):
        return f"a {val.dtype} tensor of shape {val.shape}"
    return f"{type(val).__name__} {clip(val, 40)}"


def _field_error(cls: type[Message], body: dict[str, Any]) -> None:
    names = [n for n, _ in cls.FIELDS]
    missing = [n for n in names if n not in body]
    unknown = [k for k in body if k not in names]
    parts = []
    if missing:
        parts.append(f"missing field(s) {', '.join(missing)}")
    if unknown:
        parts.append(f"unknown field(s) {', '.join(map(str, unknown))}")
    raise ProtocolError(ErrorCode.BAD_FIELD, f"{cls.KIND.name}: {'; '.join(parts)}")


def _message(kind: Kind, fields: tuple[tuple[str, str], ...]) -> Any:
    def decorate(cls: type[Message]) -> type[Message]:
        cls.KIND = kind
        cls.FIELDS = fields
        return cls

    return decorate


@_message(
    Kind.HELLO,
    (
        ("protocol", "str"),
        ("version", "int"),
        ("role", "str"),
        ("sdk", "str"),
        ("sdk_version", "str"),
        ("capabilities", "map"),
    ),
)
class Hello(Message):
    __slots__ = ("protocol", "version", "role", "sdk", "sdk_version", "capabilities")
    protocol: str
    version: int
    role: str
    sdk: str
    sdk_version: str
    capabilities: dict[str, Any]


@_message(Kind.AUTH, (("proof", "bin"),))
class Auth(Message):
    """§7.1: HMAC-SHA256 proof of the shared secret; sent and checked by the Connection itself."""

    __slots__ = ("proof",)
    proof: bytes


@_message(
    Kind.ENV_INFO,
    (
        ("observation_space", "map"),
        ("action_space", "map"),
        ("num_envs", "int"),
        ("metadata", "map"),
        ("render_mode", "str?"),
        ("name", "str?"),
    ),
)
class EnvInfo(Message):
    __slots__ = (
        "observation_space",
        "action_space",
        "num_envs",
        "metadata",
        "render_mode",
        "name",
        "_spaces",
    )
    observation_space: dict[str, Any]
    action_space: dict[str, Any]
    num_envs: int
    metadata: dict[str, Any]
    render_mode: str | None
    name: str | None
    _spaces: tuple[Any, Any]

    @classmethod
    def from_body(cls, body: Any) -> Message:
        msg = super().from_body(body)
        assert isinstance(msg, EnvInfo)
        if not 1 <= msg.num_envs <= 0x7FFFFFFF:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"ENV_INFO.num_envs must be >= 1, got {msg.num_envs}")
        # §6: a space field that is a map but not a valid descriptor is BAD_SPACE (or
        # UNKNOWN_DTYPE); the receiver finds out here, not when it first uses the space.
        from rlay.spaces import from_descriptor  # the spaces layer sits above this module

        msg._spaces = (
            from_descriptor(msg.observation_space, "observation_space"),
            from_descriptor(msg.action_space, "action_space"),
        )
        mode = msg.metadata.get("autoreset_mode", "next_step")
        if type(mode) is not str or mode not in ("next_step", "same_step", "disabled"):  # §10
            raise ProtocolError(
                ErrorCode.BAD_FIELD,
                'ENV_INFO.metadata.autoreset_mode must be "next_step", "same_step" or "disabled", '
                f"got {clip(mode, 40)}",
            )
        return msg

    @property
    def spaces(self) -> tuple[Any, Any]:
        """The Gymnasium ``(observation_space, action_space)`` the descriptors describe (one
        sub-env's, §10); built once, when a received ENV_INFO was checked."""
        try:
            return self._spaces
        except AttributeError:
            from rlay.spaces import from_descriptor

            self._spaces = (
                from_descriptor(self.observation_space, "observation_space"),
                from_descriptor(self.action_space, "action_space"),
            )
            return self._spaces


@_message(Kind.RESET, (("seed", "seed"), ("options", "map?")))
class Reset(Message):
    __slots__ = ("seed", "options")
    seed: int | list[int | None] | None
    options: dict[str, Any] | None


@_message(Kind.STEP, (("action", "any"),))
class Step(Message):
    __slots__ = ("action",)
    action: Any

    def __init__(self, action: Any) -> None:  # hot path: no generic field handling
        self.action = action

    def to_body(self) -> dict[str, Any]:
        return {"action": self.action}

    @classmethod
    def from_body(cls, body: Any) -> Message:
        if type(body) is dict and len(body) == 1 and "action" in body:
            return cls(body["action"])
        return super().from_body(body)  # the full checks, with their errors


@_message(Kind.RENDER, ())
class Render(Message):
    __slots__ = ()


@_message(Kind.CLOSE, ())
class Close(Message):
    __slots__ = ()


@_message(Kind.CALL, (("name", "str"), ("args", "array"), ("kwargs", "map")))
class Call(Message):
    __slots__ = ("name", "args", "kwargs")
    name: str
    args: list[Any]
    kwargs: dict[str, Any]


@_message(Kind.RESET_RESULT, (("obs", "any"), ("info", "map")))
class ResetResult(Message):
    __slots__ = ("obs", "info")
    obs: Any
    info: dict[str, Any]


@_message(
    Kind.STEP_RESULT,
    (("obs", "any"), ("reward", "reward"), ("terminated", "flag"), ("truncated", "flag"), ("info", "map")),
)
class StepResult(Message):
    __slots__ = ("obs", "reward", "terminated", "truncated", "info")
    obs: Any
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]

    def __init__(self, obs: Any, reward: Any, terminated: Any, truncated: Any, info: dict[str, Any]) -> None:
        self.obs = obs
        self.reward = reward
        self.terminated = terminated
        self.truncated = truncated
        self.info = info

    @classmethod
    def from_body(cls, body: Any) -> Message:
        if type(body) is dict and len(body) == 5:  # hot path: the common, valid single-env reply
            get = body.get
            reward = get("reward")
            terminated = get("terminated")
            truncated = get("truncated")
            info = get("info")
            if (
                type(reward) is float
                and type(terminated) is bool
                and type(truncated) is bool
                and type(info) is dict
                and "obs" in body
            ):
                return cls(body["obs"], reward, terminated, truncated, info)
        msg = super().from_body(body)  # the full checks, with their errors
        if type(msg.reward) is int:  # type: ignore[attr-defined]
            msg.reward = float(msg.reward)  # type: ignore[attr-defined]  # §5: an int is accepted, as a float
        return msg

    def to_body(self) -> dict[str, Any]:  # hot path: no getattr loop
        reward = self.reward
        return {
            "obs": self.obs,
            "reward": reward if type(reward) is float or type(reward) is np.ndarray else float(reward),
            "terminated": self.terminated,
            "truncated": self.truncated,
            "info": self.info,
        }


@_message(Kind.RENDER_RESULT, (("frame", "any"),))
class RenderResult(Message):
    __slots__ = ("frame",)
    frame: Any


@_message(Kind.CLOSE_RESULT, ())
class CloseResult(Message):
    __slots__ = ()


@_message(Kind.CALL_RESULT, (("value", "any"),))
class CallResult(Message):
    __slots__ = ("value",)
    value: Any


@_message(
    Kind.ERROR,
    (("code", "int"), ("message", "str"), ("fatal", "bool"), ("remote_type", "str?"), ("traceback", "str?")),
)
class Error(Message):
    __slots__ = ("code", "message", "fatal", "remote_type", "traceback")
    code: int
    message: str
    fatal: bool
    remote_type: str | None
    traceback: str | None

    @classmethod
    def from_body(cls, body: Any) -> Message:
        msg = super().from_body(body)
        code = msg.code  # type: ignore[attr-defined]
        if not 0 < code <= 0x7FFFFFFF:  # §11: 0 is invalid; unknown positive codes are accepted
            raise ProtocolError(ErrorCode.BAD_FIELD, f"ERROR.code must be in 1..2147483647, got {code}")
        return msg


@_message(Kind.SHM, (("size", "int"),))
class ShmOffer(Message):
    """§16.1: the agent side offers a shared-memory region of ``size`` bytes (its descriptor
    travels with the frame as ``SCM_RIGHTS`` data)."""

    __slots__ = ("size",)
    size: int


@_message(Kind.SHM, (("accepted", "bool"), ("reason", "str?")))
class ShmAnswer(Message):
    """§16.1: the env side's answer to a :class:`ShmOffer`; a refusal names its ``reason``."""

    __slots__ = ("accepted", "reason")
    accepted: bool
    reason: str | None


class Shm(Message):
    """Kind 5 read without knowing its sender (a stand-alone decoder): the agent's body is an
    offer, the env's an answer (§16.1). A :class:`~rlay.protocol.connection.Connection` knows the
    sender and checks the body as that sender's."""

    KIND = Kind.SHM
    __slots__ = ()

    @classmethod
    def from_body(cls, body: Any) -> Message:
        if type(body) is dict and "size" in body:
            return ShmOffer.from_body(body)
        return ShmAnswer.from_body(body)


# -- multi-agent (§18): only in a session where both HELLOs announced `multi_agent` -----------------


@_message(Kind.MULTI_STEP, (("actions", "map"),))
class MultiStep(Message):
    """§18: one action per live agent, keyed by agent id."""

    __slots__ = ("actions",)
    actions: dict[str, Any]


@_message(
    Kind.MULTI_RESULT,
    (
        ("agents", "array"),
        ("obs", "map"),
        ("rewards", "map"),
        ("terminations", "map"),
        ("truncations", "map"),
        ("infos", "map"),
    ),
)
class MultiResult(Message):
    """§18: the answer to RESET and MULTI_STEP in a multi-agent session (maps keyed by agent id;
    ``agents`` is the live agents after the command)."""

    __slots__ = ("agents", "obs", "rewards", "terminations", "truncations", "infos")
    agents: list[str]
    obs: dict[str, Any]
    rewards: dict[str, Any]
    terminations: dict[str, Any]
    truncations: dict[str, Any]
    infos: dict[str, Any]

    @classmethod
    def from_body(cls, body: Any) -> Message:
        msg = super().from_body(body)
        rewards = msg.rewards  # type: ignore[attr-defined]
        for agent, reward in rewards.items():
            if type(reward) is int:
                rewards[agent] = float(reward)  # §5: an int is accepted, as a float
        return msg


MESSAGE_TYPES: dict[int, type[Message]] = {
    int(cls.KIND): cls
    for cls in (
        Hello,
        EnvInfo,
        Auth,
        Shm,
        Reset,
        Step,
        Render,
        Close,
        Call,
        ResetResult,
        StepResult,
        RenderResult,
        CloseResult,
        CallResult,
        Error,
        MultiStep,
        MultiResult,
    )
}
