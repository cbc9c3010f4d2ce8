"""Writes a seed corpus for fuzz_decode.c from the golden vectors (spec/vectors/*.json).

Each seed is one mode byte (role and state, as fuzz_decode.c reads it) and a vector's frame.
Usage: python make_seeds.py OUT_DIR
"""

import json
import pathlib
import sys

STATES = ["hello", "describe", "idle", "reset", "step", "render", "call", "close", "closed"]


def main(out: str) -> int:
    root = pathlib.Path(__file__).resolve().parents[3]
    dest = pathlib.Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted((root / "spec" / "vectors").glob("*.json")):
        for i, vec in enumerate(json.loads(path.read_text())["vectors"]):
            frame = vec.get("frame")
            if not frame or len(frame) > 200_000:
                continue
            role = 1 if vec.get("role") == "agent" else 0
            state = vec.get("state", "-")
            mode = 0 if state == "-" else ((STATES.index(state) + 1) << 1) | role
            (dest / f"{path.stem}-{i}").write_bytes(bytes([mode]) + bytes.fromhex(frame))
            count += 1
    print(f"{count} seeds in {dest}")
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
