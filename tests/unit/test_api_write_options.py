"""Write requests as upstream handles them: dry runs store and allocate nothing, a client
cannot write status through create or the main resource, DeleteOptions are honoured or
refused (never ignored), Namespaces carry their name label."""

from __future__ import annotations

import json
import urllib.request

import pytest

from testbed.api.failures import ApiFailure
from testbed.api.options import delete_options, dry_run
from testbed.api.strategy import qos_class
from testbed.apiclient import ApiError, Client
from tests.unit.conftest import kubectl_runner

SERVICE = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "default"},
           "spec": {"clusterIP": "10.96.0.50", "selector": {"app": "web"},
                    "ports": [{"port": 80}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.127"}]}}}
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
       "spec": {"containers": [{"name": "c", "image": "busybox"}]},
       "status": {"phase": "Running", "podIP": "10.0.0.9"}}


def request(server, method: str, path: str, body=None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_dry_run_create_allocates_and_stores_nothing(server):
    code, shown = request(server, "POST", "/api/v1/namespaces/default/services?dryRun=All",
                          SERVICE)
    assert code == 201 and shown["spec"]["clusterIP"] == "10.96.0.50"
    assert "resourceVersion" not in shown["metadata"]
    assert request(server, "GET", "/api/v1/namespaces/default/services/web")[0] == 404
    code, made = request(server, "POST", "/api/v1/namespaces/default/services", SERVICE)
    assert code == 201 and made["spec"]["clusterIP"] == "10.96.0.50"   # not taken by the dry run


def test_dry_run_update_and_delete_change_nothing(server):
    client = Client(f"http://127.0.0.1:{server.port}")
    made = client.create(SERVICE)
    changed = dict(made, metadata=dict(made["metadata"], labels={"new": "yes"}))
    code, shown = request(server, "PUT", "/api/v1/namespaces/default/services/web?dryRun=All",
                          changed)
    assert code == 200 and shown["metadata"]["labels"] == {"new": "yes"}
    assert client.get("Service", "default", "web")["metadata"].get("labels") is None
    code, _ = request(server, "DELETE", "/api/v1/namespaces/default/services/web",
                      {"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]})
    assert code == 200 and client.get("Service", "default", "web") is not None
    assert request(server, "POST", "/api/v1/namespaces/default/services?dryRun=Some",
                   SERVICE)[1]["message"] == 'dryRun: Unsupported value: "Some": supported ' \
                                            'values: "All"'


def test_status_is_dropped_on_create_and_kept_by_main_resource_updates(server):
    client = Client(f"http://127.0.0.1:{server.port}")
    svc = client.create(SERVICE)
    assert svc["status"] == {"loadBalancer": {}}
    pod = client.create(POD)
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    pod["status"] = {"phase": "Succeeded"}
    assert client.update(pod)["status"]["phase"] == "Pending"
    ns = client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"},
                        "status": {"phase": "Terminating"}})
    assert ns["status"] == {"phase": "Active"}
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "x"}
    ns["metadata"]["labels"] = {"team": "a"}
    assert client.update(ns)["metadata"]["labels"] == {"team": "a",
                                                       "kubernetes.io/metadata.name": "x"}


def test_delete_preconditions_and_orphaning(server):
    client = Client(f"http://127.0.0.1:{server.port}")
    owner = client.create(dict(SERVICE, metadata={"name": "owner", "namespace": "default"},
                               spec={"selector": {"a": "b"}, "ports": [{"port": 80}]}))
    ref = {"apiVersion": "v1", "kind": "Service", "name": "owner",
           "uid": owner["metadata"]["uid"], "controller": True}
    client.create(dict(POD, metadata={"name": "dep", "namespace": "default",
                                      "ownerReferences": [ref]}))
    code, status = request(server, "DELETE", "/api/v1/namespaces/default/services/owner",
                           {"kind": "DeleteOptions", "preconditions": {"uid": "other"}})
    assert code == 409 and "Precondition failed: UID in precondition: other" in status["message"]
    code, _ = request(server, "DELETE",
                      "/api/v1/namespaces/default/services/owner?propagationPolicy=Orphan")
    assert code == 200 and client.get("Service", "default", "owner") is None
    assert client.get("Pod", "default", "dep")["metadata"].get("ownerReferences") == []
    code, status = request(server, "DELETE",
                           "/api/v1/namespaces/default/pods/dep?propagationPolicy=Sideways")
    assert code == 400 and 'Unsupported value: "Sideways"' in status["message"]


@pytest.mark.parametrize("query, body, want", [
    ({}, None, (None, None, False)),
    ({"gracePeriodSeconds": ["5"]}, None, (5, None, False)),
    ({}, {"kind": "DeleteOptions", "gracePeriodSeconds": 0, "propagationPolicy": "Background"},
     (0, "Background", False)),
    ({"dryRun": ["All"]}, None, (None, None, True)),
    ({}, {"orphanDependents": True}, (None, "Orphan", False)),
    ({"gracePeriodSeconds": ["-3"]}, None, (1, None, False)),
])
def test_delete_options_as_upstream_reads_them(query, body, want):
    opts = delete_options(query, body)
    assert (opts.grace, opts.propagation, opts.dry_run) == want


def test_options_refused_rather_than_ignored():
    for query, body in (({"propagationPolicy": ["Foreground"]}, None),
                        ({"gracePeriodSeconds": ["soon"]}, None),
                        ({}, {"orphanDependents": True, "propagationPolicy": "Orphan"}),
                        ({}, ["not", "options"])):
        with pytest.raises(ApiFailure) as err:
            delete_options(query, body)
        assert err.value.code == 400
    assert dry_run({}, {"kind": "CreateOptions", "dryRun": ["All"]})
    assert not dry_run({})


@pytest.mark.parametrize("resources, want", [
    ([{}], "BestEffort"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
    ([{"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}],
     "Guaranteed"),
    ([{"requests": {"cpu": "500m"}, "limits": {"cpu": "1", "memory": "1Gi"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
    ([{"requests": {"cpu": "1"}}], "Burstable"),
])
def test_qos_class(resources, want):
    pod = {"spec": {"containers": [{"name": f"c{i}", "resources": r}
                                   for i, r in enumerate(resources)]}}
    assert qos_class(pod) == want


@pytest.mark.parametrize("version", ["1.37", "1.20"])
def test_kubectl_server_dry_run_stores_nothing(server, tmp_path, version):
    manifest = tmp_path / "svc.yaml"
    manifest.write_text(json.dumps(SERVICE))
    run = kubectl_runner(version, f"http://127.0.0.1:{server.port}", tmp_path / "home")
    for verb in ("apply", "create"):
        out = run(verb, "--dry-run=server", "--validate=false", "-f", str(manifest))
        assert out.returncode == 0 and "(server dry run)" in out.stdout, out.stderr
    client = Client(f"http://127.0.0.1:{server.port}")
    assert client.get("Service", "default", "web") is None
    client.create(SERVICE)
    out = run("delete", "--dry-run=server", "service", "web")
    assert out.returncode == 0 and "(server dry run)" in out.stdout, out.stderr
    assert client.get("Service", "default", "web") is not None


def test_python_client_dry_run(server):
    import kubernetes  # pinned in requirements.txt: missing is a failure, not a skip
    config = kubernetes.client.Configuration()
    config.host = f"http://127.0.0.1:{server.port}"
    core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(config))
    shown = core.create_namespaced_service("default", SERVICE, dry_run="All")
    assert shown.spec.cluster_ip == "10.96.0.50"
    with pytest.raises(kubernetes.client.exceptions.ApiException) as err:
        core.read_namespaced_service("web", "default")
    assert err.value.status == 404
    assert isinstance(ApiError, type)


def test_deletecollection_and_the_deprecated_watch_paths_that_discovery_advertises(server):
    client = Client(f"http://127.0.0.1:{server.port}")
    for name, app in (("a", "web"), ("b", "web"), ("c", "db")):
        client.create(dict(POD, metadata={"name": name, "namespace": "default",
                                          "labels": {"app": app}}))
    code, gone = request(server, "DELETE", "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")
    assert code == 200 and gone["kind"] == "PodList"
    assert sorted(p["metadata"]["name"] for p in gone["items"]) == ["a", "b"]
    assert [p["metadata"]["name"] for p in client.list("Pod", "default")[0]] == ["c"]
    assert request(server, "DELETE", "/api/v1/namespaces")[0] == 405   # no deletecollection
    url = (f"http://127.0.0.1:{server.port}/api/v1/watch/namespaces/default/pods/c"
           "?timeoutSeconds=1")
    with urllib.request.urlopen(url) as resp:
        events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events
            if e["type"] != "BOOKMARK"] == [("ADDED", "c")]


def test_python_client_delete_collection(server):
    import kubernetes  # pinned in requirements.txt: missing is a failure, not a skip
    config = kubernetes.client.Configuration()
    config.host = f"http://127.0.0.1:{server.port}"
    core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(config))
    Client(config.host).create(dict(POD, metadata={"name": "x", "namespace": "default"}))
    core.delete_collection_namespaced_pod("default")
    assert core.list_namespaced_pod("default").items == []
