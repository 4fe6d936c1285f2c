"""The kubelet's plan (node/kubeletplan.py), pure: which pods are created and stopped and with
what grace, restarts per policy and back-off, BackOff events, probes and liveness failures,
adoption, status reports. Each decision has a test that fails when its condition is flipped."""

from __future__ import annotations

import copy

import pytest

from testbed.api.podstatus import UNKNOWN_EXIT, pod_status
from testbed.node.kubeletplan import (
    CREATE_RETRY_MAX,
    MAX_GRACE,
    MIN_GRACE,
    AdoptPod,
    CleanUpPod,
    ContainerEnded,
    ContainerSeen,
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
    creation_failure,
    liveness_grace,
    needs_report,
    next_due,
    observation,
    plan,
    plan_adoption,
    plan_containers,
    probe_sleep,
    should_create,
    teardown_grace,
)

NOW = 1000.0


def obj(name: str = "p", uid: str = "u-1", containers: tuple[str, ...] = ("c",),
        restart: str | None = None, phase: str | None = None, deleting: float | None = None,
        **spec: object) -> dict:
    """A Pod bound to w1, as the kubelet gets it from the API server."""
    meta: dict = {"namespace": "default", "name": name, "uid": uid}
    if deleting is not None:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
        meta["deletionGracePeriodSeconds"] = deleting
    body = {"nodeName": "w1", "containers": [{"name": c, "image": f"img-{c}"} for c in containers],
            **spec}
    if restart:
        body["restartPolicy"] = restart
    out = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body}
    if phase:
        out["status"] = {"phase": phase}
    return out


def running(manifest: dict, *, down: dict[str, int | None] | None = None,
            started: float = NOW - 100) -> LocalPod:
    """A pod running here; the containers in `down` ended (with that exit code, None unknown)."""
    down = down or {}
    seen = {c["name"]: ContainerSeen(c["name"], c["name"] not in down, down.get(c["name"]),
                                     started, 0, 42)
            for c in manifest["spec"]["containers"]}
    return LocalPod(manifest["metadata"]["uid"], manifest, "handle",
                    PodSeen(True, "10.0.1.2", NOW - 200, seen))


def of(kind: type, actions: list) -> list:
    return [a for a in actions if isinstance(a, kind)]


# -- which pods to create ----------------------------------------------------------------------

def test_a_new_pod_bound_here_is_created_with_its_events_ready_for_later():
    p = obj(containers=("web", "side"))
    (create,) = plan([p], LocalState(), NOW)
    assert isinstance(create, CreatePod)
    assert (create.uid, create.manifest, create.retry_at) == ("u-1", p, NOW + 5)
    assert [(n.reason, n.message, n.about["fieldPath"]) for n in create.started] == [
        ("Pulled", 'Container image "img-web" already present on machine', "spec.containers{web}"),
        ("Created", "Created container: web", "spec.containers{web}"),
        ("Started", "Started container web", "spec.containers{web}"),
        ("Pulled", 'Container image "img-side" already present on machine', "spec.containers{side}"),
        ("Created", "Created container: side", "spec.containers{side}"),
        ("Started", "Started container side", "spec.containers{side}")]


def test_no_creation_for_pods_running_terminating_or_finished():
    state = LocalState({"u-1": running(obj())})
    assert of(CreatePod, plan([obj()], state, NOW)) == []                       # runs already
    assert of(CreatePod, plan([obj(deleting=30)], LocalState(), NOW)) == []      # terminating
    assert of(CreatePod, plan([obj(phase="Succeeded")], LocalState(), NOW)) == []
    assert of(CreatePod, plan([obj(phase="Failed")], LocalState(), NOW)) == []
    assert len(of(CreatePod, plan([obj(phase="Pending")], LocalState(), NOW))) == 1
    assert len(of(CreatePod, plan([obj(phase="Running")], LocalState(), NOW))) == 1


