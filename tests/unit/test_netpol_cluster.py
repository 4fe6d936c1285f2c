"""The NetworkPolicy agent in the cluster: how the control plane starts it and waits for it,
which agents a node fault stops, and how its rules are shown (emu/controlplane.py,
emu/faults.py, emu/inspect.py, `testbed netpol`). Nothing here needs root: the agent's
process is this test's own, its status file written by hand."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from testbed.emu import rundir
from testbed.emu.controlplane import Agent, ControlPlane, ControlPlaneError, has_netpol
from testbed.emu.record import Record, start_time
from testbed.spec.topology import load_topology


@pytest.fixture
def topo(write):
    return load_topology(write("t.yaml", """
        workers:
          - {name: w1, kubeProxy: {mode: nftables}}
          - {name: w2, networkPolicy: {mode: none}}
          - w3
    """))


@pytest.fixture
def cp(topo, tmp_path):
    return ControlPlane(topo, SimpleNamespace(pid=lambda name: os.getpid()), Record(tmp_path),
                        progress=lambda text: None)


def running_agent(cp: ControlPlane, node: str) -> Agent:
    """An agent entry whose process is this test (alive), as start_agent records one."""
    agent = Agent("netpol", node, cp._argv("netpol", cp.topo.node(node)), os.getpid(),
                  start_time(os.getpid()))
    cp.agents[agent.name] = agent
    return agent


def write_status(cp: ControlPlane, node: str, pid: int) -> None:
    directory = rundir.netpol_directory(cp.record.directory, node)
    directory.mkdir(parents=True, exist_ok=True)
    rundir.write_netpol_status(directory, rundir.NetpolStatus("iptables", node, pid, 1, 1.0, None,
                                                              0, 0, 1))


def test_the_agent_runs_where_the_policy_mode_is_not_none(topo):
    assert [(n.name, has_netpol(n)) for n in topo.nodes] == [
        ("master", False), ("w1", True), ("w2", False), ("w3", True)]


def test_its_command_line_is_the_agents_contract(cp, tmp_path):
    argv = cp._argv("netpol", cp.topo.node("w1"))
    assert argv == ["testbed.agents.netpol", "--api", cp.api, "--node", "w1", "--mode", "nftables",
                    "--state-dir", str(tmp_path / "netpol" / "w1")]
    assert cp._argv("netpol", cp.topo.node("w3"))[5:7] == ["--mode", "iptables"]
    assert Agent("netpol", "w1", argv).name == "netpol-w1"   # logs/netpol-w1.log


def test_no_agent_starts_on_a_node_without_one(cp):
    with pytest.raises(ControlPlaneError, match="no NetworkPolicy agent on w2: its network "
                                                "policy mode is none"):
        cp.restart("netpol", "w2")
    assert "netpol-w2" not in cp.agents


def test_the_wait_is_over_once_each_agent_reported_a_sync_of_its_own(cp):
    agent = running_agent(cp, "w1")
    assert not cp.netpol_synced("w1")                 # no status yet
    write_status(cp, "w1", agent.pid + 1)             # an earlier process's status
    assert not cp.netpol_synced("w1")
    write_status(cp, "w1", agent.pid)
    assert cp.netpol_synced("w1")
    cp.wait_netpol(["w1"], timeout=1)
    cp.wait_agent(agent, timeout=1)                   # a restart waits the same way


def test_a_timeout_names_the_node_its_status_file_and_the_end_of_its_log(cp):
    running_agent(cp, "w1")
    running_agent(cp, "w3")
    write_status(cp, "w1", os.getpid())
    log = rundir.agent_log(cp.record.directory, "netpol-w3")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"line {i}\n" for i in range(20)) + "cannot reach the API server\n")
    with pytest.raises(ControlPlaneError) as info:
        cp.wait_netpol(["w1", "w3"], timeout=0.2, interval=0.05)
    message = str(info.value)
    assert message.startswith("timed out after 0.2s waiting for the NetworkPolicy agent on w3 to "
                              "report a sync\nw3: no status of its own in ")
    assert str(rundir.netpol_directory(cp.record.directory, "w3") / "netpol.json") in message
    assert message.endswith("line 19\n  cannot reach the API server")
    assert "line 12" not in message and "w1:" not in message


def test_an_agent_that_exited_is_reported_at_once_with_its_log(cp):
    agent = running_agent(cp, "w3")
    agent.start = -1                                   # not the process that runs under its pid
    log = rundir.agent_log(cp.record.directory, "netpol-w3")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("Traceback ...\nModuleNotFoundError: No module named 'x'\n")
    with pytest.raises(ControlPlaneError, match="(?s)netpol on w3 exited:\n.*No module named"):
        cp.wait_netpol(["w3"], timeout=5)


def test_a_node_fault_stops_and_starts_the_agent_with_kubelet_and_kube_proxy(topo):
    from testbed.emu.faults import _node_agents

    cluster = SimpleNamespace(topo=topo)
    assert _node_agents(cluster, "w1") == ("kubelet", "kube-proxy", "netpol")
    assert _node_agents(cluster, "w2") == ("kubelet", "kube-proxy")


# -- showing its rules -------------------------------------------------------------------------

SAVE = """\
# Generated by iptables-save v1.8.9 (nf_tables) on Mon Jan  1 00:00:00 2024
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NWPLCY-FORWARD - [0:0]
:KUBE-NWPLCY-ABCDEF - [0:0]
:KUBE-POD-FW-123456 - [0:0]
-A INPUT -j KUBE-NWPLCY-INPUT
-A FORWARD -m comment --comment "network policy" -j KUBE-NWPLCY-FORWARD
-A FORWARD -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-NWPLCY-FORWARD -d 10.244.0.5/32 -j KUBE-POD-FW-123456
-A KUBE-POD-FW-123456 -j KUBE-NWPLCY-ABCDEF
-A KUBE-NWPLCY-ABCDEF -m set --match-set KUBE-NP-P-XYZ src -j MARK --set-xmark 0x10000/0x10000
COMMIT
# Completed on Mon Jan  1 00:00:00 2024
"""

IPSETS = """\
Name: KUBE-NP-P-XYZ
Type: hash:ip
Revision: 6
Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1
Size in memory: 216
References: 1
Number of entries: 2
Members:
10.244.1.3
10.244.0.7

