"""Pure: topology files -> a frozen `Topology`, with defaults filled in and every error reported.

A topology names the cluster, its master and workers, the node network (each node on its own
subnet to the gateway router, or one shared LAN), the cluster CIDR split into one pod CIDR per
worker, the service CIDR, and the external clients behind the gateway. `load_topology(path)`
reads, defaults and validates; it raises SpecError with every problem at once, so nothing is
built from a bad file. Fields are read with the API server's Checker (testbed/spec/validation.py),
so a fault is worded as it would be in a Kubernetes object (`Invalid value: ...`, `unknown
field "x"`), and node labels follow the rules of the Node objects they become.

Each worker runs kube-proxy in a mode (`kubeProxy: {mode: ...}`, top level or per node) and a
NetworkPolicy agent in a mode of its own (`networkPolicy: {mode: ...}`, the same two places):
iptables (with ipset), nftables, or none (no agent: no policy is enforced there, as with a
CNI that has no policy support). A node whose policy mode the file leaves out follows its
kube-proxy's (userspace kube-proxy: iptables), also when a scenario or the command line
changes the kube-proxy mode later (`with_modes`).

The pod network (`podNetwork:`, top level; a scenario's and the command line's are layered over
it by `resolve_pod_network`, the last winning, and the whole checked once) has a plugin and a
routing mode:

    podNetwork:
      plugin: builtin | cni        # the testbed's own bridge plugin, or real CNI plugins
      routing: gateway | host-gw | vxlan | bgp
      conf: my-net.conflist        # cni: a network configuration list (JSON or YAML); left out,
                                   #   the kubenet chain (bridge cbr0, host-local, portmap)
      binDir: ./bin                # cni: the user's own plugins, searched before /usr/lib/cni

`gateway` is the article's design: the gateway router holds a static route to each node's pod
CIDR. `host-gw` (flannel's) routes each pod CIDR on every node via its node's address, which
needs the nodes on one LAN (network mode shared). `vxlan` (flannel's) is an overlay across the
nodes' links, its MTU 50 bytes lower. `bgp` (Calico's) has bird2 on every node announce its pod
CIDR to the gateway router. This kernel has no IPIP, WireGuard or Geneve: those are refused
with the reason.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from testbed.spec.source import Document, Path_, SpecError, field_name, read_one
from testbed.spec.validation import Checker, check_labels, is_cidr, is_dns1123_label, is_ipv4

PROXY_MODES = ("iptables", "nftables", "userspace")
POLICY_MODES = ("iptables", "nftables", "none")
NETWORK_MODES = ("routed", "shared")
POD_NETWORK_PLUGINS = ("builtin", "cni")
ROUTING_MODES = ("gateway", "host-gw", "vxlan", "bgp")
# Overlays users ask for that this kernel cannot run, and why (../shared/platform.md).
MISSING_ROUTING = {
    "ipip": "this kernel has no IPIP tunnels (no ipip module), so Calico's IPIP overlay cannot run "
            "here; vxlan is the overlay that works",
    "wireguard": "this kernel has no WireGuard (no wireguard module); vxlan is the overlay that works",
    "geneve": "this kernel has no Geneve tunnels (no geneve module); vxlan is the overlay that works",
}
# podNetwork's keys -> PodNetworkSpec's fields
POD_NETWORK_FIELDS = {"plugin": "plugin", "routing": "routing", "conf": "conf", "binDir": "bin_dir"}
POD_NETWORK_KEYS = set(POD_NETWORK_FIELDS)
LINK_MTU = 1500          # the nodes' links (veth pairs), as Mininet makes them
VXLAN_OVERHEAD = 50      # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8: flannel's MTU cut
CNI_BIN_DIR = "/usr/lib/cni"   # where Debian's containernetworking-plugins install


def cni_path(bin_dir: str | None) -> tuple[str, ...]:
    """CNI_PATH: the user's plugin directory (binDir) first, then the distribution's."""
    return ((bin_dir,) if bin_dir else ()) + (CNI_BIN_DIR,)


@dataclass(frozen=True)
class PodNetworkSpec:
    """How pods are wired (plugin) and how nodes reach each other's pod CIDRs (routing)."""

    plugin: str = "builtin"
    routing: str = "gateway"
    conf: str | None = None        # cni: absolute path of the user's network configuration list
    bin_dir: str | None = None     # cni: absolute path of the user's plugin directory

    @property
    def mtu(self) -> int:
        """The pods' MTU: the links', less the VXLAN overhead under vxlan (as flannel sets it)."""
        return LINK_MTU - VXLAN_OVERHEAD if self.routing == "vxlan" else LINK_MTU

    @property
    def cni_path(self) -> tuple[str, ...]:
        """CNI_PATH: the user's plugins first, then the distribution's."""
        return cni_path(self.bin_dir)

    def describe(self) -> str:
        plugin = "CNI" + (f" ({Path(self.conf).name})" if self.conf else " (kubenet chain)") \
            if self.plugin == "cni" else "built-in bridge"
        return f"{plugin}, routing {self.routing}"


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
    # The NetworkPolicy agent's mode (POLICY_MODES); left empty, the one proxy_mode implies.
    policy_mode: str = ""
    # True when the topology did not name a policy mode: it follows proxy_mode (with_modes).
    policy_follows_proxy: bool = True

    def __post_init__(self) -> None:
        if not self.policy_mode:
            object.__setattr__(self, "policy_mode", default_policy_mode(self.proxy_mode))

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
    pod_network: PodNetworkSpec = PodNetworkSpec()

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


