"""Pure: kube-proxy's change trackers and its sync loop body, over an injected backend.

Owns what sits between the informers and the renderers, as upstream's proxier does:
`ServiceChangeTracker` and `EndpointsChangeTracker` (handlers only record, keyed by
namespace/name), `ProxyTracker` (the service and endpoint maps the trackers are merged into,
with stale-UDP-conntrack detection) and `Proxier.sync()`, which renders with
`testbed.proxy.iptables` / `testbed.proxy.nftables` and applies the result in ONE backend call.

Sync policy (iptables mode): the first sync, the sync after a failed apply, a sync asked for
with `request_full_sync()` and the first sync after `full_sync_period` seconds are full; the
others are partial and rewrite only the per-service chains of services that changed, as
upstream's do. Unlike upstream, a partial sync also leaves a top-level chain (KUBE-SERVICES,
KUBE-NODEPORTS, the filter chains) alone when its rules came out the same, so an endpoint
change with 10,000 Services present writes a few lines instead of 10,000 (`iptables.Applied`
is what the last apply left). Stale chains are deleted: on a full sync from what the backend
reports (so a restarted kube-proxy removes chains its predecessor left), otherwise those the
changed services used before.

nftables mode: a full sync replaces the `kube-proxy` table atomically in one `nft -f`
transaction (`nftables.render(..., replace_table=True)`); a partial one, as upstream's,
rewrites only the chains of changed services and sends only the map and set elements that
changed (`nftables.render_partial`), from per-service texts kept between syncs. A change that
would touch an element another service also claims (two Services on one external address and
port) syncs in full. Either is one transaction, so a failure changes nothing and makes the
next sync full.

The backend (`Backend` below; `testbed.net.netfilter` has the real ones, `FakeIptables` and
`FakeNft` in proxy/fakes.py are for tests) is the only thing that acts. Nothing in this module touches the
system; the clock is injected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from testbed.proxy import iptables, nftables
from testbed.proxy.model import (
    IPV4,
    LARGE_CLUSTER_ENDPOINTS,
    Endpoint,
    ProxierSettings,
    ServicePort,
    ServicePortName,
    categorize,
)
from testbed.proxy.objects import SERVICE_NAME_LABEL, Issue, service_ports, slice_endpoints

Key = tuple[str, str]  # (namespace, name)
PerPort = Mapping[ServicePortName, Sequence[Endpoint]]
DEFAULT_FULL_SYNC_PERIOD = 3600.0  # seconds; upstream's proxyutil.FullSyncPeriod (1 hour)


def _key(obj: Mapping[str, Any] | None) -> Key | None:
    if not obj:
        return None
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))


# ---------------------------------------------------------------- change trackers


class _Tracker:
    """Informer handlers that only record (`update`), and the count of what is recorded."""

    _lock: threading.Lock
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

    def __init__(self, family: str = IPV4) -> None:
        self.family = family
        self.issues: list[Issue] = []  # problems in the last objects read (skipped, not fatal)
        self._lock = threading.Lock()
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

    def __init__(self, family: str = IPV4) -> None:
        self.family = family
        self.issues: list[Issue] = []
        self._lock = threading.Lock()
        self._items: dict[Key, tuple[Key, PerPort] | None] = {}

    def _read(self, obj: Mapping[str, Any]) -> tuple[Key, PerPort] | None:
        meta = obj.get("metadata") or {}
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not service:
            return None
        issues: list[Issue] = []
        per_port = slice_endpoints(obj, (), self.family, issues)
        self.issues = issues
        return (str(meta.get("namespace") or "default"), str(service)), per_port

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

    def __init__(self, settings: ProxierSettings) -> None:
        self.settings = settings
        self.service_changes = ServiceChangeTracker(settings.ip_family)
        self.endpoint_changes = EndpointsChangeTracker(settings.ip_family)
        self.services: dict[Key, tuple[ServicePort, ...]] = {}
        self.endpoints: dict[ServicePortName, tuple[Endpoint, ...]] = {}
        self._slices: dict[Key, tuple[Key, PerPort]] = {}  # slice key -> (service, endpoints)
        self._by_service: dict[Key, set[Key]] = {}  # service key -> slice keys
        self._service_eps: dict[Key, dict[ServicePortName, tuple[Endpoint, ...]]] = {}
        self._sorted: list[ServicePort] | None = None
        self._counted: dict[Key, int] = {}  # endpoints of each service's ports
        self.endpoint_total = 0  # of all services' ports (orphan endpoints do not count)

    def pending(self) -> bool:
        return bool(self.service_changes.pending() or self.endpoint_changes.pending())

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
        merged: dict[ServicePortName, dict[str, Endpoint]] = {}
        for slice_key in sorted(self._by_service.get(key, ())):
            for spn, eps in self._slices[slice_key][1].items():
                bucket = merged.setdefault(spn, {})
                for ep in eps:
                    if str(ep) not in bucket or not ep.terminating:
                        bucket[str(ep)] = ep
        return {spn: tuple(sorted(b.values(), key=str)) for spn, b in merged.items()}


def stale_udp(old_ports: Sequence[ServicePort], old_eps: Mapping[ServicePortName, Sequence[Endpoint]],
              new_ports: Sequence[ServicePort], new_eps: Mapping[ServicePortName, Sequence[Endpoint]],
              node_name: str) -> list[ConntrackFlush]:
    """Conntrack entries a UDP change leaves pointing at the wrong place.

    An endpoint the rules no longer send to: entries to each service address and NodePort
    whose reply comes from that endpoint. A service port that gets its first endpoint, or goes
    away: every entry to its cluster IP and port (upstream's stale service IPs).
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
            out.append(ConntrackFlush("udp", new.cluster_ip, new.port))
    return out


# ---------------------------------------------------------------- the proxier


class Backend(Protocol):
    """What a proxier needs from the system (testbed.net.netfilter; fakes below)."""

    mode: str  # "iptables" | "nftables"

    def restore(self, text: str) -> None:
        """Apply one sync's text in one call (iptables-restore --noflush / nft -f)."""

    def ensure_jump_rules(self, rules: Sequence[iptables.JumpRule], append: bool = False) -> None:
        """Make sure each rule is in its built-in chain (creating the target chains)."""

    def missing_jump_rules(self, rules: Sequence[iptables.JumpRule]) -> list[iptables.JumpRule]:
        """The rules not in their built-in chains now (iptables mode)."""

    def nat_chains(self) -> set[str]:
        """The chains of the nat table now (iptables mode)."""

    def conntrack_flush(self, flush: ConntrackFlush) -> None:
        """Delete the conntrack entries matching `flush` ("none matched" is not an error)."""


@dataclass(frozen=True)
class SyncResult:
    ok: bool
    full: bool
    skipped: bool = False  # nothing changed and no full sync was due
    changed: frozenset[Key] = frozenset()
    error: str = ""
    flushed: int = 0
    seconds: float = 0.0


class Proxier(ProxyTracker):
    """kube-proxy's iptables / nftables proxier: trackers in, one apply per sync out."""

    def __init__(self, backend: Backend, settings: ProxierSettings,
                 full_sync_period: float = DEFAULT_FULL_SYNC_PERIOD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(settings)
        self.backend = backend
        self.mode = backend.mode
        self.full_sync_period = full_sync_period
        self.clock = clock
        self._sync_lock = threading.Lock()
        self._needs_full = True
        self._last_full: float | None = None
        self._applied: iptables.Applied | None = None  # what our last apply left (iptables)
        self._pending_changed: set[Key] = set()
        self._pending_flushes: list[ConntrackFlush] = []
        self._nft_texts: dict[Key, dict[ServicePortName, nftables.ServiceText]] = {}  # as last applied
        self._element_owners: dict[tuple[str, str], set[Key]] = {}  # (map, key) -> services
        self.last_text = ""

    def request_full_sync(self) -> None:
        self._needs_full = True

    def full_sync_due(self) -> bool:
        return (self._needs_full or self._last_full is None
                or self.clock() - self._last_full >= self.full_sync_period)

    def sync(self) -> SyncResult:
        """One sync: merge the changes, render, apply once, then flush stale conntrack entries."""
        with self._sync_lock:
            start = self.clock()
            changes = self.checkout()
            self._pending_changed |= changes.services
            self._pending_flushes += [f for f in changes.flushes
                                      if f not in self._pending_flushes]
            full = self.full_sync_due()
            if not full and not self._pending_changed:
                return SyncResult(True, False, skipped=True)
            changed = frozenset(self._pending_changed)
            try:
                nft_texts: dict[Key, dict[ServicePortName, nftables.ServiceText]] = {}
                applied = None
                if self.mode == "nftables":
                    text, nft_texts, full = self._render_nftables(full, changed)
                else:
                    text, applied = self._render_iptables(full, changed)
                self.last_text = text
                if text:
                    self.backend.restore(text)
            except Exception as err:  # noqa: BLE001 - any failed apply means: next sync full
                self._needs_full = True
                self._applied = None  # and it reads the kernel's chains again
                return SyncResult(False, full, changed=changed, error=str(err),
                                  seconds=self.clock() - start)
            self._applied = applied
            if self.mode == "nftables":
                self._remember_elements(full, changed, nft_texts)
                self._nft_texts = nft_texts
            self._pending_changed = set()
            self._needs_full = False
            if full:
                self._last_full = start
            flushed, errors = self._flush_conntrack()
            return SyncResult(True, full, changed=changed, flushed=flushed,
                              error="; ".join(errors), seconds=self.clock() - start)

    def _render_nftables(self, full: bool, changed: frozenset[Key],
                         ) -> tuple[str, dict[Key, dict[ServicePortName, nftables.ServiceText]], bool]:
        """The text of one sync, the per-service texts it leaves in the kernel, and whether
        it is a full sync (a partial one that would touch a shared map key becomes full)."""
        def render(key: Key) -> dict[ServicePortName, nftables.ServiceText]:
            return {p.name: nftables.service_text(p, self.endpoints.get(p.name, ()), self.settings)
                    for p in self.services.get(key, ())}

        old = self._nft_texts
        if not full:
            texts = dict(old)
            for key in changed:
                texts[key] = render(key)
                if not texts[key]:
                    del texts[key]
            was = [t for key in sorted(changed) for t in old.get(key, {}).values()]
            now = [t for key in sorted(changed) for t in texts.get(key, {}).values()]
            # Two services claiming one address and port is a conflict kube-proxy tolerates;
            # only a full sync can tell which of them keeps the map element.
            shared = any(self._element_owners.get((e.target, e.key), set()) - changed
                         for t in (*was, *now) for e in t.elements)
            if not shared:
                return nftables.render_partial(was, now, self.settings), texts, False
        texts = {key: render(key) for key in self.services}
        ordered = [texts[p.name.service][p.name] for p in self.service_ports()]
        return nftables.render(self.service_ports(), self.endpoints, self.settings,
                               replace_table=True, texts=ordered), texts, True

    def _remember_elements(self, full: bool, changed: frozenset[Key],
                           texts: Mapping[Key, Mapping[ServicePortName, nftables.ServiceText]],
                           ) -> None:
        """Which services provide each map and set element now (nftables mode)."""
        owners = self._element_owners
        if full:
            owners.clear()
        for key in (texts if full else changed):
            if not full:
                for text in self._nft_texts.get(key, {}).values():
                    for e in text.elements:
                        owners.get((e.target, e.key), set()).discard(key)
            for text in texts.get(key, {}).values():
                for e in text.elements:
                    owners.setdefault((e.target, e.key), set()).add(key)

    def _render_iptables(self, full: bool, changed: Iterable[Key],
                         ) -> tuple[str, iptables.Applied]:
        """The text of one sync and what it leaves in place.

        A full sync renders everything and adds the jump rules missing from the built-in
        chains to the same restore (upstream ensures them one by one beforehand). The
        first one, and the first after a failed apply, also asks the backend which nat chains
        exist, so chains a predecessor left are deleted (upstream reads `iptables-save` at every
        full sync; with 10,000 Services that dump costs about a second, and what this proxier
        wrote since it knows). A partial sync starts from what the last apply left.
        """
        existing: set[str] = set()
        missing: list[iptables.JumpRule] = []
        if full:
            missing = self.backend.missing_jump_rules(iptables.JUMP_RULES)
            if self._applied is None:
                existing = self.backend.nat_chains()
            else:
                existing = self._applied.nat_chains()
        large = self.settings.large_cluster_mode
        if large is None:
            large = self.endpoint_total > LARGE_CLUSTER_ENDPOINTS
        settings = replace(self.settings, full_sync=full, existing_nat_chains=tuple(existing),
                           large_cluster_mode=large)
        result = iptables.render_sync(self.service_ports(), self.endpoints, settings,
                                      None if full else set(changed),
                                      None if full else self._applied)
        # missing jump rules go in the same restore as the chains they jump to; one to a
        # chain the text does not write (KUBE-FIREWALL without localhost NodePorts) is
        # ensured on its own first
        inline = [r for r in missing if (r.table, r.args[-1]) in result.applied.top]
        alone = [r for r in missing if r not in inline]
        if alone:
            self.backend.ensure_jump_rules(alone)
        return iptables.with_jump_rules(result.text, inline), result.applied

    def _flush_conntrack(self) -> tuple[int, list[str]]:
        flushes, self._pending_flushes = self._pending_flushes, []
        errors: list[str] = []
        for flush in flushes:
            try:
                self.backend.conntrack_flush(flush)
            except Exception as err:  # noqa: BLE001 - stale entries expire anyway; report
                errors.append(f"conntrack flush {flush}: {err}")
        return len(flushes) - len(errors), errors
