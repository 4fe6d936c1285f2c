"""The server side of SPDY/3.1 (testbed/net/spdy.py): dictionary, header blocks, frames, session."""

from __future__ import annotations

import socket
import struct
import threading
import zlib

import pytest

from testbed.net import spdy
from testbed.net.spdy import (
    FLAG_FIN,
    GOAWAY,
    PING,
    RST_STREAM,
    SYN_REPLY,
    SYN_STREAM,
    HeaderCompressor,
    HeaderDecompressor,
    Session,
    SocketStream,
    SpdyError,
    control_frame,
    data_frame,
    read_frame,
)


def test_header_dictionary_is_spdy3s():
    # 1,423 bytes whose Adler-32 is the dictionary id that Go's zlib reader checks
    # (byte-compared once with golang.org/x/net/spdy's dictionary.go)
    d = spdy.HEADER_DICTIONARY
    assert len(d) == 1423 and zlib.adler32(d) == 0xE3C6A7C2
    assert d.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert b"\x00\x00\x00\x06200 OK\x00\x00\x00\x07version" in d
    assert d.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


def test_header_block_round_trip_and_its_rules():
    headers = {"streamtype": ["stdout"], "x": ["a", "b"]}
    block = spdy.encode_header_block(headers)
    assert block.startswith(struct.pack("!I", 2) + struct.pack("!I", 10) + b"streamtype")
    assert b"a\x00b" in block
    assert spdy.decode_header_block(block) == headers
    with pytest.raises(SpdyError):
        spdy.decode_header_block(block[:-1])
    upper = struct.pack("!II", 1, 1) + b"X" + struct.pack("!I", 1) + b"v"
    with pytest.raises(SpdyError):
        spdy.decode_header_block(upper)
    twice = struct.pack("!I", 2) + 2 * (struct.pack("!I", 1) + b"x" + struct.pack("!I", 1) + b"v")
    with pytest.raises(SpdyError):
        spdy.decode_header_block(twice)


def test_header_compression_is_one_stream_per_direction_primed_with_the_dictionary():
    out, back = HeaderCompressor(), HeaderDecompressor()
    first = out.compress({"streamtype": ["error"], "port": ["80"]})
    # zlib header with FDICT set and the dictionary's id, as Go's zlib.NewReaderDict expects
    assert first[1] & 0x20 and first[2:6] == struct.pack("!I", zlib.adler32(spdy.HEADER_DICTIONARY))
    second = out.compress({"streamtype": ["data"], "port": ["80"]})
    assert first.endswith(b"\x00\x00\xff\xff") and second.endswith(b"\x00\x00\xff\xff")
    assert back.decompress(first) == {"streamtype": ["error"], "port": ["80"]}
    assert back.decompress(second) == {"streamtype": ["data"], "port": ["80"]}
    with pytest.raises(SpdyError):   # the second block alone means nothing without the first
        HeaderDecompressor().decompress(second)


def test_frames():
    ctl = control_frame(PING, 0, struct.pack("!I", 7))
    assert ctl == b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x07"
    data = data_frame(5, b"hi", FLAG_FIN)
    assert data == b"\x00\x00\x00\x05\x01\x00\x00\x02hi"
    buffer = bytearray(ctl + data)

    def read_exact(n):
        taken = bytes(buffer[:n])
        del buffer[:n]
        return taken

    assert read_frame(read_exact) == spdy.Frame(PING, 0, struct.pack("!I", 7))
    assert read_frame(read_exact) == spdy.Frame(0, FLAG_FIN, b"hi", 5)
    with pytest.raises(SpdyError):
        read_frame(lambda n: b"\x80\x02\x00\x06\x00\x00\x00\x00"[:n])   # SPDY/2


class Client:
    """The client end of a session, written from the frame layout (as spdystream does)."""

    def __init__(self, sock: socket.socket):
        self.sock, self.compressor, self.decompressor = sock, HeaderCompressor(), HeaderDecompressor()
        self.reader = sock.makefile("rb")

    def syn_stream(self, stream_id: int, headers: dict, flags: int = 0) -> None:
        payload = struct.pack("!IIBB", stream_id, 0, 0, 0) + self.compressor.compress(headers)
        self.sock.sendall(control_frame(SYN_STREAM, flags, payload))

    def frame(self) -> spdy.Frame:
        def exactly(n):
            data = self.reader.read(n)
            assert len(data) == n, "connection closed"
            return data
        frame = read_frame(exactly)
        if frame.kind == SYN_REPLY:
            self.decompressor.decompress(frame.payload[4:])
        return frame


