"""The C SDK's shared memory (spec §16), env side: sdk/c/examples/cartpole.c (and game_loop.c) as
real processes over real unix sockets.

Against a raw agent written from the spec (``shm_agent.py``: hand-made frames, a sealed memfd,
no rlay code): the capability is announced only on unix sockets and not with ``RLAY_SHM=0``;
frames really travel through the region (the C process's own system calls, counted with strace);
every §16.3 check refuses a bad offer with a reason and the session goes on over the socket
(fallback), also for randomly mangled headers; frames larger than a channel travel on the socket
both ways while the region stays in use; a peer that breaks the channel gets the named fatal
error; a fatal ERROR out of turn ends the session; kill -9 of the agent while the C side spins and
while it sleeps makes it exit at once; waiting costs no CPU; a game loop polling with timeout 0
never asks for a wake byte. The same under ASan+UBSan.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import require_tool
from harness import HELLO, alive, read_frame
from shm_agent import A2E, ACK, E2A, HEADER, MIB, SEQ, SLEEPING, Agent, frame
from test_c_cartpole import check_gymnasium_parity, run_episode

import rlay
from rlay.transports import shm as shm_mod

# The raw agent (and Python's) relies on x86-64's ordering of plain loads and stores (§16.6).
pytestmark = pytest.mark.skipif(shm_mod.unsupported() is not None, reason=str(shm_mod.unsupported()))

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "c"
AGENT_SCRIPT = str(Path(__file__).with_name("shm_agent.py"))
SAN = "-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
SAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "halt_on_error=1"}
RESET, STEP, RENDER, CLOSE, CALL = 16, 17, 18, 19, 20
RESET_RESULT, STEP_RESULT, RENDER_RESULT, CLOSE_RESULT, ERROR = 32, 33, 34, 35, 48


def build(out: Path, *targets: str, cflags: str | None = None) -> None:
    require_tool("gcc")
    require_tool("make")
    extra = [f"CFLAGS={cflags}"] if cflags else []
    cmd = ["make", "-C", str(SDK), f"OUT={out}", "CC=gcc", *extra, *(f"{out}/{t}" for t in targets)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


@pytest.fixture(scope="module")
def bins() -> Path:
    """sdk/c/build, where bin/cartpole builds too (make keeps it current with rlay.h)."""
    out = SDK / "build"
    build(out, "cartpole", "game_loop", "cartpole_c99")
    return out


@pytest.fixture(scope="module")
def asan() -> Path:
    out = SDK / "build" / "asan"
    build(out, "cartpole", cflags=SAN)
    return out / "cartpole"


class Env:
    """A C env program listening on a fresh unix socket (or tcp)."""

    def __init__(
        self, program: Path | str, sock_dir: str, *extra: str, tcp: bool = False, **env: str
    ) -> None:
        self.path = f"{sock_dir}/env.sock"
        address = "tcp://127.0.0.1:0" if tcp else f"unix://{self.path}"
        self.proc = subprocess.Popen(
            [str(program), "--listen", address, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("RLAY_LISTENING "), (line, self.proc.stderr.read() if self.proc.stderr else "")
        self.address = line.split(" ", 1)[1].strip()

    def agent(self, **kw: Any) -> Agent:
        return Agent(self.path, **kw)

    def finish(self, code: int = 0, timeout: float = 15) -> str:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            pytest.fail(f"the env program did not exit by itself; stderr: {err[-2000:]}")
        assert self.proc.returncode == code, f"exit code {self.proc.returncode}; stderr: {err[-3000:]}"
        return err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def envs(sock_dir: str) -> Iterator[list[Env]]:
    started: list[Env] = []
    yield started
    for env in started:
        env.kill()


def start(envs: list[Env], program: Path | str, sock_dir: str, *extra: str, **kw: Any) -> Env:
    if envs:  # one socket path per env program
        sock_dir = f"{sock_dir}/{len(envs)}"
        os.mkdir(sock_dir)
    env = Env(program, sock_dir, *extra, **kw)
    envs.append(env)
    return env


def play(agent: Agent, steps: int, seed: int = 0) -> list[np.ndarray]:
    """A seeded reset and ``steps`` alternating actions; the observations (episodes restart)."""
    kind, body = agent.command(RESET, {"seed": seed, "options": None})
    assert kind == RESET_RESULT, body
    seen = [body["obs"]]
    for i in range(steps):
        kind, body = agent.command(STEP, {"action": i % 2})
        assert kind == STEP_RESULT, body
        seen.append(body["obs"])
        if body["terminated"] or body["truncated"]:
            assert agent.command(RESET, {"seed": None, "options": None})[0] == RESET_RESULT
    return seen


def close(agent: Agent) -> None:
    assert agent.command(CLOSE, {}) == (CLOSE_RESULT, {})
    agent.close()


# -- negotiation (§16.1) ---------------------------------------------------------------------------


def test_announced_only_on_unix_sockets_and_not_when_turned_off(
    bins: Path, sock_dir: str, envs: list[Env]
) -> None:
    on = start(envs, bins / "cartpole", sock_dir)
    agent = on.agent()
    assert agent.env_hello["capabilities"] == {"shm": 1}
    assert agent.answer == {"accepted": True, "reason": None} and agent.active
    close(agent)
    on.finish()
    for env in (
        start(envs, bins / "cartpole", sock_dir, RLAY_SHM="0"),
        start(envs, bins / "cartpole", sock_dir, tcp=True),
    ):
        if env.address.startswith("tcp://"):
            host, port = env.address[len("tcp://") :].rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(frame(1, {**HELLO, "capabilities": {"shm": 1}}))
                assert read_frame(sock)[1]["capabilities"] == {}
                assert read_frame(sock)[0] == 2  # ENV_INFO, then commands on the socket
                sock.sendall(frame(CLOSE, {}))
                assert read_frame(sock)[0] == CLOSE_RESULT
        else:
            agent = env.agent()
            assert agent.env_hello["capabilities"] == {} and agent.answer is None and not agent.active
            play(agent, 3)
            close(agent)
        env.finish()


@pytest.mark.parametrize("announce", [None, 2, "1", True])
def test_no_offer_unless_both_announce_1(bins: Path, sock_dir: str, envs: list[Env], announce: Any) -> None:
    """An agent that announces nothing, or another value, gets the plain socket session."""
    env = start(envs, bins / "cartpole", sock_dir)
    agent = env.agent(shm=announce)
    assert agent.answer is None and not agent.active
    play(agent, 5)
    close(agent)
    env.finish()


SEND = re.compile(r"^\d+\s+(sendmsg|sendto|write)\(.*\)\s+=\s+(\d+)")


def c_sends(trace: Path) -> tuple[int, int]:
    """Send calls and bytes sent, from an ``strace -f`` log."""
    calls = sent = 0
    for line in trace.read_text().splitlines():
        m = SEND.match(line)
        if m:
            calls += 1
            sent += int(m.group(2))
    return calls, sent


def test_frames_travel_through_the_region(bins: Path, sock_dir: str, tmp_path: Path) -> None:
    """The C process's own system calls prove it: over the socket every reply is a send of the
    whole frame; with shared memory the C side sends nothing per step but, when the agent
    announced that it sleeps, a one-byte wake-up (this raw agent spins 20 ms before sleeping,
    so even under strace it rarely does)."""
    require_tool("strace")
    steps = 200
    sends = {}
    for shm in ("1", "0"):
        trace = tmp_path / f"c{shm}.strace"
        path = f"{sock_dir}/t{shm}.sock"
        proc = subprocess.Popen(
            ["strace", "-f", "-qq", "-o", str(trace), str(bins / "cartpole"), "--listen", f"unix://{path}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "RLAY_SHM": shm},
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().startswith("RLAY_LISTENING")
            agent = Agent(path, spin_s=0.02)
            assert agent.active is (shm == "1")
            play(agent, steps)
            close(agent)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        sends[shm] = c_sends(trace)
    (calls0, bytes0), (calls1, bytes1) = sends["0"], sends["1"]
    assert calls0 >= steps and bytes0 >= 60 * steps, sends  # a STEP_RESULT frame is ~70 bytes
    # HELLO, ENV_INFO, the SHM answer: ~420 bytes; then at most wake bytes
    assert calls1 <= 3 + steps // 4 and bytes1 - calls1 < 1000, sends


# -- §16.3: every check refuses, and the session goes on over the socket -------------------------

REFUSALS = {
    "no descriptor": ({"nfds": 0}, "no file descriptor"),
    "two descriptors": ({"nfds": 2}, "2 file descriptors"),
    "size below 4096": ({"size": 100}, "below 4096"),
    "size above max_shm_size": ({"capacity": 8 * MIB, "size": 2**31, "real_size": 2**31}, "max_shm_size"),
    "fstat differs": ({"size": 4096 + 2 * 8 * MIB + 4096}, "fstat"),
    "not sealed": ({"seal": False}, "F_SEAL_SHRINK"),
    "magic": ({"header": {"magic": b"rlay-shn"}}, "magic"),
    "layout": ({"header": {"layout": 2}}, "layout is 2"),
    "header_size": ({"header": {"header_size": 8192}}, "header_size"),
    "region_size": ({"header": {"region_size": 4096}}, "region_size"),
    "area before the header": ({"header": {"a2e": (0, 4096)}}, "a2e data area"),
    "area past the end": ({"header": {"e2a": (4096 + 8 * MIB, 8 * MIB + 64)}}, "e2a data area"),
    "area overflowing": ({"header": {"e2a": (2**64 - 4096, 8192)}}, "does not lie inside"),
    "capacity below 4096": ({"header": {"a2e": (4096, 64)}}, "capacity 64"),
    "offset not aligned": ({"header": {"e2a": (4096 + 8 * MIB + 8, 4096)}}, "multiple of 64"),
    "areas overlap": ({"header": {"e2a": (4096 + 4 * MIB, 8 * MIB)}}, "overlap"),
    "seq not zero": ({"control": {A2E + SEQ: 1}}, "a2e control block"),
    "sleeping not zero": ({"control": {E2A + SLEEPING: 1}}, "e2a control block"),
}


@pytest.mark.parametrize("case", list(REFUSALS), ids=list(REFUSALS))
def test_a_bad_offer_is_refused_and_the_socket_is_used(
    bins: Path, sock_dir: str, envs: list[Env], case: str
) -> None:
    kw, reason = REFUSALS[case]
    env = start(envs, bins / "cartpole", sock_dir)
    agent = env.agent(**kw)
    assert agent.answer is not None and agent.answer["accepted"] is False, agent.answer
    assert reason in agent.answer["reason"], agent.answer
    play(agent, 5)  # fallback: the same session, over the socket
    close(agent)
    env.finish()


def test_randomly_mangled_headers(bins: Path, sock_dir: str, envs: list[Env]) -> None:
    """Random bytes over the header fields and control blocks: each offer is refused with a
    reason (or, if the mangling left it valid, accepted), the session works either way, and the
    C side never crashes. Seeded, so a failure is reproducible."""
    rng = random.Random(16)
    capacity = 64 * 1024
    fields = list(range(0, 56)) + list(range(128, 144)) + list(range(192, 208))
    fields += list(range(256, 272)) + list(range(320, 336))
    outcomes = {"accepted": 0, "refused": 0}
    for i in range(24):
        size = 4096 + 2 * capacity
        good = bytearray(4096)
        good[: HEADER.size] = HEADER.pack(
            b"rlay-shm", 1, 4096, size, 4096, capacity, 4096 + capacity, capacity
        )
        for _ in range(rng.randint(1, 3)):
            at = rng.choice(fields)
            good[at] = rng.choice([0, 1, 0xFF, 0x40, rng.randrange(256)])
        env = start(envs, bins / "cartpole", sock_dir)
        agent = env.agent(capacity=capacity, raw_header=bytes(good[:384]))
        assert agent.answer is not None, i
        outcomes["accepted" if agent.active else "refused"] += 1
        if not agent.active:
            assert agent.answer["reason"], agent.answer
        play(agent, 3)
        close(agent)
        env.finish()
    assert outcomes["refused"] >= 12, outcomes


# -- §16.5: frames larger than a channel travel on the socket, both ways ------------------------


def test_frames_larger_than_the_channel(bins: Path, sock_dir: str, envs: list[Env]) -> None:
    env = start(envs, bins / "cartpole", sock_dir, "--render-mode", "rgb_array")
    agent = env.agent(capacity=4096)
    assert agent.active
    play(agent, 3)
    before = agent.socket_frames_read
    # agent -> env: a RESET whose options exceed 4096 bytes (announced with len 2^64-1)
    kind, body = agent.command(RESET, {"seed": 3, "options": {"pad": b"x" * 20000}})
    assert kind == RESET_RESULT, body
    # env -> agent: a 400x600x3 frame (720 000 bytes) on the socket
    kind, body = agent.command(RENDER, {})
    assert kind == RENDER_RESULT and body["frame"].shape == (400, 600, 3)
    assert agent.socket_frames_read == before + 1
    # the region stays in use
    seen = play(agent, 5)
    assert agent.socket_frames_read == before + 1 and len(seen) == 6
    assert agent.word(E2A, SEQ) == agent.got and agent.word(A2E, ACK) == agent.sent
    close(agent)
    env.finish()


# -- a peer that breaks the channel, and fatal ERRORs --------------------------------------------


@pytest.mark.parametrize(
    ("breakage", "code", "words"),
    [
        ({"seq": 5}, 2, "sequence jumped from 1 to 5"),
        ({"length": 5}, 2, "length 5"),
        ({"length": 4096 + 1}, 2, "outside 12..4096"),
        ({"length": 40}, 2, "header says"),
    ],
    ids=["seq-jump", "len-below-12", "len-above-capacity", "len-not-the-frame"],
)
def test_a_broken_channel_is_a_fatal_bad_header(
    bins: Path, sock_dir: str, envs: list[Env], breakage: dict[str, int], code: int, words: str
) -> None:
    env = start(envs, bins / "cartpole", sock_dir)
    agent = env.agent(capacity=4096)
    assert agent.command(RESET, {"seed": 0, "options": None})[0] == RESET_RESULT
    agent.send_raw(frame(STEP, {"action": 1}), **breakage)
    kind, body = agent.recv()  # the fatal ERROR, in turn: through the region
    assert kind == ERROR and body["code"] == code and body["fatal"] is True, body
    assert words in body["message"], body
    assert "BAD_HEADER" in env.finish(1)


def test_an_unannounced_frame_on_the_socket_is_unexpected(bins: Path, sock_dir: str, envs: list[Env]) -> None:
    env = start(envs, bins / "cartpole", sock_dir)
    agent = env.agent()
    agent.sock.sendall(b"\0\0" + frame(RESET, {"seed": 0, "options": None}))  # wake bytes, then a frame
    kind, body = agent.recv()
    assert kind == ERROR and body["code"] == 11 and "only a fatal ERROR" in body["message"], body
    env.finish(1)


def test_garbage_on_the_socket_is_bad_magic(bins: Path, sock_dir: str, envs: list[Env]) -> None:
    env = start(envs, bins / "cartpole", sock_dir)
    agent = env.agent()
    agent.sock.sendall(b"\0G")
    kind, body = agent.recv()
    assert kind == ERROR and body["code"] == 1 and "byte 47" in body["message"], body
    env.finish(1)


@pytest.mark.parametrize("turn", ["in-turn", "out-of-turn", "out-of-turn-split"])
def test_the_agents_fatal_error_ends_the_session(
    bins: Path, sock_dir: str, envs: list[Env], turn: str
) -> None:
    """In turn a fatal ERROR goes through the region; out of turn (a command still unconsumed)
    on the socket (§16.5). Either way the C program reports it and exits 1. Split: the region
    holds a command and the socket the first bytes of the ERROR: seq comes first (§16.5), so the
    command is answered, and then the ERROR, once whole, ends the session."""
    env = start(envs, bins / "cartpole", sock_dir)
    agent = env.agent()
    assert agent.command(RESET, {"seed": 0, "options": None})[0] == RESET_RESULT
    error = frame(
        ERROR,
        {"code": 37, "message": "the trainer broke", "fatal": True, "remote_type": None, "traceback": None},
    )
    if turn == "in-turn":
        agent.send_raw(error)
    elif turn == "out-of-turn":
        agent.send(STEP, {"action": 1})
        agent.sock.sendall(error)
    else:
        time.sleep(0.05)  # the C side sleeps: the STEP comes with a wake byte
        agent.send(STEP, {"action": 1})
        agent.sock.sendall(error[:5])  # then part of the ERROR (a real peer's may arrive in pieces)
        kind, body = agent.recv()  # the command is answered all the same
        assert kind == STEP_RESULT, body
        agent.sock.sendall(error[5:])
    err = env.finish(1)
    assert "the trainer broke" in err, err


# -- liveness, waiting, CPU (§16.6, §16.7) -------------------------------------------------------


@pytest.mark.parametrize("phase", ["spinning", "sleeping"])
def test_kill_9_of_the_agent_ends_the_c_program_at_once(
    bins: Path, sock_dir: str, envs: list[Env], phase: str
) -> None:
    """The agent dies right after a reply: while the C side spins (a long spin, 0.4 s, so that the
    kill lands inside it) and while it sleeps in poll(). It sees end of stream and exits 0 (end of
    stream between commands is an orderly end, §8)."""
    spin = {"RLAY_SHM_SPIN_US": "400000"} if phase == "spinning" else {}
    env = start(envs, bins / "cartpole", sock_dir, **spin)
    agent = subprocess.Popen([sys.executable, AGENT_SCRIPT, env.path], stdout=subprocess.PIPE, text=True)
    try:
        assert agent.stdout is not None and agent.stdout.readline().strip() == "READY"
        if phase == "sleeping":
            time.sleep(0.3)
        t0 = time.monotonic()
        os.kill(agent.pid, signal.SIGKILL)
        env.finish(0, timeout=10)
        took = time.monotonic() - t0
    finally:
        agent.kill()
        agent.wait()
    assert took < (0.4 + 2.0 if phase == "spinning" else 2.0), took


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_waiting_costs_no_cpu(bins: Path, sock_dir: str, envs: list[Env]) -> None:
    """An agent that thinks for 1.5 s between commands costs the C side ~no CPU (it sleeps in
    poll after a 50 µs spin), and the wake byte then gets the command through at once."""
    env = start(envs, bins / "cartpole", sock_dir)
    agent = env.agent()
    play(agent, 2)
    used = cpu_seconds(env.proc.pid)
    time.sleep(1.5)
    idle = cpu_seconds(env.proc.pid) - used
    assert agent.word(A2E, SLEEPING) == 1  # it announced that it sleeps
    t0 = time.perf_counter()
    assert agent.command(STEP, {"action": 0})[0] == STEP_RESULT
    assert agent.wakes_sent >= 1 and time.perf_counter() - t0 < 1.0
    assert idle < 0.05 * 1.5, f"{idle:.3f} s of CPU while idle"
    close(agent)
    env.finish()


def test_a_game_loop_polling_with_timeout_0(bins: Path, sock_dir: str, envs: list[Env]) -> None:
    """examples/game_loop.c calls rlay_poll(c, &cmd, 0) every frame: it only looks at the region,
    never spins and never announces sleeping, so the agent never sends a wake byte."""
    env = start(envs, bins / "game_loop", sock_dir)
    agent = env.agent()
    assert agent.active
    kind, body = agent.command(RESET, {"seed": None, "options": None})
    assert kind == RESET_RESULT
    for _ in range(20):
        kind, body = agent.command(STEP, {"action": 2})
        assert kind == STEP_RESULT and body["info"] == {"frames": 4}, body
    assert body["obs"][1] > 0  # pushed right for 20 steps
    assert agent.wakes_sent == 0 and agent.word(A2E, SLEEPING) == 0
    close(agent)
    env.finish()


POLL_LOOP = r"""
#define RLAY_IMPLEMENTATION
#include "rlay.h"
/* A frame loop that gives rlay_poll 3 ms a frame: it must never be held longer than that. */
int main(int argc, char **argv) {
    uint32_t one = 1; float x = 0; long long worst = 0, frames = 0; rlay_cmd cmd; int r, shm = 0;
    rlay_ctx *c = rlay_new();
    rlay_space_box_uniform(rlay_observation_space(c), RLAY_DT_FLOAT32, 1, &one, -1e9, 1e9);
    rlay_space_discrete(rlay_action_space(c), 2, 0);
    if (argc < 2 || rlay_listen(c, argv[argc - 1])) return 2;   /* [--listen] ADDRESS */
    printf("RLAY_LISTENING %s\n", rlay_address(c)); fflush(stdout);
    for (;;) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        r = rlay_poll(c, &cmd, 3);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (r < 0) break;
        shm |= rlay_shm_active(c);
        if (r == 0) {
            long long us = (b.tv_sec - a.tv_sec) * 1000000LL + (b.tv_nsec - a.tv_nsec) / 1000;
            if (us > worst) worst = us;
            frames++;
            continue;
        }
        if (cmd.kind == RLAY_RESET || cmd.kind == RLAY_STEP) {
            x += 1;
            rlay_put_tensor(rlay_obs(c), RLAY_DT_FLOAT32, 1, &one, &x);
            if (cmd.kind == RLAY_RESET) rlay_reply_reset(c); else rlay_reply_step(c, 1.0, 0, 0);
        } else rlay_reply_default(c, &cmd);
    }
    fprintf(stderr, "shm=%d frames=%lld worst_us=%lld\n", shm, frames, worst);
    r = rlay_error(c); rlay_free(c); return r ? 1 : 0;
}
"""


def test_a_frame_loop_with_a_timeout_is_never_held_longer(
    sock_dir: str, envs: list[Env], tmp_path: Path
) -> None:
    """rlay_poll(c, &cmd, 3): between commands it spins at most the timeout, sleeps in poll() for
    the rest, and returns 0 each frame; the agent's wake byte gets a command through."""
    require_tool("gcc")
    src, exe = tmp_path / "poll_loop.c", tmp_path / "poll_loop"
    src.write_text(POLL_LOOP)
    cmd = ["gcc", "-std=c11", "-O2", "-Wall", "-Werror", f"-I{SDK}", "-o", str(exe), str(src), "-lm"]
    subprocess.run(cmd, check=True, timeout=120)
    env = start(envs, exe, sock_dir)
    agent = env.agent()
    assert agent.active
    assert agent.command(RESET, {"seed": None, "options": None})[0] == RESET_RESULT
    time.sleep(0.5)  # the frame loop polls meanwhile
    assert agent.word(A2E, SLEEPING) in (0, 1)
    for _ in range(10):
        assert agent.command(STEP, {"action": 1})[0] == STEP_RESULT
    close(agent)
    err = env.finish()
    stats = dict(kv.split("=") for kv in err.split())
    assert stats["shm"] == "1" and int(stats["frames"]) >= 20, err
    # 3 ms asked; the margin is for this machine's scheduler, not for the SDK
    assert int(stats["worst_us"]) < 3000 + 30000, err


