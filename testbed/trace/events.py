"""Pure: reads `nft -a monitor trace` output of one namespace into the passes of traced packets.

The live tracer (testbed.emu.tracing) arms a table of its own in every namespace it watches,
whose base chains run first after conntrack (priority -190) and set `meta nftrace` on the
traced connection's packets, with a comment saying which: "request" (the connection's first
packets), "reply" (its answers) or "related" (an ICMP error about it). The kernel then reports
every chain and rule each such packet passes, in every table of the namespace, iptables-nft's
included:

    trace id 19d1f491 ip testbed-trace-77 pre packet: iif "cbr0" ... ip saddr 10.0.1.2 ...
    trace id 19d1f491 ip testbed-trace-77 pre rule ip dscp 0x2b ... comment "request" (verdict continue)
    trace id 19d1f491 ip nat KUBE-SERVICES rule meta l4proto tcp ... jump KUBE-SVC-X # handle 42 (verdict jump KUBE-SVC-X)
    trace id 356cd420 ip filter FORWARD packet: iif "cbr0" oif "node1-eth0" ...
    trace id 356cd420 ip filter FORWARD policy accept

A pass is one packet's way through the namespace: it begins where the tracer's own chain
reports the packet, and holds what follows until the next packet begins there (the kernel may
give one packet new trace ids on its way, after NAT, so ids cannot be trusted to join them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ENTRY_CHAINS = ("pre", "out")   # the tracer's chains that choose the packets
INPUT_CHAIN = "inp"             # its chain on the input hook: the packet reached its host
_LINE = re.compile(r"trace id (?P<id>[0-9a-f]+) (?P<family>\w+) (?P<table>\S+) (?P<chain>\S+) "
                   r"(?P<kind>packet|rule|policy|verdict|unknown)(?::)? ?(?P<rest>.*)$")
_VERDICT = re.compile(r"\s*\(verdict (?P<verdict>[^)]*)\)\s*$")
_HANDLE = re.compile(r"\s*# handle (?P<handle>\d+)\s*$")
_COMMENT = re.compile(r'comment "(?P<comment>[^"]*)"')
_FIELD = re.compile(r'(?P<key>iif|oif|ip saddr|ip daddr|ip protocol|tcp sport|tcp dport|udp sport|'
                    r'udp dport|icmp type|icmp code|icmp id|tcp flags ==) "?(?P<value>[^" ]+)"?')
_COUNTER = re.compile(r"\s*counter packets \d+ bytes \d+")


@dataclass
class Packet:
    """A packet as the kernel reported it at a chain."""

    table: str
    chain: str
    fields: dict[str, str]

    @property
    def iif(self) -> str | None:
        return self.fields.get("iif")

    @property
    def oif(self) -> str | None:
        return self.fields.get("oif")

    def address(self, side: str) -> str:
        """"10.0.1.2:45678" (side "s") or the destination (side "d"); the bare IP for ICMP."""
        ip = self.fields.get(f"ip {side}addr", "?")
        for proto in ("tcp", "udp"):
            port = self.fields.get(f"{proto} {side}port")
            if port is not None:
                return f"{ip}:{port}"
        return ip


@dataclass
class Hit:
    """A rule (or a chain's policy) the packet met, and what it decided."""

    family: str
    table: str
    chain: str
    rule: str            # nft's text of the rule, counters and handle taken out ("" for policy)
    verdict: str         # continue, jump X, goto X, accept, drop, return, ...
    handle: int | None = None
    policy: bool = False

    @property
    def where(self) -> str:
        return f"{self.table}/{self.chain}"


@dataclass
class Pass:
    """One packet's way through one namespace."""

    direction: str                              # request, reply, related
    packets: list[Packet] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)

    @property
    def first(self) -> Packet:
        return self.packets[0]

    @property
    def iif(self) -> str | None:
        return next((p.iif for p in self.packets if p.iif), None)

    @property
    def oif(self) -> str | None:
        return next((p.oif for p in reversed(self.packets) if p.oif), None)

    @property
    def local_in(self) -> bool:
        """It was delivered to this namespace's own sockets (it reached an input hook)."""
        return any(p.chain in ("INPUT", INPUT_CHAIN) for p in self.packets)

    def chains(self, own_table: str) -> list[str]:
        """The chains it passed, "TABLE/CHAIN", in order, the tracer's own left out."""
        out: list[str] = []
        for hit in self.hits:
            if hit.table == own_table:
                continue
            entered = [hit.where]
            word, _, target = hit.verdict.partition(" ")
            if word in ("jump", "goto") and target:
                entered.append(f"{hit.table}/{target}")   # entered, whether or not a rule there matched
            for where in entered:
                if not out or out[-1] != where:
                    out.append(where)
        return out

    def final(self) -> Hit | None:
        """The hit that ended its way here with a drop or a reject, if one did."""
        for hit in self.hits:
            if hit.verdict == "drop" or hit.verdict.startswith("reject"):
                return hit
        return None


