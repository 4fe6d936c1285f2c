"""Userspace proxier: round-robin and affinity as pure logic, portal rules, relays on loopback."""

from __future__ import annotations

import socket
import threading

import pytest

from testbed.agents.userspace import (
    INIT_JUMPS,
    LoadBalancerRR,
    TcpRelay,
    UdpRelay,
    UserspaceProxier,
    portal_rules,
    render_portals,
)
from testbed.proxy import restore
from testbed.proxy.fakes import FakeIptables
from testbed.proxy.model import ProxierSettings, ServicePort, ServicePortName

WEB = ServicePortName("default", "web", "http", "TCP")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lb(clock=None) -> LoadBalancerRR:
    return LoadBalancerRR(clock or Clock(), shuffle=lambda eps: None)


def test_round_robin_in_order_and_wraps():
    b = lb()
    b.update(WEB, ["10.0.1.5:80", "10.0.2.5:80", "10.0.3.5:80"], None)
    got = [b.next_endpoint(WEB, "10.0.9.9") for _ in range(6)]
    assert got == ["10.0.1.5:80", "10.0.2.5:80", "10.0.3.5:80"] * 2


def test_no_endpoints_or_unknown_service():
    b = lb()
    assert b.next_endpoint(WEB, "10.0.9.9") is None
    b.update(WEB, [], None)
    assert b.next_endpoint(WEB, "10.0.9.9") is None


def test_client_ip_affinity_sticks_until_timeout():
    clock = Clock()
    b = lb(clock)
    b.update(WEB, ["10.0.1.5:80", "10.0.2.5:80"], 10)
    first = b.next_endpoint(WEB, "10.0.9.9")
    assert {b.next_endpoint(WEB, "10.0.9.9") for _ in range(5)} == {first}
    other = b.next_endpoint(WEB, "10.0.9.8")
    assert other != first  # another client gets the next endpoint
    clock.now += 9
    assert b.next_endpoint(WEB, "10.0.9.9") == first  # use refreshes last_used
    clock.now += 10
    assert b.next_endpoint(WEB, "10.0.9.9") == "10.0.1.5:80"  # expired: round-robin again
    assert b.next_endpoint(WEB, "10.0.9.9", reset_affinity=True) == "10.0.2.5:80"


def test_affinity_dropped_with_its_endpoint_and_when_turned_off():
    b = lb()
    b.update(WEB, ["10.0.1.5:80", "10.0.2.5:80"], 10800)
    assert b.next_endpoint(WEB, "10.0.9.9") == "10.0.1.5:80"
    b.update(WEB, ["10.0.2.5:80", "10.0.3.5:80"], 10800)
    assert b.next_endpoint(WEB, "10.0.9.9") == "10.0.2.5:80"
    b.update(WEB, ["10.0.2.5:80", "10.0.3.5:80"], None)
    assert [b.next_endpoint(WEB, "10.0.9.9") for _ in range(2)] == ["10.0.3.5:80",
                                                                   "10.0.2.5:80"]


def test_unchanged_endpoints_keep_position_and_new_ones_are_shuffled():
    shuffled = []
    b = LoadBalancerRR(Clock(), shuffle=lambda eps: (eps.reverse(), shuffled.append(1)))
    b.update(WEB, ["a:1", "b:1"], None)
    assert b.next_endpoint(WEB, "c") == "b:1"
    b.update(WEB, ["b:1", "a:1"], None)  # same set: no reshuffle, index kept
    assert b.next_endpoint(WEB, "c") == "a:1" and len(shuffled) == 1


def test_portal_rules_in_upstream_form():
    svc = ServicePort(WEB, "10.96.0.50", 80)
    rules = portal_rules(svc, 36000, "192.168.0.2")
    assert rules == [
        ("nat", "KUBE-PORTALS-CONTAINER", "-m comment --comment default/web:http -p tcp -m tcp "
         "--dport 80 -d 10.96.0.50/32 -j REDIRECT --to-ports 36000".split()),
        ("nat", "KUBE-PORTALS-HOST", "-m comment --comment default/web:http -p tcp -m tcp "
         "--dport 80 -d 10.96.0.50/32 -j DNAT --to-destination 192.168.0.2:36000".split()),
    ]


