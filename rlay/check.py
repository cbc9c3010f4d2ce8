"""``rlay check``: is an env side a good Gymnasium env? As a library::

    from rlay.check import open_env_side, run_checks
    env = open_env_side(launch=["./cartpole", "--listen", "{address}"])   # or an address
    report = run_checks(env)            # prints a line per check; env is closed afterwards
    assert report.ok, report

An env side hosting one env is checked as a ``gymnasium.Env`` (Gymnasium's ``check_env`` among
the checks); one hosting a batch of sub-envs (spec §10, ``num_envs > 1``) as a vector env. Each
check runs even when an earlier one failed; a failure says what was expected and what came.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from rlay.envs._endpoints import Endpoints
from rlay.envs._session import AgentSession
from rlay.envs.single import DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_TIMEOUT, ClientEnv, ServerEnv
from rlay.envs.vector import ClientVectorEnv, ServerVectorEnv
from rlay.errors import RemoteError, RlayError
from rlay.progress import progress
from rlay.protocol.wire import ErrorCode

__all__ = ["CheckReport", "open_env_side", "run_checks"]

AnyEnv = ClientEnv | ServerEnv | ClientVectorEnv | ServerVectorEnv


@dataclass
class CheckReport:
    results: list[tuple[str, bool, str]] = field(default_factory=list)  # (check, passed, detail)

    @property
    def failed(self) -> int:
        return sum(1 for _, ok, _ in self.results if not ok)

    @property
    def passed(self) -> int:
        return len(self.results) - self.failed

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def __str__(self) -> str:
        lines = [
            f"  {'ok  ' if ok else 'FAIL'}  {name}" + (f": {detail}" if detail else "")
            for name, ok, detail in self.results
        ]
        return "\n".join([*lines, f"{self.passed} passed, {self.failed} failed"])

    def run(self, name: str, check: Callable[[], str | None], out: Callable[[str], None] | None) -> bool:
        try:
            detail = check() or ""
            ok = True
        except Exception as exc:  # a check failed: say how, go on with the next
            text = str(exc).splitlines() or [type(exc).__name__]
            detail = f"{type(exc).__name__}: {text[0]}" + "".join(f"\n          {t}" for t in text[1:8])
            if not isinstance(exc, (RlayError, AssertionError)):
                detail += "\n          " + "".join(traceback.format_tb(exc.__traceback__)[-1:]).strip()
            ok = False
        self.results.append((name, ok, detail))
        if out is not None:
            out(f"  {'ok  ' if ok else 'FAIL'}  {name}" + (f": {detail}" if detail else ""))
        return ok


def open_env_side(
    address: str | None = None,
    *,
    launch: Sequence[str] | None = None,
    server: bool = False,
    timeout: float | None = 30.0,
    token: str | bytes | None = None,
    **options: Any,
) -> AnyEnv:
    """Connect to an env side (dial ``address``; with ``server=True`` listen there; with
    ``launch`` start the program) and return the env for what it hosts: ``ClientEnv`` /
    ``ServerEnv`` for one env, ``ClientVectorEnv`` / ``ServerVectorEnv`` for a batch."""
    mode = "listen" if server else "dial"
    endpoints = Endpoints(mode, address, launch=launch, token=token, who="rlay check")
    try:
        _, stream = endpoints.connect(0, timeout)
        session = AgentSession(
            stream,
            handshake_timeout=options.get("handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT),
            timeout=options.get("timeout", DEFAULT_TIMEOUT),
            token=endpoints.token,
            auth_required=endpoints.auth_required,
        )
    except BaseException:
        endpoints.close()
        raise
    if session.info.num_envs == 1:
        single = ServerEnv if server else ClientEnv
        return single.from_session(session, endpoints, **options)  # type: ignore[no-any-return]
    vector = ServerVectorEnv if server else ClientVectorEnv
    return vector.from_session(session, endpoints, **options)  # type: ignore[no-any-return]


def run_checks(
    env: AnyEnv,
    *,
    steps: int = 300,
    seed: int = 123,
    out: Callable[[str], None] | None = print,
    show_progress: bool | None = False,
) -> CheckReport:
    """Run every check against ``env`` (then close it); ``out`` gets a line per check.
    ``show_progress``: a bar over the checks on stderr (None: if it is a terminal)."""
    report = CheckReport()
    vector = isinstance(env, (ClientVectorEnv, ServerVectorEnv))
    checks = _vector_checks(env, steps, seed) if vector else _single_checks(env, steps, seed)  # type: ignore[arg-type]
    try:
        with progress(len(checks), "rlay check", unit="check", show=show_progress) as bar:
            write = bar.write if out is print else out  # lines above the bar, not through it
            for name, check in checks:
                bar.set_postfix_str(name)
                report.run(name, check, write)
                bar.update()
    finally:
        env.close()
    return report


def _single_checks(
    env: ClientEnv | ServerEnv, steps: int, seed: int
) -> list[tuple[str, Callable[[], str | None]]]:
    def spaces() -> str:
        return f"observation {env.observation_space}, action {env.action_space}"

    def checker() -> str:
        from gymnasium.utils.env_checker import check_env

        check_env(env, skip_render_check=True)
        return "gymnasium.utils.env_checker.check_env passed"

    def inside() -> str:
        obs, _ = env.reset(seed=seed)
        if obs not in env.observation_space:
            raise AssertionError(f"reset observation {obs!r:.200} is outside {env.observation_space}")
        env.action_space.seed(seed)
        episodes = 0
        for t in range(steps):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            if obs not in env.observation_space:
                raise AssertionError(f"step {t}: observation {obs!r:.200} is outside {env.observation_space}")
            if not np.isfinite(float(reward)):
                raise AssertionError(f"step {t}: reward {reward!r} is not finite")
            if terminated or truncated:
                episodes += 1
                env.reset()
        return f"{steps} random steps, {episodes} episodes ended"

    def determinism() -> str:
        traces = []
        for _ in range(2):
            env.action_space.seed(seed)
            obs, info = env.reset(seed=seed)
            trace: list[Any] = [obs, info]
            for _ in range(min(steps, 50)):
                out = env.step(env.action_space.sample())
                trace.append(out)
                if out[2] or out[3]:
                    break
            traces.append(trace)
        return _agree(traces, seed)

    def bad_command() -> str:
        _unknown_call(env)
        env._check_actions = False
        bad = _bad_action(env.action_space)
        try:
            if bad is not None:
                env.step(bad)
                raise AssertionError(f"the out-of-space action {bad!r} was accepted")
        except RemoteError as exc:
            if exc.code != ErrorCode.INVALID_ACTION or exc.fatal:
                raise AssertionError(f"expected a non-fatal INVALID_ACTION error, got {exc}") from None
        finally:
            env._check_actions = True
        env.reset(seed=seed)
        env.step(env.action_space.sample())
        return "unknown CALL -> NOT_SUPPORTED, bad action -> INVALID_ACTION, session still usable"

    return [
        ("spaces are valid Gymnasium spaces", spaces),
        ("check_env", checker),
        ("observations stay inside the observation space", inside),
        ("seeded determinism", determinism),
        ("render", lambda: _render(env.render_mode, env.render)),
        ("attributes (§19)", lambda: _attributes(env, vector=False)),
        ("errors for bad commands", bad_command),  # last: a refused CALL ends a vector env
    ]


def _vector_checks(
    env: ClientVectorEnv | ServerVectorEnv, steps: int, seed: int
) -> list[tuple[str, Callable[[], str | None]]]:
    n = env.num_envs

    def spaces() -> str:
        if env.observation_space != gym.vector.utils.batch_space(env.single_observation_space, n):
            raise AssertionError(f"observation_space {env.observation_space} is not the batch of {n}")
        return f"{n} sub-envs, observation {env.single_observation_space}, action {env.single_action_space}"

    def inside() -> str:
        obs, _ = env.reset(seed=seed)
        if obs not in env.observation_space:
            raise AssertionError(f"reset observations {obs!r:.200} are outside {env.observation_space}")
        env.action_space.seed(seed)
        ended = 0
        for t in range(steps):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            if obs not in env.observation_space:
                raise AssertionError(
                    f"step {t}: observations {obs!r:.200} are outside {env.observation_space}"
                )
            for name, value, dtype in (
                ("reward", reward, np.float64),
                ("terminated", terminated, np.bool_),
                ("truncated", truncated, np.bool_),
            ):
                if not (isinstance(value, np.ndarray) and value.shape == (n,) and value.dtype == dtype):
                    raise AssertionError(
                        f"step {t}: {name} must be a ({n},) {np.dtype(dtype)} array, got {value!r:.80}"
                    )
            if not np.all(np.isfinite(reward)):
                raise AssertionError(f"step {t}: rewards {reward!r} are not all finite")
            ended += int(np.sum(terminated | truncated))
        mode = env.autoreset_mode.value
        return f"{steps} random steps of {n} sub-envs, {ended} episodes ended (autoreset {mode})"

    def determinism() -> str:
        traces = []
        for _ in range(2):
            env.action_space.seed(seed)
            trace: list[Any] = [env.reset(seed=seed)[0]]
            for _ in range(min(steps, 50)):
                trace.append(env.step(env.action_space.sample())[:4])
            traces.append(trace)
        return _agree(traces, seed)

    def bad_command() -> str:
        _unknown_call(env)
        bad = _bad_action(env.single_action_space)
        if bad is not None:
            env._check_actions = False
            actions = env.action_space.sample()
            try:
                actions[n - 1] = bad
                env.step(actions)
                raise AssertionError(f"sub-env {n - 1}'s out-of-space action {bad!r} was accepted")
            except RlayError as exc:
                if str(n - 1) not in str(exc):
                    raise AssertionError(f"the refusal does not name sub-env {n - 1}: {exc}") from None
            finally:
                env._check_actions = True
        return "unknown CALL -> NOT_SUPPORTED, a bad action -> refused naming its sub-env"

    return [
        ("spaces are valid batched Gymnasium spaces", spaces),
        ("observations stay inside the observation space", inside),
        ("seeded determinism", determinism),
        ("render", lambda: _render(env.render_mode, env.render)),
        ("attributes (§19)", lambda: _attributes(env, vector=True)),
        ("errors for bad commands", bad_command),  # last: a refused CALL ends a vector env
    ]


def _attributes(env: Any, vector: bool) -> str:
    """§19: every attribute offered reads back a value of its type; each writable one takes its
    own value back; a value of the wrong type is refused with a non-fatal BAD_ATTRIBUTE and
    changes nothing."""
    table = env.attributes
    if not table:
        return "offers none (rlay.describe answered an empty table or NOT_SUPPORTED)"
    for name, attr in table.items():
        values = env.get_attr(name)
        if attr.writable:
            env.set_attr(name, list(values) if vector else values)
    name, attr = next(iter(table.items()))
    before = env.get_attr(name)
    wrong: Any = 0 if attr.type == "str" else "not a number"
    if vector:
        replies = env._call_each("rlay.set", [[name, wrong] for _ in env._links], ErrorCode.BAD_ATTRIBUTE)
    else:
        try:
            replies = [env.call("rlay.set", name, wrong)]
        except RemoteError as exc:
            replies = [exc]
    for reply in replies:
        if not (isinstance(reply, RemoteError) and reply.code == ErrorCode.BAD_ATTRIBUTE and not reply.fatal):
            raise AssertionError(
                f"rlay.set {name!r} {wrong!r} must be a non-fatal BAD_ATTRIBUTE, got {reply!r:.200}"
            )
    if env.get_attr(name) != before:
        raise AssertionError(f"attribute {name!r} changed after a refused rlay.set")
    listed = ", ".join(f"{n} ({a.type}{'' if a.writable else ', read-only'})" for n, a in table.items())
    return f"{len(table)} offered: {listed}; each read back and set, a wrong type refused"


def _unknown_call(env: Any) -> None:
    try:
        env.call("rlay-check-no-such-function")
    except RemoteError as exc:
        if exc.code != ErrorCode.NOT_SUPPORTED or exc.fatal:
            raise AssertionError(f"expected a non-fatal NOT_SUPPORTED error, got {exc}") from None
    except RlayError as exc:  # a vector env reports a sub-env's error reply through EnvSideFailed
        cause = getattr(exc, "cause", None)
        if not isinstance(cause, RemoteError) or cause.code != ErrorCode.NOT_SUPPORTED:
            raise AssertionError(f"expected a NOT_SUPPORTED error, got {exc}") from None
    else:
        raise AssertionError("an unknown CALL was answered with a result, not an error")


def _render(mode: str | None, render: Callable[[], Any]) -> str:
    if mode is None:
        return "no render mode (skipped)"
    frame = render()
    frames = frame if isinstance(frame, tuple) else (frame,)
    for f in frames:
        if mode == "rgb_array" and not (
            isinstance(f, np.ndarray) and f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3
        ):
            raise AssertionError(f"rgb_array frame must be uint8 (H, W, 3), got {f!r:.80}")
        if mode == "ansi" and not isinstance(f, str):
            raise AssertionError(f"ansi frame must be a str, got {type(f).__name__}")
    shape = f" {frames[0].shape}" if mode == "rgb_array" else ""
    return f"{len(frames)} {mode} frame{'s' if len(frames) > 1 else ''}{shape}"


def _agree(traces: list[list[Any]], seed: int) -> str:
    for i, (a, b) in enumerate(zip(*traces, strict=False)):
        if not _same(a, b):
            raise AssertionError(f"two runs with seed {seed} differ at step {i}: {a!r:.120} vs {b!r:.120}")
    return f"two runs with seed {seed} agree over {len(traces[0]) - 1} steps"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, (np.ndarray, np.generic)) or isinstance(b, (np.ndarray, np.generic)):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return bool(a == b)


def _bad_action(space: gym.Space[Any]) -> Any:
    if isinstance(space, gym.spaces.Discrete):
        return int(space.start + space.n)
    if isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.integer):
        high = np.where(np.isfinite(space.high), space.high, 0)
        if np.all(high < np.iinfo(space.dtype).max):
            return (high + 1).astype(space.dtype)
    if isinstance(space, gym.spaces.Box) and np.all(np.isfinite(space.high)):
        return (space.high + 1 + np.abs(space.high)).astype(space.dtype)
    return None
