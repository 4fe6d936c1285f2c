"""A scenario step that writes pods, namespaces or policies returns once every running policy
agent enforces the result (its status file's resourceVersion), so the next step probes the
new rules; a lagging agent fails the step, and a dead one is not waited for."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from testbed.emu import rundir
from testbed.emu.controlplane import ControlPlane, ControlPlaneError
from testbed.scenario.steps import Outcome, enforced


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


def report(tmp_path, node: str, pid: int, version: int) -> None:
    directory = rundir.netpol_directory(tmp_path, node)
    directory.mkdir(parents=True, exist_ok=True)
    rundir.write_netpol_status(directory, rundir.NetpolStatus("iptables", node, pid, 1, 0.0,
                                                              None, 0, 0, 1, version))


def test_the_version_to_reach_is_the_newest_of_what_agents_watch_and_what_was_written(tmp_path):
    cp = control_plane(tmp_path, {}, [], {"Pod": [3, 9], "Namespace": [4], "NetworkPolicy": [7],
                                          "Service": [99]})
    assert cp.policy_version() == 9                     # a Service's version is not waited for
    assert cp.policy_version(["12", None, "x", 5]) == 12


def test_waiting_ends_when_every_running_agent_reached_the_version(tmp_path):
    agents = {"netpol-w1": FakeAgent(10), "netpol-w2": FakeAgent(20), "netpol-w3": FakeAgent(30, alive=False)}
    cp = control_plane(tmp_path, agents, [worker("w1"), worker("w2"), worker("w3"), worker("w4", "none")])
    report(tmp_path, "w1", 10, 15)
    report(tmp_path, "w2", 20, 15)
    assert cp.wait_policies_enforced(15, timeout=1) == ["w1", "w2"]     # w3 dead, w4 without


def test_an_agent_behind_or_a_status_of_a_predecessor_fails_with_the_reason(tmp_path):
    agents = {"netpol-w1": FakeAgent(10), "netpol-w2": FakeAgent(20)}
    cp = control_plane(tmp_path, agents, [worker("w1"), worker("w2")])
    report(tmp_path, "w1", 10, 14)
    report(tmp_path, "w2", 19, 99)            # written by the agent before a restart
    started = time.monotonic()
    with pytest.raises(ControlPlaneError) as info:
        cp.wait_policies_enforced(15, timeout=0.2)
    assert time.monotonic() - started < 2
    message = str(info.value)
    assert "did not enforce the change within 0.2s" in message
    assert "w1 at resourceVersion 14" in message and "w2 at resourceVersion 99" in message
    assert "wanted 15" in message


def test_a_step_waits_and_says_so_or_fails():
    calls = []

    class CP:
        def policy_version(self, written):
            calls.append(written)
            return 42

        def __init__(self, fail=False):
            self.fail = fail

        def wait_policies_enforced(self, version):
            if self.fail:
                raise ControlPlaneError("the NetworkPolicy agents did not enforce the change")
            return ["w1"]

    topo = SimpleNamespace(workers=[worker("w1")])
    outcome = enforced(SimpleNamespace(cp=CP(), topo=topo), Outcome(True, "apply x", "applied"), ["7"])
    assert outcome.passed and "enforced by the NetworkPolicy agents of w1 (resourceVersion 42" \
        in outcome.observed and outcome.details["enforcedAt"] == 42 and calls == [["7"]]
    failed = enforced(SimpleNamespace(cp=CP(fail=True), topo=topo), Outcome(True, "apply x", "applied"))
    assert not failed.passed and failed.observed.startswith("applied; but the NetworkPolicy agents")
    # no agents at all, or a step that failed already: nothing to wait for
    none = SimpleNamespace(cp=CP(fail=True), topo=SimpleNamespace(workers=[worker("w1", "none")]))
    assert enforced(none, Outcome(True, "apply x", "applied")).passed
    assert not enforced(SimpleNamespace(cp=CP(), topo=topo), Outcome(False, "x", "no")).passed
    assert enforced(SimpleNamespace(topo=topo), Outcome(True, "x", "fine")).observed == "fine"
