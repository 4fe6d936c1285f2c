"""Pure: flanneld's sync loop body, over an injected backend (as netpol/syncer.py is the
NetworkPolicy agent's and proxy/proxier.py kube-proxy's).

`node_changes` (on_add, on_update, on_delete) is the Node informer's handler: it keeps what
routing reads of each Node (testbed.routing.flannel.NodeView) and returns whether that changed
(False: the agent asks for no sync, so the kubelets' heartbeats cost nothing). `sync()` makes
the node's kernel match the plan (testbed.routing.flannel.plan) and publishes the node's
lease:

1. vxlan: the device flannel.1 is made when missing, made again when its VNI, port, local
   address, uplink or learning differ (with the MAC the node published before, so the other
   nodes' entries stay right), and given its MTU, its address and state up. host-gw: a
   flannel.1 left by the vxlan backend goes.
2. Neighbour and FDB entries that are missing or differ are replaced, then routes (the route
   last, as flannel does: the kernel would otherwise resolve its gateway itself), each keyed
   as the kernel keys it (a neighbour by its address, an FDB entry by its MAC, a route by its
   destination); those of nodes that left are removed. What is in the kernel is read at every
   sync, so a sync repairs whatever drifted and a restarted agent adopts what its
   predecessor left.
3. With a lease of its own: FLANNEL-POSTRTG is rewritten when its rules changed and at every
   full sync, each time with the jump from POSTROUTING put back if missing; the node's flannel
   annotations are written when the Node lacks them or holds others.

Every write is safe to repeat ("replace"), and every delete takes "already gone". A failed
sync makes the next one full. Every sync reads the kernel: the agent's periodic one (its
--sync-period) repairs what drifted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Protocol

from testbed.api.sharing import Lock, Unshared
from testbed.proxy.iptables import JumpRule
from testbed.routing.flannel import (
    MASQ_JUMP,
    Config,
    FdbEntry,
    Neighbour,
    NodeView,
    Plan,
    Route,
    VxlanDevice,
    VxlanState,
    annotations_stale,
    device_addresses,
    masq_restore,
    node_view,
    owned_route,
    plan,
    public_ip_of,
    stored_vtep_mac,
    vxlan_device,
    vxlan_incompatible,
)

DEFAULT_FULL_SYNC_PERIOD = 60.0


class Backend(Protocol):
    """What the syncer needs of the node (testbed.net.overlay.OverlayBackend; a fake in the
    unit tests). Deletes accept "already gone"."""

    def link_mtu(self, name: str) -> int: ...
    def vxlan(self, name: str) -> VxlanState | None:
        """The link called `name` (None when there is none)."""
    def create_vxlan(self, device: VxlanDevice, mac: str) -> None:
        """Make the device (down, no address); `mac` "" lets the kernel choose."""
    def delete_link(self, name: str) -> None: ...
    def set_link(self, name: str, mtu: int) -> None:
        """Set the MTU and bring the link up."""
    def add_address(self, name: str, net: IPv4Network) -> None: ...
    def delete_address(self, name: str, net: IPv4Network) -> None: ...
    def routes(self) -> list[Route]:
        """The main table's IPv4 unicast routes that have a gateway."""
    def replace_route(self, route: Route) -> None: ...
    def delete_route(self, route: Route) -> None: ...
    def fdb(self, dev: str) -> list[FdbEntry]:
        """The device's permanent FDB entries that name a remote VTEP."""
    def replace_fdb(self, dev: str, entry: FdbEntry) -> None: ...
    def delete_fdb(self, dev: str, entry: FdbEntry) -> None: ...
    def neighbours(self, dev: str) -> list[Neighbour]:
        """The device's permanent IPv4 neighbour entries."""
    def replace_neighbour(self, dev: str, entry: Neighbour) -> None: ...
    def delete_neighbour(self, dev: str, entry: Neighbour) -> None: ...
    def restore(self, text: str) -> None:
        """`iptables-restore --noflush`."""
    def ensure_jump_rules(self, rules: list[JumpRule], append: bool = False) -> None: ...


Annotate = Callable[[str, dict[str, str]], None]   # (node, annotations): merge them into the Node


@dataclass(frozen=True)
class SyncResult:
    ok: bool
    full: bool
    error: str = ""
    seconds: float = 0.0
    changes: tuple[str, ...] = ()       # what was written, in order ("route add ...")
    subnet: str = ""                    # the node's own lease ("": none yet)
    vtep_mac: str = ""
    remotes: tuple[tuple[str, str], ...] = ()   # (node, pod CIDR) this node reaches
    ignored: tuple[tuple[str, str], ...] = ()   # (node, why not)


class _NodeChanges:
    """The Node informer's handlers: record each node's NodeView, and return whether it
    changed."""

    def __init__(self, owner: RouteSyncer) -> None:
        self.owner = owner

    def _set(self, obj: dict, gone: bool) -> bool:
        view = node_view(obj)
        with self.owner.lock:
            store = self.owner.nodes
            if gone:
                return store.pop(view.name, None) is not None
            changed = store.get(view.name) != view
            store[view.name] = view
            return changed

    def on_add(self, obj: dict) -> bool:
        return self._set(obj, False)

    def on_update(self, old: dict, new: dict) -> bool:
        return self._set(new, False)

    def on_delete(self, obj: dict) -> bool:
        return self._set(obj, True)


