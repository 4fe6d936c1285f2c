"""The NetworkPolicy truth-table scenarios (scenarios/netpol): they load and check out without
root, and every table they expect is the one upstream's own expectation calls build.

Above each reachability step ported from upstream's test/e2e/network/netpol/network_policy.go,
a comment block quotes the calls upstream makes for that validation, e.g.

    # upstream: reachability := NewReachability(k8s.AllPodStrings(), true)
    #           reachability.ExpectAllIngress(NewPodString(nsX, "a"), false)
    #           reachability.Expect(NewPodString(nsX, "b"), NewPodString(nsX, "a"), true)
    #           ValidateOrFail(k8s, &TestCase{ToPort: 80, Protocol: v1.ProtocolTCP, ...})

Here those calls are replayed as upstream's Reachability replays them (reachability.go,
truthtable.go: a table of the default value, then each call sets its cells, in order) over the
step's pods, and the result must equal the table the step expects, cell by cell, loopback cells
included; the step must probe exactly the port and protocol upstream validates.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import ROOT

NETPOL = ROOT / "scenarios" / "netpol"
SCENARIOS = sorted(p for p in NETPOL.glob("*.yaml") if p.name != "topology.yaml")
NAMESPACES = {"nsX": "x", "nsY": "y", "nsZ": "z"}

# -- upstream's calls, replayed -------------------------------------------------------------------

_POD = r'NewPodString\((ns[XYZ]), "([a-z])"\)'
_PEER = r"&Peer\{([^}]*)\}"
_BOOL = r"(true|false)"
_CALLS = re.compile("|".join([
    rf"(?P<new>NewReachability)\(k8s\.AllPodStrings\(\), {_BOOL}\)",
    rf"(?P<peer>ExpectPeer)\({_PEER}, {_PEER}, {_BOOL}\)",
    rf"(?P<ingress>ExpectAllIngress)\({_POD}, {_BOOL}\)",
    rf"(?P<egress>ExpectAllEgress)\({_POD}, {_BOOL}\)",
    rf"(?P<one>\.Expect)\({_POD}, {_POD}, {_BOOL}\)",
    r"(?P<validate>ValidateOrFail)\(k8s, &TestCase\{ToPort: (\d+), Protocol: v1\.Protocol(TCP|UDP)",
]))


def _peer(body: str) -> tuple[str, str]:
    """upstream's Peer literal (`Namespace: nsX, Pod: "a"`) -> (namespace, pod), "" for any."""
    fields = dict(re.findall(r'(Namespace|Pod): (ns[XYZ]|"[a-z]")', body))
    if re.sub(r'(Namespace|Pod): (ns[XYZ]|"[a-z]")|[,\s]', "", body):
        raise ValueError(f"cannot read Peer{{{body}}}")
    return NAMESPACES.get(fields.get("Namespace", ""), ""), fields.get("Pod", "").strip('"')


def replay(text: str, pods: list[str]) -> tuple[dict[tuple[str, str], bool], list[str]]:
    """The table upstream's calls in `text` build over `pods` (upstream's AllPodStrings), and the
    ports they validate (["tcp/80"]). ValueError when the text holds no NewReachability."""
    table: dict[tuple[str, str], bool] | None = None
    ports = []

    def matches(peer: tuple[str, str], pod: str) -> bool:   # upstream's Peer.Matches
        ns, name = pod.split("/")
        return peer[0] in ("", ns) and peer[1] in ("", name)

    for m in _CALLS.finditer(text):
        g = [x for x in m.groups() if x is not None][1:]
        if m["new"]:
            table = {(f, t): g[0] == "true" for f in pods for t in pods}
            continue
        if m["validate"]:
            ports.append(f"{g[1].lower()}/{g[0]}")
            continue
        if table is None:
            raise ValueError(f"{m[0]} before NewReachability")
        if m["peer"]:
            source, destination, value = _peer(g[0]), _peer(g[1]), g[2] == "true"
            for cell in table:
                if matches(source, cell[0]) and matches(destination, cell[1]):
                    table[cell] = value
        elif m["ingress"] or m["egress"]:
            pod, value = f"{NAMESPACES[g[0]]}/{g[1]}", g[2] == "true"
            side = 1 if m["ingress"] else 0
            if pod not in pods:
                raise ValueError(f"{pod} is not one of the step's pods")
            for cell in table:
                if cell[side] == pod:
                    table[cell] = value
        else:
            source, destination = f"{NAMESPACES[g[0]]}/{g[1]}", f"{NAMESPACES[g[2]]}/{g[3]}"
            if (source, destination) not in table:
                raise ValueError(f"{source} -> {destination} is not a cell of the step")
            table[(source, destination)] = g[4] == "true"
    if table is None:
        raise ValueError("no NewReachability(...) in the upstream comment")
    return table, ports


