"""Acts: `testbed apply/delete/get/describe/scale` against a running cluster.

The front end of testbed.kubectl's verbs: it finds the cluster's API server (`--cluster`, or the
only one running; `--server` names one directly) and the topology the cluster was built from,
against which manifests are checked, then runs the verb. `describe node NAME` also shows the
node's kube-proxy as its status file tells (`node_sections`): mode, syncs, full syncs and the
full-sync period.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from testbed.api.manifests import load_manifests
from testbed.apiclient.client import Client
from testbed.emu import access
from testbed.emu.access import NoCluster
from testbed.emu.rundir import proxy_directory, read_proxy_status
from testbed.kubectl.format import Section, kube_proxy_section
from testbed.kubectl.verbs import add_verbs, execute


def find_api(cluster: str | None = None, run_root: Path | None = None) -> str:
    """The API address (its Unix socket) of the running cluster (`cluster` picks one)."""
    return api_of(access.find(cluster, run_root, hint="pick one with --cluster"))


def api_of(found: access.RunningCluster) -> str:
    """The API address (its Unix socket) of a running cluster."""
    if not found.api_socket.exists():
        raise access.NoCluster(f"cluster {found.name} has no API server socket "
                               f"({found.api_socket}): it is starting, or runs without one")
    return f"unix://{found.api_socket}"


def node_sections(run_dir: Path, node: str) -> list[Section]:
    """The blocks `describe node` adds for `node` of the cluster in `run_dir`: its kube-proxy,
    from the status file it rewrites after every sync (nothing for a node that has never had
    one, such as the master)."""
    status = read_proxy_status(run_dir, node)
    if status is None and not proxy_directory(run_dir, node).exists():
        return []
    return [kube_proxy_section(status.to_json() if status else None, time.time())]


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cluster", metavar="NAME", help="which running cluster (by name)")
    common.add_argument("--server", metavar="ADDRESS",
                        help="the API server itself: unix:///PATH or http://HOST:PORT")
    for parser in add_verbs(subparsers, common).values():
        parser.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    try:
        address = args.server
        if not address:
            found = access.find(args.cluster, hint="pick one with --cluster")
            address = api_of(found)
            # The verb checks manifests against the topology the cluster was built from.
            args.topology = found.topology
            args.node_sections = lambda node: node_sections(found.directory, node)
    except NoCluster as err:
        if getattr(args, "filename", None):
            load_manifests(args.filename)   # bad manifests are exit 2 even with no cluster
        print(f"testbed: {err}", file=sys.stderr)
        return 1
    return execute(args, Client(address), sys.stdout, sys.stderr)


