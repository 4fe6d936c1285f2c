"""NodePort and LoadBalancer Services from the external client (as root).

One cluster for the module: the two-node topology, its load-balancer pool narrowed to
198.51.100.0/30 (two addresses) so that exhaustion is quick to reach. Two agnhost pods, one
per worker, back the Services; `/hostname` says which pod answered and `/clientip` the source
address it saw. Every request is the external client's curl, through the gateway.
"""

from __future__ import annotations

import dataclasses
import json
import time
from ipaddress import IPv4Address, IPv4Network

import pytest

from testbed.net.run import run
from tests.integration.conftest import TOPOLOGIES, wait_for

POOL = IPv4Network("198.51.100.0/30")
CLIENT_RANGE = "203.0.113.0/24"



def pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "echo", "at": node}},
            "spec": {"nodeName": node, "containers": [{
                "name": "netexec", "image": "registry.k8s.io/e2e-test-images/agnhost:2.39",
                "args": ["netexec", "--http-port=8080"], "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}


def service(name: str, kind: str, selector: dict, etp: str = "Cluster", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": kind, "selector": selector, "externalTrafficPolicy": etp,
                     "ports": [{"port": 80, "targetPort": "http"}], **spec}}


OBJECTS = [
    pod("echo-w1", "w1"), pod("echo-w2", "w2"),
    service("np", "NodePort", {"app": "echo"}),
    service("np-local", "NodePort", {"at": "w1"}, etp="Local"),
    service("lb", "LoadBalancer", {"app": "echo"}, loadBalancerSourceRanges=[CLIENT_RANGE]),
    service("lb-local", "LoadBalancer", {"at": "w1"}, etp="Local"),
]


@pytest.fixture(scope="module")
def cluster():
    from testbed.emu.cluster import Cluster
    from testbed.spec.topology import load_topology

    topo = dataclasses.replace(load_topology(TOPOLOGIES / "two-node.yaml"), lb_pool=(POOL,))
    cluster = Cluster(topo).up()
    try:
        cluster.apply(OBJECTS)
        cluster.wait_ready(OBJECTS, timeout=60)
        # Ready pods are not yet programmed endpoints: each node's kube-proxy syncs after the
        # EndpointSlices change (seconds under a loaded machine). Every test starts after that.
        port = node_port(cluster, "np")
        for node in workers(cluster):
            wait_for(lambda node=node: curl(cluster, node.address, port, timeout=1)[0] == 200, 30,
                     f"node port {port} on {node.name} answering")
        yield cluster
    finally:
        cluster.down()


def events(cluster, service: str) -> list[tuple[str, str]]:
    """(reason, message) of the Events recorded about a Service of the default namespace."""
    items, _ = cluster.client.list("Event", "default")
    return [(e["reason"], e["message"]) for e in items
            if e["involvedObject"].get("kind") == "Service"
            and e["involvedObject"].get("name") == service]


def get(cluster, name: str) -> dict:
    return cluster.client.get("Service", "default", name)


def node_port(cluster, name: str) -> int:
    return get(cluster, name)["spec"]["ports"][0]["nodePort"]


def lb_ip(cluster, name: str, timeout: float = 10) -> str:
    def ip():
        ingress = ((get(cluster, name).get("status") or {}).get("loadBalancer") or {}).get("ingress")
        return ingress[0]["ip"] if ingress else None
    return wait_for(ip, timeout, f"{name}'s load balancer address")


def curl(cluster, address, port: int, path: str = "/hostname", timeout: float = 2,
         source: str = "client") -> tuple[int, str]:
    """(HTTP status, body) of `curl http://ADDRESS:PORT/PATH` from `source`; status 0: no answer."""
    result = run(["curl", "-s", "-m", str(timeout), "-w", "\n%{http_code}", f"http://{address}:{port}{path}"],
                 netns=cluster.network.pid(source), check=False, timeout=timeout + 5)
    body, _, code = result.stdout.rpartition("\n")
    return int(code or 0), body


def workers(cluster) -> list:
    return list(cluster.topo.workers)


def gateway_route(cluster, ip: str) -> list[str]:
    out = run(["ip", "-j", "route", "show", f"{ip}/32"], netns=cluster.network.pid(cluster.topo.gateway_name)).stdout
    routes = json.loads(out or "[]")
    if not routes:
        return []
    r = routes[0]
    return sorted(h["gateway"] for h in r.get("nexthops") or []) or [r["gateway"]]


def test_nodeport_on_every_worker_reaches_the_backends_and_keeps_the_cluster_ip(cluster) -> None:
    port = node_port(cluster, "np")
    assert 30000 <= port <= 32767
    for node in workers(cluster):
        seen = set()
        for _ in range(20):
            code, body = curl(cluster, node.address, port)
            assert code == 200, f"{node.name}:{port} -> {code} {body!r}"
            seen.add(body)
            if len(seen) == 2:
                break
        assert seen == {"echo-w1", "echo-w2"}, f"through {node.name}: {seen}"
    cluster_ip = IPv4Address(get(cluster, "np")["spec"]["clusterIP"])
    assert cluster_ip in cluster.topo.service_cidr
    code, body = curl(cluster, cluster_ip, 80, source="w1")        # the ClusterIP still works inside
    assert code == 200 and body in {"echo-w1", "echo-w2"}


def test_cluster_policy_masquerades_the_client(cluster) -> None:
    port = node_port(cluster, "np")
    node_ips = {str(w.address) for w in workers(cluster)} | {str(w.bridge_address) for w in workers(cluster)}
    for node in workers(cluster):
        for _ in range(4):
            code, body = curl(cluster, node.address, port, "/clientip")
            assert code == 200
            assert body.rsplit(":", 1)[0] in node_ips, f"through {node.name} the backend saw {body}"


def test_local_policy_keeps_the_client_ip_and_drops_on_nodes_without_endpoints(cluster) -> None:
    port = node_port(cluster, "np-local")
    client_ip = str(cluster.topo.clients[0].address)
    for _ in range(3):
        code, body = curl(cluster, cluster.topo.node("w1").address, port, "/clientip")
        assert code == 200 and body.rsplit(":", 1)[0] == client_ip
    code, _ = curl(cluster, cluster.topo.node("w2").address, port, timeout=1)
    assert code == 0, "w2 has no local endpoint and must drop"


def test_health_check_node_port(cluster) -> None:
    hc = get(cluster, "lb-local")["spec"].get("healthCheckNodePort")
    assert hc and 30000 <= hc <= 32767
    code_w1, body = curl(cluster, cluster.topo.node("w1").address, hc, "/", timeout=1)
    code_w2, _ = curl(cluster, cluster.topo.node("w2").address, hc, "/", timeout=1)
    assert code_w1 == 200, body
    assert json.loads(body)["localEndpoints"] == 1
    assert code_w2 == 503


def test_load_balancer_address_from_the_pool_is_routed_and_reachable(cluster) -> None:
    ip = lb_ip(cluster, "lb")
    assert IPv4Address(ip) in POOL
    assert gateway_route(cluster, ip) == sorted(str(w.address) for w in workers(cluster))
    code, body = curl(cluster, ip, 80)
    assert code == 200 and body in {"echo-w1", "echo-w2"}
    # eTP Local: only the node with the endpoint gets the address, and the client IP survives.
    local = lb_ip(cluster, "lb-local")
    assert local != ip and IPv4Address(local) in POOL
    assert gateway_route(cluster, local) == [str(cluster.topo.node("w1").address)]
    code, body = curl(cluster, local, 80, "/clientip")
    assert code == 200 and body.rsplit(":", 1)[0] == str(cluster.topo.clients[0].address)


def test_load_balancer_source_ranges(cluster) -> None:
    ip = lb_ip(cluster, "lb")
    assert curl(cluster, ip, 80)[0] == 200
    cluster.apply([service("lb", "LoadBalancer", {"app": "echo"}, loadBalancerSourceRanges=["192.0.2.0/24"])])
    try:
        wait_for(lambda: curl(cluster, ip, 80, timeout=1)[0] == 0, 10, "the client to be filtered out")
        assert lb_ip(cluster, "lb") == ip   # same address: only the firewall changed
    finally:
        cluster.apply([service("lb", "LoadBalancer", {"app": "echo"}, loadBalancerSourceRanges=[CLIENT_RANGE])])
    wait_for(lambda: curl(cluster, ip, 80)[0] == 200, 10, "the client to be let in again")


def test_exhausted_pool_pending_then_release_on_delete(cluster) -> None:
    taken = {lb_ip(cluster, "lb"), lb_ip(cluster, "lb-local")}
    assert len(taken) == 2  # the whole /30
    extra = service("lb-extra", "LoadBalancer", {"app": "echo"}, loadBalancerIP="10.1.2.3")
    cluster.apply([extra])
    try:
        notes = wait_for(lambda: " ".join(m for r, m in events(cluster, "lb-extra")
                                          if r == "SyncLoadBalancerFailed"),
                         10, "the pending warning (an Event on the Service)")
        assert "no addresses left in pool 198.51.100.0/30" in notes
        notes = " ".join(m for _, m in events(cluster, "lb-extra"))
        assert "spec.loadBalancerIP 10.1.2.3 is not in the pool" in notes
        time.sleep(1)
        assert not (get(cluster, "lb-extra").get("status") or {}).get("loadBalancer")
        freed = lb_ip(cluster, "lb")
        cluster.client.delete("Service", "default", "lb")
        wait_for(lambda: gateway_route(cluster, freed) == [] or
                 lb_ip(cluster, "lb-extra", timeout=0.1) == freed, 10, "the release")
        assert lb_ip(cluster, "lb-extra") == freed     # the released address, to the pending Service
        ensured = wait_for(lambda: [m for r, m in events(cluster, "lb-extra")
                                    if r == "EnsuredLoadBalancer"], 10, "EnsuredLoadBalancer")
        assert ensured == ["Ensured load balancer"]   # upstream service controller wording
        assert "LoadBalancerIPIgnored" in [r for r, _ in events(cluster, "lb-extra")]
        # kube-proxy follows the new status within its sync period.
        wait_for(lambda: curl(cluster, freed, 80, timeout=1) in {(200, "echo-w1"), (200, "echo-w2")},
                 10, f"lb-extra to answer on {freed}")
        cluster.client.delete("Service", "default", "lb-extra")
        wait_for(lambda: gateway_route(cluster, freed) == [], 10, f"the gateway route to {freed} to go")
        wait_for(lambda: curl(cluster, freed, 80, timeout=1)[0] == 0, 10, f"{freed} to stop answering")
    finally:
        cluster.client.delete("Service", "default", "lb-extra")
