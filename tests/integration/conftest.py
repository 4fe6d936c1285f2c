"""Fixtures for integration tests: real clusters in real namespaces, as root.

Every test here is marked `root` and skipped with the reason when not run as root. Clusters
come from fixtures that tear down from their run record, even when a test fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGIES = ROOT / "topologies"
SCENARIOS = ROOT / "scenarios"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.root)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="integration test: builds network namespaces, needs root"))


def run_testbed(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run the testbed command as a user would, capturing its output."""
    return subprocess.run([sys.executable, "-m", "testbed", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **kwargs)


def namespaces() -> set[int]:
    """The network namespaces that any process holds now (by inode)."""
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                found.add(os.stat(f"/proc/{entry.name}/ns/net").st_ino)
            except OSError:
                pass
    return found


def _testbed_process(pid: int) -> bool:
    """Is `pid` something a testbed run starts (a node shell, a pause, a container, an agent)?"""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return ("testbed-pause" in exe or any(arg.startswith(b"mininet:") for arg in cmdline)
            or b"testbed" in b" ".join(cmdline[:4]))


def leftovers(before: set[int]) -> set[int]:
    """Namespaces that appeared since `before` and are held by testbed processes.

    Other sessions on a shared machine may make namespaces of their own meanwhile; only the
    testbed's count as left behind.
    """
    new = namespaces() - before
    held = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ns = os.stat(f"/proc/{entry.name}/ns/net").st_ino
            except OSError:
                continue
            if ns in new and _testbed_process(int(entry.name)):
                held.add(ns)
    return held


def root_snapshot() -> dict[str, str]:
    """What the testbed must never change in the machine's own namespace."""
    def out(argv):
        return subprocess.run(argv, capture_output=True, text=True).stdout
    sysctls = {}
    for name in ("net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv6/conf/all/forwarding",
                 "net/core/rmem_max", "net/core/wmem_max", "net/ipv4/neigh/default/gc_thresh3"):
        try:
            sysctls[name] = Path("/proc/sys", name).read_text()
        except OSError:
            pass
    return {
        "addresses": out(["ip", "-o", "addr"]),
        "links": "\n".join(sorted(line.split("@")[0].split(":")[1] for line in out(["ip", "-o", "link"]).splitlines())),
        "routes": out(["ip", "route", "show", "table", "all"]),
        "iptables": "\n".join(x for x in out(["iptables-save"]).splitlines() if not x.startswith("#")),
        "nftables": out(["nft", "list", "ruleset"]),
        "sysctls": repr(sorted(sysctls.items())),
        "netns": out(["ip", "netns", "list"]),
    }


@pytest.fixture
def netns_pair():
    """Two throwaway network namespaces (pids of their `testbed-pause pause` holders, which
    print "ok" once they are in a namespace of their own), ended by pid afterwards."""
    from testbed.emu.pausebin import pause_binary

    procs = []
    try:
        for name in ("pair-a", "pair-b"):
            proc = subprocess.Popen([pause_binary(), "pause", name], stdout=subprocess.PIPE)
            assert proc.stdout.readline() == b"ok\n"
            procs.append(proc)
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(5)


@pytest.fixture(scope="module")
def two_node():
    """The two-node topology with the tour's pods: pod-a (two containers) and pod-b on w1, pod-c on w2."""
    from testbed.api.manifests import load_manifests
    from testbed.emu.podlab import PodLab
    from testbed.spec.topology import load_topology

    cluster = PodLab(load_topology(TOPOLOGIES / "two-node.yaml")).up()
    try:
        objects = load_manifests([str(SCENARIOS / "manifests" / "pods-two-nodes.yaml")])
        for pod in cluster.run_pods(objects):
            assert cluster.runtime.wait_listening(pod, timeout=10), f"{pod.key} never listened"
        yield cluster
    finally:
        cluster.down()


def wait_for(check, timeout: float, what: str, interval: float = 0.2):
    """Poll `check` until it returns something true (and return that) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def article_cluster():
    """The two-node cluster running the article's Deployment and Service, until closed."""
    from testbed.api.manifests import load_manifests
    from testbed.emu.cluster import Cluster
    from testbed.spec.topology import load_topology

    c = Cluster(load_topology(TOPOLOGIES / "two-node.yaml")).up()
    try:
        objs = load_manifests([str(SCENARIOS / "manifests" / "article-service-test.yaml")])
        c.apply(objs)
        c.wait_ready(objs, timeout=60)
        yield c
    finally:
        c.down()
