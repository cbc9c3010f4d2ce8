"""Side channels (spec §19): typed attributes over the reserved CALLs rlay.describe/get/set.

Real sessions over loopback sockets (Python env side in a thread), checked against Gymnasium's
own CartPole with the same attribute set in process: a setting really changes the physics.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import require_tool
from gymnasium.envs.classic_control import CartPoleEnv
from gymnasium.vector import SyncVectorEnv

import rlay
from rlay import Attribute, InvalidAttribute
from rlay.backends import EnvSession
from rlay.errors import EnvSideFailed, ProtocolError, RemoteError, UsageError
from rlay.protocol.wire import ErrorCode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Clock:
    """Stands for an engine's time control: only reachable through getter and setter."""

    def __init__(self) -> None:
        self.scale = 1.0


def cartpole_attributes() -> list[Attribute]:
    return [
        Attribute("gravity", float, default=9.8, min=0.0, max=100.0, doc="m/s^2"),
        Attribute(
            "time_scale",
            float,
            default=1.0,
            min=0.01,
            max=100.0,
            getter=lambda env: env.unwrapped.clock.scale,
            setter=lambda env, v: setattr(env.unwrapped.clock, "scale", v),
        ),
        Attribute(
            "quality_level", int, default=2, min=0, max=5, getter=lambda env: 2, setter=lambda e, v: None
        ),
        Attribute(
            "difficulty",
            str,
            default="easy",
            choices=["easy", "hard"],
            writable=False,
            getter=lambda e: "easy",
        ),
        Attribute("paused", bool, default=False, getter=lambda env: False, setter=lambda e, v: None),
    ]


def make_cartpole() -> gym.Env[Any, Any]:
    env = gym.make("CartPole-v1")
    env.unwrapped.clock = Clock()  # type: ignore[attr-defined]
    return env


@pytest.fixture(scope="module")
def server() -> Iterator[rlay.Server]:
    srv = rlay.serve(make_cartpole, block=False, attributes=cartpole_attributes())
    yield srv
    srv.close()


def rollout(env: Any, seed: int, steps: int = 40) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    out = [np.array(obs)]
    for i in range(steps):
        obs, _, terminated, truncated, _ = env.step(i % 2)
        out.append(np.array(obs))
        if terminated or truncated:
            break
    return out


# -- descriptors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "", "type": float}, "attribute name"),
        ({"name": "9lives", "type": int}, "attribute name"),
        ({"name": "x", "type": list}, "type is bool, int, float or str"),
        ({"name": "x", "type": str, "min": 0}, "only for int and float"),
        ({"name": "x", "type": int, "min": 3, "max": 1}, "above max"),
        ({"name": "x", "type": int, "default": 1.5}, "expected an int"),
        ({"name": "x", "type": float, "default": -1.0, "min": 0.0}, "below its minimum"),
        ({"name": "x", "type": str, "choices": []}, "non-empty"),
        ({"name": "time_scale", "type": int}, "standard name"),
    ],
)
def test_bad_descriptors_are_refused_at_registration(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        Attribute(**kwargs)


def test_values_are_typed_strictly() -> None:
    f = Attribute("g", float, min=0.0)
    assert f.check(3) == 3.0 and type(f.check(np.float32(0.5))) is float
    for bad in (True, "1", float("nan"), None, [1.0]):
        with pytest.raises(InvalidAttribute, match="expected a float"):
            f.check(bad)
    i = Attribute("n", int)
    assert i.check(np.int64(7)) == 7
    with pytest.raises(InvalidAttribute, match="expected an int"):
        i.check(1.0)
    with pytest.raises(InvalidAttribute, match="expected a bool"):
        Attribute("b", bool).check(1)


def test_the_descriptor_round_trips_through_its_wire_form() -> None:
    for attr in cartpole_attributes():
        back = Attribute.from_wire(attr.name, attr.to_wire() | {"unit": "later versions may add keys"})
        assert back == attr
    with pytest.raises(ProtocolError, match="must be a map with the keys"):
        Attribute.from_wire("g", {"type": "float"})


# -- one env ---------------------------------------------------------------------------------


def test_discover_get_and_set_change_the_physics(server: rlay.Server) -> None:
    with rlay.ClientEnv(server.address) as env:
        attrs = env.attributes
        assert list(attrs) == ["gravity", "time_scale", "quality_level", "difficulty", "paused"]
        assert attrs["gravity"] == Attribute("gravity", float, default=9.8, min=0.0, max=100.0, doc="m/s^2")
        assert env.get_attr("gravity") == 9.8 and env.get_attr("difficulty") == "easy"
        env.set_attr("gravity", 25)  # an int is exact as a float
        assert env.get_attr("gravity") == 25.0
        env.set_attr("time_scale", 20.0)
        assert env.get_attr("time_scale") == 20.0
        ours = rollout(env, seed=3)
    ref = CartPoleEnv()
    ref.gravity = 25.0
    expected = rollout(ref, seed=3)
    assert len(ours) == len(expected)
    np.testing.assert_array_equal(np.array(ours), np.array(expected))
    default = rollout(CartPoleEnv(), seed=3)
    assert not np.array_equal(np.array(default[: len(ours)]), np.array(ours[: len(default)]))


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("gravity", "strong", "expected a float, actual str"),
        ("gravity", True, "expected a float, actual bool"),
        ("gravity", -1.0, "below its minimum 0.0"),
        ("gravity", 1e9, "above its maximum 100.0"),
        ("quality_level", 2.0, "expected an int"),
        ("difficulty", "hard", "read-only"),
        ("lives", 3, "offers no attribute of this name .*gravity, time_scale"),
    ],
)
def test_bad_values_are_refused_on_both_sides(server: rlay.Server, name: str, value: Any, match: str) -> None:
    with rlay.ClientEnv(server.address) as env:
        env.set_attr("gravity", 12.5)
        with pytest.raises(InvalidAttribute, match=match):  # the agent side: nothing is sent
            env.set_attr(name, value)
        with pytest.raises(RemoteError, match=match) as info:  # the env side checks too
            env.call("rlay.set", name, value)
        assert info.value.code == ErrorCode.BAD_ATTRIBUTE and not info.value.fatal
        assert env.get_attr("gravity") == 12.5  # state unchanged, the session goes on
        env.reset(seed=0)
        env.step(0)


