"""Side channels (spec §19): the cost of get_attr / set_attr next to a step, against the C CartPole.

    python bench/attributes.py [--calls N]

Each is one CALL round trip (rlay.get / rlay.set, checked on both sides) to a launched C program
over a unix socket; a step is the same round trip on the fast path. Settings change between
episodes, not per step, so the point is that they cost about one step, not that they are free.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

import rlay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    with rlay.ClientEnv(launch=[os.path.join(ROOT, "sdk", "c", "bin", "cartpole")]) as env:
        print(f"attributes offered: {', '.join(env.attributes)}")
        rows: list[tuple[str, Callable[[], object]]] = [
            ("get_attr('gravity')", lambda: env.get_attr("gravity")),
            ("set_attr('gravity', 9.8)", lambda: env.set_attr("gravity", 9.8)),
            ("step(0)", lambda: env.step(0)),
        ]
        for name, call in rows:
            env.reset(seed=0)
            times = np.empty(args.calls)
            for i in range(args.calls):
                t0 = time.perf_counter()
                call()
                times[i] = time.perf_counter() - t0
                if i % 200 == 199:
                    env.reset()
            p50, p90 = np.percentile(times, [50, 90]) * 1e6
            print(f"{name:26s} p50 {p50:7.1f} µs   p90 {p90:7.1f} µs   ({args.calls} calls)")


if __name__ == "__main__":
    main()
