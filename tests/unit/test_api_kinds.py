"""Validation and defaults of Service, Deployment, EndpointSlice, Ingress (and old Ingress)."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import pytest

from testbed.api.manifests import check_object, load_manifests
from testbed.spec.source import SpecError


def ok(obj: dict) -> dict:
    out, problems = check_object(obj)
    assert problems == [], [str(p) for p in problems]
    assert out is not None
    return out


def errors(obj: dict) -> list[str]:
    out, problems = check_object(obj)
    assert out is None
    return [f"{p.field}: {p.message}" for p in problems]


def svc(**spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec}


# -- Service -----------------------------------------------------------------------------------

def test_service_defaults() -> None:
    out = ok(svc(selector={"app": "web"}, ports=[{"port": 80}]))
    spec = out["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert spec["sessionAffinity"] == "None"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in spec


def test_service_nodeport_affinity_defaults() -> None:
    out = ok(svc(type="NodePort", sessionAffinity="ClientIP",
                 ports=[{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                        {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30080}]))
    spec = out["spec"]
    assert spec["externalTrafficPolicy"] == "Cluster"
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert spec["ports"][0]["targetPort"] == "http"


def test_headless_without_ports_and_external_name() -> None:
    ok(svc(clusterIP="None", selector={"app": "db"}))
    out = ok(svc(type="ExternalName", externalName="example.com"))
    assert "internalTrafficPolicy" not in out["spec"]


def test_service_errors() -> None:
    found = errors(svc(
        type="ClusterIP", externalTrafficPolicy="Local", loadBalancerSourceRanges=["10.0.0.0/8"],
        sessionAffinity="None", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 5}},
        clusterIP="10.96.0.300",
        ports=[{"name": "http", "port": 80, "nodePort": 30001},
               {"port": 80},
               {"name": "http", "port": 70000, "targetPort": "Bad_Name"}]))
    fields = sorted(f.split(":")[0] for f in found)
    assert fields == sorted([
        "spec.clusterIP", "spec.ports[0].nodePort", "spec.ports[1].name", "spec.ports[1]",
        "spec.ports[2].name", "spec.ports[2].port", "spec.ports[2].targetPort",
        "spec.sessionAffinityConfig", "spec.externalTrafficPolicy",
        "spec.loadBalancerSourceRanges",
    ])
    assert "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'" \
        in found
    assert 'spec.ports[1]: Duplicate value: "80/TCP"' in found
    assert 'spec.ports[2].name: Duplicate value: "http"' in found
    assert "spec.ports[1].name: Required value" in found


def test_service_more_errors() -> None:
    found = errors(svc(type="LoadBalancer", clusterIP="None", healthCheckNodePort=31000,
                       sessionAffinity="ClientIP",
                       sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}},
                       loadBalancerSourceRanges=["10.0.0.0", "1.2.3.0/24"],
                       ports=[{"port": 53, "protocol": "UDP", "nodePort": 31000},
                              ]))
    fields = sorted(f.split(":")[0] for f in found)
    assert fields == ["spec.clusterIP", "spec.healthCheckNodePort",
                      "spec.loadBalancerSourceRanges[0]",
                      "spec.sessionAffinityConfig.clientIP.timeoutSeconds"]
    assert errors(svc(type="Bogus", ports=[{"port": 1}]))[0].startswith(
        'spec.type: Unsupported value: "Bogus": supported values: "ClusterIP", "NodePort"')
    assert errors(svc(selector={"a": "b"})) == ["spec.ports: Required value"]
    numeric = svc(ports=[{"port": 80}])
    numeric["metadata"]["name"] = "1web"
    assert errors(numeric)[0].startswith('metadata.name: Invalid value: "1web": a DNS-1035 label')


# -- Deployment --------------------------------------------------------------------------------

DEPLOY = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
    "spec": {"selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}},
                          "spec": {"containers": [{"name": "c", "image": "nginx",
                                                   "ports": [{"containerPort": 80}]}]}}},
}


def test_deployment_defaults() -> None:
    out = ok(DEPLOY)
    spec = out["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always"
    assert pod["containers"][0]["ports"][0]["protocol"] == "TCP"


def test_deployment_selector_must_match_template() -> None:
    bad = copy.deepcopy(DEPLOY)
    bad["spec"]["selector"] = {"matchLabels": {"app": "api"}}
    bad["spec"]["replicas"] = -1
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    found = errors(bad)
    assert len(found) == 3
    assert found[0] == "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    assert found[1].startswith("spec.template.metadata.labels: Invalid value: ")
    assert found[1].endswith("`selector` does not match template `labels`")
    assert found[2] == ('spec.template.spec.restartPolicy: Unsupported value: "Never": '
                        'supported values: "Always"')
    empty = copy.deepcopy(DEPLOY)
    empty["spec"]["selector"] = {}
    assert errors(empty) == ["spec.selector: Invalid value: {}: empty selector is invalid for "
                             "deployment"]


def test_deployment_template_errors_have_lines(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          selector:
            matchExpressions:
            - {key: app, operator: Within, values: [web]}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers:
              - name: c
                image: nginx
                ports: [{containerPort: 0}]
        """))
    with pytest.raises(SpecError) as info:
        load_manifests([str(path)])
    lines = [str(p).split(": ", 1)[0].rsplit(":", 1)[1] + " " + p.field
             for p in info.value.problems]
    assert lines == ["7 spec.selector.matchExpressions[0].operator",
                     "14 spec.template.spec.containers[0].ports[0].containerPort"]


