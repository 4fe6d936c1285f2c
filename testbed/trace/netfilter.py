"""Pure: walking one packet through a host's netfilter rules as the kernel printed them.

Owns the two readers the static trace (testbed.trace.static) uses on each host:

  - `Iptables(save, ipsets)`: `iptables-save` text (every table) and `ipset save` text. Also
    reads iptables-restore input as the project's renderers write it (`--xor-mark`, `-I`).
  - `NftTable(text)`: one `nft list table ...` listing (as nft prints it: blocks, elements
    wrapped over lines, `meta mark set meta mark | 0x00004000`), or the same table as `nft -f`
    input of `add ...` commands (as testbed.proxy.nftables renders it).

`run_hook(host_rules, hook, packet, walk)` sends a packet through every base chain of a
netfilter hook (prerouting, input, forward, output, postrouting) in priority order, iptables'
built-in chains at their tables' priorities, nftables' base chains at theirs; nat chains only
see a connection's first packet (state NEW). It rewrites the packet (DNAT, SNAT, masquerade,
marks) and records in `walk` the chains entered ("nat/KUBE-SERVICES", "kube-proxy/services"),
the rules that matched with what they did, the rewrites, and the rule that dropped or rejected.
Chains are named as `nft monitor trace` names them: on entry, and again when a rule of theirs
matches (or a base chain's policy applies) after a jump came back (nat/PREROUTING,
nat/KUBE-SERVICES, nat/PREROUTING when no Service matched); a base chain's policy is recorded
as a rule, `-P FORWARD ACCEPT` (iptables) or `policy accept` (nftables).

Semantics are upstream's test tracers' (iptablesTracer, nftablesTracer) made exact enough for
one connection: conntrack state is NEW (first packet) or ESTABLISHED (a reply), `-m recent
--rcheck` never matches (no history), and a random choice (`-m statistic`, `numgen random`)
goes to the branch whose DNAT target is `walk.prefer` (else the first), after every branch was
looked at so that `walk.endpoints` lists all the DNAT targets the rules could pick. A match
or statement it does not know raises TraceError naming the rule, never a silent guess.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace


class TraceError(ValueError):
    """The rules hold something this tracer cannot evaluate; the message names it."""


@dataclass
class Packet:
    src: str
    dst: str
    protocol: str                   # tcp, udp, icmp (lower case)
    sport: int | None = None
    dport: int | None = None
    mark: int = 0
    state: str = "new"              # "new" (first packet) or "established" (a reply)
    dnat: bool = False              # a DNAT was done to it (conntrack's DNAT status)
    iif: str | None = None
    oif: str | None = None


def endpoint_text(ip: str, port: int | None) -> str:
    return f"{ip}:{port}" if port is not None else ip


@dataclass
class Walk:
    """What one host's rules did to a packet (or, for a dry run, would do)."""

    local: frozenset[str] = frozenset()     # the host's addresses (fib/addrtype LOCAL)
    out_address: str | None = None         # what masquerade rewrites the source to
    in_address: str | None = None          # what REDIRECT rewrites the destination to
    prefer: str | None = None              # the endpoint ("ip" or "ip:port") a random choice takes
    chains: list[str] = field(default_factory=list)
    rules: list[dict] = field(default_factory=list)
    nat: list[dict] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    cause: dict | None = None               # {"chain", "rule", "verdict"} of a drop or reject
    dry: bool = False

    def dry_copy(self) -> Walk:
        return Walk(self.local, self.out_address, self.in_address, self.prefer, dry=True)

    def hit(self, chain: str, rule: str, verdict: str) -> None:
        """A rule of `chain` matched (or its policy applied): `chain` is named again when the
        packet came back to it from a jump, as nft's trace names it for that event."""
        if self.chains[-1:] != [chain]:
            self.chains.append(chain)
        self.rules.append({"chain": chain, "rule": rule, "verdict": verdict})

    def decide(self, chain: str, rule: str, verdict: str) -> str:
        """A rule (or a base chain's policy) gave `verdict` (accept, drop, reject): recorded,
        and a drop or reject as the walk's cause."""
        self.hit(chain, rule, verdict)
        if verdict != "accept":
            self.cause = {"chain": chain, "rule": rule, "verdict": verdict}
        return verdict

    def add_endpoint(self, target: str) -> None:
        if target not in self.endpoints:
            self.endpoints.append(target)

    def chosen(self, targets: list[str | None]) -> int:
        """The index of the branch to take: the preferred endpoint's, else the first."""
        for t in targets:
            if t is not None:
                self.add_endpoint(t)
        if self.prefer:
            for i, t in enumerate(targets):
                if t is not None and (t == self.prefer or t.rsplit(":", 1)[0] == self.prefer):
                    return i
        return 0


def _in_net(addr: str, net: str) -> bool:
    try:
        if "-" in net and "/" not in net:
            first, last = (ipaddress.ip_address(x.strip()) for x in net.split("-", 1))
            return first <= ipaddress.ip_address(addr) <= last
        return ipaddress.ip_address(addr) in ipaddress.ip_network(net, strict=False)
    except ValueError as err:
        raise TraceError(f"not an address or network: {net!r} ({addr})") from err


def _split_dest(text: str) -> tuple[str, int | None]:
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        return host.strip("[]"), int(port)
    return text, None


def _iface_is(iface: str | None, want: str, wildcard: str) -> bool:
    """`iface` is the interface `want` names (a trailing `wildcard`, + or *, matches a prefix)."""
    return iface is not None and (iface.startswith(want[:-1]) if want.endswith(wildcard)
                                  else iface == want)


def _is_local(addr: str, local: frozenset[str]) -> bool:
    """addrtype / fib type LOCAL: one of the host's addresses, or loopback."""
    return addr in local or addr.startswith("127.")


def _dnat(pkt: Packet, walk: Walk, target: str) -> None:
    ip, port = _split_dest(target)
    before = endpoint_text(pkt.dst, pkt.dport)
    pkt.dst, pkt.dport = ip, (port if port is not None else pkt.dport)
    pkt.dnat = True
    after = endpoint_text(pkt.dst, pkt.dport)
    walk.nat.append({"type": "dnat", "from": before, "to": after})
    walk.add_endpoint(after)


def _snat(pkt: Packet, walk: Walk, kind: str, to: str | None) -> None:
    if to is None:
        raise TraceError("masquerade with no outgoing address")
    ip, port = _split_dest(to)
    before = endpoint_text(pkt.src, pkt.sport)
    pkt.src = ip
    if port is not None:
        pkt.sport = port
    walk.nat.append({"type": kind, "from": before, "to": endpoint_text(pkt.src, pkt.sport)})


# -- iptables --------------------------------------------------------------------------------------

# tables at each hook, with their priorities (iptables-nft registers them at these)
IPT_HOOKS = {
    "prerouting": (("raw", -300), ("mangle", -150), ("nat", -100)),
    "input": (("mangle", -150), ("filter", 0), ("security", 50), ("nat", 100)),
    "forward": (("mangle", -150), ("filter", 0), ("security", 50)),
    "output": (("raw", -300), ("mangle", -150), ("nat", -100), ("filter", 0), ("security", 50)),
    "postrouting": (("mangle", -150), ("nat", 100)),
}
_BUILTIN_VERDICTS = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject"}
# options that take no value (everything else named here takes one)
_FLAGS = {"--rsource", "--rdest", "--reap", "--random-fully", "--random", "--persistent",
          "--limit-iface-in", "--limit-iface-out", "--update", "--rcheck", "--set"}
_IGNORED = {"--comment", "--name", "--mask", "--seconds", "--reject-with", "--hitcount",
            "--log-prefix", "--log-level", "--mode", "--every", "--packet"}


@dataclass
class _IptRule:
    chain: str
    text: str                                   # as iptables -S shows it: "-A CHAIN ..."
    matches: list[tuple[bool, str, list[str]]]  # (negated, option, values)
    target: str = ""
    goto: bool = False
    args: dict[str, str] = field(default_factory=dict)
    random: bool = False                        # -m statistic / nth: one of several branches


_ARITY = {"--match-set": 2}


