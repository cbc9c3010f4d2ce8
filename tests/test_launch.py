"""Starting env programs from Python: addresses, readiness, failures, and no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import rlay
from rlay.launch import LaunchError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GAME = [sys.executable, os.path.join(ROOT, "examples", "game_loop.py")]

LISTEN = """
import os, rlay
from rlay.testing import TrivialEnv
rlay.serve(TrivialEnv, os.environ["RLAY_ADDRESS"])
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_client_env_launches_a_listening_env_program() -> None:
    env = rlay.ClientEnv(launch=[*GAME, "--listen", "{address}"])
    try:
        assert env.address.startswith("unix://")  # a fresh socket path: no port to pick
        obs, _ = env.reset(seed=1)
        assert obs.shape == (3,)
        env.step(1)
        pid = env.process.pid if env.process else 0
    finally:
        env.close()
    assert not alive(pid)
    assert not os.path.exists(env.address[len("unix://") :])


def test_server_env_launches_a_dialling_env_program_via_rlay_address() -> None:
    env = rlay.ServerEnv(launch=GAME)  # the game reads RLAY_ADDRESS
    try:
        obs, _ = env.reset(seed=1)
        assert obs.shape == (3,)
        pid = env.process.pid if env.process else 0
        assert alive(pid)
    finally:
        env.close()
    assert not alive(pid)


def test_python_env_side_launched_with_env_var() -> None:
    env = rlay.ClientEnv(launch=[sys.executable, "-c", LISTEN])
    try:
        env.reset(seed=0)
        assert env.step(0)[1] == 1.0
    finally:
        env.close()


def test_program_that_exits_early_reports_exit_code_and_stderr() -> None:
    script = "import sys; print('no licence for the physics engine', file=sys.stderr); sys.exit(3)"
    with pytest.raises(LaunchError) as info:
        rlay.ClientEnv(launch=[sys.executable, "-c", script], connect_timeout=10)
    err = info.value
    assert err.returncode == 3 and "no licence for the physics engine" in str(err)
    assert "exit code 3" in str(err) and "exited before it listened" in str(err)
    with pytest.raises(LaunchError, match="exited before it connected"):
        rlay.ServerEnv(launch=[sys.executable, "-c", script], accept_timeout=10)


def test_program_killed_by_a_signal_is_named() -> None:
    script = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    with pytest.raises(LaunchError, match="killed by SIGSEGV"):
        rlay.ClientEnv(launch=[sys.executable, "-c", script], connect_timeout=10)


def test_program_that_never_gets_ready_times_out() -> None:
    with pytest.raises(LaunchError, match=r"not ready after 0.5 s") as info:
        rlay.ServerEnv(launch=[sys.executable, "-c", "import time; time.sleep(30)"], accept_timeout=0.5)
    assert info.value.returncode is None


def test_missing_program_is_a_launch_error() -> None:
    with pytest.raises(LaunchError, match="cannot start the env program"):
        rlay.ClientEnv(launch=["/nonexistent/game", "{address}"])


def test_env_program_dying_mid_session_says_how() -> None:
    env = rlay.ClientEnv(launch=[*GAME, "--listen", "{address}"])
    try:
        env.reset(seed=0)
        assert env.process is not None
        os.kill(env.process.pid, signal.SIGKILL)
        with pytest.raises(LaunchError, match="killed by SIGKILL"):
            env.step(0)
    finally:
        env.close()


KILLED_TRAINER = """
import sys, time, rlay
env = rlay.ClientEnv(launch=sys.argv[1:])
env.reset(seed=0)
print("PID", env.process.pid, flush=True)
time.sleep(60)
"""


