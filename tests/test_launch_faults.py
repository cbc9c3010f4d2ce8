"""The launcher under faults (issue 16, issue 17 items 1 and 5): kill -9 of the agent ends the
launched program's whole process tree and leaves no directory behind for good; launching works
in AsyncVectorEnv workers under fork, forkserver and spawn, and they end when the run is killed;
LaunchError is a ConnectionClosed."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time

import gymnasium as gym
import numpy as np
import pytest

import rlay
from rlay.launch import LaunchError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GAME = [sys.executable, os.path.join(ROOT, "examples", "game_loop.py")]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and setpriv")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except FileNotFoundError:
                continue
            found += kids
            todo += kids
    return found


def wait_gone(pids: list[int], seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


# A program that starts a child of its own, says its pid, and never connects.
PARENT_OF_A_CHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print("CHILD", child.pid, file=sys.stderr, flush=True)
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(120)
"""

TRAINER = """
import sys, rlay
print("PID", flush=True)
rlay.ClientEnv(launch=sys.argv[1:], connect_timeout=120)
"""


@linux_only
def test_kill_9_of_the_agent_ends_the_whole_process_tree(tmp_path: object) -> None:
    note = os.path.join(str(tmp_path), "child.pid")
    trainer = subprocess.Popen(
        [sys.executable, "-c", TRAINER, sys.executable, "-c", PARENT_OF_A_CHILD, note],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert trainer.stdout is not None and trainer.stdout.readline().startswith("PID")
        deadline = time.monotonic() + 20
        while not (os.path.exists(note) and open(note).read()):
            assert time.monotonic() < deadline, "the program never started its child"
            time.sleep(0.05)
        grandchild = int(open(note).read())
        tree = descendants(trainer.pid)
        assert grandchild in tree and len(tree) >= 3  # wrapper, program, its child
        trainer.kill()
        trainer.wait(10)
        assert wait_gone(tree) == [], "left running after kill -9 of the agent"
    finally:
        if trainer.poll() is None:
            trainer.kill()


KILLED_WITH_A_SOCKET_DIR = """
import sys, time
from rlay.launch import SocketDir
d = SocketDir()
print(d.path, flush=True)
time.sleep(120)
"""


def test_a_socket_dir_left_by_a_killed_process_is_removed_by_the_next() -> None:
    victim = subprocess.Popen(
        [sys.executable, "-c", KILLED_WITH_A_SOCKET_DIR], stdout=subprocess.PIPE, text=True
    )
    assert victim.stdout is not None
    path = victim.stdout.readline().strip()
    victim.kill()
    victim.wait(10)
    assert os.path.isdir(path) and os.path.basename(path).startswith(f"rlay-{victim.pid}-")
    open(os.path.join(path, "env0.sock"), "w").close()  # a left-over socket inside
    subprocess.run(
        [sys.executable, "-c", "from rlay.launch import SocketDir; SocketDir().close()"],
        check=True,
        timeout=60,
    )
    assert not os.path.exists(path)


def test_the_sweep_leaves_a_live_process_dir_alone() -> None:
    mine = rlay.launch.SocketDir()
    try:
        rlay.launch._sweep_stale(tempfile.gettempdir())
        assert os.path.isdir(mine.path)
    finally:
        mine.close()


def _launched() -> gym.Env:
    return rlay.ClientEnv(launch=[*GAME, "--listen", "{address}"], connect_timeout=30)


@pytest.mark.parametrize("context", ["fork", "forkserver", "spawn"])
def test_async_vector_env_of_launched_envs(context: str) -> None:
    # The parent launches first (the spawner thread exists), as AsyncVectorEnv's dummy env does.
    # Before the fix a forked worker waited forever: the alarm bounds a regression.
    def too_long(*_: object) -> None:
        raise TimeoutError(f"AsyncVectorEnv ({context}) of launched envs hung")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(60)
    try:
        _run_async(context)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _run_async(context: str) -> None:
    env = gym.vector.AsyncVectorEnv([_launched, _launched], context=context)
    try:
        obs, _ = env.reset(seed=[1, 2])
        assert obs.shape == (2, 3)
        for _ in range(5):
            obs, reward, *_ = env.step(np.array([1, 0]))
        assert reward.shape == (2,)
    finally:
        env.close(terminate=False)


KILLED_ASYNC_RUN = f"""
import sys, time
import gymnasium as gym, rlay
GAME = {GAME!r}
def make():
    return rlay.ClientEnv(launch=[*GAME, "--listen", "{{address}}"], connect_timeout=30)
if __name__ == "__main__":
    env = gym.vector.AsyncVectorEnv([make, make], context="fork")
    env.reset(seed=0)
    print("READY", flush=True)
    time.sleep(120)
"""


@linux_only
def test_killing_an_async_run_ends_its_workers_and_programs() -> None:
    run = subprocess.Popen([sys.executable, "-c", KILLED_ASYNC_RUN], stdout=subprocess.PIPE, text=True)
    try:
        assert run.stdout is not None
        assert run.stdout.readline().strip() == "READY"
        tree = descendants(run.pid)
        assert len(tree) >= 4  # two workers, each with a launched program
        run.kill()
        run.wait(10)
        assert wait_gone(tree, 15) == []
    finally:
        if run.poll() is None:
            run.kill()


def test_launch_error_is_a_connection_closed_and_pickles_whole() -> None:
    script = "import sys; print('no level file', file=sys.stderr); sys.exit(4)"
    with pytest.raises(rlay.ConnectionClosed) as info:
        rlay.ClientEnv(launch=[sys.executable, "-c", script], connect_timeout=10)
    err = info.value
    assert isinstance(err, LaunchError) and err.returncode == 4
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) and copy.returncode == 4 and "no level file" in copy.stderr