def test_a_failed_creation_is_retried_only_after_its_back_off():
    state = LocalState(retries={"u-1": CreateRetry(NOW + 5, 5.0)})
    assert of(CreatePod, plan([obj()], state, NOW + 4.9)) == []
    assert len(of(CreatePod, plan([obj()], state, NOW + 5))) == 1
    assert should_create(obj(), False, None, NOW)
    assert not should_create(obj(), True, None, NOW)
    assert not should_create(obj(), False, NOW + 1, NOW)


# -- which to tear down, with what grace -------------------------------------------------------

def test_a_pod_whose_object_is_gone_is_stopped_with_the_short_grace():
    state = LocalState({"u-1": running(obj(containers=("web", "side")), down={"side": 0})})
    (stop,) = plan([], state, NOW)
    assert isinstance(stop, StopPod) and (stop.uid, stop.grace) == ("u-1", 0.5)
    # Killing only for containers still running, in upstream's words
    assert [(n.type, n.reason, n.message, n.about["fieldPath"]) for n in stop.notes] == [
        ("Normal", "Killing", "Stopping container web", "spec.containers{web}")]


@pytest.mark.parametrize("requested,grace", [
    (10, 10.0), (MAX_GRACE, MAX_GRACE), (31, MAX_GRACE), (3600, MAX_GRACE),   # capped
    (1, 1.0), (0, MIN_GRACE), (None, MIN_GRACE)])                               # at least MIN_GRACE
def test_a_terminating_pod_gets_its_grace_period_capped_at_the_kubelets_maximum(requested, grace):
    p = obj(deleting=0)
    p["metadata"]["deletionGracePeriodSeconds"] = requested
    state = LocalState({"u-1": running(obj())})
    actions = plan([p], state, NOW)
    assert [type(a) for a in actions] == [StopPod, RemoveObject]   # stop, then the object goes
    assert actions[0].grace == grace
    assert teardown_grace(p) == grace
    assert teardown_grace(None) == 0.5


def test_a_terminating_pod_not_running_here_is_removed_at_once_and_nothing_else():
    p = obj(deleting=30)
    assert plan([p], LocalState(), NOW) == [RemoveObject("u-1", p)]


def test_order_stop_remove_create_then_tend_and_report():
    keep, gone, new, dying = obj("keep", "u-k"), obj("gone", "u-g"), obj("new", "u-n"), \
        obj("dying", "u-d", deleting=5)
    state = LocalState({"u-k": running(keep), "u-g": running(gone), "u-d": running(dying)})
    actions = plan([keep, new, dying], state, NOW)
    assert [(type(a).__name__, a.uid) for a in actions] == [
        ("StopPod", "u-g"), ("StopPod", "u-d"), ("RemoveObject", "u-d"), ("CreatePod", "u-n"),
        ("ReportStatus", "u-k")]
    assert actions[0].grace == 0.5 and actions[1].grace == 5.0


# -- restarts per policy, with a growing back-off ----------------------------------------------

def test_an_ended_run_is_noted_once_with_its_exit_code_or_unknown():
    pod = running(obj(restart="Never"), down={"c": 3})
    assert plan_containers(pod, NOW) == [ContainerEnded("u-1", "c", 3, True, NOW)]
    pod.tracks["c"].finished_at = NOW          # as applying it records
    assert plan_containers(pod, NOW + 1) == []
    unknown = running(obj(restart="Never"), down={"c": None})
    assert plan_containers(unknown, NOW) == [ContainerEnded("u-1", "c", UNKNOWN_EXIT, False, NOW)]


@pytest.mark.parametrize("policy,code,restarts", [
    ("Always", 0, True), ("Always", 1, True), ("Always", None, True),
    ("OnFailure", 0, False), ("OnFailure", 1, True), ("OnFailure", None, True),
    ("Never", 0, False), ("Never", 1, False), ("Never", None, False)])
