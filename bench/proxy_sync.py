#!/usr/bin/env python3
"""kube-proxy sync cost: full syncs of N Services x 5 endpoints and a partial sync, per mode,
next to the raw apply of the same text measured in the same run.

For each mode and size, a `Proxier` (or the userspace proxier) is fed N Services and their
EndpointSlices through its change trackers, as the informers do, and synced into a throwaway
network namespace held by `testbed-pause pause` (which prints "ok" once it is in a namespace
of its own, so nothing can race into the machine's namespace). Columns:

  render    building the text alone (pure Python)
  sync      the proxier's first full sync: merge, render, apply, plus in iptables mode reading
            the built-in chains (for missing jump rules) and the nat table's chains
  raw       `iptables-restore --noflush` / `nft -f` of the very same text (iptables: with the
            jump rules into the built-in chains that a first sync carries) into a second fresh
            namespace: the kernel and tool cost with no kube-proxy at all (iptables: with the
            backend's whole-table hint, see testbed/net/netfilter.py; --unhinted also times the
            text without it)
  resync    a periodic full resync with the rules already in place, and its raw counterpart
  partial   after one endpoint of one Service changes (iptables and nftables modes), and the
            raw apply of the same partial text in the second namespace (which holds the same
            rules): the floor any change costs with that many rules in the kernel

Run as root:  .venv/bin/python bench/proxy_sync.py [--sizes 1000,5000,10000] [--modes ...]

Targets (issue 4): rule generation adds at most 20% to the apply time; a partial sync with 10k
Services under 150 ms and under 5% of a full sync.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.agents.userspace import UserspaceProxier  # noqa: E402
from testbed.emu.pausebin import pause_binary  # noqa: E402
from testbed.net.netfilter import (  # noqa: E402
    RESTORE_TIMEOUT,
    IptablesBackend,
    NftBackend,
    with_whole_table_cache,
)
from testbed.net.run import run  # noqa: E402
from testbed.proxy.model import LocalDetector, ProxierSettings, mark_for_bit  # noqa: E402
from testbed.proxy.proxier import Proxier  # noqa: E402

ENDPOINTS = 5
SETTINGS = ProxierSettings(node_name="w1", node_ip="172.16.1.2", local_ips=("172.16.1.2",),
                           masquerade_mark=mark_for_bit(14),
                           local_detector=LocalDetector("ClusterCIDR", "10.244.0.0/16"),
                           nfacct_counters=frozenset(), has_random_fully=True,
                           service_cidrs=("10.96.0.0/12",))


@contextlib.contextmanager
def throwaway_netns(name: str):
    """A fresh network namespace, held by a pause process until the block ends."""
    proc = subprocess.Popen([pause_binary(), "pause", name], stdout=subprocess.PIPE)
    try:
        if proc.stdout.readline() != b"ok\n":
            raise RuntimeError("testbed-pause did not report its namespace ready")
        run(["ip", "link", "set", "lo", "up"], netns=proc.pid)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(5)


def cluster_ip(i: int) -> str:
    return f"10.96.{(i + 256) // 256 % 256}.{(i + 256) % 256}" if i < 60000 else "10.97.0.1"


def service(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "default", "name": f"svc-{i:05d}"},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip(i),
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}


def endpoint_slice(i: int, drop: int = 0) -> dict:
    eps = [{"addresses": [f"10.244.{(i * ENDPOINTS + k) // 250 % 256}.{(i * ENDPOINTS + k) % 250 + 2}"],
            "conditions": {"ready": True}, "nodeName": "w1" if k % 2 else "w2"}
           for k in range(ENDPOINTS - drop)]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "default", "name": f"svc-{i:05d}-abc",
                         "labels": {"kubernetes.io/service-name": f"svc-{i:05d}"}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def make_proxier(mode: str, pid: int):
    if mode == "nftables":
        return Proxier(NftBackend(pid), SETTINGS, full_sync_period=3600)
    if mode == "userspace":
        return UserspaceProxier(IptablesBackend(pid), SETTINGS)
    return Proxier(IptablesBackend(pid), SETTINGS, full_sync_period=3600)


def feed(proxier, n: int) -> None:
    for i in range(n):
        proxier.service_changes.on_add(service(i))
        proxier.endpoint_changes.on_add(endpoint_slice(i))


def raw_apply(mode: str, pid: int, text: str, hint: bool = True) -> float:
    """The tool alone on the text the backend sends (iptables: with its whole-table hint)."""
    argv = ["nft", "-f", "-"] if mode == "nftables" else ["iptables-restore", "-w", "5", "--noflush"]
    if mode != "nftables" and hint:
        text = with_whole_table_cache(text)
    start = time.perf_counter()
    run(argv, netns=pid, input=text, timeout=RESTORE_TIMEOUT)
    return time.perf_counter() - start


def render_only(mode: str, proxier) -> float:
    """Time to render the full text again from the proxier's maps (no apply)."""
    from dataclasses import replace

    from testbed.agents.userspace import render_portals
    from testbed.proxy import iptables, nftables

    start = time.perf_counter()
    if mode == "nftables":
        nftables.render(proxier.service_ports(), proxier.endpoints, proxier.settings, True)
    elif mode == "iptables":
        iptables.render_sync(proxier.service_ports(), proxier.endpoints,
                             replace(proxier.settings, full_sync=True), None)
    else:
        render_portals([(o.svc, o.relay.port) for o in proxier.open.values()],
                       proxier.host_ip, proxier.listen_ip)
    return time.perf_counter() - start


