"""Progress of long work (``rlay bench``, ``rlay check``, the training examples).

``tqdm`` draws it when installed (``pip install 'rlay-gym[progress]'``: a well-kept bar with rate and
time left, resized with the terminal); without it a plain line is rewritten in place, at most 5
times a second. Progress goes to stderr and only to a terminal: in a pipe, a log or CI nothing is
drawn unless asked (``show=True``, the CLI's ``--progress``), and then without tqdm it is a line
every 2 s. Results are printed by the caller on stdout, never mixed with the bar.

    with progress(10_000, "stepping") as bar:
        for i in range(10_000):
            ...
            bar.update()
        bar.write("a line above the bar")   # instead of print() while the bar is drawn
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import IO, Any

__all__ = ["Progress", "progress"]


class Progress:
    """The bar's interface; this base draws nothing (progress not shown)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def write(self, line: str) -> None:
        print(line, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Tqdm(Progress):
    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def set_postfix_str(self, text: str) -> None:
        self._bar.set_postfix_str(text, refresh=False)

    def write(self, line: str) -> None:
        self._bar.write(line, file=sys.stdout)

    def close(self) -> None:
        self._bar.close()


class _Plain(Progress):
    """Without tqdm: ``desc: done/total unit, rate/s``, rewritten in place on a terminal."""

    def __init__(self, total: int | None, desc: str, unit: str, file: IO[str], tty: bool) -> None:
        self.total, self.desc, self.unit, self.file, self.tty = total, desc, unit, file, tty
        self.done, self.postfix = 0, ""
        self.started = self.last = time.perf_counter()
        self.every = 0.2 if tty else 2.0
        self.drawn = False

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self._draw(now)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def _line(self, now: float) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        rate = self.done / max(now - self.started, 1e-9)
        tail = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {self.done}{of} {self.unit}s, {rate:,.0f} {self.unit}s/s{tail}"

    def _draw(self, now: float) -> None:
        if self.tty:
            self.file.write("\r\x1b[K" + self._line(now))
        else:
            self.file.write(self._line(now) + "\n")
        self.file.flush()
        self.drawn = True

    def write(self, line: str) -> None:
        if self.tty and self.drawn:
            self.file.write("\r\x1b[K")
            self.file.flush()
        print(line, flush=True)
        if self.tty and self.drawn:
            self._draw(time.perf_counter())

    def close(self) -> None:
        if self.tty and self.drawn:
            self.file.write("\r\x1b[K")
            self.file.flush()
            self.drawn = False


def progress(
    total: int | None,
    desc: str,
    *,
    unit: str = "step",
    show: bool | None = None,
    file: IO[str] | None = None,
) -> Progress:
    """A progress bar for ``total`` units of work (None: unknown), on ``file`` (stderr).

    ``show=None`` draws only when ``file`` is a terminal; True always; False never."""
    out = sys.stderr if file is None else file
    tty = bool(getattr(out, "isatty", lambda: False)())
    if not (tty if show is None else show):
        return Progress()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Plain(total, desc, unit, out, tty)
    # mininterval: a bar redrawn more often than 5 times a second costs a hot loop real time;
    # in a log (asked for with show=True), one line every 2 s is plenty.
    every = 0.2 if tty else 2.0
    bar = tqdm(
        total=total, desc=desc, unit=unit, file=out, mininterval=every, leave=False, dynamic_ncols=True
    )
    return _Tqdm(bar)
