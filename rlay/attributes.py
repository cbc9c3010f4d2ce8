"""Side channels: typed attributes and engine settings over ``CALL`` (spec/protocol.md §19).

An env side offers named, typed **attributes** (a game's ``time_scale``, a simulator's
``gravity``): each has a descriptor (type, default, range or choices, writable, doc). The agent
side discovers them and reads or writes them with three reserved ``CALL`` names that the SDK
answers itself, never the user's code:

- ``rlay.describe`` → a map of attribute name → descriptor, in the env side's order;
- ``rlay.get [name]`` → the current value;
- ``rlay.set [name, value]`` → nil, after checking the value (type, range, choices, writable).

Both sides check every value: the agent side before anything is sent (:class:`InvalidAttribute`,
nothing changes), the env side again on receipt (a non-fatal ``ERROR`` with code
``BAD_ATTRIBUTE`` (20), state unchanged), and the agent side checks what comes back. No new
message kind is needed: an env side without §19 answers ``rlay.describe`` with ``NOT_SUPPORTED``,
which the agent side reads as "offers no attributes".

Agent side: ``env.attributes`` (descriptors), ``env.get_attr(name)``, ``env.set_attr(name,
value)`` on :class:`~rlay.ClientEnv` / :class:`~rlay.ServerEnv`; a vector env's ``get_attr`` /
``set_attr`` take and return one value per sub-env, as Gymnasium's ``VectorEnv`` does.
Env side: ``rlay.serve(env, attributes=[Attribute("gravity", float, min=0.0), ...])`` (also
``connect``, ``serve_vector``, ``connect_vector`` and the loop-style ``EnvSession``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlay.errors import ProtocolError, UsageError, clip
from rlay.protocol.wire import ErrorCode

__all__ = [
    "DESCRIBE",
    "GET",
    "RESERVED_PREFIX",
    "SET",
    "STANDARD",
    "Attribute",
    "AttributeTable",
    "InvalidAttribute",
    "parse_describe",
]

#: CALL names starting with this are the SDK's own (§19); a user cannot register one.
RESERVED_PREFIX = "rlay."
DESCRIBE = "rlay.describe"
GET = "rlay.get"
SET = "rlay.set"

#: §19.3: names with a fixed meaning and type. An env side need not offer any of them; if it
#: offers one, it has this type (and the meaning the spec gives).
STANDARD: dict[str, str] = {
    "time_scale": "float",  # simulated seconds per real second; 1.0 = real time
    "target_frame_rate": "int",  # frames per second the engine aims for; -1 = unlimited
    "quality_level": "int",  # the engine's rendering quality index, 0 = lowest
    "action_repeat": "int",  # engine frames each action is held for, >= 1
}

_TYPES = {bool: "bool", int: "int", float: "float", str: "str"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_FIELDS = ("type", "default", "min", "max", "choices", "writable", "doc")


class InvalidAttribute(UsageError, ValueError):
    """An attribute that is not offered, read-only, or a value of the wrong type, outside its
    range or not one of its choices (§19). Raised before anything is sent: nothing changed."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(name, detail)
        self.name = name
        self.detail = detail

    def __str__(self) -> str:
        return f"attribute {self.name!r}: {self.detail}"


def _type_name(t: Any) -> str:
    if isinstance(t, str) and t in _TYPES.values():
        return t
    if t in _TYPES:
        return _TYPES[t]
    raise UsageError(f"an attribute's type is bool, int, float or str (or their names), not {t!r}")


def check_value(kind: str, value: Any) -> bool | int | float | str:
    """``value`` as the plain Python value of type ``kind`` (§19.1), or ``TypeError`` saying why.

    bool is never an int (and an int never a bool); a float attribute takes an int or a NumPy
    number whose value is exact as a float64, never NaN; NumPy scalars become Python values."""
    if kind == "bool":
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
    elif kind == "int":
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            return int(value)
    elif kind == "float":
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            as_float = float(value)
            if int(as_float) != int(value):
                raise TypeError(f"expected a float, actual int {value} (not exact as a float64)")
            return as_float
        if isinstance(value, (float, np.floating)):
            if math.isnan(value):
                raise TypeError("expected a float, actual NaN")
            return float(value)
    elif kind == "str":
        if isinstance(value, str):
            return value
    article = "an" if kind == "int" else "a"
    raise TypeError(f"expected {article} {kind}, actual {type(value).__name__} {clip(value, 60)}")


