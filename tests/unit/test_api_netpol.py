"""NetworkPolicy (networking.k8s.io/v1) in the API: upstream's defaults and validation messages
(testbed/api/netpol.py), storage, watch and generations through the API server, the
kubernetes.io/metadata.name label of every Namespace, the printer's columns, kubectl describe's
layout (testbed/kubectl/format.py), and `testbed get/describe netpol`."""

from __future__ import annotations

import io
import ipaddress
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from testbed.api.admission import Api
from testbed.api.allocators import ServiceAllocator
from testbed.api.failures import ApiFailure
from testbed.api.manifests import check_object
from testbed.api.netpol import parse_cidr, strictly_within
from testbed.api.printers import printer_for
from testbed.api.resources import lookup, resource_for
from testbed.api.store import Store
from testbed.apiclient import Client
from testbed.kubectl.format import describe, format_table, go_time, tabwrite
from testbed.kubectl.verbs import run_kubectl

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LABEL = "kubernetes.io/metadata.name"
CIDR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
PORT_RANGE = "must be between 1 and 65535, inclusive"


def policy(spec: Any = None, name: str = "np", **meta: Any) -> dict:
    out: dict = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": name, **meta}}
    if spec is not None:
        out["spec"] = spec
    return out


def ok(obj: dict) -> dict:
    out, problems = check_object(obj)
    assert problems == [] and out is not None, [str(p) for p in problems]
    return out


def errors(spec: Any, **meta: Any) -> list[tuple[str, str]]:
    out, problems = check_object(policy(spec, **meta))
    assert out is None
    return [(p.field, p.message) for p in problems]


# -- defaults ------------------------------------------------------------------------------------

def test_an_empty_policy_selects_every_pod_for_ingress() -> None:
    out = ok(policy())
    assert out["metadata"]["namespace"] == "default"
    assert out["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert ok(policy({"podSelector": None}))["spec"] == out["spec"]


@pytest.mark.parametrize("spec,types", [
    ({}, ["Ingress"]),
    ({"ingress": [{}]}, ["Ingress"]),
    ({"egress": [{}]}, ["Ingress", "Egress"]),
    ({"egress": []}, ["Ingress"]),                        # len(egress) == 0: no Egress
    ({"egress": [{}], "policyTypes": []}, ["Ingress", "Egress"]),   # empty is defaulted too
    ({"egress": [{}], "policyTypes": ["Egress"]}, ["Egress"]),      # given: kept as it is
    ({"policyTypes": ["Egress", "Ingress"]}, ["Egress", "Ingress"]),
])
def test_policy_types_default_as_upstream(spec: dict, types: list[str]) -> None:
    assert ok(policy(spec))["spec"]["policyTypes"] == types


def test_port_protocol_defaults_to_tcp_and_unset_fields_are_not_stored() -> None:
    out = ok(policy({
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"ports": [{"port": 80}, {"port": "http", "protocol": "UDP"},
                               {"protocol": "SCTP"}, {"port": 8000, "endPort": 8080},
                               {"port": None, "endPort": None}],
                     "from": None}],
        "egress": [{"to": [{"podSelector": None, "namespaceSelector": {}},
                           {"ipBlock": {"cidr": "10.0.0.0/8", "except": []}}],
                    "ports": []}]}))
    assert out["spec"] == {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"ports": [{"port": 80, "protocol": "TCP"},
                               {"port": "http", "protocol": "UDP"}, {"protocol": "SCTP"},
                               {"port": 8000, "endPort": 8080, "protocol": "TCP"},
                               {"protocol": "TCP"}]}],
        "egress": [{"to": [{"namespaceSelector": {}}, {"ipBlock": {"cidr": "10.0.0.0/8"}}]}],
        "policyTypes": ["Ingress", "Egress"]}