TOP_KEYS = {"name", "network", "master", "workers", "clients", "gateway", "kubeProxy", "networkPolicy",
            "loadBalancer", "addons", "podNetwork"}
LB_KEYS = {"pool"}
ADDONS = ("ingress-nginx",)
NETWORK_KEYS = {"mode", "nodeCIDR", "nodeSubnetPrefix", "clusterCIDR", "podCIDRPrefix",
                "serviceCIDR", "clientCIDR"}
NODE_KEYS = {"name", "address", "podCIDR", "kubeProxy", "networkPolicy", "labels"}
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


def default_policy_mode(proxy_mode: str) -> str:
    """The NetworkPolicy agent's mode when the topology names none: kube-proxy's own, so that
    one node's rules share one backend (a userspace kube-proxy has no rules: iptables)."""
    return "nftables" if proxy_mode == "nftables" else "iptables"


def with_modes(topo: Topology, proxy: Mapping[str, str] | None = None,
               policy: Mapping[str, str] | None = None) -> Topology:
    """`topo` with other kube-proxy and NetworkPolicy modes on its workers: `proxy` and
    `policy` map a worker's name, or "*" for every worker, to a mode (a name wins over "*").
    A worker whose policy mode followed its kube-proxy's follows the new one, unless `policy`
    names one for it. The topology's own proxy_mode becomes `proxy`'s "*" when given."""
    proxy, policy = proxy or {}, policy or {}

    def override(modes: Mapping[str, str], name: str) -> str | None:
        return modes.get(name, modes.get("*"))

    workers = []
    for worker in topo.workers:
        proxy_mode = override(proxy, worker.name) or worker.proxy_mode
        policy_mode = override(policy, worker.name)
        if policy_mode is not None:
            worker = dataclasses.replace(worker, proxy_mode=proxy_mode, policy_mode=policy_mode,
                                         policy_follows_proxy=False)
        elif worker.policy_follows_proxy:
            worker = dataclasses.replace(worker, proxy_mode=proxy_mode,
                                         policy_mode=default_policy_mode(proxy_mode))
        else:
            worker = dataclasses.replace(worker, proxy_mode=proxy_mode)
        workers.append(worker)
    return dataclasses.replace(topo, workers=tuple(workers),
                               proxy_mode=proxy.get("*", topo.proxy_mode))


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
                        d["proxy_mode"], tuple(tuple(kv) for kv in d["labels"]),
                        d.get("policy_mode") or "", d.get("policy_follows_proxy", True))

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
        addons=tuple(data["addons"]), pod_network=PodNetworkSpec(**data.get("pod_network", {})))


def load_topology(path: str | Path) -> Topology:
    """Read, default and validate a topology file; SpecError lists every problem."""
    return build_topology(read_one(path))


