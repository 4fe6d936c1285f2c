"""Acts: the kube-proxy process of one worker node.

    python -m testbed.agents.kube_proxy --api http://172.16.0.2:6443 --node w1 \\
        --node-ip 172.16.0.11 --cluster-cidr 10.244.0.0/16 --mode iptables \\
        [--service-cidr 10.96.0.0/12] [--state-dir RUN/w1]

The cluster starts it INSIDE the worker's network namespace (every command runs with
netns=None; it refuses to run in the namespace of pid 1 unless --allow-host-netns). Informers on
Services and EndpointSlices feed the proxier's change trackers (handlers only record and ask for
a sync); `SyncRunner` runs the syncs, at most one per --min-sync-period (100 ms), one at least
every --sync-period (60 s; partial: in iptables mode it rewrites the top-level chains, as
upstream's does, in nftables mode nothing when nothing changed), and retries a failed sync
after a second. The proxier makes a sync full at least every --full-sync-period (an hour, as
upstream: at 10,000 Services a full nftables sync takes minutes here). SIGUSR1 asks for a full
sync now ("full sync requested (SIGUSR1)" in the log): what `ControlPlane.force_full_sync` and
the scenario step `kubeProxy: {node: ..., sync: full}` send.

Start and restart: nothing is written until both informers have listed, so a restarted
kube-proxy never applies an empty ruleset; its first sync is full and, in iptables mode,
deletes the KUBE-SVC/SEP/... chains its predecessor left for services that are gone. Leftovers
of the other modes (the nftables table, the iptables chains, the userspace portal chains) are
removed at start, as upstream's cleanup on a mode switch.

Death: in iptables and nftables modes the rules stay in the kernel, so Services keep working
while kube-proxy is dead and a restart catches up. In userspace mode the proxy sockets die with
the process while the KUBE-PORTALS-* rules stay (upstream never removed them on exit either):
every Service on the node then refuses connections until kube-proxy is back. On SIGTERM this
process therefore closes its sockets and leaves all rules in place, in every mode.

With --state-dir, `kube-proxy.json` there is rewritten after every sync (mode, syncs, the last
result, the full syncs and when the newest began, the full-sync period: emu/rundir.py's
ProxyStatus) so the cluster and scenario steps can wait for a sync, or for a full one.

Health checks (`HealthServers`, upstream's pkg/proxy/healthcheck): after every sync, one HTTP
listener per healthCheckNodePort of a LoadBalancer Service with externalTrafficPolicy Local
answers 200 when this node has ready local endpoints and 503 otherwise (the body and headers
come from testbed.proxy.healthcheck), and /healthz on --healthz-port (10256) tells whether
the syncs keep up. They listen on every address of the node's namespace, as upstream does
with an empty --nodeport-addresses, in every mode.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from testbed.agents.userspace import FILTER_CHAINS as US_FILTER_CHAINS
from testbed.agents.userspace import INIT_JUMPS, NAT_CHAINS, UserspaceProxier
from testbed.emu.rundir import PROXY_STATUS, ProxyStatus, write_proxy_status
from testbed.net.netns import in_host_netns
from testbed.proxy import iptables, names
from testbed.proxy.healthcheck import (
    HEALTHZ_PORT,
    HealthCheck,
    health_checks,
    healthz_response,
    service_response,
)
from testbed.proxy.model import MASQUERADE_BIT, LocalDetector, ProxierSettings, mark_for_bit
from testbed.proxy.proxier import DEFAULT_FULL_SYNC_PERIOD, Proxier, SyncResult

log = logging.getLogger("testbed.kube-proxy")

MODES = ("iptables", "nftables", "userspace")
DEFAULT_SYNC_PERIOD = 60.0  # seconds (upstream --iptables-sync-period: 30 s)
MIN_SYNC_PERIOD = 0.1
RETRY_PERIOD = 1.0
IPTABLES_FILTER_CHAINS = (*iptables.FILTER_TOP, iptables.KUBELET_FIREWALL)


@dataclass(frozen=True)
class Options:
    api: str
    node: str
    node_ip: str
    cluster_cidr: str
    mode: str = "iptables"
    service_cidr: str = ""
    state_dir: str | None = None
    min_sync_period: float = MIN_SYNC_PERIOD
    sync_period: float = DEFAULT_SYNC_PERIOD
    healthz_port: int = HEALTHZ_PORT  # 0: no healthz server
    full_sync_period: float = DEFAULT_FULL_SYNC_PERIOD


def settings_for(opts: Options) -> ProxierSettings:
    """What kube-proxy on this node renders with (pure): the node, its flags, mark bit 14."""
    return ProxierSettings(
        node_name=opts.node, node_ip=opts.node_ip, local_ips=(opts.node_ip,),
        masquerade_mark=mark_for_bit(MASQUERADE_BIT),
        local_detector=LocalDetector("ClusterCIDR", opts.cluster_cidr),
        # route_localnet is not set in the worker, and no nfacct objects are created here
        # (no nfacct tool on these machines): upstream then leaves the counters out too.
        nfacct_counters=frozenset(),
        has_random_fully=True,  # iptables >= 1.6.2
        service_cidrs=(opts.service_cidr,) if opts.service_cidr else (),
    )


def make_proxier(opts: Options, netns: int | None = None) -> Proxier | UserspaceProxier:
    from testbed.net.netfilter import IptablesBackend, NftBackend

    settings = settings_for(opts)
    if opts.mode == "nftables":
        return Proxier(NftBackend(netns), settings, full_sync_period=opts.full_sync_period,
                       new_lock=threading.Lock)   # informers' threads feed the trackers
    if opts.mode == "userspace":
        return UserspaceProxier(IptablesBackend(netns), settings)
    return Proxier(IptablesBackend(netns), settings, full_sync_period=opts.full_sync_period,
                   new_lock=threading.Lock)


def cleanup_other_modes(mode: str, netns: int | None = None) -> list[str]:
    """Remove what the other modes leave behind (best effort); returns what failed."""
    from testbed.net.netfilter import IptablesBackend, NftBackend

    errors: list[str] = []
    ipt = IptablesBackend(netns)
    steps: list[tuple[str, Callable[[], None]]] = []
    if mode != "nftables":
        steps.append(("nftables table", NftBackend(netns).delete_table))
    if mode != "iptables":
        def iptables_mode() -> None:
            ipt.delete_jump_rules(iptables.JUMP_RULES)
            nat = ipt.nat_chains()
            ipt.delete_chains("nat", [*iptables.NAT_TOP, *sorted(
                c for c in nat if names.is_service_chain(c))], present=nat)
            ipt.delete_chains("filter", IPTABLES_FILTER_CHAINS)
        steps.append(("iptables chains", iptables_mode))
    if mode != "userspace":
        def userspace_mode() -> None:
            ipt.delete_jump_rules([rule for rule, _ in INIT_JUMPS])
            ipt.delete_chains("nat", NAT_CHAINS)
            ipt.delete_chains("filter", US_FILTER_CHAINS)
        steps.append(("userspace chains", userspace_mode))
    for what, step in steps:
        try:
            step()
        except Exception as err:  # noqa: BLE001 - leftovers are harmless, report and go on
            errors.append(f"cleanup {what}: {err}")
    return errors


class SyncRunner:
    """Upstream's BoundedFrequencyRunner: runs `sync` when asked, never more often than
    `min_interval`, at least every `max_interval`, and `retry` seconds after a failure."""

    def __init__(self, sync: Callable[[], SyncResult], min_interval: float = MIN_SYNC_PERIOD,
                 max_interval: float = DEFAULT_SYNC_PERIOD, retry: float = RETRY_PERIOD,
                 on_result: Callable[[SyncResult], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sync, self.on_result = sync, on_result
        self.min_interval, self.max_interval, self.retry = min_interval, max_interval, retry
        self.clock = clock
        self._wanted = threading.Event()

    def request(self) -> None:
        self._wanted.set()

    def run(self, stop: threading.Event) -> None:
        """Sync until `stop` is set (which also wakes the wait)."""
        threading.Thread(target=lambda: (stop.wait(), self._wanted.set()), daemon=True,
                         name="sync-runner-stop").start()
        last = -1e9
        timeout = self.max_interval
        while not stop.is_set():
            self._wanted.wait(timeout)
            if stop.is_set():
                return
            wait = last + self.min_interval - self.clock()
            if wait > 0 and stop.wait(wait):
                return
            self._wanted.clear()
            last = self.clock()
            try:
                result = self.sync()
            except Exception as err:  # noqa: BLE001 - a bug in one sync must not end the loop
                log.exception("sync crashed")
                result = SyncResult(False, False, error=f"crashed: {err}")
            if self.on_result:
                self.on_result(result)
            timeout = self.max_interval if result.ok else self.retry


def _rfc3339(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)) if when else ""


class HealthServers:
    """Upstream's service health servers: one HTTP listener per healthCheckNodePort, plus the
    proxy's own /healthz. `update()` after each sync opens and closes listeners to match."""

    def __init__(self, bind: str = "0.0.0.0", healthz_port: int = 0,
                 healthy: Callable[[], tuple[bool, float]] = lambda: (True, 0.0)) -> None:
        self.bind, self.healthz_port, self.healthy = bind, healthz_port, healthy
        self.checks: dict[int, HealthCheck] = {}
        self.servers: dict[int, ThreadingHTTPServer] = {}
        self._lock = threading.Lock()

    def _handler(self, port: int) -> type[BaseHTTPRequestHandler]:
        servers = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                ok, last = servers.healthy()
                if port == servers.healthz_port:
                    status, headers, body = healthz_response(_rfc3339(last), _rfc3339(time.time()),
                                                             ok)
                else:
                    with servers._lock:
                        check = servers.checks.get(port)
                    if check is None:  # closed meanwhile: upstream answers nothing either
                        self.close_connection = True
                        return
                    status, headers, body = service_response(check, ok)
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("health check %d: %s", port, format % args)

        return Handler

    def _open(self, port: int) -> None:
        server = ThreadingHTTPServer((self.bind, port), self._handler(port))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True, name=f"health-{port}").start()
        self.servers[port] = server

    def start(self) -> list[str]:
        if self.healthz_port:
            try:
                self._open(self.healthz_port)
            except OSError as err:
                return [f"healthz server on port {self.healthz_port}: {err}"]
        return []

    def update(self, checks: dict[int, HealthCheck]) -> list[str]:
        """Serve exactly `checks`; returns the ports that could not be opened."""
        errors: list[str] = []
        with self._lock:
            self.checks = dict(checks)
        for port in sorted(set(self.servers) - set(checks) - {self.healthz_port}):
            self._close(port)
        for port in sorted(set(checks) - set(self.servers)):
            try:
                self._open(port)
            except OSError as err:
                errors.append(f"health check node port {port} ({checks[port].namespace}/"
                              f"{checks[port].name}): {err}")
        return errors

    def _close(self, port: int) -> None:
        server = self.servers.pop(port)
        server.shutdown()
        server.server_close()

    def stop(self) -> None:
        for port in list(self.servers):
            self._close(port)


