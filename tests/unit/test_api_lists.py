"""List and watch options (pure): validation, continue tokens, pages, resourceVersion semantics
over a real Store, the start of a watch, bookmarks."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest

from testbed.api.query import (
    QueryError,
    bookmark,
    decode_continue,
    encode_continue,
    list_options,
    next_bookmark,
    read_plan,
    sends_initial_events,
)
from testbed.api.reads import get_object, list_objects, watch_next, watch_start
from testbed.api.resources import resource_for
from testbed.api.store import Expired, Store

PODS = resource_for("Pod")


def q(**params: str) -> dict[str, list[str]]:
    return {k: [v] for k, v in params.items()}


def pod(name: str, ns: str = "default", node: str = "", app: str = "web",
        phase: str = "Running") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns,
                                                            "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]}, "status": {"phase": phase}}


def refused(fn, *args, **kwargs) -> QueryError:  # noqa: ANN001
    with pytest.raises(QueryError) as err:
        fn(*args, **kwargs)
    return err.value


# -- options ---------------------------------------------------------------------------------------

def test_options_are_read_as_upstreams_codec_reads_them() -> None:
    o = list_options(q(labelSelector="app in (a,b)", fieldSelector="spec.nodeName=n1",
                       watch="1", allowWatchBookmarks="yes", timeoutSeconds="7", limit="5",
                       resourceVersion="12"), "Pod")
    assert (str(o.labels), str(o.fields), o.watch, o.allow_bookmarks, o.timeout_seconds,
            o.limit, o.resource_version) == ("app in (a,b)", "spec.nodeName=n1", True, True, 7,
                                             5, "12")
    # booleans: anything but "0" and "false" is true, as Convert_Slice_string_To_bool
    assert list_options(q(watch="False"), "Pod").watch is False
    assert list_options(q(watch="0"), "Pod").watch is False
    assert list_options(q(watch="anything"), "Pod").watch is True
    err = refused(list_options, q(limit="ten"), "Pod")
    assert (err.code, err.message) == (400, 'strconv.ParseInt: parsing "ten": invalid syntax')


@pytest.mark.parametrize("params,code,message", [
    ({"fieldSelector": "spec.foo=1"}, 400, "field label not supported: spec.foo"),
    ({"labelSelector": "a in b"}, 400, "unable to parse requirement: found 'b' expected: '('"),
    ({"resourceVersionMatch": "Exact"}, 422,
     'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
     "resourceVersionMatch is forbidden unless resourceVersion is provided"),
    ({"resourceVersionMatch": "Newest", "resourceVersion": "3"}, 422,
     'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Unsupported value: '
     '"Newest": supported values: "Exact", "NotOlderThan", ""'),
    ({"resourceVersionMatch": "Exact", "resourceVersion": "0"}, 422,
     'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
     'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'),
    ({"sendInitialEvents": "true"}, 422, 'ListOptions.meta.k8s.io "" is invalid: '
     "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"),
    ({"watch": "1", "sendInitialEvents": "true"}, 422,
     'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
     "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"),
    ({"watch": "1", "resourceVersionMatch": "NotOlderThan"}, 422,
     'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
     "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"),
])
def test_refused_options(params: dict, code: int, message: str) -> None:
    err = refused(list_options, q(**params), "Pod")
    assert (err.code, err.message) == (code, message)
    assert err.status()["code"] == code


def test_a_request_naming_an_object_may_only_select_that_name() -> None:
    assert str(list_options({}, "Pod", name="x").fields) == "metadata.name=x"
    assert str(list_options(q(fieldSelector="metadata.name=x"), "Pod", name="x").fields) == \
        "metadata.name=x"
    err = refused(list_options, q(fieldSelector="metadata.name=y"), "Pod", name="x")
    assert err.message == "fieldSelector metadata.name doesn't match requested name"


# -- continue tokens -------------------------------------------------------------------------------

def test_continue_tokens_are_upstreams() -> None:
    token = encode_continue(42, "default/web-1\x00")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert json.loads(raw) == {"v": "meta.k8s.io/v1", "rv": 42, "start": "default/web-1\x00"}
    assert "=" not in token  # RawURLEncoding
    assert decode_continue(token) == (42, "default/web-1\x00")


def b64(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize("token,why", [
    ("not base64!", "continue key is not valid: "),
    (b64({"v": "meta.k8s.io/v2", "rv": 1, "start": "a"}),
     "server does not recognize this encoded version meta.k8s.io/v2"),
    (b64({"v": "meta.k8s.io/v1", "rv": 0, "start": "a"}),
     "incorrect encoded start resourceVersion (version meta.k8s.io/v1)"),
    (b64({"v": "meta.k8s.io/v1", "rv": 3, "start": ""}),
     "encoded start key empty (version meta.k8s.io/v1)"),
    (b64({"v": "meta.k8s.io/v1", "rv": 3, "start": "../secrets/x"}),
     "continue key is not valid: ../secrets/x"),
])
def test_bad_continue_tokens_are_400(token: str, why: str) -> None:
    err = refused(decode_continue, token)
    assert err.code == 400 and err.message.startswith("invalid continue token: ")
    assert why in err.message


def test_read_plans() -> None:
    def plan(**params: str):  # noqa: ANN202
        return read_plan(list_options(q(**params), "Pod"))

    assert plan().at is None and plan().not_older_than == 0
    assert plan(resourceVersion="0").at is None
    assert (plan(resourceVersion="9").at, plan(resourceVersion="9").not_older_than) == (None, 9)
    assert plan(resourceVersion="9", resourceVersionMatch="Exact").at == 9
    assert plan(resourceVersion="9", limit="2").at == 9  # the legacy exact read of a pager
    token = encode_continue(7, "b\x00")
    assert (plan(**{"continue": token}).at, plan(**{"continue": token}).start_key) == (7, "b\x00")
    assert plan(**{"continue": encode_continue(-1, "b\x00")}).at is None  # the latest
    err = refused(read_plan, list_options(q(resourceVersion="3", **{"continue": token}), "Pod"))
    assert err.message == "specifying resource version is not allowed when using continue"
    err = refused(read_plan, list_options(q(resourceVersion="x"), "Pod"))
    assert err.code == 400 and err.message.startswith("invalid resource version: ")


# -- lists over a store ----------------------------------------------------------------------------

def listing(store: Store, ns: str | None = "default", **params: str) -> dict:
    return list_objects(store, PODS, ns, list_options(q(**params), "Pod"))


def names_of(listed: dict) -> list[str]:
    return [i["metadata"]["name"] for i in listed["items"]]


def test_selectors_narrow_a_list() -> None:
    store = Store()
    store.create(pod("a", node="n1", app="x"))
    store.create(pod("b", node="n2", app="y"))
    store.create(pod("c", node="n1", app="z", phase="Failed"))
    assert names_of(listing(store, fieldSelector="spec.nodeName=n1")) == ["a", "c"]
    assert names_of(listing(store, fieldSelector="spec.nodeName=n1,status.phase!=Failed")) == \
        ["a"]
    assert names_of(listing(store, labelSelector="app in (x,y)")) == ["a", "b"]
    assert names_of(listing(store, labelSelector="app notin (x)",
                            fieldSelector="spec.nodeName=n1")) == ["c"]


def test_pages_follow_storage_keys_at_the_first_pages_version() -> None:
    store = Store()
    for ns, name in [("b", "x"), ("a-b", "y"), ("a", "z"), ("a", "w")]:
        store.create(pod(name, ns))
    first = listing(store, None, limit="2")
    # storage-key order ("a-b/y" sorts before "a/w"), as etcd's
    assert names_of(first) == ["y", "w"]
    assert first["metadata"]["remainingItemCount"] == 2
    rv = first["metadata"]["resourceVersion"]
    store.create(pod("new", "a"))  # after the first page: not in this listing
    store.delete("Pod", "b", "x")  # deleted after the first page: still in it
    second = listing(store, None, limit="2", **{"continue": first["metadata"]["continue"]})
    assert names_of(second) == ["z", "x"] and second["metadata"]["resourceVersion"] == rv
    assert "continue" not in second["metadata"]
    # selectors: no remainingItemCount (upstream cannot count what a selector drops)
    sel = listing(store, None, limit="1", labelSelector="app=web")
    assert "remainingItemCount" not in sel["metadata"] and sel["metadata"]["continue"]


def test_an_expired_continue_token_is_410_with_a_fresh_token() -> None:
    store = Store(history=2)
    for name in "abc":
        store.create(pod(name))
    first = listing(store, limit="1")
    for name in "defg":
        store.create(pod(name))
    err = refused(listing, store, limit="1", **{"continue": first["metadata"]["continue"]})
    assert (err.code, err.reason) == (410, "Expired")
    assert err.message.startswith("The provided continue parameter is too old")
    fresh = err.status()["metadata"]["continue"]
    assert decode_continue(fresh) == (-1, "a\x00")
    assert names_of(listing(store, limit="2", **{"continue": fresh})) == ["b", "c"]


def test_exact_reads_and_freshness() -> None:
    store = Store(history=3)
    old = store.create(pod("a"))["metadata"]["resourceVersion"]
    store.create(pod("b"))
    updated = store.get("Pod", "default", "a")
    updated["metadata"]["labels"] = {"app": "changed"}
    store.update(updated)
    at_old = listing(store, resourceVersion=old, resourceVersionMatch="Exact")
    assert names_of(at_old) == ["a"] and at_old["items"][0]["metadata"]["labels"] == \
        {"app": "web"} and at_old["metadata"]["resourceVersion"] == old
    for name in "cde":
        store.create(pod(name))
    err = refused(listing, store, resourceVersion=old, resourceVersionMatch="Exact")
    assert (err.code, err.message) == (410, "The resourceVersion for the provided list is too "
                                            "old.")
    future = str(int(store.resource_version) + 5)
    err = refused(listing, store, resourceVersion=future, resourceVersionMatch="Exact")
    assert (err.code, err.reason) == (504, "Timeout")
    assert err.message == f"Timeout: Too large resource version: {future}, current: " \
                          f"{store.resource_version}"
    assert err.status()["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


def test_not_older_than_waits_for_the_store() -> None:
    store = Store(condition=threading.Condition())   # a writer's thread shares it
    store.create(pod("a"))
    wanted = str(int(store.resource_version) + 1)
    threading.Timer(0.2, lambda: store.create(pod("late"))).start()
    started = time.monotonic()
    assert names_of(listing(store, resourceVersion=wanted)) == ["a", "late"]
    assert time.monotonic() - started < 2.5
    assert get_object(store, PODS, "default", "late", wanted)["metadata"]["name"] == "late"


def test_store_reads_at_a_version_and_with_a_predicate() -> None:
    store = Store(history=10)
    rv0 = int(store.create(pod("a"))["metadata"]["resourceVersion"])
    store.create(pod("b"))
    store.delete("Pod", "default", "a")
    assert [o["metadata"]["name"] for o in store.list("Pod", at=rv0)[0]] == ["a"]
    assert store.list("Pod", at=rv0)[1] == str(rv0)
    assert [o["metadata"]["name"] for o in store.list(
        "Pod", predicate=lambda o: o["metadata"]["name"] != "b")[0]] == []
    assert store.wait_for(rv0, 0.0) and not store.wait_for(rv0 + 10, 0.05)


# -- watches ---------------------------------------------------------------------------------------

def watch_opts(**params: str):  # noqa: ANN201
    return list_options(q(watch="1", **params), "Pod")


def test_where_a_watch_starts() -> None:
    store = Store()
    rv = store.create(pod("a", node="n1"))["metadata"]["resourceVersion"]
    store.create(pod("b", node="n2"))
    legacy = watch_start(store, PODS, "default", watch_opts(fieldSelector="spec.nodeName=n1"))
    assert [(e.type, e.object["metadata"]["name"]) for e in legacy.first.events] == \
        [("ADDED", "a")] and not legacy.initial_events_end
    after = watch_start(store, PODS, "default", watch_opts(resourceVersion=rv))
    assert [(e.type, e.object["metadata"]["name"]) for e in after.first.events] == \
        [("ADDED", "b")]
    none = watch_start(store, PODS, "default", watch_opts(
        sendInitialEvents="false", resourceVersionMatch="NotOlderThan"))
    assert none.first.events == []
    listwatch = watch_start(store, PODS, "default", watch_opts(
        sendInitialEvents="true", resourceVersionMatch="NotOlderThan",
        allowWatchBookmarks="true"))
    assert len(listwatch.first.events) == 2 and listwatch.initial_events_end
    assert sends_initial_events(watch_opts(resourceVersion="0"))
    assert not sends_initial_events(watch_opts(resourceVersion="5"))


def test_a_watch_sees_an_object_leave_its_field_selector_as_deleted() -> None:
    store = Store()
    store.create(pod("a", phase="Pending"))
    o = watch_opts(fieldSelector="status.phase=Running")
    start = watch_start(store, PODS, "default", o)
    assert start.first.events == []
    running = store.get("Pod", "default", "a")
    running["status"]["phase"] = "Running"
    store.update_status(running)
    failed = store.get("Pod", "default", "a")
    failed["status"]["phase"] = "Failed"
    store.update_status(failed)
    batch = watch_next(store, PODS, "default", o, start.first.resource_version, 0.0)
    assert [e.type for e in batch.events] == ["ADDED", "DELETED"]


def test_a_watch_from_before_the_history_is_410() -> None:
    store = Store(history=1)
    rv = store.create(pod("a"))["metadata"]["resourceVersion"]
    store.create(pod("b"))
    store.create(pod("c"))
    with pytest.raises(Expired):
        watch_start(store, PODS, "default", watch_opts(resourceVersion=rv))


def test_bookmarks_every_period_and_before_the_deadline() -> None:
    assert next_bookmark(100.0, 1000.0, 60.0) == 160.0
    assert next_bookmark(100.0, 130.0, 60.0) == 128.0  # 2 s before the end
    assert next_bookmark(100.0, 101.0, 60.0) is None  # too late for one
    assert bookmark("Pod", "v1", "9", initial_events_end=True) == {
        "kind": "Pod", "apiVersion": "v1", "metadata": {
            "resourceVersion": "9", "creationTimestamp": None,
            "annotations": {"k8s.io/initial-events-end": "true"}}}
    assert "annotations" not in bookmark("Pod", "v1", "9")["metadata"]
