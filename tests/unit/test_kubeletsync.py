"""The kubelet's plan applied through a fake runtime and API (agents/kubeletsync.py), as the
proxier is tested over a fake backend: what the kubelet asks of the runtime, which Events and
statuses it writes, its state file, over several syncs and a fake clock. No root."""

from __future__ import annotations

import json

import pytest

from testbed.agents.kubeletsync import PodFailed, PodSync
from testbed.emu.rundir import (
    SavedContainer,
    SavedPod,
    read_kubelet_state,
    write_kubelet_state,
)
from tests.unit.fake_kubelet import FakeApi, FakeRuntime


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def pod(name: str = "web", uid: str = "u-1", containers: tuple[str, ...] = ("c",),
        restart: str | None = None, **spec: object) -> dict:
    body: dict = {"nodeName": "w1", "containers": [{"name": c, "image": "nginx"} for c in containers],
                  **spec}
    if restart:
        body["restartPolicy"] = restart
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": "default", "name": name, "uid": uid}, "spec": body}


@pytest.fixture
def kubelet(tmp_path):
    clock = Clock()
    runtime, api = FakeRuntime(clock), FakeApi()
    # a kubelet up for a while: its probe workers start without upstream's random first sleep
    sync = PodSync(runtime, api, tmp_path, "w1", "172.16.1.2", clock=clock, started=clock.now - 100)
    return sync, runtime, api, clock


def last_status(api: FakeApi, name: str = "web") -> dict:
    return [s for n, s in api.statuses if n == name][-1]


def container(status: dict, name: str = "c") -> dict:
    return next(c for c in status["containerStatuses"] if c["name"] == name)


# -- creation ----------------------------------------------------------------------------------

def test_a_new_pod_runs_is_announced_reported_and_saved(kubelet, tmp_path):
    sync, runtime, api, _ = kubelet
    p = pod(containers=("a", "b"))
    sync.sync([p])
    assert runtime.calls == [("run_pod", "u-1")]
    assert api.events() == [
        ("Pulled", 'Container image "nginx" already present on machine'),
        ("Created", "Created container: a"), ("Started", "Started container a"),
        ("Pulled", 'Container image "nginx" already present on machine'),
        ("Created", "Created container: b"), ("Started", "Started container b")]
    status = last_status(api)
    assert status["phase"] == "Running" and status["podIP"].startswith("10.0.1.")
    assert {c["name"]: c["ready"] for c in status["containerStatuses"]} == {"a": True, "b": True}
    saved = read_kubelet_state(tmp_path, "w1")["u-1"]
    assert (saved.name, saved.node, saved.manifest) == ("web", "w1", p)
    assert set(saved.containers) == {"a", "b"}
    p = dict(p, status=status)      # the API server's copy now has it
    sync.sync([p])                  # nothing new: no second pod, no second status write
    assert runtime.calls == [("run_pod", "u-1")] and len(api.statuses) == 1


def test_a_failed_creation_is_reported_and_retried_after_five_seconds(kubelet):
    sync, runtime, api, clock = kubelet
    runtime.fail["u-1"] = "pod default/web: spec.containers[0] (c): no such command"
    sync.sync([pod()])
    assert api.events() == [("Failed", "Error: pod default/web: spec.containers[0] (c): no such command")]
    assert container(last_status(api))["state"] == {"waiting": {
        "reason": "CreateContainerError",
        "message": "pod default/web: spec.containers[0] (c): no such command"}}
    clock.now += 4
    sync.sync([pod()])
    assert runtime.calls == [("run_pod", "u-1")]               # not yet
    del runtime.fail["u-1"]
    clock.now += 1
    sync.sync([pod()])
    assert runtime.calls == [("run_pod", "u-1")] * 2 and "u-1" in sync.pods


def test_a_failed_sandbox_network_is_reported_as_upstream_and_retried_with_a_growing_back_off(kubelet):
    sync, runtime, api, clock = kubelet
    why = ('failed to setup network for sandbox "0123": plugin type="bridge" name="kubenet" '
           "failed (add): failed to allocate for range 0")
    runtime.fail["u-1"] = PodFailed(why, sandbox=True)
    sync.sync([pod()])
    assert api.events() == [("FailedCreatePodSandBox", "Failed to create pod sandbox: rpc error: "
                                                      "code = Unknown desc = " + why)]
    status = last_status(api)
    assert status["phase"] == "Pending"
    assert container(status)["state"] == {"waiting": {"reason": "ContainerCreating"}}
    clock.now += 5
    sync.sync([pod()])                      # the second try, after 5 s, fails again
    clock.now += 9.9
    sync.sync([pod()])
    assert runtime.calls == [("run_pod", "u-1")] * 2          # the next one waits 10 s
    del runtime.fail["u-1"]
    clock.now += 0.1
    sync.sync([pod()])
    assert runtime.calls == [("run_pod", "u-1")] * 3 and "u-1" in sync.pods
    assert sync.local.retries == {}


