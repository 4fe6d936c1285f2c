"""Pure: topology files -> a frozen `Topology`, with defaults filled in and every error reported.

A topology names the cluster, its master and workers, the node network (each node on its own
subnet to the gateway router, or one shared LAN), the cluster CIDR split into one pod CIDR per
worker, the service CIDR, and the external clients behind the gateway. `load_topology(path)`
reads, defaults and validates; it raises SpecError with every problem at once, so nothing is
built from a bad file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from testbed.spec.names import label_error
from testbed.spec.source import Document, Problems, read_one

PROXY_MODES = ("iptables", "nftables", "userspace")
NETWORK_MODES = ("routed", "shared")


@dataclass(frozen=True)
class NodeSpec:
    name: str
    role: str                      # "master" or "worker"
    address: IPv4Address           # on the node network
    subnet: IPv4Network            # the node's link to the gateway (shared mode: the LAN)
    gateway: IPv4Address           # the gateway router's address on that subnet
    pod_cidr: IPv4Network | None   # workers only
    proxy_mode: str
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def bridge_address(self) -> IPv4Address | None:
        """cbr0 holds the first address of the pod CIDR, the pods' default gateway."""
        return None if self.pod_cidr is None else self.pod_cidr.network_address + 1


@dataclass(frozen=True)
class ClientSpec:
    name: str
    address: IPv4Address
    subnet: IPv4Network
    gateway: IPv4Address


@dataclass(frozen=True)
class Topology:
    name: str
    file: str
    network_mode: str
    node_cidr: IPv4Network
    cluster_cidr: IPv4Network
    service_cidr: IPv4Network
    client_cidr: IPv4Network
    master: NodeSpec
    workers: tuple[NodeSpec, ...]
    clients: tuple[ClientSpec, ...]
    gateway_name: str
    proxy_mode: str
    lb_pool: tuple[IPv4Network, ...] = ()     # addresses the emulated cloud gives LoadBalancers
    addons: tuple[str, ...] = ()               # optional add-ons, e.g. "ingress-nginx"

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return (self.master, *self.workers)

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def dns_service_ip(self) -> IPv4Address:
        """kube-dns takes the tenth address of the service CIDR, as kubeadm does."""
        return self.service_cidr.network_address + 10


TOP_KEYS = {"name", "network", "master", "workers", "clients", "gateway", "kubeProxy", "loadBalancer", "addons"}
LB_KEYS = {"pool"}
ADDONS = ("ingress-nginx",)
NETWORK_KEYS = {"mode", "nodeCIDR", "nodeSubnetPrefix", "clusterCIDR", "podCIDRPrefix",
                "serviceCIDR", "clientCIDR"}
NODE_KEYS = {"name", "address", "podCIDR", "kubeProxy", "labels"}
CLIENT_KEYS = {"name", "address"}
DEFAULT_NETWORK = {
    "mode": "routed",
    "nodeCIDR": "172.16.0.0/16",
    "nodeSubnetPrefix": 24,
    "clusterCIDR": "10.244.0.0/16",
    "podCIDRPrefix": 24,
    "serviceCIDR": "10.96.0.0/12",
    "clientCIDR": "203.0.113.0/24",
}


