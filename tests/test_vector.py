"""Vector envs (spec §10): batched sub-envs on one connection, many connections stepped at once.

Every rollout is compared value for value with ``gymnasium.vector.SyncVectorEnv`` over the same
envs in process, same seeds, same actions, including autoresets, partial resets and ``info``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.spaces import Box
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.utils import batch_space

import rlay
from rlay.backends.vector import connect_vector, serve_vector
from rlay.envs.vector import ClientVectorEnv, ServerVectorEnv
from rlay.errors import (
    ConnectionClosed,
    EnvSideFailed,
    InvalidSubEnvAction,
    ProtocolError,
    RemoteError,
    Timeout,
    UsageError,
)
from rlay.protocol.codec import Encoder, decode
from rlay.protocol.connection import Connection
from rlay.protocol.fastpath import BatchResultTemplate, TensorTemplate
from rlay.protocol.framing import FrameReader, pack_header
from rlay.protocol.messages import EnvInfo, Error, ResetResult, StepResult
from rlay.protocol.wire import ErrorCode, Role
from rlay.spaces import describe
from rlay.testing import TrivialEnv
from rlay.transports import listen

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class InfoEnv(gym.Env[np.ndarray, np.ndarray]):
    """Box action, Box observation, seeded episode lengths, and an ``info`` with every kind of
    value Gymnasium's vector info handles (ints, NumPy scalars, bools, strs, arrays, nesting),
    set on some steps only so that the ``_key`` masks matter."""

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = Box(-10.0, 10.0, shape=(3,), dtype=np.float32)
        self.action_space = Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._obs = np.zeros(3, np.float32)
        self._t = 0
        self._len = 1

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self._t = 0
        self._len = int(self.np_random.integers(3, 9))
        self._obs = self.np_random.uniform(-1, 1, 3).astype(np.float32)
        info: dict[str, Any] = {"length": self._len}
        if options and "tag" in options:
            info["tag"] = options["tag"]
        return self._obs.copy(), info

    def step(self, action: Any) -> Any:
        self._t += 1
        push = np.concatenate([np.asarray(action, np.float32), np.float32([0.1])])
        self._obs = np.clip(self._obs + push, -10, 10).astype(np.float32)
        ended = self._t >= self._len
        info: dict[str, Any] = {}
        if self._t % 2 == 0:
            info["t"] = self._t
            info["x"] = np.float32(self._t / 3)
        if self._t % 3 == 0:
            info["name"] = f"step {self._t}"
            info["nested"] = {"k": float(self._t), "odd": bool(self._t % 2)}
            info["arr"] = np.arange(2, dtype=np.int16) + self._t
        return (
            self._obs.copy(),
            float(np.sum(action)),
            ended and self._len % 2 == 0,
            ended and self._len % 2 == 1,
            info,
        )


class SlowEnv(TrivialEnv):
    def step(self, action: Any) -> Any:
        time.sleep(0.15)
        return super().step(action)


class FaultyEnv(TrivialEnv):
    def step(self, action: Any) -> Any:
        if action == 1:
            raise ValueError("the simulator diverged")
        return super().step(action)


def cartpole() -> gym.Env[Any, Any]:
    return gym.make("CartPole-v1")


def pendulum() -> gym.Env[Any, Any]:
    return gym.make("Pendulum-v1", max_episode_steps=25)  # a Box action; truncation autoresets


MAKERS: dict[str, Callable[[], gym.Env[Any, Any]]] = {
    "CartPole": cartpole,
    "Pendulum": pendulum,
    "Info": InfoEnv,
}
MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED]


# -- comparing -----------------------------------------------------------------------------------


def same(a: Any, b: Any, path: str = "") -> None:
    """Assert a == b exactly: type, dtype, shape, bytes (object arrays element by element)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), f"{path}: {a!r} != {b!r}"
        assert a.dtype == b.dtype, f"{path}: dtype {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"{path}: shape {a.shape} != {b.shape}"
        if a.dtype == object:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                same(x, y, f"{path}[{i}]")
        else:
            assert a.tobytes() == b.tobytes(), f"{path}: {a} != {b}"
    elif isinstance(a, np.generic):
        assert type(a) is type(b) and a.tobytes() == b.tobytes(), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
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


