"""testbed.scenario.spec: every step form, defaults, path resolution, every problem at once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from testbed.scenario.spec import (
    Expect,
    Probe,
    Scenario,
    Sleep,
    Step,
    Target,
    load_scenario,
)
from testbed.spec.source import SpecError

from .conftest import ROOT

SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))


@pytest.fixture
def scenario(write):
    """scenario(steps_text) -> Scenario from s.yaml next to an (unread) topology.yaml."""
    write("topology.yaml", "name: t\n")

    def _scenario(text: str) -> Scenario:
        return load_scenario(write("s.yaml", text))

    return _scenario


@pytest.fixture
def problems(write, tmp_path):
    """problems(text) -> every problem as "s.yaml:LINE: field: reason" (no directory)."""
    write("topology.yaml", "name: t\n")

    def _problems(text: str) -> list[str]:
        path = write("s.yaml", text)
        with pytest.raises(SpecError) as info:
            load_scenario(path)
        return [str(p).replace(str(tmp_path) + "/", "") for p in info.value.problems]

    return _problems


def one_step(scenario, step: str) -> Step:
    """The single step of a scenario whose steps list is `step` (YAML, one item)."""
    s = scenario("topology: topology.yaml\nsteps:\n" + step)
    [only] = s.steps
    return only


def step_problems(problems, step: str) -> list[str]:
    return problems("topology: topology.yaml\nsteps:\n" + step)


# --- the scenario ------------------------------------------------------------------------------

def test_minimal_scenario_and_defaults(scenario, tmp_path):
    s = scenario("topology: topology.yaml\n")
    assert s.name == "s"  # the file's stem
    assert s.file == str(tmp_path / "s.yaml")
    assert s.description == ""
    assert s.topology == (tmp_path / "topology.yaml").resolve()
    assert s.manifests == ()
    assert s.steps == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "x"  # type: ignore[misc]


def test_name_and_description(scenario):
    s = scenario("name: tour\ndescription: |\n  line one\n  line two\ntopology: topology.yaml\n")
    assert s.name == "tour"
    assert s.description == "line one\nline two"


def test_relative_paths_resolve_against_the_scenario_file(write, tmp_path, monkeypatch):
    write("topologies/two.yaml", "name: two\n")
    write("scen/manifests/a.yaml", "kind: Pod\n")
    write("scen/manifests/b.yaml", "kind: Pod\n")
    path = write("scen/s.yaml", """
        topology: ../topologies/two.yaml
        manifests: [manifests/a.yaml, ./manifests/../manifests/b.yaml]
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter
    s = load_scenario(path)
    assert s.topology == (tmp_path / "topologies" / "two.yaml").resolve()
    assert s.manifests == ((tmp_path / "scen/manifests/a.yaml").resolve(),
                           (tmp_path / "scen/manifests/b.yaml").resolve())
    assert s.topology.is_absolute()


def test_one_manifest_as_a_string(scenario, write, tmp_path):
    write("pods.yaml", "kind: Pod\n")
    s = scenario("topology: topology.yaml\nmanifests: pods.yaml\n")
    assert s.manifests == ((tmp_path / "pods.yaml").resolve(),)


def test_absolute_topology_path(scenario, write):
    topo = write("abs/t.yaml", "name: t\n")
    assert scenario(f"topology: {topo}\n").topology == topo.resolve()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_scenarios_load(path: Path):
    s = load_scenario(path)
    assert s.topology.is_file()
    assert all(m.is_file() for m in s.manifests)
    assert s.steps
    assert any(isinstance(step.action, Probe) for step in s.steps)
    assert s.description, "every shipped scenario opens with what it demonstrates"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_scenarios_prepare(path: Path):
    """Topology, manifests, names and commands of every shipped scenario check out."""
    from testbed.scenario.runner import prepare

    prepared = prepare(str(path))
    assert prepared.topology.workers


