"""Acts: the API server process: Kubernetes REST over HTTP/1.1 + JSON, on TCP and a Unix socket.

    python -m testbed.agents.apiserver --listen 172.16.0.2:6443 --unix RUN/apiserver.sock \\
        --state RUN/apiserver.jsonl --service-cidr 10.96.0.0/12

The cluster starts it inside the master's network namespace: kubelets and kube-proxies reach it
over the emulated node network at --listen, the host (`testbed get ...`) through --unix, so the
emulated network stays sealed. Paths, verbs, watch streams and Status errors follow the real API
(testbed.apiclient.resources has the path table). Every write passes admission first
(`Api._admit`): check_object (validation and defaults, 422 with field paths worded as Kubernetes
words them), the namespace must exist, Services get their ClusterIP and NodePorts from
ServiceAllocator. POST /testbed/v1/apply applies a batch all-or-nothing (`testbed apply -f`).

The store survives a restart: `JournaledStore` appends every write to --state as a JSON line and
reloads (and compacts) it at start; resourceVersions continue from the last one, and a watch from
before the restart gets 410 Expired, so informers relist. The Deployment controller, scheduler
and EndpointSlice controller run in this process as threads (testbed.agents.controllers).
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import json
import logging
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import ThreadingMixIn, UnixStreamServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from testbed.api.manifests import TOP_FIELDS, check_object
from testbed.api.meta import check_metadata
from testbed.api.store import Expired, Key, Store, StoreError, key_of
from testbed.api.validation import Checker, is_cidr
from testbed.apiclient.resources import Resource, Route, UnknownResource, parse_path, resource_for
from testbed.controllers.ipam import AllocationError, ServiceAllocator
from testbed.spec.source import Problem

log = logging.getLogger("testbed.apiserver")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
UNDELETABLE_NAMESPACES = ("default", "kube-system", "kube-public")
WATCH_POLL = 1.0  # seconds between checks for a stopping server while a watch is idle


# -- persistence ---------------------------------------------------------------------------------

def read_journal(path: Path) -> tuple[dict[Key, dict], int]:
    """Objects and the last resourceVersion of a journal; a line cut short by a kill is skipped."""
    objects: dict[Key, dict] = {}
    rv = 0
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return objects, 0
    for line in lines:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        rv = max(rv, int(item.get("rv", 0)))
        if "object" in item:
            objects[key_of(item["object"])] = item["object"]
        elif "deleted" in item:
            objects.pop(tuple(item["deleted"]), None)  # type: ignore[arg-type]
    return objects, rv


def write_journal(path: Path, objects: dict[Key, dict], rv: int) -> None:
    """Replace the journal with one line per object (compaction), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as out:
        for obj in objects.values():
            out.write(json.dumps({"rv": int(obj["metadata"]["resourceVersion"]), "object": obj},
                                 separators=(",", ":")) + "\n")
        out.write(json.dumps({"rv": rv}) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


class JournaledStore(Store):
    """A Store whose every write is appended to a JSON-lines file, reloaded at start.

    Contract with testbed.api.store: restoring sets Store's protected object map, counter and
    history floor (Store has no restore API), and `_write` (called under the store's lock for
    every change, in resourceVersion order) is the hook that journals.
    """

    def __init__(self, path: Path, **kwargs: Any):
        super().__init__(**kwargs)
        objects, rv = read_journal(path)
        self._objects.update(objects)
        self._rv = self._dropped_upto = rv  # older watches get 410 and relist
        path.parent.mkdir(parents=True, exist_ok=True)
        write_journal(path, objects, rv)
        self._journal = open(path, "a")  # noqa: SIM115 - closed by close()

    def _write(self, key: Key, new: dict | None, kind: str, old: dict | None) -> dict:
        shown = super()._write(key, new, kind, old)
        item = {"rv": self._rv, "object": new} if new is not None else \
            {"rv": self._rv, "deleted": list(key)}
        if not self._journal.closed:
            self._journal.write(json.dumps(item, separators=(",", ":")) + "\n")
            self._journal.flush()
        return shown

    def close(self) -> None:
        with self._lock:
            self._journal.close()


# -- admission -----------------------------------------------------------------------------------

class ApiFailure(Exception):
    """A refused request, answered as a Kubernetes Status object."""

    def __init__(self, code: int, reason: str, message: str, causes: list[dict] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.causes = code, reason, message, causes or []

    def status(self) -> dict:
        out: dict = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message, "reason": self.reason, "code": self.code}
        if self.causes:
            out["details"] = {"causes": self.causes}
        return out


def from_store(err: StoreError) -> ApiFailure:
    return ApiFailure(err.code, err.reason, str(err))


def invalid(kind: str, name: str, problems: list[tuple[str, str]]) -> ApiFailure:
    """422 worded as the API server words it: Kind "name" is invalid: field: reason."""
    texts = [f"{f}: {m}" if f else m for f, m in problems]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return ApiFailure(422, "Invalid", f'{kind} "{name}" is invalid: {joined}',
                      [{"reason": "FieldValueInvalid", "message": m, "field": f}
                       for f, m in problems])


def check_node(obj: dict) -> tuple[dict | None, list[Problem]]:
    """Nodes are registered by kubelets: metadata, spec.podCIDR(s), unschedulable; status free."""
    ck = Checker(None)
    out = copy.deepcopy(obj)
    ck.fields((), out, TOP_FIELDS)
    if out.get("apiVersion") != "v1":
        ck.add(("apiVersion",), f'no matches for kind "Node" in version "{out.get("apiVersion")}"')
    check_metadata(ck, (), out, namespaced=False)
    spec = ck.obj(out, "spec", (), {"podCIDR", "podCIDRs", "unschedulable", "taints",
                                     "providerID"})
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


class Api:
    """The API's semantics without HTTP: admission, then the store. Writes are serialized."""

    def __init__(self, store: Store, allocator: ServiceAllocator):
        self.store = store
        self.allocator = allocator
        self._lock = threading.RLock()
        allocator.rebuild(store.list("Service")[0])

    # -- reads

    def get(self, r: Resource, namespace: str | None, name: str) -> dict:
        try:
            return self.store.get(r.kind, namespace or "", name)
        except StoreError as err:
            raise ApiFailure(404, "NotFound", f'{r.qualified} "{name}" not found') from err

    def list(self, r: Resource, namespace: str | None, selector: str | None) -> dict:
        try:
            items, rv = self.store.list(r.kind, namespace if r.namespaced else None,
                                        selector or None)
        except (ValueError, KeyError) as err:
            raise ApiFailure(400, "BadRequest", f"unable to parse requirement: {err}") from err
        return {"apiVersion": r.group_version, "kind": r.kind + "List",
                "metadata": {"resourceVersion": rv}, "items": items}

    # -- admission

    def _prepare(self, r: Resource, namespace: str | None, body: Any,
                 name: str | None = None, new_namespaces: set[str] = frozenset()) -> dict:  # type: ignore[assignment]
        if not isinstance(body, dict):
            raise ApiFailure(400, "BadRequest", "the request body must be a JSON object")
        obj = copy.deepcopy(body)
        obj.setdefault("kind", r.kind)
        obj.setdefault("apiVersion", r.group_version)
        if obj["kind"] != r.kind:
            raise ApiFailure(400, "BadRequest", f"the kind in the data ({obj['kind']}) does not "
                             f"match the kind of the request path ({r.kind})")
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
        """Kind-specific admission after validation: allocation, immutable fields."""
        if obj["kind"] == "Service":
            try:
                return self.allocator.admit(obj, old)
            except AllocationError as err:
                raise invalid("Service", obj["metadata"]["name"],
                              [(e.field, e.message) for e in err.errors]) from err
        if obj["kind"] == "Pod" and old is not None:
            spec, old_spec = obj["spec"], old["spec"]
            if old_spec.get("nodeName") and not spec.get("nodeName"):
                spec["nodeName"] = old_spec["nodeName"]  # re-applying a manifest keeps binding

            def unbound(s: dict) -> dict:
                return {k: v for k, v in s.items() if k != "nodeName"}

            moved = old_spec.get("nodeName") not in (None, spec.get("nodeName"))
            if moved or unbound(spec) != unbound(old_spec):
                raise invalid("Pod", obj["metadata"]["name"], [(
                    "spec", "Forbidden: pod updates may not change fields other than "
                    "`spec.containers[*].image`, `spec.activeDeadlineSeconds`, "
                    "`spec.tolerations` (only additions to existing tolerations) or "
                    "`spec.terminationGracePeriodSeconds`")])
        return obj

    # -- writes

    def create(self, r: Resource, namespace: str | None, body: Any) -> dict:
        with self._lock:
            obj = self._prepare(r, namespace, body)
            if self._current(obj) is not None:
                raise ApiFailure(409, "AlreadyExists",
                                 f'{r.qualified} "{obj["metadata"]["name"]}" already exists')
            obj = self._admit(obj, None)
            try:
                return self.store.create(obj)
            except StoreError as err:
                self._release(obj)
                raise from_store(err) from err

    def replace(self, r: Resource, namespace: str | None, name: str, body: Any) -> dict:
        with self._lock:
            obj = self._prepare(r, namespace, body, name)
            old = self._current(obj)
            if old is None:
                raise ApiFailure(404, "NotFound", f'{r.qualified} "{name}" not found')
            given = obj["metadata"].get("resourceVersion")
            if given and given != old["metadata"]["resourceVersion"]:
                raise ApiFailure(409, "Conflict", f'Operation cannot be fulfilled on '
                                 f'{r.qualified} "{name}": the object has been modified; please '
                                 "apply your changes to the latest version and try again")
            obj = self._admit(obj, old)
            try:
                return self.store.update(obj)
            except StoreError as err:
                raise from_store(err) from err

    def replace_status(self, r: Resource, namespace: str | None, name: str, body: Any) -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("status", {}), dict):
            raise ApiFailure(400, "BadRequest", "status must be an object")
        obj = dict(body, kind=r.kind, metadata=dict(body.get("metadata") or {}, name=name))
        if r.namespaced:
            obj["metadata"]["namespace"] = namespace
        try:
            return self.store.update_status(obj)
        except StoreError as err:
            raise from_store(err) from err

    def scale(self, namespace: str, name: str, body: Any | None = None) -> dict:
        r = resource_for("Deployment")
        with self._lock:
            deployment = self.get(r, namespace, name)
            if body is not None:
                replicas = ((body or {}).get("spec") or {}).get("replicas")
                if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                    raise invalid("Scale", name, [("spec.replicas", f"Invalid value: {replicas!r}"
                                                   ": must be greater than or equal to 0")])
                deployment["spec"]["replicas"] = replicas
                deployment["metadata"].pop("resourceVersion", None)
                deployment = self.store.update(deployment)
        labels = deployment["spec"]["selector"].get("matchLabels") or {}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": name, "namespace": namespace,
                             "resourceVersion": deployment["metadata"]["resourceVersion"]},
                "spec": {"replicas": deployment["spec"]["replicas"]},
                "status": {"replicas": (deployment.get("status") or {}).get("replicas", 0),
                           "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))}}

    def delete(self, r: Resource, namespace: str | None, name: str,
               grace: int | None = None) -> dict:
        with self._lock:
            old = self.get(r, namespace, name)
            if r.kind == "Namespace":
                if name in UNDELETABLE_NAMESPACES:
                    raise ApiFailure(403, "Forbidden", f'namespaces "{name}" is forbidden: this '
                                     "namespace may not be deleted")
                for res in (resource_for(k) for k in ("Deployment", "Service", "EndpointSlice",
                                                      "Ingress", "Pod")):
                    for item in self.store.list(res.kind, name)[0]:
                        self.delete(res, name, item["metadata"]["name"])
            if r.kind == "Pod":
                grace = self._pod_grace(old, grace)
            try:
                gone = self.store.delete(r.kind, namespace or "", name,
                                         grace_seconds=grace if r.kind == "Pod" else None)
            except StoreError as err:
                raise from_store(err) from err
            if r.kind == "Service":
                self.allocator.release(old)
            return gone

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
                    prepared.append((self._admit(obj, old), old))
                    if kind == "Namespace":
                        namespaces.add(obj["metadata"]["name"])
                except (ApiFailure, UnknownResource) as err:
                    causes = getattr(err, "causes", None) or [{"field": "", "message": str(err)}]
                    problems += [(f"items[{i}]" + (f".{c['field']}" if c["field"] else ""),
                                  c["message"]) for c in causes]
            if problems:
                self.allocator = saved
                texts = "; ".join(f"{f}: {m}" for f, m in problems)
                raise ApiFailure(422, "Invalid", f"nothing applied: {texts}",
                                 [{"reason": "FieldValueInvalid", "field": f, "message": m}
                                  for f, m in problems])
            results = []
            for obj, old in prepared:
                stored = self.store.apply(obj)
                action = ("created" if old is None else "unchanged" if stored["metadata"][
                    "resourceVersion"] == old["metadata"]["resourceVersion"] else "configured")
                results.append({"action": action, "object": stored})
            return results

    def ensure_defaults(self, api_ip: str, api_port: int) -> None:
        """System namespaces, and the `kubernetes` Service with its EndpointSlice."""
        for ns in SYSTEM_NAMESPACES:
            if self._missing("Namespace", "", ns):
                self.store.create({"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": ns,
                                                "labels": {"kubernetes.io/metadata.name": ns}},
                                   "spec": {"finalizers": ["kubernetes"]},
                                   "status": {"phase": "Active"}})
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
        self.apply_batch([service, eps])


