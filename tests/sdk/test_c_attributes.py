"""The C SDK's side channels (spec §19), from Python over real sockets: the C CartPole offers
``gravity``, ``force_mag`` and ``tau`` per sub-env; setting them really changes the physics,
bit for bit as Gymnasium's CartPoleEnv with the same attributes, and every bad value is refused
by the C side too (BAD_ATTRIBUTE, nothing changed, the session goes on)."""

from __future__ import annotations

import subprocess
from contextlib import closing
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import require_tool
from gymnasium.envs.classic_control import CartPoleEnv
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import rlay
from rlay import Attribute, InvalidAttribute
from rlay.errors import RemoteError
from rlay.protocol.wire import ErrorCode

SDK = Path(__file__).resolve().parents[2] / "sdk" / "c"


def build(out: Path, *extra: str) -> str:
    require_tool("gcc")
    require_tool("make")
    cmd = ["make", "-C", str(SDK), f"OUT={out}", "CC=gcc", *extra, f"{out}/cartpole"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return str(out / "cartpole")


@pytest.fixture(scope="module")
def cartpole_asan(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Built with ASan and UBSan: the attribute code reads peer values and writes user memory."""
    san = "-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    return build(tmp_path_factory.mktemp("cartpole-attr-asan"), f"CFLAGS={san}")


def states(env: Any, ref: Any, seed: int, steps: int = 60) -> None:
    """The same observations, step for step, from the C CartPole and Gymnasium's."""
    a, _ = env.reset(seed=seed)
    b, _ = ref.reset(seed=seed)
    for i in range(steps):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), (i, a, b)
        action = i % 2 if np.ndim(b) == 1 else np.array([(i + k) % 2 for k in range(len(b))])
        a = env.step(action)[0]
        b = ref.step(action)[0]


def test_the_c_cartpole_offers_its_physics(cartpole_asan: str) -> None:
    with rlay.ClientEnv(launch=[cartpole_asan]) as env:
        attrs = env.attributes
        assert list(attrs) == ["gravity", "force_mag", "tau"]
        assert attrs["gravity"] == Attribute(
            "gravity", float, default=9.8, min=0.0, max=1000.0, doc=attrs["gravity"].doc
        )
        assert attrs["tau"].min == 1e-4 and attrs["tau"].writable
        assert (env.get_attr("gravity"), env.get_attr("force_mag"), env.get_attr("tau")) == (9.8, 10.0, 0.02)
        env.set_attr("gravity", 24.0)
        env.set_attr("tau", 0.01)
        env.set_attr("force_mag", 3)  # an int, exact as a float
        assert (env.get_attr("gravity"), env.get_attr("force_mag"), env.get_attr("tau")) == (24.0, 3.0, 0.01)
        ref = CartPoleEnv()
        ref.gravity, ref.tau, ref.force_mag = 24.0, 0.01, 3.0
        states(env, ref, seed=11)
        # and it differs from the default physics (the setting took effect)
        default = CartPoleEnv()
        a, _ = env.reset(seed=11)
        default.reset(seed=11)
        for i in range(20):
            a = env.step(i % 2)[0]
            b = default.step(i % 2)[0]
        assert not np.array_equal(a, b)


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (("gravity", -1.0), ErrorCode.BAD_ATTRIBUTE, "attribute 'gravity': -1 is below its minimum 0"),
        (("gravity", 1e9), ErrorCode.BAD_ATTRIBUTE, "above its maximum 1000"),
        (("gravity", "heavy"), ErrorCode.BAD_ATTRIBUTE, "expected a float, actual str"),
        (("gravity", True), ErrorCode.BAD_ATTRIBUTE, "expected a float, actual bool"),
        (("gravity", float("nan")), ErrorCode.BAD_ATTRIBUTE, "actual NaN"),
        (("gravity", 2**60 + 1), ErrorCode.BAD_ATTRIBUTE, "not exact as a float64"),
        (("tau", 0.0), ErrorCode.BAD_ATTRIBUTE, "below its minimum 0.0001"),
        (("mass", 1.0), ErrorCode.BAD_ATTRIBUTE, r"offers no attribute .*gravity, force_mag, tau"),
        (("gravity",), ErrorCode.BAD_ATTRIBUTE, r"takes the arguments \[name, value\]"),
        ((7, 1.0), ErrorCode.BAD_ATTRIBUTE, "name a str"),
    ],
)
def test_the_c_side_refuses_bad_values_and_changes_nothing(
    cartpole_asan: str, args: tuple[Any, ...], code: ErrorCode, match: str
) -> None:
    with rlay.ClientEnv(launch=[cartpole_asan]) as env:
        env.set_attr("gravity", 5.0)
        with pytest.raises(RemoteError, match=match) as info:
            env.call("rlay.set", *args)  # past the agent side's own checks
        assert info.value.code == code and not info.value.fatal
        assert env.get_attr("gravity") == 5.0 and env.get_attr("tau") == 0.02
        with pytest.raises(RemoteError, match="not a function of section 19") as info:
            env.call("rlay.reload")
        assert info.value.code == ErrorCode.NOT_SUPPORTED
        if len(args) == 2 and isinstance(args[0], str):
            with pytest.raises(InvalidAttribute):  # the agent side refuses it before sending
                env.set_attr(*args)
        env.reset(seed=0)
        env.step(1)  # the session goes on
    assert env.process is None or env.process.returncode in (None, 0)


def test_batched_sub_envs_each_get_their_own_values(cartpole_asan: str) -> None:
    n = 3
    launch = [cartpole_asan, "--num-envs", str(n)]
    with closing(rlay.ClientVectorEnv(launch=launch)) as venv:
        assert venv.get_attr("gravity") == (9.8,) * n
        venv.set_attr("gravity", [4.0, 9.8, 30.0])
        venv.set_attr("tau", 0.015)  # one value for every sub-env
        assert venv.get_attr("gravity") == (4.0, 9.8, 30.0)
        assert venv.get_attr("tau") == (0.015,) * n
        with pytest.raises(InvalidAttribute, match="sub-env 2"):
            venv.set_attr("gravity", [1.0, 1.0, -1.0])
        (refused,) = venv._call_each("rlay.set", [["gravity", [1.0, -1.0, 1.0]]], ErrorCode.BAD_ATTRIBUTE)
        assert isinstance(refused, RemoteError) and "sub-env 1: -1 is below" in refused.message
        (refused,) = venv._call_each("rlay.set", [["gravity", [1.0, 2.0]]], ErrorCode.BAD_ATTRIBUTE)
        assert isinstance(refused, RemoteError) and "one value or 3" in refused.message
        assert venv.get_attr("gravity") == (4.0, 9.8, 30.0)  # nothing changed
        ref = SyncVectorEnv([lambda: gym.make("CartPole-v1")] * n, autoreset_mode=AutoresetMode.NEXT_STEP)
        ref.set_attr("gravity", [4.0, 9.8, 30.0])
        ref.set_attr("tau", 0.015)
        states(venv, ref, seed=3, steps=80)  # across autoresets
        ref.close()


def test_server_env_direction(cartpole_asan: str) -> None:
    """The same from a ServerEnv (the C program dials in)."""
    with rlay.ServerEnv(launch=[cartpole_asan]) as env:
        env.set_attr("force_mag", 15.5)
        ref = CartPoleEnv()
        ref.force_mag = 15.5
        states(env, ref, seed=2, steps=10)
