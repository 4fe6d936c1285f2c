"""metadata.managedFields and server-side apply (api/managedfields.py over api/typed.py and
api/fieldpath.py): FieldsV1, who owns what after creates, updates and applies, conflicts worded
as upstream words them, force, pruning, kubectl's last-applied upgrade; on a small fake schema
and on the real one (containers by name, ports by containerPort+protocol, finalizers as a set)."""

from __future__ import annotations

import copy
import json

import pytest

from testbed.api import fieldpath as fp
from testbed.api import managedfields as mf
from testbed.api import schema, shapes, typed
from testbed.api.fieldpath import FieldSet
from testbed.api.patch import PatchError
from tests.unit import fake_schema

FAKE = shapes.for_kind(fake_schema, "apps/v1", "Deployment")
REAL = shapes.for_kind(schema, "apps/v1", "Deployment")
T0, T1 = "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"


def clock(t: str = T0):
    return lambda: t


def deployment(replicas: int = 2, image: str = "nginx", **labels: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default",
                         "labels": {"app": "web", **labels}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [
                                      {"name": "web", "image": image,
                                       "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}}}


def entries(obj: dict) -> dict[tuple[str, str, str], dict]:
    """(manager, operation, subresource) -> FieldsV1."""
    return {(e.get("manager", ""), e["operation"], e.get("subresource", "")): e["fieldsV1"]
            for e in obj["metadata"].get("managedFields") or []}


def paths(fields: dict) -> list[str]:
    return [fp.path_string(p) for p in FieldSet.from_fields(fields).paths()]


# -- field sets ------------------------------------------------------------------------------------

def test_fieldsv1_round_trips_in_upstreams_order() -> None:
    fields = {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
              "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                  'k:{"name":"web"}': {".": {}, "f:image": {}, "f:ports": {
                      'k:{"containerPort":80,"protocol":"TCP"}': {".": {},
                                                                   "f:containerPort": {}}}}}}}},
              "f:finalizers": {'v:"a"': {}, 'v:"b"': {}}}
    parsed = FieldSet.from_fields(fields)
    assert json.dumps(parsed.to_fields()) == json.dumps(
        {"f:finalizers": fields["f:finalizers"], "f:metadata": fields["f:metadata"],
         "f:spec": fields["f:spec"]})
    assert paths(fields) == [
        '.finalizers[="a"]', '.finalizers[="b"]', ".metadata.labels", ".metadata.labels.app",
        ".spec.replicas", '.spec.template.spec.containers[name="web"]',
        '.spec.template.spec.containers[name="web"].image',
        '.spec.template.spec.containers[name="web"].ports[containerPort=80,protocol="TCP"]',
        '.spec.template.spec.containers[name="web"].ports[containerPort=80,protocol="TCP"]'
        ".containerPort"]
    with pytest.raises(ValueError):
        FieldSet.from_fields({"x:oops": {}})


def test_set_algebra_is_upstreams() -> None:
    a = FieldSet([(fp.field("a"),), (fp.field("a"), fp.field("b"))])
    b = FieldSet([(fp.field("a"),)])
    assert a.difference(b).has((fp.field("a"), fp.field("b")))  # children stay
    assert not a.recursive_difference(b).has((fp.field("a"), fp.field("b")))
    assert a.intersection(b) == b and b.union(a) == a and FieldSet().empty()


def test_to_set_owns_leaves_list_items_and_map_keys() -> None:
    owned = typed.to_set({"spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                                   "template": {"spec": {"containers": [{"name": "c"}]}}},
                          "metadata": {"labels": {"x": "y"}, "finalizers": ["f"]}}, FAKE)
    assert [fp.path_string(p) for p in owned.paths()] == [
        '.metadata.finalizers[="f"]', ".metadata.labels.x", ".spec.replicas",
        ".spec.selector",  # an atomic struct is owned whole
        '.spec.template.spec.containers[name="c"]',
        '.spec.template.spec.containers[name="c"].name']


def test_merge_keeps_live_order_and_adds_the_configs_items() -> None:
    live = {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}}}}
    config = {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "3"}, {"name": "b", "image": "9"}]}}}}
    merged = typed.merge(live, config, FAKE)
    assert merged["spec"]["template"]["spec"]["containers"] == [
        {"name": "a", "image": "1"}, {"name": "c", "image": "3"}, {"name": "b", "image": "9"}]
    with pytest.raises(typed.TypedError, match="duplicate entries for key"):
        typed.merge(live, {"spec": {"template": {"spec": {"containers": [
            {"name": "x"}, {"name": "x"}]}}}}, FAKE)