def _parse_ipt_rule(chain: str, rest: str) -> _IptRule:
    words = shlex.split(rest)
    rule = _IptRule(chain, f"-A {chain} {rest}", [])
    i, neg = 0, False
    while i < len(words):
        w = words[i]
        if w == "!":
            neg, i = True, i + 1
            continue
        if w in ("-j", "-g", "--jump", "--goto"):
            rule.target, rule.goto = words[i + 1], w in ("-g", "--goto")
            i += 2
            while i < len(words):           # the target's options
                opt = words[i]
                if opt in _FLAGS:
                    rule.args[opt] = ""
                    i += 1
                else:
                    rule.args[opt] = words[i + 1] if i + 1 < len(words) else ""
                    i += 2
            break
        if w == "-m":
            if words[i + 1] in ("statistic",):
                rule.random = True
            i += 2
            continue
        if w in _FLAGS:
            rule.matches.append((neg, w, []))
            i += 1
        else:
            n = _ARITY.get(w, 1)
            rule.matches.append((neg, w, words[i + 1:i + 1 + n]))
            i += 1 + n
        neg = False
    return rule


class Iptables:
    """A host's iptables tables (from `iptables-save` text) and ipsets (`ipset save` text)."""

    def __init__(self, save: str, ipsets: str = "") -> None:
        self.chains: dict[tuple[str, str], list[_IptRule]] = {}
        self.policies: dict[tuple[str, str], str] = {}
        self.tables: list[str] = []
        table = None
        for line in save.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("*"):
                table = line[1:]
                self.tables.append(table)
            elif line == "COMMIT":
                table = None
            elif table is None:
                raise TraceError(f"iptables-save: a line outside a table: {line}")
            elif line.startswith(":"):
                name, policy = (line[1:].split() + ["-"])[:2]
                self.chains.setdefault((table, name), [])
                if policy != "-":
                    self.policies[(table, name)] = policy
            elif line.startswith(("-A ", "-I ")):
                _, chain, *rest = line.split(" ", 2)
                text = rest[0] if rest else ""
                rules = self.chains.setdefault((table, chain), [])
                if line.startswith("-I "):      # "-I CHAIN 1 ...": first
                    rules.insert(0, _parse_ipt_rule(chain, re.sub(r"^\d+ ", "", text)))
                else:
                    rules.append(_parse_ipt_rule(chain, text))
        self.sets: dict[str, tuple[str, set[str]]] = {}
        for line in ipsets.splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "create":
                self.sets[words[1]] = (words[2], set())
            elif len(words) >= 3 and words[0] == "add":
                self.sets.setdefault(words[1], ("hash:ip", set()))[1].add(words[2])

    def base_chains(self, hook: str, state: str) -> list[tuple[int, str, str]]:
        out = []
        for table, priority in IPT_HOOKS[hook]:
            if table == "nat" and state != "new":
                continue
            if table in self.tables and (table, hook.upper()) in self.chains:
                out.append((priority, table, hook.upper()))
        return out

    # matching
    def _in_set(self, name: str, flags: str, pkt: Packet, rule: _IptRule) -> bool:
        if name not in self.sets:
            raise TraceError(f"{rule.text}: no ipset {name}")
        kind, members = self.sets[name]
        dirs = flags.split(",")
        ip = pkt.src if dirs[0] == "src" else pkt.dst
        if kind == "hash:net":
            return any(_in_net(ip, m) for m in members)
        if kind == "hash:ip,port":
            port = pkt.sport if dirs[1:2] == ["src"] else pkt.dport
            return f"{ip},{pkt.protocol}:{port}" in members
        return ip in members

    def _matches(self, rule: _IptRule, pkt: Packet, local: frozenset[str]) -> bool:
        for neg, opt, vals in rule.matches:
            val = vals[0] if vals else ""
            if opt in _IGNORED or opt in ("--set", "--probability", "--rsource", "--rdest",
                                          "--reap", "--limit-iface-in", "--limit-iface-out"):
                continue
            if opt in ("--rcheck", "--update"):
                return False                        # no history: a new connection
            if opt in ("-s", "--source"):
                ok = _in_net(pkt.src, val)
            elif opt in ("-d", "--destination"):
                ok = _in_net(pkt.dst, val)
            elif opt in ("-p", "--protocol"):
                ok = val.lower() == pkt.protocol
            elif opt in ("-i", "--in-interface", "-o", "--out-interface"):
                ok = _iface_is(pkt.iif if opt in ("-i", "--in-interface") else pkt.oif, val, "+")
            elif opt in ("--dport", "--sport", "--destination-port", "--source-port", "--dports"):
                port = pkt.sport if opt in ("--sport", "--source-port") else pkt.dport
                ok = port is not None and any(
                    int(a) <= port <= int(b or a)
                    for a, _, b in (p.partition(":") for p in val.split(",")))
            elif opt == "--ctstate":
                states = {s.lower() for s in val.split(",")}
                ok = pkt.state in states or ("dnat" in states and pkt.dnat)
            elif opt == "--mark":
                value, _, mask = val.partition("/")
                ok = pkt.mark & int(mask or "0xffffffff", 16) == int(value, 16)
            elif opt == "--match-set":
                ok = self._in_set(vals[0], vals[1], pkt, rule)
            elif opt in ("--src-type", "--dst-type"):
                addr = pkt.src if opt == "--src-type" else pkt.dst
                ok = val == "LOCAL" and _is_local(addr, local)
            elif opt == "--icmp-type":
                ok = pkt.protocol == "icmp" and val in ("8", "echo-request", "any")
            else:
                raise TraceError(f"the static tracer cannot read {opt!r} in {rule.text}")
            if ok == neg:
                return False
        return True

    def walk_chain(self, table: str, chain: str, pkt: Packet, walk: Walk,
                   depth: int = 0) -> str | None:
        """Run `chain`; a verdict (accept, drop, reject), "return", or None (fell off)."""
        if depth > 40:
            raise TraceError(f"{table}/{chain}: a jump loop")
        name = f"{table}/{chain}"
        walk.chains.append(name)
        rules = self.chains.get((table, chain), [])
        picked = None
        if any(r.random for r in rules):
            picked = self._pick(table, rules, pkt, walk, depth)
        for rule in rules:
            if rule.random and rule is not picked:
                continue
            if not self._matches(rule, pkt, walk.local):
                continue
            t = rule.target
            if not t:
                continue                                    # a counting rule
            if t in _BUILTIN_VERDICTS:
                return walk.decide(name, rule.text, _BUILTIN_VERDICTS[t])
            if t == "RETURN":
                walk.hit(name, rule.text, "return")
                return "return"
            if t == "MARK":
                self._mark(rule, pkt)
                walk.hit(name, rule.text, "mark")
                continue
            if t == "DNAT":
                walk.hit(name, rule.text, f"dnat to {rule.args['--to-destination']}")
                _dnat(pkt, walk, rule.args["--to-destination"])
                return "accept"
            if t == "SNAT":
                walk.hit(name, rule.text, f"snat to {rule.args['--to-source']}")
                _snat(pkt, walk, "snat", rule.args["--to-source"])
                return "accept"
            if t == "REDIRECT":
                to = endpoint_text(walk.in_address or "127.0.0.1",
                                   int(rule.args["--to-ports"].split("-")[0]))
                walk.hit(name, rule.text, f"redirect to {to}")
                before = endpoint_text(pkt.dst, pkt.dport)
                _dnat(pkt, walk, to)
                walk.nat[-1] = {"type": "redirect", "from": before, "to": to}
                return "accept"
            if t == "MASQUERADE":
                walk.hit(name, rule.text, "masquerade")
                _snat(pkt, walk, "masquerade", walk.out_address)
                return "accept"
            if t in ("LOG", "NFLOG", "TRACE", "CT", "NOTRACK"):
                continue
            if (table, t) not in self.chains:
                raise TraceError(f"{rule.text}: no chain {t} in table {table}")
            walk.hit(name, rule.text, f"{'goto' if rule.goto else 'jump'} {t}")
            out = self.walk_chain(table, t, pkt, walk, depth + 1)
            if out not in (None, "return"):
                return out
            if rule.goto:
                return "return"
        return None

    def _pick(self, table: str, rules: list[_IptRule], pkt: Packet, walk: Walk,
              depth: int) -> _IptRule | None:
        """Of a chain's random branches (and the last rule they fall to), the one to take."""
        branches = [r for r in rules if r.target and self._matches(r, pkt, walk.local)]
        start = next((i for i, r in enumerate(branches) if r.random), None)
        if start is None:
            return None
        branches = branches[start:]
        last = next((i for i, r in enumerate(branches) if not r.random), len(branches) - 1)
        branches = branches[:last + 1]
        targets: list[str | None] = []
        for r in branches:
            dry = walk.dry_copy()
            probe = replace(pkt)
            if (table, r.target) in self.chains:
                self.walk_chain(table, r.target, probe, dry, depth + 1)
            targets.append(dry.nat[0]["to"] if dry.nat else None)
        return branches[walk.chosen(targets)]

    @staticmethod
    def _mark(rule: _IptRule, pkt: Packet) -> None:
        a = rule.args
        if "--set-xmark" in a or "--set-mark" in a:
            value, _, mask = (a.get("--set-xmark") or a["--set-mark"]).partition("/")
            m = int(mask or "0xffffffff", 16)
            v = int(value, 16)
            pkt.mark = ((pkt.mark & ~m) ^ v) & 0xFFFFFFFF
        elif "--xor-mark" in a:
            pkt.mark ^= int(a["--xor-mark"], 16)
        elif "--or-mark" in a:
            pkt.mark |= int(a["--or-mark"], 16)
        elif "--and-mark" in a:
            pkt.mark &= int(a["--and-mark"], 16)
        else:
            raise TraceError(f"{rule.text}: a MARK the static tracer cannot read")


