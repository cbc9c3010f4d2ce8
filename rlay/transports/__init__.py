"""Transports move bytes only (design: layer 3); an address string picks one by its scheme.

The contract every transport honours, and the scheme table, are in :mod:`rlay.transports.base`;
:mod:`rlay.testing.transports` is the battery that checks a transport against it.
"""

from rlay.transports import sockets as _sockets  # noqa: F401  (registers tcp:// and unix://)
from rlay.transports import tls as _tls  # noqa: F401  (registers tls://)
from rlay.transports import ws as _ws  # noqa: F401  (registers ws://; needs websockets when used)
from rlay.transports.base import (
    SCHEMES,
    Address,
    Listener,
    Stream,
    Transport,
    dial,
    listen,
    parse_address,
    register,
)

__all__ = [
    "SCHEMES",
    "Address",
    "Listener",
    "Stream",
    "Transport",
    "dial",
    "listen",
    "parse_address",
    "register",
]
