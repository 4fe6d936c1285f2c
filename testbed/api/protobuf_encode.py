"""Pure: objects (JSON-shaped dicts) into Kubernetes' protobuf encoding, the way back of
testbed/api/protobuf.py, whose docstring describes the format.

`encode` writes what gogo-protobuf writes for the Go object the dict stands for, byte for byte
(the bodies kubectl 1.37 sends re-encode to themselves): fields in number order, non-pointer
fields always (zero values included: an empty string, 0, an empty struct), nil pointers and
slices not at all, map keys sorted; Time without its nanoseconds, as upstream's ProtoTime().
A key the message does not have, or a value of the wrong type, is a ProtobufError, never
dropped. The API server answers in JSON; this serves tests and clients that need the bytes.
No I/O.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from testbed.api.protobuf import BYTES, EPOCH, MAGIC, VARINT, Envelope, ProtobufError, kind_message
from testbed.api.schema_proto import ProtoField, json_fields, message


def wrap(envelope: Envelope) -> bytes:
    """MAGIC and the runtime.Unknown of `envelope`, as upstream's serializer writes them."""
    type_meta = _len(1, envelope.api_version.encode()) + _len(2, envelope.kind.encode())
    return MAGIC + (_len(1, type_meta) + _len(2, envelope.raw)
                    + _len(3, envelope.content_encoding.encode())
                    + _len(4, envelope.content_type.encode()))


def encode(obj: dict) -> bytes:
    """`obj` (with apiVersion and kind) as a protobuf body; ProtobufError for a field the
    message does not have or a value of the wrong type."""
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    raw = encode_message(kind_message(api_version, kind), obj, top=True)
    return wrap(Envelope(api_version, kind, raw))


# -- the wire, written -------------------------------------------------------------------------

def _put_varint(value: int) -> bytes:
    value &= (1 << 64) - 1   # negative numbers as ten bytes, as Go's uint64(int32) does
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _put_varint(number << 3 | wire)


def _len(number: int, data: bytes) -> bytes:
    return _key(number, BYTES) + _put_varint(len(data)) + data


def encode_message(name: str, obj: Any, top: bool = False) -> bytes:
    """`obj` as message `name`, as gogo-protobuf writes the Go object it stands for."""
    if not isinstance(obj, dict):
        raise ProtobufError(f"{name.rpartition('.')[2]}: expected an object, got {obj!r:.60}")
    known = json_fields(name)
    for key in obj:
        if key not in known and not (top and key in ("apiVersion", "kind")):
            raise ProtobufError(f"{name.rpartition('.')[2]} has no field {key!r}")
    out = bytearray()
    for f in sorted(message(name).fields, key=lambda f: f.number):
        value = obj if f.inline else obj.get(f.json)
        if f.inline:
            out += _len(f.number, encode_message(f.type, {k: v for k, v in obj.items()
                                                         if k in json_fields(f.type)}))
        elif f.repeated:
            for item in value or ():
                out += _encode_value(f, item)
        elif f.map:
            for key in sorted(value or {}):
                entry = _len(1, str(key).encode()) + _encode_value(f, value[key], number=2)
                out += _len(f.number, entry)
        elif value is None and (f.pointer or f.type == "bytes"):
            continue   # a nil pointer or []byte is not written
        else:
            out += _encode_value(f, value)
    return bytes(out)


def _encode_value(f: ProtoField, value: Any, number: int | None = None) -> bytes:
    number = f.number if number is None else number
    typ = f.type
    try:
        if typ in ("int32", "int64"):
            if isinstance(value, bool) or not isinstance(value or 0, int):
                raise TypeError
            return _key(number, VARINT) + _put_varint(value or 0)
        if typ == "bool":
            if not isinstance(value or False, bool):
                raise TypeError
            return _key(number, VARINT) + _put_varint(1 if value else 0)
        if typ == "string":
            if not isinstance(value or "", str):
                raise TypeError
            return _len(number, (value or "").encode())
        if typ == "bytes":
            return _len(number, base64.b64decode(value or "", validate=True))
        return _len(number, _encode_special(typ, value))
    except (TypeError, ValueError) as err:
        if isinstance(err, ProtobufError):
            raise
        raise ProtobufError(f"field {f.json or typ}: {value!r:.60} is not a {typ}") from None


def _encode_special(typ: str, value: Any) -> bytes:
    if typ in ("time", "microtime"):
        if value is None:
            return b""
        when = datetime.fromisoformat(str(value))
        if when.tzinfo is None:
            raise ValueError("no time zone")
        delta = when - EPOCH
        seconds = delta.days * 86400 + delta.seconds
        nanos = delta.microseconds * 1000 if typ == "microtime" else 0   # as ProtoTime()
        return _key(1, VARINT) + _put_varint(seconds) + _key(2, VARINT) + _put_varint(nanos)
    if typ == "intorstring":
        value = 0 if value is None else value
        if isinstance(value, str):
            return (_key(1, VARINT) + _put_varint(1) + _key(2, VARINT) + _put_varint(0)
                    + _len(3, value.encode()))
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError
        return (_key(1, VARINT) + _put_varint(0) + _key(2, VARINT) + _put_varint(value)
                + _len(3, b""))
    if typ == "quantity":
        if value is None:
            value = "0"
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise TypeError
        return _len(1, str(value).encode())
    if typ in ("fieldsv1", "rawextension"):
        if value is None:
            return b""
        return _len(1, json.dumps(value, separators=(",", ":")).encode())
    return encode_message(typ, value if value is not None else {})
