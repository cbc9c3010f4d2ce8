import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rllib",
        action="store_true",
        help="also run the tests marked rllib (Ray RLlib, not in the dev extra; make test-rllib)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``rllib`` need the rllib extra, which the dev environment does not have
    (pyproject.toml says why): deselected unless ``--rllib``; with it, a missing Ray fails."""
    if config.getoption("--rllib"):
        return
    deselected = [item for item in items if item.get_closest_marker("rllib")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("rllib")]


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
