#!/usr/bin/env python3
"""Start-up: a cluster's control plane and DNS against its network and pods alone (issue 15).

Three figures per topology (default: topologies/two-node.yaml, and ten-node.yaml, the size
bench/controlplane.py measured the 6.4x of issue 15 on), each the median of --runs, measured in
the same run:

1. baseline, the network and pods alone: `PodLab(topo).up()` and the same pods the cluster
   ends up running (kube-dns's and the scenario's one pod), each a sandbox with one sleeping
   container, placed with nodeName: namespaces, links, bridges, veths, addresses, processes;
   no API server, no agents.
2. the cluster ready: `Cluster(topo).up()` (the zygote, the API server, a kubelet, kube-proxy
   and NetworkPolicy agent per worker, the cloud agent, kube-dns Ready behind its Service),
   then one pod applied and Ready; and its teardown.
3. a whole `python -m testbed run` of a one-probe scenario (that pod asks the cluster DNS for
   kubernetes.default): interpreter start, validation, bring-up, the probe, the report and
   the teardown, as a user runs it.

Targets: (2) within 2x of (1); (3) under 2 s on two-node.

    sudo .venv/bin/python bench/startup.py [--runs 5] [--topology FILE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.emu.cluster import Cluster  # noqa: E402
from testbed.emu.podlab import PodLab  # noqa: E402
from testbed.spec.topology import load_topology  # noqa: E402

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe-pod", "namespace": "default"},
       "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "infinity"]}]}}

SCENARIO = """name: one-probe
topology: {topology}
manifests: [pod.json]
steps:
  - {{name: DNS answers kubernetes.default from a pod, probe: dns, from: probe-pod, to: kubernetes.default}}
"""


def sleeping_pod(name: str, namespace: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}


def measure_baseline(topo) -> float:
    """The network and the cluster's two pods (kube-dns's and the scenario's), no agents."""
    workers = [w.name for w in topo.workers]
    started = time.perf_counter()
    lab = PodLab(topo).up()
    try:
        lab.run_pods([sleeping_pod("kube-dns", "kube-system", workers[0]),
                      sleeping_pod("probe-pod", "default", workers[-1])])
        return time.perf_counter() - started
    finally:
        lab.down()


def measure_cluster(topo) -> tuple[float, float, dict]:
    """Seconds until the cluster is up with DNS and one pod is Ready; its teardown; phases."""
    started = time.perf_counter()
    cluster = Cluster(topo).up()
    try:
        cluster.apply([json.loads(json.dumps(POD))])
        cluster.wait_ready([POD], timeout=60)
        ready = time.perf_counter() - started
    finally:
        down = time.perf_counter()
        cluster.down()
    return ready, time.perf_counter() - down, dict(cluster.timings)


def measure_run(topology: Path, directory: Path) -> float:
    """Wall time of `python -m testbed run` of the one-probe scenario; it must pass."""
    (directory / "pod.json").write_text(json.dumps(POD))
    scenario = directory / "one-probe.yaml"
    scenario.write_text(SCENARIO.format(topology=topology))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "testbed", "run", str(scenario)], cwd=ROOT,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"testbed run failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return took


def measure(topology: Path, runs: int, tmp: Path) -> dict:
    topo = load_topology(topology)
    figures: dict[str, list] = {"baseline": [], "cluster": [], "teardown": [], "run": [], "phases": []}
    for i in range(runs):   # interleaved, so that a busy moment hits all three alike
        figures["baseline"].append(measure_baseline(topo))
        ready, down, phases = measure_cluster(topo)
        figures["cluster"].append(ready)
        figures["teardown"].append(down)
        figures["phases"].append(phases)
        figures["run"].append(measure_run(topology, tmp))
        print(f"  {topo.name} run {i + 1}: baseline {figures['baseline'][-1]:.2f} s, cluster "
              f"ready {ready:.2f} s (down {down:.2f} s), testbed run {figures['run'][-1]:.2f} s",
              flush=True)
    med = {k: statistics.median(v) for k, v in figures.items() if k != "phases"}
    phases = {k: statistics.median(p[k] for p in figures["phases"]) for k in figures["phases"][0]}
    return {"name": topo.name, "workers": len(topo.workers), "figures": figures, "median": med,
            "phases": phases, "ratio": med["cluster"] / med["baseline"]}


def report(m: dict, runs: int) -> None:
    med = m["median"]
    print(f"\n{m['name']}: {m['workers']} workers, median of {runs} runs          seconds")
    print(f"  baseline: network and the same 2 pods, no agents   {med['baseline']:>7.2f}")
    print(f"  cluster up with control plane and DNS, 1 pod Ready {med['cluster']:>7.2f}   "
          f"{m['ratio']:.1f}x baseline (target: 2x)")
    print("    phases: " + ", ".join(f"{k} {v:.2f}" for k, v in m["phases"].items()))
    print(f"  its teardown                                       {med['teardown']:>7.2f}")
    print(f"  testbed run, one-probe scenario, whole             {med['run']:>7.2f}   "
          f"(target on two-node: under 2 s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--topology", action="append",
                        help="a topology file (repeatable; default: two-node and ten-node)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/startup.py builds namespaces: run it as root", file=sys.stderr)
        return 2
    topologies = [Path(t).resolve() for t in args.topology or
                  [ROOT / "topologies" / "two-node.yaml", ROOT / "topologies" / "ten-node.yaml"]]
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(t, args.runs, Path(tmp)) for t in topologies]
    for m in results:
        report(m, args.runs)
    if args.json:
        Path(args.json).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