def test_every_peer_form_is_valid() -> None:
    peers = [{"podSelector": {}}, {"namespaceSelector": {}},
             {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                                                    "values": ["a", "b"]}]},
              "namespaceSelector": {"matchLabels": {LABEL: "other"}}},
             {"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.0/24",
                                                              "10.244.2.7/32"]}},
             {"ipBlock": {"cidr": "2001:db8::/64", "except": ["2001:db8::/96"]}},
             {"ipBlock": {"cidr": "10.0.0.1/8"}},        # host bits: not strict upstream
             {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]
    out = ok(policy({"ingress": [{"from": peers}], "egress": [{"to": peers}]}))
    assert out["spec"]["ingress"][0]["from"] == peers == out["spec"]["egress"][0]["to"]


# -- validation: upstream's words ------------------------------------------------------------------

ING = "spec.ingress[0]"


@pytest.mark.parametrize("spec,want", [
    # policyTypes
    ({"policyTypes": ["Ingress", "Foo"]},
     [("spec.policyTypes[1]", 'Unsupported value: "Foo": supported values: "Ingress", "Egress"')]),
    ({"policyTypes": ["Ingress", "Egress", "Ingress"]},
     [("spec.policyTypes", 'Invalid value: ["Ingress","Egress","Ingress"]: may not specify more '
                           "than two policyTypes")]),
    ({"policyTypes": ["ingress"]},
     [("spec.policyTypes[0]", 'Unsupported value: "ingress": supported values: "Ingress", '
                              '"Egress"')]),
    # ports
    ({"ingress": [{"ports": [{"protocol": "ICMP"}]}]},
     [(f"{ING}.ports[0].protocol", 'Unsupported value: "ICMP": supported values: "TCP", "UDP", '
                                   '"SCTP"')]),
    ({"ingress": [{"ports": [{"protocol": ""}]}]},
     [(f"{ING}.ports[0].protocol", 'Unsupported value: "": supported values: "TCP", "UDP", '
                                   '"SCTP"')]),
    ({"ingress": [{"ports": [{"port": 0}, {"port": 65536}]}]},
     [(f"{ING}.ports[0].port", f"Invalid value: 0: {PORT_RANGE}"),
      (f"{ING}.ports[1].port", f"Invalid value: 65536: {PORT_RANGE}")]),
    ({"egress": [{"ports": [{"port": "-Web--Port-name-too-long"}]}]},
     [("spec.egress[0].ports[0].port", f'Invalid value: "-Web--Port-name-too-long": {m}')
      for m in ("must be no more than 15 characters",
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "must not contain consecutive hyphens", "must not begin or end with a hyphen")]),
    ({"ingress": [{"ports": [{"port": "80"}]}]},        # a string is a name, even of digits
     [(f"{ING}.ports[0].port", 'Invalid value: "80": must contain at least one letter (a-z)')]),
    ({"ingress": [{"ports": [{"port": 90, "endPort": 80}]}]},
     [(f"{ING}.ports[0].endPort", "Invalid value: 80: must be greater than or equal to `port`")]),
    ({"ingress": [{"ports": [{"port": 90, "endPort": 70000}]}]},
     [(f"{ING}.ports[0].endPort", f"Invalid value: 70000: {PORT_RANGE}")]),
    ({"ingress": [{"ports": [{"port": 90, "endPort": 0}]}]},
     [(f"{ING}.ports[0].endPort", "Invalid value: 0: must be greater than or equal to `port`"),
      (f"{ING}.ports[0].endPort", f"Invalid value: 0: {PORT_RANGE}")]),
    ({"ingress": [{"ports": [{"port": "http", "endPort": 80}]}]},
     [(f"{ING}.ports[0].endPort", "Invalid value: 80: may not be specified when `port` is "
                                  "non-numeric")]),
    ({"ingress": [{"ports": [{"endPort": 80}]}]},
     [(f"{ING}.ports[0].endPort", "Invalid value: 80: may not be specified when `port` is not "
                                  "specified")]),
    # peers
    ({"ingress": [{"from": [{}]}]}, [(f"{ING}.from[0]", "Required value: must specify a peer")]),
    ({"egress": [{"to": [{"podSelector": None}]}]},
     [("spec.egress[0].to[0]", "Required value: must specify a peer")]),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
     [(f"{ING}.from[0]", "Forbidden: may not specify both ipBlock and another peer")]),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {},
                          "namespaceSelector": {}}]}]},
     [("spec.egress[0].to[0]", "Forbidden: may not specify both ipBlock and another peer")]),
    # ipBlock
    ({"ingress": [{"from": [{"ipBlock": {}}]}]},
     [(f"{ING}.from[0].ipBlock.cidr", "Required value")]),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "", "except": ["x"]}}]}]},
     [(f"{ING}.from[0].ipBlock.cidr", "Required value")]),   # the excepts are not looked at
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0", "except": ["x"]}}]}]},
     [(f"{ING}.from[0].ipBlock.cidr", f'Invalid value: "10.0.0.0": {CIDR}')]),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]},
     [(f"{ING}.from[0].ipBlock.cidr", f'Invalid value: "10.0.0.0/33": {CIDR}')]),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [
        "10.1.0.0/16", "10.0.0.0/8", "11.0.0.0/16", "10.1.0.0", "2001:db8::/96",
        "10.2.0.0/16"]}}]}]},
     [(f"{ING}.from[0].ipBlock.except[1]", 'Invalid value: "10.0.0.0/8": must be a strict '
                                           "subset of `cidr`"),
      (f"{ING}.from[0].ipBlock.except[2]", 'Invalid value: "11.0.0.0/16": must be a strict '
                                           "subset of `cidr`"),
      (f"{ING}.from[0].ipBlock.except[3]", f'Invalid value: "10.1.0.0": {CIDR}'),
      (f"{ING}.from[0].ipBlock.except[4]", 'Invalid value: "2001:db8::/96": must be a strict '
                                           "subset of `cidr`")]),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/8"]}}]}]},
     [("spec.egress[0].to[0].ipBlock.except[0]", 'Invalid value: "10.0.0.0/8": must be a '
                                                 "strict subset of `cidr`")]),
    # selectors, as every metav1.LabelSelector
    ({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
     [("spec.podSelector.matchExpressions[0].values", "Required value: must be specified when "
                                                      "`operator` is 'In' or 'NotIn'")]),
    ({"ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"a b": "c"}}}]}]},
     [(f"{ING}.from[0].namespaceSelector.matchLabels", 'Invalid value: "a b": name part must '
       "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
       "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
       "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")]),
    # unknown fields at every level
    ({"ingress": [{"form": []}]}, [(f"{ING}.form", 'unknown field "form"')]),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "excepts": []}}]}]},
     [("spec.egress[0].to[0].ipBlock.excepts", 'unknown field "excepts"')]),
    ({"ingress": [{"ports": [{"port": 80, "end": 90}]}]},
     [(f"{ING}.ports[0].end", 'unknown field "end"')]),
    ({"selector": {}}, [("spec.selector", 'unknown field "selector"')]),
])
def test_validation_messages_are_upstreams(spec: dict, want: list[tuple[str, str]]) -> None:
    assert errors(spec) == want


