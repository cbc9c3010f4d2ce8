"""The battery every transport passes (the contract in :mod:`rlay.transports.base`), shipped so
that a new transport is one module, one row in the scheme table and one test parameter::

    from rlay.testing.transports import check_transport
    check_transport("ws://127.0.0.1:0/rlay")        # raises AssertionError naming what failed

Each check opens its own listener at the address given (port 0 or a fresh path), dials it, and
closes everything it opened.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rlay.errors import ConnectionClosed, Timeout
from rlay.transports import Listener, Stream, dial, listen


@contextmanager
def stream_pair(address: str) -> Iterator[tuple[Stream, Stream, Listener]]:
    """``(dialled, accepted, listener)`` connected over the transport of ``address``."""
    listener = listen(address)
    accepted: list[Stream] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept(5)))
    thread.start()
    try:
        dialled = dial(str(listener.address), 5)
    except BaseException:
        listener.close()
        raise
    thread.join(5)
    assert accepted, f"accept() on {listener.address} did not return the dialled stream"
    try:
        yield dialled, accepted[0], listener
    finally:
        dialled.close()
        accepted[0].close()
        listener.close()


def check_order_and_eof(address: str) -> None:
    """Bytes arrive whole and in order (beyond any buffer: the partial-send path); ``b""`` iff EOF."""
    with stream_pair(address) as (a, b, _):
        big = os.urandom(3 * 1024 * 1024)
        received = bytearray()

        def reader() -> None:
            while chunk := b.recv(10):
                received.extend(chunk)

        thread = threading.Thread(target=reader)
        thread.start()
        a.send([b"head", memoryview(big), b"tail"], 10)
        a.close()
        thread.join(10)
        assert bytes(received) == b"head" + big + b"tail", "bytes lost, reordered or not ended by b''"


def check_both_ways(address: str) -> None:
    """Each side sends and receives (a request/reply, as a step does)."""
    with stream_pair(address) as (a, b, _):
        for _ in range(3):
            a.send([b"ping"], 5)
            assert _read(b, 4) == b"ping"
            b.send([b"po", b"ng"], 5)
            assert _read(a, 4) == b"pong"


def check_timeouts(address: str) -> None:
    """Silence is :class:`Timeout` naming the stage and the seconds, after about that long;
    ``timeout=0`` returns at once; the stream is still usable afterwards."""
    with stream_pair(address) as (a, b, _):
        started = time.monotonic()
        try:
            b.recv(0.1, "waiting for something")
        except Timeout as exc:
            assert "waiting for something" in str(exc) and exc.seconds == 0.1, str(exc)
        else:
            raise AssertionError("recv(0.1) on a silent stream returned instead of raising Timeout")
        took = time.monotonic() - started
        assert 0.05 <= took < 2.0, f"recv(0.1) took {took:.3f} s"
        started = time.monotonic()
        try:
            b.recv(0)
        except Timeout:
            pass
        else:
            raise AssertionError("recv(0) on a silent stream returned instead of raising Timeout")
        assert time.monotonic() - started < 0.5, "recv(0) blocked"
        a.send([b"late"], 5)
        assert _read(b, 4) == b"late", "the stream was not usable after a timeout"


def check_closed_locally(address: str) -> None:
    """``close()`` is idempotent, and every later call is :class:`ConnectionClosed`."""
    with stream_pair(address) as (a, _, _):
        a.close()
        a.close()
        for call in (lambda: a.recv(1), lambda: a.send([b"x"], 1)):
            try:
                call()
            except ConnectionClosed as exc:
                assert "closed locally" in str(exc), str(exc)
            else:
                raise AssertionError("a call on a closed stream did not raise ConnectionClosed")


def check_accept_timeout(address: str) -> None:
    listener = listen(address)
    try:
        try:
            listener.accept(0.05)
        except Timeout as exc:
            assert str(listener.address) in str(exc), str(exc)
        else:
            raise AssertionError("accept() with nobody dialling returned")
    finally:
        listener.close()
        listener.close()  # idempotent


CHECKS: list[Callable[[str], None]] = [
    check_order_and_eof,
    check_both_ways,
    check_timeouts,
    check_closed_locally,
    check_accept_timeout,
]


def check_transport(address: str) -> None:
    """Run every check against listeners at ``address``."""
    for check in CHECKS:
        check(address)


def _read(stream: Stream, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = stream.recv(5)
        assert chunk, "end of stream before the bytes sent"
        out += chunk
    return out
