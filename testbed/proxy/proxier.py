"""Pure: kube-proxy's sync loop body (iptables and nftables modes), over an injected backend.

Owns `Proxier.sync()`, as upstream's proxier's syncProxyRules: it merges what the change
trackers recorded (`testbed.proxy.tracker.ProxyTracker`, which `Proxier` extends), renders with
`testbed.proxy.iptables` / `testbed.proxy.nftables` and applies the result in ONE backend call.

Sync policy (iptables mode): the first sync, the sync after a failed apply, a sync asked for
with `request_full_sync()` and the first sync after `full_sync_period` seconds are full; the
others are partial and rewrite only the per-service chains of services that changed, as
upstream's do (`iptables.Applied` is what the last apply left). Every sync, partial ones and
the periodic one with nothing changed included, writes the top-level chains (KUBE-SERVICES,
KUBE-NODEPORTS, KUBE-POSTROUTING, KUBE-MARK-MASQ, the filter chains) whole, as upstream's
syncProxyRules does, so a flushed or edited one is repaired at the next sync; the jump rules
in the built-in chains are checked at full syncs, as upstream's. Stale chains are deleted: on
a full sync from what the backend reports (so a restarted kube-proxy removes chains its
predecessor left), otherwise those the changed services used before.

nftables mode: a full sync replaces the `kube-proxy` table atomically in one `nft -f`
transaction (`nftables.render(..., replace_table=True)`); a partial one, as upstream's,
rewrites only the chains of changed services and sends only the map and set elements that
changed (`nftables.render_partial`), from per-service texts kept between syncs; a sync with
nothing changed writes nothing, so a flushed map or a deleted chain is restored by the next
full sync (or by the full sync that follows a partial one the tampering made fail). A change that
would touch an element another service also claims (two Services on one external address and
port) syncs in full. Either is one transaction, so a failure changes nothing and makes the
next sync full.

The backend (`Backend` below; `testbed.net.netfilter` has the real ones, `FakeIptables` and
`FakeNft` in proxy/fakes.py are for tests) is the only thing that acts. Nothing in this module touches the
system; the clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from testbed.api.sharing import Lock, Unshared
from testbed.proxy import iptables, nftables
from testbed.proxy.model import LARGE_CLUSTER_ENDPOINTS, ProxierSettings, ServicePortName
from testbed.proxy.tracker import ConntrackFlush, Key, ProxyTracker

DEFAULT_FULL_SYNC_PERIOD = 3600.0  # seconds; upstream's proxyutil.FullSyncPeriod (1 hour)




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
                 clock: Callable[[], float] = time.monotonic,
                 new_lock: Callable[[], Lock] = Unshared) -> None:
        super().__init__(settings, new_lock)
        self.backend = backend
        self.mode = backend.mode
        self.full_sync_period = full_sync_period
        self.clock = clock
        self._sync_lock = new_lock()
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
            if not full and not self._pending_changed and self.mode != "iptables":
                # iptables mode goes on: upstream's periodic sync rewrites the top-level chains
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
