"""Acts: the server side of WebSocket (RFC 6455) over a connection an HTTP server accepted.

Owns the answer to the opening handshake (Sec-WebSocket-Accept, the subprotocol choice) and the
framing after it: reading client frames (which must be masked), writing server frames (never
masked), reassembling fragmented messages, answering pings and the closing handshake. No
extension is ever accepted (the answer names none), so frames carry no RSV bits. The codec
functions (`encode_frame`, `apply_mask`, `accept_value`, `choose_subprotocol`) are pure; the
`WebSocket` class does the I/O. Used by the API server's exec, attach and port-forward
(testbed/agents/streaming).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   # RFC 6455 section 1.3

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
DATA_OPCODES = (OP_TEXT, OP_BINARY)

CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG = 1000, 1002, 1009

MAX_MESSAGE = 64 << 20   # a bound on one reassembled message, so a client cannot exhaust memory


class WebSocketError(Exception):
    """The peer broke the protocol; `code` is the close code to answer with."""

    def __init__(self, message: str, code: int = CLOSE_PROTOCOL_ERROR):
        super().__init__(message)
        self.code = code


class Headers(Protocol):
    def get(self, name: str, default: str | None = None) -> str | None: ...
    def get_all(self, name: str, failobj: list | None = None) -> list[str] | None: ...


# -- the opening handshake (pure) ----------------------------------------------------------------

def is_upgrade(headers: Headers) -> bool:
    """Does the request ask for a WebSocket (Upgrade: websocket, Connection: ... upgrade)?"""
    upgrade = (headers.get("Upgrade") or "").strip().lower()
    connection = ",".join(headers.get_all("Connection") or []).lower()
    return upgrade == "websocket" and "upgrade" in connection


def accept_value(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1((key.strip() + GUID).encode()).digest()).decode()


def offered_subprotocols(values: Iterable[str]) -> list[str]:
    """The subprotocols of every Sec-WebSocket-Protocol header line, in the client's order."""
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


def choose_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The first offered subprotocol the server supports. The client's order wins, as in
    golang.org/x/net/websocket, which the Kubernetes API server and kubelet answer with."""
    return next((p for p in offered if p in supported), None)


def handshake_problem(headers: Headers) -> str | None:
    """Why the request is not a WebSocket opening handshake we can answer, or None."""
    if not is_upgrade(headers):
        return "not a websocket upgrade request"
    if (headers.get("Sec-WebSocket-Version") or "").strip() != "13":
        return "unsupported Sec-WebSocket-Version (13 is supported)"
    key = (headers.get("Sec-WebSocket-Key") or "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except ValueError:
        return "missing or malformed Sec-WebSocket-Key"
    return None


def handshake_response(key: str, subprotocol: str | None) -> bytes:
    """The 101 answer that opens the connection (the subprotocol header only when one was
    chosen: RFC 6455 forbids naming one the client did not offer)."""
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Accept: {accept_value(key)}"]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- frames (pure) -------------------------------------------------------------------------------

def apply_mask(data: bytes, mask: bytes) -> bytes:
    """XOR `data` with the repeated 4-byte `mask` (masking and unmasking are the same)."""
    if not data:
        return b""
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None) -> bytes:
    """One frame. Servers send `mask=None`; tests play the client with a 4-byte mask."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask is not None:
        return head + mask + apply_mask(payload, mask)
    return head + payload


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()[:123]


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """(code, reason) of a close frame's payload; (None, "") when it names no code."""
    if len(payload) < 2:
        return None, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode(errors="replace")


# -- the connection ------------------------------------------------------------------------------

