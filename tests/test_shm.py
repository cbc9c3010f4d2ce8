"""Shared memory on unix sockets (spec §16), with real processes: negotiation and fallback,
frames larger than a channel, wake-ups, kill -9 of either side while it spins and while it
sleeps, the header fuzz of the conformance peer, observations that never change, idle CPU, and
a vector env waiting for its whole batch at once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import pytest
from conftest import require_tool

import rlay
from rlay.errors import ConnectionClosed, EnvSideFailed, LaunchError
from rlay.launch import Process, SocketDir
from rlay.protocol.connection import Connection, State
from rlay.protocol.messages import EnvInfo, Reset, ShmAnswer, ShmOffer
from rlay.protocol.wire import ErrorCode, Role
from rlay.spaces import describe
from rlay.testing import TrivialEnv
from rlay.transports import shm as shm_mod
from rlay.transports.shm import ShmStream
from rlay.transports.sockets import SocketStream

pytestmark = pytest.mark.skipif(shm_mod.unsupported() is not None, reason=str(shm_mod.unsupported()))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# An env side for these tests: obs = the step count in every element of a float64 vector of
# SIZE elements; with "--slow", action 2 sleeps 30 s (an env the agent waits for). "--many": rlay.serve (any
# number of sessions); otherwise one session, listening or dialling as RLAY_MODE says (§15).
PROBE = r"""
import os, sys, time
import numpy as np, gymnasium as gym, rlay
from rlay.backends.server import run_session
from rlay.errors import ConnectionClosed

class Probe(gym.Env):
    metadata = {"render_modes": []}
    def __init__(self, size):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float64)
        self.action_space = gym.spaces.Discrete(3)
        self.t = 0
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.pad = len((options or {}).get("pad", b""))
        return np.zeros(self.observation_space.shape), {"pad": self.pad}
    def step(self, action):
        if action == 2 and "--slow" in sys.argv:
            time.sleep(30)
        self.t += 1
        return np.full(self.observation_space.shape, float(self.t)), 1.0, False, False, {}

size = int(sys.argv[1])
if "--many" in sys.argv:
    rlay.serve(lambda: Probe(size), os.environ["RLAY_ADDRESS"])
env = Probe(size)
address = os.environ["RLAY_ADDRESS"]
if os.environ.get("RLAY_MODE") == "dial":
    session = rlay.EnvSession.dial(address, env.observation_space, env.action_space)
else:
    session = rlay.EnvSession.listen(address, env.observation_space, env.action_space)
print("shm" if type(session.stream).__name__ == "ShmStream" else "socket", file=sys.stderr, flush=True)
try:
    run_session(session, env)
except ConnectionClosed as exc:
    print(f"ended: {exc}", file=sys.stderr)
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("shm") / "probe.py"
    path.write_text(PROBE)
    return str(path)


@pytest.fixture(scope="module")
def many(probe: str) -> Iterator[str]:
    """One env program serving any number of sessions (obs of 4 float64)."""
    sockets = SocketDir()
    address = sockets.address("many")
    process = Process([sys.executable, probe, "4", "--many"], address, mode="listen")
    deadline = time.monotonic() + 30
    while not os.path.exists(address[len("unix://") :]):
        assert process.exited() is None, process.stderr_tail()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield address
    process.close()
    sockets.close()


def stream_of(env: rlay.ClientEnv | rlay.ServerEnv) -> object:
    return env._session.engine.stream  # type: ignore[union-attr]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_dead(pid: int, seconds: float) -> float:
    t0 = time.monotonic()
    while alive(pid):
        if time.monotonic() - t0 > seconds:
            raise AssertionError(f"process {pid} still runs {seconds} s later")
        time.sleep(0.01)
    return time.monotonic() - t0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the sans-I/O core: states shm and shm-answer (§16.1) ------------------------------------------


def pair(agent_caps: dict, env_caps: dict) -> tuple[Connection, Connection]:
    agent = Connection(Role.AGENT, capabilities=agent_caps)
    env = Connection(Role.ENV, capabilities=env_caps)
    for data in agent.data_to_send():
        env.receive_data(data)
    for data in env.data_to_send():
        agent.receive_data(data)
    assert agent.next_event() is not None and env.next_event() is not None
    box = describe(gym.spaces.Box(0, 1, (1,)))
    env.send(EnvInfo(box, box, 1, {}, None, None))
    for data in env.data_to_send():
        agent.receive_data(data)
    assert type(agent.next_event()) is EnvInfo
    return agent, env


