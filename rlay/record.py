"""Record a session's frames to a file; replay them against a fresh env side, or serve them.

A recording is what the agent side's transport carried, frame by frame, in the protocol's own
framing (spec/protocol.md §2), so any tool that reads rlay frames reads it:

- a file header of 20 bytes: the magic ``RLAYREC\\0`` (8 bytes), the format version (u16, 1),
  flags (u16, 0), the wall-clock start (f64, seconds since the Unix epoch), little-endian;
- then one record per frame: a direction byte (``>`` agent to env side, ``<`` env side to
  agent, as in rlay's log lines), the time since the start (u64, nanoseconds, monotonic clock),
  and the frame's exact bytes (its 12-byte header says how long it is).

:class:`RecordingStream` tees a transport :class:`~rlay.transports.Stream` into a file
(``ClientEnv(..., record=PATH)``, ``rlay record``). :func:`replay` re-sends the recorded commands
to a fresh env side and returns the first reply that differs (a determinism check);
:func:`serve_recording` plays the env side's part from the file, refusing a command that differs
from the recording, so tests can run without the engine.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from rlay.errors import ConnectionClosed, ProtocolError, RlayError, Timeout, clip
from rlay.protocol.codec import Buffer, Encoder, decode
from rlay.protocol.framing import FrameReader, check_header, pack_header
from rlay.protocol.messages import Error
from rlay.protocol.wire import HEADER, HEADER_SIZE, ErrorCode, Kind
from rlay.protocol.wire import MAGIC as WIRE_MAGIC
from rlay.transports import Stream

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Mismatch",
    "RecordedFrame",
    "Recording",
    "RecordingError",
    "RecordingStream",
    "load",
    "replay",
    "serve_recording",
]

log = logging.getLogger("rlay")

MAGIC = b"RLAYREC\x00"
FORMAT_VERSION = 1
FILE_HEADER = struct.Struct("<8sHHd")  # magic, version, flags, wall-clock start
RECORD_HEADER = struct.Struct("<cQ")  # direction, nanoseconds since the start
TO_ENV = b">"
TO_AGENT = b"<"
#: A recorded frame may be as large as the protocol allows any frame to be (§13's hard ceiling).
_MAX_FRAME = 0xFFFFFFFF * 2
#: The remote type name of the ERROR that serve_recording answers a differing command with.
MISMATCH_TYPE = "rlay.record.ReplayMismatch"


class RecordingError(RlayError):
    """A recording file cannot be read: not a recording, another format version, truncated."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(path, detail)
        self.path = path
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


# -- recording -------------------------------------------------------------------------------------


class _Splitter:
    """Cuts one direction's byte stream into frames (the header gives each frame's length)."""

    def __init__(self, recorder: _Recorder, direction: bytes) -> None:
        self._recorder = recorder
        self._direction = direction
        self._buf = bytearray()
        self.broken = False

    def feed(self, data: Buffer) -> None:
        if self.broken:
            return
        buf = self._buf
        buf += data  # type: ignore[operator]
        while len(buf) >= HEADER_SIZE:
            magic, _kind, _flags, data_len, body_len = HEADER.unpack_from(buf)
            if magic != WIRE_MAGIC:
                # Not rlay bytes: the session fails on them; the recording stops at this point.
                log.warning("! recording: bytes that are not an rlay frame; this direction stops here")
                self.broken = True
                buf.clear()
                return
            size = HEADER_SIZE + data_len + body_len
            if len(buf) < size:
                return
            self._recorder.write(self._direction, bytes(buf[:size]))
            del buf[:size]


class _Recorder:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: IO[bytes] | None = open(self.path, "wb")  # closed by close()
        self._start = time.monotonic_ns()
        self._file.write(FILE_HEADER.pack(MAGIC, FORMAT_VERSION, 0, time.time()))
        self._file.flush()
        self.frames = 0

    def write(self, direction: bytes, frame: bytes) -> None:
        file = self._file
        if file is None:
            return
        # One write and a flush per frame: a recording survives the agent's crash up to its last
        # whole frame. Recording is a debugging tool; this costs a system call per frame.
        file.write(RECORD_HEADER.pack(direction, time.monotonic_ns() - self._start) + frame)
        file.flush()
        self.frames += 1

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()


class RecordingStream:
    """A :class:`~rlay.transports.Stream` that writes every whole frame sent (``>``) and received
    (``<``) to ``path`` as it passes. The file is closed with the stream."""

    def __init__(self, stream: Stream, path: str | os.PathLike[str]) -> None:
        self.inner = stream
        self.peer = stream.peer
        self.recorder = _Recorder(path)
        self._sent = _Splitter(self.recorder, TO_ENV)
        self._received = _Splitter(self.recorder, TO_AGENT)

    def send(self, buffers: Any, timeout: float | None = None, stage: str = "sending") -> None:
        self.inner.send(buffers, timeout, stage)
        for b in buffers:
            self._sent.feed(memoryview(b).cast("B"))

    def recv(self, timeout: float | None = None, stage: str = "receiving") -> bytes:
        data = self.inner.recv(timeout, stage)
        if data:
            self._received.feed(data)
        return data

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.recorder.close()


