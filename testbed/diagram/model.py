"""Pure: what the cluster's picture shows (a `Picture`), from a topology or from plain data
read off a running cluster.

`from_topology(topo)` draws what `testbed up` would build, nothing running: every node's
uplink (`NODE-eth0`) and, on workers, `cbr0` with the first address of the pod CIDR; the
gateway's interfaces and the routes testbed/emu/network.py gives it (each pod CIDR via its
node's address, besides the connected subnets); the clients. No pods and no Services.

For a running cluster the acting side (testbed/emu/diagram_command.py) reads the hosts'
`ip -j addr` and `ip -j route`, the Pods, Services and EndpointSlices from the API server, and
each pod's host-side veth from its kubelet's saved sandbox; `interfaces_from_ip`,
`routes_from_ip`, `pods_from_api` and `services_from_api` turn those into the picture's parts.
Everything is sorted, so one cluster always gives one picture.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Interface, ip_address, ip_interface

from testbed.api.meta import namespace_of, object_key
from testbed.spec.cniconf import BRIDGE  # the pods' bridge on every worker, either pod network
from testbed.spec.names import ifname
from testbed.spec.topology import Topology

ROLES = ("client", "gateway", "master", "worker")


@dataclass(frozen=True)
class Interface:
    name: str
    addresses: tuple[str, ...] = ()    # IPv4 "address/prefixlen"
    master: str | None = None          # the bridge it is a port of


@dataclass(frozen=True)
class Route:
    dst: str                            # "default" or a CIDR
    via: str | None = None
    dev: str | None = None

    def text(self) -> str:
        return " ".join([self.dst, *(["via", self.via] if self.via else []),
                         *(["dev", self.dev] if self.dev else [])])


@dataclass(frozen=True)
class Host:
    """A Mininet host of the cluster: a node, the gateway or a client."""

    name: str
    role: str                            # master, worker, gateway, client
    interfaces: tuple[Interface, ...] = ()
    routes: tuple[Route, ...] = ()
    pod_cidr: str | None = None

    def interface(self, name: str) -> Interface | None:
        return next((i for i in self.interfaces if i.name == name), None)

    @property
    def bridge(self) -> Interface | None:
        return self.interface(BRIDGE)

    @property
    def uplink(self) -> Interface | None:
        """`NAME-eth0`, the link towards the gateway (or the first addressed interface that is
        neither a bridge nor a bridge port)."""
        return self.interface(ifname(self.name, "-eth0")) or next(
            (i for i in self.interfaces if i.addresses and i.name != BRIDGE and not i.master),
            None)

    @property
    def veths(self) -> tuple[Interface, ...]:
        return tuple(i for i in self.interfaces if i.master == BRIDGE)

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(a.split("/")[0] for i in self.interfaces for a in i.addresses)


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    node: str
    ip: str | None = None
    containers: tuple[str, ...] = ()
    veth: str | None = None              # the host end of its veth pair, on the node's cbr0
    phase: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePort:
    port: int
    protocol: str = "TCP"
    target: str = ""                     # targetPort, as written (a number or a port name)
    node_port: int | None = None
    name: str = ""

    def text(self) -> str:
        out = f"{self.port}/{self.protocol}"
        if self.target and self.target != str(self.port):
            out += f" \u2192 {self.target}"
        if self.node_port:
            out += f" (nodePort {self.node_port})"
        return out


@dataclass(frozen=True)
class Endpoint:
    address: str
    pod: str | None = None               # namespace/name of the pod it is, when known
    ports: tuple[str, ...] = ()          # "8080/TCP"
    ready: bool = True


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    type: str = "ClusterIP"
    cluster_ip: str | None = None
    ports: tuple[ServicePort, ...] = ()
    external_ips: tuple[str, ...] = ()   # spec.externalIPs and the load balancers' addresses
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Link:
    """A cable: `host`'s interface `iface` to `peer`'s `peer_iface` (a Mininet link)."""

    host: str
    iface: str
    peer: str
    peer_iface: str


@dataclass(frozen=True)
class Picture:
    name: str
    source: str                          # what it was drawn from, for its caption
    network_mode: str = ""
    hosts: tuple[Host, ...] = ()
    pods: tuple[Pod, ...] = ()
    services: tuple[Service, ...] = ()
    links: tuple[Link, ...] = ()

    def host(self, name: str) -> Host | None:
        return next((h for h in self.hosts if h.name == name), None)


def _role_order(host: Host) -> tuple:
    return (ROLES.index(host.role) if host.role in ROLES else len(ROLES), host.name)


def picture(name: str, source: str, network_mode: str, hosts: Iterable[Host],
            pods: Iterable[Pod] = (), services: Iterable[Service] = (),
            links: Iterable[Link] = ()) -> Picture:
    """A Picture with its parts in one order: hosts by role then name, pods by node, namespace
    and name, Services by namespace and name, links by their ends."""
    return Picture(name, source, network_mode, tuple(sorted(hosts, key=_role_order)),
                   tuple(sorted(pods, key=lambda p: (p.node, p.namespace, p.name))),
                   tuple(sorted(services, key=lambda s: (s.namespace, s.name))),
                   tuple(sorted(set(links), key=lambda k: (k.host, k.iface, k.peer))))


def topology_links(topo: Topology) -> tuple[Link, ...]:
    """The links testbed/emu/network.py makes: node i's `NODE-eth0` to the gateway's
    `GW-eth<i>`, then each client's `CLIENT-eth0` to the next gateway ports."""
    gw = topo.gateway_name
    out = [Link(node.name, ifname(node.name, "-eth0"), gw, ifname(gw, f"-eth{index}"))
           for index, node in enumerate(topo.nodes)]
    out.extend(Link(client.name, ifname(client.name, "-eth0"), gw,
                    ifname(gw, f"-eth{len(topo.nodes) + index}"))
               for index, client in enumerate(topo.clients))
    return tuple(out)


