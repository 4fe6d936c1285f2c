"""Pure: strategic merge patch, applied as the API server applies it.

A port of upstream's apimachinery pkg/util/strategicpatch (patch.go: mergeMap, mergeSlice and
their helpers, with MergeParallelList and IgnoreUnmatchedNulls set as StrategicMergeMapPatch
sets them). Maps merge key by key and null deletes a key; a list merges only when its field's
patch strategy is "merge" (items matched by the patch merge key, or scalars deduplicated),
otherwise the patch's list replaces it. Directives:

* `$patch: replace` (a map or list item replaces instead of merging), `$patch: delete`
  (a map becomes empty; a list item is deleted by its merge key), `$patch: merge`
* `$retainKeys: [...]`            keys of the map not listed are cleared
* `$deleteFromPrimitiveList/<f>`  scalars to delete from list f
* `$setElementOrder/<f>`          the order of list f's items after the merge

Field metadata comes from a Shape (testbed/api/shapes.py). Errors are StrategicError with
upstream's wording and the HTTP code the API server answers them with (400 for malformed
directives, 422 for lists of lists, 500 for the rest, as interpretStrategicMergePatchError).
No I/O.
"""

from __future__ import annotations

from functools import cmp_to_key
from typing import Any

from testbed.api.shapes import UNTYPED, Shape

DIRECTIVE = "$patch"
DELETE, REPLACE, MERGE = "delete", "replace", "merge"
RETAIN_KEYS = "$retainKeys"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"
SET_ELEMENT_ORDER = "$setElementOrder"

ERR_BAD_JSON_DOC = "invalid JSON document"
ERR_NO_LIST_OF_LISTS = "lists of lists are not supported"
ERR_BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"
ERR_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_BAD_SET_ELEMENT_ORDER = "invalid patch format of setElementOrder list"
ERR_NOT_MATCH_RETAIN_KEYS = "patch content doesn't match retainKeys list"

_BAD_REQUEST = {ERR_BAD_JSON_DOC, ERR_BAD_PRIMITIVE_LIST, ERR_BAD_RETAIN_KEYS,
                ERR_BAD_SET_ELEMENT_ORDER}
_UNPROCESSABLE = {ERR_NO_LIST_OF_LISTS, ERR_NOT_MATCH_RETAIN_KEYS}


class StrategicError(ValueError):
    @property
    def code(self) -> int:
        text = str(self)
        return 400 if text in _BAD_REQUEST else 422 if text in _UNPROCESSABLE else 500


def _go(value: Any) -> str:
    """A value as Go's %v prints it, for upstream's error texts."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _no_merge_key(m: dict, key: str) -> StrategicError:
    return StrategicError(f"map: {_go(m)} does not contain declared merge key: {key}")


def _same(a: Any, b: Any) -> bool:
    """Go's == on decoded JSON scalars: same type and value."""
    return type(a) is type(b) and a == b


def _kind(value: Any) -> str:
    return "map" if isinstance(value, dict) else "slice" if isinstance(value, list) \
        else type(value).__name__


# -- field metadata --------------------------------------------------------------------------------

def _lookup(shape: Shape, key: str) -> tuple[Shape, list[str], str]:
    """(sub-shape, patch strategies, merge key) of field `key`; lenient for unknown fields."""
    if shape.kind == "struct":
        f = shape.declared(key)
        if f is not None:
            strategies = f.patch_strategy.split(",") if f.patch_strategy else []
            return shape.child(key), strategies, f.patch_merge_key or ""
        return UNTYPED, [], ""
    if shape.kind == "map" and shape.item is not None:
        return shape.item, [], ""
    return UNTYPED, [], ""


def _lookup_slice(shape: Shape, key: str) -> tuple[Shape, list[str], str]:
    sub, strategies, merge_key = _lookup(shape, key)
    # a list's items; a struct field patched as a list stands for its own items (Go's lookup
    # through a pointer to a struct)
    item = sub.element() if sub.kind == "list" else sub if sub.kind == "struct" else UNTYPED
    return item, strategies, merge_key


def _strategy(strategies: list[str]) -> str:
    """The strategy besides retainKeys (upstream's extractRetainKeysPatchStrategy)."""
    if len(strategies) == 0:
        return ""
    if len(strategies) == 1:
        return "" if strategies[0] == "retainKeys" else strategies[0]
    if len(strategies) == 2 and "retainKeys" in strategies:
        return strategies[1] if strategies[0] == "retainKeys" else strategies[0]
    raise StrategicError(f"unexpected patch strategy: {_go(strategies)}")


