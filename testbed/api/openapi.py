"""Pure: the OpenAPI documents the API server publishes, generated from the schema
(testbed/api/schema.py) and the resource table, and the answers to /openapi/... requests.

    GET /openapi/v2                  swagger 2.0, every definition and path: JSON, or protobuf
                                     (gnostic's OpenAPIv2 Document) when Accept asks for
                                     application/com.github.proto-openapi.spec.v2[@.]v1.0+protobuf
    GET /openapi/v3                  {"paths": {"api/v1": {"serverRelativeURL":
                                     "/openapi/v3/api/v1?hash=H"}, "apis/apps/v1": ...}}
    GET /openapi/v3/api/v1?hash=H    OpenAPI 3.0 of one group-version: its paths and the
                                     component schemas they reach

Definitions carry x-kubernetes-group-version-kind on top-level kinds and the patch and list
extensions (x-kubernetes-patch-strategy, -patch-merge-key, -list-type, -list-map-keys,
-map-type); int-or-string is published as upstream publishes it (v2: type string, format
int-or-string; v3: the IntOrString component, x-kubernetes-int-or-string). kubectl 1.20
validates manifests and explains fields from the v2 protobuf; kubectl 1.37 explains from v3
and sends fieldValidation=Strict because the v3 PATCH operations list that parameter. ETags and hashes are upstream's (SHA-512
of the JSON, in upper-case hex). Everything is computed once. No I/O.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from testbed.api import discovery
from testbed.api.openapi_paths import Operation, Param, PathItem, paths
from testbed.api.openapi_pb import encode_document
from testbed.api.resources import group_versions
from testbed.api.schema import definitions
from testbed.api.schema_base import Field, TypeDef

V2_REF, V3_REF = "#/definitions/", "#/components/schemas/"
PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_PROTOBUF_V2_SUBTYPES = ("com.github.proto-openapi.spec.v2.v1.0+protobuf",
                         "com.github.proto-openapi.spec.v2@v1.0+protobuf")
INFO = {"title": "Kubernetes", "version": discovery.VERSION_INFO["gitVersion"]}
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
INT_OR_STRING_V3 = {
    "description": "An integer or a string: a port number or a port name, a count or a "
                   "percentage such as \"25%\".",
    "x-kubernetes-int-or-string": True,
    "anyOf": [{"type": "integer"}, {"type": "string"}],
}


# -- schemas ---------------------------------------------------------------------------------------

def _gvk(gvk: tuple[str, str, str]) -> dict[str, str]:
    return {"group": gvk[0], "kind": gvk[2], "version": gvk[1]}


def _primitive(kind: str, fmt: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind}
    if fmt:
        out["format"] = fmt
    return out


def field_schema(f: Field, ref: str, v3: bool) -> dict[str, Any]:
    """One property, as upstream's generator writes it for OpenAPI v2 (v3=False) or v3."""
    out: dict[str, Any]
    if f.type == "object":
        # v3 wraps the reference, so that kubectl explain shows the field's description and
        # then the type's, as upstream's v3 does; v2 puts the description beside the $ref.
        target = {"$ref": ref + f.ref}  # type: ignore[operator]
        out = {"allOf": [target]} if v3 else target
    elif f.type in ("array", "map"):
        item = {"$ref": ref + f.ref} if f.ref else _primitive(f.items or "string")
        out = ({"type": "array", "items": item} if f.type == "array"
               else {"type": "object", "additionalProperties": item})
    elif f.type == "int-or-string":
        # v3: a reference to the IntOrString component (x-kubernetes-int-or-string), so that
        # kubectl explain names the type as it does against upstream
        out = ({"allOf": [{"$ref": ref + INT_OR_STRING}]} if v3
               else {"type": "string", "format": "int-or-string"})
    elif f.type == "any":
        out = {"x-kubernetes-preserve-unknown-fields": True} if v3 else {}
    else:
        out = _primitive(f.type, f.format)
    if f.description:
        out["description"] = f.description
    if f.enum:
        out["enum"] = list(f.enum)
    for key, value in (("x-kubernetes-list-map-keys", list(f.list_map_keys)),
                       ("x-kubernetes-list-type", f.list_type),
                       ("x-kubernetes-map-type", f.map_type),
                       ("x-kubernetes-patch-merge-key", f.patch_merge_key),
                       ("x-kubernetes-patch-strategy", f.patch_strategy)):
        if value:
            out[key] = value
    return out


