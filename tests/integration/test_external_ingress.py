"""Ingress from the external client, through the ingress-nginx add-on's real nginx (as root).

One cluster for the module: the two-node topology with `addons: [ingress-nginx]`. The article's
example is applied unchanged (scenarios/manifests/article-ingress.yaml) and reached with the
article's own curl command from the client; v1 Ingresses add host and path routing, the 404
default, a configuration nginx rejects, and endpoint changes.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from testbed.net.run import run
from tests.integration.conftest import SCENARIOS, TOPOLOGIES, wait_for

ERROR_ANNOTATION = "ingress.testbed.io/config-error"



@pytest.fixture(scope="module")
def cluster():
    from testbed.api.manifests import load_manifests
    from testbed.emu.addons import ingress_nginx_addon
    from testbed.emu.cluster import Cluster
    from testbed.spec.topology import load_topology

    topo = dataclasses.replace(load_topology(TOPOLOGIES / "two-node.yaml"), addons=("ingress-nginx",))
    cluster = Cluster(topo).up()
    try:
        article = load_manifests([str(SCENARIOS / "manifests" / "article-ingress.yaml")])
        backends = [
            deployment("web", 2), deployment("api", 1),
            svc("web"), svc("api"),
            {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
             "metadata": {"name": "routes", "namespace": "default"},
             "spec": {"rules": [
                 {"host": "routes.example.com", "http": {"paths": [
                     path("/hostname", "Prefix", "web"), path("/clientip", "Exact", "api")]}},
                 {"host": "other.example.com", "http": {"paths": [path("/", "Prefix", "api")]}}]}},
        ]
        cluster.apply(article + backends)
        cluster.wait_ready(ingress_nginx_addon(topo, cluster.cp.api) + article + backends, timeout=90)
        yield cluster
    finally:
        cluster.down()


def deployment(name: str, replicas: int) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                         "name": "netexec", "image": "registry.k8s.io/e2e-test-images/agnhost:2.39",
                         "args": ["netexec", "--http-port=8080"],
                         "ports": [{"name": "http", "containerPort": 8080}],
                         "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}}}


def svc(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http"}]}}


def path(p: str, kind: str, service: str) -> dict:
    return {"path": p, "pathType": kind, "backend": {"service": {"name": service, "port": {"number": 80}}}}


def node_port(cluster) -> int:
    service = cluster.client.get("Service", "nginx-ingress", "nginx-ingress")
    return next(p["nodePort"] for p in service["spec"]["ports"] if p["name"] == "http")


def curl(cluster, host: str, url_path: str = "/", node: str = "w1") -> tuple[int, str]:
    """The article's command from the external client: curl -H 'Host: HOST' http://NODE_IP:NODE_PORT/."""
    address = cluster.topo.node(node).address
    result = run(["curl", "-s", "-m", "3", "-w", "\n%{http_code}", "-H", f"Host: {host}",
                  f"http://{address}:{node_port(cluster)}{url_path}"],
                 netns=cluster.network.pid("client"), check=False, timeout=10)
    body, _, code = result.stdout.rpartition("\n")
    return int(code or 0), body


def pods_of(cluster, app: str) -> set[str]:
    return {p.name for p in cluster.all_pods() if p.name.startswith(f"{app}-") and p.ready}


def test_article_example_answers_from_every_pod_through_every_worker(cluster) -> None:
    pods = pods_of(cluster, "service-test")
    assert len(pods) == 4
    wait_for(lambda: curl(cluster, "nginx.example.com", "/", "w1")[0] != 503, 15,
             "the controller to route to service-test's pods")
    for node in ("w1", "w2"):
        seen = set()
        for _ in range(16):
            code, body = curl(cluster, "nginx.example.com", "/", node)
            assert code == 200, body
            found = re.search(r"Hello from (\S+?)</p>", body)
            assert found, body
            seen.add(found.group(1))
            if seen == pods:
                break
        assert seen == pods, f"through {node}: answered by {sorted(seen)}, pods {sorted(pods)}"
    # `kubectl get ingress` ADDRESS: the nodes running the controller pods.
    hosts = {str(cluster.topo.node(p.node).address) for p in cluster.all_pods() if p.namespace == "nginx-ingress"}
    wait_for(lambda: {i["ip"] for i in (cluster.client.get("Ingress", "default", "nginx-ingress-test")
                                         .get("status") or {}).get("loadBalancer", {}).get("ingress", [])} == hosts,
             10, f"the Ingress status to list {hosts}")