# -- reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedFrame:
    direction: bytes  #: TO_ENV (a command, or the agent's HELLO) or TO_AGENT (a reply)
    t: float  #: seconds since the recording started
    kind: int
    raw: bytes  #: the frame's exact bytes, header included

    def value(self) -> Any:
        """The frame's body decoded (tensors as numpy arrays)."""
        _, _, _, data_len, body_len = HEADER.unpack_from(self.raw)
        view = memoryview(self.raw)[HEADER_SIZE:]
        return decode(view[data_len : data_len + body_len], view[:data_len])

    @property
    def name(self) -> str:
        try:
            return Kind(self.kind).name
        except ValueError:
            return f"kind {self.kind}"


@dataclass(frozen=True)
class Recording:
    path: str
    started: float  #: wall-clock start, seconds since the Unix epoch
    frames: list[RecordedFrame]

    @property
    def commands(self) -> list[RecordedFrame]:
        return [f for f in self.frames if f.direction == TO_ENV]


def load(path: str | os.PathLike[str]) -> Recording:
    """Read a recording; :class:`RecordingError` names what is wrong with a bad file."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            blob = file.read()
    except OSError as exc:
        raise RecordingError(name, f"cannot read it: {exc.strerror or exc}") from None
    if len(blob) < len(MAGIC) or blob[: len(MAGIC)] != MAGIC:
        raise RecordingError(
            name, f"not an rlay recording: it starts {blob[: len(MAGIC)]!r}, a recording starts {MAGIC!r}"
        )
    if len(blob) < FILE_HEADER.size:
        raise RecordingError(
            name, f"truncated: the file header is {FILE_HEADER.size} bytes, the file has {len(blob)}"
        )
    _, version, flags, started = FILE_HEADER.unpack_from(blob)
    if version != FORMAT_VERSION:
        raise RecordingError(
            name, f"recording format version {version}; this rlay reads version {FORMAT_VERSION}"
        )
    if flags:
        raise RecordingError(name, f"file header flags must be 0 in version 1, got {flags:#06x}")
    frames: list[RecordedFrame] = []
    pos = FILE_HEADER.size
    view = memoryview(blob)
    while pos < len(blob):
        at = f"record {len(frames)} (byte {pos})"
        head = RECORD_HEADER.size + HEADER_SIZE
        if len(blob) - pos < head:
            raise RecordingError(
                name, f"truncated: {at} has {len(blob) - pos} bytes, fewer than its {head}-byte header"
            )
        direction, t_ns = RECORD_HEADER.unpack_from(blob, pos)
        if direction not in (TO_ENV, TO_AGENT):
            raise RecordingError(name, f"{at}: direction byte {direction!r}, expected b'>' or b'<'")
        start = pos + RECORD_HEADER.size
        try:
            kind, data_len, body_len = check_header(view[start : start + HEADER_SIZE], _MAX_FRAME)
        except ProtocolError as exc:
            raise RecordingError(name, f"{at}: not an rlay frame: {exc}") from None
        stop = start + HEADER_SIZE + data_len + body_len
        if stop > len(blob):
            raise RecordingError(
                name,
                f"truncated: {at} holds a {Kind(kind).name} frame of {stop - start} bytes, "
                f"the file ends after {len(blob) - start}",
            )
        frames.append(RecordedFrame(direction, t_ns / 1e9, kind, blob[start:stop]))
        pos = stop
    return Recording(name, started, frames)


# -- comparing -------------------------------------------------------------------------------------


def difference(recorded: Any, now: Any, path: str = "") -> str | None:
    """Where two decoded values first differ, as ``path: recorded X, now Y``; None if equal
    (bit for bit: tensors by dtype, shape and bytes; NaN equals NaN)."""
    where = path or "the reply"
    if isinstance(recorded, np.ndarray) or isinstance(now, np.ndarray):
        if not (isinstance(recorded, np.ndarray) and isinstance(now, np.ndarray)):
            return f"{where}: recorded {clip(recorded, 60)}, now {clip(now, 60)}"
        if recorded.dtype != now.dtype or recorded.shape != now.shape:
            return (
                f"{where}: recorded a {recorded.dtype} tensor of shape {recorded.shape}, "
                f"now {now.dtype} of shape {now.shape}"
            )
        if recorded.tobytes() == now.tobytes():
            return None
        a = recorded.reshape(-1).view(np.uint8).reshape(recorded.size, -1) if recorded.size else recorded
        b = now.reshape(-1).view(np.uint8).reshape(now.size, -1) if now.size else now
        i = int(np.flatnonzero((a != b).any(axis=1))[0])
        index = np.unravel_index(i, recorded.shape) if recorded.ndim else ()
        at = "[" + ", ".join(str(int(j)) for j in index) + "]"
        was, got = recorded.reshape(-1)[i].item(), now.reshape(-1)[i].item()
        return f"{path}{at}: recorded {was!r}, now {got!r}"
    if type(recorded) is not type(now):
        return f"{where}: recorded {clip(recorded, 60)}, now {clip(now, 60)}"
    if isinstance(recorded, dict):
        if list(recorded) != list(now):
            return f"{where}: recorded keys {list(recorded)}, now {list(now)}"
        for key in recorded:
            found = difference(recorded[key], now[key], f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    if isinstance(recorded, list):
        if len(recorded) != len(now):
            return f"{where}: recorded {len(recorded)} items, now {len(now)}"
        for i, (x, y) in enumerate(zip(recorded, now, strict=True)):
            found = difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(recorded, float) and recorded != recorded and now != now:
        return None
    if recorded != now:
        return f"{where}: recorded {clip(recorded, 60)}, now {clip(now, 60)}"
    return None


def _frame_difference(recorded: RecordedFrame, kind: int, value: Any) -> str | None:
    if kind != recorded.kind:
        try:
            name = Kind(kind).name
        except ValueError:
            name = f"kind {kind}"
        return f"recorded a {recorded.name}, now a {name}"
    return difference(recorded.value(), value)


@dataclass(frozen=True)
class Mismatch:
    """The first place a live peer left the recording."""

    command_index: int  #: 0-based among the frames the agent sent (its HELLO is 0)
    step_index: int | None  #: 0-based among the recorded STEPs, if the command is a STEP
    command: RecordedFrame | None
    detail: str

    def describe(self) -> str:
        if self.command is None:
            what = f"command {self.command_index} (past the end of the recording)"
        else:
            what = f"command {self.command_index} ({self.command.name}"
            if self.step_index is not None:
                what += f", step {self.step_index}"
            try:
                body = self.command.value()
            except ProtocolError:
                body = None
            if isinstance(body, dict) and body:
                what += ", " + ", ".join(f"{k}={clip(v, 60)}" for k, v in body.items())
            what += ")"
        return f"first difference at {what}: {self.detail}"


class _Position:
    """Which command the walk through a recording is at."""

    def __init__(self) -> None:
        self.command_index = -1
        self.steps = -1
        self.command: RecordedFrame | None = None

    def advance(self, frame: RecordedFrame) -> None:
        self.command_index += 1
        self.command = frame
        if frame.kind == Kind.STEP:
            self.steps += 1

    def mismatch(self, detail: str) -> Mismatch:
        command = self.command
        step = self.steps if command is not None and command.kind == Kind.STEP else None
        return Mismatch(max(self.command_index, 0), step, command, detail)


class _FrameSource:
    """Whole frames from a live stream."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.reader = FrameReader(_MAX_FRAME)
        self.eof = False

    def next(self, timeout: float | None, stage: str) -> tuple[int, Any] | None:
        """The next frame's kind and decoded body, or None at end of stream."""
        frames = self.reader.frames
        while not frames:
            if self.eof:
                return None
            data = self.stream.recv(timeout, stage)
            if data:
                self.reader.feed(data)
            else:
                self.eof = True
                self.reader.feed_eof()
        kind, data_view, body = frames.popleft()
        return kind, decode(body, data_view)


