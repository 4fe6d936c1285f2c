"""Pure: request bodies in Kubernetes' protobuf encoding (application/vnd.kubernetes.protobuf)
read into the JSON-shaped dicts the rest of the API layer works with.

A body is the magic b"k8s\\x00" and a runtime.Unknown message (k8s.io/apimachinery
pkg/runtime/generated.proto: typeMeta{apiVersion 1, kind 2} 1, raw 2, contentEncoding 3,
contentType 4) whose raw is the object's own message, numbered as upstream's generated.proto
numbers it (the tables of testbed/api/schema_proto.py). `decode` gives the dict Go's
encoding/json would write for the object the bytes decode to in Go (upstream's API server
decodes into Go structs): absent or zero fields with omitempty are left out, other zero fields
written (null for nil pointers, slices and maps without omitempty, {} for structs), Time and
MicroTime as RFC 3339 strings, IntOrString as an int or a string, Quantity as its string,
FieldsV1 and RawExtension as the JSON they hold. The dict then goes through the same
validation and defaulting as a JSON body.

A field number a message does not have is not dropped, as gogo-protobuf would drop it: it
becomes the key "(protobuf field N)" in the dict, so that fieldValidation reports (Warn),
refuses (Strict) or drops (Ignore) it as it does an unknown JSON field (api/fieldvalidation.py).
Inside a type the schema keeps free-form (Affinity, SecurityContext, ...) such a key is kept
as a JSON client's unknown key would be.

The way back, dict to bytes, is testbed/api/protobuf_encode.py. No I/O.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from testbed.api.schema import definitions
from testbed.api.schema_proto import ProtoField, message

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
MAX_DEPTH = 100   # nesting of messages; deeper bodies are refused, not recursed into
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5   # wire types


class ProtobufError(ValueError):
    """Bytes that are not a well-formed message of the kind they name (the API server's 400)."""


def unknown_key(number: int) -> str:
    """The dict key an unknown field number is kept under (see the module docstring)."""
    return f"(protobuf field {number})"


@dataclass(frozen=True)
class Envelope:
    api_version: str
    kind: str
    raw: bytes
    content_encoding: str = ""
    content_type: str = ""


# -- the wire ------------------------------------------------------------------------------------

def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("unexpected end of data in a varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("a varint longer than 10 bytes")


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(number, wire type, value) of every field of one message, in order."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("illegal field number 0")
        value: int | bytes
        if wire == VARINT:
            value, pos = _varint(data, pos)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if pos + size > len(data):
                raise ProtobufError("unexpected end of data in a fixed-size field")
            value, pos = int.from_bytes(data[pos:pos + size], "little"), pos + size
        elif wire == BYTES:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError(f"field {number}: length {size} runs past the end")
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ProtobufError(f"field {number}: unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProtobufError(f"{what}: invalid UTF-8 at byte {err.start}") from None


# -- the envelope --------------------------------------------------------------------------------

def unwrap(body: bytes) -> Envelope:
    """The runtime.Unknown of a protobuf body; ProtobufError without the magic or when malformed
    (unknown envelope fields are skipped, as upstream's Unknown.Unmarshal skips them)."""
    if not body.startswith(MAGIC):
        raise ProtobufError(f"provided data does not appear to be a protobuf message, expected "
                            f"prefix {list(MAGIC)}")
    if len(body) == len(MAGIC):
        raise ProtobufError("empty body")
    strings = {3: "", 4: ""}
    type_meta, raw = b"", b""
    for number, wire, value in _fields(body[len(MAGIC):]):
        if number in (1, 2, 3, 4) and wire != BYTES:
            raise ProtobufError(f"Unknown field {number}: wrong wire type {wire}")
        if number == 1:
            type_meta += value  # type: ignore[operator]
        elif number == 2:
            raw = value  # type: ignore[assignment]
        elif number in strings:
            strings[number] = _text(value, "Unknown")  # type: ignore[arg-type]
    meta = {1: "", 2: ""}
    for number, wire, value in _fields(type_meta):
        if number in meta:
            if wire != BYTES:
                raise ProtobufError(f"TypeMeta field {number}: wrong wire type {wire}")
            meta[number] = _text(value, "TypeMeta")  # type: ignore[arg-type]
    return Envelope(meta[1], meta[2], raw, strings[3], strings[4])


@cache
def _kinds() -> dict[tuple[str, str], str]:
    """(apiVersion, kind) -> the definition name of every kind the schema serves. Option kinds
    registered in every group (DeleteOptions) are also read under meta.k8s.io/v1."""
    out: dict[tuple[str, str], str] = {}
    for t in definitions().values():
        for group, version, kind in filter(None, (t.gvk, *t.extra_gvks)):
            out[(f"{group}/{version}" if group else version, kind)] = t.name
            if t.extra_gvks:
                out[("meta.k8s.io/v1", kind)] = t.name
    return out


def kind_message(api_version: str, kind: str) -> str:
    """The definition name of the message of `kind` in `api_version`; ProtobufError if the
    server does not serve it."""
    name = _kinds().get((api_version, kind))
    if name is None:
        if not kind:
            raise ProtobufError("Object 'Kind' is missing in the protobuf envelope")
        raise ProtobufError(f'no kind "{kind}" is registered for version "{api_version}"')
    return name


def decode(body: bytes, depth: int = 0) -> dict:
    """A protobuf request body (MAGIC + runtime.Unknown) as the JSON-shaped object."""
    env = unwrap(body)
    if env.content_encoding:
        raise ProtobufError(f"unsupported contentEncoding {env.content_encoding!r}")
    name = kind_message(env.api_version, env.kind)
    return {"kind": env.kind, "apiVersion": env.api_version,
            **decode_message(name, env.raw, depth)}


# -- decoding ------------------------------------------------------------------------------------

def decode_message(name: str, data: bytes, depth: int = 0) -> dict:
    """Message `name` ("io.k8s.api.core.v1.PodSpec") as Go's JSON would write it."""
    if depth > MAX_DEPTH:
        raise ProtobufError(f"messages nested deeper than {MAX_DEPTH}")
    msg = message(name)
    by_number = msg.by_number
    seen: dict[int, list[tuple[int, int | bytes]]] = {}
    unknown: list[int] = []
    for number, wire, value in _fields(data):
        f = by_number.get(number)
        if f is None:
            if number not in unknown:
                unknown.append(number)
            continue
        _check_wire(name, f, wire)
        seen.setdefault(number, []).append((wire, value))
    out: dict[str, Any] = {}
    for f in msg.fields:
        occurrences = seen.get(f.number)
        if f.inline:
            out.update(decode_message(f.type, _joined(occurrences), depth + 1))
        elif f.repeated or f.map:
            if occurrences:
                out[f.json] = (_map(f, occurrences, depth) if f.map
                               else _list(f, occurrences, depth))
            elif not f.omitempty:
                out[f.json] = None   # a nil slice or map
        elif occurrences is None and (f.pointer or f.type == "bytes"):
            if not f.omitempty:
                out[f.json] = None   # a nil pointer or []byte
        else:
            value = _single(f, occurrences, depth)
            if not _omitted(f, value):
                out[f.json] = value
    for number in unknown:
        out[unknown_key(number)] = None
    return out


def _check_wire(name: str, f: ProtoField, wire: int) -> None:
    numeric = f.type in ("int32", "int64", "bool")
    if wire == (VARINT if numeric else BYTES) or (numeric and f.repeated and wire == BYTES):
        return
    raise ProtobufError(f"{name.rpartition('.')[2]}.{f.json or f.type.rpartition('.')[2]}: "
                        f"wrong wire type {wire} for field {f.number}")


def _joined(occurrences: list[tuple[int, int | bytes]] | None) -> bytes:
    """A message field seen more than once is the merge of all: their concatenation."""
    return b"".join(v for _, v in occurrences or ())  # type: ignore[misc]


def _single(f: ProtoField, occurrences: list | None, depth: int) -> Any:
    if f.type in ("int32", "int64", "bool"):
        return _scalar(f.type, occurrences[-1][1] if occurrences else 0)
    if f.type in ("string", "bytes"):
        return _scalar(f.type, occurrences[-1][1] if occurrences else b"", f.json)
    return _value(f.type, _joined(occurrences), depth)


def _scalar(typ: str, value: int | bytes, what: str = "") -> Any:
    if typ == "int32":
        return _signed(value, 32)  # type: ignore[arg-type]
    if typ == "int64":
        return _signed(value, 64)  # type: ignore[arg-type]
    if typ == "bool":
        return value != 0
    if typ == "bytes":
        return base64.b64encode(value).decode()  # type: ignore[arg-type]
    return _text(value, what)  # type: ignore[arg-type]


def _list(f: ProtoField, occurrences: list, depth: int) -> list:
    out: list = []
    for wire, value in occurrences:
        if f.type in ("int32", "int64", "bool") and wire == BYTES:   # packed
            pos = 0
            while pos < len(value):
                item, pos = _varint(value, pos)
                out.append(_scalar(f.type, item))
        elif f.type in ("int32", "int64", "bool", "string", "bytes"):
            out.append(_scalar(f.type, value, f.json))
        else:
            out.append(_value(f.type, value, depth))
    return out


def _map(f: ProtoField, occurrences: list, depth: int) -> dict:
    out: dict[str, Any] = {}
    for _, entry in occurrences:
        key, value = "", None
        for number, wire, item in _fields(entry):
            if number == 1 and wire == BYTES:
                key = _text(item, f.json)  # type: ignore[arg-type]
            elif number == 2:
                value = (wire, item)
        if f.type in ("int32", "int64", "bool", "string", "bytes"):
            zero: int | bytes = 0 if f.type in ("int32", "int64", "bool") else b""
            out[key] = _scalar(f.type, value[1] if value else zero, f.json)
        else:
            out[key] = _value(f.type, value[1] if value else b"", depth)  # type: ignore[arg-type]
    return out


def _value(typ: str, data: bytes, depth: int) -> Any:
    """A message-typed value: a special JSON form or a nested message."""
    if typ in ("time", "microtime"):
        return _time(data, micro=typ == "microtime")
    if typ == "intorstring":
        parts = _parts(data, typ)
        kind = _signed(parts.get(1, 0), 64)  # type: ignore[arg-type]
        if kind == 1:
            return _text(parts.get(3, b""), typ)  # type: ignore[arg-type]
        if kind != 0:
            raise ProtobufError(f"impossible IntOrString.Type {kind}")
        return _signed(parts.get(2, 0), 32)  # type: ignore[arg-type]
    if typ == "quantity":
        return _text(_parts(data, typ).get(1, b""), typ) or "0"  # type: ignore[arg-type]
    if typ in ("fieldsv1", "rawextension"):
        raw = _parts(data, typ).get(1)
        if not raw:
            return None
        if typ == "rawextension" and raw.startswith(MAGIC):  # type: ignore[union-attr]
            return decode(raw, depth + 1)  # type: ignore[arg-type]
        try:
            return json.loads(raw)  # type: ignore[arg-type]
        except (ValueError, RecursionError) as err:
            raise ProtobufError(f"{typ}: the raw bytes are not JSON: {err}") from None
    return decode_message(typ, data, depth + 1)


def _parts(data: bytes, typ: str) -> dict[int, int | bytes]:
    """The fields of a fixed-shape message (Time, IntOrString, ...): last one wins; an unknown
    number or wrong wire type is an error there, having no JSON field to report it under."""
    shapes = {"time": (0, 0), "microtime": (0, 0), "intorstring": (0, 0, 2),
              "quantity": (2,), "fieldsv1": (2,), "rawextension": (2,)}[typ]
    out: dict[int, int | bytes] = {}
    for number, wire, value in _fields(data):
        if not 1 <= number <= len(shapes) or shapes[number - 1] != wire:
            raise ProtobufError(f"{typ}: unexpected field {number} (wire type {wire})")
        out[number] = value
    return out


def _time(data: bytes, micro: bool) -> str | None:
    """Time and MicroTime as their JSON: null when zero (no bytes), else RFC 3339 in UTC; Time
    drops the nanoseconds as upstream's Time.Unmarshal does, MicroTime keeps microseconds."""
    if not data:
        return None
    parts = _parts(data, "microtime" if micro else "time")
    seconds = _signed(parts.get(1, 0), 64)  # type: ignore[arg-type]
    nanos = _signed(parts.get(2, 0), 32) if micro else 0  # type: ignore[arg-type]
    try:
        when = EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise ProtobufError(f"time {seconds}s is out of range") from None
    if micro:
        return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _omitted(f: ProtoField, value: Any) -> bool:
    """Whether Go's JSON leaves a present (or non-pointer) field out: omitempty on a zero
    scalar (not on a struct, which Go's omitempty never omits), omitzero on a zero value."""
    if f.omitzero and value in (None, {}, 0, "", False):
        return True
    if not f.omitempty or f.pointer:
        return False
    return f.type in ("int32", "int64", "bool", "string", "bytes") and not value


def failure_message(body: bytes, err: ProtobufError) -> str:
    """The 400 answer to a body that does not decode, worded as upstream's handlers word it
    (transformDecodeError)."""
    try:
        env = unwrap(body)
    except ProtobufError:
        env = Envelope("", "", b"")
    if env.kind:
        version = env.api_version.rpartition("/")[2]
        return f'{env.kind} in version "{version}" cannot be handled as a {env.kind}: {err}'
    return f"the object provided is unrecognized: {err}"
