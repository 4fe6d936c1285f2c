"""pods/log: kubectl logs (both versions) against an in-process API server reading the files a
kubelet's runtime writes; the pure option handling."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from pathlib import Path

import pytest

from testbed.agents.podlogs import PodLogs, _tail_offset, choose_container
from testbed.api.admission import ApiFailure
from testbed.apiclient import Client
from testbed.emu.record import start_time
from testbed.emu.rundir import container_log, pod_directory
from tests.unit.conftest import kubectl_runner


def make_pod(client: Client, run_dir: Path, containers=("web",), node="w1") -> dict:
    pod = client.create({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": "p", "namespace": "default"},
                         "spec": {"nodeName": node,
                                  "containers": [{"name": c, "image": "busybox"}
                                                 for c in containers]}})
    for c in containers:
        log = container_log(pod_directory(run_dir, "default", "p"), c)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"".join(f"{c} line {i}\n".encode() for i in range(1, 6)))
    return pod


_LINES: dict[int, queue.Queue] = {}


def line_within(proc: subprocess.Popen, seconds: float) -> str:
    """The next line kubectl prints, failing (not hanging) when none comes in time."""
    if proc.pid not in _LINES:
        lines: queue.Queue = queue.Queue()
        _LINES[proc.pid] = lines
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout],
                         daemon=True).start()
    try:
        return _LINES[proc.pid].get(timeout=seconds)
    except queue.Empty:
        raise AssertionError(f"no output from kubectl within {seconds}s") from None


def kubelet_state(run_dir: Path, pod: dict, running: dict[str, int | None]) -> None:
    state = {pod["metadata"]["uid"]: {"containers": {
        name: {"pid": pid, "start": start_time(pid) if pid else None}
        for name, pid in running.items()}}}
    (run_dir / "kubelet-w1.json").write_text(json.dumps(state))


@pytest.mark.parametrize("version", ["1.37", "1.20"])
def test_kubectl_logs_tail_previous_container_and_errors(server, tmp_path, version):
    client = Client(f"http://127.0.0.1:{server.port}")
    make_pod(client, tmp_path, containers=("web", "side"))
    previous = container_log(pod_directory(tmp_path, "default", "p"), "web", previous=True)
    previous.write_text("from the run before\n")
    run = kubectl_runner(version, f"http://127.0.0.1:{server.port}", tmp_path / "home")
    out = run("logs", "p", "-c", "web")
    assert out.returncode == 0 and out.stdout.splitlines()[0] == "web line 1", out.stderr
    assert run("logs", "p", "-c", "side", "--tail=2").stdout == "side line 4\nside line 5\n"
    assert run("logs", "p", "-c", "web", "--previous").stdout == "from the run before\n"
    assert run("logs", "p", "-c", "side", "--limit-bytes=4").stdout == "side"
    missing = run("logs", "p", "-c", "nope")
    assert missing.returncode != 0 and "container nope is not valid for pod p" in missing.stderr
    no_previous = run("logs", "p", "-c", "side", "-p")
    assert 'previous terminated container "side" in pod "p" not found' in no_previous.stderr
    since = run("logs", "p", "-c", "web", "--since=1m")
    assert since.returncode != 0 and "sinceSeconds is not supported" in since.stderr


def test_kubectl_logs_follow_streams_until_the_container_ends(server, tmp_path):
    client = Client(f"http://127.0.0.1:{server.port}")
    pod = make_pod(client, tmp_path)
    worker = subprocess.Popen(["sleep", "60"])
    try:
        kubelet_state(tmp_path, pod, {"web": worker.pid})
        kubectl_runner("1.37", f"http://127.0.0.1:{server.port}", tmp_path / "home")
        home = tmp_path / "home"
        proc = subprocess.Popen(
            [str(Path(__file__).resolve().parents[2] / ".venv/bin/kubectl"), "--cache-dir",
             str(home / "cache"), "logs", "-f", "p"],
            env={"HOME": str(home), "KUBECONFIG": str(home / "kubeconfig"), "PATH": "/usr/bin"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert line_within(proc, 10) == "web line 1\n"
            log = container_log(pod_directory(tmp_path, "default", "p"), "web")
            with log.open("a") as f:
                f.write("written while following\n")
            seen = [line_within(proc, 10) for _ in range(5)]
            assert seen[-1] == "written while following\n"
            assert proc.poll() is None            # still following: the container runs
            worker.kill()
            worker.wait()
            assert proc.wait(timeout=10) == 0     # the container ended: so does the stream
        finally:
            proc.kill()
    finally:
        worker.kill()


def test_choose_container_as_the_api_server_does():
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}],
                                               "initContainers": [{"name": "i"}]}}
    assert choose_container(pod, "b") == "b" and choose_container(pod, "i") == "i"
    with pytest.raises(ApiFailure) as err:
        choose_container(pod, None)
    assert err.value.message == ("a container name must be specified for pod p, choose one of: "
                                 "[a b] or one of the init containers: [i]")
    single = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}
    assert choose_container(single, None) == "a"


def test_negative_tail_is_refused_as_upstream_validates_it(tmp_path):
    logs = PodLogs(tmp_path)
    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u"},
           "spec": {"nodeName": "w1", "containers": [{"name": "a"}]}}
    with pytest.raises(ApiFailure) as err:
        logs.open(pod, {"tailLines": ["-1"]})
    assert err.value.code == 422
    assert err.value.message == ('PodLogOptions "p" is invalid: tailLines: Invalid value: -1: '
                                 "must be greater than or equal to 0")
    with pytest.raises(ApiFailure) as err:
        logs.open(pod, {})
    assert "is waiting to start: ContainerCreating" in err.value.message


@pytest.mark.parametrize("text, lines, rest", [
    (b"a\nb\nc\n", 2, b"b\nc\n"), (b"a\nb\nc", 2, b"b\nc"), (b"a\nb\nc\n", 9, b"a\nb\nc\n"),
    (b"a\nb\nc\n", 0, b""), (b"", 3, b""), (b"x" * 20000 + b"\ny\n", 1, b"y\n"),
])
def test_tail_offset(tmp_path, text, lines, rest):
    path = tmp_path / "log"
    path.write_bytes(text)
    with path.open("rb") as handle:
        handle.seek(_tail_offset(handle, lines))
        assert handle.read() == rest


def test_a_follow_ends_with_its_process_not_with_the_restarted_one(tmp_path):
    """After a restart the kubelet's state names a new, live process; the follow that began on
    the old one ends when that one does (upstream ends the stream when its container exits)."""
    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u"},
           "spec": {"nodeName": "w1", "containers": [{"name": "web"}]}}
    log = container_log(pod_directory(tmp_path, "default", "p"), "web")
    log.parent.mkdir(parents=True)
    log.write_text("first run\n")
    old = subprocess.Popen(["sleep", "60"])
    new = subprocess.Popen(["sleep", "60"])
    try:
        kubelet_state(tmp_path, pod, {"web": old.pid})
        chunks = PodLogs(tmp_path).open(pod, {"follow": ["true"]})
        assert next(chunks) == b"first run\n"
        kubelet_state(tmp_path, pod, {"web": new.pid})   # restarted
        old.kill()
        old.wait()
        assert list(chunks) == []                         # ended, though `new` runs
    finally:
        old.kill()
        new.kill()
        new.wait()


def test_a_follow_ends_when_its_reader_is_gone(tmp_path):
    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u"},
           "spec": {"nodeName": "w1", "containers": [{"name": "web"}]}}
    log = container_log(pod_directory(tmp_path, "default", "p"), "web")
    log.parent.mkdir(parents=True)
    log.write_text("x\n")
    worker = subprocess.Popen(["sleep", "60"])
    try:
        kubelet_state(tmp_path, pod, {"web": worker.pid})
        wanted = [True]
        chunks = PodLogs(tmp_path).open(pod, {"follow": ["true"]}, lambda: wanted[0])
        assert next(chunks) == b"x\n"
        wanted[0] = False
        assert list(chunks) == []
    finally:
        worker.kill()
        worker.wait()
