"""The transport contract (rlay/transports/__init__.py), checked for every transport alike."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from rlay.errors import ConnectionClosed, Timeout, UsageError
from rlay.transports import Address, Listener, Stream, dial, parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp://127.0.0.1:5555", Address("tcp", host="127.0.0.1", port=5555)),
        ("tcp://:0", Address("tcp", host="127.0.0.1", port=0)),  # loopback unless told otherwise
        ("tcp://[::1]:7", Address("tcp", host="::1", port=7)),
        ("unix:///tmp/x.sock", Address("unix", path="/tmp/x.sock")),
    ],
)
def test_parse_address(text: str, expected: Address) -> None:
    assert parse_address(text) == expected
    assert str(expected).startswith(text.split("://")[0] + "://")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("127.0.0.1:5555", "has no scheme"),
        ("udp://127.0.0.1:5", "unknown scheme 'udp'"),
        ("tcp://127.0.0.1", "has no port"),
        ("tcp://127.0.0.1:http", "is not a number"),
        ("tcp://127.0.0.1:70000", "outside 0..65535"),
        ("tcp://[::1]7", "expected 'tcp://\\[IPV6\\]:PORT'"),
        ("unix://", "has no path"),
    ],
)
def test_bad_addresses_are_named(text: str, why: str) -> None:
    with pytest.raises(UsageError, match=why):
        parse_address(text)


def pair(address: str) -> tuple[Stream, Stream, Listener]:
    listener = Listener(address)
    accepted: list[Stream] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept(5)))
    thread.start()
    dialled = dial(str(listener.address), 5)
    thread.join(5)
    return dialled, accepted[0], listener


def test_port_zero_is_resolved_and_bound_to_loopback() -> None:
    listener = Listener("tcp://127.0.0.1:0")
    try:
        assert listener.address.port != 0 and listener.address.host == "127.0.0.1"
    finally:
        listener.close()


def test_bytes_arrive_in_order_and_eof_is_empty_bytes(address: str) -> None:
    a, b, listener = pair(address)
    try:
        big = os.urandom(3 * 1024 * 1024)  # beyond the socket buffer: the partial-send path
        received = bytearray()

        def reader() -> None:
            b.set_timeout(10)
            while chunk := b.recv():
                received.extend(chunk)

        thread = threading.Thread(target=reader)
        thread.start()
        a.send([b"head", memoryview(big), b"tail"])
        a.close()
        thread.join(10)
        assert bytes(received) == b"head" + big + b"tail"  # and recv() returned b"" at the end
    finally:
        b.close()
        listener.close()


def test_silence_is_a_timeout_naming_the_stage(address: str) -> None:
    a, b, listener = pair(address)
    try:
        b.set_timeout(0.1)
        with pytest.raises(Timeout, match="waiting for something") as info:
            b.recv("waiting for something")
        assert info.value.seconds == 0.1
    finally:
        a.close()
        b.close()
        listener.close()


def test_every_call_after_close_is_connection_closed(address: str) -> None:
    a, b, listener = pair(address)
    a.close()
    a.close()  # idempotent
    for call in (lambda: a.recv(), lambda: a.send([b"x"]), lambda: a.set_timeout(1.0)):
        with pytest.raises(ConnectionClosed, match="closed locally"):
            call()
    b.close()
    listener.close()


def test_a_reset_connection_is_connection_closed() -> None:
    a, b, listener = pair("tcp://127.0.0.1:0")
    try:
        # SO_LINGER 0: close() sends a RST instead of a FIN
        b._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        b._sock.close()
        a.set_timeout(5)
        with pytest.raises(ConnectionClosed, match="broke"):
            for _ in range(100):  # the first send may still succeed
                a.send([b"x" * 65536])
                a.recv()
    finally:
        a.close()
        listener.close()


def test_unix_listener_replaces_a_stale_socket_and_removes_its_own(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "env.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # a socket file nobody listens on, as a crashed run leaves it
    stale.close()
    listener = Listener(f"unix://{path}")
    with pytest.raises(UsageError, match="another process is listening"):
        Listener(f"unix://{path}")
    listener.close()
    assert not os.path.exists(path)
    with open(path, "w") as f:
        f.write("not a socket")
    with pytest.raises(UsageError, match="exists and is not a socket"):
        Listener(f"unix://{path}")


def test_dial_refused_and_accept_timeout_say_where(sock_dir: str) -> None:
    with pytest.raises(ConnectionClosed, match=r"cannot connect to unix://.*nobody.sock"):
        dial(f"unix://{sock_dir}/nobody.sock", 1)
    listener = Listener(f"unix://{sock_dir}/quiet.sock")
    try:
        with pytest.raises(Timeout, match="waiting for an env side to connect to unix://"):
            listener.accept(0.05)
    finally:
        listener.close()