def test_every_problem_is_reported_in_upstreams_order() -> None:
    found = errors({"policyTypes": ["Sideways"],
                    "egress": [{"to": [{}]}],
                    "ingress": [{"from": [{}], "ports": [{"port": 0}]}],
                    "podSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}},
                   namespace="Bad")
    assert [f for f, _ in found] == [
        "metadata.namespace", "spec.podSelector.matchExpressions[0].operator",
        "spec.ingress[0].ports[0].port", "spec.ingress[0].from[0]", "spec.egress[0].to[0]",
        "spec.policyTypes[0]"]


def test_wrong_shapes_are_refused_without_a_crash() -> None:
    assert errors("x")[0] == ("spec", 'Invalid value: "x": must be an object')
    assert errors({"ingress": {}})[0] == ("spec.ingress", "Invalid value: {}: must be a list")
    assert errors({"ingress": [{"ports": [{"port": True}]}]}) == [
        (f"{ING}.ports[0].port", "Invalid value: true: must be an integer or a port name")]
    assert errors({"ingress": [{"from": [{"ipBlock": {"cidr": 10}}]}]}) == [
        (f"{ING}.from[0].ipBlock.cidr", "Invalid value: 10: must be a string")]
    assert errors({"policyTypes": "Ingress"}) == [
        ("spec.policyTypes", 'Invalid value: "Ingress": must be a list')]
    assert errors({}, name="Not_A_Name")[0][0] == "metadata.name"


@pytest.mark.parametrize("text,want", [
    ("10.0.0.0/8", "10.0.0.0/8"), ("10.1.2.3/8", "10.0.0.0/8"), ("010.001.0.0/016", "10.1.0.0/16"),
    ("0.0.0.0/0", "0.0.0.0/0"), ("192.168.1.7/32", "192.168.1.7/32"),
    ("2001:DB8::1/64", "2001:db8::/64"), ("::/0", "::/0"),
    ("10.0.0.0", None), ("10.0.0.0/33", None), ("10.0.0.0/", None), ("10.0.0.0/+8", None),
    ("10.0.0.256/8", None), ("fe80::1%eth0/64", None), ("2001:db8::/129", None), ("", None),
    (" 10.0.0.0/8", None), (8, None),
])
def test_cidrs_are_read_as_the_api_server_reads_them(text: Any, want: str | None) -> None:
    got = parse_cidr(text)
    assert (None if got is None else str(got)) == want


def test_strictly_within() -> None:
    net = ipaddress.ip_network
    assert strictly_within(net("10.1.0.0/16"), net("10.0.0.0/8"))
    assert not strictly_within(net("10.0.0.0/8"), net("10.0.0.0/8"))
    assert not strictly_within(net("10.0.0.0/8"), net("10.0.0.0/16"))
    assert not strictly_within(net("11.0.0.0/16"), net("10.0.0.0/8"))
    assert not strictly_within(net("::/96"), net("0.0.0.0/0"))


# -- through the API: stored, watched, generations, namespaces -------------------------------------

@pytest.fixture
def api() -> Api:
    out = Api(Store(), ServiceAllocator("10.96.0.0/12"))
    out.ensure_defaults("127.0.0.1", 6443)
    return out


NETPOL = resource_for("NetworkPolicy")
NAMESPACE = resource_for("Namespace")


def test_the_resource_is_upstreams() -> None:
    assert lookup("netpol") is lookup("networkpolicies") is lookup("networkpolicy.networking.k8s.io") \
        is NETPOL
    assert (NETPOL.group_version, NETPOL.plural, NETPOL.namespaced) == (
        "networking.k8s.io/v1", "networkpolicies", True)
    assert NETPOL.categories == () and NETPOL.subresources == ()   # not in "all"; no status
    assert NETPOL.path("x", "np") == "/apis/networking.k8s.io/v1/namespaces/x/networkpolicies/np"


def test_created_with_defaults_generation_and_an_invalid_one_refused(api: Api) -> None:
    stored = api.create(NETPOL, "default", policy({"egress": [{"ports": [{"port": 53}]}]}))
    assert stored["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                              "egress": [{"ports": [{"port": 53, "protocol": "TCP"}]}]}
    assert stored["metadata"]["generation"] == 1 and "status" not in stored
    assert api.get(NETPOL, "default", "np") == stored
    stored["metadata"]["labels"] = {"a": "b"}
    stored = api.replace(NETPOL, "default", "np", stored)
    assert stored["metadata"]["generation"] == 1
    stored["spec"]["policyTypes"] = ["Egress"]
    assert api.replace(NETPOL, "default", "np", stored)["metadata"]["generation"] == 2
    with pytest.raises(ApiFailure) as err:
        api.create(NETPOL, "default", policy({"ingress": [{"from": [{}]}]}, name="bad"))
    assert err.value.code == 422
    assert str(err.value.message) == ('NetworkPolicy "bad" is invalid: spec.ingress[0].from[0]: '
                                      "Required value: must specify a peer")
    with pytest.raises(ApiFailure) as err:
        api.create(NETPOL, "nowhere", policy())
    assert err.value.code == 404


def test_merge_patch_and_server_side_apply_keep_the_defaults(api: Api) -> None:
    api.create(NETPOL, "default", policy({"ingress": [{"ports": [{"port": 80}]}]}))
    patched, _ = api.patch(NETPOL, "default", "np", json.dumps(
        {"spec": {"egress": [{"to": [{"namespaceSelector": {}}]}], "policyTypes": None}}).encode(),
        "application/merge-patch+json", field_manager="test")
    assert patched["spec"]["policyTypes"] == ["Ingress", "Egress"]
    applied, created = api.patch(NETPOL, "default", "applied", json.dumps(policy(
        {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"ports": [{"port": 5432}]}]},
        name="applied")).encode(), "application/apply-patch+yaml", field_manager="me")
    assert created and applied["spec"]["ingress"] == [{"ports": [{"port": 5432,
                                                                  "protocol": "TCP"}]}]
    assert applied["spec"]["policyTypes"] == ["Ingress"]