# -- nftables --------------------------------------------------------------------------------------

_PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50,
               "srcnat": 100}


def _priority(text: str) -> int:
    m = re.fullmatch(r"\s*(-?\w+)\s*(?:([+-])\s*(\d+))?\s*", text)
    if not m:
        raise TraceError(f"nft: cannot read priority {text!r}")
    base = m.group(1)
    value = _PRIORITIES[base] if base in _PRIORITIES else int(base)
    if m.group(2):
        value += int(m.group(3)) * (1 if m.group(2) == "+" else -1)
    return value


@dataclass
class NftChain:
    name: str
    rules: list[str] = field(default_factory=list)
    type: str | None = None         # filter, nat, route (base chains)
    hook: str | None = None
    priority: int = 0
    policy: str = "accept"


@dataclass
class NftSet:
    name: str
    type: str = ""
    interval: bool = False
    elements: list[tuple[tuple[str, ...], str]] = field(default_factory=list)  # (key, value)


def _split_top(text: str, sep: str = ",") -> list[str]:
    out, depth, quoted, cur = [], 0, False, []
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "{":
            depth += 1
        elif not quoted and ch in "}":
            depth -= 1
        if ch == sep and depth == 0 and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [x.strip() for x in out if x.strip()]


def _element(text: str) -> tuple[tuple[str, ...], str]:
    text = re.sub(r' comment "[^"]*"', "", text)
    text = re.sub(r" (timeout|expires) \S+", "", text)
    key, _, value = text.partition(" : ")
    return tuple(k.strip() for k in key.split(" . ")), value.strip()


