"""Pod status as the kubelet reports it (testbed.api.podstatus): phases, conditions, container
states, exit codes, and the restart-policy and back-off decisions. Pure; no root."""

from __future__ import annotations

import pytest

from testbed.api.podstatus import (
    BACKOFF_BASE,
    BACKOFF_MAX,
    UNKNOWN_EXIT,
    ContainerObservation,
    PodObservation,
    container_status,
    exit_code,
    next_backoff,
    phase,
    pod_status,
    should_restart,
)
from testbed.controllers.common import is_ready

NOW = 1_800_000_000.0


def running(name="web", ready=True, restarts=0, last=None):
    return ContainerObservation(name, "img", True, ready, restarts, NOW - 5, 4242, last_exit_code=last)


def exited(name="web", code=0, restarts=0):
    return ContainerObservation(name, "img", False, False, restarts, NOW - 5, None, code, NOW - 1)


def waiting(name="web", reason="CrashLoopBackOff", restarts=1, last=1):
    return ContainerObservation(name, "img", False, False, restarts, None, None, None, None, reason,
                                "back-off", last)


def never_ran(name="web"):
    return ContainerObservation(name, "img", False, False)


def pod(*containers, policy="Always", sandbox=True, ip="10.244.0.5"):
    return PodObservation(policy, ip, "172.16.1.2", NOW - 10, list(containers), sandbox)


def conditions(status):
    return {c["type"]: c for c in status["conditions"]}


# -- phase --------------------------------------------------------------------------------------

@pytest.mark.parametrize("obs,want", [
    (pod(running(), sandbox=False), "Pending"),
    (pod(), "Pending"),
    (pod(never_ran()), "Pending"),
    (pod(running(), never_ran("side")), "Pending"),          # one container has not run yet
    (pod(waiting(reason="CreateContainerError", restarts=0, last=None)), "Pending"),
    (pod(running()), "Running"),
    (pod(running(), exited("side", 0), policy="Never"), "Running"),
    (pod(exited(code=1), policy="Always"), "Running"),       # about to be restarted
    (pod(waiting()), "Running"),                             # CrashLoopBackOff counts as stopped
    (pod(exited(code=0), exited("b", 0), policy="Never"), "Succeeded"),
    (pod(exited(code=0), policy="OnFailure"), "Succeeded"),
    (pod(exited(code=0), exited("b", 2), policy="Never"), "Failed"),
    (pod(exited(code=137), policy="Never"), "Failed"),
    (pod(exited(code=1), policy="OnFailure"), "Running"),    # will be restarted
    (pod(waiting(), policy="OnFailure"), "Running"),
])
def test_phase(obs, want):
    assert phase(obs) == want


# -- conditions ---------------------------------------------------------------------------------

