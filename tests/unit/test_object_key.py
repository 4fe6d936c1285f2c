"""One (namespace, name) key: testbed.api.meta.object_key, and every place that files objects
by it. Each call site gets an object without metadata.namespace and one with namespace
"default" (or "") and must take them for the same object, so a helper that brings back its own
default (the old "" of controllers.common.namespace_of or the informer, the KeyError of
key_of on cluster-scoped kinds) fails here."""

from __future__ import annotations

import copy
import itertools
import random
from pathlib import Path

from testbed.api.meta import namespace_of, object_key
from testbed.api.store import Store, key_of
from testbed.apiclient.client import Client
from testbed.apiclient.informer import Informer
from testbed.controllers import common
from testbed.controllers.deployment import new_pod
from testbed.controllers.endpoints import desired
from testbed.controllers.endpointslice import desired_slices, reconcile_service
from testbed.controllers.loadbalancer import local_nodes
from testbed.dns.dnsmasq import Settings
from testbed.dns.records import build_records
from testbed.dns.server import ClusterDns
from testbed.ingress.config import build, ingress_key
from testbed.proxy.tracker import EndpointsChangeTracker, ServiceChangeTracker
from testbed.scenario.actions import Delete
from testbed.scenario.spec import Step
from testbed.scenario.steps import execute

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def bare(obj: dict) -> dict:
    """obj without metadata.namespace."""
    out = copy.deepcopy(obj)
    out["metadata"].pop("namespace", None)
    return out


def in_ns(obj: dict, namespace: str) -> dict:
    out = copy.deepcopy(obj)
    out["metadata"]["namespace"] = namespace
    return out


def service(name: str = "web", namespace: str | None = "default", **spec) -> dict:
    meta = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.20", "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                "protocol": "TCP"}], **spec}}


def endpoint_slice(service_name: str = "web", namespace: str | None = "default",
                   ip: str = "10.244.1.5", node: str = "w1") -> dict:
    meta: dict = {"name": f"{service_name}-abc", "labels": {SERVICE_NAME_LABEL: service_name}}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "addressType": "IPv4", "metadata": meta,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True},
                           "nodeName": node}]}


def pod(name: str = "p", namespace: str | None = "default", ip: str = "10.244.1.5") -> dict:
    meta: dict = {"name": name, "labels": {"app": "web"}}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": "w1", "containers": [
                {"name": "c", "image": "nginx", "ports": [{"containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}


# -- object_key itself -------------------------------------------------------------------------

def test_namespaced_object_with_and_without_namespace() -> None:
    assert object_key(service(namespace="team-a")) == ("team-a", "web")
    assert object_key(service(namespace=None)) == ("default", "web")
    assert object_key(service(namespace="")) == ("default", "web")
    assert object_key({"metadata": {"name": "x"}}) == ("default", "x")  # a list item: no kind
    assert namespace_of(service(namespace=None)) == "default"


def test_cluster_scoped_objects_have_no_namespace() -> None:
    assert object_key({"kind": "Node", "metadata": {"name": "w1"}}) == ("", "w1")
    assert object_key({"kind": "Namespace", "metadata": {"name": "team-a"}}) == ("", "team-a")
    # even one that (wrongly) names a namespace is filed without it
    assert object_key({"kind": "Node", "metadata": {"name": "w1", "namespace": "x"}}) == ("", "w1")
    assert namespace_of({"kind": "Node", "metadata": {"name": "w1"}}) == ""


def test_store_key_is_the_kind_before_object_key() -> None:
    assert key_of(service(namespace=None)) == key_of(service()) == ("Service", "default", "web")
    assert key_of({"kind": "Node", "metadata": {"name": "w1"}}) == ("Node", "", "w1")


def test_controllers_have_no_key_helpers_of_their_own() -> None:
    # controllers.common's namespace_of defaulted to "" and key_of to "default" (and failed on
    # cluster-scoped kinds); callers use testbed.api.meta's object_key and namespace_of.
    assert not hasattr(common, "namespace_of") and not hasattr(common, "key_of")


# -- controllers -------------------------------------------------------------------------------

def test_deployment_pods_go_to_the_default_namespace() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "web", "uid": "u1"},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}},
                                        "spec": {"containers": [{"name": "c",
                                                                 "image": "nginx"}]}}}}
    assert new_pod(deployment, "abc", random.Random(1))["metadata"]["namespace"] == "default"