@pytest.fixture
def session():
    """(Session serving in a thread, Client, accepted streams)."""
    server, client = socket.socketpair()
    accepted: list[spdy.Stream] = []

    def on_stream(stream):
        accepted.append(stream)
        return stream.header("streamtype") != "refused"

    reader = server.makefile("rb")
    s = Session(SocketStream(reader.read, server), on_stream)
    thread = threading.Thread(target=s.serve, daemon=True)
    thread.start()
    client.settimeout(5)
    yield s, Client(client), accepted
    s.close()
    client.shutdown(socket.SHUT_RDWR)   # close() alone waits for the makefile's reference
    thread.join(5)
    client.close()
    server.close()


def test_streams_are_replied_to_carry_data_and_end(session):
    s, client, accepted = session
    client.syn_stream(1, {"streamtype": ["stdin"]})
    reply = client.frame()
    assert reply.kind == SYN_REPLY and spdy.stream_id_of(reply.payload) == 1
    assert accepted[0].header("streamType") == "stdin"
    client.sock.sendall(data_frame(1, b"abc") + data_frame(1, b"def", FLAG_FIN))
    assert accepted[0].read() == b"abc" and accepted[0].read() == b"def"
    assert accepted[0].read() == b""
    accepted[0].write(b"x" * (spdy.MAX_DATA + 1))
    accepted[0].close()
    frames = [client.frame() for _ in range(3)]
    assert [(f.stream_id, len(f.payload), f.flags) for f in frames] == \
        [(1, spdy.MAX_DATA, 0), (1, 1, 0), (1, 0, FLAG_FIN)]
    assert 1 not in s.streams   # both halves closed: forgotten (a long port-forward opens many)


def test_refused_and_reset_streams(session):
    s, client, accepted = session
    client.syn_stream(1, {"streamtype": ["refused"]})
    rst = client.frame()
    assert rst.kind == RST_STREAM and struct.unpack("!II", rst.payload) == (1, spdy.CANCEL)
    client.syn_stream(3, {"streamtype": ["data"]})
    assert client.frame().kind == SYN_REPLY
    client.sock.sendall(control_frame(RST_STREAM, 0, struct.pack("!II", 3, spdy.CANCEL)))
    assert accepted[1].read() == b""
    with pytest.raises(ConnectionError):
        accepted[1].write(b"late")


def test_pings_from_the_client_are_echoed(session):
    s, client, accepted = session
    client.sock.sendall(control_frame(PING, 0, struct.pack("!I", 2))    # even: not the client's
                        + control_frame(PING, 0, struct.pack("!I", 1)))
    assert client.frame() == spdy.Frame(PING, 0, struct.pack("!I", 1))


def test_close_says_goaway_with_the_last_stream(session):
    s, client, accepted = session
    client.syn_stream(1, {"streamtype": ["error"]})
    client.syn_stream(3, {"streamtype": ["stdout"]}, FLAG_FIN)
    client.frame(), client.frame()
    assert accepted[1].read() == b""   # opened with FIN: nothing will come
    s.close()
    goaway = client.frame()
    assert goaway.kind == GOAWAY and struct.unpack("!II", goaway.payload) == (3, spdy.GOAWAY_OK)
    assert client.reader.read(1) == b""   # and our direction of the connection is closed


def test_the_end_of_the_connection_ends_every_stream(session):
    s, client, accepted = session
    client.syn_stream(1, {"streamtype": ["stdin"]})
    client.frame()
    client.sock.shutdown(socket.SHUT_WR)
    assert accepted[0].read() == b""
    assert s.ended.wait(5)


def test_a_bad_header_block_ends_the_session(session):
    s, client, accepted = session
    client.sock.sendall(control_frame(SYN_STREAM, 0, struct.pack("!IIBB", 1, 0, 0, 0) + b"junk"))
    goaway = client.frame()
    assert goaway.kind == GOAWAY and struct.unpack("!II", goaway.payload)[1] == \
        spdy.GOAWAY_PROTOCOL_ERROR
    assert s.ended.wait(5) and not accepted


def test_a_reader_that_stops_never_blocks_the_frame_loop(session):
    s, client, accepted = session
    client.syn_stream(1, {"streamtype": ["stdin"]})
    client.syn_stream(3, {"streamtype": ["resize"]})
    client.frame(), client.frame()
    accepted[0].stop_reading()
    client.sock.sendall(b"".join(data_frame(1, b"z") for _ in range(spdy.QUEUE_FRAMES + 10))
                        + data_frame(3, b"still here"))
    assert accepted[1].read() == b"still here"