def test_ready_pod_has_every_condition_true_and_its_addresses():
    status = pod_status(pod(running(), running("side")), NOW)
    assert status["phase"] == "Running"
    assert {k: c["status"] for k, c in conditions(status).items()} == {
        "PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
    assert status["podIP"] == "10.244.0.5" and status["podIPs"] == [{"ip": "10.244.0.5"}]
    assert status["hostIP"] == "172.16.1.2"
    assert is_ready({"status": status})


def test_one_unready_container_makes_the_pod_unready_with_the_reason():
    status = pod_status(pod(running(), running("side", ready=False)), NOW)
    cond = conditions(status)
    assert cond["Ready"]["status"] == "False" and cond["Ready"]["reason"] == "ContainersNotReady"
    assert cond["ContainersReady"]["status"] == "False"
    assert not is_ready({"status": status})


def test_no_pod_ip_until_the_sandbox_has_one():
    status = pod_status(pod(never_ran(), sandbox=False, ip=None), NOW)
    assert "podIP" not in status and status["phase"] == "Pending"


def test_transition_time_kept_while_unchanged_and_moved_on_change():
    first = pod_status(pod(running()), NOW)
    later = pod_status(pod(running()), NOW + 60, first)
    assert conditions(later)["Ready"]["lastTransitionTime"] == conditions(first)["Ready"]["lastTransitionTime"]
    flipped = pod_status(pod(running(ready=False)), NOW + 120, later)
    assert conditions(flipped)["Ready"]["lastTransitionTime"] != conditions(first)["Ready"]["lastTransitionTime"]
    assert conditions(flipped)["PodScheduled"]["lastTransitionTime"] == \
        conditions(first)["PodScheduled"]["lastTransitionTime"]


def test_completed_pod_is_not_ready():
    status = pod_status(pod(exited(code=0), policy="Never"), NOW)
    assert status["phase"] == "Succeeded"
    assert conditions(status)["Ready"] == {**conditions(status)["Ready"], "status": "False",
                                           "reason": "PodCompleted"}


def test_is_ready_without_conditions():
    assert not is_ready({}) and not is_ready({"status": {"conditions": []}})


# -- container statuses -------------------------------------------------------------------------

def test_running_container_status():
    status = container_status(running(restarts=2, last=143))
    assert status["state"] == {"running": {"startedAt": "2027-01-15T07:59:55Z"}}
    assert status["ready"] and status["started"] and status["restartCount"] == 2
    assert status["containerID"] == "testbed://4242"
    assert status["lastState"] == {"terminated": {"exitCode": 143, "reason": "Error"}}


def test_terminated_container_status():
    state = container_status(exited(code=0))["state"]["terminated"]
    assert state["exitCode"] == 0 and state["reason"] == "Completed" and state["finishedAt"]
    assert container_status(exited(code=2))["state"]["terminated"]["reason"] == "Error"


def test_waiting_container_status_has_reason_and_message():
    status = container_status(waiting(reason="CreateContainerError", restarts=0, last=None))
    assert status["state"] == {"waiting": {"reason": "CreateContainerError", "message": "back-off"}}
    assert not status["ready"] and not status["started"] and status["lastState"] == {}


def test_never_started_container_is_creating():
    assert container_status(never_ran())["state"] == {"waiting": {"reason": "ContainerCreating"}}


def test_restarted_container_with_unknown_exit_says_so():
    c = running(restarts=1)
    c.last_exit_known = False
    last = container_status(c)["lastState"]["terminated"]
    assert last["exitCode"] == UNKNOWN_EXIT and last["reason"] == "ContainerStatusUnknown"


def test_unready_running_container_is_not_ready_but_started():
    status = container_status(running(ready=False))
    assert status["started"] and not status["ready"]


# -- exit codes and restart decisions ----------------------------------------------------------

@pytest.mark.parametrize("returncode,want", [(None, None), (0, 0), (3, 3), (-15, 143), (-9, 137)])
def test_exit_code_of_a_signal_is_128_plus_n(returncode, want):
    assert exit_code(returncode) == want


@pytest.mark.parametrize("policy,code,want", [
    ("Always", 0, True), ("Always", 1, True), ("Always", None, True),
    ("OnFailure", 0, False), ("OnFailure", 1, True), ("OnFailure", 143, True), ("OnFailure", None, True),
    ("Never", 0, False), ("Never", 1, False),
])
def test_should_restart(policy, code, want):
    assert should_restart(policy, code) is want


def test_backoff_doubles_from_the_base_up_to_the_cap():
    steps, b = [], 0.0
    for _ in range(8):
        b = next_backoff(b)
        steps.append(b)
    assert steps[:5] == [BACKOFF_BASE, 2 * BACKOFF_BASE, 4 * BACKOFF_BASE, 8 * BACKOFF_BASE, 16 * BACKOFF_BASE]
    assert steps[-1] == BACKOFF_MAX and max(steps) == BACKOFF_MAX
    # the kubelet's other retries give their own base and cap
    assert [next_backoff(p, base=5.0, cap=60.0) for p in (0.0, 5.0, 20.0, 40.0, 60.0)] == [5, 10, 40, 60, 60]
