"""Acts (sockets): a small client of the testbed API server, over TCP or a Unix socket.

    client = Client("http://172.16.0.2:6443")        # from a node, over the emulated network
    client = Client("unix:///run/testbed/RUN/apiserver.sock")   # from the host
    pods, rv = client.list("Pod", "default", selector="app=web")
    mine, rv = client.list("Pod", None, fields="spec.nodeName=w1")   # a field selector
    for type_, pod in client.watch("Pod", "default", since=rv): ...

Kinds are Kubernetes kind names; cluster-scoped kinds (Node, Namespace) ignore `namespace`.
Failures raise ApiError carrying the Status object's code, reason and message (Expired for
410, which means: list again). Each thread keeps one keep-alive connection; a watch uses a
connection of its own, closed when the iterator is closed or ends.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

from testbed.api.discovery import VERSION_INFO
from testbed.api.meta import namespace_of
from testbed.api.resources import resource_for

APPLY_PATH = "/testbed/v1/apply"


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, status: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.status = status or {}

    def __str__(self) -> str:
        return f"{self.message} ({self.code} {self.reason})"


class Expired(ApiError):
    """410: the resourceVersion is older than the server's history; list again."""


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def error_from(code: int, data: bytes | dict) -> ApiError:
    status: Any = data
    if isinstance(data, bytes):
        try:
            status = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            status = {"message": data.decode(errors="replace")}
    if not isinstance(status, dict):
        status = {}
    cls = Expired if code == 410 else ApiError
    return cls(int(status.get("code") or code), status.get("reason", ""),
               status.get("message", f"HTTP {code}"), status)


