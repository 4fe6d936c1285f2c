"""Pure: Services and endpoints as kube-proxy sees them, and the proxier's settings.

Owns the typed records the renderers work from (`ServicePort`, `Endpoint`, `ProxierSettings`)
and endpoint categorisation (`categorize`, upstream's `proxy.CategorizeEndpoints` without
topology hints). Building these records from Kubernetes dicts lives in `objects.py`; the
renderers (`iptables.py`, `nftables.py`) only read them. Nothing here touches the system.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from testbed.proxy import names

IPV4 = "IPv4"
IPV6 = "IPv6"
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds; v1.DefaultClientIPServiceAffinitySeconds


@dataclass(frozen=True, order=True)
class ServicePortName:
    """Upstream's proxy.ServicePortName: which service port, plus its protocol."""

    namespace: str
    name: str
    port: str  # the port *name*, "" when unnamed
    protocol: str  # "TCP" | "UDP" | "SCTP"

    def __str__(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port}" if self.port else base

    @property
    def service(self) -> tuple[str, str]:
        """(namespace, name): the key partial syncs are tracked by."""
        return (self.namespace, self.name)


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service, with everything kube-proxy reads from the Service."""

    name: ServicePortName
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()  # status.loadBalancer.ingress[].ip, VIP mode only
    load_balancer_source_ranges: tuple[str, ...] = ()  # canonical CIDRs
    session_affinity_timeout: int | None = None  # seconds when sessionAffinity is ClientIP
    external_policy_local: bool = False  # eTP Local on a NodePort/LoadBalancer service
    internal_policy_local: bool = False  # iTP Local
    health_check_node_port: int = 0  # only kept for LoadBalancer + eTP Local

    @property
    def protocol(self) -> str:
        """Lower-case protocol, as it appears in rules ("tcp")."""
        return self.name.protocol.lower()

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.load_balancer_ips or self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (
            self.external_policy_local and self.externally_accessible)

    # Chain names are derived, never stored (design rule 3).
    @property
    def svc_chain(self) -> str:
        return names.svc_chain(str(self.name), self.protocol)

    @property
    def svl_chain(self) -> str:
        return names.svl_chain(str(self.name), self.protocol)

    @property
    def ext_chain(self) -> str:
        return names.ext_chain(str(self.name), self.protocol)

    @property
    def fw_chain(self) -> str:
        return names.fw_chain(str(self.name), self.protocol)


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of one service port (upstream's BaseEndpointInfo)."""

    ip: str  # canonical
    port: int  # the EndpointSlice (target) port
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str | None = None
    # "ip:port", made once: a full sync of 10,000 Services formats each endpoint six times
    address: str = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", names.join_host_port(self.ip, self.port))

    def __str__(self) -> str:
        return self.address

    def is_local(self, node_name: str) -> bool:
        return self.node_name is not None and self.node_name == node_name

    def sep_chain(self, spn: ServicePortName) -> str:
        return names.sep_chain(str(spn), spn.protocol, str(self))


EndpointsMap = Mapping[ServicePortName, Sequence[Endpoint]]


@dataclass(frozen=True)
class Categorized:
    """The endpoint sets one service port's rules are built from."""

    cluster: tuple[Endpoint, ...]
    local: tuple[Endpoint, ...]
    all_reachable: tuple[Endpoint, ...]  # one SEP chain each
    has_any: bool


