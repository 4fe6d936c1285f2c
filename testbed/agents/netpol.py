"""Acts: the NetworkPolicy agent of one worker node.

    python -m testbed.agents.netpol --api http://172.16.0.2:6443 --node w1 \\
        --mode iptables|nftables [--state-dir RUN/netpol/w1]

Like kube-proxy (testbed/agents/kube_proxy.py), a process of its own, started INSIDE the
worker's network namespace (it refuses the namespace of pid 1 unless --allow-host-netns).
Informers on NetworkPolicies, Pods and Namespaces feed the syncer's trackers
(testbed.netpol.syncer: handlers only record, and ask for a sync when something policies care
about changed); the same bounded-frequency runner as kube-proxy's runs the syncs, at most one
per --min-sync-period (100 ms, so a change is enforced well within a second), and retries a
failed one after a second.

Start and restart: nothing is written until all three informers have listed, so a restarted
agent never enforces an empty policy set; its first sync is full: it reads the chains and sets
in the kernel, rewrites its own and removes the ones its predecessor left that no policy needs
now. Leftovers of the other mode (the `kube-netpol` nftables table, or the iptables chains,
jumps and sets) are removed right after that first sync, so a mode switch never leaves the
node unpoliced. The agent touches only its own chains, table and sets. Every
--sync-period (10 s) a sync that has nothing to write still puts the jumps from FORWARD and
INPUT back in front, should something have got ahead of them.

Death: the rules stay in the kernel, so the policies keep holding while the agent is dead (and
changes made meanwhile wait for its restart). SIGTERM ends it and leaves the rules in place.

With --state-dir, netpol.json there is rewritten after every sync that applied something
(testbed.emu.rundir.NetpolStatus), so the cluster and scenario steps can wait for a sync.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Callable
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
from testbed.emu.rundir import NETPOL_STATUS, NetpolStatus, write_netpol_status
from testbed.netpol import nftables
from testbed.netpol.syncer import DEFAULT_FULL_SYNC_PERIOD, MODES, PolicySyncer, SyncResult

log = logging.getLogger("testbed.netpol")

# seconds: a sync at least this often; when nothing changed it writes nothing, but puts the
# jumps from FORWARD and INPUT back in front if something (kube-proxy) got ahead of them
DEFAULT_SYNC_PERIOD = 10.0


def make_backend(mode: str, netns: int | None = None):
    from testbed.net.netfilter import IptablesPolicyBackend, NftPolicyBackend

    return NftPolicyBackend(netns) if mode == "nftables" else IptablesPolicyBackend(netns)


def cleanup_other_mode(mode: str, netns: int | None = None) -> list[str]:
    """Remove what the other mode left (best effort); the problems met, as text."""
    from testbed.net.netfilter import IptablesPolicyBackend, NftPolicyBackend

    try:
        if mode == "iptables":
            NftPolicyBackend(netns).delete_table(nftables.TABLE)
        else:
            IptablesPolicyBackend(netns).remove_policy_rules()
    except Exception as err:  # noqa: BLE001 - leftovers are harmless: report and go on
        return [f"cleanup of the other mode's rules: {err}"]
    return []


class PolicyAgent(InformedAgent):
    """Informers -> syncer -> runner, and the status file."""

    def __init__(self, syncer: PolicySyncer, client: Any, informer_cls: Any, mode: str, node: str,
                 state_dir: str | None = None, min_sync_period: float = MIN_SYNC_PERIOD,
                 sync_period: float = DEFAULT_SYNC_PERIOD,
                 after_first_sync: Callable[[], list[str]] | None = None) -> None:
        self.syncer, self.client, self.informer_cls = syncer, client, informer_cls
        self.mode, self.node, self.state_dir = mode, node, state_dir
        self.runner = SyncRunner(syncer.sync, min_sync_period, sync_period, on_result=self._report)
        self.syncs = 0
        self.last: SyncResult | None = None
        self.synced = threading.Event()
        self.informers: list[Any] = []
        self.after_first_sync = after_first_sync
        self.reported: tuple = ()      # the marks in the status file

    def run(self, stop: threading.Event) -> None:
        # Every event asks for a sync: one with nothing to write (a pod's readiness changed)
        # costs a lock, and moves the reported marks (objects, versions seen) on.
        self.watch([("Namespace", self.syncer.namespace_changes),
                    ("Pod", self.syncer.pod_changes),
                    ("NetworkPolicy", self.syncer.policy_changes)])
        self.sync_when_listed(stop, f"informers synced; first sync ({self.mode} mode)")

    def _report(self, result: SyncResult) -> None:
        self.syncs += 1
        self.last = result
        if not result.ok:
            log.warning("sync failed (next sync full): %s", result.error)
        elif not result.skipped and (result.rules or result.sets or result.full):
            log.info("%s sync: %d policies, %d pods isolated here, rules %s, %d sets, %.1f ms",
                     "full" if result.full else "partial", result.policies, result.protected,
                     "rewritten" if result.rules else "unchanged", result.sets,
                     result.seconds * 1000)
        first = result.ok and not result.skipped and not self.synced.is_set()
        if first and self.after_first_sync is not None:
            # the other mode's rules go only now, so that the node is never unpoliced (and
            # before the status: whoever waits for it finds them gone)
            for problem in self.after_first_sync():
                log.warning("%s", problem)
        if result.ok and self.state_dir and (not result.skipped or result.caught_up != self.reported):
            self.write_status()
            self.reported = result.caught_up
        if result.ok and not result.skipped:
            self.synced.set()

    def status(self) -> NetpolStatus:
        last = asdict(self.last) if self.last else None
        return NetpolStatus(self.mode, self.node, os.getpid(), self.syncs, time.time(), last,
                            len(self.syncer.policies),
                            len(self.syncer.plan.protected) if self.syncer.plan else 0,
                            self.syncer.generation,
                            {kind: [objects, rv] for kind, objects, rv in self.syncer.caught_up})

    def write_status(self) -> None:
        write_netpol_status(Path(self.state_dir or "."), self.status())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m testbed.agents.netpol",
                                description="The NetworkPolicy agent of one worker, run in its namespace.")
    p.add_argument("--api", required=True, help="API server: http://HOST:PORT or unix:///PATH")
    p.add_argument("--node", required=True, help="this node's name")
    p.add_argument("--mode", choices=MODES, default="iptables")
    add_sync_options(p, NETPOL_STATUS, DEFAULT_SYNC_PERIOD, DEFAULT_FULL_SYNC_PERIOD,
                     "rewrite every rule and set at least this often")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = start_agent("netpol", args, "worker's")
    if stop is None:
        return 2
    from testbed.apiclient import Client, Informer

    syncer = PolicySyncer(make_backend(args.mode), args.node, full_sync_period=args.full_sync_period,
                          new_lock=threading.Lock)
    agent = PolicyAgent(syncer, Client(args.api, component="netpol"), Informer, args.mode,
                        args.node, args.state_dir, args.min_sync_period, args.sync_period,
                        after_first_sync=lambda: cleanup_other_mode(args.mode))
    log.info("starting in %s mode for node %s", args.mode, args.node)
    agent.run(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