# -- teardown ----------------------------------------------------------------------------------

def test_a_deleted_pod_stops_with_its_grace_capped_then_its_object_goes(kubelet, tmp_path):
    sync, runtime, api, _ = kubelet
    sync.sync([pod()])
    deleting = pod()
    deleting["metadata"].update(deletionTimestamp="2024-01-01T00:00:00Z",
                                deletionGracePeriodSeconds=3600)
    sync.sync([deleting])
    assert runtime.calls[-1] == ("delete_pod", "u-1", 30.0)
    assert api.events()[-1] == ("Killing", "Stopping container c")
    assert api.removed == ["web"] and sync.pods == {}
    assert read_kubelet_state(tmp_path, "w1") == {}


def test_a_pod_whose_object_vanished_is_stopped_quickly(kubelet):
    sync, runtime, api, _ = kubelet
    sync.sync([pod()])
    sync.sync([])
    assert runtime.calls[-1] == ("delete_pod", "u-1", 0.5) and api.removed == []


# -- restarts ----------------------------------------------------------------------------------

def test_a_crashing_container_restarts_with_a_doubling_back_off_and_one_event_per_window(kubelet):
    sync, runtime, api, clock = kubelet
    sync.sync([pod()])
    api.notes.clear()
    runtime.crash("u-1", "c", 1)
    sync.sync([pod()])                      # first restart at once, back-off 1 s from now
    assert runtime.calls[-2:] == [("end_container", "u-1", "c"), ("start_container", "u-1", "c")]
    assert container(last_status(api))["restartCount"] == 1
    assert container(last_status(api))["lastState"]["terminated"]["exitCode"] == 1
    runtime.crash("u-1", "c", 1)
    clock.now += 0.5
    sync.sync([pod()])
    sync.sync([pod()])
    backoffs = [m for r, m in api.events() if r == "BackOff"]
    assert backoffs == ["Back-off restarting failed container c in pod web_default(u-1)"]
    assert container(last_status(api))["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert last_status(api)["phase"] == "Running"
    clock.now += 0.5                        # 1 s after the restart: the window is over
    sync.sync([pod()])
    assert container(last_status(api))["restartCount"] == 2
    runtime.crash("u-1", "c", 1)
    clock.now += 1.9                        # the next window is 2 s
    sync.sync([pod()])
    assert container(last_status(api))["restartCount"] == 2
    clock.now += 0.1
    sync.sync([pod()])
    assert container(last_status(api))["restartCount"] == 3
    assert len([r for r, _ in api.events() if r == "BackOff"]) == 2


def test_on_failure_a_clean_exit_is_not_restarted_and_the_pod_succeeds(kubelet):
    sync, runtime, api, _ = kubelet
    sync.sync([pod(restart="OnFailure")])
    runtime.crash("u-1", "c", 0)
    sync.sync([pod(restart="OnFailure")])
    assert ("start_container", "u-1", "c") not in runtime.calls
    assert last_status(api)["phase"] == "Succeeded"


def test_a_container_killed_while_no_kubelet_watched_has_an_unknown_exit(kubelet):
    sync, runtime, api, _ = kubelet
    sync.sync([pod(restart="Never")])
    runtime.crash("u-1", "c", None)
    sync.sync([pod(restart="Never")])
    state = container(last_status(api))["state"]
    assert state["terminated"]["exitCode"] == 137 and last_status(api)["phase"] == "Failed"


# -- probes ------------------------------------------------------------------------------------

def probed(kind: str, **probe: object) -> dict:
    p = pod()
    p["spec"]["containers"][0][f"{kind}Probe"] = {"httpGet": {"port": 80}, **probe}
    return p


def test_readiness_gates_ready_and_a_failed_attempt_is_an_unhealthy_event(kubelet):
    sync, runtime, api, clock = kubelet
    p = probed("readiness", periodSeconds=1, failureThreshold=1)
    runtime.probe = lambda uid, name, probe: (False, "connection refused")
    sync.sync([p])
    assert ("Unhealthy", "Readiness probe failed: connection refused") in api.events()
    assert container(last_status(api))["ready"] is False
    runtime.probe = lambda uid, name, probe: (True, "ok")
    clock.now += 1
    sync.sync([p])
    assert container(last_status(api))["ready"] is True
    assert [c for c in runtime.calls if c[0] == "run_probes"] == [("run_probes", "u-1", ("c",))] * 2


def test_readiness_runs_when_the_container_starts_then_on_the_workers_ticks(kubelet):
    sync, runtime, api, clock = kubelet
    p = probed("readiness", periodSeconds=2)
    runtime.probe = lambda uid, name, probe: (False, "connection refused")
    sync.sync([p])                                    # started, probed at once: not ready yet
    runs = lambda: len([c for c in runtime.calls if c[0] == "run_probes"])  # noqa: E731
    assert runs() == 1 and sync.next_due() == 1002.0  # the tick: two seconds after the first sync
    clock.now = 1001.9
    sync.sync([p])
    assert runs() == 1
    runtime.probe = lambda uid, name, probe: (True, "ok")
    clock.now = 1002.0
    sync.sync([p])
    assert runs() == 2 and container(last_status(api))["ready"] is True
    assert sync.next_due() == 1004.0


def test_a_kubelet_started_within_a_period_sleeps_a_random_part_of_it_before_probing(tmp_path):
    clock = Clock()
    runtime, api = FakeRuntime(clock), FakeApi()
    sync = PodSync(runtime, api, tmp_path, "w1", "172.16.1.2", clock=clock,
                   started=clock.now - 0.5, jitter=lambda: 0.25)
    p = probed("readiness", periodSeconds=2)
    runtime.probe = lambda uid, name, probe: (True, "ok")
    sync.sync([p])
    assert [c for c in runtime.calls if c[0] == "run_probes"] == []   # asleep: the start's run waits
    assert sync.next_due() == 1000.5                                  # a quarter of the period
    clock.now = 1000.5
    sync.sync([p])
    assert container(last_status(api))["ready"] is True
    assert sync.next_due() == 1002.5                                  # ticks count from the wake


def test_a_failed_liveness_verdict_stops_and_restarts_the_container_at_once(kubelet):
    sync, runtime, api, clock = kubelet
    p = probed("liveness", periodSeconds=1, failureThreshold=2)
    p["spec"]["terminationGracePeriodSeconds"] = 60
    runtime.probe = lambda uid, name, probe: (False, "down")
    sync.sync([p])
    assert [c for c in runtime.calls if c[0] == "run_probes"] == []   # liveness: on its first tick
    clock.now += 1
    sync.sync([p])
    assert ("stop_container", "u-1", "c", 2.0) not in runtime.calls     # one failure so far
    clock.now += 1
    sync.sync([p])
    assert runtime.calls[-3:] == [("stop_container", "u-1", "c", 2.0),
                                  ("end_container", "u-1", "c"), ("start_container", "u-1", "c")]
    assert api.events()[-5:] == [
        ("Unhealthy", "Liveness probe failed: down"),
        ("Killing", "Container c failed liveness probe, will be restarted"),
        ("Pulled", 'Container image "nginx" already present on machine'),
        ("Created", "Created container: c"), ("Started", "Started container c")]
    status = container(last_status(api))
    assert status["restartCount"] == 1 and status["lastState"]["terminated"]["exitCode"] == 143
    track = sync.pods["u-1"].tracks["c"]
    assert track.backoff == 0.0 and not track.liveness_killed   # no back-off grown; fresh books


def test_liveness_under_never_stops_without_restarting(kubelet):
    sync, runtime, api, clock = kubelet
    p = probed("liveness", periodSeconds=1, failureThreshold=1)
    p["spec"]["restartPolicy"] = "Never"
    runtime.probe = lambda uid, name, probe: (False, "down")
    sync.sync([p])
    clock.now += 1
    sync.sync([p])
    assert ("stop_container", "u-1", "c", 2.0) in runtime.calls
    assert ("start_container", "u-1", "c") not in runtime.calls
    assert last_status(api)["phase"] == "Failed"


# -- adoption ----------------------------------------------------------------------------------

def test_a_restarted_kubelet_adopts_live_pods_and_cleans_up_dead_ones(kubelet, tmp_path):
    sync, runtime, api, _ = kubelet
    live, dead = pod("live", "u-l"), pod("dead", "u-d")
    write_kubelet_state(tmp_path, "w1", {
        "u-l": SavedPod("u-l", "default", "live", 900.0, 11, 5, None,
                        {"c": SavedContainer(12, 6, 900.0, 2)}, live),
        "u-d": SavedPod("u-d", "default", "dead", 900.0, 0, 5, None, {}, dead)})
    sync.adopt()
    assert runtime.calls == [("adopt", "u-l"), ("adopt", "u-d"), ("delete_pod", "u-d", 0.2)]
    assert set(sync.pods) == {"u-l"}
    assert set(read_kubelet_state(tmp_path, "w1")) == {"u-l"}
    sync.sync([live])                       # runs on: not created again, reported
    assert ("run_pod", "u-l") not in runtime.calls
    assert container(last_status(api, "live"))["restartCount"] == 2


def test_the_state_file_keeps_its_format(kubelet, tmp_path):
    sync, *_ = kubelet
    sync.sync([pod()])
    raw = json.loads((tmp_path / "kubelet-w1.json").read_text())
    entry = raw["u-1"]
    assert set(entry) == {"namespace", "name", "uid", "created", "pause", "attachment",
                          "containers", "manifest"}
    assert entry["pause"] == [4242, 7] and len(entry["attachment"]) == 4
    assert set(entry["containers"]["c"]) == {"pid", "start", "startedAt", "restartCount", "exitCode"}