# -- Update ----------------------------------------------------------------------------------------

def test_create_records_an_update_entry_without_server_fields_or_status() -> None:
    obj = deployment()
    obj["metadata"].update(uid="u", resourceVersion="1", generation=1)
    obj["status"] = {"replicas": 2}
    out = mf.update(None, obj, FAKE, "apps/v1", "kubectl-create", clock())
    [entry] = out["metadata"]["managedFields"]
    assert {k: v for k, v in entry.items() if k != "fieldsV1"} == {
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1",
        "time": T0, "fieldsType": "FieldsV1"}
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {'k:{"name":"web"}': {
                ".": {}, "f:image": {}, "f:name": {}, "f:ports": {
                    ".": {}, 'k:{"containerPort":80,"protocol":"TCP"}': {
                        ".": {}, "f:containerPort": {}, "f:protocol": {}}}}}}}}}


def test_an_update_takes_the_fields_it_changes_and_nothing_else() -> None:
    created = mf.update(None, deployment(), FAKE, "apps/v1", "creator", clock())
    changed = copy.deepcopy(created)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    out = mf.update(created, changed, FAKE, "apps/v1", "kubectl-set", clock(T1))
    got = entries(out)
    assert paths(got[("kubectl-set", "Update", "")]) == [
        '.spec.template.spec.containers[name="web"].image']
    assert '.spec.template.spec.containers[name="web"].image' not in \
        paths(got[("creator", "Update", "")])
    times = {e["manager"]: e["time"] for e in out["metadata"]["managedFields"]}
    assert times == {"creator": T0, "kubectl-set": T1}
    # a write that changes nothing changes no entry (not even a time)
    assert mf.update(out, copy.deepcopy(out), FAKE, "apps/v1", "kubectl-set",
                     clock("2030-01-01T00:00:00Z")) == out


def test_removed_fields_leave_every_entry_including_the_writers() -> None:
    created = mf.update(None, deployment(tier="front"), FAKE, "apps/v1", "a", clock())
    labelled = copy.deepcopy(created)
    labelled["metadata"]["labels"]["tier"] = "back"
    labelled = mf.update(created, labelled, FAKE, "apps/v1", "b", clock())
    removed = copy.deepcopy(labelled)
    del removed["metadata"]["labels"]["tier"]
    out = entries(mf.update(labelled, removed, FAKE, "apps/v1", "b", clock()))
    assert ("b", "Update", "") not in out
    assert ".metadata.labels.tier" not in paths(out[("a", "Update", "")])


def test_sent_managed_fields_are_taken_reset_or_ignored() -> None:
    created = mf.update(None, deployment(), FAKE, "apps/v1", "a", clock())
    sent = copy.deepcopy(created)
    sent["metadata"]["managedFields"][0]["manager"] = "renamed"
    assert set(entries(mf.update(created, sent, FAKE, "apps/v1", "x", clock()))) == {
        ("renamed", "Update", "")}
    sent["metadata"]["managedFields"] = []
    assert "managedFields" not in mf.update(created, sent, FAKE, "apps/v1", "x",
                                            clock())["metadata"]
    sent["metadata"]["managedFields"] = [{"manager": "bad"}]  # undecodable: the live ones
    assert set(entries(mf.update(created, sent, FAKE, "apps/v1", "x", clock()))) == {
        ("a", "Update", "")}
    untracked = deployment()
    assert "managedFields" not in mf.update(untracked, deployment(replicas=5), FAKE, "apps/v1",
                                            "x", clock())["metadata"]


def test_the_scale_subresource_owns_only_replicas() -> None:
    created = mf.update(None, deployment(), FAKE, "apps/v1", "a", clock())
    scaled = copy.deepcopy(created)
    scaled["spec"]["replicas"] = 5
    out = entries(mf.update(created, scaled, FAKE, "apps/v1", "kubectl", clock(), "scale"))
    assert out[("kubectl", "Update", "scale")] == {"f:spec": {"f:replicas": {}}}
    assert ".spec.replicas" not in paths(out[("a", "Update", "")])


def test_update_entries_are_capped_at_ten() -> None:
    obj = mf.update(None, deployment(), FAKE, "apps/v1", "a", clock())
    for i in range(12):
        new = copy.deepcopy(obj)
        new["metadata"]["labels"][f"l{i}"] = "x"
        obj = mf.update(obj, new, FAKE, "apps/v1", f"m{i:02}", clock(f"2024-01-01T00:{i:02}:00Z"))
    managers = [e["manager"] for e in obj["metadata"]["managedFields"]]
    assert len(managers) == 10 and "ancient-changes" in managers and "m11" in managers


