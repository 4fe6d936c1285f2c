"""testbed.scenario.runner's pure parts and the checks it runs first (testbed.scenario.preflight):
name and command checks, evaluate, prepare().

Nothing here builds a cluster: Runner is never constructed.
"""

from __future__ import annotations

import shutil
from ipaddress import IPv4Address

import pytest

from testbed.checks import check_manifests
from testbed.emu.probes import Observation
from testbed.scenario.preflight import check_names
from testbed.scenario.runner import Prepared, prepare
from testbed.scenario.spec import Expect, Probe, Scenario, Sleep, Step, Target
from testbed.scenario.steps import evaluate
from testbed.spec.source import Problem, SpecError
from testbed.spec.topology import load_topology

from .conftest import ROOT

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"


class FakeCluster:
    """The one thing evaluate() asks of a cluster: the address of a name."""

    def __init__(self, addresses: dict[str, str]):
        self.addresses = addresses
        self.asked: list[str] = []

    def address_of(self, name: str) -> IPv4Address:
        self.asked.append(name)
        return IPv4Address(self.addresses[name])


CLUSTER = FakeCluster({"pod-a": "10.244.0.5", "client": "203.0.113.2"})


def pod(name: str, namespace: str = "default", **container) -> dict:
    container = {"name": "c", "image": AGNHOST, **container}
    return {"kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [container]}}


def probe_step(line: int, source: str, host: str, port: int | None = None, kind: str = "tcp",
               source_ip: str | None = None) -> Step:
    return Step(f"step at {line}", line,
                Probe(kind, source, Target(host, port), Expect(source_ip=source_ip)))


def scenario_of(*steps: Step) -> Scenario:
    return Scenario("s", "s.yaml", "", ROOT / "topologies" / "two-node.yaml", (), tuple(steps))


@pytest.fixture(scope="module")
def two_node():
    return load_topology(ROOT / "topologies" / "two-node.yaml")


# --- check_names -------------------------------------------------------------------------------

def test_known_names_pass(two_node):
    steps = [
        probe_step(1, "pod-a", "pod-b", 80),
        probe_step(2, "default/pod-a", "w1", 22),
        probe_step(3, "client", "gw", 80),
        probe_step(4, "master", "10.96.0.10", 53, source_ip="pod-a"),
        probe_step(5, "pod-a", "localhost", 8080),
        Step("pause", 6, Sleep(1.0)),
    ]
    objects = [pod("pod-a"), pod("pod-b")]
    assert check_names(scenario_of(*steps), two_node, objects) == []


def test_unknown_names_are_reported_with_step_line_and_field(two_node):
    steps = [
        Step("pause", 3, Sleep(1.0)),
        probe_step(5, "pod-x", "pod-a", 80),
        probe_step(9, "pod-a", "w3", 80, source_ip="ghost"),
    ]
    problems = check_names(scenario_of(*steps), two_node, [pod("pod-a")])
    known = "client, default/pod-a, gw, localhost, master, pod-a, w1, w2"
    assert [str(p) for p in problems] == [
        f's.yaml:5: steps[1].from: Invalid value: "pod-x": no pod, node or client of this scenario '
        f"(known: {known})",
        f's.yaml:9: steps[2].to: Invalid value: "w3": no pod, node or client of this scenario '
        f"(known: {known})",
        f's.yaml:9: steps[2].expect.sourceIP: Invalid value: "ghost": no pod, node or client of '
        f"this scenario (known: {known})",
    ]


@pytest.mark.parametrize(("host", "ok"), [
    ("10.0.0.1", True), ("255.255.255.255", True), ("0.0.0.0", True),
    ("10.0.0.256", False), ("10.0.0", False), ("10.0.0.1.2", False), ("a.b.c.d", False),
])
def test_ip_addresses_need_no_name(two_node, host, ok):
    problems = check_names(scenario_of(probe_step(1, "pod-a", host, 80)), two_node, [pod("pod-a")])
    assert (problems == []) is ok


def test_namespaced_pod_is_known_by_both_forms(two_node):
    steps = [probe_step(1, "web", "kube-system/web", 80), probe_step(2, "default/web", "web", 80)]
    problems = check_names(scenario_of(*steps), two_node, [pod("web", "kube-system")])
    assert [p.field for p in problems] == ["steps[1].from"]


def test_pod_named_like_a_node_or_client(two_node):
    problems = check_names(scenario_of(), two_node, [pod("w1", "apps"), pod("client"), pod("ok")])
    assert problems == [
        Problem("s.yaml", None, "manifests",
                'Invalid value: "w1": pod apps/w1 has the name of a node or client'),
        Problem("s.yaml", None, "manifests",
                'Invalid value: "client": pod default/client has the name of a node or client'),
    ]


def test_services_count_as_names_but_other_kinds_do_not(two_node):
    objects = [pod("pod-a"), {"kind": "Service", "metadata": {"name": "web", "namespace": "default"}},
               {"kind": "Service", "metadata": {"name": "dns", "namespace": "kube-system"}},
               {"kind": "Deployment", "metadata": {"name": "deploy", "namespace": "default"}}]
    steps = [probe_step(1, "pod-a", "web", 80), probe_step(2, "pod-a", "kube-system/dns", 53),
             probe_step(3, "pod-a", "dns", 53), probe_step(4, "pod-a", "deploy", 80)]
    problems = check_names(scenario_of(*steps), two_node, objects)
    assert [p.field for p in problems] == ["steps[2].to", "steps[3].to"]


def service(name: str, namespace: str = "default", **spec) -> dict:
    return {"kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def deployment(name: str, namespace: str = "default") -> dict:
    return {"kind": "Deployment", "metadata": {"name": name, "namespace": namespace}}


def step(line: int, action) -> Step:
    return Step(f"step at {line}", line, action)


def test_objects_steps_name_must_be_declared(two_node):
    from testbed.scenario.actions import Delete, Fault, NetFault, PodRef, Scale, Wait

    steps = [
        step(1, Fault("kill", pod=PodRef(name="pod-9"))),
        step(2, NetFault("readiness", pod=PodRef(name="pod-a", namespace="other"), up=False)),
        step(3, Scale("default", "nosuch", 2)),
        step(4, Delete(kind="Pod", name="pod-9")),
        step(5, Wait("endpoints", "default", "nosuch", None, 10.0)),
        step(6, Probe("http", "client", Target("w1", service="default/nosuch", via="nodePort"),
                      Expect())),
        # what the cluster holds itself and what the manifests declare pass
        step(7, Fault("kill", pod=PodRef(name="pod-a"))),
        step(8, Wait("endpoints", "kube-system", "kube-dns", None, 10.0)),
        step(9, Scale("kube-system", "kube-dns", 2)),
        step(10, Delete(kind="Namespace", name="kube-public")),
        step(11, Delete(kind="EndpointSlice", name="web-abcde")),   # generated names: unchecked
        step(12, Scale("default", "web", 3)),
    ]
    objects = [pod("pod-a"), deployment("web")]
    problems = check_names(scenario_of(*steps), two_node, objects)
    assert [(p.line, p.field, p.message.split(" (")[0]) for p in problems] == [
        (1, "steps[0].kill.pod", 'Invalid value: "pod-9": no Pod of the cluster, the '
                                 "scenario's manifests or an earlier apply step"),
        (2, "steps[1].readiness.pod", 'Invalid value: "other/pod-a": no Pod of the cluster, '
                                      "the scenario's manifests or an earlier apply step"),
        (3, "steps[2].scale.deployment", 'Invalid value: "nosuch": no Deployment of the '
                                         "cluster, the scenario's manifests or an earlier apply "
                                         "step"),
        (4, "steps[3].delete.name", 'Invalid value: "pod-9": no Pod of the cluster, the '
                                    "scenario's manifests or an earlier apply step"),
        (5, "steps[4].wait.endpoints.service", 'Invalid value: "nosuch": no Service of the '
                                               "cluster, the scenario's manifests or an earlier "
                                               "apply step"),
        (6, "steps[5].to.service", 'Invalid value: "nosuch": no Service of the cluster, the '
                                   "scenario's manifests or an earlier apply step"),
    ]
    assert problems[0].message.endswith("(Pods: default/pod-a)")


def test_an_earlier_apply_step_may_create_what_a_step_names(two_node):
    from testbed.scenario.actions import Apply, Scale

    steps = [step(1, Scale("default", "later", 2)), step(2, Apply(())),
             step(3, Scale("default", "later", 2))]
    problems = check_names(scenario_of(*steps), two_node, [deployment("later")], base=[],
                           created={1: [deployment("later")]})
    assert [p.field for p in problems] == ["steps[0].scale.deployment"]


@pytest.mark.parametrize(("target", "why"), [
    (Target("w1", service="default/web", via="nodePort", service_port="https"),
     'Invalid value: "https": Service default/web has no port of that name or number (ports: '
     "http)"),
    (Target("w1", service="default/web", via="nodePort", service_port="81"),
     "Invalid value: 81: Service default/web has no port of that name or number (ports: http)"),
    (Target("w1", service="default/web", via="nodePort", service_port="healthCheck"),
     'Invalid value: "healthCheck": Service default/web has no health check node port (only a '
     "LoadBalancer Service with externalTrafficPolicy Local has one)"),
    (Target("", service="default/web", via="loadBalancer", service_port=""),
     "Invalid value: true: Service default/web is of type NodePort, which has no load "
     "balancer"),
    (Target("w1", service="default/inside", via="nodePort", service_port=""),
     "Invalid value: true: Service default/inside is of type ClusterIP, which has no node port"),
])
def test_service_targets_need_the_port(two_node, target, why):
    objects = [service("web", type="NodePort", ports=[{"name": "http", "port": 80}]),
               service("inside", ports=[{"port": 80}])]
    [problem] = check_names(scenario_of(step(1, Probe("http", "client", target, Expect()))),
                            two_node, objects)
    assert (problem.field, problem.message) == (f"steps[0].to.{target.via}", why)


def test_service_targets_that_resolve(two_node):
    objects = [service("web", type="NodePort", ports=[{"name": "http", "port": 80}]),
               service("lb", type="LoadBalancer", externalTrafficPolicy="Local",
                       ports=[{"port": 443}])]
    targets = [Target("w1", service="default/web", via="nodePort", service_port=p)
               for p in ("", "http", "80")]
    targets += [Target("w1", service="default/lb", via="nodePort", service_port="healthCheck"),
                Target("", service="default/lb", via="loadBalancer", service_port="443")]
    steps = [step(i, Probe("http", "client", t, Expect())) for i, t in enumerate(targets)]
    assert check_names(scenario_of(*steps), two_node, objects) == []


# --- check_commands ----------------------------------------------------------------------------

def manifest(obj: dict) -> dict:
    """A pod() as a full manifest."""
    return {"apiVersion": "v1", **obj}


def test_commands_that_run_pass(write):
    import json

    objects = [pod("a"), pod("b", args=["netexec"]), pod("c", image="busybox", command=["sh", "-c", "true"]),
               pod("d", image="registry.k8s.io/pause:3.9")]
    path = write("m.yaml", "\n---\n".join(json.dumps(manifest(o)) for o in objects))
    checked = check_manifests([path], which=shutil.which)
    assert (checked.problems, checked.warnings) == ([], [])


def test_commands_that_cannot_run_are_reported(write, tmp_path):
    path = write("m.yaml", """
        apiVersion: v1
        kind: Pod
        metadata: {name: web}
        spec:
          containers: [{name: c, image: nginx}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: job, namespace: batch}
        spec:
          containers:
          - name: c
            image: busybox
            command: [no-such-program-xyz]
    """)
    problems = check_manifests([path], which=shutil.which).problems
    assert [(p.file, p.line, p.field) for p in problems] == [
        (str(path), 5, "spec.containers[0].command"),
        (str(path), 14, "spec.containers[0].command"),
    ]
    assert problems[0].message.startswith("image 'nginx' has no entrypoint the testbed knows")
    assert problems[1].message.startswith("command 'no-such-program-xyz' is not found on the node")


# --- evaluate ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("expect", "obs", "result"), [
    (Expect(), Observation(True, "ok"), (True, "")),
    (Expect(), Observation(False, "refused"), (False, "it was not reachable")),
    (Expect(reachable=False), Observation(False, "refused"), (True, "")),
    (Expect(reachable=False), Observation(True, "ok"), (False, "it was reachable")),
    (Expect(source_ip="pod-a"), Observation(True, "ok", source_ip="10.244.0.5"), (True, "")),
    (Expect(source_ip="pod-a"), Observation(True, "ok", source_ip="172.16.1.2"),
     (False, "server saw 172.16.1.2, expected 10.244.0.5 (pod-a)")),
    (Expect(source_ip="pod-a"), Observation(True, "ok"),
     (False, "could not see the source IP the server saw")),
    (Expect(status=200), Observation(True, "ok", status=200), (True, "")),
    (Expect(status=200), Observation(True, "ok", status=503), (False, "status 503, expected 200")),
    (Expect(body_contains="pod-a"), Observation(True, "ok", body="hello pod-a\n"), (True, "")),
    (Expect(body_contains="pod-a"), Observation(True, "ok", body="pod-b"), (False, "body lacks 'pod-a'")),
    (Expect(body_contains="x"), Observation(True, "ok"), (False, "body lacks 'x'")),
    (Expect(reply="pod-a"), Observation(True, "ok", reply="pod-a"), (True, "")),
    (Expect(reply="pod-a"), Observation(True, "ok", reply=None), (False, "reply lacks 'pod-a'")),
    (Expect(source_ip="client", status=200, body_contains="hi"),
     Observation(True, "ok", source_ip="203.0.113.2", status=200, body="oh hi"), (True, "")),
    # the first unmet check is the one reported
    (Expect(status=200, body_contains="hi"), Observation(True, "ok", status=404, body="no"),
     (False, "status 404, expected 200")),
])
def test_evaluate(expect, obs, result):
    assert evaluate(expect, obs, CLUSTER) == result


