"""rlay.make_vec: a vector env over env programs rlay starts and ends itself, never a port."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import rlay
from rlay.launch import LaunchError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GAME = [sys.executable, os.path.join(ROOT, "examples", "game_loop.py")]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("server", [False, True], ids=["programs-listen", "programs-dial"])
def test_make_vec_over_launched_programs(server: bool) -> None:
    command = GAME if server else [*GAME, "--listen", "{address}"]
    env = rlay.make_vec(command, 3, server=server)
    try:
        assert env.num_envs == 3
        obs, _ = env.reset(seed=[1, 2, 3])
        assert obs.shape == (3, 3) and obs.dtype == np.float32
        pids = [p.pid for p in env.processes]
        assert all(alive(pid) for pid in pids)
        for _ in range(30):
            obs, reward, terminated, _, _ = env.step(np.array([1, 0, -1]))
        assert reward.shape == (3,) and terminated.dtype == np.bool_
        addresses = env.addresses if not server else [env.address]
        assert all(a.startswith("unix://") for a in addresses)  # no port anywhere
    finally:
        env.close()
    assert not any(alive(pid) for pid in pids)


def test_make_vec_names_a_program_that_fails_to_start() -> None:
    bad = [sys.executable, "-c", "import sys; sys.exit('cannot open the level file')"]
    with pytest.raises(rlay.EnvSideFailed) as info:
        rlay.make_vec(bad, 2)
    assert isinstance(info.value.cause, LaunchError)
    assert "cannot open the level file" in str(info.value) and "env side 0" in str(info.value)
    with pytest.raises(rlay.EnvSideFailed, match="exited before it connected"):
        rlay.make_vec(bad, 2, server=True)
