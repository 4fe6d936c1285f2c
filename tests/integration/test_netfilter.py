"""Root: the proxier's rules applied with the real iptables-restore and nft in a throwaway netns.

Each test gets a fresh network namespace held by `unshare --net sleep infinity` (pid kept,
ended by pid). Nothing touches the machine's own namespace; traffic stays inside the new one:
a veth pair inside it carries the node address and the "pod" addresses the servers listen on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

import pytest

from testbed.net.netfilter import IptablesBackend, NetfilterError, NftBackend, conntrack_flush
from testbed.net.netns import socket_in
from testbed.net.run import run
from testbed.proxy.model import ProxierSettings, mark_for_bit
from testbed.proxy.proxier import Proxier
from testbed.proxy.tracker import ConntrackFlush

NODE_IP = "192.168.0.2"
PODS = ("10.0.1.5", "10.0.2.5")
SETTINGS = ProxierSettings(node_name="w1", node_ip=NODE_IP, local_ips=(NODE_IP,),
                           masquerade_mark=mark_for_bit(14), nfacct_counters=frozenset(),
                           has_random_fully=True)


@pytest.fixture
def netns():
    """A fresh network namespace (pid of its holder) with lo up and a 'node' interface."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
    try:
        own = "/proc/self/ns/net"
        for _ in range(100):
            try:
                if os.stat(f"/proc/{holder.pid}/ns/net").st_ino != os.stat(own).st_ino:
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        else:
            raise RuntimeError("unshare did not enter a new netns")
        pid = holder.pid
        run(["ip", "link", "set", "lo", "up"], netns=pid)
        # no dummy module here: a veth pair with both ends inside the namespace
        run(["ip", "link", "add", "node0", "type", "veth", "peer", "name", "node0p"], netns=pid)
        run(["ip", "link", "set", "node0", "up"], netns=pid)
        run(["ip", "link", "set", "node0p", "up"], netns=pid)
        run(["ip", "addr", "add", f"{NODE_IP}/24", "dev", "node0"], netns=pid)
        for ip in PODS:
            run(["ip", "addr", "add", f"{ip}/32", "dev", "node0"], netns=pid)
        run(["ip", "route", "add", "default", "dev", "node0"], netns=pid)
        yield pid
    finally:
        holder.kill()
        holder.wait()


def svc(name: str, ip: str, port: int = 80, proto: str = "TCP") -> dict:
    return {"kind": "Service", "metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": ip, "ports": [{"name": "p", "port": port, "protocol": proto}]}}


def eps(name: str, ips: tuple[str, ...], port: int = 8080, proto: str = "TCP") -> dict:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": "default", "name": f"{name}-x",
                         "labels": {"kubernetes.io/service-name": name}},
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
            "ports": [{"name": "p", "port": port, "protocol": proto}]}


def serve(pid: int, ip: str, port: int, stop: threading.Event) -> socket.socket:
    """A TCP server in the namespace answering each connection with its own address."""
    srv = socket_in(pid)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ip, port))
    srv.listen(16)
    srv.settimeout(0.2)

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(ip.encode())
        srv.close()

    threading.Thread(target=loop, daemon=True).start()
    return srv


def ask(pid: int, ip: str, port: int) -> str:
    c = socket_in(pid)
    c.settimeout(3)
    try:
        c.connect((ip, port))
        return c.recv(100).decode()
    finally:
        c.close()


def load(p: Proxier, *objects: dict) -> None:
    for o in objects:
        (p.service_changes if o["kind"] == "Service" else p.endpoint_changes).on_add(o)


@pytest.fixture
def servers(netns):
    stop = threading.Event()
    for ip in PODS:
        serve(netns, ip, 8080, stop)
    yield
    stop.set()


def test_iptables_mode_applies_reads_back_and_routes(netns, servers):
    backend = IptablesBackend(netns)
    p = Proxier(backend, SETTINGS)
    load(p, svc("web", "10.96.0.10"), eps("web", PODS), svc("empty", "10.96.0.11"))
    result = p.sync()
    assert result.ok and result.full, result.error
    nat = backend.save("nat")
    assert ":KUBE-SERVICES" in nat and ":KUBE-SVC-" in nat and "-j KUBE-SEP-" in nat
    assert "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" \
        in nat
    assert "--random-fully" in nat
    seen = {ask(netns, "10.96.0.10", 80) for _ in range(30)}
    assert seen == set(PODS)
    with pytest.raises(ConnectionRefusedError):
        ask(netns, "10.96.0.11", 80)  # no endpoints: REJECT at once

    # partial sync: one endpoint goes; the other service is untouched
    p.endpoint_changes.on_update(eps("web", PODS), eps("web", PODS[:1]))
    result = p.sync()
    assert result.ok and not result.full, result.error
    assert {ask(netns, "10.96.0.10", 80) for _ in range(10)} == {PODS[0]}

    # restart: a new proxier on the same kernel state removes chains no longer wanted
    stale = {c for c in backend.nat_chains() if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))}
    fresh = Proxier(backend, SETTINGS)
    load(fresh, svc("empty", "10.96.0.11"))
    assert fresh.sync().ok
    left = {c for c in backend.nat_chains() if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))}
    assert stale and not left
    assert backend.save("nat").count("-j KUBE-SERVICES") == 2  # jump rules not duplicated


