"""Reachability, label and reason steps on a real two-node cluster, run as a user runs them.

Ten pods in namespaces x and y (a, c, e on w1; b, d on w2), each running agnhost
serve-hostname on port 80 over TCP and over UDP, in two containers, as upstream's netpol
truth-table pods do. No NetworkPolicy: everything
is allowed, so a correct allow-all matrix passes and a wrong expectation fails with its
mismatches marked; a closed port is refused, a partition at the gateway makes probes time out
(nothing comes back, as when a policy drops packets), and a label step changes labels in place.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from tests.integration.conftest import TOPOLOGIES, run_testbed

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"
W1, W2 = ("a", "c", "e"), ("b", "d")
NAMESPACES = ("x", "y")
ALL = [f"{ns}/{name}" for ns in NAMESPACES for name in sorted(W1 + W2)]


def manifests() -> list[dict]:
    out: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                       for ns in NAMESPACES]
    for ns in NAMESPACES:
        for name in sorted(W1 + W2):
            out.append({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name, "namespace": ns, "labels": {"pod": name}},
                        "spec": {"nodeName": "w1" if name in W1 else "w2", "containers": [
                            {"name": f"cont-80-{proto}", "image": AGNHOST,
                             "args": ["serve-hostname", f"--{proto}", "--http=false", "--port=80"],
                             # Ready once it serves: the first matrix probes right away
                             **({"readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}}
                                if proto == "tcp" else {})}
                            for proto in ("tcp", "udp")]}})
    return out


def steps() -> list[dict]:
    on_w1 = [f"{ns}/{n}" for ns in NAMESPACES for n in W1]
    on_w2 = [f"{ns}/{n}" for ns in NAMESPACES for n in W2]
    return [
        {"name": "everything reaches everything",
         "reachability": {"pods": ALL, "ports": ["tcp/80", "udp/80"]},
         "expect": {"allow": "all"}},
        {"name": "a wrong expectation",
         "reachability": {"pods": ["x/a", "x/b", "y/a"], "ports": [80]},
         "expect": {"allow": "all", "except": ["y/* -> x/a"]}},
        {"name": "nodes and the client reach pods, as a matrix says",
         "reachability": {"from": ["client", "w1", "x/a"], "to": ["x/b", "y/e"], "ports": ["icmp"]},
         "expect": {"matrix": "-\tx/b\ty/e\nclient\t.\t.\nw1\t.\t.\nx/a\t.\t."}},
        {"name": "a closed port is denied to all",
         "reachability": {"pods": ["x/a", "y/b"], "ports": ["tcp/81", "udp/81"]},
         "expect": {"deny": "all"}},
        {"name": "a closed port refuses",
         "probe": "tcp", "from": "x/a", "to": "y/b:81",
         "expect": {"reachable": False, "reason": "refused"}},
        {"name": "a closed UDP port refuses",
         "probe": "udp", "from": "x/a", "to": "y/b:81",
         "expect": {"reachable": False, "reason": "refused"}},
        {"name": "relabel x/a", "label": {"pod": "x/a", "labels": {"pod": "z", "team": "blue"}}},
        {"name": "unlabel x/a", "label": {"pod": "x/a", "labels": {"team": None}}},
        {"wait": {"ready": {"selector": "pod=z", "namespace": "x", "count": 1}}, "timeout": 10},
        {"name": "label namespace y", "label": {"namespace": "y", "labels": {"ns": "other"}}},
        {"partition": [["w1"], ["w2", "master"]]},
        {"name": "across the partition nothing comes back",
         "reachability": {"from": on_w1, "to": on_w2, "ports": ["tcp/80", "udp/80"]},
         "expect": {"deny": "all"}},
        {"name": "the partition times out",
         "probe": "tcp", "from": "x/a", "to": "x/b:80", "timeout": 1,
         "expect": {"reachable": False, "reason": "timeout"}},
        {"name": "a timeout is not a refusal",
         "probe": "tcp", "from": "x/a", "to": "x/b:80", "timeout": 1,
         "expect": {"reachable": False, "reason": "refused"}},
        {"heal": "partition"},
        {"name": "after healing, everything reaches everything again",
         "reachability": {"from": on_w1, "to": on_w2, "ports": ["tcp/80"], "retryFor": 10},
         "expect": {"allow": "all"}},
    ]


def test_reachability_label_and_reasons(tmp_path: Path):
    pods = tmp_path / "pods.yaml"
    pods.write_text(yaml.safe_dump_all(manifests()))
    scenario = tmp_path / "reachability.yaml"
    scenario.write_text(yaml.safe_dump({"name": "reachability",
                                        "topology": str(TOPOLOGIES / "two-node.yaml"),
                                        "manifests": [str(pods)], "steps": steps()},
                                       sort_keys=False))
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    result = run_testbed("run", str(scenario), "--json", str(report), "--junit", str(junit),
                         timeout=400)
    assert result.returncode == 1, result.stdout + result.stderr[-4000:]   # two steps must fail
    data = json.loads(report.read_text())
    by_name = {s["name"]: s for s in data["steps"]}
    failed = sorted(s["name"] for s in data["steps"] if not s["passed"])
    assert failed == ["a timeout is not a refusal", "a wrong expectation"], \
        json.dumps(data, indent=1)[-6000:]

    # 10 x 10 pods on two protocols, 200 cells at once with 1 s timeouts: a couple of seconds
    everything = by_name["everything reaches everything"]
    assert everything["details"]["correct"] == 180 and everything["details"]["ignored"] == 20
    assert everything["seconds"] < 5, everything
    assert everything["details"]["observed"]["udp/80"].count("X") == 0

    # the wrong expectation: y/a -> x/a was reachable, marked X in the comparison
    wrong = by_name["a wrong expectation"]["details"]
    assert [(m["port"], m["from"], m["to"], m["expected"], m["observed"])
            for m in wrong["mismatches"]] == [("tcp/80", "y/a", "x/a", False, True)]
    assert wrong["comparison"]["tcp/80"] == "-\tx/a\tx/b\ty/a\nx/a\t.\t.\t.\nx/b\t.\t.\t.\ny/a\tX\t.\t."
    assert wrong["expected"] == "-\tx/a\tx/b\ty/a\nx/a\t.\t.\t.\nx/b\t.\t.\t.\ny/a\tX\t.\t."
    assert "y/a -> x/a on tcp/80 allowed, expected denied" in by_name["a wrong expectation"]["observed"]
    assert "comparison:" in result.stderr and "reachability: correct:5, incorrect:1" in result.stderr
    case = next(c for c in ET.parse(junit).getroot().findall("testcase")
                if c.get("name").endswith("a wrong expectation"))
    assert "y/a\tX\t.\t." in case.find("failure").text
    assert "comparison:" in case.find("system-out").text

    # refused vs timeout
    assert by_name["a closed port refuses"]["details"]["failure"] == "refused"
    assert by_name["a closed UDP port refuses"]["details"]["failure"] == "refused"
    assert by_name["the partition times out"]["details"]["failure"] == "timeout"
    assert "another reason (timeout), not refused" in by_name["a timeout is not a refusal"]["observed"]
    across = by_name["across the partition nothing comes back"]
    assert across["details"]["correct"] == 6 * 4 * 2
    assert across["seconds"] < 4, across          # 48 timeouts of 1 s, in parallel

    # labels changed in place (the wait found x/a by its new label)
    assert by_name["unlabel x/a"]["details"]["labels"] == {"pod": "z"}
    assert by_name["label namespace y"]["details"]["labels"]["ns"] == "other"
    assert by_name["after healing, everything reaches everything again"]["passed"]
