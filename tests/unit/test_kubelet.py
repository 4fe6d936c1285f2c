"""The kubelet's logic without root: probe timing and thresholds (ProbeTracker), the probe
handlers against local servers, ports by name, and how an ended container is seen by the real
runtime seam (agents/kubelet.py observe_pod) and noted by the plan. The plan itself:
test_kubeletplan.py; the plan applied through a fake runtime: test_kubeletsync.py."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from testbed.agents.kubelet import observe_pod
from testbed.agents.prober import resolve_port, run_probe
from testbed.api.podstatus import UNKNOWN_EXIT
from testbed.emu.pods import Container, Pod
from testbed.node.kubeletplan import (
    ContainerEnded,
    LocalPod,
    ProbeTracker,
    plan_containers,
    same_status,
)

# -- ProbeTracker -------------------------------------------------------------------------------


def test_not_due_before_the_initial_delay_then_every_period():
    t = ProbeTracker({"initialDelaySeconds": 5, "periodSeconds": 2})
    assert not t.due(100.0, 104.9)
    assert t.due(100.0, 105.0)
    t.record(True, "ok", 105.0)
    assert not t.due(100.0, 106.9)
    assert t.due(100.0, 107.0)


def test_defaults_are_kubernetes_period_10_and_no_delay():
    t = ProbeTracker({})
    assert t.due(100.0, 100.0)
    t.record(True, "ok", 100.0)
    assert not t.due(100.0, 109.9) and t.due(100.0, 110.0)


def test_no_verdict_until_a_threshold_is_reached():
    t = ProbeTracker({"failureThreshold": 3, "successThreshold": 2})
    assert t.result is None
    assert not t.record(False, "no", 1)
    assert not t.record(False, "no", 2)
    assert t.result is None
    assert t.record(False, "no", 3) and t.result is False
    assert not t.record(True, "ok", 4) and t.result is False     # one success is not enough
    assert t.record(True, "ok", 5) and t.result is True
    assert t.message == "ok"


def test_failures_must_be_consecutive():
    t = ProbeTracker({"failureThreshold": 2})
    t.record(True, "ok", 0)
    assert t.result is True
    for i, ok in enumerate([False, True, False, True, False]):
        t.record(ok, "", i + 1)
        assert t.result is True
    t.record(False, "down", 10)
    assert t.result is False and t.message == "down"


def test_default_thresholds_fail_after_three_and_recover_after_one():
    t = ProbeTracker({})
    t.record(True, "", 0)
    t.record(False, "", 1)
    t.record(False, "", 2)
    assert t.result is True
    t.record(False, "", 3)
    assert t.result is False
    t.record(True, "", 4)
    assert t.result is True


# -- probe handlers -----------------------------------------------------------------------------

CONTAINER = {"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}


def test_ports_by_number_or_name():
    assert resolve_port(80, CONTAINER) == 80
    assert resolve_port("81", CONTAINER) == 81
    assert resolve_port("http", CONTAINER) == 8080
    assert resolve_port("nope", CONTAINER) is None


@pytest.fixture
def server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = {"/ok": 200, "/redirect": 302, "/missing": 404}.get(self.path, 500)
            self.send_response(code)
            self.end_headers()
            self.wfile.write(self.headers.get("User-Agent", "").encode())

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("path,ok", [("/ok", True), ("/redirect", True), ("/missing", False), ("/x", False)])
def test_http_probe_succeeds_on_2xx_and_3xx(server, path, ok):
    result, message = run_probe({"httpGet": {"path": path, "port": server}}, CONTAINER, "127.0.0.1", [], {})
    assert result is ok
    if not ok:
        assert "statuscode" in message


def test_http_probe_to_a_closed_port_fails_with_the_address(server):
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    ok, message = run_probe({"httpGet": {"path": "/", "port": port}}, CONTAINER, "127.0.0.1", [], {})
    assert not ok and f"http://127.0.0.1:{port}/" in message


def test_tcp_probe(server):
    assert run_probe({"tcpSocket": {"port": server}}, CONTAINER, "127.0.0.1", [], {})[0]
    ok, message = run_probe({"tcpSocket": {"port": "nope"}}, CONTAINER, "127.0.0.1", [], {})
    assert not ok and "unknown port" in message


def test_exec_probe_exit_status_and_timeout():
    env = {"PATH": "/usr/bin:/bin"}
    assert run_probe({"exec": {"command": ["true"]}}, CONTAINER, "", [], env) == (True, "ok")
    ok, message = run_probe({"exec": {"command": ["sh", "-c", "echo sick; exit 3"]}}, CONTAINER, "", [], env)
    assert not ok and message == "command exited 3: sick"
    ok, message = run_probe({"exec": {"command": ["sleep", "5"]}, "timeoutSeconds": 0.2}, CONTAINER, "", [], env)
    assert not ok and "timed out" in message


def test_probe_without_handler_fails():
    assert run_probe({}, CONTAINER, "", [], {}) == (False, "probe has no handler")


# -- an ended container -------------------------------------------------------------------------

def _pod(tmp_path: Path, container: Container) -> Pod:
    manifest = {"metadata": {"namespace": "default", "name": "p", "uid": "u-1"},
                "spec": {"containers": [{"name": container.name, "image": "x"}]}}
    pod = Pod("default", "p", "u-1", "w1", manifest, tmp_path)
    pod.containers[container.name] = container
    return pod


def _ended(tmp_path: Path, container: Container) -> ContainerEnded:
    """What the kubelet notes of `container` once it is seen not running (observe_pod, then
    the plan)."""
    pod = _pod(tmp_path, container)
    local = LocalPod("u-1", pod.manifest, pod, observe_pod(pod))
    (action,) = [a for a in plan_containers(local, 100.0) if isinstance(a, ContainerEnded)]
    return action


def _container(tmp_path: Path, argv: list[str]) -> Container:
    c = Container("web", argv, [], tmp_path / "log")
    c.proc = subprocess.Popen(argv)
    c.pid = c.proc.pid
    return c


def test_ended_container_keeps_its_exit_code(tmp_path):
    c = _container(tmp_path, [sys.executable, "-c", "raise SystemExit(3)"])
    c.proc.wait()
    ended = _ended(tmp_path, c)
    assert (ended.exit_code, ended.known, ended.at) == (3, True, 100.0)


def test_container_killed_by_sigterm_exits_143(tmp_path):
    c = _container(tmp_path, ["sleep", "30"])
    c.proc.terminate()
    c.proc.wait()
    assert _ended(tmp_path, c).exit_code == 143


def test_running_container_is_seen_running_with_no_exit(tmp_path):
    c = _container(tmp_path, ["sleep", "30"])
    try:
        seen = observe_pod(_pod(tmp_path, c)).containers["web"]
        assert seen.running and seen.exit_code is None and seen.pid == c.pid
    finally:
        c.proc.kill()
        c.proc.wait()


def test_adopted_container_that_ended_has_an_unknown_exit(tmp_path):
    c = Container("web", ["x"], [], tmp_path / "log", pid=999999, start=1)
    ended = _ended(tmp_path, c)
    assert (ended.exit_code, ended.known) == (UNKNOWN_EXIT, False)


def test_status_comparison_ignores_timestamps():
    a = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "1"}]}
    b = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2"}]}
    c = {"phase": "Running", "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2"}]}
    assert same_status(a, b) and not same_status(a, c) and not same_status(a, None)
    assert same_status(None, {})


def test_a_containers_leftovers_are_ended_only_while_its_sandbox_lives(monkeypatch):
    """A dead sandbox's pid (and the namespace found through it) may be anyone's now: ending
    the container's process group there must not even be tried."""
    import testbed.agents.kubelet as kubelet
    from testbed.emu.record import start_time

    ended = []
    monkeypatch.setattr(kubelet, "end_group", lambda pgid, netns: ended.append((pgid, netns)))
    node_runtime = kubelet.NodeRuntime(runtime=None, node=None, probes=None)
    me = os.getpid()
    for pause_start, expected in ((start_time(me), 1), ((start_time(me) or 0) + 1, 0)):
        pod = Pod("default", "p", "u", "w1", {}, Path("/nonexistent"), pause_pid=me,
                  pause_start=pause_start)
        pod.containers["c"] = Container("c", ["true"], [], Path("/nonexistent"), "", pid=4242)
        ended.clear()
        node_runtime.end_container(pod, "c")
        assert len(ended) == expected


def test_a_liveness_stop_ends_the_process_group_of_a_container_the_runtime_left_running(
        monkeypatch):
    """stop_container ends what the runtime recorded; a container the runtime has no record
    of (an adopted one) is still running then, and its process group is ended too, so that it
    stops and is restarted. One the runtime did stop is left to the ContainerEnded after it."""
    import testbed.agents.kubelet as kubelet
    from testbed.emu.record import start_time

    calls = []

    class Runtime:
        def stop_container(self, pod, container, grace):
            calls.append(("stop", container.name, grace))

    monkeypatch.setattr(kubelet.NodeRuntime, "end_container",
                        lambda self, pod, name: calls.append(("end", name)))
    me = os.getpid()
    for start, expected in ((start_time(me), [("stop", "c", 2.0), ("end", "c")]),
                            ((start_time(me) or 0) + 1, [("stop", "c", 2.0)])):
        pod = Pod("default", "p", "u", "w1", {}, Path("/nonexistent"))
        pod.containers["c"] = Container("c", ["true"], [], Path("/nonexistent"), "", pid=me,
                                        start=start)
        calls.clear()
        kubelet.NodeRuntime(Runtime(), None, None).stop_container(pod, "c", 2.0)
        assert calls == expected
