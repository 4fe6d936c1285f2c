"""The NetworkPolicy agent on a real two-node cluster, in both modes: started with kubelet and
kube-proxy, waited for until its first sync, killed and restarted through the control plane
(the status file's pid and time change, the rules stay while it is down), stopped and started
with its node, shown by `inspect: {netpol: NODE}` and `testbed netpol`; absent where the
topology says none; and `testbed run --network-policy` choosing the mode of a whole run."""

from __future__ import annotations

import json
import time

import pytest

from testbed.emu import faults, rundir
from testbed.emu.cluster import Cluster
from testbed.emu.controlplane import ControlPlaneError
from testbed.spec.topology import load_topology, with_modes

from .conftest import ROOT, TOPOLOGIES, leftovers, namespaces, root_snapshot, run_testbed

# What each mode's rules look like in `inspect: {netpol: NODE}`.
SIGN = {"iptables": "-A FORWARD -j KUBE-NWPLCY-FORWARD", "nftables": "table ip kube-netpol {"}


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def cluster(request):
    topo = with_modes(load_topology(TOPOLOGIES / "two-node.yaml"), policy={"*": request.param})
    c = Cluster(topo).up()
    try:
        yield c
    finally:
        c.down()


def mode_of(c: Cluster) -> str:
    return c.topo.workers[0].policy_mode


def status(c: Cluster, node: str) -> rundir.NetpolStatus:
    found = rundir.read_netpol_status(c.record.directory, node)
    assert found is not None, f"no status of the NetworkPolicy agent on {node}"
    return found


def test_every_worker_runs_the_agent_in_its_mode_and_it_synced_before_up_returned(cluster):
    mode = mode_of(cluster)
    described = {entry.what for entry in cluster.record.procs.values()}
    for worker in cluster.topo.workers:
        agent = cluster.cp.agents[f"netpol-{worker.name}"]
        assert agent.running()
        found = status(cluster, worker.name)
        assert (found.mode, found.node, found.pid) == (mode, worker.name, agent.pid)
        assert found.syncs >= 1 and found.generation >= 1 and found.last["ok"] is True
        assert f"netpol on {worker.name}" in described
        assert rundir.agent_log(cluster.record.directory, f"netpol-{worker.name}").exists()
    assert SIGN[mode] in faults.inspect(cluster, "netpol", "w1")


def test_a_killed_agent_leaves_its_rules_and_a_restarted_one_reports_a_sync_of_its_own(cluster):
    mode = mode_of(cluster)
    before = status(cluster, "w1")
    cluster.cp.kill("netpol", "w1")
    assert not cluster.cp.agents["netpol-w1"].running()
    assert status(cluster, "w1").pid == before.pid           # the file stays as it was
    assert SIGN[mode] in faults.inspect(cluster, "netpol", "w1")   # and so do the rules
    with pytest.raises(ControlPlaneError, match="no running netpol on w1"):
        cluster.cp.kill("netpol", "w1")
    agent = cluster.cp.restart("netpol", "w1")
    cluster.cp.wait_agent(agent, timeout=30)
    after = status(cluster, "w1")
    assert after.pid == agent.pid != before.pid
    assert after.time > before.time and after.syncs >= 1 and after.mode == mode
    text = faults.inspect(cluster, "netpol", "w1")
    # adopted, not duplicated: the jump into the agent's chain once
    assert text.count(SIGN[mode]) == 1, text


def test_a_node_down_stops_the_agent_and_up_starts_it_again(cluster):
    old = cluster.cp.agents["netpol-w2"].pid
    assert faults.node_state(cluster, "w2", False) == (
        "w2 down: kubelet, kube-proxy and netpol stopped, uplink down")
    assert not cluster.cp.agents["netpol-w2"].running()
    said = faults.node_state(cluster, "w2", True)
    assert said == "w2 up: uplink up, kubelet, kube-proxy and netpol started"
    agent = cluster.cp.agents["netpol-w2"]
    assert agent.running() and agent.pid != old
    cluster.cp.wait_agent(agent, timeout=30)
    assert status(cluster, "w2").pid == agent.pid


def test_testbed_netpol_shows_the_rules_from_another_terminal(cluster):
    result = run_testbed("netpol", "--cluster", cluster.record.directory.name, "w1")
    assert result.returncode == 0, result.stderr
    assert SIGN[mode_of(cluster)] in result.stdout
    other = "nftables" if mode_of(cluster) == "iptables" else "iptables"
    result = run_testbed("netpol", "--cluster", cluster.record.directory.name, "--mode", other, "w1")
    assert result.returncode == 0, result.stderr
    assert SIGN[mode_of(cluster)] not in result.stdout       # that mode has nothing here


def test_no_agent_where_the_topology_says_none():
    topo = with_modes(load_topology(TOPOLOGIES / "two-node.yaml"), policy={"w2": "none"})
    with Cluster(topo) as c:
        assert "netpol-w2" not in c.cp.agents and "netpol-w1" in c.cp.agents
        assert rundir.read_netpol_status(c.record.directory, "w2") is None
        assert "no NetworkPolicy agent runs here" in faults.inspect(c, "netpol", "w2")
        with pytest.raises(ControlPlaneError, match="no NetworkPolicy agent on w2"):
            c.cp.restart("netpol", "w2")
        assert faults.node_state(c, "w2", False) == "w2 down: kubelet and kube-proxy stopped, uplink down"
        assert faults.node_state(c, "w2", True) == "w2 up: uplink up, kubelet and kube-proxy started"


def test_testbed_run_network_policy_sets_the_mode_of_a_whole_run(tmp_path):
    before_root, before_ns = root_snapshot(), namespaces()
    path = tmp_path / "s.yaml"
    path.write_text(f"topology: {ROOT / 'topologies' / 'two-node.yaml'}\n"
                    "networkPolicy: {mode: none}\n"          # the flag wins over this
                    "steps:\n"
                    "  - kill: {agent: netpol, node: w1}\n"
                    "  - restart: {agent: netpol, node: w1}\n"
                    "  - inspect: {netpol: w1}\n"
                    "  - inspect: {netpol: w2}\n")
    refused = run_testbed("run", str(path))
    assert refused.returncode == 2                           # no agent to kill without the flag
    assert "no NetworkPolicy agent runs on w1" in refused.stderr
    report = tmp_path / "report.json"
    started = time.monotonic()
    result = run_testbed("run", str(path), "--network-policy", "nftables", "--json", str(report),
                         timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    steps = json.loads(report.read_text())["steps"]
    assert [s["passed"] for s in steps] == [True] * 4
    assert steps[1]["observed"].startswith("netpol on w1 restarted (pid ")
    assert SIGN["nftables"] in steps[2]["details"]["output"]
    assert SIGN["nftables"] in steps[3]["details"]["output"]
    assert time.monotonic() - started < 120
    assert root_snapshot() == before_root
    assert leftovers(before_ns) == set()
