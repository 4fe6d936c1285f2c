"""Pure: the PATCH request's body, of each patch type, applied to an object.

Content types, as the API server accepts them (anything else is 415 UnsupportedMediaType):

    application/json-patch+json             RFC 6902 operations        (json_patch)
    application/merge-patch+json            RFC 7386 merge patch       (merge_patch)
    application/strategic-merge-patch+json  Kubernetes' strategic merge (testbed/api/strategic.py)
    application/apply-patch+yaml            server-side apply, YAML or JSON (testbed/api/
                                            managedfields.py merges it; here it is only decoded)

Errors are PatchError carrying upstream's code, reason and wording (pkg/endpoints/handlers/
patch.go): 400 for a body that does not parse, 422 for a JSON patch that does not apply, 413
beyond 10,000 operations, 422 for invalid PatchOptions (force on a non-apply patch, apply
without a fieldManager). Results have their null fields dropped, as decoding into the typed
object drops them upstream. No I/O.

The JSON patch is written here rather than taken from PyPI's jsonpatch: it is small, and
upstream's evanphx/json-patch v4 semantics (missing keys on replace and remove are errors, test
of a missing path against null succeeds, negative indices) are easier to keep exactly.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from testbed.api.shapes import Shape
from testbed.api.strategic import StrategicError, strategic_merge
from testbed.api.typed import json_equal
from testbed.spec.yamlload import LoadError, load_value

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)  # installer's order
MAX_JSON_PATCH_OPERATIONS = 10000
FIELD_MANAGER_MAX_LENGTH = 128
GENERIC_UNPROCESSABLE = "the server rejected our request due to an error in our request"


class PatchError(Exception):
    """A refused patch: the HTTP code, the Status reason and message, and causes."""

    def __init__(self, code: int, reason: str, message: str, causes: list[dict] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.causes = code, reason, message, causes or []


def bad_request(message: str) -> PatchError:
    return PatchError(400, "BadRequest", message)


def unprocessable() -> PatchError:
    """upstream's NewGenericServerResponse(422, ...): the detail stays on the server."""
    return PatchError(422, "Invalid", GENERIC_UNPROCESSABLE)


def patch_type(content_type: str) -> str:
    """The patch type of a Content-Type header ("; charset=..." ignored), or 415."""
    ptype = content_type.split(";", 1)[0] if ";" in content_type[1:] else content_type
    if ptype not in PATCH_TYPES:
        raise PatchError(415, "UnsupportedMediaType", "the body of the request was in an "
                         "unknown format - accepted media types include: " + ", ".join(PATCH_TYPES))
    return ptype


def check_options(ptype: str, field_manager: str, force: bool | None) -> None:
    """upstream's ValidatePatchOptions: 422 naming every problem."""
    problems: list[tuple[str, str, str]] = []  # (cause reason, field, message)
    if ptype == APPLY_PATCH:
        if not field_manager:
            problems.append(("FieldValueRequired", "fieldManager",
                             "Required value: is required for apply patch"))
    elif force is not None:
        problems.append(("FieldValueForbidden", "force",
                         "Forbidden: may not be specified for non-apply patch"))
    if len(field_manager) > FIELD_MANAGER_MAX_LENGTH:
        problems.append(("FieldValueTooLong", "fieldManager", "Too long: may not be more than "
                         f"{FIELD_MANAGER_MAX_LENGTH} bytes"))
    for i, ch in enumerate(field_manager):
        if not ch.isprintable():
            problems.append(("FieldValueInvalid", "fieldManager",
                             f"Invalid value: {json.dumps(field_manager)}: invalid character "
                             f"U+{ord(ch):04X} (at position {i})"))
    if problems:
        texts = [f"{f}: {m}" for _, f, m in problems]
        joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
        raise PatchError(422, "Invalid", f'PatchOptions.meta.k8s.io "" is invalid: {joined}',
                         [{"reason": r, "message": m, "field": f} for r, f, m in problems])


def decode(body: bytes, ptype: str) -> Any:
    """The patch document of the body (validateAndTranscodePatch, then the type's decoding)."""
    text = body.decode("utf-8", errors="replace")
    if ptype == APPLY_PATCH:
        try:  # the testbed's one YAML reader: timestamps stay strings, no alias bombs
            doc = load_value(text)
        except LoadError as err:
            raise bad_request(f"error encoding patch: yaml: line {err.line}: {err.message}") \
                from None
        if not isinstance(doc, dict):
            raise bad_request("error decoding patch: json: cannot unmarshal "
                              f"{_json_kind(doc)} into Go value of type map[string]interface {{}}")
        return doc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise bad_request("invalid JSON patch") from err
    if ptype == JSON_PATCH:
        if not isinstance(doc, list):
            raise bad_request(f"json: cannot unmarshal {_json_kind(doc)} into Go value of type "
                              "jsonpatch.Patch")
        if len(doc) > MAX_JSON_PATCH_OPERATIONS:
            raise PatchError(413, "RequestEntityTooLarge", "The allowed maximum operations in a "
                             f"JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {len(doc)}")
        for op in doc:
            if not isinstance(op, dict):
                raise bad_request(f"json: cannot unmarshal {_json_kind(op)} into Go value of "
                                  "type jsonpatch.Operation")
    elif ptype == STRATEGIC_MERGE_PATCH and not isinstance(doc, dict):
        raise bad_request(f"json: cannot unmarshal {_json_kind(doc)} into Go value of type "
                          "map[string]interface {}")
    elif ptype == MERGE_PATCH and not isinstance(doc, (dict, list)):
        raise bad_request("Invalid JSON Patch")
    return doc


