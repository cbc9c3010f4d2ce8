"""The browser game examples/browser_paddle as an rlay env side, stepped from Python through real
episodes: headless under node (the same game and env code as the page, no DOM) over tcp, unix
and ws://, and the page itself in real headless Chromium dialling rlay.ServerEnv("ws://...").

In CI (CI=true) a missing node or chromium fails these tests; elsewhere they skip.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import require_tool

import rlay

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


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    """The page's URL on a loopback static server; append the ServerEnv's address to it."""
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietFiles, directory=str(ROOT))
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/examples/browser_paddle/index.html?rlay="
    finally:
        httpd.shutdown()
        httpd.server_close()


def chromium_command(url: str, profile: Path) -> list[str]:
    """Debian's chromium, headless, opening `url` (no sandbox: CI containers run as root)."""
    chromium = require_tool("chromium")
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    return [chromium, *flags, f"--user-data-dir={profile}", url]


def test_rlay_check_against_the_page_in_chromium(node: str, page_url: str, tmp_path: Path) -> None:
    """`rlay check --server ws://127.0.0.1:0/ -- chromium PAGE?rlay={address}`: the page dials."""
    browser = chromium_command(page_url + "{address}", tmp_path)
    cmd = [sys.executable, "-m", "rlay.cli", "check", "--server", "ws://127.0.0.1:0/", "--", *browser]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and " 0 failed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "rlay-js" in proc.stdout and "ws://127.0.0.1:" in proc.stdout
    assert "rgb_array frame (120, 160, 3)" in proc.stdout


@pytest.mark.parametrize("direction", ["node-listens", "node-dials"])
def test_rlay_check_against_the_node_env_side_over_ws(node: str, direction: str) -> None:
    """The headless game over ws:// both ways: rlay.ClientEnv("ws://...") dials node's own
    WebSocket server; node (Node 20: --experimental-websocket) dials rlay.ServerEnv("ws://...")."""
    if direction == "node-listens":
        how = ["--", node, HEADLESS, "--listen", "ws://127.0.0.1:0/"]
    else:
        ws = ["--experimental-websocket"] if "WebSocket" not in node_globals(node) else []
        how = ["--server", "ws://127.0.0.1:0/", "--", node, *ws, HEADLESS, "--connect", "{address}"]
    proc = subprocess.run(
        [sys.executable, "-m", "rlay.cli", "check", *how], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0 and " 0 failed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ws://127.0.0.1:" in proc.stdout and "rgb_array frame (120, 160, 3)" in proc.stdout


@functools.cache
def node_globals(node: str) -> str:
    out = subprocess.run(
        [node, "-e", "console.log(Object.getOwnPropertyNames(globalThis).join(' '))"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout


def test_the_page_in_chromium_is_a_server_env(node: str, page_url: str, tmp_path: Path) -> None:
    """The static page in real headless Chromium dials rlay.ServerEnv("ws://127.0.0.1:0/"), is
    stepped through an episode, render() returns the canvas (read back with getImageData) as an
    rgb_array; then the browser is killed and the agent's next call fails at once, by name."""
    env = rlay.ServerEnv("ws://127.0.0.1:0/", wait=False, accept_timeout=90)
    browser = subprocess.Popen(
        chromium_command(page_url + env.address, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        env.accept()
        assert env.env_name == "Paddle-v0" and env.render_mode == "rgb_array"
        assert env.action_space == gym.spaces.Discrete(3) and env.observation_space.shape == (5,)
        obs, info = env.reset(seed=3)
        score, steps = 0.0, 0
        while steps < 300:
            obs, reward, terminated, truncated, info = env.step(track(obs))
            score, steps = score + float(reward), steps + 1
            assert not (terminated or truncated)
        assert score >= 1 and info["score"] == score
        frame = env.render()
        assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8
        assert frame.shape == (HEIGHT, WIDTH, 3)
        paddle = np.nonzero(np.all(frame == PADDLE_RGB, axis=2))
        assert set(paddle[0].tolist()) == set(range(PADDLE_Y, PADDLE_Y + 4))
        assert abs(paddle[1].mean() + 0.5 - (obs[4] + 1) / 2 * WIDTH) <= 1
        ball = np.nonzero(np.all(frame == BALL_RGB, axis=2))
        assert abs(ball[1].mean() + 0.5 - (obs[0] + 1) / 2 * WIDTH) <= 1.5

        browser.kill()  # SIGKILL: the browser's TCP connection is closed by the kernel
        browser.wait()
        started = time.monotonic()
        # the send fails (the close is seen first) or the reply never comes: either way, named
        gone = r"STEP: the connection to .* over ws broke|closed the connection waiting for the reply to STEP"
        with pytest.raises(rlay.ConnectionClosed, match=gone):
            env.step(1)
        assert time.monotonic() - started < 5, "the agent must notice a killed browser at once"
    finally:
        if browser.poll() is None:
            browser.kill()
            browser.wait()
        env.close()
