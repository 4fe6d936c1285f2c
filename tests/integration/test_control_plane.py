"""The control plane on a real two-node cluster: the article's Deployment and Service, probes,
scaling, refused manifests, a killed kubelet, a command that cannot run, the kubernetes Service.

One cluster for the whole module (bring-up costs a few seconds); tests that change it put it
back the way they found it, so their order does not matter for correctness.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from testbed.api.manifests import load_manifests
from testbed.apiclient.client import ApiError
from testbed.emu import rundir
from testbed.emu.cluster import Cluster
from testbed.emu.pausebin import pause_binary
from testbed.emu.record import start_time
from testbed.net.netns import socket_in

from .conftest import ROOT, SCENARIOS, article_cluster
from .conftest import wait_for as _wait_for

wait_for = functools.partial(_wait_for, interval=0.05)

ARTICLE = SCENARIOS / "manifests" / "article-service-test.yaml"
SELECTOR = {"app": "service_test_pod"}


def http_get(pid: int, ip: IPv4Address | str, port: int, path: str = "/", timeout: float = 2,
             retry_for: float = 5) -> tuple[int, str]:
    """(status, body) of one GET sent from `pid`'s network namespace.

    A refused connection is retried for `retry_for` seconds: a pod without a readiness probe is
    Ready as soon as its container started, before its server listens (as in Kubernetes).
    """
    deadline = time.monotonic() + retry_for
    while True:
        try:
            return _http_get(pid, ip, port, path, timeout)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _http_get(pid: int, ip: IPv4Address | str, port: int, path: str, timeout: float) -> tuple[int, str]:
    sock = socket_in(pid)
    sock.settimeout(timeout)
    try:
        sock.connect((str(ip), port))
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        sock.close()
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    return int(head.split()[1]), body


def in_pod(cluster: Cluster, view, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess:
    """Run argv inside a pod's namespaces with its /etc/hosts and /etc/resolv.conf."""
    d = rundir.pod_directory(cluster.record.directory, view.namespace, view.name)
    return subprocess.run([pause_binary(), "enter", str(view.pid), "--bind", f"{d / 'hosts'}:/etc/hosts",
                           "--bind", f"{d / 'resolv.conf'}:/etc/resolv.conf", "--", *argv],
                          capture_output=True, text=True, timeout=timeout)



def labelled(cluster: Cluster, labels: dict, namespace: str = "default") -> list[dict]:
    pods, _ = cluster.client.list("Pod", namespace)
    return [p for p in pods if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
            and not p["metadata"].get("deletionTimestamp")]


def ready_endpoints(cluster: Cluster, service: str, namespace: str = "default") -> set[str]:
    slices, _ = cluster.client.list("EndpointSlice", namespace)
    out = set()
    for s in slices:
        if (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") != service:
            continue
        for ep in s.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready"):
                out.update(ep["addresses"])
    return out


def container_status(pod: dict | None, name: str) -> dict:
    for c in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if c["name"] == name:
            return c
    return {}


@pytest.fixture(scope="module")
def cluster():
    yield from article_cluster()


def article_pods(cluster: Cluster) -> list:
    names = {p["metadata"]["name"] for p in labelled(cluster, SELECTOR)}
    return [v for v in cluster.all_pods() if v.namespace == "default" and v.name in names]


# -- the article --------------------------------------------------------------------------------

def test_article_deployment_gives_four_ready_pods_each_answering_with_its_hostname(cluster):
    views = article_pods(cluster)
    assert len(views) == 4 and all(v.ready and v.phase == "Running" for v in views), views
    assert {v.node for v in views} == {"w1", "w2"}
    gw = cluster.network.pid("gw")
    for v in views:
        status, body = http_get(gw, v.ip, 8080)
        assert status == 200
        assert body.strip() == f"<p>Hello from {v.name}</p>", body
    # The Service spreads over them: through the ClusterIP from a pod, every pod answers in time.
    ip = cluster.service_ip("service-test")
    seen = set()
    deadline = time.monotonic() + 10
    while len(seen) < 4 and time.monotonic() < deadline:
        seen.add(http_get(views[0].pid, ip, 80)[1].strip())
    assert seen == {f"<p>Hello from {v.name}</p>" for v in views}


def test_endpointslice_resolves_the_named_target_port(cluster):
    slices, _ = cluster.client.list("EndpointSlice", "default")
    (mine,) = [s for s in slices if s["metadata"]["labels"].get("kubernetes.io/service-name") == "service-test"]
    assert [p["port"] for p in mine["ports"]] == [8080]
    assert ready_endpoints(cluster, "service-test") == {str(v.ip) for v in article_pods(cluster)}


def test_kubernetes_service_points_at_the_api_server(cluster):
    svc = cluster.client.get("Service", "default", "kubernetes")
    assert svc["spec"]["clusterIP"] == "10.96.0.1"
    assert svc["spec"]["ports"][0]["port"] == 443
    master = str(cluster.topo.master.address)
    assert ready_endpoints(cluster, "kubernetes") == {master}
    # From a pod, through the Service: the API server answers.
    view = article_pods(cluster)[0]
    status, body = http_get(view.pid, "10.96.0.1", 443, "/api/v1/namespaces")
    assert status == 200 and '"NamespaceList"' in body


# -- probes -------------------------------------------------------------------------------------

PROBED = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: probed}
spec:
  replicas: 3
  selector: {matchLabels: {app: probed}}
  template:
    metadata: {labels: {app: probed}}
    spec:
      containers:
      - name: web
        image: python:3
        command: ["/bin/sh", "-c", "echo ok > ready; echo ok > healthz; exec python3 -m http.server 8080"]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 1, failureThreshold: 2}
        livenessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1, failureThreshold: 2}
