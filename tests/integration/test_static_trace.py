"""The static tracer on a real cluster: the article's topology, Deployment and Service, one
client pod per node, in kube-proxy's iptables and nftables modes. collect_world reads every
namespace; static_trace from client-1 to the ClusterIP must follow the rules the kernel holds
to each of the Service's real endpoints, and report a Service without endpoints rejected."""

from __future__ import annotations

import pytest

from testbed.proxy import names
from testbed.trace.static import static_trace
from tests.integration.conftest import SCENARIOS, TOPOLOGIES, wait_for

MANIFESTS = SCENARIOS / "manifests"
EMPTY = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "st-empty"},
         "spec": {"clusterIP": "10.3.241.200", "selector": {"app": "nothing-here"},
                  "ports": [{"port": 80, "targetPort": 8080}]}}


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def cluster(request):
    from testbed.api.manifests import load_manifests
    from testbed.emu.cluster import Cluster
    from testbed.spec.topology import load_topology, with_modes

    topo = with_modes(load_topology(TOPOLOGIES / "article.yaml"), proxy={"*": request.param})
    c = Cluster(topo).up()
    try:
        objs = load_manifests([str(MANIFESTS / name) for name in (
            "service-test-deployment.yaml", "service-test-service.yaml", "clients.yaml")])
        objs.append(EMPTY)
        c.apply(objs)
        c.wait_ready(objs, timeout=90)
        yield request.param, c
    finally:
        c.down()


def _world(c, endpoints: set[str]):
    """The World once both nodes' kube-proxy rules name every endpoint and the empty Service."""
    from testbed.emu.trace_world import collect_world

    def ready():
        w = collect_world(c)
        for node in ("node1", "node2"):
            h = w.hosts[node]
            dump = h.iptables_save + h.nft_proxy
            if not all(ip in dump for ip in endpoints) or "10.3.241.200" not in dump:
                return None
        return w
    return wait_for(ready, 30, "kube-proxy rules for every endpoint")


def test_static_trace_to_the_cluster_ip_follows_the_real_rules(cluster):
    from testbed.net.run import run

    mode, c = cluster
    cluster_ip = str(c.service_ip("service-test"))
    pods = {p.key: p for p in c.all_pods() if p.key.startswith("default/service-test-")}
    assert len(pods) == 2
    by_ip = {str(p.ip): p for p in pods.values()}
    w = _world(c, set(by_ip))
    world_pods = {k for k, h in w.hosts.items() if h.kind == "pod"}
    assert {"default/client-1", "default/client-2", *pods} <= world_pods
    assert w.hosts["node1"].proxy_mode == mode
    node1_pid = c.network.hosts["node1"].pid
    kernel_nat = run(["iptables", "-t", "nat", "-S"], netns=node1_pid).stdout
    spn = "default/service-test"

    for ip, pod in by_ip.items():
        t = static_trace(w, "default/client-1", cluster_ip, 80, "tcp", prefer_endpoint=ip)
        assert t["mode"] == "static" and t["verdict"] == "delivered", t["cause"]
        assert t["endpoint"] == pod.key
        assert sorted(t["endpoints"]) == sorted(f"{i}:8080" for i in by_ip)
        path = ["default/client-1", "node1"] + (["gateway", pod.node] if pod.node != "node1"
                                                else []) + [pod.key]
        assert [h["host"] for h in t["hops"]] == path
        node1 = t["hops"][1]
        assert node1["nat"] == [{"type": "dnat", "from": f"{cluster_ip}:80", "to": f"{ip}:8080"}]
        veth = w.hosts["node1"].pod_veths["default/client-1"][1]
        assert node1["in"] == "cbr0" and node1["bridgePort"]["in"] == veth
        assert t["hops"][-1]["packet"] == {"src": "10.0.1.2", "dst": f"{ip}:8080"}
        if mode == "iptables":
            want = ["nat/PREROUTING", "nat/KUBE-SERVICES", f"nat/{names.svc_chain(spn, 'tcp')}",
                    f"nat/{names.sep_chain(spn, 'tcp', f'{ip}:8080')}"]
            # the rules quoted are the kernel's own lines
            for rule in node1["rules"]:
                if rule["chain"].startswith("nat/"):
                    assert rule["rule"] in kernel_nat.splitlines()
        else:
            base = names.nft_service_base("default", "service-test", "tcp", "")
            ep = names.nft_endpoint_base("default", "service-test", "tcp", "", ip, 8080)
            want = ["kube-proxy/nat-prerouting", "kube-proxy/services",
                    f"kube-proxy/{names.nft_service_chain(base)}",
                    f"kube-proxy/{names.nft_endpoint_chain(ep)}"]
        nat = [ch for ch in node1["chains"] if ch in want or ch.startswith("nat/")]
        assert nat[:4] == want
        assert [h["host"] for h in t["reply"]][0] == pod.key
        assert [h["host"] for h in t["reply"]][-1] == "default/client-1"
        assert any(n["type"] == "un-dnat" for h in t["reply"] for n in h["nat"])


def test_static_trace_to_a_service_without_endpoints_is_rejected(cluster):
    mode, c = cluster
    pods = [p for p in c.all_pods() if p.key.startswith("default/service-test-")]
    w = _world(c, {str(p.ip) for p in pods})
    t = static_trace(w, "default/client-2", "10.3.241.200", 80, "tcp")
    assert t["verdict"] == "rejected" and t["endpoints"] == []
    assert [h["host"] for h in t["hops"]] == ["default/client-2", "node2"]
    chain = "filter/KUBE-SERVICES" if mode == "iptables" else "kube-proxy/reject-chain"
    assert t["cause"]["host"] == "node2" and t["cause"]["chain"] == chain