def test_deleting_a_namespace_deletes_its_policies(api: Api) -> None:
    api.create(NAMESPACE, None, {"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": "x"}})
    api.create(NETPOL, "x", policy())
    api.create(NETPOL, "default", policy())
    api.delete(NAMESPACE, None, "x")
    assert api.list(NETPOL, None)["items"][0]["metadata"]["namespace"] == "default"
    assert len(api.list(NETPOL, None)["items"]) == 1


def test_policies_are_watched(server) -> None:
    client = Client(f"http://127.0.0.1:{server.port}")
    _, version = client.list("NetworkPolicy", "default")
    client.create(policy({"egress": [{}]}))
    client.delete("NetworkPolicy", "default", "np")
    events = []
    for kind, obj in client.watch("NetworkPolicy", "default", since=version, timeout=2):
        events.append((kind, obj["metadata"]["name"], obj["spec"]["policyTypes"]))
        if len(events) == 2:
            break
    assert events == [("ADDED", "np", ["Ingress", "Egress"]),
                      ("DELETED", "np", ["Ingress", "Egress"])]


# -- every Namespace carries kubernetes.io/metadata.name -------------------------------------------

def namespace(name: str, labels: dict | None = None) -> dict:
    meta: dict = {"name": name}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def labels_of(api: Api, name: str) -> dict:
    return api.get(NAMESPACE, None, name)["metadata"]["labels"]


