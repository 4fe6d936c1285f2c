"""Lists and watches as real clients use them, against an in-process API server: kubectl 1.37
and Debian's kubectl 1.20 (server-side Tables, -o wide, field and label selectors, chunked
lists, get -w, delete's wait), the official Python client (pages, watch), raw HTTP for what
clients do not show (406, bookmarks, the initial-events bookmark), and the testbed's client;
NetworkPolicies through kubectl's apply, get, describe and delete."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from testbed.apiclient import Client, Informer
from testbed.kubectl.format import describe
from tests.unit.conftest import KUBECTLS, kubectl_runner, start_api

VERSIONS = ["1.37", "1.20"]


def call(server, method: str, path: str, body: dict | None = None,
         headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path, json.dumps(body) if body is not None else None,
                 {"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    data = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, data


def make_pod(server, name: str, app: str, node: str | None = None, ip: str | None = None,
             phase: str | None = None, ns: str = "default") -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    code, pod = call(server, "POST", f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
        "spec": spec})
    assert code == 201, pod
    if ip or phase:
        pod["status"] = {**(pod.get("status") or {}), "phase": phase or "Running"}
        if ip:
            pod["status"]["podIP"] = ip
        code, pod = call(server, "PUT", f"/api/v1/namespaces/{ns}/pods/{name}/status", pod)
        assert code == 200, pod
    return pod


def set_phase(server, name: str, phase: str) -> None:
    _, pod = call(server, "GET", f"/api/v1/namespaces/default/pods/{name}")
    pod["status"]["phase"] = phase
    assert call(server, "PUT", f"/api/v1/namespaces/default/pods/{name}/status", pod)[0] == 200


@pytest.fixture
def server(tmp_path: Path):
    srv = start_api(tmp_path)
    make_pod(srv, "web-1", "a", "n1", "10.244.1.2", "Running")
    make_pod(srv, "web-2", "b", "n2", "10.244.2.2", "Running")
    make_pod(srv, "db-1", "c", "n1", None, "Pending")
    make_pod(srv, "pending", "a")
    make_pod(srv, "dns", "dns", "n2", "10.244.2.3", "Running", ns="kube-system")
    code, svc = call(srv, "POST", "/api/v1/namespaces/default/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}})
    assert code == 201, svc
    yield srv
    srv.stop()


def kubectl(server, tmp_path: Path, version: str):
    return kubectl_runner(version, f"http://127.0.0.1:{server.port}", tmp_path / f"home-{version}")


def table(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """Header words and NAME -> row words of kubectl's table output (single-word cells)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0].split(), {line.split()[0]: line.split() for line in lines[1:]}


def column(text: str, header: str) -> dict[str, str]:
    """NAME -> the cell under `header` (cells may not contain spaces; headers may)."""
    lines = [line for line in text.splitlines() if line.strip()]
    start = lines[0].index(header)
    return {line.split()[0]: line[start:].split()[0] for line in lines[1:]}


# -- kubectl ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_get_wide_shows_the_servers_wide_columns(server, tmp_path: Path, version: str) -> None:
    run = kubectl(server, tmp_path, version)
    out = run("get", "pods", "-o", "wide")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == [
        "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
        "READINESS", "GATES"]
    assert column(out.stdout, "IP") == {"web-1": "10.244.1.2", "web-2": "10.244.2.2",
                                        "db-1": "<none>", "pending": "<none>"}
    assert column(out.stdout, "NODE ") == {"web-1": "n1", "web-2": "n2", "db-1": "n1",
                                           "pending": "<none>"}
    out = run("get", "svc", "-o", "wide")
    assert out.returncode == 0, out.stderr
    assert column(out.stdout, "SELECTOR") == {"kubernetes": "<none>", "web": "app=a"}
    plain = run("get", "pods")
    assert plain.stdout.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS",
                                                    "AGE"]


@pytest.mark.parametrize("version", VERSIONS)
def test_get_all_namespaces_and_get_all(server, tmp_path: Path, version: str) -> None:
    run = kubectl(server, tmp_path, version)
    out = run("get", "pods", "-A")
    assert out.returncode == 0, out.stderr
    rows = [line.split()[:2] for line in out.stdout.splitlines()]
    assert rows[0] == ["NAMESPACE", "NAME"]
    assert ["kube-system", "dns"] in rows and ["default", "web-1"] in rows
    out = run("get", "all")
    assert out.returncode == 0, out.stderr
    names = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    assert {"pod/web-1", "pod/pending", "service/web", "service/kubernetes"} <= names


