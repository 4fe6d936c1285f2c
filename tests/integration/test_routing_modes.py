"""The routing modes on real clusters: host-gw (the article's shared LAN), vxlan (the routed
two-node topology) and bgp (the shared LAN, where a silent peer is noticed by its hold timer).

Each mode: pods reach each other across nodes and the world outside; the gateway router holds
no pod route (host-gw, vxlan) or exactly the ones bird learned (bgp). flannel's modes: a Node
object created through the API (a node joining, with flannel's annotations) is routed on
every node, the master included, and unrouted when deleted; a killed flanneld leaves its
routes, misses what happens meanwhile and catches up when restarted; the pods' traffic to the
outside is masqueraded by FLANNEL-POSTRTG. vxlan: a capture on a node's uplink sees UDP 8472
and never a bare pod address, pods and cbr0 have MTU 1450, the Node carries flannel.1's MAC.
bgp: killing a node's bird withdraws its route and a restart restores it, a node whose link
goes silent is withdrawn after the hold timer and not before, the gateway's own bird takes its
routes with it, and `inspect: {bgp: ...}` shows the sessions.
"""

from __future__ import annotations

import json
import time
from ipaddress import IPv4Address, IPv4Network

import pytest

from testbed.api.manifests import load_manifests
from testbed.emu import faults, rundir
from testbed.emu.capture import capture_while, routes_to
from testbed.emu.cluster import Cluster
from testbed.emu.probes import probe_icmp
from testbed.net.run import run
from testbed.routing import bird, flannel
from testbed.spec.topology import PodNetworkSpec, load_topology, with_pod_network

from .conftest import SCENARIOS, TOPOLOGIES, wait_for

# mode -> (topology, manifests, a pod on the first worker, a pod on the second)
MODES = {
    "host-gw": ("article.yaml", "pods-node1-node2.yaml", "pod-1", "pod-3"),
    "vxlan": ("two-node.yaml", "pods-two-nodes.yaml", "pod-a", "pod-c"),
    "bgp": ("article.yaml", "pods-node1-node2.yaml", "pod-1", "pod-3"),
}


@pytest.fixture(scope="module")
def cluster(request):
    """A cluster of the routing mode each test names (indirect parametrization: one cluster
    per mode for the whole module)."""
    topology, manifests, _, _ = MODES[request.param]
    topo = with_pod_network(load_topology(TOPOLOGIES / topology), PodNetworkSpec(routing=request.param))
    c = Cluster(topo).up()
    try:
        objs = load_manifests([str(SCENARIOS / "manifests" / manifests)])
        c.apply(objs)
        c.wait_ready(objs, timeout=60)
        yield c
    finally:
        c.down()


def mode(c: Cluster) -> str:
    return c.topo.pod_network.routing


def modes(*names: str):
    return pytest.mark.parametrize("cluster", names, indirect=True)


EVERY = modes(*MODES)
FLANNEL = modes("host-gw", "vxlan")
VXLAN = modes("vxlan")
BGP = modes("bgp")


def pods(c: Cluster):
    _, _, here, there = MODES[mode(c)]
    return c.find_pod(here), c.find_pod(there)


def pid(c: Cluster, host: str) -> int:
    return c.network.pid(host)


def route(c: Cluster, host: str, cidr) -> dict | None:
    found = routes_to(pid(c, host), str(cidr))
    return found[0] if found else None


def reach(c: Cluster, source_pid: int, address, timeout: float = 2) -> bool:
    return probe_icmp(source_pid, IPv4Address(str(address)), timeout).reachable


def joining_node(c: Cluster, name: str = "w9") -> tuple[dict, IPv4Network, str]:
    """A Node as a joining node's kubelet and flanneld leave it: a pod CIDR of the cluster
    network, an address, and flannel's annotations for the run's backend."""
    cidr = next(n for n in c.topo.cluster_cidr.subnets(new_prefix=24)
                if not any(n.overlaps(w.pod_cidr) for w in c.topo.workers))
    address = c.topo.node_cidr.network_address + 99
    notes = flannel.own_annotations(mode(c), address, "0a:58:0a:0a:0a:09")
    return ({"apiVersion": "v1", "kind": "Node",
             "metadata": {"name": name, "annotations": notes},
             "spec": {"podCIDR": str(cidr), "podCIDRs": [str(cidr)]},
             "status": {"addresses": [{"type": "InternalIP", "address": str(address)}]}},
            cidr, str(address))


def flannel_hosts(c: Cluster) -> list[str]:
    return [n.name for n in c.topo.nodes]


# -- every mode ----------------------------------------------------------------------------------------

