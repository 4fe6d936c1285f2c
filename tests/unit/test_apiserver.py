"""The API server in-process on 127.0.0.1:0 and a Unix socket: REST, admission, batch apply,
watch, persistence. Raw HTTP here (the client library has its own tests)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from testbed.agents.apiserver import ApiServer
from testbed.agents.journal import read_journal
from testbed.apiclient import Client
from tests.unit.conftest import start_api as start

CIDR = "10.96.0.0/12"


class UnixConn(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=10)
        self.path_ = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path_)


def call(server: ApiServer, method: str, path: str, body: object = None,
         unix: bool = False) -> tuple[int, dict]:
    conn = (UnixConn(str(server.unix.server_address)) if unix
            else http.client.HTTPConnection("127.0.0.1", server.port, timeout=10))
    conn.request(method, path, json.dumps(body) if body is not None else None,
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return resp.status, json.loads(raw)




def pod(name: str, ns: str = "default", **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def service(name: str, **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


def deployment(name: str, replicas: int = 2) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "x"}]}}}}


def test_rest_round_trip_over_tcp_and_unix(server: ApiServer) -> None:
    code, created = call(server, "POST", "/api/v1/namespaces/default/pods", pod("a", app="web"))
    assert code == 201 and created["metadata"]["resourceVersion"]
    assert created["spec"]["restartPolicy"] == "Always"  # check_object's defaults
    call(server, "POST", "/api/v1/namespaces/default/pods", pod("b", app="db"), unix=True)
    code, got = call(server, "GET", "/api/v1/namespaces/default/pods/a", unix=True)
    assert code == 200 and got["metadata"]["uid"] == created["metadata"]["uid"]
    code, listed = call(server, "GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")
    assert listed["kind"] == "PodList" and [p["metadata"]["name"] for p in listed["items"]] == ["a"]
    assert int(listed["metadata"]["resourceVersion"]) >= int(created["metadata"]["resourceVersion"])
    code, every = call(server, "GET", "/api/v1/pods")
    assert sorted(p["metadata"]["name"] for p in every["items"]) == ["a", "b"]
    got["metadata"]["labels"]["tier"] = "front"
    code, updated = call(server, "PUT", "/api/v1/namespaces/default/pods/a", got)
    assert code == 200 and updated["metadata"]["labels"]["tier"] == "front"
    code, stale = call(server, "PUT", "/api/v1/namespaces/default/pods/a", got)
    assert code == 409 and stale["reason"] == "Conflict"
    code, gone = call(server, "DELETE", "/api/v1/namespaces/default/pods/a")
    assert code == 200  # unscheduled: removed at once, no grace period
    code, status = call(server, "GET", "/api/v1/namespaces/default/pods/a")
    assert (code, status["kind"], status["reason"]) == (404, "Status", "NotFound")
    assert status["message"] == 'pods "a" not found'


def test_unknown_paths_and_methods(server: ApiServer) -> None:
    assert call(server, "GET", "/api/v1/widgets")[0] == 404
    assert call(server, "GET", "/apis/apps/v1/namespaces/default/pods")[0] == 404
    code, status = call(server, "POST", "/api/v1/namespaces/default/pods/a", pod("a"))
    assert code == 405 and status["kind"] == "Status"


def test_validation_refused_with_field_paths(server: ApiServer) -> None:
    bad = service("web", ports=[{"port": 70000}])
    code, status = call(server, "POST", "/api/v1/namespaces/default/services", bad)
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["message"] == ('Service "web" is invalid: spec.ports[0].port: Invalid value: '
                                 "70000: must be between 1 and 65535, inclusive")
    assert status["details"]["causes"][0]["field"] == "spec.ports[0].port"
    assert call(server, "GET", "/api/v1/namespaces/default/services/web")[0] == 404


def test_namespace_must_exist_and_system_namespaces_exist(server: ApiServer) -> None:
    code, status = call(server, "POST", "/api/v1/namespaces/nope/pods", pod("a", "nope"))
    assert code == 404 and status["message"] == 'namespaces "nope" not found'
    _, namespaces = call(server, "GET", "/api/v1/namespaces")
    names = {n["metadata"]["name"] for n in namespaces["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    assert call(server, "DELETE", "/api/v1/namespaces/default")[0] == 403


def test_body_namespace_must_match_path(server: ApiServer) -> None:
    code, status = call(server, "POST", "/api/v1/namespaces/kube-system/pods", pod("a"))
    assert code == 400 and "namespace" in status["message"]


def test_service_allocation_and_rejections(server: ApiServer) -> None:
    code, svc = call(server, "POST", "/api/v1/namespaces/default/services",
                     service("web", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert code == 201 and svc["spec"]["clusterIP"].startswith("10.")
    assert svc["spec"]["ports"][0]["nodePort"] == 30080
    code, status = call(server, "POST", "/api/v1/namespaces/default/services",
                        service("other", type="NodePort",
                                ports=[{"port": 80, "nodePort": 30080}]))
    assert code == 422
    assert "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated" \
        in status["message"]
    code, status = call(server, "POST", "/api/v1/namespaces/default/services",
                        service("outside", clusterIP="192.168.1.1"))
    assert code == 422 and status["message"] == (
        'Service "outside" is invalid: spec.clusterIPs: Invalid value: []string{"192.168.1.1"}: '
        "failed to allocate IP 192.168.1.1: the provided network does not match the current range")
    assert status["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "spec.clusterIPs",
        "message": 'Invalid value: []string{"192.168.1.1"}: failed to allocate IP 192.168.1.1: '
                   "the provided network does not match the current range"}]
    # the port is free again once its Service is deleted
    call(server, "DELETE", "/api/v1/namespaces/default/services/web")
    code, _ = call(server, "POST", "/api/v1/namespaces/default/services",
                   service("other", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert code == 201


def test_kubernetes_service_points_at_the_api(server: ApiServer) -> None:
    _, svc = call(server, "GET", "/api/v1/namespaces/default/services/kubernetes")
    assert svc["spec"]["clusterIP"] == "10.96.0.1"
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP",
                                     "targetPort": server.port}]
    _, eps = call(server, "GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices")
    slice_ = next(s for s in eps["items"] if s["metadata"]["name"] == "kubernetes")
    assert slice_["endpoints"][0]["addresses"] == ["127.0.0.1"]
    assert slice_["ports"][0]["port"] == server.port


def test_batch_apply_is_all_or_nothing(server: ApiServer) -> None:
    good = service("web", type="NodePort", ports=[{"port": 80, "nodePort": 30001}])
    bad = deployment("api")
    bad["spec"]["replicas"] = -1
    code, status = call(server, "POST", "/testbed/v1/apply", {"items": [good, bad]})
    assert code == 422 and "items[1].spec.replicas" in status["message"]
    assert call(server, "GET", "/api/v1/namespaces/default/services/web")[0] == 404
    # the NodePort the refused batch had allocated is free again
    code, _ = call(server, "POST", "/api/v1/namespaces/default/services",
                   service("taker", type="NodePort", ports=[{"port": 80, "nodePort": 30001}]))
    assert code == 201


def test_batch_apply_creates_then_configures(server: ApiServer) -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    dep = dict(deployment("web"), metadata={"name": "web", "namespace": "shop"})
    code, out = call(server, "POST", "/testbed/v1/apply", {"items": [ns, dep]})
    assert code == 200 and [i["action"] for i in out["items"]] == ["created", "created"]
    dep["spec"]["replicas"] = 5
    _, out = call(server, "POST", "/testbed/v1/apply", {"items": [ns, dep]})
    assert [i["action"] for i in out["items"]] == ["unchanged", "configured"]
    assert out["items"][1]["object"]["spec"]["replicas"] == 5


def test_reapplying_a_bound_pod_keeps_its_node(server: ApiServer) -> None:
    call(server, "POST", "/testbed/v1/apply", {"items": [pod("a")]})
    _, got = call(server, "GET", "/api/v1/namespaces/default/pods/a")
    got["spec"]["nodeName"] = "w1"
    assert call(server, "PUT", "/api/v1/namespaces/default/pods/a", got)[0] == 200
    _, out = call(server, "POST", "/testbed/v1/apply", {"items": [pod("a")]})
    assert out["items"][0]["action"] == "unchanged"
    changed = pod("a")
    changed["spec"]["containers"][0]["name"] = "other"
    code, status = call(server, "POST", "/testbed/v1/apply", {"items": [changed]})
    assert code == 422 and "Forbidden: pod updates may not change" in status["message"]


def test_graceful_pod_deletion(server: ApiServer) -> None:
    bound = pod("a")
    bound["spec"]["nodeName"] = "w1"
    call(server, "POST", "/api/v1/namespaces/default/pods", bound)
    code, marked = call(server, "DELETE", "/api/v1/namespaces/default/pods/a")
    assert code == 200 and marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert call(server, "GET", "/api/v1/namespaces/default/pods/a")[0] == 200
    call(server, "DELETE", "/api/v1/namespaces/default/pods/a", {"gracePeriodSeconds": 0})
    assert call(server, "GET", "/api/v1/namespaces/default/pods/a")[0] == 404


def test_status_subresource_and_scale(server: ApiServer) -> None:
    call(server, "POST", "/apis/apps/v1/namespaces/default/deployments", deployment("web"))
    path = "/apis/apps/v1/namespaces/default/deployments/web"
    _, dep = call(server, "GET", path)
    dep["status"] = {"replicas": 7}
    dep["spec"]["replicas"] = 9  # ignored by the status subresource
    _, out = call(server, "PUT", path + "/status", dep)
    assert out["status"] == {"replicas": 7} and out["spec"]["replicas"] == 2
    code, scale = call(server, "GET", path + "/scale")
    assert code == 200 and scale["spec"]["replicas"] == 2 and scale["status"]["selector"] == "app=web"
    scale["spec"]["replicas"] = 4
    call(server, "PUT", path + "/scale", scale)
    assert call(server, "GET", path)[1]["spec"]["replicas"] == 4
    assert call(server, "PUT", path + "/scale", {"spec": {"replicas": -2}})[0] == 422


def read_watch(server: ApiServer, path: str) -> tuple[int, list[dict]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    if resp.status != 200:
        return resp.status, [json.loads(resp.read())]
    events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    conn.close()
    return 200, events


def test_watch_streams_events_and_ends_after_timeout(server: ApiServer) -> None:
    _, listed = call(server, "GET", "/api/v1/namespaces/default/pods")
    rv = listed["metadata"]["resourceVersion"]
    call(server, "POST", "/api/v1/namespaces/default/pods", pod("a", app="web"))
    call(server, "POST", "/api/v1/namespaces/default/pods", pod("b", app="db"))
    _, a = call(server, "GET", "/api/v1/namespaces/default/pods/a")
    a["metadata"]["labels"]["x"] = "y"
    call(server, "PUT", "/api/v1/namespaces/default/pods/a", a)
    call(server, "DELETE", "/api/v1/namespaces/default/pods/a")
    code, events = read_watch(server, f"/api/v1/namespaces/default/pods?watch=1&resourceVersion="
                                      f"{rv}&timeoutSeconds=1&labelSelector=app%3Dweb")
    assert code == 200
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    # without a resourceVersion: the current objects as ADDED
    _, events = read_watch(server, "/api/v1/pods?watch=true&timeoutSeconds=1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b")]


def test_watch_too_old_is_410_status(tmp_path: Path) -> None:
    srv = start(tmp_path, history=2)
    try:
        for name in "abcd":
            call(srv, "POST", "/api/v1/namespaces/default/pods", pod(name))
        code, [status] = read_watch(srv, "/api/v1/pods?watch=1&resourceVersion=1")
        assert (code, status["kind"], status["code"], status["reason"]) == (
            410, "Status", 410, "Expired")
    finally:
        srv.stop()


def test_state_survives_restart(tmp_path: Path) -> None:
    srv = start(tmp_path)
    _, created = call(srv, "POST", "/api/v1/namespaces/default/services",
                      service("web", type="NodePort"))
    _, doomed = call(srv, "POST", "/api/v1/namespaces/default/pods", pod("doomed"))
    call(srv, "DELETE", "/api/v1/namespaces/default/pods/doomed")
    _, before = call(srv, "GET", "/api/v1/pods")
    srv.stop()
    with open(tmp_path / "state.jsonl", "a") as journal:
        journal.write('{"rv": 99, "obj')  # a line cut short by a kill
    srv = start(tmp_path)
    try:
        _, again = call(srv, "GET", "/api/v1/namespaces/default/services/web")
        assert again == created  # uid, timestamps, resourceVersion, allocations all kept
        assert call(srv, "GET", "/api/v1/namespaces/default/pods/doomed")[0] == 404
        _, new = call(srv, "POST", "/api/v1/namespaces/default/pods", pod("fresh"))
        assert int(new["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
        # the allocator was rebuilt from stored Services: the same ClusterIP is taken
        code, status = call(srv, "POST", "/api/v1/namespaces/default/services",
                            service("twin", clusterIP=created["spec"]["clusterIP"]))
        assert code == 422 and "already allocated" in status["message"]
        # a watch from before the restart cannot be resumed
        code, _ = read_watch(srv, f"/api/v1/pods?watch=1&resourceVersion="
                                  f"{doomed['metadata']['resourceVersion']}")
        assert code == 410
    finally:
        srv.stop()
    objects, rv = read_journal(tmp_path / "state.jsonl")
    assert ("Pod", "default", "fresh") in objects and rv == int(new["metadata"]["resourceVersion"])


def test_process_survives_sigkill_and_restart(tmp_path: Path) -> None:
    """The real entry point, as the cluster starts it; SIGKILL loses nothing acknowledged."""
    sock = tmp_path / "apiserver.sock"
    argv = [sys.executable, "-m", "testbed.agents.apiserver", "--listen", "127.0.0.1:0",
            "--unix", str(sock), "--state", str(tmp_path / "state.jsonl"),
            "--service-cidr", "10.100.0.0/16", "--api-address", "172.16.0.2:6443",
            "--no-controllers"]  # no scheduler writing to the Pod between create and kill
    root = Path(__file__).resolve().parents[2]

    def launch() -> subprocess.Popen:
        proc = subprocess.Popen(argv, cwd=root, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                Client(f"unix://{sock}").list("Namespace")
                return proc
            except OSError:
                time.sleep(0.05)
        proc.kill()
        raise AssertionError("the API server did not come up: " + proc.stderr.read())

    proc = launch()
    try:
        client = Client(f"unix://{sock}")
        svc = client.get("Service", "default", "kubernetes")
        assert svc["spec"]["clusterIP"] == "10.100.0.1"
        assert svc["spec"]["ports"][0]["targetPort"] == 6443
        made = client.create(pod("survivor"))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc = launch()
        client = Client(f"unix://{sock}")
        assert client.get("Pod", "default", "survivor") == made
        again = client.create(pod("next"))
        assert int(again["metadata"]["resourceVersion"]) > int(made["metadata"]["resourceVersion"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert not sock.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
