"""The scenario format of issue 16: run, get and kubeProxy steps, JSONPath, ${...} references,
expect {unreachable: ...}, backends {same: true} and for UDP, dns over TCP, sourcePort."""

from __future__ import annotations

import shutil

import pytest

from testbed.scenario.jsonpath import JsonPathError, compile_template, evaluate
from testbed.scenario.preflight import check_scenario
from testbed.scenario.runget import GetField, ProxySync, RunCommand, judge_get, judge_run
from testbed.scenario.spec import Backends, Expect, load_scenario
from testbed.scenario.steps import _named_in_body, judge_backends
from testbed.scenario.substitution import Ref, check, find, parse, restore, substitute
from testbed.spec.source import SpecError

from .conftest import ROOT

TOPOLOGY = ROOT / "topologies" / "two-node.yaml"


# -- JSONPath ----------------------------------------------------------------------------------

OBJ = {"metadata": {"name": "web", "labels": {"app.kubernetes.io/name": "w"}},
       "spec": {"ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "b"}]},
       "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]},
                  "conditions": [{"type": "Ready", "status": "True"},
                                 {"type": "Other", "status": "False"}]}}


@pytest.mark.parametrize("template, printed", [
    ("{.status.loadBalancer.ingress[0].ip}", "198.51.100.1"),
    ("{.spec.ports[*].port}", "80 81"),
    ("{.spec.ports[-1].name}", "b"),
    ("{.spec.ports[0:1].name}", "a"),
    ("{.metadata.labels['app.kubernetes.io/name']}", "w"),
    ("{.metadata.labels.app\\.kubernetes\\.io/name}", "w"),
    ('{.status.conditions[?(@.type=="Ready")].status}', "True"),
    ("{.spec.ports[?(@.port>80)].name}", "b"),
    ("{..ip}", "198.51.100.1"),
    ("name={.metadata.name} port={.spec.ports[0].port}", "name=web port=80"),
    ("{.spec.ports[0]}", '{"port":80,"name":"a"}'),
    ("{.status.nothing}", ""),
    ("{.spec.ports[5].port}", ""),
])
def test_jsonpath_prints_as_kubectl(template, printed):
    assert evaluate(compile_template(template), OBJ) == printed


@pytest.mark.parametrize("template, why", [
    ("{.a", "unclosed {"), ("plain", "no expression"), ("{a.b}", "starts with . or ["),
    ("{.a[x]}", "[x] is not an index"), ("{range .items[*]}", "not supported"),
    ("{.a[?(@.b==x)]}", "quoted string"),
])
def test_jsonpath_refuses_what_it_cannot_read(template, why):
    with pytest.raises(JsonPathError, match=why.replace("[", r"\[").replace("{", r"\{")):
        compile_template(template)


# -- references --------------------------------------------------------------------------------

def test_references_parse_and_check():
    [pod] = parse("${pod:x/a.b.ip}/32")
    assert (pod.kind, pod.name, pod.field) == ("pod", "x/a.b", "ip") and check(pod) is None
    assert "not .ip" in check(parse("${service:web.ip}")[0])
    assert "NAME" in check(parse("${node:ip}")[0])
    assert parse("sh -c 'echo ${PORT:-80} ${HOME}'") == []     # a shell's are left alone


def test_substitute_and_restore():
    template = {"spec": {"ingress": [{"from": [{"ipBlock": {"cidr": "${pod:a.ip}/32"}}]}],
                         "x": ["${node:w1.ip} and ${service:s.clusterIP}", 3]}}
    values = {"pod": "10.244.1.5", "node": "172.16.1.2", "service": "10.96.0.9"}
    out = substitute(template, lambda ref: values[ref.kind])
    assert out["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"] == "10.244.1.5/32"
    assert out["spec"]["x"] == ["172.16.1.2 and 10.96.0.9", 3]
    assert [p for p, _, _ in find(template)] == [
        ("spec", "ingress", 0, "from", 0, "ipBlock", "cidr"), ("spec", "x", 0), ("spec", "x", 0)]
    checked = substitute(template, lambda ref: "192.0.2.1")
    checked["spec"]["defaulted"] = True
    back = restore(checked, template, lambda ref: "192.0.2.1")
    assert back["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"] == "${pod:a.ip}/32"
    assert back["spec"]["defaulted"] is True


# -- the steps as loaded -----------------------------------------------------------------------

@pytest.fixture
def load(write):
    write("topology.yaml", "name: t\n")

    def _load(steps: str):
        return load_scenario(write("s.yaml", "topology: topology.yaml\nsteps:\n" + steps))

    return _load


@pytest.fixture
def problems(write, tmp_path):
    write("topology.yaml", "name: t\n")

    def _problems(steps: str) -> list[str]:
        with pytest.raises(SpecError) as info:
            load_scenario(write("s.yaml", "topology: topology.yaml\nsteps:\n" + steps))
        return [str(p).replace(str(tmp_path) + "/", "") for p in info.value.problems]

    return _problems


def test_new_probe_fields(load):
    s = load("  - {probe: udp, from: a, to: 'b:80', sourcePort: 12345, tries: 4,"
             " expect: {backends: {same: true}}}\n"
             "  - {probe: tcp, from: a, to: 'b:80', expect: {unreachable: timeout}}\n"
             "  - {probe: dns, transport: tcp, from: a, to: kubernetes}\n"
             "  - {probe: http, from: a, to: 'http://b/', expect: {backends: {same: true, selector: app=b}}}\n"
             "  - {probe: udp, from: a, to: 'b:80', expect: {backends: {selector: app=b}}}\n")
    udp, tcp, dns, http, udp_all = (step.action for step in s.steps)
    assert udp.source_port == 12345 and udp.expect.backends == Backends("", same=True, all=False)
    assert tcp.expect == Expect(False, reason="timeout")
    assert dns.transport == "tcp" and udp.transport == "udp"
    assert http.expect.backends == Backends("app=b", same=True, all=False)
    assert udp_all.expect.backends == Backends("app=b")
    assert s.steps[0].action.expect.describe() == "reachable, every answer from the same pod"


def test_run_get_and_kube_proxy_steps(load):
    s = load("  - {run: {in: w1, command: [iptables, -S]}, expect: {stdoutContains: KUBE}}\n"
             "  - {run: {in: x/a, container: c, command: [cat, /etc/hosts]}, timeout: 3,"
             " retryFor: 2, expect: {exitCode: any, stdoutMatches: '^10\\.'}}\n"
             "  - {get: {kind: Service, name: web, jsonpath: '{.spec.clusterIP}'}, expect: {matches: '^10'}}\n"
             "  - {get: {kind: Node, name: w1, jsonpath: '{.metadata.name}'}, expect: {equals: w1}}\n"
             "  - {get: {kind: EndpointSlice, selector: kubernetes.io/service-name=web,"
             " jsonpath: '{.items[*].endpoints[*].addresses[0]}'}, retryFor: 5, expect: {contains: '${pod:a.ip}'}}\n"
             "  - {kubeProxy: {node: w1, sync: full}}\n")
    run1, run2, get1, node, slices, sync = (step.action for step in s.steps)
    assert run1 == RunCommand("w1", ("iptables", "-S"), stdout_contains="KUBE")
    assert run2 == RunCommand("x/a", ("cat", "/etc/hosts"), "c", 3.0, None, None, "^10\\.", 2.0)
    assert get1 == GetField("Service", "{.spec.clusterIP}", "web", "default", matches="^10")
    assert node.namespace == ""
    assert slices.selector == "kubernetes.io/service-name=web" and slices.retry_for == 5
    assert sync == ProxySync("w1")
    assert s.steps[5].name == "kube-proxy on w1 does a full sync"
    assert s.steps[0].name == "run iptables -S in w1"


