"""Pure: NetworkPolicy semantics, as upstream defines them, from API objects to a node's plan.

`pod_info`, `namespace_labels` and `parse_policy` read the API objects the agent's informers
deliver (plain dicts). `resolve(policies, pods, namespaces, node)` decides, for one node, what
its rules must say: which of its pods each policy isolates and, for each rule of each policy,
the sets of peers and ports it allows. The renderers (`testbed.netpol.iptables`,
`testbed.netpol.nftables`) turn that plan into text; nothing here knows either syntax.

`allows(...)` is the same semantics written the plain way, connection by connection: the
reference the rendered rules are tested against (tests trace packets through the rendered text
and compare), and what a person can read to see what upstream means:

- A pod selected by no policy of a type (Ingress, Egress) is not isolated for it: open.
- A pod is isolated for a type by every policy in its namespace whose podSelector selects it
  and whose policyTypes include the type; policyTypes defaults to Ingress, plus Egress when the
  policy has egress rules (pkg/apis/networking/v1/defaults.go).
- What an isolated pod allows is the union of the rules of all policies isolating it.
- A connection passes only when the source's egress and the destination's ingress allow it.
- A rule matches when a peer matches (no `from`/`to`, or an empty list: every peer) and a port
  matches (no `ports`, or an empty list: every port and protocol).
- Within one peer, podSelector and namespaceSelector AND: pods matching podSelector in the
  namespaces matching namespaceSelector; podSelector alone means the policy's own namespace;
  namespaceSelector alone means every pod of those namespaces. An ipBlock matches addresses
  (pods' too): its cidr minus its excepts. Peers of one rule OR.
- A port entry matches its protocol (default TCP) and either every port (no `port`), a number,
  a range (`port`..`endPort`), or a named port, which names a container port of the
  DESTINATION pod (the policy's pod for ingress, the peer for egress), with that protocol.
- Host-network pods are neither isolated nor peers (their address is their node's).
- Traffic from a node to its own pods is not policed (kubelet probes, as every CNI allows).
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from testbed.api.meta import object_key, selector_matches
from testbed.api.netpol import parse_cidr

INGRESS, EGRESS = "Ingress", "Egress"
DIRECTIONS = (INGRESS, EGRESS)
PROTOCOLS = ("TCP", "UDP", "SCTP")


# -- the objects ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PodInfo:
    """What policies need of a pod: who it is, where, its address, labels and named ports."""

    namespace: str
    name: str
    ip: str                                     # "" before it has one
    node: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    named_ports: tuple[tuple[str, str, int], ...] = ()   # (name, protocol, containerPort)
    host_network: bool = False
    terminating: bool = False                   # deletionTimestamp set: on its way out

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def port_named(self, name: str, protocol: str) -> int | None:
        for n, proto, number in self.named_ports:
            if n == name and proto == protocol:
                return number
        return None


def pod_info(obj: Mapping) -> PodInfo | None:
    """A Pod object as policies see it; None for a pod that has ended (Succeeded, Failed)."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = obj.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return None
    named = []
    for container in spec.get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") and port.get("containerPort"):
                named.append((str(port["name"]), str(port.get("protocol") or "TCP"),
                              int(port["containerPort"])))
    labels = tuple(sorted((meta.get("labels") or {}).items()))
    namespace, name = object_key(obj)
    return PodInfo(namespace, name,
                   str(status.get("podIP") or ""), str(spec.get("nodeName") or ""), labels,
                   tuple(named), bool(spec.get("hostNetwork")), bool(meta.get("deletionTimestamp")))


def namespace_labels(obj: Mapping) -> tuple[str, dict[str, str]]:
    """(name, labels) of a Namespace object."""
    meta = obj.get("metadata") or {}
    return meta.get("name") or "", dict(meta.get("labels") or {})


@dataclass(frozen=True)
class Port:
    protocol: str = "TCP"
    port: int | None = None       # None: every port of the protocol (unless `name`)
    end_port: int | None = None
    name: str | None = None       # a named port, resolved on the destination pod


