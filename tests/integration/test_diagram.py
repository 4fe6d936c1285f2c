"""`testbed diagram` of a running cluster: the article's topology with its Deployment and
Service, drawn from what the kernel and the API server hold (real pod IPs, the veths on cbr0,
the gateway's routes, the Service's ClusterIP and its endpoints)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from testbed.diagram.dot import to_dot
from testbed.emu.diagram_command import cluster_picture, cluster_svg
from testbed.net.run import run

from .conftest import SCENARIOS, TOPOLOGIES, run_testbed, wait_for

SVG = "{http://www.w3.org/2000/svg}"
SERVICE_IP = "10.3.241.152"     # scenarios/manifests/service-test-service.yaml
pytestmark = pytest.mark.skipif(
    __import__("shutil").which("dot") is None,
    reason="Graphviz's dot is not installed (scripts/install.sh does)")


@pytest.fixture(scope="module")
def cluster():
    from testbed.api.manifests import load_manifests
    from testbed.emu.cluster import Cluster
    from testbed.spec.topology import load_topology

    c = Cluster(load_topology(TOPOLOGIES / "article.yaml")).up()
    try:
        objs = load_manifests([str(SCENARIOS / "manifests" / "service-test-deployment.yaml"),
                               str(SCENARIOS / "manifests" / "service-test-service.yaml")])
        c.apply(objs)
        c.wait_ready(objs, timeout=60)
        wait_for(lambda: len(endpoint_ips(c)) == 2, 30, "service-test's two endpoints")
        yield c
    finally:
        c.down()


def endpoint_ips(cluster) -> set[str]:
    slices, _ = cluster.client.list("EndpointSlice", "default",
                                    "kubernetes.io/service-name=service-test")
    return {a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]}


def service_pods(cluster) -> list[dict]:
    pods, _ = cluster.client.list("Pod", "default", "app=service_test_pod")
    return pods


def svg_words(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg.encode()).iter(f"{SVG}text")]


def cbr0_ports(cluster, node: str) -> set[str]:
    """The host-side veths the kernel has on `node`'s cbr0, read apart from the diagram."""
    pid = cluster.network.hosts[node].pid
    links = json.loads(run(["ip", "-j", "link", "show", "master", "cbr0"], netns=pid).stdout)
    return {link["ifname"] for link in links}


def test_the_svg_shows_real_pod_ips_veths_routes_and_the_service(cluster):
    words = svg_words(cluster_svg(cluster))
    joined = "\n".join(words)
    pods = service_pods(cluster)
    assert len(pods) == 2
    for pod in pods:
        assert pod["metadata"]["name"] in words
        assert f"eth0 {pod['status']['podIP']}" in words
    veths = cbr0_ports(cluster, "node1") | cbr0_ports(cluster, "node2")
    assert len(veths) >= 3          # the two service-test pods and the DNS pod
    for veth in veths:
        assert veth in words, veth
    assert f"ClusterIP {SERVICE_IP}" in words and "Service service-test" in words
    # the gateway's real routes, as the kernel lists them
    assert "10.0.1.0/24 via 10.100.0.2 dev br-nodes" in words
    assert "10.0.2.0/24 via 10.100.0.3 dev br-nodes" in words
    assert "node1-eth0" in joined and "10.100.0.2/24" in words and "10.0.1.1/24" in words


