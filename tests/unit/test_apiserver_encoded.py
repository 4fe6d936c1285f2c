"""The API server encodes a watch event once for every watcher that gets it
(agents/apiserver.py EncodedEvents), and the lines are those each watcher got before."""

from __future__ import annotations

import json

from testbed.agents.apiserver import EncodedEvents
from testbed.api.store import Event
from tests.unit.test_apiserver import call, pod, read_watch


def obj(name: str, rv: str, api_version: str = "v1", **extra) -> dict:
    return {"apiVersion": api_version, "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv}, **extra}


def test_an_event_is_encoded_once_and_its_line_is_the_json_event():
    cache = EncodedEvents()
    event = Event("MODIFIED", obj("a", "7", spec={"x": 1}), 7)
    first = cache.line(event)
    assert json.loads(first) == {"type": "MODIFIED", "object": event.object}
    assert first.endswith(b"\n")
    assert cache.line(Event("MODIFIED", event.object, 7)) is first   # another watcher's copy
    assert cache.made == 1


def test_events_that_differ_in_any_part_of_their_key_are_encoded_apart():
    cache = EncodedEvents()
    lines = {cache.line(Event(t, o, 0)) for t, o in [
        ("ADDED", obj("a", "7")), ("DELETED", obj("a", "7")), ("ADDED", obj("b", "7")),
        ("ADDED", obj("a", "8")), ("ADDED", obj("a", "7", api_version="v2"))]}
    assert len(lines) == 5 and cache.made == 5


def test_bookmarks_and_objects_without_a_version_are_never_cached():
    cache = EncodedEvents()
    mark = {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "9"}}
    cache.line(Event("BOOKMARK", mark, 0))
    cache.line(Event("ERROR", {"kind": "Status", "metadata": {}}, 0))
    assert cache.made == 0


def test_the_cache_keeps_the_newest_lines_only():
    cache = EncodedEvents(size=2)
    for rv in ("1", "2", "3"):
        cache.line(Event("ADDED", obj("a", rv), 0))
    cache.line(Event("ADDED", obj("a", "3"), 0))
    assert cache.made == 3
    cache.line(Event("ADDED", obj("a", "1"), 0))   # pushed out: encoded again
    assert cache.made == 4


def test_two_watchers_get_the_same_events_encoded_once(server):
    cache = server.tcp.encoded
    _, listed = call(server, "GET", "/api/v1/namespaces/default/pods")
    rv = listed["metadata"]["resourceVersion"]
    call(server, "POST", "/api/v1/namespaces/default/pods", pod("a", app="web"))
    call(server, "POST", "/api/v1/namespaces/default/pods", pod("b", app="web"))
    path = f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&timeoutSeconds=1"
    _, first = read_watch(server, path)
    _, second = read_watch(server, path)
    assert [e["object"]["metadata"]["name"] for e in first] == ["a", "b"]
    assert first == second
    assert cache.made == 2


def test_each_server_keeps_its_own_lines(tmp_path):
    """Two API servers in one process (as tests run them) number their objects alike: a
    watch of one never gets a line the other made."""
    from tests.unit.conftest import start_api

    seen = []
    for label in ("first", "second"):
        srv = start_api(tmp_path / label)
        try:
            _, listed = call(srv, "GET", "/api/v1/namespaces/default/pods")
            rv = listed["metadata"]["resourceVersion"]
            call(srv, "POST", "/api/v1/namespaces/default/pods", pod("a", app=label))
            _, events = read_watch(srv, f"/api/v1/namespaces/default/pods?watch=1&resourceVersion="
                                        f"{rv}&timeoutSeconds=1")
            seen.append(events[0]["object"]["metadata"]["labels"]["app"])
        finally:
            srv.stop()
    assert seen == ["first", "second"]