# -- HTTP ------------------------------------------------------------------------------------------

def _flag(query: dict[str, list[str]], name: str) -> bool:
    return (query.get(name) or ["false"])[-1].lower() in ("1", "true", "yes")


def _int(query: dict[str, list[str]], name: str) -> int | None:
    value = (query.get(name) or [None])[-1]
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiFailure(400, "BadRequest", f"invalid {name}: {value!r}") from None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "testbed-apiserver/1"

    def address_string(self) -> str:
        return str(self.client_address[0]) if isinstance(self.client_address, tuple) else "unix"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as err:
            raise ApiFailure(400, "BadRequest", f"the request body is not JSON: {err}") from err

    def _send(self, code: int, body: dict | str) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str)
                         else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        api: Api = self.server.api  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            body = self._body() if method in ("POST", "PUT", "DELETE", "PATCH") else None
            if url.path in ("/healthz", "/readyz", "/livez"):
                return self._send(200, "ok")
            if url.path == "/version":
                return self._send(200, {"major": "1", "minor": "30",
                                        "gitVersion": "v1.30.0-testbed"})
            if url.path == "/testbed/v1/apply" and method == "POST":
                results = api.apply_batch((body or {}).get("items"))
                return self._send(200, {"apiVersion": "testbed/v1", "kind": "ApplyResult",
                                        "items": results})
            route = parse_path(url.path)
            if route is None:
                raise ApiFailure(404, "NotFound", "the server could not find the requested "
                                 "resource")
            self._route(api, method, route, query, body)
        except ApiFailure as err:
            self._send(err.code, err.status())
        except StoreError as err:
            self._send(err.code, from_store(err).status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, api: Api, method: str, rt: Route, query: dict, body: Any) -> None:
        r, ns, name, sub = rt.resource, rt.namespace, rt.name, rt.subresource
        if r.namespaced and name is not None and ns is None:
            raise ApiFailure(404, "NotFound", "the server could not find the requested resource")
        if method == "GET" and name is None:
            selector = (query.get("labelSelector") or [""])[-1]
            if _flag(query, "watch"):
                return self._watch(api, r, ns, (query.get("resourceVersion") or [None])[-1],
                                   selector, _int(query, "timeoutSeconds"))
            return self._send(200, api.list(r, ns, selector))
        if method == "GET":
            if sub == "scale":
                return self._send(200, api.scale(ns or "", name))  # type: ignore[arg-type]
            return self._send(200, api.get(r, ns, name))  # type: ignore[arg-type]
        if method == "POST" and name is None:
            return self._send(201, api.create(r, ns, body))
        if method == "PUT" and name is not None:
            if sub == "status":
                return self._send(200, api.replace_status(r, ns, name, body))
            if sub == "scale":
                return self._send(200, api.scale(ns or "", name, body))
            return self._send(200, api.replace(r, ns, name, body))
        if method == "DELETE" and name is not None and sub is None:
            grace = _int(query, "gracePeriodSeconds")
            if grace is None and isinstance(body, dict) and body.get("gracePeriodSeconds") \
                    is not None:
                grace = int(body["gracePeriodSeconds"])
            return self._send(200, api.delete(r, ns, name, grace))
        raise ApiFailure(405, "MethodNotAllowed", f"{method} is not supported on {self.path}")

    def _watch(self, api: Api, r: Resource, ns: str | None, since: str | None, selector: str,
               timeout: int | None) -> None:
        """Newline-delimited JSON events, chunked, until timeoutSeconds (or the server stops)."""
        namespace = ns if r.namespaced else None
        first = api.store.watch(r.kind, namespace, since, 0.0, selector or None)  # 410 here
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + (timeout if timeout is not None else 1800)
        batch = first
        stopping: threading.Event = self.server.stopping  # type: ignore[attr-defined]
        try:
            while True:
                lines = "".join(json.dumps({"type": e.type, "object": e.object}) + "\n"
                                for e in batch.events)
                if lines:
                    self._chunk(lines.encode())
                remaining = deadline - time.monotonic()
                if remaining <= 0 or stopping.is_set():
                    break
                try:
                    batch = api.store.watch(r.kind, namespace, batch.resource_version,
                                            min(remaining, WATCH_POLL), selector or None)
                except Expired as err:
                    status = from_store(err).status()
                    self._chunk((json.dumps({"type": "ERROR", "object": status}) + "\n").encode())
                    break
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class _Tracking:
    """Mixin: remembers open connections so stop() can cut them (watches included)."""

    def _track_init(self, api: Api) -> None:
        self.api = api
        self.stopping = threading.Event()
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conns_lock:
            self.conns.add(request)
        super().process_request(request, client_address)  # type: ignore[misc]

    def shutdown_request(self, request: Any) -> None:
        with self.conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)  # type: ignore[misc]

    def cut_connections(self) -> None:
        self.stopping.set()
        with self.conns_lock:
            conns = list(self.conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class TCPServer(_Tracking, ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: Api):
        self._track_init(api)
        super().__init__(address, Handler)


class UnixServer(_Tracking, ThreadingMixIn, UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, api: Api):
        self._track_init(api)
        if os.path.exists(path):
            os.unlink(path)  # a stale socket of a killed predecessor
        super().__init__(path, Handler)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        conn, _ = self.socket.accept()
        return conn, ("unix", 0)  # BaseHTTPRequestHandler wants a (host, port) pair


def split_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class ApiServer:
    """The whole process in one object (tests run it in-process): store, API, servers, threads."""

    def __init__(self, state: Path, service_cidr: str, listen: tuple[str, int] = ("127.0.0.1", 0),
                 unix: Path | None = None, api_address: str | None = None,
                 node_ports: tuple[int, int] = (30000, 32767), controllers: bool = True,
                 resync: float = 5.0, history: int = 1000):
        self.store = JournaledStore(Path(state), history=history)
        self.api = Api(self.store, ServiceAllocator(service_cidr, node_ports))
        self.tcp = TCPServer(listen, self.api)
        self.port = self.tcp.server_address[1]
        self.unix = UnixServer(str(unix), self.api) if unix else None
        ip, port = split_hostport(api_address) if api_address else (listen[0], self.port)
        self.api.ensure_defaults(ip, port)
        self.controllers = None
        if controllers:
            from testbed.agents.controllers import ControllerManager
            self.controllers = ControllerManager(self.store, resync=resync)
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host = self.tcp.server_address[0]
        return f"http://{host}:{self.port}"

    def start(self) -> ApiServer:
        for server in (self.tcp, self.unix):
            if server is not None:
                thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True,
                                          name=f"serve-{type(server).__name__}")
                thread.start()
                self._threads.append(thread)
        if self.controllers is not None:
            self.controllers.start()
        return self

    def stop(self) -> None:
        if self.controllers is not None:
            self.controllers.stop()
        for server in (self.tcp, self.unix):
            if server is not None:
                server.shutdown()
                server.cut_connections()
                server.server_close()
        if self.unix is not None:
            try:
                os.unlink(self.unix.server_address)  # type: ignore[arg-type]
            except OSError:
                pass
        self.store.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m testbed.agents.apiserver",
                                description="The emulated cluster's API server.")
    p.add_argument("--listen", required=True, metavar="HOST:PORT")
    p.add_argument("--unix", metavar="PATH", help="also serve on this Unix socket")
    p.add_argument("--state", required=True, metavar="FILE", help="journal of every object")
    p.add_argument("--service-cidr", required=True, metavar="CIDR")
    p.add_argument("--node-port-range", default="30000-32767", metavar="FIRST-LAST")
    p.add_argument("--cluster-name", default="testbed")
    p.add_argument("--api-address", metavar="IP:PORT",
                   help="where pods reach the API (the kubernetes Service's endpoint)")
    p.add_argument("--no-controllers", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    try:
        ipaddress.ip_network(args.service_cidr, strict=False)
        first, _, last = args.node_port_range.partition("-")
        args.node_ports = (int(first), int(last))
        args.listen_at = split_hostport(args.listen)
    except ValueError as err:
        p.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=f"apiserver[{args.cluster_name}] %(message)s")
    server = ApiServer(Path(args.state), args.service_cidr, args.listen_at,
                       Path(args.unix) if args.unix else None, args.api_address,
                       args.node_ports, controllers=not args.no_controllers).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    log.info("serving on %s%s", server.url, f" and unix:{args.unix}" if args.unix else "")
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