@EVERY
def test_pods_reach_each_other_across_nodes_and_the_world_outside(cluster):
    here, there = pods(cluster)
    assert reach(cluster, here.pid, there.ip) and reach(cluster, there.pid, here.ip)
    client = cluster.topo.clients[0]
    assert reach(cluster, here.pid, client.address), "a pod cannot reach the external client"


@EVERY
def test_the_gateway_holds_pod_routes_only_as_the_mode_says(cluster):
    gateway = cluster.topo.gateway_name
    for worker in cluster.topo.workers:
        found = route(cluster, gateway, worker.pod_cidr)
        if mode(cluster) == "bgp":
            assert found is not None and found.get("protocol") == "bird", found
            assert found.get("gateway") == str(worker.address)
        else:
            assert found is None, f"the gateway routes {worker.pod_cidr}: {found}"


@EVERY
def test_the_agents_of_the_mode_run_and_no_others(cluster):
    kinds = {a.kind for a in cluster.cp.agents.values() if a.running()}
    if mode(cluster) == "bgp":
        assert "bird" in kinds and "flanneld" not in kinds
        assert {n for (k, n) in (a.split("-", 1) for a in cluster.cp.agents) if k == "bird"} == \
            {cluster.topo.gateway_name, *(w.name for w in cluster.topo.workers)}
    else:
        assert "flanneld" in kinds and "bird" not in kinds
        assert {a.node for a in cluster.cp.agents.values() if a.kind == "flanneld"} == set(flannel_hosts(cluster))


# -- flannel's modes -------------------------------------------------------------------------------------

@FLANNEL
def test_every_worker_publishes_its_lease_and_every_node_routes_the_others(cluster):
    nodes = {n["metadata"]["name"]: n for n in cluster.client.list("Node")[0]}
    for worker in cluster.topo.workers:
        notes = nodes[worker.name]["metadata"]["annotations"]
        assert notes[flannel.BACKEND_TYPE] == mode(cluster)
        assert notes[flannel.PUBLIC_IP] == str(worker.address)
        assert notes[flannel.KUBE_SUBNET_MANAGER] == "true"
        for host in flannel_hosts(cluster):
            if host == worker.name:
                continue
            found = route(cluster, host, worker.pod_cidr)
            assert found is not None, f"{host} has no route to {worker.name}'s pods"
            if mode(cluster) == "host-gw":
                assert found["gateway"] == str(worker.address)
            else:
                assert (found["dev"], found["gateway"]) == ("flannel.1", str(worker.pod_cidr.network_address))
                assert "onlink" in found.get("flags", [])
        status = rundir.read_flanneld_status(cluster.record.directory, worker.name)
        assert status.subnet == str(worker.pod_cidr) and status.backend == mode(cluster)


@FLANNEL
def test_the_master_reaches_the_pods_of_every_worker(cluster):
    master = pid(cluster, cluster.topo.master.name)
    for pod in pods(cluster):
        assert reach(cluster, master, pod.ip), f"the master cannot reach {pod.key}"


@FLANNEL
def test_pod_traffic_leaving_the_cluster_is_masqueraded_by_flannels_chain(cluster):
    here, _ = pods(cluster)
    worker = cluster.topo.node(here.node)
    rules = run(["iptables", "-t", "nat", "-S"], netns=pid(cluster, worker.name)).stdout
    assert '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG' in rules
    assert f"-A FLANNEL-POSTRTG ! -s {cluster.topo.cluster_cidr} -d {worker.pod_cidr}" in rules
    client = cluster.topo.clients[0]
    packets, _, answer = capture_while(pid(cluster, client.name), f"{client.name}-eth0",
                                       "icmp[icmptype] == icmp-echo",
                                       lambda: probe_icmp(here.pid, client.address, 2))
    assert answer.reachable and packets
    assert all(f"{worker.address} > {client.address}" in p for p in packets), packets


@FLANNEL
def test_a_node_that_joins_is_routed_everywhere_and_unrouted_when_it_leaves(cluster):
    node, cidr, address = joining_node(cluster)
    cluster.client.create(node)
    try:
        for host in flannel_hosts(cluster):
            found = wait_for(lambda h=host: route(cluster, h, cidr), 10, f"{host}'s route to {cidr}")
            want = address if mode(cluster) == "host-gw" else str(cidr.network_address)
            assert found["gateway"] == want
        if mode(cluster) == "vxlan":
            for host in flannel_hosts(cluster):
                fdb = faults.inspect(cluster, "fdb", host)
                assert f"0a:58:0a:0a:0a:09 dst {address}" in fdb, fdb
                neigh = run(["ip", "neigh", "show", "dev", "flannel.1"], netns=pid(cluster, host)).stdout
                assert f"{cidr.network_address} lladdr 0a:58:0a:0a:0a:09 PERMANENT" in neigh, neigh
    finally:
        cluster.client.delete("Node", None, node["metadata"]["name"])
    for host in flannel_hosts(cluster):
        wait_for(lambda h=host: route(cluster, h, cidr) is None, 10, f"{host} to drop its route to {cidr}")
        if mode(cluster) == "vxlan":
            assert "0a:58:0a:0a:0a:09" not in faults.inspect(cluster, "fdb", host)
            assert "0a:58:0a:0a:0a:09" not in faults.inspect(cluster, "neigh", host)


