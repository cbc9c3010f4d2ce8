"""Codec cost of one step result, in-process: rlay next to raw msgpack and pickle.

    python bench/codec.py [--repeat R] [--profile]

Two cases: (a) a CartPole-sized step (float32[4] observation, reward, two flags, empty info) and
(b) an Atari-sized one (uint8[84, 84, 3] observation). Each row is one encode plus one decode of
the whole step result, in µs: the best of R ``timeit`` runs of ~50 ms, interleaved across rows
so that machine noise hits every row alike (the median is shown beside it).

- **rlay, general codec**: the path of any message. Env side: ``SpaceCodec.to_wire``,
  ``StepResult``, ``Encoder.encode`` of its body, ``pack_header`` (the frame as buffers ready for
  a gather write). Agent side, from one received buffer: ``check_header``, ``decode``,
  ``from_body`` of the kind's message class, ``SpaceCodec.from_wire``.
- **rlay, step template**: what ``Connection`` does for ``STEP_RESULT`` when the observation
  space is one Box and ``info`` is empty (``rlay.protocol.fastpath``, chosen by
  ``rlay.spaces.fast_paths``): the same bytes, filled in and matched with ``struct``.
- **raw msgpack**: ``packb``/``unpackb`` of the plain map with the observation already as bytes:
  the floor for any msgpack protocol. The "+ array" row adds ``tobytes``/``frombuffer`` so that
  both ends hold an array, as rlay's ends do.
- **pickle 5**: ``dumps``/``loads`` of the same map with the array; "out-of-band" passes the
  array's buffer beside the pickle (``buffer_callback``), pickle's own zero-copy mode.

The gather write and the receive are the transport's job and are not timed for any row.
"""

from __future__ import annotations

import argparse
import cProfile
import pickle
import pstats
import statistics
import sys
import timeit
from collections.abc import Callable
from typing import Any, cast

import msgpack
import numpy as np
from gymnasium.spaces import Box, Discrete

from rlay.protocol.codec import Encoder, decode
from rlay.protocol.fastpath import StepResultTemplate
from rlay.protocol.framing import check_header, pack_header
from rlay.protocol.messages import MESSAGE_TYPES, StepResult
from rlay.protocol.wire import DEFAULT_MAX_FRAME_SIZE, HEADER_SIZE, Kind
from rlay.spaces import SpaceCodec, fast_paths

Row = tuple[str, float, float]  # name, best µs, median µs


def measure(fns: list[Callable[[], Any]], repeat: int) -> list[tuple[float, float]]:
    """(best, median) µs per call of each function.

    Each function is calibrated to runs of about 50 ms, then the runs are *interleaved* (one run
    of every function per round, ``repeat`` rounds), so that a busy moment on the machine hits
    all rows alike. The best run is the figure to compare; the median shows the noise.
    """
    timers = [timeit.Timer(fn) for fn in fns]
    numbers = []
    for timer in timers:
        number, seconds = timer.autorange()  # >= 0.2 s
        numbers.append(max(1, int(number * 0.05 / seconds)))
    runs: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for timer, number, out in zip(timers, numbers, runs, strict=True):
            out.append(timer.timeit(number) / number * 1e6)
    return [(min(r), statistics.median(r)) for r in runs]


def split_frame(view: memoryview) -> tuple[int, memoryview, memoryview]:
    """The receiver's framing step: check the header, slice data section and body (no copy)."""
    kind, data_len, body_len = check_header(view[:HEADER_SIZE], DEFAULT_MAX_FRAME_SIZE)
    mid = HEADER_SIZE + data_len
    return kind, view[HEADER_SIZE:mid], view[mid : mid + body_len]


