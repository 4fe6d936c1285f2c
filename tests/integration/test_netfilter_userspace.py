"""Root: userspace mode in a throwaway netns: portal rules steer a ClusterIP to the relay.

Two TCP servers on 127.0.0.2 and 127.0.0.3 inside the namespace are the endpoints; a client
there connects to the ClusterIP, KUBE-PORTALS-HOST DNATs it to the node address and the proxy
port, and the relay (threads in this process, sockets made in the namespace) picks the server.
"""

from __future__ import annotations

import functools
import socket
import threading

import pytest

from testbed.agents.userspace import UserspaceProxier
from testbed.net.netfilter import IptablesBackend
from testbed.net.netns import socket_in
from testbed.proxy.model import ProxierSettings
from tests.integration.test_netfilter import NODE_IP, ask, netns, serve  # noqa: F401

ENDPOINTS = ("127.0.0.2", "127.0.0.3")
SETTINGS = ProxierSettings(node_name="w1", node_ip=NODE_IP)


def svc(affinity: bool = False) -> dict:
    spec = {"clusterIP": "10.96.0.50", "ports": [{"name": "http", "port": 80}]}
    if affinity:
        spec["sessionAffinity"] = "ClientIP"
    return {"kind": "Service", "metadata": {"namespace": "default", "name": "web"}, "spec": spec}


def slice_(ips: tuple[str, ...]) -> dict:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": "default", "name": "web-1",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "endpoints": [{"addresses": [ip]} for ip in ips],
            "ports": [{"name": "http", "port": 8080}]}


@pytest.fixture
def proxier(netns):  # noqa: F811 - the fixture imported above
    stop = threading.Event()
    for ip in ENDPOINTS:
        serve(netns, ip, 8080, stop)
    p = UserspaceProxier(IptablesBackend(netns), SETTINGS,
                         socket_factory=functools.partial(socket_in, netns))
    yield p
    p.stop()
    stop.set()


def test_userspace_relays_round_robin_and_honours_affinity(netns, proxier):  # noqa: F811
    p = proxier
    p.service_changes.on_add(svc())
    p.endpoint_changes.on_add(slice_(ENDPOINTS))
    result = p.sync()
    assert result.ok, result.error
    port = p.open[next(iter(p.open))].relay.port
    nat = IptablesBackend(netns).save("nat")
    assert (f"-A KUBE-PORTALS-HOST -d 10.96.0.50/32 -p tcp -m comment --comment "
            f"\"default/web:http\" -m tcp --dport 80 -j DNAT --to-destination {NODE_IP}:{port}"
            in nat)  # iptables-save's order of the same rule
    assert "-A OUTPUT -m comment --comment \"handle ClusterIPs; NOTE: this must be before " \
        "the NodePort rules\" -j KUBE-PORTALS-HOST" in nat
    got = [ask(netns, "10.96.0.50", 80) for _ in range(4)]
    assert set(got) == set(ENDPOINTS) and got[0] == got[2] and got[1] == got[3]

    p.service_changes.on_update(svc(), svc(affinity=True))
    assert p.sync().ok
    assert len({ask(netns, "10.96.0.50", 80) for _ in range(6)}) == 1

    p.service_changes.on_update(svc(affinity=True), svc())
    assert p.sync().ok
    assert {ask(netns, "10.96.0.50", 80) for _ in range(4)} == set(ENDPOINTS)


def test_userspace_dead_proxy_breaks_service_rules_stay(netns, proxier):  # noqa: F811
    p = proxier
    p.service_changes.on_add(svc())
    p.endpoint_changes.on_add(slice_(ENDPOINTS))
    assert p.sync().ok
    assert ask(netns, "10.96.0.50", 80) in ENDPOINTS
    p.stop()  # kube-proxy dies: sockets gone, portal rules left behind
    assert "KUBE-PORTALS-HOST -d 10.96.0.50/32" in IptablesBackend(netns).save("nat")
    with pytest.raises(ConnectionRefusedError):
        ask(netns, "10.96.0.50", 80)
    # a new kube-proxy takes over: fresh proxy port, rules rewritten, service back
    again = UserspaceProxier(IptablesBackend(netns), SETTINGS,
                             socket_factory=functools.partial(socket_in, netns))
    try:
        again.service_changes.on_add(svc())
        again.endpoint_changes.on_add(slice_(ENDPOINTS))
        assert again.sync().ok
        assert ask(netns, "10.96.0.50", 80) in ENDPOINTS
        assert IptablesBackend(netns).save("nat").count("-A KUBE-PORTALS-HOST") == 1
    finally:
        again.stop()


def test_userspace_udp_through_portal(netns, proxier):  # noqa: F811
    from tests.integration.test_netfilter import udp_echo

    stop = threading.Event()
    udp_echo(netns, "127.0.0.2", 5353, stop)
    p = proxier
    dns = {"kind": "Service", "metadata": {"namespace": "kube-system", "name": "dns"},
           "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 53, "protocol": "UDP"}]}}
    sl = {"kind": "EndpointSlice", "addressType": "IPv4",
          "metadata": {"namespace": "kube-system", "name": "dns-1",
                       "labels": {"kubernetes.io/service-name": "dns"}},
          "endpoints": [{"addresses": ["127.0.0.2"]}],
          "ports": [{"port": 5353, "protocol": "UDP"}]}
    p.service_changes.on_add(dns)
    p.endpoint_changes.on_add(sl)
    assert p.sync().ok
    client = socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(2)
    try:
        client.sendto(b"q", ("10.96.0.10", 53))
        data, peer = client.recvfrom(100)
        assert data == b"127.0.0.2" and peer == ("10.96.0.10", 53)
    finally:
        client.close()
        stop.set()
