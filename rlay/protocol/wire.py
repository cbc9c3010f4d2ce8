"""Wire numbers of protocol v1 (spec/protocol.md §2, §4, §6, §11).

Every number here is written out and append-only. A retired number stays listed with a comment
and is never reused (§14). Every other mapping (dtype names, itemsizes, numpy dtypes) is derived
from the tables in this file.
"""

from __future__ import annotations

import enum
import struct

import numpy as np

PROTOCOL_NAME = "rlay"
PROTOCOL_VERSION = 1

MAGIC = b"RL"
#: magic (2s), kind (B), flags (B), data_len (I), body_len (I) — §2, little-endian.
HEADER = struct.Struct("<2sBBII")
HEADER_SIZE = HEADER.size  # 12

DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024  # §13
DEFAULT_MAX_DEPTH = 64  # §3, §13
#: §13: the first frame a side receives (the peer's HELLO, or a fatal ERROR) is at most this big.
DEFAULT_MAX_HANDSHAKE_FRAME_SIZE = 64 * 1024
#: §13: the values one body may build (every value, map keys included, the body map too).
DEFAULT_MAX_VALUES = 256 * 1024
MAX_NDIM = 32  # §4
TENSOR_ALIGN = 8  # §4
TENSOR_EXT = 1  # §3: the MessagePack ext type of a tensor descriptor


class Kind(enum.IntEnum):
    """Message kinds (§6). Unassigned: 3, 6-7, 10-15, 21-31, 37-47, 49-255."""

    HELLO = 1
    ENV_INFO = 2
    AUTH = 4  # §7.1, only after both HELLOs announced the `auth` capability
    SHM = 5  # §16, only after both HELLOs announced the `shm` capability
    MULTI_STEP = 8  # §18, only in a session where both HELLOs announced `multi_agent`
    MULTI_RESULT = 9  # §18
    RESET = 16
    STEP = 17
    RENDER = 18
    CLOSE = 19
    CALL = 20
    RESET_RESULT = 32
    STEP_RESULT = 33
    RENDER_RESULT = 34
    CLOSE_RESULT = 35
    CALL_RESULT = 36
    ERROR = 48


KINDS = frozenset(int(k) for k in Kind)


class ErrorCode(enum.IntEnum):
    """Error codes (§11). 0 is invalid; 17-18, 21-31 and 38+ are unassigned."""

    BAD_MAGIC = 1
    BAD_HEADER = 2
    FRAME_TOO_LARGE = 3
    TRUNCATED = 4
    MALFORMED = 5
    UNKNOWN_KIND = 6
    BAD_FIELD = 7
    BAD_TENSOR = 8
    UNKNOWN_DTYPE = 9
    TOO_DEEP = 10
    UNEXPECTED_MESSAGE = 11
    VERSION_MISMATCH = 12
    ROLE_CONFLICT = 13
    BAD_SPACE = 14
    BAD_VALUE = 15
    AUTH_FAILED = 16  # §7.1: always sent fatal
    AGENT_MISMATCH = 19  # §18: MULTI_STEP's agents are not the live agents; non-fatal
    BAD_ATTRIBUTE = 20  # §19: a refused rlay.get/rlay.set; non-fatal
    ENV_EXCEPTION = 32
    INVALID_ACTION = 33
    NOT_SUPPORTED = 34
    RESET_NEEDED = 35
    SHUTTING_DOWN = 36
    INTERNAL = 37


class Role(enum.Enum):
    AGENT = "agent"
    ENV = "env"

    @property
    def peer(self) -> Role:
        return Role.ENV if self is Role.AGENT else Role.AGENT


# §4: the one dtype table. code -> little-endian numpy dtype.
DTYPE_BY_CODE: dict[int, np.dtype] = {
    1: np.dtype("bool"),
    2: np.dtype("<i1"),
    3: np.dtype("<i2"),
    4: np.dtype("<i4"),
    5: np.dtype("<i8"),
    6: np.dtype("<u1"),
    7: np.dtype("<u2"),
    8: np.dtype("<u4"),
    9: np.dtype("<u8"),
    10: np.dtype("<f2"),
    11: np.dtype("<f4"),
    12: np.dtype("<f8"),
}
CODE_BY_DTYPE: dict[np.dtype, int] = {dt: code for code, dt in DTYPE_BY_CODE.items()}
DTYPE_BY_NAME: dict[str, np.dtype] = {dt.name: dt for dt in DTYPE_BY_CODE.values()}
NAME_BY_DTYPE: dict[np.dtype, str] = {dt: dt.name for dt in DTYPE_BY_CODE.values()}
BOOL_CODE = 1
