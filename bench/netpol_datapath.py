#!/usr/bin/env python3
"""NetworkPolicy on the data path: first-packet latency and throughput between two pods with
and without 200 policies selecting them, per mode, next to pods no policy selects, measured
in the same run and at the same moments.

A PodLab (the pod network and runtime, no control plane) with two workers holds two sets of
pods. In namespace `bench`: a `server` pod on w1, a `client-a` on w1 (same node: the bridged
path, through br_netfilter), a `client-b` on w2 (across nodes: routed through the gateway),
and an `intruder` on w1 that no policy allows. In namespace `open`, the same server and
clients, which no policy selects: the baseline. Each node's rules are written the way its
policy agent writes them: the syncer (`testbed.netpol.syncer.PolicySyncer`) with the real
backend (`testbed.net.netfilter`), fed the pods, the namespaces and the policies as objects,
in the node's own namespace. No API server is needed.

The N policies (in `bench`) all select its server and both clients (three selector shapes:
`app In (server, client)`, `{}`, `app Exists`) for Ingress and Egress. Each has rules that do
not match the clients (pods of another app with a numbered and a named port, an ipBlock, a
namespace selector); only the last policy, which sorts last, adds the rules that let the
clients reach the server's named port. A new connection's first packet is therefore checked
against every policy's rules of the client's egress and of the server's ingress (the rules
mark and go on; the verdict comes after the last policy).

Configurations, in turn for --rounds rounds (so drift hits them all alike): no policies at
all; then for each mode, 1 and N policies. Before measuring one with policies, the intruder's
connection must time out (the rules are really there) and the clients' must pass.

  connect ms   new TCP connections from a client to its server, one after another, the
               selected and the unselected pair alternating connection by connection (each a
               new conntrack entry: the rules are walked once per sample); median and p90 of
               all rounds' samples, and the median of the paired differences (selected minus
               unselected, which a loaded machine shifts alike)
  Gbit/s       TCP streams of --seconds from the client (a Python socket writing 256 KiB
               chunks, as bench/proxy_throughput.py; no iperf3 here), --streams of each pair
               per round, the pairs alternating; medians of all, and the median of the
               ratios of streams run one after the other; only the first packet of a
               connection walks the policies, the rest pass as established

Run as root:  .venv/bin/python bench/netpol_datapath.py [--policies 1,200] [--modes ...]
              [--samples 500] [--seconds 1] [--streams 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy_throughput import transfer  # noqa: E402

from testbed.agents.netpol import cleanup_other_mode, make_backend  # noqa: E402
from testbed.emu.podlab import PodLab  # noqa: E402
from testbed.net.netfilter import NftBackend  # noqa: E402
from testbed.net.netns import socket_in  # noqa: E402
from testbed.net.run import ns_prefix  # noqa: E402
from testbed.netpol.syncer import PolicySyncer  # noqa: E402
from testbed.spec.source import parse_documents  # noqa: E402
from testbed.spec.topology import build_topology  # noqa: E402

PORT = 5001
NAMESPACE, OPEN = "bench", "open"     # selected by the policies; selected by none
PATHS = {"same node": "client-a", "across nodes": "client-b"}
RECEIVER = f"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {PORT})); s.listen(128); print("ok", flush=True)
buf = bytearray(1 << 20)
while True:
    c, _ = s.accept()
    try:
        while c.recv_into(buf):
            pass
    except OSError:
        pass
    c.close()
"""


def topology():
    text = "name: npdp\nmaster: master\nworkers: [w1, w2]\nclients: [client]\n"
    return build_topology(parse_documents(text, "<bench>")[0])


def pod_manifest(name: str, node: str, labels: dict, ports: list | None = None,
                 namespace: str = NAMESPACE) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"nodeName": node, "restartPolicy": "Always",
                     "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.9",
                                     "ports": ports or []}]}}


SERVE = [{"name": "serve", "containerPort": PORT, "protocol": "TCP"}]
MANIFESTS = [
    *(m for ns in (NAMESPACE, OPEN) for m in (
        pod_manifest("server", "w1", {"app": "server", "tier": "web"}, SERVE, ns),
        pod_manifest("client-a", "w1", {"app": "client", "role": "client"}, namespace=ns),
        pod_manifest("client-b", "w2", {"app": "client", "role": "client"}, namespace=ns))),
    pod_manifest("intruder", "w1", {"app": "intruder"}),
]
NAMESPACE_OBJECTS = [{"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns,
                                                          "team": ns}}}
                     for ns in (NAMESPACE, OPEN)]


