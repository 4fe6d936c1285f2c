"""Pure: the read verbs over the store (get, list, the start of a watch), as upstream reads.

Each takes the store and `ListOptions` (testbed.api.query) and honours every option:

* `list_objects`: label and field selectors; resourceVersion ("" the latest, "0" any, N not
  older than N: waits up to 3 s for the store to get there, then 504 as the cacher does),
  resourceVersionMatch=Exact (the state at N, rebuilt from the watch history: 410 when the
  history is gone, 504 when N is in the future), limit and continue (pages in storage-key
  order, all at the first page's resourceVersion; a token older than the history is 410 with
  upstream's message and a fresh token resuming at the latest state).
* `get_object`: resourceVersion as for a list (GetOptions).
* `watch_start`: where a watch begins: the current objects as ADDED events (resourceVersion
  "" or "0", or sendInitialEvents=true, then maybe upstream's initial-events-end bookmark), or
  the events after N (410 Expired when N is older than the history).

The HTTP layer streams the rest of a watch with `watch_next`. The watch events' objects are the
store's own, shared by every watcher (Store.watch copy=False): the HTTP layer (agents/
apiserver.py, tables.WatchRenderer) must only serialize them, never change them.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.api.query import (
    EXPIRED_CONTINUE,
    EXPIRED_LIST,
    FRESHNESS_WAIT,
    ListOptions,
    encode_continue,
    expired,
    page,
    parse_resource_version,
    read_plan,
    sends_initial_events,
    sort_key,
    too_large,
)
from testbed.api.resources import Resource
from testbed.api.store import INDEXED_FIELDS, Expired, Store, WatchBatch, clone


def _fresh_enough(store: Store, wanted: int) -> None:
    """Wait for the store to reach `wanted`; 504 Too large resource version if it does not."""
    if wanted and not store.wait_for(wanted, FRESHNESS_WAIT):
        raise too_large(wanted, int(store.resource_version))


def list_objects(store: Store, r: Resource, namespace: str | None, o: ListOptions) -> dict:
    """The <Kind>List a list request answers with."""
    plan = read_plan(o)
    all_namespaces = r.namespaced and namespace is None
    current = int(store.resource_version)
    if plan.at is not None and plan.at > current:
        raise too_large(plan.at, current)
    _fresh_enough(store, plan.not_older_than)
    try:
        items, rv = store.list(r.kind, namespace if r.namespaced else None, copy=False,
                               predicate=o.predicate(r.kind, r.namespaced), at=plan.at)
    except Expired:
        if plan.from_token:
            raise expired(EXPIRED_CONTINUE, encode_continue(-1, plan.start_key)) from None
        raise expired(EXPIRED_LIST) from None
    items = sorted(items, key=sort_key(all_namespaces))
    cut = page(items, o, plan, int(rv), all_namespaces)
    meta: dict = {"resourceVersion": rv}
    if cut.continue_token:
        meta["continue"] = cut.continue_token
    if cut.remaining is not None:
        meta["remainingItemCount"] = cut.remaining
    return {"apiVersion": r.group_version, "kind": r.kind + "List", "metadata": meta,
            "items": clone(cut.items)}


def get_object(store: Store, r: Resource, namespace: str | None, name: str,
               resource_version: str = "") -> dict:
    """One object, at least as fresh as `resource_version` (store NotFound when missing)."""
    _fresh_enough(store, parse_resource_version(resource_version))
    return store.get(r.kind, namespace or "", name)


@dataclass(frozen=True)
class WatchStart:
    first: WatchBatch  # the initial ADDED events, or the events already after N
    initial_events_end: bool  # send the bookmark that ends the initial events


def watch_start(store: Store, r: Resource, namespace: str | None, o: ListOptions) -> WatchStart:
    ns = namespace if r.namespaced else None
    predicate = o.predicate(r.kind, r.namespaced)
    wanted = parse_resource_version(o.resource_version)
    if sends_initial_events(o):
        _fresh_enough(store, wanted)
        first = store.watch(r.kind, ns, None, predicate=predicate, copy=False)
        return WatchStart(first, bool(o.send_initial_events) and o.allow_bookmarks)
    since = o.resource_version if wanted else store.resource_version
    return WatchStart(store.watch(r.kind, ns, since, 0.0, predicate=predicate, copy=False), False)


def watch_index(r: Resource, o: ListOptions) -> str | None:
    """The value a watch's field selector pins the kind's indexed field to (a kubelet's
    spec.nodeName=NODE), so the store wakes it only for its objects; None otherwise."""
    field = INDEXED_FIELDS.get(r.kind)
    return (o.fields.requires_exact(field) or None) if field else None


def watch_next(store: Store, r: Resource, namespace: str | None, o: ListOptions, since: str,
               timeout: float) -> WatchBatch:
    """The events after `since`, waiting up to `timeout` for one; Expired (410) when the
    history no longer reaches back to `since`."""
    return store.watch(r.kind, namespace if r.namespaced else None, since, timeout,
                       predicate=o.predicate(r.kind, r.namespaced), index=watch_index(r, o),
                       copy=False)