def test_system_namespaces_are_labelled_by_the_same_strategy(api: Api) -> None:
    for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
        stored = api.get(NAMESPACE, None, name)
        assert stored["metadata"]["labels"] == {LABEL: name}
        assert stored["status"] == {"phase": "Active"}


def test_every_way_of_writing_a_namespace_labels_it(api: Api) -> None:
    api.create(NAMESPACE, None, namespace("created"))
    assert labels_of(api, "created") == {LABEL: "created"}
    api.create(NAMESPACE, None, namespace("overridden", {LABEL: "other", "team": "a"}))
    assert labels_of(api, "overridden") == {LABEL: "overridden", "team": "a"}
    stored = api.get(NAMESPACE, None, "created")
    stored["metadata"]["labels"] = {"team": "b"}      # an update that drops it
    assert api.replace(NAMESPACE, None, "created", stored)["metadata"]["labels"] == {
        "team": "b", LABEL: "created"}
    patched, _ = api.patch(NAMESPACE, None, "created", json.dumps(
        {"metadata": {"labels": {LABEL: "sneaky"}}}).encode(), "application/merge-patch+json",
        field_manager="test")
    assert patched["metadata"]["labels"][LABEL] == "created"
    patched, _ = api.patch(NAMESPACE, None, "created", json.dumps(
        {"metadata": {"labels": None}}).encode(), "application/merge-patch+json",
        field_manager="test")
    assert patched["metadata"]["labels"] == {LABEL: "created"}
    applied, _ = api.patch(NAMESPACE, None, "applied", json.dumps(namespace("applied")).encode(),
                           "application/apply-patch+yaml", field_manager="me")
    assert applied["metadata"]["labels"] == {LABEL: "applied"}
    api.apply_batch([namespace("batched", {LABEL: "no"})])
    assert labels_of(api, "batched") == {LABEL: "batched"}


