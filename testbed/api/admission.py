"""Pure: the API's verbs over the object store, as the API server answers them.

`Api` gets, lists, creates, replaces, deletes and scales objects, and applies batches all or
nothing. Every write passes admission first (`Api._admit`): check_object (validation and
defaults, 422 with field paths worded as Kubernetes words them), the namespace must exist,
Services get their ClusterIP and NodePorts from ServiceAllocator. Refusals are ApiFailure,
which the HTTP layer (testbed/agents/apiserver.py) sends as Kubernetes Status objects.
No I/O here: the store is handed in.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import logging
from collections.abc import Iterator
from typing import Any

from testbed.api.allocators import AllocationError, ServiceAllocator
from testbed.api.failures import ApiFailure
from testbed.api.fieldvalidation import FieldValidation
from testbed.api.manifests import TOP_FIELDS, check_object
from testbed.api.meta import check_metadata
from testbed.api.options import DeleteOptions
from testbed.api.patchverbs import PatchVerbs
from testbed.api.query import ListOptions, list_options
from testbed.api.reads import get_object, list_objects
from testbed.api.resources import Resource, UnknownResource, resource_for
from testbed.api.schema import field_names
from testbed.api.sharing import Lock, Unshared
from testbed.api.store import Key, Store, StoreError, key_of
from testbed.api.strategy import (
    drop_type_dependent_fields,
    prepare_for_create,
    prepare_for_update,
    prepare_status_update,
)
from testbed.spec.source import Problem
from testbed.spec.validation import Checker, is_cidr

log = logging.getLogger("testbed.apiserver")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# What deleting a Namespace deletes with it (dependents first is not needed: no finalizers).
NAMESPACED_CONTENT = ("Deployment", "Service", "Endpoints", "EndpointSlice", "Ingress",
                      "NetworkPolicy", "Pod", "Event", "Lease")
UNDELETABLE_NAMESPACES = ("default", "kube-system", "kube-public")
BATCH_MANAGER = "testbed"   # the field manager of the testbed's own batch apply


# -- admission -----------------------------------------------------------------------------------

def from_store(err: StoreError) -> ApiFailure:
    return ApiFailure(err.code, err.reason, str(err))


def invalid(kind: str, name: str, problems: list[tuple[str, str]]) -> ApiFailure:
    """422 worded as the API server words it: Kind "name" is invalid: field: reason."""
    texts = [f"{f}: {m}" if f else m for f, m in problems]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return ApiFailure(422, "Invalid", f'{kind} "{name}" is invalid: {joined}',
                      [{"reason": "FieldValueInvalid", "message": m, "field": f}
                       for f, m in problems])


def allocation_failure(name: str, err: AllocationError) -> ApiFailure:
    """What the API server answers when its allocators refuse a Service: 422 naming the
    fields, or, when a range is full (no field is wrong), 500 as upstream's NewInternalError
    words it: "Internal error occurred: failed to allocate a serviceIP: range is full"."""
    if err.internal:
        return ApiFailure(500, "InternalError", f"Internal error occurred: {err.internal}",
                          [{"message": err.internal}])
    return invalid("Service", name, [(e.field, e.message) for e in err.errors])


def check_node(obj: dict) -> tuple[dict | None, list[Problem]]:
    """Nodes are registered by kubelets: metadata, spec.podCIDR(s), unschedulable; status free."""
    ck = Checker(None)
    out = copy.deepcopy(obj)
    ck.fields((), out, TOP_FIELDS)
    if out.get("apiVersion") != "v1":
        ck.add(("apiVersion",), f'no matches for kind "Node" in version "{out.get("apiVersion")}"')
    check_metadata(ck, (), out, namespaced=False)
    spec = ck.obj(out, "spec", (), field_names("io.k8s.api.core.v1.NodeSpec"))
    if spec is not None:
        cidr = ck.get(spec, "podCIDR", ("spec",), "string")
        if cidr:
            ck.names(("spec", "podCIDR"), cidr, is_cidr(cidr))
        ck.get(spec, "unschedulable", ("spec",), "boolean")
    ck.get(out, "status", (), "object")
    return (None if ck.problems else out), ck.problems


def validate(obj: dict) -> dict:
    """The checked, defaulted object, or ApiFailure 422 naming every problem."""
    checked, problems = (check_node(obj) if obj.get("kind") == "Node" else check_object(obj))
    if problems or checked is None:
        name = (obj.get("metadata") or {}).get("name", "") if isinstance(obj, dict) else ""
        raise invalid(str(obj.get("kind", "")), str(name),
                      [(p.field, p.message) for p in problems] or [("", "invalid object")])
    return checked


class Api(PatchVerbs):
    """The API's semantics without HTTP: admission, then the store. Writes are serialized.
    PATCH, the scale subresource and managedFields are PatchVerbs' (patchverbs.py)."""

    def __init__(self, store: Store, allocator: ServiceAllocator, lock: Lock | None = None):
        """`lock`: threading.RLock() when threads share the API (the API server's); it must be
        re-entrant. Left out, the API is one thread's (testbed.api.sharing)."""
        self.store = store
        self.allocator = allocator
        self._lock: Lock = lock if lock is not None else Unshared()
        allocator.rebuild(store.list("Service")[0])

    # -- reads

    def get(self, r: Resource, namespace: str | None, name: str,
            resource_version: str = "") -> dict:
        """One object, at least as fresh as `resource_version` (GetOptions; see reads.py)."""
        try:
            return get_object(self.store, r, namespace, name, resource_version)
        except StoreError as err:
            raise ApiFailure(404, "NotFound", f'{r.qualified} "{name}" not found') from err

    def list(self, r: Resource, namespace: str | None, selector: str | None = None,
             options: ListOptions | None = None) -> dict:
        """The <Kind>List, honouring every list option (`options`, from query.list_options:
        selectors, resourceVersion and its match, limit and continue); `selector` alone is a
        label selector, for callers that have nothing else."""
        if options is None:
            options = list_options({"labelSelector": [selector]} if selector else {}, r.kind)
        return list_objects(self.store, r, namespace, options)

    # -- admission

    def _prepare(self, r: Resource, namespace: str | None, body: Any,
                 name: str | None = None, new_namespaces: set[str] = frozenset(),  # type: ignore[assignment]
                 fields: FieldValidation | None = None) -> dict:
        if not isinstance(body, dict):
            raise ApiFailure(400, "BadRequest", "the request body must be a JSON object")
        obj = copy.deepcopy(body)
        obj.setdefault("kind", r.kind)
        obj.setdefault("apiVersion", r.group_version)
        if obj["kind"] != r.kind:
            raise ApiFailure(400, "BadRequest", f"the kind in the data ({obj['kind']}) does not "
                             f"match the kind of the request path ({r.kind})")
        if fields is not None:  # fieldValidation: drop or refuse unknown/duplicate fields
            fields.screen(obj, "create" if name is None else "update")
        meta = obj.setdefault("metadata", {}) if isinstance(obj.get("metadata", {}), dict) else {}
        if r.namespaced and namespace is not None:
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiFailure(400, "BadRequest", "the namespace of the provided object does "
                                 "not match the namespace sent on the request")
            meta["namespace"] = namespace
        if name is not None and meta.get("name") not in (None, name):
            raise ApiFailure(400, "BadRequest", f"the name of the object ({meta.get('name')}) "
                             f"does not match the name on the URL ({name})")
        if name is not None:
            meta["name"] = name
        if r.kind == "Service" and isinstance(meta.get("name"), str):
            # the strategy's PrepareForUpdate runs before validation, as upstream's does
            old = self._current(obj)
            if old is not None:
                drop_type_dependent_fields(obj, old)
        obj = validate(obj)
        ns = obj["metadata"].get("namespace", "")
        if r.namespaced and ns not in new_namespaces and self._missing("Namespace", "", ns):
            raise ApiFailure(404, "NotFound", f'namespaces "{ns}" not found')
        return obj

    def _missing(self, kind: str, namespace: str, name: str) -> bool:
        try:
            self.store.get(kind, namespace, name)
            return False
        except StoreError:
            return True

    def _current(self, obj: dict) -> dict | None:
        kind, ns, name = key_of(obj)
        try:
            return self.store.get(kind, ns, name)
        except StoreError:
            return None

    def _admit(self, obj: dict, old: dict | None) -> dict:
        """Kind-specific admission after validation: the registry strategy (status reset on
        create), allocation, immutable fields."""
        if old is None:
            prepare_for_create(obj)
        else:
            prepare_for_update(obj, old)
        if obj["kind"] == "Service":
            try:
                return self.allocator.admit(obj, old)
            except AllocationError as err:
                raise allocation_failure(obj["metadata"]["name"], err) from err
        if obj["kind"] == "Pod" and old is not None:
            spec, old_spec = obj["spec"], old["spec"]
            if old_spec.get("nodeName") and not spec.get("nodeName"):
                spec["nodeName"] = old_spec["nodeName"]  # re-applying a manifest keeps binding

            old_tolerations = old_spec.get("tolerations") or []
            only_added = all(t in (spec.get("tolerations") or []) for t in old_tolerations)

            def unbound(s: dict) -> dict:
                """The spec without what an update may change (ValidatePodUpdate): the
                binding, the containers' images, activeDeadlineSeconds, and tolerations
                when the update only adds to them."""
                skip = ("nodeName", "activeDeadlineSeconds") + (("tolerations",) if only_added
                                                                 else ())
                out = {k: v for k, v in s.items() if k not in skip}
                for key in ("containers", "initContainers"):
                    if isinstance(s.get(key), list):
                        out[key] = [{k: v for k, v in c.items() if k != "image"}
                                    if isinstance(c, dict) else c for c in s[key]]
                return out

            moved = old_spec.get("nodeName") not in (None, spec.get("nodeName"))
            if moved or unbound(spec) != unbound(old_spec):
                raise invalid("Pod", obj["metadata"]["name"], [(
                    "spec", "Forbidden: pod updates may not change fields other than "
                    "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
                    "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
                    "set to 1 if it was previously negative)")])
        return obj

    # -- writes

    def create(self, r: Resource, namespace: str | None, body: Any,
               dry_run: bool = False, manager: str | None = None,
               fields: FieldValidation | None = None) -> dict:
        """`manager`: the field manager whose Update entry records the write (None: none).
        `fields`: the request's fieldValidation (None: unknown fields are the validators' 422,
        as for the testbed's own batch apply); Warn's warnings are added to it."""
        with self._lock, self._dry(dry_run):
            obj = self._prepare(r, namespace, body, fields=fields)
            if self._current(obj) is not None:
                raise ApiFailure(409, "AlreadyExists",
                                 f'{r.qualified} "{obj["metadata"]["name"]}" already exists')
            obj = self._admitted(r, None, obj, manager)
            try:
                return self.store.create(obj, dry_run=dry_run)
            except StoreError as err:
                self._release(obj)
                raise from_store(err) from err

    @contextlib.contextmanager
    def _dry(self, dry_run: bool) -> Iterator[None]:
        """With `dry_run`, whatever admission allocates (ClusterIPs, node ports) is given back
        afterwards: a dry run admits, defaults and validates, but stores and keeps nothing."""
        saved = copy.deepcopy(self.allocator) if dry_run else None
        try:
            yield
        finally:
            if saved is not None:
                self.allocator = saved

    def replace(self, r: Resource, namespace: str | None, name: str, body: Any,
                dry_run: bool = False, manager: str | None = None,
                fields: FieldValidation | None = None) -> dict:
        with self._lock, self._dry(dry_run):
            obj = self._prepare(r, namespace, body, name, fields=fields)
            old = self._current(obj)
            if old is None:
                raise ApiFailure(404, "NotFound", f'{r.qualified} "{name}" not found')
            given = obj["metadata"].get("resourceVersion")
            if given and given != old["metadata"]["resourceVersion"]:
                raise ApiFailure(409, "Conflict", f'Operation cannot be fulfilled on '
                                 f'{r.qualified} "{name}": the object has been modified; please '
                                 "apply your changes to the latest version and try again")
            obj = self._admitted(r, old, obj, manager)
            try:
                return self.store.update(obj, dry_run=dry_run)
            except StoreError as err:
                raise from_store(err) from err

    def replace_status(self, r: Resource, namespace: str | None, name: str, body: Any,
                       dry_run: bool = False, manager: str | None = None) -> dict:
        """`manager`: the field manager whose entry records the write (None: none)."""
        if not isinstance(body, dict) or not isinstance(body.get("status", {}), dict):
            raise ApiFailure(400, "BadRequest", "status must be an object")
        obj = dict(body, kind=r.kind, metadata=dict(body.get("metadata") or {}, name=name))
        if r.namespaced:
            obj["metadata"]["namespace"] = namespace
        try:
            with self._lock:
                old = self.store.get(r.kind, namespace or "", name)
                obj = prepare_status_update(copy.deepcopy(obj), old)
                return self.store.update_status(obj, dry_run=dry_run, managed_fields=(
                    self._status_entries(r, old, obj, manager)))   # KEEP without a manager
        except StoreError as err:
            raise from_store(err) from err

    def delete(self, r: Resource, namespace: str | None, name: str,
               grace: int | None = None, dry_run: bool = False,
               options: DeleteOptions | None = None) -> dict:
        """Delete an object: Pods gracefully, a Namespace with its content. `options` carries
        preconditions and the propagation policy (Orphan strips the object's dependents of
        their owner reference; Background leaves them to the garbage-collecting controllers)."""
        if options is not None:
            grace, dry_run = options.grace, options.dry_run
        with self._lock:
            old = self.get(r, namespace, name)
            if options is not None:
                self._check_preconditions(r, old, options)
                if options.propagation == "Orphan" and not dry_run:
                    self._orphan_dependents(old)
            if r.kind == "Namespace":
                if name in UNDELETABLE_NAMESPACES:
                    raise ApiFailure(403, "Forbidden", f'namespaces "{name}" is forbidden: this '
                                     "namespace may not be deleted")
                if not dry_run:
                    for res in (resource_for(k) for k in NAMESPACED_CONTENT):
                        for item in self.store.list(res.kind, name)[0]:
                            self.delete(res, name, item["metadata"]["name"])
            if r.kind == "Pod":
                grace = self._pod_grace(old, grace)
            try:
                gone = self.store.delete(r.kind, namespace or "", name,
                                         grace_seconds=grace if r.kind == "Pod" else None,
                                         dry_run=dry_run)
            except StoreError as err:
                raise from_store(err) from err
            if r.kind == "Service" and not dry_run:
                self.allocator.release(old)
            return gone

    def delete_collection(self, r: Resource, namespace: str | None, listing: ListOptions,
                          options: DeleteOptions) -> dict:
        """DELETE on a collection: every object the list options select, deleted as one
        DELETE each would; the answer lists what was deleted (or marked terminating)."""
        found = self.list(r, namespace if r.namespaced else None, options=listing)
        gone = [self.delete(r, item["metadata"].get("namespace"), item["metadata"]["name"],
                            options=options) for item in found["items"]]
        return {"apiVersion": r.group_version, "kind": f"{r.kind}List",
                "metadata": {"resourceVersion": self.store.resource_version}, "items": gone}

    @staticmethod
    def _check_preconditions(r: Resource, obj: dict, options: DeleteOptions) -> None:
        meta = obj["metadata"]
        for given, have, what, where in (
                (options.uid, meta.get("uid"), "UID", "UID in object meta"),
                (options.resource_version, meta.get("resourceVersion"), "ResourceVersion",
                 "ResourceVersion in meta")):
            if given and given != have:
                raise ApiFailure(409, "Conflict", f'Operation cannot be fulfilled on '
                                 f'{r.qualified} "{meta["name"]}": Precondition failed: {what} '
                                 f"in precondition: {given}, {where}: {have}")

    def _orphan_dependents(self, owner: dict) -> None:
        """Remove the owner reference to `owner` from every object that has one."""
        uid = owner["metadata"].get("uid")
        namespace = owner["metadata"].get("namespace")
        if not uid or not namespace:
            return
        for kind in NAMESPACED_CONTENT:
            for item in self.store.list(kind, namespace)[0]:
                refs = item["metadata"].get("ownerReferences") or []
                kept = [ref for ref in refs if ref.get("uid") != uid]
                if len(kept) != len(refs):
                    item["metadata"]["ownerReferences"] = kept
                    item["metadata"].pop("resourceVersion", None)
                    self.store.update(item)

    @staticmethod
    def _pod_grace(pod: dict, grace: int | None) -> int | None:
        """As the pod strategy decides: unscheduled or finished Pods go at once."""
        if not pod["spec"].get("nodeName"):
            return None
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return None
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        return grace or None

    def _release(self, obj: dict) -> None:
        if obj.get("kind") == "Service":
            self.allocator.release(obj)

    def apply_batch(self, items: Any) -> list[dict]:
        """Validate and admit every item, then write them all; or write nothing (422)."""
        if not isinstance(items, list):
            raise ApiFailure(400, "BadRequest", "items must be a list")
        with self._lock:
            saved = copy.deepcopy(self.allocator)
            problems: list[tuple[str, str]] = []
            prepared: list[tuple[dict, dict | None]] = []
            namespaces: set[str] = set()
            seen: set[Key] = set()
            for i, item in enumerate(items):
                try:
                    kind = item.get("kind", "") if isinstance(item, dict) else ""
                    r = resource_for(kind)
                    obj = self._prepare(r, None, item, new_namespaces=namespaces)
                    if key_of(obj) in seen:
                        raise ApiFailure(422, "Invalid", f"{kind} {obj['metadata']['name']!r} "
                                         "is in the batch twice")
                    seen.add(key_of(obj))
                    old = self._current(obj)
                    prepared.append((self._admitted(r, old, obj, BATCH_MANAGER), old))
                    if kind == "Namespace":
                        namespaces.add(obj["metadata"]["name"])
                except (ApiFailure, UnknownResource) as err:
                    causes = getattr(err, "causes", None) or [{"field": "", "message": str(err)}]
                    problems += [(f"items[{i}]" + (f".{c['field']}" if c.get("field") else ""),
                                  c["message"]) for c in causes]
            if problems:
                self.allocator = saved
                texts = "; ".join(f"{f}: {m}" for f, m in problems)
                raise ApiFailure(422, "Invalid", f"nothing applied: {texts}",
                                 [{"reason": "FieldValueInvalid", "field": f, "message": m}
                                  for f, m in problems])
            results = []
            for obj, _ in prepared:
                # What the write did, decided by the store under its lock: a controller may
                # have written the object (its status) since it was read for admission.
                stored, action = self.store.apply_reporting(obj)
                results.append({"action": action, "object": stored})
            return results

    def ensure_defaults(self, api_ip: str, api_port: int) -> None:
        """System namespaces, and the `kubernetes` Service with its EndpointSlice."""
        for ns in SYSTEM_NAMESPACES:
            if self._missing("Namespace", "", ns):
                # labelled and Active by the strategy, as every other Namespace
                self.store.create(prepare_for_create({
                    "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                    "spec": {"finalizers": ["kubernetes"]}}))
        first_ip = str(self.allocator.ips.network.network_address + 1)
        service = {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "kubernetes", "namespace": "default",
                                "labels": {"component": "apiserver",
                                           "provider": "kubernetes"}},
                   "spec": {"type": "ClusterIP", "clusterIP": first_ip,
                            "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                       "targetPort": api_port}]}}
        eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "kubernetes", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "kubernetes"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": [api_ip], "conditions": {"ready": True}}],
               "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}]}
        endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                     "metadata": {"name": "kubernetes", "namespace": "default",
                                  "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                     "subsets": [{"addresses": [{"ip": api_ip}],
                                  "ports": [{"name": "https", "port": api_port,
                                             "protocol": "TCP"}]}]}
        # Endpoints may not name a loopback address (upstream validation); only an API server
        # listening on loopback (the in-process one of the unit tests) goes without them.
        loopback = ipaddress.ip_address(api_ip).is_loopback
        self.apply_batch([service, eps] + ([] if loopback else [endpoints]))