# Ranges no network of the cluster may touch, with upstream's words for them (as
# ValidateNonSpecialIP names them): packets to these never cross a router as unicast.
_SPECIAL_RANGES = (
    (IPv4Network("0.0.0.0/8"), "the unspecified range (0.0.0.0/8)"),
    (IPv4Network("127.0.0.0/8"), "the loopback range (127.0.0.0/8, ::1/128)"),
    (IPv4Network("169.254.0.0/16"), "the link-local range (169.254.0.0/16, fe80::/10)"),
    (IPv4Network("224.0.0.0/4"), "the multicast range (224.0.0.0/4, ff00::/8)"),
    (IPv4Network("240.0.0.0/4"), "the reserved range (240.0.0.0/4)"),
)
_CIDR_EXAMPLE = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def _network(ck: Checker, path: Path_, value: Any) -> IPv4Network | None:
    """An IPv4 network in CIDR form, masked, outside the special ranges; None (and a problem)
    otherwise."""
    if not isinstance(value, str) or is_cidr(value):
        ck.invalid(path, value, _CIDR_EXAMPLE)
        return None
    net = ipaddress.ip_network(value, strict=False)
    if not isinstance(net, IPv4Network):
        ck.invalid(path, value, "must be an IPv4 CIDR: the emulated cluster is IPv4 only")
        return None
    if str(net) != value and ipaddress.ip_interface(value).ip != net.network_address:
        ck.invalid(path, value, f"must be a network address: host bits are set (the network is {net})")
        return None
    for special, words in _SPECIAL_RANGES:
        if net.overlaps(special):
            ck.invalid(path, value, f"may not be in {words}")
            return None
    return net


def _address(ck: Checker, path: Path_, value: Any) -> IPv4Address | None:
    if not isinstance(value, str) or is_ipv4(value):
        ck.invalid(path, value, "must be a valid IPv4 address, (e.g. 10.9.8.7)")
        return None
    return IPv4Address(value)


def _name(ck: Checker, path: Path_, value: Any) -> str | None:
    """A host or cluster name: a DNS-1123 label, as Node names and Mininet hosts need."""
    if value is None or value == "":
        ck.required(path)
        return None
    if not isinstance(value, str):
        ck.invalid(path, value, "must be a string")
        return None
    return value if ck.names(path, value, is_dns1123_label(value)) else None


def _entries(ck: Checker, value: Any, path: Path_, keys: set[str]) -> list[tuple[Path_, dict]]:
    """A list of names or of mappings with a name -> [(path, mapping)]."""
    if value is None or not ck.is_type(path, value, "array"):
        return []
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"name": item}
        out.append((path + (i,), ck.fields(path + (i,), item, keys) or {}))
    return out


