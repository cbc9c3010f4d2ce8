"""A conformance peer for the ``shm`` capability (spec/protocol.md §16): an agent side, written by
hand on the sans-I/O core, that checks any env side over a real unix socket.

    python -m rlay.testing.shm [--fuzz N] [--seed S] [--timeout T] -- CMD [ARGS...]

``CMD`` starts an env side as spec §15 says (this peer sets ``RLAY_ADDRESS=unix://…`` and
``RLAY_MODE=listen`` and waits for its ``RLAY_LISTENING`` line). Every check is one session: a
program that serves one session and exits is started again for the next (it must have exited
by itself, never by a signal); one that keeps listening (a Python ``rlay.serve``) is dialled
again. It prints ``ok NAME`` or ``FAIL NAME: why`` per check and exits 0 only if none failed.

The checks: the env side announces ``"shm": 1`` and accepts a good offer (frames then travel
through the region: its ``seq``/``ack`` words count them); a refusal with a reason, then the same
session over the socket, for each fault of §16.3 (no descriptor, two, a size out of bounds, a
size that is not the descriptor's, a region not sealed, and each header field and control word
wrong); ``--fuzz N`` random mutations of the header, each refused with a reason when §16.3
says so (accepted and used otherwise), never a crash or a hang; a later layout (``"shm": 2``) and
no ``shm`` at all, both plain sessions; channel faults (``seq`` jumping, ``len`` out of range)
answered with a fatal ``BAD_HEADER``; frames larger than the channel both ways (the reply way
only when the env's observation does not fit in 4096 bytes); wake-ups both ways (the env side
announces ``sleeping`` when idle, costs little CPU then, and sends a wake byte to a sleeping
agent); and a fatal ``ERROR`` sent on the socket out of turn, while the env side sleeps and while
it spins.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from rlay.batching import wire_spaces
from rlay.errors import ConnectionClosed, ProtocolError, RlayError, Timeout
from rlay.launch import Process, SocketDir
from rlay.protocol.connection import Connection, State
from rlay.protocol.messages import (
    Close,
    CloseResult,
    EnvInfo,
    Error,
    Hello,
    Message,
    Reset,
    ResetResult,
    ShmAnswer,
    ShmOffer,
    Step,
    StepResult,
)
from rlay.protocol.wire import ErrorCode, Role
from rlay.session import Session
from rlay.spaces import SpaceCodec
from rlay.transports import dial
from rlay.transports.shm import (
    A2E_BLOCK,
    ACK,
    E2A_BLOCK,
    LEN,
    SEQ,
    SLEEPING,
    Layout,
    Region,
    ShmStream,
    _check_header,
    fence,
)
from rlay.transports.sockets import SocketStream

SMALL = 64 * 1024  # the capacities of most regions offered here (the env side need not care)
U64 = (1 << 64) - 1


class Failed(Exception):
    """A check failed; the message says why."""


# -- the env program ---------------------------------------------------------------------------------


class Target:
    """The env program under test: launched per §15, dialled once per check."""

    def __init__(self, command: Sequence[str], timeout: float) -> None:
        self.command = list(command)
        self.timeout = timeout
        self.sockets = SocketDir()
        self.process: Process | None = None
        self.launches = 0
        self.crashed: list[str] = []

    def connect(self) -> SocketStream:
        process = self.process
        if process is not None and process.exited() is None:
            try:
                stream = dial(process.listening or process.address, self.timeout)
                assert isinstance(stream, SocketStream)
                return stream
            except ConnectionClosed:
                pass  # a program that serves one session: it is exiting
            process.settle(self.timeout)
            if process.exited() is None:
                raise Failed(
                    f"the env program neither accepts a new connection nor exits {self.timeout:g} s "
                    "after its session ended (§15: a launched program serves one session, then exits)"
                )
        self._reap()
        env = {k: v for k, v in os.environ.items() if k not in ("RLAY_SHM", "RLAY_TOKEN")}
        address = self.sockets.address(f"env{self.launches}")
        self.launches += 1
        self.process = process = Process(self.command, address, env=env, mode="listen")

        def attempt(seconds: float) -> SocketStream | None:
            # §15: dial the address it announced; one that announces nothing, once it listens
            where = process.wait_announced(seconds) or address
            try:
                stream = dial(where, self.timeout)
            except ConnectionClosed:
                time.sleep(0.02)
                return None
            assert isinstance(stream, SocketStream)
            return stream

        result: SocketStream = process.wait_until(attempt, self.timeout, f"it listened at {address}")
        return result

    def _reap(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        code = process.exited()
        if code is None:
            process.close()
        elif code < 0:
            self.crashed.append(
                f"the env program was killed by signal {-code}: {process.stderr_tail()[-400:]}"
            )

    def check_alive(self) -> None:
        """After a session that should have left the program sane: no crash by a signal."""
        process = self.process
        if process is not None:
            code = process.exited()
            if code is not None and code < 0:
                raise Failed(f"the env program died by signal {-code}")

    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def close(self) -> None:
        if self.process is not None:
            self.process.settle(1.0)
        self._reap()
        self.sockets.close()


# -- one session, by hand ----------------------------------------------------------------------------


class Link:
    """One session with the env side, this module being the agent: HELLO, ENV_INFO, then an
    offer built as the check wants, then commands."""

    def __init__(self, target: Target, capabilities: dict[str, Any] | None = None) -> None:
        self.timeout = target.timeout
        self.socket = target.connect()
        caps = {"shm": 1} if capabilities is None else capabilities
        self.conn = Connection(Role.AGENT, sdk="rlay-shm-conformance", capabilities=caps)
        self.engine = Session(self.conn, self.socket, "env side")
        self.region: Region | None = None
        try:
            self.engine.flush("sending HELLO", self.timeout)
            hello = self.engine.receive("waiting for the env side's HELLO", self.timeout)
            if type(hello) is not Hello:
                raise Failed(f"expected the env side's HELLO, got {hello!r}")
            self.peer_shm = hello.capabilities.get("shm")
            info = self.engine.receive("waiting for ENV_INFO", self.timeout)
            if type(info) is not EnvInfo:
                raise Failed(f"expected ENV_INFO, got {info!r}")
        except BaseException:
            self.engine.close("the handshake failed")
            raise
        self.info = info
        obs, act = info.spaces
        wire_obs, wire_act = wire_spaces(obs, act, info.num_envs)
        self.wire_obs, self.wire_act = wire_obs, wire_act
        self.act_codec = SpaceCodec(wire_act)
        self.obs_codec = SpaceCodec(wire_obs)
        wire_act.seed(0)
        wire_obs.seed(0)

    # -- the offer

    def offer(
        self,
        layout: Layout | None = None,
        *,
        size: int | None = None,
        file_size: int | None = None,
        seal: bool = True,
        words: dict[int, int] | None = None,
        fds: int = 1,
    ) -> ShmAnswer:
        """Offer a region built as asked; return the env side's answer (the region is kept)."""
        if self.conn.state is not State.SHM:
            raise Failed(f"after ENV_INFO the session is in state {self.conn.state.value!r}, not 'shm'")
        layout = layout or Layout.for_capacities(SMALL, SMALL)
        region, fd = Region.create(layout, file_size=file_size, seal=seal, words=words)
        self.region = region
        try:
            self.conn.send(ShmOffer(layout.region_size if size is None else size))
            data = b"".join(bytes(b) for b in self.conn.data_to_send())
            extra = [os.dup(fd) for _ in range(fds - 1)]
            try:
                if fds:
                    self.socket.send_fds(data, [fd, *extra], self.timeout, "sending the offer")
                else:
                    self.socket.send([data], self.timeout, "sending the offer")
            finally:
                for f in extra:
                    os.close(f)
        finally:
            os.close(fd)
        reply = self._receive("waiting for the answer to the shared-memory offer")
        if type(reply) is not ShmAnswer:
            raise Failed(f"expected an SHM answer, got {reply!r}")
        return reply

    def switch(self) -> ShmStream:
        assert self.region is not None
        stream = ShmStream(self.socket, self.region, Role.AGENT)
        stream._spin = 0.0005  # a short spin: this peer checks behaviour, not speed
        self.engine.stream = stream
        self.region = None  # the stream owns it now
        return stream

    def refused(self, answer: ShmAnswer) -> str:
        if answer.accepted:
            raise Failed("the env side accepted the offer, but §16.3 says refuse it")
        if not answer.reason:
            raise Failed("the env side refused without a reason (§16.1: reason names the problem)")
        if self.region is not None:
            self.region.close()
            self.region = None
        return answer.reason

    # -- commands

    def _receive(self, what: str) -> Message:
        try:
            reply = self.engine.receive(what, self.timeout)
        except Timeout:
            raise Failed(f"no reply within {self.timeout:g} s {what} (the env side hangs)") from None
        except ConnectionClosed as exc:
            raise Failed(f"the env side closed the connection {what}: {exc}") from None
        except ProtocolError as exc:
            raise Failed(f"the env side broke the protocol {what}: {exc}") from None
        assert reply is not None
        return reply

    def request(self, message: Message, what: str, *, errors_ok: bool = False) -> Message:
        self.engine.send(message, f"sending {what}", self.timeout)
        reply = self._receive(f"waiting for the reply to {what}")
        if type(reply) is Error and not (errors_ok and not reply.fatal):
            raise Failed(f"the env side answered {what} with {_error_name(reply)}: {reply.message}")
        return reply

    def reset(self) -> Message:
        reply = self.request(Reset(0, None), "RESET")
        if type(reply) is not ResetResult:
            raise Failed(f"expected RESET_RESULT, got {reply!r}")
        return reply

    def step(self) -> Message:
        reply = self.request(Step(self.act_codec.to_wire(self.wire_act.sample())), "STEP")
        if type(reply) not in (StepResult, ResetResult):
            raise Failed(f"expected STEP_RESULT, got {reply!r}")
        return reply

    def play(self, steps: int = 3) -> None:
        """RESET, a few STEPs, CLOSE: the session works (wherever its frames travel)."""
        self.reset()
        for _ in range(steps):
            self.step()
        self.finish()

    def finish(self) -> None:
        reply = self.request(Close(), "CLOSE")
        if type(reply) is not CloseResult:
            raise Failed(f"expected CLOSE_RESULT, got {reply!r}")
        self.close()

    def close(self) -> None:
        self.engine.close("the check is over")
        if self.region is not None:
            self.region.close()
            self.region = None

    # -- raw access to the channels (after switch)

    @property
    def shm(self) -> ShmStream:
        stream = self.engine.stream
        if type(stream) is not ShmStream:
            raise Failed("the session is not on shared memory")
        return stream

    def word(self, block: int, field: int) -> int:
        return int(self.shm._words[block + field])

    def expect_end(self, what: str, allowed: set[int] | None) -> str:
        """Read until end of stream; an ERROR is allowed only with a code in ``allowed``."""
        deadline = time.monotonic() + self.timeout
        seen = "end of stream"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failed(f"the env side did not end the session within {self.timeout:g} s {what}")
            try:
                event = self.engine.receive(what, left)
            except ConnectionClosed:
                return seen
            except Timeout:
                continue
            except ProtocolError as exc:
                raise Failed(f"the env side broke the protocol {what}: {exc}") from None
            if type(event) is Error and allowed is not None and event.code in allowed:
                seen = f"{_error_name(event)} ({event.message}), then end of stream"
                continue
            raise Failed(f"the env side sent {event!r} {what}")


