"""Pure: field paths and field sets as structured-merge-diff keeps them, and their FieldsV1 form.

A path element names a field (`f:replicas`), an associative list item by its key fields
(`k:{"name":"web"}`), an item of a set by its value (`v:"x"`), or a list index (`i:0`). A
FieldSet is a trie of path elements: members (paths in the set) and children. FieldsV1, the
form metadata.managedFields[].fieldsV1 carries, nests the elements, and "." marks a member that
also has children: {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}. Paths print the way
upstream prints them in apply conflicts: `.spec.template.spec.containers[name="web"].image`.

Elements sort as upstream sorts them (fields, then keys, then values, then indices), so
FieldsV1 comes out in upstream's order. No I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

# ("f", name) | ("k", ((field, json value), ...)) | ("v", json value) | ("i", index)
PathElement = tuple[str, Any]
Path = tuple[PathElement, ...]

_KIND_ORDER = {"f": 0, "k": 1, "v": 2, "i": 3}


def canonical(value: Any) -> str:
    """A scalar (or any JSON value) as compact JSON, HTML-escaped as Go's encoder writes it."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def field(name: str) -> PathElement:
    return ("f", name)


def key(fields: dict[str, Any]) -> PathElement:
    """An associative list item by its key fields (sorted by name)."""
    return ("k", tuple(sorted((k, canonical(v)) for k, v in fields.items())))


def value(v: Any) -> PathElement:
    return ("v", canonical(v))


def index(i: int) -> PathElement:
    return ("i", i)


def _value_order(v: Any) -> tuple:
    """upstream value.Compare: numbers, then strings, then booleans, lists, maps, null."""
    if isinstance(v, bool):
        return (2, v)
    if isinstance(v, (int, float)):
        return (0, float(v))
    if isinstance(v, str):
        return (1, v)
    if isinstance(v, list):
        return (3, [_value_order(x) for x in v])
    if isinstance(v, dict):
        return (4, sorted((k, _value_order(x)) for k, x in v.items()))
    return (5,)


def _order(pe: PathElement) -> tuple:
    kind, payload = pe
    if kind == "k":
        payload = [(name, _value_order(json.loads(text))) for name, text in payload]
    elif kind == "v":
        payload = _value_order(json.loads(payload))
    return (_KIND_ORDER[kind], payload)


def element_text(pe: PathElement) -> str:
    """One element as a FieldsV1 key: f:name, k:{"name":"web"}, v:"x", i:0."""
    kind, payload = pe
    if kind == "k":
        return "k:{" + ",".join(f"{canonical(name)}:{text}" for name, text in payload) + "}"
    return f"{kind}:{payload}"


def parse_element(text: str) -> PathElement:
    kind, sep, rest = text.partition(":")
    if sep != ":" or len(kind) != 1:
        raise ValueError(f"missing colon: {text}")
    if kind == "f":
        return ("f", rest)
    if kind == "v":
        return ("v", canonical(json.loads(rest)))
    if kind == "k":
        fields = json.loads(rest)
        if not isinstance(fields, dict):
            raise ValueError(f"invalid key: {text}")
        return key(fields)
    if kind == "i":
        return ("i", int(rest))
    raise ValueError("unknown path element type")


def element_string(pe: PathElement) -> str:
    """As upstream's PathElement.String(): .name, [name="web",protocol="TCP"], [=x], [0]."""
    kind, payload = pe
    if kind == "f":
        return "." + payload
    if kind == "k":
        return "[" + ",".join(f"{name}={_go_string(json.loads(text))}"
                              for name, text in payload) + "]"
    if kind == "v":
        return f"[={_go_string(json.loads(payload))}]"
    return f"[{payload}]"


