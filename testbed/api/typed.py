"""Pure: structured-merge-diff's operations on plain JSON values, driven by Shapes.

These are the four walks server-side apply is built from (upstream: sigs.k8s.io/
structured-merge-diff typed/tofieldset.go, compare.go, merge.go, remove.go):

* `to_set(value, shape)`          the fields a value sets (what an applier owns)
* `compare(old, new, shape)`      the fields added, modified and removed between two values
* `merge(live, config, shape)`    an applied configuration merged into a live object
* `remove_items(value, s, shape)` a value without the fields of a set

Leaves are scalars, atomic lists, atomic maps (and empty maps/lists); associative lists are
walked item by item, keyed as `fieldpath.key`/`fieldpath.value` elements. A value absent on one
side is `MISSING`; JSON null is None. `TypedError` reports values the schema cannot key (a keyed
list item without any key field, duplicate keys in an applied configuration). No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from testbed.api import fieldpath as fp
from testbed.api.fieldpath import FieldSet, Path, PathElement
from testbed.api.shapes import UNTYPED, Shape, deduced

# Key fields upstream's schema gives a default, used when a keyed list item omits them
# (structured-merge-diff's getAssociativeKeyDefault): ports without a protocol are TCP ports.
KEY_DEFAULTS = {"protocol": "TCP"}


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class TypedError(ValueError):
    """A value that does not fit its schema (upstream's ValidationErrors)."""


@dataclass
class Comparison:
    added: FieldSet
    modified: FieldSet
    removed: FieldSet

    def same(self) -> bool:
        return self.added.empty() and self.modified.empty() and self.removed.empty()

    def changed(self) -> FieldSet:
        """Fields the new value sets differently: modified + added."""
        return self.modified.union(self.added)

    def excluding(self, prefix: Path) -> Comparison:
        """Without the paths under `prefix` (upstream's ignored/reset fields, e.g. status)."""
        cut = FieldSet([prefix])
        return Comparison(*(s.recursive_difference(cut) for s in (self.added, self.modified,
                                                                   self.removed)))


def resolve(shape: Shape, value: Any) -> Shape:
    return deduced(None if value is MISSING else value) if shape.kind == "untyped" else shape


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but True != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return a == b


def item_element(shape: Shape, item: Any) -> PathElement:
    """The path element of an associative list item: its key fields, or its value in a set."""
    if shape.list_type == "set":
        if isinstance(item, (dict, list)) or item is None:
            raise TypedError("associative list without keys has an element that's a map type"
                             if isinstance(item, dict) else "associative list without keys has "
                             "an element that's an explicit null" if item is None else
                             "not supported: associative list with lists as elements")
        return fp.value(item)
    if not isinstance(item, dict):
        raise TypedError("associative list with keys may not have non-map elements"
                         if item is not None else
                         "associative list with keys may not have a null element")
    element = shape.element(item)
    keys: dict[str, Any] = {}
    for name in shape.keys:
        if name in item:
            keys[name] = item[name]
        else:
            declared = element.declared(name)
            default = getattr(declared, "default", None) if declared is not None else None
            if default is None and declared is not None:
                default = KEY_DEFAULTS.get(name)
            if default is not None:
                keys[name] = default
    if not keys:
        raise TypedError(f"associative list with keys has an element that omits all key fields "
                         f"{list(shape.keys)} (and doesn't have default values for any key "
                         "fields)")
    return fp.key(keys)


# -- to_set ----------------------------------------------------------------------------------------

def to_set(value: Any, shape: Shape) -> FieldSet:
    out = FieldSet()
    _to_set(value, shape, (), out)
    return out


def _to_set(value: Any, shape: Shape, path: Path, out: FieldSet) -> None:
    s = resolve(shape, value)
    if s.kind == "list":
        if not s.associative or not isinstance(value, list):
            out.insert(path)
            return
        elements = [item_element(s, item) for item in value]
        seen: set[PathElement] = set()
        duplicates: set[PathElement] = set()
        for pe in elements:
            if pe in seen and pe not in duplicates:
                duplicates.add(pe)
                out.insert(path + (pe,))
            seen.add(pe)
        for item, pe in zip(value, elements, strict=True):
            if pe not in duplicates:
                _to_set(item, s.element(item), path + (pe,), out)
                out.insert(path + (pe,))
    elif s.kind in ("struct", "map"):
        if s.atomic or not isinstance(value, dict):
            out.insert(path)
            return
        for name, child in value.items():
            cpath = path + (fp.field(name),)
            _to_set(child, s.child(name, child), cpath, out)
            if child is None or child == {} or s.kind != "struct" or s.declared(name) is None:
                out.insert(cpath)
    else:
        out.insert(path)


# -- compare ---------------------------------------------------------------------------------------

def compare(old: Any, new: Any, shape: Shape) -> Comparison:
    c = Comparison(FieldSet(), FieldSet(), FieldSet())
    _compare(old, new, shape, (), c, False)
    return c


def _container(value: Any, kind: type) -> Any:
    """value when it is a dict/list of `kind`; empty when absent or null; None otherwise."""
    if isinstance(value, kind):
        return value
    return kind() if value is MISSING or value is None else None


def _compare(lhs: Any, rhs: Any, shape: Shape, path: Path, c: Comparison,
             struct_field: bool) -> None:
    s = resolve(shape, rhs if rhs is not MISSING else lhs)
    granular = False
    if s.kind == "list" and s.associative:
        lv, rv = _container(lhs, list), _container(rhs, list)
        granular = lv is not None and rv is not None and bool(lv or rv)
        if granular:
            _compare_items(lv, rv, s, path, c)
    elif s.kind in ("struct", "map") and not s.atomic:
        ld, rd = _container(lhs, dict), _container(rhs, dict)
        granular = ld is not None and rd is not None and bool(ld or rd)
        if granular:
            for name in list(ld) + [k for k in rd if k not in ld]:
                child_shape = s.child(name, rd.get(name, ld.get(name)))
                declared = s.declared(name) if s.kind == "struct" else None
                always_there = declared is not None and (
                    child_shape.kind == "struct" or getattr(declared, "required", False))
                _compare(ld.get(name, MISSING), rd.get(name, MISSING), child_shape,
                         path + (fp.field(name),), c, always_there)
    if not granular:
        if lhs is MISSING:
            c.added.insert(path)
        elif rhs is MISSING:
            c.removed.insert(path)
        elif not json_equal(lhs, rhs):
            c.modified.insert(path)
    elif lhs is MISSING and not struct_field:
        # A map or list (item) that appears as a whole is owned as a whole (the "." member);
        # not struct fields and required fields: upstream's zero objects always hold those.
        c.added.insert(path)
    elif rhs is MISSING:
        c.removed.insert(path)


def _group(items: list, shape: Shape) -> tuple[list[PathElement], dict[PathElement, list]]:
    order: list[PathElement] = []
    groups: dict[PathElement, list] = {}
    for item in items:
        pe = item_element(shape, item)
        if pe not in groups:
            order.append(pe)
            groups[pe] = []
        groups[pe].append(item)
    return order, groups


def _compare_items(lhs: list, rhs: list, shape: Shape, path: Path, c: Comparison) -> None:
    lorder, lgroups = _group(lhs, shape)
    rorder, rgroups = _group(rhs, shape)
    for pe in lorder + [pe for pe in rorder if pe not in lgroups]:
        left, right = lgroups.get(pe, []), rgroups.get(pe, [])
        ipath = path + (pe,)
        if len(left) <= 1 and len(right) <= 1:
            _compare(left[0] if left else MISSING, right[0] if right else MISSING,
                     shape.element(), ipath, c, False)
        elif len(left) >= 2 and len(right) >= 2:
            if not json_equal(left, right):
                c.modified.insert(ipath)
        elif len(left) >= 2:
            if right:
                _compare(MISSING, right[0], shape.element(), ipath, c, False)
            c.removed.insert(ipath)
        else:
            if left:
                _compare(left[0], MISSING, shape.element(), ipath, c, False)
            c.added.insert(ipath)


# -- merge -----------------------------------------------------------------------------------------

def merge(live: Any, config: Any, shape: Shape) -> Any:
    """`config` merged into `live` (config wins at leaves); MISSING when both are absent."""
    s = resolve(shape, config if config is not MISSING else live)
    if s.kind == "list" and s.associative:
        lv, cv = _container(live, list), _container(config, list)
        if lv is not None and cv is not None and (lv or cv):
            return _merge_items(lv, cv, s)
    elif s.kind in ("struct", "map") and not s.atomic:
        ld, cd = _container(live, dict), _container(config, dict)
        if ld is not None and cd is not None and (ld or cd):
            out = {}
            for name in list(ld) + [k for k in cd if k not in ld]:
                merged = merge(ld.get(name, MISSING), cd.get(name, MISSING),
                               s.child(name, cd.get(name, ld.get(name))))
                if merged is not MISSING:
                    out[name] = merged
            return out if out else MISSING
    return config if config is not MISSING else live


def _merge_items(lhs: list, rhs: list, shape: Shape) -> Any:
    """Upstream's list merge: live order, with the config's items in the config's order."""
    rpes = [item_element(shape, item) for item in rhs]
    observed_r: dict[PathElement, Any] = {}
    for pe, item in zip(rpes, rhs, strict=True):
        if pe in observed_r:
            raise TypedError(f"duplicate entries for key {fp.element_string(pe)}")
        observed_r[pe] = item
    lpes = [item_element(shape, item) for item in lhs]
    observed_l: dict[PathElement, Any] = {}
    for pe, item in zip(lpes, lhs, strict=True):
        observed_l[pe] = None if pe in observed_l else item  # duplicates merge as null
    shared = [pe for pe in rpes if pe in observed_l]
    next_shared = shared.pop(0) if shared else None
    merged_r: set[PathElement] = set()
    out: list = []
    element = shape.element()

    def add(value: Any) -> None:
        if value is not MISSING:
            out.append(value)

    li = ri = 0
    while li < len(lpes) or ri < len(rpes):
        if li < len(lpes) and ri < len(rpes):
            pe = lpes[li]
            if pe == rpes[ri]:
                merged_r.add(pe)
                add(merge(observed_l[pe], observed_r[pe], element))
                li, ri = li + 1, ri + 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in observed_r and next_shared is not None and next_shared != pe:
                li += 1
                continue
        if li < len(lpes):
            pe = lpes[li]
            if pe not in observed_r:
                add(merge(lhs[li], MISSING, element))
                li += 1
                continue
            if pe in merged_r:
                li += 1
        if ri < len(rpes):
            pe = rpes[ri]
            merged_r.add(pe)
            add(merge(observed_l.get(pe, MISSING), observed_r[pe], element))
            ri += 1
            if next_shared is not None and next_shared == pe:
                next_shared = shared.pop(0) if shared else None
    return out if out else MISSING


# -- remove_items ----------------------------------------------------------------------------------

def remove_items(value: Any, to_remove: FieldSet, shape: Shape) -> Any:
    """`value` without the members of `to_remove` (emptied maps and lists become null)."""
    s = resolve(shape, value)
    if s.kind == "list":
        if not isinstance(value, list) or not value or not s.associative:
            return None
        items = []
        for item in value:
            pe = item_element(s, item)
            if to_remove.has((pe,)):
                continue
            if pe in to_remove.children:
                item = remove_items(item, to_remove.children[pe], s.element(item))
            items.append(item)
        return items or None
    if s.kind in ("struct", "map"):
        if not isinstance(value, dict) or not value or s.atomic:
            return None
        out = {}
        for name, child in value.items():
            pe = fp.field(name)
            if pe in to_remove.members:
                continue
            if pe in to_remove.children:
                child = remove_items(child, to_remove.children[pe], s.child(name, child))
            out[name] = child
        return out or None
    return value


def ensure_named(fields: FieldSet, shape: Shape) -> FieldSet:
    """The set with every named struct field that has children also a member (upstream's
    EnsureNamedFieldsAreMembers), so that pruning a field removes it whole."""
    out = FieldSet()
    out.members = set(fields.members)
    for pe, child in fields.children.items():
        if pe[0] == "f":
            if shape.kind == "struct" and shape.declared(pe[1]) is not None:
                out.members.add(pe)
            cshape = shape.child(pe[1]) if shape.kind in ("struct", "map") else UNTYPED
        elif pe[0] == "k" and shape.kind == "list":
            cshape = shape.element()
        else:
            cshape = UNTYPED
        out.children[pe] = ensure_named(child, cshape)
    return out
