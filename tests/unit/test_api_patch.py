"""api/patch.py: JSON patch (RFC 6902's examples), merge patch (RFC 7386's examples), the
content types and PatchOptions the API server accepts, and its answers to bad patches."""

from __future__ import annotations

import copy

import pytest

from testbed.api import shapes
from testbed.api.patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    PatchError,
    apply_patch,
    check_options,
    decode,
    force_option,
    json_patch,
    merge_patch,
    patch_type,
)
from tests.unit import fake_schema

DEPLOYMENT = shapes.for_kind(fake_schema, "apps/v1", "Deployment")

# RFC 6902 appendix A: (document, patch, result or None when the patch must fail)
RFC6902 = [
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}],
     {"baz": "qux", "foo": "bar"}),
    ({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
     {"foo": ["bar", "qux", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}],
     {"foo": ["bar", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
     {"baz": "boo", "foo": "bar"}),
    ({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    ({"foo": ["all", "grass", "cows", "eat"]}, [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
     {"foo": ["all", "cows", "eat", "grass"]}),
    ({"baz": "qux", "foo": ["a", 2, "c"]}, [{"op": "test", "path": "/baz", "value": "qux"},
                                            {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    ({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], None),
    ({"foo": "bar"}, [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}], None),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}], None),
    ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
     {"foo": ["bar", ["abc", "def"]]}),
    # evanphx/json-patch v4, which the API server uses: missing keys fail replace and remove
    ({"a": 1}, [{"op": "replace", "path": "/b", "value": 2}], None),
    ({"a": 1}, [{"op": "remove", "path": "/b"}], None),
    ({"a": [1]}, [{"op": "add", "path": "/a/2", "value": 2}], None),
    ({"a": [1, 2]}, [{"op": "remove", "path": "/a/-1"}], {"a": [1]}),
    ({"a": 1}, [{"op": "copy", "from": "/a", "path": "/b"}], {"a": 1, "b": 1}),
    ({"a": 1}, [{"op": "test", "path": "/b", "value": None}], {"a": 1}),
    ({"a": 1}, [{"op": "bogus", "path": "/a"}], None),
]


@pytest.mark.parametrize("doc, ops, want", RFC6902)
def test_rfc6902_examples(doc: dict, ops: list, want: dict | None) -> None:
    if want is None:
        with pytest.raises(PatchError) as err:
            json_patch(copy.deepcopy(doc), ops)
        assert err.value.code == 422 and err.value.reason == "Invalid"
        assert err.value.message == ("the server rejected our request due to an error in "
                                     "our request")
    else:
        assert json_patch(copy.deepcopy(doc), ops) == want


# RFC 7386 appendix A: (target, patch, result)
RFC7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize("target, patch, want", RFC7386)
def test_rfc7386_examples(target: object, patch: object, want: object) -> None:
    assert merge_patch(copy.deepcopy(target), copy.deepcopy(patch)) == want


def test_content_types_and_the_415_answer() -> None:
    assert patch_type("application/merge-patch+json; charset=utf-8") == MERGE_PATCH
    assert patch_type(APPLY_PATCH) == APPLY_PATCH
    with pytest.raises(PatchError) as err:
        patch_type("application/json")
    assert (err.value.code, err.value.reason) == (415, "UnsupportedMediaType")
    assert err.value.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        "application/strategic-merge-patch+json, application/apply-patch+yaml")


def test_patch_options_as_upstream_validates_them() -> None:
    check_options(APPLY_PATCH, "kubectl", True)
    check_options(MERGE_PATCH, "", None)
    with pytest.raises(PatchError) as err:
        check_options(APPLY_PATCH, "", None)
    assert err.value.code == 422 and err.value.message == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required '
        "for apply patch")
    assert err.value.causes == [{"reason": "FieldValueRequired", "field": "fieldManager",
                                 "message": "Required value: is required for apply patch"}]
    with pytest.raises(PatchError) as err:
        check_options(STRATEGIC_MERGE_PATCH, "x" * 129, False)
    assert err.value.message.startswith('PatchOptions.meta.k8s.io "" is invalid: [force: '
                                        "Forbidden: may not be specified for non-apply patch, "
                                        "fieldManager: Too long")
    assert force_option(None) is None and force_option(["true"]) is True
    assert force_option(["false"]) is False
    with pytest.raises(PatchError):
        force_option(["maybe"])


@pytest.mark.parametrize("body, ptype, message", [
    (b"{not json", MERGE_PATCH, "invalid JSON patch"),
    (b"{not json", STRATEGIC_MERGE_PATCH, "invalid JSON patch"),
    (b'{"op": "add"}', JSON_PATCH,
     "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
    (b"[1]", STRATEGIC_MERGE_PATCH,
     "json: cannot unmarshal array into Go value of type map[string]interface {}"),
    (b"null", MERGE_PATCH, "Invalid JSON Patch"),
    (b"- a\n- b\n", APPLY_PATCH, "error decoding patch: json: cannot unmarshal array into Go "
                                 "value of type map[string]interface {}"),
])
def test_bodies_that_do_not_parse_are_400(body: bytes, ptype: str, message: str) -> None:
    with pytest.raises(PatchError) as err:
        decode(body, ptype)
    assert (err.value.code, err.value.reason, err.value.message) == (400, "BadRequest", message)


def test_apply_bodies_are_yaml_or_json_and_keep_timestamps_as_strings() -> None:
    doc = decode(b"metadata:\n  annotations: {when: 2024-01-02}\nspec: {replicas: 3}\n",
                 APPLY_PATCH)
    assert doc == {"metadata": {"annotations": {"when": "2024-01-02"}}, "spec": {"replicas": 3}}
    assert decode(b'{"kind": "Pod"}', APPLY_PATCH) == {"kind": "Pod"}
    with pytest.raises(PatchError) as err:
        decode(b"a: [", APPLY_PATCH)
    assert err.value.code == 400 and err.value.message.startswith("error encoding patch: yaml:")
    with pytest.raises(PatchError) as err:
        decode(b"[" + b'{"op":"test","path":"/a"},' * 10000 + b"{}]", JSON_PATCH)
    assert err.value.code == 413


def _deployment() -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx",
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                {"name": "side", "image": "busybox"}]}}}}


