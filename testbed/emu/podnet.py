"""Acts: pod networking behind one small interface (add, delete, check), in the spirit of CNI.

`PodNetwork` is what the rest of the testbed calls (add, delete, check; after a kubelet restart
adopt, then collect what no pod holds any more; retry_pending, from the kubelet's sync loop, for
deletes that failed); `BridgeNetwork` is the built-in plugin,
doing what the CNI bridge plugin with host-local IPAM does: a veth pair per pod, created with
one end (`eth0`) directly inside the pod's namespace and the other on the node's cbr0 with
hairpin mode on, an address from the node's pod CIDR, and a default route via cbr0's address,
both ends with the cluster's MTU (1450 under VXLAN). Real CNI plugins are the other
implementation of the same interface (emu/cninet.py).

What an implementation tells the runtime (emu/pods.py) besides its methods: `pause_wires`, the
pod's side is done by its pause process from one line "ADDRESS PREFIXLEN GATEWAY MTU" (the
built-in network; CNI plugins configure eth0 themselves), and `delete_in_netns`, delete runs
while the pod's namespace still exists (CNI DEL needs it; the built-in network's veth dies
with the namespace anyway).
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from pyroute2.netlink.exceptions import NetlinkError

from testbed.net.netns import iproute_in
from testbed.node.ipam import HostLocalIPAM
from testbed.spec.cniconf import BRIDGE

SYSTEM_NAMESPACE_PREFIX = "kube-system/"
HOST_IFINDEX_START = 1000  # host-side veths on a node are numbered from here
POD_IFINDEX = 2  # eth0 is created as interface 2 of the pod's fresh namespace (lo is 1)


class PodNetworkError(RuntimeError):
    pass


class SandboxNetworkError(PodNetworkError):
    """Setting up a sandbox's network failed (a plugin's ADD); worded as containerd words it:
    failed to setup network for sandbox "ID": plugin type="..." failed (add): MSG. The kubelet
    reports it as FailedCreatePodSandBox."""

    def __init__(self, sandbox_id: str, cause: object):
        self.sandbox_id = sandbox_id
        super().__init__(f'failed to setup network for sandbox "{sandbox_id}": {cause}')


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


PodSide = Callable[[list[tuple[int, "Attachment"]]], None]   # (sandbox pid, attachment) -> eth0 set up


class PodNetwork(Protocol):
    mtu: int
    pause_wires: bool
    delete_in_netns: bool

    def add(self, node: NodeRef, pod: str, uid: str, sandbox_pid: int) -> Attachment: ...
    def add_many(self, node: NodeRef, pods: list[tuple[str, str, int]],
                 pod_side: PodSide | None = None,
                 port_mappings: Mapping[str, list[dict]] | None = None) -> list[Attachment]: ...
    def delete(self, node: NodeRef, attachment: Attachment, sandbox_pid: int | None = None) -> None: ...
    def check(self, node: NodeRef, attachment: Attachment, sandbox_pid: int) -> list[str]: ...
    def adopt(self, node: NodeRef, attachment: Attachment) -> None: ...
    def collect(self, node: NodeRef) -> None: ...
    def retry_pending(self) -> int: ...


def host_veth_name(uid: str) -> str:
    """`veth` + 8 hex digits of the pod's uid, as many CNI plugins name the host end."""
    return "veth" + hashlib.sha256(uid.encode()).hexdigest()[:8]