@linux_only
def test_a_signal_kill_is_reported_through_the_wrapper() -> None:
    env = rlay.ClientEnv(launch=[*GAME, "--listen", "{address}"])
    try:
        env.reset(seed=0)
        assert env.process is not None
        os.kill(env.process.pid, signal.SIGTERM)  # the program itself, not the wrapper
        with pytest.raises(LaunchError, match="killed by SIGTERM"):
            env.step(0)
    finally:
        env.close()


def test_vector_env_side_failed_names_the_exit_signal() -> None:
    env = rlay.make_vec([*GAME, "--listen", "{address}"], 2)
    try:
        env.reset(seed=[1, 2])
        os.kill(env.processes[1].pid, signal.SIGKILL)
        with pytest.raises(rlay.EnvSideFailed) as info:
            for _ in range(20):
                env.step(np.array([0, 0]))
        assert "killed by SIGKILL" in str(info.value) and "env side 1" in str(info.value)
        assert isinstance(info.value.cause, LaunchError) and info.value.cause.returncode == -signal.SIGKILL
    finally:
        env.close()


def test_after_a_timeout_later_calls_fail_at_once() -> None:
    stall = "import os, rlay, time\nfrom rlay.testing import TrivialEnv\n"
    stall += "class Slow(TrivialEnv):\n    def step(self, a):\n        time.sleep(30)\n"
    stall += "rlay.serve(Slow, os.environ['RLAY_ADDRESS'])\n"
    env = rlay.ClientEnv(launch=[sys.executable, "-c", stall], timeout=0.5)
    try:
        env.reset(seed=0)
        with pytest.raises(rlay.Timeout):
            env.step(0)
        for _ in range(3):
            t = time.monotonic()
            with pytest.raises(rlay.ConnectionClosed):
                env.step(0)
            assert time.monotonic() - t < 0.3
    finally:
        env.close()


STUBBORN_CHILD = """
import os, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
open(sys.argv[1], "w").write(str(child.pid))
import rlay
from rlay.testing import TrivialEnv
rlay.serve(TrivialEnv, os.environ["RLAY_ADDRESS"])
"""


def test_close_ends_a_child_that_ignores_sigterm(tmp_path: object) -> None:
    note = os.path.join(str(tmp_path), "child.pid")
    env = rlay.ClientEnv(launch=[sys.executable, "-c", STUBBORN_CHILD, note], connect_timeout=30)
    try:
        env.reset(seed=0)
        child = int(open(note).read())
        assert alive(child)
    finally:
        env.close()
    assert wait_gone([child], 5) == []


@linux_only
def test_a_launched_program_keeps_default_signal_handling() -> None:
    """The wrapper starts it in the background, where sh would ignore SIGINT and SIGQUIT."""
    script = (
        "import os, signal, rlay\nfrom rlay.testing import TrivialEnv\n"
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        "assert signal.getsignal(signal.SIGQUIT) is signal.SIG_DFL\n"
        "rlay.serve(TrivialEnv, os.environ['RLAY_ADDRESS'])\n"
    )
    env = rlay.ClientEnv(launch=[sys.executable, "-c", script], connect_timeout=30)
    try:
        env.reset(seed=0)
    finally:
        env.close()
