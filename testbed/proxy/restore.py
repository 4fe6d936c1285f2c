"""Pure: iptables-restore text as data: parse, write back, and upstream's test normalization.

Owns the `*table` / `:CHAIN - [0:0]` / `-A CHAIN ...` / `-X CHAIN` / `COMMIT` format that
kube-proxy feeds `iptables-restore --noflush` (plus `-I CHAIN 1 ...`, how a full sync carries
missing jump rules), and `normalize`, the port of upstream's
`sortIPTablesRules` (README "Normalization") used to compare our render with the golden cases.
The packet tracer (`tracer.py`) reads rules through `parse` as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NODEPORTS = "KUBE-NODEPORTS"
SERVICES = "KUBE-SERVICES"
_LAST_RULE_MARK = "must be the last rule"


@dataclass
class Chain:
    name: str
    rules: list[str] = field(default_factory=list)  # the text after "-A CHAIN "
    deleted: bool = False
    declared: bool = False  # a ":CHAIN" line (which creates or flushes it) was seen
    inserted: list[str] = field(default_factory=list)  # "-I CHAIN 1 <rule>", in line order


@dataclass
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)  # in order of first mention

    def chain(self, name: str) -> Chain:
        if name not in self.chains:
            self.chains[name] = Chain(name)
        return self.chains[name]


class RestoreParseError(ValueError):
    """The text is not iptables-restore input we understand."""


def parse(text: str) -> dict[str, Table]:
    """iptables-restore text -> tables by name, in order of appearance."""
    tables: dict[str, Table] = {}
    table: Table | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = tables.setdefault(line[1:].strip(), Table(line[1:].strip()))
            continue
        if table is None:
            raise RestoreParseError(f"line {n}: {line!r} outside a table")
        if line == "COMMIT":
            table = None
        elif line.startswith(":"):
            table.chain(line[1:].split()[0]).declared = True
        elif line.startswith("-A "):
            name, _, rest = line[3:].partition(" ")
            table.chain(name).rules.append(rest)
        elif line.startswith("-I ") and line.split(" ", 3)[2:3] == ["1"]:
            _, name, _, rest = line.split(" ", 3)
            table.chain(name).inserted.append(rest)
        elif line.startswith("-X "):
            table.chain(line[3:].strip()).deleted = True
        else:
            raise RestoreParseError(f"line {n}: cannot parse {line!r}")
    return tables


def dump(tables: dict[str, Table]) -> str:
    """Tables back to text: chain lines, rules chain by chain, then -X lines, then COMMIT."""
    out: list[str] = []
    for table in tables.values():
        out.append(f"*{table.name}")
        out.extend(f":{c.name} - [0:0]" for c in table.chains.values())
        for c in table.chains.values():
            out.extend(f"-A {c.name} {r}".rstrip() for r in c.rules)
        out.extend(f"-X {c.name}" for c in table.chains.values() if c.deleted)
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def _chain_key(name: str) -> tuple[int, str]:
    if name == NODEPORTS:
        return (0, "")
    if name == SERVICES:
        return (1, "")
    return (2 if name.startswith("KUBE-") else 3, name)


_COMMENT = re.compile(r'--comment (?:"([^"]*)"|(\S+))')


def _service_key(rule: str) -> str:
    """The service name a rule is about: its comment up to the first space or colon."""
    m = _COMMENT.search(rule)
    if not m:
        return ""
    value = m.group(1) if m.group(1) is not None else m.group(2)
    return re.split(r"[ :]", value, maxsplit=1)[0]


def normalize(text: str) -> str:
    """Upstream's sortIPTablesRules: the form the golden `*.iptables-save` files are in."""
    tables = parse(text)
    out: dict[str, Table] = {}
    for tname in sorted(tables):
        table = tables[tname]
        chains = sorted(table.chains.values(), key=lambda c: _chain_key(c.name))
        for c in chains:
            if c.name in (NODEPORTS, SERVICES):
                c.rules.sort(key=_service_key)  # stable
            if tname == "nat" and c.name == SERVICES:
                c.rules.sort(key=lambda r: _LAST_RULE_MARK in r)
        out[tname] = Table(tname, {c.name: c for c in chains})
    return dump(out)
