"""Pure: a node's NetworkPolicy plan as iptables-restore text (filter table) and ipsets.

The layout follows kube-router's (pkg/controllers/netpol), written anew:

    FORWARD -j KUBE-NWPLCY-FORWARD         (first rule: before kube-proxy's KUBE-FORWARD accepts)
    INPUT   -j KUBE-NWPLCY-INPUT           (a pod's egress to its own node's addresses)

    KUBE-NWPLCY-FORWARD
      -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN       replies of allowed connections
      -s POD-IP -j KUBE-POD-FW-<egress of the pod>              each isolated pod, egress first
      -d POD-IP -j KUBE-POD-FW-<ingress of the pod>             then ingress
    KUBE-POD-FW-... (one per pod and direction)
      -j MARK --set-xmark 0x0/0x10000
      -j KUBE-NWPLCY-<policy, direction>                        each policy isolating the pod
      -m mark --mark 0x10000/0x10000 -j RETURN                  some rule allowed it
      -j DROP
    KUBE-NWPLCY-<policy, direction> (shared by every pod the policy selects)
      [-m set --match-set KUBE-NP-P-... src] [-p tcp -m tcp --dport 80] -j MARK --set-xmark 0x10000/0x10000

Packets pass FORWARD after kube-proxy's DNAT (PREROUTING) and before its masquerade
(POSTROUTING), so a policy sees the backend pod as destination and the client as source;
br_netfilter sends bridged (same-node) traffic through the same chain. Allowed traffic RETURNs,
so the rest of FORWARD (kube-proxy's chains) still applies; denied traffic is dropped.

Sets (ipset, one per rule and kind, named by a hash of what they stand for, so a selector's
result changing rewrites a set, not a rule):
    KUBE-NP-P-<hash>  hash:ip       the addresses of the pods a rule's selector peers match
    KUBE-NP-N-<hash>  hash:net      a rule's ipBlocks, excepts taken out (disjoint networks)
    KUBE-NP-T-<hash>  hash:ip,port  pods that have the named port of a rule's port entry
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from testbed.netpol.model import EGRESS, INGRESS, Plan, PlannedRule, PortMatch

FORWARD_CHAIN = "KUBE-NWPLCY-FORWARD"
INPUT_CHAIN = "KUBE-NWPLCY-INPUT"
TOP_CHAINS = (FORWARD_CHAIN, INPUT_CHAIN)
POD_PREFIX = "KUBE-POD-FW-"
POLICY_PREFIX = "KUBE-NWPLCY-"
SET_PREFIX = "KUBE-NP-"
TMP_SET = "KUBE-NP-TMP"
MARK = 0x10000
MARK_TEXT = f"{MARK:#x}/{MARK:#x}"
# (built-in chain, our chain): the jumps that must be the FIRST rule of the built-in chains
JUMPS = (("FORWARD", FORWARD_CHAIN), ("INPUT", INPUT_CHAIN))
SET_TYPES = {"P": "hash:ip", "N": "hash:net", "T": "hash:ip,port"}


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest())[:16].decode()


def pod_chain(pod_key: str, direction: str) -> str:
    return POD_PREFIX + _hash(f"{pod_key}/{direction}")


def policy_chain(policy_key: str, direction: str) -> str:
    return POLICY_PREFIX + _hash(f"{policy_key}/{direction}")


def set_name(rule: PlannedRule, kind: str, port_index: int = 0) -> str:
    what = f"{rule.policy}/{rule.direction}/{rule.index}/{kind}"
    return f"{SET_PREFIX}{kind}-" + _hash(what + (f"/{port_index}" if kind == "T" else ""))


def is_ours(chain: str) -> bool:
    return chain.startswith((POD_PREFIX, POLICY_PREFIX))


@dataclass(frozen=True)
class IPSet:
    name: str
    type: str                       # hash:ip, hash:net, hash:ip,port
    members: tuple[str, ...]        # as ipset writes them: 10.0.0.1, 10.0.0.0/8, 10.0.0.1,tcp:80
    what: str = ""                  # what it stands for, for people


@dataclass(frozen=True)
class Rendered:
    text: str                       # iptables-restore --noflush input, filter table only
    chains: tuple[str, ...]         # the chains it declares
    sets: Mapping[str, IPSet]


def ipset_networks(nets: tuple[str, ...]) -> tuple[str, ...]:
    """Networks as a hash:net set takes them: it refuses a /0 prefix, so 0.0.0.0/0 (an ipBlock
    of "anywhere") goes in as its two halves, as kube-router writes it."""
    out: list[str] = []
    for net in nets:
        out += ["0.0.0.0/1", "128.0.0.0/1"] if net.endswith("/0") else [net]
    return tuple(out)


COMMENT_MAX = 256     # xt_comment's limit


def _comment(text: str) -> str:
    if len(text) > COMMENT_MAX - 1:
        text = text[:COMMENT_MAX - 4] + "..."
    return f'-m comment --comment "{text}"'


def _port_matches(rule: PlannedRule, ports: tuple[PortMatch, ...]) -> list[tuple[str, IPSet | None]]:
    if not ports:
        return [("", None)]
    out: list[tuple[str, IPSet | None]] = []
    for i, port in enumerate(ports):
        proto = port.protocol.lower()
        if port.named is not None:
            s = IPSet(set_name(rule, "T", i), SET_TYPES["T"],
                      tuple(f"{ip},{p.lower()}:{n}" for ip, p, n in port.members),
                      f"{rule.policy} {rule.direction.lower()} rule {rule.index}: "
                      f"pods with port {port.named}/{port.protocol}")
            out.append((f"-p {proto} -m set --match-set {s.name} dst,dst", s))
        elif port.first is None:
            out.append((f"-p {proto}", None))
        else:
            span = str(port.first) if port.last in (None, port.first) else f"{port.first}:{port.last}"
            out.append((f"-p {proto} -m {proto} --dport {span}", None))
    return out


def _peer_matches(rule: PlannedRule) -> list[tuple[str, IPSet | None]]:
    if rule.peers.any_peer:
        return [("", None)]
    side = "src" if rule.direction == INGRESS else "dst"
    what = f"{rule.policy} {rule.direction.lower()} rule {rule.index}"
    out: list[tuple[str, IPSet | None]] = []
    if rule.peers.has_pods:
        s = IPSet(set_name(rule, "P"), SET_TYPES["P"], rule.peers.pods, f"{what}: pods")
        out.append((f"-m set --match-set {s.name} {side}", s))
    if rule.peers.has_nets:
        s = IPSet(set_name(rule, "N"), SET_TYPES["N"], ipset_networks(rule.peers.nets),
                  f"{what}: ipBlocks")
        out.append((f"-m set --match-set {s.name} {side}", s))
    return out


def render(plan: Plan) -> Rendered:
    """The filter-table text (our chains, flushed and refilled; the caller adds -X lines for
    stale chains) and the sets the rules name."""
    chains: list[str] = [*TOP_CHAINS]
    lines: list[str] = []
    sets: dict[str, IPSet] = {}
    top = {FORWARD_CHAIN: ["-m conntrack --ctstate RELATED,ESTABLISHED "
                           + _comment("replies of allowed connections") + " -j RETURN"],
           INPUT_CHAIN: ["-m conntrack --ctstate RELATED,ESTABLISHED "
                         + _comment("replies of allowed connections") + " -j RETURN"]}
    for direction, flag in ((EGRESS, "-s"), (INGRESS, "-d")):
        for p in plan.protected:
            keys = p.egress if direction == EGRESS else p.ingress
            if not keys:
                continue
            chain = pod_chain(p.pod.key, direction)
            chains.append(chain)
            jump = f"{flag} {p.pod.ip}/32 {_comment(f'{p.pod.key} {direction.lower()}')} -j {chain}"
            top[FORWARD_CHAIN].append(jump)
            if direction == EGRESS:
                top[INPUT_CHAIN].append(jump)
            lines.append(f"-A {chain} -j MARK --set-xmark 0x0/{MARK:#x}")
            for key in keys:
                lines.append(f"-A {chain} {_comment(f'policy {key}')} -j {policy_chain(key, direction)}")
            lines.append(f"-A {chain} -m mark --mark {MARK_TEXT} -j RETURN")
            lines.append(f"-A {chain} {_comment(f'{p.pod.key}: {direction.lower()} not allowed by its NetworkPolicies')} -j DROP")
    for policy in plan.policies:
        chain = policy_chain(policy.key, policy.direction)
        chains.append(chain)
        for rule in policy.rules:
            note = _comment(f"{rule.policy} {rule.direction.lower()} rule {rule.index}")
            for peer, peer_set in _peer_matches(rule):
                if peer_set is not None:
                    sets[peer_set.name] = peer_set
                for port, port_set in _port_matches(rule, rule.ports):
                    if port_set is not None:
                        sets[port_set.name] = port_set
                    match = " ".join(m for m in (note, peer, port) if m)
                    lines.append(f"-A {chain} {match} -j MARK --set-xmark {MARK_TEXT}")
    head = ["*filter", *(f":{c} - [0:0]" for c in chains)]
    body = [f"-A {c} {rule}" for c in TOP_CHAINS for rule in top[c]] + lines
    return Rendered("\n".join(head + body + ["COMMIT", ""]), tuple(chains), sets)


def stale_chains_text(stale: Iterable[str]) -> str:
    """iptables-restore text deleting chains no longer wanted (flushed first)."""
    stale = sorted(stale)
    if not stale:
        return ""
    return "\n".join(["*filter", *(f":{c} - [0:0]" for c in stale), *(f"-X {c}" for c in stale),
                      "COMMIT", ""])


def ipset_restore_text(sets: Iterable[IPSet]) -> str:
    """`ipset restore` input that makes each set hold exactly its members, atomically per set:
    fill a temporary set, swap it in, destroy it."""
    out = []
    for s in sets:
        out.append(f"create {s.name} {s.type} family inet -exist")
        out.append(f"create {TMP_SET} {s.type} family inet")
        out += [f"add {TMP_SET} {m}" for m in s.members]
        out += [f"swap {TMP_SET} {s.name}", f"destroy {TMP_SET}"]
    return "\n".join(out) + ("\n" if out else "")


def ipset_destroy_text(names: Iterable[str]) -> str:
    return "".join(f"destroy {n}\n" for n in sorted(names))