def test_portal_rules_external_ip_and_nodeport():
    svc = ServicePort(ServicePortName("ns", "dns", "", "UDP"), "10.96.0.10", 53, node_port=30053,
                      external_ips=("203.0.113.7",))
    rules = [(c, " ".join(a)) for _, c, a in portal_rules(svc, 40000, "192.168.0.2",
                                                           listen_ip="192.168.0.2")]
    common = "-m comment --comment ns/dns -p udp -m udp --dport"
    dnat = "-j DNAT --to-destination 192.168.0.2:40000"
    assert rules == [
        ("KUBE-PORTALS-CONTAINER", f"{common} 53 -d 10.96.0.10/32 {dnat}"),
        ("KUBE-PORTALS-HOST", f"{common} 53 -d 10.96.0.10/32 {dnat}"),
        ("KUBE-PORTALS-CONTAINER", f"{common} 53 -d 203.0.113.7/32 -m physdev ! "
         f"--physdev-is-in {dnat}"),
        ("KUBE-PORTALS-CONTAINER", f"{common} 53 -d 203.0.113.7/32 -m addrtype --dst-type "
         f"LOCAL {dnat}"),
        ("KUBE-PORTALS-HOST", f"{common} 53 -d 203.0.113.7/32 -m addrtype --dst-type LOCAL "
         f"{dnat}"),
        ("KUBE-NODEPORT-CONTAINER", f"{common} 30053 {dnat}"),
        ("KUBE-NODEPORT-HOST", f"{common} 30053 {dnat}"),
        ("KUBE-NODEPORT-NON-LOCAL", f"{common} 40000 -m state --state NEW -j ACCEPT"),
    ]


def test_render_portals_declares_all_five_chains():
    text = render_portals([(ServicePort(WEB, "10.96.0.50", 80), 36000)], "192.168.0.2")
    tables = restore.parse(text)
    assert list(tables["nat"].chains) == ["KUBE-PORTALS-CONTAINER", "KUBE-PORTALS-HOST",
                                          "KUBE-NODEPORT-CONTAINER", "KUBE-NODEPORT-HOST"]
    assert list(tables["filter"].chains) == ["KUBE-NODEPORT-NON-LOCAL"]
    assert len(tables["nat"].chains["KUBE-PORTALS-HOST"].rules) == 1
    assert [r.args[-1] for r, _ in INIT_JUMPS] == [
        "KUBE-PORTALS-CONTAINER", "KUBE-PORTALS-HOST", "KUBE-NODEPORT-CONTAINER",
        "KUBE-NODEPORT-HOST", "KUBE-NODEPORT-NON-LOCAL"]


# ---- relays over loopback (no rules involved: clients connect to the proxy port directly)


@pytest.fixture
def tcp_servers():
    """Two TCP servers on 127.0.0.1 that answer each connection with their name + the request."""
    stop = threading.Event()
    socks, ports = [], []
    for name in ("one", "two"):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        srv.settimeout(0.2)
        socks.append(srv)
        ports.append(srv.getsockname()[1])

        def loop(srv=srv, name=name):
            while not stop.is_set():
                try:
                    conn, _ = srv.accept()
                except OSError:
                    continue
                with conn:
                    conn.settimeout(2)
                    data = conn.recv(100)
                    conn.sendall(name.encode() + b":" + data)

        threading.Thread(target=loop, daemon=True).start()
    yield ports
    stop.set()
    for s in socks:
        s.close()


def ask_tcp(port: int, payload: bytes = b"hi") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        out = b""
        while data := c.recv(100):
            out += data
        return out


def test_tcp_relay_round_robins_and_closes_without_endpoints(tcp_servers):
    b = lb()
    b.update(WEB, [f"127.0.0.1:{p}" for p in tcp_servers], None)
    relay = TcpRelay(WEB, b, socket.socket, "127.0.0.1").start()
    try:
        got = [ask_tcp(relay.port) for _ in range(4)]
        assert got == [b"one:hi", b"two:hi", b"one:hi", b"two:hi"]
        b.update(WEB, [], None)
        try:  # accepted, then closed (often a reset, as the request was never read)
            assert ask_tcp(relay.port) == b""
        except OSError:
            pass
    finally:
        relay.close()


