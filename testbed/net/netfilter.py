"""Acts: kube-proxy's netfilter backends (iptables-restore, nft -f, conntrack) in one namespace.

Owns the commands a proxier's one apply per sync turns into: `IptablesBackend(netns)` runs
`iptables-restore -w --noflush` with the whole sync's text on stdin (a long one with a
`-S` that keeps iptables-nft linear, see `with_whole_table_cache`), ensures jump rules in the
built-in chains (`-S CHAIN`, then `-I`/`-A`), reads chains back with `iptables-save`; `NftBackend`
runs `nft -f -`; `conntrack_flush` deletes stale entries. `netns` is the pid of a process in the
target network namespace, or None for "where this process runs" (kube-proxy runs inside its
worker's namespace). Both backends satisfy `testbed.proxy.proxier.Backend`.

Errors raise `NetfilterError` naming the namespace and, for a failed restore, the input line
the command complained about. Commands are argument lists (testbed.net.run).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from testbed.net.run import CommandError, run
from testbed.netpol import iptables as policy_iptables
from testbed.proxy.iptables import JumpRule
from testbed.proxy.tracker import ConntrackFlush

WAIT = "5"  # seconds to wait for the xtables lock (-w), as kube-proxy does


class NetfilterError(RuntimeError):
    """A netfilter command failed; the message shows the failing input line when known."""


def _where(netns: int | None) -> str:
    return f"netns of pid {netns}" if netns is not None else "own netns"


def failing_line(text: str, output: str) -> str:
    """'line N: <text of line N>' for the line iptables-restore or nft reports, else ''."""
    m = re.search(r"(?:line:?\s+|/dev/stdin:|-:)(\d+)", output)
    if not m:
        return ""
    n = int(m.group(1))
    lines = text.splitlines()
    if not 0 < n <= len(lines):
        return f"line {n}"
    if lines[n - 1].strip() == "COMMIT":
        # iptables-nft finds missing chains and targets only at COMMIT: point at the first
        # rule that names what it complains about
        for name in re.findall(r"'([^']+)'", output):
            for i, line in enumerate(lines[:n - 1], 1):
                if line.startswith("-") and name in line.split():
                    return f"line {i}: {line} (reported at line {n}: COMMIT)"
    return f"line {n}: {lines[n - 1]}"


# A full nftables sync of 10,000 Services takes 1.5 to 4 minutes here (the kernel names each
# anonymous set by scanning the table's sets); a restore cut short would fail every sync.
RESTORE_TIMEOUT = 600.0


def _apply(argv: list[str], text: str, netns: int | None) -> None:
    try:
        run(argv, netns=netns, input=text, where=_where(netns), timeout=RESTORE_TIMEOUT)
    except CommandError as err:
        line = failing_line(text, err.output)
        raise NetfilterError(f"{argv[0]} in {_where(netns)} failed"
                             + (f" at {line}" if line else "") + f": {err.output.strip()[:1000]}"
                             ) from err


# iptables-nft 1.8 (1.8.9 here), in --noflush mode, keeps a sorted list of every chain its
# input declares, inserting with a linear scan for each: quadratic in the chains of a full
# sync (2,000 Services: 7.3 s instead of 0.9 s). One command that names no chain makes it
# fetch the whole table instead and skip the list; `-S` (print the table's rules, read only,
# output discarded) is such a command. It costs a dump of the table as it is, so it is worth
# it only for inputs that declare many chains: not for a partial sync, which declares a dozen
# but writes KUBE-SERVICES whole (5,000 Services: 0.3-0.5 s without the hint, 1.1-1.5 s with).
WHOLE_TABLE_HINT = "-S"
WHOLE_TABLE_MIN_CHAINS = 1000


def with_whole_table_cache(text: str, min_chains: int = WHOLE_TABLE_MIN_CHAINS) -> str:
    """`text` with `-S` at the head of each table section declaring more than `min_chains`
    chains (`:NAME` lines).

    "At the head" is after the `*table` line, or after the section's last `-I` line (jump
    rules into built-in chains): after `-S`, iptables-nft does not create a built-in chain
    the table does not have yet, and a fresh namespace has none.
    """
    lines = text.split("\n")
    out: list[str] = []
    at = None  # index in `out` after which the hint would go
    chains = 0  # declared in this section
    for line in lines:
        out.append(line)
        if line.startswith("*"):
            at, chains = len(out) - 1, 0
        elif at is not None and line.startswith("-I "):
            at = len(out) - 1
        elif line.startswith(":"):
            chains += 1
        elif line == "COMMIT" and at is not None:
            if chains > min_chains:
                out.insert(at + 1, WHOLE_TABLE_HINT)
            at = None
    return "\n".join(out)


class IptablesBackend:
    """iptables-restore based backend (nf_tables flavour of iptables 1.8 here)."""

    mode = "iptables"

    def __init__(self, netns: int | None = None, ipv6: bool = False) -> None:
        self.netns = netns
        self.prefix = "ip6tables" if ipv6 else "iptables"

    def restore(self, text: str) -> None:
        _apply([f"{self.prefix}-restore", "-w", WAIT, "--noflush"],
               with_whole_table_cache(text), self.netns)

    def ensure_chain(self, table: str, chain: str) -> None:
        res = run([self.prefix, "-w", WAIT, "-t", table, "-N", chain], netns=self.netns,
                  check=False)
        if res.returncode != 0 and "exists" not in res.stderr:
            raise NetfilterError(f"create chain {table}/{chain} in {_where(self.netns)}: "
                                 f"{res.stderr.strip()}")

    def chain_rules(self, table: str, chain: str) -> list[tuple[str, ...]]:
        """The rules of one chain as argument tuples (`iptables -S CHAIN`, minus "-A CHAIN")."""
        out = run([self.prefix, "-w", WAIT, "-t", table, "-S", chain], netns=self.netns,
                  where=_where(self.netns)).stdout
        return [tuple(shlex.split(line)[2:]) for line in out.splitlines()
                if line.startswith(f"-A {chain} ")]

    def missing_jump_rules(self, rules: Sequence[JumpRule]) -> list[JumpRule]:
        """The rules not in their built-in chains, each chain read once with `-S CHAIN` (the
        reads run side by side: they are a first sync's only commands besides the restore)."""
        chains = list(dict.fromkeys((r.table, r.chain) for r in rules))
        with ThreadPoolExecutor(len(chains) or 1) as pool:
            present = dict(zip(chains, pool.map(lambda tc: self.chain_rules(*tc), chains),
                               strict=True))
        return [r for r in rules if r.args not in present[(r.table, r.chain)]]

    def ensure_jump_rules(self, rules: Sequence[JumpRule], append: bool = False) -> None:
        """Each rule present once in its built-in chain; missing ones prepended (or appended).

        The built-in chains are read with `-S CHAIN` (a few ms each, however many rules the
        table holds: `-C` costs 50 ms per rule with 5,000 Services, as it loads every chain
        name); a missing rule gets its target chain created, then is inserted.
        """
        for rule in self.missing_jump_rules(rules):
            self.ensure_chain(rule.table, rule.args[-1])
            base = [self.prefix, "-w", WAIT, "-t", rule.table]
            where = ["-A", rule.chain] if append else ["-I", rule.chain, "1"]
            try:
                run(base + where + list(rule.args), netns=self.netns, where=_where(self.netns))
            except CommandError as err:
                raise NetfilterError(f"ensure jump {rule.table}/{rule.chain} -> "
                                     f"{rule.args[-1]}: {err}") from err

    def delete_jump_rules(self, rules: Sequence[JumpRule]) -> None:
        """Remove the rules if present ("already gone" is fine)."""
        for rule in rules:
            base = [self.prefix, "-w", WAIT, "-t", rule.table]
            while run(base + ["-D", rule.chain, *rule.args], netns=self.netns,
                      check=False).returncode == 0:
                pass

    def save(self, table: str | None = None) -> str:
        argv = [f"{self.prefix}-save"] + (["-t", table] if table else [])
        return run(argv, netns=self.netns, where=_where(self.netns)).stdout

    def chains(self, table: str) -> set[str]:
        return {line[1:].split()[0] for line in self.save(table).splitlines()
                if line.startswith(":")}

    def nat_chains(self) -> set[str]:
        return self.chains("nat")

    def delete_chains(self, table: str, chains: Sequence[str],
                      present: set[str] | None = None) -> None:
        """Flush and delete chains that exist, in one restore (references must be gone);
        `present` is the table's chains when the caller has just read them."""
        present = self.chains(table) if present is None else present
        doomed = [c for c in chains if c in present]
        if doomed:
            lines = [f"*{table}", *(f":{c} - [0:0]" for c in doomed),
                     *(f"-X {c}" for c in doomed), "COMMIT"]
            self.restore("\n".join(lines) + "\n")

    def conntrack_flush(self, flush: ConntrackFlush) -> None:
        conntrack_flush(flush, self.netns)


class NftBackend:
    """`nft -f -` backend: the whole kube-proxy table in one transaction."""

    mode = "nftables"

    def __init__(self, netns: int | None = None, family: str = "ip") -> None:
        self.netns = netns
        self.family = family

    def restore(self, text: str) -> None:
        _apply(["nft", "-f", "-"], text, self.netns)

    def ensure_jump_rules(self, rules: Sequence[JumpRule], append: bool = False) -> None:
        """nftables mode has its own base chains; nothing to ensure in iptables."""

    def missing_jump_rules(self, rules: Sequence[JumpRule]) -> list[JumpRule]:
        return []

    def nat_chains(self) -> set[str]:
        return set()

    def list_table(self, table: str = "kube-proxy") -> str:
        return run(["nft", "list", "table", self.family, table], netns=self.netns,
                   where=_where(self.netns)).stdout

    def delete_table(self, table: str = "kube-proxy") -> None:
        """Delete the table if it exists (add first so the delete cannot fail)."""
        self.restore(f"add table {self.family} {table}\ndelete table {self.family} {table}\n")

    def conntrack_flush(self, flush: ConntrackFlush) -> None:
        conntrack_flush(flush, self.netns)


def conntrack_argv(flush: ConntrackFlush) -> list[str]:
    argv = ["conntrack", "-D", "-p", flush.protocol]
    if any(":" in a for a in (flush.orig_dst or "", flush.reply_src or "")):
        argv += ["-f", "ipv6"]
    if flush.orig_dst:
        argv += ["--orig-dst", flush.orig_dst]
    if flush.dport:
        argv += ["--orig-port-dst", str(flush.dport)]
    if flush.reply_src:
        argv += ["--reply-src", flush.reply_src]
    return argv


def conntrack_flush(flush: ConntrackFlush, netns: int | None = None) -> int:
    """`conntrack -D` with the flush's filter; returns how many entries went (0 is fine)."""
    argv = conntrack_argv(flush)
    res = run(argv, netns=netns, check=False)
    out = res.stdout + res.stderr
    m = re.search(r"(\d+) flow entries have been deleted", out)
    if res.returncode == 0 or (m and m.group(1) == "0"):
        return int(m.group(1)) if m else 0
    raise NetfilterError(f"`{' '.join(argv)}` in {_where(netns)} exited {res.returncode}: "
                         f"{out.strip()}")


# -- NetworkPolicy backends (testbed.netpol.syncer.Backend) --------------------------------------

class IptablesPolicyBackend(IptablesBackend):
    """The policy agent's iptables mode: iptables-restore for its filter chains, `ipset restore`
    for its sets, and its jumps kept first in the built-in chains."""

    def ipset_restore(self, text: str) -> None:
        _apply(["ipset", "restore"], text, self.netns)

    def ipset_names(self) -> set[str]:
        return set(run(["ipset", "list", "-n"], netns=self.netns,
                       where=_where(self.netns)).stdout.split())

    def ensure_first(self, table: str, chain: str, target: str) -> bool:
        """`-j target` as the first rule of `chain` and nowhere else in it (`-S` reads the
        chain; only a misplaced or missing jump costs a write)."""
        rules = self.chain_rules(table, chain)
        jump = ("-j", target)
        if rules[:1] == [jump] and rules.count(jump) == 1:
            return False
        base = [self.prefix, "-w", WAIT, "-t", table]
        # first the new jump, then the old ones by number, from the last: never a moment
        # without one
        run(base + ["-I", chain, "1", *jump], netns=self.netns, where=_where(self.netns))
        later = [i + 2 for i, rule in enumerate(rules) if rule == jump]
        for number in reversed(later):
            run(base + ["-D", chain, str(number)], netns=self.netns, where=_where(self.netns))
        return True

    def remove_policy_rules(self) -> None:
        """Take the policy agent's rules out (mode switch, cleanup): its jumps, chains, sets."""
        self.delete_jump_rules([JumpRule("filter", builtin, ("-j", target))
                                for builtin, target in policy_iptables.JUMPS])
        present = self.chains("filter")
        self.delete_chains("filter", sorted(filter(policy_iptables.is_ours, present)), present)
        names = [n for n in self.ipset_names() if n.startswith(policy_iptables.SET_PREFIX)]
        if names:
            self.ipset_restore(policy_iptables.ipset_destroy_text(names))


class NftPolicyBackend(NftBackend):
    """The policy agent's nftables mode: `nft -f` transactions on its own table."""

    def chains(self, table: str) -> set[str]:
        raise NotImplementedError("nftables mode reads no iptables chains")

    def ipset_restore(self, text: str) -> None:
        raise NotImplementedError("nftables mode has no ipsets")

    def ipset_names(self) -> set[str]:
        raise NotImplementedError("nftables mode has no ipsets")

    def ensure_first(self, table: str, chain: str, target: str) -> bool:
        raise NotImplementedError("nftables mode has its own base chains")