# -- entry point -----------------------------------------------------------------------------------

def strategic_merge(original: dict, patch: Any, shape: Shape) -> dict:
    """`patch` applied to `original` (both are changed: pass copies)."""
    if not isinstance(patch, dict):
        raise StrategicError(ERR_BAD_JSON_DOC)
    return merge_map(original, patch, shape)


def merge_map(original: dict | None, patch: dict, shape: Shape) -> dict:
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        if directive == REPLACE:
            del patch[DIRECTIVE]
            return patch
        if directive == DELETE:
            return {}
        raise StrategicError(f"unknown patch type: {_go(directive)} in map: {_go(patch)}")
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _merge_ordered_lists(original, patch, shape)
    for key in list(patch):
        value = patch[key]
        delete_list = False
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            key = _extract_key(key, DELETE_FROM_PRIMITIVE_LIST)
            delete_list = True
        if value is None:
            original.pop(key, None)
            continue
        if key not in original or type(original[key]) is not type(value):
            if not delete_list:
                _discard_nulls(value)
                kept, keep = remove_directives(value)
                if keep:
                    original[key] = kept
                else:
                    original.pop(key, None)
            continue
        if isinstance(value, dict):
            sub, strategies, _ = _lookup(shape, key)
            original[key] = value if _strategy(strategies) == REPLACE \
                else merge_map(original[key], value, sub)
        elif isinstance(value, list):
            sub, strategies, merge_key = _lookup_slice(shape, key)
            if _strategy(strategies) == MERGE or delete_list:
                original[key] = merge_slice(original[key], value, sub, merge_key, delete_list)
            else:
                original[key] = value
        else:
            kept, keep = remove_directives(value)
            if keep:
                original[key] = kept
            else:
                original.pop(key, None)
    return original