def rollout(env: VectorEnv, actions: list[Any], seed: int, mode: AutoresetMode) -> list[Any]:
    """Seeded episodes with the given actions; a partial reset with per-sub-env seeds midway.
    With autoreset disabled, the sub-envs that ended are reset (reset_mask) after each step."""
    n = env.num_envs
    trace: list[Any] = [("reset", *env.reset(seed=seed))]
    for t, action in enumerate(actions):
        trace.append(("step", *env.step(action)))
        done = np.logical_or(trace[-1][3], trace[-1][4])
        if mode is AutoresetMode.DISABLED and done.any():
            trace.append(("reset", *env.reset(options={"reset_mask": done})))
        if t == len(actions) // 2:
            mask = np.arange(n) % 2 == 0
            seeds = [seed + 100 + i if i % 3 else None for i in range(n)]
            trace.append(("reset", *env.reset(seed=seeds, options={"reset_mask": mask, "tag": "midway"})))
    return trace


def expected(makers: list[Callable[[], Any]], mode: AutoresetMode, steps: int, seed: int) -> tuple[Any, Any]:
    """The in-process reference: SyncVectorEnv's trace and the actions it sampled."""
    ref = SyncVectorEnv(makers, autoreset_mode=mode)
    ref.action_space.seed(seed)
    actions = [ref.action_space.sample() for _ in range(steps)]
    trace = rollout(ref, actions, seed, mode)
    ref.close()
    ends = sum(int(np.logical_or(item[3], item[4]).sum()) for item in trace if item[0] == "step")
    assert ends >= 2, "the rollout must cross episode ends, so that autoresets are compared too"
    return trace, actions


# -- env sides -----------------------------------------------------------------------------------


@contextmanager
def served(
    stack: ExitStack, make: Callable[[], Any], address: str, n: int, mode: AutoresetMode
) -> Iterator[str]:
    """One env side at ``address``: a plain env (n == 0) or a SyncVectorEnv of n (n >= 1)."""
    if n == 0:
        server = rlay.serve(make, address, block=False)
    else:
        server = serve_vector(lambda: SyncVectorEnv([make] * n, autoreset_mode=mode), address, block=False)
    stack.callback(server.close)
    yield server.address


def addresses(
    stack: ExitStack,
    make: Callable[[], Any],
    layout: list[int],
    mode: AutoresetMode,
    sock_dir: str,
    tag: str = "",
) -> list[str]:
    out = []
    for i, n in enumerate(layout):
        address = "tcp://127.0.0.1:0" if i % 2 else f"unix://{sock_dir}/{tag}side{i}.sock"
        out.append(stack.enter_context(served(stack, make, address, n, mode)))
    return out


def sub_envs(layout: list[int]) -> int:
    return sum(max(n, 1) for n in layout)


# -- equivalence with SyncVectorEnv ---------------------------------------------------------------


@pytest.mark.parametrize("env_name", list(MAKERS))
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_one_batched_env_side_equals_sync_vector_env(
    env_name: str, mode: AutoresetMode, address: str
) -> None:
    make = MAKERS[env_name]
    want, actions = expected([make] * 4, mode, steps=60, seed=11)
    with ExitStack() as stack:
        side = stack.enter_context(served(stack, make, address, 4, mode))
        env = ClientVectorEnv(side)
        stack.callback(env.close)
        assert env.num_envs == 4 and env.metadata["autoreset_mode"] is mode
        assert env.single_observation_space == make().observation_space
        assert env.observation_space == batch_space(env.single_observation_space, 4)
        assert env.action_space == batch_space(env.single_action_space, 4)
        got = rollout(env, actions, 11, mode)
    same(got, want)


@pytest.mark.parametrize("env_name", list(MAKERS))
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_many_single_env_sides_equal_sync_vector_env(
    env_name: str, mode: AutoresetMode, sock_dir: str
) -> None:
    """Plain env sides (rlay.serve): this side does the autoreset, in every Gymnasium mode."""
    make = MAKERS[env_name]
    want, actions = expected([make] * 3, mode, steps=60, seed=5)
    with ExitStack() as stack:
        env = ClientVectorEnv(addresses(stack, make, [0, 0, 0], mode, sock_dir), autoreset_mode=mode)
        stack.callback(env.close)
        assert env.metadata["autoreset_mode"] is mode
        got = rollout(env, actions, 5, mode)
    same(got, want)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP], ids=lambda m: m.name)
def test_batches_and_single_env_sides_mixed(mode: AutoresetMode, sock_dir: str) -> None:
    """Sub-envs of [a batch of 3, a plain env, a batch of 2, a vector env of 1] are concatenated;
    their vector infos and masks are merged exactly as SyncVectorEnv builds them."""
    layout = [3, 0, 2, 1]
    want, actions = expected([InfoEnv] * sub_envs(layout), mode, steps=50, seed=21)
    with ExitStack() as stack:
        env = ClientVectorEnv(addresses(stack, InfoEnv, layout, mode, sock_dir))
        stack.callback(env.close)
        assert env.num_envs == 7
        got = rollout(env, actions, 21, mode)
    same(got, want)


