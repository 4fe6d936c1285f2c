"""Pure: the PATCH verb, the scale subresource, and managedFields on every write: the part of
the API's verbs (`Api`, testbed/api/admission.py, mixes this class in) that patches and
server-side apply need.

`patch` reads the request's patch type (415 for others), checks its PatchOptions (422) and
decodes the body (400), then, under the API's write lock:

* JSON, merge and strategic merge patches apply to the stored object (404 when there is none)
  as upstream's patch handler applies them (testbed/api/patch.py), then pass admission like a
  PUT (`_prepare`: validation and defaults; `_admit`); managedFields get the writer's Update
  entry (testbed/api/managedfields.py);
* an apply patch merges into the stored object, or creates it (201) when there is none;
* on the status subresource only status is written; on deployments/NAME/scale the patch
  applies to the Scale object and its spec.replicas is written (kubectl 1.37 scales by merge
  patch, kubectl 1.20 by GET and PUT of the Scale: `scale`).

A resourceVersion in the patched object must match the stored one (409); when another writer
changed the object between the read and the write (the in-process controllers do not take the
API's lock), the patch is applied again to the new state, as upstream's GuaranteedUpdate
retries. `dry_run` admits, defaults and validates but stores and allocates nothing. No I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from testbed.api import managedfields, schema, shapes
from testbed.api.failures import ApiFailure
from testbed.api.fieldvalidation import FieldValidation
from testbed.api.patch import (
    APPLY_PATCH,
    MERGE_PATCH,
    PatchError,
    apply_patch,
    check_options,
    decode,
    patch_type,
)
from testbed.api.resources import Resource, resource_for
from testbed.api.sharing import Lock
from testbed.api.store import KEEP, Conflict, Store, StoreError, utc_now
from testbed.api.strategy import prepare_status_update

PATCH_RETRIES = 5
SCALE_VERSION = "autoscaling/v1"


def _failure(err: PatchError) -> ApiFailure:
    return ApiFailure(err.code, err.reason, err.message, err.causes)


def _conflict(r: Resource, name: str) -> ApiFailure:
    return ApiFailure(409, "Conflict", f'Operation cannot be fulfilled on {r.qualified} "{name}": '
                      "the object has been modified; please apply your changes to the latest "
                      "version and try again")


def _entries(obj: dict) -> list | None:
    return (obj.get("metadata") or {}).get("managedFields")


class _Retry(Exception):
    """The stored object changed under a patch that did not ask for a resourceVersion."""


class PatchVerbs:
    """PATCH and scale for Api; uses its store, _lock, _dry, _prepare, _admit and get."""

    now: Callable[[], str] = staticmethod(utc_now)

    if TYPE_CHECKING:  # what Api (admission.py) provides
        store: Store
        _lock: Lock

        def _dry(self, dry_run: bool) -> AbstractContextManager[None]: ...

        def _prepare(self, r: Resource, namespace: str | None, body: Any,
                     name: str | None = None, *, fields: FieldValidation | None = None
                     ) -> dict: ...

        def _admit(self, obj: dict, old: dict | None) -> dict: ...

        def get(self, r: Resource, namespace: str | None, name: str) -> dict: ...

    # -- managedFields

    @staticmethod
    def shape(r: Resource) -> shapes.Shape:
        return shapes.for_kind(schema, r.group_version, r.kind)

    def _track(self, r: Resource, old: dict | None, obj: dict, manager: str | None,
               subresource: str = "") -> dict:
        """`obj` with managedFields updated for a write by `manager` (None: not tracked)."""
        if manager is None:
            return obj
        return managedfields.update(old, obj, self.shape(r), r.group_version, manager,
                                    self.now, subresource)

    def _admitted(self, r: Resource, old: dict | None, obj: dict,
                  manager: str | None) -> dict:
        """Admission (`_admit`) and managedFields, in the order that credits the writer with
        what it wrote: a new object's fields before the server allocates anything (ClusterIPs
        are nobody's), an update's after admission put back what the server keeps (a Pod's
        node), so that those are not taken from their owners."""
        if old is None:
            return self._admit(self._track(r, None, obj, manager), None)
        return self._track(r, old, self._admit(obj, old), manager)

    # -- PATCH

    def patch(self, r: Resource, namespace: str | None, name: str, body: bytes,
              content_type: str, *, subresource: str | None = None, field_manager: str = "",
              user_agent: str = "", force: bool | None = None, dry_run: bool = False,
              fields: FieldValidation | None = None) -> tuple[dict, bool]:
        """The patched (or, by apply, created) object, and whether it was created. `fields`:
        the request's fieldValidation, applied to the patched object as to a PUT's body."""
        try:
            ptype = patch_type(content_type)
            check_options(ptype, field_manager, force)
            doc = decode(body, ptype)
        except PatchError as err:
            raise _failure(err) from err
        if fields is not None and ptype != MERGE_PATCH:
            # only a merge patch's keys are the object's own (duplicates in it count); JSON
            # patches are operations, strategic ones carry $directives, apply is YAML
            fields.raw = None
        manager = field_manager if ptype == APPLY_PATCH else \
            managedfields.manager_for(field_manager, user_agent)
        if subresource == "scale":
            return self._retrying(r, name, dry_run, lambda: (self._patch_scale(
                namespace or "", name, ptype, doc, manager, bool(force), dry_run), False))
        return self._retrying(r, name, dry_run, lambda: self._patch_once(
            r, namespace, name, ptype, doc, manager, bool(force), subresource or "", dry_run,
            fields))

    def _retrying(self, r: Resource, name: str, dry_run: bool, attempt: Callable[[], Any]) -> Any:
        """`attempt()` under the write lock, again while the object changes under it."""
        for _ in range(PATCH_RETRIES):
            with self._lock, self._dry(dry_run):
                try:
                    return attempt()
                except _Retry:
                    continue
                except PatchError as err:
                    raise _failure(err) from err
        raise _conflict(r, name)

    def _stored(self, r: Resource, namespace: str | None, name: str) -> dict | None:
        try:
            return self.store.get(r.kind, namespace or "", name)
        except StoreError:
            return None

    def _patch_once(self, r: Resource, namespace: str | None, name: str, ptype: str, doc: Any,
                    manager: str, force: bool, subresource: str, dry_run: bool,
                    fields: FieldValidation | None) -> tuple[dict, bool]:
        old = self._stored(r, namespace, name)
        if old is None and (ptype != APPLY_PATCH or subresource):
            raise ApiFailure(404, "NotFound", f'{r.qualified} "{name}" not found')
        shape = self.shape(r)
        if ptype == APPLY_PATCH:
            merged = managedfields.apply(old, doc, shape, r.group_version, r.kind, manager,
                                         force, self.now, subresource)
            if subresource == "status":
                return self._write_status(r, namespace, name, old, merged, dry_run,
                                          entries=_entries(merged)), False
            obj = self._prepare(r, namespace, merged, name,
                                fields=fields)
        else:
            patched = apply_patch(old, doc, ptype, shape)  # type: ignore[arg-type]
            if subresource == "status":
                return self._write_status(r, namespace, name, old, patched, dry_run,
                                          manager), False
            obj = self._prepare(r, namespace, patched, name,
                                fields=fields)
        if old is None:  # created by apply, managedFields and all
            obj = self._admit(obj, None)
            return self.store.create(obj, dry_run=dry_run), True
        self._check_version(r, name, old, obj)
        obj = self._admit(obj, old) if ptype == APPLY_PATCH else \
            self._admitted(r, old, obj, manager)
        try:
            return self.store.update(obj, dry_run=dry_run), False
        except Conflict as err:
            raise _Retry() from err

    @staticmethod
    def _check_version(r: Resource, name: str, old: dict, obj: dict) -> None:
        given = (obj.get("metadata") or {}).get("resourceVersion")
        if given and given != old["metadata"]["resourceVersion"]:
            raise _conflict(r, name)

    def _write_status(self, r: Resource, namespace: str | None, name: str, old: dict,
                      patched: dict, dry_run: bool, manager: str | None = None,
                      entries: Any = KEEP) -> dict:
        """Only the status of the patched object is written (the status subresource), with
        the writer's managedFields entry (`entries`: an apply's, already made)."""
        self._check_version(r, name, old, patched)
        obj = dict(patched, kind=r.kind, metadata=dict(patched.get("metadata") or {}, name=name))
        if r.namespaced:
            obj["metadata"]["namespace"] = namespace
        obj = prepare_status_update(obj, old)   # the kind's status strategy
        if entries is KEEP:
            entries = self._status_entries(r, old, obj, manager)
        try:
            return self.store.update_status(obj, dry_run=dry_run, managed_fields=entries)
        except Conflict as err:
            raise _Retry() from err

    def _status_entries(self, r: Resource, old: dict, obj: dict, manager: str | None) -> Any:
        """The managedFields after a status write by `manager` (KEEP: not tracked)."""
        if manager is None:
            return KEEP
        new = copy.deepcopy(old)
        if "status" in obj:
            new["status"] = obj["status"]
        return _entries(self._track(r, old, new, manager, "status"))

    # -- scale

    def _scale_view(self, deployment: dict) -> dict:
        """The autoscaling/v1 Scale of a Deployment, its managedFields those owning replicas."""
        meta = deployment["metadata"]
        labels = deployment["spec"]["selector"].get("matchLabels") or {}
        view_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                           "creationTimestamp") if k in meta}
        entries = [dict(e, apiVersion=SCALE_VERSION, fieldsV1={"f:spec": {"f:replicas": {}}})
                   for e in meta.get("managedFields") or []
                   if managedfields.owns_replicas(e)]
        if entries:
            view_meta["managedFields"] = entries
        return {"kind": "Scale", "apiVersion": SCALE_VERSION, "metadata": view_meta,
                "spec": {"replicas": deployment["spec"].get("replicas", 1)},
                "status": {"replicas": (deployment.get("status") or {}).get("replicas", 0),
                           "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))}}

    def scale(self, namespace: str, name: str, body: Any | None = None,
              manager: str | None = None, dry_run: bool = False) -> dict:
        """GET (body None) or PUT of deployments/NAME/scale."""
        r = resource_for("Deployment")
        if body is None:
            return self._scale_view(self.get(r, namespace, name))
        if not isinstance(body, dict):
            raise ApiFailure(400, "BadRequest", "the request body must be a Scale object")

        def attempt() -> dict:
            deployment = self.get(r, namespace, name)
            self._check_version(r, name, deployment, body)
            return self._set_replicas(deployment, (body.get("spec") or {}).get("replicas"),
                                      manager, dry_run)

        return self._retrying(r, name, dry_run, attempt)

    def _set_replicas(self, deployment: dict, replicas: Any, manager: str | None,
                      dry_run: bool, tracked: dict | None = None) -> dict:
        name = deployment["metadata"]["name"]
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiFailure(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: '
                             f"spec.replicas: Invalid value: {replicas!r}: must be greater than "
                             "or equal to 0", [{"reason": "FieldValueInvalid", "field":
                                                "spec.replicas", "message": f"Invalid value: "
                                                f"{replicas!r}: must be greater than or equal "
                                                "to 0"}])
        r = resource_for("Deployment")
        new = tracked if tracked is not None else copy.deepcopy(deployment)
        new["spec"]["replicas"] = replicas
        if tracked is None:
            new = self._track(r, deployment, new, manager, "scale")
        try:
            stored = self.store.update(new, dry_run=dry_run)
        except Conflict as err:
            raise _Retry() from err
        return self._scale_view(stored)

    def _patch_scale(self, namespace: str, name: str, ptype: str, doc: Any, manager: str,
                     force: bool, dry_run: bool) -> dict:
        r = resource_for("Deployment")
        deployment = self.get(r, namespace, name)
        view = self._scale_view(deployment)
        if ptype == APPLY_PATCH:
            if (doc.get("apiVersion"), doc.get("kind")) != (SCALE_VERSION, "Scale"):
                raise PatchError(400, "BadRequest", "invalid object type: "
                                 f"{doc.get('apiVersion', '')}, Kind={doc.get('kind', '')}")
            config = {"apiVersion": r.group_version, "kind": r.kind,
                      "metadata": {"name": name, "namespace": namespace}}
            if "replicas" in (doc.get("spec") or {}):
                config["spec"] = {"replicas": doc["spec"]["replicas"]}
            merged = managedfields.apply(deployment, config, self.shape(r), r.group_version,
                                         r.kind, manager, force, self.now, "scale")
            replicas = (merged.get("spec") or {}).get("replicas", 1)
            return self._set_replicas(deployment, replicas, manager, dry_run, tracked=merged)
        patched = apply_patch(view, doc, ptype, shapes.for_kind(schema, SCALE_VERSION, "Scale"))
        self._check_version(r, name, deployment, patched)
        return self._set_replicas(deployment, (patched.get("spec") or {}).get("replicas"),
                                  manager, dry_run)