class InformedAgent:
    """What kube-proxy and the NetworkPolicy agent share: informers whose handlers record a
    change and ask the runner for a sync, and a loop that syncs only once every informer has
    listed (so that a restarted agent never applies an empty state)."""

    runner: SyncRunner
    client: Any
    informer_cls: Any
    informers: list[Any]

    def _recording(self, handler: Callable[..., bool | None]) -> Callable[..., None]:
        """The handler, then a sync asked for unless it returned False ("nothing changed")."""
        def record(*objs: Any) -> None:
            if handler(*objs) is not False:
                self.runner.request()
        return record

    def watch(self, kinds: Sequence[tuple[str, Any]]) -> None:
        """Start an informer per (kind, changes), changes having on_add/on_update/on_delete."""
        for kind, changes in kinds:
            self.informers.append(self.informer_cls(
                self.client, kind, on_add=self._recording(changes.on_add),
                on_update=self._recording(changes.on_update),
                on_delete=self._recording(changes.on_delete)).start())

    def sync_when_listed(self, stop: threading.Event, started: str) -> None:
        """Wait until every informer has listed, log `started`, then run the syncs until
        `stop`; the informers are stopped on the way out."""
        try:
            while not all(i.has_synced() for i in self.informers):
                if stop.wait(0.05):
                    return
            log.info("%s", started)
            self.runner.request()
            self.runner.run(stop)
        finally:
            for informer in self.informers:
                informer.stop()