def test_endpoints_and_endpointslice_targets_name_the_default_namespace() -> None:
    assert desired(service(namespace=None), [])["metadata"]["namespace"] == "default"
    [slice_] = desired_slices(service(namespace=None), [pod(namespace=None)], {})
    assert slice_["endpoints"][0]["targetRef"]["namespace"] == "default"


def test_endpointslice_controller_reads_a_service_without_namespace_as_default() -> None:
    uids = (f"uid-{i}" for i in itertools.count(1))
    store = Store(now=lambda: "2024-01-01T00:00:00Z", new_uid=lambda: next(uids))
    store.create(pod("here", "default", "10.244.1.5"))
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    store.create(pod("there", "other", "10.244.2.5"))
    reconcile_service(store, service(namespace=None), random.Random(1), {})
    slices, _ = store.list("EndpointSlice")
    assert [object_key(s)[0] for s in slices] == ["default"]
    assert [e["addresses"] for e in slices[0]["endpoints"]] == [["10.244.1.5"]]


def test_load_balancer_local_nodes_match_slices_without_namespace() -> None:
    slices = [endpoint_slice(namespace=None, node="w1"),
              endpoint_slice(namespace="other", node="w9")]
    assert local_nodes(service(), slices) == {"w1"}
    assert local_nodes(service(namespace=None), [endpoint_slice(node="w2")]) == {"w2"}


# -- API client and informer -------------------------------------------------------------------

class RecordingClient(Client):
    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9")
        self.paths: list[tuple[str, str]] = []

    def request(self, method, path, body=None, query=None):
        self.paths.append((method, path))
        return body


def test_client_writes_an_object_without_namespace_to_default() -> None:
    client = RecordingClient()
    client.create(service(namespace=None))
    client.update(service(namespace=None))
    client.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "w1"}})
    assert client.paths == [("POST", "/api/v1/namespaces/default/services"),
                            ("PUT", "/api/v1/namespaces/default/services/web"),
                            ("POST", "/api/v1/nodes")]


class ListingClient:
    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def list(self, kind, namespace=None, selector=None, fields=None):
        return copy.deepcopy(self.items), "1"


def test_informer_files_objects_without_namespace_under_default() -> None:
    seen: list[tuple[str, str]] = []
    inf = Informer(ListingClient([pod("a", namespace=None)]), "Pod",
                   on_add=lambda o: seen.append(("add", o["metadata"]["name"])),
                   on_update=lambda o, n: seen.append(("update", n["metadata"]["name"])))
    inf._relist()
    assert inf.get("default", "a") is not None
    inf._apply("MODIFIED", pod("a", namespace="default"))   # the same Pod, namespace spelled out
    assert seen == [("add", "a"), ("update", "a")]
    assert len(inf.items()) == 1


def test_informer_keys_cluster_scoped_objects_without_namespace() -> None:
    node = {"kind": "Node", "metadata": {"name": "w1", "resourceVersion": "1"}}
    inf = Informer(ListingClient([node]), "Node")
    inf._relist()
    inf._apply("MODIFIED", {"metadata": {"name": "w1", "resourceVersion": "2"}})  # no kind
    assert [o["metadata"]["resourceVersion"] for o in inf.items()] == ["2"]
    assert inf.get("", "w1") is not None


# -- DNS -------------------------------------------------------------------------------------------

def test_dns_records_match_a_slice_to_its_service_across_the_default_spelling() -> None:
    headless = service(namespace=None, clusterIP="None")
    records = build_records([headless], [endpoint_slice(namespace="default")],
                            [pod(namespace=None)])
    names = {(a.name, a.address) for a in records.addresses}
    assert ("web.default.svc.cluster.local", "10.244.1.5") in names
    assert [(a.name, a.address) for a in records.pods] == [
        ("10-244-1-5.default.pod.cluster.local", "10.244.1.5")]