@dataclass(frozen=True)
class Peer:
    pod_selector: str | None = None         # JSON of the selector (hashable), None: absent
    namespace_selector: str | None = None
    cidr: str | None = None
    excepts: tuple[str, ...] = ()

    def pod_sel(self) -> dict | None:
        return None if self.pod_selector is None else json.loads(self.pod_selector)

    def ns_sel(self) -> dict | None:
        return None if self.namespace_selector is None else json.loads(self.namespace_selector)


@dataclass(frozen=True)
class Rule:
    peers: tuple[Peer, ...] = ()    # empty: every peer
    ports: tuple[Port, ...] = ()    # empty: every port and protocol


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    pod_selector: str                       # JSON of spec.podSelector
    ingress: tuple[Rule, ...] | None        # None: the policy is not of type Ingress
    egress: tuple[Rule, ...] | None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: str) -> tuple[Rule, ...] | None:
        return self.ingress if direction == INGRESS else self.egress


def _selector_json(selector: object) -> str | None:
    if selector is None:
        return None
    return json.dumps(selector if isinstance(selector, dict) else {}, sort_keys=True)


def _cidr(text: object) -> str:
    net = parse_cidr(text)
    return str(net) if net is not None else str(text)


def _rules(raw: object, peers_key: str) -> tuple[Rule, ...]:
    out = []
    for rule in raw if isinstance(raw, list) else []:
        rule = rule or {}
        peers = []
        for peer in rule.get(peers_key) or []:
            block = peer.get("ipBlock")
            if block:
                # read as the API server read them when it validated them (010.0.0.1/08 is
                # 10.0.0.0/8), so that Python's strict parser never meets the sloppy forms
                peers.append(Peer(cidr=_cidr(block.get("cidr")),
                                  excepts=tuple(_cidr(e) for e in block.get("except") or ())))
            else:
                peers.append(Peer(_selector_json(peer.get("podSelector")),
                                  _selector_json(peer.get("namespaceSelector"))))
        ports = []
        for port in rule.get("ports") or []:
            port = port or {}
            value = port.get("port")
            protocol = str(port.get("protocol") or "TCP")
            if isinstance(value, str) and not value.isdigit():
                ports.append(Port(protocol, name=value))
            else:
                number = None if value is None else int(value)
                end = port.get("endPort")
                ports.append(Port(protocol, number, None if end is None or number is None
                                  else int(end)))
        out.append(Rule(tuple(peers), tuple(ports)))
    return tuple(out)


def parse_policy(obj: Mapping) -> Policy:
    """A NetworkPolicy object (validated by the API server) as the rules need it. policyTypes
    is defaulted here too, as the API server defaults it, for objects that skipped it."""
    spec = obj.get("spec") or {}
    types = spec.get("policyTypes") or [INGRESS] + ([EGRESS] if spec.get("egress") else [])
    namespace, name = object_key(obj)
    return Policy(namespace, name,
                  _selector_json(spec.get("podSelector")) or "{}",
                  _rules(spec.get("ingress"), "from") if INGRESS in types else None,
                  _rules(spec.get("egress"), "to") if EGRESS in types else None)


# -- the reference semantics, one connection at a time ------------------------------------------

def _in_block(ip: str, peer: Peer) -> bool:
    addr = ipaddress.ip_address(ip)
    if addr not in ipaddress.ip_network(peer.cidr, strict=False):
        return False
    return not any(addr in ipaddress.ip_network(e, strict=False) for e in peer.excepts)


def _peer_matches_pod(peer: Peer, policy_ns: str, pod: PodInfo,
                      namespaces: Mapping[str, Mapping[str, str]]) -> bool:
    """Does a selector peer (not an ipBlock: those match addresses) match `pod`?"""
    if peer.namespace_selector is None:
        in_namespace = pod.namespace == policy_ns
    else:
        in_namespace = selector_matches(peer.ns_sel(), dict(namespaces.get(pod.namespace, {})))
    if not in_namespace:
        return False
    return peer.pod_selector is None or selector_matches(peer.pod_sel(), pod.label_map)