def build_topology(doc: Document) -> Topology:
    ck = Checker(doc)
    top = ck.fields((), doc.data, TOP_KEYS) or {}
    name = _name(ck, ("name",), top.get("name", Path(doc.file).stem))

    given = ck.fields(("network",), top["network"], NETWORK_KEYS) if top.get("network") is not None else {}
    net = {**DEFAULT_NETWORK, **(given or {})}
    mode = ck.enum(net, "mode", ("network",), list(NETWORK_MODES)) or "routed"
    cidrs = {key: _network(ck, ("network", key), net[key])
             for key in ("nodeCIDR", "clusterCIDR", "serviceCIDR", "clientCIDR")}
    node_prefix = ck.integer(net, "nodeSubnetPrefix", ("network",), 8, 30)
    pod_prefix = ck.integer(net, "podCIDRPrefix", ("network",), 8, 30)
    _check_overlaps(ck, cidrs)

    default_proxy = _proxy_mode(ck, top.get("kubeProxy"), ("kubeProxy",), "iptables")
    default_policy = _policy_mode(ck, top.get("networkPolicy"), ("networkPolicy",), None)
    gateway = ck.fields(("gateway",), top["gateway"], {"name"}) if top.get("gateway") is not None else {}
    gateway_name = _name(ck, ("gateway", "name"), (gateway or {}).get("name", "gw"))

    master_raw = top.get("master", "master")
    if isinstance(master_raw, str):
        master_raw = {"name": master_raw}
    master_entries = [(("master",), ck.fields(("master",), master_raw, NODE_KEYS) or {})]
    worker_entries = _entries(ck, top.get("workers", ["w1", "w2"]), ("workers",), NODE_KEYS)
    if top.get("workers") == []:
        ck.required(("workers",), "at least one worker is needed")
    client_entries = _entries(ck, top.get("clients", ["client"]), ("clients",), CLIENT_KEYS)

    seen: dict[str, Path_] = {}
    for path, entry in [*master_entries, *worker_entries, *client_entries,
                        (("gateway",), {"name": gateway_name})]:
        n = entry.get("name")
        if path[0] == "gateway" and n is None:
            continue          # its own problem is reported already
        if path[0] != "gateway":
            n = _name(ck, path + ("name",), n)
        if n is None:
            continue
        if n in seen:
            ck.duplicate(path + ("name",), n, f"also the name of {field_name(seen[n][:-1])} "
                                              f"(line {doc.line(seen[n])})")
        else:
            seen[n] = path + ("name",)

    nodes = _place_nodes(ck, mode, cidrs, node_prefix, pod_prefix,
                         master_entries + worker_entries, default_proxy, default_policy)
    clients = _place_clients(ck, cidrs["clientCIDR"], client_entries)
    lb = ck.fields(("loadBalancer",), top["loadBalancer"], LB_KEYS) if top.get("loadBalancer") is not None else {}
    lb_pool = _lb_pool(ck, (lb or {}).get("pool"), {k: v for k, v in cidrs.items() if v is not None})
    addons = _addons(ck, top.get("addons", []))
    given = parse_pod_network(ck, ("podNetwork",), top.get("podNetwork"), Path(doc.file).parent)
    pod_network = None if given is None else \
        resolve_pod_network(PodNetworkSpec(), [PodNetworkLayer(given, ck)], mode)
    if ck.problems:
        raise SpecError(ck.problems)
    assert name is not None and gateway_name is not None
    return Topology(
        name=name, file=doc.file, network_mode=mode,
        node_cidr=cidrs["nodeCIDR"], cluster_cidr=cidrs["clusterCIDR"],
        service_cidr=cidrs["serviceCIDR"], client_cidr=cidrs["clientCIDR"],
        master=nodes[0], workers=tuple(nodes[1:]), clients=tuple(clients),
        gateway_name=gateway_name, proxy_mode=default_proxy, lb_pool=lb_pool, addons=addons,
        pod_network=pod_network or PodNetworkSpec(),
    )


def parse_pod_network(ck: Checker, path: Path_, raw: Any, base: Path) -> dict[str, Any] | None:
    """The fields `podNetwork:` gives (a topology's, a scenario's, or the command line's options
    as such a mapping), by key, each of a known value: conf and binDir resolved against `base`
    and found to be a file and a directory. {} when `raw` is None; None, with the problems
    recorded, when a field is bad. What they mean over other layers, and whether that can work,
    is resolve_pod_network's."""
    if raw is None:
        return {}
    conf = ck.fields(path, raw, POD_NETWORK_KEYS)
    if conf is None:
        return None
    before = len(ck.problems)
    given: dict[str, Any] = {}
    if conf.get("plugin") is not None:
        given["plugin"] = ck.enum(conf, "plugin", path, list(POD_NETWORK_PLUGINS))
    if conf.get("routing") is not None:
        routing = conf["routing"]
        if isinstance(routing, str) and routing.lower() in MISSING_ROUTING:
            ck.invalid(path + ("routing",), routing, MISSING_ROUTING[routing.lower()])
        else:
            given["routing"] = ck.enum(conf, "routing", path, list(ROUTING_MODES))
    for key, kind in (("conf", "file"), ("binDir", "directory")):
        value = conf.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            ck.invalid(path + (key,), value, f"must be the path of a {kind}")
            continue
        resolved = (base / value).resolve()
        if kind == "file" and not resolved.is_file():
            ck.invalid(path + (key,), value, f"not a regular file: {resolved}" if resolved.exists()
                       else f"no such file: {resolved}")
        elif kind == "directory" and not resolved.is_dir():
            ck.invalid(path + (key,), value, f"not a directory: {resolved}" if resolved.exists()
                       else f"no such directory: {resolved}")
        else:
            given[key] = str(resolved)
    return None if len(ck.problems) > before else given


@dataclass(frozen=True)
class PodNetworkLayer:
    """One layer of the pod network: the fields it gives (parse_pod_network's), and where they
    were given: `ck` records a problem with a field at `path` + its key (a topology's or a
    scenario's podNetwork; the command line's options, by a Checker that names them)."""

    given: Mapping[str, Any]
    ck: Checker
    path: Path_ = ("podNetwork",)


