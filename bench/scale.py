#!/usr/bin/env python3
"""The whole cluster at scale: N workers with P pods each, next to the same pods without agents
(issue 15).

For each N of --workers: master + gateway + N workers (the default topology's modes: kube-proxy
and the NetworkPolicy agents in iptables mode, the gateway routing the pod CIDRs). Measured:

1. cluster up: `Cluster(topo).up()` (network, API server with its controllers, kubelets,
   kube-proxies, NetworkPolicy agents, the DNS add-on Ready);
2. ready + synced: from applying one Deployment of N*P replicas (the pause image's container,
   no probes) and a ClusterIP Service selecting them, until (the Pods and slices followed by
   two informers, not by listing 1,000 Pods ten times a second, which would cost the API
   server more than what is measured)
     - every pod is Ready (the API's Pod conditions),
     - the Service's EndpointSlices hold exactly those N*P pod IPs, all ready, and
     - every worker's kube-proxy has programmed them: the node's own rules (`iptables-save -t
       nat`, or `nft list table ip kube-proxy` in nftables mode, inside the node's namespace)
       DNAT to exactly that set of IP:targetPort, no fewer and no stale ones. A node's rules are
       read again only when its kube-proxy status file (emu/rundir.py ProxyStatus) counts a new
       sync, since kube-proxy writes the status right after each sync that applied something;
       the time taken is when the benchmark saw the node's rules complete (so it is an upper
       bound, by the polling interval);
3. memory: the PSS (/proc/PID/smaps_rollup, so pages shared between processes count once in
   the sum) of every process the run record holds, in all and per kind (hosts' shells, pause,
   containers, each agent), and the agents of the workers (kubelet, kube-proxy, netpol and any
   other agent on a worker) per worker;
4. where the CPU went: each recorded process's CPU seconds (with the children it waited for,
   kube-proxy's iptables-restore runs) per kind, and the kube-proxies' syncs per worker.

The baseline, measured in the same run: the same topology and N*P pods without any agent
(`PodLab(topo).up()` + `run_pods` with spec.nodeName set, pods spread as the scheduler spreads
them), its bring-up and pod times and its PSS. Run as root:

    sudo .venv/bin/python bench/scale.py [--workers 10,50,100] [--pods 10] [--json FILE]

Targets (issue 15): 100 workers x 10 pods Ready with kube-proxy synced in under 60 s; the
agents' PSS per worker under 15 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

APP = "scale"
LABELS = {"app": APP}
TARGET_PORT = 9376   # the Service's targetPort; no other Service uses it, so the rules' DNAT
SERVICE_PORT = 80    # targets at this port are exactly this Service's endpoints
AGENT_KINDS_ON_WORKERS = ("kubelet", "kube-proxy", "netpol")


# -- pure: arguments, PSS, the record's entries, the rules ---------------------------------------

def parse_sizes(text: str, option: str) -> list[int]:
    """"10,50,100" -> [10, 50, 100]; ValueError naming the option and the bad item."""
    sizes = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise ValueError(f"{option}: {item!r} is not a positive whole number (in {text!r})")
        sizes.append(int(item))
    return sizes


def parse_pss(text: str) -> int:
    """The Pss of a /proc/PID/smaps_rollup text, in kB; ValueError when it has none."""
    for line in text.splitlines():
        if line.startswith("Pss:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1]) * {"kB": 1, "mB": 1024}.get(fields[2] if len(fields) > 2 else "kB", 1)
    raise ValueError("no Pss line in smaps_rollup")


def kind_of(what: str) -> tuple[str, str]:
    """(kind, node) of a run record entry's description: "pod NS/NAME pause" -> ("pause", ""),
    "pod NS/NAME container C" -> ("container", ""), "KIND on NODE" -> (KIND, NODE) for an agent,
    "ROLE NAME" (the hosts' shells: master, worker, gateway, client) -> ("host", NAME), the
    process the agents are forked from -> ("zygote", "")."""
    words = what.split()
    if "zygote" in words:
        return "zygote", ""
    if len(words) >= 3 and words[0] == "pod":
        return ("container", "") if words[2] == "container" else (words[2], "")
    if len(words) == 3 and words[1] == "on":
        return words[0], words[2]
    if len(words) == 2 and words[0] in ("master", "worker", "gateway", "client", "router"):
        return "host", words[1]
    return "other", ""


def memory_summary(entries: Iterable[tuple[str, int]], workers: set[str]) -> dict:
    """PSS in kB from (record description, pss kB) pairs: the total, per kind, the agents in
    all (the zygote among them), and the workers' agents (per kind and per worker)."""
    total, by_kind, on_workers = 0, {}, {}
    for what, pss in entries:
        kind, node = kind_of(what)
        total += pss
        by_kind[kind] = by_kind.get(kind, 0) + pss
        if node in workers and kind not in ("host", "other"):
            on_workers[kind] = on_workers.get(kind, 0) + pss
    agents = sum(v for k, v in by_kind.items() if k not in ("host", "pause", "container", "other"))
    worker_agents = sum(on_workers.values())
    return {"total": total, "by_kind": by_kind, "agents": agents,
            "worker_agents": on_workers,
            "per_worker": worker_agents / len(workers) if workers else 0.0}


def parse_cpu_ticks(stat: str) -> int:
    """utime + stime + cutime + cstime of a /proc/PID/stat text, in clock ticks: the process's
    own and that of the children it waited for (kube-proxy's iptables-restore runs). The
    command name may hold spaces and parentheses: the fields are counted after its last ')'."""
    fields = stat[stat.rindex(")") + 2:].split()
    return sum(int(f) for f in fields[11:15])


def cpu_summary(entries: Iterable[tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per kind (kind_of) from (record description, seconds) pairs."""
    out: dict[str, float] = {}
    for what, seconds in entries:
        kind = kind_of(what)[0]
        out[kind] = out.get(kind, 0.0) + seconds
    return out


_TARGET = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3}):(\d+)\b")


def dnat_targets(rules: str, port: int) -> set[str]:
    """The IPv4 addresses a rules dump DNATs to at `port`: iptables-save's `-j DNAT
    --to-destination IP:PORT`, nft's `dnat to IP:PORT` (other IP:PORT texts on those lines too,
    which a dump has only as DNAT targets)."""
    found = set()
    for line in rules.splitlines():
        if "DNAT" in line or "dnat to" in line:
            found.update(ip for ip, p in _TARGET.findall(line) if int(p) == port)
    return found


def slice_addresses(slices: Iterable[dict]) -> tuple[set[str], int]:
    """(the ready endpoints' addresses, how many endpoints in all) of EndpointSlices."""
    ready, count = set(), 0
    for s in slices:
        for ep in s.get("endpoints") or []:
            count += 1
            if (ep.get("conditions") or {}).get("ready") is not False:
                ready.update(ep.get("addresses") or [])
    return ready, count


# -- acting ---------------------------------------------------------------------------------------

def topology(workers: int):
    from testbed.spec.source import parse_documents
    from testbed.spec.topology import build_topology

    text = (f"name: scale{workers}\nmaster: master\n"
            f"workers: [{', '.join(f'w{i}' for i in range(1, workers + 1))}]\n")
    return build_topology(parse_documents(text, "<bench/scale.py>")[0])


def container() -> dict:
    return {"name": "main", "image": "registry.k8s.io/pause:3.9",
            "ports": [{"containerPort": TARGET_PORT, "protocol": "TCP"}]}


def workload(replicas: int) -> list[dict]:
    return [{"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": APP, "namespace": "default", "labels": LABELS},
             "spec": {"replicas": replicas, "selector": {"matchLabels": LABELS},
                      "template": {"metadata": {"labels": LABELS},
                                   "spec": {"containers": [container()]}}}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": APP, "namespace": "default", "labels": LABELS},
             "spec": {"selector": LABELS,
                      "ports": [{"port": SERVICE_PORT, "targetPort": TARGET_PORT, "protocol": "TCP"}]}}]


def direct_pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": LABELS},
            "spec": {"nodeName": node, "restartPolicy": "Always", "containers": [container()]}}


def record_usage(record_dir: Path) -> list[tuple[str, int, float]]:
    """(description, PSS kB, CPU seconds so far) of every live process in the run record
    (agents, pods, hosts)."""
    from testbed.emu.record import Record, alive

    hz = os.sysconf("SC_CLK_TCK")
    out = []
    for entry in Record.load(record_dir).procs.values():
        if not alive(entry.pid, entry.start):
            continue
        try:
            pss = parse_pss(Path(f"/proc/{entry.pid}/smaps_rollup").read_text())
            cpu = parse_cpu_ticks(Path(f"/proc/{entry.pid}/stat").read_text()) / hz
        except (OSError, ValueError):
            continue   # ended meanwhile, or a kernel thread
        out.append((entry.what, pss, cpu))
    return out


def usage_figures(record_dir: Path, workers: set[str]) -> tuple[dict, dict[str, float]]:
    """(memory_summary, cpu_summary) of the run record's processes now."""
    usage = record_usage(record_dir)
    return (memory_summary([(w, p) for w, p, _ in usage], workers),
            cpu_summary([(w, c) for w, _, c in usage]))


def measure_direct(workers: int, per_node: int) -> dict:
    from testbed.emu.podlab import PodLab

    topo = topology(workers)
    started = time.perf_counter()
    lab = PodLab(topo).up()
    try:
        up = time.perf_counter() - started
        manifests = [direct_pod(f"{APP}-{i}", f"w{i % workers + 1}") for i in range(workers * per_node)]
        t0 = time.perf_counter()
        lab.run_pods(manifests)
        pods = time.perf_counter() - t0
        memory, cpu = usage_figures(lab.record.directory, {w.name for w in topo.workers})
        return {"up": up, "pods": pods, "memory": memory, "cpu": cpu}
    finally:
        lab.down()


def rules_dump(mode: str, pid: int) -> str:
    from testbed.net.run import ns_prefix

    argv = {"iptables": ["iptables-save", "-t", "nat"],
            "nftables": ["nft", "list", "table", "ip", "kube-proxy"]}[mode]
    done = subprocess.run(ns_prefix(pid) + argv, capture_output=True, text=True, timeout=60)
    return done.stdout if done.returncode == 0 else ""


class SyncWatch:
    """Which workers' kube-proxies have programmed exactly `wanted`: a node's rules are read
    when its status file counts a sync not yet looked at (and once at the start)."""

    def __init__(self, cluster, wanted: set[str]) -> None:
        from testbed.emu import rundir

        self.cluster, self.wanted, self.rundir = cluster, wanted, rundir
        self.seen_syncs: dict[str, int] = {}
        self.done: dict[str, float] = {}
        self.reads = 0

    def poll(self, t0: float) -> None:
        cluster = self.cluster
        for node in cluster.topo.workers:
            if node.name in self.done:
                continue
            status = self.rundir.read_proxy_status(cluster.record.directory, node.name)
            syncs = -1 if status is None else status.syncs
            if self.seen_syncs.get(node.name) == syncs:
                continue
            self.reads += 1
            have = dnat_targets(rules_dump(node.proxy_mode, cluster.network.pid(node.name)), TARGET_PORT)
            if have == self.wanted:
                self.done[node.name] = time.perf_counter() - t0
            else:
                self.seen_syncs[node.name] = syncs


class Follow:
    """An informer's view of one kind, kept by its handlers: name -> what `digest` keeps."""

    def __init__(self, client, kind: str, selector: str, digest) -> None:
        from testbed.apiclient.informer import Informer

        self.seen: dict[str, object] = {}
        self.digest = digest
        self.informer = Informer(client, kind, "default", selector, on_add=self._set,
                                 on_update=lambda old, new: self._set(new), on_delete=self._drop)

    def _set(self, obj: dict) -> None:
        self.seen[obj["metadata"]["name"]] = self.digest(obj)

    def _drop(self, obj: dict) -> None:
        self.seen.pop(obj["metadata"]["name"], None)

    def __enter__(self) -> Follow:
        self.informer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.informer.stop()


def measure_cluster(workers: int, per_node: int, timeout: float) -> dict:
    from testbed.controllers.common import is_ready
    from testbed.emu.cluster import Cluster

    topo = topology(workers)
    replicas = workers * per_node
    started = time.perf_counter()
    cluster = Cluster(topo).up()
    try:
        up = time.perf_counter() - started
        client = cluster.client
        pods = Follow(client, "Pod", f"app={APP}",
                      lambda p: (p.get("status") or {}).get("podIP") if is_ready(p) else None)
        slices = Follow(client, "EndpointSlice", f"kubernetes.io/service-name={APP}",
                        lambda s: slice_addresses([s]))
        with pods, slices:
            pods.informer.wait_for_sync(30)
            slices.informer.wait_for_sync(30)
            t0 = time.perf_counter()
            client.apply_all(workload(replicas))
            marks, watch = follow(cluster, pods, slices, replicas, t0, timeout)
        memory, cpu = usage_figures(cluster.record.directory, {w.name for w in topo.workers})
        from testbed.emu import rundir
        statuses = [rundir.read_proxy_status(cluster.record.directory, w.name) for w in topo.workers]
        syncs = [st.syncs for st in statuses if st is not None]
        modes = sorted({f"proxy {w.proxy_mode}, policy {w.policy_mode}" for w in topo.workers})
        return {"up": up, "timings": dict(cluster.timings), **marks, "rule_reads": watch.reads,
                "proxy_syncs": sum(syncs) / len(syncs) if syncs else 0.0,
                "memory": memory, "cpu": cpu, "modes": modes, "routing": topo.pod_network.routing}
    finally:
        cluster.down()


def follow(cluster, pods: Follow, slices: Follow, replicas: int, t0: float,
           timeout: float) -> tuple[dict[str, float], SyncWatch]:
    """The marks (seconds after t0) of created, ready, slices, first_synced, synced."""
    workers = len(cluster.topo.workers)
    marks: dict[str, float] = {}
    watch: SyncWatch | None = None
    while True:
        now = time.perf_counter() - t0
        seen = dict(pods.seen)
        if "created" not in marks and len(seen) >= replicas:
            marks["created"] = now
        pod_ips = {ip for ip in seen.values() if ip}
        if "ready" not in marks and len(pod_ips) >= replicas:
            marks["ready"] = now
        if "ready" in marks and "slices" not in marks:
            addresses, count = set(), 0
            for ready, n in list(slices.seen.values()):
                addresses |= ready
                count += n
            if addresses == pod_ips and count == replicas:
                marks["slices"] = now
                watch = SyncWatch(cluster, pod_ips)
        if watch is not None:
            watch.poll(t0)
            if len(watch.done) == workers:
                marks["synced"] = max(watch.done.values())
                marks["first_synced"] = min(watch.done.values())
                return marks, watch
        if now > timeout:
            raise TimeoutError(f"{workers} workers: not ready and synced after {timeout:g} s "
                               f"(reached: {', '.join(marks) or 'nothing'}; synced nodes: "
                               f"{len(watch.done) if watch else 0}/{workers})")
        time.sleep(0.1)


def mb(kb: float) -> str:
    return f"{kb / 1024:8.1f}"


def report(n: int, per_node: int, base: dict, run: dict) -> None:
    r = n * per_node
    mem, bmem = run["memory"], base["memory"]
    print(f"\n{n} workers x {per_node} pods = {r} pods ({'; '.join(run['modes'])}; routing {run['routing']})")
    print("                                                    with agents   without (baseline)")
    print(f"  cluster up (s)                                    {run['up']:>10.2f}   {base['up']:>10.2f}")
    print(f"  pods: Deployment applied -> all created (s)       {run['created']:>10.2f}")
    print(f"  pods: -> all Ready (s)                            {run['ready']:>10.2f}   {base['pods']:>10.2f}"
          "  (run_pods)")
    print(f"  pods: -> EndpointSlices hold all {r:<5} (s)        {run['slices']:>10.2f}")
    print(f"  pods: -> first worker's kube-proxy synced (s)     {run['first_synced']:>10.2f}")
    print(f"  pods: -> every worker's kube-proxy synced (s)     {run['synced']:>10.2f}   "
          f"({run['synced'] / base['pods']:.1f}x baseline; {run['rule_reads']} rule dumps)")
    print(f"  kube-proxy syncs that applied something, per worker, since its start  "
          f"{run['proxy_syncs']:>6.1f}")
    print(f"  memory PSS, all processes (MB)                    {mb(mem['total']):>10}   {mb(bmem['total']):>10}")
    for kind in sorted(set(mem["by_kind"]) | set(bmem["by_kind"])):
        print(f"    {kind:<46}  {mb(mem['by_kind'].get(kind, 0)):>10}   {mb(bmem['by_kind'].get(kind, 0)):>10}")
    print("  CPU seconds used from the start to synced (each with the children it waited for)")
    for kind, seconds in sorted(run["cpu"].items(), key=lambda kv: -kv[1]):
        print(f"    {kind:<46}  {seconds:>10.1f}   {base['cpu'].get(kind, 0.0):>10.1f}")
    print(f"  agents in all (MB)                                {mb(mem['agents']):>10}")
    print(f"  workers' agents per worker (MB)                   {mb(mem['per_worker']):>10}   ("
          + ", ".join(f"{k} {v / n / 1024:.1f}" for k, v in sorted(mem["worker_agents"].items())) + ")")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="10,50,100", help="cluster sizes, comma-separated")
    parser.add_argument("--pods", default="10", help="pods per worker")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait per size")
    parser.add_argument("--no-baseline", action="store_true", help="skip the cluster without agents")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    try:
        sizes = parse_sizes(args.workers, "--workers")
        pods = parse_sizes(args.pods, "--pods")
        if len(pods) != 1:
            raise ValueError(f"--pods: one number of pods per worker, not {args.pods!r}")
        per_node = pods[0]
    except ValueError as err:
        print(f"bench/scale.py: {err}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("bench/scale.py builds namespaces: run it as root", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C, through the finally clauses that tear the cluster down.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results = []
    try:
        for n in sizes:
            base = ({"up": 0.0, "pods": float("nan"), "memory": memory_summary([], set()), "cpu": {}}
                    if args.no_baseline else measure_direct(n, per_node))
            run = measure_cluster(n, per_node, args.timeout)
            report(n, per_node, base, run)
            results.append({"workers": n, "pods_per_worker": per_node, "baseline": base, "cluster": run})
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))
    except KeyboardInterrupt:
        print("interrupted: torn down", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
