"""`testbed trace` on the article's cluster, in kube-proxy's iptables and nftables modes: the
live trace's chains, rewrites, routes and verdicts for the connections the article walks
through, the static trace agreeing with it, and no tracing rule left behind."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import subprocess
import sys

import pytest

from testbed.scenario.trace_step import chains_of, differences, dnat_targets, hosts_of

from .conftest import ROOT, SCENARIOS, TOPOLOGIES, run_testbed, wait_for

MODES = ["iptables", "nftables"]


@pytest.fixture(scope="module", params=MODES)
def env(request, tmp_path_factory):
    from testbed.api.manifests import load_manifests
    from testbed.emu.cluster import Cluster
    from testbed.spec.topology import load_topology

    mode = request.param
    tmp = tmp_path_factory.mktemp(f"trace-{mode}")
    text = (TOPOLOGIES / "article.yaml").read_text()
    topo = tmp / "article.yaml"
    topo.write_text(re.sub(r"kubeProxy: \{mode: \w+\}", f"kubeProxy: {{mode: {mode}}}", text))
    cluster = Cluster(dataclasses.replace(load_topology(topo), addons=("ingress-nginx",))).up()
    try:
        objs = load_manifests([str(SCENARIOS / "manifests" / "clients.yaml"),
                               str(SCENARIOS / "manifests" / "trace-echo.yaml"),
                               str(SCENARIOS / "manifests" / "trace-ingress.yaml")])
        cluster.apply(objs)
        cluster.wait_ready(objs, timeout=60)
        for svc in ("echo-1", "echo-2", "echo-2-nodeport"):
            wait_for(lambda svc=svc: _endpoints(cluster, svc), 30, f"{svc}'s endpoint")
        yield mode, cluster
    finally:
        cluster.down()


@pytest.fixture(scope="module")
def userspace(tmp_path_factory):
    """The article's cluster with kube-proxy in userspace mode."""
    from testbed.api.manifests import load_manifests
    from testbed.emu.cluster import Cluster
    from testbed.spec.topology import load_topology

    tmp = tmp_path_factory.mktemp("trace-userspace")
    topo = tmp / "article.yaml"
    topo.write_text(re.sub(r"kubeProxy: \{mode: \w+\}", "kubeProxy: {mode: userspace}",
                           (TOPOLOGIES / "article.yaml").read_text()))
    cluster = Cluster(load_topology(topo)).up()
    try:
        objs = load_manifests([str(SCENARIOS / "manifests" / "clients.yaml"),
                               str(SCENARIOS / "manifests" / "trace-echo.yaml")])
        cluster.apply(objs)
        cluster.wait_ready(objs, timeout=60)
        wait_for(lambda: _endpoints(cluster, "echo-2"), 30, "echo-2's endpoint")
        yield cluster
    finally:
        cluster.down()


def _endpoints(cluster, service: str) -> list[str]:
    slices, _ = cluster.client.list("EndpointSlice", "default",
                                    f"kubernetes.io/service-name={service}")
    return [a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]]


def _pod_ip(cluster, name: str) -> str:
    return str(cluster.find_pod(name).ip)


def _trace(cluster, source, to, port=None, protocol="tcp"):
    from testbed.emu.tracing import static, trace

    live = wait_for(lambda: _settled(trace(cluster, source, to, port, protocol)), 10,
                    f"a trace {source} -> {to}")
    stat = static(cluster, source, to, port, protocol, (dnat_targets(live) or [None])[0])
    assert differences(live, stat) == [], (live, stat)
    return live


def _settled(result):
    """A trace taken before kube-proxy wrote the Service's rules is not the one to judge."""
    return result if result["verdict"] != "dropped" or result.get("cause") else None


def _no_tracer_tables(cluster) -> None:
    from testbed.emu.tracing import tracer_tables

    left = {h.name: tracer_tables(h.pid) for h in cluster.network.hosts.values()}
    assert not any(left.values()), left


def _service_chains(mode: str) -> list[str]:
    if mode == "iptables":
        return ["nat/KUBE-SERVICES", "nat/KUBE-SVC-", "nat/KUBE-SEP-"]
    return ["kube-proxy/services", "kube-proxy/service-", "kube-proxy/endpoint-"]


def _in_order(prefixes: list[str], chains: list[str]) -> bool:
    at = 0
    for prefix in prefixes:
        while at < len(chains) and not chains[at].startswith(prefix):
            at += 1
        if at == len(chains):
            return False
        at += 1
    return True


