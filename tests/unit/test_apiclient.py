"""Client and Informer against an in-process API server (TCP on 127.0.0.1:0 and a Unix socket),
and the controllers running inside it: Deployment -> scheduled Pods -> EndpointSlices."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.agents.apiserver import ApiServer
from testbed.apiclient import ApiError, Client, Expired, Informer
from tests.unit.conftest import start_api
from tests.unit.conftest import start_api as start


@pytest.fixture(params=["tcp", "unix"])
def client(request, server: ApiServer) -> Client:
    if request.param == "tcp":
        return Client(server.url)
    return Client(f"unix://{server.unix.server_address}")


def until(check: Callable[[], object], timeout: float = 5.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not true within {timeout}s: {check}")


def pod(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def node(name: str, cidr: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": [{"type": "InternalIP", "address": "172.16.1.1"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def test_verbs(client: Client) -> None:
    assert client.get("Pod", "default", "a") is None
    created = client.create(pod("a", app="web"))
    assert created["metadata"]["uid"]
    with pytest.raises(ApiError) as err:
        client.create(pod("a"))
    assert (err.value.code, err.value.reason) == (409, "AlreadyExists")
    items, rv = client.list("Pod", "default", selector="app=web")
    assert [p["metadata"]["name"] for p in items] == ["a"] and int(rv) >= 1
    assert items[0]["kind"] == "Pod"
    assert client.list("Pod", selector="app=none")[0] == []
    created["metadata"]["labels"]["v"] = "2"
    updated = client.update(created)
    assert updated["metadata"]["labels"]["v"] == "2"
    with pytest.raises(ApiError) as err:
        client.update(created)  # stale resourceVersion
    assert err.value.code == 409
    updated["status"] = {"phase": "Running"}
    # the QoS class set at creation stays, as upstream's pod status strategy keeps it
    assert client.update_status(updated)["status"] == {"phase": "Running", "qosClass": "BestEffort"}
    assert client.apply(pod("b"))["metadata"]["name"] == "b"
    assert client.delete("Pod", "default", "b")["metadata"]["name"] == "b"
    assert client.delete("Pod", "default", "b") is None
    assert client.get("Namespace", "ignored", "kube-system")["kind"] == "Namespace"


def test_validation_error_carries_status(client: Client) -> None:
    bad = pod("a")
    bad["spec"]["containers"][0]["ports"] = [{"containerPort": 0}]
    with pytest.raises(ApiError) as err:
        client.create(bad)
    assert err.value.code == 422 and err.value.reason == "Invalid"
    assert "spec.containers[0].ports[0].containerPort" in err.value.message


def test_apply_all_is_atomic(client: Client) -> None:
    bad = pod("bad")
    bad["metadata"]["name"] = "Bad_Name"
    with pytest.raises(ApiError) as err:
        client.apply_all([pod("good"), bad])
    assert err.value.code == 422 and "items[1].metadata.name" in err.value.message
    assert client.get("Pod", "default", "good") is None
    out = client.apply_all([pod("good"), pod("other")])
    assert [o["metadata"]["name"] for o in out] == ["good", "other"]
    assert [a for a, _ in client.apply_results([pod("good")])] == ["unchanged"]


def test_watch_events_and_expired(tmp_path: Path) -> None:
    srv = start(tmp_path, history=3)
    try:
        client = Client(srv.url)
        _, rv = client.list("Pod", "default")
        client.create(pod("a"))
        client.delete("Pod", "default", "a")
        events = [(t, o["metadata"]["name"]) for t, o in client.watch("Pod", "default", since=rv,
                                                                        timeout=1)]
        assert events == [("ADDED", "a"), ("DELETED", "a")]
        for name in "bcde":
            client.create(pod(name))
        with pytest.raises(Expired) as err:
            list(client.watch("Pod", "default", since=rv, timeout=1))
        assert err.value.code == 410
    finally:
        srv.stop()


def test_bad_address() -> None:
    with pytest.raises(ValueError):
        Client("ftp://x")


def test_connection_refused_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        Client(f"unix://{tmp_path}/none.sock").list("Pod")


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add(self, obj: dict) -> None:
        with self.lock:
            self.events.append(("add", obj["metadata"]["name"]))

    def update(self, old: dict, new: dict) -> None:
        with self.lock:
            self.events.append(("update", new["metadata"]["name"]))

    def delete(self, obj: dict) -> None:
        with self.lock:
            self.events.append(("delete", obj["metadata"]["name"]))


def informer(client: Client, rec: Recorder, **kwargs) -> Informer:
    return Informer(client, "Pod", "default", on_add=rec.add, on_update=rec.update,
                    on_delete=rec.delete, **kwargs).start()


def test_informer_handlers_and_cache(server: ApiServer) -> None:
    client = Client(server.url)
    client.create(pod("before"))
    rec = Recorder()
    inf = informer(client, rec)
    try:
        assert inf.wait_for_sync(5)
        client.create(pod("a"))
        got = client.get("Pod", "default", "a")
        got["metadata"]["labels"] = {"x": "y"}
        client.update(got)
        client.delete("Pod", "default", "before")
        until(lambda: len(rec.events) == 4)
        assert rec.events == [("add", "before"), ("add", "a"), ("update", "a"),
                              ("delete", "before")]
        assert [p["metadata"]["name"] for p in inf.items()] == ["a"]
        assert inf.get("default", "a")["metadata"]["labels"] == {"x": "y"}
    finally:
        inf.stop()


def test_a_deletion_hands_over_the_deleted_object_at_its_deletion_version(server: ApiServer) -> None:
    client = Client(server.url)
    client.create(pod("gone"))
    deleted: list[dict] = []
    inf = Informer(client, "Pod", "default", on_delete=deleted.append).start()
    try:
        assert inf.wait_for_sync(5)
        answer = client.delete("Pod", "default", "gone")
        until(lambda: len(deleted) == 1)
        # the version of the deletion (the cached copy had the creation's), as client-go's
        assert deleted[0]["metadata"]["resourceVersion"] == answer["metadata"]["resourceVersion"]
        assert deleted[0]["metadata"]["name"] == "gone"
    finally:
        inf.stop()


def test_informer_resync_hands_out_every_object(server: ApiServer) -> None:
    client = Client(server.url)
    client.create(pod("a"))
    rec = Recorder()
    inf = informer(client, rec, resync=0.3)
    try:
        until(lambda: ("update", "a") in rec.events, timeout=3)
    finally:
        inf.stop()


def test_informer_relists_after_server_restart(tmp_path: Path) -> None:
    srv = start(tmp_path)
    client = Client(f"unix://{tmp_path}/api.sock")
    client.create(pod("kept"))
    client.create(pod("removed"))
    rec = Recorder()
    inf = informer(client, rec, max_backoff=0.2)
    try:
        inf.wait_for_sync(5)
        srv.stop()
        # while the server is down, the store moves on (another writer, the same journal)
        other = start(tmp_path)
        Client(other.url).delete("Pod", "default", "removed")
        Client(other.url).create(pod("new"))
        other.stop()
        srv = start(tmp_path)
        until(lambda: {("delete", "removed"), ("add", "new")} <= set(rec.events))
        assert inf.lists >= 2
        client.create(pod("after"))  # and it watches again
        until(lambda: ("add", "after") in rec.events)
        assert sorted(p["metadata"]["name"] for p in inf.items()) == ["after", "kept", "new"]
    finally:
        inf.stop()
        srv.stop()


# -- controllers inside the API server ------------------------------------------------------------

def test_deployment_pods_scheduled_and_endpointslices_follow_readiness(tmp_path: Path) -> None:
    srv = start(tmp_path, controllers=True, resync=1.0)
    client = Client(srv.url)
    try:
        client.create(node("w1", "10.244.1.0/24"))
        client.create(node("w2", "10.244.2.0/24"))
        dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                            "containers": [{"name": "c", "image": "python:2.7", "ports": [
                                {"containerPort": 8080, "name": "http"}]}]}}}}
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"port": 80, "targetPort": "http"}]}}
        client.apply_all([dep, svc])
        pods = until(lambda: [p for p in client.list("Pod", "default", "app=web")[0]
                              if p["spec"].get("nodeName")] if len(
            client.list("Pod", "default", "app=web")[0]) == 4 else None)
        assert sorted(p["spec"]["nodeName"] for p in pods) == ["w1", "w1", "w2", "w2"]

        def endpoints() -> list[tuple[str, bool]]:
            slices, _ = client.list("EndpointSlice", "default",
                                    "kubernetes.io/service-name=web")
            return sorted((e["addresses"][0], e["conditions"]["ready"])
                          for s in slices for e in s["endpoints"])

        for i, p in enumerate(pods):  # what kubelets would report
            p["status"] = {"phase": "Running", "podIP": f"10.244.9.{i + 2}",
                           "conditions": [{"type": "Ready", "status": str(i < 3)}]}
            client.update_status(p)
        until(lambda: endpoints() == [("10.244.9.2", True), ("10.244.9.3", True),
                                      ("10.244.9.4", True), ("10.244.9.5", False)])
        slices, _ = client.list("EndpointSlice", "default", "kubernetes.io/service-name=web")
        assert slices[0]["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
        until(lambda: client.get("Deployment", "default", "web").get("status", {}).get(
            "readyReplicas") == 3)
        # a deleted pod leaves the slice and is replaced
        client.delete("Pod", "default", pods[0]["metadata"]["name"], grace_seconds=0)
        until(lambda: "10.244.9.2" not in [a for a, _ in endpoints()])
        until(lambda: len(client.list("Pod", "default", "app=web")[0]) == 4)
        # scale down: pods are deleted gracefully (Terminating until their kubelet ends them)
        client.scale("Deployment", "default", "web", 1)
        until(lambda: sum(not p["metadata"].get("deletionTimestamp") for p in
                          client.list("Pod", "default", "app=web")[0]) == 1)
    finally:
        srv.stop()


def test_unschedulable_pod_says_why_and_terminating_orphans_are_collected(tmp_path: Path) -> None:
    srv = start(tmp_path, controllers=True, resync=1.0)
    client = Client(srv.url)
    try:
        picky = pod("picky")
        picky["spec"]["nodeSelector"] = {"disk": "ssd"}
        client.create(node("w1", "10.244.1.0/24"))
        client.create(picky)

        def condition() -> dict | None:
            status = client.get("Pod", "default", "picky").get("status") or {}
            return next((c for c in status.get("conditions") or []
                         if c["type"] == "PodScheduled"), None)

        cond = until(condition)
        assert cond["status"] == "False" and cond["reason"] == "Unschedulable"
        assert "didn't match Pod's node affinity/selector" in cond["message"]
        # bound to a node that does not exist, then deleted: no kubelet will finish it
        ghost = pod("ghost")
        ghost["spec"]["nodeName"] = "gone"
        client.create(ghost)
        assert client.delete("Pod", "default", "ghost")["metadata"]["deletionTimestamp"]
        until(lambda: client.get("Pod", "default", "ghost") is None)
    finally:
        srv.stop()


def test_an_informer_of_a_quiet_kind_resumes_from_bookmarks_and_does_not_list_again(
        tmp_path: Path) -> None:
    """Pods churn past the history while nothing happens to Services: the Service informer's
    watch ends (its timeout) and resumes from the bookmark it got 2 s before the end, not from
    its list's version, which the history has dropped (410 and a new list)."""
    srv = start_api(tmp_path, history=20)
    client = Client(f"unix://{tmp_path}/api.sock")
    try:
        services = Informer(client, "Service", "default", watch_timeout=3).start()
        assert services.wait_for_sync(5)
        started = time.monotonic()
        # 30 writes in all, more than the history holds, but fewer than 20 after the
        # bookmark (1 s in, 2 s before the watch's end at 3 s)
        for i in range(15):
            client.create(pod(f"p{i}"))
        time.sleep(max(0.0, started + 1.5 - time.monotonic()))
        for i in range(15, 30):
            client.create(pod(f"p{i}"))
        time.sleep(max(0.0, started + 4.5 - time.monotonic()))   # the watch was resumed
        client.create({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": "svc", "namespace": "default"},
                       "spec": {"ports": [{"port": 80}]}})
        until(lambda: services.get("default", "svc"))
        assert services.lists == 1
    finally:
        services.stop()
        srv.stop()