def test_server_vector_env_with_env_sides_in_subprocesses(address: str) -> None:
    """Two env programs dial in: a SyncVectorEnv of 2 and a plain CartPole. Sub-envs are placed in
    the order they connected; the seeds are by position, so the result equals SyncVectorEnv(3)."""
    want, actions = expected([cartpole] * 3, AutoresetMode.NEXT_STEP, steps=80, seed=3)
    env = ServerVectorEnv(address, num_connections=2, wait=False)
    assert env.addresses == [env.address, env.address], "both env sides dial the one address"
    batch = (
        "import sys, gymnasium as gym; from rlay.backends.vector import connect_vector; "
        "connect_vector(lambda: gym.vector.SyncVectorEnv([lambda: gym.make('CartPole-v1')] * 2), sys.argv[1])"
    )
    single = "import sys, gymnasium as gym, rlay; rlay.connect(lambda: gym.make('CartPole-v1'), sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, env.address], cwd=ROOT) for code in (batch, single)
    ]
    try:
        env.accept(timeout=60)
        assert env.num_envs == 3
        got = rollout(env, actions, 3, AutoresetMode.NEXT_STEP)
        same(got, want)
    finally:
        env.close()
        codes = [p.wait(20) for p in procs]
    assert codes == [0, 0]  # both env programs ended by themselves once the agent side closed


def test_connections_step_concurrently() -> None:
    """Four env sides that take 0.15 s per step: one vector step takes about 0.15 s, not 0.6 s."""
    server = rlay.serve(SlowEnv, "tcp://127.0.0.1:0", block=False)
    env = ClientVectorEnv([server.address] * 4)
    try:
        env.reset(seed=0)
        started = time.monotonic()
        env.step(np.zeros(4, np.int64))
        assert time.monotonic() - started < 0.45
        env.step_async(np.ones(4, np.int64))
        started = time.monotonic()
        _, rewards, *_ = env.step_wait()
        assert time.monotonic() - started < 0.45 and rewards.tolist() == [1.0] * 4
    finally:
        env.close()
        server.close()


# -- Gymnasium vector checks ---------------------------------------------------------------------


def check_vector_info(info: dict[str, Any], n: int) -> None:
    """Gymnasium's vector info: each key an array of n entries (or a nested vector info) and
    ``_key`` a bool mask of shape (n,)."""
    for key, value in info.items():
        if key.startswith("_") and key[1:] in info:
            continue
        mask = info[f"_{key}"]
        assert isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == (n,), key
        if isinstance(value, dict):
            check_vector_info(value, n)
        else:
            assert isinstance(value, np.ndarray) and len(value) == n, key


def check_vector_env(env: VectorEnv, seed: int = 0) -> None:
    """What gymnasium.utils.env_checker checks for an env, for a vector env."""
    n = env.num_envs
    assert isinstance(env, VectorEnv) and n >= 1
    assert env.observation_space == batch_space(env.single_observation_space, n)
    assert env.action_space == batch_space(env.single_action_space, n)
    assert isinstance(env.metadata["autoreset_mode"], AutoresetMode)
    obs, info = env.reset(seed=seed)
    assert obs in env.observation_space and isinstance(info, dict)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(30)]
    first = []
    for action in actions:
        obs, rewards, terminations, truncations, info = env.step(action)
        assert obs in env.observation_space and obs.flags.writeable
        assert rewards.dtype == np.float64 and rewards.shape == (n,)
        for flags in (terminations, truncations):
            assert flags.dtype == np.bool_ and flags.shape == (n,)
        check_vector_info(info, n)
        first.append((obs, rewards, terminations, truncations))
    # Seeding is deterministic: the same seed and actions give the same results.
    obs2, _ = env.reset(seed=seed)
    again = [env.step(action)[:4] for action in actions]
    same(again, first)
    obs3, _ = env.reset(seed=seed + 1)
    assert not np.array_equal(obs2, obs3)