def test_apply_patch_by_type_leaves_the_current_object_alone() -> None:
    current = _deployment()
    smp = apply_patch(current, {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "env": [{"name": "B", "$patch": "delete"}, {"name": "C", "value": "3"}]}
    ]}}}}, STRATEGIC_MERGE_PATCH, DEPLOYMENT)
    containers = smp["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web", "side"]
    # without $setElementOrder, upstream puts the patch's items first
    assert containers[0]["env"] == [{"name": "C", "value": "3"}, {"name": "A", "value": "1"}]
    assert current == _deployment()
    merged = apply_patch(current, {"spec": {"template": {"spec": {"containers": [
        {"name": "only"}]}}}, "metadata": {"labels": None}}, MERGE_PATCH, DEPLOYMENT)
    assert merged["spec"]["template"]["spec"]["containers"] == [{"name": "only"}]
    assert "labels" not in merged["metadata"]
    replaced = apply_patch(current, [{"op": "replace", "path": "/spec/replicas", "value": 5},
                                     {"op": "add", "path": "/spec/paused", "value": None}],
                           JSON_PATCH, DEPLOYMENT)
    assert replaced["spec"]["replicas"] == 5 and "paused" not in replaced["spec"]  # null dropped


def test_strategic_patch_errors_get_the_servers_codes() -> None:
    with pytest.raises(PatchError) as err:
        apply_patch(_deployment(), {"$retainKeys": "x"}, STRATEGIC_MERGE_PATCH, DEPLOYMENT)
    assert (err.value.code, err.value.message) == (400, "invalid patch format of retainKeys")
    with pytest.raises(PatchError) as err:
        apply_patch(_deployment(), {"spec": {"template": {"spec": {"containers": [
            {"image": "x"}]}}}}, STRATEGIC_MERGE_PATCH, DEPLOYMENT)
    assert err.value.code == 500 and "does not contain declared merge key: name" in \
        err.value.message
    with pytest.raises(PatchError) as err:
        apply_patch(_deployment(), ["a"], MERGE_PATCH, DEPLOYMENT)
    assert err.value.code == 422
