import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """Path of a tool the test needs. In CI a missing tool fails the test; elsewhere it skips."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (run `make setup`)"
        if IN_CI:
            pytest.fail(f"CI: {message}")
        pytest.skip(message)
    return path


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """A short private directory for unix sockets (paths are limited to ~100 bytes)."""
    path = tempfile.mkdtemp(prefix="rlay-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["tcp", "unix"])
def address(request: pytest.FixtureRequest, sock_dir: str) -> str:
    """A listen address for each transport."""
    if request.param == "tcp":
        return "tcp://127.0.0.1:0"
    return f"unix://{sock_dir}/env.sock"