def test_shipped_tour():
    s = load_scenario(ROOT / "scenarios" / "tour.yaml")
    assert s.name == "tour"
    assert s.topology == (ROOT / "topologies" / "article.yaml").resolve()
    assert s.addons == ("ingress-nginx",)
    # Every section of the article, in its order.
    sections = [step.name.split(".")[0] for step in s.steps if step.name[:1].isdigit()]
    assert sorted(set(sections), key=int) == [str(i) for i in range(1, 10)]
    assert sections == sorted(sections, key=int)
    first = next(step for step in s.steps if isinstance(step.action, Probe))
    assert first.action == Probe("http", "pod-1", Target("localhost", 8080, "/hostname"),
                                 Expect(body_contains="pod-1"))


# --- step forms --------------------------------------------------------------------------------

def test_icmp_probe_defaults(scenario):
    step = one_step(scenario, "  - probe: icmp\n    from: pod-a\n    to: pod-b\n")
    assert step == Step("icmp pod-a -> pod-b", 3, Probe(
        "icmp", "pod-a", Target("pod-b", None, "/"), Expect(True), 2.0, 0.0, "hostname", ()))


def test_tcp_probe_with_everything(scenario):
    step = one_step(scenario, """\
  - name: keeps the source
    probe: tcp
    from: pod-a
    to: pod-b:8080
    timeout: 0.5
    retryFor: 3
    expect: {sourceIP: pod-a}
""")
    assert step.name == "keeps the source"
    assert step.line == 3
    assert step.action == Probe("tcp", "pod-a", Target("pod-b", 8080), Expect(source_ip="pod-a"),
                                timeout=0.5, retry_for=3.0)


def test_tcp_to_an_ip_and_default_name(scenario):
    step = one_step(scenario, "  - {probe: tcp, from: client, to: '10.96.0.10:53'}\n")
    assert step.action.target == Target("10.96.0.10", 53)
    assert step.name == "tcp client -> 10.96.0.10:53"


def test_udp_probe_with_payload_and_reply(scenario):
    step = one_step(scenario, """\
  - probe: udp
    from: pod-c
    to: pod-a:8081
    payload: echo hi
    expect: {reply: hi}
""")
    assert step.action == Probe("udp", "pod-c", Target("pod-a", 8081), Expect(reply="hi"),
                                payload="echo hi")
    assert step.name == "udp pod-c -> pod-a:8081"


@pytest.mark.parametrize(("to", "target", "name"), [
    ("http://pod-c:8080/clientip", Target("pod-c", 8080, "/clientip"), "http p -> http://pod-c:8080/clientip"),
    ("pod-c:8080/x/y", Target("pod-c", 8080, "/x/y"), "http p -> http://pod-c:8080/x/y"),
    ("web", Target("web", 80, "/"), "http p -> http://web:80/"),
    ("http://web/?a=1&b=2", Target("web", 80, "/?a=1&b=2"), "http p -> http://web:80/?a=1&b=2"),
    ("http://10.0.0.5:65535", Target("10.0.0.5", 65535, "/"), "http p -> http://10.0.0.5:65535/"),
])
def test_http_targets(scenario, to, target, name):
    step = one_step(scenario, f"  - {{probe: http, from: p, to: '{to}'}}\n")
    assert step.action.target == target
    assert step.name == name


def test_http_probe_headers_and_expectations(scenario):
    step = one_step(scenario, """\
  - probe: http
    from: client
    to: http://ingress/foo
    headers: {Host: foo.example, X-Num: 7}
    expect: {status: 404, bodyContains: not found, sourceIP: client}
""")
    assert step.action.headers == (("Host", "foo.example"), ("X-Num", "7"))
    assert step.action.expect == Expect(True, "client", 404, "not found", None)


def test_unreachable_forms(scenario):
    a = one_step(scenario, "  - {probe: tcp, from: a, to: 'b:1', expect: unreachable}\n")
    b = one_step(scenario, "  - {probe: tcp, from: a, to: 'b:1', expect: {reachable: false}}\n")
    assert a.action.expect == b.action.expect == Expect(reachable=False)