Name: someone-else
Type: hash:ip
Members:
1.2.3.4

Name: KUBE-NP-N-ABC
Type: hash:net
Members:
"""


def test_the_filter_table_cut_to_the_agents_chains_and_the_jumps_to_them():
    from testbed.emu.inspect import policy_filter_rules

    assert policy_filter_rules(SAVE).splitlines() == [
        "*filter",
        ":KUBE-NWPLCY-FORWARD - [0:0]",
        ":KUBE-NWPLCY-ABCDEF - [0:0]",
        ":KUBE-POD-FW-123456 - [0:0]",
        "-A INPUT -j KUBE-NWPLCY-INPUT",
        '-A FORWARD -m comment --comment "network policy" -j KUBE-NWPLCY-FORWARD',
        "-A KUBE-NWPLCY-FORWARD -d 10.244.0.5/32 -j KUBE-POD-FW-123456",
        "-A KUBE-POD-FW-123456 -j KUBE-NWPLCY-ABCDEF",
        "-A KUBE-NWPLCY-ABCDEF -m set --match-set KUBE-NP-P-XYZ src -j MARK --set-xmark "
        "0x10000/0x10000",
        "COMMIT"]
    assert policy_filter_rules("") == ""


def test_the_ipsets_cut_to_the_agents_own():
    from testbed.emu.inspect import policy_sets

    shown = policy_sets(IPSETS)
    assert [line for line in shown.splitlines() if line.startswith("Name: ")] == [
        "Name: KUBE-NP-P-XYZ", "Name: KUBE-NP-N-ABC"]
    assert "10.244.0.7\n\nName: KUBE-NP-N-ABC" in shown and "1.2.3.4" not in shown
    assert policy_sets("Name: other\nMembers:\n") == ""


def test_the_mode_shown_is_the_agents_then_the_topologys(tmp_path, topo):
    from testbed.emu.inspect import netpol_mode, netpol_rules
    from testbed.spec.topology import topology_to_dict

    assert netpol_mode(tmp_path, "w1") == "iptables"           # nothing known: iptables
    rundir.write_cluster_info(tmp_path, {"topology": topology_to_dict(topo)})
    assert [netpol_mode(tmp_path, n) for n in ("w1", "w2", "w3")] == ["nftables", "none", "iptables"]
    directory = rundir.netpol_directory(tmp_path, "w3")
    directory.mkdir(parents=True)
    rundir.write_netpol_status(directory, rundir.NetpolStatus("nftables", "w3", 1))
    assert netpol_mode(tmp_path, "w3") == "nftables"           # what runs, over the file
    assert "no NetworkPolicy agent runs here" in netpol_rules(os.getpid(), "none")


def test_testbed_netpol_without_a_cluster_says_so(tmp_path):
    import subprocess

    env = dict(os.environ, TESTBED_RUN_ROOT=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "testbed", "netpol", "w1"], env=env,
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 1
    assert done.stderr.startswith("testbed netpol: no cluster is running")
