"""Pure: metadata.managedFields as the API server keeps them, and server-side apply.

Every write records who set which fields (upstream: apimachinery pkg/util/managedfields and
structured-merge-diff merge/update.go, whose wrappers this module folds into two functions):

* `update(live, new, ...)`  for create, replace and the JSON/merge/strategic patches: the
  fields the write added or changed join the writer's Update entry (manager, operation Update,
  apiVersion, time, subresource) and leave everyone else's; removed fields leave every entry.
  An object nobody tracks stays untracked on update; managedFields sent by the client are
  taken when they decode, `managedFields: []` resets them, and a write that changes nothing
  changes no entry.
* `apply(live, config, ...)`  server-side apply: the configuration merges into the live object
  (typed.merge), the applier's Apply entry becomes the configuration's fields, fields it applied
  before and applies no more are pruned unless another manager owns them, and fields another
  manager owns that the apply changes are conflicts (ApplyConflict, 409, worded as upstream) or,
  with force, change owner. kubectl's own apply (manager "kubectl") may take over fields that its
  client-side apply owned when the last-applied-configuration annotation says so, and keeps
  that annotation current.

Entries name their FieldSets in FieldsV1 (testbed/api/fieldpath.py); values are walked by
Shape (testbed/api/shapes.py). `status` is not tracked on the main resource; the status and
scale subresources track only status and spec.replicas, with subresource "status"/"scale".
No I/O: the time comes from an injected clock.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from testbed.api import fieldpath as fp
from testbed.api.fieldpath import FieldSet
from testbed.api.patch import PatchError, bad_request, prune_nulls
from testbed.api.shapes import Shape
from testbed.api.typed import (
    MISSING,
    TypedError,
    compare,
    ensure_named,
    json_equal,
    merge,
    remove_items,
    to_set,
)

APPLY, UPDATE = "Apply", "Update"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
KUBECTL = "kubectl"  # the applier whose client-side-apply ownership server-side apply upgrades
BEFORE_FIRST_APPLY = "before-first-apply"
ANCIENT_CHANGES = "ancient-changes"
MAX_UPDATE_MANAGERS = 10
FIELD_MANAGER_MAX_LENGTH = 128

# Fields no manager owns (upstream's stripMetaManager).
_STRIPPED = FieldSet([(fp.field(f),) for f in ("apiVersion", "kind", "metadata")] + [
    (fp.field("metadata"), fp.field(f)) for f in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName",
        "generation", "managedFields", "resourceVersion")])
_STATUS = (fp.field("status"),)
_REPLICAS = (fp.field("spec"), fp.field("replicas"))


@dataclass(frozen=True)
class Manager:
    """An entry's identity: Apply entries of one manager are one entry whatever the version."""

    name: str
    operation: str
    api_version: str = ""
    subresource: str = ""

    def __str__(self) -> str:
        """As upstream's printManager names it in conflicts."""
        text = json.dumps(self.name)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == UPDATE:
            text += f" using {self.api_version}"
        return text


@dataclass(frozen=True)
class Entry:
    fields: FieldSet
    api_version: str
    applied: bool
    time: str | None = None


Managed = dict[Manager, Entry]
_CURRENT = Manager("current-operation", UPDATE)


class ApplyConflict(PatchError):
    """409: fields of the applied configuration that other managers own."""

    def __init__(self, conflicts: list[tuple[Manager, fp.Path]]):
        self.conflicts = conflicts
        if len(conflicts) == 1:
            who, path = conflicts[0]
            message = (f"Apply failed with 1 conflict: conflict with {who}: "
                       f"{fp.path_string(path)}")
        else:
            lines = []
            for who in sorted({str(m) for m, _ in conflicts}):
                lines.append(f"conflicts with {who}:")
                lines += [f"- {fp.path_string(p)}" for m, p in conflicts if str(m) == who]
            message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
        super().__init__(409, "Conflict", message, [
            {"reason": "FieldManagerConflict", "message": f"conflict with {m}",
             "field": fp.path_string(p)} for m, p in conflicts])


