"""PATCH and server-side apply as real clients use them, against an in-process API server:
kubectl 1.37 and Debian's kubectl 1.20 (client-side and server-side apply and switching between
them, conflicts and --force-conflicts, patch of every type, label, annotate, scale, set image,
rollout restart, edit), the official Python client, and raw HTTP for the answers clients do not
show (415, 404, 201 on apply, 409 on a stale resourceVersion, status and scale, dry runs)."""

from __future__ import annotations

import http.client
import json
import textwrap
import time
from pathlib import Path

import pytest

from tests.unit.conftest import kubectl_runner, start_api

VERSIONS = ["1.37", "1.20"]
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


def manifest(replicas: int = 2, env: tuple[str, ...] = ("A", "B"), image: str = "nginx",
             labels: str = "{app: web, tier: front}") -> str:
    env_text = ", ".join(f'{{name: {e}, value: "{i}"}}' for i, e in enumerate(env))
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
          labels: {labels}
        spec:
          replicas: {replicas}
          selector: {{matchLabels: {{app: web}}}}
          template:
            metadata: {{labels: {{app: web}}}}
            spec:
              containers:
              - name: web
                image: {image}
                ports: [{{containerPort: 80}}]
                env: [{env_text}]
        """)


def call(server, method: str, path: str, body: object = None, content_type: str =
         "application/json", headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
    conn.request(method, path, data, {"Content-Type": content_type, **(headers or {})})
    resp = conn.getresponse()
    out = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, out


def get(server, name: str = "web") -> dict:
    code, obj = call(server, "GET", f"{DEPLOYMENTS}/{name}")
    assert code == 200, obj
    return obj


def managers(obj: dict) -> dict[tuple[str, str, str], dict]:
    return {(e["manager"], e["operation"], e.get("subresource", "")): e["fieldsV1"]
            for e in obj["metadata"].get("managedFields") or []}


def env_names(obj: dict) -> list[str]:
    return [e["name"] for e in obj["spec"]["template"]["spec"]["containers"][0].get("env", [])]


@pytest.fixture
def server(tmp_path: Path):
    srv = start_api(tmp_path)
    yield srv
    srv.stop()


def kubectl(server, tmp_path: Path, version: str):
    run = kubectl_runner(version, f"http://127.0.0.1:{server.port}", tmp_path / "home")

    def ok(*args: str, input: str | None = None, **kw) -> str:
        out = run(*args, input=input, **kw)
        assert out.returncode == 0, out.stderr
        return out.stdout

    ok.run = run  # type: ignore[attr-defined]
    return ok


# -- kubectl ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_client_side_apply_creates_changes_and_removes(server, tmp_path: Path,
                                                       version: str) -> None:
    k = kubectl(server, tmp_path, version)
    assert k("apply", "-f", "-", input=manifest()) == "deployment.apps/web created\n"
    assert k("apply", "-f", "-", input=manifest()) == "deployment.apps/web unchanged\n"
    rv = get(server)["metadata"]["resourceVersion"]
    assert k("apply", "-f", "-", input=manifest(replicas=3, env=("A",), labels="{app: web}")) \
        == "deployment.apps/web configured\n"
    obj = get(server)
    assert obj["metadata"]["resourceVersion"] != rv
    assert obj["spec"]["replicas"] == 3 and env_names(obj) == ["A"]
    assert obj["metadata"]["labels"] == {"app": "web"}   # a removed field goes away
    fields = managers(obj)[("kubectl-client-side-apply", "Update", "")]
    assert "f:replicas" in fields["f:spec"]
    assert "f:kubectl.kubernetes.io/last-applied-configuration" in \
        fields["f:metadata"]["f:annotations"]


@pytest.mark.parametrize("version", VERSIONS)
def test_server_side_apply_conflicts_and_force(server, tmp_path: Path, version: str) -> None:
    k = kubectl(server, tmp_path, version)
    assert k("apply", "--server-side", "-f", "-", input=manifest()) == \
        "deployment.apps/web serverside-applied\n"
    first = get(server)
    assert k("apply", "--server-side", "-f", "-", input=manifest()) == \
        "deployment.apps/web serverside-applied\n"
    assert get(server) == first   # nothing changed, not even managedFields
    assert set(managers(first)) == {("kubectl", "Apply", "")}

    k("scale", "deployment", "web", "--replicas", "5")
    out = k.run("apply", "--server-side", "-f", "-", input=manifest())  # type: ignore[attr-defined]
    assert out.returncode != 0
    assert ('Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" '
            "using apps/v1: .spec.replicas") in out.stderr
    assert get(server)["spec"]["replicas"] == 5
    k("apply", "--server-side", "--force-conflicts", "-f", "-", input=manifest(env=("A",)))
    obj = get(server)
    assert obj["spec"]["replicas"] == 2 and env_names(obj) == ["A"]   # B was pruned
    assert ("kubectl", "Update", "scale") not in managers(obj)

    k("patch", "deployment", "web", "--type", "merge", "-p",
      '{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:2"}]}}}}')
    out = k.run("apply", "--server-side", "-f", "-", input=manifest())  # type: ignore[attr-defined]
    assert out.returncode != 0 and 'conflict with "kubectl-patch" using apps/v1: ' \
        '.spec.template.spec.containers[name="web"].image' in out.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_switching_between_client_and_server_side_apply(server, tmp_path: Path,
                                                       version: str) -> None:
    k = kubectl(server, tmp_path, version)
    k("apply", "-f", "-", input=manifest())
    # kubectl's server-side apply may take over what its client-side apply owned
    k("apply", "--server-side", "-f", "-", input=manifest(replicas=4))
    assert get(server)["spec"]["replicas"] == 4
    k("apply", "-f", "-", input=manifest(replicas=6, env=("A",)))
    obj = get(server)
    assert obj["spec"]["replicas"] == 6 and env_names(obj) == ["A"]
    k("apply", "--server-side", "-f", "-", input=manifest(replicas=1, env=("A",)))
    assert get(server)["spec"]["replicas"] == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_patch_of_every_type(server, tmp_path: Path, version: str) -> None:
    k = kubectl(server, tmp_path, version)
    k("apply", "-f", "-", input=manifest())
    k("patch", "deployment", "web", "-p",
      '{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"C",'
      '"value":"9"}]}]}}}}')
    # strategic: merged by name; without $setElementOrder upstream puts the patch's items first
    assert env_names(get(server)) == ["C", "A", "B"]
    k("patch", "deployment", "web", "--type", "merge", "-p",
      '{"metadata":{"labels":{"tier":null,"new":"yes"}}}')
    assert get(server)["metadata"]["labels"] == {"app": "web", "new": "yes"}
    k("patch", "deployment", "web", "--type", "json", "-p",
      '[{"op":"replace","path":"/spec/replicas","value":7}]')
    assert get(server)["spec"]["replicas"] == 7
    out = k.run("patch", "deployment", "web", "--type", "json",  # type: ignore[attr-defined]
                "-p", '[{"op":"test","path":"/spec/replicas","value":1}]')
    assert out.returncode != 0 and "The request is invalid" in out.stderr
    assert set(managers(get(server))) >= {("kubectl-patch", "Update", "")}


@pytest.mark.parametrize("version", VERSIONS)
def test_label_annotate_set_image_and_rollout_restart(server, tmp_path: Path,
                                                      version: str) -> None:
    k = kubectl(server, tmp_path, version)
    k("apply", "-f", "-", input=manifest())
    assert k("label", "deployment", "web", "color=blue") == "deployment.apps/web labeled\n"
    assert k("annotate", "deployment", "web", "note=hi") == "deployment.apps/web annotated\n"
    assert k("set", "image", "deployment/web", "web=nginx:1.27") == \
        "deployment.apps/web image updated\n"
    assert k("rollout", "restart", "deployment/web") == "deployment.apps/web restarted\n"
    obj = get(server)
    assert obj["metadata"]["labels"]["color"] == "blue"
    assert obj["metadata"]["annotations"]["note"] == "hi"
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert "kubectl.kubernetes.io/restartedAt" in obj["spec"]["template"]["metadata"][
        "annotations"]
    owners = managers(obj)
    assert owners[("kubectl-label", "Update", "")] == {"f:metadata": {"f:labels": {
        "f:color": {}}}}
    assert ("kubectl-set", "Update", "") in owners and ("kubectl-annotate", "Update", "") in owners
    assert ("kubectl-rollout", "Update", "") in owners


@pytest.mark.parametrize("version", VERSIONS)
def test_scale_with_the_controllers_running(tmp_path: Path, version: str) -> None:
    srv = start_api(tmp_path, controllers=True)
    try:
        k = kubectl(srv, tmp_path, version)
        k("apply", "-f", "-", input=manifest(replicas=1))
        assert k("scale", "deployment", "web", "--replicas", "3") == \
            "deployment.apps/web scaled\n"
        deadline = time.monotonic() + 20
        while (get(srv).get("status") or {}).get("replicas") != 3:
            assert time.monotonic() < deadline, get(srv).get("status")
            time.sleep(0.1)
        obj = get(srv)
        assert obj["spec"]["replicas"] == 3
        assert managers(obj)[("kubectl", "Update", "scale")] == {"f:spec": {"f:replicas": {}}}
    finally:
        srv.stop()


@pytest.mark.parametrize("version", VERSIONS)
def test_edit_with_an_editor_that_changes_a_field(server, tmp_path: Path, version: str) -> None:
    k = kubectl(server, tmp_path, version)
    k("apply", "-f", "-", input=manifest())
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/^  replicas: 2$/  replicas: 4/' \"$1\"\n")
    editor.chmod(0o755)
    assert k("edit", "deployment", "web", extra_env={"EDITOR": str(editor)}) == \
        "deployment.apps/web edited\n"
    obj = get(server)
    assert obj["spec"]["replicas"] == 4
    assert "f:replicas" in managers(obj)[("kubectl-edit", "Update", "")]["f:spec"]


# -- the Python client -----------------------------------------------------------------------------

def test_python_client_patches(server) -> None:
    from kubernetes import client

    config = client.Configuration()
    config.host = f"http://127.0.0.1:{server.port}"
    apps = client.AppsV1Api(client.ApiClient(config))
    call(server, "POST", DEPLOYMENTS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                     {"name": "web", "image": "nginx", "env": [{"name": "A", "value": "1"}]}]}}}})
    # a dict goes as a strategic merge patch: env merges by name
    d = apps.patch_namespaced_deployment("web", "default", {"spec": {"template": {"spec": {
        "containers": [{"name": "web", "env": [{"name": "B", "value": "2"}]}]}}}})
    assert [e.name for e in d.spec.template.spec.containers[0].env] == ["B", "A"]
    d = apps.patch_namespaced_deployment("web", "default", [
        {"op": "replace", "path": "/spec/replicas", "value": 4}])
    assert d.spec.replicas == 4
    s = apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 2}})
    assert s.spec.replicas == 2 and apps.read_namespaced_deployment("web", "default").spec \
        .replicas == 2
    assert {(m.manager, m.subresource) for m in apps.read_namespaced_deployment(
        "web", "default").metadata.managed_fields} >= {("OpenAPI-Generator", "scale")}
    applied = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"replicas": 3}}
    with pytest.raises(client.ApiException) as err:
        apps.patch_namespaced_deployment("web", "default", applied, field_manager="script",
                                         _content_type="application/apply-patch+yaml")
    assert err.value.status == 409 and json.loads(err.value.body)["details"]["causes"][0][
        "field"] == ".spec.replicas"
    d = apps.patch_namespaced_deployment("web", "default", applied, field_manager="script",
                                         force=True,
                                         _content_type="application/apply-patch+yaml")
    assert d.spec.replicas == 3


# -- raw HTTP --------------------------------------------------------------------------------------

DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "web", "image": "x"}]}}}}
MERGE = "application/merge-patch+json"
APPLY = "application/apply-patch+yaml"


def test_patch_answers(server) -> None:
    path = f"{DEPLOYMENTS}/web"
    assert call(server, "PATCH", path, {}, MERGE)[0] == 404
    code, out = call(server, "PATCH", path, {}, "application/json")
    assert code == 415 and out["reason"] == "UnsupportedMediaType"
    code, out = call(server, "PATCH", path, "{bad", MERGE)
    assert (code, out["message"]) == (400, "invalid JSON patch")
    code, out = call(server, "PATCH", path, json.dumps(DEPLOYMENT), APPLY)
    assert code == 422 and "fieldManager: Required value" in out["message"]
    code, created = call(server, "PATCH", path + "?fieldManager=me", json.dumps(DEPLOYMENT),
                         APPLY)
    assert code == 201 and created["metadata"]["managedFields"][0]["manager"] == "me"
    code, out = call(server, "PATCH", path + "?force=true", {"spec": {"replicas": 2}}, MERGE)
    assert code == 422 and "force: Forbidden" in out["message"]
    code, out = call(server, "PATCH", path, {"metadata": {"resourceVersion": "1"}}, MERGE)
    assert code == 409 and out["reason"] == "Conflict"
    code, out = call(server, "PATCH", path, {"spec": {"replicas": -1}}, MERGE)
    assert code == 422 and out["reason"] == "Invalid"
    code, out = call(server, "PATCH", path + "?fieldValidation=Strict",
                     {"spec": {"bogus": 1}}, MERGE)
    assert code == 422 and out["message"].startswith(' "" is invalid: patch: Invalid value: ')
    assert 'strict decoding error: unknown field "spec.bogus"' in out["message"]
    code, out = call(server, "PATCH", path, {"spec": {"bogus": 1}}, MERGE)  # Warn: dropped
    assert code == 200 and "bogus" not in out["spec"]
    # dry run: answered, not stored
    code, out = call(server, "PATCH", path + "?dryRun=All", {"spec": {"replicas": 9}}, MERGE)
    assert code == 200 and out["spec"]["replicas"] == 9 and get(server)["spec"]["replicas"] == 1
    code, out = call(server, "PATCH", f"{DEPLOYMENTS}/new?dryRun=All&fieldManager=other",
                     json.dumps({**DEPLOYMENT, "metadata": {"name": "new"}}).encode(), APPLY)
    assert code == 201 and call(server, "GET", f"{DEPLOYMENTS}/new")[0] == 404
    # a JSON apply body is YAML too; apply must name this kind
    code, out = call(server, "PATCH", path + "?fieldManager=me", "kind: Pod\napiVersion: v1\n",
                     APPLY)
    assert (code, out["message"]) == (400, "invalid object type: /v1, Kind=Pod")


def test_status_and_scale_subresources(server) -> None:
    call(server, "POST", DEPLOYMENTS, DEPLOYMENT)
    path = f"{DEPLOYMENTS}/web"
    code, out = call(server, "PATCH", path + "/status?fieldManager=ctl",
                     {"status": {"replicas": 5}, "spec": {"replicas": 7}}, MERGE)
    assert code == 200 and out["status"]["replicas"] == 5 and out["spec"]["replicas"] == 1
    assert managers(out)[("ctl", "Update", "status")] == {"f:status": {"f:replicas": {}}}
    out["status"]["replicas"] = 6
    code, out = call(server, "PUT", path + "/status?fieldManager=kubelet", out)
    assert code == 200 and out["status"]["replicas"] == 6
    assert managers(out)[("kubelet", "Update", "status")] == {"f:status": {"f:replicas": {}}}
    assert ("ctl", "Update", "status") not in managers(out)
    code, scale = call(server, "PATCH", path + "/scale", {"spec": {"replicas": 3}}, MERGE)
    assert code == 200 and scale["kind"] == "Scale" and scale["spec"]["replicas"] == 3
    assert get(server)["spec"]["replicas"] == 3
    applied = "apiVersion: autoscaling/v1\nkind: Scale\nspec: {replicas: 4}\n"
    code, out = call(server, "PATCH", path + "/scale?fieldManager=hpa", applied, APPLY)
    assert code == 409 and out["message"] == ('Apply failed with 1 conflict: conflict with '
                                              '"unknown" with subresource "scale" using '
                                              "apps/v1: .spec.replicas")
    code, scale = call(server, "PATCH", path + "/scale?fieldManager=hpa&force=true", applied,
                       APPLY)
    assert code == 200 and get(server)["spec"]["replicas"] == 4
    owners = managers(get(server))
    assert owners[("hpa", "Apply", "scale")] == {"f:spec": {"f:replicas": {}}}
    assert ("unknown", "Update", "scale") not in owners
    code, scale = call(server, "GET", path + "/scale")
    stale = dict(scale, metadata=dict(scale["metadata"], resourceVersion="1"),
                 spec={"replicas": 6})
    assert call(server, "PUT", path + "/scale", stale)[0] == 409
    code, out = call(server, "PUT", path + "/scale", dict(scale, spec={"replicas": 6}))
    assert code == 200 and get(server)["spec"]["replicas"] == 6


def test_a_pods_images_may_change_and_nothing_else_in_its_spec(server) -> None:
    pods = "/api/v1/namespaces/default/pods"
    call(server, "POST", pods, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    smp = "application/strategic-merge-patch+json"
    code, pod = call(server, "PATCH", f"{pods}/p", {"spec": {"containers": [
        {"name": "c", "image": "busybox:2"}]}}, smp)
    assert code == 200 and pod["spec"]["containers"][0]["image"] == "busybox:2"
    code, out = call(server, "PATCH", f"{pods}/p", {"spec": {"containers": [
        {"name": "c", "command": ["sh"]}]}}, smp)
    assert code == 422 and "pod updates may not change fields" in out["message"]


def test_the_testbeds_batch_apply_keeps_managed_fields(server) -> None:
    path = f"{DEPLOYMENTS}/web?fieldManager=me"
    assert call(server, "PATCH", path, json.dumps(DEPLOYMENT), APPLY)[0] == 201
    changed = json.loads(json.dumps(DEPLOYMENT))
    changed["spec"]["replicas"] = 3
    code, out = call(server, "POST", "/testbed/v1/apply", {"items": [changed]})
    assert code == 200, out
    owners = managers(get(server))
    assert owners[("testbed", "Update", "")] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in owners[("me", "Apply", "")]["f:spec"]