def test_pod_to_cluster_ip_with_the_endpoint_on_the_other_node(env):
    mode, cluster = env
    t = _trace(cluster, "client-1", "echo-2")
    echo2 = _pod_ip(cluster, "echo-2")
    assert t["verdict"] == "delivered" and t["endpoint"] == "default/echo-2"
    assert hosts_of(t) == ["default/client-1", "node1", "gateway", "node2", "default/echo-2"]
    node1 = t["hops"][1]
    assert _in_order(_service_chains(mode), node1["chains"]), node1["chains"]
    assert node1["nat"] == [{"type": "dnat", "from": t["destination"], "to": f"{echo2}:8080"}]
    assert "via 10.100.0.1 dev node1-eth0" in node1["route"]     # to the gateway
    assert t["hops"][-1]["packet"]["src"].split(":")[0] == _pod_ip(cluster, "client-1")
    assert [h["host"] for h in t["reply"]] == list(reversed(hosts_of(t)))
    assert t["reply"][3]["nat"][0]["type"] == "un-dnat"
    assert any(line.startswith("node1: tcp") for line in t["conntrack"])
    if mode == "iptables":   # the rule text as `iptables -S` prints it
        assert any(r["rule"].startswith("-A KUBE-SEP-") and f"--to-destination {echo2}:8080"
                   in r["rule"] for r in node1["rules"])
    _no_tracer_tables(cluster)


def test_pod_to_cluster_ip_with_the_endpoint_on_the_same_node(env):
    mode, cluster = env
    t = _trace(cluster, "client-1", "echo-1")
    assert hosts_of(t) == ["default/client-1", "node1", "default/echo-1"]
    assert "gateway" not in hosts_of(t)
    assert dnat_targets(t) == [f"{_pod_ip(cluster, 'echo-1')}:8080"]
    bridge = t["hops"][1]["bridgePort"]
    assert bridge["in"] and bridge["out"] and bridge["in"] != bridge["out"]


def test_a_service_without_endpoints_is_rejected(env):
    mode, cluster = env
    t = _trace(cluster, "client-1", "nobody")
    assert t["verdict"] == "rejected"
    assert t["cause"]["host"] == "node1"
    if mode == "iptables":
        assert t["cause"]["chain"] == "filter/KUBE-SERVICES"
        assert "-j REJECT" in t["cause"]["rule"]
    else:
        assert t["cause"]["chain"].startswith("kube-proxy/")
        assert "reject" in t["cause"]["rule"]


def test_a_node_port_with_cluster_policy_is_masqueraded(env):
    mode, cluster = env
    t = _trace(cluster, "client", "node1:30080")
    assert t["verdict"] == "delivered" and t["endpoint"] == "default/echo-2"
    node1 = next(h for h in t["hops"] if h["host"] == "node1")
    kinds = [n["type"] for n in node1["nat"]]
    assert kinds == ["dnat", "masquerade"], node1["nat"]
    assert node1["nat"][1]["to"].split(":")[0] == "10.100.0.2"      # node1's own address
    assert t["hops"][-1]["packet"]["src"].split(":")[0] == "10.100.0.2"
    mark = "nat/KUBE-MARK-MASQ" if mode == "iptables" else "kube-proxy/mark-for-masquerade"
    assert mark in chains_of(t)


def test_hairpin_through_the_bridge_port_and_masquerade(env):
    mode, cluster = env
    t = _trace(cluster, "echo-1", "echo-1")
    assert hosts_of(t) == ["default/echo-1", "node1", "default/echo-1"]
    node1 = t["hops"][1]
    assert node1.get("hairpin") is True
    assert [n["type"] for n in node1["nat"]] == ["dnat", "masquerade"]
    assert node1["nat"][1]["to"].split(":")[0] == "10.0.1.1"        # cbr0's address
    mark = "nat/KUBE-MARK-MASQ" if mode == "iptables" else "kube-proxy/mark-for-masquerade"
    assert mark in chains_of(t)


def test_udp_and_icmp(env):
    mode, cluster = env
    t = _trace(cluster, "client-1", "echo-2", 81, "udp")
    assert t["verdict"] == "delivered" and t["endpoint"] == "default/echo-2"
    assert t["outcome"] == "reply 'echo-2'"
    t = _trace(cluster, "client-1", "client-2", None, "icmp")
    assert hosts_of(t) == ["default/client-1", "node1", "gateway", "node2", "default/client-2"]