def _json_kind(doc: Any) -> str:
    if isinstance(doc, list):
        return "array"
    if isinstance(doc, bool):
        return "bool"
    if isinstance(doc, (int, float)):
        return "number"
    return "string" if isinstance(doc, str) else "object" if isinstance(doc, dict) else "null"


def apply_patch(current: dict, doc: Any, ptype: str, shape: Shape) -> dict:
    """A JSON, merge or strategic merge patch (decoded) applied to a copy of `current`."""
    obj = copy.deepcopy(current)
    if ptype == JSON_PATCH:
        out = json_patch(obj, doc)
    elif ptype == MERGE_PATCH:
        out = merge_patch(obj, copy.deepcopy(doc))
    elif ptype == STRATEGIC_MERGE_PATCH:
        try:
            out = strategic_merge(obj, copy.deepcopy(doc), shape)
        except StrategicError as err:
            if err.code == 422:
                raise unprocessable() from err
            raise PatchError(err.code, "BadRequest" if err.code == 400 else "", str(err)) \
                from err
    else:
        raise PatchError(500, "InternalError", f"{ptype}: unimplemented patch type")
    if not isinstance(out, dict):
        raise PatchError(422, "Invalid", f'"" is invalid: patch: Invalid value: '
                         f'{json.dumps(json.dumps(out))}: cannot restore struct from: '
                         f"{_json_kind(out)}")
    return prune_nulls(out)


def prune_nulls(value: Any) -> Any:
    """Null fields dropped, at every depth (decoding into typed objects drops them)."""
    if isinstance(value, dict):
        return {k: prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune_nulls(v) for v in value]
    return value


# -- RFC 7386 ------------------------------------------------------------------------------------

def merge_patch(doc: Any, patch: Any) -> Any:
    """evanphx/json-patch's MergePatch: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return _prune_patch_nulls(patch)
    if not isinstance(doc, dict):
        return _prune_patch_nulls(patch)
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
        elif isinstance(doc.get(key), dict) and isinstance(value, dict):
            doc[key] = merge_patch(doc[key], value)
        else:
            doc[key] = _prune_patch_nulls(value)
    return doc


def _prune_patch_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune_patch_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_patch_nulls(v) for v in value]
    return value


# -- RFC 6902 ------------------------------------------------------------------------------------

class JsonPatchError(ValueError):
    pass


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise JsonPatchError(f"invalid path: {path!r}")
    if path == "":
        raise JsonPatchError("the whole document cannot be patched")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list):
            node = node[_list_index(node, part, len(node) - 1)]
        else:
            raise JsonPatchError(f"doc is missing path: {part}")
    if not isinstance(node, (dict, list)):
        raise JsonPatchError("the parent of the path is not an object or a list")
    return node


def _list_index(items: list, part: str, last: int) -> int:
    try:
        i = int(part)
    except ValueError:
        raise JsonPatchError(f"invalid array index: {part}") from None
    if i < 0:
        i += len(items)
    if i < 0 or i > last:
        raise JsonPatchError(f"Unable to access invalid index: {part}")
    return i


def _get(doc: Any, parts: list[str]) -> Any:
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise JsonPatchError(f"missing value: {last}")
        return parent[last]
    return parent[_list_index(parent, last, len(parent) - 1)]


def _add(doc: Any, parts: list[str], value: Any) -> None:
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif last == "-":
        parent.append(value)
    else:
        parent.insert(_list_index(parent, last, len(parent)), value)


def _remove(doc: Any, parts: list[str]) -> Any:
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise JsonPatchError(f"Unable to remove nonexistent key: {last}: missing value")
        return parent.pop(last)
    return parent.pop(_list_index(parent, last, len(parent) - 1))


def json_patch(doc: Any, operations: list[dict]) -> Any:
    """Apply RFC 6902 operations in order; unprocessable() when one does not apply."""
    try:
        for op in operations:
            kind = op.get("op")
            parts = _pointer(op.get("path"))
            if kind == "add":
                _add(doc, parts, copy.deepcopy(op.get("value")))
            elif kind == "remove":
                _remove(doc, parts)
            elif kind == "replace":
                _replace(doc, parts, copy.deepcopy(op.get("value")))
            elif kind in ("move", "copy"):
                source = _pointer(op.get("from"))
                value = _remove(doc, source) if kind == "move" else copy.deepcopy(_get(doc,
                                                                                       source))
                _add(doc, parts, value)
            elif kind == "test":
                _test(doc, parts, op.get("value"))
            else:
                raise JsonPatchError(f"Unexpected kind: {kind or 'unknown'}")
    except JsonPatchError as err:
        raise unprocessable() from err
    return doc


def _replace(doc: Any, parts: list[str], value: Any) -> None:
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise JsonPatchError("replace operation does not apply: doc is missing key")
        parent[last] = value
    else:
        parent[_list_index(parent, last, len(parent) - 1)] = value


def _test(doc: Any, parts: list[str], want: Any) -> None:
    parent = _parent(doc, parts)
    if isinstance(parent, dict) and parts[-1] not in parent:
        if want is None:
            return
        raise JsonPatchError(f"Testing value {parts} failed")
    if not json_equal(_get(doc, parts), want):
        raise JsonPatchError(f"Testing value {parts} failed")


def force_option(values: list[str] | None) -> bool | None:
    """PatchOptions.force from the query (?force=true): None when absent, 400 when not a
    boolean, as the parameter codec refuses it."""
    if not values:
        return None
    text = values[-1].strip().lower()
    if text in ("true", "1", "t"):
        return True
    if text in ("false", "0", "f", ""):
        return False
    raise bad_request(f'strconv.ParseBool: parsing "{values[-1]}": invalid syntax')