@FLANNEL
def test_a_killed_flanneld_keeps_its_routes_misses_a_join_and_catches_up_when_restarted(cluster):
    here, there = pods(cluster)
    worker = here.node
    before = rundir.read_flanneld_status(cluster.record.directory, worker)
    mac = before.vtep_mac
    cluster.cp.kill("flanneld", worker)
    node, cidr, _ = joining_node(cluster, "w8")
    try:
        assert reach(cluster, here.pid, there.ip), "pods lost each other with flanneld dead"
        cluster.client.create(node)
        wait_for(lambda: route(cluster, there.node, cidr), 10, f"{there.node}'s route to {cidr}")
        assert route(cluster, worker, cidr) is None, "a dead flanneld routed a node that joined"
        agent = cluster.cp.restart("flanneld", worker)
        cluster.cp.wait_agent(agent)
        after = rundir.read_flanneld_status(cluster.record.directory, worker)
        assert after.pid == agent.pid != before.pid
        assert wait_for(lambda: route(cluster, worker, cidr), 10, f"{worker}'s route to {cidr}")
        assert after.vtep_mac == mac          # vxlan: the device adopted, its MAC unchanged
        assert reach(cluster, here.pid, there.ip)
    finally:
        cluster.client.delete("Node", None, node["metadata"]["name"])
    wait_for(lambda: route(cluster, worker, cidr) is None, 10, f"{worker} to drop {cidr}")


# -- vxlan ------------------------------------------------------------------------------------------------

@VXLAN
def test_vxlan_traffic_between_pods_is_udp_8472_between_node_addresses_on_the_wire(cluster):
    here, there = pods(cluster)
    a, b = cluster.topo.node(here.node), cluster.topo.node(there.node)
    uplink = faults.uplink(a.name)
    packets, _, answer = capture_while(pid(cluster, a.name), uplink, "udp port 8472",
                                       lambda: probe_icmp(here.pid, there.ip, 2))
    assert answer.reachable
    # tcpdump prints the outer UDP header, then the inner packet on a line of its own
    assert any(f"{a.address}." in p and f"> {b.address}.8472:" in p and "instance 1" in p
               for p in packets), packets
    assert any(f"{here.ip} > {there.ip}: ICMP echo request" in p for p in packets), packets
    bare, _, _ = capture_while(pid(cluster, a.name), uplink, f"icmp and host {there.ip}",
                               lambda: probe_icmp(here.pid, there.ip, 2))
    assert bare == [], "a pod address travelled bare on the node's link"


@VXLAN
def test_vxlan_lowers_the_mtu_of_flannel_1_cbr0_and_the_pods(cluster):
    here, _ = pods(cluster)
    node = pid(cluster, here.node)
    links = faults.inspect(cluster, "links", here.node)
    line = next(ln for ln in links.splitlines() if "flannel.1:" in ln)
    assert "mtu 1450" in line
    assert "vxlan id 1 " in links and "dstport 8472" in links and "nolearning" in links
    assert f"local {cluster.topo.node(here.node).address} " in links
    assert "mtu 1450" in run(["ip", "-o", "link", "show", "cbr0"], netns=node).stdout
    assert "mtu 1450" in run(["ip", "-o", "link", "show", "eth0"], netns=here.pid).stdout
    assert "mtu 1500" in run(["ip", "-o", "link", "show", faults.uplink(here.node)], netns=node).stdout


@VXLAN
def test_vxlan_publishes_flannel_1s_mac_in_the_node_annotations(cluster):
    for worker in cluster.topo.workers:
        obj = cluster.client.get("Node", None, worker.name)
        data = json.loads(obj["metadata"]["annotations"][flannel.BACKEND_DATA])
        link = json.loads(run(["ip", "-j", "link", "show", "flannel.1"], netns=pid(cluster, worker.name)).stdout)
        assert data == {"VNI": 1, "VtepMAC": link[0]["address"]}


# -- bgp --------------------------------------------------------------------------------------------------