def _error_name(err: Error) -> str:
    try:
        return ErrorCode(err.code).name
    except ValueError:
        return f"code {err.code}"


# -- the checks --------------------------------------------------------------------------------------


def check_accepts(target: Target) -> str:
    link = Link(target)
    try:
        if link.peer_shm != 1:
            raise Failed(f'the env side\'s HELLO announces "shm": {link.peer_shm!r}, not 1 (§16.1)')
        answer = link.offer()
        if not answer.accepted:
            raise Failed(f"the env side refused a good offer: {answer.reason}")
        if answer.reason is not None:
            raise Failed(f"an accepted offer must carry reason nil, got {answer.reason!r}")
        link.switch()
        link.reset()
        for _ in range(5):
            link.step()
        a2e, e2a = (
            (link.word(A2E_BLOCK, f) for f in (SEQ, ACK)),
            (link.word(E2A_BLOCK, f) for f in (SEQ, ACK)),
        )
        (a_seq, a_ack), (e_seq, e_ack) = tuple(a2e), tuple(e2a)
        if (a_seq, a_ack, e_seq, e_ack) != (6, 6, 6, 6):
            raise Failed(
                f"after 6 commands through the region expected seq/ack 6/6 both ways, got a2e "
                f"{a_seq}/{a_ack}, e2a {e_seq}/{e_ack}"
            )
        link.finish()
        return "accepted; 6 commands and replies through the region"
    finally:
        link.close()


