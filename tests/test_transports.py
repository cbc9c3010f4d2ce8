"""The transport contract (rlay/transports/__init__.py), checked for every transport alike."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import pytest

from rlay.errors import ConnectionClosed, Timeout, UsageError
from rlay.testing.transports import CHECKS, stream_pair
from rlay.transports import SCHEMES, Address, dial, listen, parse_address


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


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_contract_battery(address: str, check: Callable[[str], None]) -> None:
    """rlay.testing.transports, the battery shipped for every transport, on tcp and unix."""
    check(address)


def test_port_zero_is_resolved_and_bound_to_loopback() -> None:
    listener = listen("tcp://127.0.0.1:0")
    try:
        assert listener.address.port != 0 and listener.address.host == "127.0.0.1"
    finally:
        listener.close()


def test_every_scheme_has_a_row() -> None:
    assert {"tcp", "unix"} <= set(SCHEMES)
    with pytest.raises(UsageError, match="rlay speaks 'tcp', 'unix'"):
        parse_address("udp://127.0.0.1:5")


def test_a_reset_connection_is_connection_closed() -> None:
    with stream_pair("tcp://127.0.0.1:0") as (a, b, _):
        # SO_LINGER 0: close() sends a RST instead of a FIN
        b._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # type: ignore[attr-defined]
        b._sock.close()  # type: ignore[attr-defined]
        with pytest.raises(ConnectionClosed, match="broke"):
            for _ in range(100):  # the first send may still succeed
                a.send([b"x" * 65536], 5)
                a.recv(5)


def test_unix_listener_replaces_a_stale_socket_and_removes_its_own(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "env.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # a socket file nobody listens on, as a crashed run leaves it
    stale.close()
    listener = listen(f"unix://{path}")
    with pytest.raises(UsageError, match="another process is listening"):
        listen(f"unix://{path}")
    listener.close()
    assert not os.path.exists(path)
    with open(path, "w") as f:
        f.write("not a socket")
    with pytest.raises(UsageError, match="exists and is not a socket"):
        listen(f"unix://{path}")


def test_dial_refused_and_accept_timeout_say_where(sock_dir: str) -> None:
    with pytest.raises(ConnectionClosed, match=r"cannot connect to unix://.*nobody.sock"):
        dial(f"unix://{sock_dir}/nobody.sock", 1)
    listener = listen(f"unix://{sock_dir}/quiet.sock")
    try:
        with pytest.raises(Timeout, match="waiting for an env side to connect to unix://"):
            listener.accept(0.05)
    finally:
        listener.close()
