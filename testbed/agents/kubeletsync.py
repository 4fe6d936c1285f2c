"""Applies the kubelet's plan (node/kubeletplan.py) through an injected runtime and API.

`PodSync` keeps the kubelet's local state; each `sync(desired)` observes its pods through the
`Runtime`, asks `kubeletplan.plan` what to do and does it, action by action, the way the
proxier applies its rules through an injected backend. Some actions lead to more decisions in
the same sync, always taken by kubeletplan: a created pod is tended at once (`created`), probe
results are judged (`after_probes`), a container stopped for failing liveness is restarted per
policy (`plan_containers`). Nothing here decides, and nothing here touches the system: the
runtime (agents/kubelet.py's `NodeRuntime` over emu/pods.py; a fake in the unit tests) and the
API (`KubeletApi`) are handed in, the clock too. Only the state file is written from here,
through its owner, emu/rundir.py.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from testbed.api.events import Note
from testbed.api.podstatus import pod_status
from testbed.emu.rundir import SavedPod, read_kubelet_state, write_kubelet_state
from testbed.node.kubeletplan import (
    Action,
    AdoptPod,
    CleanUpPod,
    ContainerEnded,
    ContainerTrack,
    CreatePod,
    CreateRetry,
    LocalPod,
    LocalState,
    NoteBackOff,
    PodSeen,
    RecordEvent,
    RemoveObject,
    ReportStatus,
    RunProbes,
    StartContainer,
    StopContainer,
    StopPod,
    after_probes,
    container_specs,
    created,
    creation_failure,
    needs_report,
    next_due,
    observation,
    plan,
    plan_adoption,
    plan_containers,
    probe_sleep,
)

log = logging.getLogger("kubelet")


class PodFailed(Exception):
    """The runtime could not create a pod (a bad command, a sandbox that did not start).
    `sandbox`: its sandbox could not be made (its network's setup failed)."""

    def __init__(self, message: str, sandbox: bool = False):
        super().__init__(message)
        self.sandbox = sandbox


class Runtime(Protocol):
    """What the kubelet needs of a container runtime on its node. Handles are the runtime's
    own records of its pods; the kubelet only passes them back."""

    def run_pod(self, manifest: dict) -> object:
        """Sandbox, network and containers of one pod; PodFailed when it cannot be."""

    def delete_pod(self, handle: object, grace: float) -> None:
        """SIGTERM every process of the pod, SIGKILL after `grace`; unwire it. Repeatable."""

    def observe(self, handle: object) -> PodSeen:
        """The pod's sandbox and containers now (an ended container's exit code, if known)."""

    def start_container(self, handle: object, name: str) -> None:
        """Start an ended container again, counting one more restart."""

    def stop_container(self, handle: object, name: str, grace: float) -> None:
        """SIGTERM one container, SIGKILL after `grace`; its exit code is kept."""

    def end_container(self, handle: object, name: str) -> None:
        """End what an ended container left running in the pod (its process group)."""

    def run_probes(self, handle: object,
                   probes: Sequence[tuple[dict, dict]]) -> list[tuple[bool, str]]:
        """Run (container spec, probe) against the pod, together; (succeeded, what happened)."""

    def saved(self, handle: object, manifest: dict) -> SavedPod:
        """The pod as the state file keeps it."""

    def adopt(self, saved: SavedPod) -> object:
        """A pod a previous kubelet ran, from its saved state (alive or not)."""


class KubeletApi(Protocol):
    """What the kubelet writes to the API server."""

    def record(self, note: Note) -> None:
        """An Event."""

    def put_status(self, obj: dict, status: dict, best_effort: bool = False) -> bool:
        """Write the Pod's status; False when the Pod is gone. With `best_effort` no API
        error is raised."""

    def remove(self, obj: dict) -> None:
        """Delete the Pod object for good (one already gone is fine)."""


class PodSync:
    """The kubelet's pods on one node: local state, planned by kubeletplan, applied here."""

    def __init__(self, runtime: Runtime, api: KubeletApi, run_dir: Path, node: str, host_ip: str,
                 clock: Callable[[], float] = time.time, jitter: Callable[[], float] = random.random,
                 started: float | None = None):
        self.runtime = runtime
        self.api = api
        self.run_dir = Path(run_dir)
        self.node = node
        self.host_ip = host_ip
        self.clock = clock
        self.jitter = jitter   # a fraction in [0, 1): the probe workers' first sleep (probe_sleep)
        self.started = clock() if started is None else started   # the kubelet's start
        self.local = LocalState()
        self.changed = False
        self._adopting: tuple[dict[str, SavedPod], dict[str, object]] = ({}, {})

    @property
    def pods(self) -> dict[str, LocalPod]:
        return self.local.pods

    # -- the loop body ----------------------------------------------------------------------

    def sync(self, desired: Iterable[dict]) -> None:
        """Observe, plan, apply; save the state file when what runs here changed."""
        for pod in self.local.pods.values():
            pod.seen = self.runtime.observe(pod.handle)
        self.apply(plan(list(desired), self.local, self.clock()))
        if self.changed:
            self.save()

    def next_due(self) -> float | None:
        """When the next sync has something due that no event announces (kubeletplan.next_due)."""
        return next_due(self.local, self.clock())

    def apply(self, actions: Iterable[Action]) -> None:
        """Each action, then at once the actions it leads to."""
        for action in actions:
            follow = self._handlers[type(action)](self, action)
            self.changed |= action.changes_state
            if follow:
                self.apply(follow)

    # -- state across restarts --------------------------------------------------------------

    def save(self) -> None:
        write_kubelet_state(self.run_dir, self.node, {
            uid: self.runtime.saved(pod.handle, pod.manifest) for uid, pod in self.local.pods.items()})
        self.changed = False

    def adopt(self) -> None:
        """Take over the pods a previous kubelet on this node left (plan_adoption decides)."""
        saved = read_kubelet_state(self.run_dir, self.node)
        handles = {uid: self.runtime.adopt(pod) for uid, pod in saved.items()}
        alive = {uid: self.runtime.observe(handle).sandbox_alive for uid, handle in handles.items()}
        self._adopting = (saved, handles)
        try:
            self.apply(plan_adoption(alive))
        finally:
            self._adopting = ({}, {})   # what adoption needed, not kept for the process's life
        self.save()

    # -- one handler per action -------------------------------------------------------------

    def _begin_probes(self, pod: LocalPod, at: float) -> None:
        """The pod's probe workers start (kubeletplan.ProbeTracker's timing)."""
        for track in pod.tracks.values():
            track.begin(at, lambda period: probe_sleep(period, at - self.started, self.jitter()))

    def _create(self, a: CreatePod) -> list[Action]:
        first_sync = self.clock()   # upstream's probe workers start before the sandbox does
        try:
            handle = self.runtime.run_pod(a.manifest)
        except PodFailed as err:
            meta = a.manifest["metadata"]
            log.warning("pod %s/%s: %s", meta.get("namespace"), meta.get("name"), err)
            self.local.retries[a.uid] = CreateRetry(a.retry_at, a.delay)
            status, note = creation_failure(a.manifest, str(err), self.host_ip, self.clock(),
                                            sandbox=err.sandbox)
            self.api.put_status(a.manifest, status, best_effort=True)
            self.api.record(note)
            return []
        self.local.retries.pop(a.uid, None)
        pod = self.local.pods[a.uid] = LocalPod(a.uid, a.manifest, handle)
        self._begin_probes(pod, first_sync)
        for note in a.started:
            self.api.record(note)
        pod.seen = self.runtime.observe(handle)
        now = self.clock()
        for track in pod.tracks.values():
            track.container_started(now)
        log.info("started pod %s at %s", pod.key, pod.seen.ip)
        return created(pod, now)

    def _stop_pod(self, a: StopPod) -> None:
        pod = self.local.pods[a.uid]
        for note in a.notes:
            self.api.record(note)
        self.runtime.delete_pod(pod.handle, a.grace)
        del self.local.pods[a.uid]
        log.info("stopped pod %s", pod.key)

    def _remove(self, a: RemoveObject) -> None:
        self.local.retries.pop(a.uid, None)
        self.api.remove(a.manifest)

    def _ended(self, a: ContainerEnded) -> None:
        pod = self.local.pods[a.uid]
        self.runtime.end_container(pod.handle, a.name)
        track = pod.tracks[a.name]
        track.finished_at, track.last_exit, track.last_exit_known = a.at, a.exit_code, a.known
        if track.readiness:
            track.readiness.result = None

    def _start(self, a: StartContainer) -> None:
        pod = self.local.pods[a.uid]
        self.runtime.start_container(pod.handle, a.name)
        spec = next(c for c in container_specs(pod.manifest) if c["name"] == a.name)
        # A restarted container starts over: not ready until its probes say so again.
        track = pod.tracks[a.name] = ContainerTrack.fresh(spec, pod.tracks[a.name])
        track.backoff, track.backoff_until = a.backoff, a.backoff_until
        track.container_started(self.clock())
        pod.seen = self.runtime.observe(pod.handle)
        seen = pod.seen.containers.get(a.name)
        log.info("restarted container %s of %s (restart %d)", a.name, pod.key,
                 seen.restart_count if seen else -1)
        for note in a.notes:
            self.api.record(note)

    def _backoff(self, a: NoteBackOff) -> None:
        self.local.pods[a.uid].tracks[a.name].backoff_noted = a.until
        self.api.record(a.note)

    def _event(self, a: RecordEvent) -> None:
        self.api.record(a.note)

    def _probe(self, a: RunProbes) -> list[Action]:
        pod = self.local.pods[a.uid]
        specs = {c["name"]: c for c in container_specs(pod.manifest)}
        trackers = [getattr(pod.tracks[name], kind) for name, kind in a.probes]
        results = self.runtime.run_probes(pod.handle, [(specs[name], tracker.probe) for
                                                       (name, _), tracker in zip(a.probes, trackers,
                                                                                 strict=True)])
        now = self.clock()
        for tracker, (ok, message) in zip(trackers, results, strict=True):
            tracker.record(ok, message, now, started=a.at)
        return after_probes(pod, a.probes)

    def _stop_container(self, a: StopContainer) -> list[Action]:
        pod = self.local.pods[a.uid]
        self.api.record(a.note)
        log.info("container %s of %s failed liveness (%s); restarting", a.name, pod.key,
                 pod.tracks[a.name].liveness.message if pod.tracks[a.name].liveness else "")
        self.runtime.stop_container(pod.handle, a.name, a.grace)
        pod.tracks[a.name].liveness_killed = True
        pod.seen = self.runtime.observe(pod.handle)
        return plan_containers(pod, self.clock(), only=[a.name])

    def _report(self, a: ReportStatus) -> None:
        pod = self.local.pods.get(a.uid)
        if pod is None:
            return
        pod.seen = self.runtime.observe(pod.handle)
        now = self.clock()
        status = pod_status(observation(pod, self.host_ip, now), now, a.obj.get("status"))
        if needs_report(status, a.obj.get("status"), pod.last_status) and \
                self.api.put_status(a.obj, status):
            pod.last_status = status

    def _adopt(self, a: AdoptPod) -> None:
        saved, handles = self._adopting
        pod = self.local.pods[a.uid] = LocalPod(a.uid, saved[a.uid].manifest, handles[a.uid])
        now = self.clock()
        self._begin_probes(pod, now)
        for track in pod.tracks.values():   # found running, not Ready: probed once its worker woke
            track.container_started(now)
        log.info("adopted pod %s (pause %s)", pod.key, saved[a.uid].pause_pid)

    def _clean_up(self, a: CleanUpPod) -> None:
        _, handles = self._adopting
        self.runtime.delete_pod(handles[a.uid], a.grace)

    _handlers: dict[type, Callable] = {
        CreatePod: _create, StopPod: _stop_pod, RemoveObject: _remove,
        ContainerEnded: _ended, StartContainer: _start, NoteBackOff: _backoff,
        RecordEvent: _event, RunProbes: _probe, StopContainer: _stop_container,
        ReportStatus: _report, AdoptPod: _adopt, CleanUpPod: _clean_up,
    }
