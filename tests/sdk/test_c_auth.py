"""The C SDK's shared-secret authentication (spec §7.1): its HMAC-SHA256 against Python's ``hmac``,
the compiled CartPole with the right, a wrong and a missing token, the launcher's automatic token,
and the token never on the wire."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import require_tool
from test_auth import Tap
from test_c_cartpole import build

import rlay
from rlay.protocol.connection import auth_proof
from rlay.protocol.wire import Role

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "c-side-token-9f8e7d6c5b4a"

HMAC_MAIN = r"""
#define RLAY_IMPLEMENTATION
#include "rlay.h"
static size_t unhex(const char *h, unsigned char *out) {
    size_t n = 0;
    for (; h[0] && h[1]; h += 2) { unsigned v; sscanf(h, "%2x", &v); out[n++] = (unsigned char)v; }
    return n;
}
int main(int argc, char **argv) {
    static unsigned char key[4096], msg[4096], mac[32];
    size_t kn, mn, i;
    (void)argc;
    kn = unhex(argv[1], key); mn = unhex(argv[2], msg);
    rlay_hmac_sha256(key, kn, msg, mn, mac);
    for (i = 0; i < 32; i++) printf("%02x", mac[i]);
    printf("\n");
    return 0;
}
"""


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("cartpole-auth")
    build(out, f"{out}/cartpole")
    return str(out / "cartpole")


@pytest.fixture(scope="module")
def hmac_tool(tmp_path_factory: pytest.TempPathFactory) -> str:
    require_tool("gcc")
    out = tmp_path_factory.mktemp("hmac")
    src = out / "hmac.c"
    src.write_text(HMAC_MAIN)
    exe = out / "hmac"
    include = f"-I{ROOT / 'sdk' / 'c'}"
    proc = subprocess.run(
        ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", include, "-o", str(exe), str(src), "-lm"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(exe)


def c_hmac(tool: str, key: bytes, msg: bytes) -> str:
    arg_k, arg_m = key.hex() or "-", msg.hex() or "-"  # "-" has no hex pair: empty
    return subprocess.run([tool, arg_k, arg_m], capture_output=True, text=True, check=True).stdout.strip()


KEYS_AND_MESSAGES = [
    (b"\x0b" * 20, b"Hi There"),  # RFC 4231 case 1
    (b"Jefe", b"what do ya want for nothing?"),  # RFC 4231 case 2
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First"),  # case 6: key > 64 bytes
    (b"k", b""),
    (b"", b"empty key"),
    # the padding edges of SHA-256's 64-byte blocks
    *[(b"edge", bytes(i % 256 for i in range(n))) for n in (55, 56, 63, 64, 65, 119, 120, 128, 1000)],
    (b"\x01" * 64, b"a block-size key"),
]


@pytest.mark.parametrize(("key", "msg"), KEYS_AND_MESSAGES)
def test_hmac_sha256_matches_python(hmac_tool: str, key: bytes, msg: bytes) -> None:
    assert c_hmac(hmac_tool, key, msg) == hmac.new(key, msg, hashlib.sha256).hexdigest()


def test_spec_check_values(hmac_tool: str) -> None:
    """§7.1's conformance note: the proofs for token "rlay-test-token" and nonces 00..1f / 20..3f."""
    a, e = bytes(range(32)), bytes(range(32, 64))
    for role, value in (
        (Role.AGENT, "e396c50450ef5176726b07a0b1f9b15ecdd78281018b26651b5bff7645a358ce"),
        (Role.ENV, "17188e14ea637cfe64754394e6edac9d7b92799e62bf457519de51f7995e61de"),
    ):
        transcript = b"rlay-auth-v1\x00" + role.value.encode() + b"\x00" + a + e
        assert c_hmac(hmac_tool, b"rlay-test-token", transcript) == value
        assert auth_proof(b"rlay-test-token", role, a, e).hex() == value
    assert value in (ROOT / "spec" / "protocol.md").read_text()


def play(env: rlay.ClientEnv | rlay.ServerEnv) -> None:
    obs, _ = env.reset(seed=3)
    assert obs.shape == (4,)
    for _ in range(10):
        env.step(1)


