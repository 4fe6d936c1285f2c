"""Every shipped scenario runs as a user runs it, and passes; faults show what they should."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import SCENARIOS, TOPOLOGIES, run_testbed

SHIPPED = sorted(p.name for p in SCENARIOS.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_passes(name: str, tmp_path: Path):
    report = tmp_path / "report.json"
    result = run_testbed("run", str(SCENARIOS / name), "--json", str(report), timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["failed"] == 0 and data["passed"] == len(data["steps"]) > 0


def test_kube_proxy_modes_differ_when_kube_proxy_dies(tmp_path: Path):
    """The durability scenario's point, checked from its report: the same probe after killing
    kube-proxy passes through the iptables node and is refused through the userspace node."""
    report = tmp_path / "report.json"
    result = run_testbed("run", str(SCENARIOS / "kube-proxy-durability.yaml"), "--json", str(report), timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = {s["name"]: s for s in json.loads(report.read_text())["steps"]}
    assert steps["iptables mode keeps serving with kube-proxy dead"]["details"]["reachable"] is True
    assert steps["userspace mode stops with its proxy process"]["details"]["reachable"] is False
    assert "refused" in steps["userspace mode stops with its proxy process"]["observed"]


def test_delay_without_netem_fails_with_a_clear_message(tmp_path: Path):
    scenario = tmp_path / "netem.yaml"
    scenario.write_text(f"name: netem\ntopology: {TOPOLOGIES / 'two-node.yaml'}\nsteps:\n"
                        "  - shape: {node: w1, rate: 10mbit}\n"
                        "  - shape: {node: w1, delay: 20ms}\n"
                        "  - probe: icmp\n    from: w1\n    to: w2\n")
    report = tmp_path / "report.json"
    result = run_testbed("run", str(scenario), "--json", str(report), timeout=200)
    steps = json.loads(report.read_text())["steps"]
    assert steps[0]["passed"] and "tbf" in steps[0]["observed"]          # TBF works everywhere
    if "netem" in steps[1]["observed"] and not steps[1]["passed"]:
        assert result.returncode == 1
        assert "no netem qdisc" in steps[1]["observed"]
        assert "netem" in result.stdout
    else:  # a kernel with netem (Ubuntu's): the delay is applied and shown
        assert steps[1]["passed"] and "delay 20" in steps[1]["observed"]