@pytest.mark.parametrize("step, expected", [
    ("  - {probe: tcp, from: a, to: 'b:1', expect: {unreachable: dropped}}\n",
     's.yaml:3: steps[0].expect.unreachable: Unsupported value: "dropped": supported values: "refused", "timeout"'),
    ("  - {probe: tcp, from: a, to: 'b:1', expect: {unreachable: refused, sourceIP: a}}\n",
     "s.yaml:3: steps[0].expect: Forbidden: unreachable takes no other checks"),
    ("  - {probe: dns, from: a, to: b, expect: {unreachable: refused}}\n",
     "s.yaml:3: steps[0].expect.unreachable: Forbidden: a dns probe cannot check unreachable"),
    ("  - {probe: udp, from: a, to: 'b:1', expect: {backends: {same: true, all: true}}}\n",
     "s.yaml:3: steps[0].expect.backends.all: Forbidden: every pod cannot answer"),
    ("  - {probe: udp, from: a, to: 'b:1', expect: {backends: {all: false}}}\n",
     "s.yaml:3: steps[0].expect.backends.selector: Required value"),
    ("  - {probe: icmp, from: a, to: b, expect: {backends: {same: true}}}\n",
     "s.yaml:3: steps[0].expect.backends: Forbidden: an icmp probe cannot check backends"),
    ("  - {probe: tcp, transport: tcp, from: a, to: 'b:1'}\n",
     "s.yaml:3: steps[0].transport: Forbidden: only dns probes choose a transport"),
    ("  - {probe: icmp, sourcePort: 5, from: a, to: b}\n",
     "s.yaml:3: steps[0].sourcePort: Forbidden: only tcp and udp probes fix their source port"),
    ("  - {probe: udp, sourcePort: 0, from: a, to: 'b:1'}\n",
     "s.yaml:3: steps[0].sourcePort: Invalid value: 0: must be between 1 and 65535, inclusive"),
    ("  - {run: {in: w1}}\n", "s.yaml:3: steps[0].run.command: Required value"),
    ("  - {run: {command: [ls]}}\n", "s.yaml:3: steps[0].run.in: Required value"),
    ("  - {run: {in: W1, command: [ls]}}\n", 's.yaml:3: steps[0].run.in: Invalid value: "W1"'),
    ("  - {run: {in: w1, command: [ls, {a: 1}]}}\n", "s.yaml:3: steps[0].run.command[1]: Invalid value"),
    ("  - {run: {in: w1, command: [ls]}, expect: {exitCode: 256}}\n",
     "s.yaml:3: steps[0].expect.exitCode: Invalid value: 256: must be between 0 and 255"),
    ("  - {run: {in: w1, command: [ls]}, timeout: 0}\n",
     "s.yaml:3: steps[0].timeout: Invalid value: 0: must be greater than 0"),
    ("  - {run: {in: w1, command: ['${pod:a.mac}']}}\n",
     "s.yaml:3: steps[0].run.command[0]: Invalid value"),
    ("  - {get: {kind: Service, jsonpath: '{.spec}'}, expect: {equals: x}}\n",
     "s.yaml:3: steps[0].get.name: Required value"),
    ("  - {get: {kind: Service, name: a, selector: b=c, jsonpath: '{.spec}'}, expect: {equals: x}}\n",
     "s.yaml:3: steps[0].get: Forbidden: one of name (an object) or selector (a list), not both"),
    ("  - {get: {kind: Node, name: w1, namespace: x, jsonpath: '{.spec}'}, expect: {equals: x}}\n",
     "s.yaml:3: steps[0].get.namespace: Forbidden: a Node has no namespace"),
    ("  - {get: {kind: Service, name: a, jsonpath: '{.spec}'}}\n",
     "s.yaml:3: steps[0].expect: Required value"),
    ("  - {get: {kind: Service, name: a, jsonpath: '{.spec}'}, expect: {matches: '('}}\n",
     "s.yaml:3: steps[0].expect.matches: Invalid value"),
    ("  - {get: {kind: Service, name: a, jsonpath: '{.spec}'}, retryFor: -1, expect: {equals: x}}\n",
     "s.yaml:3: steps[0].retryFor: Invalid value: -1"),
    ("  - {kubeProxy: {node: w1}}\n", "s.yaml:3: steps[0].kubeProxy.sync: Required value"),
    ("  - {kubeProxy: {sync: full}}\n", "s.yaml:3: steps[0].kubeProxy.node: Required value"),
])
def test_bad_values_are_refused_with_their_place(problems, step, expected):
    found = problems(step)
    assert any(p.startswith(expected) for p in found), found


# -- judging -----------------------------------------------------------------------------------

def test_judge_run_and_get():
    step = RunCommand("w1", ("ls",), stdout_contains="KUBE", stdout_matches="^-A")
    assert judge_run(step, 0, "-N X\n-A KUBE-SERVICES\n", "KUBE", "^-A") == ""
    assert judge_run(step, 1, "-A KUBE\n", "KUBE", "^-A") == "exit code 1, expected 0"
    assert "lacks 'KUBE'" in judge_run(step, 0, "-A X", "KUBE", "^-A")
    assert "does not match" in judge_run(step, 0, "x -A KUBE", "KUBE", "^-A")
    assert judge_run(RunCommand("w1", ("ls",), exit_code=None), 3, "", None, None) == ""
    assert judge_get(GetField("Service", "{.a}", "s", equals="443"), "443", "443") == ""
    assert "is not" in judge_get(GetField("Service", "{.a}", "s", equals="443"), "4430", "443")
    assert judge_get(GetField("Service", "{.a}", "s", contains="1.2"), "x 1.2.3.4", "1.2") == ""
    assert "does not match" in judge_get(GetField("Service", "{.a}", "s", matches="^3"), "80", "^3")


