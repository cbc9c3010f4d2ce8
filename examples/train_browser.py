"""Training proof for a browser game: PPO (Stable-Baselines3) learns Paddle through rlay, then
plays it in the real page in headless Chromium.

    python examples/train_browser.py [--timesteps N] [--envs N] [--target SCORE]

Paddle (examples/browser_paddle) is a canvas game with its own main loop; each hit of the paddle
scores 1, a miss ends the episode, 2000 steps (33 s of game time) truncate it. A random policy
scores about 0.3; following the ball scores about 25. Training runs the same game and env code
headless under node (examples/browser_paddle/headless.mjs, one process per sub-env, stepped
through rlay.ClientEnv over unix sockets) and stops once the mean score of the last 40 episodes
reaches ``--train-target`` (23 by default; a stochastic policy's score, so a margin above the
goal). Then the page itself is served on loopback, opened in
Debian's headless ``chromium``, dials ``rlay.ServerEnv("ws://127.0.0.1:0/")`` and is played by
the trained policy for ``--eval-episodes`` seeded episodes; a screenshot of the page while the
agent plays is written to ``--screenshot`` (taken through Chromium's DevTools protocol).
Prints the learning curve and the result; exits 0 when the mean score of the deterministic policy
in the page reaches ``--target`` (20 by default).
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from typing import Any

import numpy as np

import rlay
from rlay.progress import progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADLESS = os.path.join(ROOT, "examples", "browser_paddle", "headless.mjs")
PAGE = "/examples/browser_paddle/index.html"
# The canvas (640 x 480 on screen) and the status line under it, whatever the window's size.
CLIP = {"x": 0, "y": 0, "width": 690, "height": 560, "scale": 1}
SHOT = {"format": "png", "clip": CLIP, "captureBeyondViewport": True}


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class Chromium:
    """Headless chromium on a URL, with its DevTools endpoint for screenshots."""

    def __init__(self, url: str) -> None:
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if exe is None:
            raise SystemExit("chromium is not installed (Debian: apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix="rlay-chromium-")
        flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        flags += ["--remote-debugging-port=0", "--window-size=700,560", "--hide-scrollbars"]
        self.proc = subprocess.Popen(
            [exe, *flags, f"--user-data-dir={self.profile}", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def screenshot(self, path: str) -> None:
        from websockets.sync.client import connect

        port_file = os.path.join(self.profile, "DevToolsActivePort")
        for _ in range(100):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.1)
        port = open(port_file).read().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as ws:
            ws.send(json.dumps({"id": 1, "method": "Page.captureScreenshot", "params": SHOT}))
            while True:
                reply = json.loads(ws.recv())
                if reply.get("id") == 1:
                    break
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(reply["result"]["data"]))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def evaluate_in_chromium(model: Any, episodes: int, screenshot: str | None) -> list[float]:
    """The trained policy plays the page in headless Chromium, over ws://, seeded episodes."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietFiles, directory=ROOT))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    env = rlay.ServerEnv("ws://127.0.0.1:0/", wait=False, accept_timeout=120)
    url = f"http://127.0.0.1:{httpd.server_address[1]}{PAGE}?rlay={env.address}"
    browser = Chromium(url)
    scores = []
    try:
        env.accept()
        print(f"the page in headless chromium dialled {env.address} ({env.env_name})")
        for episode in range(episodes):
            obs, _ = env.reset(seed=1000 + episode)
            score, steps, done = 0.0, 0, False
            while not done:
                action, _ = model.predict(obs, deterministic=True)
                obs, reward, terminated, truncated, _ = env.step(int(action))
                score, steps, done = score + float(reward), steps + 1, terminated or truncated
                if screenshot and episode == 0 and steps == 900:
                    time.sleep(0.3)  # let the page's animation loop draw the current state
                    browser.screenshot(screenshot)
                    print(f"screenshot of the agent playing (step {steps}, score {score:.0f}): {screenshot}")
            scores.append(score)
            print(f"  page episode {episode}: score {score:.0f} in {steps} steps")
        env.close()
    finally:
        env.close()
        browser.close()
        httpd.shutdown()
        httpd.server_close()
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timesteps", type=int, default=600_000, help="budget (stops earlier at the target)")
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=20.0, help="mean score the page must reach")
    parser.add_argument(
        "--train-target", type=float, default=23.0, help="mean score (last 40 episodes) that stops training"
    )
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--screenshot", default=os.path.join(ROOT, "docs", "browser_paddle.png"))
    parser.add_argument(
        "--model", default=os.path.join(ROOT, "examples", "browser_paddle", "build", "ppo_paddle.zip")
    )
    parser.add_argument("--evaluate-only", action="store_true", help="load --model, skip training")
    parser.add_argument(
        "--progress", action="store_true", help="draw a progress bar even when not on a terminal"
    )
    args = parser.parse_args()
    try:
        import torch
        from stable_baselines3 import PPO
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.monitor import Monitor
        from stable_baselines3.common.vec_env import DummyVecEnv
    except ImportError as exc:
        raise SystemExit(f"{exc}: install the training extra: pip install -e '.[train]'") from None

    torch.set_num_threads(1)
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not installed")

    if args.evaluate_only:
        scores = evaluate_in_chromium(PPO.load(args.model, device="cpu"), args.eval_episodes, args.screenshot)
        print(f"evaluation in the page: mean score {np.mean(scores):.1f} over {len(scores)} episodes")
        return 0 if np.mean(scores) >= args.target else 1

    def make_env() -> Any:
        return Monitor(rlay.ClientEnv(launch=[node, HEADLESS, "--listen", "{address}"]))

    venv = DummyVecEnv([make_env] * args.envs)
    venv.seed(args.seed)

    class Curve(BaseCallback):
        """Prints the learning curve; stops training at the target."""

        def __init__(self) -> None:
            super().__init__()
            self.scores: deque[float] = deque(maxlen=40)
            self.episodes = 0
            self.started = time.perf_counter()
            self.next_print = 0
            # a bar on a terminal (tqdm if installed); the curve's lines print above it
            self.bar = progress(args.timesteps, "training", show=args.progress or None)
            self.shown = 0

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.scores.append(float(info["episode"]["r"]))
                    self.episodes += 1
            mean = float(np.mean(self.scores)) if self.scores else 0.0
            if self.num_timesteps >= self.next_print:
                self.next_print += 20_000
                elapsed = time.perf_counter() - self.started
                self.bar.write(
                    f"  {self.num_timesteps:7d} steps  {elapsed:6.1f} s  episodes {self.episodes:5d}"
                    f"  mean score (last 40) {mean:5.1f}",
                )
            self.bar.update(self.num_timesteps - self.shown)
            self.shown = self.num_timesteps
            self.bar.set_postfix_str(f"mean score {mean:.1f}")
            return not (len(self.scores) == self.scores.maxlen and mean >= args.train_target)

    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=256,
        batch_size=256,
        n_epochs=10,
        gamma=0.99,
        gae_lambda=0.95,
        ent_coef=0.01,
        learning_rate=3e-4,
        seed=args.seed,
        verbose=0,
        device="cpu",
    )
    print(f"PPO on Paddle (headless node) through rlay: {args.envs} processes, budget {args.timesteps} steps")
    curve = Curve()
    started = time.perf_counter()
    model.learn(total_timesteps=args.timesteps, callback=curve)
    curve.bar.close()
    train_time = time.perf_counter() - started
    venv.close()
    os.makedirs(os.path.dirname(args.model), exist_ok=True)
    model.save(args.model)
    mean_train = float(np.mean(curve.scores)) if curve.scores else 0.0
    print(
        f"training: {model.num_timesteps} steps, {train_time:.1f} s, mean score of the last 40 "
        f"episodes {mean_train:.1f}"
    )
    scores = evaluate_in_chromium(model, args.eval_episodes, args.screenshot)
    final = float(np.mean(scores))
    print(
        f"evaluation in the page (headless chromium, ws://): mean score {final:.1f} over "
        f"{len(scores)} episodes (min {min(scores):.0f}, max {max(scores):.0f})"
    )
    ok = final >= args.target
    print("TARGET REACHED" if ok else "TARGET NOT REACHED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
