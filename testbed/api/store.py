"""Pure: the in-memory object store behind the API server, with resource versions and watch.

Objects are plain dicts keyed by (kind, namespace, name); cluster-scoped kinds use namespace "".
One monotonically increasing counter per store gives every write a resourceVersion (a string,
as in Kubernetes; clients must treat it as opaque). Semantics follow the API server:

* `create` fills uid, creationTimestamp, generation 1; `update` keeps status (the status
  subresource is `update_status`) and bumps generation only when something outside metadata
  and status changed; an update that changes nothing writes nothing and sends no event.
* `update` with metadata.resourceVersion set must match the stored one (optimistic
  concurrency, HTTP 409); `apply` is create-or-update and ignores it.
* `delete` with a grace period only marks the object (deletionTimestamp, a MODIFIED event),
  as for terminating Pods; without one it removes the object (a DELETED event).
* `watch` returns events after a resourceVersion, waiting up to a timeout for the first; the
  history is bounded and a resourceVersion older than it raises `Expired` (HTTP 410). A watch
  with a label selector sees an object that stops matching as DELETED and one that starts
  matching as ADDED, as the API server's watch cache does; a `predicate` (field selectors)
  narrows a watch the same way.
* `list` with `at` reads the state as of an older resourceVersion (a paginated list's
  snapshot, an Exact read), rebuilt from the watch history: Expired when the history no
  longer reaches back that far. `wait_for` blocks until the store reaches a resourceVersion.

Thread-safe when given a threading.Condition (the API server passes one): writers notify it
and watchers wait on it. No I/O.

Watch fan-out costs what one kind's watchers need, as the API server's cacher per resource
with its indexed triggers: a watch of one kind waits on a condition of its own (over the same
lock) that only writes of that kind wake, a Pod watch that requires spec.nodeName (a
kubelet's) only writes of Pods on that node (before or after the write), and each looks only
at its kind's newest events, not at the whole history. Which events a watch returns is the same
as without: the predicate still decides.
"""

from __future__ import annotations

import pickle
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from testbed.api.fields import field_values
from testbed.api.meta import object_key, parse_selector, selector_matches
from testbed.api.resources import CLUSTER_SCOPED
from testbed.api.sharing import Condition, Unshared, companion

Key = tuple[str, str, str]


class StoreError(Exception):
    """A refused store operation; `code` is the HTTP status the API server answers with."""

    code = 500
    reason = "InternalError"


class NotFound(StoreError):
    code, reason = 404, "NotFound"


class AlreadyExists(StoreError):
    code, reason = 409, "AlreadyExists"


class Conflict(StoreError):
    code, reason = 409, "Conflict"


class Expired(StoreError):
    code, reason = 410, "Expired"


class Invalid(StoreError):
    code, reason = 422, "Invalid"


@dataclass(frozen=True)
class Event:
    type: str  # ADDED, MODIFIED, DELETED
    object: dict
    resource_version: int
    previous: dict | None = None  # the object before a MODIFIED or DELETED


@dataclass(frozen=True)
class WatchBatch:
    """Events after the requested version; resume the next watch from `resource_version`."""

    events: list[Event]
    resource_version: str


def clone(obj: Any) -> Any:
    """A deep copy of JSON-like data (dicts, lists, scalars), about 3x faster than deepcopy."""
    return pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


KEEP: Any = object()  # update_status: leave metadata.managedFields as stored


def key_of(obj: dict) -> Key:
    """(kind, namespace, name): the kind before testbed.api.meta's object_key."""
    return (obj.get("kind", ""), *object_key(obj))


def _describe(key: Key) -> str:
    kind, namespace, name = key
    return f'{kind.lower()}s "{name}"' + (f" in namespace {namespace!r}" if namespace else "")


# Fields a watch of a kind may name as an index (Kind -> field path): its waiters are woken only
# by writes of objects whose value of that field, before or after the write, is theirs.
INDEXED_FIELDS = {"Pod": "spec.nodeName"}


def _index_value(kind: str, obj: dict | None) -> str | None:
    """The value of `kind`'s indexed field on `obj` as its field selector sees it (api/fields.py
    field_values), None when it has none."""
    if obj is None:
        return None
    return field_values(kind, obj).get(INDEXED_FIELDS[kind]) or None