def test_nftables_mode_applies_table_and_routes(netns, servers):
    backend = NftBackend(netns)
    p = Proxier(backend, SETTINGS)
    load(p, svc("web", "10.96.0.10"), eps("web", PODS))
    assert p.sync().ok
    p.endpoint_changes.on_add(eps("web", PODS))  # a second apply replaces the table
    assert p.sync().ok
    table = backend.list_table()
    assert "table ip kube-proxy" in table and "map service-ips" in table
    assert "10.96.0.10 . tcp . 80 : goto service-" in table
    assert {ask(netns, "10.96.0.10", 80) for _ in range(30)} == set(PODS)


def test_failed_restore_names_the_line_and_next_sync_is_full(netns):
    backend = IptablesBackend(netns)
    with pytest.raises(NetfilterError, match=r"line 3: -A KUBE-NOPE -j NOWHERE"):
        backend.restore("*nat\n:KUBE-NOPE - [0:0]\n-A KUBE-NOPE -j NOWHERE\nCOMMIT\n")
    with pytest.raises(NetfilterError, match="line 1"):
        NftBackend(netns).restore("add rule ip nope nope drop\n")


def test_conntrack_flush_with_nothing_to_flush_is_fine(netns):
    assert conntrack_flush(ConntrackFlush("udp", "10.96.0.10", 53, "10.0.1.5"), netns) == 0


def udp_echo(pid: int, ip: str, port: int, stop: threading.Event) -> None:
    srv = socket_in(pid, socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((ip, port))
    srv.settimeout(0.2)

    def loop() -> None:
        while not stop.is_set():
            try:
                _, peer = srv.recvfrom(100)
            except OSError:
                continue
            srv.sendto(ip.encode(), peer)
        srv.close()

    threading.Thread(target=loop, daemon=True).start()


def test_udp_endpoint_removal_flushes_conntrack_so_next_datagram_moves(netns):
    stop = threading.Event()
    for ip in PODS:
        udp_echo(netns, ip, 5353, stop)
    try:
        p = Proxier(IptablesBackend(netns), SETTINGS)
        load(p, svc("dns", "10.96.0.10", 53, "UDP"), eps("dns", PODS, 5353, "UDP"))
        assert p.sync().ok
        client = socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM)
        client.settimeout(2)
        client.bind((NODE_IP, 40000))  # one source port: one conntrack entry, one backend

        def query() -> str:
            client.sendto(b"q", ("10.96.0.10", 53))
            return client.recvfrom(100)[0].decode()

        first = query()
        assert {query() for _ in range(5)} == {first}  # conntrack keeps the datagrams together
        p.endpoint_changes.on_update(eps("dns", PODS, 5353, "UDP"),
                                     eps("dns", tuple(ip for ip in PODS if ip != first),
                                         5353, "UDP"))
        result = p.sync()
        assert result.ok and result.flushed == 1, result
        assert query() != first
        client.close()
    finally:
        stop.set()


def test_jump_rules_are_read_back_exactly_so_never_duplicated(netns):
    from testbed.agents.userspace import INIT_JUMPS
    from testbed.proxy.iptables import JUMP_RULES

    backend = IptablesBackend(netns)
    for _ in range(2):
        backend.ensure_jump_rules(JUMP_RULES)
        backend.ensure_jump_rules([r for r, a in INIT_JUMPS if a], append=True)
    for rule in (*JUMP_RULES, *(r for r, _ in INIT_JUMPS if _)):
        assert backend.chain_rules(rule.table, rule.chain).count(rule.args) == 1, rule
    # prepended in order, so the last of a chain's rules comes first (as upstream's EnsureRule)
    nat_output = backend.chain_rules("nat", "OUTPUT")
    assert nat_output[0][-1] == "KUBE-SERVICES"
    assert backend.chain_rules("filter", "INPUT")[0][-1] == "KUBE-FIREWALL"
