"""testbed.diagram: the cluster's picture as DOT (what is drawn, a trace over it, escaping,
order), and `testbed diagram`'s bad inputs (exit 2, one `testbed: ...` message).

Rendering through Graphviz is checked when `dot` is installed (scripts/install.sh installs
it); the DOT text is checked without it.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import xml.etree.ElementTree as ET

import pytest

from testbed.cli import main
from testbed.diagram.dot import TraceFormatError, check_trace, text, to_dot
from testbed.diagram.model import (
    Host,
    Interface,
    Route,
    from_topology,
    interfaces_from_ip,
    picture,
    pods_from_api,
    routes_from_ip,
    services_from_api,
    topology_links,
)
from testbed.spec.topology import load_topology

from .conftest import ROOT

ARTICLE = ROOT / "topologies" / "article.yaml"
TWO_NODE = ROOT / "topologies" / "two-node.yaml"
NODE_LINE = re.compile(r"^\s*(n\d+) \[(.*)\]$")
EDGE_LINE = re.compile(r"^\s*(n\d+)(?::(\w+))? -> (n\d+)(?::(\w+))? \[(.*)\]$")


# -- reading DOT back ------------------------------------------------------------------------

def nodes(dot: str) -> dict[str, str]:
    """node name -> its attributes' text."""
    return {m[1]: m[2] for line in dot.splitlines() if (m := NODE_LINE.match(line))}


def node(dot: str, *needles: str) -> str:
    """The one node whose attributes hold every needle."""
    found = [n for n, attrs in nodes(dot).items() if all(x in attrs for x in needles)]
    assert len(found) == 1, f"{needles}: {found}"
    return found[0]


def edges(dot: str) -> list[tuple[str, str, str]]:
    """(tail, head, attributes) of every edge, ports dropped, in order."""
    return [(m[1], m[3], m[5]) for line in dot.splitlines() if (m := EDGE_LINE.match(line))]


def linked(dot: str, a: str, b: str) -> bool:
    return any({t, h} == {a, b} for t, h, _ in edges(dot))


# -- a running cluster's data, as the API and `ip -j` give it ----------------------------------

def api_pod(ns, name, uid, node, ip, *containers, host_network=False):
    return {"metadata": {"namespace": ns, "name": name, "uid": uid},
            "spec": {"nodeName": node, "hostNetwork": host_network,
                     "containers": [{"name": c} for c in containers]},
            "status": {"podIP": ip, "phase": "Running"}}


SERVICE = {"metadata": {"namespace": "default", "name": "service-test"},
           "spec": {"type": "ClusterIP", "clusterIP": "10.3.241.152",
                    "ports": [{"port": 80, "protocol": "TCP", "targetPort": "http"}]},
           "status": {}}
SLICE = {"metadata": {"namespace": "default", "name": "service-test-abcde",
                      "labels": {"kubernetes.io/service-name": "service-test"}},
         "ports": [{"port": 8080, "protocol": "TCP", "name": "http"}],
         "endpoints": [
             {"addresses": ["10.0.2.3"], "conditions": {"ready": True},
              "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-b"}},
             {"addresses": ["10.0.1.3"], "conditions": {"ready": True},
              "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-a"}}]}
KUBERNETES = {"metadata": {"namespace": "default", "name": "kubernetes"},
              "spec": {"clusterIP": "10.3.240.1", "ports": [{"port": 443, "targetPort": 6443}]}}
KUBERNETES_SLICE = {"metadata": {"namespace": "default", "name": "kubernetes",
                                 "labels": {"kubernetes.io/service-name": "kubernetes"}},
                    "ports": [{"port": 6443, "protocol": "TCP"}],
                    "endpoints": [{"addresses": ["10.100.0.10"]}]}