def test_kill_9_of_python_leaves_no_orphan() -> None:
    """The env side exits by itself when the agent's connection closes."""
    trainer = subprocess.Popen(
        [sys.executable, "-c", KILLED_TRAINER, *GAME, "--listen", "{address}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = iter(trainer.stdout.readline, "") if trainer.stdout else iter(())
        game_pid = next(int(line.split()[1]) for line in lines if line.startswith("PID "))
        assert alive(game_pid)
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(10)
        deadline = time.monotonic() + 10
        while alive(game_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(game_pid), "the env program outlived its trainer"
    finally:
        trainer.kill()


def test_exception_in_python_ends_the_program() -> None:
    script = """
import sys, rlay
env = rlay.ClientEnv(launch=sys.argv[1:])
env.reset(seed=0)
print("PID", env.process.pid, flush=True)
raise RuntimeError("training crashed")
"""
    out = subprocess.run(
        [sys.executable, "-c", script, *GAME, "--listen", "{address}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "training crashed" in out.stderr
    pid = next(int(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("PID "))
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


STUCK_TRAINER = """
import sys, rlay
print("STARTING", flush=True)
rlay.ServerEnv(launch=sys.argv[1:], accept_timeout=60)  # the program never dials in
"""

NEVER_CONNECTS = "import os, time; print('PID', os.getpid(), flush=True); time.sleep(60)"


def test_kill_9_of_python_before_the_program_connected_leaves_no_orphan() -> None:
    """The window before a connection exists: the kernel's parent-death signal covers it."""
    trainer = subprocess.Popen(
        [sys.executable, "-c", STUCK_TRAINER, sys.executable, "-c", NEVER_CONNECTS],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = iter(trainer.stdout.readline, "") if trainer.stdout else iter(())
        pid = next(int(line.split()[1]) for line in lines if line.startswith("PID "))
        assert alive(pid)
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(10)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid), "the env program outlived its trainer"
    finally:
        trainer.kill()


def test_launching_from_a_thread_that_ends_keeps_the_program_alive() -> None:
    """The parent-death signal follows the forking thread: rlay forks from its own thread."""
    import threading

    box: list[rlay.ClientEnv] = []
    thread = threading.Thread(
        target=lambda: box.append(rlay.ClientEnv(launch=[*GAME, "--listen", "{address}"]))
    )
    thread.start()
    thread.join(30)
    env = box[0]
    try:
        time.sleep(0.3)
        obs, _ = env.reset(seed=0)
        assert obs.shape == (3,)
    finally:
        env.close()


def test_connects_launches_and_handshakes_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The standard logging module, logger "rlay": what happened when a session was set up (and
    nothing per step)."""
    import logging

    caplog.set_level(logging.INFO, logger="rlay")
    env = rlay.ClientEnv(launch=[sys.executable, "-c", LISTEN])
    env.reset(seed=0)
    setup = len(caplog.records)
    for _ in range(20):
        env.step(0)
    env.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "launched" in text and "connected to" in text, text
    assert len(caplog.records) == setup, "something was logged on the step path"


def test_server_env_launching_a_program_that_listens_says_so_at_once() -> None:
    """ServerEnv(launch=[a program that listens]): the program announces RLAY_LISTENING where a
    dial was expected; the error says so at once (not after accept_timeout) and which side should
    dial."""
    started = time.monotonic()
    with pytest.raises(rlay.LaunchError, match="expected it to dial") as info:
        rlay.ServerEnv(
            "tcp://127.0.0.1:0",
            launch=[*GAME, "--listen", "tcp://127.0.0.1:0"],
            accept_timeout=60,
        )
    assert time.monotonic() - started < 20, "waited for the accept timeout"
    assert "RLAY_LISTENING" in str(info.value)


def test_a_launched_program_exits_with_its_own_code_after_close() -> None:
    """§15: after an orderly CLOSE a launched program exits by itself (here after 0.2 s of
    tidying up, with code 0); close() gives it a moment before any signal, so its exit code
    means what the program said."""
    one_session = (
        "import sys, time\n"
        "from rlay.backends import EnvSession, run_session\n"
        "from rlay.testing import TrivialEnv\n"
        "env = TrivialEnv()\n"
        "run_session(EnvSession.listen(sys.argv[1], env.observation_space, env.action_space), env)\n"
        "time.sleep(0.2)\n"
    )
    env = rlay.ClientEnv(launch=[sys.executable, "-c", one_session, "{address}"])
    env.reset(seed=0)
    env.step(0)
    process = env.process
    assert process is not None
    env.close()
    assert process.popen.returncode == 0, process.popen.returncode
