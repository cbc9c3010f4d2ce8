"""A longer fuzz of the Python receiving side (``make fuzz``); tests/test_fuzz.py runs a short one.

    python fuzz/fuzz_protocol.py --seconds 300            # atheris if installed, else random
    python fuzz/fuzz_protocol.py --seconds 60 --engine random --seed 7

The targets are those of tests/test_fuzz.py: the stand-alone decoder, a Connection in every role
and state, ``codec.decode``, and the step-loop templates checked against the general path. The
only exception allowed is ``rlay.errors.ProtocolError``; any other exception, an allocation out
of proportion to the input, or a template that disagrees with the general path is a crash.

Engines:
- ``atheris`` (coverage-guided libFuzzer over the instrumented ``rlay`` package;
  ``pip install atheris``): seeds its corpus with the golden vectors' frames. A crash is written
  to ``--artifacts`` (default: a temporary directory) and the script exits non-zero.
- ``random``: mutates the golden vectors' frames (tests/test_fuzz.py ``mutate``) with a seeded
  PRNG until the time is up. On a crash it prints the input as hex and exits non-zero.

Exit status 0 means no crash; the last line says how many inputs ran.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import traceback
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # test_fuzz (the targets) and conformance (helpers)


def _import_targets(instrument: bool) -> Any:
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["rlay"]):
            import test_fuzz
    else:
        import test_fuzz
    return test_fuzz


def run_one(tf: Any, data: bytes, choice: int, chunk: int) -> str:
    """Run one input through one target chosen by ``choice``; return the outcome's label."""
    receivers = tf.RECEIVERS
    n_fast = len(tf.FAST_SHAPES) * 2 if tf.FastPaths is not None else 0
    slot = choice % (3 + len(receivers) + n_fast)
    if slot == 0:
        kind, what = tf.bounded(lambda: tf.feed_standalone(data, chunk), len(data))
        return f"standalone:{'ok' if kind == 'ok' else what}"
    if slot == 1:
        cut = chunk % (len(data) + 1)
        kind, what = tf.bounded(lambda: tf.decode_raw(data[cut:], data[:cut]), len(data))
        return f"decode:{'ok' if kind == 'ok' else what}"
    if slot == 2:
        tf.bounded(lambda: tf.feed_standalone(data, 1), len(data))
        return "bytewise"
    slot -= 3
    if slot < len(receivers):
        role, state = receivers[slot]
        conn = tf.connection_in(role, state)
        kind, what = tf.bounded(lambda: tf.feed_connection(conn, data, chunk), len(data))
        return f"{role}/{state}:{'ok' if kind == 'ok' else what}"
    slot -= len(receivers)
    shapes = tf.FAST_SHAPES[slot // 2]
    role = ("env", "agent")[slot % 2]
    tf.fast_differential(data, shapes, role, chunk)  # measures its own allocations
    return f"fast/{role}"


def seeds(tf: Any) -> list[bytes]:
    return list(tf.SEEDS) + list(tf.FAST_SEEDS)


def engine_random(tf: Any, seconds: float, seed: int) -> int:
    rng = random.Random(seed)
    pool = seeds(tf)
    outcomes: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        for _ in range(200):
            base = rng.choice(pool)
            data = (
                tf.mutate(base, rng, rng.randint(0, 5))
                if rng.random() < 0.95
                else rng.randbytes(rng.randrange(300))
            )
            choice = rng.randrange(1 << 16)
            chunk = rng.choice((0, 0, 1, 2, 5, 12, 64, 4096))
            try:
                outcomes[run_one(tf, data, choice, chunk)] += 1
            except Exception:
                print("CRASH (engine random)", file=sys.stderr)
                print(f"  choice={choice} chunk={chunk} input={data.hex()}", file=sys.stderr)
                traceback.print_exc()
                return 1
            runs += 1
    codes: Counter[str] = Counter()
    for label, count in outcomes.items():
        codes[label.split(":")[-1]] += count
    print(f"outcomes by error code: {dict(sorted(codes.items()))}")
    print(f"distinct (target, outcome) pairs: {len(outcomes)}")
    print(f"fuzz_protocol: {runs} inputs in {seconds:g} s, no crash (engine random, seed {seed})")
    return 0


def engine_atheris(tf: Any, seconds: float, artifacts: Path, seed: int) -> int:
    import atheris

    corpus = Path(tempfile.mkdtemp(prefix="rlay-fuzz-corpus-"))
    for i, frame in enumerate(seeds(tf)):
        # The first 3 bytes choose the target and the chunk size (see test_one_input).
        for target in (0, 3 + tf.RECEIVERS.index(("env", "idle")), 3 + tf.RECEIVERS.index(("agent", "step"))):
            (corpus / f"seed-{i}-{target}").write_bytes(bytes([target >> 8, target & 0xFF, 0]) + frame)

    def test_one_input(raw: bytes) -> None:
        if len(raw) < 3:
            return
        run_one(tf, raw[3:], (raw[0] << 8) | raw[1], (0, 1, 2, 5, 12, 64, 4096, 0)[raw[2] % 8])

    artifacts.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.argv[0],
        str(corpus),
        f"-max_total_time={int(seconds)}",
        f"-artifact_prefix={artifacts}/",
        f"-seed={seed}",
        "-max_len=65536",
        "-rss_limit_mb=4096",
        "-timeout=10",
        "-print_final_stats=1",
    ]
    print(f"fuzz_protocol: engine atheris for {seconds:g} s, crashes go to {artifacts}/", flush=True)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()  # libFuzzer exits the process: 0 at the time limit, non-zero on a crash
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--artifacts", type=Path, default=Path(tempfile.gettempdir()) / "rlay-fuzz-crashes")
    args = parser.parse_args(argv)
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "random"
            print("atheris is not installed (pip install atheris): using the random engine", file=sys.stderr)
    tf = _import_targets(instrument=engine == "atheris")
    tracemalloc.start()  # once: bounded() then only resets the peak per input
    if engine == "atheris":
        return engine_atheris(tf, args.seconds, args.artifacts, args.seed)
    return engine_random(tf, args.seconds, args.seed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
