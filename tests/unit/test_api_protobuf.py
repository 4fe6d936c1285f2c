"""api/protobuf.py and protobuf_encode.py: Kubernetes' protobuf bodies as kubectl 1.37 sends them (bytes captured from
the real binary in tests/unit/data/protobuf), decoded into the dict a JSON client sends and
re-encoded byte for byte; the special JSON forms; Go's omitempty; unknown field numbers as
fieldValidation sees them; malformed bodies; and the field tables against the schema."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from testbed.api import protobuf
from testbed.api.fieldvalidation import problems
from testbed.api.protobuf import ProtobufError, decode, decode_message
from testbed.api.protobuf_encode import encode, encode_message
from testbed.api.schema import definitions
from testbed.api.schema_proto import SPECIAL, json_fields, message, messages

DATA = Path(__file__).resolve().parent / "data" / "protobuf"
CORE, META = "io.k8s.api.core.v1.", "io.k8s.apimachinery.pkg.apis.meta.v1."


# -- hand-written wire bytes (independent of the encoder under test) ---------------------------

def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = b""
    while value >= 0x80:
        out, value = out + bytes([value & 0x7F | 0x80]), value >> 7
    return out + bytes([value])


def vi(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def ln(number: int, data: bytes | str) -> bytes:
    data = data.encode() if isinstance(data, str) else data
    return varint(number << 3 | 2) + varint(len(data)) + data


def body(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + ln(1, ln(1, api_version) + ln(2, kind)) + ln(2, raw) + ln(3, "") + ln(4, "")


# -- what kubectl 1.37 sends -------------------------------------------------------------------

KUBECTL_BODIES = {
    # kubectl create namespace x
    "namespace.bin": {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "x"},
                      "spec": {}, "status": {}},
    # kubectl create deployment web --image=nginx --replicas=2 --port=80
    "deployment.bin": {
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                     {"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}],
                      "resources": {}}]}},
                 "strategy": {}},
        "status": {}},
    # kubectl create service clusterip web --tcp=80:8080
    "service-clusterip.bin": {
        "kind": "Service", "apiVersion": "v1", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                 "selector": {"app": "web"}, "type": "ClusterIP"},
        "status": {"loadBalancer": {}}},
    # kubectl create service nodeport np --tcp=80:http --node-port=30080
    "service-nodeport.bin": {
        "kind": "Service", "apiVersion": "v1", "metadata": {"name": "np", "labels": {"app": "np"}},
        "spec": {"ports": [{"name": "80-http", "protocol": "TCP", "port": 80,
                            "targetPort": "http", "nodePort": 30080}],
                 "selector": {"app": "np"}, "type": "NodePort"},
        "status": {"loadBalancer": {}}},
    # kubectl create ingress ing --rule=foo.com/bar*=web:80
    "ingress.bin": {
        "kind": "Ingress", "apiVersion": "networking.k8s.io/v1", "metadata": {"name": "ing"},
        "spec": {"rules": [{"host": "foo.com", "http": {"paths": [{
            "path": "/bar", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]},
        "status": {"loadBalancer": {}}},
    # kubectl debug pod1 --copy-to=pod1-copy --image=busybox --container=dbg
    #   --custom=(env, resources, ports) -- sleep 1d
    "pod-debug-copy.bin": {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "pod1-copy", "namespace": "default"},
        "spec": {
            "containers": [
                {"name": "main", "image": "nginx",
                 "ports": [{"containerPort": 80, "protocol": "TCP"}], "resources": {}},
                {"name": "dbg", "image": "busybox", "command": ["sleep", "1d"],
                 "ports": [{"name": "http", "containerPort": 8080}],
                 "env": [{"name": "A", "value": "B"},
                         {"name": "POD",
                          "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                 "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                               "requests": {"cpu": "250m"}},
                 "terminationMessagePolicy": "File",
                 "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}}}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst", "shareProcessNamespace": True, "securityContext": {}},
        "status": {}},
    # kubectl debug node/n1 --image=busybox
    "pod-debug-node.bin": {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "node-debugger-n1-6984v",
                     "labels": {"app.kubernetes.io/managed-by": "kubectl-debug"}},
        "spec": {"volumes": [{"name": "host-root", "hostPath": {"path": "/"}}],
                 "containers": [{"name": "debugger", "image": "busybox", "resources": {},
                                 "volumeMounts": [{"name": "host-root", "mountPath": "/host"}],
                                 "terminationMessagePolicy": "File"}],
                 "restartPolicy": "Never", "nodeName": "n1", "hostNetwork": True,
                 "hostPID": True, "hostIPC": True, "tolerations": [{"operator": "Exists"}]},
        "status": {}},
}


@pytest.mark.parametrize("name", sorted(KUBECTL_BODIES))
def test_kubectl_bodies_decode_to_what_a_json_client_sends(name: str) -> None:
    data = (DATA / name).read_bytes()
    obj = decode(data)
    assert obj == KUBECTL_BODIES[name]
    assert list(obj) == list(KUBECTL_BODIES[name])  # Go's field order, as JSON writes it
    assert encode(obj) == data  # gogo-protobuf's bytes, exactly


def test_kubectl_bytes_are_read_field_by_field() -> None:
    """The Namespace body, byte by byte: every non-pointer field of ObjectMeta is on the wire
    (empty strings, generation 0, an empty creationTimestamp) and vanishes by omitempty."""
    meta = (ln(1, "x") + ln(2, "") + ln(3, "") + ln(4, "") + ln(5, "") + ln(6, "") + vi(7, 0)
            + ln(8, b""))
    raw = ln(1, meta) + ln(2, b"") + ln(3, ln(1, ""))
    assert (DATA / "namespace.bin").read_bytes() == body("v1", "Namespace", raw)


# -- Go's JSON: omitempty, nil, zero values, the special forms ------------------------------------

def test_zero_values_follow_gos_json() -> None:
    # ContainerPort.containerPort has no omitempty: 0 is written; hostPort (omitempty) is not
    assert decode_message(CORE + "ContainerPort", vi(2, 0) + vi(3, 0)) == {"containerPort": 0}
    # DeploymentSpec.selector is a pointer without omitempty: null; template a struct: {...}
    spec = decode_message("io.k8s.api.apps.v1.DeploymentSpec", b"")
    assert spec == {"selector": None, "template": {"metadata": {}, "spec": {"containers": None}},
                    "strategy": {}}
    # a present pointer keeps its zero value (replicas: 0 is not "unset")
    assert decode_message("io.k8s.api.apps.v1.DeploymentSpec", vi(1, 0))["replicas"] == 0
    # creationTimestamp is omitzero (zero Time: nothing); lastTransitionTime is null
    assert decode_message(META + "ObjectMeta", ln(8, b"")) == {}
    assert decode_message(META + "Condition", b"")["lastTransitionTime"] is None


def test_times_and_micro_times() -> None:
    seconds = 1_700_000_000
    stamp = vi(1, seconds) + vi(2, 123_456_789)
    obj = decode_message(META + "ObjectMeta", ln(8, stamp) + ln(9, stamp))
    # Time drops the nanoseconds, as upstream's Time.Unmarshal does
    assert obj["creationTimestamp"] == obj["deletionTimestamp"] == "2023-11-14T22:13:20Z"
    lease = decode_message("io.k8s.api.coordination.v1.LeaseSpec", ln(3, stamp))
    assert lease == {"acquireTime": "2023-11-14T22:13:20.123456Z"}
    again = encode_message("io.k8s.api.coordination.v1.LeaseSpec", lease)
    assert again == ln(3, vi(1, seconds) + vi(2, 123_456_000))
    assert decode_message(META + "ObjectMeta", ln(8, vi(1, 0)))["creationTimestamp"] == \
        "1970-01-01T00:00:00Z"   # zero seconds on the wire is the epoch, not a zero Time


def test_int_or_string_and_quantities() -> None:
    as_int = ln(4, vi(1, 0) + vi(2, 8080) + ln(3, ""))
    as_str = ln(4, vi(1, 1) + vi(2, 0) + ln(3, "http"))
    assert decode_message(CORE + "ServicePort", as_int)["targetPort"] == 8080
    assert decode_message(CORE + "ServicePort", as_str)["targetPort"] == "http"
    # targetPort is a struct: Go's JSON writes 0 when it is absent
    assert decode_message(CORE + "ServicePort", b"")["targetPort"] == 0
    negative = ln(4, vi(1, 0) + vi(2, -1))
    assert decode_message(CORE + "ServicePort", negative)["targetPort"] == -1
    with pytest.raises(ProtobufError, match="IntOrString.Type 2"):
        decode_message(CORE + "ServicePort", ln(4, vi(1, 2)))
    limits = ln(1, ln(1, "cpu") + ln(2, ln(1, "500m"))) + ln(1, ln(1, "memory") + ln(2, ln(1, "1Gi")))
    assert decode_message(CORE + "ResourceRequirements", limits) == {
        "limits": {"cpu": "500m", "memory": "1Gi"}}
    # a non-pointer Quantity (ResourceFieldSelector.divisor) is "0" when absent, as in JSON
    assert decode_message(CORE + "ResourceFieldSelector", ln(2, "limits.cpu")) == {
        "resource": "limits.cpu", "divisor": "0"}


def test_fields_v1_and_raw_extensions_hold_json() -> None:
    entry = ln(1, "kubectl") + ln(7, ln(1, b'{"f:metadata":{"f:labels":{}}}'))
    assert decode_message(META + "ManagedFieldsEntry", entry) == {
        "manager": "kubectl", "fieldsV1": {"f:metadata": {"f:labels": {}}}}
    inner = encode({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})
    event = decode_message(META + "WatchEvent", ln(1, "ADDED") + ln(2, ln(1, inner)))
    assert event["object"]["metadata"] == {"name": "n"}
    assert decode_message(META + "WatchEvent", ln(2, ln(1, b'{"a":1}')))["object"] == {"a": 1}


def test_merging_packing_and_last_one_wins() -> None:
    # a message field seen twice is merged; a scalar seen twice keeps the last value
    port = ln(1, "a") + vi(3, 80)
    twice = ln(6, port) + ln(1, "c1") + ln(1, "c2")
    assert decode_message(CORE + "Container", twice)["name"] == "c2"
    spec = ln(3, ln(1, ln(1, "x"))) + ln(3, ln(1, ln(3, "ns")))   # template.metadata twice
    meta = decode_message("io.k8s.api.apps.v1.DeploymentSpec", spec)["template"]["metadata"]
    assert meta == {"name": "x", "namespace": "ns"}
    # a repeated number may come packed (one length-delimited run) or one by one
    groups = ln(4, varint(1000) + varint(2000)) + vi(4, 3000)
    context = decode_message(CORE + "PodSpec", ln(14, groups))["securityContext"]
    assert context["supplementalGroups"] == [1000, 2000, 3000]
    with pytest.raises(ProtobufError, match="wrong wire type 2"):
        decode_message(CORE + "ContainerPort", ln(3, varint(80)))   # not repeated: no packing


# -- unknown field numbers -----------------------------------------------------------------------

def test_unknown_numbers_are_reported_like_unknown_json_fields() -> None:
    container = ln(1, "c") + ln(2, "nginx") + vi(99, 1)
    pod = ln(1, ln(1, "p")) + ln(2, ln(2, container)) + ln(77, "x")
    obj = decode(body("v1", "Pod", pod))
    assert obj["spec"]["containers"][0]["(protobuf field 99)"] is None
    assert "(protobuf field 77)" in obj
    # after a message's known fields
    assert problems(obj) == ['unknown field "spec.containers[0].(protobuf field 99)"',
                             'unknown field "(protobuf field 77)"']
    with pytest.raises(ProtobufError, match="no field"):
        encode(obj)


def test_upstream_fields_the_schema_lacks_are_named_as_json_names_them() -> None:
    """spec.hostPID (which kubectl debug node sends) decodes under its JSON name, so that
    fieldValidation words it as for a JSON body."""
    obj = decode((DATA / "pod-debug-node.bin").read_bytes())
    assert problems(obj) == ['unknown field "spec.hostPID"', 'unknown field "spec.hostIPC"']


# -- malformed bodies ----------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "message_part"), [
    (b'{"kind":"Pod"}', "does not appear to be a protobuf message"),
    (b"k8s\x00", "empty body"),
    (b"k8s\x00\x0a\x05\x0a\x02v1", "runs past the end"),
    (b"k8s\x00\x0a\x80", "end of data in a varint"),
    (body("v1", "ConfigMap", b""), 'no kind "ConfigMap" is registered for version "v1"'),
    (body("", "", b""), "'Kind' is missing"),
    (body("v1", "Pod", ln(1, ln(1, b"\xff"))), "invalid UTF-8"),
    (body("v1", "Pod", vi(1, 5)), "wrong wire type 0 for field 1"),
    (body("v1", "Pod", ln(1, b"\x0b")), "unsupported wire type 3"),
    (body("v1", "Pod", b"\x00\x00"), "illegal field number 0"),
])
def test_malformed_bodies_are_refused(data: bytes, message_part: str) -> None:
    with pytest.raises(ProtobufError, match=message_part.replace("(", r"\(")):
        decode(data)


def test_failure_message_names_the_kind() -> None:
    data = body("apps/v1", "Deployment", vi(1, 5))
    with pytest.raises(ProtobufError) as err:
        decode(data)
    assert protobuf.failure_message(data, err.value).startswith(
        'Deployment in version "v1" cannot be handled as a Deployment: ')


def test_delete_options_of_any_group() -> None:
    raw = vi(1, 0) + ln(2, ln(1, "uid-1")) + ln(4, "Background")
    for version in ("v1", "apps/v1", "meta.k8s.io/v1"):
        assert decode(body(version, "DeleteOptions", raw)) == {
            "kind": "DeleteOptions", "apiVersion": version, "gracePeriodSeconds": 0,
            "preconditions": {"uid": "uid-1"}, "propagationPolicy": "Background"}


# -- every message: a full object survives encode and decode ----------------------------------

def sample(name: str, seed: int = 0) -> dict:
    """Message `name` with every field set to a non-zero value (so no default is filled in)."""
    out: dict[str, Any] = {}
    for f in message(name).fields:
        if f.inline:
            out.update(sample(f.type, seed + 1))
            continue
        value = _sample_value(f.type, seed + f.number)
        out[f.json] = [value] if f.repeated else {"k": value} if f.map else value
    return out


def _sample_value(typ: str, seed: int) -> Any:
    simple = {"string": f"s{seed}", "int32": -seed - 1, "int64": 2**40 + seed, "bool": True,
              "bytes": base64.b64encode(bytes([seed % 256, 255])).decode(),
              "time": "2024-05-06T07:08:09Z", "microtime": "2024-05-06T07:08:09.123456Z",
              "intorstring": seed if seed % 2 else f"port{seed}", "quantity": f"{seed}m",
              "fieldsv1": {"f:metadata": {}}, "rawextension": {"kind": "Anything"}}
    return simple[typ] if typ in simple else sample(typ, seed)


@pytest.mark.parametrize("name", sorted(messages()))
def test_every_message_round_trips(name: str) -> None:
    obj = sample(name)
    assert decode_message(name, encode_message(name, obj)) == obj


# -- the tables against the schema ---------------------------------------------------------------

# Fields of the schema with no number upstream: a kind's apiVersion and kind travel in the
# envelope's TypeMeta (runtime.Unknown field 1), not in the kind's message.
NO_NUMBER = {(t.name, f) for t in definitions().values() if t.gvk for f in ("apiVersion", "kind")}
# Schema types upstream encodes in a form of their own (api/protobuf.py decodes them).
OWN_FORM = {META + "FieldsV1": "fieldsv1", "io.k8s.apimachinery.pkg.runtime.RawExtension":
            "rawextension"}


def _proto_field(name: str, path: tuple[int, ...]):  # noqa: ANN202
    for number in path:
        f = message(name).by_number[number]
        name = f.type
    return f


def _shape(f) -> tuple[str, str | None]:  # noqa: ANN001
    """A proto field as the schema would describe it: (type, ref)."""
    if f.repeated or f.map:
        return ("array" if f.repeated else "map", f.type if f.is_message else None)
    kinds = {"int32": "integer", "int64": "integer", "bool": "boolean", "string": "string",
             "time": "string", "microtime": "string", "quantity": "string",
             "intorstring": "int-or-string"}
    if f.type in kinds:
        return (kinds[f.type], None)
    ref = next((k for k, v in OWN_FORM.items() if v == f.type), f.type)
    return ("object", ref)


def test_every_schema_field_has_an_upstream_number_and_shape() -> None:
    missing, mismatched = [], []
    for t in definitions().values():
        if t.name in OWN_FORM:
            assert OWN_FORM[t.name] in SPECIAL
            continue
        numbers = json_fields(t.name)  # KeyError: a schema type upstream has no message for
        for field_name, f in t.fields.items():
            if field_name not in numbers:
                if (t.name, field_name) not in NO_NUMBER:
                    missing.append(f"{t.name}.{field_name}")
                continue
            shape = _shape(_proto_field(t.name, numbers[field_name]))
            ref = f.ref if f.type in ("object", "array", "map") else None
            if shape != (f.type, ref) and not (f.type == "map" and shape[0] == "map"
                                               and ref is None):
                mismatched.append(f"{t.name}.{field_name}: schema {(f.type, ref)}, proto {shape}")
    assert missing == []
    assert mismatched == []


def test_the_schema_is_a_subset_of_upstreams_fields() -> None:
    """The other way: a free-form schema type is decoded from upstream's full message."""
    assert "seLinuxOptions" in json_fields(CORE + "PodSecurityContext")
    assert json_fields(CORE + "Volume")["hostPath"] == (2, 1)   # VolumeSource inline
    assert json_fields(CORE + "Probe")["httpGet"] == (1, 2)      # ProbeHandler inline