def test_sleep_steps(scenario):
    s = scenario("topology: topology.yaml\nsteps:\n  - sleep: 1.5\n  - {sleep: 0, name: settle}\n  - sleep: 2\n")
    assert s.steps == (Step("sleep 1.5s", 3, Sleep(1.5)), Step("settle", 4, Sleep(0.0)),
                       Step("sleep 2s", 5, Sleep(2.0)))


def test_steps_keep_order_and_lines(scenario):
    s = scenario("""
        topology: topology.yaml
        steps:
          # a comment
          - sleep: 1
          - probe: icmp
            from: a
            to: b

          - sleep: 2
    """)
    assert [(st.line, type(st.action).__name__) for st in s.steps] == [
        (4, "Sleep"), (5, "Probe"), (9, "Sleep")]


@pytest.mark.parametrize(("expect", "text"), [
    (Expect(), "reachable"),
    (Expect(reachable=False, source_ip="x"), "unreachable"),
    (Expect(source_ip="pod-a", status=200), "reachable, source pod-a, status 200"),
    (Expect(body_contains="hi", reply="yo"), "reachable, body has 'hi', reply has 'yo'"),
])
def test_expect_describe(expect, text):
    assert expect.describe() == text


# --- problems ----------------------------------------------------------------------------------

def test_unknown_top_level_field(problems):
    assert problems("topology: topology.yaml\nsetps: []\n") == [
        's.yaml:2: setps: unknown field "setps"']


def test_topology_required(problems):
    assert problems("name: x\n") == ["s.yaml:1: topology: Required value: the topology file to build"]


def test_topology_missing_file(problems, write, tmp_path):
    assert problems("name: x\ntopology: nope/t.yaml\n") == [
        's.yaml:2: topology: Invalid value: "nope/t.yaml": no such file: nope/t.yaml']  # (problems() strips tmp_path/)
    with pytest.raises(SpecError) as info:
        load_scenario(write("s.yaml", "topology: ../t.yaml\n"))
    # the message names the resolved absolute path, not the text of the file
    assert info.value.problems[0].message == (
        f'Invalid value: "../t.yaml": no such file: {(tmp_path / "../t.yaml").resolve()}')


def test_topology_not_a_string(problems):
    assert problems("topology: [a]\n") == ['s.yaml:1: topology: Invalid value: ["a"]: must be a string']


@pytest.mark.parametrize(("name", "reason"), [
    ("''", "Required value"), ("5", "Invalid value: 5: must be a string"),
    ("[a]", 'Invalid value: ["a"]: must be a string'),
])
def test_bad_scenario_name(problems, name, reason):
    assert problems(f"name: {name}\ntopology: topology.yaml\n") == [f"s.yaml:1: name: {reason}"]


def test_manifest_problems(problems, write):
    write("ok.yaml", "kind: Pod\n")
    assert problems("""
        topology: topology.yaml
        manifests:
          - ok.yaml
          - 7
          - missing.yaml
    """) == [
        "s.yaml:4: manifests[1]: Invalid value: 7: must be a string",
        's.yaml:5: manifests[2]: Invalid value: "missing.yaml": no such file: missing.yaml',
    ]


def test_manifests_must_be_a_list(problems):
    assert problems("topology: topology.yaml\nmanifests: {a: b}\n") == [
        's.yaml:2: manifests: Invalid value: {"a": "b"}: must be a list']


def test_steps_must_be_a_list(problems):
    assert problems("topology: topology.yaml\nsteps: {sleep: 1}\n") == [
        's.yaml:2: steps: Invalid value: {"sleep": 1}: must be a list']


@pytest.mark.parametrize(("step", "expected"), [
    ('  - just words\n',
     's.yaml:3: steps[0]: Invalid value: "just words": a step must be a mapping with one action (probe, sleep, reachability, trace, capture, route, run, get, kubeProxy, apply, delete, scale, wait, kill, restart, link, node, partition, heal, readiness, shape, inspect, label)'),
    ('  - {name: x, wait: 3}\n',
     's.yaml:3: steps[0].wait: Invalid value: 3: must be a mapping with one of ready, endpoints, loadBalancer'),
    ('  - {name: x, pause: 3}\n',
     's.yaml:3: steps[0]: Required value: a step needs one of probe, sleep, reachability, trace, capture, route, run, get, kubeProxy, apply, delete, scale, wait, kill, restart, link, node, partition, heal, readiness, shape, inspect, label (has name, pause)'),
    ('  - {}\n',
     's.yaml:3: steps[0]: Required value: a step needs one of probe, sleep, reachability, trace, capture, route, run, get, kubeProxy, apply, delete, scale, wait, kill, restart, link, node, partition, heal, readiness, shape, inspect, label (has nothing)'),
    ('  - {sleep: -1}\n',
     's.yaml:3: steps[0].sleep: Invalid value: -1: must be greater than or equal to 0'),
    ('  - {sleep: soon}\n',
     's.yaml:3: steps[0].sleep: Invalid value: "soon": must be a number'),
    ('  - {sleep: true}\n',
     's.yaml:3: steps[0].sleep: Invalid value: true: must be a number'),
    ('  - {sleep: 1, to: x}\n',
     's.yaml:3: steps[0].to: unknown field "to"'),
    ('  - {probe: ping, from: a, to: b}\n',
     's.yaml:3: steps[0].probe: Unsupported value: "ping": supported values: "icmp", "tcp", "udp", "http", "dns"'),
    ('  - {probe: icmp, to: b}\n',
     's.yaml:3: steps[0].from: Required value: the pod, node or client to probe from'),
    ("  - {probe: icmp, from: '', to: b}\n",
     's.yaml:3: steps[0].from: Required value: the pod, node or client to probe from'),
    ('  - {probe: icmp, from: a}\n',
     's.yaml:3: steps[0].to: Required value: a name or IP (with :port for tcp/udp, a URL for http)'),
    ("  - {probe: icmp, from: a, to: 'b:80'}\n",
     's.yaml:3: steps[0].to: Invalid value: "b:80": an icmp probe takes no port'),
    ('  - {probe: tcp, from: a, to: b}\n',
     's.yaml:3: steps[0].to: Invalid value: "b": a tcp probe needs NAME:PORT, with a port between 1 and 65535, inclusive'),
    ("  - {probe: udp, from: a, to: 'b:0'}\n",
     's.yaml:3: steps[0].to: Invalid value: "b:0": a udp probe needs NAME:PORT, with a port between 1 and 65535, inclusive'),
    ("  - {probe: tcp, from: a, to: 'b:65536'}\n",
     's.yaml:3: steps[0].to: Invalid value: "b:65536": a tcp probe needs NAME:PORT, with a port between 1 and 65535, inclusive'),
    ("  - {probe: tcp, from: a, to: 'b:http'}\n",
     's.yaml:3: steps[0].to: Invalid value: "b:http": a tcp probe needs NAME:PORT, with a port between 1 and 65535, inclusive'),
    ("  - {probe: http, from: a, to: 'https://b/'}\n",
     's.yaml:3: steps[0].to: Invalid value: "https://b/": must be an http:// URL (the probe speaks plain HTTP)'),
    ("  - {probe: http, from: a, to: 'http://:80/'}\n",
     's.yaml:3: steps[0].to: Invalid value: "http://:80/": must name a host'),
    ("  - {probe: http, from: a, to: 'http://b:99999/'}\n",
     's.yaml:3: steps[0].to: Invalid value: "http://b:99999/": the port must be between 1 and 65535, inclusive'),
    ("  - {probe: http, from: a, to: 'b:port'}\n",
     's.yaml:3: steps[0].to: Invalid value: "b:port": the port must be between 1 and 65535, inclusive'),
    ('  - {probe: icmp, from: a, to: b, timeout: 0.05}\n',
     's.yaml:3: steps[0].timeout: Invalid value: 0.05: must be greater than or equal to 0.1'),
    ('  - {probe: icmp, from: a, to: b, retryFor: -1}\n',
     's.yaml:3: steps[0].retryFor: Invalid value: -1: must be greater than or equal to 0'),
    ("  - {probe: icmp, from: a, to: b, retryFor: '5s'}\n",
     's.yaml:3: steps[0].retryFor: Invalid value: "5s": must be a number'),
    ("  - {probe: udp, from: a, to: 'b:1', payload: 5}\n",
     's.yaml:3: steps[0].payload: Invalid value: 5: must be a string'),
    ("  - {probe: tcp, from: a, to: 'b:1', headers: {X: y}}\n",
     's.yaml:3: steps[0].headers: Forbidden: only http probes send headers'),
    ('  - {probe: http, from: a, to: b, headers: [X]}\n',
     's.yaml:3: steps[0].headers: Invalid value: ["X"]: must be an object'),
    ('  - {probe: http, from: a, to: b, headers: {X: [1]}}\n',
     's.yaml:3: steps[0].headers.X: Invalid value: [1]: must be a string'),
    ('  - {probe: icmp, from: a, to: b, expect: maybe}\n',
     's.yaml:3: steps[0].expect: Invalid value: "maybe": must be reachable, unreachable, or a mapping of answer, backends, bodyContains, reachable, reason, reply, sourceIP, status, unreachable'),
    ("  - {probe: icmp, from: a, to: b, expect: {reachable: 'no'}}\n",
     's.yaml:3: steps[0].expect.reachable: Invalid value: "no": must be a boolean'),
    ('  - {probe: icmp, from: a, to: b, expect: {sourceIP: a}}\n',
     's.yaml:3: steps[0].expect.sourceIP: Forbidden: an icmp probe cannot check sourceIP'),
    ("  - {probe: tcp, from: a, to: 'b:1', expect: {status: 200}}\n",
     's.yaml:3: steps[0].expect.status: Forbidden: a tcp probe cannot check status'),
    ("  - {probe: udp, from: a, to: 'b:1', expect: {bodyContains: x}}\n",
     's.yaml:3: steps[0].expect.bodyContains: Forbidden: a udp probe cannot check bodyContains'),
    ('  - {probe: http, from: a, to: b, expect: {reply: x}}\n',
     's.yaml:3: steps[0].expect.reply: Forbidden: an http probe cannot check reply'),
    ('  - {probe: http, from: a, to: b, expect: {status: 99}}\n',
     's.yaml:3: steps[0].expect.status: Invalid value: 99: must be between 100 and 599, inclusive'),
    ("  - {probe: http, from: a, to: b, expect: {status: '200'}}\n",
     's.yaml:3: steps[0].expect.status: Invalid value: "200": must be an integer'),
    ('  - {probe: http, from: a, to: b, expect: {bodyContains: 5}}\n',
     's.yaml:3: steps[0].expect.bodyContains: Invalid value: 5: must be a string'),
    ('  - {probe: http, from: a, to: b, expect: {reachable: false, status: 200}}\n',
     's.yaml:3: steps[0].expect: Forbidden: an unreachable expectation takes no other checks than reason'),
    ('  - {probe: http, from: a, to: b, expect: {code: 200}}\n',
     's.yaml:3: steps[0].expect.code: unknown field "code"'),
])
def test_step_problems(problems, step, expected):
    assert step_problems(problems, step) == [expected]


