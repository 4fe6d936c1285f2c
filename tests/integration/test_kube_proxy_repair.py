"""Root: kube-proxy repairs what another program did to its rules, as upstream's does.

Upstream's e2e "should recreate its iptables rules if they are deleted": flush KUBE-SERVICES
on a node, change an EndpointSlice so kube-proxy syncs, and the chain is back and the node's
pods reach the ClusterIP again (iptables mode writes the top-level chains whole on every sync).
In nftables mode partial syncs touch only changed elements, so a flushed `service-ips` map
(upstream's name for the map of ClusterIPs) and a deleted service chain come back at the next
full sync, which `ControlPlane.force_full_sync` asks for (SIGUSR1) instead of waiting an hour.
Commands run inside the worker's network namespace (`run(..., netns=PID)` enters it with
nsenter), as `iptables` on the node would.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from testbed.emu.rundir import agent_log, read_proxy_status
from testbed.net.netns import socket_in
from testbed.net.run import run

from .test_kube_proxy import WEB, eventually, pod, service, tcp, topology_file


def answers(cluster, src: str, svc: str, port: int = 80) -> bool:
    """Whether one TCP connection from pod `src` to the ClusterIP of `svc` is accepted."""
    sock = socket_in(cluster.find_pod(src).pid)
    sock.settimeout(1.0)
    try:
        sock.connect((str(cluster.service_ip(svc)), port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def on_node(cluster, node: str, *argv: str) -> str:
    return run(list(argv), netns=cluster.network.pid(node)).stdout


def proxy_status(cluster, node: str):
    return read_proxy_status(cluster.record.directory, node)


@contextlib.contextmanager
def cluster_in(mode: str, tmp: Path):
    """A two-node cluster in `mode`: web on both workers, other on both (other-1 with a
    readiness file in tmp/ready), and a tester pod on w1; (cluster, readiness directory)."""
    from testbed.emu.cluster import Cluster
    from testbed.spec.topology import load_topology

    ready = tmp / "ready"
    ready.mkdir()
    cluster = Cluster(load_topology(topology_file(tmp, mode))).up()
    try:
        objs = [pod("web-1", "w1", WEB), pod("web-2", "w2", WEB),
                pod("tester", "w1", {"app": "tester"}),
                pod("other-1", "w2", {"app": "other"}, ready / "other-1"),
                pod("other-2", "w1", {"app": "other"}),
                service("web", WEB, [tcp(80)]), service("other", {"app": "other"}, [tcp(80)])]
        cluster.apply(objs)
        cluster.wait_ready(objs, timeout=60)
        eventually(lambda: answers(cluster, "tester", "web") and answers(cluster, "tester", "other"))
        yield cluster, ready
    finally:
        cluster.down()


@pytest.fixture(scope="module")
def iptables_cluster(tmp_path_factory):
    with cluster_in("iptables", tmp_path_factory.mktemp("kpr-ipt")) as found:
        yield found


@pytest.fixture(scope="module")
def nftables_cluster(tmp_path_factory):
    with cluster_in("nftables", tmp_path_factory.mktemp("kpr-nft")) as found:
        yield found


def test_flushed_kube_services_is_back_at_the_next_sync(iptables_cluster):
    cluster, ready = iptables_cluster
    rules = on_node(cluster, "w1", "iptables", "-t", "nat", "-S", "KUBE-SERVICES").splitlines()
    assert len(rules) > 3  # -N, web's and other's ClusterIP, the NodePorts jump
    on_node(cluster, "w1", "iptables", "-t", "nat", "-F", "KUBE-SERVICES")
    assert on_node(cluster, "w1", "iptables", "-t", "nat", "-S", "KUBE-SERVICES").splitlines() \
        == ["-N KUBE-SERVICES"]
    assert not answers(cluster, "tester", "web")  # nothing catches the ClusterIP now
    syncs = proxy_status(cluster, "w1").syncs
    # an EndpointSlice change that leaves KUBE-SERVICES as it was (other-1 turns unready,
    # other-2 still serves): kube-proxy syncs, partially, and writes the chain whole anyway
    Path(ready / "other-1").unlink()
    eventually(lambda: proxy_status(cluster, "w1").syncs > syncs, timeout=30)
    assert not proxy_status(cluster, "w1").last["full"]
    eventually(lambda: on_node(cluster, "w1", "iptables", "-t", "nat", "-S",
                               "KUBE-SERVICES").splitlines() == rules, timeout=30)
    eventually(lambda: answers(cluster, "tester", "web"), timeout=15)
    assert answers(cluster, "tester", "other")
    (ready / "other-1").touch()


def test_flushed_service_map_and_deleted_chain_are_back_after_a_full_sync(nftables_cluster):
    cluster, _ = nftables_cluster
    listed = on_node(cluster, "w1", "nft", "list", "map", "ip", "kube-proxy", "service-ips")
    web_ip = str(cluster.service_ip("web"))
    entry = next(line for line in listed.replace(",", "\n").splitlines() if web_ip in line)
    chain = entry.split("goto")[1].split()[0].strip(" ,}")
    assert chain.startswith("service-")
    on_node(cluster, "w1", "nft", "flush", "map", "ip", "kube-proxy", "service-ips")
    on_node(cluster, "w1", "nft", "delete", "chain", "ip", "kube-proxy", chain)
    assert web_ip not in on_node(cluster, "w1", "nft", "list", "map", "ip", "kube-proxy",
                                 "service-ips")
    assert not answers(cluster, "tester", "web")
    before = proxy_status(cluster, "w1")
    asked = time.time()
    cluster.cp.force_full_sync("w1", timeout=30)
    after = proxy_status(cluster, "w1")
    assert after.full_syncs > before.full_syncs and after.last_full >= asked
    listed = on_node(cluster, "w1", "nft", "list", "map", "ip", "kube-proxy", "service-ips")
    assert web_ip in listed and str(cluster.service_ip("other")) in listed
    on_node(cluster, "w1", "nft", "list", "chain", "ip", "kube-proxy", chain)  # exists again
    eventually(lambda: answers(cluster, "tester", "web"), timeout=15)
    log = agent_log(cluster.record.directory, "kube-proxy-w1").read_text()
    assert "full sync requested (SIGUSR1)" in log


def test_force_full_sync_names_a_node_without_kube_proxy(iptables_cluster):
    from testbed.emu.controlplane import ControlPlaneError

    cluster, _ = iptables_cluster
    with pytest.raises(ControlPlaneError, match="no running kube-proxy on master"):
        cluster.cp.force_full_sync("master", timeout=2)
