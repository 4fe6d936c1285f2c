"""The served schema (testbed/api/schema.py): names, upstream's patch and list metadata, that
the validators allow exactly what it publishes, unknown-field paths and pruning, and the
validators of the record kinds (Endpoints, Event, Lease)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from testbed.api import schema
from testbed.api.events import Note, new_event
from testbed.api.manifests import KINDS, check_object
from testbed.api.resources import RESOURCES
from testbed.api.schema_base import FIELD_TYPES, TypeDef

DATA = Path(__file__).resolve().parent / "data" / "upstream_field_metadata.json"
CORE = "io.k8s.api.core.v1."
META = "io.k8s.apimachinery.pkg.apis.meta.v1."


# -- the schema itself -------------------------------------------------------------------------

def test_every_served_kind_and_its_list_has_a_typedef_with_its_gvk() -> None:
    for r in RESOURCES:
        t = schema.for_kind(r.group_version, r.kind)
        assert t.gvk == (r.group, r.version, r.kind)
        assert {"apiVersion", "kind", "metadata"} <= set(t.fields)
        assert schema.definition(t.name + "List").gvk == (r.group, r.version, r.kind + "List")
    assert schema.for_kind("autoscaling/v1", "Scale").name == "io.k8s.api.autoscaling.v1.Scale"
    assert schema.for_kind("v1", "Pod").name == CORE + "Pod"
    with pytest.raises(KeyError):
        schema.definition("io.k8s.api.core.v1.Nope")
    with pytest.raises(KeyError):
        schema.for_kind("batch/v1", "Job")


def test_references_resolve_and_fields_are_well_formed() -> None:
    defs = schema.definitions()
    for t in defs.values():
        assert t.description, t.name
        assert t.name.startswith(("io.k8s.api.", "io.k8s.apimachinery.")), t.name
        for f in t.fields.values():
            where = f"{t.name}.{f.name}"
            assert f.type in FIELD_TYPES, where
            assert f.description, where
            if f.type == "object":
                assert f.ref in defs, where
            if f.type in ("array", "map"):
                assert (f.ref in defs) != (f.items is not None), where
            if f.list_map_keys:
                assert f.list_type == "map" and f.type == "array", where
                assert all(k in defs[f.ref].fields for k in f.list_map_keys), where
            if f.patch_merge_key:
                assert f.patch_merge_key in defs[f.ref].fields, where


def test_patch_and_list_metadata_as_the_brief_lists_them() -> None:
    def f(type_name: str, name: str) -> schema.Field:
        return schema.definition(type_name).fields[name]

    spec = CORE + "PodSpec"
    for name in ("containers", "initContainers"):
        c = f(spec, name)
        assert (c.patch_strategy, c.patch_merge_key, c.list_type, c.list_map_keys) == (
            "merge", "name", "map", ("name",))
    ports = f(CORE + "Container", "ports")
    assert (ports.patch_merge_key, ports.list_map_keys) == ("containerPort",
                                                            ("containerPort", "protocol"))
    assert f(CORE + "Container", "env").patch_merge_key == "name"
    assert f(CORE + "Container", "volumeMounts").patch_merge_key == "mountPath"
    volumes = f(spec, "volumes")
    assert (volumes.patch_strategy, volumes.patch_merge_key) == ("merge,retainKeys", "name")
    svc_ports = f(CORE + "ServiceSpec", "ports")
    assert (svc_ports.patch_merge_key, svc_ports.list_map_keys) == ("port", ("port", "protocol"))
    owners = f(META + "ObjectMeta", "ownerReferences")
    assert (owners.patch_strategy, owners.patch_merge_key) == ("merge", "uid")
    finalizers = f(META + "ObjectMeta", "finalizers")
    assert (finalizers.patch_strategy, finalizers.list_type) == ("merge", "set")
    assert f(CORE + "PodStatus", "conditions").patch_merge_key == "type"
    assert f("io.k8s.api.apps.v1.DeploymentSpec", "strategy").patch_strategy == "retainKeys"
    assert f("io.k8s.api.discovery.v1.EndpointSlice", "endpoints").list_type == "atomic"
    assert f(spec, "tolerations").list_type == "atomic"
    assert f(spec, "imagePullSecrets").patch_merge_key == "name"
    assert f(spec, "hostAliases").patch_merge_key == "ip"
    assert schema.definition(META + "LabelSelector").map_type == "atomic"
    assert schema.definition(CORE + "ObjectReference").map_type == "atomic"


def test_metadata_is_upstreams_everywhere() -> None:
    """Against k8s.io/api's tags (tests/unit/data/upstream_field_metadata.json): every patch
    strategy, merge key, list type, list map key, map type, struct type and required flag."""
    upstream = json.loads(DATA.read_text())
    for t in schema.definitions().values():
        entry = upstream.get(t.name, {})
        assert t.map_type == entry.get("structType"), t.name
        fields = entry.get("fields", {})
        for f in t.fields.values():
            want = fields.get(f.name, {})
            have = {"patchStrategy": f.patch_strategy, "patchMergeKey": f.patch_merge_key,
                    "listType": f.list_type, "listMapKeys": list(f.list_map_keys) or None,
                    "mapType": f.map_type, "required": f.required or None}
            assert {k: v for k, v in have.items() if v} == want, f"{t.name}.{f.name}"


# -- validators allow what the schema publishes, no more and no less -------------------------

def _value(f: schema.Field, depth: int) -> Any:
    if f.enum:
        return f.enum[0]
    if f.type == "object":
        return _full(schema.definition(f.ref), depth + 1)
    if f.type == "array":
        item = _full(schema.definition(f.ref), depth + 1) if f.ref else _primitive(f.items)
        return [item]
    if f.type == "map":
        return {"a": _full(schema.definition(f.ref), depth + 1) if f.ref else "b"}
    if f.type == "int-or-string":
        return 8080
    if f.type == "any":
        return {}
    return _primitive(f.type, f.format)


def _primitive(kind: str | None, fmt: str | None = None) -> Any:
    if fmt == "date-time":
        return "2026-01-01T00:00:00Z"
    return {"integer": 1, "number": 1.5, "boolean": True}.get(kind or "", "x")


def _full(t: TypeDef, depth: int = 0) -> dict:
    """An object of type `t` with every field set (values of the right type)."""
    if t.free_form or depth > 12:
        return {}
    return {name: _value(f, depth) for name, f in t.fields.items()}


def _plant(value: Any, t: TypeDef | None, path: str, planted: list[str]) -> None:
    """Put a field "zzBogus" into every object the schema types, recording its path."""
    if t is None or t.free_form or not isinstance(value, dict):
        return
    for name, f in list(t.fields.items()):
        if name not in value or f.ref is None:
            continue
        here = f"{path}.{name}" if path else name
        sub = schema.definition(f.ref)
        if f.type == "object":
            _plant(value[name], sub, here, planted)
        elif f.type == "array":
            for i, item in enumerate(value[name]):
                _plant(item, sub, f"{here}[{i}]", planted)
    value["zzBogus"] = 1
    planted.append(f"{path}.zzBogus" if path else "zzBogus")


def _unknown(problems: list) -> set[str]:
    return {p.field for p in problems if p.message.startswith("unknown field")}


@pytest.mark.parametrize("key", sorted(KINDS))
def test_validators_allow_every_field_the_schema_has(key: tuple[str, str]) -> None:
    full = _full(schema.for_kind(*key))
    full.update(apiVersion=key[0], kind=key[1])
    _, problems = check_object(full)
    assert _unknown(problems) == set(), [str(p) for p in problems]


@pytest.mark.parametrize("key", sorted(KINDS))
def test_validators_refuse_only_what_the_schema_lacks(key: tuple[str, str]) -> None:
    t = schema.for_kind(*key)
    full = _full(t)
    full.update(apiVersion=key[0], kind=key[1])
    planted: list[str] = []
    _plant(full, t, "", planted)
    assert sorted(schema.unknown_fields(full, t)) == sorted(planted)
    _, problems = check_object(full)
    refused = _unknown(problems)
    assert refused <= set(planted)
    assert "zzBogus" in refused and ("spec.zzBogus" in refused or "spec" not in t.fields)


def test_the_kinds_specs_are_checked_where_the_server_reads_them() -> None:
    """Deep places the validators must walk (not only the top level)."""
    t = schema.for_kind("apps/v1", "Deployment")
    full = _full(t)
    full.update(apiVersion="apps/v1", kind="Deployment")
    planted: list[str] = []
    _plant(full, t, "", planted)
    refused = _unknown(check_object(full)[1])
    for path in ("spec.template.spec.containers[0].zzBogus",
                 "spec.template.spec.containers[0].ports[0].zzBogus",
                 "spec.template.spec.containers[0].readinessProbe.httpGet.zzBogus",
                 "spec.template.metadata.zzBogus", "spec.selector.matchExpressions[0].zzBogus",
                 "spec.strategy.rollingUpdate.zzBogus"):
        assert path in refused, path


# -- unknown fields, pruning, strict decoding ---------------------------------------------------

def deployment(**extra: Any) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "x"}]}},
                     **extra}}


def test_unknown_fields_paths_as_upstream_prints_them() -> None:
    obj = deployment(foo=1)
    obj["spec"]["template"]["spec"]["containers"][0]["bar"] = {"deep": 1}
    obj["spec"]["template"]["spec"]["securityContext"] = {"anything": {"goes": 1}}
    obj["metadata"]["labels"] = {"not-a-field": "x"}
    obj["status"] = {"replicas": 1, "made": "up"}
    t = schema.for_kind("apps/v1", "Deployment")
    assert schema.unknown_fields(obj, t) == [  # document order: foo comes after template
        "spec.template.spec.containers[0].bar", "spec.foo", "status.made"]
    before = copy.deepcopy(obj)
    assert schema.prune(obj, t) == schema.unknown_fields(before, t)
    assert "foo" not in obj["spec"] and "bar" not in obj["spec"]["template"]["spec"][
        "containers"][0]
    assert obj["spec"]["template"]["spec"]["securityContext"] == {"anything": {"goes": 1}}
    assert schema.unknown_fields(obj, t) == []


def test_strict_errors_unknown_and_duplicate_fields_in_document_order() -> None:
    raw = ('{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "name": "b", '
           '"labels": {"x": "1", "x": "2"}}, "spec": {"containers": [{"name": "c", '
           '"image": "i", "bogus": {"a": 1, "a": 2}}], "nope": 1, "nope": 2}}')
    assert schema.strict_errors(raw, schema.for_kind("v1", "Pod")) == [
        'duplicate field "metadata.name"', 'duplicate field "metadata.labels.x"',
        'unknown field "spec.containers[0].bogus"', 'unknown field "spec.nope"']
    assert schema.strict_errors("not json", schema.for_kind("v1", "Pod")) == []


# -- Endpoints, Event, Lease ---------------------------------------------------------------------

def problems(obj: dict) -> list[str]:
    return [f"{p.field}: {p.message}" for p in check_object(obj)[1]]


def endpoints(*subsets: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
            "subsets": list(subsets)}


def test_endpoints_as_upstream_validates_them() -> None:
    good, _ = check_object(endpoints({"addresses": [{"ip": "10.244.1.5", "nodeName": "w1"}],
                                      "ports": [{"port": 80}]}))
    assert good is not None and good["subsets"][0]["ports"][0]["protocol"] == "TCP"
    assert problems(endpoints({"ports": [{"port": 80}]})) == [
        "subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"]
    assert problems(endpoints({"addresses": [{"ip": "127.0.0.1"}, {"ip": "nope"}],
                               "notReadyAddresses": [{"ip": "169.254.1.1"}],
                               "ports": [{"port": 80}, {"name": "b", "port": 0,
                                                        "protocol": "ICMP"}]})) == [
        'subsets[0].addresses[0].ip: Invalid value: "127.0.0.1": may not be in the loopback '
        "range (127.0.0.0/8, ::1/128)",
        'subsets[0].addresses[1].ip: Invalid value: "nope": must be a valid IP address, (e.g. '
        "10.9.8.7 or 2001:db8::ffff)",
        'subsets[0].notReadyAddresses[0].ip: Invalid value: "169.254.1.1": may not be in the '
        "link-local range (169.254.0.0/16, fe80::/10)",
        "subsets[0].ports[0].name: Required value",
        "subsets[0].ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        'subsets[0].ports[1].protocol: Unsupported value: "ICMP": supported values: "SCTP", '
        '"TCP", "UDP"']


def event(**fields: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
            "reason": "Started", "message": "Started container c", "type": "Normal",
            **fields}


def test_events_as_core_v1_validates_them() -> None:
    assert problems(event()) == []
    moved = event(involvedObject={"kind": "Pod", "name": "web", "namespace": "other"})
    assert problems(moved) == [
        'involvedObject.namespace: Invalid value: "other": does not match event.namespace']
    node = event(involvedObject={"kind": "Node", "name": "w1"})
    node["metadata"]["namespace"] = "kube-system"
    assert problems(node) == [
        'involvedObject.namespace: Invalid value: "": does not match event.namespace']
    assert problems(event(type="Odd")) == []  # core/v1 leaves type alone (events.k8s.io checks)
    new_style = event(eventTime="2026-01-01T00:00:00.000000Z", reason="x" * 129,
                      message="m" * 1025)
    assert problems(new_style) == [
        "reportingController: Required value",
        'reportingController: Invalid value: "": name part must be non-empty',
        'reportingController: Invalid value: "": name part must consist of alphanumeric '
        "characters, '-', '_' or '.', and must start and end with an alphanumeric character "
        "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        "reportingInstance: Required value", "action: Required value",
        'reason: Invalid value: "": can have at most 128 characters',
        'message: Invalid value: "": can have at most 1024 characters']


def test_the_testbeds_own_events_and_leases_are_valid() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for about in ({"kind": "Pod", "name": "web", "namespace": "team", "uid": "u"},
                  {"kind": "Node", "name": "w1", "uid": "u"}):
        e = new_event(Note(about, "Warning", "BackOff", "Back-off restarting"), "kubelet",
                      "w1", now)
        assert problems(e) == [], e
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "w1", "namespace": "kube-node-lease", "ownerReferences": [
                 {"apiVersion": "v1", "kind": "Node", "name": "w1", "uid": "u"}]},
             "spec": {"holderIdentity": "w1", "leaseDurationSeconds": 40,
                      "renewTime": "2026-01-01T00:00:00.000000Z"}}
    assert problems(lease) == []


def test_leases_as_upstream_validates_them() -> None:
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "l"},
             "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1, "strategy": "Newest",
                      "preferredHolder": "me", "bogus": 1}}
    assert problems(lease) == [
        'spec.bogus: unknown field "bogus"',
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
        "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
        'spec.strategy.strategy: Unsupported value: "Newest": supported values: '
        '"OldestEmulationVersion"']
    lease["spec"] = {"preferredHolder": "me"}
    assert problems(lease) == [
        "spec.preferredHolder: Forbidden: may only be specified if `strategy` is defined"]