class Objects(dict):
    """The stored objects by key, and the same objects by kind, kept in step, so that a list
    or a watch's initial events of one kind look at that kind's objects only (a Pod list
    among thousands of Events). Writes go through [key] = obj, del, pop and update (what a
    restore uses: JournaledStore fills the map with update)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_kind: dict[str, dict[Key, dict]] = {}

    def __setitem__(self, key: Key, obj: dict) -> None:
        super().__setitem__(key, obj)
        self.by_kind.setdefault(key[0], {})[key] = obj

    def __delitem__(self, key: Key) -> None:
        super().__delitem__(key)
        self.by_kind[key[0]].pop(key, None)

    def pop(self, key: Key, *default: Any) -> Any:   # type: ignore[override]
        if key in self:
            self.by_kind[key[0]].pop(key, None)
        return super().pop(key, *default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, obj in dict(*args, **kwargs).items():
            self[key] = obj

    def of_kind(self, kind: str | None) -> dict[Key, dict]:
        return self if kind is None else self.by_kind.get(kind, {})


def _spec_part(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class Store:
    def __init__(self, history: int = 1000, now: Callable[[], str] = utc_now,
                 new_uid: Callable[[], str] = lambda: str(uuid.uuid4()),
                 condition: Condition | None = None):
        """`condition`: threading.Condition() when threads share the store (the API server's);
        left out, the store is one thread's (testbed.api.sharing)."""
        self._objects = Objects()
        self._events: deque[Event] = deque()
        self._by_kind: dict[str, deque[Event]] = {}   # the same events, per kind, oldest first
        self._history = history
        self._dropped_upto = 0  # the newest resourceVersion no longer in the history
        self._rv = 0
        self._now = now
        self._new_uid = new_uid
        self._changed: Condition = condition if condition is not None else Unshared()
        self._lock = self._changed   # a condition is its own lock
        # (kind,) or (kind, index value) -> the condition that kind's (or index's) watchers wait on
        self._channels: dict[tuple[str, ...], Condition] = {}

    # -- reads ---------------------------------------------------------------------------------

    def now(self) -> str:
        """The store's clock (RFC 3339), for timestamps writers put into objects."""
        return self._now()

    @property
    def resource_version(self) -> str:
        with self._lock:
            return str(self._rv)

    def get(self, kind: str, namespace: str, name: str) -> dict:
        key = (kind, "" if kind in CLUSTER_SCOPED else namespace, name)
        with self._lock:
            if key not in self._objects:
                raise NotFound(f"{_describe(key)} not found")
            return clone(self._objects[key])

    def list(self, kind: str, namespace: str | None = None,
             selector: dict | str | None = None, *, copy: bool = True,
             predicate: Callable[[dict], bool] | None = None,
             at: int | None = None) -> tuple[list[dict], str]:
        """Matching objects sorted by namespace and name, and the store's resourceVersion.

        `predicate`, when given, must accept an object too. `at` reads the objects as they were
        at that resourceVersion (and returns it as the list's version): Expired when the
        history does not reach back that far; it must not be newer than the store.

        `copy=False` hands out the stored objects themselves, for readers that promise never to
        change them (the in-process controllers: a pass over 1,000 Pods then costs no copies).
        That is safe because the store never changes a stored object in place: every write
        stores a new one.
        """
        sel = parse_selector(selector) if isinstance(selector, str) else selector
        with self._lock:
            objects = self._objects.of_kind(kind) if at is None or at >= self._rv \
                else self._state_at(at)
            found = [obj for _, obj in sorted(
                (key, obj) for key, obj in objects.items()
                if key[0] == kind and (namespace is None or key[1] == namespace)
                and selector_matches(sel, obj["metadata"].get("labels"))
                and (predicate is None or predicate(obj)))]
            rv = str(self._rv if at is None else at)
        return (clone(found) if copy else found), rv

    def _state_at(self, at: int) -> dict[Key, dict]:
        """Under the lock: the objects as of resourceVersion `at`, undoing newer events."""
        if at < self._dropped_upto:
            raise Expired(f"too old resource version: {at} ({self._dropped_upto + 1})")
        objects = dict(self._objects)
        for event in reversed(self._events):
            if event.resource_version <= at:
                break
            key = key_of(event.object)
            if event.type == "ADDED":
                objects.pop(key, None)
            elif event.previous is not None:
                objects[key] = event.previous
        return objects

    def wait_for(self, rv: int, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the store to reach resourceVersion `rv`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._rv < rv:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    # -- writes --------------------------------------------------------------------------------

    def create(self, obj: dict, dry_run: bool = False) -> dict:
        """Store a new object (AlreadyExists if its key is taken). `dry_run`: the object as it
        would be stored, with nothing written."""
        obj = clone(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + self._new_uid().replace("-", "")[:5]
        key = key_of(obj)
        if not key[0] or not key[2]:
            raise Invalid("kind and metadata.name are required")
        with self._lock:
            if key in self._objects:
                raise AlreadyExists(f"{_describe(key)} already exists")
            if key[1]:
                meta["namespace"] = key[1]
            for server_field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(server_field, None)
            meta["uid"] = self._new_uid()
            meta["creationTimestamp"] = self._now()
            meta["generation"] = 1
            if dry_run:
                return obj
            return self._write(key, obj, "ADDED", None)

    def update(self, obj: dict, dry_run: bool = False) -> dict:
        """Replace everything but status; 409 if a given resourceVersion is stale."""
        return self._replace(obj, status=False, check_version=True, dry_run=dry_run)

    def update_status(self, obj: dict, dry_run: bool = False,
                      managed_fields: Any = KEEP) -> dict:
        """Replace only status (the status subresource). `managed_fields`, when given, is
        written as metadata.managedFields too (None removes them): the status writer's entry,
        computed by the API (testbed/api/managedfields.py)."""
        return self._replace(obj, status=True, check_version=True, dry_run=dry_run,
                             managed_fields=managed_fields)

    def apply(self, obj: dict) -> dict:
        """Create, or update ignoring resourceVersion (what `kubectl apply` amounts to here)."""
        return self.apply_reporting(obj)[0]

    def apply_reporting(self, obj: dict) -> tuple[dict, str]:
        """apply(), and what it did, decided under the lock: created, configured or unchanged
        (a write of the object as it already stood)."""
        with self._lock:
            exists = key_of(obj) in self._objects
        if not exists:
            try:
                return self.create(obj), "created"
            except AlreadyExists:
                pass  # created between the two locks; fall through to update
        done: list[str] = []
        stored = self._replace(obj, status=False, check_version=False, done=done)
        return stored, done[0] if done else "configured"

    def delete(self, kind: str, namespace: str, name: str,
               grace_seconds: int | None = None, dry_run: bool = False) -> dict:
        """Remove the object, or with a grace period mark it terminating. Returns it.
        `dry_run`: what would be returned, with nothing written."""
        key = (kind, "" if kind in CLUSTER_SCOPED else namespace, name)
        with self._lock:
            old = self._objects.get(key)
            if old is None:
                raise NotFound(f"{_describe(key)} not found")
            if grace_seconds:
                if old["metadata"].get("deletionTimestamp"):
                    return clone(old)
                new = clone(old)
                new["metadata"]["deletionTimestamp"] = self._now()
                new["metadata"]["deletionGracePeriodSeconds"] = grace_seconds
                return new if dry_run else self._write(key, new, "MODIFIED", old)
            return clone(old) if dry_run else self._write(key, None, "DELETED", old)

    def _replace(self, obj: dict, status: bool, check_version: bool,
                 dry_run: bool = False, managed_fields: Any = KEEP,
                 done: list[str] | None = None) -> dict:
        key = key_of(obj)
        with self._lock:
            old = self._objects.get(key)
            if old is None:
                raise NotFound(f"{_describe(key)} not found")
            given = (obj.get("metadata") or {}).get("resourceVersion")
            if check_version and given and given != old["metadata"]["resourceVersion"]:
                raise Conflict(f"Operation cannot be fulfilled on {_describe(key)}: the object "
                               "has been modified; please apply your changes to the latest "
                               "version and try again")
            if status:
                new = clone(old)
                if "status" in obj:
                    new["status"] = clone(obj["status"])
                if managed_fields is not KEEP:
                    if managed_fields:
                        new["metadata"]["managedFields"] = clone(managed_fields)
                    else:
                        new["metadata"].pop("managedFields", None)
            else:
                new = clone(obj)
                new["metadata"] = meta = clone(obj.get("metadata") or {})
                for server_field in ("uid", "creationTimestamp", "generation",
                                     "deletionTimestamp", "deletionGracePeriodSeconds"):
                    if server_field in old["metadata"]:
                        meta[server_field] = old["metadata"][server_field]
                    else:
                        meta.pop(server_field, None)
                if key[1]:
                    meta["namespace"] = key[1]
                new.pop("status", None)
                if "status" in old:
                    new["status"] = clone(old["status"])
                if _spec_part(new) != _spec_part(old):
                    meta["generation"] = old["metadata"]["generation"] + 1
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if done is not None:
                done.append("unchanged" if new == old else "configured")
            if new == old:
                return clone(old)
            if dry_run:
                return new
            return self._write(key, new, "MODIFIED", old)

    def _write(self, key: Key, new: dict | None, kind: str, old: dict | None) -> dict:
        """Under the lock: bump the version, store, record the event, wake watchers."""
        self._rv += 1
        if new is None:
            del self._objects[key]
            shown = clone(old)
            assert shown is not None
        else:
            new["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[key] = new
            shown = clone(new)
        if new is None:
            shown["metadata"]["resourceVersion"] = str(self._rv)
        event = Event(kind, shown, self._rv, old)
        self._events.append(event)
        self._by_kind.setdefault(key[0], deque()).append(event)
        while len(self._events) > self._history:
            dropped = self._events.popleft()
            self._by_kind[key_of(dropped.object)[0]].popleft()   # its kind's oldest, too
            self._dropped_upto = dropped.resource_version
        self._changed.notify_all()
        self._notify(key[0], old, new)
        return clone(shown)

    def _notify(self, kind: str, old: dict | None, new: dict | None) -> None:
        """Under the lock: wake the watchers of `kind`, and those of its index values that the
        object had before or has after the write."""
        channel = self._channels.get((kind,))
        if channel is not None:
            channel.notify_all()
        if kind in INDEXED_FIELDS:
            for value in {_index_value(kind, old), _index_value(kind, new)} - {None}:
                channel = self._channels.get((kind, value))
                if channel is not None:
                    channel.notify_all()

    def _channel(self, kind: str | None, index: str | None) -> Condition:
        """Under the lock: the condition a watch of `kind` (narrowed to `index`) waits on."""
        if kind is None:
            return self._changed
        key = (kind,) if not index or kind not in INDEXED_FIELDS else (kind, index)
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = companion(self._changed)
        return channel

    # -- watch ---------------------------------------------------------------------------------

    def watch(self, kind: str | None = None, namespace: str | None = None,
              since: str | None = None, timeout: float = 0.0,
              selector: dict | str | None = None, *,
              predicate: Callable[[dict], bool] | None = None,
              index: str | None = None, copy: bool = True) -> WatchBatch:
        """Events after `since`, waiting up to `timeout` seconds for the first one.

        `since` None, "" or "0" starts with a synthetic ADDED event per current object, as a
        Kubernetes watch without a resourceVersion does. `predicate` narrows the events as the
        label selector does (an object that stops matching is DELETED).

        `index`: the value the predicate requires of the kind's indexed field (INDEXED_FIELDS:
        a Pod watch's spec.nodeName), so that only writes of such objects wake this watch; it
        must not let through anything the predicate would not.

        `copy=False` hands out the objects the history holds, shared by every watcher, for
        callers that promise never to change them (the API server, which only serializes them:
        a copy per watcher per event is what a thousand Pods times a hundred nodes' watchers
        would cost otherwise). The store never changes them: every write stores a new object.
        """
        sel = parse_selector(selector) if isinstance(selector, str) else selector

        def matches(obj: dict | None) -> bool:
            if obj is None:
                return False
            k = key_of(obj)
            return ((kind is None or k[0] == kind) and (namespace is None or k[1] == namespace)
                    and selector_matches(sel, obj["metadata"].get("labels"))
                    and (predicate is None or predicate(obj)))

        deadline = time.monotonic() + timeout
        with self._lock:
            if since in (None, "", "0"):
                events = [Event("ADDED", clone(obj) if copy else obj,
                                int(obj["metadata"]["resourceVersion"]))
                          for _, obj in sorted((k, o) for k, o in self._objects.of_kind(kind).items()
                                               if matches(o))]
                return WatchBatch(events, str(self._rv))
            try:
                start = int(since)
            except ValueError:
                raise Invalid(f"invalid resource version {since!r}") from None
            while True:
                if start < self._dropped_upto:
                    raise Expired(f"too old resource version: {start} ({self._dropped_upto + 1})")
                history = self._events if kind is None else self._by_kind.get(kind, ())
                newer = []
                for event in reversed(history):   # only the events after `start`
                    if event.resource_version <= start:
                        break
                    newer.append(event)
                events = []
                for event in reversed(newer):
                    now_in, was_in = matches(event.object), matches(event.previous)
                    if event.type == "DELETED":
                        now_in = False
                    if now_in and was_in:
                        events.append(event)
                    elif now_in:
                        events.append(Event("ADDED", event.object, event.resource_version,
                                            event.previous))
                    elif was_in:
                        events.append(Event("DELETED", event.object, event.resource_version,
                                            event.previous))
                remaining = deadline - time.monotonic()
                if events or remaining <= 0:
                    out = [Event(e.type, clone(e.object) if copy else e.object,
                                 e.resource_version) for e in events]
                    return WatchBatch(out, str(self._rv))
                self._channel(kind, index).wait(remaining)
