"""Acts: flanneld, the per-node agent of the host-gw and vxlan routing modes.

    python -m testbed.agents.flanneld --api http://172.16.0.2:6443 --node w1 \\
        --backend host-gw|vxlan --uplink w1-eth0 --cluster-cidr 10.244.0.0/16 \\
        [--public-ip 172.16.1.2] [--ip-masq] [--state-dir RUN/flanneld/w1]

As flannel's flanneld with its kube subnet manager, a process of its own started INSIDE its
node's network namespace (it refuses the namespace of pid 1 unless --allow-host-netns), on
every node, the master included. An informer on the Nodes feeds the syncer
(testbed.routing.syncer: handlers only record, and a sync is asked for only when what routing
reads of a Node changed); kube-proxy's bounded-frequency runner runs the syncs (at most one per
--min-sync-period, at least one per --sync-period, which repairs drift, and a failed one again
after a second). Each sync makes the node's routes, its VXLAN device and entries and its
masquerade rules match the Nodes (testbed.routing.flannel), and publishes the node's lease as
flannel does: annotations on its own Node object (merge patch), written once the kubelet has
registered that Node (its pod CIDR and its addresses) and again whenever they go missing. The
master has no Node object here: it reaches the others and publishes nothing.

Nothing is written before the informer has listed, so a restarted flanneld never removes the
routes to nodes it has not heard of yet; it adopts what its predecessor left. Death: the
routes and entries stay in the kernel (as they do when flanneld stops), so pods keep reaching
each other; nodes that join or leave meanwhile are seen after a restart. SIGTERM ends it.

With --state-dir, flanneld.json there is rewritten after each sync that wrote something or
reaches other nodes than before (testbed.emu.rundir.FlanneldStatus), so the control plane can
wait for a sync.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from testbed.agents.kube_proxy import (
    MIN_SYNC_PERIOD,
    InformedAgent,
    SyncRunner,
    add_sync_options,
    start_agent,
)
from testbed.emu.rundir import FLANNELD_STATUS, FlanneldStatus, write_flanneld_status
from testbed.routing.flannel import BACKENDS, Config
from testbed.routing.syncer import DEFAULT_FULL_SYNC_PERIOD, RouteSyncer, SyncResult

log = logging.getLogger("testbed.flanneld")

DEFAULT_SYNC_PERIOD = 10.0    # seconds: a sync at least this often, to repair what drifted
# the SyncResult fields the status holds at its top level (not again in "last")
LEASE_FIELDS = ("subnet", "vtep_mac", "remotes", "ignored")


class Flanneld(InformedAgent):
    """Node informer -> syncer -> runner, and the status file."""

    def __init__(self, syncer: RouteSyncer, client: Any, informer_cls: Any,
                 state_dir: str | None = None, min_sync_period: float = MIN_SYNC_PERIOD,
                 sync_period: float = DEFAULT_SYNC_PERIOD) -> None:
        self.syncer, self.client, self.informer_cls = syncer, client, informer_cls
        self.state_dir = state_dir
        self.runner = SyncRunner(syncer.sync, min_sync_period, sync_period, on_result=self._report)
        self.syncs = 0
        self.synced = threading.Event()
        self.informers: list[Any] = []
        self.reported: tuple | None = None     # (subnet, vtep MAC, remotes) last logged

    def run(self, stop: threading.Event) -> None:
        self.watch([("Node", self.syncer.node_changes)])
        self.sync_when_listed(stop, f"informer synced; first sync ({self.syncer.config.backend})")

    def _report(self, result: SyncResult) -> None:
        self.syncs += 1
        if not result.ok:
            log.warning("sync failed (next sync full): %s", result.error)
            return
        for change in result.changes:
            log.info("%s", change)
        seen = (result.subnet, result.vtep_mac, result.remotes)
        if seen != self.reported:
            log.info("lease %s; reaching %s%s", result.subnet or "none",
                     ", ".join(f"{n} ({c})" for n, c in result.remotes) or "no other node",
                     "".join(f"; not {n}: {why}" for n, why in result.ignored))
        if self.state_dir and (result.changes or seen != self.reported or not self.synced.is_set()):
            self.write_status(result)
        self.reported = seen
        self.synced.set()

    def status(self, result: SyncResult) -> FlanneldStatus:
        """The status after the sync `result` (one that succeeded): the lease and the nodes
        reached at its top level, the rest of the result as `last`."""
        last = {k: v for k, v in asdict(result).items() if k not in LEASE_FIELDS}
        return FlanneldStatus(self.syncer.config.backend, self.syncer.config.node, os.getpid(),
                              self.syncs, time.time(), last, result.subnet, result.vtep_mac,
                              dict(result.remotes), dict(result.ignored))

    def write_status(self, result: SyncResult) -> None:
        write_flanneld_status(Path(self.state_dir or "."), self.status(result))


def annotator(client: Any):
    """Merge the lease's annotations into the Node (flannel patches its Node the same way)."""
    def annotate(node: str, annotations: dict[str, str]) -> None:
        client.merge_patch("Node", None, node, {"metadata": {"annotations": annotations}})
    return annotate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m testbed.agents.flanneld",
                                description="flanneld (host-gw, vxlan) of one node, run in its namespace.")
    p.add_argument("--api", required=True, help="API server: http://HOST:PORT or unix:///PATH")
    p.add_argument("--node", required=True, help="this node's name (its Node object's)")
    p.add_argument("--backend", choices=BACKENDS, required=True)
    p.add_argument("--uplink", required=True, help="the interface towards the other nodes")
    p.add_argument("--cluster-cidr", required=True, type=ipaddress.IPv4Network,
                   help="the cluster network (flannel's Network)")
    p.add_argument("--public-ip", type=ipaddress.IPv4Address,
                   help="this node's address for the others (default: its Node's InternalIP)")
    p.add_argument("--ip-masq", action="store_true",
                   help="masquerade pod traffic leaving the cluster network (FLANNEL-POSTRTG)")
    add_sync_options(p, FLANNELD_STATUS, DEFAULT_SYNC_PERIOD, DEFAULT_FULL_SYNC_PERIOD,
                     "rewrite the masquerade rules at least this often")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = start_agent("flanneld", args, "node's")
    if stop is None:
        return 2
    from testbed.apiclient import Client, Informer
    from testbed.net.overlay import OverlayBackend

    config = Config(args.backend, args.node, args.uplink, args.cluster_cidr, args.public_ip,
                    args.ip_masq)
    client = Client(args.api, component="flanneld")
    backend = OverlayBackend()
    syncer = RouteSyncer(backend, config, annotator(client),
                         full_sync_period=args.full_sync_period, new_lock=threading.Lock)
    agent = Flanneld(syncer, client, Informer, args.state_dir, args.min_sync_period,
                     args.sync_period)
    log.info("starting: backend %s, uplink %s, network %s%s", args.backend, args.uplink,
             args.cluster_cidr, ", ip-masq" if args.ip_masq else "")
    try:
        agent.run(stop)
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