def test_restarts_follow_the_restart_policy(policy, code, restarts):
    pod = running(obj(restart=policy), down={"c": code})
    assert bool(of(StartContainer, plan_containers(pod, NOW))) is restarts


def test_the_first_restart_is_at_once_and_each_next_waits_twice_as_long():
    pod = running(obj(), down={"c": 1})
    (start,) = of(StartContainer, plan_containers(pod, NOW))
    assert (start.backoff, start.backoff_until) == (1.0, NOW + 1)
    assert [n.reason for n in start.notes] == ["Pulled", "Created", "Started"]
    track = pod.tracks["c"]
    track.finished_at, track.backoff, track.backoff_until = NOW, 4.0, NOW - 1   # window over
    (start,) = of(StartContainer, plan_containers(pod, NOW))
    assert (start.backoff, start.backoff_until) == (8.0, NOW + 8)
    track.backoff, track.backoff_until = 30.0, NOW                               # at the cap
    (start,) = of(StartContainer, plan_containers(pod, NOW))
    assert start.backoff == 30.0


def test_within_a_back_off_no_restart_and_one_backoff_event_per_window():
    pod = running(obj(), down={"c": 1})
    track = pod.tracks["c"]
    track.finished_at, track.backoff, track.backoff_until = NOW - 1, 2.0, NOW + 2
    (note,) = plan_containers(pod, NOW)
    assert isinstance(note, NoteBackOff) and note.until == NOW + 2
    assert (note.note.type, note.note.reason, note.note.message) == (
        "Warning", "BackOff", "Back-off restarting failed container c in pod p_default(u-1)")
    track.backoff_noted = note.until           # as applying it records
    assert plan_containers(pod, NOW + 1) == []  # same window: said once
    track.backoff_until = NOW + 5               # a new window (after another restart)
    assert of(NoteBackOff, plan_containers(pod, NOW + 1))
    assert of(StartContainer, plan_containers(pod, NOW + 5))   # its end: restart


def test_a_container_waiting_out_its_back_off_is_reported_in_crash_loop():
    pod = running(obj(), down={"c": 1})
    track = pod.tracks["c"]
    track.finished_at, track.last_exit, track.backoff_until = NOW - 1, 1, NOW + 2
    (c,) = observation(pod, "172.16.1.2", NOW).containers
    assert (c.waiting_reason, c.waiting_message) == (
        "CrashLoopBackOff", "back-off restarting failed container c")
    (c,) = observation(pod, "172.16.1.2", NOW + 2).containers   # back-off over
    assert c.waiting_reason is None and c.exit_code == 1
    never = running(obj(restart="Never"), down={"c": 1})
    never.tracks["c"].finished_at, never.tracks["c"].last_exit = NOW - 1, 1
    never.tracks["c"].backoff_until = NOW + 2
    assert observation(never, "172.16.1.2", NOW).containers[0].waiting_reason is None


def test_last_state_is_the_run_before_a_restart_and_only_when_its_exit_is_known():
    ended = running(obj(restart="Never"), down={"c": 1})
    ended.tracks["c"].finished_at, ended.tracks["c"].last_exit = NOW, 1
    (c,) = observation(ended, "172.16.1.2", NOW).containers
    assert (c.exit_code, c.last_exit_code) == (1, None)       # never restarted: no last state
    restarted = running(obj())
    restarted.seen = PodSeen(True, "10.0.1.2", NOW, {"c": ContainerSeen("c", True, None, NOW, 2, 7)})
    restarted.tracks["c"].last_exit = 1
    (c,) = observation(restarted, "172.16.1.2", NOW).containers
    assert (c.restart_count, c.last_exit_code, c.pid) == (2, 1, 7)
    restarted.tracks["c"].last_exit_known = False              # it ended with no kubelet watching
    (c,) = observation(restarted, "172.16.1.2", NOW).containers
    assert c.last_exit_code is None and not c.last_exit_known