def _chain_spec(chain: NftChain, spec: str) -> None:
    m = re.search(r"type (\w+) hook (\w+)(?: device \S+)? priority ([^;]+);", spec + ";")
    if m:
        chain.type, chain.hook, chain.priority = m.group(1), m.group(2), _priority(m.group(3))
    p = re.search(r"policy (\w+)", spec)
    if p:
        chain.policy = p.group(1)


def _addr(pkt: Packet, which: str) -> str:
    return pkt.src if which == "saddr" else pkt.dst


_DPORT = r"meta l4proto \. (?:th|tcp|udp|sctp) dport"
# `ip daddr vmap @m`, `ip saddr != @s`; `ip daddr . meta l4proto . th dport [. ip saddr] vmap @m`
_NFT_ADDR_LOOKUP = re.compile(r"ip (?P<addr>saddr|daddr) (?:(?P<vmap>vmap )|(?P<neg>!= ))?"
                              r"@(?P<set>\S+)")
_NFT_PORT_LOOKUP = re.compile(rf"(?:(?P<daddr>ip daddr \. ){_DPORT}(?P<saddr> \. ip saddr)?"
                              rf"|{_DPORT}) (?P<vmap>vmap )?@(?P<set>\S+)")


def _lookup_key(m: re.Match, pkt: Packet) -> tuple[str, ...]:
    """The key a _NFT_*_LOOKUP match looks up, from the packet."""
    if m.re is _NFT_ADDR_LOOKUP:
        return (_addr(pkt, m["addr"]),)
    return ((pkt.dst,) if m["daddr"] else ()) + (pkt.protocol, str(pkt.dport)) + \
        ((pkt.src,) if m["saddr"] else ())


def _dport_in(m: re.Match, pkt: Packet) -> bool:
    spans = ([(a, b) for a, _, b in (p.partition("-") for p in _split_top(m[3]))]
             if m[3] else [(m[4], m[5])])
    return pkt.dport is not None and any(int(a) <= pkt.dport <= int(b or a) for a, b in spans)


