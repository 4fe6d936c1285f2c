"""Pure: the records the API schema is written in (Field, TypeDef) and short constructors.

A TypeDef is one object type under its upstream OpenAPI definition name
("io.k8s.api.core.v1.PodSpec"); a Field is one of its properties, with the patch and list
metadata upstream publishes (x-kubernetes-patch-strategy, -patch-merge-key, -list-type,
-list-map-keys, -map-type). The schema modules (schema_meta, schema_pod, schema_core,
schema_groups) are written with the constructors below; testbed/api/schema.py collects them.
No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CORE = "io.k8s.api.core.v1."
APPS = "io.k8s.api.apps.v1."
AUTOSCALING = "io.k8s.api.autoscaling.v1."
DISCOVERY = "io.k8s.api.discovery.v1."
NETWORKING = "io.k8s.api.networking.v1."
COORDINATION = "io.k8s.api.coordination.v1."
META = "io.k8s.apimachinery.pkg.apis.meta.v1."

FIELD_TYPES = ("string", "integer", "number", "boolean", "object", "array", "map",
               "int-or-string", "any")


@dataclass(frozen=True)
class Field:
    name: str
    type: str   # one of FIELD_TYPES
    ref: str | None = None      # "object": the TypeDef name; "array"/"map": item TypeDef name
    items: str | None = None    # "array"/"map" of primitives: the item type ("string", ...)
    description: str = ""
    required: bool = False
    format: str | None = None   # "int32", "int64", "date-time", ...
    enum: tuple[str, ...] = ()
    patch_strategy: str | None = None    # x-kubernetes-patch-strategy
    patch_merge_key: str | None = None   # x-kubernetes-patch-merge-key
    list_type: str | None = None         # x-kubernetes-list-type: "atomic" | "set" | "map"
    list_map_keys: tuple[str, ...] = ()  # x-kubernetes-list-map-keys
    map_type: str | None = None          # x-kubernetes-map-type: "atomic" | "granular"


@dataclass(frozen=True)
class TypeDef:
    name: str                  # "io.k8s.api.core.v1.PodSpec"
    description: str
    fields: dict[str, Field]   # in a stable order
    gvk: tuple[str, str, str] | None = None   # (group, version, kind) of top-level kinds
    map_type: str | None = None               # "atomic" for e.g. LabelSelector
    # Added beside the shared interface: a type the server keeps as it comes, without
    # checking its keys (x-kubernetes-preserve-unknown-fields in v3, no properties in v2).
    free_form: bool = False
    extra_gvks: tuple[tuple[str, str, str], ...] = field(default=())  # e.g. DeleteOptions


# -- constructors: one line per field in the schema modules ----------------------------------

def string(name: str, description: str, **kw: Any) -> Field:
    return Field(name, "string", description=description, **kw)


def int32(name: str, description: str, **kw: Any) -> Field:
    return Field(name, "integer", description=description, format="int32", **kw)


def int64(name: str, description: str, **kw: Any) -> Field:
    return Field(name, "integer", description=description, format="int64", **kw)


def boolean(name: str, description: str, **kw: Any) -> Field:
    return Field(name, "boolean", description=description, **kw)


def time(name: str, description: str, **kw: Any) -> Field:
    """A meta/v1 Time or MicroTime: an RFC 3339 string."""
    return Field(name, "string", description=description, format="date-time", **kw)


def int_or_string(name: str, description: str, **kw: Any) -> Field:
    return Field(name, "int-or-string", description=description, **kw)


def obj(name: str, ref: str, description: str, **kw: Any) -> Field:
    return Field(name, "object", ref=ref, description=description, **kw)


def objects(name: str, ref: str, description: str, **kw: Any) -> Field:
    """A list of objects of TypeDef `ref`."""
    return Field(name, "array", ref=ref, description=description, **kw)


def strings(name: str, description: str, **kw: Any) -> Field:
    """A list of strings."""
    return Field(name, "array", items="string", description=description, **kw)


def string_map(name: str, description: str, **kw: Any) -> Field:
    """A map of string to string (labels, selectors, annotations)."""
    return Field(name, "map", items="string", description=description, **kw)


def free(name: str, description: str, **kw: Any) -> Field:
    """A value the server keeps as it comes (a JSON value of any shape)."""
    return Field(name, "any", description=description, **kw)


def merge_list(key: str, *map_keys: str) -> dict[str, Any]:
    """Upstream's usual metadata of a list merged on `key`: patchStrategy merge, listType map."""
    return {"patch_strategy": "merge", "patch_merge_key": key, "list_type": "map",
            "list_map_keys": map_keys or (key,)}


ATOMIC: dict[str, Any] = {"list_type": "atomic"}


def typedef(name: str, description: str, *fields: Field, gvk: tuple[str, str, str] | None = None,
            map_type: str | None = None, free_form: bool = False,
            extra_gvks: tuple[tuple[str, str, str], ...] = ()) -> TypeDef:
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise ValueError(f"{name}: a field is listed twice")
    return TypeDef(name, description, {f.name: f for f in fields}, gvk, map_type, free_form,
                   extra_gvks)


def kind_header(kind: str, what: str) -> tuple[Field, Field, Field]:
    """apiVersion, kind and metadata, as every top-level kind has them."""
    return (
        string("apiVersion", "The versioned schema of this object, e.g. \"v1\" or \"apps/v1\"; "
               "the server rejects versions it does not serve."),
        string("kind", f"The type of this object, here \"{kind}\" (CamelCase). The server "
               "can infer it from the path a request is sent to."),
        obj("metadata", META + "ObjectMeta", f"Standard object metadata of the {what}: name, "
            "namespace, labels, annotations and the server-set fields."),
    )
