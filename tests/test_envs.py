"""Ring 2-3: ClientEnv/ServerEnv against the Python env side over real sockets."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlay
from rlay.testing import TrivialEnv

# Every Gymnasium env that installs without system libraries: classic control, toy text, Box2D.
EQUIVALENCE_IDS = [
    "CartPole-v1",
    "MountainCar-v0",
    "MountainCarContinuous-v0",
    "Pendulum-v1",
    "Acrobot-v1",
    "FrozenLake-v1",
    "Taxi-v4",
    "CliffWalking-v1",
    "Blackjack-v1",
    "LunarLander-v3",
    "BipedalWalker-v3",
    "CarRacing-v3",
]


@contextmanager
def client_pair(
    make: Callable[[], gym.Env[Any, Any]], address: str, **kwargs: Any
) -> Iterator[rlay.ClientEnv]:
    """A ClientEnv connected to ``serve(make)`` running in this process."""
    server = rlay.serve(make, address, block=False)
    env = rlay.ClientEnv(server.address, **kwargs)
    try:
        yield env
    finally:
        env.close()
        server.close()


@contextmanager
def server_pair(
    make: Callable[[], gym.Env[Any, Any]], address: str, **kwargs: Any
) -> Iterator[rlay.ServerEnv]:
    """A ServerEnv with ``connect(make(), ...)`` dialling it from a thread."""
    env = rlay.ServerEnv(address, wait=False, **kwargs)
    errors: list[BaseException] = []

    def env_side() -> None:
        try:
            rlay.connect(make, env.address)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=env_side, daemon=True)
    thread.start()
    env.accept()
    try:
        yield env
    finally:
        env.close()
        thread.join(10)
        assert not errors, errors


PAIRS = {"ClientEnv-serve": client_pair, "ServerEnv-connect": server_pair}


def same(a: Any, b: Any, path: str = "") -> None:
    """Assert a == b exactly: same dtype, same bytes (so NaN == NaN), same structure."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) or isinstance(a, np.generic):
        a_arr, b_arr = np.asarray(a), np.asarray(b)
        assert a_arr.dtype == b_arr.dtype, f"{path}: dtype {a_arr.dtype} != {b_arr.dtype}"
        assert a_arr.shape == b_arr.shape, f"{path}: shape {a_arr.shape} != {b_arr.shape}"
        assert a_arr.tobytes() == b_arr.tobytes(), f"{path}: values differ: {a_arr} != {b_arr}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{path}: keys {list(a)} != {b!r}"
        for key in a:
            same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{path}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    else:
        assert type(a) is type(b) and a == b, (
            f"{path}: {a!r} ({type(a).__name__}) != {b!r} ({type(b).__name__})"
        )


def rollout(
    env: gym.Env[Any, Any], actions: list[Any] | None, seed: int, steps: int, render_every: int
) -> tuple[list[Any], list[Any]]:
    """Seeded episodes; returns the trace and the actions used (sampled when ``actions`` is None)."""
    trace: list[Any] = []
    used: list[Any] = []
    sampler = env.action_space
    sampler.seed(seed)
    obs, info = env.reset(seed=seed)
    trace.append(("reset", obs, info))
    for t in range(steps):
        action = actions[t] if actions is not None else sampler.sample()
        used.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append(("step", obs, float(reward), terminated, truncated, info))
        if render_every and t % render_every == 0:
            trace.append(("frame", env.render()))
        if terminated or truncated:
            obs, info = env.reset()
            trace.append(("reset", obs, info))
    return trace, used


def normalise(trace: list[Any]) -> list[Any]:
    """In-process values as they are defined to arrive (spec §3, §9): Discrete obs as the space's
    NumPy scalar, Python bool flags. Rewards are compared as floats (Gymnasium: SupportsFloat)."""
    out = []
    for item in trace:
        if item[0] == "step":
            _, obs, reward, term, trunc, info = item
            out.append(("step", _np(obs), reward, bool(term), bool(trunc), info))
        elif item[0] == "reset":
            out.append(("reset", _np(item[1]), item[2]))
        else:
            out.append(item)
    return out


