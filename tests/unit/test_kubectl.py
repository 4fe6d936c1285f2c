"""kubectl's verbs: table layouts (pure), and apply/delete/get/scale/describe against an
in-process API server, through run_kubectl and through `testbed ...` (cluster discovery)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from testbed.agents.apiserver import ApiServer
from testbed.apiclient import Client
from testbed.emu.access import NoCluster, running
from testbed.emu.kubectl_command import find_api
from testbed.emu.record import start_time
from testbed.kubectl.format import describe_events, format_table, human_duration
from testbed.kubectl.verbs import run_kubectl

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def created(ago: timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- pure formatting -------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds,text", [
    (5, "5s"), (119, "119s"), (125, "2m5s"), (600, "10m"), (3 * 3600 + 60, "3h1m"),
    (9 * 3600, "9h"), (50 * 3600, "2d2h"), (30 * 86400, "30d"), (800 * 86400, "2y70d"),
])
def test_human_duration_like_kubectl(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_pod_table_and_wide() -> None:
    pods = [{"kind": "Pod", "metadata": {"name": "web-1", "namespace": "default",
                                         "creationTimestamp": created(timedelta(seconds=42))},
             "spec": {"nodeName": "w1", "containers": [{"name": "a"}, {"name": "b"}]},
             "status": {"phase": "Running", "podIP": "10.244.1.2", "containerStatuses": [
                 {"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}}},
                 {"name": "b", "ready": False, "restartCount": 1,
                  "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}},
            {"kind": "Pod", "metadata": {"name": "pending", "namespace": "shop",
                                         "creationTimestamp": created(timedelta(minutes=3))},
             "spec": {"containers": [{"name": "a"}]}}]
    assert format_table("Pod", pods, NOW) == (
        "NAME      READY   STATUS             RESTARTS   AGE\n"
        "web-1     1/2     CrashLoopBackOff   3          42s\n"
        "pending   0/1     Pending            0          3m\n")
    wide = format_table("Pod", pods, NOW, wide=True, all_namespaces=True).splitlines()
    assert wide[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP",
                               "NODE", "NOMINATED", "NODE", "READINESS", "GATES"]
    assert wide[1].split()[:1] + wide[1].split()[6:8] == ["default", "10.244.1.2", "w1"]
    assert wide[2].split()[6:8] == ["<none>", "<none>"]


def test_terminating_pod_status() -> None:
    pod = {"metadata": {"name": "p", "deletionTimestamp": created(timedelta(0))},
           "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Running"}}
    assert format_table("Pod", [pod], NOW).splitlines()[1].split()[2] == "Terminating"


def test_service_table() -> None:
    svcs = [{"metadata": {"name": "web", "creationTimestamp": created(timedelta(hours=1))},
             "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "ports": [
                 {"port": 80, "nodePort": 30080, "protocol": "TCP"},
                 {"port": 53, "nodePort": 30053, "protocol": "UDP"}]}},
            {"metadata": {"name": "lb", "creationTimestamp": created(timedelta(hours=1))},
             "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.21",
                      "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}},
            {"metadata": {"name": "headless", "creationTimestamp": created(timedelta(hours=1))},
             "spec": {"type": "ClusterIP", "clusterIP": "None", "ports": [{"port": 80}]}}]
    assert format_table("Service", svcs, NOW) == (
        "NAME       TYPE           CLUSTER-IP   EXTERNAL-IP   PORT(S)                     AGE\n"
        "web        NodePort       10.96.0.20   <none>        80:30080/TCP,53:30053/UDP   60m\n"
        "lb         LoadBalancer   10.96.0.21   <pending>     443:31443/TCP               60m\n"
        "headless   ClusterIP      None         <none>        80/TCP                      60m\n")


def test_endpointslice_and_deployment_tables() -> None:
    ts = created(timedelta(days=3))
    slices = [{"metadata": {"name": "web-abcde", "creationTimestamp": ts}, "addressType": "IPv4",
               "ports": [{"port": 8080}],
               "endpoints": [{"addresses": [f"10.244.1.{i}"]} for i in range(2, 7)]},
              {"metadata": {"name": "empty-xyz", "creationTimestamp": ts}, "addressType": "IPv4",
               "ports": [], "endpoints": []}]
    assert format_table("EndpointSlice", slices, NOW) == (
        "NAME        ADDRESSTYPE   PORTS     ENDPOINTS                                      AGE\n"
        "web-abcde   IPv4          8080      10.244.1.2,10.244.1.3,10.244.1.4 + 2 more...   3d\n"
        "empty-xyz   IPv4          <unset>   <unset>                                        3d\n")
    dep = {"metadata": {"name": "web", "creationTimestamp": ts},
           "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"spec": {"containers": [{"name": "c", "image": "python:2.7"}]}}},
           "status": {"readyReplicas": 3, "updatedReplicas": 4, "availableReplicas": 3}}
    assert format_table("Deployment", [dep], NOW, wide=True) == (
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE   CONTAINERS   IMAGES       SELECTOR\n"
        "web    3/4     4            3           3d    c            python:2.7   app=web\n")


# -- against a server ------------------------------------------------------------------------------

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: python:2.7
        ports: [{containerPort: 8080, name: http}]
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - port: 80
    targetPort: http
    nodePort: 30080
"""


