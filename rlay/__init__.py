"""rlay: turn a program in any language into a Gymnasium environment.

Agent side (what an RL algorithm uses): :class:`ClientEnv` dials an env side that listens;
:class:`ServerEnv` listens and the env side (a game's main loop) dials in.
Env side in Python: :func:`serve` / :func:`connect` (callback style), :class:`EnvSession`
(loop style). The wire protocol is specified in ``spec/protocol.md``.
"""

import gymnasium as _gym

from rlay.backends import Command, EnvSession, Server, connect, serve
from rlay.envs import ClientEnv, ServerEnv
from rlay.errors import (
    ConnectionClosed,
    EncodeError,
    InvalidAction,
    ProtocolError,
    RemoteError,
    RlayError,
    SpaceError,
    Timeout,
    UsageError,
    VersionMismatch,
)

__version__ = "0.1.0"

__all__ = [
    "ClientEnv",
    "Command",
    "ConnectionClosed",
    "EncodeError",
    "EnvSession",
    "InvalidAction",
    "ProtocolError",
    "RemoteError",
    "RlayError",
    "Server",
    "ServerEnv",
    "SpaceError",
    "Timeout",
    "UsageError",
    "VersionMismatch",
    "__version__",
    "connect",
    "serve",
]

# gymnasium.make("rlay/ClientEnv-v0", address=...) and gymnasium.make("rlay/ServerEnv-v0", ...).
for _name in ("ClientEnv", "ServerEnv"):
    if f"rlay/{_name}-v0" not in _gym.registry:
        _gym.register(id=f"rlay/{_name}-v0", entry_point=f"rlay.envs:{_name}")
