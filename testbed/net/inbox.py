"""Acts (threads only): a bounded buffer of byte chunks between a connection's reader thread and
the one consumer of a multiplexed stream (a SPDY stream, a WebSocket channel).

The reader `put`s chunks and `end`s the stream; the consumer `get`s them, b"" at the end. A full
inbox makes the reader wait - that is the back-pressure that bounds memory when a consumer is
slow - so a consumer that gives up calls `ignore`, after which everything is dropped.
"""

from __future__ import annotations

import threading
from collections import deque

DEFAULT_LIMIT = 512   # chunks; a chunk is one frame or message, at most tens of KiB


class Inbox:
    def __init__(self, limit: int = DEFAULT_LIMIT, ended: bool = False):
        self.limit = limit
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._ended = ended      # no more data will come
        self._ignored = False    # nobody reads any more

    def put(self, data: bytes) -> None:
        with self._cond:
            while len(self._chunks) >= self.limit and not self._ignored:
                self._cond.wait()
            if data and not self._ignored and not self._ended:
                self._chunks.append(data)
                self._cond.notify_all()

    def end(self, *, discard: bool = False) -> None:
        """No more data (discard=True also drops what is still buffered, as after a reset)."""
        with self._cond:
            self._ended = True
            if discard:
                self._chunks.clear()
            self._cond.notify_all()

    def ignore(self) -> None:
        """The consumer gives up: drop what is buffered and all that comes; `get` says b"". """
        with self._cond:
            self._ignored = True
            self._chunks.clear()
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> bytes | None:
        """The next chunk; b"" at the end; None if `timeout` passed with nothing."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._chunks or self._ended or self._ignored,
                                       timeout):
                return None
            if not self._chunks:
                return b""
            chunk = self._chunks.popleft()
            self._cond.notify_all()
            return chunk