@dataclass(frozen=True)
class Attribute:
    """One attribute an env side offers (§19.1), and on the env side how to reach it.

    ``type`` is ``bool``, ``int``, ``float`` or ``str`` (or its name). ``min``/``max`` bound an
    int or float (inclusive; None: unbounded); ``choices`` lists the only values allowed.
    ``default`` is informational (the value the env starts with). ``writable=False`` refuses
    ``set_attr``.

    Env side only: ``getter(owner)`` and ``setter(owner, value)`` reach the value; ``owner`` is
    the env being served (a vector env's getter returns, and its setter takes, a list of one
    value per sub-env). Without them a ``gymnasium.Env``'s attribute of the same name is read and
    written (``env.unwrapped.<name>``), and a ``VectorEnv``'s through its ``get_attr`` /
    ``set_attr``.
    """

    name: str
    type: Any
    default: Any = None
    min: int | float | None = None
    max: int | float | None = None
    choices: Sequence[Any] | None = None
    writable: bool = True
    doc: str = ""
    getter: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)
    setter: Callable[[Any, Any], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise UsageError(
                f"attribute name {name!r}: 1-64 characters of A-Z a-z 0-9 _ . -, not starting with a "
                "digit, '.' or '-' (§19.1)"
            )
        kind = _type_name(self.type)
        object.__setattr__(self, "type", kind)
        if name in STANDARD and STANDARD[name] != kind:
            raise UsageError(
                f"attribute {name!r} is a standard name (§19.3): its type is {STANDARD[name]}, not {kind}"
            )
        for bound in ("min", "max"):
            value = getattr(self, bound)
            if value is None:
                continue
            if kind not in ("int", "float"):
                raise UsageError(f"attribute {name!r}: {bound} is only for int and float attributes")
            try:
                object.__setattr__(self, bound, check_value(kind, value))
            except TypeError as exc:
                raise UsageError(f"attribute {name!r}: {bound}: {exc}") from None
        if self.min is not None and self.max is not None and self.min > self.max:
            raise UsageError(f"attribute {name!r}: min {self.min} is above max {self.max}")
        if self.choices is not None:
            if isinstance(self.choices, (str, bytes)) or len(self.choices) == 0:
                raise UsageError(f"attribute {name!r}: choices must be a non-empty list of values")
            try:
                choices = tuple(check_value(kind, c) for c in self.choices)
            except TypeError as exc:
                raise UsageError(f"attribute {name!r}: choices: {exc}") from None
            object.__setattr__(self, "choices", choices)
        if type(self.writable) is not bool:
            raise UsageError(f"attribute {name!r}: writable must be a bool")
        if not isinstance(self.doc, str):
            raise UsageError(f"attribute {name!r}: doc must be a str")
        if self.default is not None:
            try:
                object.__setattr__(self, "default", self.check(self.default))
            except InvalidAttribute as exc:
                raise UsageError(f"attribute {name!r}: default: {exc.detail}") from None

    def check(self, value: Any) -> Any:
        """``value`` as this attribute's plain Python value, or :class:`InvalidAttribute`."""
        try:
            value = check_value(self.type, value)
        except TypeError as exc:
            raise InvalidAttribute(self.name, str(exc)) from None
        if self.min is not None and value < self.min:
            raise InvalidAttribute(self.name, f"{value!r} is below its minimum {self.min!r}")
        if self.max is not None and value > self.max:
            raise InvalidAttribute(self.name, f"{value!r} is above its maximum {self.max!r}")
        if self.choices is not None and value not in self.choices:
            raise InvalidAttribute(self.name, f"{clip(value, 60)} is not one of {list(self.choices)}")
        return value

    def to_wire(self) -> dict[str, Any]:
        """The descriptor of §19.1, fields in canonical order."""
        return {
            "type": self.type,
            "default": self.default,
            "min": self.min,
            "max": self.max,
            "choices": None if self.choices is None else list(self.choices),
            "writable": self.writable,
            "doc": self.doc,
        }

    @classmethod
    def from_wire(cls, name: Any, descriptor: Any) -> Attribute:
        """An env side's descriptor, checked (§19.1); :class:`ProtocolError` ``BAD_VALUE`` if not valid.
        Keys this version does not know are ignored (§19.1: the room later versions grow in)."""
        if not isinstance(descriptor, dict) or any(k not in descriptor for k in _FIELDS):
            raise ProtocolError(
                ErrorCode.BAD_VALUE,
                f"rlay.describe: the descriptor of {clip(name, 60)} must be a map with the keys "
                f"{', '.join(_FIELDS)} (§19.1), got {clip(descriptor, 120)}",
            )
        fields = {k: descriptor[k] for k in _FIELDS}
        if fields["choices"] is not None and not isinstance(fields["choices"], list):
            fields["choices"] = ()  # refused below, with the reason
        try:
            return cls(name, **fields)
        except UsageError as exc:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"rlay.describe: {exc}") from None


