"""Env side in Python, callback style (design: layer 4): :func:`serve` listens and runs each
connection against its own env (for a ``ClientEnv``); :func:`connect` dials a ``ServerEnv`` and
serves one session. Both run :class:`~rlay.backends.session.EnvSession` underneath."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from rlay.backends.session import DEFAULT_HANDSHAKE_TIMEOUT, Command, EnvSession
from rlay.errors import ConnectionClosed, Timeout
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE, ErrorCode
from rlay.transports import Stream, dial, listen

__all__ = ["Server", "answer_commands", "connect", "lookup_call", "run_session", "serve"]

log = logging.getLogger("rlay")

# -- callback style ------------------------------------------------------------------------------

CallTable = dict[str, Callable[..., Any]]


def answer_commands(session: EnvSession, handle: Callable[[Command], None]) -> None:
    """Poll and ``handle`` each command until the agent side closes (callback style).

    ``handle`` answers one command (never ``close``: that ends the loop). An exception it raises
    is sent as a non-fatal ``ENV_EXCEPTION`` with its traceback and the session goes on; the agent
    side decides what to do (usually ``reset``).
    """
    while True:
        try:
            cmd = session.poll(None)
        except ConnectionClosed:
            return
        if cmd is None:  # pragma: no cover - poll(None) blocks until a command
            continue
        if cmd.kind == "close":
            return
        try:
            handle(cmd)
        except (ConnectionClosed, Timeout):
            return
        except Exception as exc:
            if session.closed:
                return
            session.reply_error(exc)


def lookup_call(session: EnvSession, calls: CallTable, name: str | None) -> Callable[..., Any] | None:
    """The function registered for a CALL, or None after answering ``NOT_SUPPORTED``."""
    fn = calls.get(name or "")
    if fn is None:
        session.reply_error(
            f"no function named {name!r} is offered; offered: {sorted(calls) or 'none'}",
            code=ErrorCode.NOT_SUPPORTED,
        )
    return fn


def run_session(session: EnvSession, env: gym.Env[Any, Any], calls: CallTable | None = None) -> None:
    """Answer commands with ``env`` until the agent side closes (callback style)."""
    table = calls or {}

    def handle(cmd: Command) -> None:
        kind = cmd.kind
        if kind == "step":
            obs, reward, terminated, truncated, info = env.step(cmd.action)
            session.reply_step(obs, reward, terminated, truncated, info)
        elif kind == "reset":
            obs, info = env.reset(seed=cmd.seed, options=cmd.options)  # type: ignore[arg-type]
            session.reply_reset(obs, info)
        elif kind == "render":
            session.reply_render(env.render())
        elif kind == "call":
            fn = lookup_call(session, table, cmd.name)
            if fn is not None:
                session.reply_call(fn(env, *(cmd.args or []), **(cmd.kwargs or {})))

    answer_commands(session, handle)


EnvSource = gym.Env[Any, Any] | Callable[[], gym.Env[Any, Any]]


def _session_for(env: gym.Env[Any, Any], stream: Stream, **kwargs: Any) -> EnvSession:
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    return EnvSession(
        stream,
        env.observation_space,
        env.action_space,
        metadata=dict(env.metadata),
        render_mode=env.render_mode,
        name=name,
        **kwargs,
    )


class Server:
    """Serves an env (or one env per connection, from a factory) to every ``ClientEnv`` that dials.

    With a factory, sessions run concurrently, each with its own env; with a single env
    instance they run one at a time. A client that misbehaves or disconnects ends only its own
    session.
    """

    def __init__(
        self,
        env: EnvSource,
        address: str = "tcp://127.0.0.1:0",
        *,
        calls: CallTable | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self._source = env
        self._calls = calls
        self._kwargs = {"handshake_timeout": handshake_timeout, "max_frame_size": max_frame_size}
        self._listener = listen(address)
        self.address = str(self._listener.address)
        self._shared_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sessions: set[EnvSession] = set()
        self._stop = False
        self.errors: list[BaseException] = []  # why sessions ended abnormally, for logs and tests
        self._accept_thread: threading.Thread | None = None

    def start(self) -> Server:
        """Serve in a background thread; return self."""
        self._accept_thread = threading.Thread(target=self.serve_forever, name="rlay-serve", daemon=True)
        self._accept_thread.start()
        return self

    def serve_forever(self) -> None:
        while not self._stop:
            try:
                stream = self._listener.accept(None)
            except (ConnectionClosed, OSError):
                return
            thread = threading.Thread(target=self._serve_one, args=(stream,), daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _serve_one(self, stream: Stream) -> None:
        shared = self._shared()
        lock = self._shared_lock if shared else None
        if lock is not None:
            lock.acquire()
        env: Any = None
        try:
            env = self._instance()
            session = self._open(env, stream)
            self._sessions.add(session)
            try:
                self._run(session, env)
            finally:
                self._sessions.discard(session)
                session._shutdown()
        except Exception as exc:  # a broken client ends its own session only
            self.errors.append(exc)
            stream.close()
        finally:
            if env is not None and not shared:
                env.close()
            if lock is not None:
                lock.release()

    # What a subclass (rlay.backends.vector.VectorServer) changes: what it serves and how.
    def _shared(self) -> bool:
        """One instance for every connection (served one at a time), or a factory."""
        return isinstance(self._source, gym.Env)

    def _instance(self) -> Any:
        return self._source if self._shared() else self._source()  # type: ignore[operator]

    def _open(self, env: Any, stream: Stream) -> EnvSession:
        return _session_for(env, stream, **self._kwargs)

    def _run(self, session: EnvSession, env: Any) -> None:
        run_session(session, env, self._calls)

    def close(self) -> None:
        self._stop = True
        self._listener.close()
        for session in list(self._sessions):
            session.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(env: EnvSource, address: str = "tcp://127.0.0.1:0", *, block: bool = True, **kwargs: Any) -> Server:
    """Serve ``env`` (a ``gymnasium.Env`` or a zero-argument factory) at ``address`` for ``ClientEnv``.

    ``block=True`` serves until interrupted; ``block=False`` serves in a background thread and
    returns the :class:`Server` (its ``address`` is the address actually bound; ``close()`` stops it).
    """
    server = Server(env, address, **kwargs)
    if not block:
        return server.start()
    try:
        server.serve_forever()
    finally:
        server.close()
    return server


def connect(
    env: EnvSource,
    address: str,
    *,
    connect_timeout: float | None = 30.0,
    calls: CallTable | None = None,
    **kwargs: Any,
) -> None:
    """Dial a ``ServerEnv`` at ``address`` and serve ``env`` until the agent side closes."""
    instance = env if isinstance(env, gym.Env) else env()
    try:
        session = _session_for(instance, dial(address, connect_timeout), **kwargs)
        try:
            run_session(session, instance, calls)
        finally:
            session._shutdown()
    finally:
        if instance is not env:
            instance.close()
