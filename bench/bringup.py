#!/usr/bin/env python3
"""Bring-up and teardown of master + gateway + N workers with P pods each, next to a baseline.

For each (N, P) it builds the cluster, creates N*P pods (each a pause sandbox plus one
container), tears down, and prints per-pod cost (in all, and split into the sandbox with its
network, and the container) next to a raw baseline measured in the same run: the same number of network namespaces, veth pairs and bridge ports made by one
`ip -batch` inside a throwaway namespace (what the kernel work costs with no testbed at all).
It also prints the pause processes' resident memory. Each size runs on the built-in pod network
and on the real CNI plugins (the kubenet chain: loopback, bridge with host-local, portmap, one
process per plugin per pod, as a container runtime runs them), and the CNI line gives its
network phase next to the built-in one's of the same run. Run as root:

    sudo .venv/bin/python bench/bringup.py [--sizes 2x10,10x10,50x20] [--pod-network builtin,cni]

Targets (issue 2): per-pod cost within 2x the baseline; 1,000 pods ready in under a minute on
a 2-core machine; pause resident memory at most 1 MB each.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.emu.pausebin import pause_binary  # noqa: E402
from testbed.emu.podlab import PodLab  # noqa: E402
from testbed.spec.source import parse_documents  # noqa: E402
from testbed.spec.topology import POD_NETWORK_PLUGINS, build_topology  # noqa: E402


def topology(workers: int, plugin: str = "builtin"):
    text = (f"name: bench{workers}\nmaster: master\nworkers: [{', '.join(f'w{i}' for i in range(1, workers + 1))}]\n"
            f"clients: [client]\npodNetwork: {{plugin: {plugin}}}\n")
    return build_topology(parse_documents(text, "<bench>")[0])


def pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {}},
            "spec": {"nodeName": node, "restartPolicy": "Always",
                     "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.9", "ports": []}]}}


def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure_cluster(workers: int, per_node: int, plugin: str = "builtin") -> dict:
    started = time.perf_counter()
    cluster = PodLab(topology(workers, plugin)).up()
    try:
        network = time.perf_counter() - started
        manifests = [pod(f"p{w}-{i}", f"w{w}") for w in range(1, workers + 1) for i in range(per_node)]
        t0 = time.perf_counter()
        cluster.run_pods(manifests)
        pods_seconds = time.perf_counter() - t0
        pause_rss = [rss_kb(p.pid) for p in cluster.pods.values()]
        phases = dict(cluster.runtime.timings)
    finally:
        t1 = time.perf_counter()
        cluster.down()
        teardown = time.perf_counter() - t1
    return {"network": network, "pods": pods_seconds, "teardown": teardown, "phases": phases,
            "pause_rss_max": max(pause_rss), "pause_rss_avg": sum(pause_rss) / len(pause_rss)}


def measure_baseline(count: int) -> float:
    """`count` namespaces + veth pairs + bridge ports with one ip -batch, in a throwaway namespace."""
    # The pause binary prints "ok" only once it is in its own namespace, so nothing below can
    # land in the machine's namespace by racing it.
    holder = subprocess.Popen([pause_binary(), "pause", "bench"], stdout=subprocess.PIPE)
    # `ip netns add` mounts /run/netns and a file per namespace: in a mount namespace of the
    # batch's own (private propagation), so the machine's mount table is left as it was, and
    # the namespaces go when the batch ends. The files it creates for them (and /run/netns, if
    # it made it) are on the machine's own /run, so they are removed by name afterwards.
    prefix = ["unshare", "--mount", "--propagation", "private", "--",
              "nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]
    names = [f"tbbench{os.getpid()}-{i}" for i in range(count)]
    netns_dir = Path("/run/netns")
    had_dir = netns_dir.is_dir()
    try:
        if holder.stdout.readline() != b"ok\n":
            raise RuntimeError("the baseline's namespace holder did not start")
        subprocess.run(prefix + ["ip", "link", "add", "br0", "type", "bridge"], check=True)
        lines = [f"netns add {n}" for n in names]
        lines += [f"link add vb{i} type veth peer name eth0 netns {n}" for i, n in enumerate(names)]
        lines += [f"link set vb{i} master br0 up" for i in range(count)]
        with tempfile.NamedTemporaryFile("w", suffix=".batch") as batch:
            batch.write("\n".join(lines) + "\n")
            batch.flush()
            t0 = time.perf_counter()
            proc = subprocess.run(prefix + ["ip", "-batch", batch.name], capture_output=True, text=True)
            elapsed = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"ip -batch failed: {proc.stderr.strip()}")
            return elapsed
    finally:
        holder.kill()
        holder.wait()
        for name in names:
            (netns_dir / name).unlink(missing_ok=True)
        if not had_dir:
            with contextlib.suppress(OSError):   # not empty: another tool's namespaces are there
                netns_dir.rmdir()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2x10,10x10,50x20", help="NxP list: workers x pods per worker")
    parser.add_argument("--pod-network", default="builtin,cni",
                        help=f"pod network plugins to measure, in order ({', '.join(POD_NETWORK_PLUGINS)})")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/bringup.py builds namespaces: run it as root", file=sys.stderr)
        return 2
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    plugins = [p.strip() for p in args.pod_network.split(",") if p.strip()]
    unknown = [p for p in plugins if p not in POD_NETWORK_PLUGINS]
    if unknown or not plugins:
        parser.error(f"--pod-network: {', '.join(unknown) or 'nothing'}: the plugins are "
                     f"{' and '.join(POD_NETWORK_PLUGINS)}")
    header = (f"{'N x P':>8} {'pods':>5} {'plugin':>7} {'network s':>9} {'pods s':>7} {'per pod ms':>10} "
              f"{'sandbox+net ms':>14} {'net ms':>7} {'containers ms':>13} {'baseline ms':>11} {'ratio':>5} "
              f"{'sandbox ratio':>13} {'net vs builtin':>14} {'teardown s':>10} {'pause RSS kB avg/max':>21}")
    print(header)
    for workers, per_node in sizes:
        count = workers * per_node
        baseline = measure_baseline(count)
        base_pod = baseline / count * 1000
        builtin_net = None
        for plugin in plugins:
            result = measure_cluster(workers, per_node, plugin)
            per_pod = result["pods"] / count * 1000
            ph = result["phases"]
            sandbox = (ph.get("sandboxes", 0) + ph.get("network", 0) + ph.get("files", 0)) / count * 1000
            net = ph.get("network", 0) / count * 1000
            if plugin == "builtin":
                builtin_net = net
            versus = f"{net / builtin_net:>13.1f}x" if builtin_net and plugin != "builtin" else f"{'-':>14}"
            containers = ph.get("containers", 0) / count * 1000
            print(f"{workers:>4} x {per_node:<3}{count:>5} {plugin:>7} {result['network']:>9.2f} "
                  f"{result['pods']:>7.2f} {per_pod:>10.2f} {sandbox:>14.2f} {net:>7.2f} {containers:>13.2f} "
                  f"{base_pod:>11.2f} {per_pod / base_pod:>5.2f} {sandbox / base_pod:>13.2f} {versus} "
                  f"{result['teardown']:>10.2f} {result['pause_rss_avg']:>14.0f}/{result['pause_rss_max']:<6}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
