"""Env side in Python, callback style (design: layer 4): :func:`serve` listens and runs each
connection against its own env (for a ``ClientEnv``); :func:`connect` dials a ``ServerEnv`` and
serves one session. Both run :class:`~rlay.backends.session.EnvSession` underneath."""

from __future__ import annotations

import collections
import errno
import logging
import os
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym

from rlay.attributes import RESERVED_PREFIX, Attribute
from rlay.backends.session import DEFAULT_HANDSHAKE_TIMEOUT, Command, EnvSession, Greeting
from rlay.errors import ConnectionClosed, Timeout, UsageError, clip
from rlay.protocol.connection import Connection
from rlay.protocol.messages import Error
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE, ErrorCode, Role
from rlay.session import Session
from rlay.transports import Stream, dial, listen

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "Server",
    "answer_commands",
    "connect",
    "lookup_call",
    "refuse",
    "run_session",
    "serve",
]

log = logging.getLogger("rlay")

#: Seconds a :class:`Server` waits for the next command of a connected agent side before it
#: ends that session (a fatal ``SHUTTING_DOWN``): generous, so that an agent that pauses to
#: evaluate or save keeps its env, yet a client that went silent cannot hold an env forever.
DEFAULT_IDLE_TIMEOUT = 1800.0

#: Seconds a second agent side of a shared env instance waits before it is told "busy".
BUSY_GRACE = 1.0

#: How many of the last abnormal session ends a Server keeps (``Server.errors``).
KEEP_ERRORS = 8

# accept() failures that say "not now" (out of descriptors or memory, a peer that gave up while
# queued): back off and accept again. Anything else is logged too and retried more slowly.
_TRANSIENT_ACCEPT = frozenset(
    getattr(errno, name)
    for name in (
        "EMFILE",
        "ENFILE",
        "ENOBUFS",
        "ENOMEM",
        "ECONNABORTED",
        "EPROTO",
        "EINTR",
        "EAGAIN",
        "EPERM",
    )
    if hasattr(errno, name)
)

# -- callback style ------------------------------------------------------------------------------

CallTable = dict[str, Callable[..., Any]]


def answer_commands(
    session: EnvSession, handle: Callable[[Command], None], idle_timeout: float | None = None
) -> None:
    """Poll and ``handle`` each command until the agent side closes (callback style).

    ``handle`` answers one command (never ``close``: that ends the loop). An exception it raises
    is sent as a non-fatal ``ENV_EXCEPTION`` with its traceback and the session goes on; the agent
    side decides what to do (usually ``reset``). With ``idle_timeout``, an agent side silent for
    that long gets a fatal ``SHUTTING_DOWN`` and the session ends.
    """
    while True:
        try:
            cmd = session.poll(idle_timeout)
        except ConnectionClosed:
            return
        if cmd is None:  # silent for idle_timeout seconds
            log.warning("! ending a session idle for %g s (%s)", idle_timeout, session.stream.peer)
            _end_idle(session, idle_timeout)
            return
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


def check_call_names(calls: CallTable | None) -> None:
    """CALL names starting with ``rlay.`` are the SDK's own (§19): a user cannot register one."""
    for name in calls or {}:
        if not isinstance(name, str) or name.startswith(RESERVED_PREFIX):
            raise UsageError(
                f"call name {name!r}: names starting with {RESERVED_PREFIX!r} are reserved (§19); "
                "offer typed attributes with attributes=[rlay.Attribute(...)] instead"
            )


def lookup_call(session: EnvSession, calls: CallTable, name: str | None) -> Callable[..., Any] | None:
    """The function registered for a CALL, or None after answering ``NOT_SUPPORTED``."""
    fn = calls.get(name or "")
    if fn is None:
        session.reply_error(
            f"no function named {name!r} is offered; offered: {sorted(calls) or 'none'}",
            code=ErrorCode.NOT_SUPPORTED,
        )
    return fn


def _end_idle(session: EnvSession, idle_timeout: float | None) -> None:
    try:
        session.conn.send_fatal(
            ErrorCode.SHUTTING_DOWN,
            f"the env side ended the session: no command for {idle_timeout:g} s (its idle timeout)",
        )
        session._flush()
    except (ConnectionClosed, Timeout):
        pass
    session._shutdown()


def run_session(
    session: EnvSession,
    env: gym.Env[Any, Any],
    calls: CallTable | None = None,
    idle_timeout: float | None = None,
) -> None:
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

    answer_commands(session, handle, idle_timeout)


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
        attribute_owner=env,
        **kwargs,
    )