def test_the_c99_build_uses_the_builtins_and_works(bins: Path, sock_dir: str, envs: list[Env]) -> None:
    """Without <stdatomic.h> (-std=c99) the header uses GCC's __atomic builtins: same behaviour."""
    c11 = start(envs, bins / "cartpole", sock_dir)
    c99 = start(envs, bins / "cartpole_c99", sock_dir)
    a, b = c11.agent(), c99.agent()
    assert a.active and b.active
    for x, y in zip(play(a, 60, seed=4), play(b, 60, seed=4), strict=True):
        assert x.tobytes() == y.tobytes()
    close(a)
    close(b)
    c11.finish()
    c99.finish()


def test_under_sanitizers(asan: Path, sock_dir: str, envs: list[Env]) -> None:
    """ASan+UBSan with the raw agent: a refusal, region frames, frames larger than the channel
    both ways, and a broken channel."""
    program = asan
    env = start(envs, program, sock_dir, "--render-mode", "rgb_array", **SAN_ENV)
    agent = env.agent(header={"layout": 9})
    assert not agent.active and "layout" in str(agent.answer)
    play(agent, 3)
    close(agent)
    env.finish()
    env = start(envs, program, sock_dir, "--render-mode", "rgb_array", **SAN_ENV)
    agent = env.agent(capacity=4096)
    play(agent, 30)
    assert agent.command(RESET, {"seed": 3, "options": {"pad": b"x" * 20000}})[0] == RESET_RESULT
    assert agent.command(RENDER, {})[0] == RENDER_RESULT
    play(agent, 3)
    close(agent)
    env.finish()
    env = start(envs, program, sock_dir, **SAN_ENV)
    agent = env.agent()
    agent.send_raw(frame(STEP, {"action": 1}), length=3)
    assert agent.recv()[1]["code"] == 2
    env.finish(1)


