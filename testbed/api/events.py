"""Pure: core/v1 Events as the cluster's components record them.

A component notes what happened to an object (`Note`: the object's reference, Normal or
Warning, a reason and a message, worded as upstream's components word them); `new_event`
makes the Event object, named as client-go's recorder names it (`<object>.<hex nanoseconds>`),
and `repeat` counts a repetition into an existing Event (count + 1, lastTimestamp), as
client-go's EventCorrelator does for identical events instead of writing a new one.
`event_time` is when an Event was last seen, as kubectl sorts Events by it; `expired` lists
the Events older than the API server's event TTL (one hour upstream).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from testbed.api.printers import parse_time

EVENT_TTL = timedelta(hours=1)  # kube-apiserver --event-ttl default


@dataclass(frozen=True)
class Note:
    """What a component reports about an object; `about` is an ObjectReference."""

    about: dict
    type: str       # Normal | Warning
    reason: str
    message: str

    @property
    def key(self) -> tuple:
        """What makes two notes the same event (EventCorrelator's aggregation key, minus
        the source, which is per recorder)."""
        a = self.about
        return (a.get("kind"), a.get("namespace"), a.get("name"), a.get("uid"),
                a.get("apiVersion"), a.get("fieldPath"), self.type, self.reason, self.message)


def reference(obj: dict, field_path: str | None = None) -> dict:
    """The ObjectReference of `obj` (kind, namespace, name, uid, apiVersion, resourceVersion)."""
    meta = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "name": meta.get("name", "")}
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    for key, value in (("uid", meta.get("uid")), ("apiVersion", obj.get("apiVersion")),
                       ("resourceVersion", meta.get("resourceVersion")),
                       ("fieldPath", field_path)):
        if value:
            ref[key] = value
    return ref


def container_path(name: str, init: bool = False) -> str:
    """The fieldPath the kubelet gives a container's events: spec.containers{NAME}."""
    return f"spec.{'initContainers' if init else 'containers'}{{{name}}}"


def timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_event(note: Note, component: str, host: str | None, now: datetime) -> dict:
    """A fresh Event (count 1) in the namespace of the object it is about ("default" for
    cluster-scoped objects, as client-go's recorder does)."""
    nanos = int(now.timestamp() * 1_000_000_000)
    namespace = note.about.get("namespace") or "default"
    source = {"component": component, **({"host": host} if host else {})}
    stamp = timestamp(now)
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{note.about.get('name', '')}.{nanos:x}",
                         "namespace": namespace},
            "involvedObject": dict(note.about), "reason": note.reason,
            "message": note.message, "source": source, "firstTimestamp": stamp,
            "lastTimestamp": stamp, "count": 1, "type": note.type,
            "reportingComponent": component,
            "reportingInstance": host or ""}


def repeat(event: dict, now: datetime) -> dict:
    """`event` seen once more: count + 1 and a new lastTimestamp."""
    out = copy.deepcopy(event)
    out["count"] = int(out.get("count") or 1) + 1
    out["lastTimestamp"] = timestamp(now)
    return out


def event_time(event: dict) -> datetime | None:
    """When `event` was last seen, as kubectl's eventTime() (util/event, by which `describe`
    sorts, SortableEvents) has it: a series' lastObservedTime, else lastTimestamp, else
    eventTime; None when that is unset."""
    series = event.get("series")
    if isinstance(series, dict):     # upstream: Series != nil, whatever it holds
        return parse_time(series.get("lastObservedTime"))
    return parse_time(event.get("lastTimestamp")) or parse_time(event.get("eventTime"))


def expired(events: list[dict], now: datetime, ttl: timedelta = EVENT_TTL) -> list[dict]:
    """The Events last seen (event_time, else creationTimestamp) more than `ttl` ago."""
    out = []
    for e in events:
        seen = event_time(e) or parse_time((e.get("metadata") or {}).get("creationTimestamp"))
        if seen is not None and now - seen > ttl:
            out.append(e)
    return out