def refuse(
    stream: Stream,
    code: ErrorCode,
    message: str,
    exc: BaseException | None = None,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    token: str | bytes | None = None,
    capabilities: dict[str, Any] | None = None,
) -> None:
    """Say HELLO, take the agent's, then end with a fatal ERROR (§11) saying why (with the type
    and traceback of ``exc``, if given): how an env side that cannot serve tells the agent side.
    With a token (``token``, else ``RLAY_TOKEN``) the agent proves it first (§7.1), as it would
    for a session, so it hears the real reason (and an impostor hears only AUTH_FAILED)."""
    if token is None:
        token = os.environ.get("RLAY_TOKEN") or None
    # ``capabilities``: what the refused session would have announced (a multi-agent env side's
    # `multi_agent`, §18), so that its agent side reads this ERROR rather than a mismatch.
    conn = Connection(Role.ENV, max_frame_size=max_frame_size, token=token, capabilities=capabilities)
    session = Session(conn, stream, "agent side")
    try:
        session.flush("sending HELLO", 5.0)
        wait = 5.0 if handshake_timeout is None else min(5.0, handshake_timeout)
        session.receive("waiting for the agent's HELLO", wait)
        remote_type = tb = None
        if exc is not None:
            remote_type = type(exc).__qualname__
            tb = "".join(traceback.format_exception(exc))
        conn.send(Error(int(code), message, True, remote_type, tb))
        session.flush("refusing the session", 5.0)
    except Exception:
        pass
    finally:
        session.close("refused")


