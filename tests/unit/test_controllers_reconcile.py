"""Scheduler, Deployment and EndpointSlice controllers against a real (in-memory) store."""

from __future__ import annotations

import copy
import itertools
import random

from testbed.api.manifests import check_object
from testbed.api.store import Store
from testbed.controllers.deployment import HASH_LABEL, reconcile_deployments, template_hash
from testbed.controllers.endpointslice import (
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    place_endpoints,
    reconcile_endpointslices,
)
from testbed.controllers.scheduler import choose_node, schedule_pending


def make_store() -> Store:
    uids = (f"uid-{i}" for i in itertools.count(1))
    return Store(now=lambda: "2024-01-01T00:00:00Z", new_uid=lambda: next(uids))


def valid(obj: dict) -> dict:
    out, problems = check_object(obj)
    assert out is not None, [str(p) for p in problems]
    return out


def node(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "spec": {}}


def pod(name: str, labels: dict | None = None, **spec: object) -> dict:
    return valid({"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": name, "labels": labels or {}},
                  "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec}})


def deployment(replicas: int = 3, image: str = "nginx", **strategy: object) -> dict:
    spec: dict = {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "c", "image": image}]}}}
    if strategy:
        spec["strategy"] = strategy
    return valid({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": spec})


def names(store: Store, kind: str = "Pod") -> list[str]:
    return [o["metadata"]["name"] for o in store.list(kind)[0]]


def set_ready(store: Store, name: str, ready: bool = True, ip: str | None = None) -> None:
    obj = store.get("Pod", "default", name)
    status = {"phase": "Running",
              "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    store.update_status(dict(obj, status=status))


# -- scheduler ---------------------------------------------------------------------------------

def test_scheduler_spreads_and_honours_selector() -> None:
    store = make_store()
    for n in (node("w2", zone="b"), node("w1", zone="a"), node("w3", zone="a")):
        store.create(n)
    store.create(pod("pinned", nodeName="w1"))
    for name in ("a", "b", "c"):
        store.create(pod(name))
    store.create(pod("zoned", nodeSelector={"zone": "b"}))
    changes = schedule_pending(store)
    placed = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in store.list("Pod")[0]}
    assert placed == {"pinned": "w1", "a": "w2", "b": "w3", "c": "w1", "zoned": "w2"}
    assert [str(c) for c in changes][0] == "bind Pod default/a: w2"
    note = changes[0].note                       # the Event the scheduler records, upstream's words
    assert (note.type, note.reason, note.message) == (
        "Normal", "Scheduled", "Successfully assigned default/a to w2")
    assert note.about["kind"] == "Pod" and note.about["name"] == "a"
    conditions = store.get("Pod", "default", "a")["status"]["conditions"]
    assert conditions == [{"type": "PodScheduled", "status": "True"}]
    assert schedule_pending(store) == []


def test_unschedulable_reason() -> None:
    store = make_store()
    store.create(node("w1", zone="a"))
    cordoned = node("w2", zone="b")
    cordoned["spec"]["unschedulable"] = True
    store.create(cordoned)
    store.create(pod("p", nodeSelector={"zone": "b"}))
    (change,) = schedule_pending(store)
    assert (change.note.type, change.note.reason) == ("Warning", "FailedScheduling")
    assert change.note.message.startswith("0/2 nodes are available: ")
    p = store.get("Pod", "default", "p")
    assert "nodeName" not in p["spec"]
    assert p["status"]["conditions"] == [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/2 nodes are available: 1 node(s) didn't match Pod's node "
                   "affinity/selector, 1 node(s) were unschedulable."}]
    assert schedule_pending(store) == []  # nothing new to say
    assert choose_node(pod("q"), [], []).reason == "0/0 nodes are available."


# -- deployment --------------------------------------------------------------------------------

def test_deployment_creates_named_owned_pods_and_replaces_deleted() -> None:
    store = make_store()
    rng = random.Random(1)
    d = store.create(deployment(3))
    reconcile_deployments(store, rng)
    pods = store.list("Pod")[0]
    h = template_hash(d["spec"]["template"])
    assert len(pods) == 3
    for p in pods:
        prefix, suffix = p["metadata"]["name"].rsplit("-", 1)
        assert prefix == f"web-{h}" and len(suffix) == 5
        assert p["metadata"]["labels"] == {"app": "web", HASH_LABEL: h}
        assert p["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
        assert p["spec"]["containers"][0]["image"] == "nginx"
    status = store.get("Deployment", "default", "web")["status"]
    assert status["replicas"] == 3 and status["readyReplicas"] == 0
    victim = pods[0]["metadata"]["name"]
    store.delete("Pod", "default", victim)
    changes = reconcile_deployments(store, rng)
    assert [c.verb for c in changes if c.kind == "Pod"] == ["create"]
    assert len(names(store)) == 3 and victim not in names(store)
    (created,) = [c for c in changes if c.kind == "Pod"]
    assert created.note.about["name"] == "web" and created.note.reason == "SuccessfulCreate"
    assert created.note.message == f"Created pod: {created.name}"


def test_deployment_scales_down_unready_first_and_gracefully() -> None:
    store = make_store()
    rng = random.Random(2)
    store.create(deployment(3))
    reconcile_deployments(store, rng)
    first = names(store)
    set_ready(store, first[0])
    set_ready(store, first[1])
    store.apply(deployment(1))
    reconcile_deployments(store, rng)
    pods = {p["metadata"]["name"]: p for p in store.list("Pod")[0]}
    terminating = sorted(n for n, p in pods.items() if p["metadata"].get("deletionTimestamp"))
    assert len(terminating) == 2 and first[2] in terminating
    assert pods[first[2]]["metadata"]["deletionGracePeriodSeconds"] == 30
    assert reconcile_deployments(store, rng) == []  # terminating pods are not replaced


def test_rolling_update_respects_surge_and_unavailable() -> None:
    store = make_store()
    rng = random.Random(3)
    store.create(deployment(2))  # maxSurge 25% -> 1, maxUnavailable 25% -> 0
    reconcile_deployments(store, rng)
    for n in names(store):
        set_ready(store, n)
    store.apply(deployment(2, image="httpd"))
    new_hash = template_hash(store.get("Deployment", "default", "web")["spec"]["template"])
    for _ in range(6):
        reconcile_deployments(store, rng)
        active = [p for p in store.list("Pod")[0] if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in active if p.get("status", {}).get("conditions")]
        assert len(active) <= 3 and len(ready) >= 2
        for p in active:
            if p["metadata"]["labels"][HASH_LABEL] == new_hash:
                set_ready(store, p["metadata"]["name"])
    active = [p for p in store.list("Pod")[0] if not p["metadata"].get("deletionTimestamp")]
    assert [p["metadata"]["labels"][HASH_LABEL] for p in active] == [new_hash, new_hash]
    status = store.get("Deployment", "default", "web")["status"]
    assert status["updatedReplicas"] == 2


def test_recreate_waits_for_old_pods_and_orphans_are_collected() -> None:
    store = make_store()
    rng = random.Random(4)
    store.create(deployment(2, type="Recreate"))
    reconcile_deployments(store, rng)
    old = names(store)
    store.apply(deployment(2, image="httpd", type="Recreate"))
    reconcile_deployments(store, rng)
    assert names(store) == old  # both terminating, nothing new yet
    reconcile_deployments(store, rng)
    assert names(store) == old
    for n in old:
        store.delete("Pod", "default", n)
    reconcile_deployments(store, rng)
    assert len(names(store)) == 2 and not set(names(store)) & set(old)
    store.delete("Deployment", "default", "web")
    changes = reconcile_deployments(store, rng)
    assert [c.detail for c in changes] == ["owner is gone", "owner is gone"]


# -- endpointslices ----------------------------------------------------------------------------

def service(**spec: object) -> dict:
    base = {"selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                      {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]}
    base.update(spec)
    return valid({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                  "spec": base})


def web_pod(name: str, port: int = 8080, node_name: str = "w1") -> dict:
    return pod(name, {"app": "web"}, nodeName=node_name, containers=[
        {"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": port}]}])


def slices(store: Store) -> list[dict]:
    return store.list("EndpointSlice")[0]


def test_endpointslices_from_pods() -> None:
    store = make_store()
    rng = random.Random(5)
    store.create(node("w1", **{"topology.kubernetes.io/zone": "zone-a"}))
    store.create(service())
    store.create(web_pod("a"))
    store.create(web_pod("b"))
    store.create(web_pod("c", port=9090))
    store.create(web_pod("no-ip"))
    store.create(pod("other", {"app": "db"}))
    set_ready(store, "a", ip="10.244.1.2")
    set_ready(store, "b", ready=False, ip="10.244.1.3")
    set_ready(store, "c", ip="10.244.1.4")
    reconcile_endpointslices(store, rng)
    out = slices(store)
    assert len(out) == 2
    by_port = {s["ports"][0]["port"]: s for s in out}
    first = by_port[8080]
    assert first["addressType"] == "IPv4"
    assert first["metadata"]["labels"] == {SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL:
                                           "endpointslice-controller.k8s.io"}
    assert first["metadata"]["name"].startswith("web-")
    assert first["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"},
                              {"name": "dns", "port": 5353, "protocol": "UDP"}]
    assert [(e["addresses"], e["conditions"]) for e in first["endpoints"]] == [
        (["10.244.1.2"], {"ready": True, "serving": True, "terminating": False}),
        (["10.244.1.3"], {"ready": False, "serving": False, "terminating": False})]
    assert first["endpoints"][0]["nodeName"] == "w1"
    assert first["endpoints"][0]["zone"] == "zone-a"
    assert first["endpoints"][0]["targetRef"]["name"] == "a"
    assert [e["addresses"] for e in by_port[9090]["endpoints"]] == [["10.244.1.4"]]
    assert reconcile_endpointslices(store, rng) == []  # steady state writes nothing