def test_managers_come_from_fieldmanager_or_the_user_agent() -> None:
    assert mf.manager_for("", "kubectl/v1.37.1 (linux/amd64) kubernetes/abc") == "kubectl"
    assert mf.manager_for("", "OpenAPI-Generator/37.0.3/python") == "OpenAPI-Generator"
    assert mf.manager_for("mine", "kubectl/v1.20") == "mine"
    assert mf.manager_for("", "a\tb/1") == "ab"


# -- Apply -----------------------------------------------------------------------------------------

def config(**spec: object) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": dict(spec)}


def test_apply_creates_and_a_second_identical_apply_changes_nothing() -> None:
    created = mf.apply(None, config(replicas=3), FAKE, "apps/v1", "Deployment", "kubectl",
                       False, clock())
    assert created["spec"] == {"replicas": 3}
    assert entries(created) == {("kubectl", "Apply", ""): {"f:spec": {"f:replicas": {}}}}
    again = mf.apply(created, config(replicas=3), FAKE, "apps/v1", "Deployment", "kubectl",
                     False, clock(T1))
    assert again == created


def test_an_applier_that_sets_only_the_name_owns_nothing() -> None:
    ns = shapes.for_kind(schema, "v1", "Namespace")
    cfg = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}
    created = mf.apply(None, cfg, ns, "v1", "Namespace", "kubectl", False, clock())
    assert created == cfg  # no managedFields: nothing but the name was applied


def test_a_conflict_names_the_manager_and_force_takes_the_field_over() -> None:
    live = mf.update(None, deployment(), FAKE, "apps/v1", "kubectl-client-side-apply", clock())
    with pytest.raises(mf.ApplyConflict) as err:
        mf.apply(live, config(replicas=5), FAKE, "apps/v1", "Deployment", "ssa", False, clock())
    assert (err.value.code, err.value.reason) == (409, "Conflict")
    assert err.value.message == ('Apply failed with 1 conflict: conflict with '
                                 '"kubectl-client-side-apply" using apps/v1: .spec.replicas')
    assert err.value.causes == [{"reason": "FieldManagerConflict", "field": ".spec.replicas",
                                 "message": 'conflict with "kubectl-client-side-apply" using '
                                            "apps/v1"}]
    forced = mf.apply(live, config(replicas=5), FAKE, "apps/v1", "Deployment", "ssa", True,
                      clock(T1))
    got = entries(forced)
    assert forced["spec"]["replicas"] == 5
    assert got[("ssa", "Apply", "")] == {"f:spec": {"f:replicas": {}}}
    assert ".spec.replicas" not in paths(got[("kubectl-client-side-apply", "Update", "")])
    # the same value is no conflict: the field is shared
    shared = mf.apply(live, config(replicas=2), FAKE, "apps/v1", "Deployment", "ssa", False,
                      clock())
    assert ".spec.replicas" in paths(entries(shared)[("kubectl-client-side-apply", "Update", "")])


def test_several_conflicts_are_listed_by_manager() -> None:
    live = mf.update(None, deployment(), FAKE, "apps/v1", "a", clock())
    changed = copy.deepcopy(live)
    changed["spec"]["replicas"] = 4
    live = mf.update(live, changed, FAKE, "apps/v1", "b", clock())
    cfg = config(replicas=7, paused=True)
    cfg["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(mf.ApplyConflict) as err:
        mf.apply(live, cfg, FAKE, "apps/v1", "Deployment", "ssa", False, clock())
    assert err.value.message == ('Apply failed with 2 conflicts: conflicts with "a" using '
                                 'apps/v1:\n- .metadata.labels.app\nconflicts with "b" using '
                                 "apps/v1:\n- .spec.replicas")


def test_fields_no_longer_applied_are_pruned_unless_someone_else_owns_them() -> None:
    cfg = config(replicas=3, paused=True)
    cfg["metadata"]["labels"] = {"a": "1", "b": "2"}
    live = mf.apply(None, cfg, FAKE, "apps/v1", "Deployment", "ssa", False, clock())
    live = mf.apply(live, {"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": "web", "labels": {"b": "2"}}}, FAKE, "apps/v1",
                    "Deployment", "co-owner", False, clock())
    smaller = config(replicas=3)
    smaller["metadata"]["labels"] = {"a": "1"}
    out = mf.apply(live, smaller, FAKE, "apps/v1", "Deployment", "ssa", False, clock(T1))
    assert "paused" not in out["spec"]              # only ssa owned it: gone
    assert out["metadata"]["labels"] == {"a": "1", "b": "2"}   # co-owned: kept
    assert paths(entries(out)[("ssa", "Apply", "")]) == [".metadata.labels.a", ".spec.replicas"]