def test_vector_checks_pass(sock_dir: str) -> None:
    with ExitStack() as stack:
        for k, layout in enumerate(([5], [0, 0], [2, 0, 3])):
            env = ClientVectorEnv(
                addresses(stack, cartpole, layout, AutoresetMode.NEXT_STEP, sock_dir, f"l{k}")
            )
            stack.callback(env.close)
            check_vector_env(env)
            env.close()
        env = ServerVectorEnv(f"unix://{sock_dir}/server.sock", wait=False)
        stack.callback(env.close)
        thread = threading.Thread(
            target=connect_vector, args=(lambda: SyncVectorEnv([InfoEnv] * 3), env.address), daemon=True
        )
        thread.start()
        check_vector_env(env)  # reading the spaces waits for the env side (wait=False)
        env.close()
        thread.join(10)
        assert not thread.is_alive()


def test_copy_false_returns_read_only_views_of_the_same_values(address: str) -> None:
    server = serve_vector(lambda: SyncVectorEnv([cartpole] * 3), address, block=False)
    views, copies = ClientVectorEnv(server.address, copy=False), ClientVectorEnv(server.address)
    try:
        for env in (views, copies):
            env.reset(seed=9)
        for _ in range(3):
            a, b = views.step(np.ones(3, np.int64)), copies.step(np.ones(3, np.int64))
            same(a, b)
            assert not a[0].flags.writeable and b[0].flags.writeable
    finally:
        views.close()
        copies.close()
        server.close()


_PYGAME = threading.Lock()


class _OneRendererAtATime(gym.Wrapper[Any, Any, Any, Any]):
    """pygame is not thread-safe, and both env sides of this test render in this process."""

    def render(self) -> Any:
        with _PYGAME:
            return self.env.render()


def test_render_and_call(sock_dir: str) -> None:
    def make() -> gym.Env[Any, Any]:
        return _OneRendererAtATime(gym.make("CartPole-v1", render_mode="rgb_array"))

    ref = SyncVectorEnv([make] * 3)
    ref.reset(seed=4)
    want = ref.render()
    ref.close()
    batch = serve_vector(
        lambda: SyncVectorEnv([make] * 2),
        f"unix://{sock_dir}/b.sock",
        block=False,
        calls={"gravity": lambda venv, scale=1.0: [g * scale for g in venv.get_attr("gravity")]},
    )
    single = rlay.serve(
        make,
        "tcp://127.0.0.1:0",
        block=False,
        calls={"gravity": lambda env, scale=1.0: env.unwrapped.gravity * scale},
    )
    env = ClientVectorEnv([batch.address, single.address], render_mode="rgb_array")
    try:
        env.reset(seed=4)
        frames = env.render()
        assert frames is not None and len(frames) == 3 and frames[0].shape == (400, 600, 3)
        same(frames, want)
        assert env.call("gravity", scale=2.0) == (19.6, 19.6, 19.6)
    finally:
        env.close()
        batch.close()
        single.close()


def test_loop_style_env_session_hosting_a_batch(address: str) -> None:
    """A game with three agents, its own loop: EnvSession(num_envs=3) answers batched values."""
    single_obs = Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    single_act = gym.spaces.Discrete(3)
    listener = listen(address)
    errors: list[BaseException] = []

    def game() -> None:
        try:
            session = rlay.EnvSession(listener.accept(10), single_obs, single_act, num_envs=3)
            pos = np.zeros((3, 2), np.float32)
            while (cmd := session.poll(10)) is not None and cmd.kind != "close":
                if cmd.kind == "reset":
                    pos[:] = 0
                    session.reply_reset(pos, {})
                elif cmd.kind == "step":
                    with pytest.raises(UsageError, match=r"reward: expected an array of 3 numbers"):
                        session.reply_step(pos, 1.0, [False] * 3, [False] * 3)
                    pos[:, 0] += (np.asarray(cmd.action) - 1) * 0.25
                    session.reply_step(pos, pos[:, 0] * 2, pos[:, 0] >= 0.5, np.zeros(3, bool), {})
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=game, daemon=True)
    thread.start()
    env = ClientVectorEnv(str(listener.address))
    try:
        assert env.num_envs == 3 and env.action_space == gym.spaces.MultiDiscrete([3, 3, 3])
        env.reset()
        obs, rewards, terminations, _, _ = env.step(np.array([2, 1, 2]))
        obs, rewards, terminations, _, _ = env.step(np.array([2, 0, 2]))
        assert obs[:, 0].tolist() == [0.5, -0.25, 0.5] and rewards.tolist() == [1.0, -0.5, 1.0]
        assert terminations.tolist() == [True, False, True]
    finally:
        env.close()
        thread.join(10)
        listener.close()
    assert not errors, errors


# -- bad input -----------------------------------------------------------------------------------