@pytest.fixture
def server(tmp_path: Path):
    srv = ApiServer(tmp_path / "state.jsonl", "10.96.0.0/12", unix=tmp_path / "api.sock",
                    resync=1.0).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: ApiServer) -> Client:
    return Client(f"unix://{server.unix.server_address}")


def kubectl(client: Client, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_kubectl(list(argv), client, out, err)
    return code, out.getvalue(), err.getvalue()


def test_apply_get_scale_delete(tmp_path: Path, client: Client) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(DEPLOYMENT + "---\n" + SERVICE)
    code, out, err = kubectl(client, "apply", "-f", str(manifest))
    assert (code, out) == (0, "deployment.apps/web created\nservice/web created\n")
    # python:2.7 without a command: created as the API server would, with the run-time fault told
    assert err == (f"warning: {manifest}:14: spec.template.spec.containers[0].command: image "
                   "'python:2.7' has no entrypoint the testbed knows: give the container a command "
                   "(known images: agnhost, pause): its pods will fail with CreateContainerError\n")
    assert kubectl(client, "apply", "-f", str(manifest))[1] == (
        "deployment.apps/web unchanged\nservice/web unchanged\n")
    code, out, _ = kubectl(client, "get", "services")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert lines[2].split()[:5] == ["web", "NodePort", "10.96.1.1", "<none>", "80:30080/TCP"]
    deadline = time.monotonic() + 5
    while len(client.list("Pod", "default")[0]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    code, out, _ = kubectl(client, "get", "pods", "-o", "wide")
    assert code == 0 and [line.split()[2] for line in out.splitlines()[1:]] == ["Pending"] * 2
    code, out, _ = kubectl(client, "get", "deploy", "web", "-o", "json")
    assert json.loads(out)["spec"]["replicas"] == 2
    assert kubectl(client, "scale", "deployment", "web", "--replicas", "5")[1] == (
        "deployment.apps/web scaled\n")
    assert client.get("Deployment", "default", "web")["spec"]["replicas"] == 5
    code, out, _ = kubectl(client, "describe", "service", "web")
    assert code == 0 and "NodePort:           <unset>  30080/TCP" in out
    assert kubectl(client, "delete", "-f", str(manifest)) == (
        0, 'service "web" deleted\ndeployment.apps "web" deleted\n', "")
    code, _, err = kubectl(client, "delete", "-f", str(manifest))
    assert code == 1 and 'Error from server (NotFound): services "web" not found' in err


def test_describe_shows_the_events_about_the_object(tmp_path: Path, client: Client) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n"
                        "  containers: [{name: c, image: registry.k8s.io/pause:3.9}]\n")
    assert kubectl(client, "apply", "-f", str(manifest))[0] == 0
    assert kubectl(client, "describe", "pod", "web")[1].splitlines()[-1].split() == ["Events:", "<none>"]
    pod = client.get("Pod", "default", "web")
    now = datetime.now(UTC)

    def event(name: str, about: dict, reason: str, message: str, count: int, first: timedelta,
              last: timedelta, kind: str = "Warning") -> dict:
        return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": "default"},
                "involvedObject": about, "reason": reason, "message": message, "type": kind,
                "count": count, "source": {"component": "kubelet", "host": "w1"},
                "firstTimestamp": (now - first).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "lastTimestamp": (now - last).strftime("%Y-%m-%dT%H:%M:%SZ")}

    about = {"kind": "Pod", "namespace": "default", "name": "web", "uid": pod["metadata"]["uid"],
             "apiVersion": "v1"}
    client.create(event("web.2", about, "FailedCreatePodSandBox",
                        'Failed to create pod sandbox: plugin type="bridge" failed (add): no IP',
                        3, timedelta(seconds=40), timedelta(seconds=5)))
    client.create(event("web.1", about, "Scheduled", "Successfully assigned default/web to w1", 1,
                        timedelta(seconds=50), timedelta(seconds=50), "Normal"))
    client.create(event("other.1", {**about, "name": "other", "uid": "x"}, "Scheduled", "not this one",
                        1, timedelta(seconds=50), timedelta(seconds=50), "Normal"))
    code, out, _ = kubectl(client, "describe", "pod", "web")
    lines = out.splitlines()
    at = lines.index("Events:")
    assert lines[at + 1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert lines[at + 2].split() == ["----", "------", "----", "----", "-------"]
    rows = lines[at + 3:]
    reasons = [row.split()[1] for row in rows]
    # oldest first; the scheduler's own (no nodes here) is about the pod too
    assert reasons[:2] == ["Scheduled", "FailedCreatePodSandBox"] and set(reasons[2:]) <= {"FailedScheduling"}
    # (the timestamps have whole seconds: an age may read one more)
    assert rows[0].split()[:2] == ["Normal", "Scheduled"] and rows[0].split()[2] in ("50s", "51s")
    warning = rows[1].split()
    assert warning[:2] + warning[3:5] + warning[6:7] == ["Warning", "FailedCreatePodSandBox", "(x3",
                                                         "over", "kubelet"]
    assert warning[2] in ("5s", "6s") and warning[5] in ("40s)", "41s)")
    assert rows[1].endswith('plugin type="bridge" failed (add): no IP')
    assert "not this one" not in out


def test_describe_lists_events_by_when_they_were_last_seen() -> None:
    now = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)

    def stamp(minutes_ago: float) -> str:
        return (now - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    old_but_repeated = {"type": "Warning", "reason": "BackOff", "count": 5, "message": "m",
                        "firstTimestamp": stamp(9)[:19] + "Z", "lastTimestamp": stamp(1)[:19] + "Z"}
    series = {"type": "Warning", "reason": "Series", "eventTime": stamp(8),
              "series": {"count": 3, "lastObservedTime": stamp(2)}, "message": "m"}
    once = {"type": "Normal", "reason": "Once", "eventTime": stamp(5), "message": "m"}
    unset = {"type": "Normal", "reason": "Unset", "message": "m"}
    rows = describe_events([old_but_repeated, series, once, unset], now)[3:]
    assert [row.split()[1] for row in rows] == ["Unset", "Once", "Series", "BackOff"]
    # the Age column is as before: the last time, and the repetitions over the first
    assert rows[3].split()[2:6] == ["60s", "(x5", "over", "9m)"]
    assert rows[2].split()[2:6] == ["2m", "(x3", "over", "8m)"]
    assert rows[1].split()[2] == "5m" and rows[0].split()[2] == "<unknown>"


def test_delete_f_of_a_cluster_scoped_object(tmp_path: Path, client: Client) -> None:
    manifest = tmp_path / "ns.yaml"
    manifest.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n")
    assert kubectl(client, "apply", "-f", str(manifest))[:2] == (0, "namespace/team-a created\n")
    assert kubectl(client, "delete", "-f", str(manifest))[:2] == (0, 'namespace "team-a" deleted\n')


def test_bad_manifest_exits_2_and_applies_nothing(tmp_path: Path, client: Client) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(DEPLOYMENT + "---\n" + SERVICE.replace("port: 80", "port: 80000"))
    code, out, err = kubectl(client, "apply", "-f", str(manifest))
    assert code == 2 and out == ""
    assert f"{manifest}:26: spec.ports[0].port: Invalid value: 80000" in err
    assert client.get("Deployment", "default", "web") is None


def test_server_refusal_exits_1(tmp_path: Path, client: Client) -> None:
    client.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "taken"},
                   "spec": {"type": "NodePort", "ports": [{"port": 1, "nodePort": 30080}]}})
    manifest = tmp_path / "app.yaml"
    manifest.write_text(DEPLOYMENT + "---\n" + SERVICE)
    code, _, err = kubectl(client, "apply", "-f", str(manifest))
    assert code == 1 and "provided port is already allocated" in err
    assert client.get("Deployment", "default", "web") is None  # the batch applied nothing


def test_get_errors(client: Client) -> None:
    assert kubectl(client, "get", "pods", "nope")[0] == 1
    assert kubectl(client, "get", "widgets")[0] == 1
    assert kubectl(client, "get", "pods")[2] == "No resources found in default namespace.\n"
    assert kubectl(client, "frobnicate")[0] == 2


# -- finding the cluster ---------------------------------------------------------------------------

def fake_run(root: Path, name: str, pid: int | None = None) -> Path:
    run = root / f"{name}-1-1"
    run.mkdir(parents=True)
    pid = pid or os.getpid()
    (run / "owner.json").write_text(json.dumps({"pid": pid, "start": start_time(pid) or 1,
                                                "name": name}))
    return run


def test_find_api(tmp_path: Path) -> None:
    with pytest.raises(NoCluster, match="no cluster is running"):
        find_api(run_root=tmp_path)
    one = fake_run(tmp_path, "alpha")
    (one / "apiserver.sock").touch()
    dead = fake_run(tmp_path, "dead", pid=2 ** 22 + 7)  # no such process
    (dead / "apiserver.sock").touch()
    assert find_api(run_root=tmp_path) == f"unix://{one}/apiserver.sock"
    two = fake_run(tmp_path, "beta")
    (two / "apiserver.sock").touch()
    with pytest.raises(NoCluster, match="2 clusters are running: alpha .*beta"):
        find_api(run_root=tmp_path)
    assert find_api("beta", run_root=tmp_path) == f"unix://{two}/apiserver.sock"
    assert [c.name for c in running(tmp_path)] == ["alpha", "beta"]


def run_testbed(root: Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TESTBED_RUN_ROOT=str(root))
    return subprocess.run([sys.executable, "-m", "testbed", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_testbed_commands_find_the_running_cluster(tmp_path: Path) -> None:
    root = tmp_path / "run"
    proc = run_testbed(root, "get", "pods")
    assert proc.returncode == 1 and "no cluster is running" in proc.stderr
    run = fake_run(root, "demo")  # owned by this (live) test process
    srv = ApiServer(tmp_path / "state.jsonl", "10.96.0.0/12", unix=run / "apiserver.sock",
                    controllers=False).start()
    try:
        proc = run_testbed(root, "get", "svc", "-A")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[1].split()[:3] == ["default", "kubernetes", "ClusterIP"]
        bad = tmp_path / "bad.yaml"
        bad.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad\n")
        proc = run_testbed(root, "apply", "-f", str(bad))
        assert proc.returncode == 2
        assert f"testbed: {bad}:4: metadata.name: Invalid value" in proc.stderr
    finally:
        srv.stop()