# -- the scenario files ---------------------------------------------------------------------------

def comment_blocks(path: Path) -> list[str]:
    """For each step of the file (a `  - ` item of its steps list, in order), the comment lines
    right above it, joined."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("steps:"))
    blocks = []
    for i in range(start + 1, len(lines)):
        if lines[i].startswith("  - "):
            above = []
            j = i - 1
            while j > start and lines[j].lstrip().startswith("#"):
                above.insert(0, lines[j].strip().lstrip("#").strip())
                j -= 1
            blocks.append("\n".join(above))
    return blocks


def upstream_steps(path: Path) -> list[tuple[object, str]]:
    """(step, upstream comment) for every reachability step that quotes upstream's calls."""
    from testbed.scenario.spec import load_scenario

    scenario = load_scenario(path)
    blocks = comment_blocks(path)
    assert len(blocks) == len(scenario.steps), f"{path.name}: every step is a `  - ` item"
    return [(step, block) for step, block in zip(scenario.steps, blocks, strict=True)
            if "upstream:" in block]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_netpol_scenario_prepares(path: Path):
    """Topology, manifests (NetworkPolicies included), names and steps check out, as
    `testbed validate` and `testbed run` check them before building anything."""
    from testbed.scenario.runner import prepare

    prepared = prepare(str(path))
    assert prepared.scenario.description
    assert prepared.topology.workers


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_expected_tables_are_upstreams(path: Path):
    from testbed.scenario.reachability import Reachability
    from testbed.scenario.truthtable import Member, expected_table

    ported = upstream_steps(path)
    if path.name != "beyond-upstream.yaml":
        assert ported, f"{path.name} quotes upstream's calls above its steps"
    for step, block in ported:
        action = step.action
        assert isinstance(action, Reachability), f"{step.name}: upstream calls above a non-reachability step"
        pods = list(action.sources)
        assert list(action.destinations) == pods, f"{step.name}: from = to, as upstream's table"
        want, ports = replay(block, pods)
        assert [str(p) for p in action.ports] == ports, f"{step.name}: upstream validates {ports}"
        members = [Member(p, p.split("/")[1], p.split("/")[0]) for p in pods]
        e = action.expect
        table = expected_table(members, members, e.default, e.exceptions, e.matrix)
        got = {cell: table.get(*cell) for cell in table.cells()}
        wrong = sorted(f"{f} -> {t}: upstream {want[(f, t)]}, step {got.get((f, t))}"
                       for (f, t) in want if got.get((f, t)) != want[(f, t)])
        assert not wrong, f"{path.name}: {step.name}:\n" + "\n".join(wrong)


def test_at_least_thirty_upstream_cases():
    titles = set()
    for path in SCENARIOS:
        for step, block in upstream_steps(path):
            title = re.search(r'It\("(.*)"\)', block)
            titles.add((path.name, title[1] if title else step.name.split(" [")[0]))
    assert len(titles) >= 30, sorted(titles)


@pytest.mark.parametrize("text, pods, table", [
    # ExpectPeer matches by namespace, by pod, or everything; a later call overrides.
    ('NewReachability(k8s.AllPodStrings(), true)\n'
     'reachability.ExpectPeer(&Peer{}, &Peer{Namespace: nsX}, false)\n'
     'reachability.ExpectPeer(&Peer{Namespace: nsY, Pod: "a"}, &Peer{Namespace: nsX, Pod: "a"}, true)',
     ["x/a", "y/a"], {("x/a", "x/a"): False, ("y/a", "x/a"): True, ("x/a", "y/a"): True,
                      ("y/a", "y/a"): True}),
    ('NewReachability(k8s.AllPodStrings(), true)\n'
     'reachability.ExpectAllEgress(NewPodString(nsX, "a"), false)\n'
     'reachability.Expect(NewPodString(nsX, "a"), NewPodString(nsY, "a"), true)',
     ["x/a", "y/a"], {("x/a", "x/a"): False, ("x/a", "y/a"): True, ("y/a", "x/a"): True,
                      ("y/a", "y/a"): True}),
])
def test_replay_follows_upstreams_semantics(text, pods, table):
    assert replay(text, pods)[0] == table


def test_replay_refuses_what_it_cannot_read():
    with pytest.raises(ValueError):
        replay("reachability.ExpectPeer(&Peer{}, &Peer{}, false)", ["x/a"])
    with pytest.raises(ValueError):
        _peer('Namespace: nsX, Zone: "a"')
