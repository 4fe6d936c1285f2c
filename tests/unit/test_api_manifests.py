"""Manifest loading: multi-document files, Lists, every problem with file:line:field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from testbed.api.manifests import check_object, load_manifests, validate_object
from testbed.spec.source import SpecError


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def problems(tmp_path: Path, text: str, name: str = "pods.yaml") -> list[str]:
    path = write(tmp_path, name, text)
    with pytest.raises(SpecError) as info:
        load_manifests([path])
    return [str(p).replace(str(tmp_path) + "/", "") for p in info.value.problems]


GOOD_POD = """
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: nginx
    image: nginx
    ports:
    - containerPort: 80
      name: http
    readinessProbe:
      httpGet: {port: http}
"""


def test_good_pod_gets_defaults(tmp_path: Path) -> None:
    [pod] = load_manifests([write(tmp_path, "pod.yaml", GOOD_POD)])
    assert pod["metadata"]["namespace"] == "default"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Always"
    container = spec["containers"][0]
    assert container["ports"][0]["protocol"] == "TCP"
    probe = container["readinessProbe"]
    assert (probe["periodSeconds"], probe["timeoutSeconds"], probe["failureThreshold"],
            probe["successThreshold"]) == (10, 1, 3, 1)
    assert probe["httpGet"] == {"port": "http", "path": "/", "scheme": "HTTP"}


def test_multi_document_and_list(tmp_path: Path) -> None:
    text = GOOD_POD + """
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: shop}
- apiVersion: v1
  kind: Pod
  metadata: {name: db, namespace: shop}
  spec:
    containers: [{name: db, image: postgres}]
