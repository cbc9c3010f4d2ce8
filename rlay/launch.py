"""Starting env programs from Python, so that nobody juggles ports or orphaned processes.

``Process`` starts a command with the address it must use — substituted for ``{address}`` in its
arguments and set as ``RLAY_ADDRESS`` in its environment, with ``RLAY_MODE`` saying whether to
``listen`` there or ``dial`` it (spec §15) — in its own process group, keeps the last
lines of its stderr, and ends the whole group on :meth:`Process.close`, at garbage collection and
at interpreter exit. Addresses are fresh unix socket paths in a private directory (or
OS-chosen TCP ports): never a fixed port.

The other half of "no orphans" is the env side's: every rlay SDK exits by itself when the agent
side's connection closes, so even ``kill -9`` of Python leaves no env process behind. On Linux a
tiny ``sh`` wrapper also gets a signal when this process dies (the parent-death signal, set by
``setpriv``) and kills the program's whole process group: children the program started
itself go too, connected or not.

Safe after ``fork`` (``gymnasium.vector.AsyncVectorEnv`` workers): a forked child starts its own
spawner thread and does not touch (or, at its exit, end) the programs and directories of its
parent. Socket directories are named after the process that made them; one left behind by a
process that was killed is removed by the next process that makes one.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import logging
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

from rlay.errors import LaunchError, UsageError, describe_returncode

__all__ = ["LaunchError", "Process", "SocketDir", "describe_returncode"]

log = logging.getLogger("rlay")

STDERR_LINES = 20
#: Seconds starting a program may take (fork + exec) before it is a :class:`LaunchError`.
SPAWN_TIMEOUT = 30.0

_live: weakref.WeakSet[Process] = weakref.WeakSet()
_socket_dirs: weakref.WeakSet[SocketDir] = weakref.WeakSet()

# If this Python process dies (even by SIGKILL) before an env program has connected, nothing
# would tell the program to quit: it waits for a connection forever, and so would any child it
# started. On Linux, setpriv (from util-linux) sets the parent-death signal (USR1) of a small sh
# wrapper, which starts the program in the background and on USR1 kills their process group.
# The wrapper passes the program's exit on as its own (a signal by re-raising it) and tells us
# the program's pid in a marked line on stderr. Once connected, every rlay env side also exits
# when its connection closes.
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None
_SH = shutil.which("sh")
_WRAPPER = """trap 'kill -KILL 0' USR1
trap : TERM INT HUP
# A background command starts with SIGINT and SIGQUIT ignored (POSIX): give them back.
if env --default-signal=INT true 2>/dev/null; then env --default-signal=INT,QUIT "$@" & else "$@" & fi
pid=$!
echo "rlay-launch-pid $pid" >&2
while :; do
  wait "$pid"; rc=$?
  kill -0 "$pid" 2>/dev/null || break
done
trap - TERM INT HUP
if [ "$rc" -gt 128 ]; then kill -$((rc - 128)) $$; fi
exit "$rc"
"""
_PID_MARK = b"rlay-launch-pid "
_DIE_WITH_PARENT = (
    [_SETPRIV, "--pdeathsig", "USR1", "--", _SH, "-c", _WRAPPER, "rlay-launch"] if _SETPRIV and _SH else []
)


class _Spawner:
    """One daemon thread that forks every env program. A daemon thread is not joined at exit, so
    it outlives the atexit handler that ends the programs gracefully (SIGTERM first)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        if self._pid != os.getpid():  # forked without the at-fork hook (should not happen)
            self.__init__()  # type: ignore[misc]
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


