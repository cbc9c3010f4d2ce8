"""Frames: the 12-byte header, the data section and the body (spec/protocol.md §2).

:class:`FrameReader` is fed whatever bytes the transport read and yields complete frames as
``(kind, data, body)`` memoryviews. A frame that arrived in one read is sliced out of that read's
buffer without copying; a frame split across reads is assembled once. The header is checked as
soon as its bytes are there, before anything is allocated for the frame.
"""

from __future__ import annotations

from collections import deque

from rlay.errors import ProtocolError
from rlay.protocol.codec import Buffer
from rlay.protocol.wire import HEADER, HEADER_SIZE, KINDS, MAGIC, ErrorCode

Frame = tuple[int, memoryview, memoryview]  # kind, data section, body


def pack_header(kind: int, data_len: int, body_len: int) -> bytes:
    return HEADER.pack(MAGIC, kind, 0, data_len, body_len)


def not_rlay(first: bytes) -> ProtocolError:
    """``BAD_MAGIC`` for a peer whose first bytes are not ``RL``; a TLS record (``16 03``: a
    ClientHello) is named as such, so that tls:// meeting tcp:// says so (§17.1)."""
    if first[:2] == b"\x16\x03"[: len(first[:2])]:
        return ProtocolError(
            ErrorCode.BAD_MAGIC,
            f"the peer speaks TLS (its bytes start {first[:8].hex(' ')}, a TLS record) but this side "
            "speaks plain rlay: listen on tls:// (or have the peer dial tcp://)",
        )
    return ProtocolError(ErrorCode.BAD_MAGIC, f"the peer is not speaking rlay: its bytes start {first!r}")


def check_header(header: bytes | memoryview, max_frame_size: int) -> tuple[int, int, int]:
    """Validate a 12-byte header; return ``(kind, data_len, body_len)``."""
    magic, kind, flags, data_len, body_len = HEADER.unpack_from(header)
    if magic != MAGIC:
        raise not_rlay(bytes(header[:8]))
    if flags:
        raise ProtocolError(ErrorCode.BAD_HEADER, f"header flags must be 0 in v1, got {flags:#04x}")
    if body_len == 0:
        raise ProtocolError(ErrorCode.BAD_HEADER, "header body_len is 0; a body is at least one byte")
    if data_len + body_len > max_frame_size:
        raise ProtocolError(
            ErrorCode.FRAME_TOO_LARGE,
            f"frame of {data_len + body_len} bytes exceeds the limit of {max_frame_size} bytes",
        )
    if kind not in KINDS:
        raise ProtocolError(ErrorCode.UNKNOWN_KIND, f"unknown message kind {kind}")
    return kind, data_len, body_len


class FrameReader:
    """Bytes in, frames out. Raises :class:`ProtocolError` on the first bad header byte."""

    def __init__(self, max_frame_size: int, first_frame_size: int | None = None) -> None:
        self.max_frame_size = max_frame_size
        #: §13: the limit of the first frame (the peer's HELLO); None: max_frame_size.
        self.first_frame_size = first_frame_size
        self._seen = 0  # frames whose header was accepted
        self.frames: deque[Frame] = deque()
        self._pending: list[memoryview] = []  # bytes of an incomplete frame, in order
        self._pending_size = 0
        self._needed = HEADER_SIZE  # bytes needed before the pending bytes can be looked at again
        #: A bad header found behind complete frames still queued: it is raised only once the
        #: caller has taken those frames (and checked them), by the next ``feed`` or
        #: ``feed_eof``, so that the first fault in the stream wins however its bytes were split
        #: into reads (§8's order of checks). Nothing after the bad header is looked at.
        self.error: ProtocolError | None = None

    def feed(self, data: Buffer) -> None:
        if self.error is not None:
            raise self.error
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        if not len(view):
            return
        if self._pending:
            self._pending.append(view)
            self._pending_size += len(view)
            if self._pending_size < 2:
                return
            if self._pending_size < self._needed:
                if self._pending_size >= 2 and self._needed == HEADER_SIZE:
                    self._check_magic(b"".join(self._pending[:2])[:2])
                return
            view = memoryview(b"".join(self._pending))  # one copy, for frames split across reads
            self._pending = []
            self._pending_size = 0
        self._parse(view)

    def _check_magic(self, first: bytes) -> None:
        if first[:2] != MAGIC[: len(first)]:
            raise not_rlay(first)

    def _parse(self, view: memoryview) -> None:
        try:
            self._parse_frames(view)
        except ProtocolError as exc:
            if not self.frames:
                raise
            self.error = exc
            self._pending = []
            self._pending_size = 0

    def _parse_frames(self, view: memoryview) -> None:
        pos = 0
        end = len(view)
        while end - pos >= HEADER_SIZE:
            first_size = self.first_frame_size if self._seen == 0 else None
            first = first_size is not None
            limit = self.max_frame_size if first_size is None else min(self.max_frame_size, first_size)
            try:
                kind, data_len, body_len = check_header(view[pos : pos + HEADER_SIZE], limit)
            except ProtocolError as exc:
                if first and exc.code is ErrorCode.FRAME_TOO_LARGE:
                    raise ProtocolError(
                        ErrorCode.FRAME_TOO_LARGE,
                        f"{exc.detail}: the first frame (the peer's HELLO) is limited before the "
                        "handshake (§13)",
                    ) from None
                raise
            self._seen += 1
            start = pos + HEADER_SIZE
            stop = start + data_len + body_len
            if stop > end:
                self._needed = stop - pos
                break
            mid = start + data_len
            self.frames.append((kind, view[start:mid], view[mid:stop]))
            pos = stop
        else:
            self._needed = HEADER_SIZE
            if end - pos >= 2:
                self._check_magic(bytes(view[pos : pos + 2]))
        if pos < end:
            self._pending = [view[pos:]]
            self._pending_size = end - pos

    def feed_eof(self) -> None:
        """The stream ended. Raises ``TRUNCATED`` if it ended inside a frame."""
        if self.error is not None:
            raise self.error
        if self._pending_size:
            raise ProtocolError(
                ErrorCode.TRUNCATED,
                f"the stream ended inside a frame ({self._pending_size} of "
                f"{max(self._needed, self._pending_size)}+ bytes received)",
            )
