"""rlay: turn a program in any language into a Gymnasium environment."""

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
    "ConnectionClosed",
    "EncodeError",
    "InvalidAction",
    "ProtocolError",
    "RemoteError",
    "RlayError",
    "SpaceError",
    "Timeout",
    "UsageError",
    "VersionMismatch",
    "__version__",
]