def test_terminating_publish_not_ready_and_cleanup() -> None:
    store = make_store()
    rng = random.Random(6)
    store.create(service(publishNotReadyAddresses=False))
    store.create(web_pod("a"))
    set_ready(store, "a", ip="10.244.1.2")
    reconcile_endpointslices(store, rng)
    name = slices(store)[0]["metadata"]["name"]
    store.delete("Pod", "default", "a", grace_seconds=30)
    changes = reconcile_endpointslices(store, rng)
    assert [c.verb for c in changes] == ["update"]
    [s] = slices(store)
    assert s["metadata"]["name"] == name
    assert s["endpoints"][0]["conditions"] == {"ready": False, "serving": True,
                                               "terminating": True}
    store.apply(service(publishNotReadyAddresses=True))
    reconcile_endpointslices(store, rng)
    assert slices(store)[0]["endpoints"][0]["conditions"]["ready"] is True
    store.delete("Pod", "default", "a")
    reconcile_endpointslices(store, rng)
    [empty] = slices(store)
    assert empty["endpoints"] == [] and empty["metadata"]["name"] == name
    store.delete("Service", "default", "web")
    reconcile_endpointslices(store, rng)
    assert slices(store) == []


def test_slices_hold_at_most_100_endpoints_and_selectorless_services_are_left_alone() -> None:
    store = make_store()
    rng = random.Random(7)
    store.create(service(ports=[{"port": 80}]))
    template = web_pod("x")
    for i in range(150):
        p = copy.deepcopy(template)
        p["metadata"]["name"] = f"p{i:03d}"
        store.create(p)
        set_ready(store, f"p{i:03d}", ip=f"10.244.{1 + i // 200}.{2 + i}")
    reconcile_endpointslices(store, rng)
    assert sorted(len(s["endpoints"]) for s in slices(store)) == [50, 100]
    manual = valid({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
                    "spec": {"ports": [{"port": 80}]}})
    store.create(manual)
    reconcile_endpointslices(store, rng)
    assert all(s["metadata"]["labels"][SERVICE_NAME_LABEL] == "web" for s in slices(store))


