"""Pure: in-memory iptables+ipset and nftables for the policy syncer's tests, and packet
tracers that walk what they hold.

`FakeIptables` applies `iptables-restore --noflush` text (declared chains are created or
flushed, `-A` appends, `-X` deletes; a jump to a chain that does not exist fails the whole
restore, as iptables-restore does) and `ipset restore` text (create, add, swap, destroy,
flush; `destroy` of a set a rule names fails, as the kernel's "in use"). `FakeNft` applies
`nft -f` text: whole tables, `delete table`, `flush set`, `add element`.

`trace(backend, hook, src, dst, protocol, port)` walks a NEW connection's first packet
through the built-in chain `hook` (FORWARD or INPUT) of the fake and says "ACCEPT" or "DROP".
It understands exactly the matches the renderers write (addresses, protocol, destination
port, sets, marks, conntrack state, which never matches a first packet) and fails loudly on
anything else, so a renderer change that the tracer cannot read is a test failure, not a pass.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, field


class FakeError(RuntimeError):
    pass


# -- iptables + ipset ------------------------------------------------------------------------------

@dataclass
class FakeSet:
    type: str
    members: set[str] = field(default_factory=set)


class FakeIptables:
    mode = "iptables"

    def __init__(self) -> None:
        self.chains_: dict[str, list[str]] = {"FORWARD": [], "INPUT": [], "OUTPUT": []}
        self.sets: dict[str, FakeSet] = {}
        self.restores: list[str] = []
        self.ipset_restores: list[str] = []
        self.fail_next = 0

    # Backend
    def restore(self, text: str) -> None:
        self.restores.append(text)
        if self.fail_next:
            self.fail_next -= 1
            raise FakeError("iptables-restore: injected failure")
        chains = {name: list(rules) for name, rules in self.chains_.items()}
        table = None
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            if line.startswith("*"):
                table = line[1:]
            elif line == "COMMIT":
                table = None
            elif table != "filter":
                raise FakeError(f"line outside *filter: {line}")
            elif line.startswith(":"):
                name = line[1:].split()[0]
                if len(name) > 28:
                    raise FakeError(f"chain name {name!r} too long (28 characters at most)")
                chains[name] = []
            elif line.startswith("-A "):
                chain, rule = line[3:].split(" ", 1)
                for comment in re.findall(r'--comment "([^"]*)"', rule):
                    if len(comment) > 255:
                        raise FakeError("comment too long (255 characters at most)")
                if chain not in chains:
                    raise FakeError(f"no chain {chain}")
                chains[chain].append(rule)
            elif line.startswith("-X "):
                chains.pop(line[3:].strip(), None)
            else:
                raise FakeError(f"cannot read: {line}")
        for name, rules in chains.items():
            for rule in rules:
                target = _target(rule)
                if target and target.isupper() and target not in ("RETURN", "DROP", "ACCEPT", "MARK") \
                        and target not in chains:
                    raise FakeError(f"{name}: jump to missing chain {target}")
                for s in re.findall(r"--match-set (\S+)", rule):
                    if s not in self.sets:
                        raise FakeError(f"Set {s} doesn't exist")
        self.chains_ = chains

    def chains(self, table: str) -> set[str]:
        assert table == "filter"
        return set(self.chains_)

    def ensure_first(self, table: str, chain: str, target: str) -> bool:
        rule = f"-j {target}"
        rules = self.chains_[chain]
        if rules[:1] == [rule] and rules.count(rule) == 1:
            return False
        self.chains_[chain] = [rule] + [r for r in rules if r != rule]
        return True

    def ipset_names(self) -> set[str]:
        return set(self.sets)

    def ipset_restore(self, text: str) -> None:
        self.ipset_restores.append(text)
        sets = {n: FakeSet(s.type, set(s.members)) for n, s in self.sets.items()}
        used = {s for rules in self.chains_.values() for r in rules
                for s in re.findall(r"--match-set (\S+)", r)}
        for line in text.splitlines():
            words = line.split()
            if not words:
                continue
            verb, name = words[0], words[1]
            if verb == "create":
                if name in sets and "-exist" not in words:
                    raise FakeError(f"set {name} exists")
                sets.setdefault(name, FakeSet(words[2]))
            elif verb == "add":
                if sets[name].type == "hash:net" and words[2].endswith("/0"):
                    raise FakeError("ipset: The value of the CIDR parameter of the IP address "
                                    "is invalid")      # as the kernel refuses a /0
                sets[name].members.add(words[2])
            elif verb == "flush":
                sets[name].members.clear()
            elif verb == "swap":
                other = words[2]
                if sets[name].type != sets[other].type:
                    raise FakeError("swap of sets of different types")
                sets[name], sets[other] = sets[other], sets[name]
            elif verb == "destroy":
                if name not in sets:
                    raise FakeError(f"no set {name}")
                if name in used:
                    raise FakeError(f"Set {name} is in use")
                del sets[name]
            else:
                raise FakeError(f"cannot read: {line}")
        self.sets = sets


def _target(rule: str) -> str:
    words = shlex.split(rule)
    return words[words.index("-j") + 1] if "-j" in words else ""


def _in_set(s: FakeSet, key: str) -> bool:
    if s.type == "hash:net":
        addr = ipaddress.ip_address(key)
        return any(addr in ipaddress.ip_network(m, strict=False) for m in s.members)
    return key in s.members


@dataclass
class Packet:
    src: str
    dst: str
    protocol: str       # TCP, UDP, SCTP, ICMP
    port: int = 0
    mark: int = 0


def _ipt_matches(fake: FakeIptables, words: list[str], pkt: Packet) -> bool:
    i = 0
    proto = pkt.protocol.lower()
    while i < len(words):
        w = words[i]
        if w == "-s":
            if ipaddress.ip_address(pkt.src) not in ipaddress.ip_network(words[i + 1]):
                return False
            i += 2
        elif w == "-d":
            if ipaddress.ip_address(pkt.dst) not in ipaddress.ip_network(words[i + 1]):
                return False
            i += 2
        elif w == "-p":
            if words[i + 1] != proto:
                return False
            i += 2
        elif w == "-m" and words[i + 1] == "comment":
            i += 4
        elif w == "-m" and words[i + 1] in ("tcp", "udp", "sctp"):
            assert words[i + 2] == "--dport", words
            first, _, last = words[i + 3].partition(":")
            if not int(first) <= pkt.port <= int(last or first):
                return False
            i += 4
        elif w == "-m" and words[i + 1] == "conntrack":
            return False       # --ctstate RELATED,ESTABLISHED: never a first packet
        elif w == "-m" and words[i + 1] == "mark":
            value, mask = (int(x, 16) for x in words[i + 3].split("/"))
            if pkt.mark & mask != value:
                return False
            i += 4
        elif w == "-m" and words[i + 1] == "set":
            name, flags = words[i + 3], words[i + 4]
            s = fake.sets[name]
            if flags == "src":
                key = pkt.src
            elif flags == "dst":
                key = pkt.dst
            elif flags == "dst,dst":
                key = f"{pkt.dst},{proto}:{pkt.port}"
            else:
                raise FakeError(f"set flags {flags}")
            if not _in_set(s, key):
                return False
            i += 5
        else:
            raise FakeError(f"the tracer cannot read {w!r} in {' '.join(words)}")
    return True


def _ipt_walk(fake: FakeIptables, chain: str, pkt: Packet, depth: int = 0) -> str | None:
    """None: fell off the end (or RETURN); else the final verdict."""
    if depth > 20:
        raise FakeError("jump loop")
    for rule in fake.chains_[chain]:
        words = shlex.split(rule)
        j = words.index("-j")
        if not _ipt_matches(fake, words[:j], pkt):
            continue
        target, args = words[j + 1], words[j + 2:]
        if target == "RETURN":
            return None
        if target in ("DROP", "ACCEPT"):
            return target
        if target == "MARK":
            assert args[0] == "--set-xmark"
            value, mask = (int(x, 16) for x in args[1].split("/"))
            pkt.mark = (pkt.mark & ~mask) | value
            continue
        verdict = _ipt_walk(fake, target, pkt, depth + 1)
        if verdict is not None:
            return verdict
    return None


# -- nftables ----------------------------------------------------------------------------------------

@dataclass
class NftTable:
    sets: dict[str, FakeSet] = field(default_factory=dict)    # maps too (members "ip : verdict")
    chains: dict[str, list[str]] = field(default_factory=dict)
    hooks: dict[str, str] = field(default_factory=dict)        # hook -> base chain


class FakeNft:
    mode = "nftables"

    def __init__(self) -> None:
        self.table: NftTable | None = None
        self.restores: list[str] = []
        self.fail_next = 0

    def restore(self, text: str) -> None:
        self.restores.append(text)
        if self.fail_next:
            self.fail_next -= 1
            raise FakeError("nft: injected failure")
        table = self.table
        lines = iter(text.splitlines())
        for line in lines:
            line = line.strip()
            if not line:
                continue
            if line == "add table ip kube-netpol":
                table = table or NftTable()
            elif line == "delete table ip kube-netpol":
                if table is None:
                    raise FakeError("No such file or directory (table)")
                table = None
            elif line == "table ip kube-netpol {":
                table = table or NftTable()
                _read_table(table, lines)
            elif line.startswith("flush set ip kube-netpol "):
                table.sets[line.split()[-1]].members.clear()
            elif line.startswith("add element ip kube-netpol "):
                name = line.split()[4]
                body = line[line.index("{") + 1:line.rindex("}")]
                table.sets[name].members |= {m.strip() for m in body.split(",")}
            else:
                raise FakeError(f"cannot read: {line}")
        self.table = table

    def chains(self, table: str) -> set[str]:
        raise AssertionError("nftables mode reads no iptables chains")

    def ipset_names(self) -> set[str]:
        raise AssertionError("nftables mode has no ipsets")

    def ipset_restore(self, text: str) -> None:
        raise AssertionError("nftables mode has no ipsets")

    def ensure_first(self, table: str, chain: str, target: str) -> bool:
        raise AssertionError("nftables mode has no iptables jumps")


def _read_table(table: NftTable, lines) -> None:
    for line in lines:
        line = line.strip()
        if line == "}":
            return
        if line.startswith("comment "):
            continue
        m = re.fullmatch(r"(set|map|chain) (\S+) \{", line)
        if not m:
            raise FakeError(f"cannot read: {line}")
        kind, name = m.groups()
        if len(name) > 255:
            raise FakeError(f"{kind} name too long: Numerical result out of range")
        body = []
        for inner in lines:
            inner = inner.strip()
            if inner == "}":
                break
            body.append(inner)
        if kind == "chain":
            rules = []
            for b in body:
                hook = re.match(r"type filter hook (\w+) priority", b)
                if hook:
                    table.hooks[hook.group(1)] = name
                else:
                    rules.append(b)
            for b in rules:
                for comment in re.findall(r'comment "([^"]*)"', b):
                    if len(comment) > 128:
                        raise FakeError("comment too long, 128 characters maximum allowed")
            if name in table.chains:
                raise FakeError(f"chain {name} exists")
            table.chains[name] = rules
        else:
            typ = next(b[5:] for b in body if b.startswith("type "))
            s = FakeSet("interval" if "flags interval" in body else typ)
            for b in body:
                if b.startswith("elements = {"):
                    s.members = {m.strip() for m in b[b.index("{") + 1:b.rindex("}")].split(",")}
            table.sets[name] = s


def _nft_in(table: NftTable, name: str, key: str) -> bool:
    s = table.sets[name]
    if s.type == "interval":
        addr = ipaddress.ip_address(key)
        return any(addr in ipaddress.ip_network(m, strict=False) for m in s.members)
    return key in s.members


def _nft_walk(table: NftTable, chain: str, pkt: Packet, depth: int = 0) -> str | None:
    if depth > 20:
        raise FakeError("jump loop")
    proto = pkt.protocol.lower()
    for rule in table.chains[chain]:
        rest = rule
        matched = True
        while rest and matched:
            rest = rest.strip()
            m = re.match(r"ct state established,related (accept|return)$", rest)
            if m:
                matched, rest = False, ""
                break
            m = re.match(r"ip (saddr|daddr) vmap @(\S+)$", rest)
            if m:
                addr = pkt.src if m.group(1) == "saddr" else pkt.dst
                verdict = next((v.split(" : ", 1)[1] for v in table.sets[m.group(2)].members
                                if v.split(" : ", 1)[0] == addr), None)
                rest = ""
                if verdict is None:
                    matched = False
                    break
                jump, target = verdict.split()
                assert jump == "jump"
                out = _nft_walk(table, target, pkt, depth + 1)
                if out is not None:
                    return out
                matched = False     # evaluated; go on with the next rule
                break
            m = re.match(r"ip (saddr|daddr) @(\S+)", rest)
            if m:
                matched = _nft_in(table, m.group(2), pkt.src if m.group(1) == "saddr" else pkt.dst)
                rest = rest[m.end():]
                continue
            m = re.match(r"meta l4proto (\w+) ip daddr \. meta l4proto \. th dport @(\S+)", rest)
            if m:
                matched = m.group(1) == proto and _nft_in(
                    table, m.group(2), f"{pkt.dst} . {proto} . {pkt.port}")
                rest = rest[m.end():]
                continue
            m = re.match(r"meta l4proto (\w+) th dport (\d+)(?:-(\d+))?", rest)
            if m:
                first, last = int(m.group(2)), int(m.group(3) or m.group(2))
                matched = m.group(1) == proto and first <= pkt.port <= last
                rest = rest[m.end():]
                continue
            m = re.match(r"meta l4proto (\w+)(?=\s|$)", rest)
            if m:
                matched = m.group(1) == proto
                rest = rest[m.end():]
                continue
            m = re.match(r"meta mark & (0x[0-9a-f]+) == (0x[0-9a-f]+)", rest)
            if m:
                matched = pkt.mark & int(m.group(1), 16) == int(m.group(2), 16)
                rest = rest[m.end():]
                continue
            m = re.match(r"meta mark set meta mark ([&|]) (0x[0-9a-f]+)$", rest)
            if m:
                value = int(m.group(2), 16)
                pkt.mark = pkt.mark & value if m.group(1) == "&" else pkt.mark | value
                rest = ""
                break
            m = re.match(r"jump (\S+)$", rest)
            if m:
                out = _nft_walk(table, m.group(1), pkt, depth + 1)
                if out is not None:
                    return out
                rest = ""
                break
            if rest == "return":
                return None
            m = re.match(r"(?:counter )?(drop|accept)(?: comment \".*\")?$", rest)
            if m:
                return m.group(1).upper()
            raise FakeError(f"the tracer cannot read {rest!r} in {rule!r}")
    return None


# -- tracing ---------------------------------------------------------------------------------------

def trace(backend: FakeIptables | FakeNft, hook: str, src: str, dst: str, protocol: str = "TCP",
          port: int = 80) -> str:
    """ACCEPT or DROP for the first packet of a new connection through `hook` (FORWARD, INPUT)."""
    pkt = Packet(src, dst, protocol, port)
    if isinstance(backend, FakeIptables):
        verdict = _ipt_walk(backend, hook, pkt)
    else:
        table = backend.table
        base = table.hooks.get(hook.lower()) if table else None
        verdict = _nft_walk(table, base, pkt) if base else None
    return verdict or "ACCEPT"
