"""Pure: flannel's host-gw and vxlan backends as data, planned from the Node objects.

As flannel's kube subnet manager (flannel-io/flannel pkg/subnet/kube), a node takes part once
its Node object carries a pod CIDR (spec.podCIDRs, else spec.podCIDR) and flannel's
annotations: `flannel.alpha.coreos.com/kube-subnet-manager: "true"`, `backend-type`,
`backend-data` and `public-ip`. That is its lease. Every node publishes its own
(`own_annotations`) and plans, for each other node's lease of its own backend type:

- host-gw (pkg/backend/hostgw): the route `CIDR via PUBLIC_IP dev UPLINK`; backend-data is
  `null`.
- vxlan (pkg/backend/vxlan): one device `flannel.1` (VNI 1, UDP port 8472, local = the node's
  public IP on its uplink, learning off, MTU = the uplink's less 50, address = its own pod
  CIDR's network address /32), and per remote node the neighbour `CIDR.network lladdr
  VTEP_MAC` (the ARP entry), the FDB entry `VTEP_MAC dst PUBLIC_IP` (where that VTEP's frames
  go) and the route `CIDR via CIDR.network dev flannel.1 onlink`; backend-data is
  `{"VNI":1,"VtepMAC":"..."}`, the MAC of the node's own flannel.1.

A node without a lease of its own (the master here: no kubelet, no pod CIDR; a worker whose
kubelet has not finished registering its Node, whose status then has no addresses yet) still
gets the routes and VTEP entries to the others; it publishes nothing and masquerades nothing.

With ip-masq (flanneld --ip-masq) traffic from the pods to outside the cluster network is
masqueraded by the chain FLANNEL-POSTRTG in the nat table, jumped to from POSTROUTING
(pkg/trafficmngr/iptables masqRules, rule for rule): in these modes the gateway router knows
no pod CIDR, so replies must come back to a node's address.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network

from testbed.proxy.iptables import JumpRule, rule_text
from testbed.proxy.model import MASQUERADE_BIT

PREFIX = "flannel.alpha.coreos.com/"
KUBE_SUBNET_MANAGER = PREFIX + "kube-subnet-manager"
BACKEND_TYPE = PREFIX + "backend-type"
BACKEND_DATA = PREFIX + "backend-data"
PUBLIC_IP = PREFIX + "public-ip"
BACKENDS = ("host-gw", "vxlan")
VNI = 1
VXLAN_PORT = 8472          # flannel's default (the kernel's own; IANA's is 4789)
ENCAP_OVERHEAD = 50        # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
MASQ_CHAIN = "FLANNEL-POSTRTG"
MASQ_COMMENT = "flanneld masq"
# kube-proxy's masquerade mark (its bit alone, as flannel writes it: 0x4000/0x4000): it does
# that NAT itself
KUBE_PROXY_MARK = "{0:#x}/{0:#x}".format(1 << MASQUERADE_BIT)
MULTICAST = "224.0.0.0/4"
MASQ_JUMP = JumpRule("nat", "POSTROUTING", ("-m", "comment", "--comment", MASQ_COMMENT,
                                            "-j", MASQ_CHAIN))
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def device_name(vni: int = VNI) -> str:
    """flannel's VXLAN device: flannel.VNI."""
    return f"flannel.{vni}"


# -- what a node holds ---------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Route:
    dst: IPv4Network
    gateway: IPv4Address
    dev: str
    onlink: bool = False

    def __str__(self) -> str:
        return f"{self.dst} via {self.gateway} dev {self.dev}" + (" onlink" if self.onlink else "")


@dataclass(frozen=True, order=True)
class FdbEntry:
    """`bridge fdb` entry of the VXLAN device: frames for `mac` go to the VTEP at `dst`."""

    mac: str
    dst: IPv4Address

    def __str__(self) -> str:
        return f"{self.mac} dst {self.dst}"


@dataclass(frozen=True, order=True)
class Neighbour:
    """A permanent neighbour (ARP) entry of the VXLAN device."""

    ip: IPv4Address
    mac: str

    def __str__(self) -> str:
        return f"{self.ip} lladdr {self.mac}"