def refusal_cases() -> list[tuple[str, dict[str, Any]]]:
    good = Layout.for_capacities(SMALL, SMALL)
    size = good.region_size
    a, e = A2E_BLOCK, E2A_BLOCK
    cases: list[tuple[str, dict[str, Any]]] = [
        ("no descriptor", {"fds": 0}),
        ("two descriptors", {"fds": 2}),
        ("size below 4096", {"layout": replace(good, region_size=2048), "file_size": 2048}),
        ("size above max_shm_size", {"size": 1 << 40}),
        ("size is not the descriptor's size", {"file_size": size + 4096}),
        ("region not sealed against shrinking", {"seal": False}),
        ("magic", {"layout": replace(good, magic=b"rlay-shx")}),
        ("layout 2", {"layout": replace(good, layout=2)}),
        ("header_size", {"layout": replace(good, header_size=8192)}),
        (
            "region_size differs from size",
            {"layout": replace(good, region_size=size + 4096), "size": size, "file_size": size},
        ),
        ("a2e offset inside the header", {"layout": replace(good, a2e_offset=2048)}),
        ("a2e area past the end", {"layout": replace(good, a2e_capacity=size)}),
        ("e2a capacity below 4096", {"layout": replace(good, e2a_capacity=1024)}),
        (
            "e2a offset not a multiple of 64",
            {"layout": replace(good, e2a_offset=good.e2a_offset + 32, e2a_capacity=good.e2a_capacity - 64)},
        ),
        ("areas overlap", {"layout": replace(good, e2a_offset=good.a2e_offset + 4096)}),
        (
            "offset + capacity overflows u64",
            {"layout": replace(good, a2e_offset=U64 - 4095, a2e_capacity=8192)},
        ),
    ]
    for name, block in (("a2e", a), ("e2a", e)):
        for field, index in (("seq", SEQ), ("ack", ACK), ("sleeping", SLEEPING)):
            cases.append((f"{name}.{field} not 0", {"words": {block + index: 1}}))
    return cases


