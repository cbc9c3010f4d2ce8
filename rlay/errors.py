"""Every error rlay raises, with blame in the type.

- :class:`ProtocolError`: the *peer* broke the protocol (bad bytes, illegal message). Carries the
  §11 error code, so the same condition gets the same code in every implementation.
- :class:`UsageError`: *you* misused the API (sent a command while another is outstanding, an
  action outside the action space, a value that cannot be encoded).
- :class:`RemoteError`: the peer answered with an ``ERROR`` message (for example an exception in
  env code). Never re-instantiates the remote exception type: it carries its name and traceback.
- :class:`ConnectionClosed`, :class:`Timeout`: the transport ended or went silent; both say which
  stage was waiting for what.

Exceptions keep their fields as attributes and build the message in ``__str__``.
"""

from __future__ import annotations

import reprlib
import signal
from collections.abc import Sequence
from typing import Any

from rlay.protocol.wire import ErrorCode

#: How many characters of a peer's value an error message quotes at most.
CLIP = 200


class _ShortRepr(reprlib.Repr):
    """``reprlib`` cuts a str before quoting it; bytes need the same (its default quotes them
    whole, then cuts)."""

    def repr_bytes(self, x: bytes, level: int) -> str:
        return self._cut(bytes(x[: self.maxstring]), len(x))

    def repr_bytearray(self, x: bytearray, level: int) -> str:
        return self._cut(bytes(x[: self.maxstring]), len(x))

    def repr_int(self, x: int, level: int) -> str:
        return repr(x) if x.bit_length() <= 200 else f"<int of {x.bit_length()} bits>"

    def repr_memoryview(self, x: memoryview, level: int) -> str:
        return f"<memoryview of {x.nbytes} bytes>"

    def _cut(self, head: bytes, size: int) -> str:
        text = repr(head)
        return text if size <= len(head) else f"{text}... ({size} bytes)"


_SHORT = _ShortRepr()
_SHORT.maxlevel = 3
_SHORT.maxstring = CLIP
_SHORT.maxother = CLIP
_SHORT.maxlong = 60


def clip(value: Any, limit: int = CLIP) -> str:
    """A ``repr`` of ``value`` (a peer's value: untrusted, maybe huge) of at most about ``limit``
    characters, computed without formatting the whole value first (``f"{v!r:.200}"`` would).
    Use it wherever a peer's value goes into a message or a log line."""
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RlayError(Exception):
    """Base class of every rlay error."""


class ProtocolError(RlayError):
    """The peer sent something the protocol forbids (spec/protocol.md §11)."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(code, detail)
        self.code = ErrorCode(code)
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.code.name}: {self.detail}"


class VersionMismatch(ProtocolError):
    """The two sides speak different protocol versions (§7). Raised on both sides."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.VERSION_MISMATCH, detail)


class AuthenticationFailed(ProtocolError):
    """The shared secret was not proven (§7.1): wrong token, or a token on one side only.
    Raised on both sides; the secret itself never travels."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.AUTH_FAILED, detail)


class UsageError(RlayError):
    """The local program misused the API; nothing was sent and the session is intact."""


class EncodeError(UsageError, TypeError):
    """A local value cannot be put on the wire (wrong type, non-str key, unsupported dtype)."""


class InvalidAction(UsageError, ValueError):
    """An action is not in the action space; raised before anything is sent."""

    def __init__(self, action: object, space: object) -> None:
        super().__init__(action, space)
        self.action = action
        self.space = space

    def __str__(self) -> str:
        return f"action {self.action!r} is not in the action space {self.space}"


class SpaceError(UsageError):
    """A space cannot be described on the wire (an unknown space type, a non-str Dict key)."""


class RemoteError(RlayError):
    """The peer answered a command with an ``ERROR`` message (§6, §11)."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        fatal: bool,
        remote_type: str | None = None,
        traceback: str | None = None,
        during: str | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.fatal = fatal
        self.remote_type = remote_type
        self.traceback = traceback
        self.during = during

    @property
    def code_name(self) -> str:
        try:
            return ErrorCode(self.code).name
        except ValueError:
            return f"code {self.code}"

    def __str__(self) -> str:
        where = f" during {self.during}" if self.during else ""
        what = f"{self.remote_type}: {self.message}" if self.remote_type else self.message
        tail = "" if self.fatal else " (the session can continue)"
        text = f"env side reported {self.code_name}{where}: {what}{tail}"
        if self.traceback:
            text += "\n--- remote traceback ---\n" + self.traceback.rstrip()
        return text


class ConnectionClosed(RlayError):
    """The connection ended: the peer closed it, died, or it was closed locally."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class TlsError(ConnectionClosed):
    """A ``tls://`` connection failed in its TLS layer (spec §17.1): the handshake did not complete
    in time, the peer closed during it, or TLS itself failed. The connection is gone."""


class TlsCertificateError(TlsError):
    """The peer's TLS certificate was not accepted (unknown CA, wrong name, expired)."""


