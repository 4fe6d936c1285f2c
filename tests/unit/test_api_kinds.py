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
        'spec.type: Unsupported value: "Bogus": supported values: "ClusterIP", "ExternalName", '
        '"LoadBalancer", "NodePort"')
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
    # the labels as Go's %#v prints a map, as upstream's field error does
    assert found[1] == ("spec.template.metadata.labels: Invalid value: "
                        'map[string]string{"app":"web", "tier":"fe"}: `selector` does not match '
                        "template `labels`")
    assert found[2] == ('spec.template.spec.restartPolicy: Unsupported value: "Never": '
                        'supported values: "Always"')
    empty = copy.deepcopy(DEPLOY)
    empty["spec"]["selector"] = {}
    assert errors(empty) == ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:"
                             "map[string]string(nil), MatchExpressions:"
                             "[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for "
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
    # an invalid selector is "invalid label selector" as well, and no template is matched
    # against it
    assert lines == ["7 spec.selector.matchExpressions[0].operator", "5 spec.selector",
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


# -- rules the review found missing (upstream's core, apps and networking validation) -----------

def pod(**spec: object) -> dict:
    base = {"containers": [{"name": "c", "image": "busybox"}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {**base, **spec}}


def container(**fields: object) -> dict:
    return pod(containers=[{"name": "c", "image": "busybox", **fields}])


def test_service_external_ips_and_ip_families() -> None:
    ok(svc(ports=[{"port": 80}], externalIPs=["203.0.113.7"], ipFamilies=["IPv4"]))
    assert errors(svc(ports=[{"port": 80}], externalIPs=["127.0.0.1", "0.0.0.0"],
                      ipFamilies=["IPv5", "IPv4", "IPv4"], ipFamilyPolicy="Dual")) == [
        'spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range '
        "(127.0.0.0/8, ::1/128)",
        'spec.externalIPs[1]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)',
        'spec.ipFamilies[0]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6"',
        'spec.ipFamilies[2]: Duplicate value: "IPv4"',
        'spec.ipFamilyPolicy: Unsupported value: "Dual": supported values: "PreferDualStack", '
        '"RequireDualStack", "SingleStack"']


def test_container_resources() -> None:
    ok(container(resources={"limits": {"cpu": "1", "memory": "1Gi", "example.com/gpu": 1},
                            "requests": {"cpu": 0.5, "memory": "1024Mi",
                                         "example.com/gpu": 1}}))
    assert errors(container(resources={
        "limits": {"cpu": "1x", "memory": "1Gi", "example.com/gpu": 1, "gpu": 1},
        "requests": {"memory": "1.5Gi", "ephemeral-storage": "-1", "example.com/gpu": 2,
                     "example.com/fpga": 1}})) == [
        "spec.containers[0].resources.limits[cpu]: Invalid value: \"1x\": quantities must match "
        "the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        'spec.containers[0].resources.limits[gpu]: Invalid value: "gpu": must be a standard '
        "resource type or fully qualified",
        'spec.containers[0].resources.limits[gpu]: Invalid value: "gpu": must be a standard '
        "resource for containers",
        'spec.containers[0].resources.requests[ephemeral-storage]: Invalid value: "-1": must be '
        "greater than or equal to 0",
        'spec.containers[0].resources.requests: Invalid value: "1536Mi": must be less than or '
        "equal to memory limit of 1Gi",
        'spec.containers[0].resources.requests: Invalid value: "2": must be equal to '
        "example.com/gpu limit of 1",
        "spec.containers[0].resources.limits: Required value: Limit must be set for non "
        "overcommitable resources"]


def test_volume_mounts_name_the_pods_volumes() -> None:
    ok(pod(volumes=[{"name": "data", "emptyDir": {}}],
           containers=[{"name": "c", "image": "i", "volumeMounts": [
               {"name": "data", "mountPath": "/data"}]}]))
    assert errors(pod(volumes=[{"name": "data", "emptyDir": {}}, {"name": "data"}],
                      containers=[{"name": "c", "image": "i", "volumeMounts": [
                          {"name": "cache", "mountPath": "/d"}, {"name": "data", "mountPath": "/d"},
                          {"mountPath": "/e"}]}])) == [
        'spec.volumes[1].name: Duplicate value: "data"',
        "spec.volumes[1]: Required value: must specify a volume type",
        'spec.containers[0].volumeMounts[0].name: Not found: "cache"',
        'spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/d": must be unique',
        "spec.containers[0].volumeMounts[2].name: Required value",
        'spec.containers[0].volumeMounts[2].name: Not found: ""']


def test_tolerations() -> None:
    ok(pod(tolerations=[{"operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoSchedule"},
                        {"key": "k", "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 30}]))
    assert errors(pod(tolerations=[{"key": "k", "operator": "Like"},
                                   {"operator": "Equal", "value": "v"},
                                   {"key": "k", "value": "v", "tolerationSeconds": 5,
                                    "effect": "Never"}])) == [
        'spec.tolerations[0].operator: Unsupported value: "Like": supported values: "Equal", '
        '"Exists"',
        'spec.tolerations[1].operator: Invalid value: "Equal": operator must be Exists when '
        '`key` is empty, which means "match all values and all keys"',
        'spec.tolerations[2].effect: Invalid value: "Never": effect must be \'NoExecute\' when '
        "`tolerationSeconds` is set",
        'spec.tolerations[2].effect: Unsupported value: "Never": supported values: '
        '"NoSchedule", "PreferNoSchedule", "NoExecute"']


def test_container_ports_zero() -> None:
    ok(container(ports=[{"containerPort": 80, "hostPort": 0}]))
    assert errors(container(ports=[{"containerPort": 0}, {"containerPort": "80"}])) == [
        "spec.containers[0].ports[0].containerPort: Required value",
        'spec.containers[0].ports[1].containerPort: Invalid value: "80": must be an integer']


def test_progress_deadline_outlasts_min_ready() -> None:
    slow = copy.deepcopy(DEPLOY)
    slow["spec"].update(minReadySeconds=10, progressDeadlineSeconds=5)
    assert errors(slow) == ["spec.progressDeadlineSeconds: Invalid value: 5: must be greater "
                            "than minReadySeconds"]
    defaulted = copy.deepcopy(DEPLOY)   # against the default deadline, 600
    defaulted["spec"]["minReadySeconds"] = 600
    assert errors(defaulted) == ["spec.progressDeadlineSeconds: Invalid value: 600: must be "
                                 "greater than minReadySeconds"]


def test_deployment_without_selector_matches_no_template() -> None:
    bare = copy.deepcopy(DEPLOY)
    del bare["spec"]["selector"]
    assert errors(bare) == [
        "spec.selector: Required value",
        "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\", "
        "\"tier\":\"fe\"}: `selector` does not match template `labels`"]


def test_ingress_host_is_a_name() -> None:
    def ingress(host: str) -> dict:
        return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "i"},
                "spec": {"rules": [{"host": host, "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}

    ok(ingress("*.example.com"))
    assert errors(ingress("1.2.3.4")) == [
        'spec.rules[0].host: Invalid value: "1.2.3.4": must be a DNS name, not an IP address']
    [why] = errors(ingress("foo*.example.com"))
    assert "a wildcard DNS-1123 subdomain must start with '*.'" in why