# -- printing --------------------------------------------------------------------------------------

def created(ago: timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_table_is_upstreams() -> None:
    p = printer_for("NetworkPolicy")
    assert [(c.name, c.type, c.priority) for c in p.columns] == [
        ("Name", "string", 0), ("Pod-Selector", "string", 0), ("Age", "string", 0)]
    assert p.columns[1].description == ("podSelector selects the pods to which this "
                                        "NetworkPolicy object applies.")
    web = policy({"podSelector": {"matchLabels": {"app": "web", "tier": "fe"}, "matchExpressions": [
        {"key": "env", "operator": "In", "values": ["prod", "dev"]},
        {"key": "canary", "operator": "DoesNotExist"}]}}, name="web",
        creationTimestamp=created(timedelta(minutes=5)))
    assert p.row(web, NOW) == ["web", "app=web,!canary,env in (dev,prod),tier=fe", "5m"]
    deny = policy({"podSelector": {}}, name="deny", namespace="x",
                  creationTimestamp=created(timedelta(seconds=3)))
    assert p.row(deny, NOW) == ["deny", "<none>", "3s"]
    assert format_table("NetworkPolicy", [web, deny], NOW, all_namespaces=True) == (
        "NAMESPACE   NAME   POD-SELECTOR                                AGE\n"
        "            web    app=web,!canary,env in (dev,prod),tier=fe   5m\n"
        "x           deny   <none>                                      3s\n")


def test_tabwrite_aligns_blocks_as_gos_tabwriter() -> None:
    assert tabwrite("a:\tb\nlonger:\tc\n\td\nbreak\nx:\ty\n") == (
        "a:       b\nlonger:  c\n         d\nbreak\nx:  y\n")
    assert tabwrite("no tabs\n") == "no tabs\n"


def test_go_time() -> None:
    assert go_time("2024-05-01T12:00:00Z") == "2024-05-01 12:00:00 +0000 UTC"
    assert go_time("2024-05-01T14:00:00.250+02:00") == "2024-05-01 12:00:00.25 +0000 UTC"
    assert go_time(None) == "0001-01-01 00:00:00 +0000 UTC"


FULL = policy({
    "podSelector": {"matchLabels": {"role": "db"}},
    "policyTypes": ["Ingress", "Egress"],
    "ingress": [
        {"from": [{"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                  {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                  {"podSelector": {"matchLabels": {"role": "frontend"}}},
                  {"namespaceSelector": {}, "podSelector": {"matchExpressions": [
                      {"key": "app", "operator": "NotIn", "values": ["x"]}]}}],
         "ports": [{"protocol": "TCP", "port": 6379}, {"protocol": "UDP", "port": "dns"},
                   {"protocol": "TCP", "port": 32000, "endPort": 32768}]},
        {}],
    "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                "ports": [{"protocol": "TCP", "port": 5978}, {"protocol": "SCTP"}]}]},
    name="test-network-policy", namespace="default",
    creationTimestamp="2024-05-01T12:00:00Z", labels={"b": "2", "a": "1"},
    annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "hi"})


def test_describe_is_kubectls_layout() -> None:
    assert describe(FULL) == """\
Name:         test-network-policy
Namespace:    default
Created on:   2024-05-01 12:00:00 +0000 UTC
Labels:       a=1
              b=2
Annotations:  note: hi
Spec:
  PodSelector:     role=db
  Allowing ingress traffic:
    To Port: 6379/TCP
    To Port: dns/UDP
    To Port Range: 32000-32768/TCP
    From:
      IPBlock:
        CIDR: 172.17.0.0/16
        Except: 172.17.1.0/24
    From:
      NamespaceSelector: project=myproject
    From:
      PodSelector: role=frontend
    From:
      NamespaceSelector: <none>
      PodSelector: app notin (x)
    ----------
    To Port: <any> (traffic allowed to all ports)
    From: <any> (traffic not restricted by source)
  Allowing egress traffic:
    To Port: 5978/TCP
    To Port: <nil>/SCTP
    To:
      IPBlock:
        CIDR: 10.0.0.0/24
        Except: \n  Policy Types: Ingress, Egress
"""


def test_describe_of_a_default_deny_and_an_egress_only_policy() -> None:
    deny = ok(policy(name="deny", namespace="x", creationTimestamp="2024-05-01T12:00:00Z"))
    assert describe(deny) == """\
Name:         deny
Namespace:    x
Created on:   2024-05-01 12:00:00 +0000 UTC
Labels:       <none>
Annotations:  <none>
Spec:
  PodSelector:     <none> (Allowing the specific traffic to all pods in this namespace)
  Allowing ingress traffic:
    <none> (Selected pods are isolated for ingress connectivity)
  Not affecting egress traffic
  Policy Types: Ingress
"""
    egress = ok(policy({"policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": {}}]}]},
                       annotations={"long": "x" * 150}))
    text = describe(egress)
    assert "  Not affecting ingress traffic\n  Allowing egress traffic:\n" \
           "    To Port: <any> (traffic allowed to all ports)\n    To:\n" \
           "      PodSelector: <none>\n  Policy Types: Egress\n" in text
    assert "Annotations:  long:\n                " + "x" * 138 + "...\n" in text