# -- with the Python agent side (rlay.ClientEnv / ServerEnv) -----------------------------------------


def stream_kind(env: rlay.ClientEnv | rlay.ServerEnv) -> str:
    return type(env._session.engine.stream).__name__  # type: ignore[union-attr]


def test_client_env_over_shared_memory_matches_gymnasium(bins: Path) -> None:
    """rlay.ClientEnv launching the C CartPole on a unix socket (the default): shared memory is in
    use, and observations, the float64 state, rewards and flags stay bit-identical to Gymnasium's
    through terminations and the 500-step truncation."""
    env = rlay.ClientEnv(launch=[str(bins / "cartpole"), "--listen", "{address}"])
    try:
        assert env._session.conn.peer_hello.capabilities.get("shm") == 1  # type: ignore[union-attr]
        assert stream_kind(env) == "ShmStream"
        check_gymnasium_parity(env)
        kept = env.reset(seed=0)[0]
        first = kept.copy()
        env.step(1)
        assert kept.tobytes() == first.tobytes()  # a returned observation never changes
    finally:
        env.close()


def test_server_env_the_c_program_dials_in_over_shared_memory(bins: Path, sock_dir: str) -> None:
    env = rlay.ServerEnv(f"unix://{sock_dir}/agent.sock", launch=[str(bins / "cartpole"), "--connect"])
    try:
        assert stream_kind(env) == "ShmStream"
        assert run_episode(env, 5, "balance") == 500
        assert 5 < run_episode(env, 8, "random", extra_steps=2) < 200
    finally:
        env.close()