def _endpoint_names(store: Store) -> dict[str, list[str]]:
    return {s["metadata"]["name"]: [e["targetRef"]["name"] for e in s["endpoints"]]
            for s in slices(store)}


def test_endpoints_stay_in_their_slice_and_new_ones_fill_the_slice_that_changes() -> None:
    """As upstream places them: a pod coming up rewrites only a slice with room, and one going
    away only the slice that held it; names in between never shift every later slice."""
    store = make_store()
    rng = random.Random(8)
    store.create(service(ports=[{"port": 80}]))
    template = web_pod("x")

    def add(name: str, ip: str) -> None:
        p = copy.deepcopy(template)
        p["metadata"]["name"] = name
        store.create(p)
        set_ready(store, name, ip=ip)

    for i in range(150):
        add(f"p{i:03d}", f"10.244.1.{i + 2}")
    reconcile_endpointslices(store, rng)
    before = _endpoint_names(store)
    assert sorted(len(v) for v in before.values()) == [50, 100]
    full = next(n for n, v in before.items() if len(v) == 100)
    part = next(n for n, v in before.items() if len(v) == 50)
    add("a-first", "10.244.2.1")   # sorts before every other pod
    changes = reconcile_endpointslices(store, rng)
    assert [(c.verb, c.name) for c in changes] == [("update", part)]
    after = _endpoint_names(store)
    assert after[full] == before[full] and after[part] == before[part] + ["a-first"]
    store.delete("Pod", "default", "p010")   # held by the full slice
    changes = reconcile_endpointslices(store, rng)
    assert [(c.verb, c.name) for c in changes] == [("update", full)]
    assert _endpoint_names(store)[full] == [n for n in before[full] if n != "p010"]
    set_ready(store, "p020", ready=False, ip="10.244.1.22")   # updated where it is
    reconcile_endpointslices(store, rng)
    held = {e["targetRef"]["name"]: e["conditions"]["ready"]
            for e in store.get("EndpointSlice", "default", full)["endpoints"]}
    assert held["p020"] is False and len(held) == 99
    for name in before[part] + ["a-first"]:   # the other slice empties: it goes
        store.delete("Pod", "default", name)
    changes = reconcile_endpointslices(store, rng)
    assert [(c.verb, c.name) for c in changes] == [("delete", part)]
    for name in before[full]:   # no endpoints at all: one empty slice stays, the same one
        if name != "p010":
            store.delete("Pod", "default", name)
    reconcile_endpointslices(store, rng)
    [empty] = slices(store)
    assert empty["metadata"]["name"] == full and empty["endpoints"] == [] and empty["ports"] == []
    assert reconcile_endpointslices(store, rng) == []