def test_evaluate_asks_the_cluster_only_for_source_checks():
    cluster = FakeCluster({"pod-a": "10.244.0.5"})
    evaluate(Expect(status=200), Observation(True, "ok", status=200), cluster)
    evaluate(Expect(reachable=False, source_ip="pod-a"), Observation(False, "x"), cluster)
    assert cluster.asked == []
    evaluate(Expect(source_ip="pod-a"), Observation(True, "ok", source_ip="10.244.0.5"), cluster)
    assert cluster.asked == ["pod-a"]


# --- prepare -----------------------------------------------------------------------------------

GOOD_POD = f"""
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  nodeName: w1
  containers:
  - {{name: c, image: "{AGNHOST}", args: [netexec]}}
"""


def test_prepare_the_shipped_tour():
    prepared = prepare(str(ROOT / "scenarios" / "tour.yaml"))
    assert isinstance(prepared, Prepared)
    assert prepared.topology.name == "article"
    assert prepared.topology.addons == ("ingress-nginx",)
    assert [o["metadata"]["name"] for o in prepared.objects] == ["service-test", "service-test"]
    # The manifests of apply steps are loaded (and checked) before anything is built.
    applied = [o["metadata"]["name"] for objs in prepared.step_objects.values() for o in objs]
    assert {"client-1", "client-2", "pod-1", "web", "nginx-ingress-test"} <= set(applied)