def manager_for(field_manager: str, user_agent: str) -> str:
    """The fieldManager query parameter, else the User-Agent up to its first "/" (upstream's
    managerOrUserAgent): kubectl/v1.37.1 (linux/amd64) ... -> "kubectl"."""
    if field_manager:
        return field_manager
    out = ""
    for ch in user_agent.split("/", 1)[0]:
        if not ch.isprintable():
            continue
        if len((out + ch).encode()) > FIELD_MANAGER_MAX_LENGTH:
            break
        out += ch
    return out


# -- the wire form ---------------------------------------------------------------------------------

def decode(entries: Any) -> Managed:
    """metadata.managedFields -> Managed; ValueError when an entry is not well formed."""
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    out: Managed = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ValueError(f"managed fields entry {i} must be an object")
        operation = e.get("operation")
        if operation not in (APPLY, UPDATE):
            raise ValueError("operation must be `Apply` or `Update`")
        version = e.get("apiVersion") or ""
        if not version:
            raise ValueError("apiVersion must not be empty")
        if e.get("fieldsType") != "FieldsV1":
            raise ValueError(f"missing fieldsType in managed fields entry {i}"
                             if not e.get("fieldsType") else
                             f"invalid fieldsType {e['fieldsType']!r} in managed fields entry {i}")
        who = Manager(str(e.get("manager") or ""), operation,
                      "" if operation == APPLY else version, str(e.get("subresource") or ""))
        out[who] = Entry(FieldSet.from_fields(e.get("fieldsV1") or {}), version,
                         operation == APPLY, e.get("time"))
    return out


def encode(managed: Managed) -> list[dict] | None:
    """Managed -> metadata.managedFields, sorted as upstream sorts them; None when empty."""
    if not managed:
        return None
    out = []
    for who, entry in managed.items():
        e: dict[str, Any] = {}
        if who.name:
            e["manager"] = who.name
        e["operation"] = APPLY if entry.applied else who.operation
        e["apiVersion"] = entry.api_version
        if entry.time:
            e["time"] = entry.time
        e["fieldsType"] = "FieldsV1"
        e["fieldsV1"] = entry.fields.to_fields()
        if who.subresource:
            e["subresource"] = who.subresource
        out.append(e)
    out.sort(key=lambda e: (e["operation"], e.get("time") or "", e.get("manager", ""),
                            e["apiVersion"], e.get("subresource", "")))
    return out


def _decode_or_empty(entries: Any) -> Managed:
    try:
        return decode(entries)
    except ValueError:
        return {}


def _without_managed(obj: dict | None) -> dict:
    if not obj:
        return {}
    out = dict(obj)
    if isinstance(out.get("metadata"), dict) and "managedFields" in out["metadata"]:
        out["metadata"] = {k: v for k, v in out["metadata"].items() if k != "managedFields"}
    return out


def _with_managed(obj: dict, managed: Managed | list | None) -> dict:
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    entries = encode(managed) if isinstance(managed, dict) else managed
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)
    return out


def _entries(obj: dict | None) -> Any:
    return ((obj or {}).get("metadata") or {}).get("managedFields")


# -- the field filter of each subresource ----------------------------------------------------------

def _filter(fields: FieldSet, subresource: str) -> FieldSet:
    """The fields a write through `subresource` may own (upstream's reset fields)."""
    if subresource == "status":
        status = _STATUS[0]
        out = FieldSet()
        if status in fields.members:
            out.members.add(status)
        if status in fields.children:
            out.children[status] = fields.children[status].copy()
        return out
    if subresource == "scale":
        return FieldSet([_REPLICAS]).intersection(fields)
    return fields.recursive_difference(FieldSet([_STATUS]))


# -- structured-merge-diff's Updater ---------------------------------------------------------------

def _take(managers: Managed, changed: FieldSet, removed: FieldSet, workflow: Manager,
          force: bool) -> Managed:
    """Other managers lose the fields this write changes (or it conflicts) and removes."""
    conflicts: dict[Manager, FieldSet] = {}
    for who, entry in managers.items():
        if who != workflow:
            both = entry.fields.intersection(changed)
            if not both.empty():
                conflicts[who] = both
    if conflicts and not force:
        raise ApplyConflict([(who, path) for who in sorted(conflicts, key=str)
                             for path in conflicts[who].paths()])
    out: Managed = {}
    for who, entry in managers.items():
        fields = entry.fields
        if who != workflow:
            if who in conflicts:
                fields = fields.difference(conflicts[who])
            if not removed.empty():
                fields = fields.difference(removed)
        if not fields.empty():
            out[who] = replace(entry, fields=fields)
    return out


