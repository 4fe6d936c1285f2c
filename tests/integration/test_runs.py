"""The commands as a user runs them: run, cli, ps, clean; exit codes, reports, cleanup, safety."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from tests.integration.conftest import (
    ROOT,
    SCENARIOS,
    TOPOLOGIES,
    leftovers,
    namespaces,
    root_snapshot,
    run_testbed,
)

PODS = SCENARIOS / "manifests" / "pods-two-nodes.yaml"


def _scenario(tmp_path: Path, steps: str, name: str = "s", manifests: Path = PODS) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\ntopology: {TOPOLOGIES / 'two-node.yaml'}\n"
                    f"manifests: [{manifests}]\nsteps:\n{steps}")
    return path


def test_default_tour_passes_and_leaves_the_machine_as_it_was(tmp_path):
    before_root, before_ns = root_snapshot(), namespaces()
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    result = run_testbed("run", "--junit", str(junit), "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed" in result.stdout and " 0 failed" in result.stdout
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests")) >= 8
    data = json.loads(report.read_text())
    assert data["failed"] == 0 and data["steps"][0]["passed"] is True
    assert root_snapshot() == before_root
    assert leftovers(before_ns) == set()


def test_a_failing_check_exits_1_and_the_report_names_the_step(tmp_path):
    path = _scenario(tmp_path, "  - name: pod-b is wrongly expected unreachable\n"
                               "    probe: icmp\n    from: pod-a\n    to: pod-b\n    expect: unreachable\n"
                               "  - probe: tcp\n    from: pod-a\n    to: pod-c:8080\n"
                               "    expect: {sourceIP: pod-b}\n")
    junit = tmp_path / "junit.xml"
    result = run_testbed("run", str(path), "--junit", str(junit))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout and "pod-b is wrongly expected unreachable" in result.stdout
    assert "0 passed, 2 failed" in result.stdout
    failures = ET.parse(junit).getroot().findall("testcase/failure")
    assert len(failures) == 2
    # pod-a and pod-b are on w1: the server saw pod-a's address where pod-b's was expected.
    assert re.search(r"server saw 10\.244\.0\.\d+, expected 10\.244\.0\.\d+ \(pod-b\)", failures[1].get("message"))


def test_bad_input_exits_2_and_builds_nothing(tmp_path):
    before = namespaces()
    bad = tmp_path / "conflict.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: clash}\nspec:\n  containers:\n"
                   "  - {name: a, image: agnhost, args: [netexec], ports: [{containerPort: 8080}]}\n"
                   "  - {name: b, image: agnhost, args: [netexec], ports: [{containerPort: 8080}]}\n")
    path = _scenario(tmp_path, "  - probe: icmp\n    from: pod-x\n    to: clash\n", manifests=bad)
    result = run_testbed("run", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "conflict.yaml:7: spec.containers[1].ports[0]" in result.stderr
    assert 'steps[0].from: Invalid value: "pod-x": no pod, node or client of this scenario' in result.stderr
    assert leftovers(before) == set()


def test_cli_takes_commands_on_stdin_and_tears_down():
    before = namespaces()
    commands = "pod-a ping -c1 -W2 pod-c\npod-c curl -s http://pod-a:8080/clientip\nps w2\ngw ip route\n"
    result = run_testbed("cli", str(TOPOLOGIES / "two-node.yaml"), "-f", str(PODS), input=commands)
    assert result.returncode == 0, result.stderr
    assert "1 received" in result.stdout
    assert "10.244.1.2:" in result.stdout                        # pod-c's own IP, seen by pod-a
    assert "k8s_POD_pod-c_default" in result.stdout and "k8s_POD_pod-a" not in result.stdout
    assert "10.244.1.0/24 via 172.16.2.2" in result.stdout + result.stderr  # Mininet logs node output
    assert leftovers(before) == set()


def test_clean_after_sigkill_leaves_nothing(tmp_path):
    before_ns, before_root = namespaces(), root_snapshot()
    path = _scenario(tmp_path, "  - sleep: 60\n")
    proc = subprocess.Popen([sys.executable, "-m", "testbed", "run", str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        for line in proc.stderr:
            if "cluster ready" in line or time.monotonic() > deadline:
                break
        # While it runs, `testbed ps` in another terminal lists its pods, and clean leaves it alone.
        ps = run_testbed("ps")
        assert "k8s_POD_pod-a_default" in ps.stdout, ps.stdout + ps.stderr
        assert "left alone" in run_testbed("clean").stdout
    finally:
        proc.send_signal(signal.SIGKILL)  # the runner only: its pods stay for `clean` below
        proc.wait()
    # The node shells die with their pty when the runner dies; the pods hold on.
    assert len(leftovers(before_ns)) >= 3
    result = run_testbed("clean")
    assert result.returncode == 0
    assert "ended" in result.stdout
    assert leftovers(before_ns) == set(), result.stdout
    assert root_snapshot() == before_root
    assert "nothing to clean" in run_testbed("clean").stdout


def test_sigterm_tears_down(tmp_path):
    before = namespaces()
    path = _scenario(tmp_path, "  - sleep: 60\n")
    proc = subprocess.Popen([sys.executable, "-m", "testbed", "run", str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        for line in proc.stderr:
            if "cluster ready" in line or time.monotonic() > deadline:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
    assert leftovers(before) == set()


def test_not_root_is_a_clear_error():
    """As another user, from a copy that user can read: the checkout itself may sit in a
    directory other users cannot enter (a home directory with mode 700, a mktemp -d)."""
    import shutil
    import tempfile

    import pyroute2

    copy = Path(tempfile.mkdtemp(prefix="testbed-nonroot-"))
    try:
        copy.chmod(0o755)
        ignore = shutil.ignore_patterns("__pycache__")
        for part in ("testbed", "scenarios", "topologies"):
            shutil.copytree(ROOT / part, copy / part, ignore=ignore)
        for module in (yaml, pyroute2):   # the pinned packages, from the virtual environment
            shutil.copytree(Path(module.__file__).parent, copy / module.__name__, ignore=ignore)
        for path in [copy, *copy.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        result = subprocess.run(["/usr/bin/python3", "-m", "testbed", "run"], cwd=copy,
                                capture_output=True, text=True, user=65534,
                                env={"PATH": "/usr/bin:/bin", "HOME": "/tmp",
                                     "PYTHONPATH": str(copy)})
    finally:
        shutil.rmtree(copy)
    assert result.returncode == 2, result.stderr
    assert "needs root" in result.stderr and "Traceback" not in result.stderr


def test_a_second_ctrl_c_during_teardown_is_ignored_until_it_is_done(tmp_path):
    before = namespaces()
    path = _scenario(tmp_path, "  - sleep: 60\n")
    proc = subprocess.Popen([sys.executable, "-m", "testbed", "run", str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        deadline = time.monotonic() + 60
        for line in proc.stderr:
            if "cluster ready" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        for line in proc.stderr:
            seen.append(line)
            if "tearing down" in line:
                for _ in range(3):           # an impatient user, while it tears down
                    proc.send_signal(signal.SIGINT)
                    time.sleep(0.05)
                break
        seen += proc.stderr.readlines()
    finally:
        code = proc.wait(timeout=60)
    assert code == 130
    assert "noted; tearing down first" in "".join(seen)
    assert "the cluster was torn down" in "".join(seen)
    assert leftovers(before) == set()


def test_an_api_server_restart_step_is_followed_at_once_by_a_passing_step(tmp_path):
    """The restart returns when the API server serves, as the cluster's start waits for it:
    the next step, which needs the API (a Service by name, a scale), passes at once."""
    service = ROOT / "scenarios" / "manifests" / "article-service-test.yaml"
    path = _scenario(tmp_path, "  - kill: {agent: apiserver}\n"
                               "  - restart: {agent: apiserver}\n"
                               "  - scale: {deployment: service-test, replicas: 3}\n"
                               "  - probe: http\n    from: w1\n    to: http://service-test/\n"
                               "    tries: 1\n", manifests=service)
    result = run_testbed("run", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout
