"""Pure: label selectors as strings, parsed and matched the way apimachinery's pkg/labels does.

    sel = parse_labels("app=web,tier!=db,env in (a,b),!legacy,version")
    sel.matches({"app": "web", "env": "a", "version": "2"})     # True

The grammar, the lexer (special symbols `= ! ( ) , > <`, keywords `in`/`notin`) and every
error message are upstream's, so that a malformed selector is refused with the words a
Kubernetes API server uses: `unable to parse requirement: found 'b', expected: '('` and the
like. Requirements are validated as NewRequirement does (label key, label values, value counts).
`SelectorError` carries the message; the API layer answers it with 400 BadRequest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from testbed.spec.validation import is_label_value, is_qualified_name

SPECIAL = "=!(),><"
WHITESPACE = " \t\r\n"
# token kinds; the literal text of keyword and symbol tokens is the token itself
IDENT, END = "identifier", "end of string"
KEYWORDS = (")", ",", "!", "==", "=", ">", "in", "<", "!=", "notin", "(")
BINARY_OPERATORS = ("in", "notin", "=", "==", "!=", "gt", "lt")
_OPERATOR_OF = {"in": "in", "notin": "notin", "=": "=", "==": "==", "!=": "!=", ">": "gt",
                "<": "lt"}


class SelectorError(ValueError):
    """A label selector that does not parse; str() is upstream's message."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # in, notin, =, ==, !=, gt, lt, exists, !
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op, present = self.operator, self.key in labels
        if op in ("in", "=", "=="):
            return present and labels[self.key] in self.values
        if op in ("notin", "!="):
            return not present or labels[self.key] not in self.values
        if op == "exists":
            return present
        if op == "!":
            return not present
        if not present:  # gt, lt
            return False
        try:
            have, want = int(labels[self.key]), int(self.values[0])
        except ValueError:
            return False
        return have > want if op == "gt" else have < want

    def __str__(self) -> str:
        if self.operator == "exists":
            return self.key
        if self.operator == "!":
            return "!" + self.key
        if self.operator in ("in", "notin"):
            return f"{self.key} {self.operator} ({','.join(self.values)})"
        symbol = {"gt": ">", "lt": "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    """Requirements ANDed together, sorted by key as upstream sorts them."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# -- lexer -----------------------------------------------------------------------------------------

def _lex(text: str) -> list[tuple[str, str]]:
    """(kind, literal) tokens as upstream's Lexer scans them, ending with END. Keyword and
    symbol tokens are their own kind; every other word is an IDENT."""
    out: list[tuple[str, str]] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in WHITESPACE:
            pos += 1
        if pos >= len(text):
            out.append((END, ""))
            return out
        if text[pos] in SPECIAL:
            # the longest run of symbols that is a token ("!=", "=="); every single symbol is
            # one, so this always finds a token
            best = ""
            while pos < len(text) and text[pos] in SPECIAL and best + text[pos] in KEYWORDS:
                best += text[pos]
                pos += 1
            out.append((best, best))
            continue
        start = pos
        while pos < len(text) and text[pos] not in SPECIAL and text[pos] not in WHITESPACE:
            pos += 1
        word = text[start:pos]
        out.append((word, word) if word in ("in", "notin") else (IDENT, word))


# -- parser ----------------------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str):
        self.items = _lex(text)
        self.pos = 0

    def lookahead(self, values: bool) -> tuple[str, str]:
        return self._as(self.items[self.pos], values)

    def consume(self, values: bool) -> tuple[str, str]:
        self.pos += 1
        return self._as(self.items[self.pos - 1], values)

    @staticmethod
    def _as(item: tuple[str, str], values: bool) -> tuple[str, str]:
        kind, lit = item
        if values and kind in ("in", "notin"):  # in a value context keywords are identifiers
            return IDENT, lit
        return kind, lit

    def parse(self) -> list[Requirement]:
        out: list[Requirement] = []
        while True:
            kind, lit = self.lookahead(True)
            if kind in (IDENT, "!"):
                try:
                    out.append(self.requirement())
                except SelectorError as err:
                    raise SelectorError(f"unable to parse requirement: {err}") from None
                kind, lit = self.consume(True)
                if kind == END:
                    return out
                if kind != ",":
                    raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
                kind2, lit2 = self.lookahead(True)
                if kind2 not in (IDENT, "!"):
                    raise SelectorError(f"found '{lit2}', expected: identifier after ','")
            elif kind == END:
                return out
            else:
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of "
                                    "string'")

    def requirement(self) -> Requirement:
        operator = None
        kind, lit = self.consume(True)
        if kind == "!":
            operator = "!"
            kind, lit = self.consume(True)
        if kind != IDENT:
            raise SelectorError(f"found '{lit}', expected: identifier")
        key = lit
        if errs := is_qualified_name(key):
            raise SelectorError(f"<nil>: Invalid value: {json.dumps(key)}: {'; '.join(errs)}")
        if self.lookahead(True)[0] in (END, ","):
            return _validated(key, operator or "exists", [])
        if operator == "!":  # "!key" followed by something else
            return _validated(key, operator, [])
        kind, lit = self.consume(False)
        if kind not in _OPERATOR_OF:
            raise SelectorError(f"found '{lit}', expected: {', '.join(BINARY_OPERATORS)}")
        operator = _OPERATOR_OF[kind]
        values = self.values() if operator in ("in", "notin") else self.exact_value()
        return _validated(key, operator, sorted(set(values)))

    def values(self) -> list[str]:
        kind, lit = self.consume(True)
        if kind != "(":
            raise SelectorError(f"found '{lit}' expected: '('")
        kind, lit = self.lookahead(True)
        if kind in (IDENT, ","):
            found = self.identifiers()
            if self.consume(True)[0] != ")":
                raise SelectorError(f"found '{lit}', expected: ')'")
            return found
        if kind == ")":
            self.consume(True)
            return [""]
        raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def identifiers(self) -> list[str]:
        found: list[str] = []
        while True:
            kind, lit = self.consume(True)
            if kind == IDENT:
                found.append(lit)
                kind2, lit2 = self.lookahead(True)
                if kind2 == ",":
                    continue
                if kind2 == ")":
                    return found
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if kind == ",":  # "(,", ",,", ",)" each stand for an empty value
                if not found:
                    found.append("")
                kind2 = self.lookahead(True)[0]
                if kind2 == ")":
                    found.append("")
                    return found
                if kind2 == ",":
                    found.append("")
                continue
            raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> list[str]:
        kind = self.lookahead(True)[0]
        if kind in (END, ","):
            return [""]
        kind, lit = self.consume(True)
        if kind == IDENT:
            return [lit]
        raise SelectorError(f"found '{lit}', expected: identifier")