def start_listener(cartpole: str, token: str | None) -> tuple[subprocess.Popen[bytes], str]:
    """The C CartPole as a launcher would start it (spec §15), with or without RLAY_TOKEN."""
    env = {k: v for k, v in os.environ.items() if k != "RLAY_TOKEN"}
    env.update(RLAY_ADDRESS="tcp://127.0.0.1:0", RLAY_MODE="listen")
    if token is not None:
        env["RLAY_TOKEN"] = token
    proc = subprocess.Popen([cartpole], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("RLAY_LISTENING "), line
    return proc, line.split()[1]


def ended(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=10)
    return proc.returncode, err.decode()


def test_right_token_and_the_token_never_on_the_wire(cartpole: str) -> None:
    proc, address = start_listener(cartpole, TOKEN)
    tap = Tap(address)
    env = rlay.ClientEnv(tap.address, token=TOKEN)
    assert env._session is not None and env._session.conn.authenticated
    play(env)
    env.close()
    code, err = ended(proc)
    assert code == 0, err
    wire = bytes(tap.captured)
    assert b"auth" in wire and TOKEN.encode() not in wire and TOKEN.encode().hex().encode() not in wire


@pytest.mark.parametrize(
    ("c_token", "py_token", "py_says", "c_says"),
    [
        (TOKEN, "another-token", "different tokens", "AUTH_FAILED"),
        (TOKEN, None, "requires authentication", "AUTH_FAILED"),
        (None, TOKEN, "requires authentication", "AUTH_FAILED"),
    ],
)
def test_wrong_or_missing_token_fails_on_both_sides(
    cartpole: str,
    monkeypatch: pytest.MonkeyPatch,
    c_token: str | None,
    py_token: str | None,
    py_says: str,
    c_says: str,
) -> None:
    monkeypatch.delenv("RLAY_TOKEN", raising=False)
    proc, address = start_listener(cartpole, c_token)
    with pytest.raises(rlay.AuthenticationFailed, match=py_says):
        rlay.ClientEnv(address, token=py_token)
    # The listener dropped that connection (spec §17.4: an impostor cannot end it) and serves an
    # agent with the right token (or none, as it has none); it names the failure on exit.
    env = rlay.ClientEnv(address, token=c_token or "")
    play(env)
    env.close()
    code, err = ended(proc)
    assert code == 0 and c_says in err and "dropped 1 connection" in err, (code, err)


def test_server_env_both_sides_with_the_token(cartpole: str) -> None:
    env = {**os.environ, "RLAY_TOKEN": TOKEN}
    agent = rlay.ServerEnv("tcp://127.0.0.1:0", wait=False, token=TOKEN)
    proc = subprocess.Popen([cartpole, "--connect", agent.address], env=env, stderr=subprocess.PIPE)
    agent.accept(30)
    assert agent._session is not None and agent._session.conn.authenticated
    play(agent)
    agent.close()
    assert proc.wait(10) == 0


@pytest.mark.parametrize("cls", [rlay.ClientEnv, rlay.ServerEnv])
def test_a_launched_program_gets_a_token_automatically(
    cartpole: str, monkeypatch: pytest.MonkeyPatch, cls: type
) -> None:
    monkeypatch.delenv("RLAY_TOKEN", raising=False)
    env = cls(launch=[cartpole])
    try:
        assert env._session.conn.authenticated  # the launcher's own token, proven by both sides
        token = env._endpoints.token
        assert isinstance(token, str) and len(token) == 64
        play(env)
    finally:
        env.close()


def test_a_dialler_without_the_token_is_refused(cartpole: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A launched C program listens with the launcher's token: a process that dials it without the
    token (here before the launcher does) is refused with AUTH_FAILED, and can neither drive it
    nor end it: the launcher's connection is served next."""
    monkeypatch.delenv("RLAY_TOKEN", raising=False)
    proc, address = start_listener(cartpole, "launcher-token-" + "ab" * 24)
    t0 = time.monotonic()
    with pytest.raises(rlay.AuthenticationFailed):
        rlay.ClientEnv(address)
    assert time.monotonic() - t0 < 10
    assert proc.poll() is None  # it cannot end the program either (spec §17.4)
    env = rlay.ClientEnv(address, token="launcher-token-" + "ab" * 24)
    play(env)
    env.close()
    code, err = ended(proc)
    assert code == 0 and "AUTH_FAILED" in err, (code, err)
    # And once a launched program has its session, nobody else can even connect.
    env = rlay.ClientEnv("tcp://127.0.0.1:0", launch=[cartpole])
    try:
        with pytest.raises(rlay.ConnectionClosed):
            rlay.ClientEnv(env.address, connect_timeout=2)
        play(env)
    finally:
        env.close()