def learned(c: Cluster, worker: str) -> bool:
    found = route(c, c.topo.gateway_name, c.topo.node(worker).pod_cidr)
    return found is not None and found.get("protocol") == "bird"


@BGP
def test_inspect_bgp_shows_a_session_per_worker_and_the_learned_routes(cluster):
    text = faults.inspect(cluster, "bgp", cluster.topo.gateway_name)
    assert len(bird.established(bird.parse_protocols(text))) == len(cluster.topo.workers)
    hops = {(net, hop) for net, _, hop in bird.parse_routes(text)}
    assert hops == {(str(w.pod_cidr), str(w.address)) for w in cluster.topo.workers}
    node = faults.inspect(cluster, "bgp", cluster.topo.workers[0].name)
    assert bird.established(bird.parse_protocols(node)) == [bird.UPLINK_PROTOCOL]
    assert f"{cluster.topo.workers[0].pod_cidr}" in node and "blackhole" in node


@BGP
def test_testbed_bgp_prints_the_sessions_and_routes_from_another_terminal(cluster):
    from .conftest import run_testbed

    run = cluster.record.directory.name
    shown = run_testbed("bgp", cluster.topo.gateway_name, "--cluster", run)
    assert shown.returncode == 0, shown.stderr
    assert len(bird.established(bird.parse_protocols(shown.stdout))) == len(cluster.topo.workers)
    assert str(cluster.topo.workers[0].pod_cidr) in shown.stdout
    nobody = run_testbed("bgp", "client", "--cluster", run)
    assert nobody.returncode == 1 and "no bird runs on client" in nobody.stdout
    unknown = run_testbed("bgp", "nosuch", "--cluster", run)
    assert unknown.returncode == 1 and "no running node 'nosuch'" in unknown.stderr


@BGP
def test_killing_a_nodes_bird_withdraws_its_route_and_a_restart_restores_it(cluster):
    here, there = pods(cluster)
    node = there.node
    cluster.cp.kill("bird", node)
    started = time.monotonic()
    wait_for(lambda: not learned(cluster, node), bird.HOLD_TIME + 1, f"the gateway to withdraw {node}'s pods")
    assert time.monotonic() - started < bird.HOLD_TIME
    assert learned(cluster, here.node), "the other node's route went too"
    assert not reach(cluster, here.pid, there.ip, timeout=1)
    agent = cluster.cp.restart("bird", node)
    cluster.cp.wait_agent(agent)
    assert learned(cluster, node) and reach(cluster, here.pid, there.ip)


@BGP
def test_a_node_whose_link_goes_silent_is_withdrawn_after_the_hold_timer(cluster):
    """On the shared LAN the gateway's bridge stays up when a node's link goes down: only the
    hold timer tells the gateway's bird that the peer is gone. The timer runs from the last
    KEEPALIVE received, which may have come up to KEEPALIVE_TIME before the link went down:
    the route goes between HOLD_TIME - KEEPALIVE_TIME and HOLD_TIME after it."""
    assert cluster.topo.network_mode == "shared"
    _, there = pods(cluster)
    node = there.node
    faults.link(cluster, node, False)
    started = time.monotonic()
    try:
        time.sleep(bird.KEEPALIVE_TIME)
        assert learned(cluster, node), "withdrawn before the hold timer ran out"
        wait_for(lambda: not learned(cluster, node), bird.HOLD_TIME + 3, f"the hold timer to withdraw {node}")
        assert time.monotonic() - started >= bird.HOLD_TIME - bird.KEEPALIVE_TIME - 0.5
    finally:
        faults.link(cluster, node, True)
    wait_for(lambda: learned(cluster, node), 20, f"{node}'s route back after its link came up")


@BGP
def test_the_gateways_bird_takes_its_routes_with_it_and_brings_them_back(cluster):
    gateway = cluster.topo.gateway_name
    cluster.cp.kill("bird", gateway)
    try:
        for w in cluster.topo.workers:
            assert not learned(cluster, w.name), f"{w.pod_cidr} outlived the gateway's bird"
    finally:
        agent = cluster.cp.restart("bird", gateway)
        cluster.cp.wait_agent(agent)
    assert all(learned(cluster, w.name) for w in cluster.topo.workers)


@BGP
def test_a_node_down_withdraws_its_route_and_up_restores_it(cluster):
    here, there = pods(cluster)
    node = there.node
    text = faults.node_state(cluster, node, False)
    try:
        assert "bird" in text
        wait_for(lambda: not learned(cluster, node), bird.HOLD_TIME + 1, f"the gateway to withdraw {node}")
    finally:
        faults.node_state(cluster, node, True)
    wait_for(lambda: learned(cluster, node), 20, f"{node}'s route back")
    assert learned(cluster, here.node)