def test_bad_input_is_refused_before_anything_is_sent(sock_dir: str) -> None:
    with ExitStack() as stack:
        env = ClientVectorEnv(addresses(stack, TrivialEnv, [2, 0], AutoresetMode.NEXT_STEP, sock_dir))
        stack.callback(env.close)
        with pytest.raises(UsageError, match=r"call reset\(\) before step\(\)"):
            env.step(np.zeros(3, np.int64))
        with pytest.raises(UsageError, match="seed: expected 3 seeds"):
            env.reset(seed=[1, 2])
        with pytest.raises(UsageError, match=r"seed\[1\]: expected an int or None, actual str"):
            env.reset(seed=[1, "2", 3])
        with pytest.raises(UsageError, match="options must be a dict"):
            env.reset(options=[1])  # type: ignore[arg-type]
        with pytest.raises(
            UsageError, match=r"reset_mask'\]: expected a bool array of shape \(3,\), actual int64"
        ):
            env.reset(options={"reset_mask": np.ones(3, np.int64)})
        with pytest.raises(UsageError, match=r"shape \(3,\), actual bool array of shape \(2,\)"):
            env.reset(options={"reset_mask": np.ones(2, bool)})
        with pytest.raises(UsageError, match="at least one True"):
            env.reset(options={"reset_mask": np.zeros(3, bool)})
        env.reset(seed=0)
        with pytest.raises(
            InvalidSubEnvAction,
            match=r"sub-env 2: action (np\.int64\()?5\)? is not in the action space Discrete\(2\)",
        ) as info:
            env.step(np.array([0, 1, 5]))
        assert info.value.index == 2
        with pytest.raises(rlay.InvalidAction, match="is not in the action space MultiDiscrete"):
            env.step(np.zeros(4, np.int64))
        env.step_async(np.array([0, 1, 1]))
        with pytest.raises(UsageError, match=r"call step_wait\(\) before anything else"):
            env.step(np.zeros(3, np.int64))
        env.step_wait()
        with pytest.raises(UsageError, match=r"step_wait\(\) needs a step_async\(\) first"):
            env.step_wait()
        obs, rewards, *_ = env.step([1, 0, 1])  # still usable; a list is a batch too
        assert obs.shape == (3, 4) and rewards.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(UsageError, match="at least one address"):
        ClientVectorEnv([])
    with pytest.raises(UsageError, match="num_connections must be an int >= 1"):
        ServerVectorEnv(num_connections=0)
    with pytest.raises(UsageError, match="autoreset_mode: expected an AutoresetMode or one of"):
        ClientVectorEnv("tcp://127.0.0.1:1", autoreset_mode="sometimes")


def test_disabled_autoreset_refuses_to_step_an_ended_sub_env() -> None:
    server = rlay.serve(lambda: TrivialEnv(episode_length=2), "tcp://127.0.0.1:0", block=False)
    env = ClientVectorEnv([server.address] * 2, autoreset_mode="disabled")
    try:
        env.reset(seed=0)
        env.step(np.zeros(2, np.int64))
        _, _, _, truncations, _ = env.step(np.zeros(2, np.int64))
        assert truncations.tolist() == [True, True]
        with pytest.raises(UsageError, match="sub-env 0 ended its episode and autoreset_mode is disabled"):
            env.step(np.zeros(2, np.int64))
        env.reset(options={"reset_mask": np.array([True, True])})
        env.step(np.zeros(2, np.int64))
    finally:
        env.close()
        server.close()


def test_disabled_autoreset_is_checked_here_for_a_batch_too(address: str) -> None:
    make = lambda: TrivialEnv(episode_length=1)  # noqa: E731
    server = serve_vector(lambda: SyncVectorEnv([make] * 2, autoreset_mode="Disabled"), address, block=False)
    env = ClientVectorEnv(server.address)
    try:
        assert env.metadata["autoreset_mode"] is AutoresetMode.DISABLED
        env.reset(seed=0)
        env.step(np.zeros(2, np.int64))
        with pytest.raises(UsageError, match="sub-env 0 ended its episode and autoreset_mode is disabled"):
            env.step(np.zeros(2, np.int64))  # refused here, not an AssertionError on the env side
        env.reset(options={"reset_mask": np.array([True, True])})
        env.step(np.zeros(2, np.int64))
    finally:
        env.close()
        server.close()