@pytest.mark.parametrize("off", ["python-shm-false", "c-RLAY_SHM=0", "c-rlay_set_shm"])
def test_fallback_to_the_socket(bins: Path, off: str) -> None:
    """Turned off on either side, the session is the plain socket one, still bit-exact."""
    cmd = [str(bins / "cartpole"), "--listen", "{address}"]
    kw: dict[str, Any] = {}
    if off == "python-shm-false":
        kw["shm"] = False
    elif off == "c-RLAY_SHM=0":
        cmd = ["env", "RLAY_SHM=0", *cmd]
    else:
        cmd.append("--no-shm")
    env = rlay.ClientEnv(launch=cmd, **kw)
    try:
        assert stream_kind(env) == "SocketStream"
        c_caps = env._session.conn.peer_hello.capabilities  # type: ignore[union-attr]
        assert c_caps.get("shm") == (1 if off == "python-shm-false" else None)
        assert run_episode(env, 5, "balance") == 500
    finally:
        env.close()


KILLED_TRAINER = """
import sys, time, rlay
env = rlay.ClientEnv(launch=[sys.argv[1], "--listen", "{address}"])
assert type(env._session.engine.stream).__name__ == "ShmStream"
env.reset(seed=0)
env.step(1)
print("PID", env.process.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("phase", ["spinning", "sleeping"])
def test_kill_9_of_a_python_trainer(bins: Path, phase: str) -> None:
    """The trainer (rlay.ClientEnv over shared memory) dies right after a reply, while the C side
    spins (RLAY_SHM_SPIN_US=400000 so the kill lands inside the spin) or sleeps: it exits."""
    spin = {"RLAY_SHM_SPIN_US": "400000"} if phase == "spinning" else {}
    trainer = subprocess.Popen(
        [sys.executable, "-c", KILLED_TRAINER, str(bins / "cartpole")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **spin},
    )
    try:
        assert trainer.stdout is not None
        line = trainer.stdout.readline()
        assert line.startswith("PID"), f"the trainer did not start (exit {trainer.poll()})"
        pid = int(line.split()[1])
        if phase == "sleeping":
            time.sleep(0.3)
        t0 = time.monotonic()
        os.kill(trainer.pid, signal.SIGKILL)
        trainer.wait(10)
        while alive(pid) and time.monotonic() - t0 < 10:
            time.sleep(0.01)
        took = time.monotonic() - t0
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    finally:
        trainer.kill()
        trainer.wait()
    assert took < (0.4 + 2.0 if phase == "spinning" else 2.0), took


def conformance(program: str, *args: str, env: dict[str, str] | None = None) -> str:
    cmd = [sys.executable, "-m", "rlay.testing.shm", *args, "--", program]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and "0 failed" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-3000:]
    return proc.stdout


def test_the_shm_conformance_peer_passes(bins: Path) -> None:
    """python -m rlay.testing.shm sdk/c/bin/cartpole: negotiation, every §16.3 refusal with the
    socket fallback, channel faults, large frames, wake-ups both ways, fatal ERRORs out of turn,
    and the header fuzz."""
    out = conformance(str(SDK / "bin" / "cartpole"), "--fuzz", "150")
    assert "ok fuzz: 150 header mutations" in out, out


def test_the_shm_conformance_peer_passes_under_sanitizers(asan: Path) -> None:
    conformance(str(asan), "--fuzz", "40", env={**os.environ, **SAN_ENV})


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