def layer_pod_network(spec: PodNetworkSpec, given: Mapping[str, Any]) -> PodNetworkSpec:
    """One layer's fields (`given`) over `spec`: fields left out keep spec's. The builtin
    plugin drops the CNI configuration below it (a topology's, under a scenario's or the command
    line's builtin), unless the layer names one itself; a conf or binDir over builtin implies
    plugin cni, unless the layer names a plugin."""
    fields = {POD_NETWORK_FIELDS[key]: value for key, value in given.items()}
    if fields.get("plugin") == "builtin":
        fields.setdefault("conf", None)
        fields.setdefault("bin_dir", None)
    out = dataclasses.replace(spec, **fields)
    if out.plugin == "builtin" and "plugin" not in fields and (fields.get("conf") or fields.get("bin_dir")):
        out = dataclasses.replace(out, plugin="cni")
    return out


# Where a layer gave a podNetwork key: (the layer's index, its Checker, the field's path).
Given = tuple[int, Checker, Path_]


def resolve_pod_network(spec: PodNetworkSpec, layers: Sequence[PodNetworkLayer],
                        network_mode: str) -> PodNetworkSpec | None:
    """The layers over `spec` (a topology's podNetwork over the default; a scenario's, then the
    command line's, over the topology's), the last winning, checked once as a whole against the
    network mode (check_pod_network). A problem is recorded where the layer that gave its field
    gave it. `spec` itself when no layer gives a field (it was checked when read); None when
    the whole cannot work."""
    where: dict[str, Given] = {}
    for index, layer in enumerate(layers):
        spec = layer_pod_network(spec, layer.given)
        where.update({key: (index, layer.ck, layer.path + (key,)) for key in layer.given})
    if not where:
        return spec
    return spec if check_pod_network(spec, network_mode, where) else None


def check_pod_network(spec: PodNetworkSpec, network_mode: str, where: Mapping[str, Given]) -> bool:
    """Refuse what cannot work together, with the reason. `where` says which layer gave each
    key the layers gave, and where: a problem is recorded at the field, of those it concerns,
    that the latest layer gave (a plugin that conf or binDir implied: at that key), with that
    field's value. The CNI configuration's content is checked by testbed.spec.cniconf, its
    problems at its own file."""
    def at(*keys: str) -> tuple[Checker, Path_, Any]:
        # never without one of `keys` in practice: what the topology gave was checked with it
        given = [key for key in keys if key in where] or list(where)
        key = max(given, key=lambda k: where[k][0])     # the first of the latest layer's
        _, ck, path = where[key]
        return ck, path, getattr(spec, POD_NETWORK_FIELDS[key])

    ok = True
    if spec.routing == "host-gw" and network_mode != "shared":
        ck, path, value = at("routing")
        ck.invalid(path, value,
                   "needs network mode shared (network.mode): host-gw routes each pod CIDR via "
                   "its node's address, which the other nodes reach directly only on one shared "
                   "LAN; in routed mode each node has a link of its own to the gateway (use "
                   "vxlan or bgp there)")
        ok = False
    if spec.plugin != "cni":
        for key, value in (("conf", spec.conf), ("binDir", spec.bin_dir)):
            if value is not None:
                ck, path, _ = at(key)
                ck.forbidden(path, f"{key} is for plugin: cni; the builtin plugin takes none")
                ok = False
    if spec.conf is not None and ok:
        from testbed.spec.cniconf import load_conflist  # the configuration file's own checks
        try:
            load_conflist(spec.conf, spec.cni_path)
        except SpecError as err:
            at("conf")[0].problems.extend(err.problems)
            ok = False
    elif spec.plugin == "cni" and ok:
        from testbed.spec.cniconf import KUBENET_PLUGINS, find_plugin
        missing = [kind for kind in KUBENET_PLUGINS if find_plugin(kind, spec.cni_path) is None]
        if missing:
            ck, path, value = at("plugin", "binDir")
            ck.invalid(path, value,
                       f"the kubenet chain needs the CNI plugins {', '.join(missing)}, not found in "
                       f"[{' '.join(spec.cni_path)}]: install containernetworking-plugins "
                       "(scripts/install.sh does)")
            ok = False
    return ok


