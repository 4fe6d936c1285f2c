"""Pure: how each field of an object merges, read from the schema (testbed/api/schema.py).

A Shape is the structured-merge-diff view of a type, derived from the schema's TypeDefs the way
kube-openapi's schemaconv derives it from OpenAPI:

* struct   a TypeDef's named fields; atomic when its map type says so (LabelSelector)
* map      free keys with one item shape (labels, annotations, resources.limits)
* list     atomic (replaced whole), a set of scalars (finalizers), or a map keyed by fields
           (containers by name, ports by containerPort+protocol). x-kubernetes-list-type
           decides; without it a patch strategy "merge" makes a keyed list (or a set when there
           is no merge key), anything else is atomic.
* scalar   strings, numbers, booleans, int-or-string
* untyped  no schema: maps merge key by key, lists are atomic (upstream's "deduced" type)

Strategic merge patch reads the patch strategy and merge key of a field (`Shapes.field`); field
management walks values with `Shape.child` / `Shape.item`. The schema source is handed in (the
schema module, or a small fake in tests) and needs `definition(name)` and
`for_kind(group_version, kind)`. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean", "int-or-string"})


class SchemaSource(Protocol):
    def definition(self, name: str) -> Any: ...

    def for_kind(self, group_version: str, kind: str) -> Any: ...


@dataclass(frozen=True)
class Shape:
    kind: str                       # "struct" | "map" | "list" | "scalar" | "untyped"
    typedef: str | None = None      # struct: the TypeDef's name
    item: Shape | None = None       # map and list: the items' shape
    list_type: str = "atomic"       # list: "atomic" | "set" | "map"
    keys: tuple[str, ...] = ()      # list of type "map": the key fields
    atomic: bool = False            # struct and map: replaced whole
    source: Any = field(default=None, compare=False, repr=False, hash=False)

    def fields(self) -> dict[str, Any]:
        """A struct's schema Fields by JSON name (empty for other shapes)."""
        if self.kind != "struct" or self.source is None:
            return {}
        try:
            return self.source.definition(self.typedef).fields
        except (KeyError, LookupError):
            return {}

    def declared(self, name: str) -> Any | None:
        """The schema Field `name` of a struct, or None."""
        return self.fields().get(name)

    def child(self, name: str, value: Any = None) -> Shape:
        """The shape of field/key `name` of a struct or map (untyped when unknown)."""
        if self.kind == "struct":
            f = self.declared(name)
            return shape_of_field(f, self.source) if f is not None else deduced(value)
        if self.kind == "map" and self.item is not None:
            return self.item
        return deduced(value)

    def element(self, value: Any = None) -> Shape:
        """The shape of a list's items."""
        return self.item if self.item is not None else deduced(value)

    @property
    def is_granular_map(self) -> bool:
        return self.kind in ("struct", "map") and not self.atomic

    @property
    def associative(self) -> bool:
        return self.kind == "list" and self.list_type in ("set", "map")


SCALAR = Shape("scalar")
UNTYPED = Shape("untyped")
_ATOMIC_LIST = Shape("list", item=UNTYPED)
_DEDUCED_MAP = Shape("map", item=UNTYPED)


def deduced(value: Any) -> Shape:
    """Upstream's deduced type for values without a schema: maps granular, lists atomic."""
    if isinstance(value, dict):
        return _DEDUCED_MAP
    if isinstance(value, list):
        return _ATOMIC_LIST
    return UNTYPED if value is None else SCALAR


def struct(typedef: str, source: Any, atomic: bool = False) -> Shape:
    """A TypeDef's shape; untyped when the schema keeps it free-form (no fields to go by)."""
    try:
        td = source.definition(typedef)
    except (KeyError, LookupError):
        td = None
    if td is not None and getattr(td, "free_form", False):
        return UNTYPED
    atomic = atomic or getattr(td, "map_type", None) == "atomic"
    return Shape("struct", typedef=typedef, atomic=atomic, source=source)


def _item(f: Any, source: Any) -> Shape:
    if getattr(f, "ref", None):
        return struct(f.ref, source)
    items = getattr(f, "items", None)
    return UNTYPED if items in (None, "any", "object") else SCALAR


def list_relationship(f: Any) -> tuple[str, tuple[str, ...]]:
    """(list type, keys) of an array Field, as kube-openapi's schemaconv decides."""
    if f.list_type:
        if f.list_type == "map":
            return "map", tuple(f.list_map_keys)
        return ("set", ()) if f.list_type == "set" else ("atomic", ())
    strategies = (f.patch_strategy or "").split(",")
    if "merge" in strategies:
        return ("map", (f.patch_merge_key,)) if f.patch_merge_key else ("set", ())
    return "atomic", ()


def shape_of_field(f: Any, source: Any) -> Shape:
    t = f.type
    if t in SCALAR_TYPES:
        return SCALAR
    if t == "object":
        if not f.ref:
            return UNTYPED
        return struct(f.ref, source, atomic=getattr(f, "map_type", None) == "atomic")
    if t == "map":
        return Shape("map", item=_item(f, source), atomic=getattr(f, "map_type", None) == "atomic",
                     source=source)
    if t == "array":
        list_type, keys = list_relationship(f)
        return Shape("list", item=_item(f, source), list_type=list_type, keys=keys, source=source)
    return UNTYPED


def for_kind(source: Any, group_version: str, kind: str) -> Shape:
    """The shape of a whole object of that kind; untyped when the schema does not know it."""
    if source is None:
        return UNTYPED
    try:
        td = source.for_kind(group_version, kind)
    except (KeyError, LookupError, ValueError):
        return UNTYPED
    return struct(td.name, source)