class BridgeNetwork:
    """The built-in plugin: cbr0 bridge + veth + host-local IPAM per node."""

    pause_wires = True
    delete_in_netns = False

    def __init__(self, mtu: int = 1500) -> None:
        self.mtu = mtu
        self.ipam: dict[str, HostLocalIPAM] = {}
        self.next_index: dict[str, int] = {}

    def _ipam(self, node: NodeRef) -> HostLocalIPAM:
        if node.name not in self.ipam:
            self.ipam[node.name] = HostLocalIPAM(node.pod_cidr)
        return self.ipam[node.name]

    def add(self, node: NodeRef, pod: str, uid: str, sandbox_pid: int) -> Attachment:
        return self.add_many(node, [(pod, uid, sandbox_pid)])[0]

    def add_many(self, node: NodeRef, pods: list[tuple[str, str, int]],
                 pod_side: PodSide | None = None,
                 port_mappings: Mapping[str, list[dict]] | None = None) -> list[Attachment]:
        """ADD for several pods (pod, uid, sandbox pid) of one node over one netlink socket.

        The node's side (veth on cbr0, hairpin) is done here; the pod's side (eth0's address,
        MTU, up, default route) by `pod_side` when given (the runtime has the pause processes
        do it, inside their pods, in parallel), else here over a netlink socket in each pod.
        `port_mappings` (hostPort) are not supported by the built-in network and are ignored.
        """
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
                    index = self._add_veth(node_ipr, node, veth, bridge, sandbox_pid)
                    # Hairpin: a pod reaching itself through its Service comes back out of the
                    # same bridge port. Must match bridge-nf-call-iptables=1 on the node (network.py).
                    node_ipr.brport("set", index=index, mode=1)  # IFLA_BRPORT_MODE is hairpin mode
                except (NetlinkError, OSError, ValueError) as err:
                    ipam.release(pod)
                    self._delete_link(node, veth)
                    raise PodNetworkError(f"attach {pod} ({veth}) to {BRIDGE} on {node.name}: {err}") from err
                out.append(Attachment(pod, ip, node.pod_cidr.prefixlen, gateway, veth))
        jobs = [(sandbox_pid, a) for (_, _, sandbox_pid), a in zip(pods, out, strict=True)]
        try:
            (pod_side or self._pod_side)(jobs)
        except (NetlinkError, OSError, ValueError, PodNetworkError) as err:
            for attachment in out:
                ipam.release(attachment.pod)
                self._delete_link(node, attachment.host_veth)
            raise PodNetworkError(f"configure eth0 of pods on {node.name}: {err}") from err
        return out

    def _add_veth(self, ipr, node: NodeRef, veth: str, bridge: int, sandbox_pid: int) -> int:
        """Create the pair and return the host end's index, which it is given here (the node's
        namespace holds only the testbed's interfaces), saving a lookup per pod."""
        index = self.next_index.get(node.name, HOST_IFINDEX_START)
        for _ in range(8):
            try:
                ipr.link("add", ifname=veth, kind="veth", master=bridge, state="up", index=index,
                         mtu=self.mtu,
                         peer={"ifname": "eth0", "net_ns_pid": sandbox_pid, "index": POD_IFINDEX})
                self.next_index[node.name] = index + 1
                return index
            except NetlinkError as err:
                if err.code != errno.EEXIST or ipr.link_lookup(ifname=veth):
                    raise
                # Taken (by pods adopted after a restart): continue after the highest index.
                index = max(HOST_IFINDEX_START, max(link["index"] for link in ipr.get_links()) + 1)
        raise PodNetworkError(f"no free interface index on {node.name} near {index}")

    def _pod_side(self, jobs: list[tuple[int, Attachment]]) -> None:
        for sandbox_pid, a in jobs:
            with iproute_in(sandbox_pid) as ipr:
                ipr.addr("add", index=POD_IFINDEX, address=str(a.ip), prefixlen=a.prefixlen)
                ipr.link("set", index=POD_IFINDEX, state="up", mtu=self.mtu)
                ipr.route("add", dst="0.0.0.0/0", gateway=str(a.gateway))

    def adopt(self, node: NodeRef, attachment: Attachment) -> None:
        """Take back an attachment made before a restart, so its address is not handed out."""
        self._ipam(node).assign(attachment.pod, attachment.ip)

    def collect(self, node: NodeRef) -> None:
        """Nothing to collect: the addresses live in this process only (adopt takes back the
        pods' own), and a veth goes with its pod's namespace."""

    def retry_pending(self) -> int:
        """Nothing is pending: a delete here does not fail (see `delete`)."""
        return 0

    def delete(self, node: NodeRef, attachment: Attachment, sandbox_pid: int | None = None) -> None:
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
        try:
            with iproute_in(node.pid) as ipr:
                found = ipr.link_lookup(ifname=attachment.host_veth)
                bridge = ipr.link_lookup(ifname=BRIDGE)
                if not found:
                    problems.append(f"{attachment.host_veth} is missing on {node.name}")
                elif not bridge:
                    problems.append(f"{BRIDGE} is missing on {node.name}")
                elif ipr.get_links(found[0])[0].get_attr("IFLA_MASTER") != bridge[0]:
                    problems.append(f"{attachment.host_veth} is not on {BRIDGE}")
            with iproute_in(sandbox_pid) as ipr:
                addrs = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(label="eth0")}
                if str(attachment.ip) not in addrs:
                    problems.append(f"eth0 in {attachment.pod} lacks {attachment.ip}")
                if not ipr.get_default_routes():
                    problems.append(f"{attachment.pod} has no default route")
        except (NetlinkError, OSError) as err:   # a namespace gone meanwhile, as CHECK would fail
            problems.append(f"cannot inspect the network of {attachment.pod} on {node.name}: {err}")
        return problems