def _validated(key: str, operator: str, values: list[str]) -> Requirement:
    """NewRequirement's checks; several problems are reported together as upstream does."""
    errs: list[str] = []
    vals = json.dumps(values, separators=(",", ":"))
    if operator in ("in", "notin") and not values:
        errs.append(f"values: Invalid value: {vals}: for 'in', 'notin' operators, values set "
                    "can't be empty")
    if operator in ("=", "==", "!=") and len(values) != 1:
        errs.append(f"values: Invalid value: {vals}: exact-match compatibility requires one "
                    "single value")
    if operator in ("gt", "lt"):
        if len(values) != 1:
            errs.append(f"values: Invalid value: {vals}: for 'Gt', 'Lt' operators, exactly one "
                        "value is required")
        for i, v in enumerate(values):
            try:
                int(v)
            except ValueError:
                errs.append(f"values[{i}]: Invalid value: {json.dumps(v)}: for 'Gt', 'Lt' "
                            "operators, the value must be an integer")
    for i, v in enumerate(values):
        if problems := is_label_value(v):
            errs.append(f"values[{i}][{key}]: Invalid value: {json.dumps(v)}: "
                        f"{'; '.join(problems)}")
    if errs:
        unique = list(dict.fromkeys(errs))
        raise SelectorError(unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]")
    return Requirement(key, operator, tuple(values))


def parse_labels(text: str) -> LabelSelector:
    """A label selector string; SelectorError with upstream's message when it does not parse."""
    requirements = _Parser(text).parse()
    return LabelSelector(tuple(sorted(requirements, key=lambda r: r.key)))
