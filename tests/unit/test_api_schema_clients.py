"""Real clients against an in-process API server, for what the schema serves: kubectl 1.20
(client-side validation and explain from the /openapi/v2 protobuf) and kubectl 1.37
(server-side fieldValidation=Strict, explain from /openapi/v3) create and apply manifests
without --validate=false, refuse unknown fields as each version does, and explain fields;
the official Python client creates objects (it checks bodies itself, so it cannot send an
unknown field); NetworkPolicies likewise, through both kubectls and the Python client."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.unit.conftest import kubectl_runner, start_api

VERSIONS = ["1.37", "1.20"]

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: web
        image: agnhost
        args: [netexec, --http-port=8080]
        ports:
        - containerPort: 8080
        readinessProbe:
          httpGet: {{path: /, port: 8080}}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports:
  - port: 80
    targetPort: 8080
"""


@pytest.fixture
def server(tmp_path: Path):
    srv = start_api(tmp_path)
    yield srv
    srv.stop()


def _get(server, path: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}") as resp:
            return json.load(resp)
    except urllib.error.HTTPError as err:
        assert err.code == 404
        return None


@pytest.mark.parametrize("version", VERSIONS)
def test_create_and_apply_validate_against_the_servers_schema(server, tmp_path: Path,
                                                               version: str) -> None:
    run = kubectl_runner(version, f"http://127.0.0.1:{server.port}", tmp_path / "home")
    created = run("create", "-f", "-", input=MANIFEST.format(name="made"))
    assert created.returncode == 0, created.stderr
    assert "deployment.apps/made created" in created.stdout
    applied = run("apply", "-f", "-", input=MANIFEST.format(name="applied"))
    assert applied.returncode == 0, applied.stderr
    assert "service/applied created" in applied.stdout
    for name in ("made", "applied"):
        assert _get(server, f"/apis/apps/v1/namespaces/default/deployments/{name}")
        assert _get(server, f"/api/v1/namespaces/default/services/{name}")


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_fields_are_refused_as_each_version_refuses_them(server, tmp_path: Path,
                                                                 version: str) -> None:
    run = kubectl_runner(version, f"http://127.0.0.1:{server.port}", tmp_path / "home")
    bad = MANIFEST.format(name="bad").replace("  replicas: 2\n", "  replicas: 2\n  foo: 1\n")
    for verb in ("create", "apply"):
        out = run(verb, "-f", "-", input=bad)
        assert out.returncode != 0, out.stdout
        if version == "1.20":  # client-side, from the v2 protobuf
            assert ('error validating data: ValidationError(Deployment.spec): unknown field '
                    '"foo" in io.k8s.api.apps.v1.DeploymentSpec') in out.stderr
        else:  # server-side: kubectl saw fieldValidation in the v3 PATCH operations
            assert "Error from server (BadRequest)" in out.stderr
            assert ('Deployment in version "v1" cannot be handled as a Deployment: strict '
                    'decoding error: unknown field "spec.foo"') in out.stderr
    assert _get(server, "/apis/apps/v1/namespaces/default/deployments/bad") is None


@pytest.mark.parametrize("version", VERSIONS)
def test_explain_prints_fields_and_descriptions(server, tmp_path: Path, version: str) -> None:
    run = kubectl_runner(version, f"http://127.0.0.1:{server.port}", tmp_path / "home")
    ports = run("explain", "pods.spec.containers.ports")
    assert ports.returncode == 0, ports.stderr
    text = " ".join(ports.stdout.split())
    assert "containerPort <integer> -required-" in text
    assert "The port number on the pod's IP (1-65535)." in text
    assert "A port a container listens on." in text
    strategy = run("explain", "deployment.spec.strategy")
    assert strategy.returncode == 0, strategy.stderr
    text = " ".join(strategy.stdout.split())
    assert "How a Deployment replaces its pods." in text
    assert "rollingUpdate <" in text and "Limits of a rolling update" in text
    if version == "1.20":  # the v2 explainer
        assert "RESOURCE: ports <[]Object>" in ports.stdout
    else:  # the v3 explainer names the types
        assert "FIELD: ports <[]ContainerPort>" in ports.stdout
        assert "rollingUpdate <RollingUpdateDeployment>" in text
        assert "ENUM:" in run("explain", "pods.spec.restartPolicy").stdout


POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: client}}
    ports: [{port: 80}]