def topology_to_dict(topo: Topology) -> dict:
    """The resolved topology as JSON data (cluster.json keeps it, so that other processes
    attach to exactly what was built, whatever became of its file)."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (IPv4Address, IPv4Network)):
            return str(value)
        return value

    return plain(dataclasses.asdict(topo))


def topology_from_dict(data: dict) -> Topology:
    """The Topology `topology_to_dict` wrote."""
    def node(d: dict) -> NodeSpec:
        return NodeSpec(d["name"], d["role"], IPv4Address(d["address"]),
                        IPv4Network(d["subnet"]), IPv4Address(d["gateway"]),
                        IPv4Network(d["pod_cidr"]) if d["pod_cidr"] else None,
                        d["proxy_mode"], tuple(tuple(kv) for kv in d["labels"]))

    def client(d: dict) -> ClientSpec:
        return ClientSpec(d["name"], IPv4Address(d["address"]), IPv4Network(d["subnet"]),
                          IPv4Address(d["gateway"]))

    return Topology(
        name=data["name"], file=data["file"], network_mode=data["network_mode"],
        node_cidr=IPv4Network(data["node_cidr"]), cluster_cidr=IPv4Network(data["cluster_cidr"]),
        service_cidr=IPv4Network(data["service_cidr"]),
        client_cidr=IPv4Network(data["client_cidr"]), master=node(data["master"]),
        workers=tuple(node(w) for w in data["workers"]),
        clients=tuple(client(c) for c in data["clients"]), gateway_name=data["gateway_name"],
        proxy_mode=data["proxy_mode"], lb_pool=tuple(IPv4Network(n) for n in data["lb_pool"]),
        addons=tuple(data["addons"]))


def load_topology(path: str | Path) -> Topology:
    """Read, default and validate a topology file; SpecError lists every problem."""
    return build_topology(read_one(path))


class _Check:
    """Field readers that record a problem and return None instead of raising."""

    def __init__(self, doc: Document, problems: Problems):
        self.doc, self.problems = doc, problems

    def fail(self, path: tuple, message: str) -> None:
        self.problems.add(self.doc, path, message)

    def mapping(self, value: Any, path: tuple, allowed: set[str]) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, "must be a mapping")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(path + (key,), f"unknown field (expected one of: {', '.join(sorted(allowed))})")
        return value

    def network(self, value: Any, path: tuple) -> IPv4Network | None:
        try:
            return ipaddress.IPv4Network(str(value), strict=True)
        except ValueError as err:
            self.fail(path, f"not a valid IPv4 CIDR: {value!r} ({err})")
            return None

    def address(self, value: Any, path: tuple) -> IPv4Address | None:
        try:
            return ipaddress.IPv4Address(str(value))
        except ValueError:
            self.fail(path, f"not a valid IPv4 address: {value!r}")
            return None

    def prefix(self, value: Any, path: tuple, low: int, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(path, f"must be a whole number from {low} to {high}")
            return None
        return value

    def name(self, value: Any, path: tuple) -> str | None:
        why = label_error(value)
        if why:
            self.fail(path, f"invalid name {value!r}: {why}")
            return None
        return value


def _entries(check: _Check, value: Any, path: tuple, keys: set[str]) -> list[tuple[tuple, dict]]:
    """A list of names or of mappings with a name -> [(path, mapping)]."""
    if value is None:
        return []
    if not isinstance(value, list):
        check.fail(path, "must be a list")
        return []
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"name": item}
        out.append((path + (i,), check.mapping(item, path + (i,), keys)))
    return out


def build_topology(doc: Document) -> Topology:
    problems = Problems()
    check = _Check(doc, problems)
    top = check.mapping(doc.data, (), TOP_KEYS)
    name = check.name(top.get("name", Path(doc.file).stem), ("name",))

    net = {**DEFAULT_NETWORK, **check.mapping(top.get("network"), ("network",), NETWORK_KEYS)}
    mode = net["mode"]
    if mode not in NETWORK_MODES:
        check.fail(("network", "mode"), f"must be one of {', '.join(NETWORK_MODES)}, not {mode!r}")
    cidrs = {key: check.network(net[key], ("network", key))
             for key in ("nodeCIDR", "clusterCIDR", "serviceCIDR", "clientCIDR")}
    node_prefix = check.prefix(net["nodeSubnetPrefix"], ("network", "nodeSubnetPrefix"), 8, 30)
    pod_prefix = check.prefix(net["podCIDRPrefix"], ("network", "podCIDRPrefix"), 8, 30)
    _check_overlaps(check, cidrs)

    default_proxy = _proxy_mode(check, top.get("kubeProxy"), ("kubeProxy",), "iptables")
    gateway_name = check.name(check.mapping(top.get("gateway"), ("gateway",), {"name"}).get("name", "gw"),
                              ("gateway", "name"))

    master_raw = top.get("master", "master")
    if isinstance(master_raw, str):
        master_raw = {"name": master_raw}
    master_entries = [(("master",), check.mapping(master_raw, ("master",), NODE_KEYS))]
    worker_entries = _entries(check, top.get("workers", ["w1", "w2"]), ("workers",), NODE_KEYS)
    if not worker_entries and "workers" in top:
        check.fail(("workers",), "at least one worker is needed")
    client_entries = _entries(check, top.get("clients", ["client"]), ("clients",), CLIENT_KEYS)

    seen: dict[str, tuple] = {}
    for path, entry in [*master_entries, *worker_entries, *client_entries, (("gateway",), {"name": gateway_name})]:
        n = entry.get("name")
        if n is None or not isinstance(n, str):
            if path[0] != "gateway":
                check.fail(path + ("name",), "Required value")
            continue
        if n in seen:
            check.fail(path + ("name",), f"duplicate name {n!r} (also at line {doc.line(seen[n])})")
        else:
            seen[n] = path + ("name",)
        if path[0] != "gateway":
            check.name(n, path + ("name",))

    nodes = _place_nodes(check, mode, cidrs, node_prefix, pod_prefix,
                         master_entries + worker_entries, default_proxy)
    clients = _place_clients(check, cidrs["clientCIDR"], client_entries)
    lb_pool = _lb_pool(check, check.mapping(top.get("loadBalancer"), ("loadBalancer",), LB_KEYS).get("pool"),
                       {k: v for k, v in cidrs.items() if v is not None})
    addons = _addons(check, top.get("addons", []))
    problems.raise_if_any()
    return Topology(
        name=name, file=doc.file, network_mode=mode,
        node_cidr=cidrs["nodeCIDR"], cluster_cidr=cidrs["clusterCIDR"],
        service_cidr=cidrs["serviceCIDR"], client_cidr=cidrs["clientCIDR"],
        master=nodes[0], workers=tuple(nodes[1:]), clients=tuple(clients),
        gateway_name=gateway_name, proxy_mode=default_proxy, lb_pool=lb_pool, addons=addons,
    )


def _lb_pool(check: _Check, raw, cidrs: dict[str, IPv4Network]) -> tuple[IPv4Network, ...]:
    """loadBalancer.pool: CIDRs (or single addresses) outside every other range of the cluster."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        check.fail(("loadBalancer", "pool"), "must be a list of CIDRs")
        return ()
    pool = []
    for i, item in enumerate(raw):
        net = check.network(item if "/" in str(item) else f"{item}/32", ("loadBalancer", "pool", i))
        if net is None:
            continue
        for key, other in cidrs.items():
            if net.overlaps(other):
                check.fail(("loadBalancer", "pool", i), f"{net} overlaps {key} {other}")
        for earlier in pool:
            if net.overlaps(earlier):
                check.fail(("loadBalancer", "pool", i), f"{net} overlaps {earlier}, earlier in the pool")
        pool.append(net)
    return tuple(pool)