def test_dns_server_files_both_spellings_as_one_object(tmp_path: Path) -> None:
    dns = ClusterDns(None, Settings(workdir=str(tmp_path)), informer=None, dnsmasq=object())
    dns.on_add("Service", service(namespace=None))
    dns.on_add("Service", service(namespace="default"))     # the same Service, listed again
    assert list(dns.objects["Service"]) == [("default", "web")]
    dns.on_delete("Service", service(namespace=None))
    assert dns.objects["Service"] == {}


# -- kube-proxy ----------------------------------------------------------------------------------

def test_proxy_service_tracker_takes_both_spellings_for_one_service() -> None:
    tracker = ServiceChangeTracker()
    assert tracker.update(None, service(namespace=None))
    assert not tracker.update(service(namespace="default"), None)  # added then deleted: nothing
    assert tracker.pending() == 0


def test_proxy_endpoints_tracker_keys_slices_and_their_service_by_default() -> None:
    tracker = EndpointsChangeTracker()
    tracker.update(None, endpoint_slice(namespace=None))
    tracker.update(endpoint_slice(namespace="default"), None)
    assert tracker.checkout() == {("default", "web-abc"): None}
    tracker.update(None, endpoint_slice(namespace=None))
    [(slice_key, (service_key, _))] = tracker.checkout().items()
    assert slice_key == ("default", "web-abc") and service_key == ("default", "web")


# -- ingress -----------------------------------------------------------------------------------

def ingress(namespace: str | None) -> dict:
    meta: dict = {"name": "site", "creationTimestamp": "2024-01-01T00:00:00Z"}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
            "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}}


def test_ingress_config_finds_the_backend_whichever_spelling_each_side_uses() -> None:
    for ing_ns, svc_ns, slice_ns in ((None, "default", "default"), ("", None, None),
                                     ("default", "", None)):
        model = build([ingress(ing_ns)], [service(namespace=svc_ns)],
                      [endpoint_slice(namespace=slice_ns)])
        assert model.problems == [], (ing_ns, svc_ns, slice_ns)
        assert model.ingresses == ["default/site"]
        assert model.backends["default_web_80"].servers == ("10.244.1.5:8080",)
    assert ingress_key(ingress(None)) == ingress_key(ingress("")) == "default/site"
    assert build([ingress(None)], [], [], exclude=["default/site"]).ingresses == []


# -- scenario steps ------------------------------------------------------------------------------

class DeletingClient:
    def __init__(self) -> None:
        self.deleted: list[tuple[str, str, str]] = []

    def delete(self, kind: str, namespace: str, name: str) -> dict:
        self.deleted.append((kind, namespace, name))
        return {}


class FakeCluster:
    def __init__(self) -> None:
        self.client = DeletingClient()


def test_scenario_delete_step_names_the_default_namespace() -> None:
    cluster = FakeCluster()
    objects = [service(namespace=None),
               {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}]
    outcome = execute(cluster, Step("delete", 1, Delete(files=(Path("x.yaml"),))), objects,
                      lambda _: None)
    assert cluster.client.deleted == [("Service", "default", "web"), ("Namespace", "", "team-a")]
    assert "Service default/web" in outcome.observed


def test_no_module_but_api_meta_defaults_a_namespace_by_hand():
    """One key: `meta.get("namespace") or "default"` and its kind are written only in
    api/meta.py (object_key, namespace_of); an object reference's namespace (an Event's
    involvedObject, api/events.py) is not an object's key and may default on its own."""
    import re

    root = Path(__file__).resolve().parents[2] / "testbed"
    pattern = re.compile(r"""get\(\s*["']namespace["']\s*(,\s*["']default["']\s*\)|\)\s*or\s*["']default["'])""")
    allowed = {"api/meta.py", "api/events.py"}
    found = [f"{p.relative_to(root)}:{n}: {line.strip()}" for p in sorted(root.rglob("*.py"))
             if str(p.relative_to(root)) not in allowed
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "use testbed.api.meta.object_key / namespace_of:\n" + "\n".join(found)
