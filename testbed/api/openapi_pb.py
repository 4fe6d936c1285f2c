"""Pure: an OpenAPI v2 document (the JSON-shaped dict openapi.py makes) in protobuf, as
gnostic's openapi_v2.Document (google/gnostic-models openapiv2/OpenAPIv2.proto), the form
kubectl 1.20 asks /openapi/v2 for and validates manifests with.

The wire format is small: each field is a key (field number << 3 | wire type) followed by a
varint (wire type 0: booleans) or a length-delimited payload (wire type 2: strings, nested
messages, each element of a repeated field). Proto3 leaves out fields at their default (empty
strings, false). Maps become repeated Named* messages in key order; vendor extensions ("x-..."
keys) become NamedAny with the value as YAML text (JSON is YAML), as gnostic keeps them.
Only the subset of the document model openapi.py uses is covered; anything else is a
ValueError, so the JSON and the protobuf cannot silently differ. No I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

VARINT, LENGTH = 0, 2


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def _bytes(number: int, payload: bytes) -> bytes:
    return _key(number, LENGTH) + varint(len(payload)) + payload


def _string(number: int, text: str) -> bytes:
    return _bytes(number, text.encode()) if text else b""


def _strings(number: int, texts: list[str]) -> bytes:
    return b"".join(_bytes(number, t.encode()) for t in texts)


def _bool(number: int, value: bool) -> bytes:
    return _key(number, VARINT) + varint(1) if value else b""


def _message(number: int, payload: bytes) -> bytes:
    """A nested message (present even when empty, as a set message field is)."""
    return _bytes(number, payload)


def _any(value: Any) -> bytes:
    """openapi.v2.Any: {yaml = 2}."""
    return _string(2, json.dumps(value, sort_keys=True))


def _extensions(number: int, d: dict[str, Any]) -> bytes:
    """Vendor extensions as repeated NamedAny {name = 1, value = 2}."""
    return b"".join(_message(number, _string(1, k) + _message(2, _any(v)))
                    for k, v in sorted(d.items()) if k.startswith("x-"))


def _check(d: dict[str, Any], known: set[str], what: str) -> None:
    unknown = [k for k in d if k not in known and not k.startswith("x-")]
    if unknown:
        raise ValueError(f"{what}: no protobuf encoding for {unknown}")


# -- Schema ----------------------------------------------------------------------------------------

def schema(d: dict[str, Any]) -> bytes:
    """openapi.v2.Schema."""
    _check(d, {"$ref", "format", "description", "required", "enum", "additionalProperties",
               "type", "items", "properties"}, "Schema")
    out = _string(1, d.get("$ref", "")) + _string(2, d.get("format", ""))
    out += _string(4, d.get("description", ""))
    out += _strings(19, d.get("required", []))
    out += b"".join(_message(20, _any(v)) for v in d.get("enum", []))
    extra = d.get("additionalProperties")
    if isinstance(extra, dict):
        out += _message(21, _message(1, schema(extra)))          # AdditionalPropertiesItem
    elif isinstance(extra, bool):
        out += _message(21, _key(2, VARINT) + varint(int(extra)))
    kind = d.get("type")
    if kind is not None:
        out += _message(22, _strings(1, [kind] if isinstance(kind, str) else kind))  # TypeItem
    if "items" in d:
        out += _message(23, _message(1, schema(d["items"])))      # ItemsItem
    if "properties" in d:                                         # Properties
        out += _message(25, b"".join(_named(name, schema(value))
                                     for name, value in sorted(d["properties"].items())))
    return out + _extensions(31, d)


def _named(name: str, value: bytes) -> bytes:
    """A Named* message {name = 1, value = 2} as element 1 of its container."""
    return _message(1, _string(1, name) + _message(2, value))


# -- parameters, responses, operations -------------------------------------------------------------

_QUERY_FIELDS = {"required": 1, "in": 2, "description": 3, "name": 4, "type": 6, "format": 7,
                 "uniqueItems": 20}
_PATH_FIELDS = {"required": 1, "in": 2, "description": 3, "name": 4, "type": 5, "format": 6,
                "uniqueItems": 19}
_NON_BODY = {"query": (3, _QUERY_FIELDS, 23), "path": (4, _PATH_FIELDS, 22)}


def parameter(d: dict[str, Any]) -> bytes:
    """openapi.v2.ParametersItem {parameter = 1} holding a body or a query/path parameter."""
    if d["in"] == "body":
        _check(d, {"in", "name", "description", "required", "schema"}, "BodyParameter")
        body = (_string(1, d.get("description", "")) + _string(2, d["name"])
                + _string(3, "body") + _bool(4, d.get("required", False))
                + _message(5, schema(d["schema"])) + _extensions(6, d))
        return _message(1, _message(1, body))
    if d["in"] not in _NON_BODY:
        raise ValueError(f"parameters in {d['in']!r} have no protobuf encoding here")
    choice, numbers, ext = _NON_BODY[d["in"]]
    _check(d, set(numbers), "Parameter")
    sub = b""
    for key, number in numbers.items():
        value = d.get(key)
        sub += _bool(number, value) if isinstance(value, bool) else _string(number, value or "")
    sub += _extensions(ext, d)
    return _message(1, _message(2, _message(choice, sub)))


def _response(d: dict[str, Any]) -> bytes:
    """openapi.v2.ResponseValue {response = 1: Response {description = 1, schema = 2}}."""
    _check(d, {"description", "schema"}, "Response")
    out = _string(1, d.get("description", ""))
    if "schema" in d:
        out += _message(2, _message(1, schema(d["schema"])))     # SchemaItem {schema = 1}
    return _message(1, out + _extensions(5, d))


def operation(d: dict[str, Any]) -> bytes:
    """openapi.v2.Operation."""
    _check(d, {"tags", "summary", "description", "operationId", "produces", "consumes",
               "parameters", "responses"}, "Operation")
    out = (_strings(1, d.get("tags", [])) + _string(2, d.get("summary", ""))
           + _string(3, d.get("description", "")) + _string(5, d.get("operationId", ""))
           + _strings(6, d.get("produces", [])) + _strings(7, d.get("consumes", [])))
    out += b"".join(_message(8, parameter(p)) for p in d.get("parameters", []))
    responses = b"".join(_message(1, _string(1, code) + _message(2, _response(r)))
                         for code, r in sorted(d.get("responses", {}).items()))
    out += _message(9, responses)
    return out + _extensions(13, d)


_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def path_item(d: dict[str, Any]) -> bytes:
    """openapi.v2.PathItem."""
    _check(d, {*_METHODS, "parameters"}, "PathItem")
    out = b"".join(_message(number, operation(d[method]))
                   for method, number in _METHODS.items() if method in d)
    out += b"".join(_message(9, parameter(p)) for p in d.get("parameters", []))
    return out + _extensions(10, d)


# -- the document ----------------------------------------------------------------------------------

def _info(d: dict[str, Any]) -> bytes:
    _check(d, {"title", "version", "description"}, "Info")
    return (_string(1, d.get("title", "")) + _string(2, d.get("version", ""))
            + _string(3, d.get("description", "")) + _extensions(7, d))


def _container(items: dict[str, Any], encode: Callable[[Any], bytes], number: int = 1) -> bytes:
    return b"".join(_message(number, _string(1, k) + _message(2, encode(v)))
                    for k, v in sorted(items.items()))


def encode_document(doc: dict[str, Any]) -> bytes:
    """openapi.v2.Document of a swagger 2.0 document."""
    _check(doc, {"swagger", "info", "paths", "definitions", "consumes", "produces"}, "Document")
    out = _string(1, doc.get("swagger", ""))
    if "info" in doc:
        out += _message(2, _info(doc["info"]))
    out += _strings(6, doc.get("consumes", [])) + _strings(7, doc.get("produces", []))
    if "paths" in doc:
        paths = doc["paths"]
        out += _message(8, _extensions(1, paths) + _container(
            {k: v for k, v in paths.items() if not k.startswith("x-")}, path_item, 2))
    if "definitions" in doc:
        out += _message(9, _container(doc["definitions"], schema))
    return out + _extensions(16, doc)
