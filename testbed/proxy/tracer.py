"""Pure: a packet tracer over rendered iptables-restore text, for tests.

Owns `trace(text, local_ips, src, protocol, dst, dport)`, a port of upstream's test tracer
(`iptablesTracer`, packet_flows.md): a NEW connection walks nat PREROUTING (or KUBE-SERVICES
when the text has no built-in chains), then the filter KUBE-SERVICES, KUBE-EXTERNAL-SERVICES,
KUBE-NODEPORTS and KUBE-PROXY-FIREWALL chains. `-s/-d` (CIDR or IP, `!`), `-p`, `--dport`,
`--src-type/--dst-type LOCAL` and `-i` are matched; rules that look at history (`--rcheck`,
`--mark`, `--ctstate`) never match; `statistic` is "every branch possible", so all endpoints of
a service are collected in rule order. Everything else (comments, nfacct, `recent --set`) is
ignored. It reads only the text it is given.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

from testbed.proxy.model import contains
from testbed.proxy.restore import Table, parse

FILTER_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS",
                 "KUBE-PROXY-FIREWALL")
_HISTORY = ("--rcheck", "--mark", "--ctstate")


@dataclass(frozen=True)
class Trace:
    """Where a packet went: DNAT targets or verdicts in rule order, and whether it was marked
    for masquerade."""

    outputs: tuple[str, ...]
    masq: bool
    matched: tuple[str, ...] = ()  # the rules that matched, for failure messages

    @property
    def output(self) -> str:
        """Upstream's form: "10.180.0.1:80, 10.180.2.1:80", "DROP", "" ..."""
        return ", ".join(self.outputs)


@dataclass
class _Rule:
    chain: str
    raw: str
    matches: list[tuple[str, bool, str]] = field(default_factory=list)  # (option, negated, val)
    jump: str = ""
    to_destination: str = ""
    probability: bool = False
    history: bool = False


def _parse_rule(chain: str, raw: str) -> _Rule:
    rule = _Rule(chain, raw)
    words = shlex.split(raw)
    negate = False
    i = 0
    while i < len(words):
        w = words[i]
        if w == "!":
            negate = True
            i += 1
            continue
        value = words[i + 1] if i + 1 < len(words) else ""
        if w in ("-s", "-d", "-p", "--dport", "--src-type", "--dst-type", "-i"):
            rule.matches.append((w, negate, value))
            i += 2
        elif w == "-j":
            rule.jump = value
            i += 2
        elif w == "--to-destination":
            rule.to_destination = value
            i += 2
        elif w == "--probability":
            rule.probability = True
            i += 2
        elif w in _HISTORY:
            rule.history = True
            i += 1
        else:
            i += 1
        negate = False
    return rule


@dataclass
class _Packet:
    src: str
    protocol: str
    dst: str
    dport: str
    iface: str | None
    local_ips: frozenset[str]


class _Tracer:
    def __init__(self, tables: dict[str, Table]) -> None:
        self.rules = {
            (tname, cname): [_parse_rule(cname, r) for r in chain.rules]
            for tname, table in tables.items() for cname, chain in table.chains.items()}
        self.outputs: list[str] = []
        self.matched: list[str] = []
        self.masq = False

    def matches(self, rule: _Rule, p: _Packet) -> bool:
        for opt, neg, val in rule.matches:
            if opt == "-s":
                ok = contains(val, p.src)
            elif opt == "-d":
                ok = contains(val, p.dst)
            elif opt == "-p":
                ok = val.lower() == p.protocol.lower()
            elif opt == "--dport":
                ok = val == p.dport
            elif opt == "--src-type":
                ok = val == ("LOCAL" if p.src in p.local_ips else "not-matched")
            elif opt == "--dst-type":
                ok = val == ("LOCAL" if p.dst in p.local_ips else "not-matched")
            else:  # -i: an interface name, "+" ending a prefix
                ok = p.iface is not None and (
                    p.iface.startswith(val[:-1]) if val.endswith("+") else p.iface == val)
            if ok == neg:
                return False
        return not rule.history

    def run(self, table: str, chain: str, p: _Packet, depth: int = 0) -> bool:
        """Walk one chain; True if it ended in a terminal verdict or DNAT."""
        if depth > 50:
            raise RecursionError(f"chain loop through {chain}")
        for rule in self.rules.get((table, chain), []):
            if not rule.jump or not self.matches(rule, p):
                continue
            self.matched.append(f"-A {chain} {rule.raw}")
            if rule.jump == "KUBE-MARK-MASQ":
                self.masq = True
            elif rule.jump in ("ACCEPT", "REJECT", "DROP"):
                self.outputs.append(rule.jump)
                return True
            elif rule.jump == "DNAT":
                self.outputs.append(rule.to_destination)
                return True
            elif rule.jump in ("RETURN",):
                return False
            elif self.run(table, rule.jump, p, depth + 1) and not rule.probability:
                return True
        return False


def trace(text: str, local_ips: Iterable[str], src: str, protocol: str, dst: str,
          dport: int | str, iface: str | None = None) -> Trace:
    """Trace one NEW connection through `text` (iptables-restore input)."""
    tables = parse(text)
    tracer = _Tracer(tables)
    local = frozenset({"127.0.0.1", "::1", *local_ips})
    packet = _Packet(src, protocol or "TCP", dst, str(dport), iface, local)
    nat = tables.get("nat")
    start = "PREROUTING" if nat and "PREROUTING" in nat.chains else "KUBE-SERVICES"
    tracer.run("nat", start, packet)
    if tracer.outputs:  # DNAT happened: the filter table sees the new destination
        host = tracer.outputs[0].rsplit(":", 1)[0].strip("[]")
        packet = _Packet(src, packet.protocol, host, packet.dport, iface, local)
    for chain in FILTER_CHAINS:
        tracer.run("filter", chain, packet)
    return Trace(tuple(tracer.outputs), tracer.masq, tuple(tracer.matched))
