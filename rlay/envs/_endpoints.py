"""Where an agent-side env's connections come from: dial, accept and launch, in one place for
ClientEnv, ServerEnv and both vector envs.

- ``mode="dial"`` (``ClientEnv``, ``ClientVectorEnv``): the env sides listen. Either addresses to
  dial, or ``count`` launched programs, each listening at its own fresh unix socket (or at the
  tcp address given, port 0 announced by its ``RLAY_LISTENING`` line, spec §15).
- ``mode="listen"`` (``ServerEnv``, ``ServerVectorEnv``): one listener (the address given; a fresh
  unix socket when launching; else ``tcp://127.0.0.1:0``) that ``count`` env sides dial, launched
  or started by the user.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence

from rlay.envs._doorman import Doorman, gone
from rlay.errors import ConnectionClosed, Timeout, UsageError, clip
from rlay.launch import LaunchError, Process, SocketDir
from rlay.transports import Listener, Stream, dial, listen, parse_address

log = logging.getLogger("rlay")

#: How long one wait inside a longer wait lasts, so that a launched program's exit is seen at once.
SLICE = 0.1


class Endpoints:
    def __init__(
        self,
        mode: str,
        address: str | Sequence[str] | None,
        *,
        launch: Sequence[str] | None = None,
        count: int = 1,
        launch_env: dict[str, str] | None = None,
        launch_cwd: str | None = None,
        token: str | bytes | None = None,
        who: str = "env",
    ) -> None:
        if type(count) is not int or count < 1:
            raise UsageError(f"the number of env programs must be an int >= 1, got {count!r}")
        self.mode = mode
        self.count = count
        self.who = who
        #: §17.2: once a listening env has its ``count`` env sides, the doorman alone accepts.
        self._handed: list[Stream] = []
        self._doorman: Doorman | None = None
        self.processes: list[Process] = []
        self._launch = (launch, launch_env, launch_cwd, address)  # to relaunch a dead program
        self.launches = 0  # programs started, relaunches included
        self._alive_after_failure: set[Process] = set()
        self._sockets: SocketDir | None = None
        self.listener: Listener | None = None
        self.addresses: list[str] = []
        #: §7.1: the shared secret, from ``token=``, else ``RLAY_TOKEN``, else (launching) a fresh
        #: random one handed to the programs as ``RLAY_TOKEN``. ``auth_required`` is False only for
        #: that generated one: a launched program whose SDK has no authentication still works.
        #: ``token=""`` turns authentication off (rlay record / replay, whose frames are replayed).
        if token is None:
            token = os.environ.get("RLAY_TOKEN") or None
        self.auth_required = bool(token)
        if token is None and launch is not None:
            token = secrets.token_hex(32)
        self.token = token or None
        try:
            self._open(address, launch, count, launch_env, launch_cwd, who)
        except BaseException:
            self.close()
            raise

    def _open(
        self,
        address: str | Sequence[str] | None,
        launch: Sequence[str] | None,
        count: int,
        launch_env: dict[str, str] | None,
        launch_cwd: str | None,
        who: str,
    ) -> None:
        if launch is not None and address is not None and not isinstance(address, str):
            raise UsageError(
                "with launch=[...], address is one address (e.g. 'tcp://127.0.0.1:0'), or None for "
                "a fresh unix socket"
            )
        if self.mode == "listen":
            if address is None and launch is not None:
                self._sockets = SocketDir()
                address = self._sockets.address()
            if address is not None and not isinstance(address, str):
                raise UsageError(f"{who} listens at one address, got {clip(address, 80)}")
            self.listener = listen(address or "tcp://127.0.0.1:0")
            self.addresses = [str(self.listener.address)]
            if launch is not None:
                for _ in range(count):
                    self._start(launch, self.addresses[0], launch_env, launch_cwd)
            return
        if launch is None:
            if address is None:
                raise UsageError(f"{who} needs an address to dial, or launch=[...] to start the env program")
            addresses = [address] if isinstance(address, str) else list(address)
            if not addresses:
                raise UsageError(f"{who} needs at least one address to dial")
            for a in addresses:
                if not isinstance(a, str):
                    raise UsageError(
                        f"an address must be a str like 'tcp://127.0.0.1:5555', got {clip(a, 60)}"
                    )
                parse_address(a)
            self.addresses = addresses
            return
        assert address is None or isinstance(address, str)  # checked above
        if address is None:
            self._sockets = SocketDir()
        elif count > 1 and parse_address(address).port != 0 and parse_address(address).scheme != "unix":
            raise UsageError(f"{count} programs cannot all listen at {address}; give port 0")
        for i in range(count):  # start them all first: they boot in parallel
            where = self._sockets.address(f"env{i}") if self._sockets else address
            assert where is not None
            self._start(launch, where, launch_env, launch_cwd)
        self.addresses = [p.address for p in self.processes]

    def _start(
        self, launch: Sequence[str], address: str, env: dict[str, str] | None, cwd: str | None
    ) -> None:
        mode = "listen" if self.mode == "dial" else "dial"
        process = Process(launch, address, env=env, cwd=cwd, mode=mode, token=self.token)
        log.info("= launched %s (pid %d) to %s at %s", process.command[0], process.pid, mode, address)
        self.processes.append(process)
        self.launches += 1

    # -- relaunching (the vector envs' max_restarts) ------------------------------------------------

    def dead_program(self, index: int, wait: float = 1.0) -> Process | None:
        """The launched program that served the ``index``-th connection if it has exited (waiting
        up to ``wait`` seconds for it: its end of stream often arrives before its exit status).
        Listening, which program served which connection is not known, and does not matter for
        a relaunch (they all run the same command): the first one that exited."""
        if not self.processes or (self.mode == "dial" and index >= len(self.processes)):
            return None
        candidates = [self.processes[index]] if self.mode == "dial" else list(self.processes)
        deadline = time.monotonic() + wait
        while True:
            for process in candidates:
                if process.exited() is not None:
                    return process
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)

    def relaunch(self, at: int, timeout: float | None) -> tuple[str, Stream]:
        """Replace the program ``processes[at]`` (exited, or failed to get ready) by a fresh one
        with the same command, and connect to it (dial it at a fresh address, or accept it): the
        new connection and its address. The new program is ``processes[at]`` even if this fails."""
        launch, env, cwd, address = self._launch
        if launch is None:
            raise UsageError("only a launched env program can be relaunched")
        dead = self.processes[at]
        dead.close(grace=0.0)  # reap it, and end what it left behind in its process group
        if self.mode == "listen":
            where = self.addresses[0]
        elif self._sockets is not None:
            _unlink_socket(dead.address)  # its socket file, left by a killed program
            where = self._sockets.address(f"env{at}-{self.launches}")
        else:
            assert isinstance(address, str)  # checked in _open
            where = address
        mode = "listen" if self.mode == "dial" else "dial"
        process = Process(launch, where, env=env, cwd=cwd, mode=mode, token=self.token)
        log.info("= relaunched %s (pid %d) to %s at %s", process.command[0], process.pid, mode, where)
        self.processes[at] = process
        self.launches += 1
        if self.mode == "dial":
            stream = self._wait(
                timeout, lambda s: _dial_launched(process, s), f"it listened at {where}", watch=[process]
            )
            self.addresses[at] = process.listening or process.address
            return self.addresses[at], stream
        listener = self.listener
        if listener is None:
            raise ConnectionClosed("the env is closed")
        # §17.2: once the doorman accepts, the relaunched program is the newcomer it keeps (the
        # dead one's connection is gone); it takes the dead one's place.
        accept = listener.accept if self._doorman is None else self._doorman.take
        stream = self._wait(
            timeout, lambda s: _try_accept(accept, s), f"it connected to {where}", watch=[process]
        )
        return stream.peer, stream

    # -- connecting ------------------------------------------------------------------------------

    def connect(self, index: int, timeout: float | None) -> tuple[str, Stream]:
        """The ``index``-th connection, and the address it is known by: dial it (once its launched
        program listens) or accept the next env side (failing at once if a launched one exits)."""
        if self.mode == "dial":
            if not self.processes:
                address = self.addresses[index]
                return address, dial(address, timeout)
            process = self.processes[index]
            stream = self._wait(
                timeout, lambda s: _dial_launched(process, s), f"it listened at {process.address}"
            )
            self.addresses[index] = process.listening or process.address
            return self.addresses[index], stream
        listener = self.listener
        if listener is None:
            raise ConnectionClosed("the env is closed")
        accept = listener.accept if self._doorman is None else self._doorman.take
        if not self.processes:
            stream = accept(timeout)
        else:
            stream = self._wait(
                timeout, lambda s: _try_accept(accept, s), f"it connected to {self.addresses[0]}"
            )
        if self._doorman is None:
            self._handed.append(stream)
            if len(self._handed) >= self.count and all(gone(s) is not None for s in self._handed):
                self._doorman = Doorman(listener, self._handed, self.who)
        return stream.peer, stream

    def _wait(
        self, timeout: float | None, attempt: object, what: str, watch: list[Process] | None = None
    ) -> Stream:
        watched = self.processes if watch is None else watch
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for process in watched:
                if process.exited() is not None:
                    raise process.failure(f"the env program exited before {what}")
                if self.mode == "listen" and process.listening is not None:
                    raise process.failure(
                        f"the env program listens at {process.listening} (it printed RLAY_LISTENING), but "
                        f"this env listens and expected it to dial {self.addresses[0]}: start it with its "
                        "dial option (e.g. --connect {address}) or let it follow RLAY_MODE=dial"
                    )
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise watched[0].failure(f"the env program was not ready after {timeout:g} s ({what})")
            result = attempt(SLICE if left is None else min(SLICE, left))  # type: ignore[operator]
            if result is not None:
                return result  # type: ignore[no-any-return]

    def process_failure(self, index: int, exc: BaseException) -> BaseException:
        """``exc`` from the ``index``-th env side, enriched when its launched program exited."""
        if len(self.processes) != 1 and (self.mode == "listen" or index >= len(self.processes)):
            return exc  # which program served which accepted connection is not known
        if not self.processes:
            return exc
        if isinstance(exc, LaunchError):
            return exc
        process = self.processes[index if self.mode == "dial" else 0]
        if process.exited() is None:
            if process in self._alive_after_failure:
                return exc  # waited once already: it stays (e.g. after a Timeout); fail at once
            try:
                process.popen.wait(1.0)  # it is probably exiting: say how
            except Exception:
                self._alive_after_failure.add(process)
                return exc
        return process.failure(f"{exc}; the env program exited")

    def close(self, settle: float = 0.0) -> None:
        """Close the listener and end the launched programs. ``settle``: seconds to let them exit
        by themselves first (after an orderly CLOSE a program exits with its own code, §15)."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self._doorman is not None:
            self._doorman.close()
        processes, self.processes = self.processes, []
        deadline = time.monotonic() + settle
        for process in processes:
            process.settle(max(0.0, deadline - time.monotonic()))
        for process in processes:
            process.close()
        if self._sockets is not None:
            self._sockets.close()
            self._sockets = None


def _dial_launched(process: Process, seconds: float) -> Stream | None:
    """One attempt to reach a launched listener: at the address its ``RLAY_LISTENING`` line
    announced (the only way to learn a port 0), else at the address it was given."""
    address = process.listening
    if address is None:
        if parse_address(process.address).port == 0 and parse_address(process.address).scheme != "unix":
            process.wait_announced(seconds)
            return None
        address = process.address
    try:
        return dial(address, seconds)
    except ConnectionClosed:  # not listening yet
        time.sleep(min(0.02, seconds))
        return None
    except Timeout:
        return None


def _unlink_socket(address: str) -> None:
    parsed = parse_address(address)
    if parsed.scheme == "unix" and parsed.path:
        try:
            os.unlink(parsed.path)
        except OSError:
            pass


def _try_accept(accept: Callable[[float | None], Stream], seconds: float) -> Stream | None:
    try:
        return accept(seconds)
    except Timeout:
        return None


__all__ = ["Endpoints", "LaunchError"]