# -- testbed get / describe netpol -----------------------------------------------------------------

def kubectl(client: Client, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return run_kubectl(list(argv), client, out, err), out.getvalue(), err.getvalue()


def test_testbed_get_and_describe_netpol(server, tmp_path: Path) -> None:
    client = Client(f"http://127.0.0.1:{server.port}")
    manifest = tmp_path / "np.yaml"
    manifest.write_text("""\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: shop}}
    ports: [{port: 80}]
""")
    code, out, err = kubectl(client, "apply", "-f", str(manifest))
    assert (code, out) == (0, "namespace/shop created\n"
                              "networkpolicy.networking.k8s.io/web created\n"), err
    code, out, _ = kubectl(client, "get", "netpol", "-n", "shop")
    assert code == 0 and out.splitlines()[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
    assert out.splitlines()[1].split()[:2] == ["web", "app=web"]
    code, out, _ = kubectl(client, "get", "networkpolicies", "-A")
    assert out.splitlines()[1].split()[:3] == ["shop", "web", "app=web"]
    code, out, _ = kubectl(client, "describe", "netpol", "web", "-n", "shop")
    stored = client.get("NetworkPolicy", "shop", "web")
    assert code == 0 and out == describe(stored)
    assert "      NamespaceSelector: kubernetes.io/metadata.name=shop\n" in out
    assert client.get("Namespace", None, "shop")["metadata"]["labels"] == {LABEL: "shop"}
    code, out, _ = kubectl(client, "get", "netpol", "web", "-n", "shop", "-o", "json")
    assert json.loads(out)["spec"]["ingress"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]
    assert kubectl(client, "delete", "netpol", "web", "-n", "shop")[:2] == (
        0, 'networkpolicy.networking.k8s.io "web" deleted\n')