# -- from a topology ------------------------------------------------------------------------

def _connected(interfaces: Iterable[Interface]) -> list[Route]:
    out = []
    for i in interfaces:
        for a in i.addresses:
            out.append(Route(str(ip_interface(a).network), None, i.name))
    return out


def from_topology(topo: Topology) -> Picture:
    """What `testbed up` builds from `topo` (testbed/emu/network.py), before any pod runs."""
    hosts: list[Host] = []
    shared = topo.network_mode == "shared"
    links = topology_links(topo)                # the gateway's ports, nodes' then clients'
    node_links, client_links = links[:len(topo.nodes)], links[len(topo.nodes):]
    gw_ifaces: list[Interface] = []
    for link, node in zip(node_links, topo.nodes, strict=True):
        gw_ifaces.append(Interface(link.peer_iface, (), "br-nodes") if shared
                         else Interface(link.peer_iface, (f"{node.gateway}/{node.subnet.prefixlen}",)))
    if shared:
        gw_ifaces.append(Interface("br-nodes",
                                   (f"{topo.master.gateway}/{topo.node_cidr.prefixlen}",)))
    gw_ifaces.extend(Interface(link.peer_iface, (), "br-clients") for link in client_links)
    if topo.clients:
        gw_ifaces.append(Interface("br-clients", (f"{topo.clients[0].gateway}/"
                                                  f"{topo.client_cidr.prefixlen}",)))
    gw_routes = _connected(gw_ifaces)
    for node in topo.workers:
        dev = next((i.name for i in gw_ifaces for a in i.addresses
                    if node.address in IPv4Interface(a).network), None)
        gw_routes.append(Route(str(node.pod_cidr), str(node.address), dev))
    hosts.append(Host(topo.gateway_name, "gateway", tuple(gw_ifaces), tuple(gw_routes)))
    for link, node in zip(node_links, topo.nodes, strict=True):
        ifaces = [Interface(link.iface, (f"{node.address}/{node.subnet.prefixlen}",))]
        if node.pod_cidr is not None:
            ifaces.append(Interface(BRIDGE, (f"{node.bridge_address}/{node.pod_cidr.prefixlen}",)))
        routes = [Route("default", str(node.gateway), ifaces[0].name), *_connected(ifaces)]
        hosts.append(Host(node.name, node.role, tuple(ifaces), tuple(routes),
                          str(node.pod_cidr) if node.pod_cidr else None))
    for link, client in zip(client_links, topo.clients, strict=True):
        ifaces = [Interface(link.iface, (f"{client.address}/{client.subnet.prefixlen}",))]
        hosts.append(Host(client.name, "client", tuple(ifaces),
                          (Route("default", str(client.gateway), ifaces[0].name),
                           *_connected(ifaces))))
    return picture(topo.name, f"topology {topo.file}", topo.network_mode, hosts, links=links)


