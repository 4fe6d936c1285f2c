"""Pure: the kubelet's decisions, as actions planned from what it wants, what it has, and the time.

`plan(desired, local, now)` is the kubelet's sync as data: from the Pods bound to the node (the
API server's view), the kubelet's local state (`LocalState`: the pods it runs, what their
containers were last seen doing, its own bookkeeping) and the time, the list of `Action`s to
take, in order. agents/kubeletsync.py applies them through an injected runtime (the real one
over emu/pods.py, a fake in tests), the way the proxier applies its rules through an injected
backend; nothing here touches a process, socket or file. It builds on api/podstatus.py, which
holds the status block and the restart-policy and back-off functions it uses.

What is decided here:

* pods to create: bound here, not running here, not terminating, not finished, and not
  within the back-off of a failed creation (doubling from `CREATE_RETRY` to
  `CREATE_RETRY_MAX`, podstatus.next_backoff, per pod, until a creation succeeds); a failed creation's status and
  event (`creation_failure`): CreateContainerError, or, when the sandbox's network could not be
  set up (a CNI plugin's ADD failed), upstream's FailedCreatePodSandBox with every container
  waiting in ContainerCreating;
* pods to stop: those whose object is gone (`GONE_GRACE`) or terminating, with the object's
  deletionGracePeriodSeconds capped at the kubelet's maximum (`MAX_GRACE`) and at least
  `MIN_GRACE`; then the terminating objects to remove for good;
* per container (`plan_containers`): an ended run noted once (exit code, or unknown), restarts
  per restartPolicy after a back-off that doubles (podstatus.next_backoff), a BackOff event
  once per back-off window, the probes that are due; `after_probes`: an Unhealthy event per
  failed attempt and, for a liveness verdict of failure, the container stopped (grace capped
  at `LIVENESS_GRACE`) and restarted at once per restartPolicy, without growing the back-off;
* adoption after a kubelet restart (`plan_adoption`): a live sandbox is adopted, a dead one
  cleaned up;
* status: the observation a status is computed from (`observation`), and whether it is worth
  a write (`needs_report`: only when it changed, heartbeat timestamps aside).

Events are worded as upstream's kubelet words them (Pulled, Created, Started, Killing, BackOff,
Unhealthy, Failed; the container as fieldPath).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from testbed.api.events import Note, container_path, reference
from testbed.api.podstatus import (
    UNKNOWN_EXIT,
    ContainerObservation,
    PodObservation,
    next_backoff,
    pod_status,
    should_restart,
)
from testbed.controllers.common import is_terminal, is_terminating

MAX_GRACE = 30.0        # the kubelet's cap on a pod's deletion grace period, seconds
MIN_GRACE = 0.2         # every teardown gives the pod's processes at least this long
GONE_GRACE = 0.5        # a pod whose object vanished (deleted at once, or never seen again)
LIVENESS_GRACE = 2.0    # a container failing liveness is stopped within this, whatever its pod's grace
CREATE_RETRY = 5.0      # a failed creation is tried again after this long, doubling each time
CREATE_RETRY_MAX = 60.0  # ... up to this
ADOPT_CLEANUP_GRACE = 0.2
DEFAULT_TERMINATION_GRACE = 30   # spec.terminationGracePeriodSeconds when unset
PROBE_KINDS = ("liveness", "readiness")   # the order probes are planned in


# -- the kubelet's local state ------------------------------------------------------------------

@dataclass
class ProbeTracker:
    """Consecutive results of one probe of one container, the verdict they add up to, and when
    it runs, as upstream's probe worker (pkg/kubelet/prober/worker.go) runs it.

    Verdict: initialDelaySeconds after the container started, a verdict only after
    successThreshold successes or failureThreshold failures in a row.

    Timing: the worker begins when the kubelet first syncs the pod (`begin`); from then it
    ticks every periodSeconds, whatever the container's restarts. Upstream's worker first
    sleeps a random part of the period when the kubelet started less than a period before
    (to spread the probes of the pods a restarted kubelet finds), its ticks counting from after
    that sleep (`probe_sleep` decides). A readiness probe also runs at once when the kubelet
    computes the status of its container running but not yet Ready (prober_manager.go's
    UpdatePodStatus, "trigger an immediate run"): here when the kubelet has just started the
    container (`trigger_at`), as upstream's kubelet does once it sees it started; a trigger
    within the initial delay is dropped, as upstream's worker drops it. Upstream's readiness
    worker is triggered once more when its initial Failure is recorded; that second
    back-to-back attempt is not repeated here."""

    probe: dict
    result: bool | None = None        # None until a threshold was reached
    successes: int = 0
    failures: int = 0
    last_run: float = 0.0
    message: str = ""
    anchor: float | None = None       # the worker's ticks count from here; None: not begun
    next_tick: float = 0.0
    trigger_at: float | None = None   # an immediate (readiness) run asked for at this time

    @property
    def period(self) -> float:
        return float(self.probe.get("periodSeconds", 10))

    def begin(self, at: float, sleep: float = 0.0) -> None:
        """The worker starts at `at` (the pod's first sync here) after sleeping `sleep`. Its
        first look, at once after the sleep, finds the container only when it slept: the
        pod's containers start after the worker does."""
        self.anchor = at + sleep
        self.next_tick = self.anchor if sleep > 0 else self.anchor + self.period

    def carry(self, previous: ProbeTracker | None) -> None:
        """A restarted container keeps its worker, so its ticks go on as they were."""
        if previous is not None and previous.anchor is not None:
            self.anchor, self.next_tick = previous.anchor, previous.next_tick

    def next_run(self, container_started: float) -> float:
        """When this probe is due next (for a container running since `container_started`)."""
        delay_over = container_started + self.probe.get("initialDelaySeconds", 0)
        if self.anchor is None:   # never begun: due at once (past the initial delay)
            return delay_over
        earliest = max(self.anchor, delay_over)
        if self.trigger_at is not None and self.trigger_at >= delay_over:
            return earliest
        return max(earliest, self.next_tick)

    def due(self, container_started: float, now: float) -> bool:
        return now >= self.next_run(container_started)

    def record(self, ok: bool, message: str, now: float, started: float | None = None) -> bool:
        """Count one attempt, which began at `started` (default `now`) and ended `now`; True
        when the verdict changed. The next tick is the first after the attempt began: when
        that came while it ran, it is due at once (Go's ticker keeps one tick for a slow
        receiver) and the ticks after it are dropped."""
        began = now if started is None else started
        self.last_run = now
        self.message = message
        self.trigger_at = None
        if self.anchor is None:
            self.begin(began)
        elif began >= self.next_tick:
            self.next_tick = self.anchor + (int((began - self.anchor) // self.period) + 1) * self.period
        before = self.result
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.probe.get("successThreshold", 1):
                self.result = True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= self.probe.get("failureThreshold", 3):
                self.result = False
        return self.result != before


def probe_sleep(period: float, kubelet_age: float, fraction: float) -> float:
    """How long a new probe worker sleeps before its first look (worker.go's run): a random
    `fraction` of its period when the kubelet started less than a period ago, else none."""
    return fraction * period if kubelet_age < period else 0.0


@dataclass
class ContainerTrack:
    """The kubelet's bookkeeping for one container, kept across its restarts."""

    readiness: ProbeTracker | None = None
    liveness: ProbeTracker | None = None
    backoff_until: float = 0.0
    backoff: float = 0.0
    last_exit: int | None = None          # exitCode of the last ended run (128 + N for signal N)
    last_exit_known: bool = True
    finished_at: float | None = None      # when the current run's end was noted; None: not ended
    backoff_noted: float = -1.0           # backoff_until of the last BackOff event recorded
    liveness_killed: bool = False         # stopped by the kubelet for failing liveness

    @classmethod
    def fresh(cls, spec: dict, previous: ContainerTrack | None = None) -> ContainerTrack:
        """A container (re)started: new probe trackers (not ready until probed again) on the
        old trackers' ticks, the back-off and last exit carried over from `previous`."""
        track = cls(ProbeTracker(spec["readinessProbe"]) if spec.get("readinessProbe") else None,
                    ProbeTracker(spec["livenessProbe"]) if spec.get("livenessProbe") else None)
        if previous is not None:
            track.backoff, track.backoff_until = previous.backoff, previous.backoff_until
            track.last_exit, track.last_exit_known = previous.last_exit, previous.last_exit_known
            for kind in PROBE_KINDS:
                if (tracker := getattr(track, kind)) is not None:
                    tracker.carry(getattr(previous, kind))
        return track

    def probers(self) -> list[ProbeTracker]:
        return [t for t in (self.liveness, self.readiness) if t is not None]

    def begin(self, at: float, sleep: Callable[[float], float]) -> None:
        """The probe workers start (the pod's first sync here, at `at`); `sleep(period)` is
        how long each sleeps first (probe_sleep)."""
        for tracker in self.probers():
            tracker.begin(at, sleep(tracker.period))

    def container_started(self, now: float) -> None:
        """The kubelet has just started (or found running) the container, not yet Ready: its
        readiness probe is asked to run at once."""
        if self.readiness is not None:
            self.readiness.trigger_at = now


@dataclass(frozen=True)
class ContainerSeen:
    """One container as the runtime showed it at the start of this sync."""

    name: str
    running: bool
    exit_code: int | None = None          # the ended run's exitCode (128 + N for signal N), if known
    started_at: float | None = None       # wall clock
    restart_count: int = 0
    pid: int | None = None


@dataclass(frozen=True)
class PodSeen:
    """A pod as the runtime showed it: its sandbox, address and containers."""

    sandbox_alive: bool
    ip: str | None
    created: float | None
    containers: Mapping[str, ContainerSeen] = field(default_factory=dict)


def container_specs(manifest: dict) -> list[dict]:
    return list((manifest.get("spec") or {}).get("containers") or [])


def restart_policy(manifest: dict) -> str:
    return (manifest.get("spec") or {}).get("restartPolicy", "Always")


@dataclass
class LocalPod:
    """A pod this kubelet runs: the manifest it started it from, the runtime's own handle (never
    looked into here), what was last seen of it, per-container bookkeeping, the last status
    it reported."""

    uid: str
    manifest: dict
    handle: object = None
    seen: PodSeen | None = None
    tracks: dict[str, ContainerTrack] = field(default_factory=dict)
    last_status: dict | None = None

    def __post_init__(self) -> None:
        for spec in container_specs(self.manifest):
            self.tracks.setdefault(spec["name"], ContainerTrack.fresh(spec))

    @property
    def key(self) -> str:
        meta = self.manifest.get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class CreateRetry(NamedTuple):
    """A failed creation: tried again at `at`, after the back-off `delay` (doubled next time)."""

    at: float
    delay: float


NO_RETRY = CreateRetry(0.0, 0.0)


@dataclass
class LocalState:
    """Everything the kubelet keeps between syncs: its pods, and by pod uid its failed
    creations (when each may be tried again, and the back-off that led there)."""

    pods: dict[str, LocalPod] = field(default_factory=dict)
    retries: dict[str, CreateRetry] = field(default_factory=dict)


# -- actions ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Action:
    changes_state: ClassVar[bool] = False   # the state file must be written after it


@dataclass(frozen=True)
class CreatePod(Action):
    """Create the sandbox and start the containers; on failure, try again at `retry_at`, with
    `delay` the back-off that makes it (the next failure doubles it)."""

    changes_state: ClassVar[bool] = True
    uid: str
    manifest: dict
    retry_at: float
    started: tuple[Note, ...] = ()          # recorded once it runs
    delay: float = CREATE_RETRY


@dataclass(frozen=True)
class StopPod(Action):
    """Stop every container (SIGTERM, SIGKILL after `grace`), then the sandbox; forget the pod."""

    changes_state: ClassVar[bool] = True
    uid: str
    grace: float
    notes: tuple[Note, ...] = ()            # recorded first


@dataclass(frozen=True)
class RemoveObject(Action):
    """Delete the terminating Pod object for good (nothing runs here any more)."""

    uid: str
    manifest: dict


@dataclass(frozen=True)
class ContainerEnded(Action):
    """Note the end of a container's run once; what it left behind in the pod goes too."""

    uid: str
    name: str
    exit_code: int
    known: bool
    at: float


@dataclass(frozen=True)
class StartContainer(Action):
    """Restart an ended container (one more restartCount), with this back-off from now on."""

    changes_state: ClassVar[bool] = True
    uid: str
    name: str
    backoff: float
    backoff_until: float
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True)
class NoteBackOff(Action):
    """Record the BackOff event of the back-off window ending at `until`."""

    uid: str
    name: str
    until: float
    note: Note


@dataclass(frozen=True)
class RunProbes(Action):
    """Run these (container, kind) probes of one pod now; `after_probes` says what follows."""

    uid: str
    probes: tuple[tuple[str, str], ...]
    at: float


@dataclass(frozen=True)
class RecordEvent(Action):
    note: Note


@dataclass(frozen=True)
class StopContainer(Action):
    """Stop a container that failed liveness; `plan_containers` then restarts it per policy."""

    changes_state: ClassVar[bool] = True
    uid: str
    name: str
    grace: float
    note: Note


@dataclass(frozen=True)
class ReportStatus(Action):
    """Compute the pod's status now and write it if `needs_report`."""

    uid: str
    obj: dict


@dataclass(frozen=True)
class AdoptPod(Action):
    changes_state: ClassVar[bool] = True
    uid: str


@dataclass(frozen=True)
class CleanUpPod(Action):
    changes_state: ClassVar[bool] = True
    uid: str
    grace: float


# -- events, in upstream's words ----------------------------------------------------------------

def _note(manifest: dict, kind: str, reason: str, message: str, container: str | None = None) -> Note:
    return Note(reference(manifest, container_path(container) if container else None), kind,
                reason, message)


def started_notes(manifest: dict, container: str, image: str) -> tuple[Note, ...]:
    return (_note(manifest, "Normal", "Pulled",
                  f'Container image "{image}" already present on machine', container),
            _note(manifest, "Normal", "Created", f"Created container: {container}", container),
            _note(manifest, "Normal", "Started", f"Started container {container}", container))


def _image(manifest: dict, name: str) -> str:
    spec = next((c for c in container_specs(manifest) if c.get("name") == name), {})
    return str(spec.get("image", ""))


# -- the plan -----------------------------------------------------------------------------------

def _uid(obj: dict) -> str:
    return obj["metadata"]["uid"]


def teardown_grace(obj: dict | None) -> float:
    """How long a pod's processes get between SIGTERM and SIGKILL: its object's
    deletionGracePeriodSeconds capped at MAX_GRACE (GONE_GRACE when the object is gone), and
    never less than MIN_GRACE."""
    if obj is None:
        grace = GONE_GRACE
    else:
        grace = min(float(obj["metadata"].get("deletionGracePeriodSeconds") or 0), MAX_GRACE)
    return max(grace, MIN_GRACE)


def should_create(obj: dict, running_here: bool, retry_at: float | None, now: float) -> bool:
    """Start a pod bound here: not already running, not terminating, not finished, and not
    waiting out the back-off of a failed creation."""
    return (not running_here and not is_terminating(obj) and not is_terminal(obj)
            and (retry_at or 0.0) <= now)


def stop_pod(pod: LocalPod, grace: float) -> StopPod:
    running = [c.name for c in (pod.seen.containers.values() if pod.seen else []) if c.running]
    return StopPod(pod.uid, grace, tuple(
        _note(pod.manifest, "Normal", "Killing", f"Stopping container {name}", name)
        for name in running))


def plan(desired: Iterable[dict], local: LocalState, now: float) -> list[Action]:
    """One sync: stop what should not run, remove terminating objects, create what should,
    then tend every pod that keeps running (containers, probes, status), in that order."""
    want = {_uid(p): p for p in desired}
    actions: list[Action] = []
    for uid, pod in local.pods.items():
        obj = want.get(uid)
        if obj is None or is_terminating(obj):
            actions.append(stop_pod(pod, teardown_grace(obj)))
    # Terminating with nothing running here (just stopped above, its creation failed, or it
    # ended earlier): nothing to wait for, so the object goes now.
    actions += [RemoveObject(uid, obj) for uid, obj in want.items() if is_terminating(obj)]
    for uid, obj in want.items():
        retry = local.retries.get(uid, NO_RETRY)
        if should_create(obj, uid in local.pods, retry.at, now):
            actions.append(create_pod(obj, now, retry.delay))
    for uid, pod in local.pods.items():
        obj = want.get(uid)
        if obj is not None and not is_terminating(obj):
            actions += plan_containers(pod, now)
            actions.append(ReportStatus(uid, obj))
    return actions


def create_pod(obj: dict, now: float, previous_delay: float = 0.0) -> CreatePod:
    """Create the pod; should it fail, the next try waits CREATE_RETRY, then doubling, at most
    CREATE_RETRY_MAX (`previous_delay`: the last failure's back-off, 0 for none)."""
    notes = tuple(n for c in container_specs(obj)
                  for n in started_notes(obj, c["name"], str(c.get("image", ""))))
    delay = next_backoff(previous_delay, base=CREATE_RETRY, cap=CREATE_RETRY_MAX)
    return CreatePod(_uid(obj), obj, now + delay, notes, delay)


def created(pod: LocalPod, now: float) -> list[Action]:
    """What follows a pod's creation in the same sync: its containers tended, its status."""
    return [*plan_containers(pod, now), ReportStatus(pod.uid, pod.manifest)]


def plan_containers(pod: LocalPod, now: float, only: Iterable[str] | None = None) -> list[Action]:
    """Ended runs noted, restarts per restartPolicy and back-off, BackOff events, due probes."""
    if pod.seen is None:
        return []
    wanted = None if only is None else set(only)
    policy = restart_policy(pod.manifest)
    actions: list[Action] = []
    due: list[tuple[str, str]] = []
    for spec in container_specs(pod.manifest):
        name = spec["name"]
        seen, track = pod.seen.containers.get(name), pod.tracks.get(name)
        if seen is None or track is None or (wanted is not None and name not in wanted):
            continue
        if not seen.running:
            last_exit = track.last_exit
            if track.finished_at is None:   # its end is news: note it once
                known = seen.exit_code is not None
                last_exit = seen.exit_code if known else UNKNOWN_EXIT
                actions.append(ContainerEnded(pod.uid, name, last_exit, known, now))
            actions += _restart(pod, name, track, policy, last_exit, now)
            continue
        started = seen.started_at if seen.started_at is not None else now
        for kind in PROBE_KINDS:
            tracker = getattr(track, kind)
            if tracker is not None and tracker.due(started, now):
                due.append((name, kind))
    if due:
        actions.append(RunProbes(pod.uid, tuple(due), now))
    return actions


def next_due(local: LocalState, now: float) -> float | None:
    """The earliest time after `now` a sync has something to do that no event announces: a
    probe of a running container, the end of a restart back-off, a failed creation's retry
    (None: nothing). The kubelet sleeps until then (or an event, or its sync period) rather
    than a whole sync period, so that a probe runs on its tick."""
    times = [retry.at for retry in local.retries.values()]
    for pod in local.pods.values():
        for name, seen in (pod.seen.containers.items() if pod.seen else ()):
            track = pod.tracks.get(name)
            if track is None:
                continue
            if not seen.running:
                times.append(track.backoff_until)
            elif seen.started_at is not None:
                times += [t.next_run(seen.started_at) for t in track.probers()]
    return min((t for t in times if t > now), default=None)


def _restart(pod: LocalPod, name: str, track: ContainerTrack, policy: str, last_exit: int | None,
             now: float) -> list[Action]:
    if not should_restart(policy, last_exit):
        return []
    if track.liveness_killed:   # the kubelet stopped it: back at once, the back-off as it was
        return [StartContainer(pod.uid, name, track.backoff, now + track.backoff,
                               started_notes(pod.manifest, name, _image(pod.manifest, name)))]
    if now >= track.backoff_until:
        backoff = next_backoff(track.backoff)
        return [StartContainer(pod.uid, name, backoff, now + backoff,
                               started_notes(pod.manifest, name, _image(pod.manifest, name)))]
    if track.backoff_noted != track.backoff_until:   # once per back-off window
        meta = pod.manifest.get("metadata") or {}
        return [NoteBackOff(pod.uid, name, track.backoff_until, _note(
            pod.manifest, "Warning", "BackOff",
            f"Back-off restarting failed container {name} in pod "
            f"{meta.get('name', '')}_{meta.get('namespace', '')}({pod.uid})", name))]
    return []


def liveness_grace(manifest: dict) -> float:
    """A liveness restart waits at most LIVENESS_GRACE, whatever the pod's grace period."""
    spec = manifest.get("spec") or {}
    grace = spec.get("terminationGracePeriodSeconds")
    return min(float(DEFAULT_TERMINATION_GRACE if grace is None else grace), LIVENESS_GRACE)


def after_probes(pod: LocalPod, ran: Sequence[tuple[str, str]]) -> list[Action]:
    """Once the probes of `ran` have recorded their results: an Unhealthy event for each failed
    attempt (upstream notes every one), and a container whose liveness verdict is failure
    stopped, to be restarted per restartPolicy."""
    actions: list[Action] = []
    for name, kind in ran:
        tracker = getattr(pod.tracks[name], kind)
        if tracker.failures:   # this attempt failed
            actions.append(RecordEvent(_note(pod.manifest, "Warning", "Unhealthy",
                                             f"{kind.capitalize()} probe failed: {tracker.message}",
                                             name)))
        if kind == "liveness" and tracker.result is False:
            actions.append(StopContainer(pod.uid, name, liveness_grace(pod.manifest), _note(
                pod.manifest, "Normal", "Killing",
                f"Container {name} failed liveness probe, will be restarted", name)))
    return actions


def plan_adoption(found: Mapping[str, bool]) -> list[Action]:
    """Pods a restarted kubelet found in its state file (uid -> sandbox still alive): the live
    ones are adopted as they run, the dead ones cleaned up."""
    return [AdoptPod(uid) if alive else CleanUpPod(uid, ADOPT_CLEANUP_GRACE)
            for uid, alive in found.items()]


# -- status -------------------------------------------------------------------------------------

def observation(pod: LocalPod, host_ip: str, now: float) -> PodObservation:
    """What podstatus.pod_status needs, from the pod as last seen and the kubelet's books."""
    policy = restart_policy(pod.manifest)
    seen = pod.seen or PodSeen(False, None, None)
    containers = []
    for spec in container_specs(pod.manifest):
        name = spec["name"]
        c = seen.containers.get(name) or ContainerSeen(name, False)
        track = pod.tracks.get(name) or ContainerTrack()
        ready = c.running and (track.readiness is None or track.readiness.result is True)
        waiting = None
        if not c.running and track.finished_at is not None and now < track.backoff_until \
                and should_restart(policy, track.last_exit):
            waiting = "CrashLoopBackOff"
        containers.append(ContainerObservation(
            name, str(spec.get("image", "")), c.running, ready, c.restart_count, c.started_at,
            c.pid if c.running else None, None if c.running else track.last_exit,
            track.finished_at, waiting,
            f"back-off restarting failed container {name}" if waiting else None,
            track.last_exit if c.restart_count and track.last_exit_known else None,
            track.last_exit_known))
    return PodObservation(policy, seen.ip, host_ip, seen.created, containers, seen.sandbox_alive)


def creation_failure(obj: dict, message: str, host_ip: str, now: float,
                     sandbox: bool = False) -> tuple[dict, Note]:
    """The status and event of a pod whose creation failed: every container waiting in
    CreateContainerError and a Failed event; or, when its sandbox could not be made (`sandbox`:
    its network's ADD failed), every container waiting in ContainerCreating and a
    FailedCreatePodSandBox event worded as the kubelet words the runtime's gRPC error."""
    reason, text = ("ContainerCreating", None) if sandbox else ("CreateContainerError", message)
    containers = [ContainerObservation(c["name"], str(c.get("image", "")), False, False,
                                       waiting_reason=reason, waiting_message=text)
                  for c in container_specs(obj)]
    obs = PodObservation(restart_policy(obj), None, host_ip, now, containers, sandbox_ready=False)
    note = (_note(obj, "Warning", "FailedCreatePodSandBox",
                  f"Failed to create pod sandbox: rpc error: code = Unknown desc = {message}")
            if sandbox else _note(obj, "Warning", "Failed", f"Error: {message}"))
    return pod_status(obs, now, obj.get("status")), note


def same_status(a: dict | None, b: dict | None) -> bool:
    """Equal but for the conditions' timestamps, which move by themselves."""
    def strip(status: dict | None) -> object:
        if not status:
            return None
        return json.dumps({**status, "conditions": [
            {k: v for k, v in c.items() if not k.endswith("Time")}
            for c in status.get("conditions", [])]}, sort_keys=True)
    return strip(a) == strip(b)


def needs_report(status: dict, current: dict | None, last: dict | None) -> bool:
    """Write `status` unless both the object's status and the last one written say the same."""
    return not (same_status(status, current) and same_status(status, last))
