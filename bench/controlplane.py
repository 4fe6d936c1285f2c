#!/usr/bin/env python3
"""The control plane's costs, each next to a baseline measured in the same run (issue 3).

1. Pods Ready: on master + gateway + N workers, the time from applying a Deployment of R
   replicas to all R pods Ready (API server -> Deployment controller -> scheduler -> kubelets
   -> status -> Ready), next to the bring-up of the same R pods without a control plane
   (`PodLab(topo)` + `run_pods` with nodeName set: the runtime alone).
2. Watch delay: with S objects in the store, the time from a write (an annotation changed on
   one Pod) to every watcher having seen it: W watchers on the host over the API's Unix socket
   and one watcher per worker, inside that worker's namespace, over TCP to the master across
   the emulated network (where the kubelets and kube-proxies watch from). Next to it, the
   baseline: one write followed by one read of the same object over the Unix socket.

Run as root:

    sudo .venv/bin/python bench/controlplane.py [--workers 10 --replicas 100 --objects 1000]

The pods run the `pause` image's container (a sleeping process) with no probes, so Ready
means "sandbox and container started and reported", and the figure is the control plane's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.emu.cluster import Cluster  # noqa: E402
from testbed.emu.podlab import PodLab  # noqa: E402
from testbed.spec.source import parse_documents  # noqa: E402
from testbed.spec.topology import build_topology  # noqa: E402

LABELS = {"app": "bench"}
NS = "bench"


def topology(workers: int):
    text = (f"name: cpbench{workers}\nmaster: master\n"
            f"workers: [{', '.join(f'w{i}' for i in range(1, workers + 1))}]\nclients: [client]\n")
    return build_topology(parse_documents(text, "<bench>")[0])


def container() -> dict:
    return {"name": "main", "image": "registry.k8s.io/pause:3.9"}


def deployment(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "bench", "namespace": "default", "labels": LABELS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": LABELS},
                     "template": {"metadata": {"labels": LABELS}, "spec": {"containers": [container()]}}}}


def direct_pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": LABELS},
            "spec": {"nodeName": node, "restartPolicy": "Always", "containers": [container()]}}


def parked_pod(i: int) -> dict:
    """A filler Pod bound to a node that does not exist: stored and watched, never run."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"filler-{i:04d}", "namespace": NS,
                                                          "labels": {"bench": "filler"}},
            "spec": {"nodeName": "parked", "containers": [container()]}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# -- 1. pods Ready ----------------------------------------------------------------------------------

def measure_direct(workers: int, replicas: int) -> dict:
    cluster = PodLab(topology(workers)).up()
    try:
        manifests = [direct_pod(f"bench-{i}", f"w{i % workers + 1}") for i in range(replicas)]
        t0 = time.perf_counter()
        cluster.run_pods(manifests)
        return {"up": sum(cluster.timings.values()), "pods": time.perf_counter() - t0}
    finally:
        cluster.down()


def measure_deployment(cluster: Cluster, replicas: int) -> dict:
    client = cluster.client
    t0 = time.perf_counter()
    client.apply_all([deployment(replicas)])
    created = first_ready = half = None
    while True:
        pods, _ = client.list("Pod", "default", selector="app=bench")
        now = time.perf_counter() - t0
        ready = sum(1 for p in pods if any(c.get("type") == "Ready" and c.get("status") == "True"
                                           for c in (p.get("status") or {}).get("conditions", [])))
        if created is None and len(pods) >= replicas:
            created = now
        if first_ready is None and ready:
            first_ready = now
        if half is None and ready >= replicas / 2:
            half = now
        if ready >= replicas:
            nodes = {p["spec"].get("nodeName") for p in pods}
            return {"created": created, "first": first_ready, "half": half, "all": now, "nodes": len(nodes)}
        if now > 300:
            raise TimeoutError(f"{ready}/{replicas} ready after 300 s")
        time.sleep(0.02)


# -- 2. watch delay ---------------------------------------------------------------------------------

WATCHER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from testbed.apiclient.client import Client
client = Client(sys.argv[2], timeout=60)
_, rv = client.list("Pod", sys.argv[3])
print("ready", flush=True)
while True:
    for kind, obj in client.watch("Pod", sys.argv[3], since=rv, timeout=300):
        seen = time.time()
        rv = obj["metadata"]["resourceVersion"]
        mark = (obj["metadata"].get("annotations") or {}).get("bench/mark")
        if kind == "MODIFIED" and mark:
            print(mark, seen, flush=True)
