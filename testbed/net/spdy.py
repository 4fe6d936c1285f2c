"""Acts: the server side of SPDY/3.1 as Kubernetes clients speak it.

kubectl's exec, attach and port-forward (client-go over moby/spdystream and the
golang.org/x/net/spdy framer) open a SPDY session after an HTTP `Upgrade: SPDY/3.1`, or inside a
WebSocket (port-forward's `SPDY/3.1+portforward.k8s.io`). The client opens every stream (odd
ids, SYN_STREAM with a `streamtype` header); the server replies to each (SYN_REPLY), moves bytes
in DATA frames, half-closes with FIN, answers PINGs and says GOAWAY at the end.

What this module owns: the frame codec and the header-block codec with its zlib context
(one per direction for the whole session, primed with the SPDY/3 dictionary, each block ended
with a sync flush) - those functions are pure - and `Session`, the frame loop with its streams.
Flow control: spdystream neither sends WINDOW_UPDATE nor honours it, so neither side may wait
for one; WINDOW_UPDATE and SETTINGS are read and ignored, as spdystream does. Memory is bounded
instead by each stream's queue: a full queue stops the frame loop, and TCP pushes back.
"""

from __future__ import annotations

import socket
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from testbed.net.inbox import Inbox

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS = 1, 2, 3, 4
PING, GOAWAY, HEADERS, WINDOW_UPDATE = 6, 7, 8, 9
FLAG_FIN, FLAG_UNIDIRECTIONAL = 0x01, 0x02

# RST_STREAM status codes (SPDY/3 section 2.6.3) and GOAWAY status codes (2.6.6)
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL, INTERNAL_ERROR = 1, 2, 3, 5, 6
GOAWAY_OK, GOAWAY_PROTOCOL_ERROR = 0, 1

MAX_DATA = 32 << 10      # bytes per DATA frame we send (the format allows 16 MiB)
QUEUE_FRAMES = 512       # DATA frames a stream buffers before the frame loop waits


# -- the header dictionary (SPDY/3 section 2.6.10.1) ------------------------------------------------
# The spec's dictionary is a run of length-prefixed words (as in a header block) followed by
# plain text; it is written here in that shape rather than as 1,423 bytes of hex.

