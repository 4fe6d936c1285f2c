"""Pure: kube-proxy's change trackers and the service and endpoint maps they feed.

Owns what sits between the informers and the proxiers, as upstream's change trackers do:
`ServiceChangeTracker` and `EndpointsChangeTracker` (informer handlers only record, keyed by
namespace/name), and `ProxyTracker`, the service and endpoint maps the records are merged into
at each sync (`checkout()`), with the endpoint count for large-cluster mode and the UDP
conntrack entries a change leaves stale (`stale_udp`). Every proxier (`proxier.Proxier`,
testbed.agents.userspace's `UserspaceProxier`) builds on `ProxyTracker`. Nothing here touches
the system; the trackers' locks are handed in by whoever shares them between threads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from testbed.api.endpointslices import SERVICE_NAME_LABEL
from testbed.api.meta import namespace_of, object_key
from testbed.api.sharing import Lock, Unshared
from testbed.proxy.model import (
    IPV4,
    Endpoint,
    ProxierSettings,
    ServicePort,
    ServicePortName,
    categorize,
)
from testbed.proxy.objects import Issue, merge_slices, service_ports, slice_endpoints

Key = tuple[str, str]  # (namespace, name)
PerPort = Mapping[ServicePortName, Sequence[Endpoint]]


def _key(obj: Mapping[str, Any] | None) -> Key | None:
    if not obj:
        return None
    return object_key(obj)


# ---------------------------------------------------------------- change trackers


class _Tracker:
    """Informer handlers that only record (`update`), and the count of what is recorded."""

    _lock: Lock
    _items: dict

    def update(self, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
        raise NotImplementedError

    def on_add(self, obj: Mapping[str, Any]) -> None:
        self.update(None, obj)

    def on_update(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        self.update(old, new)

    def on_delete(self, obj: Mapping[str, Any]) -> None:
        self.update(obj, None)

    def pending(self) -> int:
        with self._lock:
            return len(self._items)


class ServiceChangeTracker(_Tracker):
    """Records Service changes by namespace/name until the next sync checks them out.

    Like upstream's ServiceChangeTracker, a change keeps the ports as they were before the
    first unsynced change and as they are now; a change that ends where it started is dropped.
    """

    def __init__(self, family: str = IPV4, lock: Lock | None = None) -> None:
        self.family = family
        self.issues: list[Issue] = []  # problems in the last objects read (skipped, not fatal)
        self._lock: Lock = lock if lock is not None else Unshared()
        self._items: dict[Key, tuple[tuple[ServicePort, ...], tuple[ServicePort, ...]]] = {}
        self._current: dict[Key, tuple[ServicePort, ...]] = {}

    def _ports(self, obj: Mapping[str, Any] | None) -> tuple[ServicePort, ...]:
        if not obj:
            return ()
        issues: list[Issue] = []
        ports = service_ports(obj, (), self.family, issues)
        self.issues = issues
        return tuple(ports)

    def update(self, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
        """Record old -> new (None for add/delete); True if a change is now pending."""
        key = _key(new) or _key(old)
        if key is None:
            return False
        current = self._ports(new)
        with self._lock:
            if key in self._items:
                previous = self._items[key][0]
            elif key in self._current:
                previous = self._current[key]
            else:
                previous = self._ports(old)
            self._current[key] = current
            if not current:
                del self._current[key]
            if previous == current:
                self._items.pop(key, None)
                return False
            self._items[key] = (previous, current)
            return True

    def checkout(self) -> dict[Key, tuple[ServicePort, ...]]:
        """The changed services' current ports (() = deleted), clearing the record."""
        with self._lock:
            items, self._items = self._items, {}
        return {key: cur for key, (_, cur) in items.items()}