def with_pod_network(topo: Topology, spec: PodNetworkSpec) -> Topology:
    return dataclasses.replace(topo, pod_network=spec)


def _lb_pool(ck: Checker, raw: Any, cidrs: dict[str, IPv4Network]) -> tuple[IPv4Network, ...]:
    """loadBalancer.pool: CIDRs (or single addresses) outside every other range of the cluster."""
    path: Path_ = ("loadBalancer", "pool")
    if raw is None:
        return ()
    items = [(path, raw)] if isinstance(raw, str) else (
        [(path + (i,), item) for i, item in enumerate(raw)] if ck.is_type(path, raw, "array") else [])
    pool: list[IPv4Network] = []
    for where, item in items:
        text = item if not isinstance(item, str) or "/" in item else f"{item}/32"
        net = _network(ck, where, text)
        if net is None:
            continue
        for key, other in cidrs.items():
            if net.overlaps(other):
                ck.invalid(where, item, f"overlaps {key} {other}")
        for earlier in pool:
            if net.overlaps(earlier):
                ck.invalid(where, item, f"overlaps {earlier}, earlier in the pool")
        pool.append(net)
    return tuple(pool)


def _addons(ck: Checker, raw: Any) -> tuple[str, ...]:
    names = ck.string_list({"addons": raw}, "addons", ())
    for i, addon in enumerate(raw if isinstance(raw, list) else []):
        if isinstance(addon, str) and addon not in ADDONS:
            ck.unsupported(("addons", i), addon, list(ADDONS))
    return tuple(dict.fromkeys(names))


def _proxy_mode(ck: Checker, value: Any, path: Path_, default: str) -> str:
    if value is None:
        return default
    conf = ck.fields(path, value, {"mode"})
    if conf is None:
        return default
    return ck.enum(conf, "mode", path, list(PROXY_MODES)) or default


def _policy_mode(ck: Checker, value: Any, path: Path_, default: str | None) -> str | None:
    """networkPolicy: {mode: iptables | nftables | none}; `default` when not given (None:
    follow kube-proxy's mode)."""
    if value is None:
        return default
    conf = ck.fields(path, value, {"mode"})
    if conf is None:
        return default
    if conf.get("mode") is None:
        ck.required(path + ("mode",), "iptables, nftables or none")
        return default
    return ck.enum(conf, "mode", path, list(POLICY_MODES)) or default


def _check_overlaps(ck: Checker, cidrs: dict[str, IPv4Network | None]) -> None:
    keys = [k for k, v in cidrs.items() if v is not None]
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if cidrs[a].overlaps(cidrs[b]):
                ck.invalid(("network", b), str(cidrs[b]), f"overlaps {a} {cidrs[a]}")