def bench(mode: str, n: int, unhinted: bool = False) -> dict:
    row: dict = {"mode": mode, "services": n}
    with throwaway_netns(f"kpb-{mode[:3]}-a") as a, throwaway_netns(f"kpb-{mode[:3]}-b") as b:
        proxier = make_proxier(mode, a)
        feed(proxier, n)
        start = time.perf_counter()
        result = proxier.sync()
        row["sync"] = time.perf_counter() - start
        if not result.ok:
            raise RuntimeError(f"{mode} {n}: {result.error}")
        text = proxier.last_text
        row["lines"] = text.count("\n")
        row["render"] = render_only(mode, proxier)
        row["raw"] = raw_apply(mode, b, text)
        # periodic full resync with everything in place
        proxier.request_full_sync()
        proxier.service_changes.on_update(service(0), service(0))
        start = time.perf_counter()
        assert proxier.sync().ok
        row["resync"] = time.perf_counter() - start
        row["raw_resync"] = raw_apply(mode, b, proxier.last_text)
        if mode != "userspace":
            proxier.endpoint_changes.on_update(endpoint_slice(n - 1), endpoint_slice(n - 1, drop=1))
            start = time.perf_counter()
            result = proxier.sync()
            row["partial"] = time.perf_counter() - start
            assert result.ok and not result.full, result
            row["partial_lines"] = proxier.last_text.count("\n")
            row["raw_partial"] = raw_apply(mode, b, proxier.last_text)
        if unhinted and mode == "iptables":
            with throwaway_netns("kpb-ipt-c") as c:
                row["unhinted"] = raw_apply(mode, c, text, hint=False)
        if isinstance(proxier, UserspaceProxier):
            proxier.stop()
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000,5000,10000")
    p.add_argument("--modes", default="iptables,nftables,userspace")
    p.add_argument("--repeat", type=int, default=1,
                   help="run each size N times and print the median of each figure")
    p.add_argument("--unhinted", action="store_true",
                   help="also time iptables-restore of the full text without the whole-table "
                        "hint (quadratic with iptables-nft 1.8.9: minutes at 5,000 Services)")
    p.add_argument("--userspace-max", type=int, default=1000,
                   help="largest size for userspace mode (one socket and thread per service)")
    args = p.parse_args()
    rows = []
    print("| mode | Services | lines | render s | sync s | raw apply s | sync / raw | resync s | "
          "raw resync s | resync / raw | partial ms (lines) | raw partial ms | partial / resync |"
          + (" raw apply without hint s |" if args.unhinted else ""))
    print("|---" * (13 + args.unhinted) + "|")
    for n in [int(x) for x in args.sizes.split(",")]:
        for mode in args.modes.split(","):
            if mode == "userspace" and n > args.userspace_max:
                continue
            runs = [bench(mode, n, args.unhinted) for _ in range(args.repeat)]
            r = {k: statistics.median(run[k] for run in runs) if isinstance(v, float) else v
                 for k, v in runs[0].items()}
            rows.append(r)
            partial = (f"{r['partial'] * 1000:.0f} ({r['partial_lines']}) | "
                       f"{r['raw_partial'] * 1000:.0f} | {100 * r['partial'] / r['resync']:.1f}%"
                       if "partial" in r else "- | - | -")
            extra = ""
            if args.unhinted:
                extra = f" {r['unhinted']:.2f} |" if "unhinted" in r else " - |"
            print(f"| {mode} | {n} | {r['lines']} | {r['render']:.2f} | {r['sync']:.2f} | "
                  f"{r['raw']:.2f} | {r['sync'] / r['raw']:.2f} | {r['resync']:.2f} | "
                  f"{r['raw_resync']:.2f} | {r['resync'] / r['raw_resync']:.2f} | {partial} |"
                  + extra, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