def test_same_backend():
    same = Expect(backends=Backends("", same=True, all=False))
    assert judge_backends(same, {"default/a"}, set()) == (True, "")
    assert judge_backends(same, {"default/a", "default/b"}, set())[1].startswith("answered by 2 pods")
    assert not judge_backends(same, {"default/a"}, set(), unknown=1)[0]
    assert not judge_backends(same, set(), set())[0]
    among = Expect(backends=Backends("app=w", same=True, all=False))
    assert judge_backends(among, {"default/a"}, {"default/a", "default/b"}) == (True, "")
    assert not judge_backends(among, {"default/c"}, {"default/a", "default/b"})[0]
    assert not judge_backends(among, {"default/a"}, set())[0]


def test_who_a_reply_names():
    pods = {"default/web-1", "default/web-10", "default/db"}
    assert _named_in_body("web-10", pods) == "default/web-10"
    assert _named_in_body("web-1\n", pods) == "default/web-1"
    assert _named_in_body("nobody", pods) is None


# -- load-time checks of references and names (preflight) ---------------------------------------

POD = """apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: w1
  containers: [{{name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [pause]}}]
"""


def _check(write, tmp_path, steps: str, step_manifest: str = "") -> list[str]:
    write("pods.yaml", POD.format(name="a"))
    if step_manifest:
        write("more.yaml", step_manifest)
    path = write("s.yaml", f"topology: {TOPOLOGY}\nmanifests: [pods.yaml]\nsteps:\n{steps}")
    found = check_scenario(path, which=shutil.which, has_sctp=lambda: False)
    return [str(p).replace(str(tmp_path) + "/", "") for p in found.problems]