def _extract_key(key: str, prefix: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        raise StrategicError(ERR_BAD_PRIMITIVE_LIST if prefix == DELETE_FROM_PRIMITIVE_LIST
                             else ERR_BAD_SET_ELEMENT_ORDER)
    return rest


def _discard_nulls(value: Any) -> None:
    if isinstance(value, dict):
        for k in [k for k, v in value.items() if v is None]:
            del value[k]
        for v in value.values():
            _discard_nulls(v)
    elif isinstance(value, list):
        for v in value:
            _discard_nulls(v)


def remove_directives(value: Any) -> tuple[Any, bool]:
    """The value without directives, and whether it is kept at all (a directive map is not)."""
    if isinstance(value, dict):
        if DIRECTIVE in value:
            return None, False
        for k in list(value):
            kept, keep = remove_directives(value[k])
            if keep:
                value[k] = kept
            else:
                del value[k]
        return value, True
    if isinstance(value, list):
        out = []
        for v in value:
            kept, keep = remove_directives(v)
            if keep:
                out.append(kept)
        return out, True
    return value, True


def _apply_retain_keys(original: dict, patch: dict) -> None:
    if RETAIN_KEYS not in patch:
        return
    retain = patch.pop(RETAIN_KEYS)
    if not isinstance(retain, list):
        raise StrategicError(ERR_BAD_RETAIN_KEYS)
    for k, v in patch.items():
        if v is None or k.startswith(DELETE_FROM_PRIMITIVE_LIST) \
                or k.startswith(SET_ELEMENT_ORDER):
            continue
        if k not in retain:
            raise StrategicError(ERR_BAD_RETAIN_KEYS)
    for k in [k for k in original if k not in retain]:
        del original[k]


# -- lists -----------------------------------------------------------------------------------------

def _element_kind(*lists: list) -> str:
    """"map" or "scalar": every item of every list must be of one type, and not a list."""
    first: type | None = None
    for items in lists:
        for v in items:
            if first is None:
                first = type(v)
                if first is list:
                    raise StrategicError(ERR_NO_LIST_OF_LISTS)
            elif type(v) is not first:
                raise StrategicError("list element types are not identical: "
                                     + _go(list(lists)))
    if first is None:
        raise StrategicError("no elements in any of the given slices")
    return "map" if first is dict else "scalar"


def merge_slice(original: Any, patch: Any, shape: Shape, merge_key: str,
                delete_list: bool) -> list:
    if not isinstance(original, list) or not isinstance(patch, list):
        raise StrategicError(f"expected a slice, but received a {_kind(patch)}")
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    if kind != "map":
        if delete_list:
            return [v for v in original if not any(_same(v, d) for d in patch)]
        merged = _dedupe(original + patch)
    else:
        if not merge_key:
            raise StrategicError(f"cannot merge lists without merge key for {shape.kind}")
        items, patch = _merge_special(_GoSlice(original), patch, merge_key)
        original = items.view()
        merged = _merge_without_special(items, patch, merge_key, shape)
    if not merge_key:
        in_patch, server_only = _partition_scalars(merged, patch)
    else:
        in_patch, server_only = _partition_maps(merged, patch, merge_key)
    return _normalize_order(in_patch, server_only, patch, original, merge_key, kind)


class _GoSlice:
    """A list worked on the way upstream's Go code works on a slice of the original list:
    deletions shift items within the caller's list and appends fill the places they freed,
    so the caller, which goes on using its list as the server's order ($setElementOrder),
    sees what upstream sees (an object decoded from the store has no spare capacity)."""

    def __init__(self, backing: list):
        self.array, self.length = backing, len(backing)

    def view(self) -> list:
        return self.array[:self.length]

    def delete(self, i: int) -> None:
        self.array[i:self.length - 1] = self.array[i + 1:self.length]
        self.length -= 1

    def append(self, value: Any) -> None:
        if self.length < len(self.array):
            self.array[self.length] = value
        else:
            self.array = self.array[:self.length] + [value]  # a new array: no longer shared
        self.length += 1


def _dedupe(items: list) -> list:
    """upstream's deduplicateScalars, order effects included."""
    s = list(items)
    length = len(s) - 1
    i = 0
    while i < length:
        j = i + 1
        while j <= length:
            if _same(s[i], s[j]):
                s[j] = s[length]
                s = s[:length]
                length -= 1
                j -= 1
            j += 1
        i += 1
    return s


def _merge_special(original: _GoSlice, patch: list,
                   merge_key: str) -> tuple[_GoSlice, list]:
    plain: list = []
    replace = False
    for v in patch:
        if DIRECTIVE not in v:
            plain.append(v)
            continue
        directive = v[DIRECTIVE]
        if directive == DELETE:
            if merge_key not in v:
                raise _no_merge_key(v, merge_key)
            while (i := _find(original.view(), merge_key, v[merge_key])) >= 0:
                original.delete(i)
        elif directive == REPLACE:
            replace = True
        elif directive == MERGE:
            raise StrategicError("merging lists cannot yet be specified in the patch")
        else:
            raise StrategicError(f"unknown patch type: {_go(directive)} in map: {_go(v)}")
    if replace:
        return _GoSlice(plain), []
    return original, plain


def _find(items: list, merge_key: str, value: Any) -> int:
    for i, v in enumerate(items):
        if not isinstance(v, dict):
            raise StrategicError(f"value for key {i} is not a map")
        if merge_key in v and _same(v[merge_key], value):
            return i
    return -1


def _merge_without_special(original: _GoSlice, patch: list, merge_key: str,
                           shape: Shape) -> list:
    for v in patch:
        if merge_key not in v:
            raise _no_merge_key(v, merge_key)
        i = _find(original.view(), merge_key, v[merge_key])
        if i >= 0:
            original.array[i] = merge_map(original.array[i], v, shape)
        else:
            original.append(v)
    return original.view()


def _partition_scalars(items: list, by: list) -> tuple[list, list]:
    inside = [v for v in items if any(_same(v, b) for b in by)]
    return inside, [v for v in items if not any(_same(v, b) for b in by)]


def _partition_maps(items: list, by: list, merge_key: str) -> tuple[list, list]:
    inside, outside = [], []
    for v in items:
        if not isinstance(v, dict):
            raise StrategicError(f"expected a map, but received a {_kind(v)}")
        if merge_key not in v:
            raise _no_merge_key(v, merge_key)
        (inside if _find(by, merge_key, v[merge_key]) >= 0 else outside).append(v)
    return inside, outside


def _index(items: list, value: Any, merge_key: str, kind: str) -> int:
    def key_of(v: Any) -> Any:
        return v.get(merge_key) if kind == "map" and isinstance(v, dict) else \
            (None if kind == "map" else v)

    want = key_of(value)
    for i, v in enumerate(items):
        if _same(key_of(v), want):
            return i
    return -1


def _sort_by(items: list, order: list, merge_key: str, kind: str) -> list:
    to_delete: list = []
    if kind == "map":
        for v in items + order:
            if not isinstance(v, dict) or merge_key not in v:
                raise _no_merge_key(v if isinstance(v, dict) else {}, merge_key)
        to_delete = [v for v in items if v.get(DIRECTIVE) == DELETE]
        items = [v for v in items if v.get(DIRECTIVE) != DELETE]

    def cmp(a: Any, b: Any) -> int:
        ia, ib = _index(order, a, merge_key, kind), _index(order, b, merge_key, kind)
        if ia >= 0 and ib >= 0:
            return -1 if ia < ib else (1 if ia > ib else 0)
        return -1

    return sorted(items, key=cmp_to_key(cmp)) + to_delete


def _normalize_order(in_patch: list, server_only: list, patch_order: list, server_order: list,
                     merge_key: str, kind: str) -> list:
    in_patch = _sort_by(in_patch, patch_order, merge_key, kind)
    server_only = _sort_by(server_only, server_order, merge_key, kind)
    out: list = []
    i = j = 0
    while i < len(server_only) or j < len(in_patch):
        if i >= len(server_only):
            out.append(in_patch[j])
            j += 1
        elif j >= len(in_patch):
            out.append(server_only[i])
            i += 1
        else:
            li = _index(server_order, server_only[i], merge_key, kind)
            ri = _index(server_order, in_patch[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(server_only[i])
                i += 1
            else:
                out.append(in_patch[j])
                j += 1
    return out


def _merge_ordered_lists(original: dict, patch: dict, shape: Shape) -> None:
    """The $setElementOrder/<field> directives: merge that list and put it in order."""
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise StrategicError(f"expected a slice, but received a {_kind(order)}")
        name = _extract_key(key, SET_ELEMENT_ORDER)
        sub, strategies, merge_key = _lookup_slice(shape, name)
        strategy = _strategy(strategies)
        have_original, have_patch = name in original, name in patch
        original_list = original.get(name) if have_original else []
        patch_list = patch.get(name) if have_patch else []
        if not isinstance(original_list, list) or not isinstance(patch_list, list):
            raise StrategicError("expected a slice, but received a "
                                 + _kind(original_list if have_original else patch_list))
        _check_order(patch_list, order, merge_key)
        if have_original and not have_patch:
            merged = original_list
        elif have_patch and not have_original:
            merged = remove_directives(patch_list)[0]
        elif have_patch:
            merged = merge_slice(original_list, patch_list, sub, merge_key, False) \
                if strategy == MERGE else patch_list
        else:
            continue
        if not merge_key:
            in_order, server_only = _partition_scalars(merged, order)
        else:
            in_order, server_only = _partition_maps(merged, order, merge_key)
        kind = _element_kind(original_list, patch_list)
        original[name] = _normalize_order(in_order, server_only, order, original_list,
                                          merge_key, kind)
        patch.pop(name, None)


def _check_order(patch_list: list, order: list, merge_key: str) -> None:
    """The patch's items must appear in $setElementOrder, in the same relative order."""
    if not order or not patch_list:
        return
    items = [v for v in patch_list if not (merge_key and isinstance(v, dict)
                                           and v.get(DIRECTIVE) == DELETE)]
    pi = oi = 0
    while pi < len(items) and oi < len(order):
        item = items[pi]
        if isinstance(item, dict) and DIRECTIVE in item:
            pi += 1
            continue
        if merge_key:
            if not isinstance(item, dict) or not isinstance(order[oi], dict):
                raise StrategicError(f"expected a map, but received a {_kind(item)}")
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            if merge_key not in order[oi]:
                raise _no_merge_key(order[oi], merge_key)
            equal = _same(item[merge_key], order[oi][merge_key])
        else:
            equal = _same(item, order[oi])
        if equal:
            pi += 1
        oi += 1
    if pi < len(items) and oi >= len(order):
        raise StrategicError(f"The order in patch list:\n{_go(patch_list)}\n doesn't match "
                             f"{SET_ELEMENT_ORDER} list:\n{_go(order)}\n")