class EndpointsChangeTracker(_Tracker):
    """Records EndpointSlice changes by slice namespace/name until the next sync.

    Each record is the slice's service and its endpoints per service port, or None when the
    slice was deleted; only the latest state of each slice is kept (upstream's
    EndpointSliceCache pending map).
    """

    def __init__(self, family: str = IPV4, lock: Lock | None = None) -> None:
        self.family = family
        self.issues: list[Issue] = []
        self._lock: Lock = lock if lock is not None else Unshared()
        self._items: dict[Key, tuple[Key, PerPort] | None] = {}

    def _read(self, obj: Mapping[str, Any]) -> tuple[Key, PerPort] | None:
        meta = obj.get("metadata") or {}
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not service:
            return None
        issues: list[Issue] = []
        per_port = slice_endpoints(obj, (), self.family, issues)
        self.issues = issues
        return (namespace_of(obj), str(service)), per_port

    def update(self, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
        key = _key(new) or _key(old)
        if key is None:
            return False
        record = self._read(new) if new else None
        with self._lock:
            self._items[key] = record
        return True

    def checkout(self) -> dict[Key, tuple[Key, PerPort] | None]:
        with self._lock:
            items, self._items = self._items, {}
        return items


# ---------------------------------------------------------------- merged state


@dataclass(frozen=True)
class ConntrackFlush:
    """One `conntrack -D` filter: entries to delete after the rules changed."""

    protocol: str  # "udp"
    orig_dst: str | None = None
    dport: int | None = None
    reply_src: str | None = None  # the endpoint that went away (--reply-src)


@dataclass
class Changes:
    services: set[Key] = field(default_factory=set)  # services whose rules must be rewritten
    flushes: list[ConntrackFlush] = field(default_factory=list)


class ProxyTracker:
    """The service and endpoint maps, fed by the two change trackers (shared by every mode)."""

    def __init__(self, settings: ProxierSettings, new_lock: Callable[[], Lock] = Unshared) -> None:
        """`new_lock`: threading.Lock when informers' threads feed the trackers (the
        kube-proxy agent's); left out, one thread does everything (testbed.api.sharing)."""
        self.settings = settings
        self.service_changes = ServiceChangeTracker(settings.ip_family, new_lock())
        self.endpoint_changes = EndpointsChangeTracker(settings.ip_family, new_lock())
        self.services: dict[Key, tuple[ServicePort, ...]] = {}
        self.endpoints: dict[ServicePortName, tuple[Endpoint, ...]] = {}
        self._slices: dict[Key, tuple[Key, PerPort]] = {}  # slice key -> (service, endpoints)
        self._by_service: dict[Key, set[Key]] = {}  # service key -> slice keys
        self._service_eps: dict[Key, dict[ServicePortName, tuple[Endpoint, ...]]] = {}
        self._sorted: list[ServicePort] | None = None
        self._counted: dict[Key, int] = {}  # endpoints of each service's ports
        self.endpoint_total = 0  # of all services' ports (orphan endpoints do not count)

    def service_ports(self) -> list[ServicePort]:
        """Every service port, in the renderers' order (name, then protocol)."""
        if self._sorted is None:
            self._sorted = sorted((p for ports in self.services.values() for p in ports),
                                  key=lambda s: (str(s.name), s.name.protocol))
        return self._sorted

    def checkout(self) -> Changes:
        """Merge the recorded changes; return what changed and the conntrack entries to flush."""
        svc_changes = self.service_changes.checkout()
        ep_changes = self.endpoint_changes.checkout()
        changed = set(svc_changes)
        for slice_key, record in ep_changes.items():
            old = self._slices.pop(slice_key, None)
            if old is not None:
                changed.add(old[0])
                self._by_service.get(old[0], set()).discard(slice_key)
            if record is not None:
                self._slices[slice_key] = record
                self._by_service.setdefault(record[0], set()).add(slice_key)
                changed.add(record[0])
        before = {key: (self.services.get(key, ()), self._endpoints_of(key)) for key in changed}
        for key, ports in svc_changes.items():
            if ports:
                self.services[key] = ports
            else:
                self.services.pop(key, None)
        if svc_changes:
            self._sorted = None
        for key in changed:
            for spn in self._service_eps.pop(key, {}):
                del self.endpoints[spn]
            merged = self._merge(key)
            if merged:
                self._service_eps[key] = merged
                self.endpoints.update(merged)
            if not self._by_service.get(key):
                self._by_service.pop(key, None)
        for key in changed:
            count = sum(len(self.endpoints.get(p.name, ())) for p in self.services.get(key, ()))
            self.endpoint_total += count - self._counted.pop(key, 0)
            if count:
                self._counted[key] = count
        flushes: list[ConntrackFlush] = []
        for key in sorted(changed):
            old_ports, old_eps = before[key]
            flushes += stale_udp(old_ports, old_eps, self.services.get(key, ()),
                                 self._endpoints_of(key), self.settings.node_name)
        return Changes(changed, list(dict.fromkeys(flushes)))

    def _endpoints_of(self, key: Key) -> dict[ServicePortName, tuple[Endpoint, ...]]:
        return dict(self._service_eps.get(key, {}))

    def _merge(self, key: Key) -> dict[ServicePortName, tuple[Endpoint, ...]]:
        """A service's slices merged in name order; a non-terminating duplicate wins."""
        return merge_slices(self._slices[k][1] for k in sorted(self._by_service.get(key, ())))


def stale_udp(old_ports: Sequence[ServicePort], old_eps: Mapping[ServicePortName, Sequence[Endpoint]],
              new_ports: Sequence[ServicePort], new_eps: Mapping[ServicePortName, Sequence[Endpoint]],
              node_name: str) -> list[ConntrackFlush]:
    """Conntrack entries a UDP change leaves pointing at the wrong place.

    An endpoint the rules no longer send to: entries to each service address and NodePort
    whose reply comes from that endpoint. A service port that goes away: every entry to its
    cluster IP and port. One that gets its first endpoint: every entry to its cluster IP,
    external and load-balancer IPs, and its NodePort, as upstream's
    deleteStaleServiceConntrackEntries clears them (ClearEntriesForIP, ClearEntriesForPort).
    """
    out: list[ConntrackFlush] = []
    new_by_name = {p.name: p for p in new_ports}
    old_by_name = {p.name: p for p in old_ports}
    for name in sorted(set(old_by_name) | set(new_by_name)):
        if name.protocol != "UDP":
            continue
        old, new = old_by_name.get(name), new_by_name.get(name)
        old_reach = {str(e): e for e in categorize(old_eps.get(name, ()), old, node_name)
                     .all_reachable} if old else {}
        new_reach = {str(e): e for e in categorize(new_eps.get(name, ()), new, node_name)
                     .all_reachable} if new else {}
        if old is not None:
            for gone in sorted(set(old_reach) - set(new_reach)):
                ip = old_reach[gone].ip
                for addr in (old.cluster_ip, *old.external_ips, *old.load_balancer_ips):
                    out.append(ConntrackFlush("udp", addr, old.port, ip))
                if old.node_port:
                    out.append(ConntrackFlush("udp", None, old.node_port, ip))
            if new is None:
                out.append(ConntrackFlush("udp", old.cluster_ip, old.port))
        if new is not None and new_reach and not old_reach:
            # Newly active (upstream's NewlyActiveUDPServices): a packet sent while it had no
            # endpoint left an entry with no DNAT, which would blackhole the flow for as long
            # as it keeps sending. Every entry to its addresses, and to its NodePort.
            for addr in (new.cluster_ip, *new.external_ips, *new.load_balancer_ips):
                out.append(ConntrackFlush("udp", addr))
            if new.node_port:
                out.append(ConntrackFlush("udp", None, new.node_port))
    return out