def test_malformed_reserved_calls(server: rlay.Server) -> None:
    with rlay.ClientEnv(server.address) as env:
        for args, kwargs, match in [
            (("gravity", 1.0), {}, r"rlay.get takes the arguments \[name\]"),
            (("gravity",), {"default": 1}, "no keyword arguments"),
            ((7,), {}, "name a str"),
        ]:
            with pytest.raises(RemoteError, match=match) as info:
                env.call("rlay.get", *args, **kwargs)
            assert info.value.code == ErrorCode.BAD_ATTRIBUTE
        with pytest.raises(RemoteError, match="not a function of §19") as info:
            env.call("rlay.reload")
        assert info.value.code == ErrorCode.NOT_SUPPORTED
        assert env.call("rlay.describe")["paused"]["type"] == "bool"


def test_getter_and_setter_failures_are_env_exceptions() -> None:
    def broken(env: Any, value: float) -> None:
        raise RuntimeError("the engine refused")

    attrs = [
        Attribute("wrong", int, getter=lambda env: "not an int", setter=lambda e, v: None),
        Attribute("broken", float, getter=lambda env: 1.0, setter=broken),
    ]
    with rlay.serve(make_cartpole, block=False, attributes=attrs) as srv, rlay.ClientEnv(srv.address) as env:
        with pytest.raises(RemoteError, match="value of attribute 'wrong': expected an int") as info:
            env.get_attr("wrong")
        assert info.value.code == ErrorCode.ENV_EXCEPTION
        with pytest.raises(RemoteError, match="the engine refused") as info:
            env.set_attr("broken", 2.0)
        assert info.value.code == ErrorCode.ENV_EXCEPTION and info.value.remote_type == "RuntimeError"
        assert env.get_attr("broken") == 1.0


def test_an_env_side_with_no_attributes_offers_an_empty_table() -> None:
    with rlay.serve(lambda: gym.make("CartPole-v1"), block=False) as srv, rlay.ClientEnv(srv.address) as env:
        assert env.attributes == {}
        with pytest.raises(InvalidAttribute, match=r"offers no attribute of this name \(it offers: none\)"):
            env.get_attr("gravity")


def test_an_env_side_without_section_19_offers_nothing() -> None:
    """An SDK that does not know §19 answers rlay.describe NOT_SUPPORTED: an empty table."""
    require_tool("node")
    with rlay.ClientEnv(launch=[os.path.join(ROOT, "sdk/js/bin/cartpole")]) as env:
        assert env.attributes == {}
        env.reset(seed=1)  # and the session goes on


def test_reserved_call_names_cannot_be_registered() -> None:
    with pytest.raises(UsageError, match="reserved"):
        rlay.serve(make_cartpole, block=False, calls={"rlay.get": lambda env, name: 0})


def test_server_env_and_loop_style_env_session() -> None:
    """ServerEnv with a loop-style env side: no env object, getters and setters only."""
    clock = Clock()
    attrs = [
        Attribute(
            "time_scale",
            float,
            default=1.0,
            min=0.01,
            getter=lambda _: clock.scale,
            setter=lambda _, v: setattr(clock, "scale", v),
        ),
    ]
    with pytest.raises(UsageError, match="needs a getter"):
        from rlay.attributes import table_for

        table_for([Attribute("x", int)], None, 1)
    env = rlay.ServerEnv(wait=False)
    inner = gym.make("CartPole-v1")

    def game() -> None:
        session = EnvSession.dial(env.address, inner.observation_space, inner.action_space, attributes=attrs)
        while (cmd := session.poll(5.0)) is not None and cmd.kind != "close":
            if cmd.kind == "reset":
                session.reply_reset(*inner.reset(seed=cmd.seed))
            elif cmd.kind == "step":
                session.reply_step(*inner.step(cmd.action))

    thread = threading.Thread(target=game, daemon=True)
    thread.start()
    try:
        env.reset(seed=0)
        assert env.attributes["time_scale"].min == 0.01
        env.set_attr("time_scale", 8)
        assert clock.scale == 8.0 and env.get_attr("time_scale") == 8.0
    finally:
        env.close()
        thread.join(5)