def parse_line(line: str) -> tuple[str, str, Packet | Hit] | None:
    """(trace id, kind, what) of one line of `nft -a monitor trace`, or None for others."""
    m = _LINE.match(line.strip())
    if not m:
        return None
    family, table, chain, kind, rest = (m["family"], m["table"], m["chain"], m["kind"], m["rest"])
    if kind == "packet":
        fields = {f["key"].replace(" ==", ""): f["value"] for f in _FIELD.finditer(rest)}
        return m["id"], kind, Packet(table, chain, fields)
    verdict = ""
    v = _VERDICT.search(rest)
    if v:
        verdict, rest = v["verdict"].strip(), rest[:v.start()]
    handle = None
    h = _HANDLE.search(rest)
    if h:
        handle, rest = int(h["handle"]), rest[:h.start()]
    if kind in ("policy", "verdict"):
        # "policy accept meta mark 0x00010000": the verdict, then the packet's meta data
        words = rest.split()
        return m["id"], kind, Hit(family, table, chain, "", words[0] if words else verdict, None, True)
    rule = _COUNTER.sub("", rest).strip()
    rule = re.sub(r"\s+", " ", rule)
    return m["id"], kind, Hit(family, table, chain, rule, verdict, handle)


def passes(lines: list[str], own_table: str) -> list[Pass]:
    """The passes in one namespace's monitor output, in the order they began.

    Lines are joined to passes by trace id where the id is known: a REJECT rule reports its
    verdict only after the ICMP error it sent has been traced, so another pass's lines can
    come between a pass's own. A line with an id not seen before (the kernel gave the packet a
    new one after NAT) belongs to the pass that began last."""
    out: list[Pass] = []
    by_id: dict[str, Pass | None] = {}
    current: Pass | None = None
    pending: dict[str, Packet] = {}     # the tracer's own chain's packet line, before its rule
    for line in lines:
        parsed = parse_line(line)
        if parsed is None:
            continue
        trace_id, _, what = parsed
        if what.table == own_table and (not isinstance(what, Packet) or what.chain in ENTRY_CHAINS):
            if isinstance(what, Packet):
                pending[trace_id] = what
                continue
            if what.policy or not what.rule:
                continue
            c = _COMMENT.search(what.rule)
            direction = c["comment"] if c else ""
            if direction == "canary":
                by_id[trace_id] = current = None
                continue
            first = pending.pop(trace_id, None)
            current = Pass(direction, [first] if first else [])
            by_id[trace_id] = current
            out.append(current)
            continue
        if trace_id in by_id:
            target = by_id[trace_id]
        else:
            target = by_id[trace_id] = current
        if target is None:
            continue
        if isinstance(what, Packet):
            target.packets.append(what)
        else:
            target.hits.append(what)
    return out


def canaries(lines: list[str], own_table: str) -> int:
    """How many canary packets (the tracer's readiness marks) the output reports."""
    count = 0
    for line in lines:
        parsed = parse_line(line)
        if parsed and isinstance(parsed[2], Hit) and parsed[2].table == own_table:
            c = _COMMENT.search(parsed[2].rule)
            if c and c["comment"] == "canary":
                count += 1
    return count


_DNAT = re.compile(r"\bdnat (?:ip )?to (?P<to>[0-9.]+(?::\d+)?)")


def dnat_target(p: Pass) -> str | None:
    """Where the pass's DNAT rule sent the packet ("10.0.2.3:8080"), from the rule's own text;
    for a packet dropped before conntrack kept the rewrite."""
    for hit in p.hits:
        m = _DNAT.search(hit.rule)
        if m:
            return m["to"]
    return None


def conntrack_tuples(line: str) -> list[tuple[str, str, str | None, str | None]] | None:
    """The original and reply tuples (src, dst, sport, dport; ports None for ICMP) of one line
    of `conntrack -L`, or None when it has not both."""
    pairs = [f.split("=", 1) for f in line.split() if "=" in f]
    values = {key: [v for k, v in pairs if k == key] for key in ("src", "dst", "sport", "dport")}
    if len(values["src"]) < 2 or len(values["dst"]) < 2:
        return None
    return [(values["src"][i], values["dst"][i],
             values["sport"][i] if len(values["sport"]) > i else None,
             values["dport"][i] if len(values["dport"]) > i else None) for i in (0, 1)]
