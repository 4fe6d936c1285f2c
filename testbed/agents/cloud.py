"""Acts: the emulated cloud provider's load-balancer controller, run inside the gateway router.

    python -m testbed.agents.cloud --api http://172.16.0.2:6443 --pool 198.51.100.0/28

The cluster starts it in the gateway's network namespace (testbed/emu/addons.py), so it talks
to the API server over the emulated network like any other agent and its routes are the
gateway's routes. Informers on Services, Nodes and EndpointSlices wake one reconcile loop:

1. addresses come from the pool (testbed/controllers/loadbalancer.py decides; addresses a
   Service already shows are taken back at start, so a restart changes nothing);
2. a Service's address is programmed on the gateway as an equal-cost multipath route over the
   worker node IPs (`ip route replace ADDR/32 nexthop via N1 nexthop via N2`; for
   externalTrafficPolicy Local only the nodes with a ready local endpoint), then written into
   status.loadBalancer.ingress, no sooner than `--delay` seconds (default 0.5) after the
   Service asked for it, since a cloud provisions asynchronously;
3. when the Service goes (or stops being type LoadBalancer) the route goes and the address is
   free again; Services pending on an exhausted pool get it, oldest first.

Events: what happens to a Service's load balancer is recorded as Events on the Service, as
upstream's service controller records them (EnsuredLoadBalancer, SyncLoadBalancerFailed with
"no addresses left in pool ...", LoadBalancerIPIgnored), so `kubectl describe service` and
`kubectl get events` show them; each distinct set of events is recorded once, and repeats
are counted into the existing Event.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import signal
import threading
import time

from testbed.api.events import Note, reference
from testbed.api.meta import object_key
from testbed.apiclient.client import ApiError, Client, put_status
from testbed.apiclient.events import EventRecorder
from testbed.controllers.loadbalancer import (
    Decision,
    PoolAllocator,
    plan_routes,
    route_changes,
    status_ips,
    wants_load_balancer,
)
from testbed.net.netns import in_host_netns
from testbed.net.run import CommandError, run

log = logging.getLogger("testbed.cloud")

DEFAULT_DELAY = 0.5
RESYNC = 5.0


class GatewayRoutes:
    """The gateway's /32 routes for pool addresses, in this process's namespace."""

    def __init__(self, allocator: PoolAllocator):
        self.allocator = allocator

    def current(self) -> dict[str, tuple[str, ...]]:
        out = run(["ip", "-j", "route", "show"], check=False).stdout or "[]"
        routes: dict[str, tuple[str, ...]] = {}
        for r in json.loads(out):
            dst = r.get("dst", "")
            if not self.allocator.in_pool(dst):
                continue
            hops = [h.get("gateway") for h in r.get("nexthops") or []] or [r.get("gateway")]
            routes[dst] = tuple(sorted((h for h in hops if h), key=ipaddress.IPv4Address))
        return routes

    def replace(self, ip: str, hops: tuple[str, ...]) -> None:
        argv = ["ip", "route", "replace", f"{ip}/32"]
        for hop in hops:
            argv += ["nexthop", "via", hop]
        run(argv)

    def delete(self, ip: str) -> None:
        run(["ip", "route", "del", f"{ip}/32"], check=False)  # "already gone" is fine


class CloudController:
    def __init__(self, client: Client, allocator: PoolAllocator, routes, delay: float = DEFAULT_DELAY,
                 clock=time.monotonic, recorder: EventRecorder | None = None):
        self.client, self.allocator, self.routes = client, allocator, routes
        self.recorder = recorder or EventRecorder(client, "service-controller")
        self.delay, self.clock = delay, clock
        self.wake = threading.Event()
        self.asked: dict[tuple[str, str], float] = {}     # when each Service first wanted an address
        self.published: dict[tuple[str, str], tuple[str, ...]] = {}  # last events logged per Service
        self.programmed: dict[str, tuple[str, ...]] = {}
        self.restored = False

    def poke(self, *_args) -> None:
        self.wake.set()

    # -- one pass ---------------------------------------------------------------------------

    def reconcile(self, services: list[dict], nodes: list[dict], slices: list[dict]) -> float | None:
        """Bring allocations, routes, statuses and events in line; seconds until the next due write."""
        now = self.clock()
        wanted = sorted((s for s in services if wants_load_balancer(s)),
                        key=lambda s: (s["metadata"].get("creationTimestamp", ""), object_key(s)))
        if not self.restored:
            for s in wanted:
                for ip in status_ips(s):
                    if self.allocator.restore(object_key(s), ip):
                        self.asked[object_key(s)] = now - self.delay
            self.programmed = self.routes.current()
            self.restored = True
        wanted_keys = {object_key(s) for s in wanted}
        by_key = {object_key(s): s for s in services}
        for key in [k for k in list(self.asked) if k not in wanted_keys]:
            self.asked.pop(key, None)
            self.published.pop(key, None)
        for key in [o for o in {self.allocator.owner(str(a)) for a in self.allocator.addresses} if o]:
            if key not in wanted_keys:
                ip = self.allocator.release(key)
                log.info("%s/%s: released %s", *key, ip)
                if key in by_key and status_ips(by_key[key]):
                    self._write_status(by_key[key], None)

        due: dict[str, dict] = {}
        next_due: float | None = None
        for s in wanted:
            key = object_key(s)
            asked = self.asked.setdefault(key, now)
            decision = self.allocator.ensure(key, (s.get("spec") or {}).get("loadBalancerIP") or None)
            self._publish(s, decision)
            if decision.ip is None:
                continue
            if now < asked + self.delay:
                next_due = min(next_due or asked + self.delay, asked + self.delay)
                continue
            due[decision.ip] = s

        node_ips = {n["metadata"]["name"]: a["address"] for n in nodes
                    for a in (n.get("status") or {}).get("addresses") or []
                    if a.get("type") == "InternalIP"}
        self._program(plan_routes(due, node_ips, slices))
        for ip, s in due.items():
            if status_ips(s) != [ip]:
                self._write_status(s, ip)
        return None if next_due is None else max(0.0, next_due - now)

    def _program(self, desired: dict[str, tuple[str, ...]]) -> None:
        replace, delete = route_changes(desired, self.programmed)
        for ip in delete:
            self.routes.delete(ip)
            self.programmed.pop(ip, None)
            log.info("gateway: removed the route to %s", ip)
        for ip, hops in replace.items():
            try:
                self.routes.replace(ip, hops)
            except CommandError as err:
                log.warning("gateway: route to %s: %s", ip, err)
                continue
            self.programmed[ip] = hops
            log.info("gateway: %s via %s (equal-cost multipath)", ip, ", ".join(hops))

    def _write_status(self, service: dict, ip: str | None) -> None:
        status = {**(service.get("status") or {}),
                  "loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]} if ip else {}}
        try:
            put_status(self.client, service, status)
            log.info("%s/%s: status.loadBalancer.ingress = %s", *object_key(service), ip or "[]")
        except ApiError as err:  # a conflict or a deleted Service: the next pass sees the new state
            log.info("%s/%s: status not written: %s", *object_key(service), err)
            self.wake.set()

    # -- events -----------------------------------------------------------------------------

    def _publish(self, service: dict, decision: Decision) -> None:
        """Record the decision's events on the Service, once per distinct set."""
        key = object_key(service)
        texts = tuple(str(e) for e in decision.events)
        if not texts or texts == self.published.get(key):
            return
        for e in decision.events:
            log.log(logging.WARNING if e.type == "Warning" else logging.INFO,
                    "event %s/%s: %s", *key, e)
            self.recorder.record(Note(reference(service), e.type, e.reason, e.message))
        self.published[key] = texts

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event, informer_cls) -> None:
        informers = [informer_cls(self.client, kind, on_add=self.poke, on_update=self.poke,
                                  on_delete=self.poke, resync=RESYNC).start()
                     for kind in ("Service", "Node", "EndpointSlice")]
        try:
            while not stop.is_set():
                if not all(i.has_synced() for i in informers):
                    stop.wait(0.05)
                    continue
                self.wake.clear()
                try:
                    wait = self.reconcile(*(i.items() for i in informers))
                except (ApiError, OSError, CommandError) as err:
                    log.warning("reconcile failed: %s", err)
                    wait = 1.0
                self.wake.wait(RESYNC if wait is None else wait)
                if stop.is_set():
                    break
        finally:
            for i in informers:
                i.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.agents.cloud",
                                description="The emulated cloud's load-balancer controller, run in the gateway.")
    p.add_argument("--api", required=True, help="API server: http://HOST:PORT or unix:///PATH")
    p.add_argument("--pool", action="append", required=True, help="a CIDR of addresses to hand out")
    p.add_argument("--delay", type=float, default=DEFAULT_DELAY, metavar="SECONDS",
                   help="provisioning delay before status is written")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="cloud %(asctime)s %(message)s")
    try:
        pool = [ipaddress.IPv4Network(c, strict=False) for c in args.pool]
    except ValueError as err:
        p.error(str(err))
    if in_host_netns():
        log.error("refusing to route in the machine's own namespace: run me in the gateway's")
        return 2
    from testbed.apiclient import Informer

    allocator = PoolAllocator(pool)
    client = Client(args.api, component="cloud-controller-manager")
    recorder = EventRecorder(client, "service-controller").start()
    controller = CloudController(client, allocator, GatewayRoutes(allocator), args.delay,
                                 recorder=recorder)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: (stop.set(), controller.wake.set()))
    log.info("serving LoadBalancer Services from %s (%d addresses)", allocator.pool_text,
             len(allocator.addresses))
    controller.run(stop, Informer)
    recorder.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
