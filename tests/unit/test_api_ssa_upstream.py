"""Server-side apply against structured-merge-diff's own scenarios (merge/multiple_appliers_test.go
and nested_test.go): sequences of applies and updates by several managers, then the live object
and who owns what. Their schema (a list keyed by name, items with a value or a set of values) is
written here in the schema's terms; their versions (v1, v2, v3) are one version here."""

from __future__ import annotations

import pytest
import yaml

from testbed.api import fieldpath as fp
from testbed.api import managedfields as mf
from testbed.api import shapes, typed
from testbed.api.fieldpath import FieldSet
from tests.unit.fake_schema import Field, TypeDef


class ListSchema:
    TYPES = {
        "Root": TypeDef("Root", "", {f.name: f for f in [
            Field("apiVersion", "string"), Field("kind", "string"),
            Field("list", "array", "Item", list_type="map", list_map_keys=("name",)),
            Field("listOfLists", "array", "Nested", list_type="map",
                  list_map_keys=("name",))]}, gvk=("", "v1", "Root")),
        "Item": TypeDef("Item", "", {"name": Field("name", "string"),
                                     "value": Field("value", "number")}),
        "Nested": TypeDef("Nested", "", {"name": Field("name", "string"),
                                         "value": Field("value", "array", items="string",
                                                        list_type="set")}),
    }

    def definition(self, name: str) -> TypeDef:
        return self.TYPES[name]

    def for_kind(self, group_version: str, kind: str) -> TypeDef:
        return self.TYPES[kind]


SHAPE = shapes.for_kind(ListSchema(), "v1", "Root")
NOW = lambda: "2024-01-01T00:00:00Z"  # noqa: E731


def run(ops: list[tuple]) -> dict:
    live: dict | None = None
    for op, manager, text, *conflicts in ops:
        obj = {"apiVersion": "v1", "kind": "Root", **yaml.safe_load(text)}
        if op == "apply":
            try:
                live = mf.apply(live, obj, SHAPE, "v1", "Root", manager, False, NOW)
            except mf.ApplyConflict as err:
                assert conflicts, err.message
                assert [(w.name, fp.path_string(p)) for w, p in err.conflicts] == conflicts[0]
            else:
                assert not conflicts
        else:
            obj["metadata"] = {"managedFields": (live or {}).get("metadata", {}).get(
                "managedFields")}
            live = mf.update(live, obj, SHAPE, "v1", manager, NOW)
    assert live is not None
    return live