class KubeProxy(InformedAgent):
    """Informers -> change trackers -> SyncRunner -> proxier, plus a status file and the
    health check servers."""

    def __init__(self, proxier: Proxier | UserspaceProxier, client: Any, informer_cls: Any,
                 opts: Options, health: HealthServers | None = None) -> None:
        self.proxier, self.client, self.informer_cls, self.opts = proxier, client, informer_cls, opts
        self.health = health
        self.last_ok = 0.0  # wall-clock time of the last successful sync
        self.runner = SyncRunner(self._sync, opts.min_sync_period, opts.sync_period,
                                 on_result=self._report)
        self.syncs = 0
        self.full_syncs = 0     # successful full syncs
        self.last_full = 0.0    # wall clock at the start of the newest of them
        self._started = 0.0     # wall clock at the start of the sync being reported
        self._full_asked = 0    # SIGUSR1s (request_full_sync calls) so far ...
        self._full_passed = 0   # ... and how many of them the proxier has been told of
        self.last: SyncResult | None = None
        self.synced = threading.Event()  # set after the first successful sync
        self.informers: list[Any] = []

    def start_informers(self) -> None:
        self.watch([("Service", self.proxier.service_changes),
                    ("EndpointSlice", self.proxier.endpoint_changes)])

    def run(self, stop: threading.Event) -> None:
        self.start_informers()
        try:
            self.sync_when_listed(stop, f"informers synced; first sync ({self.opts.mode} mode)")
        finally:
            if self.health is not None:
                self.health.stop()
            if isinstance(self.proxier, UserspaceProxier):
                self.proxier.stop()  # sockets close; the portal rules stay, as upstream

    def request_full_sync(self, why: str = "SIGUSR1") -> None:
        """Make the next sync full, and soon. It only counts the asking: `_sync` tells the
        proxier before its next sync, so a sync already under way (which began before the
        asking, and may end after it) is not taken for the answer."""
        log.info("full sync requested (%s)", why)
        self._full_asked += 1
        self.runner.request()

    def full_sync_on_signal(self, sig: int = signal.SIGUSR1) -> None:
        """`sig` asks for a full sync. The handler only writes a byte to a pipe that a thread
        of its own reads (the self-pipe trick): a Python handler runs in the main thread, which
        runs the syncs and may hold the very locks that asking for a sync takes."""
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)

        def handler(*_: object) -> None:
            with contextlib.suppress(BlockingIOError):  # a full pipe: a request is pending
                os.write(write_end, b"!")

        def serve() -> None:
            while os.read(read_end, 64):
                self.request_full_sync(signal.Signals(sig).name)

        threading.Thread(target=serve, daemon=True, name="full-sync-signal").start()
        signal.signal(sig, handler)

    def _sync(self) -> SyncResult:
        asked = self._full_asked
        if asked != self._full_passed:
            self._full_passed = asked
            self.proxier.request_full_sync()
        self._started = time.time()
        return self.proxier.sync()

    def _report(self, result: SyncResult) -> None:
        self.syncs += 1
        self.last = result
        if result.ok and result.full and not result.skipped:
            self.full_syncs += 1
            self.last_full = self._started
        if not result.ok:
            log.warning("sync failed (next sync full): %s", result.error)
        elif result.error:
            log.warning("sync: %s", result.error)
        elif not result.skipped:
            log.log(logging.INFO if result.full else logging.DEBUG,
                    "%s sync: %d services changed, %.1f ms", "full" if result.full else "partial",
                    len(result.changed), result.seconds * 1000)
        if result.ok and not result.skipped:
            self.last_ok = time.time()
            if self.health is not None:
                for problem in self.health.update(health_checks(
                        self.proxier.service_ports(), self.proxier.endpoints, self.opts.node)):
                    log.warning("%s", problem)
        if self.opts.state_dir and not result.skipped:
            self.write_status()
        if result.ok and not result.skipped:
            self.synced.set()  # after the status file: whoever waits may read it

    def healthy(self) -> tuple[bool, float]:
        """Upstream's healthz: a sync succeeded and none failed since (with its time)."""
        return bool(self.last_ok) and (self.last is None or self.last.ok), self.last_ok

    def status(self) -> ProxyStatus:
        last = asdict(self.last) if self.last else None
        if last:
            last["changed"] = sorted("/".join(k) for k in last["changed"])
        period = 0.0 if isinstance(self.proxier, UserspaceProxier) else self.opts.full_sync_period
        return ProxyStatus(self.opts.mode, self.opts.node, os.getpid(), self.syncs, time.time(),
                           last, len(self.proxier.services), self.full_syncs, self.last_full,
                           period)

    def write_status(self) -> None:
        write_proxy_status(Path(self.opts.state_dir or "."), self.status())


