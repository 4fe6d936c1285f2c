"""Acts: `testbed nat NODE`, `testbed netpol NODE`, `testbed conntrack NODE` and `testbed bgp
HOST` against a running cluster.

From another terminal, like `testbed ps`: the cluster is found through the run records
(testbed.emu.record.records(); `--cluster NAME` picks one of several by topology or run
directory name), the node's namespace through the record's "worker w1" entry, and the
kube-proxy mode through the node's `proxy/NODE/kube-proxy.json`. `nat` prints
`iptables -S -t nat` (the article's screenshots), or `nft list table ip kube-proxy` in
nftables mode; `netpol` prints the node's NetworkPolicy rules as its agent left them
(emu/inspect.netpol_rules: the agent's iptables chains and ipsets, or its nftables table);
`conntrack` prints `conntrack -L` of the node; `bgp` bird's BGP sessions (`show protocols`) and
routes (`show route`) on a worker or the gateway router, under the bgp routing mode.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from testbed.emu.inspect import (
    MODES,
    POLICY_MODES,
    InspectError,
    bgp_text,
    conntrack_table,
    filter_table,
    nat_table,
    netpol_mode,
    netpol_rules,
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
    p = sub.add_parser("netpol", parents=[common],
                       help="print a node's NetworkPolicy rules as its agent left them",
                       description="Print the NetworkPolicy agent's rules on NODE of a running "
                                   "cluster: in iptables mode its chains of `iptables-save -t "
                                   "filter` (KUBE-NWPLCY-*, KUBE-POD-FW-* and the rules jumping "
                                   "to them) and its ipsets (KUBE-NP-*); in nftables mode `nft "
                                   "list table ip kube-netpol`.")
    p.add_argument("--mode", choices=POLICY_MODES[:2],
                   help="show this mode's rules, whatever the agent runs")
    p.set_defaults(func=cmd_netpol)
    p = sub.add_parser("conntrack", parents=[common], help="print a node's conntrack entries",
                       description="Print `conntrack -L` of NODE of a running cluster.")
    p.add_argument("-p", "--protocol", choices=("tcp", "udp", "icmp", "sctp"))
    p.add_argument("--dst", metavar="IP", help="only entries whose original destination is IP")
    p.set_defaults(func=cmd_conntrack)
    p = sub.add_parser("bgp", parents=[common],
                       help="print bird's BGP sessions and routes on a worker or the gateway",
                       description="Print `birdc show protocols` and `birdc show route` of the bird "
                                   "on NODE (a worker, or the gateway router) of a running cluster "
                                   "whose routing mode is bgp.")
    p.set_defaults(func=cmd_bgp)


def find_run(cluster: str | None) -> Path:
    from testbed.emu.access import NoCluster, find

    try:
        return find(cluster, hint="pick one with --cluster").directory
    except NoCluster as err:
        raise InspectError(str(err)) from None


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


def cmd_netpol(args: argparse.Namespace) -> int:
    try:
        run_dir = find_run(args.cluster)
        pid = node_pid(run_dir, args.node)
        sys.stdout.write(netpol_rules(pid, args.mode or netpol_mode(run_dir, args.node, pid)))
    except InspectError as err:
        print(f"testbed netpol: {err}", file=sys.stderr)
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


def cmd_bgp(args: argparse.Namespace) -> int:
    try:
        run_dir = find_run(args.cluster)
        node_pid(run_dir, args.node)     # the host must be the cluster's
        text = bgp_text(run_dir, args.node)
    except InspectError as err:
        print(f"testbed bgp: {err}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0 if not text.startswith(("no bird runs", "bird on")) else 1