POLICY = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: "${pod:a.ip}/32"}}]}]
---
"""


def test_references_in_an_apply_step_are_checked_with_stand_ins(write, tmp_path):
    manifest = POLICY + POD.format(name="b").replace(
        "args: [pause]", 'args: [pause], env: [{name: X, value: "${service:kubernetes.clusterIP} ${node:w2.ip}"}]')
    assert _check(write, tmp_path, "  - apply: more.yaml\n", manifest) == []
    found = check_scenario(tmp_path / "s.yaml", which=shutil.which, has_sctp=lambda: False)
    objects = found.step_objects[0]
    assert objects[0]["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"] == "${pod:a.ip}/32"
    assert "${node:w2.ip}" in objects[1]["spec"]["containers"][0]["env"][0]["value"]


def test_references_to_what_will_not_be_there(write, tmp_path):
    manifest = POLICY.replace("pod:a.ip", "pod:b.ip") + POD.format(name="b")
    found = _check(write, tmp_path, "  - apply: more.yaml\n"
                   "  - {run: {in: a, command: [echo, '${node:w9.ip}']}}\n"
                   "  - {get: {kind: Pod, name: b, jsonpath: '{.status.podIP}'}, expect: {equals: '${pod:b.ip}'}}\n",
                   manifest)
    assert found[0].startswith('more.yaml:6: spec.ingress[0].from[0].ipBlock.cidr: Invalid value: '
                               '"${pod:b.ip}/32": ${pod:b.ip}: no pod b'), found
    assert found[1].startswith('s.yaml:5: steps[1].run.command[1]: Invalid value: "${node:w9.ip}": '
                               "${node:w9.ip}: no node, gateway or client w9"), found
    assert len(found) == 2      # b exists by the third step


def test_references_in_the_scenario_manifests_are_refused(write, tmp_path):
    write("pods.yaml", POD.format(name="a").replace("args: [pause]",
                                                    'args: [pause, "${node:w1.ip}"]'))
    path = write("s.yaml", f"topology: {TOPOLOGY}\nmanifests: [pods.yaml]\nsteps:\n  - sleep: 0\n")
    found = check_scenario(path, which=shutil.which, has_sctp=lambda: False).problems
    assert any("applied before any step" in str(p) and "pods.yaml:6" in str(p) for p in found)


def test_run_in_and_kube_proxy_node_are_names_of_the_cluster(write, tmp_path):
    found = _check(write, tmp_path, "  - {run: {in: nobody, command: [ls]}}\n"
                   "  - {run: {in: gw, command: [ip, route]}}\n"
                   "  - {kubeProxy: {node: master, sync: full}}\n")
    assert found[0].startswith('s.yaml:4: steps[0].run.in: Invalid value: "nobody": no pod, node or client')
    assert found[1].startswith('s.yaml:6: steps[2].kubeProxy.node: Unsupported value: "master": '
                               'supported values: "w1", "w2"')
    assert len(found) == 2


def test_the_shipped_upstream_scenario_loads():
    found = check_scenario(ROOT / "scenarios" / "upstream-e2e.yaml", which=shutil.which,
                           has_sctp=lambda: False)
    assert found.problems == []
    names = [s.name for s in found.scenario.steps]
    ported = {n.split("]", 1)[1].split(":")[0].strip() for n in names if n.startswith("[")}
    assert len({p for p in ported if not p.startswith("...")}) >= 12


def test_ref_str():
    assert str(Ref("pod", "a", "ip", "${pod:a.ip}")) == "${pod:a.ip}"




# -- the acting side over fakes (the real cluster: tests/integration/test_scenario_steps_e2e.py) --

class FakeClient:
    def __init__(self, objects: dict):
        self.objects = objects

    def get(self, kind, namespace, name):
        return self.objects.get((kind, namespace or "default", name))

    def list(self, kind, namespace=None, selector=None):
        return [o for (k, _, _), o in self.objects.items() if k == kind], "7"


class FakeControlPlane:
    def __init__(self):
        self.synced: list[tuple[str, float]] = []

    def force_full_sync(self, node: str, timeout: float = 10) -> None:
        self.synced.append((node, timeout))


class FakeCluster:
    def __init__(self, objects: dict):
        self.client = FakeClient(objects)
        self.cp = FakeControlPlane()

    def find_pod(self, name):
        return None

    def address_of(self, name):
        raise KeyError(f"no pod, node or client is named {name!r}")


def test_get_step_reads_judges_and_resolves():
    from testbed.scenario.runget_step import get_step

    svc = {"spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80}]}}
    cluster = FakeCluster({("Service", "default", "web"): svc})
    ok = get_step(cluster, GetField("Service", "{.spec.clusterIP}", "web",
                                    equals="${service:web.clusterIP}"))
    assert ok.passed and ok.details["value"] == "10.96.0.9" and "'10.96.0.9'" in ok.expectation
    wrong = get_step(cluster, GetField("Service", "{.spec.ports[0].port}", "web", equals="81"))
    assert not wrong.passed and "'80' is not '81'" in wrong.observed
    missing = get_step(cluster, GetField("Service", "{.spec}", "nope", equals="x"))
    assert not missing.passed and missing.details["value"] == ""
    unresolved = get_step(cluster, GetField("Service", "{.spec}", "web", equals="${service:db.clusterIP}"))
    assert not unresolved.passed and "no Service default/db" in unresolved.observed
    listed = get_step(cluster, GetField("Service", "{.items[*].spec.clusterIP}", selector="a=b",
                                        contains="10.96.0.9"))
    assert listed.passed


def test_kube_proxy_step_calls_the_control_plane():
    """Against a stand-in of ControlPlane.force_full_sync (the contract with kube-proxy)."""
    from testbed.scenario.runget_step import proxy_sync_step

    cluster = FakeCluster({})
    outcome = proxy_sync_step(cluster, ProxySync("w1", timeout=4))
    assert outcome.passed and cluster.cp.synced == [("w1", 4)]
    assert outcome.expectation == "kube-proxy on w1 does a full sync"


def test_a_run_step_whose_target_is_gone_fails_in_plain_words():
    """The step fails (no exception reaches the runner), its observation the reason unquoted."""
    from types import SimpleNamespace

    from testbed.scenario.runget_step import run_step

    step = SimpleNamespace(where="ghost", container="", command=["true"], stdout_contains=None,
                           stdout_matches=None, retry_for=0.0, timeout=5.0,
                           describe=lambda: "run true in ghost")
    cluster = SimpleNamespace(find_pod=lambda name: None, network=SimpleNamespace(hosts={}))
    outcome = run_step(cluster, step)
    assert outcome.passed is False
    assert outcome.observed == "no pod, node or client is named 'ghost'"