def _port_matches(port: Port, protocol: str, number: int, dest: PodInfo | None) -> bool:
    if port.protocol != protocol:
        return False
    if port.name is not None:
        return dest is not None and dest.port_named(port.name, protocol) == number
    if port.port is None:
        return True
    return port.port <= number <= (port.end_port or port.port)


def selects(policy: Policy, pod: PodInfo) -> bool:
    """Does `policy` select `pod` (its namespace, its podSelector; host-network pods never)?"""
    return (not pod.host_network and pod.namespace == policy.namespace
            and selector_matches(json.loads(policy.pod_selector), pod.label_map))


def _side_allows(policies: Iterable[Policy], direction: str, pod: PodInfo, peer_ip: str,
                 peer_pod: PodInfo | None, protocol: str, port: int,
                 namespaces: Mapping[str, Mapping[str, str]]) -> bool:
    isolating = [p for p in policies if p.rules(direction) is not None and selects(p, pod)]
    if not isolating:
        return True
    dest = pod if direction == INGRESS else peer_pod
    for policy in isolating:
        for rule in policy.rules(direction) or ():
            if rule.ports and not any(_port_matches(pt, protocol, port, dest) for pt in rule.ports):
                continue
            if not rule.peers:
                return True
            for peer in rule.peers:
                if peer.cidr is not None:
                    if _in_block(peer_ip, peer):
                        return True
                elif peer_pod is not None and _peer_matches_pod(peer, policy.namespace,
                                                                peer_pod, namespaces):
                    return True
    return False


def allows(policies: Iterable[Policy], namespaces: Mapping[str, Mapping[str, str]],
           src: PodInfo | str, dst: PodInfo | str, protocol: str = "TCP", port: int = 80) -> bool:
    """Would a new connection from `src` to `dst` (pods, or bare addresses for what is not a
    pod: a node, a client) on `protocol`/`port` pass? Upstream's semantics, spelled out."""
    policies = list(policies)
    src_pod = src if isinstance(src, PodInfo) and not src.host_network else None
    dst_pod = dst if isinstance(dst, PodInfo) and not dst.host_network else None
    src_ip = src.ip if isinstance(src, PodInfo) else src
    dst_ip = dst.ip if isinstance(dst, PodInfo) else dst
    if src_pod is not None and not _side_allows(policies, EGRESS, src_pod, dst_ip, dst_pod,
                                                protocol, port, namespaces):
        return False
    if dst_pod is not None and not _side_allows(policies, INGRESS, dst_pod, src_ip, src_pod,
                                                protocol, port, namespaces):
        return False
    return True


# -- a node's plan ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PeerSets:
    """Who a rule admits, as set contents: pod addresses (from its selector peers) and networks
    (its ipBlocks, excepts taken out). `any_peer`: the rule names no peer at all."""

    any_peer: bool
    has_pods: bool = False          # the rule has selector peers (its pod set exists)
    has_nets: bool = False          # the rule has ipBlock peers (its net set exists)
    pods: tuple[str, ...] = ()
    nets: tuple[str, ...] = ()


@dataclass(frozen=True)
class PortMatch:
    """One port entry of a rule: numeric (protocol, first..last; None: every port) or named,
    as a set of (address, protocol, port) of the pods that have a port of that name."""

    protocol: str
    first: int | None = None
    last: int | None = None
    named: str | None = None
    members: tuple[tuple[str, str, int], ...] = ()   # named: (ip, protocol, port)


@dataclass(frozen=True)
class PlannedRule:
    policy: str          # namespace/name
    direction: str
    index: int
    peers: PeerSets
    ports: tuple[PortMatch, ...]    # empty: every port


@dataclass(frozen=True)
class PlannedPolicy:
    key: str
    direction: str
    rules: tuple[PlannedRule, ...]