def _update(live: Any, new: Any, shape: Shape, managers: Managed, who: Manager, version: str,
            subresource: str, now: str) -> Managed:
    """One Update: upstream's managedFieldsUpdater over stripMeta over Updater.Update."""
    cmp = compare(live, new, shape)
    changed = _filter(cmp.changed(), subresource)
    removed = _filter(cmp.removed, subresource)
    # upstream runs the write as "current-operation", so the writer's own entry loses what the
    # write removes too, then takes what it changed
    managers = _take(managers, changed, removed, _CURRENT, force=True)
    taken = changed.difference(_STRIPPED)
    if taken.empty():
        return managers
    previous = managers.get(who)
    fields = taken.union(previous.fields) if previous else taken
    managers[who] = Entry(fields, version, False, now)
    return _cap(managers)


def _cap(managers: Managed) -> Managed:
    """At most MAX_UPDATE_MANAGERS Update entries: the oldest merge into "ancient-changes"."""
    updaters = sorted((w for w, e in managers.items() if not e.applied),
                      key=lambda w: (managers[w].time or "", str(w)))
    extra = len(updaters) - MAX_UPDATE_MANAGERS
    if extra <= 0:
        return managers
    out = dict(managers)
    first: dict[str, Manager] = {}
    for who in updaters:
        if extra <= 0:
            break
        entry = out[who]
        bucket = Manager(ANCIENT_CHANGES, UPDATE, entry.api_version)
        if entry.api_version not in first:
            first[entry.api_version] = who
            continue
        if bucket not in out:
            out[bucket] = out.pop(first[entry.api_version])
        out[bucket] = Entry(entry.fields.union(out[bucket].fields), entry.api_version, False,
                            entry.time)
        del out[who]
        extra -= 1
    return out


def _prune(merged: Any, managers: Managed, last: Entry | None, shape: Shape) -> Any:
    """Remove what the applier applied last time and not this time, unless someone owns it."""
    if last is None or last.fields.empty():
        return merged
    pruned = remove_items(merged, ensure_named(last.fields, shape), shape)
    owned = FieldSet()
    for entry in managers.values():
        owned = owned.union(entry.fields)
    merged_set = ensure_named(to_set(merged, shape), shape)
    pruned_set = ensure_named(to_set(pruned, shape), shape)
    pruned = remove_items(merged, merged_set.difference(
        pruned_set.union(ensure_named(owned, shape))), shape)
    pruned_set = ensure_named(to_set(pruned, shape), shape)
    return remove_items(merged, merged_set.difference(pruned_set).intersection(
        ensure_named(last.fields, shape)), shape)


def _apply(live: Any, config: dict, shape: Shape, managers: Managed, who: Manager, version: str,
           subresource: str, force: bool) -> tuple[Any, Managed]:
    """Updater.Apply: (the merged object, or None when it equals live; the new managers)."""
    merged = merge(live, config, shape)
    managers = dict(managers)
    last = managers.get(who)
    fields = _filter(to_set(config, shape), subresource).difference(_STRIPPED)
    managers[who] = Entry(fields, version, True, last.time if last else None)
    merged = _prune(merged, managers, last, shape)
    cmp = compare(live, merged, shape)
    managers = _take(managers, _filter(cmp.changed(), subresource),
                     _filter(cmp.removed, subresource), who, force)
    return (None if json_equal(live, merged) else merged), managers


# -- the entry points ------------------------------------------------------------------------------

def update(live: dict | None, new: dict, shape: Shape, group_version: str, manager: str,
           now: Callable[[], str], subresource: str = "") -> dict:
    """`new` (to be stored in place of `live`, None on create) with its managedFields."""
    if subresource:  # a subresource write cannot set managedFields
        managed = _decode_or_empty(_entries(live))
    else:
        sent = _entries(new)
        if isinstance(sent, list) and (not sent or sent == [{}]):
            managed = {}  # the client resets them
        else:
            managed = _decode_or_empty(sent) or _decode_or_empty(_entries(live))
    if not managed and live is not None:
        return _with_managed(new, None)  # upstream tracks objects from their creation only
    who = Manager(manager or "unknown", UPDATE, group_version, subresource)
    try:
        managers = _update(_without_managed(live), _without_managed(new), shape, managed, who,
                           group_version, subresource, now())
    except TypedError:
        return _with_managed(new, _entries(live))
    return _with_managed(new, managers)