class Client:
    def __init__(self, address: str, timeout: float = 10, component: str = "testbed"):
        url = urlsplit(address)
        if url.scheme == "unix":
            self._unix: str | None = url.path
            self._host, self._port = "", 0
        elif url.scheme == "http" and url.hostname:
            self._unix = None
            self._host, self._port = url.hostname, url.port or 80
        else:
            raise ValueError(f"API address must be http://HOST:PORT or unix:///PATH: {address!r}")
        self.address = address
        self.timeout = timeout
        # The API server names a writer's managedFields entries after the User-Agent's first
        # word, as upstream does: kubelet, kube-proxy, ... (`component`).
        self.user_agent = f"{component}/{VERSION_INFO['gitVersion']} (linux/amd64) testbed"
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"Client({self.address!r})"

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._unix is not None:
            return UnixHTTPConnection(self._unix, timeout or self.timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout or self.timeout)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- raw requests

    def request(self, method: str, path: str, body: Any = None,
                query: dict[str, Any] | None = None,
                content_type: str = "application/json") -> Any:
        """The decoded JSON answer of one request; ApiError for a Status failure."""
        if query:
            path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            reused = conn is not None
            if conn is None:
                conn = self._local.conn = self._connect(None)
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.HTTPException, OSError):
                self.close()
                # A kept-alive connection the server closed meanwhile: retry once, fresh.
                if reused and attempt == 1:
                    continue
                raise
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            if resp.status >= 400:
                raise error_from(resp.status, raw)
            if not raw:
                return None
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                return raw.decode(errors="replace")
        raise AssertionError("unreachable")

    # -- typed verbs

    def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        r = resource_for(kind)
        try:
            return self.request("GET", r.path(namespace or "default", name))
        except ApiError as err:
            if err.code == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None = None, selector: str | None = None,
             fields: str | None = None) -> tuple[list[dict], str]:
        """Objects and the list's resourceVersion; `selector` (labels) and `fields` (a field
        selector such as "spec.nodeName=w1") narrow the list on the server."""
        r = resource_for(kind)
        out = self.request("GET", r.path(namespace), query={"labelSelector": selector or None,
                                                            "fieldSelector": fields or None})
        items = out.get("items") or []
        for item in items:  # as kubectl does: list items carry their kind
            item.setdefault("kind", r.kind)
            item.setdefault("apiVersion", r.group_version)
        return items, str((out.get("metadata") or {}).get("resourceVersion", ""))

    def create(self, obj: dict) -> dict:
        r = resource_for(obj["kind"])
        return self.request("POST", r.path(namespace_of(obj)), obj)

    def update(self, obj: dict) -> dict:
        r = resource_for(obj["kind"])
        return self.request("PUT", r.path(namespace_of(obj), obj["metadata"]["name"]), obj)

    def update_status(self, obj: dict) -> dict:
        r = resource_for(obj["kind"])
        return self.request("PUT", r.path(namespace_of(obj), obj["metadata"]["name"],
                                          "status"), obj)

    def apply(self, obj: dict) -> dict:
        return self.apply_all([obj])[0]

    def apply_results(self, objs: list[dict]) -> list[tuple[str, dict]]:
        """Like apply_all, with what happened to each: created, configured or unchanged."""
        out = self.request("POST", APPLY_PATH, {"items": objs})
        return [(item["action"], item["object"]) for item in out["items"]]

    def apply_all(self, objs: list[dict]) -> list[dict]:
        """Create or update every object, atomically: one invalid object applies nothing."""
        return [obj for _, obj in self.apply_results(objs)]

    def delete(self, kind: str, namespace: str | None, name: str,
               grace_seconds: int | None = None) -> dict | None:
        r = resource_for(kind)
        try:
            return self.request("DELETE", r.path(namespace or "default", name),
                                query={"gracePeriodSeconds": grace_seconds})
        except ApiError as err:
            if err.code == 404:
                return None
            raise

    def merge_patch(self, kind: str, namespace: str | None, name: str, patch: dict) -> dict:
        """PATCH with an RFC 7386 merge patch, as `kubectl label` and `annotate` do; the object
        as stored after it."""
        return self.request("PATCH", resource_for(kind).path(namespace, name), patch,
                            content_type="application/merge-patch+json")

    def scale(self, kind: str, namespace: str, name: str, replicas: int) -> dict:
        r = resource_for(kind)
        return self.request("PUT", r.path(namespace, name, "scale"),
                            {"kind": "Scale", "apiVersion": "autoscaling/v1",
                             "metadata": {"name": name, "namespace": namespace},
                             "spec": {"replicas": replicas}})

    def watch(self, kind: str, namespace: str | None = None, since: str | None = None,
              selector: str | None = None, timeout: float = 30, *,
              on_connect: Callable[[http.client.HTTPConnection], None] | None = None,
              fields: str | None = None, bookmarks: bool = False) -> Iterator[tuple[str, dict]]:
        """(type, object) events after `since` until the server ends the stream at `timeout`.

        `since` None starts with an ADDED event per current object. Raises Expired (410) when
        `since` is too old; the caller lists again. `on_connect` receives the stream's
        connection, so that another thread can cut it (Informer.stop does). `selector` and
        `fields` narrow the events as for `list`; an object that stops matching is DELETED.
        `bookmarks` asks for BOOKMARK events too (allowWatchBookmarks): an object holding only
        the resourceVersion the stream has reached, so a watch of a kind that seldom changes
        resumes from a recent version rather than one the history has dropped (410).
        """
        r = resource_for(kind)
        query = {"watch": "1", "resourceVersion": since or None,
                 "labelSelector": selector or None, "fieldSelector": fields or None,
                 "allowWatchBookmarks": "true" if bookmarks else None,
                 "timeoutSeconds": max(1, int(timeout))}
        path = r.path(namespace) + "?" + urlencode({k: v for k, v in query.items()
                                                    if v is not None})
        conn = self._connect(timeout + 10)
        if on_connect is not None:
            on_connect(conn)
        try:
            conn.request("GET", path, headers={"Accept": "application/json",
                                               "User-Agent": self.user_agent})
            resp = conn.getresponse()
            if resp.status >= 400:
                raise error_from(resp.status, resp.read())
            while True:
                line = resp.readline()
                if not line:
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise error_from(int(status.get("code") or 500), status)
                yield event["type"], event["object"]
        finally:
            conn.close()


def put_status(client, obj: dict, status: dict) -> dict:
    """Write `status` as obj's status through `client.update_status`, whatever has changed
    since `obj` was read: no resourceVersion is sent (status writers own the status, as
    kubelets and controllers do)."""
    meta = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    return client.update_status(dict(obj, metadata=meta, status=status))