def type_schema(t: TypeDef, v3: bool) -> dict[str, Any]:
    """One definition (v2) or component schema (v3)."""
    ref = V3_REF if v3 else V2_REF
    out: dict[str, Any] = {"description": t.description, "type": "object"}
    if t.free_form:
        # No properties: kubectl 1.20 reads such a definition as a map of anything.
        if v3:
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out
    out["properties"] = {name: field_schema(f, ref, v3) for name, f in sorted(t.fields.items())}
    required = [name for name, f in t.fields.items() if f.required]
    if required:
        out["required"] = required
    gvks = ([t.gvk] if t.gvk else []) + list(t.extra_gvks)
    if gvks:
        out["x-kubernetes-group-version-kind"] = [_gvk(g) for g in gvks]
    if t.map_type:
        out["x-kubernetes-map-type"] = t.map_type
    return out


def _references(t: TypeDef) -> list[str]:
    return [f.ref for f in t.fields.values() if f.ref]


def reachable(names: list[str]) -> list[str]:
    """The definitions `names` reach through their fields, sorted."""
    defs = definitions()
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_references(defs[name]))
    return sorted(seen)


# -- operations ------------------------------------------------------------------------------------

def _param_v2(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"description": p.description, "in": p.where, "name": p.name,
                           "type": p.type, "uniqueItems": True}
    if p.required:
        out["required"] = True
    return out


def _param_v3(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"description": p.description, "in": p.where, "name": p.name,
                           "schema": {"type": p.type, "uniqueItems": True}}
    if p.required:
        out["required"] = True
    return out


def _op_v2(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"consumes": list(op.consumes), "description": op.description,
                           "operationId": op.operation_id, "produces": list(op.produces),
                           "tags": [op.tag],
                           "x-kubernetes-action": op.action,
                           "x-kubernetes-group-version-kind": _gvk(op.gvk)}
    params = [_param_v2(p) for p in op.params]
    if op.body:
        params.insert(0, {"in": "body", "name": "body", "required": True,
                          "schema": {"$ref": V2_REF + op.body}})
    if params:
        out["parameters"] = params
    responses: dict[str, Any] = {}
    for code, text, definition in op.responses:
        response: dict[str, Any] = {"description": text}
        if definition:
            response["schema"] = {"$ref": V2_REF + definition}
        elif op.text:
            response["schema"] = {"type": "string"}
        responses[code] = response
    responses["401"] = {"description": "Unauthorized"}
    out["responses"] = responses
    return out


def _op_v3(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"description": op.description, "operationId": op.operation_id,
                           "tags": [op.tag], "x-kubernetes-action": op.action,
                           "x-kubernetes-group-version-kind": _gvk(op.gvk)}
    if op.params:
        out["parameters"] = [_param_v3(p) for p in op.params]
    if op.body:
        types = op.consumes if op.consumes != ("*/*",) else ("*/*",)
        out["requestBody"] = {"content": {t: {"schema": {"$ref": V3_REF + op.body}}
                                          for t in types}, "required": True}
    responses: dict[str, Any] = {}
    for code, text, definition in op.responses:
        schema: dict[str, Any] = ({"$ref": V3_REF + definition} if definition
                                  else {"type": "string"})
        responses[code] = {"content": {t: {"schema": schema} for t in op.produces},
                           "description": text}
    out["responses"] = responses
    return out


def _path_v2(item: PathItem) -> dict[str, Any]:
    out: dict[str, Any] = {method: _op_v2(op) for method, op in item.ops.items()}
    out["parameters"] = [_param_v2(p) for p in item.params]
    return out


def _path_v3(item: PathItem) -> dict[str, Any]:
    out: dict[str, Any] = {method: _op_v3(op) for method, op in item.ops.items()}
    out["parameters"] = [_param_v3(p) for p in item.params]
    return out


def _used(items: list[PathItem]) -> list[str]:
    names = {"io.k8s.apimachinery.pkg.apis.meta.v1.Status"}
    for item in items:
        for op in item.ops.values():
            names.update(d for _, _, d in op.responses if d)
            if op.body:
                names.add(op.body)
    return sorted(names)


# -- documents -------------------------------------------------------------------------------------

@cache
def v2_document() -> dict[str, Any]:
    """Swagger 2.0: every definition and every path."""
    return {
        "definitions": {name: type_schema(t, v3=False)
                        for name, t in sorted(definitions().items())},
        "info": dict(INFO),
        "paths": {item.path: _path_v2(item) for item in sorted(paths(), key=lambda i: i.path)},
        "swagger": "2.0",
    }


