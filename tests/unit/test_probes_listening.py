"""testbed.emu.probes.listening_ports: the TCP ports a namespace listens on, from /proc."""

from __future__ import annotations

import os
import socket

from testbed.emu.probes import listening_ports


def test_a_listening_socket_is_seen_and_a_connected_one_is_not():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    assert port not in listening_ports(os.getpid())
    server.listen()
    try:
        assert port in listening_ports(os.getpid())
        client = socket.create_connection(("127.0.0.1", port))
        client_port = client.getsockname()[1]
        assert client_port not in listening_ports(os.getpid())
        client.close()
    finally:
        server.close()
    assert port not in listening_ports(os.getpid())


def test_ipv6_listeners_count_too():
    server = socket.socket(socket.AF_INET6)
    try:
        server.bind(("::1", 0))
    except OSError:
        server.close()
        return     # no IPv6 loopback here: nothing to see
    server.listen()
    try:
        assert server.getsockname()[1] in listening_ports(os.getpid())
    finally:
        server.close()


def test_a_gone_process_listens_on_nothing():
    assert listening_ports(2 ** 22 + 1) == set()