def add_sync_options(p: argparse.ArgumentParser, status_file: str, sync_period: float,
                     full_sync_period: float, full_sync_help: str, sync_help: str | None = None) -> None:
    """What every syncing agent (kube-proxy, the NetworkPolicy agent, flanneld) takes: where its
    status goes, its three sync periods, the machine's namespace refused, -v."""
    p.add_argument("--state-dir", help=f"write {status_file} here after each sync")
    p.add_argument("--min-sync-period", type=float, default=MIN_SYNC_PERIOD, metavar="SECONDS")
    p.add_argument("--sync-period", type=float, default=sync_period, metavar="SECONDS", help=sync_help)
    p.add_argument("--full-sync-period", type=float, default=full_sync_period, metavar="SECONDS",
                   help=full_sync_help)
    p.add_argument("--allow-host-netns", action="store_true",
                   help="run even in the namespace of pid 1 (the machine's own)")
    p.add_argument("-v", "--verbose", action="store_true")


def start_agent(name: str, args: argparse.Namespace, node_kind: str) -> threading.Event | None:
    """An agent's start, after its options (add_sync_options): its log lines as NAME[NODE], a
    refusal to program the machine's own namespace (None), its state directory, and the event
    SIGTERM and SIGINT set to stop it."""
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=f"{name}[{args.node}] %(message)s")
    if in_host_netns() and not args.allow_host_netns:
        log.error("refusing to program the machine's own namespace: run me in the %s", node_kind)
        return None
    if args.state_dir:
        Path(args.state_dir).mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def parse_args(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m testbed.agents.kube_proxy",
                                description="kube-proxy for one worker, run in its namespace.")
    p.add_argument("--api", required=True, help="API server: http://HOST:PORT or unix:///PATH")
    p.add_argument("--node", required=True, help="this node's name")
    p.add_argument("--node-ip", required=True, help="this node's address")
    p.add_argument("--cluster-cidr", required=True, help="pod CIDR of the cluster (local detector)")
    p.add_argument("--mode", choices=MODES, default="iptables")
    p.add_argument("--service-cidr", default="", help="nftables: drop traffic to unused ClusterIPs")
    add_sync_options(p, PROXY_STATUS, DEFAULT_SYNC_PERIOD, DEFAULT_FULL_SYNC_PERIOD,
                     "rewrite every rule at least this often",
                     "sync at least this often (partial unless a full sync is due)")
    p.add_argument("--healthz-port", type=int, default=HEALTHZ_PORT, metavar="PORT",
                   help="serve /healthz here (0: off)")
    args = p.parse_args(argv)
    try:
        ipaddress.ip_address(args.node_ip)
        ipaddress.ip_network(args.cluster_cidr, strict=False)
        if args.service_cidr:
            ipaddress.ip_network(args.service_cidr, strict=False)
    except ValueError as err:
        p.error(str(err))
    opts = Options(args.api, args.node, args.node_ip, args.cluster_cidr, args.mode,
                   args.service_cidr, args.state_dir, args.min_sync_period, args.sync_period,
                   args.healthz_port, args.full_sync_period)
    return opts, args


def main(argv: list[str] | None = None) -> int:
    opts, args = parse_args(argv)
    stop = start_agent("kube-proxy", args, "worker's")
    if stop is None:
        return 2
    from testbed.apiclient import Client, Informer

    for problem in cleanup_other_modes(opts.mode):
        log.warning("%s", problem)
    health = HealthServers(healthz_port=opts.healthz_port)
    proxy = KubeProxy(make_proxier(opts), Client(opts.api, component="kube-proxy"), Informer, opts, health)
    health.healthy = proxy.healthy
    proxy.full_sync_on_signal(signal.SIGUSR1)
    for problem in health.start():
        log.warning("%s", problem)
    log.info("starting in %s mode for node %s (%s)", opts.mode, opts.node, opts.node_ip)
    proxy.run(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