def categorize(endpoints: Iterable[Endpoint], svc: ServicePort, node_name: str) -> Categorized:
    """Upstream CategorizeEndpoints (no topology): ready first, serving+terminating fallback."""
    eps = sorted(endpoints, key=str)  # byte-wise "ip:port" order, as upstream's endpoint map
    cluster: list[Endpoint] = []
    has_any = False
    if svc.uses_cluster_endpoints:
        cluster = [ep for ep in eps if ep.ready]
        if not cluster:
            cluster = [ep for ep in eps if ep.serving and ep.terminating]
        has_any = bool(cluster)
    if not svc.uses_local_endpoints:
        return Categorized(tuple(cluster), (), tuple(cluster), has_any)

    local_ready = local_terminating = False
    for ep in eps:
        if ep.ready:
            has_any = True
            local_ready = local_ready or ep.is_local(node_name)
        elif ep.serving and ep.terminating:
            has_any = True
            local_terminating = local_terminating or ep.is_local(node_name)
    local: list[Endpoint] = []
    if local_ready:
        local = [ep for ep in eps if ep.is_local(node_name) and ep.ready]
    elif local_terminating:
        local = [ep for ep in eps if ep.is_local(node_name) and ep.serving and ep.terminating]

    if not svc.uses_cluster_endpoints:
        return Categorized((), tuple(local), tuple(local), has_any)
    if not local_terminating or local_ready:
        # local holds Ready endpoints only, so it is a subset of cluster.
        return Categorized(tuple(cluster), tuple(local), tuple(cluster), has_any)
    # Upstream merges through a Go map (random order); we keep the "ip:port" order.
    merged = {str(ep): ep for ep in (*cluster, *local)}
    reachable = tuple(merged[k] for k in sorted(merged))
    return Categorized(tuple(cluster), tuple(local), reachable, has_any)


@dataclass(frozen=True)
class TrafficPlan:
    """Where a Service port's traffic goes, the same for both proxiers (upstream's logic).

    Internal traffic (to the ClusterIP) goes to the cluster chain, or to the local chain with
    internalTrafficPolicy Local; external traffic likewise with externalTrafficPolicy Local.
    `has_*` False means there is nothing to send it to (reject or drop). The external chain
    exists when the Service is reachable from outside; the firewall chain when it also has
    load balancer addresses with source ranges.
    """

    internal_chain: str
    has_internal: bool
    external_chain: str
    has_external: bool
    uses_external_chain: bool
    uses_firewall: bool


def traffic_plan(svc: ServicePort, cat: Categorized, cluster_chain: str, local_chain: str) -> TrafficPlan:
    has_endpoints = cat.has_any
    internal = (local_chain, has_endpoints and bool(cat.local)) if svc.internal_policy_local \
        else (cluster_chain, has_endpoints)
    external = (local_chain, has_endpoints and bool(cat.local)) if svc.external_policy_local \
        else (cluster_chain, has_endpoints)
    return TrafficPlan(*internal, *external, has_endpoints and svc.externally_accessible,
                       has_endpoints and bool(svc.load_balancer_ips) and bool(svc.load_balancer_source_ranges))


@dataclass(frozen=True)
class LocalDetector:
    """How kube-proxy tells pod traffic from other traffic (pkg/proxy/util/localdetector.go)."""

    mode: str = "ClusterCIDR"  # ClusterCIDR | NodeCIDR | BridgeInterface | InterfaceNamePrefix | None
    value: str = ""  # the CIDR, bridge name or interface prefix

    @property
    def implemented(self) -> bool:
        return self.mode != "None" and bool(self.value)

    def if_local(self) -> list[str]:
        if self.mode in ("BridgeInterface", "InterfaceNamePrefix"):
            return ["-i", self._iface()]
        return ["-s", self.value]

    def if_not_local(self) -> list[str]:
        if self.mode in ("BridgeInterface", "InterfaceNamePrefix"):
            return ["!", "-i", self._iface()]
        return ["!", "-s", self.value]

    def if_local_nft(self, ipx: str) -> str:
        if self.mode in ("BridgeInterface", "InterfaceNamePrefix"):
            return f"iifname {self._iface()}"
        return f"{ipx} saddr {self.value}"

    def if_not_local_nft(self, ipx: str) -> str:
        if self.mode in ("BridgeInterface", "InterfaceNamePrefix"):
            return f"iifname != {self._iface()}"
        return f"{ipx} saddr != {self.value}"

    def _iface(self) -> str:
        return self.value + "*" if self.mode == "InterfaceNamePrefix" else self.value