@dataclass(frozen=True)
class VxlanDevice:
    """The VXLAN device's configuration: what is wanted, or what the kernel has."""

    name: str
    vni: int
    port: int
    local: IPv4Address | None
    link: str                  # the uplink the encapsulated packets leave by
    mtu: int
    learning: bool = False


@dataclass(frozen=True)
class VxlanState:
    """A device of that name as the kernel has it: `kind` "vxlan" (then `device`), or another."""

    kind: str
    device: VxlanDevice | None = None
    mac: str = ""
    addresses: frozenset[IPv4Network] = frozenset()
    up: bool = False


def vxlan_incompatible(want: VxlanDevice, have: VxlanState) -> str:
    """Why the existing device cannot be kept (flannel's vxlanLinksIncompat), "" when it can:
    a different VNI, port, local address, uplink or learning setting means a new device; the
    MTU, addresses and state are set in place."""
    if have.kind != "vxlan" or have.device is None:
        return f"{want.name} is a {have.kind or 'unknown'} device, not vxlan"
    dev = have.device
    for what, a, b in (("VNI", want.vni, dev.vni), ("port", want.port, dev.port),
                       ("local address", want.local, dev.local), ("uplink", want.link, dev.link),
                       ("learning", want.learning, dev.learning)):
        if a != b:
            return f"{what} {b} where {a} is wanted"
    return ""


# -- the Node objects ------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeView:
    """What routing reads of a Node object (a kubelet's heartbeat changes none of it)."""

    name: str
    pod_cidrs: tuple[str, ...] = ()
    internal_ip: str = ""
    annotations: tuple[tuple[str, str], ...] = ()    # flannel's only

    def annotation(self, key: str) -> str | None:
        return dict(self.annotations).get(key)


def node_view(obj: dict) -> NodeView:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    cidrs = [str(c) for c in spec.get("podCIDRs") or []] or \
        ([str(spec["podCIDR"])] if spec.get("podCIDR") else [])
    internal = next((str(a.get("address") or "") for a in (obj.get("status") or {}).get("addresses") or []
                     if isinstance(a, dict) and a.get("type") == "InternalIP"), "")
    notes = meta.get("annotations") or {}
    return NodeView(str(meta.get("name") or ""), tuple(cidrs), internal,
                    tuple(sorted((str(k), str(v)) for k, v in notes.items()
                                 if str(k).startswith(PREFIX))))


def pod_cidr(view: NodeView) -> IPv4Network | None:
    """The node's IPv4 pod CIDR (the first of spec.podCIDRs that is one), None without."""
    for text in view.pod_cidrs:
        try:
            net = ip_network(text, strict=False)
        except ValueError:
            continue
        if isinstance(net, IPv4Network):
            return net
    return None


@dataclass(frozen=True)
class Lease:
    """A node's part in the flannel network (flannel's lease, from its Node object)."""

    node: str
    subnet: IPv4Network
    public_ip: IPv4Address
    backend_type: str
    vtep_mac: str = ""         # vxlan


def parse_lease(view: NodeView) -> tuple[Lease | None, str]:
    """The node's lease, or None and why it has none (flannel's nodeToLease)."""
    if view.annotation(KUBE_SUBNET_MANAGER) != "true":
        return None, f"no {KUBE_SUBNET_MANAGER}: \"true\" annotation (flannel has not joined it)"
    subnet = pod_cidr(view)
    if subnet is None:
        return None, "no IPv4 pod CIDR in spec.podCIDRs"
    try:
        public = ip_address(view.annotation(PUBLIC_IP) or "")
    except ValueError:
        return None, f"{PUBLIC_IP} {view.annotation(PUBLIC_IP)!r} is no IPv4 address"
    if not isinstance(public, IPv4Address):
        return None, f"{PUBLIC_IP} {public} is no IPv4 address"
    backend = view.annotation(BACKEND_TYPE) or ""
    mac = ""
    if backend == "vxlan":
        mac, why = _vtep_mac(view)
        if not mac:
            return None, why
    return Lease(view.name, subnet, public, backend, mac), ""


