"""The NetworkPolicy agent's modes from the scenario and the command line, and the steps that
name the agent: a scenario's networkPolicy override, --kube-proxy and --network-policy on
`testbed run` and `testbed validate`, kill/restart/inspect netpol and what preflight refuses."""

from __future__ import annotations

import textwrap

import pytest

from testbed.cli import main
from testbed.scenario.actions import Fault, NetFault
from testbed.scenario.spec import load_scenario
from testbed.spec.source import SpecError
from testbed.spec.topology import load_topology


@pytest.fixture
def files(tmp_path):
    """files(scenario_text, topology_text) -> the scenario's path."""

    def make(scenario: str, topology: str = "workers: [w1, w2]\n"):
        (tmp_path / "topo.yaml").write_text(textwrap.dedent(topology))
        path = tmp_path / "s.yaml"
        path.write_text("topology: topo.yaml\n" + textwrap.dedent(scenario))
        return path
    return make


def modes(topo) -> list[tuple[str, str, str]]:
    return [(w.name, w.proxy_mode, w.policy_mode) for w in topo.workers]


def test_scenario_network_policy_overrides_the_topology(files):
    from testbed.scenario.preflight import with_proxy_modes

    path = files("networkPolicy: {mode: none, nodes: {w2: nftables, w9: iptables}}\n",
                 "workers: [w1, w2, w3]\n")
    scenario = load_scenario(path)
    assert scenario.policy_modes == (("*", "none"), ("w2", "nftables"), ("w9", "iptables"))
    topo, problems = with_proxy_modes(scenario, load_topology(path.parent / "topo.yaml"))
    assert modes(topo) == [("w1", "iptables", "none"), ("w2", "iptables", "nftables"),
                           ("w3", "iptables", "none")]
    assert [(p.line, p.field, p.message) for p in problems] == [
        (2, "networkPolicy.nodes.w9",
         'Invalid value: "w9": not a worker of topology topo (workers: w1, w2, w3)')]


def test_scenario_kube_proxy_mode_carries_a_following_policy_mode(files):
    from testbed.scenario.preflight import with_proxy_modes

    path = files("kubeProxy: {mode: nftables}\n",
                 "workers: [w1, {name: w2, networkPolicy: {mode: iptables}}]\n")
    topo, _ = with_proxy_modes(load_scenario(path), load_topology(path.parent / "topo.yaml"))
    assert modes(topo) == [("w1", "nftables", "nftables"), ("w2", "nftables", "iptables")]


def test_scenario_network_policy_problems(files):
    with pytest.raises(SpecError) as info:
        load_scenario(files("networkPolicy: {mode: cilium, nodes: {w1: userspace}}\n"))
    assert [f"{p.line}: {p.field}: {p.message}" for p in info.value.problems] == [
        '2: networkPolicy.mode: Unsupported value: "cilium": supported values: "iptables", '
        '"nftables", "none"',
        '2: networkPolicy.nodes.w1: Unsupported value: "userspace": supported values: '
        '"iptables", "nftables", "none"']


def test_the_command_line_modes_win_over_scenario_and_topology(files):
    from testbed.scenario.runner import prepare

    path = files("kubeProxy: {mode: userspace}\nnetworkPolicy: {nodes: {w1: none}}\n",
                 "workers: [w1, {name: w2, networkPolicy: {mode: nftables}}]\n")
    assert modes(prepare(str(path)).topology) == [("w1", "userspace", "none"),
                                                  ("w2", "userspace", "nftables")]
    assert modes(prepare(str(path), "nftables").topology) == [("w1", "nftables", "none"),
                                                              ("w2", "nftables", "nftables")]
    assert modes(prepare(str(path), None, "iptables").topology) == [
        ("w1", "userspace", "iptables"), ("w2", "userspace", "iptables")]
    assert modes(prepare(str(path), "nftables", "none").topology) == [
        ("w1", "nftables", "none"), ("w2", "nftables", "none")]


