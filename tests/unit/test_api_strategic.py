"""Strategic merge patch (api/strategic.py) against upstream's own application cases:
apimachinery's patch_test.go applies each two-way patch to its original and each three-way
patch to its current object over the MergeItem test type; the cases are copied into
tests/unit/data/strategicpatch/cases.json, the type is written here in the schema's terms."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from testbed.api import shapes
from testbed.api.shapes import Shape
from testbed.api.strategic import StrategicError, strategic_merge
from tests.unit.fake_schema import Field, TypeDef

CASES = json.loads((Path(__file__).parent / "data" / "strategicpatch" / "cases.json").read_text())


def _items(name: str, ref: str = "MergeItem", **kw: Any) -> Field:
    return Field(name, "array", ref=ref, **kw)


class MergeItemSchema:
    """upstream's MergeItem and RetainKeysMergeItem (patch_test.go), with their struct tags."""

    TYPES = {
        "MergeItem": TypeDef("MergeItem", "", {f.name: f for f in [
            Field("name", "string"), Field("value", "string"), Field("other", "string"),
            _items("mergingList", patch_strategy="merge", patch_merge_key="name"),
            _items("nonMergingList"),
            Field("mergingIntList", "array", items="integer", patch_strategy="merge"),
            Field("nonMergingIntList", "array", items="integer"),
            Field("mergeItemPtr", "object", "MergeItem", patch_strategy="merge",
                  patch_merge_key="name"),
            Field("simpleMap", "map", items="string"),
            Field("replacingItem", "any", patch_strategy="replace"),
            Field("jsonItem", "any"),
            Field("retainKeysMap", "object", "RetainKeysMergeItem", patch_strategy="retainKeys"),
            _items("retainKeysMergingList", patch_strategy="merge,retainKeys",
                   patch_merge_key="name")]}),
        "RetainKeysMergeItem": TypeDef("RetainKeysMergeItem", "", {f.name: f for f in [
            Field("name", "string"), Field("value", "string"), Field("other", "string"),
            Field("simpleMap", "map", items="string"),
            Field("mergingIntList", "array", items="integer", patch_strategy="merge"),
            _items("mergingList", patch_strategy="merge", patch_merge_key="name"),
            _items("nonMergingList")]}),
    }

    def definition(self, name: str) -> TypeDef:
        return self.TYPES[name]

    def for_kind(self, group_version: str, kind: str) -> TypeDef:
        return self.TYPES[kind]


MERGE_ITEM = shapes.struct("MergeItem", MergeItemSchema())


def _go_text(v: Any) -> str:
    return str(v)


def sort_merge_lists(value: Any, shape: Shape) -> Any:
    """upstream's sortMergeListsByNameMap: merging lists sorted by merge key (scalars sorted and
    deduplicated), as the test sorts its inputs and expectations."""
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        if k == "$retainKeys" or k.startswith("$deleteFromPrimitiveList"):
            v = sorted(v, key=_go_text)
        elif k.startswith("$setElementOrder") or k == "$patch":
            pass
        elif isinstance(v, dict):
            v = sort_merge_lists(v, shape.child(k, v) if shape.kind != "untyped" else shape)
        elif isinstance(v, list):
            f = shape.declared(k)
            if f is not None and "merge" in (f.patch_strategy or "").split(","):
                item = shape.child(k).element()
                if v and not isinstance(v[0], dict):
                    v = sorted({json.dumps(x): x for x in v}.values(), key=_go_text)
                else:
                    v = sorted((sort_merge_lists(x, item) for x in v),
                               key=lambda x: _go_text(x.get(f.patch_merge_key)))
        out[k] = v
    return out


def _case_id(case: dict) -> str:
    return case["description"]


@pytest.mark.parametrize("case", CASES["cases"], ids=_case_id)
def test_upstream_strategic_merge_patch_cases(case: dict) -> None:
    def prepared(v: Any) -> Any:
        v = copy.deepcopy(v) if v is not None else {}
        return sort_merge_lists(v, MERGE_ITEM) if case["sorted"] else v

    original, patch = prepared(case["original"]), prepared(case["patch"])
    if case.get("error"):
        with pytest.raises(StrategicError) as err:
            strategic_merge(original, patch, MERGE_ITEM)
        assert case["error"] in str(err.value)
        return
    got = strategic_merge(original, patch, MERGE_ITEM)
    assert got == prepared(case["expected"])
    # list order matters (upstream compares the JSON bytes)
    assert json.dumps(got, sort_keys=True) == json.dumps(prepared(case["expected"]),
                                                          sort_keys=True)


def test_the_case_file_is_upstreams_whole_set() -> None:
    cases = CASES["cases"]
    assert len(cases) > 200
    assert sum(1 for c in cases if c.get("error")) == 3
    assert any("$setElementOrder" in json.dumps(c["patch"]) for c in cases)
    assert any("$retainKeys" in json.dumps(c["patch"]) for c in cases)
    assert any("$deleteFromPrimitiveList" in json.dumps(c["patch"]) for c in cases)


@pytest.mark.parametrize("patch, code, message", [
    ({"$patch": "bogus"}, 500, "unknown patch type: bogus in map: map[$patch:bogus]"),
    ({"mergingList": [{"value": 1}]}, 500,
     "map: map[value:1] does not contain declared merge key: name"),
    ({"$retainKeys": "name"}, 400, "invalid patch format of retainKeys"),
    ({"$retainKeys": ["name"], "value": 1}, 400, "invalid patch format of retainKeys"),
    ({"$setElementOrder": [1]}, 400, "invalid patch format of setElementOrder list"),
    ({"$deleteFromPrimitiveList": [1]}, 400, "invalid patch format of primitive list"),
    ({"mergingList": [
        {"name": "a", "mergingIntList": [[1]]}]}, 422, "lists of lists are not supported"),
    ({"mergingList": [{"name": "a", "$patch": "merge"}]}, 500,
     "merging lists cannot yet be specified in the patch"),
])
def test_malformed_directives_are_refused_with_upstreams_errors(patch: dict, code: int,
                                                               message: str) -> None:
    original = {"mergingList": [{"name": "a", "mergingIntList": [[2]]}], "mergingIntList": [1]}
    with pytest.raises(StrategicError) as err:
        strategic_merge(original, patch, MERGE_ITEM)
    assert str(err.value) == message and err.value.code == code