def _vtep_mac(view: NodeView) -> tuple[str, str]:
    """The VtepMAC of the node's backend-data (lower case), or "" and why there is none."""
    try:
        data = json.loads(view.annotation(BACKEND_DATA) or "")
    except ValueError:
        return "", f"{BACKEND_DATA} is not JSON"
    mac = str(data.get("VtepMAC") or "").lower() if isinstance(data, dict) else ""
    if not _MAC.match(mac):
        return "", f"{BACKEND_DATA} has no VtepMAC (a MAC address)"
    return mac, ""


def stored_vtep_mac(view: NodeView | None) -> str:
    """The VTEP MAC a node published before (flannel's GetStoredMacAddresses): a restarted
    flanneld that must make its device again gives it the same address, so the other nodes'
    entries stay right."""
    if view is None or view.annotation(BACKEND_TYPE) != "vxlan":
        return ""
    return _vtep_mac(view)[0]


def own_annotations(backend: str, public_ip: IPv4Address, vtep_mac: str = "",
                    vni: int = VNI) -> dict[str, str]:
    """The annotations a node publishes on its Node object (flannel's AcquireLease)."""
    data = "null" if backend == "host-gw" else \
        json.dumps({"VNI": vni, "VtepMAC": vtep_mac}, separators=(",", ":"))
    return {BACKEND_DATA: data, BACKEND_TYPE: backend, KUBE_SUBNET_MANAGER: "true",
            PUBLIC_IP: str(public_ip)}


# -- the plan ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """One node's flanneld: its backend, where it is, and the cluster network."""

    backend: str                   # BACKENDS
    node: str
    uplink: str                    # the node's interface towards the other nodes
    cluster_cidr: IPv4Network      # flannel's Network
    public_ip: IPv4Address | None = None   # None: the Node's InternalIP
    ip_masq: bool = True
    vni: int = VNI
    port: int = VXLAN_PORT

    @property
    def device(self) -> str:
        return device_name(self.vni)


@dataclass(frozen=True)
class Plan:
    subnet: IPv4Network | None                 # the node's own lease, if it has one
    routes: frozenset[Route] = frozenset()
    fdb: frozenset[FdbEntry] = frozenset()
    neighbours: frozenset[Neighbour] = frozenset()
    annotations: dict[str, str] = field(default_factory=dict)   # to publish ({}: none)
    masq: tuple[tuple[str, ...], ...] = ()     # FLANNEL-POSTRTG's rules (): none
    remotes: tuple[tuple[str, str], ...] = ()  # (node, pod CIDR) reached
    ignored: tuple[tuple[str, str], ...] = ()  # (node, why not)


def public_ip_of(config: Config, own: NodeView | None) -> IPv4Address | None:
    if config.public_ip is not None:
        return config.public_ip
    try:
        found = ip_address(own.internal_ip) if own is not None else None
    except ValueError:
        return None
    return found if isinstance(found, IPv4Address) else None


def vxlan_device(config: Config, public_ip: IPv4Address | None, uplink_mtu: int) -> VxlanDevice:
    return VxlanDevice(config.device, config.vni, config.port, public_ip, config.uplink,
                       uplink_mtu - ENCAP_OVERHEAD)


def device_addresses(config: Config, own: NodeView | None) -> frozenset[IPv4Network]:
    """The VXLAN device's address: its own pod CIDR's network address /32 (flannel's
    Configure), none without a pod CIDR or under host-gw."""
    subnet = pod_cidr(own) if own is not None else None
    if config.backend != "vxlan" or subnet is None:
        return frozenset()
    return frozenset({IPv4Network(f"{subnet.network_address}/32")})


