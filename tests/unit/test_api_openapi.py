"""The OpenAPI documents (testbed/api/openapi.py, openapi_paths.py) and their protobuf encoding
(openapi_pb.py, decoded here with a decoder of the test's own), and the /openapi/ answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from testbed.api import openapi, schema
from testbed.api.resources import RESOURCES

PROTO_ACCEPT = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


def v2() -> dict:
    return openapi.v2_document()


def test_every_kind_is_a_definition_with_its_gvk() -> None:
    defs = v2()["definitions"]
    assert set(defs) == set(schema.definitions())
    for r in RESOURCES:
        name = schema.for_kind(r.group_version, r.kind).name
        assert {"group": r.group, "kind": r.kind, "version": r.version} in defs[name][
            "x-kubernetes-group-version-kind"]
    assert defs["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"] == [
        {"group": "autoscaling", "kind": "Scale", "version": "v1"}]


def test_definitions_carry_patch_and_list_extensions_and_int_or_string() -> None:
    spec = v2()["definitions"]["io.k8s.api.core.v1.PodSpec"]
    assert spec["required"] == ["containers"]
    containers = spec["properties"]["containers"]
    assert containers == {
        "type": "array", "items": {"$ref": "#/definitions/io.k8s.api.core.v1.Container"},
        "description": containers["description"], "x-kubernetes-list-map-keys": ["name"],
        "x-kubernetes-list-type": "map", "x-kubernetes-patch-merge-key": "name",
        "x-kubernetes-patch-strategy": "merge"}
    strategy = v2()["definitions"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]
    assert strategy["$ref"] == "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy"
    assert strategy["x-kubernetes-patch-strategy"] == "retainKeys" and "type" not in strategy
    target = v2()["definitions"]["io.k8s.api.core.v1.ServicePort"]["properties"]["targetPort"]
    assert (target["type"], target["format"]) == ("string", "int-or-string")
    v3 = openapi.v3_document("v1")["components"]["schemas"]
    target3 = v3["io.k8s.api.core.v1.ServicePort"]["properties"]["targetPort"]
    assert target3["allOf"] == [{"$ref": "#/components/schemas/"
                                         "io.k8s.apimachinery.pkg.util.intstr.IntOrString"}]
    int_or_string = v3["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert int_or_string["x-kubernetes-int-or-string"] is True and "type" not in int_or_string
    assert v3["io.k8s.api.core.v1.ObjectReference"]["x-kubernetes-map-type"] == "atomic"
    # free-form types: a map of anything in v2 (no properties), preserved in v3
    assert v2()["definitions"]["io.k8s.api.core.v1.Affinity"] == {
        "description": v3["io.k8s.api.core.v1.Affinity"]["description"], "type": "object"}
    assert v3["io.k8s.api.core.v1.Affinity"]["x-kubernetes-preserve-unknown-fields"] is True


def _ops(doc: dict) -> dict[tuple[str, str], dict]:
    return {(path, method): op for path, item in doc["paths"].items()
            for method, op in item.items() if method != "parameters"}


def test_paths_for_every_resource_subresource_and_verb() -> None:
    ops = _ops(v2())
    ids = {op["operationId"]: (path, method) for (path, method), op in ops.items()}
    pod = "/api/v1/namespaces/{namespace}/pods"
    assert ids["listCoreV1NamespacedPod"] == (pod, "get")
    assert ids["createCoreV1NamespacedPod"] == (pod, "post")
    assert ids["deleteCoreV1CollectionNamespacedPod"] == (pod, "delete")
    assert ids["readCoreV1NamespacedPod"] == (pod + "/{name}", "get")
    assert ids["replaceCoreV1NamespacedPodStatus"] == (pod + "/{name}/status", "put")
    assert ids["readCoreV1NamespacedPodLog"] == (pod + "/{name}/log", "get")
    assert ids["connectCoreV1PostNamespacedPodExec"] == (pod + "/{name}/exec", "post")
    assert ids["listCoreV1PodForAllNamespaces"] == ("/api/v1/pods", "get")
    assert ids["watchCoreV1NamespacedPodList"] == ("/api/v1/watch/namespaces/{namespace}/pods",
                                                   "get")
    assert ids["listCoreV1Node"] == ("/api/v1/nodes", "get")
    assert ids["patchAppsV1NamespacedDeploymentScale"] == (
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale", "patch")
    assert ids["createCoordinationV1NamespacedLease"][1] == "post"
    assert "deleteCoreV1CollectionNamespace" not in ids  # namespaces have no deletecollection
    for r in RESOURCES:
        base = r.prefix + ("/namespaces/{namespace}" if r.namespaced else "") + "/" + r.plural
        assert (base, "get") in ops and (base + "/{name}", "patch") in ops, r.kind
        for sub in r.subresources:
            assert any(path == f"{base}/{{name}}/{sub.name}" for path, _ in ops), sub.name
    scale = ops[("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale", "put")]
    assert scale["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "kind": "Scale",
                                                        "version": "v1"}
    assert scale["x-kubernetes-action"] == "put"


def test_write_operations_take_field_validation_and_patch_types() -> None:
    doc = v2()
    for (path, method), op in _ops(doc).items():
        names = {p["name"] for p in op.get("parameters", []) + doc["paths"][path]["parameters"]}
        action = op["x-kubernetes-action"]
        if action in ("post", "put", "patch"):
            assert {"dryRun", "fieldManager", "fieldValidation"} <= names, (path, method)
            body = op["parameters"][0]
            assert (body["in"], body["name"], body["required"]) == ("body", "body", True)
        if action == "patch":
            assert "force" in names
            assert op["consumes"] == ["application/json-patch+json",
                                      "application/merge-patch+json",
                                      "application/strategic-merge-patch+json",
                                      "application/apply-patch+yaml"]
        if action == "list":
            assert {"labelSelector", "fieldSelector", "limit", "continue", "resourceVersion",
                    "watch", "timeoutSeconds"} <= names
    patch3 = openapi.v3_document("apps/v1")["paths"][
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert {"name": "fieldValidation", "in": "query"}.items() <= next(
        p for p in patch3["parameters"] if p["name"] == "fieldValidation").items()
    assert set(patch3["requestBody"]["content"]) == {
        "application/json-patch+json", "application/merge-patch+json",
        "application/strategic-merge-patch+json", "application/apply-patch+yaml"}
    assert patch3["x-kubernetes-group-version-kind"] == {"group": "apps", "kind": "Deployment",
                                                         "version": "v1"}


def test_v3_documents_are_closed_and_per_group_version() -> None:
    for gv in ("v1", "apps/v1", "discovery.k8s.io/v1", "networking.k8s.io/v1",
               "coordination.k8s.io/v1"):
        doc = openapi.v3_document(gv)
        text = json.dumps(doc)
        refs = {part.split('"')[0] for part in text.split('"#/components/schemas/')[1:]}
        assert refs <= set(doc["components"]["schemas"]), gv
        prefix = "/api/v1/" if gv == "v1" else f"/apis/{gv}/"
        assert all(p.startswith(prefix) for p in doc["paths"]), gv
    apps = openapi.v3_document("apps/v1")["components"]["schemas"]
    assert "io.k8s.api.core.v1.PodSpec" in apps and "io.k8s.api.core.v1.Service" not in apps
    strategy = apps["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]
    assert strategy["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.apps.v1."
                                          "DeploymentStrategy"}]


# -- the HTTP answers ------------------------------------------------------------------------------

def test_v3_discovery_hashes_and_etags() -> None:
    code, body, ctype, headers = openapi.openapi_response("/openapi/v3", {}, "")
    assert (code, ctype) == (200, "application/json")
    found = json.loads(body)["paths"]
    assert set(found) == {"api/v1", "apis/apps/v1", "apis/discovery.k8s.io/v1",
                          "apis/networking.k8s.io/v1", "apis/coordination.k8s.io/v1"}
    url = found["apis/apps/v1"]["serverRelativeURL"]
    path, _, query = url.partition("?")
    digest = query.removeprefix("hash=")
    code, body, ctype, headers = openapi.openapi_response(path, {"hash": [digest]},
                                                          "application/json")
    assert code == 200 and headers["ETag"] == f'"{digest}"' and len(digest) == 128
    assert openapi.etag(body) == digest and headers["Cache-Control"] == "public, immutable"
    assert json.loads(body)["openapi"] == "3.0.0"
    stale = openapi.openapi_response(path, {"hash": ["0" * 128]}, "application/json")
    assert stale[0] == 301 and stale[3]["Location"] == url
    assert openapi.openapi_response(path, {}, "application/json", f'"{digest}"')[0] == 304
    assert openapi.openapi_response(path, {}, "application/vnd.kubernetes.protobuf")[0] == 406
    assert openapi.openapi_response("/openapi/v3/apis/batch/v1", {}, "")[0] == 404
    assert openapi.openapi_response("/api/v1", {}, "") is None


@pytest.mark.parametrize(("accept", "ctype"), [
    ("", "application/json"),
    ("application/json", "application/json"),
    ("*/*", "application/json"),
    (PROTO_ACCEPT, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
    ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
     "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
    ("application/json;q=0.5, " + PROTO_ACCEPT, "application/com.github.proto-openapi.spec.v2"
     ".v1.0+protobuf"),
])
def test_v2_content_negotiation(accept: str, ctype: str) -> None:
    code, body, got, headers = openapi.openapi_response("/openapi/v2", {}, accept)
    assert (code, got) == (200, ctype)
    assert headers["ETag"].strip('"') == openapi.etag(
        openapi.openapi_response("/openapi/v2", {}, "application/json")[1])
    assert openapi.openapi_response("/openapi/v2", {}, "text/html")[0] == 406


# -- protobuf: decoded with the test's own reader of OpenAPIv2.proto's field numbers ---------------

def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    out, i = [], 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            size, i = _varint(data, i)
            value, i = data[i:i + size], i + size
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.append((number, value))
    return out


def _varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        byte = data[i]
        i += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n, i


def _group(data: bytes) -> dict[int, list]:
    out: dict[int, list] = {}
    for number, value in _fields(data):
        out.setdefault(number, []).append(value)
    return out


def _text(values: list | None) -> str:
    return values[0].decode() if values else ""


def _named(data: bytes, decode: Any) -> tuple[str, Any]:
    g = _group(data)
    return _text(g.get(1)), decode(g[2][0])


def _extensions(values: list | None, out: dict) -> dict:
    for item in values or []:
        name, value = _named(item, lambda b: json.loads(_text(_group(b).get(2))))
        out[name] = value
    return out


def _schema(data: bytes) -> dict:
    g, out = _group(data), {}
    for number, key in ((1, "$ref"), (2, "format"), (4, "description")):
        if number in g:
            out[key] = _text(g[number])
    if 19 in g:
        out["required"] = [v.decode() for v in g[19]]
    if 20 in g:
        out["enum"] = [json.loads(_text(_group(v).get(2))) for v in g[20]]
    if 21 in g:
        out["additionalProperties"] = _schema(_group(g[21][0])[1][0])
    if 22 in g:
        out["type"] = _text(_group(g[22][0])[1])
    if 23 in g:
        out["items"] = _schema(_group(g[23][0])[1][0])
    if 25 in g:
        out["properties"] = dict(_named(v, _schema) for v in _group(g[25][0]).get(1, []))
    return _extensions(g.get(31), out)


def _parameter(data: bytes) -> dict:
    item = _group(_group(data)[1][0])   # ParametersItem.parameter -> Parameter
    if 1 in item:                        # BodyParameter
        b = _group(item[1][0])
        return {"in": _text(b[3]), "name": _text(b[2]), "required": b[4][0] == 1,
                "schema": _schema(b[5][0])}
    choice, sub = next(iter(_group(item[2][0]).items()))  # NonBodyParameter
    numbers = ({"required": 1, "in": 2, "description": 3, "name": 4, "type": 6,
                "uniqueItems": 20} if choice == 3 else
               {"required": 1, "in": 2, "description": 3, "name": 4, "type": 5,
                "uniqueItems": 19})
    g = _group(sub[0])
    return {k: (g[n][0] == 1 if k in ("required", "uniqueItems") else _text(g[n]))
            for k, n in numbers.items() if n in g}


def _operation(data: bytes) -> dict:
    g = _group(data)
    out: dict = {"consumes": [v.decode() for v in g.get(7, [])],
                 "description": _text(g.get(3)), "operationId": _text(g.get(5)),
                 "produces": [v.decode() for v in g.get(6, [])],
                 "tags": [v.decode() for v in g.get(1, [])]}
    if 8 in g:
        out["parameters"] = [_parameter(v) for v in g[8]]
    responses = {}
    for v in _group(g[9][0]).get(1, []):
        code, response = _named(v, lambda b: _group(_group(b)[1][0]))
        r = {"description": _text(response.get(1))}
        if 2 in response:
            r["schema"] = _schema(_group(response[2][0])[1][0])
        responses[code] = r
    out["responses"] = responses
    return _extensions(g.get(13), out)


def _path_item(data: bytes) -> dict:
    g, out = _group(data), {}
    for number, method in ((2, "get"), (3, "put"), (4, "post"), (5, "delete"), (8, "patch")):
        if number in g:
            out[method] = _operation(g[number][0])
    out["parameters"] = [_parameter(v) for v in g.get(9, [])]
    return out


def decode_document(data: bytes) -> dict:
    g = _group(data)
    info = _group(g[2][0])
    return {"definitions": dict(_named(v, _schema) for v in _group(g[9][0]).get(1, [])),
            "info": {"title": _text(info[1]), "version": _text(info[2])},
            "paths": dict(_named(v, _path_item) for v in _group(g[8][0]).get(2, [])),
            "swagger": _text(g[1])}


def test_protobuf_decodes_to_the_json_document() -> None:
    code, body, _, _ = openapi.openapi_response("/openapi/v2", {}, PROTO_ACCEPT)
    assert code == 200
    assert decode_document(body) == json.loads(
        openapi.openapi_response("/openapi/v2", {}, "application/json")[1])


def test_protobuf_wire_details() -> None:
    from testbed.api import openapi_pb

    assert openapi_pb.varint(1) == b"\x01" and openapi_pb.varint(300) == b"\xac\x02"
    # Document {swagger = 1: "2.0"}: key 0x0a (field 1, wire type 2), length 3
    assert openapi_pb.encode_document({"swagger": "2.0"}) == b"\x0a\x032.0"
    with pytest.raises(ValueError):
        openapi_pb.schema({"oneOf": []})