---
apiVersion: v1
kind: Service
metadata: {name: probed}
spec:
  selector: {app: probed}
  ports: [{name: http, port: 80, targetPort: http}]
"""


@pytest.fixture(scope="module")
def probed(cluster, tmp_path_factory):
    path = tmp_path_factory.mktemp("probed") / "probed.yaml"
    path.write_text(PROBED)
    objs = load_manifests([str(path)])
    cluster.apply(objs)
    cluster.wait_ready(objs, timeout=30)
    wait_for(lambda: len(ready_endpoints(cluster, "probed")) == 3, 10, "3 ready endpoints")
    return objs


def workdir(cluster: Cluster, view, container: str = "web") -> Path:
    return rundir.pod_directory(cluster.record.directory, view.namespace, view.name) / container


def test_failing_readiness_removes_exactly_that_pod_and_recovery_restores_it(cluster, probed):
    views = [v for v in cluster.all_pods() if v.name.startswith("probed-")]
    victim = views[0]
    everyone = {str(v.ip) for v in views}
    (workdir(cluster, victim) / "ready").unlink()
    started = time.monotonic()
    wait_for(lambda: ready_endpoints(cluster, "probed") == everyone - {str(victim.ip)}, 6, "the pod to leave")
    took = time.monotonic() - started
    # period 1 s x failureThreshold 2, plus up to one period of phase and the controller's hop.
    assert took < 3.5, f"removed after {took:.2f}s"
    pod = cluster.client.get("Pod", "default", victim.name)
    assert container_status(pod, "web")["ready"] is False
    assert container_status(pod, "web")["restartCount"] == 0  # readiness never restarts
    (workdir(cluster, victim) / "ready").write_text("ok\n")
    started = time.monotonic()
    wait_for(lambda: ready_endpoints(cluster, "probed") == everyone, 6, "the pod to come back")
    assert time.monotonic() - started < 2.5


def test_failing_liveness_restarts_the_container(cluster, probed):
    victim = [v for v in cluster.all_pods() if v.name.startswith("probed-")][1]
    before = cluster.client.get("Pod", "default", victim.name)
    old_pid = container_status(before, "web")["containerID"]
    (workdir(cluster, victim) / "healthz").unlink()

    def restarted():
        pod = cluster.client.get("Pod", "default", victim.name)
        status = container_status(pod, "web")
        return status if status.get("restartCount", 0) >= 1 and status.get("ready") else None
    status = wait_for(restarted, 15, "the container to be restarted and ready again")
    assert status["containerID"] != old_pid
    assert status["lastState"]["terminated"]["exitCode"] == 143   # SIGTERM, as 128 + 15
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert "running" in status["state"]
    after = [v for v in cluster.all_pods() if v.name == victim.name][0]
    assert after.pid == victim.pid and after.ip == victim.ip   # same sandbox, same IP


# -- scaling ------------------------------------------------------------------------------------

def test_scaling_the_deployment_changes_the_endpoints(cluster):
    before = ready_endpoints(cluster, "service-test")
    assert len(before) == 4
    cluster.client.scale("Deployment", "default", "service-test", 2)
    try:
        after = wait_for(lambda: e if len(e := ready_endpoints(cluster, "service-test")) == 2 else None,
                         15, "2 endpoints")
        assert after < before
        wait_for(lambda: len(labelled(cluster, SELECTOR)) == 2, 10, "the 2 others to go")
    finally:
        cluster.client.scale("Deployment", "default", "service-test", 4)
    wait_for(lambda: len(ready_endpoints(cluster, "service-test")) == 4, 20, "4 endpoints again")
    wait_for(lambda: len(labelled(cluster, SELECTOR)) == 4, 10, "exactly 4 pods")
    assert {str(v.ip) for v in article_pods(cluster)} == ready_endpoints(cluster, "service-test")


# -- refused manifests --------------------------------------------------------------------------

BAD = """
apiVersion: v1
kind: Service
metadata: {name: would-be-fine}
spec:
  selector: {app: x}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: Bad_Name}