class RlayStep:
    """One step result through rlay's real code paths, each split into its two halves."""

    def __init__(self, obs: np.ndarray) -> None:
        low, high = (0.0, 255.0) if obs.dtype == np.uint8 else (-np.inf, np.inf)
        space = Box(low, high, obs.shape, dtype=obs.dtype)
        self.obs = obs
        self.codec = SpaceCodec(space, "obs")
        self.encoder = Encoder()
        template = fast_paths(space, Discrete(2)).result
        if template is None:
            raise RuntimeError(f"no step template for {space}")
        self.template: StepResultTemplate = template
        frame = b"".join(map(bytes, self.encode()))
        if frame != b"".join(map(bytes, self.encode_template())):
            raise RuntimeError("the step template and the general encoder disagree")
        self.received = bytearray(frame)  # what a recv() into a fresh buffer holds
        self.view = memoryview(self.received)

    # -- general codec --
    def encode(self) -> list[Any]:
        """Env side: value -> message -> frame buffers (header, tensor bytes, body)."""
        message = StepResult(self.codec.to_wire(self.obs), 1.0, False, False, {})
        body, chunks, data_len = self.encoder.encode(message.to_body())
        return [pack_header(Kind.STEP_RESULT, data_len, len(body)), *chunks, body]

    def decode(self) -> tuple[Any, ...]:
        """Agent side: one received frame -> Gymnasium's step tuple."""
        kind, data, body = split_frame(self.view)
        msg = cast(StepResult, MESSAGE_TYPES[kind].from_body(decode(body, data)))
        return self.codec.from_wire(msg.obs), msg.reward, msg.terminated, msg.truncated, msg.info

    def round_trip(self) -> Any:
        self.encode()
        return self.decode()

    # -- step template --
    def encode_template(self) -> list[Any]:
        message = StepResult(self.codec.to_wire(self.obs), 1.0, False, False, {})
        buffers = self.template.encode(message)
        if buffers is None:
            raise RuntimeError("the step template refused the message")
        return buffers

    def decode_template(self) -> tuple[Any, ...]:
        _kind, data, body = split_frame(self.view)
        msg = self.template.decode(data, body)
        if msg is None:
            raise RuntimeError("the step template refused the frame")
        return self.codec.from_wire(msg.obs), msg.reward, msg.terminated, msg.truncated, msg.info

    def round_trip_template(self) -> Any:
        self.encode_template()
        return self.decode_template()


def plain(obs: Any) -> dict[str, Any]:
    return {"obs": obs, "reward": 1.0, "terminated": False, "truncated": False, "info": {}}


def rows_for(obs: np.ndarray, repeat: int) -> tuple[list[Row], RlayStep]:
    step = RlayStep(obs)
    raw = plain(obs.tobytes())
    dtype, shape = obs.dtype, obs.shape
    if msgpack.unpackb(msgpack.packb(raw))["obs"] != obs.tobytes():
        raise RuntimeError("msgpack baseline does not round-trip")

    def msgpack_raw() -> Any:
        return msgpack.unpackb(msgpack.packb(raw))

    def msgpack_array() -> Any:
        out = msgpack.unpackb(msgpack.packb(plain(obs.tobytes())))
        out["obs"] = np.frombuffer(out["obs"], dtype).reshape(shape)
        return out

    def pickle_inband() -> Any:
        return pickle.loads(pickle.dumps(plain(obs), protocol=5))

    def pickle_oob() -> Any:
        buffers: list[pickle.PickleBuffer] = []
        data = pickle.dumps(plain(obs), protocol=5, buffer_callback=buffers.append)
        return pickle.loads(data, buffers=buffers)

    named: list[tuple[str, Callable[[], Any]]] = [
        ("raw msgpack packb+unpackb (obs as bytes)", msgpack_raw),
        ("msgpack + tobytes/frombuffer (obs as array)", msgpack_array),
        ("pickle protocol 5, in-band", pickle_inband),
        ("pickle protocol 5, out-of-band buffers", pickle_oob),
        ("rlay general codec: encode + decode", step.round_trip),
        ("  env side: to_wire, StepResult, encode, header", step.encode),
        ("  agent side: header, decode, from_body, from_wire", step.decode),
        ("rlay step template (Connection's fast path)", step.round_trip_template),
        ("  env side: to_wire, StepResult, template encode", step.encode_template),
        ("  agent side: header, template decode, from_wire", step.decode_template),
    ]
    timings = measure([fn for _, fn in named], repeat)
    return [(name, *t) for (name, _), t in zip(named, timings, strict=True)], step