def test_the_command_line_json_and_text(env):
    mode, cluster = env
    name = cluster.record.directory.name
    out = run_testbed("trace", name, "client-1", "echo-2", "--json")
    assert out.returncode == 0, out.stderr
    t = json.loads(out.stdout)
    assert {"verdict", "hops", "reply"} <= set(t) and t["verdict"] == "delivered"
    assert all({"host", "in", "out", "chains", "nat"} <= set(h) for h in t["hops"] + t["reply"])
    out = run_testbed("trace", name, "client-1", "nobody")
    assert out.returncode == 0 and "rejected at node1" in out.stdout, out.stdout
    out = run_testbed("trace", name, "client-1", "nobody", "--static", "--json")
    assert out.returncode == 0, out.stderr
    static = json.loads(out.stdout)
    assert static["mode"] == "static" and static["verdict"] == "rejected"
    assert static["cause"]["host"] == "node1" and static["conntrack"] == []
    out = run_testbed("trace", name, "client-1", "echo-2:99999")
    assert out.returncode == 2 and "between 1 and 65535" in out.stderr, out.stderr
    out = run_testbed("trace", name, "client-1", "no-such-thing")
    assert out.returncode == 2 and "no-such-thing" in out.stderr and "Traceback" not in out.stderr
    _no_tracer_tables(cluster)


def _live(cluster, source, to, port=None, protocol="tcp"):
    from testbed.emu.tracing import trace

    return wait_for(lambda: (lambda t: t if t["verdict"] == "delivered" else None)(
        trace(cluster, source, to, port, protocol)), 20, f"a delivered trace {source} -> {to}")


def test_an_ingress_host_through_the_controller_pod_to_its_backend(env):
    mode, cluster = env
    t = _live(cluster, "client", "echo.example.com")
    proxy = [h for h in t["hops"] if h.get("proxy")]
    assert len(proxy) == 1 and proxy[0]["host"].startswith("nginx-ingress/"), hosts_of(t)
    assert t["endpoint"] == "default/echo-2" and hosts_of(t)[-1] == "default/echo-2"
    at = hosts_of(t).index(proxy[0]["host"])
    # the controller's own connection onward: from its pod's address, to echo-2's
    assert t["hops"][-1]["packet"]["src"].split(":")[0] == _pod_ip(cluster, proxy[0]["host"])
    assert t["hops"][-1]["packet"]["dst"] == f"{_pod_ip(cluster, 'echo-2')}:8080"
    assert hosts_of(t)[:2] == ["client", "gateway"] and at >= 3
    assert [h["host"] for h in t["reply"]] == list(reversed(hosts_of(t)))
    _no_tracer_tables(cluster)


def test_userspace_mode_shows_the_proxy_process_as_a_hop(userspace):
    t = _live(userspace, "client-1", "echo-2")
    hosts = hosts_of(t)
    assert hosts[:3] == ["default/client-1", "node1", "kube-proxy@node1"], hosts
    assert hosts[-1] == "default/echo-2" and t["endpoint"] == "default/echo-2"
    node1 = t["hops"][1]
    assert "nat/KUBE-PORTALS-CONTAINER" in node1["chains"], node1["chains"]
    assert node1["nat"] and node1["nat"][0]["type"] in ("redirect", "dnat")
    # the proxy's own connection leaves node1 from node1's address: the backend sees the node
    assert t["hops"][-1]["packet"]["src"].split(":")[0] in ("10.100.0.2", "10.0.1.1")
    assert t["hops"][3]["host"] == "node1" and t["hops"][3]["out"] == "node1-eth0"
    _no_tracer_tables(userspace)


def _tables_anywhere(cluster) -> dict[str, list[str]]:
    from testbed.emu.tracing import tracer_tables

    return {h.name: tracer_tables(h.pid) for h in cluster.network.hosts.values()
            if tracer_tables(h.pid)}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_an_interrupted_trace_leaves_no_tracing_rule(env, signum):
    mode, cluster = env
    if mode != "iptables":
        pytest.skip("the tracer's own table is the same in both modes: one is enough")
    name = cluster.record.directory.name
    # 10.0.2.200 holds no pod: node2 asks ARP for it in vain, so the trace waits its timeout
    proc = subprocess.Popen([sys.executable, "-m", "testbed", "trace", name, "client-1",
                             "10.0.2.200:80", "--timeout", "20"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(_tables_anywhere(cluster)) == len(cluster.network.hosts), 15,
                 "the tracer's tables in every host")
        proc.send_signal(signum)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if signum == signal.SIGKILL:
        assert _tables_anywhere(cluster)       # nothing could clean up: the next trace does
        out = run_testbed("trace", name, "client-1", "echo-1")
        assert out.returncode == 0, out.stderr
    else:
        assert proc.returncode == 130, proc.stderr.read()
    assert _tables_anywhere(cluster) == {}


def test_a_node_to_its_own_node_port_is_dnated_on_the_output_path(env):
    mode, cluster = env
    t = _live(cluster, "node1", "node1:30080")
    assert hosts_of(t) == ["node1", "gateway", "node2", "default/echo-2"], hosts_of(t)
    assert t["hops"][0]["nat"][0]["type"] == "dnat"
    assert t["hops"][0]["nat"][0]["to"] == f"{_pod_ip(cluster, 'echo-2')}:8080"