def check_refusal(target: Target, kwargs: dict[str, Any]) -> str:
    link = Link(target)
    try:
        reason = link.refused(link.offer(**kwargs))
        link.play(2)  # the fallback: the same session over the socket
        return f"refused ({reason}); the session went on over the socket"
    finally:
        link.close()


def expected_refusal(
    layout: Layout, size: int, file_size: int, seal: bool, words: dict[int, int]
) -> str | None:
    """What §16.3 says of an offer (one descriptor), by this implementation's reading."""
    if not 4096 <= size <= 1 << 30:
        return "size"
    if file_size != size:
        return "fstat"
    if not seal:
        return "seal"
    reason = _check_header(layout, size)
    if reason is not None:
        return reason
    for block in (A2E_BLOCK, E2A_BLOCK):
        for index in (SEQ, ACK, SLEEPING):
            if words.get(block + index, 0):
                return "control word"
    return None


def fuzz_case(rng: random.Random) -> tuple[str, dict[str, Any], bool]:
    """One random mutation of a good offer: (description, offer kwargs, whether §16.3 refuses)."""
    layout = Layout.for_capacities(SMALL, SMALL)
    size = layout.region_size
    file_size = size
    seal = True
    words: dict[int, int] = {}
    names = ["magic", "layout", "header_size", "region_size", "a2e_offset", "a2e_capacity", "e2a_offset",
             "e2a_capacity", "word", "size", "file_size", "seal"]  # fmt: skip
    interesting = [0, 1, 12, 63, 64, 4095, 4096, 4097, size - 64, size - 1, size, size + 1,
                   (1 << 31) - 1, 1 << 32, (1 << 63), U64 - 4095, U64]  # fmt: skip
    done = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        name = rng.choice(names)
        if name == "magic":
            raw = bytearray(layout.magic)
            raw[rng.randrange(8)] ^= 1 << rng.randrange(8)
            layout = replace(layout, magic=bytes(raw))
            done.append(f"magic={bytes(raw)!r}")
        elif name in ("layout", "header_size"):
            value = rng.choice([0, 1, 2, 4096, 8192, 0xFFFFFFFF, rng.randrange(1 << 32)])
            layout = replace(layout)
            setattr(layout, name, value)
            done.append(f"{name}={value}")
        elif name == "word":
            index = rng.choice([A2E_BLOCK, E2A_BLOCK]) + rng.choice([SEQ, ACK, SLEEPING])
            value = rng.choice([1, 2, U64, rng.randrange(1 << 64)])
            words[index] = value
            done.append(f"word[{index}]={value}")
        elif name == "size":
            size = rng.choice([4096, size - 4096, size + 4096, 1 << 31, U64, rng.randrange(1 << 64)])
            done.append(f"size={size}")
        elif name == "file_size":
            file_size = rng.choice([4096, size - 4096, size + 4096, size + 64])
            done.append(f"file_size={file_size}")
        elif name == "seal":
            seal = False
            done.append("unsealed")
        else:
            current = getattr(layout, name)
            value = rng.choice([*interesting, current + rng.choice((-64, -1, 1, 64, 4096))]) & U64
            layout = replace(layout)
            setattr(layout, name, value)
            done.append(f"{name}={value}")
    if file_size < 4096:
        file_size = 4096
    refuse = expected_refusal(layout, size, file_size, seal, words) is not None
    kwargs = {"layout": layout, "size": size, "file_size": file_size, "seal": seal, "words": words}
    return ", ".join(done), kwargs, refuse


