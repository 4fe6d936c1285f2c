"""Discovery: the documents (pure) and real kubectl reading them from an in-process server."""

from __future__ import annotations

import json
import urllib.request

import pytest

from testbed.api import discovery
from testbed.api.resources import RESOURCES
from tests.unit.conftest import kubectl_runner


def test_every_served_resource_and_subresource_is_listed_once():
    listed = []
    for gv in {r.group_version for r in RESOURCES}:
        listed += [e["name"] for e in discovery.resource_list(gv)["resources"]]
    expected = [r.plural for r in RESOURCES] + [f"{r.plural}/{s.name}" for r in RESOURCES
                                               for s in r.subresources]
    assert sorted(listed) == sorted(expected)


def test_scale_is_an_autoscaling_subresource_and_short_names_are_upstreams():
    apps = {e["name"]: e for e in discovery.resource_list("apps/v1")["resources"]}
    assert apps["deployments/scale"] == {"name": "deployments/scale", "singularName": "",
                                         "namespaced": True, "kind": "Scale",
                                         "verbs": ["get", "patch", "update"],
                                         "group": "autoscaling", "version": "v1"}
    core = {e["name"]: e for e in discovery.resource_list("v1")["resources"]}
    assert core["pods"]["shortNames"] == ["po"] and core["pods"]["categories"] == ["all"]
    assert core["services"]["shortNames"] == ["svc"] and core["endpoints"]["shortNames"] == ["ep"]
    assert "deletecollection" not in core["namespaces"]["verbs"]
    assert core["pods/exec"]["kind"] == "PodExecOptions"
    networking = {e["name"]: e for e in discovery.resource_list("networking.k8s.io/v1")[
        "resources"]}
    assert networking["networkpolicies"]["shortNames"] == ["netpol"]
    assert networking["networkpolicies"]["kind"] == "NetworkPolicy"
    assert "categories" not in networking["networkpolicies"]   # upstream: not in "all"
    assert "networkpolicies/status" not in networking


def test_unknown_groups_and_versions_are_none():
    assert discovery.api_group("batch") is None
    assert discovery.resource_list("apps/v2") is None
    assert discovery.api_group("apps")["preferredVersion"] == {"groupVersion": "apps/v1",
                                                               "version": "v1"}


@pytest.mark.parametrize("accept, want", [
    ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
     "v2"),
    ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;profile=nopeer,"
     "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", "v2"),
    ("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList", "v2beta1"),
    ("application/json, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
     None),
    ("application/json;g=apidiscovery.k8s.io;v=v9;as=APIGroupDiscoveryList", None),
    ("", None),
])
def test_aggregated_discovery_is_served_when_asked_for_first(accept, want):
    assert discovery.wants_aggregated(accept) == want


def test_aggregated_lists_groups_with_scope_and_subresources():
    doc = discovery.aggregated(core=False)
    groups = [i["metadata"]["name"] for i in doc["items"]]
    assert groups[0] == "apps" and "discovery.k8s.io" in groups
    apps = doc["items"][0]["versions"][0]["resources"][0]
    assert apps["resource"] == "deployments" and apps["scope"] == "Namespaced"
    assert {"subresource": "scale", "verbs": ["get", "patch", "update"],
            "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}} \
        in apps["subresources"]
    core = discovery.aggregated(core=True)["items"]
    assert core[0]["metadata"] == {} and core[0]["versions"][0]["version"] == "v1"


def test_server_answers_discovery_and_version(server):
    base = f"http://127.0.0.1:{server.port}"
    for path in ("/version", "/version/"):
        with urllib.request.urlopen(base + path) as resp:
            assert json.load(resp)["gitVersion"].startswith("v1.")
    req = urllib.request.Request(base + "/apis", headers={
        "Accept": discovery.aggregated_content_type("v2") + ",application/json"})
    with urllib.request.urlopen(req) as resp:
        assert "as=APIGroupDiscoveryList" in resp.headers["Content-Type"]
        assert json.load(resp)["kind"] == "APIGroupDiscoveryList"
    with urllib.request.urlopen(base + "/apis/apps") as resp:
        assert json.load(resp)["kind"] == "APIGroup"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(base + "/apis/batch/v1")
    assert err.value.code == 404 and json.load(err.value)["kind"] == "Status"


@pytest.mark.parametrize("version", ["1.37", "1.20"])
def test_kubectl_lists_the_servers_resources(server, tmp_path, version):
    run = kubectl_runner(version, f"http://127.0.0.1:{server.port}", tmp_path)
    out = run("api-resources")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]}
    assert rows["pods"][1] == "po" and rows["deployments"][1:3] == ["deploy", "apps/v1"]
    assert rows["nodes"][-2:] == ["false", "Node"]
    assert rows["networkpolicies"][1:] == ["netpol", "networking.k8s.io/v1", "true",
                                           "NetworkPolicy"]
    if version != "1.20":  # --categories came in kubectl 1.21
        out = run("api-resources", "--categories=all", "-o", "name")
        assert sorted(out.stdout.split()) == ["deployments.apps", "pods", "services"]
    out = run("version")
    assert out.returncode == 0 and "Server Version" in out.stdout
