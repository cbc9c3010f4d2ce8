"""A Python env side for launch tests: Gymnasium's CartPole-v1 served over one session.

    python tests/py_cartpole.py [--num-envs N] [--autoreset next-step|same-step|disabled]
                                [--crash-after STEPS]

It follows the launcher's variables (spec §15): ``RLAY_MODE=listen`` (the default) listens at
``RLAY_ADDRESS`` and prints ``RLAY_LISTENING <address>``; ``RLAY_MODE=dial`` dials it. It serves
one session and exits (0 after an orderly close). With ``--num-envs N`` it hosts a batch of N
sub-envs (a ``SyncVectorEnv``, §10). ``--crash-after STEPS`` makes it a program that crashes:
at that STEP command it writes a line on stderr and exits with code 3, without replying.
"""

from __future__ import annotations

import argparse
import os
import sys

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from rlay.backends.server import _session_for, run_session
from rlay.backends.vector import run_vector_session, vector_session
from rlay.transports import dial, listen


class CrashAfter(gym.Wrapper):
    def __init__(self, env: gym.Env, steps: int) -> None:
        super().__init__(env)
        self.left = steps

    def step(self, action):  # type: ignore[no-untyped-def]
        self.left -= 1
        if self.left < 0:
            print("py_cartpole: boom (--crash-after)", file=sys.stderr, flush=True)
            os._exit(3)
        return self.env.step(action)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--autoreset", default="next-step", choices=("next-step", "same-step", "disabled"))
    parser.add_argument("--crash-after", type=int, default=0)
    args = parser.parse_args()
    address = os.environ["RLAY_ADDRESS"]
    if os.environ.get("RLAY_MODE", "listen") == "dial":
        stream = dial(address, 30.0)
    else:
        listener = listen(address)
        print(f"RLAY_LISTENING {listener.address}", flush=True)
        stream = listener.accept(None)
        listener.close()
    if args.num_envs == 1:
        env: gym.Env = gym.make("CartPole-v1")
        if args.crash_after:
            env = CrashAfter(env, args.crash_after)
        session = _session_for(env, stream)
        run_session(session, env)
    else:
        mode = {
            "next-step": AutoresetMode.NEXT_STEP,
            "same-step": AutoresetMode.SAME_STEP,
            "disabled": AutoresetMode.DISABLED,
        }[args.autoreset]
        venv = gym.vector.SyncVectorEnv(
            [lambda: gym.make("CartPole-v1")] * args.num_envs, autoreset_mode=mode
        )
        session = vector_session(venv, stream)
        run_vector_session(session, venv)
    session._shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