LB = {"metadata": {"namespace": "shop", "name": "front"},
      "spec": {"type": "LoadBalancer", "clusterIP": "10.3.250.7",
               "ports": [{"port": 80, "targetPort": 8080, "nodePort": 31080}]},
      "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}}}


def live_picture(pods=None, services=None, slices=None):
    """The article's cluster after `ip -j` and the API: pods on both nodes."""
    topo = load_topology(ARTICLE)
    base = from_topology(topo)
    hosts = list(base.hosts)
    veths = {"uid-a": "veth0a0a0a0a", "uid-b": "veth0b0b0b0b", "uid-c": "veth0c0c0c0c"}
    # node1 as `ip -j addr` shows it, with its veths on cbr0
    hosts = [h for h in hosts if h.name != "node1"] + [Host("node1", "worker", interfaces_from_ip([
        {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
        {"ifname": "node1-eth0", "addr_info": [
            {"family": "inet", "local": "10.100.0.2", "prefixlen": 24},
            {"family": "inet6", "local": "fe80::1", "prefixlen": 64}]},
        {"ifname": "cbr0", "addr_info": [{"family": "inet", "local": "10.0.1.1", "prefixlen": 24}]},
        {"ifname": "veth0a0a0a0a", "master": "cbr0", "addr_info": []},
        {"ifname": "veth0c0c0c0c", "master": "cbr0", "addr_info": []},
        {"ifname": "vethdeadbeef", "master": "cbr0", "addr_info": []},
    ]), routes_from_ip([{"dst": "default", "gateway": "10.100.0.1", "dev": "node1-eth0"}]),
        "10.0.1.0/24")]
    pods = pods if pods is not None else [
        api_pod("default", "web-a", "uid-a", "node1", "10.0.1.3", "simple-http"),
        api_pod("default", "web-b", "uid-b", "node2", "10.0.2.3", "simple-http", "sidecar"),
        api_pod("default", "client-1", "uid-c", "node1", "10.0.1.2", "netexec"),
    ]
    return picture(topo.name, "running cluster", topo.network_mode, hosts,
                   pods_from_api(pods, veths),
                   services_from_api(services if services is not None else [SERVICE, KUBERNETES, LB],
                                     slices if slices is not None else [SLICE, KUBERNETES_SLICE]),
                   topology_links(topo))


# -- from a topology -------------------------------------------------------------------------

def test_a_topology_draws_nodes_bridges_gateway_routes_and_clients():
    dot = to_dot(from_topology(load_topology(ARTICLE)))
    node1 = node(dot, "node1-eth0", "10.100.0.2/24")
    cbr1 = node(dot, "cbr0", "10.0.1.1/24")
    node2 = node(dot, "node2-eth0", "10.100.0.3/24")
    node(dot, "cbr0", "10.0.2.1/24")
    master = node(dot, "master-eth0", "10.100.0.10/24")
    assert linked(dot, node1, cbr1)
    gw = node(dot, "<B>gateway</B> (gateway)")
    gw_label = nodes(dot)[gw]
    # The gateway's routes as testbed/emu/network.py sets them: each pod CIDR via its node.
    assert "<TD ALIGN=\"LEFT\">10.0.1.0/24 via 10.100.0.2 dev br-nodes</TD>" in gw_label
    assert "<TD ALIGN=\"LEFT\">10.0.2.0/24 via 10.100.0.3 dev br-nodes</TD>" in gw_label
    assert "br-nodes  10.100.0.1/24" in gw_label
    client = node(dot, "<B>client</B> (client)", "client-eth0  203.0.113.2/24")
    for host in (node1, node2, master, client):
        assert linked(dot, gw, host), host
    # Each node on the gateway's own port of it (node i on GW-eth<i>)
    port = re.search(r'PORT="(\w+)">gateway-eth1  port of br-nodes', gw_label)[1]
    assert re.search(rf"^\s*{gw}:{port} -> {node1} ", dot, re.M)
    assert "pods 10.0.1.0/24" in dot and "shared node network" in dot


def test_a_routed_topology_gives_the_gateway_one_subnet_per_node():
    dot = to_dot(from_topology(load_topology(TWO_NODE)))
    gw = nodes(dot)[node(dot, "(gateway)")]
    assert "gw-eth1  172.16.1.1/24" in gw and "gw-eth2  172.16.2.1/24" in gw
    assert "10.244.0.0/24 via 172.16.1.2 dev gw-eth1" in gw
    assert "10.244.1.0/24 via 172.16.2.2 dev gw-eth2" in gw
    assert "172.16.1.0/24 dev gw-eth1" in gw
    node(dot, "w1-eth0", "172.16.1.2/24")


# -- from a running cluster's data -----------------------------------------------------------

def test_pods_veths_and_services_with_edges_to_their_endpoints():
    dot = to_dot(live_picture())
    web_a = node(dot, "<B>web-a</B>", "eth0 10.0.1.3", "containers: simple-http")
    web_b = node(dot, "<B>web-b</B>", "eth0 10.0.2.3", "containers: simple-http, sidecar")
    veth_a = node(dot, "veth0a0a0a0a")
    cbr1 = node(dot, "cbr0", "10.0.1.1/24")
    assert linked(dot, cbr1, veth_a) and linked(dot, veth_a, web_a)
    # web-b's node comes from the topology (no veths read there): its veth still drawn
    veth_b = node(dot, "veth0b0b0b0b")
    assert linked(dot, veth_b, web_b)
    # a veth on cbr0 that no pod claims is drawn too; the host-side lo and IPv6 are not
    orphan = node(dot, "vethdeadbeef")
    assert linked(dot, cbr1, orphan)
    assert "127.0.0.1" not in dot and "fe80::1" not in dot
    svc = node(dot, "Service service-test", "ClusterIP 10.3.241.152", "80/TCP \u2192 http")
    to_svc = {t: attrs for t, h, attrs in edges(dot) if h == svc}
    assert set(to_svc) == {web_a, web_b}
    assert "10.0.1.3 8080/TCP" in to_svc[web_a] and 'dir="back"' in to_svc[web_a]
    # an endpoint with no pod behind it is the host of that address (the API server's master)
    kube = node(dot, "Service kubernetes", "ClusterIP 10.3.240.1")
    master = node(dot, "master-eth0")
    assert (master, kube) in {(t, h) for t, h, _ in edges(dot)}
    lb = node(dot, "Service front", "LoadBalancer", "ClusterIP 10.3.250.7",
              "80/TCP \u2192 8080 (nodePort 31080)", "external 198.51.100.1")
    assert not [t for t, h, _ in edges(dot) if h == lb]      # no endpoints, no edges


def test_endpoints_by_address_when_the_slice_names_no_pod_and_unknown_ones_stand_alone():
    slice_ = {"metadata": {"namespace": "default", "labels": {"kubernetes.io/service-name":
                                                              "service-test"}},
              "endpoints": [{"addresses": ["10.0.1.3"], "conditions": {"ready": False}},
                            {"addresses": ["192.0.2.9"]}]}
    dot = to_dot(live_picture(services=[SERVICE], slices=[slice_]))
    svc = node(dot, "Service service-test")
    web_a = node(dot, "<B>web-a</B>")
    outside = node(dot, "endpoint 192.0.2.9")
    into = {t: attrs for t, h, attrs in edges(dot) if h == svc}
    assert set(into) == {web_a, outside}
    assert "(not ready)" in into[web_a] and 'style="dotted"' in into[web_a]


def test_the_same_cluster_gives_the_same_text_in_any_order():
    pods = [api_pod("default", f"p{i}", f"u{i}", f"node{1 + i % 2}", f"10.0.{1 + i % 2}.{10 + i}",
                    "c") for i in range(8)]
    first = to_dot(live_picture(pods=pods))
    shuffled = pods[:]
    random.Random(4).shuffle(shuffled)
    assert to_dot(live_picture(pods=shuffled)) == first
    order = [m for m in re.findall(r"<B>(p\d)</B>", first)]
    assert order == ["p0", "p2", "p4", "p6", "p1", "p3", "p5", "p7"]   # by node, then name


def test_odd_names_are_escaped_everywhere():
    odd = 'x<B>"&\\N}\n{|'
    pods = [api_pod("we<ird>", odd, "uid-a", "node1", "10.0.1.3", '"c"&<d>')]
    svc = {"metadata": {"namespace": "we<ird>", "name": 'svc"]; evil'},
           "spec": {"clusterIP": "10.3.241.9", "ports": [{"port": 1, "targetPort": "<x>"}]}}
    dot = to_dot(live_picture(pods=pods, services=[svc], slices=[]))
    assert odd not in dot and "<ird>" not in dot and 'svc"]' not in dot
    assert text(odd) == "x&lt;B&gt;&quot;&amp;\\\\N}\\\\x0a{|"
    node(dot, "<B>x&lt;B&gt;&quot;&amp;\\\\N}\\\\x0a{|</B>", "namespace we&lt;ird&gt;",
         "containers: &quot;c&quot;&amp;&lt;d&gt;")
    node(dot, "Service svc&quot;]; evil", "1/TCP \u2192 &lt;x&gt;")
    for line in dot.splitlines()[1:-1]:     # every statement is one line that reads back
        assert NODE_LINE.match(line) or EDGE_LINE.match(line) or line.strip().startswith(
            ("graph ", "node ", "edge ", "subgraph ", "}", "label=<")), line


# -- a trace over it -------------------------------------------------------------------------

def hop(host, kind, i=None, o=None, port=None, nat=()):
    return {"host": host, "kind": kind, "in": i, "out": o, "bridgePort": port, "nat": list(nat)}


TRACE = {
    "mode": "live", "from": "default/client-1", "to": "service-test:80", "protocol": "tcp",
    "verdict": "delivered", "cause": None, "endpoint": "default/web-b",
    "hops": [hop("default/client-1", "pod", o="eth0"),
             hop("node1", "worker", "cbr0", "node1-eth0", {"in": "veth0c0c0c0c", "out": None},
                 [{"type": "dnat", "from": "10.3.241.152:80", "to": "10.0.2.3:8080"}]),
             hop("gateway", "gateway", "br-nodes", "br-nodes"),
             hop("node2", "worker", "node2-eth0", "cbr0", {"in": None, "out": "veth0b0b0b0b"}),
             hop("web-b", "pod", i="eth0")],
    "reply": [hop("default/web-b", "pod", o="eth0"),
              hop("node2", "worker", "cbr0", "node2-eth0", {"in": "veth0b0b0b0b", "out": None}),
              hop("gateway", "gateway", "br-nodes", "br-nodes"),
              hop("node1", "worker", "node1-eth0", "cbr0", {"in": None, "out": "veth0c0c0c0c"},
                  [{"type": "un-dnat", "from": "10.0.2.3:8080", "to": "10.3.241.152:80"}]),
              hop("default/client-1", "pod", i="eth0")],
}


def numbered(dot: str, color: str) -> dict[str, tuple[str, str, str]]:
    """label number -> (tail, head, attributes) of the trace's edges in `color`."""
    out = {}
    for t, h, attrs in edges(dot):
        if f'color="{color}"' in attrs and "<B>" in attrs:
            out[re.search(r"<B>(r?\d+)</B>", attrs)[1]] = (t, h, attrs)
    return out


def test_a_trace_is_a_numbered_path_through_veths_bridges_and_the_gateway():
    dot = to_dot(live_picture(), TRACE)
    client, web_b = node(dot, "<B>client-1</B>"), node(dot, "<B>web-b</B>")
    veth_c, veth_b = node(dot, "veth0c0c0c0c"), node(dot, "veth0b0b0b0b")
    cbr1, cbr2 = node(dot, "cbr0", "10.0.1.1/24"), node(dot, "cbr0", "10.0.2.1/24")
    eth1, eth2 = node(dot, "node1-eth0"), node(dot, "node2-eth0")
    gw = node(dot, "(gateway)")
    path = numbered(dot, "#d62728")
    assert [(path[str(n)][0], path[str(n)][1]) for n in range(1, 9)] == [
        (client, veth_c), (veth_c, cbr1), (cbr1, eth1), (eth1, gw), (gw, eth2), (eth2, cbr2),
        (cbr2, veth_b), (veth_b, web_b)]
    assert "9" not in path
    # the DNAT is written on the edge that leaves node1
    assert "DNAT 10.3.241.152:80 \u2192 10.0.2.3:8080" in path["4"][2]
    assert not any("DNAT" in path[str(n)][2] for n in (1, 2, 3, 5, 6, 7, 8))
    # the gateway hop goes in and out by the rows of the interfaces it crossed
    port = re.search(r'PORT="(\w+)">br-nodes', nodes(dot)[gw])[1]
    assert re.search(rf"^\s*{eth1} -> {gw}:{port} .*<B>4</B>", dot, re.M)
    reply = numbered(dot, "#1f5fbf")
    assert [(reply[f"r{n}"][0], reply[f"r{n}"][1]) for n in range(1, 9)] == [
        (web_b, veth_b), (veth_b, cbr2), (cbr2, eth2), (eth2, gw), (gw, eth1), (eth1, cbr1),
        (cbr1, veth_c), (veth_c, client)]
    assert "UN-DNAT 10.0.2.3:8080 \u2192 10.3.241.152:80" in reply["r8"][2]
    verdict = node(dot, 'shape="note"', "<B>delivered</B>", "endpoint default/web-b")
    assert 'color="#2ca02c"' in nodes(dot)[verdict]
    assert linked(dot, web_b, verdict)


def test_a_dropped_trace_marks_its_cause_at_its_host():
    trace = {"verdict": "rejected", "from": "default/client-1", "to": "10.3.250.7:80",
             "cause": {"host": "node1", "chain": "filter/KUBE-SERVICES", "verdict": "reject",
                       "rule": "-A KUBE-SERVICES -d 10.3.250.7/32 -j REJECT"},
             "hops": [hop("default/client-1", "pod", o="eth0"),
                      {**hop("node1", "worker", "cbr0", None, {"in": "veth0c0c0c0c", "out": None}),
                       "verdict": "reject"}],
             "reply": []}
    dot = to_dot(live_picture(), trace)
    verdict = node(dot, "<B>rejected</B>", "at node1: filter/KUBE-SERVICES reject",
                   "-A KUBE-SERVICES -d 10.3.250.7/32 -j REJECT")
    assert 'color="#d62728"' in nodes(dot)[verdict]
    assert linked(dot, node(dot, "node1-eth0"), verdict)
    path = numbered(dot, "#d62728")
    assert sorted(path) == ["1", "2"]
    assert path["2"][:2] == (node(dot, "veth0c0c0c0c"), node(dot, "cbr0", "10.0.1.1/24"))


def test_a_connection_from_a_node_starts_at_the_node_and_its_reply_ends_there():
    trace = {"verdict": "delivered",
             "hops": [hop("node1", "worker", None, "cbr0", {"in": None, "out": "veth0a0a0a0a"},
                          [{"type": "dnat", "from": "10.3.241.152:80", "to": "10.0.1.3:8080"}]),
                      hop("default/web-a", "pod", i="eth0")],
             "reply": [hop("default/web-a", "pod", o="eth0"),
                       hop("node1", "worker", "cbr0", None, {"in": "veth0a0a0a0a", "out": None})]}
    dot = to_dot(live_picture(), trace)
    eth1, cbr1 = node(dot, "node1-eth0"), node(dot, "cbr0", "10.0.1.1/24")
    veth, web_a = node(dot, "veth0a0a0a0a"), node(dot, "<B>web-a</B>")
    path, reply = numbered(dot, "#d62728"), numbered(dot, "#1f5fbf")
    assert [path[n][:2] for n in ("1", "2", "3")] == [(eth1, cbr1), (cbr1, veth), (veth, web_a)]
    assert "DNAT" in path["3"][2] and "DNAT" not in path["2"][2]
    assert [reply[n][:2] for n in ("r1", "r2", "r3")] == [(web_a, veth), (veth, cbr1),
                                                          (cbr1, eth1)]
    assert sorted(path) == ["1", "2", "3"] and sorted(reply) == ["r1", "r2", "r3"]


def test_a_trace_over_a_topology_draws_the_pods_it_names():
    trace = {"verdict": "delivered", "hops": [hop("default/a", "pod", o="eth0"),
                                              hop("node1", "worker", "cbr0", "cbr0"),
                                              hop("default/b", "pod", i="eth0")]}
    dot = to_dot(from_topology(load_topology(ARTICLE)), trace)
    a, b = node(dot, "<default/a>"), node(dot, "<default/b>")
    path = numbered(dot, "#d62728")
    cbr1 = node(dot, "cbr0", "10.0.1.1/24")
    assert [path["1"][:2], path["2"][:2]] == [(a, cbr1), (cbr1, b)]


@pytest.mark.parametrize(("trace", "words"), [
    ([], "trace: must be a JSON object"),
    ({"hops": {}}, "hops: must be a list of hops"),
    ({"hops": [{"host": ""}]}, "hops[0].host: must be a host's name"),
    ({"hops": [{"host": "a", "in": 3}]}, "hops[0].in: must be a string or null"),
    ({"hops": [], "reply": [{"host": "a", "bridgePort": []}]},
     "reply[0].bridgePort: must be an object or null"),
    ({"hops": [{"host": "a", "nat": [{"type": 1}]}]}, "hops[0].nat[0].type: must be a string"),
    ({"hops": [], "cause": "x"}, "cause: must be an object or null"),
    ({"hops": [], "verdict": 7}, "trace.verdict: must be a string or null"),
])
def test_a_trace_not_in_trace_json_form_is_refused_naming_the_field(trace, words):
    with pytest.raises(TraceFormatError, match=re.escape(words)):
        check_trace(trace)
    with pytest.raises(TraceFormatError):
        to_dot(live_picture(), trace)


def test_ip_json_readers():
    assert interfaces_from_ip([{"ifname": "b", "addr_info": [], "master": "cbr0"},
                               {"ifname": "a", "addr_info": [
                                   {"family": "inet", "local": "10.0.0.1", "prefixlen": 16}]},
                               "junk", {"no": "name"}]) == (
        Interface("a", ("10.0.0.1/16",)), Interface("b", (), "cbr0"))
    assert routes_from_ip([{"dst": "default", "gateway": "10.0.0.254", "dev": "a"},
                           {"dst": "10.0.0.0/16", "dev": "a", "protocol": "kernel"}, {}]) == (
        Route("default", "10.0.0.254", "a"), Route("10.0.0.0/16", None, "a"))
    assert pods_from_api([api_pod("n", "p", "u", "w", "10.1.1.1", "c", host_network=True)],
                         {"u": "vethx"})[0].veth is None


# -- rendering -------------------------------------------------------------------------------

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz's dot is not installed (scripts/install.sh does)")


@needs_dot
def test_topology_svg_is_svg_holding_the_names():
    from testbed.emu.diagram_command import topology_svg

    svg = topology_svg(load_topology(ARTICLE), TRACE)
    root = ET.fromstring(svg.encode())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    words = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for expected in ("node1", "node1-eth0", "10.0.1.1/24", "10.0.1.0/24 via 10.100.0.2 dev "
                     "br-nodes", "client-eth0", "default/client-1", "delivered"):
        assert expected in words, expected


@needs_dot
def test_odd_names_render(tmp_path):
    from testbed.diagram.dot import to_dot as dot_of
    from testbed.emu.diagram_command import render_svg

    pods = [api_pod("ns", 'a<b>&"c\\N\\\\', "uid-a", "node1", "10.0.1.3", "x\ny")]
    svg = render_svg(dot_of(live_picture(pods=pods, services=[], slices=[])))
    words = [t.text for t in ET.fromstring(svg.encode()).iter("{http://www.w3.org/2000/svg}text")]
    assert 'a<b>&"c\\N\\\\' in words
    assert "containers: x\\x0ay" in words


# -- the command line ------------------------------------------------------------------------

def one_error(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("testbed: "), err
    return lines[0]


def test_cli_refuses_an_unknown_picture_format(capsys, tmp_path):
    assert main(["diagram", "--topology", str(ARTICLE), "-o", str(tmp_path / "x.jpg")]) == 2
    assert one_error(capsys) == (f"testbed: {tmp_path / 'x.jpg'}: unknown picture format: name "
                                 "it .svg, .png or .dot")
    assert main(["diagram", "--topology", str(ARTICLE), "-o", str(tmp_path / "no/x.svg")]) == 2
    assert "does not exist" in one_error(capsys)
    (tmp_path / "d.svg").mkdir()
    assert main(["diagram", "--topology", str(ARTICLE), "-o", str(tmp_path / "d.svg")]) == 2
    assert one_error(capsys).endswith("d.svg: is a directory: name the picture's file")


def test_cli_refuses_a_missing_topology_and_both_sources(capsys, tmp_path):
    assert main(["diagram", "--topology", str(tmp_path / "none.yaml")]) == 2
    assert one_error(capsys) == f"testbed: {tmp_path / 'none.yaml'}: no such file"
    assert main(["diagram", "lab", "--topology", str(ARTICLE)]) == 2
    assert "not both" in one_error(capsys)


def test_cli_refuses_bad_trace_files(capsys, tmp_path, write):
    missing = tmp_path / "gone.json"
    assert main(["diagram", "--topology", str(ARTICLE), "--trace", str(missing)]) == 2
    assert one_error(capsys) == f"testbed: {missing}: no such file"
    bad = write("bad.json", '{"hops": [\n  {"host": "a",}\n]}\n')
    assert main(["diagram", "--topology", str(ARTICLE), "--trace", str(bad)]) == 2
    assert one_error(capsys).startswith(f"testbed: {bad}:2: not JSON: ")
    wrong = write("wrong.json", json.dumps({"hops": [{"host": "a", "nat": {}}]}))
    assert main(["diagram", "--topology", str(ARTICLE), "--trace", str(wrong)]) == 2
    assert one_error(capsys) == (f"testbed: {wrong}: hops[0].nat: must be a list (want testbed "
                                 "trace --json's output)")


def test_cli_says_when_no_cluster_runs(capsys, tmp_path, monkeypatch):
    from testbed.emu import rundir

    monkeypatch.setattr(rundir, "RUN_ROOT", tmp_path)
    assert main(["diagram", "-o", str(tmp_path / "x.dot")]) == 2
    assert "no cluster is running" in one_error(capsys)
    assert main(["diagram", "lab", "-o", str(tmp_path / "x.dot")]) == 2
    assert "no cluster named 'lab' is running" in one_error(capsys)
    assert not (tmp_path / "x.dot").exists()


def test_cli_without_dot_names_the_package_but_still_writes_dot_text(capsys, tmp_path,
                                                                     monkeypatch):
    from testbed.emu import diagram_command

    monkeypatch.setattr(diagram_command.shutil, "which", lambda name: None)
    assert main(["diagram", "--topology", str(ARTICLE), "-o", str(tmp_path / "x.svg")]) == 2
    assert "install the graphviz package" in one_error(capsys)
    assert not (tmp_path / "x.svg").exists()
    assert main(["diagram", "--topology", str(ARTICLE), "-o", str(tmp_path / "x.dot")]) == 0
    assert (tmp_path / "x.dot").read_text() == to_dot(from_topology(load_topology(ARTICLE)))


@needs_dot
def test_cli_writes_svg_png_and_prints_svg(capsys, tmp_path, write):
    trace = write("t.json", json.dumps(TRACE))
    assert main(["diagram", "--topology", str(ARTICLE), "--trace", str(trace)]) == 0
    out, err = capsys.readouterr()
    words = " ".join(t.text or "" for t in ET.fromstring(out.encode()).iter(
        "{http://www.w3.org/2000/svg}text"))
    assert err == "" and "node1-eth0" in words and "default/client-1" in words
    assert main(["diagram", "--topology", str(ARTICLE), "-o", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["diagram", "--topology", str(ARTICLE), "-o", str(tmp_path / "a.svg")]) == 0
    assert "10.0.2.1/24" in (tmp_path / "a.svg").read_text()
    assert main(["diagram", "--topology", str(ARTICLE), "-o", str(tmp_path / "a.dot")]) == 0
    assert (tmp_path / "a.dot").read_text() == to_dot(from_topology(load_topology(ARTICLE)))
