"""Pure: a node's NetworkPolicy plan as one nftables table, `ip kube-netpol`.

The same structure as the iptables mode (testbed/netpol/iptables.py), in nftables' words and
with readable names (nftables allows long names with "/"):

    table ip kube-netpol
      map egress-pods   { ipv4_addr : verdict }   POD-IP : jump pod-egress-NS/NAME
      map ingress-pods  { ipv4_addr : verdict }   POD-IP : jump pod-ingress-NS/NAME
      chain forward  (hook forward, priority filter - 5)
        ct state established,related accept
        ip saddr vmap @egress-pods
        ip daddr vmap @ingress-pods
      chain input    (hook input, priority filter - 5): established accept, egress-pods
      chain pod-ingress-NS/NAME
        meta mark set meta mark & ~0x10000; jump policy-ingress-NS/POLICY ...
        meta mark & 0x10000 == 0x10000 return; drop
      chain policy-ingress-NS/POLICY
        ip saddr @rule-NS/POLICY/ingress/0/pods  tcp dport 80  meta mark set meta mark | 0x10000
      set rule-NS/POLICY/ingress/0/pods   { ipv4_addr }                        selector peers
      set rule-NS/POLICY/ingress/0/nets   { ipv4_addr; flags interval }        ipBlocks
      set rule-NS/POLICY/ingress/0/port-1 { ipv4_addr . inet_proto . inet_service }  named ports

An `accept` here ends only this table's chain: kube-proxy's table still sees the packet; a
`drop` is final. A full sync replaces the table in one transaction; a sync where only set
contents changed flushes and refills those sets, also in one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from testbed.netpol.model import EGRESS, INGRESS, Plan, PlannedRule, PortMatch

TABLE = "kube-netpol"
FAMILY = "ip"
MARK = 0x10000
CLEAR = f"meta mark set meta mark & {~MARK & 0xFFFFFFFF:#010x}"
SET_MARK = f"meta mark set meta mark | {MARK:#010x}"
PRIORITY = "filter - 5"


NAME_MAX = 200     # the kernel takes 255 characters; a namespace and a pod name take up to 317


def _name(text: str) -> str:
    """`text` as a chain or set name: itself when short enough, else a readable head and a hash
    of the whole (so that two long names never meet)."""
    if len(text) <= NAME_MAX:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{text[:NAME_MAX - 17]}-{digest}"


COMMENT_MAX = 128  # nft refuses longer comments


def _comment(who: str, what: str) -> str:
    """`who` + `what`, with `who` cut short (ending in "...") to fit a comment."""
    room = COMMENT_MAX - len(what)
    return (who if len(who) <= room else who[:room - 3] + "...") + what


def pod_chain(pod_key: str, direction: str) -> str:
    return _name(f"pod-{direction.lower()}-{pod_key}")


def policy_chain(policy_key: str, direction: str) -> str:
    return _name(f"policy-{direction.lower()}-{policy_key}")


def set_name(rule: PlannedRule, kind: str, port_index: int = 0) -> str:
    base = f"rule-{rule.policy}/{rule.direction.lower()}/{rule.index}"
    return _name(f"{base}/port-{port_index}" if kind == "port" else f"{base}/{kind}")


@dataclass(frozen=True)
class NftSet:
    name: str
    type: str                       # "ipv4_addr", "ipv4_addr . inet_proto . inet_service"
    interval: bool
    members: tuple[str, ...]        # as nft writes them


@dataclass(frozen=True)
class Rendered:
    structure: str                  # the table without set elements (chains, maps, set heads)
    sets: Mapping[str, NftSet]


def _elements(members: Iterable[str]) -> str:
    members = list(members)
    return f"\t\telements = {{ {', '.join(members)} }}\n" if members else ""


def _set_text(s: NftSet) -> str:
    return (f"\tset {s.name} {{\n\t\ttype {s.type}\n" + ("\t\tflags interval\n" if s.interval else "")
            + _elements(s.members) + "\t}\n")


def _peer_matches(rule: PlannedRule) -> list[tuple[str, NftSet | None]]:
    if rule.peers.any_peer:
        return [("", None)]
    side = "saddr" if rule.direction == INGRESS else "daddr"
    out: list[tuple[str, NftSet | None]] = []
    if rule.peers.has_pods:
        s = NftSet(set_name(rule, "pods"), "ipv4_addr", False, rule.peers.pods)
        out.append((f"ip {side} @{s.name}", s))
    if rule.peers.has_nets:
        s = NftSet(set_name(rule, "nets"), "ipv4_addr", True, rule.peers.nets)
        out.append((f"ip {side} @{s.name}", s))
    return out


def _port_matches(rule: PlannedRule, ports: tuple[PortMatch, ...]) -> list[tuple[str, NftSet | None]]:
    if not ports:
        return [("", None)]
    out: list[tuple[str, NftSet | None]] = []
    for i, port in enumerate(ports):
        proto = port.protocol.lower()
        if port.named is not None:
            s = NftSet(set_name(rule, "port", i), "ipv4_addr . inet_proto . inet_service", False,
                       tuple(f"{ip} . {p.lower()} . {n}" for ip, p, n in port.members))
            out.append((f"meta l4proto {proto} ip daddr . meta l4proto . th dport @{s.name}", s))
        elif port.first is None:
            out.append((f"meta l4proto {proto}", None))
        else:
            span = str(port.first) if port.last in (None, port.first) else f"{port.first}-{port.last}"
            out.append((f"meta l4proto {proto} th dport {span}", None))
    return out


def render(plan: Plan) -> Rendered:
    sets: dict[str, NftSet] = {}
    maps = {EGRESS: [], INGRESS: []}
    chains: list[str] = []
    for p in plan.protected:
        for direction, keys in ((EGRESS, p.egress), (INGRESS, p.ingress)):
            if not keys:
                continue
            name = pod_chain(p.pod.key, direction)
            maps[direction].append(f"{p.pod.ip} : jump {name}")
            body = [CLEAR, *(f"jump {policy_chain(k, direction)}" for k in keys),
                    f"meta mark & {MARK:#010x} == {MARK:#010x} return",
                    f'counter drop comment "{_comment(p.pod.key, f": {direction.lower()} not allowed by its NetworkPolicies")}"']
            chains.append(_chain(name, body))
    for policy in plan.policies:
        body = []
        for rule in policy.rules:
            for peer, peer_set in _peer_matches(rule):
                if peer_set is not None:
                    sets[peer_set.name] = peer_set
                for port, port_set in _port_matches(rule, rule.ports):
                    if port_set is not None:
                        sets[port_set.name] = port_set
                    match = " ".join(m for m in (peer, port) if m)
                    body.append(f"{match + ' ' if match else ''}{SET_MARK}")
        chains.append(_chain(policy_chain(policy.key, policy.direction), body))
    established = "ct state established,related accept"
    base = [
        _chain("forward", [established, "ip saddr vmap @egress-pods", "ip daddr vmap @ingress-pods"],
               hook="forward"),
        _chain("input", [established, "ip saddr vmap @egress-pods"], hook="input"),
    ]
    head = [f"table {FAMILY} {TABLE} {{\n",
            f'\tcomment "NetworkPolicy rules of node {plan.node}"\n']
    for direction, name in ((EGRESS, "egress-pods"), (INGRESS, "ingress-pods")):
        head.append(f"\tmap {name} {{\n\t\ttype ipv4_addr : verdict\n"
                    + _elements(maps[direction]) + "\t}\n")
    heads = [_set_text(NftSet(s.name, s.type, s.interval, ())) for s in sorted(sets.values(), key=lambda s: s.name)]
    structure = "".join(head + heads + base + chains) + "}\n"
    return Rendered(structure, sets)


def _chain(name: str, body: list[str], hook: str | None = None) -> str:
    lines = [f"\tchain {name} {{\n"]
    if hook:
        lines.append(f"\t\ttype filter hook {hook} priority {PRIORITY}; policy accept;\n")
    lines += [f"\t\t{rule}\n" for rule in body]
    lines.append("\t}\n")
    return "".join(lines)


def full_text(rendered: Rendered) -> str:
    """One transaction replacing the whole table (structure, then every set's elements); `add`
    first, so that the `delete` works whether or not the table is there."""
    out = [f"add table {FAMILY} {TABLE}\n", f"delete table {FAMILY} {TABLE}\n", rendered.structure]
    out += [_add_elements(s) for s in sorted(rendered.sets.values(), key=lambda s: s.name)
            if s.members]
    return "".join(out)


def sets_text(sets: Iterable[NftSet]) -> str:
    """One transaction making each of `sets` hold exactly its members."""
    out = []
    for s in sets:
        out.append(f"flush set {FAMILY} {TABLE} {s.name}\n")
        if s.members:
            out.append(_add_elements(s))
    return "".join(out)


def _add_elements(s: NftSet) -> str:
    return f"add element {FAMILY} {TABLE} {s.name} {{ {', '.join(s.members)} }}\n"


def delete_text() -> str:
    return f"delete table {FAMILY} {TABLE}\n"