def test_env_sides_that_disagree_are_refused_naming_the_odd_one(sock_dir: str) -> None:
    with ExitStack() as stack:
        cart = addresses(stack, cartpole, [0], AutoresetMode.NEXT_STEP, sock_dir)[0]
        info_side = stack.enter_context(
            served(stack, InfoEnv, "tcp://127.0.0.1:0", 0, AutoresetMode.NEXT_STEP)
        )
        with pytest.raises(
            UsageError, match=r"env side 1 \(tcp://127.0.0.1:\d+\) has the observation space Box"
        ):
            ClientVectorEnv([cart, info_side])
        same_step = stack.enter_context(
            served(stack, cartpole, "tcp://127.0.0.1:0", 2, AutoresetMode.SAME_STEP)
        )
        with pytest.raises(
            UsageError, match=r"env side 1 .* autoresets its sub-envs in mode 'same_step'.* 'next_step'"
        ):
            ClientVectorEnv([cart, same_step], autoreset_mode="next_step")
        with pytest.raises(UsageError, match=r"render_mode='rgb_array' was asked for, but env side 0"):
            ClientVectorEnv([cart], render_mode="rgb_array")
    with pytest.raises(UsageError, match=r"expected a gymnasium\.vector\.VectorEnv"):
        serve_vector(TrivialEnv(), "tcp://127.0.0.1:0", block=False)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="num_envs must be an int >= 1"):
        rlay.EnvSession(None, Box(0, 1), Box(0, 1), num_envs=0)  # type: ignore[arg-type]


# -- failures: one env side fails, all close, the error names it ---------------------------------


def recording_env_side(listener: Any, log: list[str]) -> threading.Thread:
    """A loop-style TrivialEnv that records the commands it gets and how its session ended."""

    def run() -> None:
        env = TrivialEnv()
        try:
            session = rlay.EnvSession(listener.accept(10), env.observation_space, env.action_space)
            while True:
                cmd = session.poll(10)
                if cmd is None:
                    log.append("silence")
                    return
                log.append(cmd.kind)
                if cmd.kind == "close":
                    return
                if cmd.kind == "reset":
                    session.reply_reset(*env.reset(seed=cmd.seed))  # type: ignore[arg-type]
                elif cmd.kind == "step":
                    session.reply_step(*env.step(cmd.action))
        except ConnectionClosed:
            log.append("vanished")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


SERVE_SCRIPT = """
import sys, rlay
from rlay.testing import TrivialEnv
server = rlay.Server(TrivialEnv, sys.argv[1])
print("RLAY_LISTENING", server.address, flush=True)
server.serve_forever()
"""