def plan(config: Config, nodes: Iterable[NodeView], vtep_mac: str = "") -> Plan:
    """What the node `config.node` must hold, given every Node object and (vxlan) the MAC of
    its own device."""
    views = {v.name: v for v in nodes}
    own = views.get(config.node)
    subnet = pod_cidr(own) if own is not None else None
    public = public_ip_of(config, own)
    routes, fdb, neighbours = set(), set(), set()
    remotes, ignored = [], []
    for name in sorted(views):
        if name == config.node:
            continue
        lease, why = parse_lease(views[name])
        if lease is None:
            ignored.append((name, why))
            continue
        if lease.backend_type != config.backend:
            # flannel: "ignoring non-vxlan subnet": a node of another backend is not reached
            ignored.append((name, f"backend-type {lease.backend_type or '(none)'}, not {config.backend}"))
            continue
        if subnet is not None and lease.subnet.overlaps(subnet):
            ignored.append((name, f"pod CIDR {lease.subnet} overlaps this node's {subnet}"))
            continue
        if config.backend == "host-gw":
            routes.add(Route(lease.subnet, lease.public_ip, config.uplink))
        else:
            gateway = lease.subnet.network_address
            neighbours.add(Neighbour(gateway, lease.vtep_mac))
            fdb.add(FdbEntry(lease.vtep_mac, lease.public_ip))
            routes.add(Route(lease.subnet, gateway, config.device, onlink=True))
        remotes.append((name, str(lease.subnet)))
    # The lease is taken once the kubelet has registered the Node (its status holds its
    # addresses): it writes the Node in steps (create, update, status), and a patch between
    # them would make its next write conflict.
    leased = own is not None and subnet is not None and public is not None \
        and bool(own.internal_ip) and (config.backend == "host-gw" or bool(vtep_mac))
    return Plan(
        subnet=subnet if leased else None, routes=frozenset(routes), fdb=frozenset(fdb),
        neighbours=frozenset(neighbours),
        annotations=own_annotations(config.backend, public, vtep_mac, config.vni) if leased else {},
        masq=masq_rules(config.cluster_cidr, subnet) if leased and config.ip_masq else (),
        remotes=tuple(remotes), ignored=tuple(ignored))


def owned_route(route: Route, config: Config, subnet: IPv4Network | None) -> bool:
    """Is a route in the node's table one flanneld keeps (and so removes when no lease wants
    it)? A route via a gateway to part of the cluster network, other than the node's own pod
    CIDR, on its uplink or its VXLAN device; a CNI plugin's routes to its own pods have no
    gateway and are never touched."""
    return (route.dst.subnet_of(config.cluster_cidr) and route.dst != subnet
            and route.dev in (config.uplink, config.device))


def annotations_stale(own: NodeView | None, wanted: dict[str, str]) -> bool:
    """Must the node's annotations be written (a missing or different value)?"""
    if not wanted or own is None:
        return False
    have = dict(own.annotations)
    return any(have.get(k) != v for k, v in wanted.items())


# -- masquerading ------------------------------------------------------------------------------------

def masq_rules(cluster: IPv4Network, pod: IPv4Network) -> tuple[tuple[str, ...], ...]:
    """FLANNEL-POSTRTG's rules (flannel's masqRules, with --random-fully, which this iptables
    has), in order."""
    c, p, note = str(cluster), str(pod), ("-m", "comment", "--comment", MASQ_COMMENT)
    return (
        # kube-proxy masquerades what it marked itself (no double NAT)
        ("-m", "mark", "--mark", KUBE_PROXY_MARK, *note, "-j", "RETURN"),
        # pod to pod stays as it is, both ways
        ("-s", p, "-d", c, *note, "-j", "RETURN"),
        ("-s", c, "-d", p, *note, "-j", "RETURN"),
        # outside traffic arriving for this node's pods keeps its source
        ("!", "-s", c, "-d", p, *note, "-j", "RETURN"),
        # pods to outside the cluster network (not multicast): the node's address
        ("-s", c, "!", "-d", MULTICAST, *note, "-j", "MASQUERADE", "--random-fully"),
        # the node itself to other nodes' pods
        ("!", "-s", c, "-d", c, *note, "-j", "MASQUERADE", "--random-fully"),
    )


def masq_restore(rules: tuple[tuple[str, ...], ...]) -> str:
    """iptables-restore --noflush text that rewrites FLANNEL-POSTRTG (declaring it flushes it)."""
    lines = ["*nat", f":{MASQ_CHAIN} - [0:0]"]
    lines += [f"-A {MASQ_CHAIN} " + rule_text(JumpRule("nat", MASQ_CHAIN, r)) for r in rules]
    return "\n".join(lines + ["COMMIT"]) + "\n"
