"""The protocol state machine (spec/protocol.md §7-§8), without any I/O.

Rules this file obeys:
- It does not know which paradigm is in use (who dialled): only the role (agent or env).
- The conversation has one state, the same on both sides; ``TRANSITIONS`` *is* the table of §8.
  A message that is not in the table for the current state is ``UNEXPECTED_MESSAGE``.
- Bytes in (:meth:`Connection.receive_data`), messages out (:meth:`Connection.next_event`);
  messages in (:meth:`Connection.send`), bytes out (:meth:`Connection.data_to_send`).
- When the peer breaks the rules, the connection queues a fatal ``ERROR`` for the peer (so it
  learns why), moves to ``closed`` and raises :class:`ProtocolError`. The caller flushes
  :meth:`data_to_send` and closes the stream.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from typing import Any

import numpy as np

from rlay.errors import AuthenticationFailed, ProtocolError, UsageError, VersionMismatch, clip
from rlay.protocol import multiagent
from rlay.protocol.codec import Buffer, Encoder, decode
from rlay.protocol.fastpath import FastPaths
from rlay.protocol.framing import FrameReader, pack_header
from rlay.protocol.messages import (
    MESSAGE_TYPES,
    Auth,
    CallResult,
    EnvInfo,
    Error,
    Hello,
    Message,
    MultiResult,
    RenderResult,
    Reset,
    ShmAnswer,
    ShmOffer,
    Step,
    StepResult,
)
from rlay.protocol.wire import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_HANDSHAKE_FRAME_SIZE,
    DEFAULT_MAX_VALUES,
    PROTOCOL_NAME,
    PROTOCOL_VERSION,
    ErrorCode,
    Kind,
    Role,
)


class State(enum.Enum):
    HELLO = "hello"  # waiting for the peer's HELLO
    AUTH = "auth"  # §7.1: both announced `auth`; waiting for the peer's AUTH proof
    DESCRIBE = "describe"  # the env side owes ENV_INFO
    SHM = "shm"  # §16.1: both announced `shm`; the agent side owes its SHM offer
    SHM_ANSWER = "shm-answer"  # §16.1: the env side owes its SHM answer
    IDLE = "idle"  # no command outstanding
    RESET = "reset"  # a command is outstanding: its reply (or an ERROR) comes next
    STEP = "step"
    RENDER = "render"
    CALL = "call"
    CLOSE = "close"
    CLOSED = "closed"


#: §6: who may send each kind. HELLO and ERROR are sent by both.
SENDER: dict[Kind, Role | None] = {
    Kind.HELLO: None,
    Kind.AUTH: None,
    Kind.SHM: None,  # §16.1: the offer from the agent (state shm), the answer from the env
    Kind.ENV_INFO: Role.ENV,
    Kind.RESET: Role.AGENT,
    Kind.STEP: Role.AGENT,
    Kind.RENDER: Role.AGENT,
    Kind.CLOSE: Role.AGENT,
    Kind.CALL: Role.AGENT,
    Kind.RESET_RESULT: Role.ENV,
    Kind.STEP_RESULT: Role.ENV,
    Kind.RENDER_RESULT: Role.ENV,
    Kind.CLOSE_RESULT: Role.ENV,
    Kind.CALL_RESULT: Role.ENV,
    Kind.ERROR: None,
    Kind.MULTI_STEP: Role.AGENT,  # §18
    Kind.MULTI_RESULT: Role.ENV,
}

#: §8, the state machine. ERROR is handled by :func:`_after_error`.
TRANSITIONS: dict[tuple[State, Kind], State] = {
    (State.HELLO, Kind.HELLO): State.DESCRIBE,  # State.AUTH instead when both announced `auth`
    (State.AUTH, Kind.AUTH): State.DESCRIBE,
    (State.DESCRIBE, Kind.ENV_INFO): State.IDLE,  # State.SHM instead when both announced `shm`
    (State.SHM, Kind.SHM): State.SHM_ANSWER,  # the agent's offer (only the agent sends it here)
    (State.SHM_ANSWER, Kind.SHM): State.IDLE,  # the env's answer (only the env sends it here)
    (State.IDLE, Kind.RESET): State.RESET,
    (State.IDLE, Kind.STEP): State.STEP,
    (State.IDLE, Kind.RENDER): State.RENDER,
    (State.IDLE, Kind.CALL): State.CALL,
    (State.IDLE, Kind.CLOSE): State.CLOSE,
    (State.RESET, Kind.RESET_RESULT): State.IDLE,
    (State.STEP, Kind.STEP_RESULT): State.IDLE,
    (State.RENDER, Kind.RENDER_RESULT): State.IDLE,
    (State.CALL, Kind.CALL_RESULT): State.IDLE,
    (State.CLOSE, Kind.CLOSE_RESULT): State.CLOSED,
}

#: §16.1: who sends SHM in each state that allows it.
SHM_SENDER: dict[State, Role] = {State.SHM: Role.AGENT, State.SHM_ANSWER: Role.ENV}

#: §16.2: the layout version this implementation speaks, announced as ``"shm": SHM_LAYOUT``.
SHM_LAYOUT = 1

#: §18: the table of a session where both HELLOs announced `multi_agent`: MULTI_STEP replaces STEP,
#: and MULTI_RESULT answers both RESET and MULTI_STEP (RESET_RESULT and STEP_RESULT are not used).
MULTI_AGENT_TRANSITIONS: dict[tuple[State, Kind], State] = {
    key: nxt
    for key, nxt in TRANSITIONS.items()
    if key[1] not in (Kind.STEP, Kind.RESET_RESULT, Kind.STEP_RESULT)
} | {
    (State.IDLE, Kind.MULTI_STEP): State.STEP,
    (State.RESET, Kind.MULTI_RESULT): State.IDLE,
    (State.STEP, Kind.MULTI_RESULT): State.IDLE,
}

_COMMAND_STATES = frozenset({State.RESET, State.STEP, State.RENDER, State.CALL})


def _after_error(state: State, fatal: bool, sender: Role) -> State | None:
    """§8: where an ERROR leads, or None if it is not allowed here."""
    if state is State.CLOSED:
        return None
    if fatal:
        return State.CLOSED
    if sender is Role.ENV and state in _COMMAND_STATES:
        return State.IDLE
    if sender is Role.ENV and state is State.CLOSE:
        return State.CLOSED
    return None


_F64 = np.dtype("<f8")
_BOOL = np.dtype("bool")
_U64_MAX = (1 << 64) - 1
_LAST_ALWAYS_FATAL = int(ErrorCode.AUTH_FAILED)  # codes 1-15, and AUTH_FAILED (§7.1)


#: §7.1: the length of an `auth` nonce and of an AUTH proof.
AUTH_NONCE_SIZE = 32
_AUTH_LABEL = b"rlay-auth-v1\x00"


def auth_proof(secret: bytes, prover: Role, agent_nonce: bytes, env_nonce: bytes) -> bytes:
    """§7.1: HMAC-SHA256(secret, "rlay-auth-v1" 0x00 prover-role 0x00 agent_nonce env_nonce)."""
    transcript = _AUTH_LABEL + prover.value.encode() + b"\x00" + agent_nonce + env_nonce
    return hmac.new(secret, transcript, hashlib.sha256).digest()


def _token_bytes(token: bytes | str | None) -> bytes | None:
    if token is None:
        return None
    if isinstance(token, str):
        token = token.encode("utf-8")
    if type(token) is not bytes:
        raise UsageError(f"token must be a str or bytes, got {type(token).__name__}")
    return token or None  # an empty token is no token


def _is_shm_layout(value: Any) -> bool:
    """§16.1: ``"shm": 1`` announces layout 1; any other value (a later layout, a bool, a str)
    is ignored, so both sides stay on the socket."""
    return type(value) is int and value == SHM_LAYOUT


def _bad_field(detail: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FIELD, detail)


def _what(v: Any) -> str:
    if type(v) is np.ndarray:
        return f"a {v.dtype} tensor of shape {v.shape}"
    return f"{type(v).__name__} {clip(v, 40)}"


def _check_step_result(m: StepResult, n: int) -> None:
    """§10: reward/terminated/truncated are plain float/bool with one env, (N,) tensors with N."""
    reward, terminated, truncated = m.reward, m.terminated, m.truncated
    if n == 1:
        if type(reward) is not float:
            raise _bad_field(f"STEP_RESULT.reward of one env must be a float, got {_what(reward)}")
        if type(terminated) is not bool or type(truncated) is not bool:
            name, bad = (
                ("terminated", terminated) if type(terminated) is not bool else ("truncated", truncated)
            )
            raise _bad_field(f"STEP_RESULT.{name} of one env must be a bool, got {_what(bad)}")
        return
    for name, value, dtype in (
        ("reward", reward, _F64),
        ("terminated", terminated, _BOOL),
        ("truncated", truncated, _BOOL),
    ):
        if type(value) is not np.ndarray or value.dtype != dtype or value.shape != (n,):
            raise _bad_field(
                f"STEP_RESULT.{name} of a batch of {n} sub-envs must be a {dtype.name} tensor of shape "
                f"({n},), got {_what(value)}"
            )


def _check_reset(m: Reset, n: int) -> None:
    """§10: the seed of every sub-env must be in 0 … 2⁶⁴−1; reset_mask a bool tensor (N,)."""
    seed = m.seed
    if type(seed) is int:
        if seed < 0:
            raise _bad_field(f"RESET.seed must be >= 0, got {seed}")
        if seed + n - 1 > _U64_MAX:
            raise _bad_field(
                f"RESET.seed {seed}: the seed of sub-env {n - 1} (seed + {n - 1}) would exceed 2^64 - 1"
            )
    elif type(seed) is list:
        if n == 1:
            raise _bad_field("RESET.seed is an array, but num_envs is 1")
        if len(seed) != n:
            raise _bad_field(f"RESET.seed is an array of {len(seed)} seeds; expected one per sub-env ({n})")
        for i, s in enumerate(seed):
            if s is not None and s < 0:
                raise _bad_field(f"RESET.seed[{i}] must be >= 0, got {s}")
    options = m.options
    if n > 1 and options is not None and options.get("reset_mask") is not None:  # nil: all (§10)
        mask = options["reset_mask"]
        if type(mask) is not np.ndarray or mask.dtype != _BOOL or mask.shape != (n,):
            raise _bad_field(
                f"RESET.options.reset_mask must be a bool tensor of shape ({n},), got {_what(mask)}"
            )


def _check_call_result(m: CallResult, n: int) -> None:
    if n > 1 and (type(m.value) is not list or len(m.value) != n):
        raise _bad_field(
            f"CALL_RESULT.value must be an array of {n} values (num_envs is {n}), got {_what(m.value)}"
        )


def _check_render_result(m: RenderResult, n: int) -> None:
    frame = m.frame
    if n > 1 and frame is not None and (type(frame) is not list or len(frame) != n):
        raise _bad_field(
            f"RENDER_RESULT.frame must be nil or an array of {n} frames (num_envs is {n}), got {_what(frame)}"
        )


#: §10's checks of a received message against ``num_envs``, by message class.
_BATCH_CHECKS: dict[type[Message], Any] = {
    StepResult: _check_step_result,
    Reset: _check_reset,
    CallResult: _check_call_result,
    RenderResult: _check_render_result,
}


class Connection:
    """One side of one rlay session.

    Construct it when the stream is established: it queues this side's ``HELLO`` at once (§7),
    so call :meth:`data_to_send` and write the result. Then:

    - feed received bytes to :meth:`receive_data` (and :meth:`receive_eof` at end of stream),
      then call :meth:`next_event` until it returns ``None`` (it needs more bytes);
    - call :meth:`send` with a message, then write :meth:`data_to_send`.

    The peer's ``HELLO`` is checked here (protocol, version, role, in that order) and is returned
    by :meth:`next_event` like any other message.
    """

    def __init__(
        self,
        role: Role,
        *,
        sdk: str = "rlay-python",
        sdk_version: str = "",
        capabilities: dict[str, Any] | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        version: int = PROTOCOL_VERSION,
        max_handshake_frame_size: int = DEFAULT_MAX_HANDSHAKE_FRAME_SIZE,
        max_values: int = DEFAULT_MAX_VALUES,
        token: bytes | str | None = None,
        auth_required: bool = True,
        auth_nonce: bytes | None = None,
    ) -> None:
        self.role = role
        self.state = State.HELLO
        self.max_depth = max_depth
        self.max_values = max_values
        self.version = version
        self.peer_hello: Hello | None = None
        # §13: until the peer's HELLO is in, a frame is at most max_handshake_frame_size.
        self._reader = FrameReader(max_frame_size, max_handshake_frame_size)
        self._encoder = Encoder()
        self._out: list[Buffer] = []
        self._eof = False
        #: Templates for STEP / STEP_RESULT (rlay.protocol.fastpath); set once the spaces are known.
        self.fast: FastPaths | None = None
        #: ENV_INFO's ``num_envs`` once it was sent or received (§10), else None. The shapes of
        #: RESET's seed and reset_mask and of every reply's reward/flags/value/frame are checked
        #: against it here, so a layer above can rely on them.
        self.num_envs: int | None = None
        #: §7.1: the shared secret (None: this side does not authenticate) and this side's nonce.
        self._token = _token_bytes(token)
        self._auth_required = auth_required
        self._nonce = b""
        self._peer_nonce = b""
        self._pending_hello: Hello | None = None
        capabilities = dict(capabilities or {})
        #: §18: this side announced `multi_agent`; :attr:`multi_agent` once the peer did too. Then
        #: :attr:`possible_agents` (from ENV_INFO) and :attr:`agents` (the live agents after the
        #: last MULTI_RESULT) are tracked here, as ``num_envs`` is for §10.
        self._multi_offered = capabilities.get(multiagent.CAPABILITY) is True
        self.multi_agent = False
        self.possible_agents: tuple[str, ...] = ()
        self.agents: tuple[str, ...] = ()
        self._table = TRANSITIONS
        if self._token is not None:
            self._nonce = os.urandom(AUTH_NONCE_SIZE) if auth_nonce is None else bytes(auth_nonce)
            if len(self._nonce) != AUTH_NONCE_SIZE:
                raise UsageError(f"auth_nonce must be {AUTH_NONCE_SIZE} bytes")
            capabilities["auth"] = self._nonce
        #: True once the peer proved the shared secret (§7.1).
        self.authenticated = False
        #: §16.1: this side announced `shm` (the layer that knows the transport decides), and,
        #: once the peer's HELLO is in, whether both did: ENV_INFO then leads to state ``shm``.
        self._shm_announced = _is_shm_layout(capabilities.get("shm"))
        self.shm_agreed = False
        hello = Hello(PROTOCOL_NAME, version, role.value, sdk, sdk_version, capabilities)
        self._write(hello)

    # -- sending ---------------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Queue ``message``; raises :class:`UsageError` (nothing queued) if the table forbids it."""
        kind = message.KIND
        if kind is Kind.HELLO or kind is Kind.AUTH:
            raise UsageError(f"{kind.name} is sent by the Connection itself")
        sender = SENDER[kind]
        if sender is not None and sender is not self.role:
            raise UsageError(f"the {self.role.value} side cannot send {kind.name}")
        if kind is Kind.ERROR:
            assert isinstance(message, Error)
            nxt = _after_error(self.state, message.fatal, self.role)
        elif kind is Kind.SHM:
            mine = ShmOffer if self.role is Role.AGENT else ShmAnswer
            if type(message) is not mine or SHM_SENDER.get(self.state) is not self.role:
                raise UsageError(f"cannot send {type(message).__name__} in state {self.state.value!r}")
            nxt = TRANSITIONS[(self.state, kind)]
        else:
            nxt = self._next(kind)
        if nxt is None:
            raise UsageError(f"cannot send {kind.name} in state {self.state.value!r}")
        if kind is Kind.ENV_INFO and self.multi_agent:
            self.possible_agents = multiagent.possible_agents(message)  # type: ignore[arg-type]
        self._write(message)
        self.state = nxt
        if kind is Kind.ENV_INFO:
            self.num_envs = message.num_envs  # type: ignore[attr-defined]
        elif kind is Kind.MULTI_RESULT:
            self.agents = tuple(message.agents)  # type: ignore[attr-defined]

    def send_fatal(self, code: ErrorCode, message: str) -> None:
        """Queue a fatal ERROR (allowed in any state but ``closed``) and move to ``closed``."""
        if self.state is State.CLOSED:
            return
        self._write(Error(int(code), message, True, None, None))
        self.state = State.CLOSED

    def _write(self, message: Message) -> None:
        fast = self.fast
        if fast is not None:
            t = type(message)
            buffers = None
            if t is StepResult and fast.result is not None:
                buffers = fast.result.encode(message)  # type: ignore[arg-type]
            elif t is Step and fast.step is not None:
                buffers = fast.step.encode(message)  # type: ignore[arg-type]
            if buffers is not None:
                self._out.extend(buffers)
                return
        body_value = message.to_body()
        body, chunks, data_len = self._encoder.encode(body_value)
        self._out.append(pack_header(message.KIND, data_len, len(body)))
        self._out.extend(chunks)
        self._out.append(body)

    def encode_frame(self, message: Message) -> list[Buffer]:
        """Encode ``message`` as frame buffers without touching the state (tests, tools)."""
        body, chunks, data_len = self._encoder.encode(message.to_body())
        return [pack_header(message.KIND, data_len, len(body)), *chunks, body]

    @property
    def has_data_to_send(self) -> bool:
        """True if bytes are queued (e.g. the AUTH proof queued on receipt of the peer's HELLO)."""
        return bool(self._out)

    def data_to_send(self) -> list[Buffer]:
        """Return (and forget) the buffers to write, in order; a gather write sends them as is."""
        out = self._out
        self._out = []
        return out

    # -- receiving -------------------------------------------------------------------------------

    def receive_data(self, data: Buffer) -> None:
        """Feed bytes read from the stream. Raises :class:`ProtocolError` on a bad header."""
        if self._eof:
            raise UsageError("receive_data after receive_eof")
        try:
            self._reader.feed(data)
        except ProtocolError as exc:
            self._fail(exc)

    def receive_eof(self) -> None:
        """The stream ended. Raises ``TRUNCATED`` if it ended inside a frame."""
        self._eof = True
        try:
            self._reader.feed_eof()
        except ProtocolError as exc:
            self._fail(exc)

    @property
    def eof(self) -> bool:
        """True once the peer ended the stream and every complete frame has been taken."""
        return self._eof and not self._reader.frames

    def next_event(self) -> Message | None:
        """Return the next message received, or ``None`` if more bytes are needed.

        After end of stream with nothing left, returns ``None`` and :attr:`eof` is true.
        """
        frames = self._reader.frames
        while frames:
            kind, data, body = frames.popleft()
            try:
                message = self._receive(kind, data, body)
            except ProtocolError as exc:
                self._fail(exc)
                raise  # unreachable: _fail raises
            if message is not None:
                return message
        error = self._reader.error
        if error is not None:  # a bad header behind the frames just taken (framing.FrameReader)
            self._reader.error = None
            self._fail(error)
        return None

    def _receive(self, kind: int, data: memoryview, body: memoryview) -> Message | None:
        """§8's order of checks: (header, done by the reader,) body, state table, fields."""
        cls = MESSAGE_TYPES[kind]
        if kind == Kind.SHM:  # §16.1: the body is the sender's (the peer's) own
            cls = ShmOffer if self.role is Role.ENV else ShmAnswer
        message: Message | None = None
        fast = self.fast
        if fast is not None:  # a template match is a valid body with valid fields (fastpath.py)
            if cls is StepResult and fast.result is not None:
                message = fast.result.decode(data, body)
            elif cls is Step and fast.step is not None:
                message = fast.step.decode(data, body)
        value: Any = None
        if message is None:
            value = decode(body, data, max_depth=self.max_depth, max_values=self.max_values)
        state = self.state
        sender = SENDER[cls.KIND]
        if sender is not None and sender is self.role:
            raise ProtocolError(
                ErrorCode.UNEXPECTED_MESSAGE,
                f"received {cls.KIND.name} in state {state.value!r}, but only the {sender.value} "
                "side sends it and that is this side",
            )
        nxt = None if cls is Error else self._next(cls.KIND)
        if cls.KIND is Kind.SHM and SHM_SENDER.get(state) is not self.role.peer:
            nxt = None  # a second offer, or an answer before any offer
        if nxt is None and cls is not Error:
            raise ProtocolError(
                ErrorCode.UNEXPECTED_MESSAGE,
                f"received {cls.KIND.name} in state {state.value!r} (role {self.role.value})",
            )
        if message is None:
            if cls is Hello:
                self._check_hello_head(value)
            message = cls.from_body(value)
        if type(message) is Error:  # where an ERROR leads depends on its `fatal` field
            if not message.fatal and message.code <= _LAST_ALWAYS_FATAL:
                message.fatal = True  # §11: codes 1-16 are always fatal, whatever the flag says
            nxt = _after_error(state, message.fatal, self.role.peer)
            if nxt is None:
                raise ProtocolError(
                    ErrorCode.UNEXPECTED_MESSAGE,
                    f"received a {'fatal' if message.fatal else 'non-fatal'} ERROR in state "
                    f"{state.value!r} (role {self.role.value})",
                )
        elif type(message) is Hello:
            self.peer_hello = message
            self.shm_agreed = self._shm_announced and _is_shm_layout(message.capabilities.get("shm"))
            self._negotiate(message)
            if self._start_auth(message):
                self.state = State.AUTH
                return None  # the HELLO is returned once the peer's AUTH proved the secret
        elif type(message) is Auth:
            self._check_proof(message)
            self.state = nxt  # type: ignore[assignment]
            hello, self._pending_hello = self._pending_hello, None
            return hello
        elif type(message) is EnvInfo:
            self.num_envs = message.num_envs
            if self.multi_agent:
                self.possible_agents = multiagent.possible_agents(message)
        elif type(message) is MultiResult:
            self.agents = multiagent.check_result(
                message, self.possible_agents, self.agents, after_reset=state is State.RESET
            )
        elif self.num_envs is not None and cls in _BATCH_CHECKS:
            _BATCH_CHECKS[cls](message, self.num_envs)
        self.state = nxt  # type: ignore[assignment]
        return message

    def _next(self, kind: Kind) -> State | None:
        """The table of §8, with ENV_INFO leading to ``shm`` when both announced it (§16.1)."""
        nxt = self._table.get((self.state, kind))
        if nxt is State.IDLE and kind is Kind.ENV_INFO and self.shm_agreed:
            return State.SHM
        return nxt

    def _negotiate(self, hello: Hello) -> None:
        """§18: a session is multi-agent when both HELLOs announced `multi_agent`. A side that
        announced it serves or drives nothing else: a peer without it is refused (NOT_SUPPORTED)."""
        if not self._multi_offered:
            return  # v1: the peer's announcement is ignored, like any unknown capability
        if not multiagent.peer_announced(hello.capabilities):
            peer = "agent" if self.role is Role.ENV else "env"
            fix = (
                "connect with rlay.pettingzoo.ClientParallelEnv / ServerParallelEnv"
                if self.role is Role.ENV
                else "this env side serves a single-agent env: use rlay.ClientEnv / ServerEnv"
            )
            raise ProtocolError(
                ErrorCode.NOT_SUPPORTED,
                f"this {self.role.value} side is multi-agent (spec §18), but the {peer} side did not "
                f"announce the multi_agent capability; {fix}",
            )
        self.multi_agent = True
        self._table = MULTI_AGENT_TRANSITIONS

    def _start_auth(self, hello: Hello) -> bool:
        """§7.1: decide from both HELLOs whether to authenticate; if so queue this side's AUTH."""
        peer_nonce = hello.capabilities.get("auth")
        if self._token is None:
            if peer_nonce is None:
                return False
            raise AuthenticationFailed(
                "the peer requires authentication but this side has no token (set RLAY_TOKEN, or pass token=)"
            )
        if peer_nonce is None:
            if not self._auth_required:
                return False  # a token offered, not required (the launcher's own, rlay/envs/_endpoints.py)
            raise AuthenticationFailed(
                "this side requires authentication (it has a token) but the peer offered none "
                "(no token set there, or an SDK without authentication)"
            )
        if type(peer_nonce) is not bytes or len(peer_nonce) != AUTH_NONCE_SIZE:
            raise ProtocolError(
                ErrorCode.BAD_FIELD,
                f"HELLO.capabilities.auth must be a bin of {AUTH_NONCE_SIZE} bytes, "
                f"got {clip(peer_nonce, 40)}",
            )
        self._peer_nonce = peer_nonce
        self._pending_hello = hello
        self._write(Auth(auth_proof(self._token, self.role, *self._nonces())))
        return True

    def _nonces(self) -> tuple[bytes, bytes]:
        """(agent nonce, env nonce)."""
        if self.role is Role.AGENT:
            return self._nonce, self._peer_nonce
        return self._peer_nonce, self._nonce

    def _check_proof(self, message: Auth) -> None:
        assert self._token is not None  # state AUTH is reached only with a token
        expected = auth_proof(self._token, self.role.peer, *self._nonces())
        if not hmac.compare_digest(expected, message.proof):
            raise AuthenticationFailed(
                "the peer's proof of the token is wrong: the two sides have different tokens"
            )
        self.authenticated = True

    def _check_hello_head(self, value: Any) -> None:
        """§7: protocol, version, role — in that order, before any other field."""
        if type(value) is not dict:
            raise ProtocolError(ErrorCode.BAD_FIELD, "HELLO body must be a map")
        protocol = value.get("protocol")
        if protocol != PROTOCOL_NAME:
            raise ProtocolError(
                ErrorCode.BAD_MAGIC, f"the peer's HELLO names protocol {clip(protocol, 40)}, not 'rlay'"
            )
        version = value.get("version")
        if version != self.version or type(version) is not int:
            raise VersionMismatch(
                f"protocol version mismatch: this side speaks {self.version}, "
                f"the peer speaks {clip(version, 20)}"
            )
        role = value.get("role")
        if role != self.role.peer.value:
            raise ProtocolError(
                ErrorCode.ROLE_CONFLICT,
                f"both sides claim the role {self.role.value!r}"
                if role == self.role.value
                else f"the peer's role {clip(role, 20)} is not {self.role.peer.value!r}",
            )

    def _fail(self, exc: ProtocolError) -> None:
        """The peer broke the protocol: tell it (fatal ERROR), close, re-raise."""
        if self.state is not State.CLOSED:
            self._write(Error(int(exc.code), str(exc.detail), True, None, None))
            self.state = State.CLOSED
        raise exc