@dataclass(frozen=True)
class Protected:
    """A pod of this node with the policies isolating it, per direction (sorted keys)."""

    pod: PodInfo
    ingress: tuple[str, ...]
    egress: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    node: str
    protected: tuple[Protected, ...]            # this node's isolated pods, by key
    policies: tuple[PlannedPolicy, ...]         # the (policy, direction)s they use
    pods_known: int = 0
    policies_known: int = 0
    warnings: tuple[str, ...] = field(default=())


def block_networks(peer: Peer) -> list[ipaddress.IPv4Network]:
    """An ipBlock as disjoint networks: its cidr with each except taken out (exact, so the sets
    need no `nomatch` entries and blocks of one rule can be merged)."""
    nets = [ipaddress.ip_network(peer.cidr, strict=False)]
    for text in peer.excepts:
        hole = ipaddress.ip_network(text, strict=False)
        out = []
        for net in nets:
            if hole.version != net.version:
                out.append(net)
            elif net.subnet_of(hole):
                continue
            elif hole.subnet_of(net):
                out.extend(net.address_exclude(hole))
            else:
                out.append(net)
        nets = out
    return nets


class _Resolver:
    """Selector results memoized for one resolve (policies share selectors)."""

    def __init__(self, pods: Iterable[PodInfo], namespaces: Mapping[str, Mapping[str, str]]):
        self.namespaces = namespaces
        self.by_ns: dict[str, list[PodInfo]] = {}
        for pod in pods:
            if pod.ip and not pod.host_network:
                self.by_ns.setdefault(pod.namespace, []).append(pod)
        self._ns: dict[str, list[str]] = {}
        self._pods: dict[tuple[str, str], list[PodInfo]] = {}

    def namespaces_matching(self, selector_json: str) -> list[str]:
        if selector_json not in self._ns:
            selector = json.loads(selector_json)
            names = set(self.namespaces) | set(self.by_ns)
            self._ns[selector_json] = sorted(
                n for n in names if selector_matches(selector, dict(self.namespaces.get(n, {}))))
        return self._ns[selector_json]

    def pods_matching(self, namespace: str, selector_json: str | None) -> list[PodInfo]:
        key = (namespace, selector_json or "")
        if key not in self._pods:
            pods = self.by_ns.get(namespace, [])
            if selector_json is not None and selector_json != "{}":
                selector = json.loads(selector_json)
                pods = [p for p in pods if selector_matches(selector, p.label_map)]
            self._pods[key] = pods
        return self._pods[key]

    def peer_pods(self, peer: Peer, policy_ns: str) -> list[PodInfo]:
        if peer.namespace_selector is None:
            spaces = [policy_ns]
        else:
            spaces = self.namespaces_matching(peer.namespace_selector)
        out: list[PodInfo] = []
        for ns in spaces:
            out += self.pods_matching(ns, peer.pod_selector)
        return out

    def all_pods(self) -> list[PodInfo]:
        return [p for pods in self.by_ns.values() for p in pods]


@functools.lru_cache(maxsize=1 << 16)
def _ip_key(ip: str) -> int:
    """An address as a number, to sort by (an IPv4Address per comparison cost a resolve of
    1,000 pods and 200 policies over a second)."""
    return int(ipaddress.ip_address(ip))