def test_probe_and_sleep_in_one_step(problems):
    assert step_problems(problems, "  - {probe: icmp, from: a, to: b, sleep: 1}\n") == [
        "s.yaml:3: steps[0]: Forbidden: a step has one action, this one has probe, sleep"]


def test_http_port_zero_is_refused(problems):
    assert step_problems(problems, "  - {probe: http, from: a, to: 'http://b:0/'}\n") == [
        's.yaml:3: steps[0].to: Invalid value: "http://b:0/": the port must be between 1 and 65535, '
        "inclusive"]


def test_every_problem_is_reported_at_once_with_lines(problems):
    found = problems("""
        name: demo
        topology: missing.yaml
        extra: 1
        manifests: [gone.yaml]
        steps:
          - probe: icmp
            from: a
            to: b
          - probe: tcp
            from: a
            to: b
          - sleep: -2
          - probe: http
            to: http://x/
            expect: {status: 1000}
          - wait: 3
    """)
    assert found == [
        's.yaml:3: extra: unknown field "extra"',
        's.yaml:2: topology: Invalid value: "missing.yaml": no such file: missing.yaml',
        's.yaml:4: manifests[0]: Invalid value: "gone.yaml": no such file: gone.yaml',
        's.yaml:11: steps[1].to: Invalid value: "b": a tcp probe needs NAME:PORT, with a port '
        "between 1 and 65535, inclusive",
        "s.yaml:12: steps[2].sleep: Invalid value: -2: must be greater than or equal to 0",
        "s.yaml:13: steps[3].from: Required value: the pod, node or client to probe from",
        "s.yaml:15: steps[3].expect.status: Invalid value: 1000: must be between 100 and 599, "
        "inclusive",
        "s.yaml:16: steps[4].wait: Invalid value: 3: must be a mapping with one of ready, "
        "endpoints, loadBalancer",
    ]