"""
    objs = load_manifests([write(tmp_path, "all.yaml", text)])
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("Pod", "web"), ("Namespace", "shop"), ("Pod", "db")]
    assert "namespace" not in objs[1]["metadata"]


def test_port_out_of_range_names_file_line_field(tmp_path: Path) -> None:
    out = problems(tmp_path, """
        apiVersion: v1
        kind: Pod
        metadata: {name: web}
        spec:
          containers:
          - name: a
            image: nginx
          - name: b
            image: nginx
            ports:
            - containerPort: 70000
        """)
    assert out == ["pods.yaml:11: spec.containers[1].ports[0].containerPort: "
                   "Invalid value: 70000: must be between 1 and 65535, inclusive"]


def test_one_bad_document_applies_nothing_and_all_problems_reported(tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", GOOD_POD)
    bad = write(tmp_path, "bad.yaml", """
        apiVersion: v1
        kind: Pod
        metadata: {name: Bad_Name}
        spec:
          restartPolicy: Sometimes
          containers:
          - name: c
        ---
        apiVersion: v1
        kind: Gadget
        metadata: {name: x}
        """)
    with pytest.raises(SpecError) as info:
        load_manifests([good, bad])
    text = str(info.value).replace(str(tmp_path) + "/", "")
    assert 'bad.yaml:3: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain' \
        in text
    assert ('bad.yaml:5: spec.restartPolicy: Unsupported value: "Sometimes": supported values: '
            '"Always", "OnFailure", "Never"') in text
    assert "bad.yaml:7: spec.containers[0].image: Required value" in text
    assert 'bad.yaml:10: kind: no matches for kind "Gadget" in version "v1"' in text


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", "a: [1,\n")
    with pytest.raises(SpecError) as info:
        load_manifests([str(tmp_path / "nope.yaml"), bad])
    assert len(info.value.problems) == 2
    assert "no such file" in str(info.value)
    assert "not valid YAML" in str(info.value)


def test_unknown_fields_reported(tmp_path: Path) -> None:
    out = problems(tmp_path, """
        apiVersion: v1
        kind: Pod
        metadata: {name: web}
        spec:
          nodeNmae: w1
          containers:
          - name: c
            image: nginx
            imgae: typo
        extra: 1
        """)
    assert sorted(out) == sorted([
        'pods.yaml:5: spec.nodeNmae: unknown field "nodeNmae"',
        'pods.yaml:9: spec.containers[0].imgae: unknown field "imgae"',
        'pods.yaml:10: extra: unknown field "extra"',
    ])


def test_duplicate_port_across_containers_names_both(tmp_path: Path) -> None:
    out = problems(tmp_path, """
        apiVersion: v1
        kind: Pod
        metadata: {name: web}
        spec:
          containers:
          - name: app
            image: nginx
            ports: [{containerPort: 8080}]
          - name: sidecar
            image: envoy
            ports:
            - containerPort: 8080
              protocol: TCP
            - {containerPort: 8080, protocol: UDP}
        """)
    assert len(out) == 1
    assert out[0].startswith('pods.yaml:12: spec.containers[1].ports[0].containerPort: '
                             'Duplicate value: "8080/TCP"')
    assert "'sidecar'" in out[0] and "'app'" in out[0]


@pytest.mark.parametrize("name,message", [
    ("a-very-long-port-name", "must be no more than 15 characters"),
    ("HTTP", "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
    ("8080", "must contain at least one letter (a-z)"),
    ("web--http", "must not contain consecutive hyphens"),
    ("-web", "must not begin or end with a hyphen"),
])
def test_port_names(name: str, message: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "i",
                                    "ports": [{"containerPort": 80, "name": name}]}]}}
    found = [str(p) for p in validate_object(pod)]
    assert f'<object>: spec.containers[0].ports[0].name: Invalid value: "{name}": {message}' \
        in found


def test_container_rules() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a.b"},
           "spec": {"hostname": "Web", "nodeSelector": {"zone": "bad value"},
                    "containers": [
                        {"name": "c", "image": 5, "command": ["sh", 1],
                         "env": [{"name": "X=1", "value": "v"}, {"value": "x"}],
                         "ports": [{"containerPort": 80, "name": "web", "protocol": "ICMP"}]},
                        {"name": "c", "image": "i",
                         "ports": [{"containerPort": "80", "name": "web"}],
                         "livenessProbe": {"tcpSocket": {"port": "metrics"},
                                           "periodSeconds": 0, "successThreshold": 2}},
                        {"name": "d", "image": "i", "readinessProbe": {"timeoutSeconds": 1}},
                    ]}}
    found = {f"{p.field}: {p.message.split(':')[0]}" for p in validate_object(pod)}
    assert found == {
        "metadata.namespace: Invalid value",
        "spec.hostname: Invalid value",
        "spec.nodeSelector: Invalid value",
        "spec.containers[0].image: Invalid value",
        "spec.containers[0].command[1]: Invalid value",
        "spec.containers[0].env[0].name: Invalid value",
        "spec.containers[0].env[1].name: Required value",
        "spec.containers[0].ports[0].protocol: Unsupported value",
        "spec.containers[1].name: Duplicate value",
        "spec.containers[1].ports[0].containerPort: Invalid value",
        "spec.containers[1].ports[0].name: Duplicate value",
        "spec.containers[1].livenessProbe.tcpSocket.port: Invalid value",
        "spec.containers[1].livenessProbe.periodSeconds: Invalid value",
        "spec.containers[1].livenessProbe.successThreshold: Invalid value",
        "spec.containers[2].readinessProbe: Required value",
    }


def test_check_object_does_not_touch_input() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    out, found = check_object(pod)
    assert found == [] and out is not None
    assert out["metadata"]["namespace"] == "default"
    assert "namespace" not in pod["metadata"]


def test_wrong_api_version_and_duplicates(tmp_path: Path) -> None:
    out = problems(tmp_path, """
        apiVersion: v2
        kind: Pod
        metadata: {name: p}
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: n}
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: n}
        """)
    assert out[0] == 'pods.yaml:1: apiVersion: no matches for kind "Pod" in version "v2"; ' \
        'supported: v1'
    assert out[1] == ('pods.yaml:11: metadata.name: Duplicate value: "n": Namespace n is also '
                      'defined at pods.yaml:7')
    assert len(out) == 2
