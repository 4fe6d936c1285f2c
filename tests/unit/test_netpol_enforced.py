"""A scenario step that writes returns once every running policy agent enforces the result:
for each kind the agents watch, an agent must hold as many objects as the API and have seen
the newest one's version. A lagging agent fails the step; a dead one, or one a fault cut off
from the API server, is not waited for; without any NetworkPolicy nothing is waited for."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from testbed.emu import faults, rundir
from testbed.emu.controlplane import ControlPlane, ControlPlaneError
from testbed.scenario.steps import Outcome, enforced, policies_exist


class FakeClient:
    def __init__(self, versions: dict[str, list[int]]):
        self.versions = versions

    def list(self, kind: str):
        return [{"metadata": {"resourceVersion": str(v)}} for v in self.versions.get(kind, [])], "1"


class FakeAgent:
    def __init__(self, pid: int, alive: bool = True):
        self.pid, self.alive = pid, alive

    def running(self) -> bool:
        return self.alive


def worker(name: str, mode: str = "iptables"):
    return SimpleNamespace(name=name, role="worker", policy_mode=mode)


def control_plane(tmp_path, agents: dict, workers, versions=None) -> ControlPlane:
    cp = ControlPlane.__new__(ControlPlane)
    cp.topo = SimpleNamespace(workers=workers)
    cp.agents = agents
    cp.record = SimpleNamespace(directory=tmp_path)
    cp.client = FakeClient(versions or {})
    return cp


def report(tmp_path, node: str, pid: int, caught_up: dict) -> None:
    directory = rundir.netpol_directory(tmp_path, node)
    directory.mkdir(parents=True, exist_ok=True)
    rundir.write_netpol_status(directory, rundir.NetpolStatus("iptables", node, pid, 1, 0.0,
                                                              None, 0, 0, 1, caught_up))


API = {"Pod": [3, 9], "Namespace": [4], "NetworkPolicy": [7], "Service": [99]}
CAUGHT_UP = {"Pod": [2, 9], "Namespace": [1, 4], "NetworkPolicy": [1, 7]}


def test_the_marks_are_per_kind_the_agents_watch(tmp_path):
    cp = control_plane(tmp_path, {}, [], API)
    assert cp.policy_marks() == CAUGHT_UP            # a Service's version is no agent's business


def test_waiting_ends_when_every_running_agent_caught_up(tmp_path):
    agents = {"netpol-w1": FakeAgent(10), "netpol-w2": FakeAgent(20),
              "netpol-w3": FakeAgent(30, alive=False), "netpol-w5": FakeAgent(50)}
    cp = control_plane(tmp_path, agents, [worker("w1"), worker("w2"), worker("w3"),
                                          worker("w4", "none"), worker("w5")], API)
    report(tmp_path, "w1", 10, CAUGHT_UP)
    report(tmp_path, "w2", 20, {**CAUGHT_UP, "Pod": [2, 11]})      # seen later changes: fine
    assert cp.wait_policies_enforced(timeout=1, skip={"w5": "its uplink is down"}) == ["w1", "w2"]


@pytest.mark.parametrize(("mark", "why"), [
    ({**CAUGHT_UP, "Pod": [2, 8]}, "Pod [2, 8] of [2, 9]"),                 # behind on a kind
    ({**CAUGHT_UP, "NetworkPolicy": [2, 7]}, "NetworkPolicy [2, 7] of [1, 7]"),   # a deletion missed
    ({"Pod": [2, 9], "Namespace": [1, 4]}, "NetworkPolicy [0, 0] of [1, 7]"),    # a kind not seen
])
def test_an_agent_behind_on_any_kind_fails_with_the_reason(tmp_path, mark, why):
    cp = control_plane(tmp_path, {"netpol-w1": FakeAgent(10)}, [worker("w1")], API)
    report(tmp_path, "w1", 10, mark)
    started = time.monotonic()
    with pytest.raises(ControlPlaneError) as info:
        cp.wait_policies_enforced(timeout=0.2)
    assert time.monotonic() - started < 2
    assert "did not enforce the change within 0.2s" in str(info.value) and why in str(info.value)


def test_a_status_written_by_a_predecessor_does_not_count(tmp_path):
    cp = control_plane(tmp_path, {"netpol-w1": FakeAgent(10)}, [worker("w1")], API)
    report(tmp_path, "w1", 9, CAUGHT_UP)
    with pytest.raises(ControlPlaneError, match="no sync of its own yet"):
        cp.wait_policies_enforced(timeout=0.1)


class StepCluster:
    def __init__(self, policies: list, fail=False, modes=("iptables",)):
        self.topo = SimpleNamespace(workers=[worker(f"w{i + 1}", m) for i, m in enumerate(modes)],
                                    master=SimpleNamespace(name="master"))
        self.client = FakeClient({"NetworkPolicy": policies})
        self.links_down, self.partition_groups = set(), []
        self.waited: list[dict] = []
        cluster = self

        class CP:
            def wait_policies_enforced(self, skip=None):
                cluster.waited.append(skip)
                if fail:
                    raise ControlPlaneError("the NetworkPolicy agents did not enforce the change")
                return [w.name for w in cluster.topo.workers if w.name not in (skip or {})]

        self.cp = CP()


def test_a_write_waits_when_there_are_policies_now_or_before():
    c = StepCluster([5])
    assert policies_exist(c)
    outcome = enforced(c, Outcome(True, "apply x", "applied"), had_policies=False)
    assert outcome.passed and outcome.observed.startswith("applied; enforced by the NetworkPolicy "
                                                          "agents of w1 (") and c.waited == [{}]
    gone = StepCluster([])                     # the step deleted the last policy
    assert enforced(gone, Outcome(True, "delete p", "deleted"), had_policies=True).passed
    assert gone.waited == [{}]


def test_without_policies_or_agents_nothing_is_waited_for():
    none = StepCluster([])
    assert enforced(none, Outcome(True, "apply x", "applied"), had_policies=False).observed == "applied"
    assert none.waited == []
    off = StepCluster([5], modes=("none",))
    assert not policies_exist(off)
    assert enforced(off, Outcome(True, "apply x", "applied"), had_policies=False).observed == "applied"
    assert not policies_exist(SimpleNamespace(cp=None))


def test_a_lagging_agent_fails_the_step_and_a_failed_step_stays_failed():
    failed = enforced(StepCluster([5], fail=True), Outcome(True, "apply x", "applied"), True)
    assert not failed.passed and failed.observed.startswith("applied; but the NetworkPolicy agents")
    c = StepCluster([5])
    assert not enforced(c, Outcome(False, "x", "no"), True).passed and c.waited == []


def test_agents_cut_off_by_a_fault_are_named_not_waited_for():
    c = StepCluster([5], modes=("iptables", "iptables", "iptables"))
    c.links_down = {"w1"}
    c.partition_groups = [[["w2"], ["master", "w3"]]]
    outcome = enforced(c, Outcome(True, "label x", "labelled"), True)
    assert c.waited == [{"w1": "its uplink is down", "w2": "partitioned from the master"}]
    assert outcome.passed and "agents of w3" in outcome.observed
    assert outcome.observed.endswith("not waited for, cut off from the API server: w1 (its uplink "
                                     "is down), w2 (partitioned from the master)")
    c.links_down = {"master"}
    assert set(faults.cut_off(c)) == {"w1", "w2", "w3"}
