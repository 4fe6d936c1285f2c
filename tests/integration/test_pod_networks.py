"""Every shipped scenario, the tour included, passes on the other pod networks: the real CNI
plugins (Debian's, the kubenet chain) and each routing mode, as `testbed run` runs them with
--pod-network and --routing. A scenario that pins a podNetwork field of its own (the BGP
scenario pins routing bgp) keeps it: only the fields it leaves open are set.

The runs of one pod network go two at a time: each is a cluster of its own, independent of the
others, and most of a run is waiting.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import SCENARIOS, run_testbed

SHIPPED = sorted(p.name for p in SCENARIOS.glob("*.yaml"))
# (plugin, routing): CNI with the article's gateway routing and with the overlay; the built-in
# plugin with the other two. Between them every plugin and every routing mode is run.
NETWORKS = [("cni", "gateway"), ("builtin", "host-gw"), ("cni", "vxlan"), ("builtin", "bgp")]
PARALLEL = 2


def pinned(name: str) -> dict:
    data = yaml.safe_load((SCENARIOS / name).read_text())
    return data.get("podNetwork") or {}


def run_one(name: str, plugin: str, routing: str, out: Path) -> str | None:
    """None when every step of the run passed (or was skipped by its when:), else why not."""
    report = out / f"{name}.json"
    args = ["run", str(SCENARIOS / name), "--json", str(report)]
    own = pinned(name)
    if "plugin" not in own:
        args += ["--pod-network", plugin]
    if "routing" not in own:
        args += ["--routing", routing]
    result = run_testbed(*args, timeout=600)
    if not report.exists():
        return f"{name}: exit {result.returncode}, no report: {result.stderr[-2000:]}"
    data = json.loads(report.read_text())
    failed = [f"  {s['name']}: expected {s['expected']}; observed {s['observed']}"
              for s in data["steps"] if not s["passed"]]
    if result.returncode != 0 or failed or data["passed"] == 0:
        return f"{name} (exit {result.returncode}):\n" + "\n".join(failed or [result.stderr[-2000:]])
    return None


@pytest.mark.parametrize("plugin, routing", NETWORKS, ids=[f"{p}-{r}" for p, r in NETWORKS])
def test_every_shipped_scenario_passes(plugin: str, routing: str, tmp_path: Path):
    with ThreadPoolExecutor(PARALLEL) as pool:
        problems = [p for p in pool.map(lambda n: run_one(n, plugin, routing, tmp_path), SHIPPED) if p]
    assert not problems, f"under plugin {plugin}, routing {routing}:\n" + "\n".join(problems)