# the matches of a rule, in the order tried: (pattern, whether the packet passes it)
_NFT_MATCHES = tuple((re.compile(p), test) for p, test in (
    (r"ct state (!= )?([\w,]+)",
     lambda m, pkt, walk: (pkt.state in m[2].split(",")) != bool(m[1])),
    (r"ip (saddr|daddr) (!= )?(?:\{([^}]*)\}|([\d./-]+)(?=\s|$))",
     lambda m, pkt, walk: any(_in_net(_addr(pkt, m[1]), net) for net in
                              (_split_top(m[3]) if m[3] is not None else [m[4]])) != bool(m[2])),
    (r"fib (saddr|daddr) type (!= )?local",
     lambda m, pkt, walk: _is_local(_addr(pkt, m[1]), walk.local) != bool(m[2])),
    (r"(?:meta l4proto|ip protocol) (!= )?(?:\{([^}]*)\}|(\w+))",
     lambda m, pkt, walk: (pkt.protocol in (_split_top(m[2]) if m[2] else [m[3]])) != bool(m[1])),
    (r"(th|tcp|udp|sctp) dport (!= )?(?:\{([^}]*)\}|(\d+)(?:-(\d+))?)",
     lambda m, pkt, walk: m[1] in ("th", pkt.protocol) and _dport_in(m, pkt) != bool(m[2])),
    (r"(?:meta )?(i|o)ifname (!= )?\"?([^\s\"]+)\"?",
     lambda m, pkt, walk: _iface_is(pkt.iif if m[1] == "i" else pkt.oif, m[3], "*")
     != bool(m[2])),
    (r"(?:meta )?mark (?:&|and) (0x[0-9a-f]+) (?:== )?(!= )?(0x[0-9a-f]+|0)(?=\s|$)",
     lambda m, pkt, walk: (pkt.mark & int(m[1], 16) == int(m[3], 16)) != bool(m[2])),
))


def _nft_match(rest: str) -> tuple[re.Match, Callable[[re.Match, Packet, Walk], bool]] | None:
    """The first of _NFT_MATCHES that `rest` begins with, and its test."""
    for pattern, holds in _NFT_MATCHES:
        m = pattern.match(rest)
        if m:
            return m, holds
    return None


