"""Pure: in-memory stand-ins for iptables and nft, for the proxier's tests (fakes, not mocks).

FakeIptables applies restore text with --noflush semantics and dumps its state as restore
text, which testbed.proxy.tracer can walk; FakeNft keeps the last ruleset it was given.
"""

from __future__ import annotations

from collections.abc import Sequence

from testbed.proxy import iptables, restore
from testbed.proxy.tracker import ConntrackFlush


class FakeIptables:
    """An in-memory iptables for tests: applies restore text with --noflush semantics.

    A declared chain (`:NAME`) is created or flushed, `-A` appends, `-X` deletes; a jump to a
    KUBE-* chain that does not exist fails the whole restore (as iptables-restore does), and
    nothing is applied. `ensure_jump_rules` adds the jumps a chain lacks now, so one flushed
    away comes back. `fail_next` makes the next restores fail. `dump()` gives the state as
    restore text, which `testbed.proxy.tracer.trace` can walk.
    """

    mode = "iptables"

    def __init__(self) -> None:
        self.tables: dict[str, restore.Table] = {}
        self.restores: list[str] = []
        self.jumps: list[tuple[iptables.JumpRule, bool]] = []
        self.flushes: list[ConntrackFlush] = []
        self.fail_next = 0
        self.chain_reads = 0  # calls of nat_chains()

    def restore(self, text: str) -> None:
        self.restores.append(text)
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("iptables-restore: injected failure")
        parsed = restore.parse(text)
        state = {name: restore.Table(name, {c: restore.Chain(c, list(ch.rules))
                                            for c, ch in t.chains.items()})
                 for name, t in self.tables.items()}
        for tname, table in parsed.items():
            target = state.setdefault(tname, restore.Table(tname))
            for chain in table.chains.values():
                if chain.deleted:
                    target.chains.pop(chain.name, None)
                    continue
                old = [] if chain.declared else target.chain(chain.name).rules
                target.chains[chain.name] = restore.Chain(
                    chain.name, list(reversed(chain.inserted)) + old + list(chain.rules))
        for tname, table in state.items():
            for chain in table.chains.values():
                for rule in chain.rules:
                    words = rule.split()
                    if "-j" in words:
                        dst = words[words.index("-j") + 1]
                        if dst.startswith("KUBE-") and dst not in table.chains:
                            raise RuntimeError(f"iptables-restore: {tname} {chain.name}: "
                                               f"jump to missing chain {dst}: -A {chain.name} "
                                               f"{rule}")
        self.tables = state

    def ensure_jump_rules(self, rules: Sequence[iptables.JumpRule], append: bool = False) -> None:
        """As the real backend: each rule its chain does not hold now (read as `-S CHAIN`
        would) gets its target chain, then is prepended (or appended); `jumps` records it."""
        for rule in self.missing_jump_rules(rules):
            table = self.tables.setdefault(rule.table, restore.Table(rule.table))
            table.chain(rule.args[-1])
            self.jumps.append((rule, append))
            line = iptables.rule_text(rule)
            chain = table.chain(rule.chain).rules
            chain.append(line) if append else chain.insert(0, line)

    def missing_jump_rules(self, rules: Sequence[iptables.JumpRule]) -> list[iptables.JumpRule]:
        return [r for r in rules
                if iptables.rule_text(r) not in self.rules(r.table, r.chain)]

    def nat_chains(self) -> set[str]:
        self.chain_reads += 1
        return set(self.tables["nat"].chains) if "nat" in self.tables else set()

    def conntrack_flush(self, flush: ConntrackFlush) -> None:
        self.flushes.append(flush)

    def rules(self, table: str, chain: str) -> list[str]:
        t = self.tables.get(table)
        return list(t.chains[chain].rules) if t and chain in t.chains else []

    def dump(self) -> str:
        return restore.dump(self.tables)


class FakeNft:
    """An in-memory nft for tests: keeps every `nft -f` text; `fail_next` injects failures."""

    mode = "nftables"

    def __init__(self) -> None:
        self.restores: list[str] = []
        self.flushes: list[ConntrackFlush] = []
        self.fail_next = 0

    def restore(self, text: str) -> None:
        self.restores.append(text)
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("nft: injected failure")

    def ensure_jump_rules(self, rules: Sequence[iptables.JumpRule], append: bool = False) -> None:
        raise AssertionError("nftables mode has no jump rules in built-in chains")

    def missing_jump_rules(self, rules: Sequence[iptables.JumpRule]) -> list[iptables.JumpRule]:
        raise AssertionError("nftables mode has no jump rules in built-in chains")

    def nat_chains(self) -> set[str]:
        return set()

    def conntrack_flush(self, flush: ConntrackFlush) -> None:
        self.flushes.append(flush)