def test_host_and_path_routing_and_the_404_default(cluster) -> None:
    # The controller follows endpoint changes asynchronously, as ingress-nginx does: until its
    # next reload a backend whose pods just became ready still answers 503.
    wait_for(lambda: curl(cluster, "other.example.com", "/hostname")[0] != 503, 15,
             "the controller to route to the api pod")
    code, body = wait_for(lambda: (r := curl(cluster, "routes.example.com", "/hostname"))[0] != 503 and r,
                          15, "the controller to route to the web pods")
    assert code == 200 and body in pods_of(cluster, "web")
    code, body = curl(cluster, "routes.example.com", "/hostname/more")   # Prefix: element-wise
    assert code != 0 and "default backend" not in body, (code, body)  # answered, not by the default
    code, body = curl(cluster, "routes.example.com", "/clientip")         # Exact -> api
    assert code == 200 and re.match(r"10\.244\.\d+\.\d+:\d+$", body), body  # nginx's pod IP: a proxy
    code, body = curl(cluster, "routes.example.com", "/clientip/x")       # Exact does not match
    assert code == 404 and "default backend - 404" in body
    code, body = curl(cluster, "other.example.com", "/hostname")
    assert code == 200 and body in pods_of(cluster, "api")
    code, body = curl(cluster, "unknown.example.com", "/")
    assert (code, body.strip()) == (404, "default backend - 404")


def test_rejected_configuration_leaves_the_old_one_serving(cluster) -> None:
    broken = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
              "metadata": {"name": "broken", "namespace": "default", "annotations": {
                  "nginx.ingress.kubernetes.io/configuration-snippet": "no_such_directive on;"}},
              "spec": {"rules": [{"host": "broken.example.com", "http": {"paths": [path("/", "Prefix", "web")]}}]}}
    cluster.apply([broken])
    try:
        notes = wait_for(lambda: (cluster.client.get("Ingress", "default", "broken")["metadata"]
                                  .get("annotations") or {}).get(ERROR_ANNOTATION), 15, "the error report")
        assert 'unknown directive "no_such_directive"' in notes
        code, body = curl(cluster, "routes.example.com", "/hostname")
        assert code == 200 and body in pods_of(cluster, "web")
        code, body = curl(cluster, "broken.example.com", "/")
        assert code == 404 and "default backend" in body       # never loaded
        # Fixing the Ingress loads it and clears the report.
        del broken["metadata"]["annotations"]["nginx.ingress.kubernetes.io/configuration-snippet"]
        cluster.apply([broken])
        wait_for(lambda: curl(cluster, "broken.example.com", "/hostname")[0] == 200, 15, "the fixed Ingress")
        wait_for(lambda: ERROR_ANNOTATION not in (cluster.client.get("Ingress", "default", "broken")
                                                  ["metadata"].get("annotations") or {}), 10, "the report cleared")
    finally:
        cluster.client.delete("Ingress", "default", "broken")


def test_backends_follow_endpoint_changes(cluster) -> None:
    before = pods_of(cluster, "web")
    cluster.client.scale("Deployment", "default", "web", 3)
    after = wait_for(lambda: p if len(p := pods_of(cluster, "web")) == 3 else None, 30, "3 web pods")
    new = after - before

    def answered_by_new() -> bool:
        return any(curl(cluster, "routes.example.com", "/hostname")[1] in new for _ in range(6))
    wait_for(answered_by_new, 15, f"the new pod {new} to answer through the Ingress")