# -- probes ------------------------------------------------------------------------------------

def probed(**probes: dict) -> dict:
    p = obj()
    for kind, probe in probes.items():
        p["spec"]["containers"][0][f"{kind}Probe"] = probe
    return p


def test_probes_are_due_after_the_initial_delay_then_every_period():
    pod = running(probed(readiness={"initialDelaySeconds": 5, "periodSeconds": 10}), started=NOW)
    assert plan_containers(pod, NOW + 4.9) == []
    assert plan_containers(pod, NOW + 5) == [RunProbes("u-1", (("c", "readiness"),), NOW + 5)]
    pod.tracks["c"].readiness.record(True, "ok", NOW + 5)
    assert plan_containers(pod, NOW + 14.9) == []
    assert of(RunProbes, plan_containers(pod, NOW + 15))


def test_a_worker_ticks_from_its_start_and_drops_ticks_it_missed():
    pod = running(probed(liveness={"periodSeconds": 10}), started=NOW)
    pod.tracks["c"].begin(NOW - 0.2, lambda period: 0.0)   # the pod's first sync, then the start
    tracker = pod.tracks["c"].liveness
    assert plan_containers(pod, NOW) == []              # liveness waits for the first tick
    assert next_due(LocalState({"u-1": pod}), NOW) == NOW + 9.8
    assert of(RunProbes, plan_containers(pod, NOW + 9.8))
    tracker.record(True, "ok", NOW + 35)                # late: the ticks at +19.8 and +29.8 went by
    assert tracker.next_tick == NOW + 39.8
    tracker.record(False, "timeout", NOW + 51, started=NOW + 39.8)   # ran past the tick at +49.8:
    assert tracker.next_tick == NOW + 49.8 and tracker.due(NOW, NOW + 51)  # that one is due now


def test_readiness_is_triggered_by_the_start_unless_the_initial_delay_holds_it():
    now_spec = probed(readiness={"periodSeconds": 10})
    pod = running(now_spec, started=NOW)
    pod.tracks["c"].begin(NOW, lambda period: 0.0)
    assert plan_containers(pod, NOW) == []
    pod.tracks["c"].container_started(NOW)
    assert plan_containers(pod, NOW) == [RunProbes("u-1", (("c", "readiness"),), NOW)]
    late = running(probed(readiness={"periodSeconds": 10, "initialDelaySeconds": 3}), started=NOW)
    late.tracks["c"].begin(NOW, lambda period: 0.0)
    late.tracks["c"].container_started(NOW)
    assert plan_containers(late, NOW + 3) == []         # dropped during the delay: the tick then
    assert of(RunProbes, plan_containers(late, NOW + 10))


@pytest.mark.parametrize("age,sleep", [(0.0, 2.5), (9.9, 2.5), (10.0, 0.0), (60.0, 0.0)])
def test_only_a_kubelet_younger_than_the_period_sleeps_first(age, sleep):
    assert probe_sleep(10.0, age, 0.25) == sleep


def test_a_restarted_container_keeps_its_workers_ticks():
    spec = {"name": "c", "readinessProbe": {"periodSeconds": 5}}
    old = ContainerTrack.fresh(spec)
    old.begin(NOW, lambda period: 1.0)
    new = ContainerTrack.fresh(spec, old)
    assert (new.readiness.anchor, new.readiness.next_tick) == (NOW + 1.0, NOW + 1.0)
    alone = ContainerTrack.fresh(spec, ContainerTrack())   # no worker before: none carried
    assert alone.readiness.anchor is None and alone.probers() == [alone.readiness]


def test_the_kubelet_wakes_for_probes_back_offs_and_retries_only_ahead_of_now():
    pod = running(probed(readiness={"periodSeconds": 5}), down={"c": 1})
    pod.tracks["c"].backoff_until = NOW + 3
    state = LocalState({"u-1": pod}, {"u-2": CreateRetry(NOW + 7, 5.0)})
    assert next_due(state, NOW) == NOW + 3
    assert next_due(state, NOW + 3) == NOW + 7
    assert next_due(state, NOW + 7) is None