def test_scenario_must_be_one_mapping(write, tmp_path):
    path = write("s.yaml", "- sleep: 1\n")
    with pytest.raises(SpecError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}:1: expected exactly one YAML mapping, found a list"


def test_missing_scenario_file(tmp_path):
    with pytest.raises(SpecError) as info:
        load_scenario(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such file"


# --- when: the pod networks a step holds under ------------------------------------------------

def test_when_limits_a_step_to_pod_networks(scenario):
    from testbed.spec.topology import PodNetworkSpec

    step = one_step(scenario, "  - sleep: 1\n    when: {routing: [gateway, bgp], plugin: cni}\n")
    assert step.when == (("routing", ("gateway", "bgp")), ("plugin", ("cni",)))
    assert step.skipped_under(PodNetworkSpec("cni", "bgp")) is None
    assert step.skipped_under(PodNetworkSpec("cni", "vxlan")) == \
        "holds only under routing gateway or bgp (this run: routing vxlan)"
    assert step.skipped_under(PodNetworkSpec("builtin", "gateway")) == \
        "holds only under plugin cni (this run: plugin builtin)"
    assert one_step(scenario, "  - sleep: 1\n    when: {routing: host-gw}\n").when == \
        (("routing", ("host-gw",)),)


def test_a_bad_when_is_refused(scenario):
    with pytest.raises(SpecError) as info:
        scenario("name: s\ntopology: topology.yaml\nsteps:\n"
                 "  - sleep: 1\n    when: {routing: [ipip], colour: red}\n"
                 "  - sleep: 1\n    when: {}\n")
    found = [f"{p.line}: {p.field}: {p.message}" for p in info.value.problems]
    assert found == ['5: steps[0].when.colour: unknown field "colour"',
                     '5: steps[0].when.routing[0]: Unsupported value: "ipip": supported values: '
                     '"gateway", "host-gw", "vxlan", "bgp"',
                     "7: steps[1].when: Required value: routing, plugin or both"]


# --- capture and route steps ---------------------------------------------------------------------

def test_a_capture_step_runs_a_probe_while_tcpdump_listens(scenario):
    from testbed.scenario.spec import Capture

    step = one_step(scenario, """\
  - capture: {host: node1, filter: udp port 8472, while: {probe: icmp, from: pod-1, to: 10.0.2.2}}
    expect: {shows: [OTV, "10.0.1.2 > 10.0.2.2"]}
""")
    assert step.action == Capture("node1", "", "udp port 8472", Probe(
        "icmp", "pod-1", Target("10.0.2.2", None, "/"), Expect(True)), True, ("OTV", "10.0.1.2 > 10.0.2.2"))
    assert step.name == "packets matching 'udp port 8472' on node1, showing 'OTV', showing '10.0.1.2 > 10.0.2.2'"
    quiet = one_step(scenario, "  - capture: {host: gw, interface: gw-eth0, filter: icmp, "
                               "while: {probe: tcp, from: a, to: 'b:80'}}\n    expect: {seen: false}\n")
    assert (quiet.action.interface, quiet.action.seen) == ("gw-eth0", False)


def test_a_bad_capture_is_refused_with_every_reason(problems):
    found = step_problems(problems, """\
  - capture: {host: Node_1, interface: "a/b", filter: "-w /etc/x"}
    expect: {seen: false, shows: [x]}
""")
    assert found == [
        "s.yaml:3: steps[0].capture.host: Invalid value: \"Node_1\": a lowercase RFC 1123 label must "
        "consist of lower case alphanumeric characters or '-', and must start and end with an "
        "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        's.yaml:3: steps[0].capture.interface: Invalid value: "a/b": must be an interface name '
        "(at most 15 characters, no '/' or spaces)",
        's.yaml:3: steps[0].capture.filter: Invalid value: "-w /etc/x": must be a pcap filter '
        'expression (tcpdump\'s), e.g. "udp port 8472"',
        "s.yaml:3: steps[0].capture.while: Required value: the probe to run while capturing",
        "s.yaml:4: steps[0].expect.shows: Forbidden: nothing can be shown when no packets are to be seen"]


def test_route_steps(scenario):
    from testbed.scenario.spec import RouteCheck

    step = one_step(scenario, "  - route: {host: gateway, to: 10.0.2.0/24}\n"
                              "    expect: {via: node2, proto: bird}\n    timeout: 15\n")
    assert step.action == RouteCheck("gateway", "10.0.2.0/24", "node2", None, "bird", False, 15.0)
    assert step.name == "a route to 10.0.2.0/24 on gateway via node2 proto bird"
    gone = one_step(scenario, "  - route: {host: gateway, to: 10.0.2.0/24}\n    expect: absent\n")
    assert gone.action.absent and gone.name == "no route to 10.0.2.0/24 on gateway"


def test_a_bad_route_step_is_refused(problems):
    found = step_problems(problems, "  - route: {host: gw, to: 10.0.2.1/24}\n"
                                    "    expect: {absent: true, via: node2}\n")
    assert found == [
        's.yaml:3: steps[0].route.to: Invalid value: "10.0.2.1/24": must be a network address '
        "(the network is 10.0.2.0/24)",
        "s.yaml:4: steps[0].expect: Forbidden: an absent route has no via, dev or proto"]


def test_judge_route():
    from testbed.scenario.spec import RouteCheck
    from testbed.scenario.steps import judge_route

    learned = [{"dst": "10.0.2.0/24", "gateway": "172.16.0.3", "dev": "br-nodes", "protocol": "bird"}]
    want = RouteCheck("gw", "10.0.2.0/24", "node2", None, "bird")
    assert judge_route(want, learned, "172.16.0.3") == \
        (True, "10.0.2.0/24 via 172.16.0.3 dev br-nodes proto bird")
    assert judge_route(want, learned, "172.16.0.4")[0] is False
    assert judge_route(RouteCheck("gw", "10.0.2.0/24", proto="static"), learned, None)[0] is False
    assert judge_route(RouteCheck("gw", "10.0.2.0/24", absent=True), learned, None) == \
        (False, "still there: 10.0.2.0/24 via 172.16.0.3 dev br-nodes proto bird")
    assert judge_route(RouteCheck("gw", "10.0.2.0/24", absent=True), [], None) == \
        (True, "no route to 10.0.2.0/24 on gw")
    assert judge_route(want, [], "172.16.0.3")[0] is False
    multipath = [{"dst": "10.0.2.0/24", "nexthops": [{"gateway": "172.16.0.2", "dev": "e0"},
                                                     {"gateway": "172.16.0.3", "dev": "e1"}]}]
    assert judge_route(RouteCheck("gw", "10.0.2.0/24", "node2", "e1"), multipath, "172.16.0.3") == \
        (True, "10.0.2.0/24 via 172.16.0.2 via 172.16.0.3")