"""


class Watchers:
    """Watcher processes; each prints `MARK TIME` for every change it sees."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.names: list[str] = []
        self.seen: dict[str, dict[str, float]] = {}     # mark -> watcher -> when
        self.lock = threading.Lock()

    def start(self, name: str, argv_prefix: list[str], api: str) -> None:
        proc = subprocess.Popen([*argv_prefix, sys.executable, "-c", WATCHER, str(ROOT), api, NS],
                                stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"watcher {name} did not start")
        self.procs.append(proc)
        self.names.append(name)
        threading.Thread(target=self._read, args=(name, proc), daemon=True).start()

    def _read(self, name: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            mark, when = line.split()
            with self.lock:
                self.seen.setdefault(mark, {})[name] = float(when)

    def wait_all(self, mark: str, timeout: float = 10) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = dict(self.seen.get(mark, {}))
            if len(got) == len(self.names):
                return got
            time.sleep(0.001)
        raise TimeoutError(f"change {mark}: only {sorted(got)} saw it")

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


def measure_watch(cluster: Cluster, objects: int, host_watchers: int, changes: int) -> dict:
    client = cluster.client
    client.apply_all([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}])
    have = sum(len(client.list(kind)[0]) for kind in
               ("Namespace", "Node", "Pod", "Deployment", "Service", "EndpointSlice"))
    fillers = [parked_pod(i) for i in range(max(1, objects - have))]
    for i in range(0, len(fillers), 100):
        client.apply_all(fillers[i:i + 100])
    total = sum(len(client.list(kind)[0]) for kind in
                ("Namespace", "Node", "Pod", "Deployment", "Service", "EndpointSlice"))
    watchers = Watchers()
    sock = cluster.cp.socket
    try:
        for i in range(host_watchers):
            watchers.start(f"host{i}", [], f"unix://{sock}")
        for w in cluster.topo.workers:
            pid = cluster.network.pid(w.name)
            watchers.start(w.name, ["nsenter", f"--net=/proc/{pid}/ns/net", "--"], cluster.cp.api)
        target = client.get("Pod", NS, "filler-0000")
        delays_all, delays_each, delays_host, delays_tcp = [], [], [], []
        for i in range(changes):
            target["metadata"].setdefault("annotations", {})["bench/mark"] = f"m{i}"
            target["metadata"].pop("resourceVersion", None)
            t0 = time.time()
            target = client.update(target)
            seen = watchers.wait_all(f"m{i}")
            each = {name: (when - t0) * 1000 for name, when in seen.items()}
            delays_all.append(max(each.values()))
            delays_each.extend(each.values())
            delays_host.extend(v for k, v in each.items() if k.startswith("host"))
            delays_tcp.extend(v for k, v in each.items() if not k.startswith("host"))
            time.sleep(0.02)
        # Baseline: one write then one read of the same object, over the Unix socket.
        base = []
        for i in range(changes):
            target["metadata"]["annotations"]["bench/base"] = str(i)
            target["metadata"].pop("resourceVersion", None)
            t0 = time.perf_counter()
            target = client.update(target)
            client.get("Pod", NS, "filler-0000")
            base.append((time.perf_counter() - t0) * 1000)
    finally:
        watchers.stop()
    return {"objects": total, "watchers": len(watchers.names), "all": delays_all, "each": delays_each,
            "host": delays_host, "tcp": delays_tcp, "base": base}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--objects", type=int, default=1000, help="objects in the store for the watch test")
    parser.add_argument("--host-watchers", type=int, default=5, help="watchers over the Unix socket")
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/controlplane.py builds namespaces: run it as root", file=sys.stderr)
        return 2
    w, r = args.workers, args.replicas
    direct = measure_direct(w, r)
    started = time.perf_counter()
    cluster = Cluster(topology(w)).up()
    try:
        up = time.perf_counter() - started
        ready = measure_deployment(cluster, r)
        watch = measure_watch(cluster, args.objects, args.host_watchers, args.changes)
    finally:
        cluster.down()

    print(f"\n1. {r} pods on {w} workers                          seconds   per pod ms")
    print(f"   baseline: runtime alone (run_pods, nodeName)    {direct['pods']:>7.2f}   {direct['pods'] / r * 1000:>10.1f}")
    print(f"   Deployment applied -> all {r} pods created       {ready['created']:>7.2f}")
    print(f"   Deployment applied -> first pod Ready            {ready['first']:>7.2f}")
    print(f"   Deployment applied -> half the pods Ready        {ready['half']:>7.2f}")
    print(f"   Deployment applied -> all pods Ready             {ready['all']:>7.2f}   {ready['all'] / r * 1000:>10.1f}"
          f"   ({ready['all'] / direct['pods']:.1f}x baseline, over {ready['nodes']} nodes)")
    print(f"   (cluster up: {direct['up']:.2f} s without, {up:.2f} s with the control plane and DNS add-on)")
    print(f"\n2. watch delay, {watch['objects']} objects in the store, {watch['watchers']} watchers "
          f"({args.host_watchers} on the Unix socket, {w} over TCP from the workers), {args.changes} changes")
    print("                                                   median ms   p95 ms   max ms")
    for label, values in (("baseline: write + read, Unix socket", watch["base"]),
                          ("write -> one watcher (Unix socket)", watch["host"]),
                          ("write -> one watcher (TCP from a worker)", watch["tcp"]),
                          ("write -> every watcher has it", watch["all"])):
        print(f"   {label:<46} {statistics.median(values):>9.2f} {percentile(values, 0.95):>8.2f} {max(values):>8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"direct": direct, "up": up, "ready": ready, "watch": watch}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