def _place_nodes(ck: Checker, mode, cidrs, node_prefix, pod_prefix, entries,
                 default_proxy, default_policy) -> list[NodeSpec]:
    node_cidr, cluster_cidr = cidrs["nodeCIDR"], cidrs["clusterCIDR"]
    if node_cidr is None or cluster_cidr is None or node_prefix is None or pod_prefix is None:
        return []
    # Node subnets: routed mode gives node i the i-th subnet (gateway .1, node .2); shared mode
    # puts every node on nodeCIDR itself (gateway first address, nodes after it).
    if mode == "routed":
        if node_prefix < node_cidr.prefixlen:
            ck.invalid(("network", "nodeSubnetPrefix"), node_prefix,
                       f"a /{node_prefix} subnet does not fit in nodeCIDR {node_cidr}")
            return []
        subnets = node_cidr.subnets(new_prefix=node_prefix)
        capacity = 2 ** (node_prefix - node_cidr.prefixlen)
    else:
        capacity = max(node_cidr.num_addresses - 3, 0)
    if len(entries) > capacity:
        besides = "" if mode == "routed" else " besides its network, broadcast and gateway addresses"
        ck.invalid(("network", "nodeCIDR"), str(node_cidr),
                   f"holds {_count(capacity, 'node')}{besides}, the topology has {len(entries)}")
        return []
    workers = len(entries) - 1
    if pod_prefix < cluster_cidr.prefixlen:
        ck.invalid(("network", "podCIDRPrefix"), pod_prefix,
                   f"a /{pod_prefix} pod CIDR does not fit in clusterCIDR {cluster_cidr}")
        return []
    pod_capacity = 2 ** (pod_prefix - cluster_cidr.prefixlen)
    if workers > pod_capacity:
        ck.invalid(("network", "clusterCIDR"), str(cluster_cidr),
                   f"holds {pod_capacity} pod CIDRs of /{pod_prefix}, the topology has {workers} workers")
        return []
    explicit: dict[IPv4Network, Path_] = {}
    for path, entry in entries[1:]:
        if "podCIDR" in entry:
            cidr = _network(ck, path + ("podCIDR",), entry["podCIDR"])
            if cidr is None:
                continue
            if not cidr.subnet_of(cluster_cidr):
                ck.invalid(path + ("podCIDR",), entry["podCIDR"], f"is outside clusterCIDR {cluster_cidr}")
            for other, other_path in explicit.items():
                if cidr.overlaps(other):
                    ck.invalid(path + ("podCIDR",), entry["podCIDR"],
                               f"overlaps the podCIDR of {field_name(other_path)} ({other})")
            explicit[cidr] = path
            entry["_pod_cidr"] = cidr
    free_pod_cidrs = (c for c in cluster_cidr.subnets(new_prefix=pod_prefix)
                      if not any(c.overlaps(e) for e in explicit))
    used_addresses: dict[IPv4Address, Path_] = {}
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
            address = _address(ck, path + ("address",), entry["address"]) or auto
            if address not in subnet or address in (subnet.network_address, subnet.broadcast_address, gateway):
                ck.invalid(path + ("address",), str(address), f"is not a free host address of {subnet}")
        if address in used_addresses:
            ck.duplicate(path + ("address",), str(address),
                         f"already the address of {field_name(used_addresses[address])}")
        used_addresses[address] = path
        pod_cidr = None
        if role == "worker":
            pod_cidr = entry.get("_pod_cidr") or next(free_pod_cidrs, None)
            if pod_cidr is None:
                ck.invalid(("network", "clusterCIDR"), str(cluster_cidr),
                           f"has no pod CIDR left for {entry.get('name')}")
        elif "podCIDR" in entry:
            ck.forbidden(path + ("podCIDR",), "the master runs no pods here; podCIDR is for workers")
        # Labels become the Node object's: the API server's rules (keys qualified names,
        # values label values, both strings).
        labels = check_labels(ck, path + ("labels",), entry.get("labels"))
        proxy_mode = _proxy_mode(ck, entry.get("kubeProxy"), path + ("kubeProxy",), default_proxy)
        policy_mode = _policy_mode(ck, entry.get("networkPolicy"), path + ("networkPolicy",),
                                   default_policy)
        out.append(NodeSpec(
            name=str(entry.get("name")), role=role, address=address, subnet=subnet, gateway=gateway,
            pod_cidr=pod_cidr, proxy_mode=proxy_mode,
            labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
            policy_mode=policy_mode or default_policy_mode(proxy_mode),
            policy_follows_proxy=policy_mode is None,
        ))
    return out


def _count(n: int, what: str) -> str:
    return f"no {what}s" if n == 0 else f"1 {what}" if n == 1 else f"{n} {what}s"


def _place_clients(ck: Checker, cidr: IPv4Network | None, entries) -> list[ClientSpec]:
    if cidr is None:
        return []
    room = max(cidr.num_addresses - 3, 0)
    if len(entries) > room:
        ck.invalid(("network", "clientCIDR"), str(cidr),
                   f"holds {_count(room, 'client')} besides its network, broadcast and gateway "
                   f"addresses, the topology has {len(entries)}")
        return []
    gateway = cidr.network_address + 1
    out, used = [], {}
    for index, (path, entry) in enumerate(entries):
        address = cidr.network_address + 2 + index
        if "address" in entry:
            address = _address(ck, path + ("address",), entry["address"]) or address
            if address not in cidr or address in (cidr.network_address, cidr.broadcast_address, gateway):
                ck.invalid(path + ("address",), str(address), f"is not a free host address of {cidr}")
        if address in used:
            ck.duplicate(path + ("address",), str(address), f"already the address of {field_name(used[address])}")
        used[address] = path
        out.append(ClientSpec(str(entry.get("name")), address, cidr, gateway))
    return out