def test_killed_env_process_is_named_and_the_others_close_cleanly(sock_dir: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, f"unix://{sock_dir}/proc.sock"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    listeners = [listen("tcp://127.0.0.1:0"), listen(f"unix://{sock_dir}/rec.sock")]
    logs: list[list[str]] = [[], []]
    threads = [recording_env_side(lst, log) for lst, log in zip(listeners, logs, strict=True)]
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("RLAY_LISTENING "), line
        killed = line.split()[1]
        env = ClientVectorEnv([str(listeners[0].address), killed, str(listeners[1].address)], timeout=10)
        env.reset(seed=0)
        env.step(np.zeros(3, np.int64))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        started = time.monotonic()
        with pytest.raises(EnvSideFailed) as info:
            env.step(np.zeros(3, np.int64))
        assert time.monotonic() - started < 5
        err = info.value
        assert err.index == 1 and err.address == killed and err.sub_envs == range(1, 2)
        assert isinstance(err.cause, ConnectionClosed) and err.__cause__ is err.cause
        # Whether the kill is noticed when sending STEP or when waiting for its reply depends on timing.
        assert re.match(
            rf"env side 1 \({re.escape(killed)}, sub-env 1\) failed "
            r"while (sending|waiting for the reply to) STEP",
            str(err),
        ), err
        assert "every connection of the vector env is closed" in str(err)
        for thread in threads:
            thread.join(10)
        # The others answered the STEP they had been sent (drained), then got a CLOSE: a clean end,
        # not a vanishing.
        assert logs[0] == ["reset", "step", "step", "close"], logs
        assert logs[1] in (["reset", "step", "step", "close"], ["reset", "step", "close"]), logs
        with pytest.raises(ConnectionClosed, match=r"the vector env is closed .*env side 1"):
            env.reset()
        env.close()  # idempotent
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        for lst in listeners:
            lst.close()


def test_exception_in_one_batch_is_named_with_its_remote_traceback(sock_dir: str) -> None:
    good = serve_vector(lambda: SyncVectorEnv([TrivialEnv] * 2), "tcp://127.0.0.1:0", block=False)
    bad = serve_vector(lambda: SyncVectorEnv([FaultyEnv] * 2), f"unix://{sock_dir}/bad.sock", block=False)
    env = ClientVectorEnv([good.address, bad.address])
    try:
        env.reset(seed=0)
        env.step(np.zeros(4, np.int64))
        with pytest.raises(
            EnvSideFailed, match=r"env side 1 \(unix://.*bad.sock, sub-envs 2-3\) failed"
        ) as info:
            env.step(np.array([0, 0, 0, 1]))
        cause = info.value.cause
        assert isinstance(cause, RemoteError) and cause.code == ErrorCode.ENV_EXCEPTION
        assert cause.remote_type == "ValueError" and "the simulator diverged" in str(info.value)
        assert "raise ValueError" in (cause.traceback or "")
        with pytest.raises(ConnectionClosed):
            env.step(np.zeros(4, np.int64))
    finally:
        env.close()
        good.close()
        bad.close()


def test_silent_env_side_times_out_naming_it(address: str) -> None:
    server = rlay.serve(TrivialEnv, "tcp://127.0.0.1:0", block=False)
    listener = listen(address)
    release = threading.Event()

    def frozen() -> None:
        env = TrivialEnv()
        session = rlay.EnvSession(listener.accept(10), env.observation_space, env.action_space)
        cmd = session.poll(10)
        assert cmd is not None
        session.reply_reset(*env.reset(seed=cmd.seed))  # type: ignore[arg-type]
        session.poll(10)  # the step: never answered
        release.wait(10)
        session.close()

    thread = threading.Thread(target=frozen, daemon=True)
    thread.start()
    env = ClientVectorEnv([server.address, str(listener.address)], timeout=0.3)
    try:
        env.reset()
        with pytest.raises(
            EnvSideFailed, match=r"env side 1 .* waiting for the reply to STEP: timed out after 0\.3 s"
        ) as info:
            env.step(np.zeros(2, np.int64))
        assert isinstance(info.value.cause, Timeout)
    finally:
        release.set()
        env.close()
        thread.join(10)
        listener.close()
        server.close()


def test_unreachable_env_side_is_named_and_the_reached_ones_closed() -> None:
    listener = listen("tcp://127.0.0.1:0")
    log: list[str] = []
    thread = recording_env_side(listener, log)
    nobody = listen("tcp://127.0.0.1:0")
    gone = str(nobody.address)
    nobody.close()
    with pytest.raises(
        EnvSideFailed, match=rf"env side 1 \({gone}\) failed while connecting: cannot connect"
    ) as info:
        ClientVectorEnv([str(listener.address), gone], connect_timeout=2)
    assert info.value.sub_envs is None and isinstance(info.value.cause, ConnectionClosed)
    thread.join(10)
    assert log == ["close"]
    listener.close()
    with pytest.raises(
        EnvSideFailed, match=r"env side 0 \(tcp://.*\) failed while connecting: timed out after 0.2 s"
    ):
        ServerVectorEnv(accept_timeout=0.2)


def test_env_side_breaking_section_10_gets_a_fatal_error(address: str) -> None:
    """A batch answering a scalar reward breaks §10: named, and the env side is told why."""
    listener = listen(address)
    single_obs, single_act = Box(-1.0, 1.0, shape=(4,), dtype=np.float32), gym.spaces.Discrete(2)
    received: list[Any] = []

    def fake() -> None:
        stream = listener.accept(10)
        conn = Connection(Role.ENV)

        def receive() -> Any:
            while (event := conn.next_event()) is None:
                data = stream.recv(5)
                if not data:
                    return None
                conn.receive_data(data)
            return event

        def send(message: Any) -> None:
            conn.send(message)
            stream.send(conn.data_to_send())

        stream.send(conn.data_to_send())
        receive()  # HELLO
        send(EnvInfo(describe(single_obs), describe(single_act), 2, {"render_modes": []}, None, "fake"))
        receive()  # RESET
        send(ResetResult(np.zeros((2, 4), np.float32), {}))
        receive()  # STEP
        send(StepResult(np.zeros((2, 4), np.float32), 1.0, np.zeros(2, bool), np.zeros(2, bool), {}))
        try:
            received.append(receive())
        except ProtocolError as exc:  # pragma: no cover - what a broken agent side would cause
            received.append(exc)
        stream.close()

    thread = threading.Thread(target=fake, daemon=True)
    thread.start()
    env = ClientVectorEnv(str(listener.address))
    try:
        env.reset()
        with pytest.raises(
            EnvSideFailed, match=r"STEP_RESULT.reward of a batch of 2 sub-envs must be a float64 tensor"
        ):
            env.step(np.zeros(2, np.int64))
    finally:
        env.close()
        thread.join(10)
        listener.close()
    assert len(received) == 1 and type(received[0]) is Error
    assert received[0].code == ErrorCode.BAD_FIELD and received[0].fatal and "reward" in received[0].message


def test_env_side_rejects_a_seed_array_of_the_wrong_length(address: str) -> None:
    """§10 on the env side: RESET.seed as an array must hold one seed per sub-env (BAD_FIELD)."""
    server = serve_vector(lambda: SyncVectorEnv([TrivialEnv] * 3), address, block=False)
    try:
        session = rlay.envs._session.AgentSession(
            rlay.transports.dial(server.address, 5), handshake_timeout=5, timeout=5
        )
        from rlay.protocol.messages import Reset

        with pytest.raises(
            RemoteError, match=r"RESET\.seed is an array of 2 seeds; expected one per sub-env"
        ) as info:
            session.request(Reset([1, 2], None), "RESET")
        assert info.value.code == ErrorCode.BAD_FIELD and info.value.fatal
        session.close()
    finally:
        server.close()


# -- the batch step templates: exactly the general encoder's bytes --------------------------------


def general_frame(message: Any) -> bytes:
    body, chunks, data_len = Encoder().encode(message.to_body())
    return pack_header(message.KIND, data_len, len(body)) + b"".join(bytes(c) for c in chunks) + body


@pytest.mark.parametrize(
    ("dtype", "shape", "n"),
    [
        ("float32", (4,), 2),
        ("float64", (3,), 7),
        ("uint8", (5, 5, 3), 3),
        ("int64", (), 64),
        ("int16", (2, 3), 1),
    ],
)
def test_batch_result_template_is_the_canonical_encoding(dtype: str, shape: tuple[int, ...], n: int) -> None:
    tensor = TensorTemplate.create(dtype, (n, *shape))
    assert tensor is not None
    template = BatchResultTemplate(tensor, n)
    rng = np.random.default_rng(n)
    obs = (rng.random((n, *shape)) * 100).astype(dtype)
    message = StepResult(obs, rng.normal(size=n), rng.random(n) < 0.5, rng.random(n) < 0.5, {})
    buffers = template.encode(message)
    assert buffers is not None
    frame = b"".join(bytes(memoryview(b)) for b in buffers)
    assert frame == general_frame(message)
    reader = FrameReader(1 << 20)
    reader.feed(frame)
    _, data, body = reader.frames.popleft()
    decoded = template.decode(data, body)
    assert decoded == message and decoded == StepResult.from_body(decode(body, data))
    assert not decoded.reward.flags.writeable and not decoded.obs.flags.writeable
    # Anything but the canonical empty-info reply is left to the general path (and its errors).
    assert (
        template.encode(StepResult(obs, message.reward, message.terminated, message.truncated, {"a": 1}))
        is None
    )
    assert (
        template.encode(StepResult(obs, message.reward.astype(np.float32), *[message.terminated] * 2, {}))
        is None
    )
    assert (
        template.encode(
            StepResult(
                np.zeros((n + 1, *shape), dtype), message.reward, message.terminated, message.truncated, {}
            )
        )
        is None
    )
    bad = bytearray(data)
    bad[template.term_at] = 2
    assert template.decode(memoryview(bytes(bad)), body) is None
    with pytest.raises(ProtocolError, match="bool tensor holds a byte other than 0 or 1"):
        decode(body, bytes(bad))


def test_a_seed_past_u64_for_the_last_sub_env_is_refused_here() -> None:
    """§10: sub-env i gets seed + i; one that would pass 2**64 - 1 is the caller's error, named
    before anything is sent (the env side would answer a fatal BAD_FIELD)."""
    make = lambda: gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 3)  # noqa: E731
    server = serve_vector(make, "tcp://127.0.0.1:0", block=False)
    env = ClientVectorEnv(server.address)
    try:
        with pytest.raises(UsageError, match=r"seed \+ i"):
            env.reset(seed=2**64 - 2)
        with pytest.raises(UsageError, match=r"seed\[1\]"):
            env.reset(seed=[0, -1, None])
        obs, _ = env.reset(seed=2**64 - 3)  # the last sub-env gets 2**64 - 1: fine
        assert obs.shape == (3, 4)
    finally:
        env.close()
        server.close()