def check_fuzz(target: Target, count: int, seed: int) -> str:
    rng = random.Random(seed)
    refused = accepted = 0
    for i in range(count):
        what, kwargs, refuse = fuzz_case(rng)
        link = Link(target)
        try:
            try:
                answer = link.offer(**kwargs)
            except Failed as exc:
                raise Failed(f"mutation {i} ({what}): {exc}") from None
            if refuse:
                if answer.accepted:
                    raise Failed(f"mutation {i} ({what}) was accepted; §16.3 refuses it")
                if not answer.reason:
                    raise Failed(f"mutation {i} ({what}) was refused without a reason")
                refused += 1
            elif not answer.accepted:
                raise Failed(f"mutation {i} ({what}) is a valid region but was refused: {answer.reason}")
            else:
                accepted += 1
                link.switch()
            try:
                link.finish()  # CLOSE answered: the env side survived (region or socket)
            except Failed as exc:
                raise Failed(f"after mutation {i} ({what}): {exc}") from None
        finally:
            link.close()
        target.check_alive()
    return f"{count} random header mutations ({refused} refused with a reason, {accepted} valid and used)"


def check_later_layout(target: Target) -> str:
    link = Link(target, {"shm": 2})
    try:
        if link.conn.state is not State.IDLE:
            raise Failed("the agent announced shm 2; the session must not switch")
        link.play(2)
        return 'an agent announcing "shm": 2 gets a plain session'
    finally:
        link.close()


def check_no_shm(target: Target) -> str:
    link = Link(target, {})
    try:
        link.play(2)
        return "an agent without shm gets a plain session"
    finally:
        link.close()


def _write_frame(link: Link, message: Message, *, seq: int | None = None, length: int | None = None) -> None:
    """Publish ``message`` in the a2e channel by hand, with a chosen ``seq`` or ``len``."""
    stream = link.shm
    link.conn.send(message)
    data = b"".join(bytes(b) for b in link.conn.data_to_send())
    w = stream._words
    stream._tx_area[: len(data)] = data
    w[A2E_BLOCK + LEN] = len(data) if length is None else length
    w[A2E_BLOCK + SEQ] = stream._sent + 1 if seq is None else seq
    fence()
    if w[A2E_BLOCK + SLEEPING]:
        w[A2E_BLOCK + SLEEPING] = 0
        link.socket.send([b"\x00"], link.timeout, "waking the env side")