def test_tcp_relay_skips_a_dead_endpoint(tcp_servers):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
    b = lb()
    b.update(WEB, [f"127.0.0.1:{dead.getsockname()[1]}", f"127.0.0.1:{tcp_servers[0]}"], None)
    relay = TcpRelay(WEB, b, socket.socket, "127.0.0.1").start()
    try:
        assert ask_tcp(relay.port) == b"one:hi"
    finally:
        relay.close()
        dead.close()


def test_udp_relay_per_client_upstream():
    dns = ServicePortName("default", "dns", "", "UDP")
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def loop():
        echo.settimeout(0.2)
        while not stop.is_set():
            try:
                data, peer = echo.recvfrom(100)
            except OSError:
                continue
            echo.sendto(b"echo:" + data, peer)

    threading.Thread(target=loop, daemon=True).start()
    b = lb()
    b.update(dns, [f"127.0.0.1:{echo.getsockname()[1]}"], None)
    relay = UdpRelay(dns, b, socket.socket, "127.0.0.1").start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(2)
    try:
        for q in (b"a", b"b"):
            client.sendto(q, ("127.0.0.1", relay.port))
            assert client.recvfrom(100)[0] == b"echo:" + q
    finally:
        stop.set()
        relay.close()
        client.close()
        echo.close()


def svc_obj(port: int = 80, affinity: bool = False) -> dict:
    spec = {"clusterIP": "10.96.0.50", "ports": [{"name": "http", "port": port}]}
    if affinity:
        spec["sessionAffinity"] = "ClientIP"
    return {"kind": "Service", "metadata": {"namespace": "default", "name": "web"}, "spec": spec}


def slice_obj(ports: list[int]) -> dict:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": "default", "name": "web-1",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "endpoints": [{"addresses": ["127.0.0.1"]}],
            "ports": [{"name": "http", "port": p} for p in ports]}


def test_userspace_proxier_opens_port_writes_portals_and_follows_changes(tcp_servers):
    fake = FakeIptables()
    p = UserspaceProxier(fake, ProxierSettings(node_name="w1", node_ip="192.168.0.2"),
                         listen_ip="127.0.0.1")
    try:
        p.service_changes.on_add(svc_obj())
        ep = {"kind": "EndpointSlice", "addressType": "IPv4",
              "metadata": {"namespace": "default", "name": "web-1",
                           "labels": {"kubernetes.io/service-name": "web"}},
              "endpoints": [{"addresses": ["127.0.0.1"]}],
              "ports": [{"name": "http", "port": tcp_servers[0]}]}
        p.endpoint_changes.on_add(ep)
        result = p.sync()
        assert result.ok, result.error
        proxy_port = p.open[WEB].relay.port
        assert fake.rules("nat", "KUBE-PORTALS-CONTAINER") == [
            f"-m comment --comment default/web:http -p tcp -m tcp --dport 80 -d 10.96.0.50/32 "
            f"-j DNAT --to-destination 127.0.0.1:{proxy_port}"]
        assert len([j for j in fake.jumps if j[1]]) == 2  # the two NodePort jumps appended
        assert ask_tcp(proxy_port) == b"one:hi"
        assert p.sync().skipped
        p.service_changes.on_update(svc_obj(), svc_obj(port=81))  # same socket, new portal
        assert p.sync().ok and p.open[WEB].relay.port == proxy_port
        assert "--dport 81" in fake.rules("nat", "KUBE-PORTALS-HOST")[0]
        p.service_changes.on_delete(svc_obj(port=81))
        assert p.sync().ok
        assert not p.open and fake.rules("nat", "KUBE-PORTALS-HOST") == []
        with pytest.raises(OSError):
            ask_tcp(proxy_port)
    finally:
        p.stop()