def test_both_probes_liveness_first_and_none_for_a_container_that_is_not_running():
    p = probed(readiness={"periodSeconds": 5}, liveness={"periodSeconds": 5})
    assert plan_containers(running(p), NOW) == [
        RunProbes("u-1", (("c", "liveness"), ("c", "readiness")), NOW)]
    down = running(p, down={"c": 1})
    down.tracks["c"].finished_at, down.tracks["c"].backoff_until = NOW, NOW + 10
    down.tracks["c"].backoff_noted = NOW + 10
    assert plan_containers(down, NOW) == []


def test_a_failed_attempt_is_an_unhealthy_event_a_success_is_nothing():
    pod = running(probed(readiness={"failureThreshold": 3}))
    tracker = pod.tracks["c"].readiness
    tracker.record(True, "ok", NOW)
    assert after_probes(pod, [("c", "readiness")]) == []
    tracker.record(False, "HTTP probe failed with statuscode: 500", NOW)
    (event,) = after_probes(pod, [("c", "readiness")])
    assert isinstance(event, RecordEvent)
    assert (event.note.type, event.note.reason, event.note.message, event.note.about["fieldPath"]) == (
        "Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 500",
        "spec.containers{c}")


def test_a_failed_readiness_verdict_stops_nothing_a_failed_liveness_one_stops_the_container():
    pod = running(probed(readiness={"failureThreshold": 1}, liveness={"failureThreshold": 2}))
    pod.tracks["c"].readiness.record(False, "down", NOW)
    assert of(StopContainer, after_probes(pod, [("c", "readiness")])) == []
    live = pod.tracks["c"].liveness
    live.record(False, "down", NOW)
    assert of(StopContainer, after_probes(pod, [("c", "liveness")])) == []   # below threshold
    live.record(False, "down", NOW + 10)
    unhealthy, stop = after_probes(pod, [("c", "liveness")])
    assert unhealthy.note.message == "Liveness probe failed: down"
    assert isinstance(stop, StopContainer) and (stop.uid, stop.name, stop.grace) == ("u-1", "c", 2.0)
    assert (stop.note.reason, stop.note.message) == (
        "Killing", "Container c failed liveness probe, will be restarted")


@pytest.mark.parametrize("grace,capped", [(None, 2.0), (60, 2.0), (2, 2.0), (1, 1.0), (0, 0.0)])
def test_a_liveness_stop_waits_the_pods_grace_capped_at_two_seconds(grace, capped):
    p = obj() if grace is None else obj(terminationGracePeriodSeconds=grace)
    assert liveness_grace(p) == capped


@pytest.mark.parametrize("policy,code,restarts", [
    ("Always", 143, True), ("OnFailure", 143, True), ("OnFailure", 0, False), ("Never", 143, False)])
def test_after_a_liveness_stop_the_restart_is_at_once_and_the_back_off_does_not_grow(
        policy, code, restarts):
    pod = running(obj(restart=policy), down={"c": code})
    track = pod.tracks["c"]
    track.liveness_killed, track.backoff, track.backoff_until = True, 4.0, NOW + 100
    actions = plan_containers(pod, NOW, only=["c"])
    assert actions[0] == ContainerEnded("u-1", "c", code, True, NOW)
    starts = of(StartContainer, actions)
    assert bool(starts) is restarts
    if restarts:
        assert (starts[0].backoff, starts[0].backoff_until) == (4.0, NOW + 4)


def test_only_limits_the_containers_planned():
    pod = running(obj(containers=("a", "b")), down={"a": 1, "b": 1})
    assert {a.name for a in plan_containers(pod, NOW, only=["b"])} == {"b"}


# -- adoption ----------------------------------------------------------------------------------