@pytest.mark.parametrize("version", VERSIONS)
def test_field_selectors(server, tmp_path: Path, version: str) -> None:
    run = kubectl(server, tmp_path, version)
    out = run("get", "pods", "--field-selector", "spec.nodeName=n1")
    assert out.returncode == 0, out.stderr
    assert set(table(out.stdout)[1]) == {"web-1", "db-1"}
    out = run("get", "pods", "--field-selector", "status.phase=Running")
    assert set(table(out.stdout)[1]) == {"web-1", "web-2"}
    out = run("get", "pods", "-A", "--field-selector", "status.phase=Running,spec.nodeName=n2")
    assert {line.split()[1] for line in out.stdout.splitlines()[1:]} == {"web-2", "dns"}
    out = run("get", "pods", "--field-selector", "foo=bar")
    assert out.returncode != 0
    assert "Error from server (BadRequest)" in out.stderr
    assert "field label not supported: foo" in out.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_set_based_label_selectors(server, tmp_path: Path, version: str) -> None:
    run = kubectl(server, tmp_path, version)
    out = run("get", "pods", "-l", "app in (a,b)")
    assert out.returncode == 0, out.stderr
    assert set(table(out.stdout)[1]) == {"web-1", "web-2", "pending"}
    out = run("get", "pods", "-l", "app notin (a),app")
    assert set(table(out.stdout)[1]) == {"web-2", "db-1"}
    out = run("get", "pods", "-l", "app in (a")
    assert out.returncode != 0 and "Error from server (BadRequest)" in out.stderr
    assert "unable to parse requirement: found '', expected: ',' or ')'" in out.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_chunked_lists_follow_continue_tokens(server, tmp_path: Path, version: str) -> None:
    for i in range(3):
        make_pod(server, f"extra-{i}", "x")
    run = kubectl(server, tmp_path, version)
    out = run("get", "pods", "--chunk-size=2", "-v=6")
    assert out.returncode == 0, out.stderr
    assert set(table(out.stdout)[1]) == {"web-1", "web-2", "db-1", "pending", "extra-0",
                                         "extra-1", "extra-2"}
    pages = [line for line in out.stderr.splitlines() if "/api/v1/namespaces/default/pods?" in line]
    assert len(pages) == 4 and sum("continue=" in line for line in pages) == 3


@pytest.mark.parametrize("version", VERSIONS)
def test_get_watch_shows_a_change(server, tmp_path: Path, version: str) -> None:
    kubectl(server, tmp_path, version)  # writes the kubeconfig (and skips when not installed)
    home = tmp_path / f"home-{version}"
    proc = subprocess.Popen(
        [str(KUBECTLS[version]), "--cache-dir", str(home / "cache"), "get", "pods", "-w",
         "--request-timeout=20s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"HOME": str(home), "KUBECONFIG": str(home / "kubeconfig"), "PATH": "/usr/bin:/bin"})
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 15
        while len(lines) < 5 and time.monotonic() < deadline:  # header + 4 pods
            time.sleep(0.05)
        assert len(lines) == 5, lines
        set_phase(server, "web-2", "Failed")
        while len(lines) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lines[5].split()[:3] == ["web-2", "0/1", "Failed"], lines
    finally:
        proc.kill()
        proc.wait(5)


@pytest.mark.parametrize("version", VERSIONS)
def test_tables_of_events_endpoints_and_leases(server, tmp_path: Path, version: str) -> None:
    assert call(server, "POST", "/api/v1/namespaces/default/events", {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "web-1.1"}, "type": "Normal",
        "reason": "Started", "message": "Started container c", "count": 2,
        "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default"},
        "source": {"component": "kubelet", "host": "n1"},
        "lastTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})[0] == 201
    assert call(server, "POST", "/api/v1/namespaces/default/endpoints", {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
        "subsets": [{"addresses": [{"ip": "10.244.1.2"}], "ports": [{"port": 8080}]}]})[0] == 201
    assert call(server, "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}})[0] == 201
    run = kubectl(server, tmp_path, version)
    out = run("get", "events")
    assert out.returncode == 0, out.stderr
    header, rows = out.stdout.splitlines()[0], out.stdout.splitlines()[1:]
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert rows[0].split()[1:] == ["Normal", "Started", "pod/web-1", "Started", "container",
                                   "c"]
    wide = run("get", "events", "-o", "wide")
    assert "SUBOBJECT" in wide.stdout and "kubelet, n1" in wide.stdout
    out = run("get", "ep")
    assert table(out.stdout) == (["NAME", "ENDPOINTS", "AGE"], {"web": [
        "web", "10.244.1.2:8080", table(out.stdout)[1]["web"][2]]})
    out = run("get", "leases", "-A")
    assert table(out.stdout)[0] == ["NAMESPACE", "NAME", "HOLDER", "AGE"]
    assert table(out.stdout)[1]["kube-node-lease"][1:3] == ["n1", "n1"]


@pytest.mark.parametrize("version", VERSIONS)
def test_delete_returns_promptly(server, tmp_path: Path, version: str) -> None:
    run = kubectl(server, tmp_path, version)
    started = time.monotonic()
    out = run("delete", "pod", "pending", "--timeout=20s")  # unscheduled: gone at once
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 12   # not the 20 s timeout a lost field selector gives
    # a scheduled Pod terminates; kubectl waits (1.20: a watch with a field selector on its
    # name) until it is gone, here when something deletes it for good half a second after
    # kubectl marked it terminating
    gone_at: list[float] = []

    def finish() -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            _, pod = call(server, "GET", "/api/v1/namespaces/default/pods/web-1")
            if pod.get("metadata", {}).get("deletionTimestamp"):
                time.sleep(0.5)
                # the time the final DELETE is sent: kubectl may see the object gone (its
                # watch) before this thread is scheduled again after the call returns
                gone_at.append(time.monotonic())
                call(server, "DELETE", "/api/v1/namespaces/default/pods/web-1"
                                       "?gracePeriodSeconds=0")
                return
            time.sleep(0.05)

    finisher = threading.Thread(target=finish)
    finisher.start()
    out = run("delete", "pod", "web-1", "--timeout=20s")
    done = time.monotonic()
    finisher.join()
    assert out.returncode == 0, out.stderr
    assert gone_at and 0 <= done - gone_at[0] < 5  # it waited for the deletion, then returned
    assert call(server, "GET", "/api/v1/namespaces/default/pods/web-1")[0] == 404


NETWORK_POLICY = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db
  namespace: shop
  labels: {tier: data, app: shop}
  annotations:
    note: "LONG"
    multi: |
      first line
      second line
spec:
  podSelector:
    matchLabels: {role: db}
  ingress:
  - from:
    - ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}
    - namespaceSelector: {matchLabels: {project: myproject}}
      podSelector: {matchExpressions: [{key: role, operator: In, values: [web, api]}]}
    ports:
    - {protocol: TCP, port: 6379}
    - {port: 32000, endPort: 32768}
  - {}
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/24}}]
    ports: [{protocol: UDP, port: dns}, {protocol: SCTP}]
