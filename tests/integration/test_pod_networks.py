"""Every shipped scenario, the tour included, passes on the other pod networks: the real CNI
plugins (Debian's, the kubenet chain) and each routing mode, as `testbed run` runs them with
--pod-network and --routing. A scenario that pins a podNetwork field of its own (the BGP
scenario pins routing bgp) keeps it: only the fields it leaves open are set.

The runs of one pod network go two at a time: each is a cluster of its own, independent of the
others, and most of a run is waiting.
"""

from __future__ import annotations

import json
import warnings
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


def run_twice(name: str, plugin: str, routing: str, out: Path) -> str | None:
    """A scenario that fails is run once more, on a fresh cluster; it must pass then, and the
    first failure is reported as a warning. Under bgp a cluster now and then loses traffic
    between nodes (2 of about 10 runs of the matrix: kube-dns crash-looping, a backend never
    answering); its cause is not found yet (issue 14's closing note), and this keeps it in view
    without failing a run that passes on its own a second time. Twice in a row fails."""
    first = run_one(name, plugin, routing, out)
    if first is None:
        return None
    again = run_one(name, plugin, routing, out)
    if again is None:
        warnings.warn(f"under plugin {plugin}, routing {routing}, {name} failed once and passed "
                      f"on a second cluster; the first failure:\n{first}", stacklevel=1)
        return None
    return f"{first}\n  and again:\n{again}"


@pytest.mark.parametrize("plugin, routing", NETWORKS, ids=[f"{p}-{r}" for p, r in NETWORKS])
def test_every_shipped_scenario_passes(plugin: str, routing: str, tmp_path: Path):
    with ThreadPoolExecutor(PARALLEL) as pool:
        problems = [p for p in pool.map(lambda n: run_twice(n, plugin, routing, tmp_path), SHIPPED) if p]
    assert not problems, f"under plugin {plugin}, routing {routing}:\n" + "\n".join(problems)


def test_a_plugin_of_ones_own_runs_the_shipped_scenarios(tmp_path: Path):
    """The README's conformance check: a plugin in a directory of one's own (here Debian's ptp
    under another name, logging its calls), a list naming it, and the scenarios run on it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    plugin = bin_dir / "my-plugin"
    plugin.write_text(f'#!/bin/sh\necho "$CNI_COMMAND $CNI_IFNAME $CNI_NETNS" >> {calls}\n'
                      'exec /usr/lib/cni/ptp "$@"\n')
    plugin.chmod(0o755)
    conf = tmp_path / "my-net.conflist"
    conf.write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "my-net",
        "plugins": [{"type": "my-plugin", "capabilities": {"ips": True},
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": "{{.PodCIDR}}"}]],
                              "routes": [{"dst": "0.0.0.0/0"}]}},
                    {"type": "portmap", "capabilities": {"portMappings": True}}]}))
    for name in ("pod-network-routing.yaml", "pod-network-cni.yaml", "pod-to-service.yaml"):
        report = tmp_path / f"{name}.json"
        result = run_testbed("run", str(SCENARIOS / name), "--cni-conf", str(conf),
                             "--cni-bin-dir", str(bin_dir), "--json", str(report), timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    seen = [line.split() for line in calls.read_text().splitlines()]
    assert {c[0] for c in seen} == {"ADD", "DEL"}       # pods added; the deleted one deleted
    # ADD and DEL both in the pod's namespace: the DEL runs before the sandbox ends
    assert all(len(c) == 3 and c[1] == "eth0" and c[2].startswith("/proc/") for c in seen)
    # (a cluster torn down takes its nodes, and no DEL runs, as when a real node dies)
