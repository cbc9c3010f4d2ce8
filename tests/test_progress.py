"""Progress of long work (rlay.progress): drawn by tqdm when installed, a plain line otherwise,
and never into a pipe or a log unless asked (``--progress``)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from typing import Any

import pytest

from rlay.progress import Progress, progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GAME = [sys.executable, os.path.join(ROOT, "examples", "game_loop.py")]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drive(bar: Progress, n: int = 50) -> None:
    with bar:
        bar.set_postfix_str("almost")
        for _ in range(n):
            bar.update()
        bar.write("a line above the bar")


def test_nothing_is_drawn_into_a_pipe_unless_asked(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    bar = progress(50, "work", file=out)
    assert type(bar) is Progress
    drive(bar)
    assert out.getvalue() == ""
    assert capsys.readouterr().out == "a line above the bar\n"  # writes still reach stdout


def test_tqdm_draws_when_installed(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    out = Terminal()
    bar = progress(50, "work", file=out)
    assert type(bar).__name__ == "_Tqdm"
    drive(bar)
    assert "work:" in out.getvalue() and "/50 " in out.getvalue()  # drawn, then cleared (leave=False)
    assert "a line above the bar" in capsys.readouterr().out


def test_a_plain_line_without_tqdm(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    out = io.StringIO()
    bar: Any = progress(50, "work", file=out, show=True)  # asked for, into a log
    assert type(bar).__name__ == "_Plain"
    bar.every = 0.0  # draw at every update
    drive(bar)
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("work: 50/50 steps,") and lines[-1].endswith(", almost"), lines[-3:]
    assert "\r" not in out.getvalue()  # a log gets whole lines
    assert capsys.readouterr().out == "a line above the bar\n"


def test_the_cli_draws_progress_only_when_asked() -> None:
    cmd = [sys.executable, "-m", "rlay.cli", "bench", "--steps", "500"]
    plain = subprocess.run(
        [*cmd, "--", *GAME, "--listen", "{address}"], capture_output=True, text=True, timeout=120
    )
    assert plain.returncode == 0, plain.stderr
    assert "rlay bench" not in plain.stderr and "steps/s" in plain.stdout
    asked = subprocess.run(
        [*cmd, "--progress", "--", *GAME, "--listen", "{address}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert asked.returncode == 0, asked.stderr
    assert "rlay bench" in asked.stderr and "steps/s" in asked.stdout
