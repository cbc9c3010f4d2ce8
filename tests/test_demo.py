"""The README's main job: `make demo` runs examples/demo.py. Run it as a user would."""

import os
import subprocess
import sys

from conftest import require_tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_runs_the_c_cartpole_both_ways() -> None:
    require_tool("gcc")
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "demo.py"), "--steps", "3000"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "identical to gymnasium's CartPole-v1" in out.stdout
    assert out.stdout.count("3000 steps") == 2 and "steps/s" in out.stdout
    assert "the C program connected to tcp://127.0.0.1:" in out.stdout
