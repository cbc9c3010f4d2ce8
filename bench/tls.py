"""What TLS costs a step: CartPole over ``tcp://`` and ``tls://`` on loopback (spec §17.1).

    python bench/tls.py [--steps N] [--rounds R]

The env side is ``rlay.serve`` in this process's thread (the same for both rows); a throwaway CA
and certificate are made with the ``openssl`` command. Rows are measured in interleaved rounds
(a noisy moment hits both); the best round is shown, and the connect time (TCP + TLS + rlay
handshakes) of that round.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import gymnasium as gym

import rlay

EXT = (
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
    "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
)


def certificates(out: Path) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=out, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=bench ca")
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (out / "ext").write_text(EXT)
    run(
        "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "srv.pem", "-days", "1", "-extfile", "ext",
    )  # fmt: skip


def one_round(address: str, steps: int) -> tuple[float, float]:
    server = rlay.serve(lambda: gym.make("CartPole-v1"), address, block=False)
    try:
        t = time.perf_counter()
        env = rlay.ClientEnv(server.address)
        connect = time.perf_counter() - t
        env.reset(seed=0)
        t = time.perf_counter()
        for i in range(steps):
            _, _, terminated, truncated, _ = env.step(i % 2)
            if terminated or truncated:
                env.reset()
        per_step = (time.perf_counter() - t) / steps
        env.close()
        return per_step, connect
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        certificates(Path(tmp))
        rows = {
            "tcp://": "tcp://127.0.0.1:0",
            "tls://": f"tls://127.0.0.1:0?cert={tmp}/srv.pem&key={tmp}/srv.key&ca={tmp}/ca.pem",
        }
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.rounds):
            for name, address in rows.items():
                result = one_round(address, args.steps)
                if name not in best or result[0] < best[name][0]:
                    best[name] = result
    print(f"{'transport':<10} {'steps/s':>9} {'us/step':>8} {'connect ms':>11}")
    for name, (per_step, connect) in best.items():
        print(f"{name:<10} {1 / per_step:>9.0f} {per_step * 1e6:>8.1f} {connect * 1e3:>11.1f}")


if __name__ == "__main__":
    main()
