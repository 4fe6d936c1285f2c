"""Pure: the policy agent's sync loop body, over an injected backend (as proxy/proxier.py is
kube-proxy's).

Informer handlers (`policy_changes`, `pod_changes`, `namespace_changes`: on_add, on_update,
on_delete) record what policies need of each object and mark the state dirty when that
changed (a pod's readiness flipping changes nothing here). `sync()` resolves the node's plan
(testbed.netpol.model.resolve), renders it for the backend's mode and applies only what
differs from what it applied last:

- iptables mode: sets whose members changed are refilled (`ipset restore`, each swapped in
  whole); when the rules changed, one `iptables-restore --noflush` rewrites this agent's chains
  and deletes the stale ones; the jumps from FORWARD and INPUT are kept first; sets no rule
  names any more are destroyed after the rules stopped naming them.
- nftables mode: when the table's structure changed (chains, the pod maps), one `nft -f`
  transaction replaces the whole table; otherwise one transaction refills the changed sets.

The first sync, a sync after a failure, and one every `full_sync_period` are full: they read
what is in the kernel (chains, sets) and rewrite everything, so a restarted agent adopts, fixes
and prunes what its predecessor left, and never duplicates a rule. Nothing is applied before
the caller has listed every kind (the agent waits for its informers), so a restart never
enforces an empty policy set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from testbed.api.meta import object_key
from testbed.api.sharing import Lock, Unshared
from testbed.netpol import iptables, nftables
from testbed.netpol.model import (
    Plan,
    PodInfo,
    Policy,
    namespace_labels,
    parse_policy,
    pod_info,
    resolve,
)

DEFAULT_FULL_SYNC_PERIOD = 3600.0
JUMP_CHECK_PERIOD = 5.0      # seconds between checks of the jumps' places when nothing changed
MODES = ("iptables", "nftables")


class Backend(Protocol):
    """What the syncer needs from the system (testbed.net.netfilter's policy backends; the
    fakes in testbed/netpol/fakes.py for tests)."""

    mode: str   # "iptables" | "nftables"

    def restore(self, text: str) -> None:
        """iptables: `iptables-restore --noflush`; nftables: `nft -f`. All or nothing."""

    def chains(self, table: str) -> set[str]:
        """iptables: the chains of `table` now."""

    def ipset_restore(self, text: str) -> None:
        """iptables: `ipset restore`."""

    def ipset_names(self) -> set[str]:
        """iptables: the names of the sets now."""

    def ensure_first(self, table: str, chain: str, target: str) -> bool:
        """iptables: make `-j target` the first rule of the built-in `chain` (removing other
        copies); True when something had to change."""


@dataclass(frozen=True)
class SyncResult:
    ok: bool
    full: bool
    skipped: bool = False
    error: str = ""
    seconds: float = 0.0
    rules: bool = False        # rules (chains, the nftables table) were rewritten
    sets: int = 0              # sets refilled
    protected: int = 0         # this node's pods some policy isolates
    policies: int = 0
    # What the rules reflect, per kind watched: (objects, the newest resourceVersion seen),
    # so that a scenario step can wait for the agents to have caught up with its writes
    caught_up: tuple[tuple[str, int, int], ...] = ()


class _Changes:
    """Informer handlers for one kind: `record(obj)` gives (key, value or None to forget).

    Besides what policies need of each object, it keeps what the informer has delivered: the
    objects it holds and the newest resourceVersion of any event (`mark()`). A watch delivers
    one kind's events in order, so when an agent's mark of a kind equals the API's (as many
    objects, and it has seen the newest one's version), its view of that kind is the API's."""

    def __init__(self, owner: PolicySyncer, kind: str, store: dict,
                 record: Callable[[dict], tuple[str, object]]):
        self.owner, self.kind, self.store, self.record = owner, kind, store, record
        self.versions: dict[str, int] = {}
        self.newest = 0

    def mark(self) -> tuple[str, int, int]:
        """(kind, objects held, newest resourceVersion seen); under the owner's lock."""
        return self.kind, len(self.versions), self.newest

    def _set(self, obj: dict, gone: bool) -> None:
        key, value = self.record(obj)
        text = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        rv = int(text) if text.isdigit() else 0
        with self.owner.lock:
            self.newest = max(self.newest, rv)
            if gone:
                self.versions.pop(key, None)
            else:
                self.versions[key] = rv
            before = self.store.get(key)
            if gone or value is None:
                if key in self.store:
                    del self.store[key]
                    self.owner.dirty = True
            elif before != value:
                self.store[key] = value
                self.owner.dirty = True

    def on_add(self, obj: dict) -> None:
        self._set(obj, False)

    def on_update(self, old: dict, new: dict) -> None:
        self._set(new, False)

    def on_delete(self, obj: dict) -> None:
        self._set(obj, True)


def _key(obj: dict) -> str:
    return "/".join(object_key(obj))


def _pod(obj: dict) -> tuple[str, PodInfo | None]:
    return _key(obj), pod_info(obj)


def _policy(obj: dict) -> tuple[str, Policy]:
    return _key(obj), parse_policy(obj)


def _namespace(obj: dict) -> tuple[str, dict[str, str]]:
    return namespace_labels(obj)


