"""The doorman of a listening agent-side env (``ServerEnv``, ``ServerVectorEnv``; spec §17.2).

Once such an env has all the env sides it expects, its listener stays open (a game that is
stopped and started again in its editor dials back in), but nobody else may take part. Without a
doorman a second program that dials sits in the kernel's backlog, its connect() having succeeded,
waiting for a HELLO that never comes. The doorman is the only one that accepts from then on:

- while every expected env side is attached (its connection open), a newcomer gets a fatal
  ``NOT_SUPPORTED`` ERROR as its first frame, saying this env already has its env side, and is
  closed; the sessions in progress never notice;
- once an attached env side has hung up (its connection shows end of stream), the newcomer is
  kept for the env's next :meth:`take` (a game back from the editor's stop button).
"""

from __future__ import annotations

import logging
import queue
import select
import threading

from rlay.errors import ConnectionClosed, Timeout
from rlay.protocol.codec import Encoder
from rlay.protocol.framing import pack_header
from rlay.protocol.messages import Error
from rlay.protocol.wire import ErrorCode, Kind
from rlay.transports import Listener, Stream

log = logging.getLogger("rlay")

#: Seconds a newcomer waits for an attached env side that may be hanging up right now (a game
#: restarted in its editor: the old connection's end of stream is on its way).
GRACE = 0.3
#: Newcomers being decided on at once (each waits up to GRACE, and a refused one has its bytes
#: read briefly so that the ERROR arrives before the close); beyond that one is closed unheard.
MAX_REFUSING = 32
_POLL_GONE = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)


def gone(stream: Stream) -> bool | None:
    """Whether the peer of ``stream`` hung up (without reading from it); None: cannot tell."""
    fileno = getattr(stream, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = fileno()
    except (OSError, ValueError):
        return True
    if fd < 0:
        return True  # closed here
    poller = select.poll()
    poller.register(fd, _POLL_GONE)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True


def refusal_frame(message: str) -> bytes:
    body, _, data_len = Encoder().encode(
        Error(int(ErrorCode.NOT_SUPPORTED), message, True, None, None).to_body()
    )
    return pack_header(Kind.ERROR, data_len, len(body)) + bytes(body)


#: How often the accept loop looks at its stop flag: close() waits for the loop to end (so nothing
#: accepts on a closed descriptor), which costs a ServerEnv's close up to this long.
ACCEPT_WAKE = 0.02


class Doorman:
    """Accepts on ``listener`` in a thread, for an env that expects ``len(attached)`` env sides."""

    def __init__(self, listener: Listener, attached: list[Stream], who: str) -> None:
        self._listener = listener
        self.attached = attached  # the streams handed out, one per expected env side
        self._who = who
        self._kept: queue.SimpleQueue[Stream] = queue.SimpleQueue()
        self._kept_count = 0
        self._lock = threading.Lock()
        self._deciding = threading.BoundedSemaphore(MAX_REFUSING)
        self._stop = threading.Event()
        self.refused = 0
        self._thread = threading.Thread(target=self._run, name="rlay-doorman", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                stream = self._listener.accept(ACCEPT_WAKE)
            except Timeout:
                continue
            except (ConnectionClosed, OSError):
                return
            if self._stop.is_set():
                stream.close()
                return
            # Decided beside the accept loop (the grace must not hold up the next newcomer).
            if not self._deciding.acquire(blocking=False):
                self.refused += 1
                stream.close()  # a flood: beyond MAX_REFUSING at once, closed without a word
                continue
            threading.Thread(target=self._decide, args=(stream,), name="rlay-doorman", daemon=True).start()

    def _decide(self, stream: Stream) -> None:
        try:
            if self._keep_if_room(stream, GRACE):
                log.info("= %s kept %s for the next accept (an env side had left)", self._who, stream.peer)
                return
            self.refused += 1
            log.warning("! %s refused %s: it already has its env side", self._who, stream.peer)
            self._say_no(stream)
        finally:
            self._deciding.release()

    def _keep_if_room(self, stream: Stream, grace: float) -> bool:
        """Keep ``stream`` if an attached env side is gone (and not yet replaced by one kept),
        waiting up to ``grace`` for one that is hanging up right now."""
        waited = 0.0
        while True:
            with self._lock:
                free = sum(1 for s in self.attached if gone(s)) - self._kept_count
                if free > 0:
                    self._kept_count += 1
                    self._kept.put(stream)
                    return True
            if waited >= grace or self._stop.wait(0.05):
                return False
            waited += 0.05

    def _say_no(self, stream: Stream) -> None:
        n = len(self.attached)
        has = "its env side" if n == 1 else f"all its {n} env sides"
        message = (
            f"this {self._who} already has {has}; another program dialling it is refused (give "
            "each program its own ServerEnv and address, or use a ServerVectorEnv for several)"
        )
        try:
            stream.send([refusal_frame(message)], 2.0, "refusing a second env side")
            for _ in range(16):  # read what it sent (its HELLO) until it hangs up, so the close
                if not stream.recv(1.0, "refusing a second env side"):  # sends no reset first
                    break
        except (ConnectionClosed, Timeout):
            pass
        finally:
            stream.close()

    def take(self, timeout: float | None) -> Stream:
        """The next env side kept for this env (the listener's ``accept``, through the doorman)."""
        try:
            stream = self._kept.get(timeout=timeout)
        except queue.Empty:
            where = self._listener.address
            raise Timeout(f"waiting for an env side to connect to {where}", timeout or 0) from None
        with self._lock:
            self._kept_count -= 1
            for i, old in enumerate(self.attached):  # it takes the place of one that left
                if gone(old):
                    self.attached[i] = stream
                    break
        return stream

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        while True:
            try:
                self._kept.get_nowait().close()
            except queue.Empty:
                break
