"""The C SDK's limits (spec §13, issue 15) and launched-program rules (§15), against the real
CartPole program over real sockets.

Hostile frames: one 8 MiB frame of 4 million two-byte ``[[]]`` arrays (a HELLO before the
handshake, a STEP action after it, and the same in chunks that no single header declares) is
refused with a fatal FRAME_TOO_LARGE; the program's peak RSS grows by less than 64 MiB (read
from the kernel: VmHWM while it listens, then wait4's ru_maxrss after it exits) and the answer
comes within 2 s.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from test_c_cartpole import HELLO, build, frame, read_frame, start_listening

import rlay

MIB = 1 << 20
SIZE = 8 * MIB


# A process forked from this Python inherits its RSS into ru_maxrss (Linux keeps the high-water
# mark across exec), so the program is started by a small C launcher whose wait4 reports the
# program's own peak: it writes "maxrss KIB" to the file given first, then exits with its status.
LAUNCHER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int status; struct rusage ru; pid_t pid = fork();
    if (pid == 0) { execv(argv[2], argv + 2); _exit(127); }
    if (pid < 0 || wait4(pid, &status, 0, &ru) < 0) return 126;
    FILE *f = fopen(argv[1], "w"); fprintf(f, "maxrss %ld\n", ru.ru_maxrss); fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 125;
}
"""


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("cartpole-limits")
    build(out, f"{out}/cartpole")
    return str(out / "cartpole")


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("launcher")
    (out / "launcher.c").write_text(LAUNCHER)
    proc = subprocess.run(
        ["gcc", "-O2", "-o", str(out / "launcher"), str(out / "launcher.c")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return str(out / "launcher")


def pairs(key: str, n: int) -> bytes:
    """``{key: [[[]], [[]], ...]}``: n two-byte arrays in one array32."""
    k = key.encode()
    return b"\x81" + bytes([0xA0 | len(k)]) + k + b"\xdd" + struct.pack(">I", n) + b"\x91\x90" * n


def chunked(key: str) -> bytes:
    """``{key: [[[[]] x 1000] x k]}``: no single header declares more than 1000."""
    chunk = b"\xdc" + struct.pack(">H", 1000) + b"\x91\x90" * 1000
    k = (SIZE - 16) // len(chunk)
    return b"\x81" + bytes([0xA0 | len(key)]) + key.encode() + b"\xdd" + struct.pack(">I", k) + chunk * k


def tensors(key: str, n: int) -> bytes:
    """``{key: [n 0-d bool tensors]}``, all at offset 0 of a data section of 8 bytes."""
    one = b"\xc7\x06\x01" + struct.pack("<BBI", 1, 0, 0)
    return b"\x81" + bytes([0xA0 | len(key)]) + key.encode() + b"\xdd" + struct.pack(">I", n) + one * n


def hostile(
    launcher: str, cartpole: str, kind: int, body: bytes, *, handshake: bool
) -> tuple[dict, float, int, int]:
    """Send one hostile frame; return the ERROR received, the seconds until it came, and the
    program's peak RSS with it and in a quiet session. The program must exit 1 by itself (after
    the handshake), or drop the peer and serve a good agent next (before it)."""
    quiet = peak_rss(launcher, cartpole)
    report = Path(launcher).with_name(f"report-{kind}-{len(body)}")
    proc, address = listen_via(launcher, report, cartpole)
    host, port = address[len("tcp://") :].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    try:
        assert read_frame(sock)[0] == 1  # the program's HELLO
        if handshake:
            sock.sendall(frame(1, HELLO))
            assert read_frame(sock)[0] == 2  # ENV_INFO
        data = b"\x01" + bytes(7) if body.count(b"\xc7\x06\x01") > 1000 else b""
        head = b"RL" + bytes([kind, 0]) + struct.pack("<II", len(data), len(body)) + data
        t0 = time.perf_counter()
        # Before the handshake the header alone is refused: send no more than the program reads.
        sock.sendall(head + (body if handshake else body[: 64 * 1024]))
        kind_got, err = read_frame(sock)
        seconds = time.perf_counter() - t0
        assert kind_got == 48, err
    finally:
        sock.close()
    if not handshake:  # before its session a listener drops the peer and serves on (§17.4)
        env = rlay.ClientEnv(address)
        env.reset(seed=0)
        env.close()
    _, stderr = proc.communicate(timeout=10)
    code = 1 if handshake else 0
    assert proc.returncode == code and "FRAME_TOO_LARGE" in stderr, (proc.returncode, stderr[-2000:])
    return err, seconds, int(report.read_text().split()[1]) * 1024, quiet


def listen_via(launcher: str, report: Path, cartpole: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [launcher, str(report), cartpole, "--listen", "tcp://127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("RLAY_LISTENING "), line
    return proc, line.split(" ", 1)[1].strip()


def peak_rss(launcher: str, cartpole: str) -> int:
    """The program's peak RSS in a session of a reset, a step and CLOSE."""
    report = Path(launcher).with_name("report-quiet")
    proc, address = listen_via(launcher, report, cartpole)
    env = rlay.ClientEnv(address)
    env.reset(seed=0)
    env.step(0)
    env.close()
    proc.communicate(timeout=10)
    assert proc.returncode == 0
    return int(report.read_text().split()[1]) * 1024


@pytest.mark.parametrize(
    ("what", "kind", "body", "handshake"),
    [
        ("HELLO of [[]]", 1, pairs("protocol", (SIZE - 16) // 2), False),
        ("STEP action of [[]] elements", 17, pairs("action", (SIZE - 16) // 2), True),
        ("STEP action of chunks of [[]]", 17, chunked("action"), True),
        ("STEP action of 32768 tensors", 17, tensors("action", 32768), True),
    ],
)
def test_a_hostile_frame_is_refused_cheaply(
    launcher: str, cartpole: str, what: str, kind: int, body: bytes, handshake: bool
) -> None:
    err, seconds, peak, quiet = hostile(launcher, cartpole, kind, body, handshake=handshake)
    growth = peak - quiet
    print(f"{what}: {seconds * 1000:.1f} ms, peak RSS {peak / MIB:.1f} MiB (quiet: {quiet / MIB:.1f} MiB)")
    assert err["code"] == 3 and err["fatal"] is True, err  # FRAME_TOO_LARGE
    assert ("max_handshake_frame_size" if not handshake else "max_values") in err["message"], err
    assert seconds < 2.0, f"{what}: {seconds:.2f} s"
    # The program reads the whole 8 MiB frame into its buffer (it may grow to twice that) and
    # refuses the body at the container header that passes max_values.
    assert growth < 64 * MIB, f"{what}: peak RSS grew by {growth / MIB:.1f} MiB"


def test_launched_program_dials_when_rlay_mode_is_dial(cartpole: str) -> None:
    """§15: no flag, RLAY_MODE=dial: the program dials RLAY_ADDRESS (a ServerEnv)."""
    env = rlay.ServerEnv("tcp://127.0.0.1:0", wait=False)
    proc = subprocess.Popen(
        [cartpole],
        env={**os.environ, "RLAY_ADDRESS": env.address, "RLAY_MODE": "dial"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        env.accept(30)
        env.reset(seed=3)
        env.step(0)
    finally:
        env.close()
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and out == "" and err == "", (proc.returncode, out, err)


def test_launched_program_listens_when_rlay_mode_is_listen_or_unset(cartpole: str, tmp_path: Path) -> None:
    for mode in ("listen", None):
        address = f"unix://{tmp_path}/env-{mode}.sock"
        environ = {**os.environ, "RLAY_ADDRESS": address}
        environ.pop("RLAY_MODE", None)
        if mode:
            environ["RLAY_MODE"] = mode
        proc = subprocess.Popen(
            [cartpole], env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"RLAY_LISTENING {address}\n"
        env = rlay.ClientEnv(address)
        env.reset(seed=1)
        env.close()
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0 and err == "", err


def test_launched_program_refuses_an_unknown_rlay_mode(cartpole: str) -> None:
    proc = subprocess.run(
        [cartpole],
        env={**os.environ, "RLAY_ADDRESS": "tcp://127.0.0.1:0", "RLAY_MODE": "connect"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert proc.returncode == 2 and "RLAY_MODE" in proc.stderr and "'connect'" in proc.stderr


def test_end_of_stream_in_idle_is_an_orderly_end(cartpole: str) -> None:
    """§8/§15: an agent that ends the stream between commands (no CLOSE) ends the session in
    order: exit 0, nothing on stderr. Ending it with a command outstanding is an error."""
    proc, address = start_listening(cartpole, "tcp://127.0.0.1:0")
    host, port = address[len("tcp://") :].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        read_frame(sock)
        sock.sendall(frame(1, HELLO))
        assert read_frame(sock)[0] == 2
        sock.sendall(frame(16, {"seed": 1, "options": None}))
        assert read_frame(sock)[0] == 32
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and err == "", (proc.returncode, err)

    proc, address = start_listening(cartpole, "tcp://127.0.0.1:0")
    host, port = address[len("tcp://") :].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        read_frame(sock)
        sock.sendall(frame(1, HELLO) + frame(16, {"seed": 1, "options": None})[:20])  # half a RESET
        assert read_frame(sock)[0] == 2  # (read, so that closing sends no reset)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1 and "TRUNCATED" in err, (proc.returncode, err)