class NftTable:
    """One nftables table: `nft list table` output, or `nft -f` input of `add` commands and
    table blocks (lines of other kinds, such as `delete table`, are skipped)."""

    def __init__(self, text: str) -> None:
        self.name = ""
        self.family = "ip"
        self.chains: dict[str, NftChain] = {}
        self.sets: dict[str, NftSet] = {}
        lines = [ln.rstrip() for ln in text.splitlines()]
        self._read_listing(lines)       # blocks (`table ip T {` ...), as nft lists a table
        self._read_commands(lines)      # `add ...` commands, as `nft -f` input has them

    def _read_commands(self, lines: list[str]) -> None:
        for line in lines:
            words = line.split(" ")
            if len(words) < 4 or words[0] != "add":
                continue
            kind, self.family, self.name = words[1], words[2], words[3]
            rest = " ".join(words[4:])
            if kind == "chain":
                name, _, spec = rest.partition(" ")
                chain = self.chains.setdefault(name, NftChain(name))
                _chain_spec(chain, spec)
            elif kind in ("set", "map"):
                name, _, spec = rest.partition(" ")
                self.sets[name] = NftSet(name, re.search(r"type ([^;]+?) ;", spec).group(1)
                                         if "type " in spec else "", "interval" in spec)
            elif kind == "rule":
                name, _, rule = rest.partition(" ")
                self.chains.setdefault(name, NftChain(name)).rules.append(rule)
            elif kind == "element":
                name, _, body = rest.partition(" ")
                body = body.strip()[1:-1]
                self.sets[name].elements += [_element(e) for e in _split_top(body)]

    def _read_listing(self, lines: list[str]) -> None:
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            i += 1
            m = re.fullmatch(r"table (\w+) (\S+) \{", line)
            if m:
                self.family, self.name = m.groups()
                continue
            m = re.fullmatch(r"(set|map|chain) (\S+) \{", line)
            if not m:
                continue
            kind, name = m.groups()
            body = []
            while i < len(lines) and lines[i].strip() != "}":
                body.append(lines[i].strip())
                i += 1
            i += 1
            if kind == "chain":
                chain = NftChain(name)
                for b in body:
                    if b.startswith("type ") and " hook " in b:
                        _chain_spec(chain, b)
                    elif b and not b.startswith("comment "):
                        # counters change with every packet: rules are quoted without them
                        chain.rules.append(re.sub(r"\bcounter packets \d+ bytes \d+ ", "", b))
                self.chains[name] = chain
            else:
                s = NftSet(name)
                joined = " ".join(body)
                t = re.search(r"(?:^| )type (.+?)(?= flags | comment | elements = |$)", joined)
                s.type = t.group(1) if t else ""
                s.interval = bool(re.search(r"flags [\w,]*interval", joined))
                e = joined.find("elements = {")
                if e >= 0:
                    inner = joined[e + len("elements = {"):]
                    inner = inner[:inner.rfind("}")]
                    s.elements = [_element(x) for x in _split_top(inner)]
                self.sets[name] = s

    def base_chains(self, hook: str, state: str) -> list[tuple[int, str, str]]:
        return [(c.priority, self.name, c.name) for c in self.chains.values()
                if c.hook == hook and not (c.type == "nat" and state != "new")]

    # evaluation
    def _lookup(self, name: str, key: tuple[str, ...], rule: str) -> tuple[bool, str]:
        s = self.sets.get(name)
        if s is None:
            raise TraceError(f"{rule}: no set or map {name} in table {self.name}")
        for ekey, value in s.elements:
            if len(ekey) != len(key):
                continue
            if all(self._key_eq(k, e) for k, e in zip(key, ekey, strict=True)):
                return True, value
        return False, ""

    @staticmethod
    def _key_eq(k: str, e: str) -> bool:
        if k == e:
            return True
        if ("/" in e or "-" in e) and re.fullmatch(r"[\d.]+", k):
            try:
                return _in_net(k, e)
            except TraceError:
                return False
        return False

    def walk_chain(self, chain: str, pkt: Packet, walk: Walk, depth: int = 0) -> str | None:
        if depth > 40:
            raise TraceError(f"{self.name}/{chain}: a jump loop")
        if chain not in self.chains:
            raise TraceError(f"no chain {chain} in table {self.name}")
        name = f"{self.name}/{chain}"
        walk.chains.append(name)
        for rule in self.chains[chain].rules:
            out = self._rule(name, rule, pkt, walk, depth)
            if out == "next":
                continue
            return out
        return None

    def _goto(self, name: str, rule: str, verdict: str, pkt: Packet, walk: Walk,
              depth: int) -> str:
        """A verdict (from a rule or a verdict map): what the chain does next."""
        kind, _, target = verdict.partition(" ")
        if kind in ("accept", "drop", "reject"):
            return walk.decide(name, rule, kind)
        if kind == "return":
            walk.hit(name, rule, "return")
            return "return"
        if kind == "continue":
            return "next"
        if kind in ("jump", "goto"):
            walk.hit(name, rule, verdict)
            out = self.walk_chain(target, pkt, walk, depth + 1)
            if out not in (None, "return"):
                return out
            return "return" if kind == "goto" else "next"
        raise TraceError(f"{rule}: cannot read the verdict {verdict!r}")

    def _rule(self, name: str, rule: str, pkt: Packet, walk: Walk, depth: int) -> str:
        """"next" (go on with the next rule), "return", or a verdict."""
        rest = re.sub(r' ?comment "[^"]*"$', "", rule).strip()
        rest = re.sub(r"\bcounter(?: packets \d+ bytes \d+)?", "", rest).strip()
        marked = False
        while rest:
            rest = rest.strip()
            m = _NFT_ADDR_LOOKUP.match(rest) or _NFT_PORT_LOOKUP.match(rest)
            if m:                   # a set or verdict map looked up by the packet's fields
                found, value = self._lookup(m["set"], _lookup_key(m, pkt), rule)
                if m["vmap"]:
                    if not found:
                        return "next"
                    return self._goto(name, rule, value, pkt, walk, depth)
                if found == bool(m.groupdict().get("neg")):
                    return "next"
                rest = rest[m.end():]
                continue
            matched = _nft_match(rest)
            if matched:
                m, holds = matched
                if not holds(m, pkt, walk):
                    return "next"
                rest = rest[m.end():]
                continue
            m = re.match(r"(?:meta )?mark set (?:meta )?mark (\||or|&|and|\^|xor) (0x[0-9a-f]+)",
                         rest)
            if m:
                op, value = m.group(1), int(m.group(2), 16)
                if op in ("|", "or"):
                    pkt.mark |= value
                elif op in ("&", "and"):
                    pkt.mark &= value
                else:
                    pkt.mark ^= value
                marked = True
                rest = rest[m.end():]
                continue
            m = re.match(r"(?:meta )?mark set (0x[0-9a-f]+)", rest)
            if m:
                pkt.mark, marked = int(m.group(1), 16), True
                rest = rest[m.end():]
                continue
            m = re.match(r"numgen random mod \d+ vmap \{(.*)\}$", rest)
            if m:
                branches = [e.split(" : ", 1)[1].strip() for e in _split_top(m.group(1))]
                targets: list[str | None] = []
                for b in branches:
                    dry = walk.dry_copy()
                    self._goto(name, rule, b, replace(pkt), dry, depth)
                    targets.append(dry.nat[0]["to"] if dry.nat else None)
                return self._goto(name, rule, branches[walk.chosen(targets)], pkt, walk, depth)
            m = re.match(r"(?:update|add) @\S+ \{[^}]*\}", rest)
            if m:
                rest = rest[m.end():]
                continue
            m = re.match(r"dnat(?: ip)? to (\S+)$", rest)
            if m:
                walk.hit(name, rule, f"dnat to {m.group(1)}")
                _dnat(pkt, walk, m.group(1))
                return "accept"
            m = re.match(r"snat(?: ip)? to (\S+)$", rest)
            if m:
                walk.hit(name, rule, f"snat to {m.group(1)}")
                _snat(pkt, walk, "snat", m.group(1))
                return "accept"
            m = re.match(r"masquerade\b.*$", rest)
            if m:
                walk.hit(name, rule, "masquerade")
                _snat(pkt, walk, "masquerade", walk.out_address)
                return "accept"
            m = re.match(r"(jump|goto) (\S+)$|(accept|drop|return|continue)$|reject\b.*$", rest)
            if m:
                verdict = (f"{m.group(1)} {m.group(2)}" if m.group(1)
                           else m.group(3) or "reject")
                return self._goto(name, rule, verdict, pkt, walk, depth)
            m = re.match(r"log\b[^;]*?(?= (?:accept|drop|jump|goto|return)\b|$)", rest)
            if m:
                rest = rest[m.end():]
                continue
            raise TraceError(f"the static tracer cannot read {rest!r} in {self.name}/{rule}")
        if marked:
            walk.hit(name, rule, "mark")
        return "next"