"""


@pytest.mark.parametrize("version", VERSIONS)
def test_network_policies_validate_and_explain_against_the_servers_schema(
        server, tmp_path: Path, version: str) -> None:
    run = kubectl_runner(version, f"http://127.0.0.1:{server.port}", tmp_path / "home")
    out = run("create", "-f", "-", input=POLICY)
    assert out.returncode == 0, out.stderr
    assert "networkpolicy.networking.k8s.io/web created" in out.stdout
    assert _get(server, "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/web")
    bad = POLICY.replace("name: web", "name: bad").replace("- from:", "- form:")
    out = run("apply", "-f", "-", input=bad)
    assert out.returncode != 0, out.stdout
    if version == "1.20":  # client-side, from the v2 protobuf
        assert ('ValidationError(NetworkPolicy.spec.ingress[0]): unknown field "form" in '
                "io.k8s.api.networking.v1.NetworkPolicyIngressRule") in out.stderr
    else:  # server-side strict decoding
        assert 'strict decoding error: unknown field "spec.ingress[0].form"' in out.stderr
    assert _get(server, "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/bad") \
        is None
    explained = run("explain", "networkpolicy.spec.ingress.from.ipBlock")
    assert explained.returncode == 0, explained.stderr
    text = " ".join(explained.stdout.split())
    assert "cidr <string> -required-" in text and "except <[]string>" in text
    assert "A CIDR, less exceptions; not with the selectors." in text
    if version != "1.20":
        assert "FIELD: ipBlock <IPBlock>" in explained.stdout


def test_the_python_client_creates_network_policies(server) -> None:
    import kubernetes
    config = kubernetes.client.Configuration(host=f"http://127.0.0.1:{server.port}")
    with kubernetes.client.ApiClient(config) as client:
        net = kubernetes.client.NetworkingV1Api(client)
        c = kubernetes.client
        body = c.V1NetworkPolicy(
            metadata=c.V1ObjectMeta(name="py"),
            spec=c.V1NetworkPolicySpec(
                pod_selector=c.V1LabelSelector(match_labels={"app": "py"}),
                egress=[c.V1NetworkPolicyEgressRule(
                    to=[c.V1NetworkPolicyPeer(ip_block=c.V1IPBlock(
                        cidr="10.0.0.0/8", _except=["10.1.0.0/16"]))],
                    ports=[c.V1NetworkPolicyPort(port=53, protocol="UDP"),
                           c.V1NetworkPolicyPort(port=30000, end_port=30100)])]))
        made = net.create_namespaced_network_policy("default", body, field_validation="Strict")
        assert made.spec.policy_types == ["Ingress", "Egress"]     # defaulted by the server
        assert made.spec.egress[0].ports[1].protocol == "TCP"
        assert made.spec.egress[0].to[0].ip_block._except == ["10.1.0.0/16"]
        assert [p.metadata.name for p in
                net.list_namespaced_network_policy("default").items] == ["py"]
        body.metadata.name = "wrong"
        body.spec.egress[0].ports[1].end_port = 29999
        with pytest.raises(kubernetes.client.ApiException) as err:
            net.create_namespaced_network_policy("default", body)
        assert err.value.status == 422
        assert ("spec.egress[0].ports[1].endPort: Invalid value: 29999: must be greater than or "
                "equal to `port`") in json.loads(err.value.body)["message"]


def test_the_python_client_creates_objects(server) -> None:
    import kubernetes  # pinned in requirements.txt: missing is a failure, not a skip
    config = kubernetes.client.Configuration(host=f"http://127.0.0.1:{server.port}")
    with kubernetes.client.ApiClient(config) as client:
        apps = kubernetes.client.AppsV1Api(client)
        c = kubernetes.client
        body = c.V1Deployment(
            metadata=c.V1ObjectMeta(name="py"),
            spec=c.V1DeploymentSpec(
                replicas=1, selector=c.V1LabelSelector(match_labels={"app": "py"}),
                template=c.V1PodTemplateSpec(
                    metadata=c.V1ObjectMeta(labels={"app": "py"}),
                    spec=c.V1PodSpec(containers=[c.V1Container(name="web", image="agnhost")]))))
        made = apps.create_namespaced_deployment("default", body, field_validation="Strict")
        assert made.metadata.name == "py" and made.spec.replicas == 1
        assert made.spec.strategy.type == "RollingUpdate"  # defaulted by the server
        assert [d.metadata.name for d in apps.list_namespaced_deployment("default").items] == [
            "py"]
        with pytest.raises(kubernetes.client.ApiException) as err:
            apps.create_namespaced_deployment("default", body)
        assert err.value.status == 409 and '"reason": "AlreadyExists"' in err.value.body