def policy(i: int, last: bool) -> dict:
    """Selects the server and the clients; allows nothing they do, unless `last`, whose final
    rules allow the clients in to the server and out to it."""
    selector = ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["server", "client"]}]},
                {}, {"matchExpressions": [{"key": "app", "operator": "Exists"}]})[i % 3]
    ingress = [
        {"from": [{"podSelector": {"matchLabels": {"app": f"other-{i}"}}}],
         "ports": [{"port": 8080}, {"port": "serve"}]},
        {"from": [{"ipBlock": {"cidr": f"192.168.{i % 256}.0/24"}}], "ports": [{"port": PORT}]},
        {"from": [{"namespaceSelector": {"matchLabels": {"team": f"other-{i}"}}}]},
    ]
    egress = [
        {"to": [{"podSelector": {"matchLabels": {"app": f"other-{i}"}}}], "ports": [{"port": PORT}]},
        {"to": [{"ipBlock": {"cidr": f"198.18.{i % 256}.0/24"}}]},
    ]
    if last:
        ingress.append({"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                        "ports": [{"port": "serve"}]})
        egress.append({"to": [{"podSelector": {"matchLabels": {"app": "server"}}}],
                       "ports": [{"port": PORT}]})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": NAMESPACE, "name": f"np-{i:04d}"},
            "spec": {"podSelector": selector, "policyTypes": ["Ingress", "Egress"],
                     "ingress": ingress, "egress": egress}}


def policies(n: int) -> list[dict]:
    return [policy(i, i == n - 1) for i in range(n)]


def pod_object(pod) -> dict:
    """What the API would hand the agent's informer for a running pod of the lab."""
    obj = {k: v for k, v in pod.manifest.items()}
    obj["spec"] = {**pod.manifest["spec"], "nodeName": pod.node}
    obj["status"] = {"phase": "Running", "podIP": str(pod.ip)}
    return obj


def apply_policies(lab: PodLab, mode: str, objs: list[dict]) -> list[int]:
    """Each worker's rules, written by its syncer with the real backend; the isolated pods per
    node."""
    protected = []
    for node in ("w1", "w2"):
        pid = lab.network.pid(node)
        syncer = PolicySyncer(make_backend(mode, pid), node)
        for obj in NAMESPACE_OBJECTS:
            syncer.namespace_changes.on_add(obj)
        for pod in lab.pods.values():
            syncer.pod_changes.on_add(pod_object(pod))
        for obj in objs:
            syncer.policy_changes.on_add(obj)
        result = syncer.sync()
        if not result.ok:
            raise RuntimeError(f"{mode} sync on {node}: {result.error}")
        protected.append(result.protected)
    return protected


def remove_policies(lab: PodLab, mode: str) -> None:
    """Take a mode's rules out of both nodes, iptables-nft's emptied filter table too, so the
    next configuration starts from nothing."""
    for node in ("w1", "w2"):
        pid = lab.network.pid(node)
        problems = cleanup_other_mode("iptables" if mode == "nftables" else "nftables", pid)
        if problems:
            raise RuntimeError(f"{node}: {problems}")
        if mode == "iptables":
            NftBackend(pid).delete_table("filter")


def connect_ms(pid: int, ip: str, timeout: float = 2.0) -> float:
    """The connect time in ms of one new connection."""
    sock = socket_in(pid)
    sock.settimeout(timeout)
    try:
        start = time.perf_counter()
        sock.connect((ip, PORT))
        return (time.perf_counter() - start) * 1000
    finally:
        sock.close()


def reaches(pid: int, ip: str, timeout: float = 0.5) -> bool:
    try:
        connect_ms(pid, ip, timeout)
        return True
    except OSError:
        return False


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


class Pair:
    """A client and its server, in one namespace."""

    def __init__(self, lab: PodLab, namespace: str, client: str):
        self.client = lab.find_pod(f"{namespace}/{client}").pid
        self.server = str(lab.find_pod(f"{namespace}/server").ip)

    def connect(self) -> float:
        return connect_ms(self.client, self.server)

    def stream(self, seconds: float) -> float:
        return transfer(self.client, self.server, PORT, seconds)


def measure(lab: PodLab, samples: int, seconds: float,
            streams: int) -> dict[str, dict[str, list[float]]]:
    """Per path: connect times of the selected and unselected pairs (alternating) and their
    paired differences; `streams` streams of each pair (alternating) and their ratios."""
    out = {}
    for path, client in PATHS.items():
        selected, unselected = Pair(lab, NAMESPACE, client), Pair(lab, OPEN, client)
        for _ in range(20):                                  # warm up (ARP, caches)
            selected.connect()
            unselected.connect()
        f: dict[str, list[float]] = {"sel": [], "open": [], "diff": []}
        for i in range(samples):
            if i % 2:
                o, s = unselected.connect(), selected.connect()
            else:
                s, o = selected.connect(), unselected.connect()
            f["sel"].append(s)
            f["open"].append(o)
            f["diff"].append(s - o)
        f["sel_gbps"], f["open_gbps"], f["ratio"] = [], [], []
        for i in range(streams):
            order = (selected, unselected) if i % 2 == 0 else (unselected, selected)
            got = {id(pair): pair.stream(seconds) for pair in order}
            f["sel_gbps"].append(got[id(selected)])
            f["open_gbps"].append(got[id(unselected)])
            f["ratio"].append(got[id(selected)] / got[id(unselected)])
        out[path] = f
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--policies", default="1,200", help="policy counts to measure, per mode")
    p.add_argument("--modes", default="iptables,nftables")
    p.add_argument("--samples", type=int, default=500, help="connections per pair, path and round")
    p.add_argument("--seconds", type=float, default=1.0, help="length of one stream")
    p.add_argument("--streams", type=int, default=2, help="streams per pair, path and round")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    counts = [int(x) for x in args.policies.split(",")]
    configs = [("none", 0)] + [(mode, n) for mode in args.modes.split(",") for n in counts]
    figures: dict[tuple[str, int, str], dict[str, list[float]]] = {}
    protected: dict[tuple[str, int], list[int]] = {}
    with PodLab(topology()) as lab:
        lab.run_pods(MANIFESTS)
        servers = [lab.find_pod(f"{ns}/server") for ns in (NAMESPACE, OPEN)]
        server, intruder = servers[0], lab.find_pod(f"{NAMESPACE}/intruder")
        receivers = [subprocess.Popen([*ns_prefix(s.pid), sys.executable, "-c", RECEIVER],
                                      stdout=subprocess.PIPE) for s in servers]
        try:
            for receiver in receivers:
                if receiver.stdout.readline() != b"ok\n":
                    raise RuntimeError("a receiver in a server pod did not start")
            for _ in range(args.rounds):
                for mode, n in configs:
                    if n:
                        protected[(mode, n)] = apply_policies(lab, mode, policies(n))
                    try:
                        if reaches(intruder.pid, str(server.ip)) != (n == 0):
                            raise RuntimeError(f"{mode} {n}: the intruder's connection "
                                               f"{'passed' if n else 'failed'}")
                        for path, f in measure(lab, args.samples, args.seconds, args.streams).items():
                            into = figures.setdefault((mode, n, path), {})
                            for k, v in f.items():
                                into.setdefault(k, []).extend(v)
                    finally:
                        if n:
                            remove_policies(lab, mode)
        finally:
            for receiver in receivers:
                receiver.terminate()
                receiver.wait(5)
    print("isolated pods per node (w1, w2): "
          + ", ".join(f"{m} {n}: {p}" for (m, n), p in protected.items()))
    print("| policies | mode | path | selected pods: connect median / p90 ms | unselected pods: "
          "median / p90 ms | paired difference ms (median) | selected Gbit/s | unselected Gbit/s "
          "| paired ratio (median) |")
    print("|---" * 9 + "|")
    med = statistics.median
    for (mode, n, path), f in figures.items():
        print(f"| {n} | {mode if n else '-'} | {path} | {med(f['sel']):.3f} / {p90(f['sel']):.3f} | "
              f"{med(f['open']):.3f} / {p90(f['open']):.3f} | {med(f['diff']):+.3f} | "
              f"{med(f['sel_gbps']):.2f} | {med(f['open_gbps']):.2f} | "
              f"{100 * med(f['ratio']):.0f}% |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
