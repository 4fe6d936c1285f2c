"""Upstream's NetworkPolicy truth tables (scenarios/netpol) run as a user runs them, as root, in
both modes: every worker's kube-proxy and NetworkPolicy agent in iptables (with ipset), then in
nftables. A file's two runs go at once (two clusters side by side) to keep the wall time down.

Every step must pass, and the reachability steps must all have run and been judged: as many as
the file has, each with no mismatch and with cells compared on every port it names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, SCENARIOS

NETPOL = SCENARIOS / "netpol"
FILES = sorted(p for p in NETPOL.glob("*.yaml") if p.name != "topology.yaml")
MODES = ("iptables", "nftables")
# What each mode's rules look like in an `inspect: {netpol: NODE}` step's output.
MODE_MARKS = {"iptables": "*filter", "nftables": "table ip "}


def run_both_modes(path: Path, tmp_path: Path, timeout: float = 400) -> dict[str, tuple]:
    """Run the scenario once per mode, both at once: mode -> (exit status, output, report)."""
    procs = {}
    for mode in MODES:
        report = tmp_path / f"{mode}.json"
        procs[mode] = (subprocess.Popen(
            [sys.executable, "-m", "testbed", "run", str(path), "--json", str(report),
             "--network-policy", mode, "--kube-proxy", mode],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT), report)
    results = {}
    try:
        for mode, (proc, report) in procs.items():
            output, _ = proc.communicate(timeout=timeout)
            data = json.loads(report.read_text()) if report.is_file() else None
            results[mode] = (proc.returncode, output, data)
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.terminate()     # testbed run tears its cluster down on SIGTERM
                proc.wait(60)
    return results


def reachability_steps(path: Path) -> list[str]:
    from testbed.scenario.reachability import Reachability
    from testbed.scenario.spec import load_scenario

    return [s.name for s in load_scenario(path).steps if isinstance(s.action, Reachability)]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_truth_tables_pass_in_both_modes(path: Path, tmp_path: Path):
    wanted = reachability_steps(path)
    assert len(wanted) >= 5
    for mode, (status, output, data) in run_both_modes(path, tmp_path).items():
        assert data is not None, f"{mode}: no report\n{output[-4000:]}"
        failed = [f"{s['name']}: {s['observed']}\n{(s.get('details') or {}).get('tables', '')}"
                  for s in data["steps"] if not s["passed"]]
        assert status == 0 and not failed, f"{mode}: {path.name}\n" + "\n\n".join(failed) \
            + f"\n{output[-3000:]}"
        assert data["failed"] == 0 and data["passed"] == len(data["steps"])
        judged = [s for s in data["steps"] if "tables" in (s.get("details") or {})]
        assert [s["name"] for s in judged] == wanted, f"{mode}: every reachability step ran"
        for step in judged:
            d = step["details"]
            assert d["mismatches"] == [] and d["incorrect"] == 0 and d["correct"] > 0, step["name"]
            assert set(d["observed"]) == set(d["ports"]), f"{mode}: {step['name']}: every port probed"
        inspected = [s["details"]["output"] for s in data["steps"]
                     if s["name"].startswith("inspect netpol")]
        assert inspected, f"{path.name} shows the agents' rules"
        for text in inspected:
            assert MODE_MARKS[mode] in text, f"{mode}: the agent runs in {mode} mode\n{text[:500]}"
            rules = [line for line in text.splitlines() if line.startswith("-A ")]
            assert len(rules) == len(set(rules)), f"{mode}: no rule twice\n{text}"
