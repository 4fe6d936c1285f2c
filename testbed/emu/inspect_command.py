"""Acts: `testbed nat NODE` and `testbed conntrack NODE` against a running cluster.

From another terminal, like `testbed ps`: the cluster is found through the run records
(testbed.emu.record.records(); `--cluster NAME` picks one of several by topology or run
directory name), the node's namespace through the record's "worker w1" entry, and the
kube-proxy mode through the node's `proxy/NODE/kube-proxy.json`. `nat` prints
`iptables -S -t nat` (the article's screenshots), or `nft list table ip kube-proxy` in
nftables mode; `conntrack` prints `conntrack -L` of the node.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from testbed.emu.inspect import (
    MODES,
    InspectError,
    conntrack_table,
    filter_table,
    nat_table,
    node_pid,
    proxy_mode,
)


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("node", help="a node of the running cluster (w1, master, gw, ...)")
    common.add_argument("--cluster", metavar="NAME", help="which running cluster (by name)")
    p = sub.add_parser("nat", parents=[common],
                       help="print a node's NAT rules as kube-proxy left them (iptables -S -t nat)",
                       description="Print `iptables -S -t nat` of NODE of a running cluster, or "
                                   "`nft list table ip kube-proxy` when its kube-proxy runs in "
                                   "nftables mode.")
    p.add_argument("--chain", help="only this chain (e.g. KUBE-SERVICES)")
    p.add_argument("--mode", choices=MODES, help="show this mode's rules, whatever kube-proxy runs")
    p.add_argument("--filter", action="store_true", help="also print the filter table")
    p.set_defaults(func=cmd_nat)
    p = sub.add_parser("conntrack", parents=[common], help="print a node's conntrack entries",
                       description="Print `conntrack -L` of NODE of a running cluster.")
    p.add_argument("-p", "--protocol", choices=("tcp", "udp", "icmp", "sctp"))
    p.add_argument("--dst", metavar="IP", help="only entries whose original destination is IP")
    p.set_defaults(func=cmd_conntrack)


def running_clusters() -> list[tuple[str, Path]]:
    """(name, run directory) of every cluster whose owner is alive."""
    from testbed.emu.record import records

    out = []
    for record in records():
        if not record.owner_alive():
            continue
        try:
            name = json.loads((record.directory / "owner.json").read_text()).get("name", "?")
        except (OSError, ValueError):
            name = "?"
        out.append((name, record.directory))
    return out


def find_run(cluster: str | None) -> Path:
    found = running_clusters()
    if cluster is not None:
        found = [(n, d) for n, d in found if cluster in (n, d.name)]
    if not found:
        raise InspectError("no running cluster" + (f" named {cluster!r}" if cluster else ""))
    if len(found) > 1:
        names = ", ".join(f"{n} ({d.name})" for n, d in found)
        raise InspectError(f"{len(found)} clusters are running: {names}; pick one with --cluster")
    return found[0][1]


def cmd_nat(args: argparse.Namespace) -> int:
    try:
        run_dir = find_run(args.cluster)
        pid = node_pid(run_dir, args.node)
        mode = args.mode or proxy_mode(run_dir, args.node, pid)
        sys.stdout.write(nat_table(pid, mode, args.chain))
        if args.filter:
            sys.stdout.write(filter_table(pid))
    except InspectError as err:
        print(f"testbed nat: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_conntrack(args: argparse.Namespace) -> int:
    try:
        pid = node_pid(find_run(args.cluster), args.node)
        sys.stdout.write(conntrack_table(pid, args.protocol, args.dst))
    except InspectError as err:
        print(f"testbed conntrack: {err}", file=sys.stderr)
        return 1
    return 0