def print_table(title: str, rows: list[Row]) -> None:
    base = rows[0][1]
    print(f"\n{title}")
    print(f"  {'':52} {'best µs':>8} {'median':>8} {'best vs raw msgpack':>20}")
    for name, best, median in rows:
        print(f"  {name:52} {best:8.2f} {median:8.2f} {best / base:19.2f}×")


def row(rows: list[Row], name: str) -> float:
    return next(best for n, best, _ in rows if n.strip() == name)


def obs_only_decode_us(obs: np.ndarray, repeat: int) -> tuple[float, bool]:
    """µs to decode a body holding only the observation tensor and pass it through from_wire."""
    codec = SpaceCodec(Box(0, 255, obs.shape, obs.dtype), "obs")
    body, chunks, _ = Encoder().encode(obs)
    received = bytearray(b"".join(map(bytes, chunks)))
    data = memoryview(received)

    def run() -> Any:
        return codec.from_wire(decode(body, data))

    decoded = run()
    best, _ = measure([run], repeat)[0]
    return best, bool(np.shares_memory(decoded, np.frombuffer(received, np.uint8)))


def base_chain(arr: Any) -> str:
    names = []
    while arr is not None:
        names.append(type(arr).__name__)
        arr = getattr(arr, "base", None) if isinstance(arr, np.ndarray) else getattr(arr, "obj", None)
    return " -> ".join(names)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="interleaved runs per row (~50 ms each)")
    parser.add_argument("--profile", action="store_true", help="cProfile the general round trip of (a)")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, msgpack {msgpack.version}")

    small = np.array([0.01, -0.02, 0.03, 0.04], dtype=np.float32)
    rows_a, step_a = rows_for(small, args.repeat)
    print_table("(a) step result, obs float32[4], reward, two flags, empty info", rows_a)
    for label, name in (
        ("general codec", "rlay general codec: encode + decode"),
        ("step template", "rlay step template (Connection's fast path)"),
    ):
        ratio = row(rows_a, name) / rows_a[0][1]
        verdict = "met" if ratio <= 1.5 else "MISSED"
        print(f"  target (a): {label} within 1.5× of raw msgpack -> {ratio:.2f}×, {verdict}")

    image = np.random.default_rng(0).integers(0, 256, (84, 84, 3), dtype=np.uint8)
    rows_b, step_b = rows_for(image, args.repeat)
    print_table("(b) step result, obs uint8[84, 84, 3], reward, two flags, empty info", rows_b)
    received = np.frombuffer(step_b.received, np.uint8)
    for name, decoded in (
        ("general codec", step_b.decode()[0]),
        ("step template", step_b.decode_template()[0]),
    ):
        if not np.array_equal(decoded, image):
            raise RuntimeError(f"{name}: decoded observation differs")
        shares = bool(np.shares_memory(decoded, received))
        print(
            f"  {name}: decoded obs shares memory with the received buffer: {shares} "
            f"(base chain {base_chain(decoded)}, writeable={decoded.flags.writeable})"
        )
    only_us, only_shares = obs_only_decode_us(image, args.repeat)
    print(f"  decode of the obs tensor alone (decode + from_wire): {only_us:.2f} µs, no copy: {only_shares}")
    for name in (
        "agent side: header, decode, from_body, from_wire",
        "agent side: header, template decode, from_wire",
    ):
        us = row(rows_b, name)
        verdict = "met" if only_shares and us < 5 else "MISSED"
        print(f"  target (b): no copy, decode under 5 µs ({name}) -> {us:.2f} µs, {verdict}")

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(200_000):
            step_a.round_trip()
        profiler.disable()
        print("\ncProfile of 200 000 general-codec round trips of case (a), by own time:")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(16)
    return 0


if __name__ == "__main__":
    sys.exit(main())