""".replace("LONG", "x" * 150)   # longer than describe shows: cut, below its key


@pytest.mark.parametrize("version", VERSIONS)
def test_network_policies_with_kubectl(server, tmp_path: Path, version: str) -> None:
    """kubectl apply, get, describe and delete a NetworkPolicy; describe is kubectl's own
    (its describer reading the stored object), and must read as testbed describe prints it."""
    run = kubectl(server, tmp_path, version)
    out = run("apply", "-f", "-", input=NETWORK_POLICY)
    assert out.returncode == 0, out.stderr
    assert "networkpolicy.networking.k8s.io/db created" in out.stdout
    out = run("get", "netpol", "-A")
    assert out.returncode == 0, out.stderr
    header, rows = table(out.stdout)
    assert header == ["NAMESPACE", "NAME", "POD-SELECTOR", "AGE"]
    assert rows["shop"][1:3] == ["db", "role=db"]
    out = run("get", "networkpolicies.networking.k8s.io", "db", "-n", "shop", "-o", "json")
    stored = json.loads(out.stdout)
    assert stored["spec"]["policyTypes"] == ["Ingress", "Egress"]             # defaulted
    assert stored["spec"]["ingress"][0]["ports"][1] == {"port": 32000, "endPort": 32768,
                                                        "protocol": "TCP"}
    out = run("describe", "netpol", "db", "-n", "shop", extra_env={"TZ": "UTC"})
    assert out.returncode == 0, out.stderr
    if version == "1.20":  # its NetworkPolicyPort has no endPort yet: the range is one port
        for port in stored["spec"]["ingress"][0]["ports"]:
            port.pop("endPort", None)
    else:
        assert "    To Port Range: 32000-32768/TCP\n" in out.stdout
    assert out.stdout == describe(stored)   # kubectl's last-applied annotation left out
    assert "    To Port: <nil>/SCTP\n" in out.stdout
    assert "      PodSelector: role in (api,web)\n" in out.stdout
    out = run("get", "all", "-n", "shop")
    assert "networkpolicy" not in out.stdout + out.stderr   # not in the category "all"
    out = run("get", "ns", "shop", "--show-labels")
    assert "kubernetes.io/metadata.name=shop" in out.stdout
    out = run("delete", "netpol", "db", "-n", "shop")
    assert out.returncode == 0, out.stderr
    assert call(server, "GET", "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/db"
                )[0] == 404


# -- the Python client -----------------------------------------------------------------------------

def python_client(server):  # noqa: ANN201
    import kubernetes  # pinned in requirements.txt: missing is a failure, not a skip
    cfg = kubernetes.client.Configuration()
    cfg.host = f"http://127.0.0.1:{server.port}"
    return kubernetes, kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(cfg))


def test_python_client_pages_with_selectors(server) -> None:
    kubernetes, v1 = python_client(server)
    for i in range(3):
        make_pod(server, f"more-{i}", "a", "n1")
    seen, token = [], None
    while True:
        page = v1.list_namespaced_pod("default", field_selector="spec.nodeName=n1",
                                      label_selector="app in (a,c)", limit=2, _continue=token)
        assert len(page.items) <= 2
        seen += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == ["db-1", "more-0", "more-1", "more-2", "web-1"]
    everything = v1.list_namespaced_pod("default", limit=3)
    assert everything.metadata.remaining_item_count == 4
    with pytest.raises(kubernetes.client.ApiException) as err:
        v1.list_namespaced_pod("default", field_selector="spec.nodeName=n1,x=y")
    assert err.value.status == 400 and "field label not supported: x" in err.value.body


def test_python_client_watch_stream(server) -> None:
    kubernetes, v1 = python_client(server)
    threading.Timer(0.5, lambda: make_pod(server, "newcomer", "a", "n1")).start()
    threading.Timer(0.8, lambda: make_pod(server, "elsewhere", "a", "n2")).start()
    events = []
    for ev in kubernetes.watch.Watch().stream(v1.list_namespaced_pod, "default",
                                              field_selector="spec.nodeName=n1",
                                              timeout_seconds=2):
        events.append((ev["type"], ev["object"].metadata.name))
    assert events == [("ADDED", "db-1"), ("ADDED", "web-1"), ("ADDED", "newcomer")]


# -- raw HTTP: what clients do not show ------------------------------------------------------------

def read_events(server, path: str, accept: str = "application/json") -> list[dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    conn.request("GET", path, headers={"Accept": accept})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    conn.close()
    return events


def test_negotiation_and_table_answers(server) -> None:
    code, status = call(server, "GET", "/api/v1/namespaces/default/pods",
                        headers={"Accept": "application/vnd.kubernetes.protobuf"})
    assert (code, status["reason"]) == (406, "NotAcceptable")
    assert status["message"] == "only the following media types are accepted: application/json"
    code, listed = call(server, "GET", "/api/v1/namespaces/default/pods", headers={
        "Accept": "application/vnd.kubernetes.protobuf,application/json"})
    assert code == 200 and listed["kind"] == "PodList"
    code, t = call(server, "GET", "/api/v1/namespaces/default/pods/web-1?includeObject=None",
                   headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert code == 200 and t["kind"] == "Table" and t["rows"][0]["cells"][0] == "web-1"
    assert "object" not in t["rows"][0]
    code, status = call(server, "GET", "/api/v1/pods?resourceVersionMatch=Exact")
    assert code == 422 and "resourceVersionMatch is forbidden unless" in status["message"]


def test_bookmarks_and_initial_events(server) -> None:
    server.tcp.bookmark_period = 0.5
    events = read_events(server, "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=3"
                                 "&allowWatchBookmarks=true&fieldSelector=spec.nodeName%3Dn2")
    assert [e["type"] for e in events][:1] == ["ADDED"]
    marks = [e for e in events if e["type"] == "BOOKMARK"]
    assert len(marks) >= 2 and marks[0]["object"]["kind"] == "Pod"
    assert all(set(m["object"]["metadata"]) == {"resourceVersion", "creationTimestamp"}
               for m in marks)
    events = read_events(server, "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1"
                                 "&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
                                 "&allowWatchBookmarks=true")
    types = [e["type"] for e in events]
    assert types[:5] == ["ADDED"] * 4 + ["BOOKMARK"]
    assert events[4]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    # kubectl get -w asks for Tables: columns once, then one row per event
    events = read_events(server, "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1",
                         "application/json;as=Table;v=v1;g=meta.k8s.io")
    assert events[0]["object"]["columnDefinitions"] and \
        events[1]["object"]["columnDefinitions"] is None


def test_testbed_client_and_informer_with_field_selectors(server) -> None:
    client = Client(f"http://127.0.0.1:{server.port}")
    items, rv = client.list("Pod", None, fields="spec.nodeName=n2")
    assert [i["metadata"]["name"] for i in items] == ["web-2", "dns"]  # default/, kube-system/
    seen: list[str] = []
    informer = Informer(client, "Pod", "default", fields="status.phase=Running",
                        on_add=lambda o: seen.append("+" + o["metadata"]["name"]),
                        on_delete=lambda o: seen.append("-" + o["metadata"]["name"]),
                        watch_timeout=5).start()
    try:
        assert informer.wait_for_sync(5)
        set_phase(server, "web-2", "Failed")  # leaves the selection: deleted for the informer
        set_phase(server, "db-1", "Running")
        deadline = time.monotonic() + 5
        while len(seen) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen == ["+web-1", "+web-2", "-web-2", "+db-1"]
        assert [o["metadata"]["name"] for o in informer.items()] == ["db-1", "web-1"]
    finally:
        informer.stop()
