"""Acts: flanneld's backend: links, routes, FDB and neighbour entries over netlink, and the
masquerade rules through iptables-restore, in one network namespace.

`OverlayBackend(netns)` satisfies testbed.routing.syncer.Backend. Netlink goes through one
pyroute2 socket bound to the namespace (testbed.net.netns.iproute_in; None: the namespace
this process runs in, as flanneld runs inside its node's); iptables through
testbed.net.netfilter.IptablesBackend. Writes are "replace" (safe to repeat), deletes take
"already gone". Routes are written with protocol `boot`, as flannel's are (so `ip route`
shows them as flannel's do: `10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink`).

`main_routes(ipr)` reads a namespace's main IPv4 table (KernelRoute), for the backend and
for the control plane's look at what bird wrote into the gateway's (emu/routingagents.py).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import ndmsg

from testbed.net.netfilter import IptablesBackend
from testbed.net.netns import iproute_in
from testbed.proxy.iptables import JumpRule
from testbed.routing.flannel import FdbEntry, Neighbour, Route, VxlanDevice, VxlanState

MAIN_TABLE = 254
RTN_UNICAST = 1
RTNH_F_ONLINK = 4
RTPROT_BOOT = 3
IFF_UP = 1
PERMANENT = ndmsg.states["permanent"]
NTF_SELF = ndmsg.flags["self"]
GONE = (errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENODEV)


class OverlayError(RuntimeError):
    """A netlink request failed; the message names what was asked."""


@dataclass(frozen=True)
class KernelRoute:
    """A route of the main table, as the kernel dumps it."""

    dst: IPv4Network
    gateway: IPv4Address | None       # RTA_GATEWAY
    multipath: tuple[IPv4Address, ...]   # the gateways of RTA_MULTIPATH's next hops
    oif: int | None
    type: int                         # RTN_*
    proto: int                        # RTPROT_*
    flags: int                        # RTNH_F_*

    @property
    def hops(self) -> set[IPv4Address]:
        """Every next hop's gateway."""
        return {*self.multipath, *([self.gateway] if self.gateway else [])}


def main_routes(ipr) -> list[KernelRoute]:
    """The main table's IPv4 routes, through the pyroute2 socket `ipr`."""
    out = []
    for msg in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
        dst = IPv4Network(f"{msg.get_attr('RTA_DST') or '0.0.0.0'}/{msg['dst_len']}")
        gateway = msg.get_attr("RTA_GATEWAY")
        hops = (hop.get_attr("RTA_GATEWAY") for hop in msg.get_attr("RTA_MULTIPATH") or [])
        out.append(KernelRoute(dst, IPv4Address(gateway) if gateway else None,
                               tuple(IPv4Address(h) for h in hops if h), msg.get_attr("RTA_OIF"),
                               msg["type"], msg["proto"], msg["flags"]))
    return out