def _ep(name: str) -> dict:
    return {"addresses": [f"10.0.0.{len(name)}"], "targetRef": {"name": name, "uid": name}}


PORTS = (("", 80, "TCP"),)
PORT_LIST = [{"name": "", "port": 80, "protocol": "TCP"}]


def _slice(name: str, names: list[str], ports=PORT_LIST) -> dict:
    return {"metadata": {"name": name}, "ports": ports, "endpoints": [_ep(n) for n in names]}


def _placed(plans) -> dict:
    return {(m["metadata"]["name"] if m else None): [e["targetRef"]["name"] for e in eps]
            for m, _, eps in plans}


def test_placement_fills_a_changed_slice_then_a_new_one_when_no_unchanged_slice_fits_all() -> None:
    xs, ys, zs = (["x" * i for i in range(1, 91)], ["y" * i for i in range(1, 96)],
                  ["z" * i for i in range(1, 21)])
    a, b, other = _slice("s-a", xs), _slice("s-b", ys), _slice("s-c", [], ports=[])
    wanted = [_ep(n) for n in xs + ys[1:] + zs]
    plans, stale = place_endpoints([a, b, other], {PORTS: wanted})
    got = _placed(plans)
    # s-b lost one endpoint (it changes anyway): it takes 6 new ones; the 14 left do not fit
    # s-a (90 + 14 > 100), so, as upstream, they go to a new slice, which takes over s-c
    # (other ports, unused) rather than s-a taking 10 of them
    assert got["s-b"] == ys[1:] + zs[:6]
    assert got["s-a"] == xs
    assert got["s-c"] == zs[6:]
    assert stale == [] and None not in got


def test_leftovers_go_to_the_unchanged_slice_they_fit_closest_or_to_a_new_slice() -> None:
    fives, eighties = [f"a{i}" for i in range(95)], [f"b{i}" for i in range(80)]
    news = [f"n{i}" for i in range(10)]
    # 95 + 10 does not fit; 80 + 10 does: s-b takes them all
    plans, _ = place_endpoints([_slice("s-a", fives), _slice("s-b", eighties)],
                               {PORTS: [_ep(n) for n in fives + eighties + news]})
    assert _placed(plans)["s-b"] == eighties + news and _placed(plans)["s-a"] == fives
    # neither fits (review's case, upstream's getSliceToFill): one new slice of 10, the
    # unchanged slices are not rewritten
    nineties = [f"c{i}" for i in range(95)]
    plans, _ = place_endpoints([_slice("s-a", fives), _slice("s-c", nineties)],
                               {PORTS: [_ep(n) for n in fives + nineties + news]})
    got = _placed(plans)
    assert got[None] == news and got["s-a"] == fives and got["s-c"] == nineties
    # a slice's worth or more left: new slices, not the unchanged ones' room
    many = [f"m{i}" for i in range(100)]
    plans, _ = place_endpoints([_slice("s-b", eighties)],
                               {PORTS: [_ep(n) for n in eighties + many]})
    assert _placed(plans)[None] == many and _placed(plans)["s-b"] == eighties


