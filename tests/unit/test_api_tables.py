"""Tables and content negotiation (pure): what a GET answers with for each Accept header."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from testbed.api.query import QueryError
from testbed.api.tables import Form, WatchRenderer, include_object, negotiate, render

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
KUBECTL = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
           "g=meta.k8s.io,application/json")
POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "web-1", "namespace": "default", "resourceVersion": "7",
                    "creationTimestamp": "2024-05-01T11:59:00Z", "labels": {"app": "web"}},
       "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
       "status": {"phase": "Running", "podIP": "10.244.1.2"}}
DEP = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
       "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}},
       "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}}


@pytest.mark.parametrize("accept,want", [
    (None, Form()),
    ("", Form()),
    ("application/json", Form()),
    ("*/*", Form()),
    ("application/json;stream=watch", Form()),
    (KUBECTL, Form("Table", "v1")),
    ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", Form("Table", "v1beta1")),
    ("application/vnd.kubernetes.protobuf,application/json", Form()),
    ("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json",
     Form("PartialObjectMetadataList", "v1")),
    # a conversion this server does not offer is skipped for the next clause
    ("application/json;as=Table;v=v2;g=meta.k8s.io,application/json", Form()),
    ("application/json;as=Secret;v=v1;g=meta.k8s.io,application/json", Form()),
    # q values order the clauses
    ("application/json;q=0.5,application/json;as=Table;v=v1;g=meta.k8s.io", Form("Table")),
    ("application/json;pretty=1", Form(pretty=True)),
])
def test_negotiation(accept: str | None, want: Form) -> None:
    assert negotiate(accept) == want


@pytest.mark.parametrize("accept", [
    "application/vnd.kubernetes.protobuf",
    "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io",
    "text/html",
    "application/json;as=Table;v=v1;g=meta.k8s.io;sv=v2",
])
def test_what_cannot_be_produced_is_406(accept: str) -> None:
    with pytest.raises(QueryError) as err:
        negotiate(accept)
    assert (err.value.code, err.value.reason, err.value.message) == (
        406, "NotAcceptable", "only the following media types are accepted: application/json")


def test_include_object_is_validated() -> None:
    assert include_object({}) == "" and include_object({"includeObject": ["Object"]}) == "Object"
    with pytest.raises(QueryError) as err:
        include_object({"includeObject": ["All"]})
    assert err.value.code == 400 and err.value.message == (
        "Unable to convert to Table as requested: includeObject: Invalid value: \"All\": must "
        "be 'Metadata', 'Object', 'None', or empty")


def test_a_list_as_a_table() -> None:
    listed = {"kind": "PodList", "apiVersion": "v1", "items": [POD],
              "metadata": {"resourceVersion": "9", "continue": "tok", "remainingItemCount": 3}}
    t = render(Form("Table"), listed, "Pod", NOW, is_list=True)
    assert (t["kind"], t["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert t["metadata"] == {"resourceVersion": "9", "continue": "tok", "remainingItemCount": 3}
    assert [(c["name"], c["priority"]) for c in t["columnDefinitions"]][:6] == [
        ("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0), ("IP", 1)]
    assert set(t["columnDefinitions"][0]) == {"name", "type", "format", "description",
                                              "priority"}
    [row] = t["rows"]
    assert row["cells"] == ["web-1", "0/1", "Running", "0", "60s", "10.244.1.2", "n1",
                            "<none>", "<none>"]
    # the default object is the row's metadata, as PartialObjectMetadata
    assert row["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": POD["metadata"]}


@pytest.mark.parametrize("include,want", [
    ("Object", POD), ("None", None),
    ("Metadata", {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1beta1",
                  "metadata": POD["metadata"]})])
def test_include_object(include: str, want: dict | None) -> None:
    t = render(Form("Table", "v1beta1"), POD, "Pod", NOW, include)
    assert t["rows"][0].get("object") == want
    assert t["apiVersion"] == "meta.k8s.io/v1beta1"


def test_one_object_as_a_table_carries_its_resource_version_and_numbers() -> None:
    t = render(Form("Table"), POD, "Pod", NOW)
    assert t["metadata"] == {"resourceVersion": "7"} and len(t["rows"]) == 1
    cells = render(Form("Table"), DEP, "Deployment", NOW)["rows"][0]["cells"]
    assert cells[1:4] == ["1/2", 2, 1]


def test_partial_object_metadata() -> None:
    listed = {"kind": "PodList", "items": [POD], "metadata": {"resourceVersion": "9"}}
    out = render(Form("PartialObjectMetadataList"), listed, "Pod", NOW, is_list=True)
    assert out["kind"] == "PartialObjectMetadataList" and out["items"][0]["metadata"] == \
        POD["metadata"] and out["metadata"] == {"resourceVersion": "9"}
    assert render(Form("PartialObjectMetadata"), POD, "Pod", NOW)["kind"] == \
        "PartialObjectMetadata"
    with pytest.raises(QueryError) as err:
        render(Form("PartialObjectMetadata"), listed, "Pod", NOW, is_list=True)
    assert err.value.code == 406


def test_status_objects_are_never_transformed() -> None:
    status = {"kind": "Status", "apiVersion": "v1", "code": 410}
    assert render(Form("Table"), status, "Pod", NOW) is status
    r = WatchRenderer(Form("Table"), "Pod")
    assert r.event("ERROR", status, NOW) == {"type": "ERROR", "object": status}


def test_watch_tables_send_columns_once() -> None:
    r = WatchRenderer(Form("Table"), "Pod")
    first = r.event("ADDED", POD, NOW)["object"]
    second = r.event("MODIFIED", POD, NOW)["object"]
    assert first["kind"] == "Table" and len(first["columnDefinitions"]) == 9
    assert second["columnDefinitions"] is None and len(second["rows"]) == 1
    assert second["metadata"] == {"resourceVersion": "7"}
    plain = WatchRenderer(Form(), "Pod").event("ADDED", POD, NOW)
    assert plain == {"type": "ADDED", "object": POD}
    # the bookmark that ends the initial events keeps only metadata, even with Object
    end = {"kind": "Pod", "apiVersion": "v1", "metadata": {
        "resourceVersion": "9", "annotations": {"k8s.io/initial-events-end": "true"}}}
    obj = WatchRenderer(Form("Table"), "Pod", "Object").event("BOOKMARK", end, NOW)["object"]
    assert obj["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
