"""The tests tests/flips.py asked for: each one is here because flipping a condition in a
decision function (tests/unit/test_flips.py, FLIPS=all) let every other unit test pass.

Each calls the function (or the smallest public thing around it) with one input on each side
of the condition; the comment above it names the mutant it kills."""

from __future__ import annotations

import itertools
import random

from testbed.api.manifests import check_object
from testbed.api.podstatus import ContainerObservation, PodObservation, phase
from testbed.api.store import Store
from testbed.controllers.deployment import reconcile_deployments
from testbed.controllers.endpointslice import desired_slices, reconcile_service, resolve_port
from testbed.ingress.config import SERVER_SNIPPET, build
from testbed.node.kubeletplan import ContainerSeen, LocalPod, PodSeen, ProbeTracker, observation
from testbed.proxy.model import Endpoint, ServicePort, ServicePortName, categorize

# -- helpers ------------------------------------------------------------------------------------


def make_store() -> Store:
    uids = (f"uid-{i}" for i in itertools.count(1))
    return Store(now=lambda: "2024-01-01T00:00:00Z", new_uid=lambda: next(uids))


def valid(obj: dict) -> dict:
    out, problems = check_object(obj)
    assert out is not None, [str(p) for p in problems]
    return out


def problems(obj: dict) -> list[str]:
    return [f"{p.field}: {p.message}" for p in check_object(obj)[1]]


def live_pods(store: Store) -> list[dict]:
    return [p for p in store.list("Pod")[0] if not p["metadata"].get("deletionTimestamp")]


def terminating_pods(store: Store) -> list[dict]:
    return [p for p in store.list("Pod")[0] if p["metadata"].get("deletionTimestamp")]


def deployment(replicas: int, image: str = "nginx", **strategy: object) -> dict:
    return valid({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                           "strategy": strategy,
                           "template": {"metadata": {"labels": {"app": "web"}},
                                        "spec": {"containers": [{"name": "c", "image": image}]}}}})


