"""Acts (sockets, a thread): list-then-watch of one kind, with a local cache and handlers.

As client-go's reflector + informer: list (the cache becomes exactly the list, and handlers hear
what differs from what they saw before), then watch from the list's resourceVersion, with
bookmarks (AllowWatchBookmarks, as the reflector asks); a watch that ends is resumed from the
last event's resourceVersion, a bookmark's included (so an informer of a kind that seldom
changes, Services or NetworkPolicies, does not find its version dropped from the history and
list again every time its watch ends, while Pods churn); 410 Expired or a lost connection
(an API server restart) means list again, after a backoff that grows to `max_backoff`. With
`resync` set, every cached object is handed to on_update(obj, obj) that often, so handlers
that act on the world (kubelet, kube-proxy) can repair drift.

Handlers run on the informer's thread, one at a time; an exception in a handler is logged and
does not stop the informer. Used by the kubelet, kube-proxy and the DNS server.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from collections.abc import Callable

from testbed.api.meta import object_key
from testbed.api.store import clone
from testbed.apiclient.client import ApiError, Client, Expired

log = logging.getLogger("testbed.informer")

Handler = Callable[..., None]


class Informer:
    def __init__(self, client: Client, kind: str, namespace: str | None = None,
                 selector: str | None = None, on_add: Handler | None = None,
                 on_update: Handler | None = None, on_delete: Handler | None = None,
                 resync: float | None = None, watch_timeout: float = 30,
                 max_backoff: float = 5.0, fields: str | None = None):
        self.client, self.kind = client, kind
        self.namespace, self.selector = namespace, selector
        self.fields = fields  # a field selector ("spec.nodeName=w1"), applied by the server
        self.on_add, self.on_update, self.on_delete = on_add, on_update, on_delete
        self.resync = resync
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.lists = 0  # how many times it listed (relists show up here)
        self._cache: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._thread: threading.Thread | None = None
        self._next_resync = 0.0

    # -- public

    def start(self) -> Informer:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"informer-{self.kind}")
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    def items(self, keep: Callable[[dict], bool] | None = None) -> list[dict]:
        """Copies of the cached objects in key order; with `keep`, only those it accepts
        (tested before copying, so a kubelet does not copy every pod of the cluster)."""
        with self._lock:
            return [clone(o) for _, o in sorted(self._cache.items())
                    if keep is None or keep(o)]

    def get(self, namespace: str, name: str) -> dict | None:
        with self._lock:
            obj = self._cache.get(self._key({"metadata": {"namespace": namespace, "name": name}}))
            return clone(obj) if obj is not None else None

    def _key(self, obj: dict) -> tuple[str, str]:
        """object_key as the informer's kind has it (a watched object need not carry its kind)."""
        return object_key({"kind": self.kind, "metadata": obj.get("metadata")})

    # -- the loop

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                rv = self._relist()
                backoff = 0.2
                self._watch_from(rv)
            except Expired:
                log.info("informer %s: resourceVersion expired; listing again", self.kind)
            except (ApiError, OSError, http.client.HTTPException, ValueError) as err:
                if self._stop.is_set():
                    return
                log.info("informer %s: %s; listing again in %.1fs", self.kind, err, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    def _relist(self) -> str:
        items, rv = self.client.list(self.kind, self.namespace, self.selector, self.fields)
        self.lists += 1
        fresh = {self._key(o): o for o in items}
        with self._lock:
            old, self._cache = self._cache, dict(fresh)
        for key, obj in fresh.items():
            if key not in old:
                self._call(self.on_add, obj)
            elif old[key]["metadata"].get("resourceVersion") != obj["metadata"].get(
                    "resourceVersion"):
                self._call(self.on_update, old[key], obj)
        for key, obj in old.items():
            if key not in fresh:
                self._call(self.on_delete, obj)
        self._synced.set()
        self._next_resync = time.monotonic() + (self.resync or 0)
        return rv

    def _watch_from(self, rv: str) -> None:
        while not self._stop.is_set():
            timeout = self.watch_timeout
            if self.resync:
                timeout = max(1.0, min(timeout, self._next_resync - time.monotonic() + 0.5))
            stream = self.client.watch(self.kind, self.namespace, since=rv,
                                       selector=self.selector, fields=self.fields,
                                       timeout=timeout, bookmarks=True,
                                       on_connect=self._remember)
            try:
                for type_, obj in stream:
                    if self._stop.is_set():
                        return
                    rv = obj["metadata"].get("resourceVersion") or rv
                    self._apply(type_, obj)
                    self._maybe_resync()
            finally:
                stream.close()
                self._conn = None
            self._maybe_resync()

    def _remember(self, conn: http.client.HTTPConnection) -> None:
        self._conn = conn

    def _apply(self, type_: str, obj: dict) -> None:
        key = self._key(obj)
        with self._lock:
            old = self._cache.get(key)
            if type_ == "DELETED":
                self._cache.pop(key, None)
            elif type_ in ("ADDED", "MODIFIED"):
                self._cache[key] = obj
            else:
                return  # BOOKMARK and the like
        if type_ == "DELETED":
            # the event's object, as client-go hands it over: its final state, with the
            # resourceVersion of the deletion (handlers may wait for that version)
            self._call(self.on_delete, obj)
        elif old is None:
            self._call(self.on_add, obj)
        else:
            self._call(self.on_update, old, obj)

    def _maybe_resync(self) -> None:
        if not self.resync or time.monotonic() < self._next_resync:
            return
        self._next_resync = time.monotonic() + self.resync
        with self._lock:  # _call hands each handler its own copies
            objs = [o for _, o in sorted(self._cache.items())]
        for obj in objs:
            self._call(self.on_update, obj, obj)

    def _call(self, handler: Handler | None, *args: dict) -> None:
        if handler is None or self._stop.is_set():
            return
        try:
            handler(*[clone(a) for a in args])
        except Exception:
            log.exception("informer %s: handler failed", self.kind)