# -- EndpointSlice -----------------------------------------------------------------------------

def test_endpointslice() -> None:
    out = ok({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
              "addressType": "IPv4",
              "endpoints": [{"addresses": ["10.244.1.2"], "conditions": {"ready": True},
                             "nodeName": "w1", "zone": "a"}],
              "ports": [{"port": 80}]})
    assert out["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]
    found = errors({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": "s"},
                    "endpoints": [{"addresses": ["10.0.0.300"]}, {"addresses": []}],
                    "ports": [{"port": 80}, {"port": 81}]})
    assert [f.split(":")[0] for f in found] == [
        "addressType", "endpoints[1].addresses", "ports[1].name"]


# -- Ingress -----------------------------------------------------------------------------------

def test_ingress_v1() -> None:
    ok({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
        "spec": {"ingressClassName": "nginx",
                 "rules": [{"host": "*.example.com", "http": {"paths": [
                     {"path": "/", "pathType": "Prefix",
                      "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
    found = errors({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": {"name": "i"},
                    "spec": {"rules": [{"host": "Bad_Host", "http": {"paths": [
                        {"path": "api", "pathType": "Regex",
                         "backend": {"service": {"name": "web",
                                                 "port": {"number": 80, "name": "http"}}}},
                        {"path": "/x", "backend": {"service": {"name": "web", "port": {}}}},
                    ]}}]}})
    assert [f.split(":")[0] for f in found] == [
        "spec.rules[0].host", "spec.rules[0].http.paths[0].pathType",
        "spec.rules[0].http.paths[0].backend.service.port",
        "spec.rules[0].http.paths[1].pathType",
        "spec.rules[0].http.paths[1].backend.service.port",
    ]
    assert errors({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                   "metadata": {"name": "i"}, "spec": {}}) == [
        "spec: Invalid value: {}: either `defaultBackend` or `rules` must be specified"]


@pytest.mark.parametrize("version", ["extensions/v1beta1", "networking.k8s.io/v1beta1"])
def test_old_ingress_converted(version: str) -> None:
    out = ok({"apiVersion": version, "kind": "Ingress", "metadata": {"name": "i"},
              "spec": {"backend": {"serviceName": "default", "servicePort": 8080},
                       "rules": [{"http": {"paths": [
                           {"path": "/api", "backend": {"serviceName": "api",
                                                        "servicePort": "http"}}]}}]}})
    assert out["apiVersion"] == "networking.k8s.io/v1"
    spec = out["spec"]
    assert spec["defaultBackend"] == {"service": {"name": "default", "port": {"number": 8080}}}
    assert spec["rules"][0]["http"]["paths"][0] == {
        "path": "/api", "pathType": "ImplementationSpecific",
        "backend": {"service": {"name": "api", "port": {"name": "http"}}}}