spec:
  replicas: -1
  selector: {matchLabels: {app: y}}
  template:
    metadata: {labels: {app: z}}
    spec:
      containers: [{name: c, image: busybox, command: [sleep, "1"]}]
---
apiVersion: v1
kind: Service
metadata: {name: bad-port}
spec:
  ports: [{port: 70000}]
"""


def test_invalid_manifests_are_refused_with_field_errors_and_nothing_applied(cluster, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    sock = rundir.api_socket(cluster.record.directory)
    proc = subprocess.run([sys.executable, "-m", "testbed", "apply", "-f", str(path), "--server", f"unix://{sock}"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr
    for field in ("metadata.name", "spec.replicas", "spec.template.metadata.labels", "spec.ports[0].port"):
        assert field in err, err
    assert "bad.yaml:" in err
    assert cluster.client.get("Service", "default", "would-be-fine") is None
    assert cluster.client.get("Service", "default", "bad-port") is None


def test_server_side_refusal_applies_nothing(cluster):
    good = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fine", "namespace": "default"},
            "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}
    outside = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "outside", "namespace": "default"},
               "spec": {"clusterIP": "192.168.7.7", "selector": {"app": "x"}, "ports": [{"port": 80}]}}
    with pytest.raises(ApiError) as caught:
        cluster.client.apply_all([good, outside])
    assert caught.value.code == 422
    assert "spec.clusterIP" in str(caught.value) or "spec.clusterIP" in str(caught.value.status)
    assert cluster.client.get("Service", "default", "fine") is None


# -- a command that cannot run ------------------------------------------------------------------

def test_a_command_that_cannot_run_gives_create_container_error(cluster):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nocmd", "namespace": "default"},
           "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["/no/such/program", "x"]}]}}
    cluster.client.create(pod)
    try:
        def waiting():
            status = container_status(cluster.client.get("Pod", "default", "nocmd"), "main")
            return (status.get("state") or {}).get("waiting", {}).get("reason") == "CreateContainerError" and status
        status = wait_for(waiting, 10, "CreateContainerError")
        assert "/no/such/program" in status["state"]["waiting"]["message"]
        obj = cluster.client.get("Pod", "default", "nocmd")
        assert obj["status"]["phase"] == "Pending"
        assert obj["spec"]["nodeName"] in ("w1", "w2")
    finally:
        cluster.client.delete("Pod", "default", "nocmd")
        wait_for(lambda: cluster.client.get("Pod", "default", "nocmd") is None, 10, "nocmd to go")


# -- a killed kubelet ---------------------------------------------------------------------------

def pauses_named(hostname: str) -> list[int]:
    """Every pause process whose hostname argument is `hostname` (one per live sandbox)."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 3 and b"testbed-pause" in argv[0] and argv[1] == b"pause" \
                and argv[2] == hostname.encode():
            out.append(int(entry.name))
    return out


def test_killed_kubelet_leaves_pods_running_and_restart_adopts_them(cluster):
    on_w1 = [v for v in article_pods(cluster) if v.node == "w1"]
    assert on_w1
    uids = {v.uid for v in cluster.all_pods()}
    cluster.cp.kill("kubelet", "w1")
    try:
        gw = cluster.network.pid("gw")
        time.sleep(1)
        for v in on_w1:
            assert start_time(v.pid) is not None, f"{v.key} lost its sandbox"
            assert http_get(gw, v.ip, 8080)[1].strip() == f"<p>Hello from {v.name}</p>"
    finally:
        cluster.cp.restart("kubelet", "w1")
    time.sleep(2)   # the restarted kubelet has adopted and synced
    now = {v.uid: v for v in cluster.all_pods()}
    assert set(now) == uids                     # no pod created or lost
    for v in on_w1:
        assert now[v.uid].pid == v.pid          # same sandbox
        assert pauses_named(v.name) == [v.pid]  # and no second one
        assert http_get(gw, v.ip, 8080)[0] == 200
    # Status updates resume: kill one adopted container; the kubelet restarts it and says so.
    victim = on_w1[0]
    state = cluster.cp.sandboxes()[victim.uid]
    os.kill(state.containers["simple-http"].pid, signal.SIGKILL)

    def restarted():
        status = container_status(cluster.client.get("Pod", "default", victim.name), "simple-http")
        return status.get("restartCount", 0) >= 1 and status.get("ready")
    wait_for(restarted, 15, "the adopted container to be restarted and reported")
    assert http_get(gw, victim.ip, 8080)[1].strip() == f"<p>Hello from {victim.name}</p>"
    log = rundir.agent_log(cluster.record.directory, "kubelet-w1").read_text()
    assert "adopted pod default/" in log