# -- from a running cluster's plain data ----------------------------------------------------

def interfaces_from_ip(data: object) -> tuple[Interface, ...]:
    """`ip -j addr`'s list -> the interfaces other than lo, with their IPv4 addresses."""
    out = []
    for link in data if isinstance(data, list) else []:
        if not isinstance(link, dict) or not isinstance(link.get("ifname"), str):
            continue
        if link["ifname"] == "lo":
            continue
        addrs = tuple(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info") or []
                      if isinstance(a, dict) and a.get("family") == "inet"
                      and "local" in a and "prefixlen" in a)
        master = link.get("master")
        out.append(Interface(link["ifname"], addrs, master if isinstance(master, str) else None))
    return tuple(sorted(out, key=lambda i: i.name))


def routes_from_ip(data: object) -> tuple[Route, ...]:
    """`ip -j route`'s list -> routes (main table, as the kernel lists them)."""
    out = []
    for r in data if isinstance(data, list) else []:
        if isinstance(r, dict) and isinstance(r.get("dst"), str):
            out.append(Route(r["dst"], r.get("gateway") if isinstance(r.get("gateway"), str)
                             else None, r.get("dev") if isinstance(r.get("dev"), str) else None))
    return tuple(out)


def pods_from_api(pods: Iterable[dict], veths: Mapping[str, str] | None = None) -> tuple[Pod, ...]:
    """Pod objects (as the API serves them) -> Pods; `veths` maps a pod's uid to its host-side
    veth (the kubelet's saved attachment). Pods on the host network get no veth."""
    veths = veths or {}
    out = []
    for pod in pods:
        meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
        containers = tuple(str(c.get("name", "")) for c in spec.get("containers") or []
                           if isinstance(c, dict))
        namespace, name = object_key(pod)
        out.append(Pod(namespace, name,
                       str(spec.get("nodeName") or ""), status.get("podIP") or None, containers,
                       None if spec.get("hostNetwork") else veths.get(str(meta.get("uid"))),
                       str(status.get("phase", ""))))
    return tuple(out)


def _ref_key(ref: object) -> str | None:
    if isinstance(ref, dict) and ref.get("kind", "Pod") == "Pod" and ref.get("name"):
        return "/".join(object_key({"metadata": ref}))      # a Pod's reference: its key
    return None


def services_from_api(services: Iterable[dict], slices: Iterable[dict]) -> tuple[Service, ...]:
    """Service and EndpointSlice objects -> Services with their endpoints (by the slices'
    `kubernetes.io/service-name` label)."""
    by_service: dict[tuple[str, str], list[Endpoint]] = {}
    for s in slices:
        meta = s.get("metadata") or {}
        owner = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if not owner:
            continue
        ports = tuple(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in s.get("ports") or []
                      if isinstance(p, dict) and p.get("port") is not None)
        for e in s.get("endpoints") or []:
            ready = (e.get("conditions") or {}).get("ready") is not False
            for address in e.get("addresses") or []:
                by_service.setdefault((namespace_of(s), owner), []).append(
                    Endpoint(str(address), _ref_key(e.get("targetRef")), ports, ready))
    out = []
    for svc in services:
        spec, status = svc.get("spec") or {}, svc.get("status") or {}
        ns, name = object_key(svc)
        ports = tuple(ServicePort(int(p.get("port", 0)), str(p.get("protocol", "TCP")),
                                  str(p.get("targetPort", "")), p.get("nodePort"),
                                  str(p.get("name", "")))
                      for p in spec.get("ports") or [] if isinstance(p, dict))
        lb = tuple(str(i.get("ip")) for i in (status.get("loadBalancer") or {}).get("ingress") or []
                   if isinstance(i, dict) and i.get("ip"))
        cluster_ip = spec.get("clusterIP")
        endpoints = sorted(set(by_service.get((ns, name), [])),
                           key=lambda e: (_address_key(e.address), e.pod or ""))
        out.append(Service(ns, name, str(spec.get("type", "ClusterIP")),
                           None if cluster_ip in (None, "", "None") else str(cluster_ip), ports,
                           tuple(str(i) for i in spec.get("externalIPs") or []) + lb,
                           tuple(endpoints)))
    return tuple(out)


def _address_key(text: str) -> tuple:
    try:
        return (0, int(ip_address(text)))
    except ValueError:
        return (1, text)