# kube-proxy's --iptables-masquerade-bit (upstream's default): the packets it marks with it
# it masquerades itself (flannel's masquerade rules leave them alone: routing/flannel.py)
MASQUERADE_BIT = 14


def mark_for_bit(bit: int) -> str:
    """Go's `fmt.Sprintf("%#08x", 1<<bit)`: what a real kube-proxy writes (0x00004000)."""
    return "0x" + format(1 << bit, "08x")


CT_STATE_INVALID_COUNTER = "ct_state_invalid_dropped_pkts"
LOCALHOST_NODEPORT_COUNTER = "localhost_nps_accepted_pkts"


@dataclass(frozen=True)
class ProxierSettings:
    """What a proxier knows about its node and its flags (the golden cases' `harness:`).

    Defaults are upstream's test-harness conventions (README "Harness conventions"); a real
    kube-proxy fills every field from its own node (e.g.
    `masquerade_mark=mark_for_bit(MASQUERADE_BIT)`, `has_random_fully` from the iptables
    version, `nfacct_counters` from what it could create).
    """

    node_name: str = "test-node"
    node_ip: str = "192.168.0.2"
    local_ips: tuple[str, ...] = ()  # the node's own addresses; loopback is always added
    ip_family: str = IPV4
    masquerade_mark: str = "0x4000"
    masquerade_all: bool = False
    local_detector: LocalDetector = field(default_factory=lambda: LocalDetector(
        "ClusterCIDR", "10.0.0.0/8"))
    localhost_node_ports: bool = True
    node_port_addresses: tuple[str, ...] = ()  # CIDRs; empty = every local address
    conntrack_tcp_liberal: bool = False
    nfacct_counters: frozenset[str] = frozenset({CT_STATE_INVALID_COUNTER,
                                                 LOCALHOST_NODEPORT_COUNTER})
    has_random_fully: bool = False
    large_cluster_mode: bool | None = None  # None: decide from the endpoint count (> 1000)
    full_sync: bool = True
    existing_nat_chains: tuple[str, ...] = ()  # nat chains in the kernel before this sync
    service_cidrs: tuple[str, ...] = ()  # nftables only: drop traffic to unallocated IPs

    @property
    def is_ipv6(self) -> bool:
        return self.ip_family == IPV6

    def all_local_ips(self) -> tuple[str, ...]:
        """The node's addresses including loopback, as `addrtype LOCAL` sees them."""
        out: list[str] = []
        for ip in ("127.0.0.1", "::1", *self.local_ips):
            if ip not in out:
                out.append(ip)
        return tuple(out)


LARGE_CLUSTER_ENDPOINTS = 1000


def in_family(ip: str, family: str) -> bool:
    """True if the canonical address or CIDR `ip` belongs to `family`."""
    return (":" in ip) == (family == IPV6)


def node_port_ips(settings: ProxierSettings) -> list[str] | None:
    """Upstream NodePortAddresses.GetNodeIPs: None means match all local addresses.

    CIDRs of the other family are ignored; none left (or a zero CIDR) means match all. The
    matching node IPs are sorted (upstream collects them through a Go map).
    """
    cidrs = [c for c in settings.node_port_addresses if in_family(c, settings.ip_family)]
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    if not nets or any(n.prefixlen == 0 for n in nets):
        return None
    found = {ip for ip in settings.all_local_ips() if in_family(ip, settings.ip_family)
             and any(ipaddress.ip_address(ip) in n for n in nets)}
    return sorted(found, key=lambda ip: ipaddress.ip_address(ip).packed)


def contains(cidr: str, ip: str) -> bool:
    """True if `ip` lies in `cidr` (False for mixed families or unparsable input)."""
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except (TypeError, ValueError):
        return False