def test_adoption_keeps_live_sandboxes_and_cleans_up_dead_ones():
    assert plan_adoption({"a": True, "b": False}) == [AdoptPod("a"), CleanUpPod("b", 0.2)]
    assert plan_adoption({}) == []


# -- status ------------------------------------------------------------------------------------

def test_a_status_is_written_only_when_it_changed_heartbeat_times_aside():
    pod = running(obj())
    status = pod_status(observation(pod, "172.16.1.2", NOW), NOW)
    later = pod_status(observation(pod, "172.16.1.2", NOW + 60), NOW + 60)
    assert later != status                                      # the condition times moved ...
    assert not needs_report(later, status, status)              # ... which is no news
    assert needs_report(status, None, None)                     # first report
    assert needs_report(status, status, None)                   # not written by this kubelet yet
    assert needs_report(status, None, status)                   # the object lost it
    changed = copy.deepcopy(status)
    changed["containerStatuses"][0]["restartCount"] = 1
    assert needs_report(changed, status, status)


def test_every_pod_kept_running_gets_a_status_report():
    keep = obj()
    actions = plan([keep], LocalState({"u-1": running(keep)}), NOW)
    assert actions == [ReportStatus("u-1", keep)]


def test_a_failed_creation_reports_create_container_error_and_a_failed_event():
    status, note = creation_failure(obj(containers=("a", "b")), "pod default/p: boom", "172.16.1.2",
                                    NOW)
    assert status["phase"] == "Pending" and status["hostIP"] == "172.16.1.2"
    assert [s["state"] for s in status["containerStatuses"]] == [
        {"waiting": {"reason": "CreateContainerError", "message": "pod default/p: boom"}}] * 2
    assert (note.type, note.reason, note.message) == ("Warning", "Failed",
                                                      "Error: pod default/p: boom")


def test_a_sandbox_whose_network_failed_is_pending_in_container_creating_with_the_kubelets_event():
    message = ('failed to setup network for sandbox "abc": plugin type="bridge" name="kubenet" '
               "failed (add): no IP addresses available")
    status, note = creation_failure(obj(containers=("a", "b")), message, "172.16.1.2", NOW,
                                    sandbox=True)
    assert status["phase"] == "Pending" and "podIP" not in status
    assert [s["state"] for s in status["containerStatuses"]] == [
        {"waiting": {"reason": "ContainerCreating"}}] * 2
    assert (note.type, note.reason) == ("Warning", "FailedCreatePodSandBox")
    assert note.message == ("Failed to create pod sandbox: rpc error: code = Unknown desc = "
                            + message)


def test_failed_creations_back_off_doubling_from_five_seconds_to_the_cap():
    state, delays = LocalState(), []
    now = NOW
    for _ in range(7):
        (create,) = of(CreatePod, plan([obj()], state, now))
        delays.append(create.delay)
        assert create.retry_at == now + create.delay
        state.retries["u-1"] = CreateRetry(create.retry_at, create.delay)  # it failed
        assert of(CreatePod, plan([obj()], state, create.retry_at - 0.1)) == []
        now = create.retry_at
    assert delays == [5, 10, 20, 40, CREATE_RETRY_MAX, CREATE_RETRY_MAX, CREATE_RETRY_MAX]


def test_a_restarted_track_starts_over_but_keeps_back_off_and_last_exit():
    spec = {"name": "c", "readinessProbe": {"periodSeconds": 5}}
    old = ContainerTrack.fresh(spec)
    old.readiness.result, old.backoff, old.backoff_until, old.last_exit = True, 4.0, NOW, 1
    old.finished_at, old.liveness_killed, old.backoff_noted = NOW, True, NOW
    new = ContainerTrack.fresh(spec, old)
    assert new.readiness.result is None and new.finished_at is None and not new.liveness_killed
    assert (new.backoff, new.backoff_until, new.last_exit) == (4.0, NOW, 1)