_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base "
    "content-encoding content-language content-length content-location content-md5 "
    "content-range content-type date etag expect expires from host if-match if-modified-since "
    "if-none-match if-range if-unmodified-since last-modified location max-forwards pragma "
    "proxy-authenticate proxy-authorization range referer retry-after server te trailer "
    "transfer-encoding upgrade user-agent vary via warning www-authenticate method get status"
).split() + ["200 OK"] + "version HTTP/1.1 url public set-cookie keep-alive origin".split()
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, "
    "Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,"
    "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch"
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
HEADER_DICTIONARY = b"".join(struct.pack("!I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()


class SpdyError(Exception):
    """The peer broke the protocol; the session ends with GOAWAY(PROTOCOL_ERROR)."""


# -- header blocks (pure) ---------------------------------------------------------------------------

Headers = dict[str, list[str]]


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed block: count, then (name, NUL-joined values) with 32-bit lengths.
    Names are lowercase, as golang.org/x/net/spdy insists when it reads them."""
    out = [struct.pack("!I", len(headers))]
    for name, values in headers.items():
        key, value = name.lower().encode(), "\x00".join(values).encode()
        out += [struct.pack("!I", len(key)), key, struct.pack("!I", len(value)), value]
    return b"".join(out)


def decode_header_block(block: bytes) -> Headers:
    """The inverse of encode_header_block; SpdyError on a malformed or duplicated name."""
    try:
        (count,), at = struct.unpack_from("!I", block), 4
        out: Headers = {}
        for _ in range(count):
            (n,) = struct.unpack_from("!I", block, at)
            name = block[at + 4:at + 4 + n].decode()
            at += 4 + n
            (n,) = struct.unpack_from("!I", block, at)
            value = block[at + 4:at + 4 + n].decode()
            at += 4 + n
            if len(name) == 0 or name != name.lower() or name in out or at > len(block):
                raise SpdyError(f"bad header name {name!r}")
            out[name] = value.split("\x00")
    except (struct.error, UnicodeDecodeError) as err:
        raise SpdyError(f"malformed header block: {err}") from None
    if at != len(block):
        raise SpdyError("trailing bytes after the header block")
    return out


class HeaderCompressor:
    """One direction's compression context: every block continues the same zlib stream."""

    def __init__(self) -> None:
        # level 9 as Go's framer (zlib.BestCompression); any level decodes the same
        self._z = zlib.compressobj(9, zlib.DEFLATED, 15, zdict=HEADER_DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        return self._z.compress(encode_header_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(15, zdict=HEADER_DICTIONARY)

    def decompress(self, data: bytes) -> Headers:
        try:
            return decode_header_block(self._z.decompress(data))
        except zlib.error as err:
            raise SpdyError(f"header block does not decompress: {err}") from None


# -- frames (pure) ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    """A control frame (`kind` > 0, `payload` after the 8-byte header) or a DATA frame
    (`kind` 0, `stream_id`, `payload` the data)."""

    kind: int
    flags: int
    payload: bytes
    stream_id: int = 0


def control_frame(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack("!HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, data: bytes, flags: int = 0) -> bytes:
    return struct.pack("!II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data


def read_frame(read_exact: Callable[[int], bytes]) -> Frame:
    head = read_exact(8)
    first, second = struct.unpack("!II", head)
    flags, length = second >> 24, second & 0xFFFFFF
    if first & 0x80000000:
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"SPDY version {version} (3 is spoken here)")
        return Frame(kind, flags, read_exact(length))
    return Frame(0, flags, read_exact(length), first & 0x7FFFFFFF)


def stream_id_of(payload: bytes) -> int:
    return struct.unpack_from("!I", payload)[0] & 0x7FFFFFFF


# -- the session -----------------------------------------------------------------------------------

class ByteStream(Protocol):
    """A connection as a byte stream: a socket, or a WebSocket's binary messages."""

    def read(self, n: int) -> bytes: ...       # up to n bytes; b"" at the end
    def write(self, data: bytes) -> None: ...
    def close_write(self) -> None: ...


class SocketStream:
    """ByteStream over an accepted socket, reading through the HTTP server's buffered reader
    (which may already hold the first frames)."""

    def __init__(self, read: Callable[[int], bytes], sock: socket.socket):
        self.read, self.sock = read, sock

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Stream:
    """One client-opened stream. `read` gives the next chunk, b"" once the client finished
    (FIN), reset it or the session ended; `write` and `close` (our FIN) are thread-safe. A
    reader that stops early calls `stop_reading`, so the frame loop never waits for it."""

    def __init__(self, session: Session, stream_id: int, headers: Headers, finished: bool):
        self.session, self.id, self.headers = session, stream_id, headers
        self.inbox = Inbox(QUEUE_FRAMES, ended=finished)
        self.remote_finished = finished
        self.local_closed = False
        self.reset_received = False
        # set once the session answered the SYN_STREAM: a client drops frames of a stream it
        # has no reply for, so nothing may be sent before (spdystream's waitWriteReply)
        self.replied = threading.Event()

    def header(self, name: str) -> str:
        return (self.headers.get(name.lower()) or [""])[0]

    def read(self) -> bytes:
        return self.inbox.get() or b""

    def stop_reading(self) -> None:
        self.inbox.ignore()

    def write(self, data: bytes) -> None:
        """DATA frames; ConnectionError when the stream or the session can take no more."""
        self.replied.wait()
        if self.local_closed or self.reset_received:
            raise ConnectionError(f"stream {self.id} is closed")
        for at in range(0, len(data), MAX_DATA):
            self.session.send(data_frame(self.id, data[at:at + MAX_DATA]))

    def close(self) -> None:
        """Half-close: an empty DATA frame with FIN (once)."""
        self.replied.wait()
        if self.local_closed or self.reset_received:
            return
        self.local_closed = True
        if self.remote_finished:   # both halves done: the session forgets the stream
            self.session.streams.pop(self.id, None)
        try:
            self.session.send(data_frame(self.id, b"", FLAG_FIN))
        except OSError:
            pass

    def reset(self, status: int = CANCEL) -> None:
        """RST_STREAM: both directions end now, buffered data is dropped."""
        self.replied.wait()
        self.session.streams.pop(self.id, None)
        if not self.local_closed and not self.reset_received:
            self.local_closed = True
            try:
                self.session.send(control_frame(RST_STREAM, 0, struct.pack("!II", self.id, status)))
            except OSError:
                pass
        self.inbox.end(discard=True)


class Session:
    """The server end of one SPDY session. `serve` runs the frame loop in the calling thread
    until the client goes away (or says GOAWAY); `on_stream(stream)` is called from that loop
    for every new stream and returns False to refuse it (RST_STREAM), True to accept it
    (SYN_REPLY with no headers, as the Kubernetes servers send). It must not block."""

    def __init__(self, conn: ByteStream, on_stream: Callable[[Stream], bool]):
        self.conn, self.on_stream = conn, on_stream
        self.streams: dict[int, Stream] = {}
        self._lock = threading.Lock()          # frame writes, and the compressor's order with them
        self._compressor = HeaderCompressor()
        self._decompressor = HeaderDecompressor()
        self._last_id = 0
        self.goaway_sent = False
        self.ended = threading.Event()

    def send(self, frame: bytes) -> None:
        with self._lock:
            self.conn.write(frame)

    def _send_headers(self, kind: int, flags: int, prefix: bytes, headers: Headers) -> None:
        with self._lock:  # compress and write in one step: blocks must reach the wire in order
            self.conn.write(control_frame(kind, flags, prefix + self._compressor.compress(headers)))

    def _read_exact(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            chunk = self.conn.read(n - got)
            if not chunk:
                raise EOFError
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def serve(self) -> None:
        try:
            while self._handle(read_frame(self._read_exact)):
                pass
        except SpdyError:
            self.close(GOAWAY_PROTOCOL_ERROR)
        except (EOFError, ConnectionError, OSError, ValueError):
            pass
        finally:
            self.ended.set()
            for stream in list(self.streams.values()):
                stream.inbox.end()

    def _handle(self, frame: Frame) -> bool:
        if frame.kind == 0:
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                stream.inbox.put(frame.payload)
                if frame.flags & FLAG_FIN:
                    stream.remote_finished = True
                    stream.inbox.end()
                    if stream.local_closed:
                        self.streams.pop(stream.id, None)
            return True
        if frame.kind == SYN_STREAM:
            self._syn_stream(frame)
        elif frame.kind in (SYN_REPLY, HEADERS):
            self._decompressor.decompress(frame.payload[4:])   # keeps the zlib context in step
        elif frame.kind == RST_STREAM:
            stream = self.streams.pop(stream_id_of(frame.payload), None)
            if stream is not None:
                stream.reset_received = True
                stream.inbox.end(discard=True)
        elif frame.kind == PING:
            # client pings have odd ids and are echoed; even ids would answer pings of ours
            if len(frame.payload) == 4 and struct.unpack("!I", frame.payload)[0] % 2 == 1:
                self.send(control_frame(PING, 0, frame.payload))
        elif frame.kind == GOAWAY:
            return False
        # SETTINGS, WINDOW_UPDATE and unknown control frames are ignored (spdystream does too)
        return True

    def _syn_stream(self, frame: Frame) -> None:
        if len(frame.payload) < 10:
            raise SpdyError("short SYN_STREAM")
        stream_id = stream_id_of(frame.payload)
        headers = self._decompressor.decompress(frame.payload[10:])
        if stream_id % 2 == 0 or stream_id <= self._last_id:
            self.send(control_frame(RST_STREAM, 0, struct.pack("!II", stream_id, PROTOCOL_ERROR)))
            return
        self._last_id = stream_id
        stream = Stream(self, stream_id, headers, bool(frame.flags & FLAG_FIN))
        self.streams[stream_id] = stream
        if self.goaway_sent or not self.on_stream(stream):
            self.streams.pop(stream_id, None)
            stream.replied.set()
            stream.reset(REFUSED_STREAM if self.goaway_sent else CANCEL)
            return
        try:
            self._send_headers(SYN_REPLY, 0, struct.pack("!I", stream_id), {})
        finally:
            stream.replied.set()

    def close(self, status: int = GOAWAY_OK) -> None:
        """GOAWAY (once) naming the last stream we took, then end our direction of the
        connection; the client closes its side when it has read everything."""
        if self.goaway_sent:
            return
        self.goaway_sent = True
        try:
            self.send(control_frame(GOAWAY, 0, struct.pack("!II", self._last_id, status)))
        except OSError:
            pass
        self.conn.close_write()