class TlsMismatch(TlsError):
    """A plain peer met a TLS one: a ``tcp://`` dialler reached a ``tls://`` listener, or a
    ``tls://`` dialler reached a plain listener. Both ends name it (the plain end as BAD_MAGIC)."""


class LaunchError(ConnectionClosed):
    """A launched env program could not be started, or exited (before it was ready, or during
    the session). A :class:`ConnectionClosed`: the env is gone either way, so code that restarts
    dead envs catches launched ones too. ``returncode`` says how it exited (negative: the signal
    that killed it; ``None``: it was still running), ``stderr`` holds its last lines."""

    def __init__(
        self, command: Sequence[str], detail: str, returncode: int | None = None, stderr: str = ""
    ) -> None:
        super().__init__(detail)
        self.args = (command, detail)
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr

    def __reduce__(self) -> tuple[Any, ...]:  # complete across processes (AsyncVectorEnv workers)
        return (type(self), (self.command, self.detail, self.returncode, self.stderr))

    def __str__(self) -> str:
        text = f"{self.detail}: {' '.join(self.command)}"
        if self.returncode is not None:
            text += f" ({describe_returncode(self.returncode)})"
        if self.stderr:
            text += "\n--- last lines of its stderr ---\n" + self.stderr.rstrip()
        return text


def describe_returncode(code: int) -> str:
    """``exit code 3``, ``killed by SIGSEGV``: a process's exit as people say it."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Timeout(RlayError, TimeoutError):
    """Nothing arrived in time. ``stage`` names what was being waited for."""

    def __init__(self, stage: str, seconds: float) -> None:
        super().__init__(stage, seconds)
        self.stage = stage
        self.seconds = seconds

    def __str__(self) -> str:
        return f"timed out after {self.seconds:g} s {self.stage}"


class NotAnswering(Timeout):
    """The peer is connected but sent no reply in time (spec §17.3): paused in a debugger or an
    editor, stopped (SIGSTOP), or busy. A dead peer is :class:`ConnectionClosed` instead, at once
    (its end of stream), or after the TCP keep-alive probes fail for a vanished host. The session
    is ended either way: a late reply could otherwise be taken for the next one."""

    def __str__(self) -> str:
        return (
            f"timed out after {self.seconds:g} s {self.stage}: the env side is connected but not "
            "answering (paused in a debugger or an editor, or stopped? a dead env side is reported "
            "as ConnectionClosed at once); the session was ended. timeout=None waits for a paused "
            "env side as long as it takes"
        )


class EnvSideFailed(RlayError):
    """One env side of a vector env failed; the vector env closed all its connections.

    ``index`` and ``address`` name the env side, ``sub_envs`` the sub-envs it hosted (``None``
    when it failed before it said how many), ``during`` what was being done, and ``cause`` the
    error itself (:class:`~rlay.RemoteError`, :class:`~rlay.ConnectionClosed`,
    :class:`~rlay.Timeout`, :class:`~rlay.ProtocolError`), also chained as ``__cause__``.
    """

    def __init__(
        self, index: int, address: str, sub_envs: range | None, during: str, cause: BaseException
    ) -> None:
        super().__init__(index, address, sub_envs, during, cause)
        self.index = index
        self.address = address
        self.sub_envs = sub_envs
        self.during = during
        self.cause = cause

    def __str__(self) -> str:
        hosted = ""
        if self.sub_envs is not None:
            r = self.sub_envs
            hosted = f", sub-env {r.start}" if len(r) == 1 else f", sub-envs {r.start}-{r.stop - 1}"
        return (
            f"env side {self.index} ({self.address}{hosted}) failed {self.during}: {self.cause}; "
            "every connection of the vector env is closed"
        )


class InvalidSubEnvAction(InvalidAction):
    """The action of sub-env ``index`` is outside the single action space; nothing was sent."""

    def __init__(self, index: int, action: object, space: object) -> None:
        super().__init__(action, space)
        self.index = index

    def __str__(self) -> str:
        return f"sub-env {self.index}: {super().__str__()}"


class InvalidAgentAction(InvalidAction):
    """Multi-agent (§18): the action of ``agent`` is outside its action space; nothing was sent."""

    def __init__(self, agent: str, action: object, space: object) -> None:
        super().__init__(action, space)
        self.agent = agent

    def __str__(self) -> str:
        return f"agent {self.agent!r}: {super().__str__()}"


class AgentMismatch(UsageError):
    """Multi-agent (§18): a step's actions are not one per live agent (an unknown or departed
    agent, or a live agent without an action); nothing was sent. The env side answers the same
    fault with ``AGENT_MISMATCH``."""
