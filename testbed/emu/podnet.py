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

SYSTEM_NAMESPACE_PREFIX = "kube-system/"
POD_IFINDEX = 2  # eth0 is created as interface 2 of the pod's fresh namespace (lo is 1)


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
    def add_many(self, node: NodeRef, pods: list[tuple[str, str, int]]) -> list[Attachment]: ...
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
        return self.add_many(node, [(pod, uid, sandbox_pid)])[0]

    def add_many(self, node: NodeRef, pods: list[tuple[str, str, int]]) -> list[Attachment]:
        """ADD for several pods (pod, uid, sandbox pid) of one node over one netlink socket."""
        ipam = self._ipam(node)
        gateway = node.pod_cidr.network_address + 1
        out: list[Attachment] = []
        with iproute_in(node.pid) as node_ipr:
            bridge = node_ipr.link("get", ifname=BRIDGE)[0]["index"]
            for pod, uid, sandbox_pid in pods:
                # System pods (kube-system: DNS, ...) take addresses from the top of the
                # range, so workloads get .2, .3, ... as in the articles' pictures.
                ip = ipam.allocate(pod, from_top=pod.startswith(SYSTEM_NAMESPACE_PREFIX))
                veth = host_veth_name(uid)
                try:
                    # Both ends made in place, the host end already on cbr0 and up: the peer is
                    # born inside the pod as its interface 2 (moving an existing veth between
                    # namespaces costs about 20 ms; this costs about 1).
                    node_ipr.link("add", ifname=veth, kind="veth", master=bridge, state="up",
                                  peer={"ifname": "eth0", "net_ns_pid": sandbox_pid, "index": POD_IFINDEX})
                    index = node_ipr.link("get", ifname=veth)[0]["index"]
                    # Hairpin: a pod reaching itself through its Service comes back out of the
                    # same bridge port. Must match bridge-nf-call-iptables=1 on the node (network.py).
                    node_ipr.brport("set", index=index, mode=1)  # IFLA_BRPORT_MODE is hairpin mode
                    with iproute_in(sandbox_pid) as ipr:
                        ipr.addr("add", index=POD_IFINDEX, address=str(ip), prefixlen=node.pod_cidr.prefixlen)
                        ipr.link("set", index=POD_IFINDEX, state="up")
                        ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway))
                except (NetlinkError, OSError, ValueError) as err:
                    ipam.release(pod)
                    self._delete_link(node, veth)
                    raise PodNetworkError(f"attach {pod} ({veth}) to {BRIDGE} on {node.name}: {err}") from err
                out.append(Attachment(pod, ip, node.pod_cidr.prefixlen, gateway, veth))
        return out

    def adopt(self, node: NodeRef, attachment: Attachment) -> None:
        """Take back an attachment made before a restart, so its address is not handed out."""
        self._ipam(node).assign(attachment.pod, attachment.ip)

    def delete(self, node: NodeRef, attachment: Attachment) -> None:
        """Tolerates "already gone": the veth dies with the pod's namespace anyway."""
        self._delete_link(node, attachment.host_veth)
        self._ipam(node).release(attachment.pod)

    @staticmethod
    def _delete_link(node: NodeRef, veth: str) -> None:
        try:
            with iproute_in(node.pid) as ipr:
                ipr.link("del", ifname=veth)
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
