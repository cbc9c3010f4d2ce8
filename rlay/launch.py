"""Starting env programs from Python, so that nobody juggles ports or orphaned processes.

``Process`` starts a command with the address it must use — substituted for ``{address}`` in its
arguments and set as ``RLAY_ADDRESS`` in its environment, with ``RLAY_MODE`` saying whether to
``listen`` there or ``dial`` it (spec §15) — in its own process group, keeps the last
lines of its stderr, and ends the whole group on :meth:`Process.close`, at garbage collection and
at interpreter exit. Addresses are fresh unix socket paths in a private directory (or
OS-chosen TCP ports): never a fixed port.

The other half of "no orphans" is the env side's: every rlay SDK exits by itself when the agent
side's connection closes, so even ``kill -9`` of Python leaves no env process behind.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from rlay.errors import RlayError, UsageError

STDERR_LINES = 20

_live: weakref.WeakSet[Process] = weakref.WeakSet()

# If this Python process dies (even by SIGKILL) before an env program has connected, nothing
# would tell the program to quit: it waits for a connection forever. On Linux, setpriv (from
# util-linux) sets the parent-death signal before it execs the program, so the kernel kills it.
# Once connected, every rlay env side also exits when its connection closes.
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None
_DIE_WITH_PARENT = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []


class _Spawner:
    """One daemon thread that forks every env program. A daemon thread is not joined at exit, so
    it outlives the atexit handler that ends the programs gracefully (SIGTERM first)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rlay-spawner", daemon=True)
                self._thread.start()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((future, lambda: fn(*args, **kwargs)))
        return future

    def _run(self) -> None:
        while True:
            future, job = self._jobs.get()
            try:
                future.set_result(job())
            except BaseException as exc:
                future.set_exception(exc)


_SPAWNER = _Spawner()


class LaunchError(RlayError):
    """The env program could not be started, or exited before it was ready."""

    def __init__(
        self, command: Sequence[str], detail: str, returncode: int | None = None, stderr: str = ""
    ) -> None:
        super().__init__(command, detail)
        self.command = list(command)
        self.detail = detail
        self.returncode = returncode
        self.stderr = stderr

    def __str__(self) -> str:
        text = f"{self.detail}: {' '.join(self.command)}"
        if self.returncode is not None:
            text += f" ({describe_returncode(self.returncode)})"
        if self.stderr:
            text += "\n--- last lines of its stderr ---\n" + self.stderr.rstrip()
        return text


def describe_returncode(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Process:
    """One launched env program. Use :meth:`wait_until` while waiting for it to be ready."""

    def __init__(
        self,
        command: Sequence[str],
        address: str,
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        mode: str = "listen",
    ) -> None:
        if mode not in ("listen", "dial"):
            raise UsageError(f"mode must be 'listen' or 'dial', got {mode!r}")
        if isinstance(command, str) or not command:
            raise UsageError(
                f"launch takes a list of arguments like ['./game', '--rlay', '{{address}}'], got {command!r}"
            )
        self.address = address
        self.command = [str(arg).replace("{address}", address) for arg in command]
        environ = dict(os.environ if env is None else env)
        environ["RLAY_ADDRESS"] = address
        environ["RLAY_MODE"] = mode
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        program = self.command[0]
        found = shutil.which(program, path=environ.get("PATH")) if os.sep not in program else program
        if found is None or not os.access(os.path.join(cwd or "", found), os.X_OK):
            raise LaunchError(self.command, "cannot start the env program (not found or not executable)")
        try:
            # Popen runs on rlay's spawner thread, which lives as long as this process: the
            # parent-death signal below belongs to the thread that forked.
            self.popen = _SPAWNER.submit(
                subprocess.Popen,
                [*_DIE_WITH_PARENT, *self.command],
                env=environ,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: close() ends its children too
            ).result()
        except OSError as exc:
            raise LaunchError(self.command, f"cannot start the env program ({exc.strerror or exc})") from None
        self.listening: str | None = None  # the address its RLAY_LISTENING line announced (spec §15)
        self._announced = threading.Event()
        self._reader = threading.Thread(target=self._drain, name=f"rlay-stderr-{self.popen.pid}", daemon=True)
        self._reader.start()
        self._out_reader = threading.Thread(
            target=self._watch_stdout, name=f"rlay-stdout-{self.popen.pid}", daemon=True
        )
        self._out_reader.start()
        self._finalizer = weakref.finalize(self, _terminate, self.popen)
        _live.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _drain(self) -> None:
        stream = self.popen.stderr
        if stream is None:
            return
        for raw in stream:
            self._stderr.append(raw.decode("utf-8", "replace"))
        stream.close()

    def _watch_stdout(self) -> None:
        """Its stdout: the ``RLAY_LISTENING <address>`` line (spec §15) is taken, not printed;
        every other line goes on to this process's stdout, as if the program had written it."""
        stream = self.popen.stdout
        if stream is None:
            return
        for raw in stream:
            if raw.startswith(b"RLAY_LISTENING ") and self.listening is None:
                self.listening = raw[15:].decode("utf-8", "replace").strip()
                self._announced.set()
                continue
            try:
                sys.stdout.buffer.write(raw)
                sys.stdout.flush()
            except (AttributeError, OSError, ValueError):
                pass  # stdout replaced by something without a buffer, or closed: drop the line
        stream.close()
        self._announced.set()  # it will never announce now

    def wait_announced(self, seconds: float) -> str | None:
        """The address the program announced it listens at, waiting up to ``seconds``."""
        self._announced.wait(seconds)
        return self.listening

    def stderr_tail(self) -> str:
        return "".join(self._stderr)

    def exited(self) -> int | None:
        return self.popen.poll()

    def failure(self, detail: str) -> LaunchError:
        code = self.popen.poll()
        if code is not None:
            self._reader.join(1)  # let the last stderr lines arrive
        return LaunchError(self.command, detail, code, self.stderr_tail())

    def wait_until(self, attempt: Callable[[float], Any], timeout: float | None, what: str) -> Any:
        """Call ``attempt(slice_seconds)`` until it returns non-None; fail if the program exits first.

        ``attempt`` should block for at most its argument and return None when not ready yet.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.exited() is not None:
                raise self.failure(f"the env program exited before {what}")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise self.failure(f"the env program was not ready after {timeout:g} s ({what})")
            result = attempt(0.1 if left is None else min(0.1, left))
            if result is not None:
                return result

    def close(self, grace: float = 2.0) -> int | None:
        """End the program's process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
        self._finalizer.detach()
        _live.discard(self)
        code = _terminate(self.popen, grace)
        self._reader.join(1)
        return code


def _terminate(popen: subprocess.Popen[bytes], grace: float = 1.0) -> int | None:
    if popen.poll() is None:
        _signal_group(popen, signal.SIGTERM)
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(popen, signal.SIGKILL)
            popen.wait()
    else:
        _signal_group(popen, signal.SIGKILL)  # children the program left behind
    return popen.returncode


def _signal_group(popen: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(popen.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@atexit.register
def _close_all() -> None:
    for process in list(_live):
        process.close(grace=1.0)


class SocketDir:
    """A private directory for unix socket paths; removed on :meth:`close`."""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="rlay-")
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.path, True)

    def address(self, name: str = "env") -> str:
        return f"unix://{os.path.join(self.path, name + '.sock')}"

    def close(self) -> None:
        self._finalizer()