@cache
def v3_document(group_version: str) -> dict[str, Any]:
    """OpenAPI 3.0 of one served group-version ("v1", "apps/v1")."""
    items = sorted(paths(group_version), key=lambda i: i.path)
    defs = definitions()
    schemas = {name: type_schema(defs[name], v3=True) for name in reachable(_used(items))}
    if any(f.type == "int-or-string" for name in schemas for f in defs[name].fields.values()):
        schemas[INT_OR_STRING] = dict(INT_OR_STRING_V3)
    return {
        "components": {"schemas": dict(sorted(schemas.items()))},
        "info": dict(INFO),
        "openapi": "3.0.0",
        "paths": {item.path: _path_v3(item) for item in items},
    }


def etag(data: bytes) -> str:
    """Upstream's ETag and hash: the SHA-512 of the JSON, in upper-case hex."""
    return hashlib.sha512(data).hexdigest().upper()


def _json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def v3_key(group_version: str) -> str:
    """"api/v1", "apis/apps/v1": how /openapi/v3 names a group-version."""
    return f"api/{group_version}" if "/" not in group_version else f"apis/{group_version}"


@cache
def _v3_bodies() -> dict[str, bytes]:
    return {v3_key(gv): _json(v3_document(gv)) for gv in group_versions()}


@cache
def v3_discovery() -> bytes:
    return _json({"paths": {key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={etag(body)}"}
                            for key, body in _v3_bodies().items()}})


@cache
def _v2_json() -> bytes:
    return _json(v2_document())


@cache
def _v2_protobuf() -> bytes:
    # Encoded from the JSON text, as upstream converts its JSON (gnostic ParseDocument).
    return encode_document(json.loads(_v2_json()))


# -- HTTP --------------------------------------------------------------------------------------------

def _accepts(accept: str) -> list[tuple[str, str]]:
    """(type, subtype) of each media range of an Accept header, by preference (q)."""
    ranges = []
    for i, clause in enumerate((accept or "*/*").split(",")):
        parts = [p.strip() for p in clause.split(";")]
        media, _, sub = parts[0].partition("/")
        q = 1.0
        for p in parts[1:]:
            key, _, value = p.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media and q > 0:
            ranges.append((-q, i, media.strip().lower(), sub.strip().lower() or "*"))
    return [(media, sub) for _, _, media, sub in sorted(ranges)]


def _matches(ranges: list[tuple[str, str]], media: str, subtypes: tuple[str, ...]) -> bool:
    return any(m in (media, "*") and s in (*subtypes, "*") for m, s in ranges)


Answer = tuple[int, bytes, str, dict[str, str]]


def _content(body: bytes, content_type: str, tag: str, if_none_match: str,
             headers: dict[str, str] | None = None) -> Answer:
    extra = {"ETag": f'"{tag}"', "Vary": "Accept", **(headers or {})}
    if if_none_match and tag in [t.strip().strip('"') for t in if_none_match.split(",")]:
        return 304, b"", content_type, extra
    return 200, body, content_type, extra


def _not_acceptable() -> Answer:
    return 406, b"", "text/plain", {"Vary": "Accept"}


def openapi_response(path: str, query: dict[str, list[str]], accept: str,
                     if_none_match: str = "") -> Answer | None:
    """The answer to GET `path` (status, body, content type, extra headers), or None when
    `path` is not an OpenAPI path. `query` is the parsed query string."""
    path = path.rstrip("/") or "/"
    if path == "/openapi/v2":
        ranges = _accepts(accept)
        for media, sub in ranges:
            if media in ("application", "*") and sub in ("json", "*"):
                return _content(_v2_json(), "application/json", etag(_v2_json()), if_none_match)
            if media == "application" and sub in _PROTOBUF_V2_SUBTYPES:
                return _content(_v2_protobuf(), PROTOBUF_V2, etag(_v2_json()), if_none_match)
        return _not_acceptable()
    if path == "/openapi/v3":
        body = v3_discovery()
        return _content(body, "application/json", etag(body), if_none_match)
    if not path.startswith("/openapi/v3/"):
        return None
    key = path.removeprefix("/openapi/v3/")
    body = _v3_bodies().get(key)
    if body is None:
        return 404, json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "reason": "NotFound", "code": 404,
                                "message": f"the server has no OpenAPI document for {key}"}
                               ).encode(), "application/json", {}
    if not _matches(_accepts(accept), "application", ("json",)):
        return _not_acceptable()
    tag = etag(body)
    wanted = (query.get("hash") or [""])[-1]
    if wanted and wanted != tag:
        # A stale hash: send the client to the current document, as upstream does.
        return 301, b"", "text/plain", {"Location": f"/openapi/v3/{key}?hash={tag}"}
    cache_headers = {"Cache-Control": "public, immutable"} if wanted else {}
    return _content(body, "application/json", tag, if_none_match, cache_headers)
