"""The object store: versions, optimistic concurrency, graceful delete, watch semantics."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from testbed.api.store import AlreadyExists, Conflict, Expired, NotFound, Store


def make_store(history: int = 1000, condition=None) -> Store:
    uids = (f"uid-{i}" for i in itertools.count(1))
    return Store(history=history, now=lambda: "2024-01-01T00:00:00Z", new_uid=lambda: next(uids),
                 condition=condition)


def pod(name: str, ns: str = "default", labels: dict | None = None, image: str = "nginx") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": image}]}}


def test_create_fills_server_fields_and_versions_increase() -> None:
    store = make_store()
    a = store.create(pod("a"))
    b = store.create({"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": "shop", "namespace": "ignored"}})
    assert a["metadata"]["uid"] == "uid-1"
    assert a["metadata"]["resourceVersion"] == "1"
    assert a["metadata"]["generation"] == 1
    assert a["metadata"]["creationTimestamp"] == "2024-01-01T00:00:00Z"
    assert b["metadata"]["resourceVersion"] == "2"
    assert store.resource_version == "2"
    assert store.get("Namespace", "anything", "shop")["metadata"]["uid"] == "uid-2"
    with pytest.raises(AlreadyExists):
        store.create(pod("a"))
    with pytest.raises(NotFound, match='pods "zz" in namespace \'default\' not found'):
        store.get("Pod", "default", "zz")


def test_returned_objects_are_copies() -> None:
    store = make_store()
    a = store.create(pod("a"))
    a["spec"]["containers"][0]["image"] = "changed"
    assert store.get("Pod", "default", "a")["spec"]["containers"][0]["image"] == "nginx"


def test_update_generation_status_and_conflict() -> None:
    store = make_store()
    store.create(pod("a"))
    same = store.apply(pod("a"))
    assert same["metadata"]["resourceVersion"] == "1"  # no change, no write
    relabeled = store.apply(pod("a", labels={"x": "y"}))
    assert relabeled["metadata"]["generation"] == 1
    assert relabeled["metadata"]["resourceVersion"] == "2"
    changed = store.apply(pod("a", labels={"x": "y"}, image="httpd"))
    assert changed["metadata"]["generation"] == 2
    with_status = dict(changed, status={"phase": "Running", "podIP": "10.244.1.2"})
    st = store.update_status(with_status)
    assert st["status"]["phase"] == "Running"
    assert st["metadata"]["generation"] == 2
    again = store.update(dict(st, status={"phase": "Failed"}))  # status ignored by update
    assert again["status"]["phase"] == "Running"
    stale = dict(pod("a"), metadata=dict(pod("a")["metadata"], resourceVersion="1"))
    with pytest.raises(Conflict, match="the object has been modified"):
        store.update(stale)
    with pytest.raises(NotFound):
        store.update(pod("missing"))


def test_list_with_selectors() -> None:
    store = make_store()
    store.create(pod("b", labels={"app": "web", "tier": "fe"}))
    store.create(pod("a", labels={"app": "web"}))
    store.create(pod("c", ns="other", labels={"app": "db"}))
    names = lambda objs: [o["metadata"]["name"] for o in objs[0]]  # noqa: E731
    assert names(store.list("Pod")) == ["a", "b", "c"]
    assert names(store.list("Pod", "default")) == ["a", "b"]
    assert names(store.list("Pod", selector="app=web,tier!=fe")) == ["a"]
    assert names(store.list("Pod", selector="app in (web, db),!tier")) == ["a", "c"]
    assert names(store.list("Pod", selector={"matchLabels": {"tier": "fe"}})) == ["b"]
    assert store.list("Pod")[1] == "3"


def test_graceful_delete_then_delete() -> None:
    store = make_store()
    store.create(pod("a"))
    marked = store.delete("Pod", "default", "a", grace_seconds=30)
    assert marked["metadata"]["deletionTimestamp"] == "2024-01-01T00:00:00Z"
    assert store.delete("Pod", "default", "a", grace_seconds=30)["metadata"][
        "resourceVersion"] == "2"
    gone = store.delete("Pod", "default", "a")
    assert gone["metadata"]["resourceVersion"] == "3"
    with pytest.raises(NotFound):
        store.delete("Pod", "default", "a")
    types = [e.type for e in store.watch("Pod", since="0").events]
    assert types == []
    assert [e.type for e in store.watch("Pod", since="1").events] == ["MODIFIED", "DELETED"]


def test_watch_from_version_and_filters() -> None:
    store = make_store()
    store.create(pod("a", labels={"app": "web"}))
    rv = store.resource_version
    store.create(pod("b", ns="other"))
    store.apply(pod("a", labels={"app": "api"}))
    store.apply(pod("a", labels={"app": "web"}))
    store.delete("Pod", "default", "a")
    batch = store.watch("Pod", namespace="default", since=rv)
    assert [(e.type, e.resource_version) for e in batch.events] == [
        ("MODIFIED", 3), ("MODIFIED", 4), ("DELETED", 5)]
    assert batch.resource_version == "5"
    web = store.watch("Pod", since=rv, selector="app=web")
    assert [(e.type, e.resource_version) for e in web.events] == [
        ("DELETED", 3), ("ADDED", 4), ("DELETED", 5)]
    initial = store.watch("Pod", since="")
    assert [(e.type, e.object["metadata"]["name"]) for e in initial.events] == [("ADDED", "b")]


def test_watch_expired_when_history_is_gone() -> None:
    store = make_store(history=2)
    for name in "abcd":
        store.create(pod(name))
    assert [e.resource_version for e in store.watch(since="2").events] == [3, 4]
    with pytest.raises(Expired, match=r"too old resource version: 1 \(3\)") as info:
        store.watch(since="1")
    assert info.value.code == 410


def test_watch_waits_for_a_writer_and_times_out() -> None:
    store = make_store(condition=threading.Condition())   # a writer's thread shares it
    store.create(pod("x"))
    rv = store.resource_version
    start = time.monotonic()
    empty = store.watch("Pod", since=rv, timeout=0.05)
    assert empty.events == [] and empty.resource_version == rv
    assert time.monotonic() - start >= 0.05
    timer = threading.Timer(0.05, lambda: store.create(pod("y")))
    timer.start()
    start = time.monotonic()
    batch = store.watch("Pod", since=rv, timeout=5)
    woken = time.monotonic() - start
    timer.join()
    assert [e.object["metadata"]["name"] for e in batch.events] == ["y"]
    assert woken < 4                   # woken by the writer, not by the end of its timeout


def test_generate_name_and_concurrent_creates() -> None:
    store = make_store(condition=threading.Condition())   # shared by threads, as the server's
    made = store.create({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"generateName": "web-"}, "spec": {}})
    assert made["metadata"]["name"].startswith("web-")

    def worker(i: int) -> None:
        for j in range(50):
            store.create(pod(f"p{i}-{j}"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.resource_version == "201"
    versions = [e.resource_version for e in store.watch(since="1").events]
    assert versions == list(range(2, 202))


def test_a_store_threads_share_wakes_a_watcher_at_once_and_an_unshared_one_times_out() -> None:
    shared = make_store(condition=threading.Condition())
    timer = threading.Timer(0.1, lambda: shared.create(pod("late")))
    timer.start()
    start = time.monotonic()
    assert shared.wait_for(1, timeout=10)           # notified by the writer's thread
    assert time.monotonic() - start < 5
    timer.join()
    alone = make_store()
    start = time.monotonic()
    assert not alone.wait_for(1, timeout=0.2)       # no one else can write: the wait times out
    assert time.monotonic() - start >= 0.2


def test_apply_reports_what_it_did_under_the_lock():
    """A status write between two applies of the same object leaves the second 'unchanged'
    (kubectl prints what the write did, not whether the version moved meanwhile)."""
    from testbed.api.store import Store

    store = Store()
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "default"},
           "spec": {"ports": [{"port": 80}]}}
    first, did = store.apply_reporting(svc)
    assert did == "created"
    store.update_status(dict(first, status={"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}))
    again, did = store.apply_reporting(svc)      # the version moved (the status), the apply did not
    assert did == "unchanged" and again["status"]["loadBalancer"]["ingress"][0]["ip"] == "192.0.2.1"
    changed = dict(svc, spec={"ports": [{"port": 81}]})
    assert store.apply_reporting(changed)[1] == "configured"
    assert store.apply(changed)["spec"] == {"ports": [{"port": 81}]}


class CountingCondition(threading.Condition):
    """A threading.Condition that counts its notify_all calls (its waiters' wake-ups)."""

    def __init__(self, lock=None) -> None:
        super().__init__(lock)
        self.notified = 0

    def notify_all(self) -> None:
        self.notified += 1
        super().notify_all()


def _watch_in_thread(store: Store, out: dict, **kw) -> threading.Thread:
    def run() -> None:
        start = time.monotonic()
        out["batch"] = store.watch(**kw)
        out["took"] = time.monotonic() - start
    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.1)   # let it wait
    return thread


