"""The browser game examples/browser_paddle run headless under node (the same game and env code
as the page, no DOM) as an rlay env side, stepped from Python through real episodes.

In CI (CI=true) a missing node fails these tests; elsewhere they skip.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import require_tool
from test_js_sdk import MiniWsServer, WsAgent

import rlay
from rlay.protocol.messages import Close, CloseResult, EnvInfo, Hello, Render, Reset, Step

ROOT = Path(__file__).resolve().parents[2]
HEADLESS = str(ROOT / "examples" / "browser_paddle" / "headless.mjs")
WIDTH, HEIGHT, PADDLE_Y, PADDLE_W = 160, 120, 110, 28
PADDLE_RGB, BALL_RGB = (240, 200, 60), (250, 250, 250)


@pytest.fixture(scope="module")
def node() -> str:
    return require_tool("node")


def track(obs: np.ndarray) -> int:
    """Follow the ball with the paddle: left (0), stay (1), right (2)."""
    ball, paddle = obs[0], obs[4]
    return 2 if ball > paddle + 0.03 else 0 if ball < paddle - 0.03 else 1


def play(env: Any, policy: Any, seed: int) -> tuple[float, int, bool, bool, dict[str, Any]]:
    obs, info = env.reset(seed=seed)
    assert obs.dtype == np.float32 and obs.shape == (5,) and info == {}
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        assert obs in env.observation_space and reward in (0.0, 1.0)
        total += reward
        steps += 1
        if terminated or truncated:
            return total, steps, terminated, truncated, info


def test_episodes_from_python(node: str) -> None:
    env = rlay.ClientEnv(launch=[node, HEADLESS, "--listen", "{address}"], render_mode="rgb_array")
    try:
        assert env.env_name == "Paddle-v0" and env.metadata["render_fps"] == 60
        assert env.action_space == gym.spaces.Discrete(3) and env.observation_space.shape == (5,)
        # a tracking policy keeps the ball in play and scores
        total, steps, terminated, truncated, info = play(env, track, seed=1)
        assert total >= 10 and info["score"] == total, (total, steps, info)
        # standing still misses soon: the episode terminates
        total, steps, terminated, truncated, info = play(env, lambda obs: 1, seed=2)
        assert terminated and not truncated and steps < 400 and info["score"] == total
        # seeded resets are reproducible, different seeds differ
        a, b, c = env.reset(seed=9)[0], env.reset(seed=9)[0], env.reset(seed=10)[0]
        assert a.tobytes() == b.tobytes() != c.tobytes()
        assert env.call("score") == 0
    finally:
        env.close()


def test_render_shows_the_scene(node: str) -> None:
    env = rlay.ClientEnv(launch=[node, HEADLESS, "--listen", "{address}"], render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=4)
        for _ in range(15):
            obs, *_ = env.step(2)  # move right for a while
        frame = env.render()
        assert frame.dtype == np.uint8 and frame.shape == (HEIGHT, WIDTH, 3)
        paddle = np.all(frame == PADDLE_RGB, axis=2)
        rows, cols = np.nonzero(paddle)
        assert set(rows.tolist()) == set(range(PADDLE_Y, PADDLE_Y + 4))
        paddle_x = (obs[4] + 1) / 2 * WIDTH
        assert abs(cols.mean() + 0.5 - paddle_x) <= 1 and len(set(cols.tolist())) == PADDLE_W
        ball = np.all(frame == BALL_RGB, axis=2)
        rows, cols = np.nonzero(ball)
        ball_x, ball_y = (obs[0] + 1) / 2 * WIDTH, (obs[1] + 1) / 2 * HEIGHT
        assert (
            ball.sum() > 0
            and abs(cols.mean() + 0.5 - ball_x) <= 1.5
            and abs(rows.mean() + 0.5 - ball_y) <= 1.5
        )
    finally:
        env.close()


def test_the_game_dials_server_env_by_the_launcher_variables(node: str) -> None:
    """No flags: the launcher's RLAY_MODE=dial and RLAY_ADDRESS make the game dial in."""
    env = rlay.ServerEnv(launch=[node, HEADLESS])
    try:
        total, *_ = play(env, track, seed=3)
        assert total >= 5
    finally:
        env.close()


def test_rlay_check_passes(node: str) -> None:
    cmd = [sys.executable, "-m", "rlay.cli", "check", "--", node, HEADLESS, "--listen", "{address}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and " 0 failed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    """The repository as static files (the page imports ../../sdk/js/rlay.mjs), no log lines."""

    def log_message(self, *args: Any) -> None:
        pass


def test_the_page_in_headless_chromium_over_a_websocket(node: str, tmp_path: Path) -> None:
    """The static page (index.html?rlay=ws://...) in real headless Chromium dials a WebSocket and
    is stepped through an episode; RENDER answers the canvas pixels. The agent here is rlay's
    protocol core over a stdlib WebSocket server (test_js_sdk.MiniWsServer), standing in for
    rlay.ServerEnv("ws://127.0.0.1:0") until the Python ws:// transport lands."""
    chromium = require_tool("chromium")
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietFiles, directory=str(ROOT))
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ws = MiniWsServer()
    ws.listener.settimeout(90)
    page = f"http://127.0.0.1:{httpd.server_address[1]}/examples/browser_paddle/index.html?rlay={ws.address}"
    flags = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path}",
    ]
    browser = subprocess.Popen([chromium, *flags, page], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ws.accept()
        agent = WsAgent(ws)
        hello, info = agent.receive(), agent.receive()
        assert isinstance(hello, Hello) and hello.sdk == "rlay-js"
        assert isinstance(info, EnvInfo) and info.name == "Paddle-v0" and info.render_mode == "rgb_array"
        obs = agent.ask(Reset(3, None)).obs
        score, steps = 0.0, 0
        while True:
            reply = agent.ask(Step(track(obs)))
            obs, score, steps = reply.obs, score + reply.reward, steps + 1
            if reply.terminated or reply.truncated or steps == 300:
                break
        assert steps == 300 and score >= 1 and reply.info["score"] == score
        frame = agent.ask(Render()).frame  # the canvas, read back with getImageData
        assert frame.dtype == np.uint8 and frame.shape == (HEIGHT, WIDTH, 3)
        paddle = np.nonzero(np.all(frame == PADDLE_RGB, axis=2))
        assert set(paddle[0].tolist()) == set(range(PADDLE_Y, PADDLE_Y + 4))
        assert abs(paddle[1].mean() + 0.5 - (obs[4] + 1) / 2 * WIDTH) <= 1
        assert isinstance(agent.ask(Close()), CloseResult)
        ws.closing_handshake()
    finally:
        browser.kill()
        browser.wait()
        ws.close()
        httpd.shutdown()
