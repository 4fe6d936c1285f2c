"""Acts: `testbed apply/delete/get/describe/scale` against a running cluster.

The front end of testbed.kubectl's verbs: it finds the cluster's API server (`--cluster`, or the
only one running; `--server` names one directly) and the topology the cluster was built from,
against which manifests are checked, then runs the verb.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from testbed.api.manifests import load_manifests
from testbed.apiclient.client import Client
from testbed.emu import access
from testbed.emu.access import NoCluster
from testbed.kubectl.verbs import add_verbs, execute


def find_api(cluster: str | None = None, run_root: Path | None = None) -> str:
    """The API address (its Unix socket) of the running cluster (`cluster` picks one)."""
    found = access.find(cluster, run_root, hint="pick one with --cluster")
    if not found.api_socket.exists():
        raise access.NoCluster(f"cluster {found.name} has no API server socket "
                               f"({found.api_socket}): it is starting, or runs without one")
    return f"unix://{found.api_socket}"


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cluster", metavar="NAME", help="which running cluster (by name)")
    common.add_argument("--server", metavar="ADDRESS",
                        help="the API server itself: unix:///PATH or http://HOST:PORT")
    for parser in add_verbs(subparsers, common).values():
        parser.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    if getattr(args, "filename", None):
        # Bad manifests are exit 2 before any cluster is looked for (and again, nothing sent).
        load_manifests(args.filename)
    try:
        address = args.server or find_api(args.cluster)
        if not args.server:
            # Manifests are checked against the topology the cluster was built from.
            args.topology = access.find(args.cluster).topology
    except NoCluster as err:
        print(f"testbed: {err}", file=sys.stderr)
        return 1
    return execute(args, Client(address), sys.stdout, sys.stderr)


