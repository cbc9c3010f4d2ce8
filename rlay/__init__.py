"""rlay: turn a program in any language into a Gymnasium environment.

Agent side (what an RL algorithm uses): :class:`ClientEnv` dials an env side that listens;
:class:`ServerEnv` listens and the env side (a game's main loop) dials in.
Env side in Python: :func:`serve` / :func:`connect` (callback style), :class:`EnvSession`
(loop style). The wire protocol is specified in ``spec/protocol.md``.
"""

import gymnasium as _gym

from rlay.attributes import Attribute, InvalidAttribute
from rlay.backends import Command, EnvSession, Server, connect, serve
from rlay.backends.vector import connect_vector, serve_vector
from rlay.envs import GAME_ADDRESS, ClientEnv, ServerEnv
from rlay.envs.vector import ClientVectorEnv, ServerVectorEnv, make_vec
from rlay.errors import (
    AgentMismatch,
    AuthenticationFailed,
    ConnectionClosed,
    EncodeError,
    EnvSideFailed,
    InvalidAction,
    InvalidAgentAction,
    InvalidSubEnvAction,
    NotAnswering,
    ProtocolError,
    RemoteError,
    RlayError,
    SpaceError,
    Timeout,
    TlsCertificateError,
    TlsError,
    TlsMismatch,
    UsageError,
    VersionMismatch,
)
from rlay.launch import LaunchError

__version__ = "0.1.0"

__all__ = [
    "Attribute",
    "InvalidAttribute",
    "GAME_ADDRESS",
    "AgentMismatch",
    "ClientEnv",
    "ClientVectorEnv",
    "Command",
    "ConnectionClosed",
    "EncodeError",
    "EnvSession",
    "EnvSideFailed",
    "InvalidAction",
    "InvalidAgentAction",
    "InvalidSubEnvAction",
    "LaunchError",
    "NotAnswering",
    "ProtocolError",
    "RemoteError",
    "RlayError",
    "Server",
    "ServerEnv",
    "ServerVectorEnv",
    "SpaceError",
    "Timeout",
    "TlsCertificateError",
    "TlsError",
    "TlsMismatch",
    "UsageError",
    "VersionMismatch",
    "AuthenticationFailed",
    "__version__",
    "connect",
    "connect_vector",
    "make_vec",
    "serve",
    "serve_vector",
]

# gymnasium.make("rlay/ClientEnv-v0", address=...) and gymnasium.make("rlay/ServerEnv-v0", ...).
for _name in ("ClientEnv", "ServerEnv"):
    if f"rlay/{_name}-v0" not in _gym.registry:
        _gym.register(id=f"rlay/{_name}-v0", entry_point=f"rlay.envs:{_name}")
