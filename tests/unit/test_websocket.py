"""The server side of WebSocket (testbed/net/websocket.py): handshake values, frames, messages."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from testbed.net import websocket as ws
from testbed.net.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    MessageStream,
    WebSocket,
    encode_frame,
)

MASK = b"\x01\x02\x03\x04"


class Headers(dict):
    """The little of email.message.Message that the handshake reads."""

    def get_all(self, name, failobj=None):
        value = self.get(name)
        return failobj if value is None else [value]


def test_accept_value_is_rfc_6455s_example():
    assert ws.accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_subprotocol_choice_follows_the_clients_order():
    offered = ws.offered_subprotocols(["v5.channel.k8s.io, v4.channel.k8s.io", "channel.k8s.io"])
    assert offered == ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"]
    assert ws.choose_subprotocol(offered, ["channel.k8s.io", "v4.channel.k8s.io"]) == \
        "v4.channel.k8s.io"
    assert ws.choose_subprotocol(["x"], ["channel.k8s.io"]) is None


def test_handshake_problems_and_answer():
    good = Headers({"Upgrade": "websocket", "Connection": "keep-alive, Upgrade",
                    "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert ws.handshake_problem(good) is None
    assert "Version" in ws.handshake_problem(Headers(good, **{"Sec-WebSocket-Version": "8"}))
    assert "Key" in ws.handshake_problem(Headers(good, **{"Sec-WebSocket-Key": "short"}))
    assert ws.handshake_problem(Headers(good, Upgrade="SPDY/3.1")) is not None
    answer = ws.handshake_response("dGhlIHNhbXBsZSBub25jZQ==", "v5.channel.k8s.io").decode()
    assert answer.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    assert "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer
    assert "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n" in answer and answer.endswith("\r\n\r\n")
    assert "Sec-WebSocket-Protocol" not in ws.handshake_response("a", None).decode()


@pytest.mark.parametrize("size,header", [(0, b"\x82\x00"), (125, b"\x82\x7d"),
                                         (126, b"\x82\x7e\x00\x7e"),
                                         (65536, b"\x82\x7f" + struct.pack("!Q", 65536))])
def test_payload_lengths(size, header):
    frame = encode_frame(OP_BINARY, b"x" * size)
    assert frame[:len(header)] == header and len(frame) == len(header) + size


def test_masking_is_its_own_inverse():
    data = bytes(range(256)) * 3 + b"tail"
    assert ws.apply_mask(ws.apply_mask(data, MASK), MASK) == data
    assert ws.apply_mask(b"\x00\x00\x00\x00\x00", MASK) == MASK + MASK[:1]


@pytest.fixture
def pair():
    """(server WebSocket, the client's socket) over a socketpair."""
    server, client = socket.socketpair()
    reader = server.makefile("rb")
    client.settimeout(5)
    yield WebSocket(reader.read, server), client
    for s in (server, client):
        s.close()


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """A server frame as the client reads it (never masked)."""
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "connection closed"
            data += chunk
        return data
    b0, b1 = exactly(2)
    assert not b1 & 0x80, "server frames are not masked"
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", exactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exactly(8))[0]
    return b0 & 0x0F, exactly(n)


def test_fragmented_message_with_a_ping_between(pair):
    server, client = pair
    client.sendall(encode_frame(OP_TEXT, b"hel", fin=False, mask=MASK)
                   + encode_frame(OP_PING, b"are you there", mask=MASK)
                   + encode_frame(OP_CONTINUATION, b"lo", fin=False, mask=MASK)
                   + encode_frame(OP_CONTINUATION, b"!", mask=MASK))
    assert server.receive() == (OP_TEXT, b"hello!")
    assert _read_frame(client) == (OP_PONG, b"are you there")


def test_send_and_close_handshake(pair):
    server, client = pair
    server.send(b"\x01data")
    assert _read_frame(client) == (OP_BINARY, b"\x01data")
    client.sendall(encode_frame(OP_CLOSE, struct.pack("!H", 1000), mask=MASK))
    assert server.receive() is None
    assert server.close_received and server.close_code == 1000
    opcode, payload = _read_frame(client)
    assert opcode == OP_CLOSE and ws.parse_close(payload)[0] == 1000
    with pytest.raises(ConnectionError):
        server.send(b"after close")


def test_unmasked_client_frame_is_a_protocol_error(pair):
    server, client = pair
    client.sendall(encode_frame(OP_BINARY, b"plain"))
    assert server.receive() is None
    opcode, payload = _read_frame(client)
    assert opcode == OP_CLOSE and ws.parse_close(payload)[0] == ws.CLOSE_PROTOCOL_ERROR


def test_end_of_connection_is_the_end_of_messages(pair):
    server, client = pair
    client.sendall(encode_frame(OP_BINARY, b"abc", mask=MASK)[:4])   # cut inside a frame
    client.shutdown(socket.SHUT_WR)
    assert server.receive() is None and server.close_received


def test_message_stream_ignores_message_boundaries(pair):
    server, client = pair
    client.sendall(encode_frame(OP_BINARY, b"abc", mask=MASK)
                   + encode_frame(OP_BINARY, b"defgh", mask=MASK))
    stream = MessageStream(server)
    assert stream.read(2) == b"ab" and stream.read(10) == b"c" and stream.read(4) == b"defg"
    stream.write(b"out")
    assert _read_frame(client) == (OP_BINARY, b"out")
    assert stream.read(10) == b"h"
    client.shutdown(socket.SHUT_WR)
    assert stream.read(1) == b""


def test_concurrent_senders_never_interleave_frames(pair):
    server, client = pair
    payloads = [bytes([n]) * 70000 for n in range(8)]
    threads = [threading.Thread(target=server.send, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    got = sorted(_read_frame(client)[1] for _ in payloads)
    for t in threads:
        t.join()
    assert got == sorted(payloads)


def test_a_ping_after_our_close_is_not_answered_and_raises_nothing(pair):
    server, client = pair
    server.close()
    assert _read_frame(client)[0] == ws.OP_CLOSE
    client.sendall(encode_frame(OP_PING, b"late", mask=MASK)
                   + encode_frame(OP_CLOSE, struct.pack("!H", 1000), mask=MASK))
    assert server.receive() is None      # the peer's close ends it; the late ping did not raise
