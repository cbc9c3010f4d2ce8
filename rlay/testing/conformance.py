"""Golden vectors (spec/protocol.md §12): loading, the JSON value notation, and the SDK conformance
driver.

Three uses:

- **Driver for any SDK.** :func:`run_conformance` starts an SDK's runner program and speaks the
  line protocol of §12 with it (one line in, one line out, over stdin/stdout)::

      from rlay.testing.conformance import run_conformance
      failures = run_conformance(["sdk/c/build/rlay_conformance"], roles=("env",))
      assert not failures, "\\n".join(failures)

  Lines are ``roundtrip FRAME_HEX CANON_HEX`` and ``reject FRAME_HEX ERROR_NAME ROLE STATE
  [NUM_ENVS]``, where ROLE and STATE are both ``-`` for a stand-alone decode (no state machine)
  and NUM_ENVS (default 1) is the ``num_envs`` of the ENV_INFO the receiver was brought past. A runner
  answers ``ok`` or ``fail <why>`` for each line, flushes, and exits 0 at end of input. Lines can
  be long (the largest is about 530 KB): read them with a growing buffer. A runner that dies or
  stalls on a line is restarted for the next one, so one crash costs one vector, not the run.
- **Python runner.** ``python -m rlay.testing.conformance --python-runner`` is that runner for the
  Python core (``rlay.protocol``); ``tests/test_vectors.py`` drives it, proving the driver.
- **Helpers for Python tests.** :func:`load_vectors`, :func:`from_json`, :func:`connection_in`
  (a :class:`~rlay.protocol.connection.Connection` brought to a given role and state by a real
  conversation), :func:`python_reject` and :func:`python_roundtrip`.

Other command-line uses: ``python -m rlay.testing.conformance --lines`` prints every line (to feed an
SDK runner by hand); ``python -m rlay.testing.conformance CMD ARGS...`` runs the driver against CMD.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlay.errors import ProtocolError
from rlay.protocol.codec import Encoder, decode
from rlay.protocol.connection import Connection, State
from rlay.protocol.framing import FrameReader
from rlay.protocol.messages import (
    MESSAGE_TYPES,
    Call,
    Close,
    CloseResult,
    EnvInfo,
    Message,
    Render,
    Reset,
    Step,
)
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE, ErrorCode, Role

ROOT = Path(__file__).resolve().parents[2]  # the checkout, when rlay is installed from one


def _vectors_dir() -> Path:
    """Where the vectors are: ``$RLAY_VECTORS``, else the copy shipped in the package (in a
    checkout, ``rlay/testing/vectors`` is a link to ``spec/vectors``, the source of truth)."""
    override = os.environ.get("RLAY_VECTORS")
    return Path(override) if override else Path(__file__).resolve().parent / "vectors"


VECTORS_DIR = _vectors_dir()

#: §4's dtype names, written out here (not taken from rlay.protocol.wire) so that a wrong entry
#: there shows up as a vector failure.
DTYPES = {
    "bool": np.dtype("|b1"),
    "int8": np.dtype("|i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "uint8": np.dtype("|u1"),
    "uint16": np.dtype("<u2"),
    "uint32": np.dtype("<u4"),
    "uint64": np.dtype("<u8"),
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}

# ------------------------------------------------------------------------------------------------
# Vectors and the JSON value notation


def vector_files(directory: Path = VECTORS_DIR) -> list[Path]:
    return sorted(directory.glob("*.json"))


def load_vectors(directory: Path = VECTORS_DIR) -> list[dict[str, Any]]:
    """Every vector of every file, each with an added ``"file"`` key (the file's name)."""
    out = []
    for path in vector_files(directory):
        doc = json.loads(path.read_text())
        for vec in doc["vectors"]:
            out.append({**vec, "file": path.name})
    return out


def from_json(v: Any) -> Any:
    """The JSON value notation of §12 -> Python wire values (ndarray for tensors)."""
    if v is None or type(v) in (bool, str):
        return v
    if type(v) is list:
        return [from_json(x) for x in v]
    if type(v) is dict:
        if len(v) == 1:
            ((tag, inner),) = v.items()
            if tag == "$int":
                return int(inner)
            if tag == "$float":
                return float(inner)  # accepts "nan", "inf", "-inf" and every repr()
            if tag == "$float_hex":
                return float(np.frombuffer(bytes.fromhex(inner)[::-1], dtype="<f8")[0])
            if tag == "$bytes":
                return bytes.fromhex(inner)
            if tag == "$tensor":
                dtype = DTYPES[inner["dtype"]]
                shape = tuple(int(d) for d in inner["shape"])
                return np.frombuffer(bytes.fromhex(inner["hex"]), dtype=dtype).reshape(shape)
            if tag.startswith("$"):
                raise ValueError(f"unknown tag {tag!r} in the JSON value notation")
        return {k: from_json(x) for k, x in v.items()}
    raise TypeError(f"not a value of the JSON notation: {v!r:.60}")


def message_from_json(kind: int, body: dict[str, Any]) -> Message:
    cls = MESSAGE_TYPES[kind]
    return cls(**from_json(body))


def fields_of(msg: Message) -> dict[str, Any]:
    """The decoded fields exactly as the message holds them (no canonicalisation)."""
    return {name: getattr(msg, name) for name, _ in msg.FIELDS}


def same(actual: Any, expected: Any, path: str = "") -> str | None:
    """``None`` if equal with exact types (bool is not int, int is not float, dtype/shape/bytes of
    tensors, map key order, NaN equals NaN of the same bits); else a description of the first
    difference."""
    here = path or "<root>"
    if isinstance(expected, np.ndarray):
        if type(actual) is not np.ndarray:
            return f"{here}: expected a tensor, got {type(actual).__name__} {actual!r:.60}"
        if actual.dtype != expected.dtype or actual.shape != expected.shape:
            return (
                f"{here}: expected tensor {expected.dtype}{expected.shape}, got {actual.dtype}{actual.shape}"
            )
        if actual.tobytes() != expected.tobytes():
            return f"{here}: tensor bytes {actual.tobytes().hex()[:80]} != {expected.tobytes().hex()[:80]}"
        return None
    if type(actual) is not type(expected):
        want, got = type(expected).__name__, type(actual).__name__
        return f"{here}: expected {want} {expected!r:.60}, got {got} {actual!r:.60}"
    if type(expected) is dict:
        if list(actual) != list(expected):
            return f"{here}: keys {list(actual)[:12]} != {list(expected)[:12]}"
        for key in expected:
            diff = same(actual[key], expected[key], f"{path}[{key!r}]")
            if diff:
                return diff
        return None
    if type(expected) is list:
        if len(actual) != len(expected):
            return f"{here}: array of {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            diff = same(a, e, f"{path}[{i}]")
            if diff:
                return diff
        return None
    if type(expected) is float:
        if np.float64(actual).tobytes() != np.float64(expected).tobytes():
            return f"{here}: float {actual!r} != {expected!r} (bits differ)"
        return None
    if actual != expected:
        return f"{here}: {actual!r:.60} != {expected!r:.60}"
    return None


# ------------------------------------------------------------------------------------------------
# The Python core as a receiver in a given role and state


def _pump(src: Connection, dst: Connection) -> None:
    for buf in src.data_to_send():
        dst.receive_data(buf)


_SPACE = {"kind": "discrete", "n": 2, "start": 0, "dtype": "int64"}
_COMMANDS = {
    "reset": lambda: Reset(None, None),
    "step": lambda: Step(1),
    "render": Render,
    "call": lambda: Call("f", [], {}),
    "close": Close,
}


def pair_in(state: str, num_envs: int = 1) -> tuple[Connection, Connection]:
    """``(agent, env)`` Connections both in ``state``, reached by a valid conversation.

    The env side's ENV_INFO (§12): both spaces ``Discrete(2)`` (int64, start 0), ``num_envs``
    as given, metadata ``{}``, render_mode and name nil.

    In ``hello`` neither has received the other's HELLO (both are still queued); otherwise the
    send buffers are empty.
    """
    agent, env = Connection(Role.AGENT), Connection(Role.ENV)
    if state != "hello":
        _pump(env, agent)
        _pump(agent, env)
        agent.next_event()
        env.next_event()
        if state != "describe":
            env.send(EnvInfo(_SPACE, _SPACE, num_envs, {}, None, None))
            _pump(env, agent)
            agent.next_event()
            command = "close" if state == "closed" else state
            if command in _COMMANDS:
                agent.send(_COMMANDS[command]())
                _pump(agent, env)
                env.next_event()
            if state == "closed":
                env.send(CloseResult())
                _pump(env, agent)
                agent.next_event()
    for conn in (agent, env):
        if conn.state is not State(state):
            raise RuntimeError(f"could not bring a {conn.role.value} Connection to {state!r}: {conn.state}")
    return agent, env


def connection_in(role: str, state: str, num_envs: int = 1) -> Connection:
    """A Connection playing ``role`` in ``state``, reached by a valid conversation with a peer.

    Its own HELLO (and anything else it sent) has been taken out of its send buffer.
    """
    agent, env = pair_in(state, num_envs)
    me = agent if role == "agent" else env
    me.data_to_send()
    return me


def python_reject(
    stream: bytes, role: str | None, state: str | None, *, chunk: int = 0, num_envs: int = 1
) -> ProtocolError | None:
    """Feed ``stream`` (then end of stream) to the Python core; return the error it raised.

    Stand-alone (``state`` None): frames are cut by a FrameReader, bodies decoded and checked as
    messages. Otherwise a :func:`connection_in` receives them. ``chunk`` > 0 feeds that many bytes
    at a time (frames split across reads). Any exception other than ProtocolError propagates.
    """
    pieces = [stream[i : i + chunk] for i in range(0, len(stream), chunk)] if chunk else [stream]
    try:
        if state is None:
            reader = FrameReader(DEFAULT_MAX_FRAME_SIZE)

            def drain() -> None:
                while reader.frames:
                    kind, data, body = reader.frames.popleft()
                    MESSAGE_TYPES[kind].from_body(decode(body, data))

            for piece in pieces:
                reader.feed(piece)
                drain()
            reader.feed_eof()
        else:
            conn = connection_in(role or "", state, num_envs)
            for piece in pieces:
                conn.receive_data(piece)
                while conn.next_event() is not None:
                    pass
            conn.receive_eof()
            while conn.next_event() is not None:
                pass
    except ProtocolError as exc:
        return exc
    return None


def python_roundtrip(frame: bytes) -> bytes:
    """Decode one whole frame with the Python core and re-encode the message canonically."""
    reader = FrameReader(DEFAULT_MAX_FRAME_SIZE)
    reader.feed(frame)
    reader.feed_eof()
    if len(reader.frames) != 1:
        raise ValueError(f"expected one frame, got {len(reader.frames)}")
    kind, data, body = reader.frames[0]
    msg = MESSAGE_TYPES[kind].from_body(decode(body, data))
    return b"".join(bytes(b) for b in Connection(Role.AGENT).encode_frame(msg))


# ------------------------------------------------------------------------------------------------
# The line protocol


def conformance_lines(
    vectors: Iterable[dict[str, Any]] | None = None, roles: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """``(vector name, line)`` for every encode, decode and reject vector.

    ``roles``: keep only reject vectors for a receiver of these roles (and every stand-alone
    one), for an SDK that implements one side only.
    """
    out = []
    for vec in load_vectors() if vectors is None else vectors:
        name = f"{vec.get('file', '?')}: {vec['name']}"
        kind = vec["type"]
        if kind == "encode":
            out.append((name, f"roundtrip {vec['frame']} {vec['frame']}"))
        elif kind == "decode":
            out.append((name, f"roundtrip {vec['frame']} {vec['canonical']}"))
        elif kind == "reject":
            role = vec.get("role", "-")
            if roles is not None and role != "-" and role not in roles:
                continue
            line = f"reject {vec['frame']} {vec['error']} {role} {vec.get('state', '-')}"
            if "num_envs" in vec:  # §12: the receiver's ENV_INFO had this num_envs
                line += f" {vec['num_envs']}"
            out.append((name, line))
    return out


def space_lines(directory: Path = VECTORS_DIR) -> list[tuple[str, str]]:
    """``(vector name, line)`` for ``spaces.json``: the runner's space commands, for an SDK whose
    runner also takes them (the C, C#, JS runners do): ``space DESC_HEX DATA_HEX``, ``space_value
    DESC_HEX DATA_HEX BODY_HEX DATA_HEX``, ``space_reject DESC_HEX DATA_HEX ERROR`` and
    ``value_reject DESC_HEX DATA_HEX BODY_HEX DATA_HEX ERROR`` — a descriptor or a value travels
    as a stand-alone body and data section. Answers are ``ok`` / ``fail <why>`` as for §12."""

    def enc(value: object) -> str:
        body, chunks, _ = Encoder().encode(from_json(value))
        return f"{body.hex()} {b''.join(bytes(c) for c in chunks).hex()}"

    out = []
    for vec in json.loads((directory / "spaces.json").read_text())["vectors"]:
        name = f"spaces.json: {vec['name']}"
        if vec["type"] == "space":
            out.append((name, f"space {vec['bytes']} {vec['data']}"))
            for i, val in enumerate(vec["values"]):
                line = f"space_value {vec['bytes']} {vec['data']} {val['body']} {val['data']}"
                out.append((f"{name} value {i}", line))
        elif vec["type"] == "space_reject":
            out.append((name, f"space_reject {enc(vec['descriptor'])} {vec['error']}"))
        elif vec["type"] == "value_reject":
            out.append((name, f"value_reject {enc(vec['descriptor'])} {enc(vec['value'])} {vec['error']}"))
    return out


class RunnerDied(Exception):
    pass


class _Runner:
    """One runner process spoken to line by line, with non-blocking pipes and a deadline."""

    def __init__(self, cmd: Sequence[str], cwd: str | os.PathLike[str] | None, env: dict[str, str] | None):
        self.cmd = list(cmd)
        self.cwd = cwd
        self.env = env
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, cwd=cwd, env=env
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin = self.proc.stdin.fileno()
        self.stdout = self.proc.stdout.fileno()
        os.set_blocking(self.stdin, False)
        os.set_blocking(self.stdout, False)
        self.buf = b""

    def ask(self, line: str, timeout: float) -> str:
        """Send one line, return the runner's one-line answer; RunnerDied if it dies or stalls."""
        pending = memoryview(line.encode("ascii") + b"\n")
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.stdout, selectors.EVENT_READ)
            sel.register(self.stdin, selectors.EVENT_WRITE)
            writing = True
            while True:
                if not writing and b"\n" in self.buf:
                    answer, self.buf = self.buf.split(b"\n", 1)
                    return answer.decode("utf-8", "replace").rstrip("\r")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RunnerDied(f"no answer within {timeout:g} s")
                for key, _ in sel.select(left):
                    if key.fd == self.stdin:
                        try:
                            n = os.write(self.stdin, pending[:65536])
                        except BrokenPipeError:
                            raise RunnerDied("the runner closed its stdin") from None
                        pending = pending[n:]
                        if not pending:
                            sel.unregister(self.stdin)
                            writing = False
                    else:
                        chunk = os.read(self.stdout, 65536)
                        if not chunk:
                            raise RunnerDied("the runner exited")
                        self.buf += chunk

    def stderr_tail(self, limit: int = 800) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().decode("utf-8", "replace")
        return text[-limit:].strip()

    def close(self, timeout: float) -> int | None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            assert self.proc.stdout is not None
            self.proc.stdout.close()


def _short(line: str, limit: int = 160) -> str:
    return line if len(line) <= limit else f"{line[:limit]}... ({len(line)} chars)"


def run_conformance(
    cmd: Sequence[str],
    *,
    roles: Sequence[str] | None = None,
    timeout: float = 10.0,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    lines: list[tuple[str, str]] | None = None,
) -> list[str]:
    """Run every conformance line through the runner ``cmd``; return the failures (empty = pass).

    Each failure names the vector, the line (shortened) and what went wrong: the runner's
    ``fail <why>``, an answer that is neither ``ok`` nor ``fail``, a crash or a stall (with the tail
    of its stderr; the runner is then restarted), or a non-zero exit status at end of input.
    ``timeout`` is per line.
    """
    todo = conformance_lines(roles=roles) if lines is None else lines
    failures: list[str] = []
    runner: _Runner | None = None
    try:
        for name, line in todo:
            if runner is None:
                runner = _Runner(cmd, cwd, env)
            try:
                answer = runner.ask(line, timeout)
            except RunnerDied as exc:
                runner.close(1.0)
                tail = runner.stderr_tail() or "(empty)"
                runner.stderr.close()
                failures.append(f"{name}: {exc}; stderr: {tail}\n  line: {_short(line)}")
                runner = None
                continue
            if answer == "ok":
                continue
            if answer.startswith("fail"):
                failures.append(f"{name}: {answer}\n  line: {_short(line)}")
            else:
                failures.append(
                    f"{name}: answer {answer!r:.200} is neither 'ok' nor 'fail <why>'\n  line: {_short(line)}"
                )
    finally:
        if runner is not None:
            status = runner.close(timeout)
            runner.stderr.close()
            if status != 0:
                failures.append(f"the runner exited with status {status} at the end of its input")
    if not todo:
        failures.append("no conformance lines: spec/vectors/ is empty or missing")
    return failures


# ------------------------------------------------------------------------------------------------
# The Python runner


def answer_line(line: str) -> str:
    """The Python core's answer to one line of the §12 runner protocol."""
    parts = line.split()
    try:
        if parts and parts[0] == "roundtrip" and len(parts) == 3:
            got = python_roundtrip(bytes.fromhex(parts[1]))
            want = bytes.fromhex(parts[2])
            if got == want:
                return "ok"
            at = next(
                (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                min(len(got), len(want)),
            )
            return f"fail re-encoded {len(got)} bytes differ from the canonical {len(want)} at byte {at}"
        if parts and parts[0] == "reject" and len(parts) in (5, 6):
            _, frame_hex, error, role, state = parts[:5]
            num_envs = int(parts[5]) if len(parts) == 6 else 1
            if error not in ErrorCode.__members__:
                return f"fail unknown error name {error}"
            standalone = state == "-"
            exc = python_reject(
                bytes.fromhex(frame_hex),
                None if standalone else role,
                None if standalone else state,
                num_envs=num_envs,
            )
            if exc is None:
                return f"fail accepted; expected {error}"
            if exc.code.name != error:
                return f"fail got {exc.code.name} ({exc.detail}); expected {error}"
            return "ok"
    except ProtocolError as exc:
        return f"fail {exc}"
    except Exception as exc:  # a runner reports every problem as a line; it never dies
        return f"fail {type(exc).__name__}: {exc}"
    return f"fail cannot parse the line {line[:40]!r}"


def python_runner(stdin: Any = None, stdout: Any = None) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        stdout.write(answer_line(line).replace("\n", " ") + "\n")
        stdout.flush()
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--python-runner"]:
        return python_runner()
    if argv == ["--lines"]:
        for _, line in conformance_lines():
            print(line)
        return 0
    if not argv or argv[0].startswith("-"):
        print(
            "usage: python -m rlay.testing.conformance --python-runner | --lines | CMD [ARGS...]",
            file=sys.stderr,
        )
        return 2
    lines = conformance_lines()
    failures = run_conformance(argv, lines=lines)
    for failure in failures:
        print(failure)
    print(f"{len(lines) - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
