"""Acts: `testbed cli`, `testbed ps` and `testbed clean`."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

from testbed.emu.record import alive, records
from testbed.emu.rundir import kubelet_nodes, kubelet_ps_state
from testbed.node.psview import format_rows, ps_rows


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cli", help="open Mininet's CLI in a new cluster, or in a running one",
                       description="With a TOPOLOGY file: build its cluster, create the objects "
                                   "of -f files, and open Mininet's CLI; leaving it tears "
                                   "everything down. With the NAME of a running cluster (`testbed "
                                   "up`), or nothing when one runs: open the CLI in it; leaving "
                                   "it leaves the cluster running. Commands may be piped on "
                                   "standard input.")
    p.add_argument("topology", nargs="?", metavar="TOPOLOGY|NAME",
                   help="topology YAML file, or a running cluster's name")
    p.add_argument("-f", "--filename", action="append", default=[], metavar="FILE",
                   help="Kubernetes manifests to apply first; may be repeated")
    p.set_defaults(func=cmd_cli)
    p = sub.add_parser("ps", help="list pods' pause processes and containers per node")
    p.add_argument("node", nargs="?", help="only this node")
    p.add_argument("--cluster", metavar="NAME", help="only this running cluster (by name)")
    p.set_defaults(func=cmd_ps)
    p = sub.add_parser("clean", help="remove what crashed or killed runs left behind")
    p.set_defaults(func=cmd_clean)


def cmd_cli(args: argparse.Namespace) -> int:
    from testbed.checks import check_with_topology, report_warnings
    from testbed.emu.cluster import Cluster
    from testbed.emu.errors import require_root

    if args.topology is None or _names_a_cluster(args.topology):
        return _attached_cli(args)
    # The checks `testbed run` makes, against this topology (testbed.checks).
    topo, checked = check_with_topology(args.topology, args.filename, which=shutil.which)
    checked.raise_if_problems()
    report_warnings(checked.warnings, sys.stderr)
    objects = checked.objects
    require_root()
    from mininet.log import setLogLevel

    from testbed.emu.errors import SETUP_ERRORS
    from testbed.emu.mncli import ClusterCLI

    setLogLevel("info")
    try:
        cluster = Cluster(topo, progress=lambda m: print(f"*** {m}", file=sys.stderr)).up()
    except SETUP_ERRORS as err:
        print(f"testbed: the cluster could not be set up: {err}", file=sys.stderr)
        return 1
    try:
        if objects:
            try:
                cluster.apply(objects)
            except SETUP_ERRORS as err:
                print(f"testbed: the manifests could not be applied: {err}", file=sys.stderr)
                return 1
            print("*** waiting for the pods to be ready", file=sys.stderr)
            try:
                cluster.wait_ready(objects, timeout=90)
            except TimeoutError as err:
                # Open the CLI anyway: finding out why is what it is for (`get pods -A`, `ps`).
                print(f"*** warning: {err}", file=sys.stderr)
        pods = cluster.all_pods()
        example = next((p.name for p in pods if p.namespace != "kube-system"), "w1")
        print(f"*** cluster {topo.name} is up: try `pods`, `ps`, `pingall`, `get pods -A`, "
              f"`{example} ip addr`", file=sys.stderr)
        ClusterCLI(cluster)
        print("*** tearing down", file=sys.stderr)
    finally:
        cluster.down()
    return 0


def _names_a_cluster(word: str) -> bool:
    """A running cluster's name (a DNS label, and no file by that name), not a topology file."""
    from testbed.spec.validation import is_dns1123_label

    return not os.path.exists(word) and not is_dns1123_label(word)


def _attached_cli(args: argparse.Namespace) -> int:
    """`testbed cli NAME`: the CLI in a cluster that `testbed up` runs; it stays up after."""
    from mininet.log import setLogLevel

    from testbed.checks import check_manifests, report_warnings
    from testbed.emu.access import NoCluster, find
    from testbed.emu.attach import AttachError, attach
    from testbed.emu.errors import SETUP_ERRORS, require_root
    from testbed.emu.mncli import ClusterCLI

    try:
        found = find(args.topology, hint="give its name: testbed cli NAME")
    except NoCluster as err:
        # bad manifests are exit 2 even with no cluster
        check_manifests(args.filename, which=shutil.which).raise_if_problems()
        print(f"testbed cli: {err}", file=sys.stderr)
        return 1
    # Against the topology the cluster was built from, as `testbed run` checks its manifests.
    checked = check_manifests(args.filename, found.topology, which=shutil.which)
    checked.raise_if_problems()
    report_warnings(checked.warnings, sys.stderr)
    objects = checked.objects
    try:
        require_root()
        cluster = attach(found)
    except AttachError as err:
        print(f"testbed cli: {err}", file=sys.stderr)
        return 1
    setLogLevel("info")
    try:
        if objects:
            try:
                cluster.apply(objects)
                cluster.wait_ready(objects, timeout=90)
            except TimeoutError as err:
                print(f"*** warning: {err}", file=sys.stderr)
            except SETUP_ERRORS as err:
                print(f"testbed: the manifests could not be applied: {err}", file=sys.stderr)
                return 1
        print(f"*** attached to cluster {cluster.topo.name}: try `pods`, `get pods -A`, "
              "`kubectl get nodes`; leaving leaves it running", file=sys.stderr)
        ClusterCLI(cluster)
    finally:
        cluster.down()   # attached: ends only this CLI's shells
    return 0


def _live_states(name: str | None = None) -> list[dict]:
    from testbed.emu.access import running

    states = []
    for cluster in running():
        if name is not None and name not in (cluster.name, cluster.directory.name):
            continue
        nodes = kubelet_nodes(cluster.directory)
        if nodes:
            states.append(kubelet_ps_state(cluster.name, cluster.directory, nodes))
    return states


def cmd_ps(args: argparse.Namespace) -> int:
    states = _live_states(args.cluster)
    if not states:
        which = f" named {args.cluster!r}" if args.cluster else ""
        print(f"testbed ps: no cluster{which} is running", file=sys.stderr)
        return 1
    for state in states:
        rows = ps_rows(state, args.node, time.time(), alive)
        if len(states) > 1:
            print(f"# cluster {state['cluster']}")
        print(format_rows(rows))
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    found = 0
    for record in records():
        if record.owner_alive():
            print(f"testbed clean: {record.directory.name} belongs to a running testbed; left alone")
            continue
        found += 1
        ended = record.clean()
        print(f"testbed clean: {record.directory.name}: ended {len(ended)} recorded processes"
              f"{' (' + ', '.join(ended[:6]) + (', …' if len(ended) > 6 else '') + ')' if ended else ''}")
    if not found:
        print("testbed clean: nothing to clean")
    return 0
