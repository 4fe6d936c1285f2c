"""Pure: the one schema of every kind the API server serves, and what is read from it.

Every type under every served kind is a TypeDef named as upstream's OpenAPI names it
(io.k8s.api.core.v1.PodSpec, io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta, ...), written in
schema_meta, schema_pod, schema_podstatus, schema_core and schema_groups (records in
schema_base); the <Kind>List types are made here from the resource table. Three things read
it, so they cannot drift apart:

* the validators take the fields they allow from `field_names` (pods.py, services.py, ...);
* the OpenAPI documents are generated from it (openapi.py), for kubectl explain and
  kubectl's client-side validation and for the patch engines (patch.py, managedfields.py);
* fieldValidation: `unknown_fields` and `prune` find and remove the fields a type does not
  have, `strict_errors` reads unknown and duplicate fields from a raw JSON body, with paths as
  upstream's strict decoding prints them (spec.template.spec.containers[0].bar).

No I/O.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from testbed.api import schema_core, schema_groups, schema_meta, schema_pod, schema_podstatus
from testbed.api.resources import RESOURCES
from testbed.api.schema_base import META, Field, TypeDef, obj, objects, string, typedef

__all__ = ["Field", "TypeDef", "definition", "definitions", "field_names", "for_kind",
           "prune", "strict_errors", "unknown_fields"]


def _list_type(item: TypeDef) -> TypeDef:
    group, version, kind = item.gvk  # type: ignore[misc]
    return typedef(
        item.name + "List",
        f"A list of {kind} objects, as a list request returns them.",
        string("apiVersion", "The versioned schema of this list."),
        string("kind", f"\"{kind}List\"."),
        obj("metadata", META + "ListMeta", "List metadata: the resource version the list was "
            "read at, and the continue token of a paged list."),
        objects("items", item.name, f"The {kind} objects.", required=True),
        gvk=(group, version, kind + "List"),
    )


@cache
def definitions() -> dict[str, TypeDef]:
    """Every TypeDef by name, in a stable order (meta first, then the kinds and their lists)."""
    out: dict[str, TypeDef] = {}
    for module in (schema_meta, schema_pod, schema_podstatus, schema_core, schema_groups):
        for t in module.TYPES:
            if t.name in out:
                raise ValueError(f"{t.name} is defined twice")
            out[t.name] = t
    kinds = {t.gvk: t for t in out.values() if t.gvk is not None}
    for r in RESOURCES:
        item = kinds[(r.group, r.version, r.kind)]
        out[item.name + "List"] = _list_type(item)
    return out


def definition(name: str) -> TypeDef:
    """The TypeDef named `name`; KeyError if there is none."""
    return definitions()[name]


@cache
def _by_gvk() -> dict[tuple[str, str], TypeDef]:
    out: dict[tuple[str, str], TypeDef] = {}
    for t in definitions().values():
        if t.gvk is not None:
            group, version, kind = t.gvk
            out[(f"{group}/{version}" if group else version, kind)] = t
    return out


def for_kind(group_version: str, kind: str) -> TypeDef:
    """The TypeDef of a top-level kind ("apps/v1", "Deployment"); KeyError if not served."""
    return _by_gvk()[(group_version, kind)]


@cache
def field_names(name: str) -> frozenset[str]:
    """The names of the fields of TypeDef `name` (what a validator allows there)."""
    return frozenset(definition(name).fields)


# -- unknown fields ----------------------------------------------------------------------------

def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _walk(value: Any, t: TypeDef, path: str, found: list[str], remove: bool) -> None:
    """Record (and with `remove`, delete) the keys of `value` that `t` does not have; go into
    the known ones. Free-form types and values of the wrong shape are not looked into (the
    validators report wrong shapes)."""
    if t.free_form or not isinstance(value, dict):
        return
    for key in list(value):
        f = t.fields.get(key)
        here = _join(path, str(key))
        if f is None:
            found.append(here)
            if remove:
                del value[key]
        elif f.ref is not None:
            _walk_field(value[key], f, here, found, remove)


def _walk_field(value: Any, f: Field, path: str, found: list[str], remove: bool) -> None:
    sub = definition(f.ref)  # type: ignore[arg-type]
    if f.type == "object":
        _walk(value, sub, path, found, remove)
    elif f.type == "array" and isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, sub, f"{path}[{i}]", found, remove)
    elif f.type == "map" and isinstance(value, dict):
        for key, item in value.items():
            _walk(item, sub, _join(path, str(key)), found, remove)


def unknown_fields(obj: Any, t: TypeDef) -> list[str]:
    """Paths of the fields of `obj` that type `t` does not have, in document order, as
    upstream's strict decoding prints them ("spec.template.spec.containers[0].bar")."""
    found: list[str] = []
    _walk(obj, t, "", found, remove=False)
    return found


def prune(obj: Any, t: TypeDef) -> list[str]:
    """Remove from `obj` (in place) the fields type `t` does not have; their paths."""
    found: list[str] = []
    _walk(obj, t, "", found, remove=True)
    return found


# -- strict decoding of a raw body -------------------------------------------------------------

class _Pairs(list):
    """A JSON object as its (key, value) pairs, duplicates kept."""


# What a value is decoded into: a TypeDef (struct), ("map", item) or None (untyped).
_Node = Any
MAX_STRICT_ERRORS = 100  # sigs.k8s.io/json stops recording after this many


def _field_node(f: Field) -> _Node:
    sub = definition(f.ref) if f.ref is not None else None
    if f.type == "map":
        return ("map", sub)
    if f.type in ("object", "array"):
        return sub
    return None


def _strict(value: Any, node: _Node, path: str, out: list[str], is_item: bool = False) -> None:
    if isinstance(value, list) and not isinstance(value, _Pairs):
        for i, item in enumerate(value):
            _strict(item, node, f"{path}[{i}]", out)
        return
    if not isinstance(value, _Pairs):
        return
    struct = node if isinstance(node, TypeDef) and not node.free_form else None
    item_node = node[1] if isinstance(node, tuple) else None
    seen: set[str] = set()
    for key, item in value:
        here = _join(path, key)
        if struct is not None and key not in struct.fields:
            _add(out, f'unknown field "{here}"')
            continue
        if key in seen:
            _add(out, f'duplicate field "{here}"')
        seen.add(key)
        if struct is not None:
            child = _field_node(struct.fields[key])
        elif isinstance(node, tuple):
            child = item_node
        else:
            child = None
        _strict(item, child, here, out)


def _add(out: list[str], message: str) -> None:
    if message not in out and len(out) < MAX_STRICT_ERRORS:
        out.append(message)


def strict_errors(raw: bytes | str, t: TypeDef) -> list[str]:
    """The strict decoding errors of a JSON body decoded as type `t`, in document order:
    'unknown field "spec.foo"' and 'duplicate field "metadata.name"', as sigs.k8s.io/json
    words them (an unknown field is not looked into). Empty when the body is not JSON (the
    caller reports that)."""
    try:
        doc = json.loads(raw, object_pairs_hook=_Pairs)
    except ValueError:
        return []
    out: list[str] = []
    _strict(doc, t, "", out)
    return out
