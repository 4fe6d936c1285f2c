"""Acts: pod networking behind one small interface (add, delete, check), in the spirit of CNI.

`PodNetwork` is what the rest of the testbed calls; `BridgeNetwork` is the built-in plugin,
doing what the CNI bridge plugin with host-local IPAM does: a veth pair per pod, created with
one end (`eth0`) directly inside the pod's namespace and the other on the node's cbr0 with
hairpin mode on, an address from the node's pod CIDR, and a default route via cbr0's address.
Real CNI plugins can be offered later as other implementations of the same interface.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from pyroute2.netlink.exceptions import NetlinkError

from testbed.emu.ipam import HostLocalIPAM
from testbed.emu.network import BRIDGE
from testbed.net.netns import iproute_in


class PodNetworkError(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeRef:
    """What a pod network plugin needs to know of a node."""

    name: str
    pid: int                   # holds the node's network namespace
    pod_cidr: IPv4Network


@dataclass(frozen=True)
class Attachment:
    """The result of ADD, as CNI reports it: the interface, its address and gateway."""

    pod: str                   # namespace/name
    ip: IPv4Address
    prefixlen: int
    gateway: IPv4Address
    host_veth: str


class PodNetwork(Protocol):
    def add(self, node: NodeRef, pod: str, uid: str, sandbox_pid: int) -> Attachment: ...
    def delete(self, node: NodeRef, attachment: Attachment) -> None: ...
    def check(self, node: NodeRef, attachment: Attachment, sandbox_pid: int) -> list[str]: ...


def host_veth_name(uid: str) -> str:
    """`veth` + 8 hex digits of the pod's uid, as many CNI plugins name the host end."""
    return "veth" + hashlib.sha256(uid.encode()).hexdigest()[:8]


class BridgeNetwork:
    """The built-in plugin: cbr0 bridge + veth + host-local IPAM per node."""

    def __init__(self) -> None:
        self.ipam: dict[str, HostLocalIPAM] = {}

    def _ipam(self, node: NodeRef) -> HostLocalIPAM:
        if node.name not in self.ipam:
            self.ipam[node.name] = HostLocalIPAM(node.pod_cidr)
        return self.ipam[node.name]

    def add(self, node: NodeRef, pod: str, uid: str, sandbox_pid: int) -> Attachment:
        ipam = self._ipam(node)
        ip = ipam.allocate(pod)
        veth = host_veth_name(uid)
        gateway = node.pod_cidr.network_address + 1
        try:
            with iproute_in(node.pid) as ipr:
                # Both ends made in place: the peer is born inside the pod (moving an existing
                # veth between namespaces costs about 20 ms; this costs about 1).
                ipr.link("add", ifname=veth, kind="veth", peer={"ifname": "eth0", "net_ns_pid": sandbox_pid})
                (index,) = ipr.link_lookup(ifname=veth)
                (bridge,) = ipr.link_lookup(ifname=BRIDGE)
                ipr.link("set", index=index, master=bridge, state="up")
                # Hairpin: a pod reaching itself through its Service comes back out of the same
                # bridge port. Must match bridge-nf-call-iptables=1 set on the node (network.py).
                ipr.brport("set", index=index, mode=1)  # IFLA_BRPORT_MODE is hairpin mode
            with iproute_in(sandbox_pid) as ipr:
                (eth0,) = ipr.link_lookup(ifname="eth0")
                ipr.addr("add", index=eth0, address=str(ip), prefixlen=node.pod_cidr.prefixlen)
                ipr.link("set", index=eth0, state="up")
                ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway))
        except (NetlinkError, OSError, ValueError) as err:
            ipam.release(pod)
            self._delete_link(node, veth)
            raise PodNetworkError(f"attach {pod} ({veth}) to {BRIDGE} on {node.name}: {err}") from err
        return Attachment(pod, ip, node.pod_cidr.prefixlen, gateway, veth)

    def delete(self, node: NodeRef, attachment: Attachment) -> None:
        """Tolerates "already gone": the veth dies with the pod's namespace anyway."""
        self._delete_link(node, attachment.host_veth)
        self._ipam(node).release(attachment.pod)

    @staticmethod
    def _delete_link(node: NodeRef, veth: str) -> None:
        try:
            with iproute_in(node.pid) as ipr:
                found = ipr.link_lookup(ifname=veth)
                if found:
                    ipr.link("del", index=found[0])
        except (NetlinkError, OSError):
            pass

    def check(self, node: NodeRef, attachment: Attachment, sandbox_pid: int) -> list[str]:
        """What is wrong with an attachment, as CNI CHECK would report; [] when all is well."""
        problems = []
        with iproute_in(node.pid) as ipr:
            found = ipr.link_lookup(ifname=attachment.host_veth)
            if not found:
                problems.append(f"{attachment.host_veth} is missing on {node.name}")
            else:
                link = ipr.get_links(found[0])[0]
                (bridge,) = ipr.link_lookup(ifname=BRIDGE)
                if link.get_attr("IFLA_MASTER") != bridge:
                    problems.append(f"{attachment.host_veth} is not on {BRIDGE}")
        with iproute_in(sandbox_pid) as ipr:
            addrs = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(label="eth0")}
            if str(attachment.ip) not in addrs:
                problems.append(f"eth0 in {attachment.pod} lacks {attachment.ip}")
            if not ipr.get_default_routes():
                problems.append(f"{attachment.pod} has no default route")
        return problems
