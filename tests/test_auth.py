"""Shared-secret authentication (spec §7.1): right token works both directions, a wrong or missing
token is AUTH_FAILED on both sides, and the token never appears on the wire."""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from typing import Any

import gymnasium as gym
import pytest

import rlay
from rlay.protocol.connection import Connection, State, auth_proof
from rlay.protocol.wire import ErrorCode, Role

TOKEN = "s3cret-token-0123456789-abcdef"


def make() -> gym.Env[Any, Any]:
    return gym.make("CartPole-v1")


def play(env: gym.Env[Any, Any]) -> None:
    env.reset(seed=1)
    for _ in range(5):
        env.step(env.action_space.sample())


# -- the protocol core, sans I/O ---------------------------------------------------------------------


def handshake(agent_token: Any, env_token: Any, **kw: Any) -> tuple[Connection, Connection, list[Any]]:
    agent = Connection(Role.AGENT, token=agent_token, **kw)
    env = Connection(Role.ENV, token=env_token)
    seen: list[Any] = []
    for _ in range(3):
        for src, dst in ((agent, env), (env, agent)):
            for buf in src.data_to_send():
                dst.receive_data(bytes(buf))
        for conn in (agent, env):
            try:
                event = conn.next_event()
            except rlay.ProtocolError as exc:
                seen.append((conn.role, exc))
                continue
            if event is not None:
                seen.append((conn.role, event))
    return agent, env, seen


def test_proof_is_hmac_sha256_of_the_transcript() -> None:
    a, e = bytes(range(32)), bytes(range(32, 64))
    transcript = b"rlay-auth-v1\x00agent\x00" + a + e
    assert auth_proof(b"key", Role.AGENT, a, e) == hmac.new(b"key", transcript, hashlib.sha256).digest()
    assert auth_proof(b"key", Role.AGENT, a, e) != auth_proof(b"key", Role.ENV, a, e)  # no reflection


def test_same_token_authenticates_and_hello_comes_after_the_proof() -> None:
    agent, env, seen = handshake(TOKEN, TOKEN)
    assert [type(ev).__name__ for _, ev in seen] == ["Hello", "Hello"]
    assert agent.authenticated and env.authenticated
    assert agent.state is State.DESCRIBE and env.state is State.DESCRIBE


@pytest.mark.parametrize(
    ("agent_token", "env_token", "why"),
    [
        ("a" * 20, "b" * 20, "different tokens"),
        (TOKEN, None, "requires authentication"),
        (None, TOKEN, "has no token"),
    ],
)
def test_wrong_or_missing_token_is_auth_failed(agent_token: Any, env_token: Any, why: str) -> None:
    agent, env, seen = handshake(agent_token, env_token)
    errors = [ev for _, ev in seen if isinstance(ev, rlay.AuthenticationFailed)]
    assert errors and any(why in str(e) for e in errors)
    assert agent.state is State.CLOSED or env.state is State.CLOSED
    # The side that did not detect it received a fatal AUTH_FAILED ERROR instead.
    for role, ev in seen:
        if not isinstance(ev, Exception):
            assert type(ev).__name__ == "Error" and ev.code == ErrorCode.AUTH_FAILED and ev.fatal, (role, ev)


def test_no_token_anywhere_changes_nothing_on_the_wire() -> None:
    plain = b"".join(bytes(b) for b in Connection(Role.AGENT).data_to_send())
    assert b"auth" not in plain


# -- real sockets, both directions ------------------------------------------------------------------


class Tap:
    """A tcp relay between a dialer and ``target`` that keeps every byte in both directions."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("tcp://").rsplit(":", 1)
        self.target = (host, int(port))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.captured = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        a, _ = self.sock.accept()
        b = socket.create_connection(self.target)
        for src, dst in ((a, b), (b, a)):
            threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        while data := src.recv(65536):
            with self.lock:
                self.captured += data
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)


def test_client_env_with_the_right_token_and_the_token_never_on_the_wire() -> None:
    server = rlay.serve(make, "tcp://127.0.0.1:0", block=False, token=TOKEN)
    try:
        tap = Tap(server.address)
        env = rlay.ClientEnv(tap.address, token=TOKEN)
        assert env._session is not None and env._session.conn.authenticated
        play(env)
        env.close()
        time.sleep(0.1)
        wire = bytes(tap.captured)
        assert b"auth" in wire  # the capability was announced…
        assert TOKEN.encode() not in wire and TOKEN.encode().hex().encode() not in wire  # …not the secret
    finally:
        server.close()


def test_server_env_with_the_right_token_from_rlay_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLAY_TOKEN", TOKEN)  # both sides default to it
    agent = rlay.ServerEnv("tcp://127.0.0.1:0", wait=False)
    errors: list[BaseException] = []

    def env_side() -> None:
        try:
            rlay.connect(make, agent.address)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=env_side, daemon=True)
    thread.start()
    agent.accept(30)
    assert agent._session is not None and agent._session.conn.authenticated
    play(agent)
    agent.close()
    thread.join(10)
    assert not errors


def test_client_env_wrong_token_fails_on_both_sides() -> None:
    server = rlay.serve(make, "tcp://127.0.0.1:0", block=False, token=TOKEN)
    try:
        with pytest.raises(rlay.AuthenticationFailed, match="different tokens"):
            rlay.ClientEnv(server.address, token="not-the-token")
        deadline = time.monotonic() + 5
        while not server.errors and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(isinstance(e, rlay.AuthenticationFailed) for e in server.errors), list(server.errors)
    finally:
        server.close()


@pytest.mark.parametrize("who_has_it", ["agent", "env"])
def test_server_env_token_on_one_side_only_fails_on_both(who_has_it: str) -> None:
    agent = rlay.ServerEnv("tcp://127.0.0.1:0", wait=False, token=TOKEN if who_has_it == "agent" else None)
    errors: list[BaseException] = []

    def env_side() -> None:
        try:
            rlay.connect(make, agent.address, token=TOKEN if who_has_it == "env" else None)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=env_side, daemon=True)
    thread.start()
    with pytest.raises(rlay.AuthenticationFailed):
        agent.accept(30)
    thread.join(10)
    assert len(errors) == 1 and isinstance(errors[0], rlay.AuthenticationFailed), errors
    agent.close()


def test_a_busy_server_with_a_token_still_says_why_to_an_authenticated_client() -> None:
    shared = make()  # one instance: a second agent is refused with "busy" (NOT_SUPPORTED)
    server = rlay.serve(shared, "tcp://127.0.0.1:0", block=False, token=TOKEN)
    try:
        first = rlay.ClientEnv(server.address, token=TOKEN)
        with pytest.raises(rlay.RemoteError, match="busy"):
            rlay.ClientEnv(server.address, token=TOKEN)
        with pytest.raises(rlay.AuthenticationFailed):  # an impostor learns nothing more
            rlay.ClientEnv(server.address, token="wrong")
        first.close()
    finally:
        server.close()