# -- vector envs -------------------------------------------------------------------------------


def test_vector_env_of_plain_env_sides(server: rlay.Server) -> None:
    with closing(rlay.ClientVectorEnv([server.address] * 3)) as venv:
        assert list(venv.attributes)[:2] == ["gravity", "time_scale"]
        assert venv.get_attr("gravity") == (9.8, 9.8, 9.8)
        venv.set_attr("gravity", [5.0, 9.8, 20.0])
        venv.set_attr("time_scale", 4.0)  # one value for all
        assert venv.get_attr("gravity") == (5.0, 9.8, 20.0)
        assert venv.get_attr("time_scale") == (4.0, 4.0, 4.0)
        with pytest.raises(InvalidAttribute, match=r"sub-env 1: -2\.0 is below"):
            venv.set_attr("gravity", [1.0, -2.0, 3.0])
        with pytest.raises(InvalidAttribute, match="one value or 3"):
            venv.set_attr("gravity", [1.0, 2.0])
        assert venv.get_attr("gravity") == (5.0, 9.8, 20.0)
        _same_as_sync(venv, [5.0, 9.8, 20.0])


def test_vector_env_of_one_batched_env_side() -> None:
    def make() -> SyncVectorEnv:
        return SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 4)

    with rlay.serve_vector(make, block=False, attributes=cartpole_attributes()[:1]) as srv:
        with closing(rlay.ClientVectorEnv(srv.address)) as venv:
            assert list(venv.attributes) == ["gravity"]
            venv.set_attr("gravity", [1.0, 2.0, 3.0, 4.0])
            assert venv.get_attr("gravity") == (1.0, 2.0, 3.0, 4.0)
            # the env side's own check, past the agent side's (a refusal keeps the vector env)
            (refused,) = venv._call_each(
                "rlay.set", [["gravity", [1.0, 1.0, -3.0, 1.0]]], ErrorCode.BAD_ATTRIBUTE
            )
            assert isinstance(refused, RemoteError) and refused.code == ErrorCode.BAD_ATTRIBUTE
            assert "sub-env 2: -3.0 is below its minimum" in refused.message
            assert venv.get_attr("gravity") == (1.0, 2.0, 3.0, 4.0)  # unchanged; still usable
            _same_as_sync(venv, [1.0, 2.0, 3.0, 4.0])


def _same_as_sync(venv: Any, gravity: list[float]) -> None:
    ref = SyncVectorEnv([lambda: gym.make("CartPole-v1")] * len(gravity))
    ref.set_attr("gravity", gravity)
    a, _ = venv.reset(seed=7)
    b, _ = ref.reset(seed=7)
    for i in range(30):
        actions = np.array([(i + k) % 2 for k in range(len(gravity))])
        np.testing.assert_array_equal(a, b)
        a = venv.step(actions)[0]
        b = ref.step(actions)[0]
    np.testing.assert_array_equal(a, b)
    ref.close()


def test_vector_env_sides_must_agree() -> None:
    with (
        rlay.serve(make_cartpole, block=False, attributes=cartpole_attributes()) as a,
        rlay.serve(make_cartpole, block=False) as b,
        closing(rlay.ClientVectorEnv([a.address, b.address])) as venv,
    ):
        with pytest.raises(UsageError, match="must offer the same"):
            _ = venv.attributes
        venv.reset(seed=0)  # the connections are still usable
    with rlay.serve(make_cartpole, block=False) as b, closing(rlay.ClientVectorEnv([b.address])) as venv:
        venv.call("rlay.describe")  # an explicit call still works as any CALL
        with pytest.raises(EnvSideFailed):
            venv.call("rlay.get", "gravity")  # a refused raw CALL fails the vector env (§10 rules)


def test_a_loop_style_game_offers_its_frame_rate() -> None:
    """examples/game_loop.py: a standard engine setting (§19.3) changed while the game runs."""
    game = [sys.executable, os.path.join(ROOT, "examples", "game_loop.py"), "--listen", "{address}"]
    with rlay.ClientEnv(launch=game) as env:
        attr = env.attributes["target_frame_rate"]
        assert (attr.type, attr.default, attr.min, attr.max) == ("int", 60, 1, 1000)
        env.set_attr("target_frame_rate", 240)
        assert env.get_attr("target_frame_rate") == 240
        with pytest.raises(InvalidAttribute, match="below its minimum 1"):
            env.set_attr("target_frame_rate", 0)
        env.reset(seed=0)
        env.step(1)