def test_validate_takes_the_modes_and_says_what_they_make(files, capsys, kubenet_plugins):
    path = files("steps: [{sleep: 1}]\n", "workers: [w1, {name: w2, kubeProxy: {mode: nftables}}]\n")
    assert main(["validate", str(path)]) == 0
    assert ("(kube-proxy iptables on 1 worker, nftables on 1 worker, network policy iptables "
            "on 1 worker, nftables on 1 worker; pod network built-in bridge, routing gateway)") \
        in capsys.readouterr().out
    assert main(["validate", str(path), "--kube-proxy", "nftables"]) == 0
    assert "(kube-proxy nftables, network policy nftables; pod network" in capsys.readouterr().out
    assert main(["validate", str(path.parent / "topo.yaml"), "--network-policy", "none"]) == 0
    out = capsys.readouterr().out
    assert "(kube-proxy iptables on 1 worker, nftables on 1 worker, network policy none; " in out
    assert main(["validate", str(path), "--routing", "vxlan", "--pod-network", "cni"]) == 0
    assert "; pod network CNI (kubenet chain), routing vxlan)" in capsys.readouterr().out


def test_bad_mode_flags_exit_2(files, capsys, tmp_path):
    path = files("steps: [{sleep: 1}]\n")
    for argv in (["validate", str(path), "--network-policy", "calico"],
                 ["run", str(path), "--kube-proxy", "ipvs"],
                 ["run", str(path), "--network-policy", "userspace"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert "invalid choice" in capsys.readouterr().err
    manifest = tmp_path / "m.yaml"
    manifest.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
    assert main(["validate", str(manifest), "--network-policy", "none"]) == 2
    assert ("testbed: <command line>: --network-policy: goes with a scenario or a topology; "
            "manifests alone have no workers") in capsys.readouterr().err


def test_netpol_steps_parse(files):
    s = load_scenario(files("""\
        steps:
          - kill: {agent: netpol, node: w1}
          - restart: {agent: netpol, node: w1}
          - inspect: {netpol: w2}
        """))
    assert [step.action for step in s.steps] == [
        Fault("kill", "netpol", "w1"), Fault("restart", "netpol", "w1"),
        NetFault("inspect", target="w2", what="netpol")]
    assert [step.name for step in s.steps] == [
        "kill netpol on w1", "restart netpol on w1", "inspect netpol on w2"]
    with pytest.raises(SpecError) as info:
        load_scenario(files("steps: [{kill: {agent: netpol}}]\n"))
    assert [str(p.message) for p in info.value.problems] == ["Required value: which node's netpol"]


def test_preflight_refuses_netpol_steps_where_there_is_no_agent(files):
    from testbed.scenario.runner import prepare

    steps = """\
        steps:
          - kill: {agent: netpol, node: w2}
          - restart: {agent: netpol, node: master}
          - inspect: {netpol: gw}
          - inspect: {netpol: w2}
        """
    path = files(steps, "workers: [w1, {name: w2, networkPolicy: {mode: none}}]\n")
    with pytest.raises(SpecError) as info:
        prepare(str(path))
    assert [f"{p.line}: {p.field}: {p.message}" for p in info.value.problems] == [
        '3: steps[0].kill.node: Invalid value: "w2": no NetworkPolicy agent runs on w2 (its '
        'network policy mode is none)',
        '4: steps[1].restart.node: Unsupported value: "master": supported values: "w1", "w2"',
        '5: steps[2].inspect.netpol: Unsupported value: "gw": supported values: "w1", "w2"']
    # the command line's mode decides: an agent everywhere, or nowhere
    path = files("steps: [{kill: {agent: netpol, node: w2}}, {inspect: {netpol: w2}}]\n",
                 "workers: [w1, {name: w2, networkPolicy: {mode: none}}]\n")
    assert len(prepare(str(path), policy_mode="iptables").scenario.steps) == 2
    with pytest.raises(SpecError) as info:
        prepare(str(path), policy_mode="none")
    assert [p.field for p in info.value.problems] == ["steps[0].kill.node"]
    assert "no NetworkPolicy agent runs on w2" in info.value.problems[0].message
