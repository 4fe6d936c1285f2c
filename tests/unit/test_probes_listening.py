"""testbed.emu.probes.listening_ports and tcp_sockets: the TCP ports a namespace listens on,
and its other TCP sockets, from /proc."""

from __future__ import annotations

import os
import socket

import pytest

from testbed.emu.probes import listening_ports, tcp_sockets


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
    except OSError as err:
        server.close()
        pytest.skip(f"no IPv6 loopback here: {err}")
    server.listen()
    try:
        assert server.getsockname()[1] in listening_ports(os.getpid())
    finally:
        server.close()


def test_a_gone_process_listens_on_nothing():
    assert listening_ports(2 ** 22 + 1) == set()


def test_tcp_sockets_are_the_connected_ones_with_both_ends():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        assert not any(local == ("127.0.0.1", port) for local, _ in tcp_sockets(os.getpid()))
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        ends = (client.getsockname(), ("127.0.0.1", port))
        assert ends in tcp_sockets(os.getpid()) and ends[::-1] in tcp_sockets(os.getpid())
        client.close()
        accepted.close()
    finally:
        server.close()
    assert tcp_sockets(2 ** 22 + 1) == set()


def test_a_dual_stack_servers_sockets_are_seen_with_ipv4_addresses():
    """A server on [::] (Go's default, agnhost's) takes IPv4 connections on sockets of the tcp6
    table, with IPv4-mapped addresses: they are the same connections as seen from the client."""
    server = socket.socket(socket.AF_INET6)
    try:
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server.bind(("::", 0))
    except OSError as err:
        server.close()
        pytest.skip(f"no dual-stack sockets here: {err}")
    server.listen()
    port = server.getsockname()[1]
    try:
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        ends = (client.getsockname(), ("127.0.0.1", port))
        assert ends in tcp_sockets(os.getpid())           # the client's, from tcp
        assert ends[::-1] in tcp_sockets(os.getpid())     # the server's, from tcp6, mapped
        client.close()
        accepted.close()
    finally:
        server.close()


def test_an_ipv6_connection_keeps_its_ipv6_addresses():
    server = socket.socket(socket.AF_INET6)
    try:
        server.bind(("::1", 0))
    except OSError as err:
        server.close()
        pytest.skip(f"no IPv6 loopback here: {err}")
    server.listen()
    port = server.getsockname()[1]
    try:
        client = socket.create_connection(("::1", port))
        accepted, _ = server.accept()
        assert (("::1", client.getsockname()[1]), ("::1", port)) in tcp_sockets(os.getpid())
        client.close()
        accepted.close()
    finally:
        server.close()