def test_the_fullest_changing_slice_is_filled_first() -> None:
    c1, c2 = [f"p{i}" for i in range(51)], [f"q{i}" for i in range(91)]
    news = [f"n{i}" for i in range(15)]
    plans, _ = place_endpoints([_slice("s-1", c1), _slice("s-2", c2)],
                               {PORTS: [_ep(n) for n in c1[1:] + c2[1:] + news]})
    got = _placed(plans)
    assert got["s-2"] == c2[1:] + news[:10]    # 90 held: the fuller one, first
    assert got["s-1"] == c1[1:] + news[10:]


# -- events ------------------------------------------------------------------------------------

def test_controller_notes_become_events_in_the_store_and_expire_after_an_hour() -> None:
    from datetime import UTC, datetime, timedelta

    from testbed.agents.controllers import ControllerManager, expire_events

    store = make_store()
    store.create(node("w1"))
    store.create(pod("a"))
    manager = ControllerManager(store, resync=0.05)
    manager.start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=5)
        while not store.list("Event")[0] and datetime.now(UTC) < deadline:
            import time
            time.sleep(0.02)
    finally:
        manager.stop()
    (event,) = store.list("Event")[0]
    assert (event["reason"], event["source"]) == ("Scheduled", {"component": "default-scheduler"})
    assert event["involvedObject"]["name"] == "a"
    assert expire_events(store, datetime.now(UTC) + timedelta(minutes=59)) == []
    (gone,) = expire_events(store, datetime.now(UTC) + timedelta(minutes=61))
    assert gone.kind == "Event" and store.list("Event")[0] == []


# -- endpoints ---------------------------------------------------------------------------------

def test_endpoints_follow_the_managed_slices() -> None:
    from testbed.controllers.endpoints import reconcile_endpoints
    from testbed.controllers.endpointslice import reconcile_endpointslices

    store = make_store()
    rng = random.Random(7)
    store.create(node("w1"))
    store.create(valid(service()))
    for name, ip in (("a", "10.0.0.2"), ("b", "10.0.0.3"), ("c", "10.0.0.4")):
        store.create(web_pod(name))
        set_ready(store, name, ready=name != "b", ip=ip)
    store.create(valid({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": "manual"}, "spec": {"ports": [{"port": 80}]}}))
    mine = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual",
                                                                 "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}]}
    store.create(mine)
    reconcile_endpointslices(store, rng)
    changes = reconcile_endpoints(store)
    assert [str(c) for c in changes] == ["create Endpoints default/web"]
    ep = store.get("Endpoints", "default", "web")
    (subset,) = ep["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["10.0.0.2", "10.0.0.4"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.0.0.3"]
    assert subset["addresses"][0]["targetRef"]["name"] == "a"
    assert subset["ports"] == [{"name": "dns", "port": 5353, "protocol": "UDP"},
                               {"name": "http", "port": 8080, "protocol": "TCP"}]
    assert ep["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] == "true"
    assert reconcile_endpoints(store) == []                      # nothing new
    # A terminating pod leaves; the Service going takes its Endpoints, never the user's.
    store.delete("Pod", "default", "a", grace_seconds=30)
    reconcile_endpointslices(store, rng)
    reconcile_endpoints(store)
    assert [a["ip"] for a in store.get("Endpoints", "default", "web")["subsets"][0]
            ["addresses"]] == ["10.0.0.4"]
    store.delete("Service", "default", "web")
    assert [str(c) for c in reconcile_endpoints(store)] == ["delete Endpoints default/web"]
    assert store.get("Endpoints", "default", "manual")["subsets"] == mine["subsets"]


def test_deployment_conditions_as_upstream_words_them() -> None:
    from testbed.controllers.deployment import conditions

    d = deployment(4)
    status = {"replicas": 4, "updatedReplicas": 4, "availableReplicas": 3}
    (available, progressing) = conditions(d, status, "h")
    assert available[:3] == ("Available", "True", "MinimumReplicasAvailable")  # 25% may be down
    assert progressing[2] == "ReplicaSetUpdated"
    status["availableReplicas"] = 2
    assert conditions(d, status, "h")[0][1:3] == ("False", "MinimumReplicasUnavailable")
    status["availableReplicas"] = 4
    assert conditions(d, status, "h")[1][2:] == (
        "NewReplicaSetAvailable", 'ReplicaSet "web-h" has successfully progressed.')
    store = make_store()
    store.create(d)
    reconcile_deployments(store, random.Random(3))
    (first, second) = store.get("Deployment", "default", "web")["status"]["conditions"]
    assert (first["type"], first["status"], first["lastTransitionTime"]) == (
        "Available", "False", "2024-01-01T00:00:00Z")