class RouteSyncer:
    """flannel's routes, VTEP entries, masquerading and lease for one node."""

    def __init__(self, backend: Backend, config: Config, annotate: Annotate, *,
                 full_sync_period: float = DEFAULT_FULL_SYNC_PERIOD,
                 new_lock: Callable[[], Lock] = Unshared,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend, self.config, self.annotate = backend, config, annotate
        self.full_sync_period, self.clock = full_sync_period, clock
        self.lock = new_lock()
        self.nodes: dict[str, NodeView] = {}
        self.node_changes = _NodeChanges(self)
        self.need_full = True
        self.last_full = -1e18
        self._masq = ""      # the FLANNEL-POSTRTG text last applied

    def sync(self) -> SyncResult:
        started = self.clock()
        with self.lock:
            views = list(self.nodes.values())
        full = self.need_full or started - self.last_full >= self.full_sync_period
        changes: list[str] = []
        mac = ""
        try:
            own = next((v for v in views if v.name == self.config.node), None)
            mac = self._device(own, changes)
            wanted = plan(self.config, views, mac)
            self._entries(wanted, changes)
            self._masquerade(wanted, full, changes)
            if annotations_stale(own, wanted.annotations):
                self.annotate(self.config.node, wanted.annotations)
                changes.append(f"annotate Node {self.config.node}")
        except Exception as err:  # noqa: BLE001 - reported; the next sync is full and retries
            self.need_full = True
            return SyncResult(False, full, error=f"{type(err).__name__}: {err}",
                              seconds=self.clock() - started, changes=tuple(changes), vtep_mac=mac)
        self.need_full = False
        if full:
            self.last_full = started
        return SyncResult(True, full, seconds=self.clock() - started, changes=tuple(changes),
                          subnet=str(wanted.subnet or ""), vtep_mac=mac, remotes=wanted.remotes,
                          ignored=wanted.ignored)

    # -- the steps

    def _device(self, own: NodeView | None, changes: list[str]) -> str:
        """vxlan: the device as the plan needs it, and its MAC; host-gw: no device ("")."""
        cfg, backend = self.config, self.backend
        name = cfg.device
        have = backend.vxlan(name)
        if cfg.backend != "vxlan":
            if have is not None and have.kind == "vxlan":
                backend.delete_link(name)     # the vxlan backend's, before a switch to host-gw
                changes.append(f"link delete {name}")
            return ""
        want = vxlan_device(cfg, public_ip_of(cfg, own), backend.link_mtu(cfg.uplink))
        why = "missing" if have is None else vxlan_incompatible(want, have)
        if why:
            if have is not None:
                backend.delete_link(name)
            backend.create_vxlan(want, stored_vtep_mac(own))
            changes.append(f"link add {name} ({why})")
            have = backend.vxlan(name)
            if have is None or have.device is None:
                raise RuntimeError(f"{name} is missing right after it was made")
        if not have.up or have.device.mtu != want.mtu:
            backend.set_link(name, want.mtu)
            changes.append(f"link set {name} mtu {want.mtu} up")
        wanted = device_addresses(cfg, own)
        for net in sorted(wanted - have.addresses):
            backend.add_address(name, net)
            changes.append(f"address add {net} dev {name}")
        for net in sorted(have.addresses - wanted):
            backend.delete_address(name, net)
            changes.append(f"address delete {net} dev {name}")
        return have.mac

    def _entries(self, wanted: Plan, changes: list[str]) -> None:
        """Each entry keyed as the kernel keys it (a route by its destination, a neighbour by
        its address, an FDB entry by its MAC): one that differs is replaced, in place; one
        whose key is no longer wanted is deleted. A changed entry is never deleted after its
        replace: the kernel would take the new one (a neighbour goes by address whatever its
        MAC, a route by gateway and device whatever its onlink flag)."""
        cfg, backend = self.config, self.backend
        vxlan = cfg.backend == "vxlan"
        dev = cfg.device
        have_neigh = {n.ip: n for n in backend.neighbours(dev)} if vxlan else {}
        have_fdb = {f.mac: f for f in backend.fdb(dev)} if vxlan else {}
        have_routes = {r.dst: r for r in backend.routes() if owned_route(r, cfg, wanted.subnet)}
        want_neigh = {n.ip: n for n in wanted.neighbours}
        want_fdb = {f.mac: f for f in wanted.fdb}
        want_routes = {r.dst: r for r in wanted.routes}
        for n in sorted(n for ip, n in want_neigh.items() if have_neigh.get(ip) != n):
            backend.replace_neighbour(dev, n)
            changes.append(f"neigh add {n} dev {dev}")
        for f in sorted(f for mac, f in want_fdb.items() if have_fdb.get(mac) != f):
            backend.replace_fdb(dev, f)
            changes.append(f"fdb add {f} dev {dev}")
        for r in sorted(r for dst, r in want_routes.items() if have_routes.get(dst) != r):
            backend.replace_route(r)
            changes.append(f"route add {r}")
        for r in sorted(r for dst, r in have_routes.items() if dst not in want_routes):
            backend.delete_route(r)
            changes.append(f"route delete {r}")
        for f in sorted(f for mac, f in have_fdb.items() if mac not in want_fdb):
            backend.delete_fdb(dev, f)
            changes.append(f"fdb delete {f} dev {dev}")
        for n in sorted(n for ip, n in have_neigh.items() if ip not in want_neigh):
            backend.delete_neighbour(dev, n)
            changes.append(f"neigh delete {n} dev {dev}")

    def _masquerade(self, wanted: Plan, full: bool, changes: list[str]) -> None:
        if not wanted.masq:
            return
        text = masq_restore(wanted.masq)
        if text != self._masq or full:
            self.backend.restore(text)
            # after the chain exists: the jump is appended, as flannel's AppendUnique does
            self.backend.ensure_jump_rules([MASQ_JUMP], append=True)
            self._masq = text
            changes.append(f"masquerade rules ({len(wanted.masq)})")
