"""ws:// (rlay/transports/ws.py): the transport battery, both paradigms with the Python env side,
and the refusals a browser-facing listener owes: a foreign Origin, a wrong path, plain HTTP, a
text message."""

from __future__ import annotations

import http.client
import threading

import numpy as np
import pytest

import rlay
from rlay.errors import ConnectionClosed
from rlay.testing import TrivialEnv
from rlay.testing.transports import CHECKS
from rlay.transports import dial, listen

pytest.importorskip("websockets")  # a dev dependency: always there in the test environment


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_contract_battery(check: object) -> None:
    check("ws://127.0.0.1:0/rlay")  # type: ignore[operator]


def test_client_env_dials_a_python_env_side_over_ws() -> None:
    server = rlay.serve(TrivialEnv, "ws://127.0.0.1:0/", block=False)
    try:
        assert server.address.startswith("ws://127.0.0.1:")
        env = rlay.ClientEnv(server.address)
        obs, _ = env.reset(seed=0)
        assert obs.dtype == np.float32 and obs.shape == (4,)
        for _ in range(50):
            obs, reward, *_ = env.step(1)
        assert reward == 1.0
        env.close()
    finally:
        server.close()


def test_server_env_is_dialled_over_ws_as_a_page_would() -> None:
    env = rlay.ServerEnv("ws://127.0.0.1:0/game", wait=False)
    thread = threading.Thread(target=rlay.connect, args=(TrivialEnv, env.address), daemon=True)
    thread.start()
    try:
        env.accept(10)
        obs, _ = env.reset(seed=1)
        assert obs.shape == (4,) and env.step(0)[0].shape == (4,)
    finally:
        env.close()
    thread.join(10)
    assert not thread.is_alive(), "the env side did not end when the agent side closed"


def request(address: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
    host, port = address.split("//")[1].split("/")[0].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    status = response.status
    body = "" if status == 101 else response.read().decode()  # 101: the socket is a WebSocket now
    conn.close()
    return status, body


UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def test_refusals_name_the_problem() -> None:
    listener = listen("ws://127.0.0.1:0/rlay")
    try:
        address = str(listener.address)
        status, body = request(address, "/rlay", {**UPGRADE, "Origin": "http://evil.example"})
        assert status == 403 and "http://evil.example" in body and "RLAY_WS_ORIGINS" in body
        status, body = request(address, "/elsewhere", UPGRADE)
        assert status == 404 and "serves /rlay" in body
        status, body = request(address, "/rlay", {})
        assert status == 426 and "rlay WebSocket endpoint" in body
        status, _ = request(address, "/rlay", {**UPGRADE, "Origin": "http://127.0.0.1:8000"})
        assert status == 101  # a page served from loopback may dial
        with pytest.raises(ConnectionClosed, match="HTTP 404"):
            dial(address.replace("/rlay", "/nope"), 5)
    finally:
        listener.close()


def test_an_allowed_origin_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLAY_WS_ORIGINS", "https://game.example:8443")
    listener = listen("ws://127.0.0.1:0/")
    try:
        status, _ = request(str(listener.address), "/", {**UPGRADE, "Origin": "https://game.example:8443"})
        assert status == 101
    finally:
        listener.close()


def test_a_text_message_is_refused() -> None:
    from websockets.sync.client import connect

    listener = listen("ws://127.0.0.1:0/")
    try:
        with connect(str(listener.address), proxy=None) as client:
            stream = listener.accept(5)
            client.send("hello")
            with pytest.raises(ConnectionClosed, match="text message"):
                stream.recv(5)
        stream.close()
    finally:
        listener.close()