# name: (operations, the live object, {manager: owned paths})
CASES = {
    "remove_one": ([
        ("apply", "apply-one", "list: [{name: a}, {name: b}]"),
        ("apply", "apply-two", "list: [{name: c}]"),
        ("apply", "apply-one", "list: [{name: a}]"),
    ], "list: [{name: a}, {name: c}]", {
        "apply-one": ['.list[name="a"]', '.list[name="a"].name'],
        "apply-two": ['.list[name="c"]', '.list[name="c"].name']}),
    "same_value_no_conflict": ([
        ("apply", "apply-one", "list: [{name: a, value: 0}]"),
        ("apply", "apply-two", "list: [{name: a, value: 0}]"),
    ], "list: [{name: a, value: 0}]", {
        "apply-one": ['.list[name="a"]', '.list[name="a"].name', '.list[name="a"].value'],
        "apply-two": ['.list[name="a"]', '.list[name="a"].name', '.list[name="a"].value']}),
    "change_value_yes_conflict": ([
        ("apply", "apply-one", "list: [{name: a, value: 0}]"),
        ("apply", "apply-two", "list: [{name: a, value: 1}]",
         [("apply-one", '.list[name="a"].value')]),
    ], "list: [{name: a, value: 0}]", {
        "apply-one": ['.list[name="a"]', '.list[name="a"].name', '.list[name="a"].value']}),
    "remove_one_keep_one": ([
        ("apply", "apply-one", "list: [{name: a}, {name: b}, {name: c}]"),
        ("apply", "apply-two", "list: [{name: c}, {name: d}]"),
        ("apply", "apply-one", "list: [{name: a}]"),
    ], "list: [{name: a}, {name: c}, {name: d}]", {
        "apply-one": ['.list[name="a"]', '.list[name="a"].name'],
        "apply-two": ['.list[name="c"]', '.list[name="d"]', '.list[name="c"].name',
                      '.list[name="d"].name']}),
    "remove_one_keep_one_with_two_sub_items": ([
        ("apply", "apply-one", "listOfLists: [{name: a}, {name: b, value: [c]}]"),
        ("apply", "apply-two", "listOfLists: [{name: b, value: [d]}]"),
        ("apply", "apply-one", "listOfLists: [{name: a}]"),
    ], "listOfLists: [{name: a}, {name: b, value: [d]}]", {
        "apply-one": ['.listOfLists[name="a"]', '.listOfLists[name="a"].name'],
        "apply-two": ['.listOfLists[name="b"]', '.listOfLists[name="b"].name',
                      '.listOfLists[name="b"].value[="d"]']}),
    "remove_one_keep_one_with_dangling_subitem": ([
        ("apply", "apply-one", "listOfLists: [{name: a}, {name: b, value: [c]}]"),
        ("apply", "apply-two", "listOfLists: [{name: b, value: [d]}]"),
        ("update", "controller", "listOfLists: [{name: a}, {name: b, value: [c, d, e]}]"),
        ("apply", "apply-one", "listOfLists: [{name: a}]"),
    ], "listOfLists: [{name: a}, {name: b, value: [d, e]}]", {
        "apply-one": ['.listOfLists[name="a"]', '.listOfLists[name="a"].name'],
        "apply-two": ['.listOfLists[name="b"]', '.listOfLists[name="b"].name',
                      '.listOfLists[name="b"].value[="d"]'],
        "controller": ['.listOfLists[name="b"].value[="e"]']}),
    "remove_one_with_dangling_subitem_keep_one": ([
        ("apply", "apply-one", "listOfLists: [{name: a}, {name: b, value: [c]}]"),
        ("apply", "apply-two", "listOfLists: [{name: a, value: [b]}]"),
        ("update", "controller", "listOfLists: [{name: a, value: [b]}, {name: b, value: [c, d]}]"),
        ("apply", "apply-one", "listOfLists: [{name: a}]"),
    ], "listOfLists: [{name: a, value: [b]}]", {
        "apply-one": ['.listOfLists[name="a"]', '.listOfLists[name="a"].name'],
        "apply-two": ['.listOfLists[name="a"]', '.listOfLists[name="a"].name',
                      '.listOfLists[name="a"].value[="b"]']}),
    "remove_one_keep_one_with_sub_item": ([
        ("apply", "apply-one", "listOfLists: [{name: a}, {name: b, value: [c]}]"),
        ("apply", "apply-two", "listOfLists: [{name: b, value: [d]}]"),
        ("apply", "apply-one", "listOfLists: [{name: a}]"),
    ], "listOfLists: [{name: a}, {name: b, value: [d]}]", {
        "apply-one": ['.listOfLists[name="a"]', '.listOfLists[name="a"].name'],
        "apply-two": ['.listOfLists[name="b"]', '.listOfLists[name="b"].name',
                      '.listOfLists[name="b"].value[="d"]']}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_upstream_multiple_appliers(name: str) -> None:
    ops, want_text, owners = CASES[name]
    live = run(ops)
    want = {"apiVersion": "v1", "kind": "Root", **yaml.safe_load(want_text)}
    got = {k: v for k, v in live.items() if k != "metadata"}
    assert typed.compare(want, got, SHAPE).same(), (got, want)   # list order aside
    managed = {e["manager"]: sorted(fp.path_string(p) for p in
                                    FieldSet.from_fields(e["fieldsV1"]).paths())
               for e in live.get("metadata", {}).get("managedFields") or []}
    assert managed == {m: sorted(p) for m, p in owners.items()}