class WebSocket:
    """A server-side WebSocket over an accepted socket whose handshake has been answered.

    `read` reads exact byte counts from the connection (an HTTP server's buffered rfile, which
    may already hold bytes past the request); `sock` is written to. `receive` is for one reader
    thread; `send` may be called from many threads (writes are serialized).
    """

    def __init__(self, read: Callable[[int], bytes], sock: socket.socket,
                 max_message: int = MAX_MESSAGE):
        self._read = read
        self.sock = sock
        self.max_message = max_message
        self._write_lock = threading.Lock()
        self.close_sent = False
        self.close_received = False
        self.close_code: int | None = None

    def _exactly(self, n: int) -> bytes:
        data = self._read(n) if n else b""
        if len(data) != n:
            raise ConnectionError("connection closed inside a websocket frame")
        return data

    def _frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._exactly(2)
        if b0 & 0x70:
            raise WebSocketError("reserved bits set without a negotiated extension")
        fin, opcode, masked, n = bool(b0 & 0x80), b0 & 0x0F, bool(b1 & 0x80), b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._exactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._exactly(8))[0]
        if not masked:
            raise WebSocketError("client frames must be masked")
        if opcode >= 0x8 and (n > 125 or not fin):
            raise WebSocketError("control frames are short and never fragmented")
        if n > self.max_message:
            raise WebSocketError("message too big", CLOSE_TOO_BIG)
        mask = self._exactly(4)
        return fin, opcode, apply_mask(self._exactly(n), mask)

    def receive(self) -> tuple[int, bytes] | None:
        """The next whole data message as (OP_TEXT or OP_BINARY, payload); None once the peer
        closed (its close frame is answered here) or the connection ended. Pings are answered
        on the way."""
        opcode, parts, size = None, [], 0
        while True:
            try:
                fin, op, payload = self._frame()
            except WebSocketError as err:
                self.close(err.code, str(err))
                return None
            except (ConnectionError, OSError, ValueError):
                self.close_received = True   # gone without a close frame
                return None
            if op == OP_PING:
                try:
                    self._send_frame(OP_PONG, payload)
                except (ConnectionError, OSError):
                    pass   # we closed already (or the peer is gone): nothing to answer
            elif op == OP_PONG:
                pass
            elif op == OP_CLOSE:
                self.close_received = True
                self.close_code, _ = parse_close(payload)
                self.close(self.close_code or CLOSE_NORMAL)
                return None
            elif op in DATA_OPCODES and opcode is None:
                opcode, parts, size = op, [payload], len(payload)
            elif op == OP_CONTINUATION and opcode is not None:
                parts.append(payload)
                size += len(payload)
            else:
                self.close(CLOSE_PROTOCOL_ERROR, f"unexpected opcode {op:#x}")
                return None
            if size > self.max_message:
                self.close(CLOSE_TOO_BIG, "message too big")
                return None
            if fin and opcode is not None and op < 0x8:
                return opcode, b"".join(parts)

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        with self._write_lock:
            if self.close_sent:
                raise ConnectionError("websocket is closed")
            if opcode == OP_CLOSE:
                self.close_sent = True
            self.sock.sendall(encode_frame(opcode, payload))

    def send(self, payload: bytes, opcode: int = OP_BINARY) -> None:
        """One unfragmented message; ConnectionError after close."""
        self._send_frame(opcode, payload)

    def ping(self, payload: bytes = b"") -> None:
        self._send_frame(OP_PING, payload)

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send our close frame (once); the peer's answer arrives through `receive`."""
        try:
            self._send_frame(OP_CLOSE, close_payload(code, reason))
        except (ConnectionError, OSError):
            pass


class MessageStream:
    """A WebSocket's binary messages read and written as one byte stream: SPDY tunnelled over
    WebSocket, as kubectl's port-forward does since 1.30 (`SPDY/3.1+portforward.k8s.io`), where
    message boundaries mean nothing. A spdy.ByteStream."""

    def __init__(self, ws: WebSocket):
        self.ws = ws
        self._pending = b""

    def read(self, n: int) -> bytes:
        while not self._pending:
            message = self.ws.receive()
            if message is None:
                return b""
            self._pending = message[1]
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    def write(self, data: bytes) -> None:
        self.ws.send(data)

    def close_write(self) -> None:
        self.ws.close()