# -- a hook across a host's tables -------------------------------------------------------------------

@dataclass
class HostRules:
    """Everything a host's netfilter holds that the tracer reads."""

    iptables: Iptables | None = None
    nft: tuple[NftTable, ...] = ()

    @property
    def empty(self) -> bool:
        return self.iptables is None and not self.nft


def run_hook(rules: HostRules, hook: str, pkt: Packet, walk: Walk) -> str:
    """Send `pkt` through every base chain at `hook`, in priority order: "accept", "drop" or
    "reject" (the first drop or reject ends it; an accept ends only its own base chain)."""
    bases: list[tuple[int, int, object, str, str]] = []
    if rules.iptables is not None:
        for prio, table, chain in rules.iptables.base_chains(hook, pkt.state):
            bases.append((prio, 0, rules.iptables, table, chain))
    for i, table in enumerate(rules.nft):
        for prio, tname, chain in table.base_chains(hook, pkt.state):
            bases.append((prio, 1 + i, table, tname, chain))
    bases.sort(key=lambda b: (b[0], b[1]))
    for _, _, owner, table, chain in bases:
        if isinstance(owner, Iptables):
            out = owner.walk_chain(table, chain, pkt, walk)
            policy = owner.policies.get((table, chain), "ACCEPT").lower()
            text = f"-P {chain} {policy.upper()}"
        else:
            out = owner.walk_chain(chain, pkt, walk)
            policy = owner.chains[chain].policy
            text = f"policy {policy}"
        if out in (None, "return"):
            out = walk.decide(f"{table}/{chain}", text, policy)
        if out in ("drop", "reject"):
            return out
    return "accept"
