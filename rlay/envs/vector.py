"""Agent side: ``gymnasium.vector.VectorEnv`` over rlay env sides (spec/protocol.md §10).

- :class:`ClientVectorEnv` dials one env side, or a list of them.
- :class:`ServerVectorEnv` listens and accepts one env side, or ``num_connections`` of them.

Each env side hosts one sub-env (a plain env: ``serve``, ``connect``, any SDK) or a batch of
``num_envs`` sub-envs on its connection (§10: ``rlay.backends.vector.serve_vector``). The vector
env's sub-envs are those of its env sides, concatenated in order: env side 0's first, and so on.

Many connections are stepped concurrently from one thread: every command is sent first, then
every reply is read, so the env processes compute in parallel while this side waits. Autoreset:
an env side hosting a batch does its own (its ``metadata["autoreset_mode"]``); for a plain env
side this class does it, with Gymnasium's semantics for the mode asked for (default next-step:
after an episode ends, the next ``step`` resets that sub-env and returns its first observation
with reward 0 and both flags false).

Results equal a ``gymnasium.vector.SyncVectorEnv`` over the same envs in process, for the same
seeds and actions (``tests/test_vector.py`` checks it). A vector env does not outlive the
failure of one of its env sides: any error (a dead process, a timeout, an error reply) closes
every connection, cleanly where possible, and raises :class:`EnvSideFailed` naming the env side
(its index and address), the sub-envs it hosted, what was being done and why. The one exception
is ``max_restarts``: a launched program that died is relaunched, its sub-envs' episodes reported
truncated with ``info["rlay_restart"]`` (docs/faults.md).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import create_empty_array

from rlay import attributes as _attrs
from rlay.batching import (
    AUTORESET_FROM_WIRE,
    AUTORESET_TO_WIRE,
    batch_contains,
    batch_fast_paths,
    batch_one,
    copy_value,
    info_from_wire,
    item,
    join,
    parse_autoreset_mode,
    part,
    wire_spaces,
)
from rlay.envs._endpoints import Endpoints
from rlay.envs._session import AgentSession
from rlay.envs.single import (
    DEFAULT_ACCEPT_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_TIMEOUT,
    SETTLE,
    LazyAccept,
)
from rlay.errors import (
    ConnectionClosed,
    EnvSideFailed,
    InvalidAction,
    InvalidSubEnvAction,
    ProtocolError,
    RemoteError,
    RlayError,
    Timeout,
    UsageError,
    clip,
    describe_returncode,
)
from rlay.launch import LaunchError, Process
from rlay.protocol.codec import check_free_value, free_from_wire
from rlay.protocol.messages import (
    Call,
    CallResult,
    Message,
    Render,
    RenderResult,
    Reset,
    ResetResult,
    Step,
    StepResult,
)
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE, ErrorCode
from rlay.spaces import SpaceCodec, batched, fast_paths
from rlay.transports import Stream
from rlay.transports.shm import wait_all

__all__ = [
    "ClientVectorEnv",
    "EnvSideFailed",
    "InvalidSubEnvAction",
    "ServerVectorEnv",
]

log = logging.getLogger("rlay")

#: How long closing waits for an env side's outstanding reply and its CLOSE_RESULT.
CLOSE_TIMEOUT = 5.0


# -- one connection ------------------------------------------------------------------------------


@dataclass(eq=False)
class _Link:
    """One env side: its session, where its sub-envs sit, how values travel on its connection."""

    index: int
    address: str
    session: AgentSession
    n: int  # sub-envs hosted; n == 1 travels unbatched (§10)
    offset: int  # its first sub-env in the vector env
    env_autoreset: AutoresetMode | None  # None: a plain env, this side does its autoreset
    obs_space: gym.Space[Any]
    act_space: gym.Space[Any]
    render_mode: str | None
    metadata: dict[str, Any]
    obs_codec: SpaceCodec  # the values on the wire: batched when n > 1
    act_codec: SpaceCodec
    single_obs_codec: SpaceCodec
    obs: Any = None  # its last observations, batched (kept for partial resets)
    waiting: str | None = None  # the command whose reply is outstanding
    died: tuple[RlayError, str] | None = None  # its program died (max_restarts): why, when
    needs_reset: bool = False  # a relaunched program, not reset yet

    @property
    def sub_envs(self) -> range:
        return range(self.offset, self.offset + self.n)


def _open_link(index: int, address: str, stream: Stream, offset: int, env: _RemoteVectorEnv) -> _Link:
    session = AgentSession(
        stream,
        handshake_timeout=env._handshake_timeout,
        timeout=env._timeout,
        max_frame_size=env._max_frame_size,
        token=env._endpoints.token if env._endpoints else None,
        auth_required=env._endpoints.auth_required if env._endpoints else False,
        shm=env._shm,
    )
    return _link(index, address, session, offset)


def _link(index: int, address: str, session: AgentSession, offset: int) -> _Link:
    try:
        info = session.info
        obs_space, act_space = info.spaces  # built once, when ENV_INFO was received
        metadata = free_from_wire(info.metadata)
        n = info.num_envs
        mode = None
        if "autoreset_mode" in metadata:
            value = metadata["autoreset_mode"]
            mode = AUTORESET_FROM_WIRE.get(value) if isinstance(value, str) else None
            if mode is None:
                names = ", ".join(repr(m) for m in AUTORESET_FROM_WIRE)
                raise ProtocolError(
                    ErrorCode.BAD_FIELD,
                    f"ENV_INFO.metadata['autoreset_mode'] must be one of {names} (§10), "
                    f"got {clip(value, 40)}",
                )
        elif n > 1:
            mode = AutoresetMode.NEXT_STEP  # §10: the default of a batch
        wire_obs, wire_act = wire_spaces(obs_space, act_space, n)
        session.conn.fast = (
            fast_paths(wire_obs, wire_act) if n == 1 else batch_fast_paths(obs_space, act_space, n)
        )
        return _Link(
            index=index,
            address=address,
            session=session,
            n=n,
            offset=offset,
            env_autoreset=mode,
            obs_space=obs_space,
            act_space=act_space,
            render_mode=info.render_mode,
            metadata=metadata,
            obs_codec=SpaceCodec(wire_obs, "observation"),
            act_codec=SpaceCodec(wire_act, "action"),
            single_obs_codec=SpaceCodec(obs_space, "final_obs[i]"),
        )
    except BaseException:
        session.close()
        raise


# -- the vector env ------------------------------------------------------------------------------


class _RemoteVectorEnv(VectorEnv[Any, Any, np.ndarray]):
    """What :class:`ClientVectorEnv` and :class:`ServerVectorEnv` share once connected."""

    address: str  #: the first env side's address, or the address bound (listening)
    addresses: list[str]  #: every env side's address, in sub-env order

    def __init__(
        self,
        *,
        render_mode: str | None,
        autoreset_mode: AutoresetMode | str | None,
        handshake_timeout: float | None,
        timeout: float | None,
        max_frame_size: int,
        check_actions: bool,
        copy: bool,
        max_restarts: int = 0,
        restart_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        if type(max_restarts) is not int or max_restarts < 0:
            raise UsageError(f"max_restarts must be an int >= 0, got {max_restarts!r}")
        self._max_restarts = max_restarts
        self._restart_timeout = restart_timeout
        #: How many times a dead env program was relaunched (``max_restarts``), all env sides together.
        self.restarts = 0
        self._want_render_mode = render_mode
        self._want_autoreset = None if autoreset_mode is None else parse_autoreset_mode(autoreset_mode)
        self._handshake_timeout = handshake_timeout
        self._timeout = timeout
        self._max_frame_size = max_frame_size
        self._check_actions = check_actions
        self._shm = True
        self._late: set[int] = set()  # links whose reply the batch wait gave up on (§16.6)
        self.copy = copy
        self._links: list[_Link] = []
        self._endpoints: Endpoints | None = None  # where the connections come from (and programs)
        self._closed_why: str | None = None
        self._pending_step = False
        self._was_reset = False
        self._attributes: dict[str, _attrs.Attribute] | None = None  # §19, asked once

    # -- connecting ------------------------------------------------------------------------------

    def _add_link(self, timeout: float | None) -> None:
        """Connect (or accept) and hand-shake one more env side."""
        index = len(self._links)
        offset = sum(link.n for link in self._links)
        endpoints = self._endpoints
        assert endpoints is not None
        where = endpoints.addresses[min(index, len(endpoints.addresses) - 1)]
        try:
            where, stream = endpoints.connect(index, timeout)
            self._links.append(_open_link(index, where, stream, offset, self))
        except RlayError as exc:
            failure = EnvSideFailed(index, where, None, "while connecting", exc)
            self._abort(str(failure))
            raise failure from exc
        except BaseException:
            self._abort("connecting failed")
            raise

    def _setup(self) -> None:
        """Every env side is connected: check that they agree, define the vector env's spaces."""
        links = self._links
        first = links[0]
        try:
            for link in links[1:]:
                for what, mine, theirs in (
                    ("observation space", link.obs_space, first.obs_space),
                    ("action space", link.act_space, first.act_space),
                ):
                    if mine != theirs:
                        raise UsageError(
                            f"env side {link.index} ({link.address}) has the {what} {mine}, but env "
                            f"side 0 ({first.address}) has {theirs}; all sub-envs of a vector env "
                            "must have the same spaces"
                        )
            want = self._want_render_mode
            for link in links:
                if want is not None and link.render_mode != want:
                    raise UsageError(
                        f"render_mode={want!r} was asked for, but env side {link.index} "
                        f"({link.address}) renders in mode {link.render_mode!r}; start it with that mode"
                    )
                if link.render_mode != first.render_mode:
                    raise UsageError(
                        f"env side {link.index} ({link.address}) renders in mode {link.render_mode!r}, "
                        f"env side 0 in mode {first.render_mode!r}; they must agree"
                    )
            modes = [(link, link.env_autoreset) for link in links if link.env_autoreset is not None]
            mode = self._want_autoreset
            if mode is None:
                mode = modes[0][1] if modes else AutoresetMode.NEXT_STEP
            for link, its in modes:
                if its is not mode:
                    raise UsageError(
                        f"env side {link.index} ({link.address}) autoresets its sub-envs in mode "
                        f"{AUTORESET_TO_WIRE[its]!r} (its metadata['autoreset_mode']), but this "
                        f"vector env uses {AUTORESET_TO_WIRE[mode]!r}; they must agree"
                    )
        except UsageError as exc:
            self._abort(str(exc))
            raise
        self.autoreset_mode: AutoresetMode = mode
        self.num_envs = sum(link.n for link in links)
        self.single_observation_space = first.obs_space
        self.single_action_space = first.act_space
        self.observation_space = batched(first.obs_space, self.num_envs)
        self.action_space = batched(first.act_space, self.num_envs)
        self._contains = batch_contains(first.act_space, self.action_space)
        metadata = dict(first.metadata)
        metadata.setdefault("render_modes", [])
        metadata["autoreset_mode"] = mode
        self.metadata = metadata
        self.render_mode = first.render_mode
        self._autoreset = np.zeros(self.num_envs, dtype=np.bool_)
        for link in links:
            link.obs = create_empty_array(first.obs_space, link.n, fn=np.zeros)
        # One batched env side alone: its replies are the vector env's, nothing to join or merge.
        self._single_batch = len(links) == 1 and first.n > 1

    @classmethod
    def from_session(cls, session: AgentSession, endpoints: Endpoints, **options: Any) -> Any:
        """This vector env over one session whose handshake is done (see ``ClientEnv.from_session``)."""
        env = cls.__new__(cls)
        _RemoteVectorEnv.__init__(
            env,
            render_mode=options.get("render_mode"),
            autoreset_mode=options.get("autoreset_mode"),
            handshake_timeout=options.get("handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT),
            timeout=options.get("timeout", DEFAULT_TIMEOUT),
            max_frame_size=options.get("max_frame_size", DEFAULT_MAX_FRAME_SIZE),
            check_actions=options.get("check_actions", True),
            copy=options.get("copy", True),
            max_restarts=options.get("max_restarts", 0),
        )
        env._endpoints = endpoints
        env.address = endpoints.addresses[0]
        env.addresses = list(endpoints.addresses)
        vars(env).update(num_connections=1, _ready=True)  # a ServerVectorEnv's: accepted already
        env._links.append(_link(0, endpoints.addresses[0], session, 0))
        env._setup()
        return env

    @property
    def processes(self) -> list[Process]:
        """The env programs this vector env launched (``launch=[...]``), in launch order."""
        return list(self._endpoints.processes) if self._endpoints is not None else []

    def _abort(self, why: str) -> None:
        """Setting up failed: close what is open (listener included)."""
        self.close()
        self._closed_why = why

    # -- sending and gathering -------------------------------------------------------------------

    def _live(self) -> list[_Link]:
        if self._closed_why is not None or self.closed:
            raise ConnectionClosed(f"the vector env is closed ({self._closed_why or 'close() was called'})")
        if self._pending_step:
            raise UsageError("step_async() was called: call step_wait() before anything else")
        return self._links

    def _send(self, link: _Link, message: Message, what: str, survive: bool = False) -> None:
        """Send ``message``. ``survive``: if the connection is gone and a relaunch may follow
        (``max_restarts``), note it in ``link.died`` instead of failing; :meth:`_receive` then
        answers None for this link."""
        try:
            link.session.send_command(message, what)
        except RlayError as exc:
            if survive and self._may_relaunch(exc):
                link.died = (exc, f"while sending {what}")
                return
            self._fail(link, exc, f"while sending {what}")
        link.waiting = what

    def _receive(self, link: _Link, survive: bool = False) -> Message | None:
        """The reply to the command in flight; None (only with ``survive``) if the link died."""
        if link.died is not None:
            return None
        what = link.waiting or "?"
        try:
            if link.index in self._late:  # the batch wait already waited the whole timeout
                self._late.discard(link.index)
                link.session.abandon(
                    f"the session was abandoned after a timeout waiting for the reply to {what}"
                )
                raise Timeout(f"waiting for the reply to {what}", self._timeout or 0.0)
            reply = link.session.receive_reply(what)
        except RlayError as exc:
            link.waiting = None
            if survive and self._may_relaunch(exc):
                link.died = (exc, f"while waiting for the reply to {what}")
                return None
            self._fail(link, exc, f"while waiting for the reply to {what}")
        link.waiting = None
        return reply

    def _broadcast(self, plan: list[tuple[_Link, Message, str]]) -> list[Message]:
        """Send every command, then read every reply (the env sides work in parallel)."""
        for link, message, what in plan:
            self._send(link, message, what)
        self._await([link for link, _, _ in plan])
        return [self._receive(link) for link, _, _ in plan]  # type: ignore[misc]

    # -- relaunching a dead env program (max_restarts) --------------------------------------------

    def _may_relaunch(self, exc: RlayError) -> bool:
        """A broken connection (not an error reply, a timeout or a protocol error) to a launched
        program, with relaunches allowed: whether its program died is checked by :meth:`_relaunch`."""
        endpoints = self._endpoints
        return (
            self._max_restarts > 0
            and isinstance(exc, ConnectionClosed)
            and endpoints is not None
            and bool(endpoints.processes)
        )

    def _relaunch(self, link: _Link) -> str:
        """``link``'s program died: relaunch it and hand-shake again, in place (same index, same
        sub-envs). Returns the reason, for ``info["rlay_restart"]``. Raises :class:`EnvSideFailed`
        (closing everything, as without ``max_restarts``) when the program did not exit (the
        connection broke for another reason), or when relaunching would exceed ``max_restarts``."""
        assert link.died is not None and self._endpoints is not None
        exc, during = link.died
        link.died = None
        link.waiting = None
        endpoints = self._endpoints
        dead = endpoints.dead_program(link.index)
        if dead is None:
            self._fail(link, exc, during)
        code = dead.exited()
        assert code is not None
        cause: ConnectionClosed = dead.failure(f"{exc}; the env program exited")
        link.session.abandon(f"env side {link.index}'s program exited ({describe_returncode(code)})")
        last = cause.stderr.strip().splitlines()[-1:] if isinstance(cause, LaunchError) else []
        at = endpoints.processes.index(dead)
        failing = during
        while True:
            if self.restarts >= self._max_restarts:
                self._fail(
                    link, cause, f"{failing} (its program died; max_restarts={self._max_restarts} used up)"
                )
            self.restarts += 1
            try:
                where, stream = endpoints.relaunch(at, self._restart_timeout)
                fresh = _open_link(link.index, where, stream, link.offset, self)
                break
            except ConnectionClosed as failed:  # the new one died too (a LaunchError): again
                cause, failing = failed, "while relaunching its env program"
            except RlayError as failed:  # a timeout, an error reply, a bad handshake: give up
                self._fail(link, failed, "while relaunching its env program")
        for what, mine, theirs in (
            ("observation space", fresh.obs_space, link.obs_space),
            ("action space", fresh.act_space, link.act_space),
            ("number of sub-envs", fresh.n, link.n),
            ("autoreset mode", fresh.env_autoreset, link.env_autoreset),
        ):
            if mine != theirs:
                fresh.session.close(timeout=CLOSE_TIMEOUT)
                self._fail(
                    link,
                    UsageError(f"the relaunched env program has the {what} {mine}, before {theirs}"),
                    "while relaunching its env program",
                )
        link.session, link.address, link.needs_reset = fresh.session, fresh.address, True
        addresses = vars(self).get("addresses")
        if addresses is not None and link.index < len(addresses):
            addresses[link.index] = fresh.address
        why = (
            f"env side {link.index}'s program exited ({describe_returncode(code)}) {during}; relaunched it "
            f"(restart {self.restarts} of max_restarts={self._max_restarts})"
        )
        if last:
            why += f"; its last stderr line: {last[0][:200]}"
        log.warning("! %s", why)
        return why

    def _request_surviving(self, link: _Link, message: Message, what: str) -> tuple[Message, str]:
        """``link``'s program died before answering ``message``: relaunch it (again, if it dies
        again, within ``max_restarts``) and send ``message`` to the new one. The reply and why."""
        while True:
            why = self._relaunch(link)
            self._send(link, message, what, survive=True)
            reply = self._receive(link, survive=True)
            if reply is not None:
                link.needs_reset = False
                return reply, why

    def _restart_info(self, infos: dict[str, Any], link: _Link, why: str) -> dict[str, Any]:
        for i in link.sub_envs:
            infos = self._add_info(infos, {"rlay_restart": why}, i)
        return infos

    def _await(self, links: list[_Link]) -> None:
        """Wait for the replies of every shared-memory link at once (spec §16.6): one spin over
        all, then one poll over all their sockets, instead of one wait per link."""
        if len(links) > 1:
            late = wait_all([link.session.engine.stream for link in links], self._timeout)
            self._late = {links[i].index for i in late}

    def _fail(self, link: _Link, exc: BaseException, during: str) -> NoReturn:
        """Close every connection (the others cleanly) and raise :class:`EnvSideFailed`."""
        session = link.session
        if isinstance(exc, ProtocolError) and not session.closed:
            # This side found the reply wrong (§10 shapes): tell the env side why, then hang up.
            try:
                session.fail(exc, during)
            except ProtocolError:
                pass
        if isinstance(exc, ConnectionClosed) and self._endpoints is not None:
            exc = self._endpoints.process_failure(link.index, exc)  # a launched program's exit
        session.abandon(f"env side {link.index} failed {during}: {exc}")
        link.waiting = None
        failure = EnvSideFailed(link.index, link.address, link.sub_envs, during, exc)
        self._pending_step = False
        self.close()
        self._closed_why = str(failure)
        raise failure from exc

    def close_extras(self, **kwargs: Any) -> None:
        """Drain replies still in flight, then CLOSE each env side (briefly waiting for each)."""
        links, self._links = self._links, []
        for link in links:
            if link.waiting is not None and not link.session.closed:
                try:
                    link.session.receive_reply(link.waiting, timeout=CLOSE_TIMEOUT)
                except RlayError:
                    pass
                link.waiting = None
        orderly = bool(links) and all(not link.session.closed for link in links)
        for link in links:
            link.session.close(timeout=CLOSE_TIMEOUT)
        self._pending_step = False
        if self._endpoints is not None:
            self._endpoints.close(SETTLE if orderly else 0.0)  # after CLOSE they exit by themselves
            self._endpoints = None

    def __del__(self) -> None:
        for link in getattr(self, "_links", ()):
            link.session.abandon("the vector env was garbage-collected")

    # -- gymnasium.vector.VectorEnv --------------------------------------------------------------

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset every sub-env, or those of ``options["reset_mask"]`` (a bool array of ``num_envs``).

        ``seed``: ``None``, an int (sub-env ``i`` gets ``seed + i``) or a sequence of
        ``num_envs`` int/None, as in ``SyncVectorEnv``.
        """
        links = self._live()
        seeds = self._seeds(seed)
        mask: np.ndarray | None = None
        if options is not None:
            if not isinstance(options, dict):
                raise UsageError(f"options must be a dict or None, actual {type(options).__name__}")
            options = dict(options)  # SyncVectorEnv pops reset_mask from the caller's dict; not us
            if "reset_mask" in options:
                mask = self._reset_mask(options.pop("reset_mask")).copy()
            check_free_value(options, where="options")
        plan: list[tuple[_Link, Message, str]] = []
        for link in links:
            lo, hi = link.offset, link.offset + link.n
            if mask is not None and not mask[lo:hi].any():
                continue
            if link.n == 1:
                message = Reset(seeds[lo], options)
            else:
                link_seed: Any = (
                    None if seed is None else seed + lo if isinstance(seed, int) else seeds[lo:hi]
                )
                opts = options
                if mask is not None and link.needs_reset:  # a relaunched batch: all its sub-envs
                    mask[lo:hi] = True
                elif mask is not None:
                    opts = {**(options or {}), "reset_mask": np.ascontiguousarray(mask[lo:hi])}
                message = Reset(link_seed, opts)
            plan.append((link, message, "RESET"))
        for link, command, what in plan:
            self._send(link, command, what, survive=True)
        replies: list[Message] = []
        restarted: dict[int, str] = {}  # link index -> why (max_restarts)
        for link, command, what in plan:
            reply = self._receive(link, survive=True)
            if reply is None:  # its program died: a fresh one gets the same RESET
                reply, restarted[link.index] = self._request_surviving(link, command, what)
            link.needs_reset = False
            replies.append(reply)
        infos: dict[str, Any] = {}
        for (link, _, _), reply in zip(plan, replies, strict=True):
            if type(reply) is not ResetResult:
                raise AssertionError(f"state machine let {reply!r} through as RESET_RESULT")
            try:
                obs = link.obs_codec.from_wire(reply.obs)
                info = self._link_info(link, reply.info)
            except ProtocolError as exc:
                self._fail(link, exc, "reading the reply to RESET")
            if link.n == 1:
                link.obs = batch_one(link.obs_space, obs)
                infos = self._add_info(infos, info, link.offset)
            else:
                link.obs = obs
                infos = info if self._single_batch else self._merge_info(infos, info, link)
            if link.index in restarted:
                infos = self._restart_info(infos, link, restarted[link.index])
        if mask is None:
            self._autoreset[:] = False
        else:
            self._autoreset[mask] = False
        self._was_reset = True
        return self._observations(), infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: Any) -> None:
        """Check ``actions`` and send each env side its part; :meth:`step_wait` gathers the results.

        Nothing is sent if an action is invalid (:class:`InvalidSubEnvAction`) or cannot be
        encoded: the vector env is then still usable.
        """
        links = self._live()
        if not self._was_reset:
            raise UsageError("call reset() before step()")
        if self._check_actions and not self._contains(actions):
            self._invalid_action(actions)
        mode = self.autoreset_mode
        if mode is AutoresetMode.DISABLED and self._autoreset.any():
            raise UsageError(
                f"sub-env {int(np.argmax(self._autoreset))} ended its episode and autoreset_mode is "
                "disabled: reset it (reset(options={'reset_mask': mask})) before stepping it again"
            )
        next_step = mode is AutoresetMode.NEXT_STEP
        single_act = self.single_action_space
        plan: list[tuple[_Link, Message, str]] = []
        for link in links:
            i = link.offset
            if link.needs_reset or (next_step and link.env_autoreset is None and self._autoreset[i]):
                plan.append((link, Reset(None, None), "RESET"))  # Gymnasium's next-step autoreset
                continue
            if link.n == 1:
                action = item(single_act, actions, i)
            elif self._single_batch:
                action = actions
            else:
                action = part(single_act, actions, i, i + link.n)
            plan.append((link, Step(link.act_codec.to_wire(action)), "STEP"))
        for link, message, what in plan:
            self._send(link, message, what, survive=True)
        self._pending_step = True

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Gather the results of :meth:`step_async`."""
        if not self._pending_step:
            raise UsageError("step_wait() needs a step_async() first")
        self._pending_step = False
        links = self._links
        self._await(links)
        replies = [self._receive(link, survive=True) for link in links]
        if self._single_batch and type(replies[0]) is StepResult:
            result = self._batch_result(links[0], replies[0])
            self._autoreset = np.logical_or(result[2], result[3])
            return result
        n_envs = self.num_envs
        rewards = np.zeros(n_envs, dtype=np.float64)
        terminations = np.zeros(n_envs, dtype=np.bool_)
        truncations = np.zeros(n_envs, dtype=np.bool_)
        results: list[tuple[Any, dict[str, Any]]] = []  # (obs, info) of each env side
        restarted: dict[int, str] = {}  # link index -> why its program was relaunched
        for link, reply in zip(links, replies, strict=True):
            lo, hi = link.offset, link.offset + link.n
            if reply is None:  # its program died: this episode is truncated (max_restarts)
                restarted[link.index] = self._relaunch(link)
                truncations[lo:hi] = True
                # The last observations stand as the final ones (the program took the rest along).
                last = link.obs if link.n > 1 else item(self.single_observation_space, link.obs, 0)
                results.append((copy_value(last), {}))
            elif type(reply) is ResetResult:  # next-step autoreset: reward 0, flags false
                link.needs_reset = False
                obs, info = self._single_reset(link, reply)
                results.append((obs, info))
            elif link.n > 1:
                obs, rewards[lo:hi], terminations[lo:hi], truncations[lo:hi], info = self._batch_result(
                    link, reply, copy=False
                )
                results.append((obs, info))
            else:
                obs, rewards[lo], terminations[lo], truncations[lo], info = self._single_step(link, reply)
                results.append((obs, info))
        # Same-step autoreset of plain env sides: reset those that just ended, all at once, and of
        # relaunched programs (whose episodes were cut short).
        ended: dict[int, tuple[Any, dict[str, Any]]] = {}
        if self.autoreset_mode is AutoresetMode.SAME_STEP:
            done = [
                link
                for link in links
                if link.index in restarted
                or (link.env_autoreset is None and (terminations[link.offset] or truncations[link.offset]))
            ]
            plan = [(link, Reset(None, None), "RESET") for link in done]
            for link, message, what in plan:
                self._send(link, message, what, survive=True)
            for link, message, what in plan:
                reply = self._receive(link, survive=True)
                if reply is None:
                    reply, restarted[link.index] = self._request_surviving(link, message, what)
                link.needs_reset = False
                ended[link.index] = self._single_reset(link, reply)
        infos: dict[str, Any] = {}
        for link, (obs, info) in zip(links, results, strict=True):
            if link.index in restarted:
                infos = self._restart_info(infos, link, restarted[link.index])
            if link.n > 1 and link.index in ended:  # a relaunched batch, reset (same-step)
                for j in range(link.n):
                    final = {"final_obs": item(self.single_observation_space, obs, j), "final_info": {}}
                    infos = self._add_info(infos, final, link.offset + j)
                obs, info = ended[link.index]
            if link.n > 1:
                link.obs = obs
                if info:
                    infos = self._merge_info(infos, info, link)
                continue
            if link.index in ended:  # as SyncVectorEnv orders it: final_obs, final_info, reset info
                infos = self._add_info(infos, {"final_obs": obs, "final_info": info}, link.offset)
                obs, info = ended[link.index]
            link.obs = batch_one(link.obs_space, obs)
            infos = self._add_info(infos, info, link.offset)
        self._autoreset = np.logical_or(terminations, truncations)
        return self._observations(), rewards, terminations, truncations, infos

    def render(self) -> tuple[Any, ...] | None:
        links = self._live()
        if self.render_mode is None:
            warnings.warn(
                "render() was called but the env sides have no render mode; start them with one "
                "(for example render_mode='rgb_array')",
                stacklevel=2,
            )
            return None
        replies = self._broadcast([(link, Render(), "RENDER") for link in links])
        frames: list[Any] = []
        for link, reply in zip(links, replies, strict=True):
            if type(reply) is not RenderResult:
                raise AssertionError(f"state machine let {reply!r} through as RENDER_RESULT")
            frame = free_from_wire(reply.frame)
            if link.n == 1:
                frames.append(frame)
            elif frame is None:
                frames.extend([None] * link.n)
            elif type(frame) is list and len(frame) == link.n:
                frames.extend(frame)
            else:
                self._fail(
                    link,
                    ProtocolError(
                        ErrorCode.BAD_FIELD,
                        f"RENDER_RESULT.frame of a batch of {link.n} sub-envs must be nil or an array "
                        f"of {link.n} frames, got {type(frame).__name__}",
                    ),
                    "reading the reply to RENDER",
                )
        return tuple(frames)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call a function the env sides registered under ``name`` (spec §6 ``CALL``): one result
        per sub-env (an env side hosting a batch answers an array of one per sub-env)."""
        links = self._live()
        check_free_value(list(args), where="call args")
        check_free_value(kwargs, where="call kwargs")
        what = f"CALL {name!r}"
        replies = self._broadcast([(link, Call(name, list(args), kwargs), what) for link in links])
        values: list[Any] = []
        for link, reply in zip(links, replies, strict=True):
            if type(reply) is not CallResult:
                raise AssertionError(f"state machine let {reply!r} through as CALL_RESULT")
            value = free_from_wire(reply.value)
            if link.n == 1:
                values.append(value)
            elif type(value) is list and len(value) == link.n:
                values.extend(value)
            else:
                self._fail(
                    link,
                    ProtocolError(
                        ErrorCode.BAD_FIELD,
                        f"CALL_RESULT.value of a batch of {link.n} sub-envs must be an array of "
                        f"{link.n} values, one per sub-env, got {type(value).__name__}",
                    ),
                    f"reading the reply to {what}",
                )
        return tuple(values)

    # -- attributes and engine settings (spec §19) --------------------------------------------

    @property
    def attributes(self) -> dict[str, _attrs.Attribute]:
        """The typed attributes every sub-env offers, name -> :class:`rlay.Attribute` (asked once
        with ``rlay.describe``; all env sides must offer the same)."""
        if self._attributes is None:
            links = self._live()
            tables: list[tuple[_Link, dict[str, _attrs.Attribute]]] = []
            replies = self._call_each(_attrs.DESCRIBE, [[] for _ in links], ErrorCode.NOT_SUPPORTED)
            for link, value in zip(links, replies, strict=True):
                try:
                    for one in [] if isinstance(value, RemoteError) else [value] if link.n == 1 else value:
                        tables.append((link, _attrs.parse_describe(one)))
                except ProtocolError as exc:
                    self._fail(link, exc, f"reading the reply to CALL {_attrs.DESCRIBE!r}")
                if isinstance(value, RemoteError):
                    tables.append((link, {}))
            for link, table in tables:
                if table != tables[0][1]:
                    raise UsageError(
                        f"env side {link.index} ({link.address}) offers the attributes {sorted(table)}, "
                        f"env side 0 {sorted(tables[0][1])} (or with other descriptors); all sub-envs "
                        "of a vector env must offer the same to use get_attr/set_attr"
                    )
            self._attributes = tables[0][1]
        return dict(self._attributes)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Every sub-env's value of the env-side attribute ``name`` (§19 ``rlay.get``)."""
        attr = _attrs.lookup(self.attributes, name)
        links = self._links
        replies = self._call_each(_attrs.GET, [[attr.name] for _ in links], ErrorCode.BAD_ATTRIBUTE)
        out: list[Any] = []
        for link, value in zip(links, replies, strict=True):
            if isinstance(value, RemoteError):
                raise value
            try:
                out.extend(_attrs.from_reply(attr, v) for v in ([value] if link.n == 1 else value))
            except ProtocolError as exc:
                self._fail(link, exc, f"reading the reply to CALL {_attrs.GET!r}")
        return tuple(out)

    def set_attr(self, name: str, values: Any) -> None:
        """Set the env-side attribute ``name`` (§19 ``rlay.set``): ``values`` is one value per
        sub-env (a list or tuple) or one value for all, as in Gymnasium's ``VectorEnv``. Every
        value is checked before anything is sent (:class:`rlay.InvalidAttribute`)."""
        attr = _attrs.lookup(self.attributes, name)
        n_envs = self.num_envs
        if isinstance(values, (list, tuple)):
            if len(values) != n_envs:
                raise _attrs.InvalidAttribute(
                    attr.name, f"expected one value or {n_envs} (one per sub-env), actual {len(values)}"
                )
            each = []
            for i, v in enumerate(values):
                try:
                    each.append(_attrs.for_set(attr, v))
                except _attrs.InvalidAttribute as exc:
                    raise _attrs.InvalidAttribute(attr.name, f"sub-env {i}: {exc.detail}") from None
        else:
            each = [_attrs.for_set(attr, values)] * n_envs
        links = self._links
        plan = [
            [attr.name, each[link.offset] if link.n == 1 else each[link.offset : link.offset + link.n]]
            for link in links
        ]
        for value in self._call_each(_attrs.SET, plan, ErrorCode.BAD_ATTRIBUTE):
            if isinstance(value, RemoteError):
                raise value

    def _call_each(self, name: str, arg_lists: list[list[Any]], tolerate: ErrorCode) -> list[Any]:
        """One CALL per env side, each with its own arguments; each reply's value. A non-fatal
        ERROR with the code ``tolerate`` is returned as its :class:`RemoteError` (the connections
        stay usable: §19's refusals change nothing); any other failure fails the vector env."""
        links = self._live()
        what = f"CALL {name!r}"
        for link, args in zip(links, arg_lists, strict=True):
            self._send(link, Call(name, args, {}), what)
        out: list[Any] = []
        for link in links:
            try:
                reply = link.session.receive_reply(what)
            except RemoteError as exc:
                if exc.fatal or exc.code != tolerate:
                    self._fail(link, exc, f"while waiting for the reply to {what}")
                link.waiting = None
                out.append(exc)
                continue
            except RlayError as exc:
                self._fail(link, exc, f"while waiting for the reply to {what}")
            link.waiting = None
            if type(reply) is not CallResult:
                raise AssertionError(f"state machine let {reply!r} through as CALL_RESULT")
            out.append(free_from_wire(reply.value))  # n > 1: n values, checked by the core (§10)
        return out

    # -- helpers ---------------------------------------------------------------------------------

    def _seeds(self, seed: Any) -> list[Any]:
        n_envs = self.num_envs
        if seed is None:
            return [None] * n_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
            seeds = [int(seed) + i for i in range(n_envs)]
            if seeds[0] < 0 or seeds[-1] > 2**64 - 1:  # §10: every sub-env's seed is a u64
                raise UsageError(
                    f"seed {int(seed)}: sub-env i is seeded with seed + i, which must be in 0 .. 2**64 - 1 "
                    f"for all {n_envs} sub-envs"
                )
            return seeds
        if isinstance(seed, (list, tuple)):
            if len(seed) != n_envs:
                raise UsageError(f"seed: expected {n_envs} seeds (one per sub-env), actual {len(seed)}")
            out: list[Any] = []
            for i, s in enumerate(seed):
                if s is not None and (
                    not isinstance(s, (int, np.integer)) or isinstance(s, (bool, np.bool_))
                ):
                    raise UsageError(
                        f"seed[{i}]: expected an int or None, actual {type(s).__name__} {clip(s, 40)}"
                    )
                if s is not None and not 0 <= int(s) <= 2**64 - 1:
                    raise UsageError(f"seed[{i}] {int(s)} is outside 0 .. 2**64 - 1")
                out.append(None if s is None else int(s))
            return out
        raise UsageError(
            f"seed: expected None, an int or a list of {n_envs} int/None, actual {type(seed).__name__}"
        )

    def _reset_mask(self, mask: Any) -> np.ndarray:
        n_envs = self.num_envs
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (n_envs,):
            what = (
                f"{mask.dtype} array of shape {mask.shape}"
                if isinstance(mask, np.ndarray)
                else type(mask).__name__
            )
            raise UsageError(
                f"options['reset_mask']: expected a bool array of shape ({n_envs},), actual {what}"
            )
        if not mask.any():
            raise UsageError("options['reset_mask']: expected at least one True (a sub-env to reset)")
        return mask

    def _invalid_action(self, actions: Any) -> NoReturn:
        single = self.single_action_space
        for i in range(self.num_envs):
            try:
                a = item(single, actions, i)
                ok = single.contains(a)
            except (TypeError, IndexError, KeyError, ValueError):
                break  # not even shaped like a batch: report the whole value
            if not ok:
                raise InvalidSubEnvAction(i, a, single)
        raise InvalidAction(actions, self.action_space)

    def _link_info(self, link: _Link, info: dict[str, Any]) -> dict[str, Any]:
        final_obs = link.single_obs_codec if link.env_autoreset is AutoresetMode.SAME_STEP else None
        if link.n > 1:
            return info_from_wire(info, final_obs)
        out = free_from_wire(info) if info else {}
        if final_obs is not None and out.get("final_obs") is not None:
            out["final_obs"] = final_obs.from_wire(info["final_obs"])
        return out

    def _single_reset(self, link: _Link, reply: Message) -> tuple[Any, dict[str, Any]]:
        if type(reply) is not ResetResult:
            raise AssertionError(f"state machine let {reply!r} through as RESET_RESULT")
        try:
            return link.obs_codec.from_wire(reply.obs), self._link_info(link, reply.info)
        except ProtocolError as exc:
            self._fail(link, exc, "reading the reply to RESET")

    def _single_step(self, link: _Link, reply: Message) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if type(reply) is not StepResult:
            raise AssertionError(f"state machine let {reply!r} through as STEP_RESULT")
        try:  # the reply's fields were checked against num_envs by the protocol core (§10)
            obs = link.obs_codec.from_wire(reply.obs)
            info = self._link_info(link, reply.info)
        except ProtocolError as exc:
            self._fail(link, exc, "reading the reply to STEP")
        return obs, reply.reward, reply.terminated, reply.truncated, info

    def _batch_result(
        self, link: _Link, reply: Message, copy: bool | None = None
    ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if type(reply) is not StepResult:
            raise AssertionError(f"state machine let {reply!r} through as STEP_RESULT")
        try:  # reward and flags were checked against num_envs by the protocol core (§10)
            obs = link.obs_codec.from_wire(reply.obs)
            info = self._link_info(link, reply.info)
        except ProtocolError as exc:
            self._fail(link, exc, "reading the reply to STEP")
        link.obs = obs
        if self.copy if copy is None else copy:
            obs = copy_value(obs)
        # np.array copies: the received tensors are read-only views on the frame.
        return obs, np.array(reply.reward), np.array(reply.terminated), np.array(reply.truncated), info

    def _observations(self) -> Any:
        links = self._links
        if len(links) == 1:
            return copy_value(links[0].obs) if self.copy else links[0].obs
        return join(self.single_observation_space, [link.obs for link in links])  # a new value

    def _merge_info(self, infos: dict[str, Any], info: dict[str, Any], link: _Link) -> dict[str, Any]:
        """Place a batch's vector ``info`` at its sub-envs, as ``_add_info`` would one by one."""
        n, lo, n_envs = link.n, link.offset, self.num_envs
        for key, value in info.items():
            if key.startswith("_") and key[1:] in info:
                continue
            mask = info.get(f"_{key}")
            if not (type(mask) is np.ndarray and mask.dtype == np.bool_ and mask.shape == (n,)):
                self._fail(
                    link,
                    ProtocolError(
                        ErrorCode.BAD_VALUE,
                        f"info[{key!r}] of a batch of {n} sub-envs needs a mask info['_{key}'], a bool "
                        f"tensor of shape ({n},) (§10), got {_what(mask)}",
                    ),
                    "reading a reply's info",
                )
            if isinstance(value, dict):
                infos[key] = self._merge_info(infos.get(key, {}), value, link)
            else:
                if not isinstance(value, np.ndarray) or value.ndim < 1 or len(value) != n:
                    self._fail(
                        link,
                        ProtocolError(
                            ErrorCode.BAD_VALUE,
                            f"info[{key!r}] of a batch of {n} sub-envs must hold {n} entries (§10), "
                            f"got {_what(value)}",
                        ),
                        "reading a reply's info",
                    )
                array = infos.get(key)
                if array is None:
                    if value.dtype == object:
                        array = np.full(n_envs, None, dtype=object)
                    else:
                        array = np.zeros((n_envs, *value.shape[1:]), dtype=value.dtype)
                where = np.flatnonzero(mask)
                array[lo + where] = value[where]
                infos[key] = array
            total = infos.get(f"_{key}")
            if total is None:
                total = np.zeros(n_envs, dtype=np.bool_)
            total[lo : lo + n] |= mask
            infos[f"_{key}"] = total
        return infos


def _what(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"a {v.dtype} tensor of shape {v.shape}"
    return f"{type(v).__name__} {clip(v, 40)}"


class ClientVectorEnv(_RemoteVectorEnv):
    """A ``gymnasium.vector.VectorEnv`` over env sides listening at ``address``.

    ``address`` is one address, or a list of them: one connection each, stepped concurrently,
    their sub-envs concatenated in order. Spaces, render mode and metadata come from the env
    sides (which must agree). ``autoreset_mode`` (default: the env sides', else next-step) is
    also what this side does for plain env sides. ``copy=True`` returns writable observations of
    its own (as ``SyncVectorEnv``); ``False`` may return read-only views of received data.

    ``max_restarts`` (with ``launch``): how many times in all a launched program that died (its
    connection broke and it exited: a crash, ``kill -9``) is relaunched instead of failing. In
    the ``step`` where it is noticed, its sub-envs' episodes end truncated with the reason in
    ``info["rlay_restart"]`` (mask ``info["_rlay_restart"]``), the last observations standing as
    the final ones; the new program's sub-envs are reset as the autoreset mode says (a ``reset``
    is re-sent to it). The other sub-envs do not notice. :attr:`restarts` counts relaunches; one
    more than ``max_restarts`` raises :class:`EnvSideFailed` as without the option.
    """

    def __init__(
        self,
        address: str | Sequence[str] | None = None,
        *,
        launch: Sequence[str] | None = None,
        num_processes: int = 1,
        launch_env: dict[str, str] | None = None,
        launch_cwd: str | None = None,
        max_restarts: int = 0,
        token: str | bytes | None = None,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str | None = None,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        check_actions: bool = True,
        shm: bool = True,
        copy: bool = True,
    ) -> None:
        super().__init__(
            render_mode=render_mode,
            autoreset_mode=autoreset_mode,
            handshake_timeout=handshake_timeout,
            timeout=timeout,
            max_frame_size=max_frame_size,
            check_actions=check_actions,
            copy=copy,
            max_restarts=max_restarts,
            restart_timeout=connect_timeout,
        )
        self._shm = shm  # §16: shared memory on unix sockets unless False (or RLAY_SHM=0)
        if max_restarts and launch is None:
            raise UsageError("max_restarts relaunches env programs: it needs launch=[...]")
        try:
            self._endpoints = Endpoints(
                "dial",
                address,
                launch=launch,
                count=num_processes,
                launch_env=launch_env,
                launch_cwd=launch_cwd,
                token=token,
                who="ClientVectorEnv",
            )
        except BaseException:
            self._abort("launching failed")
            raise
        for _ in self._endpoints.addresses:
            self._add_link(connect_timeout)
        self.addresses = [link.address for link in self._links]
        self._setup()


class ServerVectorEnv(LazyAccept, _RemoteVectorEnv):
    """A ``gymnasium.vector.VectorEnv`` that listens at ``address`` for ``num_connections`` env
    sides to dial in (a game's own main loop; a batch of sub-envs each, or one).

    Their sub-envs are concatenated in the order the env sides connected. ``address`` defaults
    to a free TCP port; :attr:`address` is the address bound, to hand to the env programs. With
    ``wait=False`` the constructor returns at once and :meth:`accept` (or the first use of the
    spaces, ``reset`` …) waits for them. ``max_restarts``: as :class:`ClientVectorEnv`'s (a
    relaunched program dials in again).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_connections: int = 1,
        wait: bool = True,
        launch: Sequence[str] | None = None,
        launch_env: dict[str, str] | None = None,
        launch_cwd: str | None = None,
        max_restarts: int = 0,
        token: str | bytes | None = None,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str | None = None,
        accept_timeout: float | None = DEFAULT_ACCEPT_TIMEOUT,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        check_actions: bool = True,
        shm: bool = True,
        copy: bool = True,
    ) -> None:
        if type(num_connections) is not int or num_connections < 1:
            raise UsageError(f"num_connections must be an int >= 1, got {num_connections!r}")
        super().__init__(
            render_mode=render_mode,
            autoreset_mode=autoreset_mode,
            handshake_timeout=handshake_timeout,
            timeout=timeout,
            max_frame_size=max_frame_size,
            check_actions=check_actions,
            copy=copy,
            max_restarts=max_restarts,
            restart_timeout=accept_timeout,
        )
        self._shm = shm  # §16: shared memory on unix sockets unless False (or RLAY_SHM=0)
        if max_restarts and launch is None:
            raise UsageError("max_restarts relaunches env programs: it needs launch=[...]")
        self.num_connections = num_connections
        self._accept_timeout = accept_timeout
        self._ready = False
        try:
            self._endpoints = Endpoints(
                "listen",
                address,
                launch=launch,
                count=num_connections,  # each launched program dials this one address
                launch_env=launch_env,
                launch_cwd=launch_cwd,
                token=token,
                who="ServerVectorEnv",
            )
            self.address = self._endpoints.addresses[0]
            self.addresses = [self.address] * num_connections  # every env side dials this one
            if wait or launch is not None:
                self.accept()
        except BaseException:
            if not self._closed_why:
                self._abort("starting failed")
            raise

    _FROM_ENV_SIDE = frozenset(
        {
            "num_envs",
            "observation_space",
            "action_space",
            "single_observation_space",
            "single_action_space",
            "autoreset_mode",
        }
    )

    def _accepted(self) -> bool:
        return bool(self.__dict__.get("_ready"))

    def accept(self, timeout: Any = ...) -> None:
        """Wait for the env sides to dial in and hand-shake (no-op once they have)."""
        if self._ready:
            return
        if self._endpoints is None:
            raise ConnectionClosed("the vector env is closed")
        seconds = self._accept_timeout if timeout is ... else timeout
        while len(self._links) < self.num_connections:
            self._add_link(seconds)
        self._setup()
        self._ready = True

    def _live(self) -> list[_Link]:
        if not self.__dict__.get("_ready") and self.__dict__.get("_endpoints") is not None:
            self.accept()
        return super()._live()


def make_vec(
    launch: Sequence[str], num_processes: int = 1, *, server: bool = False, **kwargs: Any
) -> ClientVectorEnv | ServerVectorEnv:
    """A vector env over ``num_processes`` env programs that rlay starts and ends itself.

    Each program gets a fresh address (``{address}`` in its arguments, ``RLAY_ADDRESS`` in its
    environment): with ``server=False`` it listens there and rlay dials it
    (:class:`ClientVectorEnv`); with ``server=True`` rlay listens and every program dials in
    (:class:`ServerVectorEnv`). Programs that host a batch of sub-envs each are concatenated.
    Other keyword arguments go to the vector env (``autoreset_mode``, ``timeout``, ``copy``,
    ``max_restarts`` to relaunch programs that die …).
    """
    if server:
        return ServerVectorEnv(launch=launch, num_connections=num_processes, **kwargs)
    return ClientVectorEnv(launch=launch, num_processes=num_processes, **kwargs)
