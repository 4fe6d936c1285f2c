"""Protobuf request bodies end to end: kubectl 1.37 (which sends its typed objects as
application/vnd.kubernetes.protobuf) against an in-process API server, through a small
recording proxy that keeps the bytes it sends; the objects stored are those a JSON client's
bodies store; and over raw HTTP, what no client shows (fieldValidation of unknown field
numbers, malformed bodies, PUT and DELETE bodies, the 415 message)."""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from testbed.api import protobuf
from testbed.api.protobuf_encode import encode, encode_message, wrap
from tests.unit.conftest import kubectl_runner, start_api

PROTOBUF = "application/vnd.kubernetes.protobuf"


@dataclass
class Seen:
    method: str
    path: str
    content_type: str
    body: bytes


class RecordingProxy(ThreadingHTTPServer):
    """Forwards every request to `backend_port` and records each one that has a body."""

    daemon_threads = True

    def __init__(self, backend_port: int):
        self.backend_port = backend_port
        self.seen: list[Seen] = []
        super().__init__(("127.0.0.1", 0), _Forward)


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _any(self) -> None:
        proxy: RecordingProxy = self.server  # type: ignore[assignment]
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if data:
            proxy.seen.append(Seen(self.command, self.path,
                                   self.headers.get("Content-Type") or "", data))
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "connection", "content-length")}
        conn = http.client.HTTPConnection("127.0.0.1", proxy.backend_port, timeout=30)
        conn.request(self.command, self.path, data or None, headers)
        resp = conn.getresponse()
        answer = resp.read()
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        conn.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any


@pytest.fixture
def server(tmp_path: Path):
    srv = start_api(tmp_path / "api")
    yield srv
    srv.stop()


