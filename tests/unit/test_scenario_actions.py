"""Scenario steps that change the cluster: parsing and every problem with its line."""

from __future__ import annotations

import textwrap

import pytest

from testbed.scenario.actions import Apply, Delete, Fault, Scale, Wait
from testbed.scenario.spec import Backends, load_scenario
from testbed.spec.source import SpecError


@pytest.fixture
def scenario(tmp_path):
    (tmp_path / "topo.yaml").write_text("name: t\n")
    (tmp_path / "more.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")

    def load(steps: str):
        path = tmp_path / "s.yaml"
        path.write_text("topology: topo.yaml\nsteps:\n" + textwrap.dedent(steps))
        return load_scenario(path)
    return load


def problems_of(scenario, steps: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        scenario(steps)
    return [f"{p.line}: {p.field}: {p.message}" for p in info.value.problems]


def test_every_action_parses(scenario, tmp_path):
    s = scenario("""
        - apply: more.yaml
        - delete: [more.yaml]
        - delete: {kind: Pod, name: pod-b}
        - scale: {deployment: web, replicas: 0, namespace: prod}
        - wait: {ready: {selector: app=web, count: 4}}
          timeout: 30
        - wait: {endpoints: {service: web}}
        - wait: {loadBalancer: {service: web}}
        - kill: {agent: kube-proxy, node: w1}
        - restart: {agent: apiserver}
        - probe: http
          from: a
          to: http://web/
          tries: 10
          expect: {backends: {selector: app=web, nodes: w1, all: false}}
    """)
    actions = [step.action for step in s.steps]
    assert actions[0] == Apply((tmp_path / "more.yaml",))
    assert actions[1] == Delete(files=(tmp_path / "more.yaml",))
    assert actions[2] == Delete(kind="Pod", name="pod-b", namespace="default")
    assert actions[3] == Scale("prod", "web", 0)
    assert actions[4] == Wait("ready", "default", "app=web", 4, 30.0)
    assert actions[5] == Wait("endpoints", "default", "web", None, 60.0)
    assert actions[6].what == "loadBalancer"
    assert actions[7] == Fault("kill", "kube-proxy", "w1")
    assert actions[8] == Fault("restart", "apiserver", "")
    assert actions[9].tries == 10
    assert actions[9].expect.backends == Backends("app=web", "default", ("w1",), False)
    assert [step.name for step in s.steps[:4]] == [
        "apply more.yaml", "delete more.yaml", "delete Pod default/pod-b", "scale deployment prod/web to 0"]
    assert s.steps[7].name == "kill kube-proxy on w1"


def test_action_problems_name_line_and_field(scenario):
    found = problems_of(scenario, """
        - apply: missing.yaml
        - delete: {kind: Gadget, name: x}
        - scale: {deployment: web, replicas: -1}
        - wait: {ready: {count: 2}}
        - wait: {sometime: {}}
        - kill: {agent: etcd}
        - kill: {agent: kubelet}
        - restart: {agent: kube-proxy, node: w1, now: true}
        - {apply: more.yaml, kill: {agent: apiserver}}
        - wait: {endpoints: {service: web}}
          timeout: 0
        - probe: tcp
          from: a
          to: b:80
          tries: 0
    """)
    assert any(m.startswith('4: steps[0].apply: Invalid value: "missing.yaml": no such file:')
               for m in found)
    assert ('5: steps[1].delete.kind: Unsupported value: "Gadget": supported values: "Pod", '
            '"Service", "Deployment", "EndpointSlice", "Ingress", "Namespace", "NetworkPolicy"') in found
    assert "6: steps[2].scale.replicas: Invalid value: -1: must be greater than or equal to 0" in found
    assert "7: steps[3].wait.ready.selector: Required value" in found
    assert ('8: steps[4].wait: Invalid value: {"sometime": {}}: must be a mapping with one of '
            "ready, endpoints, loadBalancer") in found
    assert ('9: steps[5].kill.agent: Unsupported value: "etcd": supported values: "apiserver", '
            '"kubelet", "kube-proxy", "netpol", "flanneld", "bird"') in found
    assert "10: steps[6].kill.node: Required value: which node's kubelet" in found
    assert '11: steps[7].restart.now: unknown field "now"' in found
    assert "12: steps[8]: Forbidden: a step has one action, this one has apply, kill" in found
    assert "14: steps[9].timeout: Invalid value: 0: must be greater than 0" in found
    assert "18: steps[10].tries: Invalid value: 0: must be between 1 and 1000, inclusive" in found


def test_durations_are_bounded_at_load(scenario):
    found = problems_of(scenario, """
        - sleep: 1.0e+300
        - wait: {ready: {selector: app=web}}
          timeout: 86401
        - probe: tcp
          from: a
          to: b:80
          timeout: 1.0e+300
          retryFor: 1.0e+300
    """)
    day = "must be less than or equal to 86400 seconds (a day)"
    assert found == [f"4: steps[0].sleep: Invalid value: 1e+300: {day}",
                     f"6: steps[1].timeout: Invalid value: 86401: {day}",
                     f"10: steps[2].timeout: Invalid value: 1e+300: {day}",
                     f"11: steps[2].retryFor: Invalid value: 1e+300: {day}"]
    scenario("- sleep: 86400\n")     # a day is fine


@pytest.mark.parametrize(("shape", "why"), [
    ("delay: 274877907us", 'delay: Invalid value: "274877907us": must be at most 274877906us'),
    ("delay: 275s", 'delay: Invalid value: "275s": must be at most 274877906us'),
    ("delay: 20ns", 'delay: Invalid value: "20ns": must be a delay: a number and one of s, '),
    ("rate: 688gbit", 'rate: Invalid value: "688gbit": must be at most 687gbit'),
    ("rate: 99999999999999999999tbit", 'rate: Invalid value: "99999999999999999999tbit": must '
                                       "be at most 687gbit"),
    ("rate: 7bit", 'rate: Invalid value: "7bit": must be at least 8bit'),
    ("rate: 0mbit", 'rate: Invalid value: "0mbit": must be greater than 0'),
])
def test_shaping_is_bounded_to_what_tc_takes(scenario, shape, why):
    [found] = problems_of(scenario, f"- shape: {{node: w1, {shape}}}\n")
    assert found.startswith(f"3: steps[0].shape.{why}")


@pytest.mark.parametrize("shape", ["delay: 274877906us", "delay: 274.8s", "rate: 687gbit",
                                   "rate: 1bps", "rate: '8'", "delay: 20ms, rate: 10mbit"])
def test_shaping_within_tcs_bounds(scenario, shape):
    [step] = scenario(f"- shape: {{node: w1, {shape}}}\n").steps
    assert step.action.kind == "shape"


def test_a_node_is_in_one_partition_group(scenario):
    assert problems_of(scenario, "- partition: [[w1], [w1, w2], [w2]]\n") == [
        '3: steps[0].partition[1][0]: Duplicate value: "w1": already in group 0: a node or '
        "client is in one group only",
        '3: steps[0].partition[2][0]: Duplicate value: "w2": already in group 1: a node or '
        "client is in one group only"]


def test_backends_for_tcp_udp_and_http_only(scenario):
    """UDP probes check backends too (issue 16: the pod the reply names); ICMP and DNS cannot."""
    found = problems_of(scenario, """
        - probe: udp
          from: a
          to: b:53
          expect: {backends: {selector: app=dns}}
        - probe: http
          from: a
          to: http://b/
          expect: {backends: {namespace: x}}
        - probe: icmp
          from: a
          to: b
          expect: {backends: {selector: app=dns}}
    """)
    assert not any("steps[0]" in problem for problem in found)
    assert "11: steps[1].expect.backends.selector: Required value" in found
    assert "15: steps[2].expect.backends: Forbidden: an icmp probe cannot check backends" in found


def test_scenario_kube_proxy_modes_override_the_topology(tmp_path):
    from testbed.scenario.preflight import with_proxy_modes
    from testbed.spec.topology import load_topology

    (tmp_path / "topo.yaml").write_text("workers: [w1, w2, w3]\nkubeProxy: {mode: nftables}\n")
    (tmp_path / "s.yaml").write_text("topology: topo.yaml\nkubeProxy: {mode: iptables, nodes: {w2: userspace, w9: iptables}}\n")
    scenario = load_scenario(tmp_path / "s.yaml")
    topo, problems = with_proxy_modes(scenario, load_topology(tmp_path / "topo.yaml"))
    assert [w.proxy_mode for w in topo.workers] == ["iptables", "userspace", "iptables"]
    assert [(p.line, p.field) for p in problems] == [(2, "kubeProxy.nodes.w9")]
    assert problems[0].message == 'Invalid value: "w9": not a worker of topology topo (workers: w1, w2, w3)'
    (tmp_path / "bad.yaml").write_text("topology: topo.yaml\nkubeProxy: {mode: ipvs, nodes: {w1: bpf}}\n")
    with pytest.raises(SpecError) as info:
        load_scenario(tmp_path / "bad.yaml")
    assert [str(p).split(": ", 1)[1] for p in info.value.problems] == [
        'kubeProxy.mode: Unsupported value: "ipvs": supported values: "iptables", "nftables", '
        '"userspace"',
        'kubeProxy.nodes.w1: Unsupported value: "bpf": supported values: "iptables", "nftables", '
        '"userspace"']


def test_service_addresses_are_checked_against_the_topology_before_anything_is_built(tmp_path):
    from testbed.scenario.runner import prepare

    (tmp_path / "topo.yaml").write_text("network: {serviceCIDR: 10.96.0.0/16}\n")
    (tmp_path / "svc.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
        "spec: {type: NodePort, clusterIP: 10.3.241.152, selector: {app: web},\n"
        "       ports: [{port: 80, nodePort: 8080}]}\n")
    (tmp_path / "s.yaml").write_text("topology: topo.yaml\nmanifests: [svc.yaml]\n")
    with pytest.raises(SpecError) as info:
        prepare(str(tmp_path / "s.yaml"))
    # The API server's allocators' own words (testbed/api/allocators.py), at the file's lines.
    assert [str(p).replace(str(tmp_path) + "/", "") for p in info.value.problems] == [
        'svc.yaml:4: spec.clusterIPs: Invalid value: []string{"10.3.241.152"}: failed to allocate '
        "IP 10.3.241.152: the provided network does not match the current range (the service "
        "range of topology topo is 10.96.0.0/16)",
        "svc.yaml:5: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid "
        "range. The range of valid ports is 30000-32767"]