# -- the handshake's own bytes ---------------------------------------------------------------------

# §7.1: authentication (HELLO's `auth` nonce, the AUTH proofs) belongs to one connection: its nonces
# are fresh each time and its proofs need the token, which a recording never holds. Replay and
# serve therefore leave it out: AUTH frames are skipped, recorded HELLOs are sent without `auth`,
# and a HELLO is compared without it (replay's own connections run without a token).
# §16: `shm` likewise belongs to one connection (a unix socket both ends of which map one region);
# replay and serve speak plain sockets, so it is left out the same way.
_PER_CONNECTION = frozenset({"auth", "shm"})


def _without_auth(frame: RecordedFrame) -> bytes:
    if frame.kind != Kind.HELLO:
        return frame.raw
    value = frame.value()
    caps = value.get("capabilities") if isinstance(value, dict) else None
    if not isinstance(caps, dict) or not _PER_CONNECTION & caps.keys():
        return frame.raw
    value = {**value, "capabilities": {k: v for k, v in caps.items() if k not in _PER_CONNECTION}}
    body, chunks, data_len = Encoder().encode(value)
    return b"".join([pack_header(Kind.HELLO, data_len, len(body)), *map(bytes, chunks), body])


def _auth_free(kind: int, value: Any) -> Any:
    if kind == Kind.HELLO and isinstance(value, dict) and isinstance(value.get("capabilities"), dict):
        caps = value["capabilities"]
        return {**value, "capabilities": {k: v for k, v in caps.items() if k not in _PER_CONNECTION}}
    return value