def check_channel_fault(target: Target, seq: int | None, length: int | None) -> str:
    link = Link(target)
    try:
        if not link.offer().accepted:
            raise Failed("the env side refused a good offer")
        link.switch()
        link.reset()
        _write_frame(link, Step(link.act_codec.to_wire(link.wire_act.sample())), seq=seq, length=length)
        seen = link.expect_end("after a broken channel", {int(ErrorCode.BAD_HEADER)})
        if "BAD_HEADER" not in seen:
            raise Failed(f"expected a fatal BAD_HEADER, then end of stream; got {seen}")
        return seen
    finally:
        link.close()


def check_large_command(target: Target) -> str:
    link = Link(target)
    try:
        if not link.offer(Layout.for_capacities(4096, 4096)).accepted:
            raise Failed("the env side refused a good offer (capacities 4096)")
        stream = link.switch()
        link.reset()
        pad = bytes(range(256)) * 256  # 64 KiB: 16 times the channel
        reply = link.request(Reset(1, {"rlay_shm_pad": pad}), "a 64 KiB RESET", errors_ok=True)
        if type(reply) not in (ResetResult, Error):
            raise Failed(f"expected RESET_RESULT (or a non-fatal ERROR), got {reply!r}")
        if stream._words[A2E_BLOCK + LEN] != U64:
            raise Failed("the large RESET was not announced as a socket frame")
        link.step()
        link.finish()
        answered = type(reply).__name__
        return f"a 64 KiB command over a 4096-byte channel answered ({answered}), then the region again"
    finally:
        link.close()