def feed(src: Connection, dst: Connection) -> object:
    for data in src.data_to_send():
        dst.receive_data(data)
    return dst.next_event()


@pytest.mark.parametrize(
    "agent_caps, env_caps, switch",
    [
        ({"shm": 1}, {"shm": 1}, True),
        ({"shm": 1}, {}, False),
        ({}, {"shm": 1}, False),
        ({"shm": 2}, {"shm": 1}, False),  # a later layout: ignored, both stay on the socket
        ({"shm": True}, {"shm": 1}, False),  # not an int
    ],
)
def test_state_machine_switches_only_when_both_announce_layout_1(
    agent_caps: dict, env_caps: dict, switch: bool
) -> None:
    agent, env = pair(agent_caps, env_caps)
    expected = State.SHM if switch else State.IDLE
    assert agent.state is expected and env.state is expected
    if not switch:
        with pytest.raises(rlay.UsageError):
            agent.send(ShmOffer(4096))
        return
    with pytest.raises(rlay.UsageError):
        agent.send(Reset(None, None))  # the offer comes first
    agent.send(ShmOffer(8192))
    assert agent.state is State.SHM_ANSWER
    assert feed(agent, env) == ShmOffer(8192) and env.state is State.SHM_ANSWER
    env.send(ShmAnswer(False, "no thanks"))
    assert feed(env, agent) == ShmAnswer(False, "no thanks")
    assert agent.state is State.IDLE and env.state is State.IDLE


def test_shm_messages_out_of_place_are_unexpected_or_bad_field() -> None:
    agent, env = pair({"shm": 1}, {"shm": 1})
    # the env side answers before any offer: UNEXPECTED_MESSAGE on the agent side
    rogue = Connection(Role.ENV)
    frame = b"".join(bytes(b) for b in rogue.encode_frame(ShmAnswer(True, None)))
    agent.receive_data(frame)
    with pytest.raises(rlay.ProtocolError) as info:
        agent.next_event()
    assert info.value.code is ErrorCode.UNEXPECTED_MESSAGE
    # an offer with the env's body: BAD_FIELD
    agent, env = pair({"shm": 1}, {"shm": 1})
    env.receive_data(frame)
    with pytest.raises(rlay.ProtocolError) as info:
        env.next_event()
    assert info.value.code is ErrorCode.BAD_FIELD
    # a second offer while the env side owes its answer
    agent, env = pair({"shm": 1}, {"shm": 1})
    agent.send(ShmOffer(8192))
    feed(agent, env)
    env.receive_data(b"".join(bytes(b) for b in Connection(Role.AGENT).encode_frame(ShmOffer(8192))))
    with pytest.raises(rlay.ProtocolError) as info:
        env.next_event()
    assert info.value.code is ErrorCode.UNEXPECTED_MESSAGE
    # SHM in idle, on a session that never announced it
    agent, env = pair({}, {})
    env.receive_data(b"".join(bytes(b) for b in Connection(Role.AGENT).encode_frame(ShmOffer(8192))))
    with pytest.raises(rlay.ProtocolError) as info:
        env.next_event()
    assert info.value.code is ErrorCode.UNEXPECTED_MESSAGE


def test_the_fence_is_a_locked_instruction() -> None:
    """The module docstring's claim: an uncontended threading.Lock acquire is glibc's
    sem_trywait (CPython 3.11's semaphore locks), which is a `lock cmpxchg` on x86-64."""
    if sys.version_info >= (3, 13):
        pytest.skip("CPython 3.13 locks are PyMutex: a compare-exchange, checked by their own tests")
    assert sys.thread_info.lock == "semaphore"
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump is not installed")
    libc = next(
        (line.split()[-1] for line in open("/proc/self/maps") if "/libc.so" in line or "/libc-" in line),
        None,
    )
    assert libc is not None
    out = subprocess.run(
        [objdump, "-d", libc, "--disassemble=sem_trywait"], capture_output=True, text=True, check=True
    ).stdout
    assert "lock cmpxchg" in out


# -- negotiation and fallback, real processes --------------------------------------------------------


