"""The loopback forwarder kubectl reaches a cluster through: bytes both ways, half-closes,
and only root or the user who started the cluster let in (no root needed to test)."""

from __future__ import annotations

import os
import socket
import threading
import urllib.error
import urllib.request

import pytest

from testbed.net.forward import UnixForwarder, peer_uid


@pytest.fixture
def echo_socket(tmp_path):
    """A Unix socket server that echoes what it gets, upper-cased, until the client half-closes."""
    path = str(tmp_path / "echo.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(16)

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            conn.sendall(data.upper())
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield path
    server.close()


def test_bytes_travel_both_ways_with_half_close(echo_socket):
    forward = UnixForwarder(echo_socket, uids=frozenset({os.geteuid()})).start()
    try:
        with socket.create_connection(("127.0.0.1", forward.port), timeout=5) as client:
            client.sendall(b"hello " * 10000)
            client.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := client.recv(65536):
                reply += chunk
        assert reply == b"HELLO " * 10000
    finally:
        forward.stop()


def test_other_users_get_a_403_status(echo_socket):
    forward = UnixForwarder(echo_socket, uids=frozenset({os.geteuid() + 12345})).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{forward.url}/api", timeout=5)
        assert err.value.code == 403
        assert b"open to root and to the user who started it" in err.value.read()
    finally:
        forward.stop()


def test_peer_uid_reads_the_kernels_socket_table():
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        try:
            assert peer_uid(client.getsockname()) == os.geteuid()
            assert peer_uid(("127.0.0.1", 1)) is None
        finally:
            client.close()
