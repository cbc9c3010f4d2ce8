"""The Godot addon against the shared SDK harness (tests/sdk/harness.py, sdk/README.md): its two
entry points sdk/godot/bin/conformance and sdk/godot/bin/cartpole, GDScript run by the real
headless engine (godot3-server). tcp only: Godot 3 has no unix sockets."""

import os
import signal
import subprocess
import sys

import pytest
from harness import KILLED_TRAINER, SdkContract, wait_gone


class TestContract(SdkContract):
    LANG = "godot"
    TOOLS = ("godot3-server",)
    UNIX = False
    START_TIMEOUT = 60.0

    @pytest.mark.parametrize("direction", ["listen", "dial"])
    def test_rlay_check_passes(self, bins: tuple[str, str], direction: str) -> None:
        """The harness's check, with a tcp address for the dial direction too (the harness lets
        `rlay check --server` pick a unix socket, which Godot 3 cannot dial)."""
        if direction == "listen":
            how = ["tcp://127.0.0.1:0", "--", bins[1], "--listen", "{address}"]
        else:
            how = ["--server", "tcp://127.0.0.1:0", "--", bins[1], "--connect", "{address}"]
        cmd = [sys.executable, "-m", "rlay.cli", "check", *how]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0 and " 0 failed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]

    def test_the_program_exits_when_the_agent_is_killed(self, bins: tuple[str, str]) -> None:
        """The harness's check over tcp (its trainer gives ClientEnv a unix socket): kill -9 of
        the Python agent, and each engine (one listening, one dialled in) exits by itself."""
        trainer = subprocess.Popen(
            [sys.executable, "-c", KILLED_TRAINER_TCP, bins[1]], stdout=subprocess.PIPE, text=True
        )
        try:
            assert trainer.stdout is not None
            line = next((ln for ln in trainer.stdout if ln.startswith("PIDS")), "")
            assert line, f"the trainer did not start its envs (exit {trainer.poll()})"
            pids = [int(w) for w in line.split()[1:]]
            os.kill(trainer.pid, signal.SIGKILL)
            trainer.wait(10)
        finally:
            trainer.kill()
            trainer.wait()
        left = wait_gone(pids, 15)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"godot engines outlived the killed agent: {left}"


KILLED_TRAINER_TCP = KILLED_TRAINER.replace(
    "rlay.ClientEnv(launch=", 'rlay.ClientEnv("tcp://127.0.0.1:0", launch='
).replace("rlay.ServerEnv(launch=", 'rlay.ServerEnv("tcp://127.0.0.1:0", launch=')
assert KILLED_TRAINER_TCP.count("tcp://") == 2
