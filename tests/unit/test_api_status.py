"""Status as upstream's registry strategies treat it (testbed/api/strategy.py): dropped on
create for every kind that has one (Nodes aside), ignored by updates and patches of the main
resource, written only through the status subresource, which writes nothing else; and the
Service allocators' refusals as the API answers them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from testbed.api.admission import Api
from testbed.api.allocators import ServiceAllocator
from testbed.api.failures import ApiFailure
from testbed.api.resources import resource_for
from testbed.api.store import Store
from testbed.apiclient import Client

from .conftest import ROOT

FORGED_LB = {"loadBalancer": {"ingress": [{"ip": "192.0.2.127"}]}}


def lb_service() -> dict:
    """The scenarios' LoadBalancer Service, carrying the status the seed's file carried."""
    docs = yaml.safe_load_all((ROOT / "scenarios" / "manifests" / "loadbalancer.yaml").read_text())
    svc = next(d for d in docs if d["metadata"]["name"] == "service-test-lb")
    return dict(svc, metadata=dict(svc["metadata"], namespace="default"), status=FORGED_LB)


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
       "spec": {"containers": [{"name": "c", "image": "busybox",
                                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]},
       "status": {"phase": "Running", "podIP": "10.244.1.9", "qosClass": "BestEffort"}}
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "d", "namespace": "default"},
              "spec": {"selector": {"matchLabels": {"app": "d"}},
                       "template": {"metadata": {"labels": {"app": "d"}},
                                    "spec": {"containers": [{"name": "c", "image": "i"}]}}},
              "status": {"replicas": 5, "readyReplicas": 5, "availableReplicas": 5}}
INGRESS = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": "i", "namespace": "default"},
           "spec": {"defaultBackend": {"service": {"name": "s", "port": {"number": 80}}}},
           "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}]}}}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"},
             "status": {"phase": "Terminating"}}
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "w1"},
        "spec": {"podCIDR": "10.244.1.0/24"},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.11"}]}}

# kind -> the status the API server gives it on create, whatever the client sent
CREATED = [
    (lb_service(), {"loadBalancer": {}}),
    (POD, {"phase": "Pending", "qosClass": "Guaranteed"}),
    (DEPLOYMENT, {}),
    (INGRESS, {"loadBalancer": {}}),
    (NAMESPACE, {"phase": "Active"}),
    (NODE, NODE["status"]),              # Nodes may set everything on create
]


@pytest.fixture
def api() -> Api:
    out = Api(Store(), ServiceAllocator("10.96.0.0/12"))
    out.ensure_defaults("10.0.0.1", 6443)
    return out


def ns_of(obj: dict) -> str | None:
    return obj["metadata"].get("namespace")


@pytest.mark.parametrize("obj, wanted", CREATED, ids=lambda v: v["kind"]
                         if isinstance(v, dict) and "kind" in v else "")
def test_create_drops_the_status_a_client_sent(api: Api, obj: dict, wanted: dict) -> None:
    r = resource_for(obj["kind"])
    made = api.create(r, ns_of(obj), obj)
    assert made.get("status") == wanted
    assert api.get(r, ns_of(obj), obj["metadata"]["name"]).get("status") == wanted


@pytest.mark.parametrize("obj, wanted", CREATED[:5], ids=lambda v: v["kind"]
                         if isinstance(v, dict) and "kind" in v else "")
def test_the_batch_apply_and_server_side_apply_create_drop_it_too(api: Api, obj: dict,
                                                                 wanted: dict) -> None:
    [result] = api.apply_batch([obj])
    assert result["action"] == "created" and result["object"]["status"] == wanted
    r = resource_for(obj["kind"])
    other = dict(obj, metadata=dict(obj["metadata"], name="by-apply"))
    made, created = api.patch(r, ns_of(obj), "by-apply", json.dumps(other).encode(),
                              "application/apply-patch+yaml", field_manager="me")
    assert created and made["status"] == wanted


def test_the_seed_load_balancer_status_never_shows(api: Api) -> None:
    """Nothing that watches Services (the runner's `wait: loadBalancer`, kube-proxy, the cloud
    agent) ever sees the forged address: no event carries it."""
    since = api.store.resource_version
    svc = api.create(resource_for("Service"), "default", lb_service())
    assert svc["status"] == {"loadBalancer": {}}
    batch = api.store.watch("Service", "default", since=since)
    seen = [e.object for e in batch.events if e.object["metadata"]["name"] == "service-test-lb"]
    assert seen and all(o["status"] == {"loadBalancer": {}} for o in seen)


def _main_updates(api: Api, obj: dict) -> list[dict]:
    """The object written back through each way of updating the main resource, each trying
    to set a forged status."""
    r, ns, name = resource_for(obj["kind"]), ns_of(obj), obj["metadata"]["name"]
    forged = {"forged": "yes"} if obj["kind"] != "Pod" else {"phase": "Succeeded"}
    out = []
    current = api.get(r, ns, name)
    out.append(api.replace(r, ns, name, dict(current, status=forged)))
    for body, ctype in ((json.dumps({"status": forged}), "application/merge-patch+json"),
                        (json.dumps({"status": forged}), "application/strategic-merge-patch+json"),
                        (json.dumps([{"op": "add", "path": "/status", "value": forged}]),
                         "application/json-patch+json")):
        out.append(api.patch(r, ns, name, body.encode(), ctype)[0])
    applied = {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
               "metadata": {"name": name, **({"namespace": ns} if ns else {})},
               "status": forged}
    out.append(api.patch(r, ns, name, json.dumps(applied).encode(),
                         "application/apply-patch+yaml", field_manager="me", force=True)[0])
    return out


@pytest.mark.parametrize("obj", [lb_service(), POD, DEPLOYMENT, INGRESS, NAMESPACE, NODE],
                         ids=lambda o: o["kind"])
def test_updates_and_patches_of_the_main_resource_keep_the_status(api: Api, obj: dict) -> None:
    r, ns, name = resource_for(obj["kind"]), ns_of(obj), obj["metadata"]["name"]
    before = api.create(r, ns, obj)["status"]
    for written in _main_updates(api, obj):
        assert written["status"] == before
    assert api.get(r, ns, name)["status"] == before


@pytest.mark.parametrize("obj", [lb_service(), POD, DEPLOYMENT, INGRESS, NAMESPACE, NODE],
                         ids=lambda o: o["kind"])
def test_only_the_status_subresource_writes_status_and_nothing_else(api: Api, obj: dict) -> None:
    r, ns, name = resource_for(obj["kind"]), ns_of(obj), obj["metadata"]["name"]
    made = api.create(r, ns, obj)
    status = dict(made["status"], **({"phase": "Running"} if obj["kind"] in ("Pod", "Namespace")
                                     else {"observedGeneration": 7}))
    changed_spec = dict(made.get("spec") or {}, forged="spec")
    put = api.replace_status(r, ns, name, dict(made, status=status, spec=changed_spec))
    assert put["status"] == status and put.get("spec") == made.get("spec")
    patched, _ = api.patch(r, ns, name, json.dumps({"status": {"conditions": [
        {"type": "Ready", "status": "True"}]}, "spec": {"forged": 1}}).encode(),
        "application/merge-patch+json", subresource="status")
    assert patched["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
    assert patched.get("spec") == made.get("spec")


def test_the_service_status_written_by_its_subresource_reads_back(api: Api) -> None:
    r = resource_for("Service")
    made = api.create(r, "default", lb_service())
    written = api.replace_status(r, "default", made["metadata"]["name"],
                                 dict(made, status=FORGED_LB))
    assert written["status"] == FORGED_LB
    # and a PUT of the main resource that carries another status leaves it alone
    again = api.replace(r, "default", made["metadata"]["name"],
                        dict(written, status={"loadBalancer": {}}))
    assert again["status"] == FORGED_LB


def test_pod_status_writes_keep_the_qos_class_and_observed_generations(api: Api) -> None:
    r = resource_for("Pod")
    made = api.create(r, "default", POD)
    made["metadata"].pop("resourceVersion")   # status writers own the status: no precondition
    api.replace_status(r, "default", "p", dict(made, status={
        "phase": "Running", "qosClass": "Guaranteed", "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "observedGeneration": 1}]}))
    after = api.replace_status(r, "default", "p", dict(made, status={
        "phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}))
    assert after["status"]["qosClass"] == "Guaranteed"   # immutable, set at creation
    assert after["status"]["observedGeneration"] == 1
    assert after["status"]["conditions"] == [
        {"type": "Ready", "status": "False", "observedGeneration": 1}]


def test_namespace_finalizers_are_the_servers(api: Api) -> None:
    r = resource_for("Namespace")
    made = api.create(r, None, NAMESPACE)
    assert made["spec"] == {"finalizers": ["kubernetes"]}
    other = api.create(r, None, {"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": "other"},
                                 "spec": {"finalizers": ["example.com/x"]}})
    assert other["spec"]["finalizers"] == ["example.com/x", "kubernetes"]
    # only the finalize subresource changes them: an update keeps the stored ones
    updated = api.replace(r, None, "team", dict(made, spec={"finalizers": []},
                                                  metadata=dict(made["metadata"],
                                                                labels={"a": "b"})))
    assert updated["spec"] == {"finalizers": ["kubernetes"]}
    assert updated["metadata"]["labels"]["a"] == "b"


def test_a_service_leaving_node_ports_behind_drops_what_it_no_longer_uses(api: Api) -> None:
    """dropTypeDependentFields: a LoadBalancer read back and PUT as ClusterIP, its allocated
    nodePorts and externalTrafficPolicy still in it, is accepted and loses them."""
    r = resource_for("Service")
    made = api.create(r, "default", lb_service())
    ports = [p["nodePort"] for p in made["spec"]["ports"]]
    back = dict(made, spec=dict(made["spec"], type="ClusterIP"))
    updated = api.replace(r, "default", made["metadata"]["name"], back)
    assert all("nodePort" not in p for p in updated["spec"]["ports"])
    assert "externalTrafficPolicy" not in updated["spec"]
    assert updated["spec"]["clusterIP"] == made["spec"]["clusterIP"]
    # a node port the client changed is refused, as validation refuses it
    lb = api.create(r, "default", dict(lb_service(), metadata={"name": "lb2",
                                                               "namespace": "default"}))
    moved = dict(lb, spec=dict(lb["spec"], type="ClusterIP", ports=[
        dict(lb["spec"]["ports"][0], nodePort=ports[0] + 100)]))
    with pytest.raises(ApiFailure) as info:
        api.replace(r, "default", "lb2", moved)
    assert info.value.code == 422 and "spec.ports[0].nodePort" in info.value.message


def test_allocation_refusals_as_the_api_answers_them() -> None:
    api = Api(Store(), ServiceAllocator("10.96.0.0/29"))   # .1 to .6
    api.ensure_defaults("10.0.0.1", 6443)
    r = resource_for("Service")

    def svc(name: str, **spec: object) -> dict:
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}], **spec}}

    with pytest.raises(ApiFailure) as info:
        api.create(r, "default", svc("out", clusterIP="10.0.0.1"))
    assert (info.value.code, info.value.reason) == (422, "Invalid")
    assert info.value.message == (
        'Service "out" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.1"}: failed '
        "to allocate IP 10.0.0.1: the provided network does not match the current range")
    api.create(r, "default", svc("np", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    with pytest.raises(ApiFailure) as info:
        api.create(r, "default", svc("np2", type="NodePort",
                                     ports=[{"port": 80, "nodePort": 30080}]))
    assert info.value.causes == [{
        "reason": "FieldValueInvalid", "field": "spec.ports[0].nodePort",
        "message": "Invalid value: 30080: provided port is already allocated"}]
    for i in range(4):   # .3 to .6: the rest of the range (.1: kubernetes, .2: np)
        api.create(r, "default", svc(f"fill{i}"))
    with pytest.raises(ApiFailure) as info:
        api.create(r, "default", svc("full"))
    assert (info.value.code, info.value.reason) == (500, "InternalError")
    assert info.value.message == ("Internal error occurred: failed to allocate a serviceIP: "
                                  "range is full")
    assert info.value.causes == [{"message": "failed to allocate a serviceIP: range is full"}]


def test_status_over_http_with_the_client(tmp_path: Path) -> None:
    """The same through the API server and its client: create drops, PUT keeps, the status
    subresource (Client.update_status, what every status writer of the testbed uses) writes."""
    from tests.unit.conftest import start_api

    srv = start_api(tmp_path)
    try:
        client = Client(f"http://127.0.0.1:{srv.port}")
        made = client.create(lb_service())
        assert made["status"] == {"loadBalancer": {}}
        assert client.update(dict(made, status=FORGED_LB))["status"] == {"loadBalancer": {}}
        current = client.get("Service", "default", "service-test-lb")
        assert client.update_status(dict(current, status=FORGED_LB))["status"] == FORGED_LB
    finally:
        srv.stop()
