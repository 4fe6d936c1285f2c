"""Acts: the controller manager, run as threads inside the API server process.

As k3s runs kube-controller-manager and kube-scheduler in one process with the API server, the
testbed runs its controllers next to the store (testbed.agents.apiserver) rather than as clients
over HTTP: they read and write the Store directly, so there is no second copy of the state.
Each controller is one thread around a pure reconcile function from testbed.controllers:

    deployment     reconcile_deployments     on Deployment and Pod changes
    scheduler      schedule_pending          on Pod and Node changes
    endpointslice  reconcile_endpointslices  on Service, Pod, Node changes (and slice deletions)
    endpoints      reconcile_endpoints       on Service and EndpointSlice changes (v1 Endpoints)
    podgc          collect_pods (here)       on Pod and Node changes
    event-ttl      expire_events (here)      Events last seen over an hour ago, as the API
                                             server's --event-ttl drops them

One watcher thread turns store events into "dirty" flags; each controller reconciles when its
flag is set (after a short pause that gathers a burst of events into one pass) and at least
every `resync` seconds, as informers' periodic resync does. A failed pass (a write that lost a
race, for example) is logged and retried on the next trigger. The Events a pass decides on
(`Change.note`) are written by an EventRecorder per controller, straight into the store.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from testbed.api.events import expired
from testbed.api.meta import object_key
from testbed.api.store import Expired, Store, StoreError
from testbed.apiclient.events import EventRecorder
from testbed.controllers.common import Change, is_terminating, name_of
from testbed.controllers.deployment import reconcile_deployments
from testbed.controllers.endpoints import reconcile_endpoints
from testbed.controllers.endpointslice import reconcile_endpointslices
from testbed.controllers.scheduler import schedule_pending

log = logging.getLogger("testbed.controllers")

BATCH_PAUSE = 0.02  # seconds to let a burst of events settle before a pass


def collect_pods(store: Store) -> list[Change]:
    """Pod garbage collection: terminating Pods that no kubelet will ever finish are removed.

    That is a Pod never scheduled, or one bound to a Node that does not exist (as the PodGC
    controller does for orphaned Pods).
    """
    nodes = {name_of(n) for n in store.list("Node", copy=False)[0]}
    changes = []
    for pod in store.list("Pod", copy=False)[0]:
        node = pod["spec"].get("nodeName")
        if is_terminating(pod) and (not node or node not in nodes):
            try:
                store.delete("Pod", *object_key(pod))
            except StoreError:
                continue
            changes.append(Change("delete", "Pod", *object_key(pod),
                                  "terminating and not on any node"))
    return changes


def expire_events(store: Store, now: datetime | None = None) -> list[Change]:
    """Delete the Events last seen over an hour ago (kube-apiserver's --event-ttl)."""
    changes = []
    for event in expired(store.list("Event", copy=False)[0], now or datetime.now(UTC)):
        try:
            store.delete("Event", *object_key(event))
        except StoreError:
            continue
        changes.append(Change("delete", "Event", *object_key(event), "expired"))
    return changes


@dataclass
class Controller:
    name: str
    reconcile: Callable[[], list[Change]]
    kinds: frozenset[str]
    component: str = ""   # the source its Events carry, as upstream's controller names itself
    dirty: threading.Event = field(default_factory=threading.Event)
    recorder: EventRecorder | None = None


class ControllerManager:
    def __init__(self, store: Store, resync: float = 5.0, rng: random.Random | None = None):
        self.store = store
        self.resync = resync
        rng = rng or random.Random()
        self.controllers = [
            Controller("deployment", lambda: reconcile_deployments(store, rng),
                       frozenset({"Deployment", "Pod"}), "deployment-controller"),
            Controller("scheduler", lambda: schedule_pending(store), frozenset({"Pod", "Node"}),
                       "default-scheduler"),
            Controller("endpointslice", lambda: reconcile_endpointslices(store, rng),
                       frozenset({"Service", "Pod", "Node"}), "endpointslice-controller"),
            Controller("endpoints", lambda: reconcile_endpoints(store),
                       frozenset({"Service", "EndpointSlice", "Endpoints"})),
            Controller("podgc", lambda: collect_pods(store), frozenset({"Pod", "Node"}),
                       "pod-garbage-collector"),
            Controller("event-ttl", lambda: expire_events(store), frozenset()),
        ]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for c in self.controllers:
            if c.component:
                c.recorder = EventRecorder(self.store, c.component).start()
            c.dirty.set()  # a first pass over whatever the store holds
            self._spawn(f"controller-{c.name}", self._run, c)
        self._spawn("controller-watch", self._watch)

    def stop(self) -> None:
        self._stop.set()
        for c in self.controllers:
            c.dirty.set()
        for thread in self._threads:
            if thread.name != "controller-watch":   # it only reads, and may wait 0.5 s more
                thread.join(timeout=5)
        for c in self.controllers:
            if c.recorder is not None:
                c.recorder.stop()

    def _spawn(self, name: str, target: Callable, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _watch(self) -> None:
        since = self.store.resource_version
        while not self._stop.is_set():
            try:
                batch = self.store.watch(None, None, since, timeout=0.5)
            except Expired:  # fell behind the history: everything may have changed
                since = self.store.resource_version
                for c in self.controllers:
                    c.dirty.set()
                continue
            since = batch.resource_version
            kinds = {e.object.get("kind") for e in batch.events}
            if any(e.type == "DELETED" and e.object.get("kind") == "EndpointSlice"
                   for e in batch.events):
                kinds.add("Service")  # someone removed a managed slice: put it back
            for c in self.controllers:
                if c.kinds & kinds:
                    c.dirty.set()

    def _run(self, c: Controller) -> None:
        while not self._stop.is_set():
            c.dirty.wait(self.resync)
            if self._stop.is_set():
                return
            time.sleep(BATCH_PAUSE)
            c.dirty.clear()
            try:
                for change in c.reconcile():
                    log.info("%s: %s", c.name, change)
                    if change.note is not None and c.recorder is not None:
                        c.recorder.record(change.note)
            except StoreError as err:  # lost a race with another writer: try again soon
                log.debug("%s: %s; retrying", c.name, err)
                time.sleep(0.1)
                c.dirty.set()
            except Exception:  # a bug must not stop the controller for good
                log.exception("%s: reconcile failed", c.name)
                time.sleep(1)