def _planned_rule(r: _Resolver, policy: Policy, direction: str, index: int, rule: Rule,
                  targets: list[PodInfo]) -> PlannedRule:
    """One rule, resolved. `targets`: this node's pods the policy selects, the only possible
    destinations of its ingress (a named port resolves on the destination)."""
    selector_peers = [p for p in rule.peers if p.cidr is None]
    blocks = [p for p in rule.peers if p.cidr is not None]
    peer_pods: dict[str, PodInfo] = {}
    for peer in selector_peers:
        for p in r.peer_pods(peer, policy.namespace):
            peer_pods[p.key] = p
    pods = {p.ip for p in peer_pods.values()}
    nets: list[ipaddress.IPv4Network] = []
    for peer in blocks:
        nets += [n for n in block_networks(peer) if n.version == 4]
    collapsed = [str(n) for n in ipaddress.collapse_addresses(nets)]
    peers = PeerSets(not rule.peers, bool(selector_peers), bool(blocks),
                     tuple(sorted(pods, key=_ip_key)), tuple(collapsed))
    if direction == INGRESS:
        destinations = targets
    elif selector_peers and not blocks:
        destinations = list(peer_pods.values())
    else:
        destinations = r.all_pods()          # any address, so any pod with the port
    ports = []
    for port in rule.ports:
        if port.name is not None:
            members = sorted({(p.ip, port.protocol, n) for p in destinations
                              if (n := p.port_named(port.name, port.protocol)) is not None},
                             key=lambda m: (_ip_key(m[0]), m[2]))
            ports.append(PortMatch(port.protocol, named=port.name, members=tuple(members)))
        else:
            last = port.end_port if port.end_port is not None else port.port
            ports.append(PortMatch(port.protocol, port.port, last))
    return PlannedRule(policy.key, direction, index, peers, tuple(ports))


def resolve(policies: Iterable[Policy], pods: Iterable[PodInfo],
            namespaces: Mapping[str, Mapping[str, str]], node: str) -> Plan:
    """The plan of `node`: its pods that some policy isolates, and the rules those policies
    hold, with every selector resolved to addresses and every named port to numbers."""
    policies = sorted(policies, key=lambda p: p.key)
    given = list(pods)
    # One pod per address, cluster-wide: a pod on its way out must neither be policed in its
    # successor's place nor lend it its labels as a peer.
    addressed, warnings = _one_pod_per_address(p for p in given if p.ip and not p.host_network)
    r = _Resolver(addressed, namespaces)
    local = [p for p in addressed if p.node == node]
    by_ns: dict[str, list[Policy]] = {}
    for policy in policies:
        by_ns.setdefault(policy.namespace, []).append(policy)
    protected = []
    used: dict[tuple[str, str], Policy] = {}
    targets: dict[str, list[PodInfo]] = {}
    for pod in local:
        chosen: dict[str, list[str]] = {INGRESS: [], EGRESS: []}
        for policy in by_ns.get(pod.namespace, []):
            if not selects(policy, pod):
                continue
            targets.setdefault(policy.key, []).append(pod)
            for direction in DIRECTIONS:
                if policy.rules(direction) is not None:
                    chosen[direction].append(policy.key)
                    used[(policy.key, direction)] = policy
        if chosen[INGRESS] or chosen[EGRESS]:
            protected.append(Protected(pod, tuple(chosen[INGRESS]), tuple(chosen[EGRESS])))
    planned = []
    for (key, direction), policy in sorted(used.items()):
        rules = tuple(_planned_rule(r, policy, direction, i, rule, targets[key])
                      for i, rule in enumerate(policy.rules(direction) or ()))
        planned.append(PlannedPolicy(key, direction, rules))
    return Plan(node, tuple(protected), tuple(planned), len(given), len(policies), tuple(warnings))


def _one_pod_per_address(pods: Iterable[PodInfo]) -> tuple[list[PodInfo], list[str]]:
    """Pods by key, one per address: a pod on its way out keeps its IP in its status until it
    is gone, and its successor may already hold it. The living pod wins (two living pods on
    one address: the last by key, and a warning)."""
    by_ip: dict[str, list[PodInfo]] = {}
    for pod in pods:
        by_ip.setdefault(pod.ip, []).append(pod)
    out, warnings = [], []
    for ip, holders in by_ip.items():
        holders.sort(key=lambda p: (not p.terminating, p.key))
        out.append(holders[-1])
        if len(holders) > 1 and not holders[-2].terminating:
            warnings.append(f"pods {', '.join(p.key for p in holders)} all hold {ip}: "
                            f"policing it as {holders[-1].key}")
    return sorted(out, key=lambda p: p.key), warnings
