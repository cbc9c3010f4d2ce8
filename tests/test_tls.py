"""``tls://`` (spec §17.1): the transport battery, ClientEnv and ServerEnv over TLS with a Python
env side, a certificate not accepted, and a plain peer meeting a TLS one, named on both ends.

A throwaway CA and a certificate for 127.0.0.1 / localhost are made with the ``openssl`` command
(no Python package needed); a second CA plays the wrong one."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import require_tool

import rlay
from rlay.testing.transports import check_transport


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(out: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=rlay test {name}",
        cwd=out,
    )  # fmt: skip


def make_cert(out: Path, ca: str, name: str) -> None:
    (out / "ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=localhost", cwd=out,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "ext", cwd=out,
    )  # fmt: skip


class Certs:
    def __init__(self, out: Path) -> None:
        self.ca = str(out / "ca.pem")
        self.other_ca = str(out / "other.pem")
        self.cert = str(out / "srv.pem")
        self.key = str(out / "srv.key")

    def listen(self, port: int = 0) -> str:
        return f"tls://127.0.0.1:{port}?cert={self.cert}&key={self.key}"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    require_tool("openssl")
    out = tmp_path_factory.mktemp("tls")
    make_ca(out, "ca")
    make_ca(out, "other")
    make_cert(out, "ca", "srv")
    return Certs(out)


@pytest.fixture
def server(certs: Certs) -> Iterator[rlay.Server]:
    srv = rlay.serve(lambda: gym.make("CartPole-v1"), certs.listen(), block=False)
    yield srv
    srv.close()


def run_cartpole(env: Any, steps: int = 20) -> None:
    """The remote CartPole matches a local one step for step (it went through TLS intact)."""
    local = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=5)
    want, _ = local.reset(seed=5)
    np.testing.assert_array_equal(obs, want)
    for i in range(steps):
        got = env.step(i % 2)
        exp = local.step(i % 2)
        np.testing.assert_array_equal(got[0], exp[0])
        assert got[1:4] == exp[1:4]
        if got[2] or got[3]:
            break


def test_tls_passes_the_transport_battery(certs: Certs) -> None:
    check_transport(f"{certs.listen()}&ca={certs.ca}")


def test_client_env_over_tls_to_rlay_serve(certs: Certs) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlay.cli", "serve", "CartPole-v1", "--address", certs.listen()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().split()[1]
        assert address.startswith("tls://127.0.0.1:") and "key" not in address, address
        env = rlay.ClientEnv(f"{address}?ca={certs.ca}")
        run_cartpole(env)
        env.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_server_env_over_tls_with_options_from_the_environment(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RLAY_TLS_CERT", certs.cert)
    monkeypatch.setenv("RLAY_TLS_KEY", certs.key)
    monkeypatch.setenv("RLAY_TLS_CA", certs.ca)
    env = rlay.ServerEnv("tls://127.0.0.1:0", wait=False)
    failed: list[BaseException] = []

    def game() -> None:
        try:
            rlay.connect(gym.make("CartPole-v1"), env.address)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=game, daemon=True)
    thread.start()
    try:
        env.accept(10)
        run_cartpole(env)
    finally:
        env.close()
    thread.join(10)
    assert not failed, failed


def test_a_certificate_from_another_ca_is_a_named_error_and_the_server_serves_on(
    certs: Certs, server: rlay.Server
) -> None:
    with pytest.raises(rlay.TlsCertificateError, match=r"certificate verify failed|not accepted"):
        rlay.ClientEnv(f"{server.address}?ca={certs.other_ca}", connect_timeout=10)
    with pytest.raises(rlay.TlsCertificateError, match=r"mismatch|match"):
        rlay.ClientEnv(f"{server.address}?ca={certs.ca}&server_name=gpu-box.example", connect_timeout=10)
    with pytest.raises(rlay.TlsCertificateError):  # no ca: the system's trust store knows no such CA
        rlay.ClientEnv(server.address, connect_timeout=10)
    env = rlay.ClientEnv(f"{server.address}?ca={certs.ca}")
    run_cartpole(env, 3)
    env.close()


def wait_for_error(server: rlay.Server, kind: str) -> BaseException:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for exc in server.errors:
            if type(exc).__name__ == kind:
                return exc
        time.sleep(0.02)
    raise AssertionError(f"the server recorded no {kind}: {list(server.errors)}")


def test_a_plain_client_at_a_tls_listener_is_named_on_both_sides(certs: Certs, server: rlay.Server) -> None:
    plain = server.address.replace("tls://", "tcp://")
    with pytest.raises(rlay.RemoteError, match="speaks TLS; dial it with tls://") as info:
        rlay.ClientEnv(plain, connect_timeout=10)
    assert info.value.code_name == "BAD_MAGIC"
    exc = wait_for_error(server, "TlsMismatch")
    assert "not speaking TLS" in str(exc) and "tls://" in str(exc), exc


def test_a_tls_client_at_a_plain_listener_is_named_on_both_sides(certs: Certs) -> None:
    server = rlay.serve(lambda: gym.make("CartPole-v1"), "tcp://127.0.0.1:0", block=False)
    try:
        tls = server.address.replace("tcp://", "tls://")
        with pytest.raises(rlay.TlsMismatch, match=r"not speaking TLS.*plain rlay"):
            rlay.ClientEnv(f"{tls}?ca={certs.ca}", connect_timeout=10)
        exc = wait_for_error(server, "ProtocolError")
        assert "BAD_MAGIC" in str(exc) and "speaks TLS" in str(exc), exc
    finally:
        server.close()


def test_a_tls_listener_without_a_certificate_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLAY_TLS_CERT", raising=False)
    with pytest.raises(rlay.UsageError, match="RLAY_TLS_CERT"):
        rlay.ServerEnv("tls://127.0.0.1:0", wait=False)
    with pytest.raises(rlay.UsageError, match="unknown TLS option 'verify'"):
        rlay.ClientEnv("tls://127.0.0.1:1?verify=no")


def test_a_silent_peer_does_not_hold_up_accept(certs: Certs, server: rlay.Server) -> None:
    """The TLS handshake of an accepted connection runs beside accept(): a peer that connects
    and says nothing does not stop the next one."""
    import socket

    host, port = server.address.removeprefix("tls://").rsplit(":", 1)
    silent = [socket.create_connection((host, int(port)), timeout=5) for _ in range(5)]
    try:
        t = time.monotonic()
        env = rlay.ClientEnv(f"{server.address}?ca={certs.ca}")
        run_cartpole(env, 3)
        env.close()
        assert time.monotonic() - t < 5
    finally:
        for s in silent:
            s.close()


def test_a_tls_client_at_a_c_listener_is_named_on_both_sides(certs: Certs) -> None:
    """The SDKs have no TLS: a tls:// dialler at a C listener hears plain rlay bytes (TlsMismatch),
    and the C program names the TLS record it got, drops that connection and serves on (§17.4)."""
    require_tool("gcc")
    cartpole = str(Path(__file__).resolve().parent.parent / "sdk" / "c" / "bin" / "cartpole")
    proc = subprocess.Popen(
        [cartpole, "--listen", "tcp://127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().split()[1]
        with pytest.raises(rlay.TlsMismatch, match="not speaking TLS"):
            rlay.ClientEnv(address.replace("tcp://", "tls://") + f"?ca={certs.ca}", connect_timeout=10)
        env = rlay.ClientEnv(address)
        run_cartpole(env, 3)
        env.close()
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "a TLS record" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