def _np(obs: Any) -> Any:
    if isinstance(obs, (int, np.integer)) and not isinstance(obs, bool):
        return np.int64(obs)
    if isinstance(obs, tuple):
        return tuple(_np(o) for o in obs)
    return obs


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("env_id", EQUIVALENCE_IDS)
def test_equivalence_with_in_process(env_id: str, pair: str, sock_dir: str) -> None:
    steps, render_every = (120, 40)
    if env_id in ("CarRacing-v3", "BipedalWalker-v3", "LunarLander-v3"):
        steps = 60
    local = gym.make(env_id, render_mode="rgb_array")
    expected, actions = rollout(local, None, seed=7, steps=steps, render_every=render_every)
    local.close()
    make = lambda: gym.make(env_id, render_mode="rgb_array")  # noqa: E731
    with PAIRS[pair](make, f"unix://{sock_dir}/eq.sock") as remote:
        assert remote.observation_space == local.observation_space
        assert remote.action_space == local.action_space
        assert remote.render_mode == "rgb_array"
        assert remote.metadata["render_modes"] == local.metadata["render_modes"]
        got, _ = rollout(remote, actions, seed=7, steps=steps, render_every=render_every)
    same(normalise(got), normalise(expected))


@pytest.mark.parametrize("pair", PAIRS)
def test_check_env_passes(pair: str, address: str) -> None:
    with PAIRS[pair](lambda: gym.make("CartPole-v1", render_mode="rgb_array").unwrapped, address) as env:
        check_env(env, skip_render_check=False)


def test_gymnasium_make_both_paradigms(address: str) -> None:
    server = rlay.serve(TrivialEnv, address, block=False)
    try:
        env = gym.make("rlay/ClientEnv-v0", address=server.address)
        obs, _ = env.reset(seed=3)
        assert obs.dtype == np.float32 and obs.shape == (4,)
        env.close()
    finally:
        server.close()
    env = gym.make("rlay/ServerEnv-v0", address=address, wait=False, disable_env_checker=True)
    thread = threading.Thread(target=rlay.connect, args=(TrivialEnv, env.unwrapped.address), daemon=True)
    thread.start()
    obs, _ = env.reset(seed=3)
    assert obs.shape == (4,)
    env.close()
    thread.join(10)


def test_bound_address_is_reported(sock_dir: str) -> None:
    server = rlay.serve(TrivialEnv, "tcp://127.0.0.1:0", block=False)
    try:
        assert server.address.startswith("tcp://127.0.0.1:") and not server.address.endswith(":0")
    finally:
        server.close()
    env = rlay.ServerEnv("tcp://127.0.0.1:0", wait=False)
    assert not env.address.endswith(":0")
    env.close()


def test_server_env_waits_for_the_game_again_after_stop_and_play() -> None:
    """The editor loop: the game stops (its session ends), ``connected`` turns False, a step
    fails, and the next ``reset`` waits for the game to dial in again at the same address."""
    import threading

    from rlay.errors import ConnectionClosed, RemoteError, UsageError

    env = rlay.ServerEnv("tcp://127.0.0.1:0", wait=False, accept_timeout=10)

    def play(steps: int, space: gym.Space[Any] | None = None) -> threading.Thread:
        def game() -> None:
            template = TrivialEnv()
            session = rlay.EnvSession.dial(
                env.address, space or template.observation_space, template.action_space
            )
            for _ in range(steps):
                cmd = session.poll(10)
                assert cmd is not None
                if cmd.kind == "reset":
                    session.reply_reset(np.zeros(4, np.float32))
                elif cmd.kind == "step":
                    session.reply_step(np.zeros(4, np.float32), 1.0, False, False)
            session.close()  # the developer presses stop

        thread = threading.Thread(target=game, daemon=True)
        thread.start()
        return thread

    try:
        first = play(2)
        env.reset(seed=0)
        env.step(0)
        first.join(10)
        with pytest.raises(RemoteError, match="closed the session"):
            env.step(0)
        assert not env.connected
        with pytest.raises(ConnectionClosed):
            env.step(0)
        second = play(2)  # play again
        obs, _ = env.reset()
        assert env.connected and obs.shape == (4,)
        env.step(1)
        second.join(10)
        play(1, space=gym.spaces.Box(0, 1, (2,), np.float32))  # a game whose spaces changed
        with pytest.raises(UsageError, match="must keep its spaces"):
            env.reset()
    finally:
        env.close()
