"""Pure: an in-memory node for the route syncer's tests (testbed.routing.syncer.Backend).

`FakeNode` holds links (the uplink, and what the syncer makes), the main table's routes
(kept as the kernel keeps them: one route per destination, which `replace` overwrites and a
delete naming its gateway and device removes, whatever its onlink flag), each device's FDB
and neighbour entries, iptables (`iptables`, kube-proxy's testbed.proxy.fakes.FakeIptables:
FLANNEL-POSTRTG and POSTROUTING's jump), and every write it was asked for (`writes`).
Deleting a link takes its routes, FDB and neighbour entries with it, as the kernel does; a
route whose gateway is on none of its device's subnets is refused unless it is `onlink`, as
the kernel refuses it. `fail_next` makes the next write fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network

from testbed.proxy.fakes import FakeIptables
from testbed.proxy.iptables import JumpRule
from testbed.routing.flannel import FdbEntry, Neighbour, Route, VxlanDevice, VxlanState


class FakeError(RuntimeError):
    pass


@dataclass
class FakeLink:
    kind: str
    mtu: int
    mac: str
    device: VxlanDevice | None = None
    up: bool = False
    addresses: set[IPv4Network] = field(default_factory=set)
    fdb: set[FdbEntry] = field(default_factory=set)
    neighbours: set[Neighbour] = field(default_factory=set)


class FakeNode:
    def __init__(self, uplink: str = "eth0", address: str = "172.16.0.2/24", mtu: int = 1500) -> None:
        self.links: dict[str, FakeLink] = {uplink: FakeLink("veth", mtu, "02:00:00:00:00:01", up=True,
                                                            addresses={IPv4Network(address, strict=False)})}
        self.table: dict[IPv4Network, Route] = {}
        self.iptables = FakeIptables()
        self.writes: list[str] = []
        self.fail_next = 0
        self._macs = 0x10

    def _write(self, what: str) -> None:
        self.writes.append(what)
        if self.fail_next:
            self.fail_next -= 1
            raise FakeError(f"{what}: injected failure")

    def _link(self, name: str) -> FakeLink:
        if name not in self.links:
            raise FakeError(f"no link {name}")
        return self.links[name]

    # links
    def link_mtu(self, name: str) -> int:
        return self._link(name).mtu

    def vxlan(self, name: str) -> VxlanState | None:
        link = self.links.get(name)
        if link is None:
            return None
        device = replace(link.device, mtu=link.mtu) if link.device is not None else None
        return VxlanState(link.kind, device, link.mac, frozenset(link.addresses), link.up)

    def create_vxlan(self, device: VxlanDevice, mac: str) -> None:
        self._write(f"create {device.name}")
        if device.name in self.links:
            raise FakeError(f"{device.name} exists")
        self._link(device.link)
        self._macs += 1
        self.links[device.name] = FakeLink("vxlan", device.mtu, mac or f"0a:58:00:00:00:{self._macs:02x}",
                                           device)

    def delete_link(self, name: str) -> None:
        self._write(f"delete {name}")
        if self.links.pop(name, None) is not None:
            self.table = {d: r for d, r in self.table.items() if r.dev != name}

    def set_link(self, name: str, mtu: int) -> None:
        self._write(f"set {name} mtu {mtu} up")
        link = self._link(name)
        link.mtu, link.up = mtu, True

    def add_address(self, name: str, net: IPv4Network) -> None:
        self._write(f"address add {net} dev {name}")
        self._link(name).addresses.add(net)

    def delete_address(self, name: str, net: IPv4Network) -> None:
        self._write(f"address delete {net} dev {name}")
        self._link(name).addresses.discard(net)

    # routes
    def routes(self) -> list[Route]:
        return sorted(self.table.values())

    def replace_route(self, route: Route) -> None:
        self._write(f"route replace {route}")
        link = self._link(route.dev)
        if not route.onlink and not any(route.gateway in net for net in link.addresses):
            raise FakeError(f"{route}: Nexthop has invalid gateway")   # as the kernel says
        self.table[route.dst] = route

    def delete_route(self, route: Route) -> None:
        """As the kernel does (`ip route del DST via GW dev DEV`): the route to that
        destination when its gateway and device match, whatever its onlink flag."""
        self._write(f"route delete {route}")
        have = self.table.get(route.dst)
        if have is not None and (have.gateway, have.dev) == (route.gateway, route.dev):
            del self.table[route.dst]

    # fdb and neighbours
    def fdb(self, dev: str) -> list[FdbEntry]:
        return sorted(self.links[dev].fdb) if dev in self.links else []

    def replace_fdb(self, dev: str, entry: FdbEntry) -> None:
        self._write(f"fdb replace {entry} dev {dev}")
        link = self._link(dev)
        # one entry per MAC, as the kernel's fdb keeps it
        link.fdb = {e for e in link.fdb if e.mac != entry.mac} | {entry}

    def delete_fdb(self, dev: str, entry: FdbEntry) -> None:
        self._write(f"fdb delete {entry} dev {dev}")
        if dev in self.links:
            self.links[dev].fdb.discard(entry)

    def neighbours(self, dev: str) -> list[Neighbour]:
        return sorted(self.links[dev].neighbours) if dev in self.links else []

    def replace_neighbour(self, dev: str, entry: Neighbour) -> None:
        self._write(f"neigh replace {entry} dev {dev}")
        link = self._link(dev)
        link.neighbours = {n for n in link.neighbours if n.ip != entry.ip} | {entry}

    def delete_neighbour(self, dev: str, entry: Neighbour) -> None:
        """As the kernel does (`ip neigh del IP dev DEV`): by address, whatever the MAC."""
        self._write(f"neigh delete {entry} dev {dev}")
        if dev in self.links:
            self.links[dev].neighbours = {n for n in self.links[dev].neighbours if n.ip != entry.ip}

    # iptables: the nat table is a FakeIptables (`iptables`); the writes are recorded here
    def restore(self, text: str) -> None:
        self._write("iptables-restore")
        self.iptables.restore(text)

    def ensure_jump_rules(self, rules: Sequence[JumpRule], append: bool = False) -> None:
        for rule in self.iptables.missing_jump_rules(rules):
            self._write(f"jump {rule.chain} -> {rule.args[-1]}")
        self.iptables.ensure_jump_rules(rules, append)
