"""Env side in Python for batched sub-envs (spec/protocol.md §10): serve a
``gymnasium.vector.VectorEnv`` as ``num_envs`` sub-envs over one connection.

One ``STEP`` carries the actions of every sub-env and one ``STEP_RESULT`` answers with all their
observations, a ``float64`` reward tensor, ``bool`` flag tensors and Gymnasium's vector ``info``
(each key an array of ``num_envs`` entries, ``"_key"`` the mask of the sub-envs that set it).
The vector env does its own autoreset; its mode travels as ``metadata["autoreset_mode"]``.

- :func:`serve_vector` listens (for a ``ClientVectorEnv``); :func:`connect_vector` dials a
  ``ServerVectorEnv``. Both take a ``VectorEnv`` or a zero-argument factory of one, e.g.
  ``lambda: gymnasium.vector.SyncVectorEnv([make] * 64)``.
- Loop style needs nothing new: ``EnvSession(..., num_envs=n)`` takes batched replies.

``CALL`` functions (``calls={"name": fn}``) get the vector env and return one value per
sub-env (for example ``lambda venv: venv.call("spec_id")``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gymnasium.vector import AutoresetMode, VectorEnv

from rlay.attributes import Attribute
from rlay.backends.server import (
    DEFAULT_IDLE_TIMEOUT,
    CallTable,
    Server,
    answer_commands,
    check_call_names,
    lookup_call,
)
from rlay.backends.session import DEFAULT_HANDSHAKE_TIMEOUT, Command, EnvSession, Greeting
from rlay.batching import (
    AUTORESET_TO_WIRE,
    batch_one,
    info_to_wire,
    item,
    parse_autoreset_mode,
    unbatch_info,
)
from rlay.errors import UsageError, clip
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE
from rlay.spaces import SpaceCodec
from rlay.transports import Stream, dial

__all__ = ["VectorServer", "connect_vector", "run_vector_session", "serve_vector", "vector_session"]

VectorSource = VectorEnv | Callable[[], VectorEnv]


def _check_vector_env(venv: Any) -> VectorEnv:
    if not isinstance(venv, VectorEnv):
        raise UsageError(
            "expected a gymnasium.vector.VectorEnv (or a factory returning one), actual "
            f"{type(venv).__name__}; for a single gymnasium.Env use rlay.serve / rlay.connect"
        )
    return venv


def _autoreset(venv: VectorEnv) -> AutoresetMode:
    # Gymnasium's default when a vector env does not say (VectorEnv's docstring): next-step.
    value = venv.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    try:
        return parse_autoreset_mode(value)
    except UsageError as exc:
        raise UsageError(f"the vector env's metadata['autoreset_mode'] is not usable: {exc}") from None


def vector_session(venv: VectorEnv, stream: Stream, **kwargs: Any) -> EnvSession:
    """Hand-shake on ``stream`` and describe ``venv`` (its single spaces, ``num_envs``, its
    metadata with the autoreset mode as §10 names it); return the session."""
    venv = _check_vector_env(venv)
    metadata = dict(venv.metadata)
    metadata["autoreset_mode"] = AUTORESET_TO_WIRE[_autoreset(venv)]
    spec = getattr(venv, "spec", None)
    name = spec.id if spec is not None else type(venv.unwrapped).__name__
    session = EnvSession(
        stream,
        venv.single_observation_space,
        venv.single_action_space,
        metadata=metadata,
        render_mode=venv.render_mode,
        name=name,
        num_envs=venv.num_envs,
        attribute_owner=venv,
        **kwargs,
    )
    return session


def run_vector_session(
    session: EnvSession, venv: VectorEnv, calls: CallTable | None = None, idle_timeout: float | None = None
) -> None:
    """Answer commands with ``venv`` until the agent side closes (callback style).

    An exception in env code is answered with a non-fatal ``ENV_EXCEPTION`` (the agent side's
    vector env then closes every connection, since its sub-envs may be half-stepped).
    """
    n = venv.num_envs
    if session.num_envs != n:
        raise UsageError(f"the session hosts {session.num_envs} sub-envs but the vector env has {n}")
    single_obs = venv.single_observation_space
    single_act = venv.single_action_space
    # With same-step autoreset, info["final_obs"] holds observations: encode them as such.
    final_obs = (
        SpaceCodec(single_obs, "info['final_obs'][i]")
        if _autoreset(venv) is AutoresetMode.SAME_STEP
        else None
    )
    table = calls or {}

    def handle(cmd: Command) -> None:
        kind = cmd.kind
        if kind == "step":
            if n == 1:  # §10: one sub-env travels unbatched
                obs, reward, terminated, truncated, info = venv.step(batch_one(single_act, cmd.action))
                session.reply_step(
                    item(single_obs, obs, 0),
                    reward[0],
                    terminated[0],
                    truncated[0],
                    unbatch_info(info, final_obs),
                )
            else:
                obs, reward, terminated, truncated, info = venv.step(cmd.action)
                session.reply_step(obs, reward, terminated, truncated, info_to_wire(info, final_obs))
        elif kind == "reset":
            obs, info = venv.reset(seed=cmd.seed, options=cmd.options)  # type: ignore[arg-type]
            if n == 1:
                session.reply_reset(item(single_obs, obs, 0), unbatch_info(info, final_obs))
            else:
                session.reply_reset(obs, info_to_wire(info, final_obs))
        elif kind == "render":
            frames: Any = venv.render()
            if frames is not None:  # a tuple of one frame per sub-env; nil for human mode
                frames = frames[0] if n == 1 else list(frames)
            session.reply_render(frames)
        elif kind == "call":
            fn = lookup_call(session, table, cmd.name)
            if fn is None:
                return
            values = fn(venv, *(cmd.args or []), **(cmd.kwargs or {}))
            if not isinstance(values, (list, tuple)) or len(values) != n:
                raise UsageError(
                    f"call {cmd.name!r} must return one value per sub-env ({n}), as a list or "
                    f"tuple; it returned {type(values).__name__} {clip(values, 60)}"
                )
            session.reply_call(values[0] if n == 1 else list(values))

    answer_commands(session, handle, idle_timeout)


class VectorServer(Server):
    """Serves a vector env (or one per connection, from a factory) to every ``ClientVectorEnv``
    that dials: each connection is one batch of ``num_envs`` sub-envs."""

    def __init__(
        self,
        venv: VectorSource,
        address: str = "tcp://127.0.0.1:0",
        *,
        calls: CallTable | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        shm: bool = True,
        attributes: Sequence[Attribute] | None = None,
    ) -> None:
        if not isinstance(venv, VectorEnv) and not callable(venv):
            _check_vector_env(venv)
        source: Any = venv
        super().__init__(
            source,
            address,
            calls=calls,
            handshake_timeout=handshake_timeout,
            max_frame_size=max_frame_size,
            idle_timeout=idle_timeout,
            shm=shm,
            attributes=attributes,
        )

    def _shared(self) -> bool:
        return isinstance(self._source, VectorEnv)

    def _instance(self) -> Any:
        source: Any = self._source
        return _check_vector_env(source if self._shared() else source())

    def _open(self, env: Any, stream: Stream, greeting: Greeting | None = None) -> EnvSession:
        return vector_session(env, stream, greeting=greeting, **self._kwargs)

    def _run(self, session: EnvSession, env: Any) -> None:
        run_vector_session(session, env, self._calls, self.idle_timeout)


def serve_vector(
    venv: VectorSource, address: str = "tcp://127.0.0.1:0", *, block: bool = True, **kwargs: Any
) -> Server:
    """Serve ``venv`` (a ``VectorEnv`` or a zero-argument factory) at ``address`` for
    ``ClientVectorEnv``. ``block=False`` serves in a background thread and returns the
    :class:`VectorServer` (``address`` is the address bound; ``close()`` stops it). It is typed as
    its base :class:`~rlay.Server` so that callers can hold either kind of server."""
    server = VectorServer(venv, address, **kwargs)
    if not block:
        server.start()
        return server
    try:
        server.serve_forever()
    finally:
        server.close()
    return server


def connect_vector(
    venv: VectorSource,
    address: str,
    *,
    connect_timeout: float | None = 30.0,
    calls: CallTable | None = None,
    **kwargs: Any,
) -> None:
    """Dial a ``ServerVectorEnv`` at ``address`` and serve ``venv`` until the agent side closes."""
    check_call_names(calls)
    instance = _check_vector_env(venv if isinstance(venv, VectorEnv) else venv())
    try:
        session = vector_session(instance, dial(address, connect_timeout), **kwargs)
        try:
            run_vector_session(session, instance, calls)
        finally:
            session._shutdown()
    finally:
        if instance is not venv:
            instance.close()