class PolicySyncer:
    """NetworkPolicy enforcement for one node: trackers in, the fewest writes per sync out."""

    def __init__(self, backend: Backend, node: str, *, full_sync_period: float = DEFAULT_FULL_SYNC_PERIOD,
                 new_lock: Callable[[], Lock] = Unshared, clock: Callable[[], float] = time.monotonic):
        if backend.mode not in MODES:
            raise ValueError(f"no NetworkPolicy rules for mode {backend.mode!r}")
        self.backend, self.node = backend, node
        self.full_sync_period, self.clock = full_sync_period, clock
        self.lock = new_lock()
        self.policies: dict[str, Policy] = {}
        self.pods: dict[str, PodInfo] = {}
        self.namespaces: dict[str, dict[str, str]] = {}
        self.policy_changes = _Changes(self, "NetworkPolicy", self.policies, _policy)
        self.pod_changes = _Changes(self, "Pod", self.pods, _pod)
        self.namespace_changes = _Changes(self, "Namespace", self.namespaces, _namespace)
        self.dirty = True
        self.need_full = True
        self.last_full = 0.0
        self.caught_up: tuple[tuple[str, int, int], ...] = ()   # the marks the rules reflect
        self.jumps_checked = -1e9
        self.generation = 0
        self.plan: Plan | None = None
        # what the last successful apply left
        self._text = ""                                    # iptables rules / nftables structure
        self._chains: set[str] = set()
        self._sets: dict[str, object] = {}

    def sync(self) -> SyncResult:
        started = self.clock()
        with self.lock:
            full = self.need_full or started - self.last_full >= self.full_sync_period
            skip = not full and not self.dirty
            marks = tuple(c.mark() for c in (self.namespace_changes, self.pod_changes,
                                             self.policy_changes))
            if skip:
                self.caught_up = marks     # nothing changed that the rules depend on
        if skip:
            # Nothing to write; still put the jumps back first if something moved them (at
            # most every JUMP_CHECK_PERIOD: a skipped sync follows every pod status update).
            moved = False
            if started - self.jumps_checked >= JUMP_CHECK_PERIOD:
                self.jumps_checked = started
                try:
                    moved = self._ensure_jumps()
                except Exception as err:  # noqa: BLE001 - report; the next sync tries again
                    return SyncResult(False, False, error=str(err), seconds=self.clock() - started,
                                      caught_up=marks)
            return SyncResult(True, False, skipped=not moved, rules=moved, caught_up=marks)
        with self.lock:
            self.dirty = False
            policies = list(self.policies.values())
            pods = list(self.pods.values())
            namespaces = dict(self.namespaces)
        try:
            plan = resolve(policies, pods, namespaces, self.node)
            if self.backend.mode == "iptables":
                rules, sets = self._apply_iptables(plan, full)
            else:
                rules, sets = self._apply_nftables(plan, full)
        except Exception as err:  # noqa: BLE001 - any failure: report, and rewrite all next time
            with self.lock:
                self.need_full = True
                self.dirty = True
            return SyncResult(False, full, error=str(err), seconds=self.clock() - started)
        with self.lock:
            self.plan = plan
            self.caught_up = marks
            if full:
                self.need_full = False
                self.last_full = started
            if rules or sets:
                self.generation += 1
        return SyncResult(True, full, seconds=self.clock() - started, rules=rules, sets=sets,
                          protected=len(plan.protected), policies=len(policies), caught_up=marks)

    def _apply_iptables(self, plan: Plan, full: bool) -> tuple[bool, int]:
        r = iptables.render(plan)
        present_sets = ({n for n in self.backend.ipset_names() if n.startswith(iptables.SET_PREFIX)}
                        if full else set(self._sets))
        if iptables.TMP_SET in present_sets:    # a predecessor died in the middle of a refill
            self.backend.ipset_restore(iptables.ipset_destroy_text([iptables.TMP_SET]))
            present_sets.discard(iptables.TMP_SET)
        present_chains = ({c for c in self.backend.chains("filter") if iptables.is_ours(c)}
                          if full else self._chains)
        changed = [s for name, s in sorted(r.sets.items())
                   if full or self._sets.get(name) != s]
        if changed:
            self.backend.ipset_restore(iptables.ipset_restore_text(changed))
            self._sets.update({s.name: s for s in changed})
        rules = full or r.text != self._text
        if rules:
            stale = present_chains - set(r.chains)
            self.backend.restore(r.text + iptables.stale_chains_text(stale))
            self._text, self._chains = r.text, set(r.chains)
            self._ensure_jumps()     # a set refill needs no look at FORWARD (the periodic one does)
        stale_sets = present_sets - set(r.sets)
        if stale_sets:
            self.backend.ipset_restore(iptables.ipset_destroy_text(stale_sets))
        self._sets = {name: s for name, s in self._sets.items() if name in r.sets}
        return rules, len(changed)

    def _ensure_jumps(self) -> bool:
        """iptables mode: the jumps to this agent's chains first in FORWARD and INPUT (ahead of
        kube-proxy's KUBE-FORWARD, which accepts marked traffic); True if one had moved."""
        if self.backend.mode != "iptables" or not self._chains:
            return False
        moved = False
        for builtin, target in iptables.JUMPS:
            moved = self.backend.ensure_first("filter", builtin, target) or moved
        return moved

    def _apply_nftables(self, plan: Plan, full: bool) -> tuple[bool, int]:
        r = nftables.render(plan)
        if full or r.structure != self._text:
            self.backend.restore(nftables.full_text(r))
            self._text, self._sets = r.structure, dict(r.sets)
            return True, len(r.sets)
        changed = [s for name, s in sorted(r.sets.items()) if self._sets.get(name) != s]
        if changed:
            self.backend.restore(nftables.sets_text(changed))
            self._sets.update({s.name: s for s in changed})
        return False, len(changed)