# -- replay against a fresh env side ---------------------------------------------------------------


def replay(recording: Recording, stream: Stream, timeout: float | None = 60.0) -> Mismatch | None:
    """Send the recorded commands to a fresh env side on ``stream``, in order, and compare each
    reply with the recorded one. Returns the first difference, or None if every reply was equal
    bit for bit. The stream is left open (the caller closes it)."""
    source = _FrameSource(stream)
    pos = _Position()
    for frame in recording.frames:
        if frame.kind == Kind.AUTH:
            continue
        if frame.direction == TO_ENV:
            pos.advance(frame)
            try:
                stream.send([_without_auth(frame)], timeout, f"replaying {frame.name}")
            except ConnectionClosed as exc:
                return pos.mismatch(f"the env side closed the connection before {frame.name}: {exc}")
            continue
        try:
            got = source.next(timeout, f"waiting for the reply to {frame.name}")
        except (ConnectionClosed, Timeout) as exc:
            return pos.mismatch(f"recorded a {frame.name}, now no reply: {exc}")
        except ProtocolError as exc:
            return pos.mismatch(f"recorded a {frame.name}, now bytes that break the protocol: {exc}")
        if got is None:
            return pos.mismatch(f"recorded a {frame.name}, now the env side ended the stream")
        kind, value = got
        if kind == Kind.HELLO and frame.kind == Kind.HELLO:
            found = difference(_auth_free(kind, frame.value()), _auth_free(kind, value))
        else:
            found = _frame_difference(frame, kind, value)
        if found:
            return pos.mismatch(found)
    return None


# -- serve a recording as the env side -------------------------------------------------------------


def _error_frame(message: str) -> bytes:
    error = Error(int(ErrorCode.ENV_EXCEPTION), message, True, MISMATCH_TYPE, None)
    body, chunks, data_len = Encoder().encode(error.to_body())
    return b"".join([pack_header(Kind.ERROR, data_len, len(body)), *map(bytes, chunks), body])


def serve_recording(recording: Recording, stream: Stream, timeout: float | None = 60.0) -> Mismatch | None:
    """Play the env side of ``recording`` to the agent on ``stream``: send each recorded reply
    when the recording did, and check each command the agent sends against the recorded one.
    A command that differs is answered with a fatal ``ENV_EXCEPTION`` ERROR whose remote type is
    ``rlay.record.ReplayMismatch`` (the agent raises :class:`~rlay.errors.RemoteError`), and
    returned; so is a command past the end of the recording. Returns None when the agent
    followed the recording and then ended the stream. The stream is left open."""
    source = _FrameSource(stream)
    pos = _Position()

    def refuse(mismatch: Mismatch) -> Mismatch:
        try:
            stream.send([_error_frame(mismatch.describe())], 1.0, "refusing a command")
        except (ConnectionClosed, Timeout):
            pass
        return mismatch

    for frame in recording.frames:
        if frame.kind == Kind.AUTH:
            continue
        if frame.direction == TO_AGENT:
            try:
                stream.send([_without_auth(frame)], timeout, f"sending the recorded {frame.name}")
            except ConnectionClosed as exc:
                return pos.mismatch(
                    f"the agent closed the connection before the recorded {frame.name}: {exc}"
                )
            continue
        pos.advance(frame)
        try:
            got = source.next(timeout, f"waiting for the recorded {frame.name}")
        except (ConnectionClosed, Timeout) as exc:
            return pos.mismatch(f"recorded a {frame.name}, now nothing: {exc}")
        except ProtocolError as exc:
            return refuse(pos.mismatch(f"recorded a {frame.name}, now bytes that break the protocol: {exc}"))
        if got is None:
            return pos.mismatch(f"recorded a {frame.name}, now the agent ended the stream")
        # The agent's HELLO carries its SDK version: a recording made by an older rlay still
        # serves. The agent checks the recorded env HELLO's protocol and version itself (§7).
        found = f"recorded a {frame.name}, now another kind" if got[0] != frame.kind else None
        if frame.kind != Kind.HELLO and found is None:
            found = difference(frame.value(), got[1])
        if found:
            return refuse(pos.mismatch(found))
    try:
        extra = source.next(timeout, "waiting for the agent to end the session")
    except (ConnectionClosed, Timeout, ProtocolError):
        return None
    if extra is None:
        return None
    pos.command_index += 1
    pos.command = None
    return refuse(
        Mismatch(
            pos.command_index,
            None,
            None,
            f"the recording ends after {pos.command_index} commands; the agent sent one more",
        )
    )
