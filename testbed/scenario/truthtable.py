"""Pure: the truth tables of a reachability step, as upstream's NetworkPolicy e2e tests keep them.

Upstream (test/e2e/network/netpol/truthtable.go, reachability.go) holds, for each port and
protocol, an expected and an observed table of booleans over (from, to) pairs, compares them
cell by cell into a third table, and prints all three in one layout:

    -	x/a	x/b
    x/a	.	X
    x/b	.	.

"." is allowed (in the comparison: expected and observed agree), "X" denied (a mismatch),
"?" a cell with no value. Rows are sources, columns destinations. `parse_matrix` reads that
layout back (tabs or spaces), so an observed table can be pasted into a scenario as its
expectation. Pairs are named as upstream's Peer names them: `NS/NAME`, `NS/*` (every pod of a
namespace), `*/NAME` (pods of that name in any namespace), `*` (everything); a bare `NAME` is a
node, a client or the one pod of that name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

ALLOWED, DENIED, UNKNOWN = ".", "X", "?"
CORNER = "-"


@dataclass(frozen=True)
class Member:
    """One source or destination of a step: its label as the scenario writes it, and who it is
    (a pod's namespace and name; a node's or client's name with namespace None)."""

    label: str
    name: str
    namespace: str | None = None

    @property
    def key(self) -> str:
        return self.name if self.namespace is None else f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Table:
    """A truth table over `froms` x `tos` (labels); a missing cell has no value yet."""

    froms: tuple[str, ...]
    tos: tuple[str, ...]
    values: Mapping[tuple[str, str], bool] = field(default_factory=dict)

    def get(self, source: str, destination: str) -> bool | None:
        return self.values.get((source, destination))

    def cells(self) -> Iterable[tuple[str, str]]:
        return ((f, t) for f in self.froms for t in self.tos)


def pretty(table: Table, indent: str = "") -> str:
    """upstream's TruthTable.PrettyPrint: a header of destinations, a row per source."""
    lines = [indent + "\t".join((CORNER, *table.tos))]
    for source in table.froms:
        marks = []
        for destination in table.tos:
            value = table.get(source, destination)
            marks.append(UNKNOWN if value is None else ALLOWED if value else DENIED)
        lines.append(indent + "\t".join((source, *marks)))
    return "\n".join(lines)


def compare(expected: Table, observed: Table) -> Table:
    """upstream's Compare: True where both tables hold a value and agree."""
    values = {}
    for cell in expected.cells():
        want, have = expected.get(*cell), observed.get(*cell)
        if want is not None and have is not None:
            values[cell] = want == have
    return Table(expected.froms, expected.tos, values)


class MatrixError(ValueError):
    """A matrix that does not parse: the offending line and why."""

    def __init__(self, line: str, detail: str):
        super().__init__(detail)
        self.line = line
        self.detail = detail


def parse_matrix(text: str) -> Table:
    """A table in PrettyPrint's layout: a header `- TO...`, then `FROM MARK...` rows; tabs or
    spaces between fields, blank lines ignored. MatrixError names the first bad line."""
    rows = [line for line in text.splitlines() if line.strip()]
    if not rows:
        raise MatrixError(text, "the matrix is empty: a header line `- TO...` and a row per source")
    header, *body = [line.split() for line in rows]
    if header[0] != CORNER:
        raise MatrixError(rows[0], f"the header line must start with {CORNER!r}, then name the "
                                   "destinations")
    tos = tuple(header[1:])
    if not tos:
        raise MatrixError(rows[0], "the header line names no destination")
    _no_repeats(tos, rows[0], "destination")
    if not body:
        raise MatrixError(text, "the matrix has no row: one per source, `FROM MARK...`")
    froms, values = [], {}
    for line, fields in zip(rows[1:], body, strict=True):
        source, marks = fields[0], fields[1:]
        if len(marks) != len(tos):
            raise MatrixError(line, f"row {source} has {len(marks)} marks for {len(tos)} "
                                    "destinations")
        for destination, mark in zip(tos, marks, strict=True):
            if mark not in (ALLOWED, DENIED):
                raise MatrixError(line, f"row {source}: {mark!r} is no mark: {ALLOWED!r} "
                                        f"(allowed) or {DENIED!r} (denied)")
            values[(source, destination)] = mark == ALLOWED
        froms.append(source)
    _no_repeats(froms, "", "source")
    return Table(tuple(froms), tos, values)


def _no_repeats(names: Sequence[str], line: str, what: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise MatrixError(line or name, f"{what} {name} is named twice")
        seen.add(name)


# -- peers -------------------------------------------------------------------------------------

WILDCARD = "*"


@dataclass(frozen=True)
class Peer:
    """upstream's Peer: an empty namespace or name matches any; `bare` is a NAME without a
    slash (a node or client, or the one pod of that name)."""

    namespace: str = ""
    name: str = ""
    bare: bool = False

    def __str__(self) -> str:
        if self.bare:
            return self.name
        if not self.namespace and not self.name:
            return WILDCARD
        return f"{self.namespace or WILDCARD}/{self.name or WILDCARD}"

    def matches(self, member: Member) -> bool:
        if self.bare:
            return member.name == self.name or member.label == self.name
        if not self.namespace and not self.name:
            return True
        if member.namespace is None:
            return False   # NS/..., */NAME name pods only
        return (self.namespace in ("", member.namespace)) and (self.name in ("", member.name))


def parse_peer(text: str) -> Peer:
    """`*`, `NS/*`, `*/NAME`, `NS/NAME` or `NAME` (ValueError: why not)."""
    if text == WILDCARD:
        return Peer()
    if "/" not in text:
        if not text:
            raise ValueError("a side of a pair is empty")
        return Peer(name=text, bare=True)
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError(f"{text!r} must be NAMESPACE/NAME, NAMESPACE/*, */NAME, * or NAME")
    if namespace == WILDCARD and name == WILDCARD:
        return Peer()
    return Peer("" if namespace == WILDCARD else namespace, "" if name == WILDCARD else name)


ARROW = "->"


def parse_pair(text: str) -> tuple[Peer, Peer]:
    """`FROM -> TO` (ValueError: why not)."""
    parts = text.split(ARROW)
    if len(parts) != 2:
        raise ValueError(f"must be a pair FROM {ARROW} TO, e.g. \"x/b {ARROW} x/a\" or "
                         f"\"y/* {ARROW} x/a\"")
    return parse_peer(parts[0].strip()), parse_peer(parts[1].strip())


# -- expectations and judgement ------------------------------------------------------------------

def expected_table(froms: Sequence[Member], tos: Sequence[Member], default: bool | None,
                   exceptions: Sequence[tuple[Peer, Peer]] = (),
                   matrix: Table | None = None) -> Table:
    """The expected table: `default` everywhere but the cells an exception's pair matches
    (which get the opposite), as upstream's NewReachability and ExpectPeer build it; or the
    cells of `matrix` (whose labels are the members')."""
    labels_from, labels_to = tuple(m.label for m in froms), tuple(m.label for m in tos)
    if matrix is not None:
        values = {cell: bool(matrix.get(*cell)) for cell in Table(labels_from, labels_to).cells()
                  if matrix.get(*cell) is not None}
        return Table(labels_from, labels_to, values)
    assert default is not None
    values = {(f.label, t.label): default for f in froms for t in tos}
    for source, destination in exceptions:
        for f in froms:
            if source.matches(f):
                for t in tos:
                    if destination.matches(t):
                        values[(f.label, t.label)] = not default
    return Table(labels_from, labels_to, values)


def loopback_cells(froms: Sequence[Member], tos: Sequence[Member]) -> frozenset[tuple[str, str]]:
    """The cells from a pod to itself (however each side writes it)."""
    return frozenset((f.label, t.label) for f in froms for t in tos
                     if f.namespace is not None and f.key == t.key)


@dataclass(frozen=True)
class Judgement:
    """upstream's Summary: cells that agree, disagree, and were not judged (loopback)."""

    correct: int
    incorrect: int
    ignored: int
    mismatches: tuple[tuple[str, str], ...]   # judged cells where expected != observed

    @property
    def passed(self) -> bool:
        return self.incorrect == 0

    def summary(self) -> str:
        return f"reachability: correct:{self.correct}, incorrect:{self.incorrect}, " \
               f"result={'true' if self.passed else 'false'}"


def judge(expected: Table, observed: Table, ignored: Iterable[tuple[str, str]] = ()) -> Judgement:
    """Compare cell by cell; cells in `ignored` (loopback, when not checked) do not count. A
    cell without an observation is a mismatch."""
    skip = frozenset(ignored)
    correct = incorrect = skipped = 0
    mismatches = []
    for cell in expected.cells():
        if cell in skip:
            skipped += 1
        elif observed.get(*cell) is not None and observed.get(*cell) == expected.get(*cell):
            correct += 1
        else:
            incorrect += 1
            mismatches.append(cell)
    return Judgement(correct, incorrect, skipped, tuple(mismatches))


def report(expected: Table, observed: Table, judgement: Judgement, title: str = "") -> str:
    """What upstream's PrintSummary(true, true, true) logs for one port: the summary, the
    ignored-loopback warning, then the expected, observed and comparison tables."""
    lines = [f"{title}: " + judgement.summary() if title else judgement.summary()]
    if judgement.ignored:
        lines.append(f"warning: the results of {judgement.ignored} pod->pod cases have been "
                     "ignored")
    for name, table in (("expected", expected), ("observed", observed),
                        ("comparison", compare(expected, observed))):
        lines += ["", f"{name}:", "", pretty(table)]
    return "\n".join(lines)