def test_launched_python_env_side_uses_shared_memory(probe: str) -> None:
    env = rlay.ClientEnv(launch=[sys.executable, probe, "4"])
    try:
        stream = stream_of(env)
        assert type(stream) is ShmStream
        obs, _ = env.reset(seed=0)
        for t in range(1, 20):
            obs, reward, *_ = env.step(0)
            assert obs.tolist() == [float(t)] * 4 and reward == 1.0
        assert stream._words[shm_mod.A2E_BLOCK + shm_mod.SEQ] == 20  # every frame in the region
    finally:
        env.close()


def test_server_env_with_a_dialling_env_side_uses_shared_memory(probe: str) -> None:
    env = rlay.ServerEnv(launch=[sys.executable, probe, "4"])
    try:
        assert type(stream_of(env)) is ShmStream
        env.reset()
        assert env.step(1)[0].tolist() == [1.0] * 4
    finally:
        env.close()


@pytest.mark.parametrize("how", ["shm=False", "RLAY_SHM=0"])
def test_agent_side_turns_it_off(many: str, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "RLAY_SHM=0":
        monkeypatch.setenv("RLAY_SHM", "0")
    env = rlay.ClientEnv(many, shm=how != "shm=False")
    try:
        assert type(stream_of(env)) is SocketStream
        env.reset()
        assert env.step(0)[0].tolist() == [1.0] * 4
    finally:
        env.close()


def test_env_side_without_shm_talks_to_an_agent_with_it(probe: str) -> None:
    env = rlay.ClientEnv(launch=[sys.executable, probe, "4"], launch_env={**os.environ, "RLAY_SHM": "0"})
    try:
        assert type(stream_of(env)) is SocketStream
        env.reset()
        assert env.step(0)[0].tolist() == [1.0] * 4
    finally:
        env.close()


def test_no_region_means_an_offer_without_descriptor_and_the_socket(
    many: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_memory(*args: object, **kwargs: object) -> None:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(shm_mod.Region, "create", no_memory)
    env = rlay.ClientEnv(many)
    try:
        assert type(stream_of(env)) is SocketStream
        env.reset()
        assert env.step(0)[0].tolist() == [1.0] * 4
    finally:
        env.close()


def test_tcp_is_unchanged() -> None:
    server = rlay.serve(TrivialEnv, "tcp://127.0.0.1:0", block=False)
    try:
        env = rlay.ClientEnv(server.address)
        assert type(stream_of(env)) is SocketStream
        assert env._session.conn.peer_hello.capabilities.get("shm") is None  # type: ignore[union-attr]
        env.reset()
        env.step(env.action_space.sample())
        env.close()
    finally:
        server.close()


@pytest.mark.parametrize("c_shm", ["1", "0"])
def test_c_env_side_with_and_without_shm(c_shm: str) -> None:
    """The C SDK's env side (sdk/c/rlay.h, §16 from the same text) with and without shm."""
    require_tool("gcc")
    env = rlay.ClientEnv(
        launch=[os.path.join(ROOT, "sdk/c/bin/cartpole")], launch_env={**os.environ, "RLAY_SHM": c_shm}
    )
    try:
        assert type(stream_of(env)) is (ShmStream if c_shm == "1" else SocketStream)
        env.reset(seed=0)
        assert env.step(0)[0].shape == (4,)
    finally:
        env.close()


def test_conformance_peer_passes_against_the_c_env_side() -> None:
    from rlay.testing.shm import run

    require_tool("gcc")
    lines: list[str] = []
    failed = run([os.path.join(ROOT, "sdk/c/bin/cartpole")], fuzz=60, seed=5, out=_Lines(lines))
    assert failed == 0, "".join(lines)


class _Lines:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def write(self, text: str) -> None:
        self.lines.append(text)

    def flush(self) -> None:
        pass


# -- the conformance peer: negotiation, every refusal, header fuzz, large frames, wake-ups -----------


def test_conformance_peer_passes_against_the_python_env_side(probe: str) -> None:
    from rlay.testing.shm import run

    lines: list[str] = []
    # 1024 float64: 8 KiB observations, so the reply way also exceeds a 4096-byte channel
    failed = run([sys.executable, probe, "1024", "--many"], fuzz=200, seed=11, out=_Lines(lines))
    text = "".join(lines)
    assert failed == 0, text
    assert "skipped" not in text
    assert "200 random header mutations" in text
    assert text.count("\nok refused:") + text.startswith("ok refused:") >= 20


# -- frames larger than the region, observations that stay put --------------------------------------


def test_frames_larger_than_the_region_travel_on_the_socket(probe: str) -> None:
    n = 9 * 1024 * 1024 // 8 + 1  # a 9 MiB observation: more than the 8 MiB channel
    env = rlay.ClientEnv(launch=[sys.executable, probe, str(n)])
    try:
        stream = stream_of(env)
        assert type(stream) is ShmStream
        obs, info = env.reset(options={"pad": bytes(9 * 1024 * 1024)})  # 9 MiB the other way
        assert info["pad"] == 9 * 1024 * 1024 and obs.shape == (n,) and not obs.any()
        first, *_ = env.step(0)
        second, *_ = env.step(0)
        assert first[0] == 1.0 and first[-1] == 1.0 and second[-1] == 2.0
        assert stream._words[shm_mod.E2A_BLOCK + shm_mod.LEN] == shm_mod.SOCKET_FRAME
    finally:
        env.close()


def test_observations_never_change_after_they_are_returned(many: str) -> None:
    env = rlay.ClientEnv(many)
    try:
        assert type(stream_of(env)) is ShmStream
        env.reset()
        kept = [env.step(0)[0] for _ in range(30)]
        assert [o[0] for o in kept] == [float(t) for t in range(1, 31)]
        for t, obs in enumerate(kept, 1):
            assert obs.tolist() == [float(t)] * 4
            if not obs.flags.writeable:
                continue
            obs[0] = -1.0  # a copy of its own: writing to it changes nothing else
        env.step(0)
        assert [o[1] for o in kept] == [float(t) for t in range(1, 31)]
    finally:
        env.close()


def test_vector_env_waits_for_the_whole_batch_at_once(probe: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import rlay.envs.vector as vector

    calls = []
    real = vector.wait_all

    def counting(streams: list, timeout: float | None) -> list[int]:
        calls.append(sum(type(s) is ShmStream for s in streams))
        return real(streams, timeout)

    monkeypatch.setattr(vector, "wait_all", counting)
    venv = rlay.make_vec([sys.executable, probe, "4"], 3, copy=False)
    try:
        assert all(type(link.session.engine.stream) is ShmStream for link in venv._links)
        venv.reset()
        kept = []
        for t in range(1, 11):
            obs, rewards, *_ = venv.step(np.zeros(3, np.int64))
            kept.append(obs)
            assert obs.tolist() == [[float(t)] * 4] * 3 and rewards.tolist() == [1.0] * 3
        assert [o[0, 0] for o in kept] == [float(t) for t in range(1, 11)]  # none changed later
        assert calls[-10:] == [3] * 10  # one batch wait per step, over all three
    finally:
        venv.close()


# -- kill -9 of either side, while it spins and while it sleeps ---------------------------------------

AGENT = r"""
import sys, time, rlay
env = rlay.ClientEnv(sys.argv[1])
assert type(env._session.engine.stream).__name__ == "ShmStream"
env.reset()
env.step(0)
print("stepped", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("phase", ["sleeping", "spinning"])
def test_kill_agent_env_side_exits(probe: str, phase: str) -> None:
    sockets = SocketDir()
    address = sockets.address("kill")
    spin = {"RLAY_SHM_SPIN_US": "1500000"} if phase == "spinning" else {}
    env_program = Process([sys.executable, probe, "4"], address, env={**os.environ, **spin}, mode="listen")
    agent = None
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(address[len("unix://") :]):
            assert env_program.exited() is None and time.monotonic() < deadline
            time.sleep(0.02)
        agent = subprocess.Popen(
            [sys.executable, "-c", AGENT, address], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert agent.stdout is not None
        assert agent.stdout.readline() == b"stepped\n", agent.stderr.read() if agent.stderr else ""
        if phase == "sleeping":
            time.sleep(0.3)  # the env side has long given up spinning
        agent.kill()
        took = wait_dead(env_program.pid, 5.0)
        assert took < (2.5 if phase == "spinning" else 1.0)
        assert "shm" in env_program.stderr_tail()
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
        env_program.close()
        sockets.close()


@pytest.mark.parametrize("phase", ["sleeping", "spinning"])
def test_kill_env_side_agent_raises_at_once(probe: str, phase: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if phase == "spinning":
        monkeypatch.setenv("RLAY_SHM_SPIN_US", "1000000")  # the agent spins 1 s before it sleeps
    env = rlay.ClientEnv(launch=[sys.executable, probe, "4", "--slow"], timeout=20)
    try:
        assert type(stream_of(env)) is ShmStream
        env.reset()
        pid = env.process.pid  # type: ignore[union-attr]
        killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
        killer.start()
        t0 = time.monotonic()
        with pytest.raises((ConnectionClosed, LaunchError, EnvSideFailed)) as info:
            env.step(2)  # the env side sleeps 30 s in this step; it is killed at 0.3 s
        took = time.monotonic() - t0
        killer.join()
        assert took < (2.5 if phase == "spinning" else 1.5), took
        assert "closed" in str(info.value) or "exited" in str(info.value) or "killed" in str(info.value)
    finally:
        env.close()


# -- idle ---------------------------------------------------------------------------------------------


def test_idle_env_side_costs_no_cpu(probe: str) -> None:
    env = rlay.ClientEnv(launch=[sys.executable, probe, "4"])
    try:
        assert type(stream_of(env)) is ShmStream
        env.reset()
        env.step(0)
        pid = env.process.pid  # type: ignore[union-attr]
        t0, c0 = time.monotonic(), cpu_seconds(pid)
        time.sleep(3.0)
        share = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
        assert share < 0.05, f"the idle env side used {share:.1%} of a core"
        assert env.step(0)[0][0] == 2.0  # and it wakes up
    finally:
        env.close()


def test_batch_wait_over_a_closed_stream_returns_at_once() -> None:
    """A vector env that relaunched or abandoned a link may wait over its closed stream: the
    wait must not touch the released region (the recv then names the closed connection)."""
    import socket

    a, b = socket.socketpair()
    region, fd = shm_mod.Region.create(shm_mod.Layout.for_capacities(4096, 4096))
    os.close(fd)
    stream = ShmStream(SocketStream(a, "a peer"), region, Role.AGENT)
    stream.close()
    b.close()
    t0 = time.monotonic()
    assert shm_mod.wait_all([stream], 5.0) == []
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(ConnectionClosed):
        stream.recv(1.0)


# -- the Python env side against a raw §16 agent written from the spec (tests/sdk/shm_agent.py) --


@pytest.fixture
def raw_agent(tmp_path):  # type: ignore[no-untyped-def]
    """A Python env side (rlay.serve, CartPole) and a factory of raw §16 agents dialling it."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "sdk"))
    import shm_agent

    path = f"{tmp_path}/env.sock"
    server = rlay.serve(lambda: gym.make("CartPole-v1"), f"unix://{path}", block=False)
    agents: list = []

    def connect(**kwargs):  # type: ignore[no-untyped-def]
        agent = shm_agent.Agent(path, **kwargs)
        agents.append(agent)
        assert agent.active, agent.answer
        return agent

    try:
        yield connect, shm_agent
    finally:
        for agent in agents:
            agent.close()
        server.close()


@pytest.mark.parametrize(
    ("breakage", "words"),
    [({"length": 40}, "not the size its header says"), ({"seq": 5}, "sequence jumped from 1 to 5")],
    ids=["len-not-the-frame", "seq-jump"],
)
def test_a_python_env_side_ends_a_broken_channel_with_bad_header(raw_agent, breakage, words) -> None:  # type: ignore[no-untyped-def]
    """§16.4 read step 2: a len that is not the frame's own size (longer or shorter: the copy
    would hold leftovers, or a part) is a fatal BAD_HEADER, like a sequence jump."""
    connect, sa = raw_agent
    agent = connect(capacity=4096)
    assert agent.command(16, {"seed": 0, "options": None})[0] == 32  # RESET -> RESET_RESULT
    agent.send_raw(sa.frame(17, {"action": 1}), **breakage)
    kind, body = agent.recv()  # the fatal ERROR, in turn: through the region
    assert kind == 48 and body["code"] == ErrorCode.BAD_HEADER and body["fatal"] is True, body
    assert words in body["message"], body


def test_a_python_env_side_refuses_an_unannounced_frame_on_the_socket(raw_agent) -> None:  # type: ignore[no-untyped-def]
    """§16.5: after the switch only an announced large frame or a fatal ERROR comes on the socket;
    a RESET there is UNEXPECTED_MESSAGE (it was answered before)."""
    connect, sa = raw_agent
    agent = connect()
    agent.sock.sendall(b"\0\0" + sa.frame(16, {"seed": 0, "options": None}))  # wake bytes, a frame
    kind, body = agent.recv()
    assert kind == 48 and body["code"] == ErrorCode.UNEXPECTED_MESSAGE, body
    assert "only a fatal ERROR" in body["message"], body