def _go_string(v: Any) -> str:
    """upstream value.ToString: strings quoted, numbers and booleans bare."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(_go_string(x) for x in v) + "]"
    if isinstance(v, dict):
        return "".join(f"{k}={_go_string(x)}" for k, x in v.items())
    return str(v)


def path_string(path: Path) -> str:
    return "".join(element_string(pe) for pe in path)


class FieldSet:
    """A set of field paths: members at this level, and a child set per path element."""

    __slots__ = ("members", "children")

    def __init__(self, paths: Iterator[Path] | list[Path] | None = None):
        self.members: set[PathElement] = set()
        self.children: dict[PathElement, FieldSet] = {}
        for p in paths or ():
            self.insert(p)

    def __repr__(self) -> str:
        return f"FieldSet({[path_string(p) for p in self.paths()]})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldSet) and self.to_fields() == other.to_fields()

    def insert(self, path: Path) -> None:
        node = self
        for pe in path[:-1]:
            node = node.children.setdefault(pe, FieldSet())
        if path:
            node.members.add(path[-1])

    def has(self, path: Path) -> bool:
        node: FieldSet | None = self
        for pe in path[:-1]:
            node = node.children.get(pe)
            if node is None:
                return False
        return bool(path) and path[-1] in node.members

    def with_prefix(self, pe: PathElement) -> FieldSet:
        return self.children.get(pe) or FieldSet()

    def empty(self) -> bool:
        return not self.members and all(c.empty() for c in self.children.values())

    def copy(self) -> FieldSet:
        out = FieldSet()
        out.members = set(self.members)
        out.children = {pe: c.copy() for pe, c in self.children.items()}
        return out

    def union(self, other: FieldSet) -> FieldSet:
        out = self.copy()
        out.members |= other.members
        for pe, child in other.children.items():
            out.children[pe] = out.children[pe].union(child) if pe in out.children \
                else child.copy()
        return out

    def difference(self, other: FieldSet) -> FieldSet:
        """Members of self not members of other, level by level (a member of other does not
        remove the children of the same path: upstream's Set.Difference)."""
        out = FieldSet()
        out.members = self.members - other.members
        for pe, child in self.children.items():
            rest = child.difference(other.children[pe]) if pe in other.children else child.copy()
            if not rest.empty():
                out.children[pe] = rest
        return out

    def recursive_difference(self, other: FieldSet) -> FieldSet:
        """As difference, but a member of other also removes every path under it."""
        out = FieldSet()
        out.members = self.members - other.members
        for pe, child in self.children.items():
            if pe in other.members:
                continue
            rest = child.recursive_difference(other.children[pe]) if pe in other.children \
                else child.copy()
            if not rest.empty():
                out.children[pe] = rest
        return out

    def intersection(self, other: FieldSet) -> FieldSet:
        out = FieldSet()
        out.members = self.members & other.members
        for pe, child in self.children.items():
            if pe in other.children:
                both = child.intersection(other.children[pe])
                if not both.empty():
                    out.children[pe] = both
        return out

    def paths(self, prefix: Path = ()) -> Iterator[Path]:
        """Every member path, members before children at each level, in upstream's order."""
        for pe in sorted(self.members, key=_order):
            yield prefix + (pe,)
        for pe in sorted(self.children, key=_order):
            yield from self.children[pe].paths(prefix + (pe,))

    # -- FieldsV1

    def to_fields(self) -> dict:
        """The FieldsV1 form ({"f:spec": {"f:replicas": {}}, ...})."""
        out: dict = {}
        for pe in sorted(self.members | set(self.children), key=_order):
            child = self.children.get(pe)
            if child is None or child.empty():
                out[element_text(pe)] = {}
            else:
                inner = child.to_fields()
                out[element_text(pe)] = {".": {}, **inner} if pe in self.members else inner
        return out

    @classmethod
    def from_fields(cls, fields: Any) -> FieldSet:
        """Parse FieldsV1; ValueError when it is not well formed."""
        if not isinstance(fields, dict):
            raise ValueError("fieldsV1 must be an object")
        out = cls()
        for text, inner in fields.items():
            if text == ".":
                continue
            pe = parse_element(text)
            if not isinstance(inner, dict):
                raise ValueError(f"fieldsV1 value of {text} must be an object")
            if not inner or "." in inner:
                out.members.add(pe)
            child = cls.from_fields(inner)
            if not child.empty():
                out.children[pe] = child
        return out