def parse_describe(value: Any) -> dict[str, Attribute]:
    """The reply to ``rlay.describe`` (one env side, unbatched) as name → :class:`Attribute`."""
    if not isinstance(value, dict):
        raise ProtocolError(
            ErrorCode.BAD_VALUE,
            f"rlay.describe must answer a map of attribute name -> descriptor (§19.2), got {clip(value, 80)}",
        )
    return {name: Attribute.from_wire(name, d) for name, d in value.items()}


def unknown(name: Any, offered: Sequence[str]) -> InvalidAttribute:
    listed = ", ".join(offered) if offered else "none"
    return InvalidAttribute(str(name), f"the env side offers no attribute of this name (it offers: {listed})")


# -- env side ------------------------------------------------------------------------------------


class AttributeTable:
    """What an env side answers to the reserved CALLs (§19.2), for one session.

    ``owner`` is what the getters and setters are given (the served env; None in loop style,
    where every attribute needs its own ``getter``, and ``setter`` if writable). ``vector`` says
    that the owner hosts ``num_envs`` sub-envs and its accessors take lists of values.
    """

    def __init__(self, attributes: Sequence[Attribute], owner: Any, num_envs: int, vector: bool) -> None:
        table: dict[str, Attribute] = {}
        for attr in attributes:
            if not isinstance(attr, Attribute):
                raise UsageError(f"attributes must be rlay.Attribute objects, got {type(attr).__name__}")
            if attr.name in table:
                raise UsageError(f"attribute {attr.name!r} is registered twice")
            if owner is None and (attr.getter is None or (attr.writable and attr.setter is None)):
                raise UsageError(
                    f"attribute {attr.name!r} needs a getter (and a setter, being writable): there is "
                    "no env object to read it from"
                )
            table[attr.name] = attr
        self.attributes = table
        self.owner = owner
        self.num_envs = num_envs
        self.vector = vector

    def answer(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """The CALL_RESULT value for a reserved CALL (batched when ``num_envs > 1``, §10).

        Raises :class:`InvalidAttribute` (answered ``BAD_ATTRIBUTE``), ``LookupError`` for a
        reserved name that is not a function (``NOT_SUPPORTED``), or what the user's getter or
        setter raised (``ENV_EXCEPTION``)."""
        n = self.num_envs
        if kwargs:
            raise InvalidAttribute("?", f"{name} takes no keyword arguments, got {sorted(kwargs)}")
        if name == DESCRIBE:
            if args:
                raise InvalidAttribute("?", f"{DESCRIBE} takes no arguments, got {len(args)}")
            table = {a.name: a.to_wire() for a in self.attributes.values()}
            return table if n == 1 else [table] * n
        if name not in (GET, SET):
            raise LookupError(f"{name!r} is not a function of §19 (offered: {DESCRIBE}, {GET}, {SET})")
        want = 1 if name == GET else 2
        if len(args) != want or not isinstance(args[0], str):
            shape = "[name]" if name == GET else "[name, value]"
            raise InvalidAttribute(
                "?", f"{name} takes the arguments {shape} (name a str), got {clip(args, 80)}"
            )
        attr = self.attributes.get(args[0])
        if attr is None:
            raise unknown(args[0], list(self.attributes))
        if name == GET:
            values = self._read(attr)
            return values[0] if n == 1 else values
        if not attr.writable:
            raise InvalidAttribute(attr.name, "is read-only")
        value = args[1]
        if n > 1 and isinstance(value, list):
            if len(value) != n:
                raise InvalidAttribute(
                    attr.name, f"expected one value or {n} (one per sub-env), actual {len(value)}"
                )
            values = [self._checked(attr, v, i) for i, v in enumerate(value)]
        else:
            values = [attr.check(value)] * n
        self._write(attr, values)
        return None if n == 1 else [None] * n

    @staticmethod
    def _checked(attr: Attribute, value: Any, i: int) -> Any:
        try:
            return attr.check(value)
        except InvalidAttribute as exc:
            raise InvalidAttribute(attr.name, f"sub-env {i}: {exc.detail}") from None

    def _read(self, attr: Attribute) -> list[Any]:
        owner, n = self.owner, self.num_envs
        if attr.getter is not None:
            raw = attr.getter(owner)
        elif self.vector:
            raw = owner.get_attr(attr.name)
        else:
            raw = getattr(owner.unwrapped, attr.name)
        values = list(raw) if self.vector else [raw]
        if len(values) != n:
            raise UsageError(
                f"the getter of attribute {attr.name!r} returned {len(values)} values for {n} sub-envs"
            )
        out = []
        for i, v in enumerate(values):
            try:  # the env side checks its own values too (as §9 its observations)
                out.append(attr.check(v))
            except InvalidAttribute as exc:
                where = f" (sub-env {i})" if n > 1 else ""
                raise UsageError(f"the env's value of attribute {attr.name!r}{where}: {exc.detail}") from None
        return out

    def _write(self, attr: Attribute, values: list[Any]) -> None:
        owner = self.owner
        if attr.setter is not None:
            attr.setter(owner, values if self.vector else values[0])
        elif self.vector:
            owner.set_attr(attr.name, values)
        else:
            setattr(owner.unwrapped, attr.name, values[0])


def table_for(attributes: Sequence[Attribute] | None, owner: Any, num_envs: int) -> AttributeTable:
    """The table of a session serving ``owner`` (a ``gymnasium.Env``, a ``VectorEnv`` or None)."""
    from gymnasium.vector import VectorEnv

    return AttributeTable(attributes or (), owner, num_envs, isinstance(owner, VectorEnv))


# -- agent side ----------------------------------------------------------------------------------


def fetch(call: Callable[..., Any]) -> dict[str, Attribute]:
    """Ask an env side (unbatched: one connection of one sub-env) what it offers. An env side
    without §19 answers ``NOT_SUPPORTED``: it offers nothing."""
    from rlay.errors import RemoteError

    try:
        value = call(DESCRIBE)
    except RemoteError as exc:
        if exc.code == ErrorCode.NOT_SUPPORTED and not exc.fatal:
            return {}
        raise
    return parse_describe(value)


def lookup(table: dict[str, Attribute], name: Any) -> Attribute:
    """The descriptor of ``name``, or :class:`InvalidAttribute` listing what is offered."""
    attr = table.get(name) if isinstance(name, str) else None
    if attr is None:
        raise unknown(name, list(table))
    return attr


def for_set(attr: Attribute, value: Any) -> Any:
    """``value`` checked for ``set_attr`` (writable, type, range, choices), as sent."""
    if not attr.writable:
        raise InvalidAttribute(attr.name, "is read-only")
    return attr.check(value)


def from_reply(attr: Attribute, value: Any) -> Any:
    """A value the env side answered to ``rlay.get``, checked against its descriptor."""
    try:
        return check_value(attr.type, value)
    except TypeError as exc:
        what = f"rlay.get {attr.name!r} answered a wrong value: {exc}"
        raise ProtocolError(ErrorCode.BAD_VALUE, what) from None
