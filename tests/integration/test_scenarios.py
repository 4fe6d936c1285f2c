"""Every shipped scenario runs as a user runs it, and passes; faults show what they should."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import SCENARIOS, TOPOLOGIES, run_testbed

# tour.yaml, the default, runs as the README's demo does in test_runs.py
SHIPPED = sorted(p.name for p in SCENARIOS.glob("*.yaml") if p.name != "tour.yaml")


def kube_proxy_modes_differ_when_kube_proxy_dies(steps: dict) -> None:
    """The durability scenario's point: the same probe after killing kube-proxy passes through
    the iptables node and is refused through the userspace node."""
    assert steps["iptables mode keeps serving with kube-proxy dead"]["details"]["reachable"] is True
    assert steps["userspace mode stops with its proxy process"]["details"]["reachable"] is False
    assert "refused" in steps["userspace mode stops with its proxy process"]["observed"]


# Checks beyond "every step passed", on the report of one run of the scenario.
EXTRA = {"kube-proxy-durability.yaml": kube_proxy_modes_differ_when_kube_proxy_dies}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_passes(name: str, tmp_path: Path):
    report = tmp_path / "report.json"
    result = run_testbed("run", str(SCENARIOS / name), "--json", str(report), timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["failed"] == 0 and data["passed"] > 0
    assert data["passed"] + data.get("skipped", 0) == len(data["steps"])
    if name in EXTRA:
        EXTRA[name]({s["name"]: s for s in data["steps"]})


def test_the_durability_checks_are_wired():
    assert set(EXTRA) <= set(SHIPPED)


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