def check_large_reply(target: Target) -> str:
    link = Link(target)
    try:
        conn = Connection(Role.ENV)
        sample = link.obs_codec.to_wire(link.wire_obs.sample())
        size = sum(len(memoryview(b).cast("B")) for b in conn.encode_frame(ResetResult(sample, {})))
        if size <= 4096:
            if link.offer().accepted:
                link.switch()
            link.finish()
            return f"skipped: this env's observations ({size} bytes a frame) fit in 4096 bytes"
        if not link.offer(Layout.for_capacities(4096, 4096)).accepted:
            raise Failed("the env side refused a good offer (capacities 4096)")
        link.switch()
        link.reset()
        if link.word(E2A_BLOCK, LEN) != U64:
            raise Failed(f"a {size}-byte RESET_RESULT did not travel as a socket frame (len != 2^64-1)")
        link.step()
        link.finish()
        return f"{size}-byte replies over a 4096-byte channel, via the socket"
    finally:
        link.close()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check_env_sleeps(target: Target) -> str:
    link = Link(target)
    try:
        if not link.offer().accepted:
            raise Failed("the env side refused a good offer")
        link.switch()
        link.reset()
        pid = target.pid()
        t0 = time.monotonic()
        cpu0 = _cpu_seconds(pid) if pid else 0.0
        time.sleep(1.0)
        if link.word(A2E_BLOCK, SLEEPING) != 1:
            raise Failed("after 1 s without a command the env side has not set a2e.sleeping (§16.6)")
        used = ""
        if pid:
            share = (_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
            used = f", {share:.1%} of a core while idle"
            if share > 0.2:
                raise Failed(f"the idle env side used {share:.0%} of a core for 1 s (it spins)")
        link.step()  # this side sees sleeping = 1 and sends the wake byte
        link.finish()
        return f"the idle env side sleeps and a wake byte wakes it{used}"
    finally:
        link.close()


def check_agent_woken(target: Target) -> str:
    link = Link(target)
    try:
        if not link.offer().accepted:
            raise Failed("the env side refused a good offer")
        stream = link.switch()
        link.reset()
        w = stream._words
        w[E2A_BLOCK + SLEEPING] = 1  # this side (the reader of e2a) is about to sleep
        fence()
        link.conn.send(Step(link.act_codec.to_wire(link.wire_act.sample())))
        stream.send(link.conn.data_to_send(), link.timeout, "sending STEP")
        try:
            byte = link.socket.recv(link.timeout, "waiting for the wake byte")
        except Timeout:
            raise Failed(
                "the env side replied to a sleeping agent without a wake byte (§16.4 step 4)"
            ) from None
        if byte[:1] != b"\x00":
            raise Failed(f"expected a wake byte 0x00 on the socket, got {byte[:8]!r}")
        if w[E2A_BLOCK + SLEEPING] != 0:
            raise Failed("the env side sent a wake byte but left e2a.sleeping at 1")
        stream._note(byte)
        reply = link._receive("reading the reply after the wake byte")
        if type(reply) is not StepResult:
            raise Failed(f"expected STEP_RESULT, got {reply!r}")
        link.finish()
        return "a sleeping agent got a wake byte with the reply"
    finally:
        link.close()


def check_error_out_of_turn(target: Target, sleeping: bool) -> str:
    link = Link(target)
    try:
        if not link.offer().accepted:
            raise Failed("the env side refused a good offer")
        link.switch()
        link.reset()
        if sleeping:
            time.sleep(0.3)
        frame = link.conn.encode_frame(
            Error(int(ErrorCode.INTERNAL), "the agent side gives up", True, None, None)
        )
        link.socket.send(frame, link.timeout, "sending a fatal ERROR on the socket")
        seen = link.expect_end("after a fatal ERROR on the socket", None)
        return f"a fatal ERROR on the socket while the env side {'slept' if sleeping else 'spun'}: {seen}"
    finally:
        link.close()


# -- the runner --------------------------------------------------------------------------------------


def _refusal(kwargs: dict[str, Any]) -> Callable[[Target], str]:
    return lambda target: check_refusal(target, kwargs)


def checks(fuzz: int, seed: int) -> list[tuple[str, Callable[[Target], str]]]:
    out: list[tuple[str, Callable[[Target], str]]] = [("negotiation: a good offer", check_accepts)]
    for name, kwargs in refusal_cases():
        out.append((f"refused: {name}", _refusal(kwargs)))
    out += [
        ("fallback: a later layout", check_later_layout),
        ("fallback: an agent without shm", check_no_shm),
        ("channel: seq jumps", lambda t: check_channel_fault(t, seq=3, length=None)),
        ("channel: len below 12", lambda t: check_channel_fault(t, seq=None, length=5)),
        ("channel: len above capacity", lambda t: check_channel_fault(t, seq=None, length=SMALL + 1)),
        ("large: a command larger than the channel", check_large_command),
        ("large: a reply larger than the channel", check_large_reply),
        ("wake: the env side sleeps when idle", check_env_sleeps),
        ("wake: a sleeping agent is woken", check_agent_woken),
        ("error: fatal ERROR out of turn, env side sleeping", lambda t: check_error_out_of_turn(t, True)),
        ("error: fatal ERROR out of turn, env side spinning", lambda t: check_error_out_of_turn(t, False)),
    ]
    if fuzz:
        out.append((f"fuzz: {fuzz} header mutations", lambda t: check_fuzz(t, fuzz, seed)))
    return out


def run(
    command: Sequence[str], *, fuzz: int = 300, seed: int = 0, timeout: float = 10.0, out: Any = None
) -> int:
    """Run every check against ``command``; return the number that failed."""
    out = out or sys.stdout
    target = Target(command, timeout)
    failed = 0
    try:
        for name, check in checks(fuzz, seed):
            try:
                detail = check(target)
                target.check_alive()
                print(f"ok {name}: {detail}", file=out, flush=True)
            except (Failed, RlayError, OSError) as exc:
                failed += 1
                print(f"FAIL {name}: {exc}", file=out, flush=True)
                if os.environ.get("RLAY_DEBUG"):
                    traceback.print_exc()
                if name.startswith("negotiation"):
                    break  # nothing else can work
    finally:
        target.close()
    for crash in target.crashed:
        failed += 1
        print(f"FAIL crash: {crash}", file=out, flush=True)
    print(
        f"{'FAILED' if failed else 'PASSED'}: {failed} failed, {target.launches} launch(es)",
        file=out,
        flush=True,
    )
    return failed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlay.testing.shm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fuzz", type=int, default=300, help="random header mutations (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutations (default 0)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds any one wait may take")
    parser.add_argument("command", nargs="+", help="the env program (spec §15), after --")
    args = parser.parse_args(argv)
    return 1 if run(args.command, fuzz=args.fuzz, seed=args.seed, timeout=args.timeout) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
