"""Pure: a Pod's status as the kubelet reports it, from what the kubelet observed.

The kubelet observes containers (running or not, exit codes, restarts, probe results), and
its plan (node/kubeletplan.py, `observation`) hands a `PodObservation` here; `pod_status` gives the `status` block with
the fields and wording of the real kubelet: phase, conditions (PodScheduled, Initialized,
ContainersReady, Ready), podIP(s), hostIP(s), startTime and containerStatuses with state,
lastState, ready, started and restartCount.

It also holds the kubelet's container lifecycle decisions, as pure functions so that they are
tested without processes: whether an ended container is restarted (`should_restart`), the
crash-loop back-off (`next_backoff`, the doubling back-off of the kubelet's other retries too), and exit codes as Kubernetes reports them (`exit_code`:
a container killed by signal N exited 128 + N).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

# Container restarts back off 1 s, 2 s, 4 s ... up to 30 s (Kubernetes uses 10 s up to 5 min;
# shortened so that scenarios about crashing containers finish in seconds).
BACKOFF_BASE, BACKOFF_MAX = 1.0, 30.0
UNKNOWN_EXIT = 137   # what Kubernetes reports for a container whose exit it could not observe


def exit_code(returncode: int | None) -> int | None:
    """A process's return code as a container's exitCode: killed by signal N -> 128 + N."""
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


def should_restart(policy: str, code: int | None) -> bool:
    """restartPolicy Always restarts every ended container, OnFailure those that did not exit 0
    (an unknown exit counts as a failure), Never none."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return code != 0
    return False


def next_backoff(previous: float, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> float:
    """The back-off after one more failure: `base` first (`previous` 0, none yet), then
    doubling, capped at `cap`. By default a container restart's crash-loop back-off; the
    kubelet's other retries (a failed pod creation, a failed CNI DEL) pass their own."""
    return min(cap, max(base, previous * 2))


def rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerObservation:
    name: str
    image: str
    running: bool
    ready: bool
    restart_count: int = 0
    started_at: float | None = None
    pid: int | None = None
    exit_code: int | None = None          # of the last ended run, when known
    finished_at: float | None = None
    waiting_reason: str | None = None     # e.g. CrashLoopBackOff, ContainerCreating
    waiting_message: str | None = None
    last_exit_code: int | None = None     # the run before the current one
    last_exit_known: bool = True          # False: it ended while no kubelet was its parent


@dataclass
class PodObservation:
    restart_policy: str
    pod_ip: str | None
    host_ip: str
    start_time: float | None
    containers: list[ContainerObservation] = field(default_factory=list)
    sandbox_ready: bool = True


def _state(c: ContainerObservation) -> dict:
    if c.running:
        return {"running": {"startedAt": rfc3339(c.started_at)}}
    if c.waiting_reason:
        waiting = {"reason": c.waiting_reason}
        if c.waiting_message:
            waiting["message"] = c.waiting_message
        return {"waiting": waiting}
    if c.exit_code is not None:
        return {"terminated": {"exitCode": c.exit_code, "reason": "Completed" if c.exit_code == 0 else "Error",
                               "startedAt": rfc3339(c.started_at), "finishedAt": rfc3339(c.finished_at)}}
    return {"waiting": {"reason": "ContainerCreating"}}


def container_status(c: ContainerObservation) -> dict:
    status = {"name": c.name, "image": c.image, "imageID": "", "ready": c.ready and c.running,
              "started": c.running, "restartCount": c.restart_count, "state": _state(c),
              "lastState": {}}
    if c.pid is not None:
        status["containerID"] = f"testbed://{c.pid}"
    if c.last_exit_code is not None:
        status["lastState"] = {"terminated": {"exitCode": c.last_exit_code,
                                              "reason": "Completed" if c.last_exit_code == 0 else "Error"}}
    elif c.restart_count and not c.last_exit_known:
        status["lastState"] = {"terminated": {
            "exitCode": UNKNOWN_EXIT, "reason": "ContainerStatusUnknown",
            "message": "The container ended while the kubelet was not its parent: its exit code is unknown"}}
    return status


def phase(obs: PodObservation) -> str:
    """The kubelet's getPhase: Pending while any container has never run (or the sandbox is not
    up); Running while any runs; once none runs, Running under restartPolicy Always, Succeeded
    when every container exited 0, Failed under Never, Running (restarting) under OnFailure.

    A container waiting to be restarted (CrashLoopBackOff) counts as stopped, not waiting.
    """
    if not obs.sandbox_ready or not obs.containers:
        return "Pending"
    running = stopped = succeeded = waiting = 0
    for c in obs.containers:
        if c.running:
            running += 1
        elif c.exit_code is not None and not c.waiting_reason:
            stopped += 1
            succeeded += c.exit_code == 0
        elif c.restart_count or c.last_exit_code is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if obs.restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if obs.restart_policy == "Never" else "Running"


def _condition(kind: str, ok: bool, now: str, reason: str | None = None, previous: dict | None = None) -> dict:
    status = "True" if ok else "False"
    since = previous.get("lastTransitionTime") if previous and previous.get("status") == status else now
    cond = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason and not ok:
        cond["reason"] = reason
    return cond


def pod_status(obs: PodObservation, now: float, previous: dict | None = None) -> dict:
    """The status block; `previous` keeps lastTransitionTime of conditions that did not change."""
    stamp = rfc3339(now)
    old = {c.get("type"): c for c in (previous or {}).get("conditions", [])}
    statuses = [container_status(c) for c in obs.containers]
    ready = bool(statuses) and all(s["ready"] for s in statuses)
    not_ready = [s["name"] for s in statuses if not s["ready"]]
    reason = "ContainersNotReady" if not_ready else None
    current = phase(obs)
    if current in ("Succeeded", "Failed"):
        ready, reason = False, "PodCompleted"
    status = {
        "phase": current,
        "conditions": [
            _condition("PodScheduled", True, stamp, previous=old.get("PodScheduled")),
            _condition("Initialized", True, stamp, previous=old.get("Initialized")),
            _condition("ContainersReady", ready, stamp, reason, old.get("ContainersReady")),
            _condition("Ready", ready, stamp, reason, old.get("Ready")),
        ],
        "hostIP": obs.host_ip,
        "hostIPs": [{"ip": obs.host_ip}],
        "startTime": rfc3339(obs.start_time),
        "containerStatuses": statuses,
    }
    if obs.pod_ip:
        status["podIP"] = obs.pod_ip
        status["podIPs"] = [{"ip": obs.pod_ip}]
    return status