def apply(live: dict | None, config: dict, shape: Shape, group_version: str, kind: str,
          manager: str, force: bool, now: Callable[[], str], subresource: str = "") -> dict:
    """The live object (None: create) with the applied configuration merged in, and its
    managedFields; ApplyConflict (409) or PatchError (400) when the apply is refused."""
    got = (config.get("apiVersion"), config.get("kind"))
    if got != (group_version, kind):
        group, _, version = str(got[0] or "").rpartition("/")
        raise bad_request(f"invalid object type: {group}/{version}, Kind={got[1] or ''}")
    if (config.get("metadata") or {}).get("managedFields") is not None:
        raise bad_request("metadata.managedFields must be nil")
    try:
        managed = decode(_entries(live))
    except ValueError as err:
        raise PatchError(500, "InternalError", f"failed to decode managed fields: {err}") \
            from err
    base = _without_managed(live)
    stamp = now()
    try:
        if not managed and live is not None:  # before the first apply, someone owns it all
            managed = _update({}, base, shape, {}, Manager(
                BEFORE_FIRST_APPLY, UPDATE, group_version, subresource), group_version,
                subresource, stamp)
        who = Manager(manager, APPLY, "", subresource)
        try:
            merged, managers = _apply(base, config, shape, managed, who, group_version,
                                      subresource, force)
        except ApplyConflict as conflict:
            allowed = _allowed_by_last_applied(live, group_version, shape) \
                if manager == KUBECTL else None
            if allowed is None:
                raise
            left = [(w, p) for w, p in conflict.conflicts if not allowed.has(p)]
            if left:
                raise ApplyConflict(left) from None
            merged, managers = _apply(base, config, shape, managed, who, group_version,
                                      subresource, True)
    except TypedError as err:
        raise PatchError(500, "InternalError",
                         f"failed to create typed patch object: {err}") from err
    if merged is None:
        out = copy.deepcopy(base)
    else:
        if who in managers:  # an applier that owns nothing has no entry
            managers[who] = replace(managers[who], time=stamp)
        out = prune_nulls(merged)
    if manager == KUBECTL and ((out.get("metadata") or {}).get("annotations") or {}).get(
            LAST_APPLIED):
        out["metadata"]["annotations"][LAST_APPLIED] = last_applied(config)
    return _with_managed(out, managers)


def last_applied(config: dict) -> str:
    """The configuration as kubectl's last-applied-configuration annotation holds it."""
    obj = copy.deepcopy(config)
    annotations = (obj.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
    return fp.canonical(obj) + "\n"


def _allowed_by_last_applied(live: dict | None, group_version: str,
                             shape: Shape) -> FieldSet | None:
    """Fields the last-applied annotation sets to their live values: kubectl's client-side
    apply owned them, so kubectl's server-side apply may take them without a conflict."""
    text = (((live or {}).get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return None
    try:
        last = json.loads(text)
    except ValueError:
        return None
    if not isinstance(last, dict) or last.get("apiVersion") != group_version:
        return None
    try:
        fields = to_set(last, shape)
        cmp = compare(last, _without_managed(live), shape)
    except TypedError:
        return None
    return fields.difference(cmp.modified).difference(cmp.added).difference(cmp.removed)


def owns_replicas(entry: Any) -> bool:
    """Whether a managedFields entry owns spec.replicas (the scale subresource's one field)."""
    try:
        return FieldSet.from_fields((entry or {}).get("fieldsV1") or {}).has(_REPLICAS)
    except (ValueError, AttributeError):
        return False


__all__ = ["APPLY", "UPDATE", "ApplyConflict", "Entry", "Manager", "MISSING", "apply", "decode",
           "encode", "last_applied", "manager_for", "owns_replicas", "update"]