def make_ready(store: Store, pod: dict) -> None:
    store.update_status(dict(pod, status={"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}]}))


# -- EndpointSlice controller -------------------------------------------------------------------

# resolve_port:+6:And->Or: a port matched on its name *or* its protocol took the first TCP port.
def test_a_named_target_port_needs_both_its_name_and_its_protocol() -> None:
    pod = {"spec": {"containers": [{"name": "c", "ports": [
        {"name": "metrics", "containerPort": 9090},
        {"name": "http", "containerPort": 8080},
        {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}]}}
    assert resolve_port(pod, "http", "TCP") == 8080
    assert resolve_port(pod, "dns", "UDP") == 5353
    assert resolve_port(pod, "dns", "TCP") is None      # the name, but not the protocol
    assert resolve_port(pod, "nope", "TCP") is None     # the protocol, but not the name
    assert resolve_port(pod, 80, "TCP") == 80


def _db_pod(name: str, **spec: object) -> dict:
    return {"metadata": {"namespace": "default", "name": name, "labels": {"app": "db"}},
            "spec": {"containers": [{"name": "c"}], **spec},
            "status": {"phase": "Running", "podIP": f"10.244.0.{len(name) + 1}"}}


# _endpoint:+11:And->Or and Eq->NotEq: the hostname goes with a subdomain that is the Service.
def test_an_endpoint_has_the_hostname_only_when_the_subdomain_is_the_service() -> None:
    service = {"metadata": {"name": "db"},
               "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}}
    pods = [_db_pod("a", hostname="db-0", subdomain="db"),
            _db_pod("bb", hostname="db-1", subdomain="other"),
            _db_pod("ccc", subdomain="db")]
    [slice_] = desired_slices(service, pods, {})
    assert [e.get("hostname") for e in slice_["endpoints"]] == ["db-0", None, None]


def _endpoint_store() -> tuple[Store, dict]:
    store = make_store()
    store.create({"apiVersion": "v1", "kind": "Node", "spec": {}, "metadata": {
        "name": "w1", "labels": {"topology.kubernetes.io/zone": "zone-a"}}})
    service = store.create(valid({"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}))
    pod = store.create(valid({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "a", "labels": {"app": "web"}}, "spec": {
        "nodeName": "w1", "containers": [{"name": "c", "image": "i"}]}}))
    store.update_status(dict(pod, status={"phase": "Running", "podIP": "10.244.1.2"}))
    return store, service


# reconcile_service:+7:IfExp->not and Is->IsNot: zones read from the store only when not given.
def test_reconcile_service_reads_zones_from_the_store_unless_handed_them() -> None:
    store, service = _endpoint_store()
    reconcile_service(store, service, random.Random(1))
    [slice_] = store.list("EndpointSlice")[0]
    assert slice_["endpoints"][0]["zone"] == "zone-a"
    store, service = _endpoint_store()
    reconcile_service(store, service, random.Random(1), zones={"w1": "zone-z"})
    [slice_] = store.list("EndpointSlice")[0]
    assert slice_["endpoints"][0]["zone"] == "zone-z"


def _slice(address_type: str, address: str) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "s"}, "addressType": address_type,
            "endpoints": [{"addresses": [address]}], "ports": [{"port": 80}]}


# _check_endpoint:+10:If->not and Eq->NotEq: FQDN addresses are checked as DNS names, and
# only they (IPv6 ones are not checked as names).
def test_fqdn_endpoint_addresses_are_checked_as_dns_names_and_only_they() -> None:
    assert problems(_slice("FQDN", "web.example.com")) == []
    assert [p.split(":")[0] for p in problems(_slice("FQDN", "Bad_Name"))] == [
        "endpoints[0].addresses[0]"]
    assert problems(_slice("IPv6", "fd00::1")) == []
    assert [p.split(":")[0] for p in problems(_slice("IPv4", "10.0.0.300"))] == [
        "endpoints[0].addresses[0]"]


# -- Deployment controller ----------------------------------------------------------------------

# reconcile_deployment:+28:And->Or: under Recreate, only *old* terminating Pods hold new ones
# back; a terminating Pod of the current template is replaced at once.
def test_recreate_replaces_a_terminating_pod_of_the_current_template() -> None:
    store, rng = make_store(), random.Random(7)
    store.create(deployment(2, type="Recreate"))
    reconcile_deployments(store, rng)
    victim = live_pods(store)[0]
    store.delete("Pod", "default", victim["metadata"]["name"], grace_seconds=30)
    reconcile_deployments(store, rng)
    assert len(live_pods(store)) == 2 and len(terminating_pods(store)) == 1


# reconcile_deployment:+39:Eq->NotEq#2: maxUnavailable is forced to 1 only when maxSurge and
# maxUnavailable are both 0; maxSurge 0 with maxUnavailable 2 takes two old Pods down at once.
def test_rolling_update_without_surge_takes_down_max_unavailable_at_once() -> None:
    store, rng = make_store(), random.Random(8)
    rolling = {"maxSurge": 0, "maxUnavailable": 2}
    store.create(deployment(4, type="RollingUpdate", rollingUpdate=rolling))
    reconcile_deployments(store, rng)
    for pod in live_pods(store):
        make_ready(store, pod)
    store.apply(deployment(4, "httpd", type="RollingUpdate", rollingUpdate=rolling))
    reconcile_deployments(store, rng)
    assert len(terminating_pods(store)) == 2 and len(live_pods(store)) == 2


# reconcile_deployments:+10:And->Or: only a *controller* reference of *kind Deployment* makes a
# Pod an orphan when that Deployment is gone.
def test_only_pods_controlled_by_a_gone_deployment_are_collected() -> None:
    store, rng = make_store(), random.Random(9)

    def owned(name: str, kind: str, controller: bool) -> None:
        store.create(valid({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "ownerReferences": [{"apiVersion": "apps/v1", "kind": kind,
                                               "name": "gone", "uid": "gone-uid",
                                               "controller": controller}]},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}))

    owned("by-deployment", "Deployment", True)
    owned("not-controller", "Deployment", False)
    owned("by-replicaset", "ReplicaSet", True)
    changes = reconcile_deployments(store, rng)
    assert [(c.verb, c.name) for c in changes] == [("delete", "by-deployment")]


# -- kubelet plan -------------------------------------------------------------------------------

# ProbeTracker.record:+7 (If->not, GtE->Lt) and +13 (NotEq->Eq): a verdict comes after
# successThreshold successes in a row, and record() says when the verdict changed.
def test_a_probe_verdict_needs_its_thresholds_and_record_reports_changes() -> None:
    t = ProbeTracker({"successThreshold": 2, "failureThreshold": 2})
    assert t.record(True, "", 1.0) is False and t.result is None
    assert t.record(True, "", 2.0) is True and t.result is True
    assert t.record(True, "", 3.0) is False and t.result is True     # no change, no news
    assert t.record(False, "boom", 4.0) is False and t.result is True
    assert t.record(False, "boom", 5.0) is True and t.result is False
    assert (t.successes, t.failures, t.message, t.last_run) == (0, 2, "boom", 5.0)


# observation:+9 (And->Or, Is->IsNot#2): a container is ready when it runs and its readiness
# probe (if any) said yes; not while the probe has no verdict yet or said no.
def test_a_container_is_ready_only_running_and_with_a_passed_readiness_probe() -> None:
    manifest = {"metadata": {"namespace": "default", "name": "p", "uid": "u"},
                "spec": {"containers": [
                    {"name": "probed", "image": "i", "readinessProbe": {"exec": {}}},
                    {"name": "plain", "image": "i"}, {"name": "stopped", "image": "i"}]}}
    seen = {"probed": ContainerSeen("probed", True, started_at=1.0),
            "plain": ContainerSeen("plain", True, started_at=1.0),
            "stopped": ContainerSeen("stopped", False, exit_code=0)}
    pod = LocalPod("u", manifest, None, PodSeen(True, "10.244.0.2", 1.0, seen))

    def ready() -> dict[str, bool]:
        return {c.name: c.ready for c in observation(pod, "192.168.0.2", 10.0).containers}

    assert ready() == {"probed": False, "plain": True, "stopped": False}   # no verdict yet
    pod.tracks["probed"].readiness.result = True
    assert ready()["probed"] is True
    pod.tracks["probed"].readiness.result = False
    assert ready()["probed"] is False


# -- pod status ---------------------------------------------------------------------------------

# phase:+16:Or->And: a container that ran before (restarts, or a last exit code) and now waits to
# be restarted counts as stopped, so the pod is Running under Always, not Pending.
def test_a_container_waiting_to_restart_keeps_the_pod_running() -> None:
    def pod(**container: object) -> PodObservation:
        return PodObservation("Always", "10.244.0.5", "192.168.0.2", 1.0, [ContainerObservation(
            "c", "img", running=False, ready=False, waiting_reason="CrashLoopBackOff",
            **container)])

    assert phase(pod(restart_count=2)) == "Running"
    assert phase(pod(last_exit_code=1)) == "Running"
    assert phase(pod()) == "Pending"     # never ran: still waiting to start


# -- ingress --------------------------------------------------------------------------------------

def _ingress(name: str, created: str, rules: list, default: str | None = None,
             notes: dict | None = None) -> dict:
    spec: dict = {"rules": rules}
    if default:
        spec["defaultBackend"] = {"service": {"name": default, "port": {"number": 80}}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                         "annotations": notes or {}}, "spec": spec}


def _rule(host: str | None, path: str = "/", service: str = "web") -> dict:
    return {**({"host": host} if host else {}), "http": {"paths": [
        {"path": path, "pathType": "Prefix",
         "backend": {"service": {"name": service, "port": {"number": 80}}}}]}}


def _service(name: str) -> dict:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


# build:+24 (NotEq->Eq, NotEq->Eq#2): a server-snippet goes to the Ingress's named hosts (not
# the catch-all), once per Ingress per host, one per Ingress.
def test_server_snippets_go_to_named_hosts_once_per_ingress() -> None:
    a = _ingress("a", "2024-01-01T00:00:00Z",
                 [_rule("h.example.com"), _rule("h.example.com", "/x"), _rule(None, "/c")],
                 notes={SERVER_SNIPPET: "add_header X-A a;"})
    b = _ingress("b", "2024-01-02T00:00:00Z", [_rule("h.example.com", "/b")],
                 notes={SERVER_SNIPPET: "add_header X-B b;"})
    model = build([a, b], [_service("web")], [])
    assert model.servers["h.example.com"].snippets == [("default/a", "add_header X-A a;"),
                                                       ("default/b", "add_header X-B b;")]
    assert model.servers["_"].snippets == []


# build:+26:And->Or: a host's unmatched paths go to the *oldest* Ingress's defaultBackend; a
# newer Ingress's does not replace it.
def test_a_hosts_fallback_is_the_oldest_ingress_default_backend() -> None:
    old = _ingress("old", "2024-01-01T00:00:00Z", [_rule("h.example.com", "/a")], "fallback")
    new = _ingress("new", "2024-01-02T00:00:00Z", [_rule("h.example.com", "/b")], "web")
    plain = _ingress("plain", "2024-01-03T00:00:00Z", [_rule("p.example.com", "/p")])
    model = build([new, plain, old], [_service("web"), _service("fallback")], [])
    assert model.servers["h.example.com"].fallback.ingress == "default/old"
    assert model.servers["_"].fallback.ingress == "default/old"
    assert model.servers["p.example.com"].fallback is None


# _Backends._endpoints:+4:And->Or: a slice port is the Service port's only when both its name
# and protocol (TCP) match, not when either does.
def test_an_upstream_uses_the_slice_port_with_the_service_ports_name_and_tcp() -> None:
    slice_ = {"metadata": {"name": "web-x", "namespace": "default",
                           "labels": {"kubernetes.io/service-name": "web"}},
              "ports": [{"name": "metrics", "port": 9090, "protocol": "TCP"},
                        {"name": "http", "port": 5353, "protocol": "UDP"},
                        {"name": "http", "port": 8080, "protocol": "TCP"}],
              "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": True}}]}
    model = build([_ingress("a", "2024-01-01T00:00:00Z", [_rule("h.example.com")])],
                  [_service("web")], [slice_])
    [backend] = model.backends.values()
    assert backend.servers == ("10.244.0.5:8080",)


# -- kube-proxy -----------------------------------------------------------------------------------

# categorize:+18:And->Or: with local endpoints in use, an endpoint counts (has_any, local
# fallback) only when ready, or serving *and* terminating, never when just one of the two.
def test_local_endpoints_fall_back_only_to_serving_and_terminating_ones() -> None:
    svc = ServicePort(ServicePortName("default", "web", "", "TCP"), "10.96.0.10", 80,
                      internal_policy_local=True)

    def cat(*eps: Endpoint):
        return categorize(eps, svc, "n1")

    gone = Endpoint("10.244.0.5", 80, ready=False, serving=False, terminating=True, node_name="n1")
    starting = Endpoint("10.244.0.6", 80, ready=False, serving=True, terminating=False,
                        node_name="n1")
    draining = Endpoint("10.244.0.7", 80, ready=False, serving=True, terminating=True,
                        node_name="n1")
    for eps in [(gone,), (starting,), (gone, starting)]:
        got = cat(*eps)
        assert (got.has_any, got.local) == (False, ()), eps
    got = cat(gone, starting, draining)
    assert (got.has_any, got.local) == (True, (draining,))