def _addons(check: _Check, raw) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
        check.fail(("addons",), f"must be a list of add-on names ({', '.join(ADDONS)})")
        return ()
    for i, name in enumerate(raw):
        if name not in ADDONS:
            check.fail(("addons", i), f"unknown add-on {name!r} (known: {', '.join(ADDONS)})")
    return tuple(dict.fromkeys(raw))


def _proxy_mode(check: _Check, value: Any, path: tuple, default: str) -> str:
    conf = check.mapping(value, path, {"mode"})
    mode = conf.get("mode", default)
    if mode not in PROXY_MODES:
        check.fail(path + ("mode",), f"must be one of {', '.join(PROXY_MODES)}, not {mode!r}")
        return default
    return mode


def _check_overlaps(check: _Check, cidrs: dict[str, IPv4Network | None]) -> None:
    keys = [k for k, v in cidrs.items() if v is not None]
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if cidrs[a].overlaps(cidrs[b]):
                check.fail(("network", b), f"{cidrs[b]} overlaps {a} {cidrs[a]}")


def _place_nodes(check, mode, cidrs, node_prefix, pod_prefix, entries, default_proxy) -> list[NodeSpec]:
    node_cidr, cluster_cidr = cidrs["nodeCIDR"], cidrs["clusterCIDR"]
    if node_cidr is None or cluster_cidr is None or node_prefix is None or pod_prefix is None:
        return []
    # Node subnets: routed mode gives node i the i-th subnet (gateway .1, node .2); shared mode
    # puts every node on nodeCIDR itself (gateway first address, nodes after it).
    if mode == "routed":
        if node_prefix < node_cidr.prefixlen:
            check.fail(("network", "nodeSubnetPrefix"), f"/{node_prefix} is larger than nodeCIDR {node_cidr}")
            return []
        subnets = node_cidr.subnets(new_prefix=node_prefix)
        capacity = 2 ** (node_prefix - node_cidr.prefixlen)
    else:
        capacity = node_cidr.num_addresses - 3
    if len(entries) > capacity:
        check.fail(("network", "nodeCIDR"), f"{node_cidr} holds {capacity} nodes, the topology has {len(entries)}")
        return []
    workers = len(entries) - 1
    if pod_prefix < cluster_cidr.prefixlen:
        check.fail(("network", "podCIDRPrefix"), f"/{pod_prefix} is larger than clusterCIDR {cluster_cidr}")
        return []
    pod_capacity = 2 ** (pod_prefix - cluster_cidr.prefixlen)
    if workers > pod_capacity:
        check.fail(("network", "clusterCIDR"),
                   f"{cluster_cidr} holds {pod_capacity} pod CIDRs of /{pod_prefix}, the topology has {workers} workers")
        return []
    explicit: dict[IPv4Network, tuple] = {}
    for path, entry in entries[1:]:
        if "podCIDR" in entry:
            cidr = check.network(entry["podCIDR"], path + ("podCIDR",))
            if cidr is None:
                continue
            if not cidr.subnet_of(cluster_cidr):
                check.fail(path + ("podCIDR",), f"{cidr} is outside clusterCIDR {cluster_cidr}")
            for other, other_path in explicit.items():
                if cidr.overlaps(other):
                    check.fail(path + ("podCIDR",), f"{cidr} overlaps the podCIDR at {'.'.join(map(str, other_path))}")
            explicit[cidr] = path
            entry["_pod_cidr"] = cidr
    free_pod_cidrs = (c for c in cluster_cidr.subnets(new_prefix=pod_prefix)
                      if not any(c.overlaps(e) for e in explicit))
    used_addresses: dict[IPv4Address, tuple] = {}
    out = []
    for index, (path, entry) in enumerate(entries):
        role = "master" if index == 0 else "worker"
        if mode == "routed":
            subnet = next(subnets)
            gateway, auto = subnet.network_address + 1, subnet.network_address + 2
        else:
            subnet = node_cidr
            gateway, auto = node_cidr.network_address + 1, node_cidr.network_address + 2 + index
        address = auto
        if "address" in entry:
            address = check.address(entry["address"], path + ("address",)) or auto
            if address not in subnet or address in (subnet.network_address, subnet.broadcast_address, gateway):
                check.fail(path + ("address",), f"{address} is not a free host address of {subnet}")
        if address in used_addresses:
            check.fail(path + ("address",), f"{address} is already taken by {'.'.join(map(str, used_addresses[address]))}")
        used_addresses[address] = path
        pod_cidr = None
        if role == "worker":
            pod_cidr = entry.get("_pod_cidr") or next(free_pod_cidrs, None)
            if pod_cidr is None:
                check.fail(("network", "clusterCIDR"), f"{cluster_cidr} has no pod CIDR left for {entry.get('name')}")
        elif "podCIDR" in entry:
            check.fail(path + ("podCIDR",), "the master runs no pods here; podCIDR is for workers")
        labels = entry.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            check.fail(path + ("labels",), "must map strings to strings")
            labels = {}
        out.append(NodeSpec(
            name=str(entry.get("name")), role=role, address=address, subnet=subnet, gateway=gateway,
            pod_cidr=pod_cidr, proxy_mode=_proxy_mode(check, entry.get("kubeProxy"), path + ("kubeProxy",), default_proxy),
            labels=tuple(sorted(labels.items())),
        ))
    return out


def _place_clients(check: _Check, cidr: IPv4Network | None, entries) -> list[ClientSpec]:
    if cidr is None:
        return []
    if len(entries) > cidr.num_addresses - 3:
        check.fail(("network", "clientCIDR"), f"{cidr} holds {cidr.num_addresses - 3} clients, the topology has {len(entries)}")
        return []
    gateway = cidr.network_address + 1
    out, used = [], {}
    for index, (path, entry) in enumerate(entries):
        address = cidr.network_address + 2 + index
        if "address" in entry:
            address = check.address(entry["address"], path + ("address",)) or address
            if address not in cidr or address in (cidr.network_address, cidr.broadcast_address, gateway):
                check.fail(path + ("address",), f"{address} is not a free host address of {cidr}")
        if address in used:
            check.fail(path + ("address",), f"{address} is already taken by {'.'.join(map(str, used[address]))}")
        used[address] = path
        out.append(ClientSpec(str(entry.get("name")), address, cidr, gateway))
    return out