def test_kubectl_takes_over_what_its_client_side_apply_owned() -> None:
    manifest = deployment(replicas=3)
    annotation = json.dumps(manifest, sort_keys=True, separators=(",", ":")) + "\n"
    obj = copy.deepcopy(manifest)
    obj["metadata"]["annotations"] = {mf.LAST_APPLIED: annotation}
    live = mf.update(None, obj, FAKE, "apps/v1", "kubectl-client-side-apply", clock())
    cfg = deployment(replicas=4)
    with pytest.raises(mf.ApplyConflict):  # another manager name gets the conflict
        mf.apply(live, cfg, FAKE, "apps/v1", "Deployment", "other", False, clock())
    out = mf.apply(live, cfg, FAKE, "apps/v1", "Deployment", "kubectl", False, clock())
    assert out["spec"]["replicas"] == 4
    assert json.loads(out["metadata"]["annotations"][mf.LAST_APPLIED]) == cfg  # kept current
    # a field whose live value left the annotation's is someone else's now: a conflict
    drifted = copy.deepcopy(live)
    drifted["spec"]["replicas"] = 9
    drifted = mf.update(live, drifted, FAKE, "apps/v1", "kubectl-client-side-apply", clock())
    with pytest.raises(mf.ApplyConflict):
        mf.apply(drifted, cfg, FAKE, "apps/v1", "Deployment", "kubectl", False, clock())


def test_before_the_first_apply_an_untracked_object_is_owned_by_before_first_apply() -> None:
    with pytest.raises(mf.ApplyConflict, match='conflict with "before-first-apply" using '
                                               "apps/v1: .spec.replicas"):
        mf.apply(deployment(), config(replicas=9), FAKE, "apps/v1", "Deployment", "ssa", False,
                 clock())


@pytest.mark.parametrize("cfg, message", [
    ({"apiVersion": "v1", "kind": "Pod"}, "invalid object type: /v1, Kind=Pod"),
    ({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"managedFields": []}},
     "metadata.managedFields must be nil"),
])
def test_apply_refuses_other_kinds_and_managed_fields(cfg: dict, message: str) -> None:
    with pytest.raises(PatchError) as err:
        mf.apply(None, cfg, FAKE, "apps/v1", "Deployment", "ssa", False, clock())
    assert (err.value.code, err.value.message) == (400, message)


# -- the real schema -------------------------------------------------------------------------------

def test_the_real_schema_keys_containers_ports_env_and_sets() -> None:
    cfg = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "finalizers": ["example.com/x"]},
           "spec": {"template": {"spec": {"containers": [
               {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
                "env": [{"name": "A", "value": "1"}]}]}}}}
    out = mf.apply(None, cfg, REAL, "apps/v1", "Deployment", "ssa", False, clock())
    assert paths(entries(out)[("ssa", "Apply", "")]) == [
        '.metadata.finalizers[="example.com/x"]',
        '.spec.template.spec.containers[name="web"]',
        '.spec.template.spec.containers[name="web"].image',
        '.spec.template.spec.containers[name="web"].name',
        '.spec.template.spec.containers[name="web"].env[name="A"]',
        '.spec.template.spec.containers[name="web"].env[name="A"].name',
        '.spec.template.spec.containers[name="web"].env[name="A"].value',
        # a port without a protocol is keyed as TCP, the protocol's default
        '.spec.template.spec.containers[name="web"].ports[containerPort=80,protocol="TCP"]',
        '.spec.template.spec.containers[name="web"].ports[containerPort=80,protocol="TCP"]'
        ".containerPort"]
    live = copy.deepcopy(out)
    live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = "TCP"  # defaulted
    cfg["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 80},
                                                                 {"containerPort": 81}]
    again = mf.apply(live, cfg, REAL, "apps/v1", "Deployment", "ssa", False, clock())
    assert again["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 81}]


def test_service_ports_are_keyed_by_port_and_protocol() -> None:
    svc = shapes.for_kind(schema, "v1", "Service")
    ports = svc.child("spec").child("ports")
    assert (ports.list_type, ports.keys) == ("map", ("port", "protocol"))
    owned = typed.to_set({"spec": {"ports": [{"port": 53, "protocol": "UDP"},
                                             {"port": 53, "protocol": "TCP"}]}}, svc)
    assert len([p for p in owned.paths() if len(p) == 3]) == 2
