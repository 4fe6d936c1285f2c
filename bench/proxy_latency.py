#!/usr/bin/env python3
"""First-connection latency to the first and the last Service against the number of Services,
iptables versus nftables mode, in a throwaway namespace.

For each mode and size N, a proxier syncs N Services (5 endpoints each) into a fresh namespace
held by `testbed-pause pause`. The first and the last Service each have one endpoint that
answers: a listener on 10.0.0.1:8080 on a veth in the same namespace (no dummy module here). Each sample is
a new TCP connection from that namespace to the Service's ClusterIP (so a new conntrack entry:
the NAT rules are walked once per sample); the median connect time is printed, and next to it
the same connection straight to 10.0.0.1:8080 (no Service) as the baseline of the same run.
iptables walks KUBE-SERVICES rule by rule, so the last Service should cost more as N grows;
nftables looks the destination up in a verdict map and should stay flat.

Run as root:  .venv/bin/python bench/proxy_latency.py [--sizes 100,1000,5000,10000]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy_sync import ENDPOINTS, cluster_ip, make_proxier, service, throwaway_netns  # noqa: E402

from testbed.net.netns import socket_in  # noqa: E402
from testbed.net.run import run  # noqa: E402

SERVER = "10.0.0.1"


def endpoint_slice(i: int, live: bool) -> dict:
    ips = [SERVER] if live else [f"10.244.{i // 50 % 256}.{i % 50 * ENDPOINTS + k + 2}"
                                 for k in range(ENDPOINTS)]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "default", "name": f"svc-{i:05d}-abc",
                         "labels": {"kubernetes.io/service-name": f"svc-{i:05d}"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def serve(pid: int, stop: threading.Event) -> None:
    listener = socket_in(pid)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((SERVER, 8080))
    listener.listen(512)
    listener.settimeout(0.2)

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                conn.close()
            except TimeoutError:
                continue
        listener.close()

    threading.Thread(target=loop, daemon=True).start()


def connect_ms(pid: int, ip: str, port: int, samples: int) -> float:
    times = []
    for _ in range(samples):
        sock = socket_in(pid)
        sock.settimeout(2)
        start = time.perf_counter()
        sock.connect((ip, port))
        times.append((time.perf_counter() - start) * 1000)
        sock.close()
    return statistics.median(times)


def bench(mode: str, n: int, samples: int) -> tuple[float, float, float]:
    with throwaway_netns(f"kpl-{mode[:3]}") as pid:
        for argv in (["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                     ["ip", "addr", "add", f"{SERVER}/32", "dev", "v0"],
                     ["ip", "link", "set", "v0", "up"], ["ip", "link", "set", "v1", "up"],
                     ["ip", "route", "add", "default", "dev", "v0"]):
            run(argv, netns=pid)
        proxier = make_proxier(mode, pid)
        for i in range(n):
            proxier.service_changes.on_add(service(i))
            proxier.endpoint_changes.on_add(endpoint_slice(i, live=i in (0, n - 1)))
        result = proxier.sync()
        if not result.ok:
            raise RuntimeError(result.error)
        stop = threading.Event()
        serve(pid, stop)
        try:
            connect_ms(pid, cluster_ip(n - 1), 80, 20)  # warm up
            direct = connect_ms(pid, SERVER, 8080, samples)
            first = connect_ms(pid, cluster_ip(0), 80, samples)
            last = connect_ms(pid, cluster_ip(n - 1), 80, samples)
        finally:
            stop.set()
            time.sleep(0.3)
    return direct, first, last


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="100,1000,5000,10000")
    p.add_argument("--modes", default="iptables,nftables")
    p.add_argument("--samples", type=int, default=300)
    args = p.parse_args()
    print("| mode | services | direct ms | first service ms | last service ms | last - first ms |")
    print("|---|---|---|---|---|---|")
    for n in [int(x) for x in args.sizes.split(",")]:
        for mode in args.modes.split(","):
            direct, first, last = bench(mode, n, args.samples)
            print(f"| {mode} | {n} | {direct:.3f} | {first:.3f} | {last:.3f} | "
                  f"{last - first:+.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
