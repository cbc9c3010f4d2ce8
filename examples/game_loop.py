"""Loop style: a "game" owns its main loop and asks rlay for a decision when it is ready.

The game below runs a fixed-rate frame loop (a ball that the agent pushes left or right towards a
target). Every frame it polls rlay without blocking; when the agent side has sent a command it
answers it, otherwise it just draws the next frame. This is the shape of a Unity/Godot/Unreal
integration, written in Python so that it runs anywhere.

    python examples/game_loop.py --listen tcp://127.0.0.1:0     # then ClientEnv(ADDRESS)
    python examples/game_loop.py --connect ADDRESS             # for ServerEnv(ADDRESS)

It offers one engine setting (spec §19): ``env.set_attr("target_frame_rate", 240)`` changes the
rate of its frame loop while it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import gymnasium as gym
import numpy as np

import rlay
from rlay.protocol.wire import ErrorCode


class BallGame:
    """The game's own state and rules; knows nothing about rlay."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng()
        self.pos = 0.0
        self.vel = 0.0
        self.target = 0.5
        self.t = 0

    def reset(self, seed: int | None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.pos = float(self.rng.uniform(-1, 1))
        self.target = float(self.rng.uniform(-1, 1))
        self.vel = 0.0
        self.t = 0

    def update(self, push: float) -> None:
        self.vel = 0.9 * self.vel + 0.05 * push
        self.pos = float(np.clip(self.pos + self.vel, -1.5, 1.5))
        self.t += 1

    def observe(self) -> np.ndarray:
        return np.array([self.pos, self.vel, self.target], dtype=np.float32)

    def draw(self) -> str:
        cells = ["."] * 31
        cells[round((self.target + 1.5) * 10)] = "|"
        cells[round((self.pos + 1.5) * 10)] = "o"
        return "".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--listen", metavar="ADDRESS", help="listen for a ClientEnv")
    group.add_argument("--connect", metavar="ADDRESS", help="dial a ServerEnv")
    parser.add_argument("--fps", type=float, default=60.0, help="the game's own frame rate")
    args = parser.parse_args()
    connect = args.connect or (None if args.listen else os.environ.get("RLAY_ADDRESS"))

    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
    action_space = gym.spaces.Discrete(3, start=-1)  # push left, none, right
    spaces = (observation_space, action_space)
    meta = {"render_modes": ["ansi"], "render_fps": 30}
    # §19: a standard engine setting, read and written by the agent side (env.set_attr(...))
    clock = {"fps": max(1, round(args.fps))}
    attributes = [
        rlay.Attribute(
            "target_frame_rate",
            int,
            default=clock["fps"],
            min=1,
            max=1000,
            doc="frames per second of the game's own loop",
            getter=lambda _: clock["fps"],
            setter=lambda _, fps: clock.update(fps=fps),
        )
    ]
    options = {"metadata": meta, "render_mode": "ansi", "name": "BallGame", "attributes": attributes}
    if connect:
        session = rlay.EnvSession.dial(connect, *spaces, **options)
    else:
        from rlay.transports import listen

        listener = listen(args.listen or "tcp://127.0.0.1:0")
        print(f"RLAY_LISTENING {listener.address}", flush=True)
        stream = listener.accept(None)
        listener.close()
        session = rlay.EnvSession(stream, *spaces, **options)

    game = BallGame()
    next_frame = time.monotonic()
    frames = 0
    while True:  # the game's main loop: it owns time
        # Wait for a command only until the next frame is due, so a frame is never late.
        try:
            cmd = session.poll(timeout=max(0.0, next_frame - time.monotonic()))
        except rlay.ConnectionClosed:
            break
        if cmd is None:  # the frame is due: animate, draw, play sound, ...
            frames += 1
            next_frame += 1.0 / clock["fps"]
            continue
        try:
            if cmd.kind == "reset":
                game.reset(cmd.seed if isinstance(cmd.seed, int) else None)
                session.reply_reset(game.observe(), {"target": game.target})
            elif cmd.kind == "step":
                game.update(float(cmd.action))
                distance = abs(game.pos - game.target)
                session.reply_step(game.observe(), -distance, distance < 0.05, game.t >= 200, {})
            elif cmd.kind == "render":
                session.reply_render(game.draw())
            elif cmd.kind == "close":
                break
            else:
                session.reply_error(f"{cmd.kind} is not offered", code=ErrorCode.NOT_SUPPORTED)
        except rlay.ConnectionClosed:
            break
        except Exception as exc:  # an error in game code goes to the agent side, not to stderr
            session.reply_error(exc)
    print("game: agent side left, quitting", file=sys.stderr)


if __name__ == "__main__":
    main()