class OverlayBackend:
    def __init__(self, netns: int | None = None) -> None:
        self.netns = netns
        self.ipr = iproute_in(netns)
        self.iptables = IptablesBackend(netns)

    def close(self) -> None:
        self.ipr.close()

    # -- links

    def _index(self, name: str) -> int | None:
        found = self.ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def _need(self, name: str) -> int:
        index = self._index(name)
        if index is None:
            raise OverlayError(f"no link {name}")
        return index

    def _name(self, index: int | None) -> str:
        if not index:
            return ""
        links = self.ipr.get_links(index)
        return links[0].get_attr("IFLA_IFNAME") if links else ""

    def link_mtu(self, name: str) -> int:
        return int(self.ipr.get_links(self._need(name))[0].get_attr("IFLA_MTU"))

    def vxlan(self, name: str) -> VxlanState | None:
        index = self._index(name)
        if index is None:
            return None
        link = self.ipr.get_links(index)[0]
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else ""
        addresses = frozenset(IPv4Network(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
                              for a in self.ipr.get_addr(index=index, family=socket.AF_INET))
        up = bool(link["flags"] & IFF_UP)
        mac = str(link.get_attr("IFLA_ADDRESS") or "")
        if kind != "vxlan":
            return VxlanState(kind or "", None, mac, addresses, up)
        data = info.get_attr("IFLA_INFO_DATA")
        local = data.get_attr("IFLA_VXLAN_LOCAL")
        device = VxlanDevice(name, int(data.get_attr("IFLA_VXLAN_ID")),
                             int(data.get_attr("IFLA_VXLAN_PORT") or 0),
                             IPv4Address(local) if local else None,
                             self._name(data.get_attr("IFLA_VXLAN_LINK")),
                             int(link.get_attr("IFLA_MTU")),
                             bool(data.get_attr("IFLA_VXLAN_LEARNING")))
        return VxlanState("vxlan", device, mac, addresses, up)

    def create_vxlan(self, device: VxlanDevice, mac: str) -> None:
        spec = {"ifname": device.name, "kind": "vxlan", "vxlan_id": device.vni,
                "vxlan_link": self._need(device.link), "vxlan_port": device.port,
                "vxlan_learning": int(device.learning), "mtu": device.mtu}
        if device.local is not None:
            spec["vxlan_local"] = str(device.local)
        if mac:
            spec["address"] = mac
        self._do(f"create {device.name} (vxlan {device.vni}, port {device.port})",
                 lambda: self.ipr.link("add", **spec))

    def delete_link(self, name: str) -> None:
        index = self._index(name)
        if index is not None:
            self._do(f"delete link {name}", lambda: self.ipr.link("del", index=index), ok=GONE)

    def set_link(self, name: str, mtu: int) -> None:
        index = self._need(name)
        self._do(f"set {name} mtu {mtu} up", lambda: self.ipr.link("set", index=index, mtu=mtu,
                                                                   state="up"))

    def add_address(self, name: str, net: IPv4Network) -> None:
        index = self._need(name)
        self._do(f"add address {net} to {name}",
                 lambda: self.ipr.addr("add", index=index, address=str(net.network_address),
                                       prefixlen=net.prefixlen), ok=(errno.EEXIST,))

    def delete_address(self, name: str, net: IPv4Network) -> None:
        index = self._need(name)
        self._do(f"delete address {net} from {name}",
                 lambda: self.ipr.addr("del", index=index, address=str(net.network_address),
                                       prefixlen=net.prefixlen), ok=GONE)

    # -- routes

    def routes(self) -> list[Route]:
        out = []
        names: dict[int | None, str] = {}
        for route in main_routes(self.ipr):
            if route.type != RTN_UNICAST or route.gateway is None:
                continue
            if route.oif not in names:
                names[route.oif] = self._name(route.oif)
            out.append(Route(route.dst, route.gateway, names[route.oif],
                             bool(route.flags & RTNH_F_ONLINK)))
        return out

    def _route(self, route: Route) -> dict:
        spec = {"dst": str(route.dst), "gateway": str(route.gateway), "oif": self._need(route.dev),
                "table": MAIN_TABLE}
        if route.onlink:
            spec["flags"] = RTNH_F_ONLINK
        return spec

    def replace_route(self, route: Route) -> None:
        spec = self._route(route)
        self._do(f"route replace {route}",
                 lambda: self.ipr.route("replace", proto=RTPROT_BOOT, **spec))

    def delete_route(self, route: Route) -> None:
        if self._index(route.dev) is None:
            return   # gone with its device
        spec = self._route(route)
        self._do(f"route delete {route}", lambda: self.ipr.route("del", **spec), ok=GONE)

    # -- the VXLAN device's FDB and neighbours

    def fdb(self, dev: str) -> list[FdbEntry]:
        index = self._index(dev)
        if index is None:
            return []
        return [FdbEntry(str(m.get_attr("NDA_LLADDR")).lower(), IPv4Address(m.get_attr("NDA_DST")))
                for m in self.ipr.fdb("dump", ifindex=index)
                if m["ifindex"] == index and m["state"] & PERMANENT and m.get_attr("NDA_DST")]

    def replace_fdb(self, dev: str, entry: FdbEntry) -> None:
        index = self._need(dev)
        self._do(f"fdb replace {entry} dev {dev}",
                 lambda: self.ipr.fdb("replace", ifindex=index, lladdr=entry.mac, dst=str(entry.dst),
                                      state=PERMANENT, flags=NTF_SELF))

    def delete_fdb(self, dev: str, entry: FdbEntry) -> None:
        index = self._index(dev)
        if index is not None:
            self._do(f"fdb delete {entry} dev {dev}",
                     lambda: self.ipr.fdb("del", ifindex=index, lladdr=entry.mac,
                                          dst=str(entry.dst)), ok=GONE)

    def neighbours(self, dev: str) -> list[Neighbour]:
        index = self._index(dev)
        if index is None:
            return []
        return [Neighbour(IPv4Address(m.get_attr("NDA_DST")), str(m.get_attr("NDA_LLADDR")).lower())
                for m in self.ipr.get_neighbours(ifindex=index, family=socket.AF_INET)
                if m["ifindex"] == index and m["state"] & PERMANENT and m.get_attr("NDA_LLADDR")]

    def replace_neighbour(self, dev: str, entry: Neighbour) -> None:
        index = self._need(dev)
        self._do(f"neigh replace {entry} dev {dev}",
                 lambda: self.ipr.neigh("replace", ifindex=index, dst=str(entry.ip),
                                        lladdr=entry.mac, state=PERMANENT))

    def delete_neighbour(self, dev: str, entry: Neighbour) -> None:
        index = self._index(dev)
        if index is not None:
            self._do(f"neigh delete {entry} dev {dev}",
                     lambda: self.ipr.neigh("del", ifindex=index, dst=str(entry.ip),
                                            lladdr=entry.mac), ok=GONE)

    # -- masquerading

    def restore(self, text: str) -> None:
        self.iptables.restore(text)

    def ensure_jump_rules(self, rules: Sequence[JumpRule], append: bool = False) -> None:
        self.iptables.ensure_jump_rules(rules, append=append)

    # --

    @staticmethod
    def _do(what: str, call, ok: tuple[int, ...] = ()) -> None:
        """`call()`; a netlink error whose code is in `ok` is none (GONE: "already gone"),
        any other an OverlayError naming `what`."""
        try:
            call()
        except NetlinkError as err:
            if err.code in ok:
                return
            raise OverlayError(f"{what}: {err}") from err