def test_a_watch_of_one_kind_is_woken_by_its_kind_and_a_nodes_pod_watch_by_its_pods() -> None:
    store = make_store(condition=threading.Condition())
    store.create(pod("first"))   # a version to watch from ("0" would list)
    rv = store.resource_version
    services, on_w1 = {}, {}
    s = _watch_in_thread(store, services, kind="Service", since=rv, timeout=10)
    w = _watch_in_thread(store, on_w1, kind="Pod", since=rv, timeout=10, index="w1",
                         predicate=lambda o: o["spec"].get("nodeName") == "w1")
    store.create(pod("elsewhere"))                               # wakes neither with a match
    store.update(dict(pod("elsewhere"), spec={"nodeName": "w2", "containers": []}))
    store.create(pod("mine"))
    store.update(dict(pod("mine"), spec={"nodeName": "w1", "containers": []}))   # bound to w1
    store.create({"apiVersion": "v1", "kind": "Service",
                  "metadata": {"name": "svc", "namespace": "default"}, "spec": {}})
    s.join()
    w.join()
    assert [e.object["metadata"]["name"] for e in services["batch"].events] == ["svc"]
    # the binding is an ADDED for a watch of w1's pods, as the predicate alone decides
    assert [(e.type, e.object["metadata"]["name"]) for e in on_w1["batch"].events] == [
        ("ADDED", "mine")]
    assert services["took"] < 5 and on_w1["took"] < 5   # woken, not timed out