def test_the_service_points_at_its_endpoint_pods_through_their_veths(cluster):
    pic = cluster_picture(cluster)
    pods = {p.name: p for p in pic.pods}
    boxes = cluster.cp.sandboxes()
    for pod in service_pods(cluster):
        drawn = pods[pod["metadata"]["name"]]
        assert drawn.ip == pod["status"]["podIP"]
        assert drawn.veth == boxes[pod["metadata"]["uid"]].attachment.host_veth
        assert drawn.veth in cbr0_ports(cluster, drawn.node)
    dot = to_dot(pic)
    ids = {}
    for line in dot.splitlines():
        m = re.match(r"^\s*(n\d+) \[(.*)\]$", line)
        if m:
            for name in pods:
                if f"<B>{name}</B>" in m[2]:
                    ids[name] = m[1]
            if "Service service-test" in m[2]:
                ids["service"] = m[1]
            for pod in pods.values():
                if pod.veth and f"<{pod.veth}>" in m[2]:
                    ids[pod.veth] = m[1]
    edges = {(m[1], m[2]) for m in re.finditer(r"^\s*(n\d+) -> (n\d+) ", dot, re.M)}
    targets = {t for t, h in edges if h == ids["service"]}
    backends = {p.name for p in pods.values() if p.ip in endpoint_ips(cluster)}
    assert len(backends) == 2
    assert targets == {ids[name] for name in backends}
    for name in backends:
        assert (ids[pods[name].veth], ids[name]) in edges


def test_the_command_draws_the_running_cluster_by_name(cluster, tmp_path):
    name = cluster.record.directory.name
    out = tmp_path / "cluster.svg"
    done = run_testbed("diagram", name, "-o", str(out))
    assert done.returncode == 0, done.stderr
    words = svg_words(out.read_text())
    assert f"ClusterIP {SERVICE_IP}" in words
    for pod in service_pods(cluster):
        assert f"eth0 {pod['status']['podIP']}" in words
    png = tmp_path / "cluster.png"
    done = run_testbed("diagram", name, "-o", str(png))
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_real_trace_is_drawn_over_the_cluster(cluster, tmp_path):
    """`testbed trace`'s live result from one pod to the Service, reaching the endpoint on
    the other node (kube-proxy picks one at random: traced until it does), so through the
    gateway."""
    from testbed.emu.tracing import trace

    src, other = sorted(service_pods(cluster), key=lambda p: p["spec"]["nodeName"])
    for _ in range(12):
        result = trace(cluster, f"default/{src['metadata']['name']}", "service-test:80",
                       protocol="tcp")
        assert result["verdict"] == "delivered", result
        if result["endpoint"] == f"default/{other['metadata']['name']}":
            break
    dst = next(p for p in service_pods(cluster)
               if f"default/{p['metadata']['name']}" == result["endpoint"])
    if src["spec"]["nodeName"] != other["spec"]["nodeName"]:
        assert dst["metadata"]["name"] == other["metadata"]["name"], "12 connections to the Service never reached the other node"
    pic = cluster_picture(cluster)
    dot = to_dot(pic, result)
    ids = {}
    for m in re.finditer(r"^\s*(n\d+) \[(.*)\]$", dot, re.M):
        for pod in pic.pods:
            if f"<B>{pod.name}</B>" in m[2]:
                ids[pod.name] = m[1]
            if pod.veth and f"<{pod.veth}>" in m[2]:
                ids[pod.veth] = m[1]
        if "(gateway)" in m[2]:
            ids["gateway"] = m[1]
    path = {}
    for m in re.finditer(r"^\s*(n\d+)(?::\w+)? -> (n\d+)(?::\w+)? \[color=\"#d62728\".*"
                         r"<B>(\d+)</B>", dot, re.M):
        path[int(m[3])] = (m[1], m[2])
    points = [path[n][0] for n in sorted(path)] + [path[max(path)][1]]
    by_name = {p.name: p for p in pic.pods}
    source, target = by_name[src["metadata"]["name"]], by_name[dst["metadata"]["name"]]
    assert points[:2] == [ids[source.name], ids[source.veth]], points
    assert points[-2:] == [ids[target.veth], ids[target.name]], points
    assert (ids["gateway"] in points) == (source.node != target.node)
    # and Graphviz draws it: the verdict and the numbers are in the picture
    out = tmp_path / "trace.json"
    out.write_text(json.dumps(result))
    words = svg_words(cluster_svg(cluster, json.loads(out.read_text())))
    assert "delivered" in words and "1" in words and str(max(path)) in words