def _after_fork_in_child() -> None:
    """A forked child owns none of its parent's programs or directories, and has no spawner
    thread (threads do not survive fork): forget them, so that neither a launch nor the child's
    exit touches what belongs to the parent."""
    global _SPAWNER
    _SPAWNER = _Spawner()
    for process in list(_live):
        process._finalizer.detach()
    _live.clear()
    for sockets in list(_socket_dirs):
        sockets._finalizer.detach()
    _socket_dirs.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
        token: str | bytes | None = None,
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
        # §7.1/§15: the shared secret; never on the command line (other users can read that).
        if token:
            environ["RLAY_TOKEN"] = token.decode() if isinstance(token, bytes) else token
        else:
            environ.pop("RLAY_TOKEN", None)
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        program = self.command[0]
        found = shutil.which(program, path=environ.get("PATH")) if os.sep not in program else program
        if found is None or not os.access(os.path.join(cwd or "", found), os.X_OK):
            raise LaunchError(self.command, "cannot start the env program (not found or not executable)")
        try:
            # Popen runs on rlay's spawner thread, which lives as long as this process: the
            # parent-death signal below belongs to the thread that forked.
            future = _SPAWNER.submit(
                subprocess.Popen,
                [*_DIE_WITH_PARENT, *self.command],
                env=environ,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: close() ends its children too
            )
            try:
                self.popen = future.result(SPAWN_TIMEOUT)
            except concurrent.futures.TimeoutError:
                raise LaunchError(
                    self.command, f"starting the env program took over {SPAWN_TIMEOUT:g} s"
                ) from None
        except OSError as exc:
            raise LaunchError(self.command, f"cannot start the env program ({exc.strerror or exc})") from None
        self._program_pid: int | None = None if _DIE_WITH_PARENT else self.popen.pid
        self._pid_known = threading.Event()
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
        """The program's process id (with the Linux wrapper, the wrapper's process group)."""
        if self._program_pid is None:
            self._pid_known.wait(5.0)
            if self._program_pid is None:
                return self.popen.pid
        return self._program_pid

    def _drain(self) -> None:
        stream = self.popen.stderr
        if stream is None:
            return
        for raw in stream:
            if self._program_pid is None:
                at = raw.find(_PID_MARK)
                if at >= 0:
                    pid = raw[at + len(_PID_MARK) :].strip()
                    self._program_pid = int(pid) if pid.isdigit() else self.popen.pid
                    self._pid_known.set()
                    raw = raw[:at]
                    if not raw:
                        continue
            self._stderr.append(raw.decode("utf-8", "replace"))
        stream.close()
        self._pid_known.set()

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

    def settle(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the program to exit by itself (no signal sent)."""
        if seconds > 0 and self.popen.poll() is None:
            try:
                self.popen.wait(seconds)
            except subprocess.TimeoutExpired:
                pass

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
            pass
        _signal_group(popen, signal.SIGKILL)  # what is left: it, or children that outlived it
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


_PREFIX = "rlay-"
_swept = False


class SocketDir:
    """A private directory for unix socket paths; removed on :meth:`close` (and at exit).

    Its name carries this process's id (``rlay-<pid>-<random>``); the first one a process makes
    removes those of this user whose process is gone (killed before it could clean up)."""

    def __init__(self) -> None:
        global _swept
        if not _swept:
            _swept = True
            _sweep_stale(tempfile.gettempdir())
        self.path = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.path, True)
        _socket_dirs.add(self)

    def address(self, name: str = "env") -> str:
        return f"unix://{os.path.join(self.path, name + '.sock')}"

    def close(self) -> None:
        _socket_dirs.discard(self)
        self._finalizer()


def _sweep_stale(tmp: str) -> None:
    """Remove ``rlay-<pid>-*`` directories of this user whose process no longer exists."""
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    uid = os.getuid() if hasattr(os, "getuid") else None
    for name in names:
        if not name.startswith(_PREFIX):
            continue
        pid_text = name[len(_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        path = os.path.join(tmp, name)
        try:
            info = os.lstat(path)
            os.kill(int(pid_text), 0)
            continue  # its process lives (or a process with its pid does): leave it
        except ProcessLookupError:
            pass
        except (PermissionError, OSError):
            continue
        if uid is not None and info.st_uid != uid:
            continue
        log.info("= removing %s, left behind by process %s", path, pid_text)
        shutil.rmtree(path, ignore_errors=True)