def test_writes_notify_only_their_kinds_and_nodes_watchers() -> None:
    store = make_store(condition=CountingCondition())
    store.create(pod("first"))
    rv = store.resource_version
    for kind, index in (("Service", None), ("Pod", "w1"), ("Pod", "w2"), ("Pod", None)):
        store.watch(kind, since=rv, timeout=0.001, index=index)   # makes its condition
    by_key = {key: cond.notified for key, cond in store._channels.items()}
    assert by_key == {("Service",): 0, ("Pod", "w1"): 0, ("Pod", "w2"): 0, ("Pod",): 0}
    store.create(dict(pod("a"), spec={"nodeName": "w1", "containers": []}))
    store.update(dict(pod("a"), spec={"nodeName": "w2", "containers": []}))   # moved: both
    got = {key: cond.notified for key, cond in store._channels.items()}
    assert got == {("Service",): 0, ("Pod", "w1"): 2, ("Pod", "w2"): 1, ("Pod",): 2}


def test_a_kinds_history_drops_with_the_store_history_and_watches_see_the_same_events() -> None:
    store = make_store(history=3)
    store.create(pod("a"))
    store.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "default"}})
    store.create(pod("b"))
    store.create(pod("c"))   # drops the first Pod event (rv 1)
    assert [e.resource_version for e in store.watch("Pod", since="1").events] == [3, 4]
    assert [e.resource_version for e in store.watch("Service", since="1").events] == [2]
    assert [e.resource_version for e in store.watch(since="1").events] == [2, 3, 4]
    assert [e.resource_version for e in store._by_kind["Pod"]] == [3, 4]


def test_lists_of_a_kind_see_restored_written_and_deleted_objects() -> None:
    store = make_store()
    restored = dict(pod("old"), metadata={"name": "old", "namespace": "default",
                                          "resourceVersion": "1"})
    store._objects.update({("Pod", "default", "old"): restored})   # as JournaledStore restores
    store._rv = 1
    store.create(pod("new"))
    store.create({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"}})
    assert [p["metadata"]["name"] for p in store.list("Pod")[0]] == ["new", "old"]
    assert [e.object["metadata"]["name"] for e in store.watch("Pod", since="").events] == [
        "new", "old"]
    store.delete("Pod", "default", "old")
    assert [p["metadata"]["name"] for p in store.list("Pod")[0]] == ["new"]
    assert [e["metadata"]["name"] for e in store.list("Event")[0]] == ["e"]
    assert [p["metadata"]["name"] for p in store.list("Pod", at=2)[0]] == ["new", "old"]


def test_a_watch_without_copies_hands_every_watcher_the_same_stored_event_object() -> None:
    store = make_store()
    store.create(pod("a"))
    rv = store.resource_version
    store.apply(pod("a", labels={"x": "y"}))
    one = store.watch("Pod", since=rv, copy=False).events[0].object
    two = store.watch("Pod", since=rv, copy=False).events[0].object
    mine = store.watch("Pod", since=rv).events[0].object
    assert one is two and mine is not one and mine == one
    assert one["metadata"]["labels"] == {"x": "y"}
    initial = store.watch("Pod", since="", copy=False).events[0].object
    assert initial is store.watch("Pod", since="", copy=False).events[0].object