def test_prepare_a_good_scenario(write):
    write("topo.yaml", "name: small\nworkers: [w1]\n")
    write("pods.yaml", GOOD_POD)
    path = write("s.yaml", """
        topology: topo.yaml
        manifests: [pods.yaml]
        steps:
          - {probe: tcp, from: client, to: 'web:8080'}
    """)
    prepared = prepare(str(path))
    assert prepared.topology.name == "small"
    assert prepared.objects[0]["metadata"] == {"name": "web", "namespace": "default"}


def test_prepare_reports_topology_and_manifest_problems_together(write, tmp_path):
    write("topo.yaml", "workers: [w1, W2]\n")
    write("pods.yaml", GOOD_POD + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\n"
          "spec:\n  containers: []\n")
    path = write("s.yaml", "topology: topo.yaml\nmanifests: [pods.yaml]\n")
    with pytest.raises(SpecError) as info:
        prepare(str(path))
    where = [(p.file.replace(str(tmp_path) + "/", ""), p.line, p.field) for p in info.value.problems]
    assert where == [
        ("topo.yaml", 1, "workers[1].name"),
        ("pods.yaml", 11, "metadata.name"),
        ("pods.yaml", 13, "spec.containers"),
    ]


def test_prepare_reports_names_and_commands_together(write, tmp_path):
    write("topo.yaml", "workers: [w1, w2]\n")
    write("pods.yaml", GOOD_POD + """---
apiVersion: v1
kind: Pod
metadata: {name: w2, namespace: other}
spec:
  containers:
  - {name: c, image: nginx}
""")
    path = write("s.yaml", """
        topology: topo.yaml
        manifests: [pods.yaml]
        steps:
          - sleep: 1
          - {probe: icmp, from: web, to: nobody}
    """)
    with pytest.raises(SpecError) as info:
        prepare(str(path))
    problems = info.value.problems
    manifests = str(tmp_path / "pods.yaml")
    assert [(p.file, p.line, p.field) for p in problems] == [
        (manifests, 14, "spec.containers[0].command"),
        (manifests, 11, "metadata.name"),
        (str(path), 5, "steps[1].to"),
    ]
    assert problems[1].message == 'Invalid value: "w2": pod other/w2 has the name of a node or client'
    assert problems[2].message.startswith('Invalid value: "nobody": no pod, node or client of this '
                                          "scenario")


def test_prepare_stops_at_a_bad_scenario(write, tmp_path):
    path = write("s.yaml", "topology: nowhere.yaml\nsteps: [{sleep: x}]\n")
    with pytest.raises(SpecError) as info:
        prepare(str(path))
    assert [(p.line, p.field) for p in info.value.problems] == [(1, "topology"), (2, "steps[0].sleep")]