@pytest.fixture
def proxy(server):
    prx = RecordingProxy(server.port)
    thread = threading.Thread(target=prx.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield prx
    prx.shutdown()
    prx.server_close()


def call(server, method: str, path: str, data: bytes | None = None,
         content_type: str = "application/json") -> tuple[int, dict, list[str]]:
    """(status, JSON answer, Warning headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path, data, {"Content-Type": content_type,
                                      "Accept": f"{PROTOBUF},application/json"})
    resp = conn.getresponse()
    answer = json.loads(resp.read() or b"{}")
    warnings = resp.headers.get_all("Warning") or []
    conn.close()
    return resp.status, answer, warnings


def comparable(obj: dict) -> dict:
    """An object without what differs between two writes of it: uid, times."""
    meta = {k: v for k, v in obj["metadata"].items() if k not in ("uid", "creationTimestamp")}
    meta["managedFields"] = [{k: v for k, v in e.items() if k != "time"}
                             for e in meta.get("managedFields", [])]
    return {**obj, "metadata": meta}


# -- kubectl 1.37 ----------------------------------------------------------------------------------

# What a JSON client sends for the objects kubectl 1.37 sends as protobuf: kubectl 1.20's bodies
# for the same commands, captured from it, less the "creationTimestamp": null that Go's JSON no
# longer writes (ObjectMeta's omitzero; kubectl 1.37's own JSON bodies have none). The stored
# objects must not differ.
JSON_BODIES = {
    "/api/v1/namespaces": {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "x"}, "spec": {}, "status": {}},
    "/apis/apps/v1/namespaces/default/deployments": {
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                                       "ports": [{"containerPort": 80}],
                                                       "resources": {}}]}},
                 "strategy": {}},
        "status": {}},
    "/api/v1/namespaces/default/services": {
        "kind": "Service", "apiVersion": "v1",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80,
                            "targetPort": 8080}],
                 "selector": {"app": "web"}, "type": "ClusterIP"},
        "status": {"loadBalancer": {}}},
}
STORED = {  # collection path -> the stored object's path
    "/api/v1/namespaces": "/api/v1/namespaces/x",
    "/apis/apps/v1/namespaces/default/deployments":
        "/apis/apps/v1/namespaces/default/deployments/web",
    "/api/v1/namespaces/default/services": "/api/v1/namespaces/default/services/web",
}


def test_kubectl_creates_typed_objects_as_protobuf(server, proxy, tmp_path: Path) -> None:
    kubectl = kubectl_runner("1.37", f"http://127.0.0.1:{proxy.server_address[1]}",
                             tmp_path / "home")
    for args in (["create", "namespace", "x"],
                 ["create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=80"],
                 ["create", "service", "clusterip", "web", "--tcp=80:8080"]):
        done = kubectl(*args)
        assert done.returncode == 0, (args, done.stderr)
    sent = [s for s in proxy.seen if s.method == "POST"]
    assert [(s.path.split("?")[0], s.content_type) for s in sent] == [
        (path, PROTOBUF) for path in JSON_BODIES]
    # the same objects written by a JSON client into a second server
    other = start_api(tmp_path / "json")
    try:
        for seen in sent:
            collection, _, query = seen.path.partition("?")
            assert encode(protobuf.decode(seen.body)) == seen.body
            code, answer, _ = call(other, "POST", seen.path,
                                   json.dumps(JSON_BODIES[collection]).encode())
            assert code == 201, answer
            assert "fieldValidation=Strict" in query   # no unknown field in kubectl's bytes
            _, from_protobuf, _ = call(server, "GET", STORED[collection])
            _, from_json, _ = call(other, "GET", STORED[collection])
            assert comparable(from_protobuf) == comparable(from_json)
    finally:
        other.stop()


def test_kubectl_commands_on_protobuf_created_objects(server, proxy, tmp_path: Path) -> None:
    """create (protobuf) then expose and run (JSON in kubectl 1.37), ingress and a NodePort
    Service whose targetPort is a name: everything kubectl reads back is what it wrote."""
    kubectl = kubectl_runner("1.37", f"http://127.0.0.1:{proxy.server_address[1]}",
                             tmp_path / "home")
    steps = [
        ["create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=80"],
        ["expose", "deployment", "web", "--port=81", "--target-port=80"],
        ["create", "service", "nodeport", "np", "--tcp=80:http", "--node-port=30080"],
        ["create", "ingress", "ing", "--rule=foo.com/bar*=web:81"],
        ["run", "pod1", "--image=nginx", "--port=80", "--env=A=B", "--labels=app=x"],
    ]
    for args in steps:
        done = kubectl(*args)
        assert done.returncode == 0, (args, done.stderr)
    kinds = [(protobuf.decode(s.body)["kind"] if s.content_type == PROTOBUF else "json")
             for s in proxy.seen if s.method == "POST"]
    assert kinds == ["Deployment", "json", "Service", "Ingress", "json"]
    got = json.loads(kubectl("get", "svc", "web", "np", "-o", "json").stdout)["items"]
    assert got[0]["spec"]["selector"] == {"app": "web"}   # read from the stored Deployment
    assert got[1]["spec"]["ports"][0]["targetPort"] == "http"
    assert got[1]["spec"]["ports"][0]["nodePort"] == 30080
    deploy = json.loads(kubectl("get", "deploy", "web", "-o", "json").stdout)
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    rule = json.loads(kubectl("get", "ingress", "ing", "-o", "json").stdout)["spec"]["rules"][0]
    assert rule["http"]["paths"][0]["backend"]["service"]["port"] == {"number": 81}


# -- raw HTTP --------------------------------------------------------------------------------------

DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


def deployment(name: str = "d") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def spec_with(obj: dict, extra: bytes) -> bytes:
    """The protobuf body of Deployment `obj` whose spec message ends with `extra`."""
    meta = encode_message("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                                   obj["metadata"])
    spec = encode_message("io.k8s.api.apps.v1.DeploymentSpec", obj["spec"]) + extra
    raw = bytes([0x0A, len(meta)]) + meta + bytes([0x12, len(spec)]) + spec   # both < 128
    assert len(meta) < 128 and len(spec) < 128
    return wrap(protobuf.Envelope("apps/v1", "Deployment", raw))


UNKNOWN = b"\x98\x06\x01"   # field 99, varint 1


@pytest.mark.parametrize(("directive", "code"), [("Warn", 201), ("Ignore", 201),
                                                  ("Strict", 400)])
def test_unknown_field_numbers_follow_field_validation(server, directive: str,
                                                       code: int) -> None:
    path = f"{DEPLOYMENTS}?fieldValidation={directive}"
    got, answer, warnings = call(server, "POST", path, spec_with(deployment(), UNKNOWN),
                                 PROTOBUF)
    assert got == code, answer
    unknown = 'unknown field "spec.(protobuf field 99)"'
    if directive == "Strict":
        assert answer["message"] == ('Deployment in version "v1" cannot be handled as a '
                                     f"Deployment: strict decoding error: {unknown}")
        return
    assert "(protobuf field 99)" not in answer["spec"]
    assert warnings == ([f'299 - "{unknown.replace(chr(34), chr(92) + chr(34))}"']
                        if directive == "Warn" else [])


def test_put_and_delete_bodies_in_protobuf(server) -> None:
    code, created, _ = call(server, "POST", DEPLOYMENTS, encode(deployment()),
                            PROTOBUF)
    assert code == 201, created
    changed = {**deployment(), "metadata": {"name": "d", "labels": {"tier": "web"},
                                            "resourceVersion": created["metadata"]
                                            ["resourceVersion"]}}
    changed["spec"]["replicas"] = 3
    code, replaced, _ = call(server, "PUT", f"{DEPLOYMENTS}/d", encode(changed),
                             PROTOBUF)
    assert code == 200, replaced
    assert replaced["spec"]["replicas"] == 3 and replaced["metadata"]["labels"] == {
        "tier": "web"}
    options = {"apiVersion": "apps/v1", "kind": "DeleteOptions",
               "preconditions": {"uid": "not-its-uid"}}
    code, answer, _ = call(server, "DELETE", f"{DEPLOYMENTS}/d", encode(options),
                           PROTOBUF)
    assert code == 409, answer   # the precondition was read from the protobuf body
    options["preconditions"] = {"uid": created["metadata"]["uid"]}
    code, answer, _ = call(server, "DELETE", f"{DEPLOYMENTS}/d", encode(options),
                           PROTOBUF)
    assert code == 200, answer


def test_bad_protobuf_bodies(server) -> None:
    bad = wrap(protobuf.Envelope("apps/v1", "Deployment", b"\x08\x05"))
    code, answer, _ = call(server, "POST", DEPLOYMENTS, bad, PROTOBUF)
    assert (code, answer["reason"]) == (400, "BadRequest")
    assert answer["message"].startswith('Deployment in version "v1" cannot be handled as a '
                                        "Deployment: ")
    code, answer, _ = call(server, "POST", DEPLOYMENTS, b'{"kind": "Deployment"}', PROTOBUF)
    assert code == 400 and "does not appear to be a protobuf message" in answer["message"]
    # a kind the server does not serve, at a path it does not serve: 404, as upstream
    config_map = wrap(protobuf.Envelope("v1", "ConfigMap", b""))
    code, answer, _ = call(server, "POST", "/api/v1/namespaces/default/configmaps",
                           config_map, PROTOBUF)
    assert code == 404, answer
    code, answer, _ = call(server, "POST", DEPLOYMENTS, b"x", "application/cbor")
    assert code == 415
    assert answer["message"] == ("the body of the request was in an unknown format - accepted "
                                 "media types include: application/json, application/yaml, "
                                 "application/vnd.kubernetes.protobuf")