class Server:
    """Serves an env (or one env per connection, from a factory) to every ``ClientEnv`` that dials.

    With a factory, sessions run concurrently, each with its own env; with a single env
    instance they run one at a time, and an agent side that dials while another holds the
    instance is refused (after a grace of :data:`BUSY_GRACE`, 1 s) with a fatal
    ``NOT_SUPPORTED`` ERROR saying so (serve a factory to serve several at once). A client
    that misbehaves or disconnects ends only its own session.

    Faults of its own do not stop it (every one is logged on the ``"rlay"`` logger):

    - ``accept`` failing for a while (out of file descriptors, ``ECONNABORTED``…): it backs off
      (up to 1 s) and keeps accepting.
    - A factory that raises: the agent side gets a fatal ``ENV_EXCEPTION`` with the exception's
      type, message and traceback; the server goes on.
    - ``idle_timeout`` (default :data:`DEFAULT_IDLE_TIMEOUT`, 30 minutes; ``None``: never): an
      agent side that sends no command for that long gets a fatal ``SHUTTING_DOWN`` and its
      session ends. ``handshake_timeout`` (30 s) bounds a client that never says HELLO.
    - Memory does not grow with the number of bad clients: :attr:`errors` keeps the last
      :data:`KEEP_ERRORS` abnormal ends (without tracebacks), :attr:`error_counts` counts them
      by type.
    """

    def __init__(
        self,
        env: EnvSource,
        address: str = "tcp://127.0.0.1:0",
        *,
        calls: CallTable | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        token: str | bytes | None = None,
        shm: bool = True,
        attributes: Sequence[Attribute] | None = None,
    ) -> None:
        check_call_names(calls)
        self._source = env
        self._calls = calls
        self._kwargs = {
            "handshake_timeout": handshake_timeout,
            "max_frame_size": max_frame_size,
            "token": token,
            "shm": shm,  # §16: shared memory with agents on unix sockets (RLAY_SHM=0 turns it off)
            "attributes": attributes,  # §19, answered by each session's EnvSession
        }
        self._handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self._listener = listen(address)
        self.address = str(self._listener.address)
        self._shared_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sessions: set[EnvSession] = set()
        self._stopped = threading.Event()
        #: The last few reasons sessions ended abnormally (tracebacks dropped), newest last.
        self.errors: collections.deque[BaseException] = collections.deque(maxlen=KEEP_ERRORS)
        #: How many sessions ended abnormally, by exception type name.
        self.error_counts: collections.Counter[str] = collections.Counter()
        #: How many times accept() failed (each retried after a back-off).
        self.accept_failures = 0
        self._accept_thread: threading.Thread | None = None

    def start(self) -> Server:
        """Serve in a background thread; return self."""
        self._accept_thread = threading.Thread(target=self.serve_forever, name="rlay-serve", daemon=True)
        self._accept_thread.start()
        return self

    def serve_forever(self) -> None:
        """Accept and serve until :meth:`close`. A failing ``accept`` is retried after a back-off."""
        delay = 0.0
        while not self._stopped.is_set():
            try:
                stream = self._listener.accept(None)
            except ConnectionClosed:
                return
            except OSError as exc:
                if self._stopped.is_set():
                    return
                self.accept_failures += 1
                transient = exc.errno in _TRANSIENT_ACCEPT
                if delay == 0.0:  # one line per streak of failures, and one when it ends
                    log.warning(
                        "! accept failed on %s (%s); retrying with a back-off",
                        self.address,
                        exc.strerror or exc,
                    )
                delay = min(1.0, max(0.01, delay * 2)) if transient else 1.0
                self._stopped.wait(delay)
                continue
            if delay:
                log.warning("= accepting again on %s", self.address)
                delay = 0.0
            try:
                thread = threading.Thread(target=self._serve_one, args=(stream,), daemon=True)
                self._threads = [t for t in self._threads if t.is_alive()]
                thread.start()
                self._threads.append(thread)
            except RuntimeError as exc:  # can't start a new thread: drop this client, keep serving
                log.warning("! cannot serve %s: %s", stream.peer, exc)
                stream.close()
                self._stopped.wait(0.1)

    def _serve_one(self, stream: Stream) -> None:
        # §17.4: the handshake first (HELLOs, and the proof with a token), within its deadline:
        # a slow, silent, garbled or unauthenticated peer ends here, before it costs an env.
        greeting = Greeting.start(
            stream,
            max_frame_size=self._kwargs["max_frame_size"],  # type: ignore[arg-type]
            token=self._kwargs["token"],  # type: ignore[arg-type]
            capabilities=self._capabilities(),
            shm=bool(self._kwargs["shm"]),  # §16.1
        )
        try:
            greeting.finish(self._handshake_timeout)
        except Exception as exc:
            log.info("! handshake with %s failed: %s", stream.peer, clip(exc))
            self._note(exc)
            return
        shared = self._shared()
        lock = self._shared_lock if shared else None
        # A short grace: the previous agent side may be closing its session right now.
        if lock is not None and not lock.acquire(timeout=BUSY_GRACE):
            greeting.refuse(
                ErrorCode.NOT_SUPPORTED,
                "busy: this env side serves one env instance, and another agent side is using it; "
                "try again when that session ends (the server must serve a factory, e.g. "
                "rlay.serve(lambda: gymnasium.make(...)), to host several agent sides at once)",
            )
            return
        env: Any = None
        try:
            try:
                env = self._instance()
            except Exception as exc:
                log.error("! the env factory failed for %s: %s", stream.peer, clip(exc), exc_info=exc)
                greeting.refuse(ErrorCode.ENV_EXCEPTION, f"the env factory failed: {exc}", exc)
                self._note(exc)
                return
            session = self._open(env, stream, greeting)
            self._sessions.add(session)
            try:
                self._run(session, env)
            finally:
                self._sessions.discard(session)
                session._shutdown()
        except Exception as exc:  # a broken client ends its own session only
            log.info("! session with %s ended: %s", stream.peer, clip(exc))
            self._note(exc)
            stream.close()
        finally:
            if env is not None and not shared:
                env.close()
            if lock is not None:
                lock.release()

    def _note(self, exc: BaseException) -> None:
        """Keep a bounded record of ``exc``: its frames (and the buffers they hold) are let go."""
        self.error_counts[type(exc).__name__] += 1
        seen = set()
        e: BaseException | None = exc
        while e is not None and id(e) not in seen:
            seen.add(id(e))
            e.__traceback__ = None
            e = e.__cause__ or e.__context__
        self.errors.append(exc)

    # What a subclass (rlay.backends.vector.VectorServer) changes: what it serves and how.
    def _shared(self) -> bool:
        """One instance for every connection (served one at a time), or a factory."""
        return isinstance(self._source, gym.Env)

    def _instance(self) -> Any:
        return self._source if self._shared() else self._source()  # type: ignore[operator]

    def _capabilities(self) -> dict[str, Any] | None:
        """What the HELLO of each session announces (sent before the env exists, §17.4)."""
        return None

    def _open(self, env: Any, stream: Stream, greeting: Greeting | None = None) -> EnvSession:
        return _session_for(env, stream, greeting=greeting, **self._kwargs)

    def _run(self, session: EnvSession, env: Any) -> None:
        run_session(session, env, self._calls, self.idle_timeout)

    def close(self) -> None:
        self._stopped.set()
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
    ``kwargs`` go to :class:`Server`: ``idle_timeout`` (default 30 minutes: an agent side silent
    that long is told ``SHUTTING_DOWN`` and dropped), ``handshake_timeout``, ``max_frame_size``,
    ``calls``, ``attributes`` (typed attributes the agent side reads and writes, §19:
    :class:`rlay.Attribute`). What the server does under faults is in :class:`Server`'s docstring.
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
    """Dial a ``ServerEnv`` at ``address`` and serve ``env`` until the agent side closes.

    If the factory ``env`` raises, the agent side still hears why (a fatal ``ENV_EXCEPTION``
    with the type and traceback) and the exception is raised here too."""
    try:
        instance = env if isinstance(env, gym.Env) else env()
    except Exception as exc:
        log.error("! the env factory failed: %s", clip(exc), exc_info=exc)
        try:
            stream = dial(address, connect_timeout)
        except (ConnectionClosed, Timeout):
            raise exc from None
        why = f"the env factory failed: {exc}"
        refuse(stream, ErrorCode.ENV_EXCEPTION, why, exc, token=kwargs.get("token"))
        raise
    check_call_names(calls)
    try:
        session = _session_for(instance, dial(address, connect_timeout), **kwargs)
        try:
            run_session(session, instance, calls)
        finally:
            session._shutdown()
    finally:
        if instance is not env:
            instance.close()
